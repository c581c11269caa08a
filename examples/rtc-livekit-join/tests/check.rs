//! `--check`: one line per step on stdout, exit 0 when the program could join the call, else
//! the exit code of the first failure, and nothing joined on LiveKit either way. Against the
//! real stack; needs `cargo xtask devstack up`.

mod common;

use std::time::Duration;

use common::{Bot, STDOUT_MARK, Setup, closed_port};

/// Runs `--check` with the setup's environment changed by `overrides` (an empty value removes
/// the variable); its exit code and what it printed on stdout.
async fn check(setup: &Setup, overrides: &[(&'static str, String)]) -> (Option<i32>, Vec<String>) {
    let mut bot = Bot::start_with_args(&setup.env_with(overrides), &["--check"]);
    let status = bot.wait_exit(Duration::from_secs(90)).await;
    let log = bot.log();
    eprintln!("exit {:?}; the log:\n{log}", status.code());
    assert!(!log.contains(&format!("={}", setup.password)), "no password in the output");
    let stdout =
        log.lines().filter_map(|l| l.strip_prefix(STDOUT_MARK)).map(str::to_owned).collect();
    (status.code(), stdout)
}

fn line<'a>(stdout: &'a [String], step: &str) -> &'a str {
    stdout
        .iter()
        .find(|l| l.starts_with(&format!("check {step}:")))
        .unwrap_or_else(|| panic!("no line for {step}: {stdout:#?}"))
}

#[tokio::test]
async fn a_working_configuration_passes_every_step_and_joins_nothing() {
    let setup = Setup::new("check").await;
    let (code, stdout) = check(&setup, &[("AUDIO_SOURCE", "tone".into())]).await;
    assert_eq!(code, Some(0), "{stdout:#?}");
    for step in ["configuration", "homeserver", "login", "room", "transport", "camera", "audio"] {
        assert!(line(&stdout, step).contains(": ok, "), "{step}: {stdout:#?}");
    }
    assert!(line(&stdout, "login").contains(&setup.bot.user_id), "{stdout:#?}");
    assert!(line(&stdout, "room").contains(&setup.room_id), "{stdout:#?}");
    let transport = line(&stdout, "transport");
    assert!(
        transport.contains(&setup.stack.livekit_url) && transport.contains("answers HTTP 200"),
        "{transport}"
    );
    assert!(line(&stdout, "audio").contains("440 Hz"), "{stdout:#?}");
    assert_eq!(
        stdout.last().map(String::as_str),
        Some("check passed: the program can join the call with this configuration")
    );
    // A check is not a call: no membership and nobody on LiveKit.
    assert!(setup.livekit_participants().await.is_empty());

    // The service then starts as the device the check logged in (its stored session).
    let device = line(&stdout, "login").split("(device ").nth(1).unwrap().trim_end_matches(')');
    let mut bot = Bot::start(&setup.env());
    let login = bot.wait_line(Duration::from_secs(60), |l| l.contains("milestone=\"login\"")).await;
    assert!(login.contains(&format!("(device {device})")), "the check's device: {login}");
    bot.wait_line(Duration::from_secs(60), |l| l.contains("milestone=\"first_frame\"")).await;
    bot.signal(nix::sys::signal::Signal::SIGTERM);
    bot.wait_exit(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn each_failing_step_is_named_with_its_exit_code() {
    let setup = Setup::new("checkfail").await;
    let (code, stdout) =
        check(&setup, &[("HOMESERVER_URL", format!("http://127.0.0.1:{}", closed_port()))]).await;
    assert_eq!(code, Some(4));
    assert_eq!(line(&stdout, "homeserver"), "check homeserver: FAILED");

    let (code, stdout) = check(&setup, &[("MATRIX_PASSWORD", "wrong".into())]).await;
    assert_eq!(code, Some(3));
    assert_eq!(line(&stdout, "login"), "check login: FAILED");

    let (code, stdout) = check(&setup, &[("ROOM_ID", "!nothere:localhost".into())]).await;
    assert_eq!(code, Some(2));
    assert_eq!(line(&stdout, "room"), "check room: FAILED");

    let dead_service = format!("http://127.0.0.1:{}/sfu/get", closed_port());
    let (code, stdout) = check(&setup, &[("LIVEKIT_SFU_GET_URL", dead_service)]).await;
    assert_eq!(code, Some(4));
    assert_eq!(line(&stdout, "transport"), "check transport: FAILED");

    // A camera that is not there: a media failure with the v4l2 feature, a configuration one
    // without it (the configuration step then fails before anything else).
    let (code, stdout) = check(
        &setup,
        &[("V4L2_VIDEO_SOURCE", "camera".into()), ("V4L2_DEVICE", "/dev/video-none".into())],
    )
    .await;
    if cfg!(feature = "v4l2") {
        assert_eq!(code, Some(5));
        assert_eq!(line(&stdout, "camera"), "check camera: FAILED");
    } else {
        assert_eq!(code, Some(2));
        assert!(stdout.is_empty(), "{stdout:#?}");
    }
}
