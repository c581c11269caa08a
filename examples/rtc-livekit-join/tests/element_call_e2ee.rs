//! Media encryption with the real Element Call (feature `e2ee-per-participant`; `cargo xtask
//! test` runs these with it): Element Call 0.26.1 in headless Chromium and the program in a call
//! of an encrypted room exchange media keys over Matrix (Olm-encrypted to-device) and decrypt
//! each other's video (and Element Call the program's audio); a second program joining and
//! leaving makes everybody rotate keys with no gap in the pictures; the program restarted with its store is decrypted again.
//!
//! Needs `cargo xtask devstack up` (or `cargo xtask test`).

mod common;

use std::time::Duration;

use common::{Bot, Setup, field, localpart};
use rtc_test_support::{ElementCall, Login};
use serde_json::Value;

/// The program's environment in `setup`'s room: the seed's variables, red frames.
fn program_env(setup: &Setup, user: &str, store: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("HOMESERVER_URL", setup.stack.homeserver_url.clone()),
        ("MATRIX_USERNAME", user.to_owned()),
        ("MATRIX_PASSWORD", user.to_owned()),
        ("ROOM_ID", setup.room_id.clone()),
        ("V4L2_VIDEO_SOURCE", "test_red".into()),
        ("MATRIX_STORE_DIR", store.display().to_string()),
        ("STATUS_INTERVAL_SECS", "2".into()),
    ]
}

/// A `video received` line of Element Call's camera after `mark`: green and moving, at a steady
/// rate, so decrypted.
async fn decodes_element_call(bot: &Bot, mark: usize, within: Duration) -> String {
    let line = bot
        .wait_line_since(mark, within, |l| {
            l.contains("video received")
                && l.contains("OWNEREC")
                && field(l, "motion").and_then(|m| m.parse::<f64>().ok()).is_some_and(|m| m > 0.0)
                && field(l, "fps").and_then(|f| f.parse::<f64>().ok()).is_some_and(|f| f > 5.0)
        })
        .await;
    let rgb: Vec<u32> =
        field(&line, "mean_rgb").unwrap().split(',').map(|c| c.parse().unwrap()).collect();
    assert!(
        rgb[1] > 80 && rgb[1] > rgb[0] * 2 && rgb[1] > rgb[2] * 2,
        "Chromium's green camera, decrypted: {rgb:?}"
    );
    line
}

