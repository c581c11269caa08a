//! Audio with Element Call 0.26.1 (headless Chromium, fake microphone and camera), end to end:
//!
//! * the program publishes a 440 Hz tone (`AUDIO_SOURCE=tone`): Element Call's Web Audio
//!   analyser finds it ≥ 20 dB above the rest of the spectrum, and Element Call shows the
//!   program's tile as speaking (from the levels the program sends, which LiveKit reads);
//! * the program records Element Call's fake microphone and camera (`--record DIR`); when
//!   Element Call hangs up the files are finished, and ffmpeg (an independent decoder) reads
//!   them: the audio lasts as long as the recording did (within 5 %) and carries the fake
//!   microphone's 400 Hz beep; the IVF has every frame the program wrote; a snapshot exists.
//!
//! A third member (a membership without media) makes Element Call use its grid layout: with two
//! members it shows no speaking indicator at all.
//!
//! Needs `cargo xtask devstack up` (or `cargo xtask test`) and ffmpeg (installed by it).
#![recursion_limit = "256"]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Bot, Setup, field, localpart};
use matrix_sdk::Client;
use matrix_sdk::config::SyncSettings;
use matrix_sdk_rtc::{MembershipTimings, OwnMembership};
use matrix_sdk_rtc_livekit::rtc_media::audio::tone_power;
use rtc_test_support::{ElementCall, Login};
use serde_json::Value;

/// Chromium's fake microphone: a 400 Hz square wave, 20 ms every 500 ms.
const FAKE_MICROPHONE_HZ: f64 = 400.0;

/// A member of the call without media, on a device of its own.
async fn silent_member(setup: &Setup) -> (Client, OwnMembership) {
    let user = setup.hs.register_unique("ecthird").await.unwrap();
    let name = localpart(&user.user_id);
    setup.hs.invite(&setup.owner, &setup.room_id, &user).await.unwrap();
    setup.hs.join(&user, &setup.room_id).await.unwrap();
    let client =
        Client::builder().homeserver_url(&setup.stack.homeserver_url).build().await.unwrap();
    client.matrix_auth().login_username(&name, &name).device_id("THIRD").send().await.unwrap();
    client.sync_once(SyncSettings::default()).await.unwrap();
    let syncing = client.clone();
    tokio::spawn(async move { syncing.sync(SyncSettings::default()).await });
    let room =
        client.get_room(&setup.room_id.parse::<matrix_sdk::ruma::OwnedRoomId>().unwrap()).unwrap();
    let membership =
        OwnMembership::join(&room, &setup.stack.auth_service_url, MembershipTimings::default())
            .await
            .unwrap();
    membership.wait_joined(Duration::from_secs(10)).await.unwrap();
    (client, membership)
}

