//! The product end to end: Element Call 0.26.1 in headless Chromium starts a call in an
//! unencrypted room; the program, configured only through the seed's environment variables,
//! joins it; Element Call shows the program's tile in red (checked in the page and on the
//! screenshot kept in `test-artifacts/`); the program decodes Element Call's fake camera; Element
//! Call hangs up and the program leaves LiveKit and the call; SIGTERM ends it cleanly.
//!
//! Needs `cargo xtask devstack up` (or `cargo xtask test`).

mod common;

use std::time::{Duration, Instant};

use common::{Bot, Setup, field, localpart};
use rtc_test_support::{ElementCall, Login};
use serde_json::Value;

/// The share of a PNG's pixels that are plainly red.
fn red_share(png_path: &std::path::Path) -> f64 {
    let decoder =
        png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png_path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buffer = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buffer).unwrap();
    let channels = info.color_type.samples();
    let pixels = &buffer[..info.buffer_size()];
    let red = pixels.chunks(channels).filter(|p| p[0] > 200 && p[1] < 60 && p[2] < 60).count();
    red as f64 / (pixels.len() / channels) as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn element_call_and_the_program_see_each_other_and_part() {
    let setup = Setup::new("ec").await;
    // The seed's variables only (V4L2_VIDEO_SOURCE=test_red); presence: the default, follow.
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
    let login = bot.wait_line(Duration::from_secs(1), |l| l.contains("logged in user=")).await;
    let device = field(&login, "device").expect("the program logs its device").to_owned();

    // Element Call, as the room's owner on a device of its own.
    let owner_name = localpart(&setup.owner.user_id);
    let ec = setup.hs.login(&owner_name, &owner_name, "OWNEREC").await.unwrap();
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let screenshot = artifacts.join("element-call-sees-the-program.png");
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

    // The program joins Element Call's call and decodes its fake camera: a green picture with
    // a moving part, at a steady rate. Under an emulator (`cargo xtask cross aarch64 --call`)
    // every instruction of the debug build is emulated and Chromium's 720p camera decodes at
    // 1-6 fps: there the picture must keep moving, at any rate.
    let min_fps = if std::env::var_os(common::PROGRAM_COMMAND_ENV).is_some() { 0.5 } else { 5.0 };
    bot.wait_line(Duration::from_secs(60), |l| l.contains("milestone=\"first_frame\"")).await;
    let received = bot
        .wait_line(Duration::from_secs(60), |l| {
            // Moving, at a steady rate: the first status line may still be the start.
            l.contains("video received")
                && l.contains("OWNEREC")
                && field(l, "motion").and_then(|m| m.parse::<f64>().ok()).is_some_and(|m| m > 0.0)
                && field(l, "fps").and_then(|f| f.parse::<f64>().ok()).is_some_and(|f| f > min_fps)
        })
        .await;
    eprintln!("the program: {received}");
    let rgb: Vec<u32> =
        field(&received, "mean_rgb").unwrap().split(',').map(|c| c.parse().unwrap()).collect();
    assert!(
        rgb[1] > 80 && rgb[1] > rgb[0] * 2 && rgb[1] > rgb[2] * 2,
        "Chromium's green camera: {rgb:?}"
    );

    let (status, events) = browser.finish(Duration::from_secs(120)).await.unwrap();
    let dump = || events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    assert!(status.success(), "the Element Call run failed:\n{}", dump());
    let seen = events.iter().find(|e| e["event"] == "video-seen").expect("Element Call saw red");
    eprintln!("Element Call decoded the program's video: {seen}");
    assert!(events.iter().any(|e| e["event"] == "hung-up"), "{}", dump());
    let share = red_share(&screenshot);
    assert!(
        share > 0.2,
        "the program's tile is red on the screenshot ({:.0} % red pixels)",
        share * 100.0
    );

    // Element Call hung up: the program follows it out of LiveKit and the call.
    bot.wait_line(Duration::from_secs(30), |l| l.contains("our membership left the call")).await;
    bot.wait_line(Duration::from_secs(5), |l| l.contains("LiveKit disconnected")).await;
    setup.wait_membership_gone(&device, Duration::from_secs(10)).await;
    if let Err(left) = setup.participants_within(Duration::from_secs(10), |p| p.is_empty()).await {
        panic!("still on LiveKit after leaving: {left}; the program's log:\n{}", bot.log());
    }

    // SIGTERM while waiting for the next call: a clean, quick exit.
    let stopping = Instant::now();
    bot.signal(nix::sys::signal::Signal::SIGTERM);
    let status = bot.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(status.code(), Some(0), "{}", bot.log());
    assert!(stopping.elapsed() < Duration::from_secs(3), "exit took {:?}", stopping.elapsed());
}
