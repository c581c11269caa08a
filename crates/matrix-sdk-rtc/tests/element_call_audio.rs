//! Audio between two real Element Calls 0.26.1 (headless Chromium, `interop/element-call-join.mjs`)
//! on the local stack: one speaks, the other hears the tone in the remote audio it receives
//! (`EXPECT_TONE`) and marks the speaker's tile as speaking (`EXPECT_SPEAKER`).
//!
//! * Chromium's fake microphone (`--use-fake-device-for-media-stream`) beeps: a 400 Hz square
//!   wave for 20 ms every 500 ms. It is heard, but LiveKit never calls it speaking (at least
//!   40% of each 400 ms above -35 dBov): too short.
//! * A continuous 500 Hz tone from a WAV file (`FAKE_AUDIO_FILE`) is heard all the time and
//!   makes the speaker's tile show as speaking.
//!
//! A third member (our bot: a membership, no media) makes Element Call use its grid layout: in
//! the one-on-one layout of two members it shows no speaking indicator at all. The two tests
//! run one after the other (two browsers each).
//!
//! Needs `cargo xtask devstack up` (or `cargo xtask test`).
#![recursion_limit = "256"]

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::Peer;
use matrix_sdk::config::SyncSettings;
use matrix_sdk_rtc::{MembershipTimings, OwnMembership};
use rtc_test_support::{ElementCall, Homeserver, Login, StackInfo, User, unique_name};
use serde_json::Value;

/// The fundamental of Chromium's fake microphone, measured: a 0/1 square wave of 110 samples a
/// period at 44.1 kHz (400.4 Hz); 398-400 Hz after Opus.
const FAKE_MICROPHONE_HZ: f64 = 400.0;
/// The tone of the WAV file that replaces the beep in the speaker test.
const WAV_TONE_HZ: f64 = 500.0;

/// One browser pair at a time.
static BROWSERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A call room with two Element Call sessions (speaker, listener) and our bot in the call.
struct CallOfThree {
    stack: StackInfo,
    room_id: String,
    speaker: User,
    speaker_name: String,
    listener: User,
    membership: OwnMembership,
}

impl CallOfThree {
    async fn new() -> Self {
        let stack = StackInfo::require();
        let hs = Homeserver::new(&stack);
        let alice = hs.register_unique("ecspeaker").await.unwrap();
        let bob = hs.register_unique("eclistener").await.unwrap();
        let bot = Peer::new(&stack, &hs, "rustbot", "RUSTBOT").await;
        let localpart =
            |user_id: &str| user_id.trim_start_matches('@').split(':').next().unwrap().to_owned();
        let (alice_name, bob_name) = (localpart(&alice.user_id), localpart(&bob.user_id));
        let room_id = hs.create_call_room(&alice, &[&bob, &bot.user]).await.unwrap();
        hs.join(&bob, &room_id).await.unwrap();
        hs.join(&bot.user, &room_id).await.unwrap();

        bot.client.sync_once(SyncSettings::default()).await.unwrap();
        let syncing = bot.client.clone();
        tokio::spawn(async move { syncing.sync(SyncSettings::default()).await });
        let membership = OwnMembership::join(
            &bot.room(&room_id),
            &stack.auth_service_url,
            MembershipTimings::default(),
        )
        .await
        .unwrap();
        membership.wait_joined(Duration::from_secs(10)).await.unwrap();

        let speaker = hs.login(&alice_name, &alice_name, "ALICEEC").await.unwrap();
        let listener = hs.login(&bob_name, &bob_name, "BOBEC").await.unwrap();
        Self { stack, room_id, speaker, speaker_name: alice_name, listener, membership }
    }

    fn start(&self, user: &User, settings: &[(&str, String)]) -> ElementCall {
        ElementCall::start(&self.stack, Login::Session(user), &self.room_id, settings)
            .expect("node runs the Element Call driver")
    }
}

fn f64_of(event: &Value, field: &str) -> f64 {
    event[field].as_f64().unwrap_or_else(|| panic!("no `{field}` in {event}"))
}

