//! Two Rust clients in one room of the real LiveKit server see and receive each other's video.

mod common;

use std::time::Duration;

use common::{
    TestRoom, centre_rgb, close_to, decode_pictures, init_logs, next_subscription,
    spawn_pattern_publisher,
};
use livekit_str0m::{Room, RoomEvent, RoomOptions, VideoTrackOptions};
use rtc_media::pattern::{Rgb, TestPattern};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_rust_clients_exchange_video() {
    init_logs();
    let room = TestRoom::create("rust-pair").await;
    let (alice, mut alice_events) =
        Room::connect(room.url(), &room.token("alice"), RoomOptions::default())
            .await
            .expect("alice connects");
    let (bob, mut bob_events) =
        Room::connect(room.url(), &room.token("bob"), RoomOptions::default())
            .await
            .expect("bob connects");

    let options = |name: &str| VideoTrackOptions {
        name: name.into(),
        width: 320,
        height: 240,
        ..Default::default()
    };
    let alice_track = alice.publish_video(options("alice-red")).await.expect("alice publishes");
    assert!(alice_track.sid().is_some_and(|sid| sid.starts_with("TR_")));
    let bob_track = bob.publish_video(options("bob-blue")).await.expect("bob publishes");
    let red = spawn_pattern_publisher(alice_track, TestPattern::RED, 320, 240, 15);
    let blue = spawn_pattern_publisher(bob_track, TestPattern::Solid(Rgb(0, 0, 255)), 320, 240, 15);

    let mut at_bob = next_subscription(&mut bob_events, Duration::from_secs(15)).await;
    assert_eq!(at_bob.info().participant_identity, "alice");
    assert_eq!(at_bob.info().name, "alice-red");
    let mut at_alice = next_subscription(&mut alice_events, Duration::from_secs(15)).await;
    assert_eq!(at_alice.info().participant_identity, "bob");

    let pictures = decode_pictures(&mut at_bob, 10, Duration::from_secs(15)).await;
    let last = pictures.last().unwrap();
    assert_eq!((last.width(), last.height()), (320, 240));
    assert!(close_to(centre_rgb(last), (255, 0, 0), 40), "bob sees {:?}", centre_rgb(last));
    let pictures = decode_pictures(&mut at_alice, 10, Duration::from_secs(15)).await;
    let last = pictures.last().unwrap();
    assert!(close_to(centre_rgb(last), (0, 0, 255), 40), "alice sees {:?}", centre_rgb(last));

    alice.disconnect().await;
    // Bob hears that alice left and her track is gone.
    let left = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match bob_events.recv().await {
                Some(RoomEvent::ParticipantDisconnected(p)) if p.identity == "alice" => {
                    return true;
                }
                Some(_) => {}
                None => return false,
            }
        }
    })
    .await;
    assert_eq!(left, Ok(true), "bob sees alice leave");
    // Frames still buffered come out first, then the track ends.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while at_bob.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "alice's track ends at bob");
    bob.disconnect().await;
    // Both publishers wrote until their track closed with the room.
    let (red, blue) = (red.await.expect("red publisher"), blue.await.expect("blue publisher"));
    assert!(red >= 10 && blue >= 10, "frames written: red {red}, blue {blue}");
}

/// A stand-in for LiveKit's AES-GCM frame cryptor: XOR with a key byte, keeping the clear
/// header bytes LiveKit keeps for VP8 (10 on keyframes, 3 otherwise) so the server can still
/// read the frame type. It shows where frames are transformed; the real cipher is elsewhere.
struct XorCryptor(u8);

impl XorCryptor {
    fn apply(&self, frame: &mut [u8], keyframe: bool) {
        let clear = if keyframe { 10 } else { 3 };
        frame.iter_mut().skip(clear).for_each(|b| *b ^= self.0);
    }
}

impl livekit_str0m::FrameCryptor for XorCryptor {
    fn encrypt(
        &self,
        context: &livekit_str0m::FrameContext<'_>,
        frame: &mut Vec<u8>,
    ) -> Result<(), livekit_str0m::FrameCryptError> {
        self.apply(frame, context.keyframe);
        Ok(())
    }

