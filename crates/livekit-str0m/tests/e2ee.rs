//! LiveKit's frame encryption (`GcmFrameCryptor`) between Rust clients through the real LiveKit
//! server, with Element Call's per-participant key settings: VP8 and H.264 arrive decrypted;
//! a client without the sender's key counts frames it cannot decrypt and decodes once the key
//! arrives; a rotated key keeps the picture going.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    TestRoom, centre_rgb, close_to, decode_pictures, init_logs, next_subscription,
    spawn_encoding_publisher,
};
use livekit_str0m::e2ee::{GcmFrameCryptor, KeyProvider, KeyProviderOptions};
use livekit_str0m::{Room, RoomEvents, RoomOptions, VideoCodec, VideoTrackOptions};
use rtc_media::codec::{
    H264Encoder, H264EncoderConfig, VideoEncoder, Vp8Encoder, Vp8EncoderConfig,
};
use rtc_media::pattern::TestPattern;

const WAIT: Duration = Duration::from_secs(20);

/// A client with its own key provider (Element Call's settings).
async fn connect(room: &TestRoom, identity: &str) -> (Room, RoomEvents, Arc<KeyProvider>) {
    let keys = Arc::new(KeyProvider::new(KeyProviderOptions::element_call()));
    let options = RoomOptions {
        frame_cryptor: Some(Arc::new(GcmFrameCryptor::new(keys.clone()))),
        ..Default::default()
    };
    let (connected, events) =
        Room::connect(room.url(), &room.token(identity), options).await.expect("connects");
    (connected, events, keys)
}

fn encoder(codec: VideoCodec) -> Box<dyn VideoEncoder> {
    match codec {
        VideoCodec::H264 => {
            Box::new(H264Encoder::new(H264EncoderConfig::new(320, 240)).expect("H.264 encoder"))
        }
        _ => Box::new(Vp8Encoder::new(Vp8EncoderConfig::new(320, 240)).expect("VP8 encoder")),
    }
}

async fn encrypted_media_flows(codec: VideoCodec, prefix: &str) {
    init_logs();
    let room = TestRoom::create(prefix).await;
    let (alice, _alice_events, alice_keys) = connect(&room, "alice").await;
    let (bob, mut bob_events, bob_keys) = connect(&room, "bob").await;
    let (carol, mut carol_events, carol_keys) = connect(&room, "carol").await;
    // Alice's first key has index 0: the trailer ends in a zero byte.
    let first = [0x11; 16];
    alice_keys.set_key("alice", 0, &first).unwrap();
    bob_keys.set_key("alice", 0, &first).unwrap();

    let options =
        VideoTrackOptions { codec, width: 320, height: 240, encrypted: true, ..Default::default() };
    let track = alice.publish_video(options).await.expect("publish");
    let frames = spawn_encoding_publisher(track, encoder(codec), TestPattern::RED, 320, 240, 15);

    let mut at_bob = next_subscription(&mut bob_events, WAIT).await;
    assert!(at_bob.info().encrypted);
    let pictures = decode_pictures(&mut at_bob, 5, WAIT).await;
    let centre = centre_rgb(pictures.last().unwrap());
    assert!(close_to(centre, (255, 0, 0), 40), "bob decrypts and sees {centre:?}");

    // Carol has no key yet: frames arrive and are counted, none decrypts.
    let mut at_carol = next_subscription(&mut carol_events, WAIT).await;
    let nothing = tokio::time::timeout(Duration::from_secs(2), at_carol.recv()).await;
    assert!(nothing.is_err(), "a frame reached carol without the key");
    assert!(at_carol.frames_undecryptable() > 0, "carol counts what she could not decrypt");
    // The key arrives late: carol decodes (from a keyframe she asks for).
    carol_keys.set_key("alice", 0, &first).unwrap();
    let pictures = decode_pictures(&mut at_carol, 3, WAIT).await;
    let centre = centre_rgb(pictures.last().unwrap());
    assert!(close_to(centre, (255, 0, 0), 40), "carol sees {centre:?} once she has the key");

    // Rotation, as Element Call does it: the receivers get the new key first, then the sender
    // switches to it.
    let second = [0x22; 16];
    bob_keys.set_key("alice", 1, &second).unwrap();
    alice_keys.set_key("alice", 1, &second).unwrap();
    let before = at_bob.frames_undecryptable();
    let pictures = decode_pictures(&mut at_bob, 10, WAIT).await;
    assert!(close_to(centre_rgb(pictures.last().unwrap()), (255, 0, 0), 40));
    assert_eq!(at_bob.frames_undecryptable(), before, "no frame lost to the rotation");
    // Carol missed the rotation: she can no longer decrypt.
    let before = at_carol.frames_undecryptable();
    tokio::time::sleep(Duration::from_millis(500)).await;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), at_carol.recv()).await
    {
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(at_carol.frames_undecryptable() > before, "old keys do not open new frames");

    alice.disconnect().await;
    bob.disconnect().await;
    carol.disconnect().await;
    frames.await.expect("publisher task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_vp8_is_decrypted_by_key_holders_only() {
    encrypted_media_flows(VideoCodec::Vp8, "e2ee-vp8").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_h264_is_decrypted_by_key_holders_only() {
    encrypted_media_flows(VideoCodec::H264, "e2ee-h264").await;
}