/// A mono 16-bit 48 kHz WAV file of `seconds` of a sine at `hz` (half of full scale).
fn tone_wav(hz: f64, seconds: u32) -> PathBuf {
    let rate = 48_000u32;
    let samples = rate * seconds;
    let mut wav = Vec::with_capacity(44 + 2 * samples as usize);
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + 2 * samples).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(2 * rate).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&(2 * samples).to_le_bytes());
    for n in 0..samples {
        let phase = 2.0 * std::f64::consts::PI * hz * f64::from(n) / f64::from(rate);
        #[allow(clippy::cast_possible_truncation)]
        let sample = (phase.sin() * 16_384.0).round() as i16;
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    let path = std::env::temp_dir().join(format!("{}.wav", unique_name("tone")));
    std::fs::write(&path, wav).unwrap();
    path
}

#[tokio::test]
async fn element_call_hears_another_element_calls_fake_microphone() {
    let _one_pair = BROWSERS.lock().await;
    let call = CallOfThree::new().await;
    let started = Instant::now();
    let speaker = call.start(&call.speaker, &[("STAY_SECONDS", "90".into())]);
    let mut listener = call.start(
        &call.listener,
        &[
            ("STAY_SECONDS", "60".into()),
            ("EXPECT_PARTICIPANT", call.speaker_name.clone()),
            ("EXPECT_TONE", FAKE_MICROPHONE_HZ.to_string()),
        ],
    );

    listener.wait("in-call", None, Duration::from_secs(90)).await.unwrap();
    let heard = listener.wait("tone-heard", None, Duration::from_secs(70)).await.unwrap();
    eprintln!(
        "the listener heard {FAKE_MICROPHONE_HZ} Hz {:.1} s after the browsers started: {heard}",
        started.elapsed().as_secs_f64()
    );
    let (margin, peak) = (f64_of(&heard, "margin_db"), f64_of(&heard, "peak_hz"));
    assert!(margin >= 20.0, "the tone stands only {margin} dB above the noise floor: {heard}");
    assert!((peak - FAKE_MICROPHONE_HZ).abs() <= 10.0, "the spectrum peaks at {peak} Hz: {heard}");

    listener.stop().await;
    speaker.stop().await;
    call.membership.leave().await.unwrap();
}

#[tokio::test]
async fn element_call_shows_another_element_call_speaking() {
    let _one_pair = BROWSERS.lock().await;
    let call = CallOfThree::new().await;
    let wav = tone_wav(WAV_TONE_HZ, 2);
    let started = Instant::now();
    let speaker = call.start(
        &call.speaker,
        &[("STAY_SECONDS", "90".into()), ("FAKE_AUDIO_FILE", wav.display().to_string())],
    );
    let mut listener = call.start(
        &call.listener,
        &[
            ("STAY_SECONDS", "30".into()),
            ("EXPECT_SPEAKER", call.speaker_name.clone()),
            ("EXPECT_TONE", WAV_TONE_HZ.to_string()),
            ("WATCH_AUDIO", "1".into()),
        ],
    );

    listener.wait("in-call", None, Duration::from_secs(90)).await.unwrap();
    let seen = listener.wait("speaker-seen", None, Duration::from_secs(40)).await.unwrap();
    eprintln!(
        "the listener marked {} as speaking {:.1} s after the browsers started: {seen}",
        call.speaker_name,
        started.elapsed().as_secs_f64()
    );
    let (status, events) = listener.finish(Duration::from_secs(60)).await.unwrap();
    let all: Vec<String> = events.iter().map(Value::to_string).collect();
    let all = all.join("\n");
    assert!(status.success(), "the listener failed:\n{all}");
    let event = |name: &str| {
        events
            .iter()
            .find(|e| e["event"] == name)
            .unwrap_or_else(|| panic!("no `{name}`:\n{all}"))
            .clone()
    };
    let heard = event("tone-heard");
    assert!(f64_of(&heard, "margin_db") >= 20.0, "a weak tone: {heard}");
    assert!((f64_of(&heard, "peak_hz") - WAV_TONE_HZ).abs() <= 10.0, "elsewhere: {heard}");
    // A steady tone without loss: every whole second after the first carries it.
    let stats = event("audio-stats");
    eprintln!("{heard}\n{stats}");
    let observed = f64_of(&stats, "seconds_observed");
    assert!(observed >= 10.0, "too short a watch: {stats}");
    assert_eq!(stats["seconds_with_tone"], stats["seconds_observed"], "gaps in the tone: {stats}");
    assert!(f64_of(&stats, "min_margin_db") >= 20.0, "a weak second: {stats}");

    speaker.stop().await;
    let _ = std::fs::remove_file(wav);
    call.membership.leave().await.unwrap();
}