    fn decrypt(
        &self,
        _: &livekit_str0m::FrameContext<'_>,
        frame: &mut Vec<u8>,
    ) -> Result<(), livekit_str0m::FrameCryptError> {
        // The VP8 frame tag is in the clear: bit 0 says whether this is a keyframe.
        let keyframe = frame.first().is_some_and(|b| b & 1 == 0);
        self.apply(frame, keyframe);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_tracks_go_through_the_frame_cryptor_on_both_ends() {
    init_logs();
    let room = TestRoom::create("rust-e2ee-hook").await;
    let with_key = || RoomOptions {
        frame_cryptor: Some(std::sync::Arc::new(XorCryptor(0x5a))),
        ..Default::default()
    };
    let (alice, _alice_events) =
        Room::connect(room.url(), &room.token("alice"), with_key()).await.expect("alice");
    let (bob, mut bob_events) =
        Room::connect(room.url(), &room.token("bob"), with_key()).await.expect("bob");
    let (carol, mut carol_events) =
        Room::connect(room.url(), &room.token("carol"), RoomOptions::default())
            .await
            .expect("carol");
    let options =
        VideoTrackOptions { width: 320, height: 240, encrypted: true, ..Default::default() };
    let track = alice.publish_video(options).await.expect("publish");
    let frames = spawn_pattern_publisher(track, TestPattern::RED, 320, 240, 15);

    let mut at_bob = next_subscription(&mut bob_events, Duration::from_secs(15)).await;
    assert!(at_bob.info().encrypted, "the server announces the track as encrypted");
    let pictures = decode_pictures(&mut at_bob, 5, Duration::from_secs(15)).await;
    let centre = centre_rgb(pictures.last().unwrap());
    assert!(close_to(centre, (255, 0, 0), 40), "bob decrypts and sees {centre:?}");

    // Carol has no key: the track is announced, but no frame reaches her decoder.
    let mut at_carol = next_subscription(&mut carol_events, Duration::from_secs(15)).await;
    assert!(at_carol.info().encrypted);
    let nothing = tokio::time::timeout(Duration::from_secs(2), at_carol.recv()).await;
    assert!(nothing.is_err(), "an encrypted frame reached a client without a cryptor");

    alice.disconnect().await;
    bob.disconnect().await;
    carol.disconnect().await;
    frames.await.expect("publisher task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_and_manual_subscription_reach_the_other_side() {
    init_logs();
    let room = TestRoom::create("rust-mute").await;
    let (alice, _alice_events) =
        Room::connect(room.url(), &room.token("alice"), RoomOptions::default())
            .await
            .expect("alice");
    let manual = RoomOptions { auto_subscribe: false, ..Default::default() };
    let (bob, mut bob_events) =
        Room::connect(room.url(), &room.token("bob"), manual).await.expect("bob");
    let track = alice
        .publish_video(VideoTrackOptions { width: 160, height: 120, ..Default::default() })
        .await
        .expect("publish");
    let frames = spawn_pattern_publisher(track.clone(), TestPattern::RED, 160, 120, 15);

    // Without auto-subscribe bob hears of the track but gets no media until he asks.
    let published = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match bob_events.recv().await.expect("events") {
                RoomEvent::TrackPublished(info) => return info,
                RoomEvent::TrackSubscribed(_) => panic!("subscribed without asking"),
                _ => {}
            }
        }
    })
    .await
    .expect("bob hears of alice's track");
    assert_eq!(Some(published.track_sid.clone()), track.sid());
    let early = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Some(RoomEvent::TrackSubscribed(_)) = bob_events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(early.is_err(), "no subscription before asking");
    bob.set_subscribed(&published.track_sid, true).await;
    let mut remote = next_subscription(&mut bob_events, Duration::from_secs(10)).await;
    decode_pictures(&mut remote, 3, Duration::from_secs(10)).await;

