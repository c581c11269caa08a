//! Interop with the official `livekit-client` JS SDK in headless Chromium, through the real
//! LiveKit server: it decodes what we publish, we decode what it publishes, and the pixels are
//! checked on both sides, in clear and with LiveKit's frame encryption as Element Call sets it up.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    TestRoom, centre_rgb, close_to, decode_pictures, init_logs, js_events, next_subscription, rgb,
    samples, spawn_encoding_publisher, spawn_js_client,
};
use livekit_str0m::e2ee::{GcmFrameCryptor, KeyProvider, KeyProviderOptions};
use livekit_str0m::{Room, RoomOptions, VideoCodec, VideoTrackOptions};
use rtc_media::codec::{
    H264Encoder, H264EncoderConfig, VideoEncoder, Vp8Encoder, Vp8EncoderConfig,
};
use rtc_media::pattern::TestPattern;

/// Publishes `pattern` from Rust as VP8 and lets livekit-client sample what it decodes.
async fn browser_watches(pattern: TestPattern, prefix: &str) -> Vec<common::JsEvent> {
    let mut config = Vp8EncoderConfig::new(640, 480);
    config.bitrate = 800_000;
    let encoder = Vp8Encoder::new(config).expect("VP8 encoder");
    browser_watches_codec(pattern, prefix, VideoCodec::Vp8, Box::new(encoder), None).await
}

/// A 16-byte key, as Element Call's members send them, and its index.
struct MediaKey {
    index: u8,
    key: [u8; 16],
}

impl MediaKey {
    /// Options for a client that encrypts and decrypts with this key as `identity`'s.
    fn room_options(&self, identity: &str) -> RoomOptions {
        let keys = Arc::new(KeyProvider::new(KeyProviderOptions::element_call()));
        keys.set_key(identity, self.index, &self.key).expect("a key");
        RoomOptions {
            frame_cryptor: Some(Arc::new(GcmFrameCryptor::new(keys))),
            ..Default::default()
        }
    }

    /// The script's `E2EE_KEYS` entry for `identity`.
    fn js(&self, identity: &str) -> String {
        let hex: String = self.key.iter().map(|b| format!("{b:02x}")).collect();
        format!("{identity}:{}:{hex}", self.index)
    }
}

