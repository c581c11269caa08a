//! Media encryption with the real Element Call (feature `e2ee-per-participant`): Element Call
//! 0.26.1 in headless Chromium starts a call in an encrypted room; the program joins; the two
//! exchange media keys over Matrix (Olm-encrypted to-device); Element Call decrypts the
//! program's video and shows it red; the program decrypts and decodes Element Call's camera.
//!
//! Needs `cargo xtask devstack up` (or `cargo xtask test`, which runs it with the feature).

mod common;

use std::time::Duration;

use common::{Bot, Setup, field, localpart};
use rtc_test_support::{ElementCall, Login};
use serde_json::Value;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn element_call_and_the_program_decrypt_each_other() {
    let setup = Setup::encrypted("ece2ee").await;
    let env = vec![
        ("HOMESERVER_URL", setup.stack.homeserver_url.clone()),
        ("MATRIX_USERNAME", setup.password.clone()),
        ("MATRIX_PASSWORD", setup.password.clone()),
        ("ROOM_ID", setup.room_id.clone()),
        ("V4L2_VIDEO_SOURCE", "test_red".into()),
        ("MATRIX_STORE_DIR", setup.store.display().to_string()),
        ("STATUS_INTERVAL_SECS", "2".into()),
    ];
    let mut bot = Bot::start(&env);
    bot.wait_line(Duration::from_secs(60), |l| l.contains("waiting for a call in the room")).await;
    bot.wait_line(Duration::from_secs(1), |l| l.contains("the room is encrypted")).await;

    let owner_name = localpart(&setup.owner.user_id);
    let ec = setup.hs.login(&owner_name, &owner_name, "OWNEREC").await.unwrap();
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("element-call-decrypts-the-program.png");
    let _ = std::fs::remove_file(&screenshot);
    let browser = ElementCall::start(
        &setup.stack,
        Login::Session(&ec),
        &setup.room_id,
        &[
            ("EXPECT_PARTICIPANT", localpart(&setup.bot.user_id)),
            ("EXPECT_VIDEO", "red".into()),
            ("STAY_SECONDS", "25".into()),
            ("HANGUP", "1".into()),
            ("SCREENSHOT", screenshot.display().to_string()),
        ],
    )
    .expect("node runs the Element Call driver");

    // The program decrypts Element Call's camera: green, moving, steady.
    let received = bot
        .wait_line(Duration::from_secs(90), |l| {
            l.contains("video received")
                && l.contains("OWNEREC")
                && field(l, "motion").and_then(|m| m.parse::<f64>().ok()).is_some_and(|m| m > 0.0)
        })
        .await;
    eprintln!("the program: {received}");
    let rgb: Vec<u32> =
        field(&received, "mean_rgb").unwrap().split(',').map(|c| c.parse().unwrap()).collect();
    assert!(
        rgb[1] > 80 && rgb[1] > rgb[0] * 2 && rgb[1] > rgb[2] * 2,
        "Chromium's green camera, decrypted: {rgb:?}"
    );

    let (status, events) = browser.finish(Duration::from_secs(150)).await.unwrap();
    let dump = || events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    assert!(
        status.success(),
        "the Element Call run failed:\n{}\nthe program:\n{}",
        dump(),
        bot.log()
    );
    let seen = events.iter().find(|e| e["event"] == "video-seen").expect("Element Call saw red");
    eprintln!("Element Call decrypted the program's video: {seen}");
    assert!(bot.log().contains("media key sent"), "{}", bot.log());

    bot.signal(nix::sys::signal::Signal::SIGTERM);
    let status = bot.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0), "{}", bot.log());
}
