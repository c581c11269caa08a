//! Two Rust clients in one room of the real LiveKit server see and receive each other's video.

mod common;

use std::time::Duration;

use common::{TestRoom, centre_rgb, close_to, decode_pictures, init_logs, spawn_pattern_publisher};
use livekit_str0m::{Room, RoomEvent, RoomEvents, RoomOptions, VideoTrackOptions};
use rtc_media::pattern::{Rgb, TestPattern};

/// Waits for the first subscribed track.
async fn next_subscription(
    events: &mut RoomEvents,
    within: Duration,
) -> livekit_str0m::RemoteVideoTrack {
    tokio::time::timeout(within, async {
        loop {
            match events.recv().await.expect("room events end") {
                RoomEvent::TrackSubscribed(track) => return track,
                RoomEvent::Disconnected(cause) => panic!("disconnected: {cause}"),
                _ => {}
            }
        }
    })
    .await
    .expect("a track is subscribed in time")
}

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
    assert!(red.await.is_ok() && blue.await.is_ok());
}