    // Alice mutes: bob sees it.
    track.set_muted(true).await.expect("mute");
    let muted = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(RoomEvent::TrackMuted(info)) = bob_events.recv().await {
                return info;
            }
        }
    })
    .await
    .expect("bob sees the mute");
    assert!(muted.muted);

    // Bob unsubscribes: his track ends.
    bob.set_subscribed(&published.track_sid, false).await;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while remote.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the track ends after unsubscribing");

    alice.disconnect().await;
    bob.disconnect().await;
    frames.await.expect("publisher task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_a_marked_gap_and_a_fresh_keyframe() {
    init_logs();
    let room = TestRoom::create("rust-slow-reader").await;
    let (alice, _alice_events) =
        Room::connect(room.url(), &room.token("alice"), RoomOptions::default())
            .await
            .expect("alice");
    let (bob, mut bob_events) =
        Room::connect(room.url(), &room.token("bob"), RoomOptions::default()).await.expect("bob");
    let track = alice
        .publish_video(VideoTrackOptions { width: 160, height: 120, ..Default::default() })
        .await
        .expect("publish");
    let frames = spawn_pattern_publisher(track, TestPattern::Moving, 160, 120, 30);
    let mut remote = next_subscription(&mut bob_events, Duration::from_secs(10)).await;
    decode_pictures(&mut remote, 3, Duration::from_secs(10)).await;

    // Bob stops reading for longer than the track buffers (60 frames at 30 fps).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut buffered = 0;
    let after_gap = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let frame = remote.recv().await.expect("the track is alive");
            if !frame.contiguous {
                return frame;
            }
            buffered += 1;
        }
    })
    .await
    .expect("a frame after the gap is marked non-contiguous");
    assert!(buffered >= 50, "the buffered frames come first ({buffered})");
    // A keyframe follows soon after the gap (requested when frames were dropped), and decoding
    // resumes from it.
    if !after_gap.keyframe {
        let keyframe = tokio::time::timeout(Duration::from_secs(5), async {
            while let Some(frame) = remote.recv().await {
                if frame.keyframe {
                    return;
                }
            }
        })
        .await;
        assert!(keyframe.is_ok(), "a keyframe after the gap");
    }
    alice.disconnect().await;
    bob.disconnect().await;
    frames.await.expect("publisher task");
}

/// Unpublishing the only track keeps the session (LiveKit answers an offer without media with
/// no BUNDLE group; the client keeps a data channel in the session so that it never has to),
/// and a track published afterwards reaches the other client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_track_unpublished_and_a_new_one_published_in_the_same_session() {
    init_logs();
    let room = TestRoom::create("republish").await;
    let (publisher, mut publisher_events) =
        Room::connect(room.url(), &room.token("publisher"), RoomOptions::default())
            .await
            .expect("the publisher connects");
    let (subscriber, mut events) =
        Room::connect(room.url(), &room.token("subscriber"), RoomOptions::default())
            .await
            .expect("the subscriber connects");
    let options = VideoTrackOptions { width: 320, height: 240, ..Default::default() };
    let first = publisher.publish_video(options.clone()).await.expect("publishes");
    let frames = spawn_pattern_publisher(first.clone(), TestPattern::RED, 320, 240, 20);
    let mut remote = next_subscription(&mut events, Duration::from_secs(15)).await;
    decode_pictures(&mut remote, 3, Duration::from_secs(10)).await;
    let session = publisher.local_participant().0;
    first.unpublish().await.unwrap();
    frames.await.unwrap();

    let second = publisher.publish_video(options).await.expect("publishes again");
    let frames = spawn_pattern_publisher(second, TestPattern::Solid(Rgb(0, 0, 255)), 320, 240, 20);
    let mut remote = next_subscription(&mut events, Duration::from_secs(15)).await;
    let pictures = decode_pictures(&mut remote, 3, Duration::from_secs(10)).await;
    assert!(close_to(centre_rgb(pictures.last().unwrap()), (0, 0, 255), 40));
    assert_eq!(publisher.local_participant().0, session, "the same session, no rejoin");
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(50), publisher_events.recv()).await
    {
        assert!(
            !matches!(event, RoomEvent::ConnectionStateChanged(_) | RoomEvent::Disconnected(_)),
            "the publisher's connection never changed: {event:?}"
        );
    }
    publisher.disconnect().await;
    subscriber.disconnect().await;
    frames.await.unwrap();
}
