//! At the most verbose log level, a connection that joins, publishes, resumes and leaves, and one
//! that the server refuses, never log the access token; errors do not carry it either.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestRoom, spawn_pattern_publisher};
use livekit_str0m::{ConnectError, Room, RoomOptions, VideoTrackOptions};
use rtc_media::pattern::TestPattern;

/// Collects every log line of the process.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_and_errors_hold_no_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter("trace")
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let room = TestRoom::create("no-secrets").await;
    let token = room.token("careful");
    let (connected, _events) =
        Room::connect(room.url(), &token, RoomOptions::default()).await.expect("connects");
    let track = connected
        .publish_video(VideoTrackOptions { width: 160, height: 120, ..Default::default() })
        .await
        .expect("publish");
    let frames = spawn_pattern_publisher(track, TestPattern::RED, 160, 120, 15);
    tokio::time::sleep(Duration::from_secs(1)).await;
    connected.disconnect().await;
    frames.await.unwrap();

    // A token signed with the wrong secret: the server refuses it and quotes it back.
    let forged = {
        let (head, _) = token.rsplit_once('.').unwrap();
        format!("{head}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    };
    let error = Room::connect(room.url(), &forged, RoomOptions::default()).await.unwrap_err();
    assert!(matches!(error, ConnectError::Refused { status: 401, .. }), "{error:?}");
    let shown = format!("{error} {error:?}");

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.len() > 10_000, "trace logging was captured ({} bytes)", logs.len());
    // Any 24 characters of a token's claims or signature count as a leak (the header is the
    // same in every token and says nothing).
    for (what, secret) in [("token", token.as_str()), ("refused token", forged.as_str())] {
        let (_, private) = secret.split_once('.').unwrap();
        let bytes = private.as_bytes();
        for window in bytes.windows(24) {
            let piece = std::str::from_utf8(window).unwrap();
            assert!(!logs.contains(piece), "the logs hold part of the {what}");
            assert!(!shown.contains(piece), "the error holds part of the {what}: {shown}");
        }
    }
}
