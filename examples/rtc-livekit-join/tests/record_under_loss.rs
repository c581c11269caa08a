//! Recording through a lossy network: the program reaches LiveKit through
//! `rtc_test_support::LossyLiveKit`, which drops 10 % of the datagrams on its path (both ways);
//! another participant publishes a 440 Hz tone. The program records it; SIGTERM finishes the
//! file; ffmpeg (an independent decoder) finds it as long as the recording was (within 5 %),
//! with the tone still dominant: lost packets are kept as gaps the decoder conceals.
//!
//! Needs `cargo xtask devstack up` (or `cargo xtask test`) and ffmpeg (installed by it).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::{Bot, Setup};
use matrix_sdk_rtc_livekit::livekit_str0m::media::encode_audio;
use matrix_sdk_rtc_livekit::livekit_str0m::{AudioTrackOptions, Room, RoomOptions, TrackError};
use matrix_sdk_rtc_livekit::rtc_media::audio::{
    OpusEncoder, OpusEncoderConfig, ToneSource, tone_power,
};
use matrixrtc_auth::access_token::{Claims, VideoGrant};
use matrixrtc_auth::room_service::RoomServiceClient;
use matrixrtc_auth::secret::Secret;
use rtc_test_support::{LossyLiveKit, unique_name};

const LOSS: f64 = 0.10;

fn token(setup: &Setup, room: &str, identity: &str) -> String {
    Claims::new(
        setup.stack.livekit_api_key.clone(),
        identity,
        VideoGrant::participant(room.to_owned()),
        SystemTime::now(),
        Duration::from_secs(3600),
    )
    .sign(&Secret::new(setup.stack.livekit_api_secret.clone()))
    .expect("test claims serialise")
}

fn the_ogg(dir: &Path) -> PathBuf {
    let oggs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ogg"))
        .collect();
    assert_eq!(oggs.len(), 1, "one audio file: {oggs:?}");
    oggs.into_iter().next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_audio_keeps_its_length_and_tone_through_ten_percent_loss() {
    let setup = Setup::new("loss").await;
    let room = unique_name("lossy-recording");
    RoomServiceClient::new(
        &setup.stack.livekit_url.parse().unwrap(),
        setup.stack.livekit_api_key.clone(),
        Secret::new(setup.stack.livekit_api_secret.clone()),
        Duration::from_secs(10),
    )
    .unwrap()
    .create_room(&room)
    .await
    .unwrap();

    // A participant with a 440 Hz tone, on a clean path.
    let (speaker, _events) = Room::connect(
        &setup.stack.livekit_url,
        &token(&setup, &room, "tone-publisher"),
        RoomOptions::default(),
    )
    .await
    .unwrap();
    let track = speaker.publish_audio(AudioTrackOptions::default()).await.unwrap();
    let writer = tokio::spawn(async move {
        let mut tone = ToneSource::new(440.0, 0.5, 1);
        let mut encoder = OpusEncoder::with_config(&OpusEncoderConfig::new(1)).unwrap();
        let mut ticker = tokio::time::interval(Duration::from_millis(20));
        for n in 0u32.. {
            ticker.tick().await;
            let timestamp = Duration::from_millis(20) * n;
            let Some(frame) = encode_audio(&mut encoder, &tone.next_samples(), timestamp).unwrap()
            else {
                continue;
            };
            if let Err(TrackError::Closed) = track.write(frame) {
                break;
            }
        }
    });

    // The program, recording, with a tenth of its datagrams lost.
    let lossy = LossyLiveKit::start(&setup.stack).await.unwrap();
    lossy.set_loss(LOSS);
    let record_dir = std::env::temp_dir().join(unique_name("rtc-record-loss"));
    let mut env = setup.env();
    env.retain(|(name, _)| *name != "V4L2_VIDEO_SOURCE");
    env.push(("LIVEKIT_SERVICE_URL", lossy.url().to_owned()));
    env.push(("LIVEKIT_TOKEN", token(&setup, &room, "recorder")));
    env.push(("RECORD_DIR", record_dir.display().to_string()));
    let mut bot = Bot::start(&env);
    bot.wait_line(Duration::from_secs(60), |l| {
        l.contains("recording audio") && l.contains("tone-publisher")
    })
    .await;
    let started = Instant::now();
    let before = lossy.stats();
    tokio::time::sleep(Duration::from_secs(15)).await;

    // SIGTERM finishes the file.
    bot.signal(nix::sys::signal::Signal::SIGTERM);
    let recorded_for = started.elapsed().as_secs_f64();
    let status = bot.wait_exit(Duration::from_secs(10)).await;
    assert_eq!(status.code(), Some(0), "{}", bot.log());
    assert!(bot.logged("audio recording finished"), "{}", bot.log());
    let to_bot = lossy.stats().to_client.since(&before.to_client);
    eprintln!("toward the program: {to_bot:?}");
    assert!(to_bot.total() > 500, "media went through the relay: {to_bot:?}");
    assert!((0.05..=0.15).contains(&to_bot.loss()), "about a tenth lost: {to_bot:?}");

    let ogg = the_ogg(&record_dir);
    let probe = Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0"])
        .arg(&ogg)
        .output()
        .expect("ffprobe runs (cargo xtask devstack up installs ffmpeg)");
    assert!(probe.status.success(), "{}", String::from_utf8_lossy(&probe.stderr));
    let duration: f64 = String::from_utf8_lossy(&probe.stdout).trim().parse().unwrap();
    eprintln!("recorded {recorded_for:.2} s, the file lasts {duration:.2} s");
    assert!(
        (duration - recorded_for).abs() <= 0.05 * recorded_for,
        "the audio lasts {duration:.2} s, the recording {recorded_for:.2} s"
    );
    let decoded = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&ogg)
        .args(["-f", "s16le", "-ac", "1", "-ar", "48000", "-"])
        .output()
        .expect("ffmpeg runs");
    assert!(decoded.status.success(), "{}", String::from_utf8_lossy(&decoded.stderr));
    let pcm: Vec<i16> =
        decoded.stdout.chunks_exact(2).map(|b| i16::from_le_bytes([b[0], b[1]])).collect();
    let at_tone = tone_power(&pcm, 440.0);
    for other in [220.0, 660.0, 1000.0, 3000.0] {
        let db = 10.0 * (at_tone / tone_power(&pcm, other)).log10();
        eprintln!("440 Hz is {db:.1} dB above {other} Hz");
        assert!(db >= 20.0, "the tone is only {db:.1} dB above {other} Hz");
    }

    speaker.disconnect().await;
    writer.abort();
    let _ = std::fs::remove_dir_all(&record_dir);
}