fn screenshot(name: &str) -> std::path::PathBuf {
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let path = artifacts.join(name);
    let _ = std::fs::remove_file(&path);
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotate_when_a_member_comes_and_goes_and_the_video_never_stops() {
    let setup = Setup::encrypted("ece2ee").await;
    let second = setup.hs.register_unique("ece2eesecond").await.unwrap();
    setup.hs.invite(&setup.owner, &setup.room_id, &second).await.unwrap();
    setup.hs.join(&second, &setup.room_id).await.unwrap();

    // The program sends a tone too: Element Call decrypts its audio as well as its video.
    let mut env = program_env(&setup, &setup.password, &setup.store);
    env.push(("AUDIO_SOURCE", "tone".into()));
    let bot = Bot::start(&env);
    bot.wait_line(Duration::from_secs(60), |l| l.contains("waiting for a call in the room")).await;
    bot.wait_line(Duration::from_secs(1), |l| l.contains("the room is encrypted")).await;

    let owner_name = localpart(&setup.owner.user_id);
    let ec = setup.hs.login(&owner_name, &owner_name, "OWNEREC").await.unwrap();
    let picture = screenshot("element-call-decrypts-the-program.png");
    let mut browser = ElementCall::start(
        &setup.stack,
        Login::Session(&ec),
        &setup.room_id,
        &[
            ("EXPECT_PARTICIPANT", localpart(&setup.bot.user_id)),
            ("EXPECT_VIDEO", "red".into()),
            ("EXPECT_TONE", "440".into()),
            ("WATCH_FRAMES", "1".into()),
            ("STAY_SECONDS", "50".into()),
            ("HANGUP", "1".into()),
            ("SCREENSHOT", picture.display().to_string()),
        ],
    )
    .expect("node runs the Element Call driver");

    // Element Call decrypts the program's red video; the program decrypts Element Call's camera.
    let seen = browser.wait("video-seen", None, Duration::from_secs(90)).await.unwrap();
    eprintln!("Element Call decrypted the program's video: {seen}");
    decodes_element_call(&bot, 0, Duration::from_secs(60)).await;
    assert!(bot.logged("media key sent"), "{}", bot.log());
    // ...and Element Call's microphone: packets that did not decrypt never reach the program.
    let audio = bot
        .wait_line(Duration::from_secs(30), |l| {
            l.contains("audio received")
                && l.contains("OWNEREC")
                && field(l, "packets_per_s")
                    .and_then(|p| p.parse::<f64>().ok())
                    .is_some_and(|p| p > 10.0)
        })
        .await;
    eprintln!("the program decrypts Element Call's audio: {audio}");

    // Once the keys are older than 10 s, a second program joins (everybody rotates) and leaves
    // (everybody rotates again, without it).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let second_name = localpart(&second.user_id);
    let second_store = setup.store.with_extension("second");
    let mut other = Bot::start(&program_env(&setup, &second_name, &second_store));
    other.wait_line(Duration::from_secs(60), |l| l.contains("milestone=\"first_frame\"")).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mark = bot.mark();
    other.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(other.wait_exit(Duration::from_secs(5)).await.code(), Some(0), "{}", other.log());

    // After the rotations the program still decrypts Element Call, and sent keys past index 0.
    decodes_element_call(&bot, mark, Duration::from_secs(15)).await;
    let rotated = bot
        .wait_line(Duration::from_secs(10), |l| {
            l.contains("media key sent")
                && field(l, "index").and_then(|i| i.parse::<u8>().ok()).is_some_and(|i| i >= 1)
        })
        .await;
    eprintln!("the program rotated: {rotated}");

    // Element Call's picture of the program never stood still for more than 2 s.
    let gaps = browser.wait("frame-gaps", None, Duration::from_secs(60)).await.unwrap();
    let longest = gaps["longest_ms"].as_u64().unwrap();
    let (status, events) = browser.finish(Duration::from_secs(60)).await.unwrap();
    let dump = || events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    assert!(
        status.success(),
        "the Element Call run failed:\n{}\nthe program:\n{}",
        dump(),
        bot.log()
    );
    let heard = events.iter().find(|e| e["event"] == "tone-heard").expect("the tone was heard");
    eprintln!("Element Call decrypted the program's audio: {heard}");
    assert!(heard["margin_db"].as_f64().unwrap() >= 20.0, "{heard}");
    assert!(
        longest <= 2000,
        "Element Call's picture of the program stood still {longest} ms: {gaps}\nElement Call:\n{}\nthe program:\n{}\nthe second program:\n{}",
        dump(),
        bot.log(),
        other.log()
    );

    bot.signal(nix::sys::signal::Signal::SIGTERM);
    let mut bot = bot;
    assert_eq!(bot.wait_exit(Duration::from_secs(5)).await.code(), Some(0), "{}", bot.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_program_restarted_with_its_store_is_decrypted_again() {
    let setup = Setup::encrypted("ecrestart").await;
    let env = program_env(&setup, &setup.password, &setup.store);
    let mut bot = Bot::start(&env);
    let login = bot.wait_line(Duration::from_secs(60), |l| l.contains("logged in user=")).await;
    let device = field(&login, "device").expect("the program logs its device").to_owned();
    bot.wait_line(Duration::from_secs(60), |l| l.contains("waiting for a call in the room")).await;

    let owner_name = localpart(&setup.owner.user_id);
    let ec = setup.hs.login(&owner_name, &owner_name, "OWNEREC").await.unwrap();
    let mut browser = ElementCall::start(
        &setup.stack,
        Login::Session(&ec),
        &setup.room_id,
        &[
            ("EXPECT_VIDEO", "red".into()),
            ("WATCH_RUNS", "2".into()),
            ("STAY_SECONDS", "5".into()),
            ("HANGUP", "1".into()),
        ],
    )
    .expect("node runs the Element Call driver");
    browser.wait("video-seen", Some(1), Duration::from_secs(90)).await.unwrap();
    bot.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(bot.wait_exit(Duration::from_secs(5)).await.code(), Some(0), "{}", bot.log());
    browser.wait("video-gone", Some(1), Duration::from_secs(30)).await.unwrap();

    // The same store: the same device, with its Olm account; new media keys, decrypted again.
    let restarted = Bot::start(&env);
    let login = restarted
        .wait_line(Duration::from_secs(60), |l| l.contains("logged in") && l.contains("user="))
        .await;
    assert_eq!(field(&login, "device"), Some(device.as_str()), "the stored device is reused");
    let seen = browser.wait("video-seen", Some(2), Duration::from_secs(60)).await;
    let seen = seen.unwrap_or_else(|e| panic!("{e}\nthe restarted program:\n{}", restarted.log()));
    eprintln!("Element Call decrypts the restarted program: {seen}");
    decodes_element_call(&restarted, 0, Duration::from_secs(30)).await;
    restarted.signal(nix::sys::signal::Signal::SIGTERM);
    let mut restarted = restarted;
    assert_eq!(restarted.wait_exit(Duration::from_secs(5)).await.code(), Some(0));
    browser.stop().await;
}

/// `MATRIX_RECOVERY_KEY`: the account's recovery (cross-signing and key backup, set up here by
/// another device of the account) is imported and the program's device is verified; a wrong
/// key ends the program with its line and exit code 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recovery_key_verifies_the_device_and_a_wrong_one_is_refused() {
    let setup = Setup::encrypted("ecrecovery").await;
    // Another device of the bot's account turns recovery on, as Element would.
    let other = matrix_sdk::Client::builder()
        .homeserver_url(&setup.stack.homeserver_url)
        .build()
        .await
        .unwrap();
    other
        .matrix_auth()
        .login_username(&setup.password, &setup.password)
        .device_id("SETUPDEVICE")
        .send()
        .await
        .unwrap();
    other.sync_once(matrix_sdk::config::SyncSettings::default()).await.unwrap();
    other.encryption().wait_for_e2ee_initialization_tasks().await;
    bootstrap_cross_signing(&other, &setup.password).await;
    let recovery_key = other.encryption().recovery().enable().await.expect("recovery is set up");
    let status = other.encryption().cross_signing_status().await.expect("cross-signing status");
    assert!(status.is_complete(), "the account has cross-signing keys: {status:?}");

    let mut env = program_env(&setup, &setup.password, &setup.store);
    env.push(("MATRIX_RECOVERY_KEY", "EsTc 1234 abcd wrong key".into()));
    let mut wrong = Bot::start(&env);
    let status = wrong.wait_exit(Duration::from_secs(60)).await;
    assert_eq!(status.code(), Some(3), "{}", wrong.log());
    assert!(wrong.last_line().contains("MATRIX_RECOVERY_KEY was not accepted"), "{}", wrong.log());
    assert!(!wrong.log().contains("EsTc 1234"), "the key is not quoted");

    env.pop();
    env.push(("MATRIX_RECOVERY_KEY", recovery_key.clone()));
    let mut right = Bot::start(&env);
    let imported =
        right.wait_line(Duration::from_secs(60), |l| l.contains("recovery key imported")).await;
    eprintln!("{imported}");
    let login = right.wait_line(Duration::from_secs(1), |l| l.contains("user=")).await;
    let device = field(&login, "device").unwrap().to_owned();
    assert!(!right.log().contains(&recovery_key), "the key never reaches the log");
    // The account's other device sees the program's device signed by the account.
    let user_id: matrix_sdk::ruma::OwnedUserId = setup.bot.user_id.parse().unwrap();
    let verified = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let _ = other.encryption().request_user_identity(&user_id).await;
            other.sync_once(matrix_sdk::config::SyncSettings::default()).await.unwrap();
            let found = other.encryption().get_device(&user_id, device.as_str().into()).await;
            if found.ok().flatten().is_some_and(|d| d.is_cross_signed_by_owner()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
    .await;
    assert!(
        verified.is_ok(),
        "the program's device is cross-signed by its account:\n{}",
        right.log()
    );
    right.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(right.wait_exit(Duration::from_secs(5)).await.code(), Some(0));
}

/// Creates the account's cross-signing keys, answering the homeserver's password check.
async fn bootstrap_cross_signing(client: &matrix_sdk::Client, password: &str) {
    use matrix_sdk::ruma::api::client::uiaa;
    let Err(error) = client.encryption().bootstrap_cross_signing(None).await else { return };
    let info = error.as_uiaa_response().expect("only the password check may stop it").clone();
    let user_id = client.user_id().unwrap().to_string();
    let mut auth = uiaa::Password::new(
        uiaa::UserIdentifier::Matrix(uiaa::MatrixUserIdentifier::new(user_id)),
        password.to_owned(),
    );
    auth.session = info.session.clone();
    client
        .encryption()
        .bootstrap_cross_signing(Some(uiaa::AuthData::Password(auth)))
        .await
        .expect("cross-signing keys with the password");
}