/// Publishes `pattern` from Rust with `encoder` and lets livekit-client sample what it decodes.
async fn browser_watches_codec(
    pattern: TestPattern,
    prefix: &str,
    codec: VideoCodec,
    encoder: Box<dyn VideoEncoder>,
    key: Option<MediaKey>,
) -> Vec<common::JsEvent> {
    init_logs();
    let room = TestRoom::create(prefix).await;
    let options =
        key.as_ref().map_or_else(RoomOptions::default, |k| k.room_options("rust-publisher"));
    let (rust, _events) = Room::connect(room.url(), &room.token("rust-publisher"), options)
        .await
        .expect("the Rust client connects");
    let options = VideoTrackOptions {
        name: "pattern".into(),
        codec,
        width: 640,
        height: 480,
        encrypted: key.is_some(),
        ..Default::default()
    };
    let track = rust.publish_video(options).await.expect("publish");
    let publisher = spawn_encoding_publisher(track, encoder, pattern, 640, 480, 30);
    let started = Instant::now();
    let keys = key.as_ref().map(|k| k.js("rust-publisher")).unwrap_or_default();
    let browser = spawn_js_client(
        &room,
        "browser",
        &[
            ("MODE", "subscribe"),
            ("EXPECT_IDENTITY", "rust-publisher"),
            ("SAMPLES", "12"),
            ("SECONDS", "40"),
            ("E2EE_KEYS", &keys),
        ],
    );
    let (ok, events) = js_events(browser, Duration::from_secs(90)).await;
    eprintln!("browser finished after {:?}", started.elapsed());
    assert!(ok, "livekit-client subscribed and decoded pictures");
    let subscribed =
        events.iter().find(|e| e["event"] == "track-subscribed").expect("track-subscribed");
    assert_eq!(subscribed["identity"], "rust-publisher");
    assert_eq!(subscribed["codec"], codec.mime_type());
    rust.disconnect().await;
    let _ = publisher.await;
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_client_sees_red_frames_from_rust() {
    let events = browser_watches(TestPattern::RED, "js-sees-red").await;
    let samples = samples(&events);
    assert!(samples.len() >= 10, "enough samples: {}", samples.len());
    for sample in &samples {
        assert_eq!((sample["width"].as_u64(), sample["height"].as_u64()), (Some(640), Some(480)));
        let centre = rgb(&sample["center"]);
        assert!(close_to(centre, (255, 0, 0), 40), "the browser sees {centre:?}, not red");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_client_decodes_h264_from_rust() {
    let encoder = H264Encoder::new(H264EncoderConfig::new(640, 480)).expect("H.264 encoder");
    let events = browser_watches_codec(
        TestPattern::RED,
        "js-sees-h264",
        VideoCodec::H264,
        Box::new(encoder),
        None,
    )
    .await;
    let samples = samples(&events);
    assert!(samples.len() >= 10, "enough samples: {}", samples.len());
    for sample in &samples {
        let centre = rgb(&sample["center"]);
        assert!(close_to(centre, (255, 0, 0), 40), "the browser sees {centre:?}, not red");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_client_sees_a_moving_pattern_change() {
    let events = browser_watches(TestPattern::Moving, "js-sees-motion").await;
    let samples = samples(&events);
    let hashes: HashSet<&str> = samples.iter().filter_map(|s| s["hash"].as_str()).collect();
    // Twelve samples 250 ms apart of a pattern that moves every frame: nearly all differ.
    assert!(
        hashes.len() >= samples.len() - 2,
        "{} distinct of {} samples",
        hashes.len(),
        samples.len()
    );
    let frames: Vec<u64> = samples.iter().filter_map(|s| s["frames"].as_u64()).collect();
    assert!(
        frames.windows(2).all(|w| w[1] >= w[0]) && frames.last() > frames.first(),
        "frames decoded: {frames:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_decodes_a_canvas_published_by_livekit_client() {
    init_logs();
    let room = TestRoom::create("rust-sees-canvas").await;
    let (rust, mut events) =
        Room::connect(room.url(), &room.token("rust-subscriber"), RoomOptions::default())
            .await
            .expect("the Rust client connects");
    let browser = spawn_js_client(
        &room,
        "browser-canvas",
        &[
            ("MODE", "publish"),
            ("COLOR", "#2080f0"),
            ("WIDTH", "640"),
            ("HEIGHT", "480"),
            ("SECONDS", "30"),
        ],
    );
    let started = Instant::now();
    let mut track = next_subscription(&mut events, Duration::from_secs(30)).await;
    assert_eq!(track.info().participant_identity, "browser-canvas");
    assert_eq!(track.info().name, "canvas");
    let pictures = decode_pictures(&mut track, 20, Duration::from_secs(20)).await;
    eprintln!("20 pictures decoded {:?} after the browser started", started.elapsed());
    let last = pictures.last().unwrap();
    assert_eq!((last.width(), last.height()), (640, 480));
    let centre = centre_rgb(last);
    assert!(close_to(centre, (0x20, 0x80, 0xf0), 40), "Rust sees {centre:?}, not #2080f0");
    rust.disconnect().await;
    let (ok, _) = js_events(browser, Duration::from_secs(60)).await;
    assert!(ok, "the browser published");
}

/// Asserts that livekit-client decoded red from every sample, and reported no encryption error.
fn assert_all_red(events: &[common::JsEvent]) {
    let errors: Vec<_> = events.iter().filter(|e| e["event"] == "encryption-error").collect();
    assert!(errors.is_empty(), "livekit-client could not decrypt: {errors:?}");
    let samples = samples(events);
    assert!(samples.len() >= 10, "enough samples: {}", samples.len());
    for sample in &samples {
        let centre = rgb(&sample["center"]);
        assert!(close_to(centre, (255, 0, 0), 40), "the browser sees {centre:?}, not red");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_client_decrypts_vp8_from_rust() {
    let mut config = Vp8EncoderConfig::new(640, 480);
    config.bitrate = 800_000;
    let encoder = Vp8Encoder::new(config).expect("VP8 encoder");
    let key = MediaKey { index: 7, key: *b"vp8 media key 16" };
    let events = browser_watches_codec(
        TestPattern::RED,
        "js-decrypts-vp8",
        VideoCodec::Vp8,
        Box::new(encoder),
        Some(key),
    )
    .await;
    assert_all_red(&events);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livekit_client_decrypts_h264_from_rust() {
    let encoder = H264Encoder::new(H264EncoderConfig::new(640, 480)).expect("H.264 encoder");
    // Index 0: the frame ends in a zero byte, which an H.264 depacketiser could take for
    // trailing padding.
    let key = MediaKey { index: 0, key: *b"h264 media key16" };
    let events = browser_watches_codec(
        TestPattern::RED,
        "js-decrypts-h264",
        VideoCodec::H264,
        Box::new(encoder),
        Some(key),
    )
    .await;
    assert_all_red(&events);
}

async fn rust_decrypts_livekit_client(codec: &str, prefix: &str) {
    init_logs();
    let room = TestRoom::create(prefix).await;
    let key = MediaKey { index: 2, key: *b"browser's key 16" };
    let (rust, mut events) =
        Room::connect(room.url(), &room.token("rust-subscriber"), key.room_options("browser"))
            .await
            .expect("the Rust client connects");
    let keys = key.js("browser");
    let browser = spawn_js_client(
        &room,
        "browser",
        &[
            ("MODE", "publish"),
            ("COLOR", "#ff0000"),
            ("CODEC", codec),
            ("SECONDS", "30"),
            ("E2EE_KEYS", &keys),
        ],
    );
    let mut track = next_subscription(&mut events, Duration::from_secs(30)).await;
    assert!(track.info().encrypted, "livekit-client announces its track as encrypted");
    let pictures = decode_pictures(&mut track, 10, Duration::from_secs(20)).await;
    let centre = centre_rgb(pictures.last().unwrap());
    assert!(close_to(centre, (255, 0, 0), 40), "Rust decrypts and sees {centre:?}, not red");
    rust.disconnect().await;
    let (ok, events) = js_events(browser, Duration::from_secs(60)).await;
    assert!(ok, "the browser published");
    assert!(!events.iter().any(|e| e["event"] == "encryption-error"), "{events:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_decrypts_vp8_from_livekit_client() {
    rust_decrypts_livekit_client("vp8", "rust-decrypts-vp8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_decrypts_h264_from_livekit_client() {
    rust_decrypts_livekit_client("h264", "rust-decrypts-h264").await;
}