/// `ffprobe` of one value of a file.
fn ffprobe(path: &Path, args: &[&str]) -> String {
    let output = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .args(["-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs (cargo xtask devstack up installs ffmpeg)");
    assert!(
        output.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The audio of `path` decoded by ffmpeg: mono 16-bit at 48 kHz.
fn ffmpeg_pcm(path: &Path) -> Vec<i16> {
    let output = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(path)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(
        output.status.success(),
        "ffmpeg {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect()
}

/// The files in `dir` whose names end with `suffix`.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn element_call_hears_the_program_and_the_program_records_element_call() {
    let setup = Setup::new("eca").await;
    let (_third, membership) = silent_member(&setup).await;
    let record_dir = std::env::temp_dir().join(rtc_test_support::unique_name("rtc-record"));
    let mut env = setup.env();
    env.push(("AUDIO_SOURCE", "tone".into()));
    env.push(("RECORD_DIR", record_dir.display().to_string()));
    env.push(("RECORD_SNAPSHOT_SECS", "5".into()));
    let mut bot = Bot::start(&env);
    bot.wait_line(Duration::from_secs(60), |l| l.contains("publishing audio")).await;

    let owner_name = localpart(&setup.owner.user_id);
    let ec = setup.hs.login(&owner_name, &owner_name, "OWNEREC").await.unwrap();
    let bot_name = localpart(&setup.bot.user_id);
    let browser = ElementCall::start(
        &setup.stack,
        Login::Session(&ec),
        &setup.room_id,
        &[
            ("EXPECT_PARTICIPANT", bot_name.clone()),
            ("EXPECT_TONE", "440".into()),
            ("EXPECT_SPEAKER", bot_name.clone()),
            ("STAY_SECONDS", "40".into()),
            ("HANGUP", "1".into()),
        ],
    )
    .expect("node runs the Element Call driver");

    // The program records Element Call's microphone and camera from the moment it gets them.
    bot.wait_line(Duration::from_secs(90), |l| {
        l.contains("recording audio") && l.contains("OWNEREC")
    })
    .await;
    let recording_started = Instant::now();
    bot.wait_line(Duration::from_secs(30), |l| l.contains("recording video")).await;

    let (status, events) = browser.finish(Duration::from_secs(150)).await.unwrap();
    let dump = || events.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    assert!(
        status.success(),
        "the Element Call run failed:\n{}\nthe program:\n{}",
        dump(),
        bot.log()
    );
    let event = |name: &str| {
        events
            .iter()
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("no `{name}`:\n{}", dump()))
            .clone()
    };
    let heard = event("tone-heard");
    eprintln!("Element Call heard the program: {heard}");
    assert!(heard["margin_db"].as_f64().unwrap() >= 20.0, "{heard}");
    assert!((heard["peak_hz"].as_f64().unwrap() - 440.0).abs() <= 10.0, "{heard}");
    let speaking = event("speaker-seen");
    eprintln!("Element Call shows the program speaking: {speaking}");

    // Element Call left: its tracks end and the files are finished.
    let finished =
        bot.wait_line(Duration::from_secs(30), |l| l.contains("audio recording finished")).await;
    let recorded_for = recording_started.elapsed().as_secs_f64();
    let video_done =
        bot.wait_line(Duration::from_secs(10), |l| l.contains("video recording finished")).await;
    eprintln!("{finished}\n{video_done}");

    let oggs = files(&record_dir, ".ogg");
    assert_eq!(oggs.len(), 1, "one audio file: {oggs:?}");
    let ogg = &oggs[0];
    let name = ogg.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.contains(&localpart(&setup.owner.user_id)) && name.contains("OWNEREC"),
        "who: {name}"
    );
    assert!(name.starts_with("20"), "when: {name}");
    let duration: f64 = ffprobe(ogg, &["-show_entries", "format=duration"]).parse().unwrap();
    assert!(
        (duration - recorded_for).abs() <= 0.05 * recorded_for,
        "the audio lasts {duration:.2} s, the recording {recorded_for:.2} s"
    );
    eprintln!("recorded for {recorded_for:.2} s; ffprobe: {duration:.2} s");
    let pcm = ffmpeg_pcm(ogg);
    assert!(((pcm.len() as f64 / 48_000.0) - duration).abs() < 0.1, "decoded as long as announced");
    let at_beep = tone_power(&pcm, FAKE_MICROPHONE_HZ);
    for other in [250.0, 650.0, 1000.0] {
        let db = 10.0 * (at_beep / tone_power(&pcm, other)).log10();
        eprintln!("the beep is {db:.1} dB above {other} Hz");
        assert!(db > 10.0, "the fake microphone's beep is only {db:.1} dB above {other} Hz");
    }

    let ivfs = files(&record_dir, ".ivf");
    assert_eq!(ivfs.len(), 1, "one video file: {ivfs:?}");
    let written: u64 = field(&video_done, "frames").unwrap().parse().unwrap();
    let counted: u64 = ffprobe(
        &ivfs[0],
        &["-count_frames", "-select_streams", "v:0", "-show_entries", "stream=nb_read_frames"],
    )
    .parse()
    .unwrap();
    assert_eq!(counted, written, "ffmpeg decodes every frame the program wrote");
    let fps = written as f64 / recorded_for;
    eprintln!("video: {written} frames written, {counted} decoded by ffmpeg, {fps:.1} fps");
    assert!((10.0..=31.0).contains(&fps), "{written} frames in {recorded_for:.1} s");
    let pngs = files(&record_dir, ".png");
    assert!(!pngs.is_empty(), "snapshots every 5 s");
    let size = ffprobe(&pngs[0], &["-show_entries", "stream=width,height"]);
    assert!(size.contains(','), "a picture: {size}");

    bot.signal(nix::sys::signal::Signal::SIGTERM);
    let status = bot.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", bot.log());
    membership.leave().await.unwrap();
    let _ = std::fs::remove_dir_all(&record_dir);
}
