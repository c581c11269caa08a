//! The echo bot with Element Call 0.26.1 (headless Chromium): Element Call's camera shows a
//! picture that is red on the left and blue on the right (a Y4M file as Chromium's fake
//! camera); the bot sends it back mirrored, and Element Call shows the bot's tile blue on the
//! left and red on the right. It sends the fake microphone's 400 Hz beep back too, and Element
//! Call hears it in the bot's audio.
//!
//! Needs `cargo xtask devstack up` (or `cargo xtask test`).

use std::process::Stdio;
use std::time::Duration;

use rtc_test_support::{ElementCall, Homeserver, Login, StackInfo, unique_name};
use serde_json::Value;
use tokio::io::AsyncBufReadExt as _;

const WIDTH: usize = 320;
const HEIGHT: usize = 240;

/// One Y4M frame, red (BT.601 limited range) on the left half and blue on the right.
fn red_blue_y4m() -> std::path::PathBuf {
    let (red, blue) = ((81u8, 90u8, 240u8), (41u8, 240u8, 110u8));
    let pick = |x: usize, w: usize| if x < w / 2 { red } else { blue };
    let mut file =
        format!("YUV4MPEG2 W{WIDTH} H{HEIGHT} F30:1 Ip A1:1 C420jpeg\nFRAME\n").into_bytes();
    for _ in 0..HEIGHT {
        file.extend((0..WIDTH).map(|x| pick(x, WIDTH).0));
    }
    for plane in [1, 2] {
        for _ in 0..HEIGHT / 2 {
            file.extend((0..WIDTH / 2).map(|x| {
                let (_, u, v) = pick(x, WIDTH / 2);
                if plane == 1 { u } else { v }
            }));
        }
    }
    let path = std::env::temp_dir().join(format!("{}.y4m", unique_name("red-blue")));
    std::fs::write(&path, file).unwrap();
    path
}

fn localpart(user_id: &str) -> String {
    user_id.trim_start_matches('@').split(':').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn element_call_sees_its_own_camera_mirrored_and_hears_its_own_beep() {
    let stack = StackInfo::require();
    let hs = Homeserver::new(&stack);
    let owner = hs.register_unique("echoowner").await.unwrap();
    let bot = hs.register_unique("echobot").await.unwrap();
    let room_id = hs.create_call_room(&owner, &[&bot]).await.unwrap();

    let bot_name = localpart(&bot.user_id);
    let mut echo = tokio::process::Command::new(env!("CARGO_BIN_EXE_example-rtc-echo-bot"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOMESERVER_URL", &stack.homeserver_url)
        .env("MATRIX_USERNAME", &bot_name)
        .env("MATRIX_PASSWORD", &bot_name)
        .env("ROOM_ID", &room_id)
        .env("RUST_LOG", "info,matrix_sdk=warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("the echo bot starts");
    let mut lines = tokio::io::BufReader::new(echo.stdout.take().unwrap()).lines();
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let collected = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("echo bot: {line}");
            collected.lock().unwrap().push(line);
        }
    });

    let owner_name = localpart(&owner.user_id);
    let ec = hs.login(&owner_name, &owner_name, "ECHOEC").await.unwrap();
    let y4m = red_blue_y4m();
    let browser = ElementCall::start(
        &stack,
        Login::Session(&ec),
        &room_id,
        &[
            ("FAKE_VIDEO_FILE", y4m.display().to_string()),
            ("EXPECT_PARTICIPANT", bot_name.clone()),
            // The bot's tile: the picture mirrored, blue on the left and red on the right.
            ("EXPECT_VIDEO", "halves:0,0,255|255,0,0".into()),
            ("EXPECT_TONE", "400".into()),
            ("STAY_SECONDS", "45".into()),
            ("HANGUP", "1".into()),
        ],
    )
    .expect("node runs the Element Call driver");
    let (status, events) = browser.finish(Duration::from_secs(150)).await.unwrap();
    let dump = || events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    let bot_log = || log.lock().unwrap().join("\n");
    assert!(status.success(), "Element Call failed:\n{}\nthe echo bot:\n{}", dump(), bot_log());
    let seen = events.iter().find(|e| e["event"] == "video-seen").expect("the mirror image");
    eprintln!("Element Call sees itself mirrored: {seen}");
    let heard = events.iter().find(|e| e["event"] == "tone-heard").expect("the beep");
    eprintln!("Element Call hears its beep from the bot: {heard}");
    assert!(heard["margin_db"].as_f64().unwrap() >= 20.0, "{heard}");
    assert!(bot_log().contains("mirroring video") && bot_log().contains("echoing audio"));

    // Element Call hung up: the bot, following the call, leaves it; Ctrl-C ends it.
    let _ = nix_free_interrupt(&echo);
    let exited = tokio::time::timeout(Duration::from_secs(10), echo.wait()).await;
    assert!(exited.is_ok(), "the echo bot ends on SIGINT:\n{}", bot_log());
    let _ = std::fs::remove_file(y4m);
}

/// Sends SIGINT (what Ctrl-C sends) to the child, with the `kill` command.
fn nix_free_interrupt(child: &tokio::process::Child) -> std::io::Result<std::process::ExitStatus> {
    let pid = child.id().expect("running").to_string();
    std::process::Command::new("kill").args(["-INT", &pid]).status()
}
