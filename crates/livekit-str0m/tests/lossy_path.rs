//! A client whose media go through a lossy path (`rtc_test_support::LossyLiveKit`: a signalling
//! proxy that rewrites ICE candidates and a UDP relay that drops datagrams at random) keeps
//! receiving video at 10 % loss, and all its media go through the relay.

mod common;

use std::time::Duration;

use common::{TestRoom, decode_pictures, init_logs, next_subscription, spawn_pattern_publisher};
use livekit_str0m::{RemoteVideoTrack, Room, RoomOptions, VideoTrackOptions};
use rtc_media::codec::VideoDecoder;
use rtc_media::pattern::{TestPattern, read_counter};
use rtc_test_support::LossyLiveKit;
use tokio::time::Instant;

/// What a stretch of receiving brought.
#[derive(Debug, Default)]
struct Received {
    frames: u64,
    gaps: u64,
    keyframes: u64,
    pictures: u64,
    /// Frame counters read from the decoded pictures (first, last).
    counters: Option<(u64, u64)>,
    /// Frames in the last two seconds of the stretch.
    frames_at_the_end: u64,
}

/// Receives and decodes frames for at least `at_least`, and then until `enough` says so (at
/// most `at_most`).
async fn receive(
    track: &mut RemoteVideoTrack,
    at_least: Duration,
    at_most: Duration,
    mut enough: impl FnMut() -> bool,
) -> Received {
    let mut received = Received::default();
    let mut decoder: Option<Box<dyn VideoDecoder>> = None;
    let mut keyframe_seen = false;
    let started = Instant::now();
    let mut recent: std::collections::VecDeque<Instant> = Default::default();
    loop {
        let elapsed = started.elapsed();
        if (elapsed >= at_least && enough()) || elapsed >= at_most {
            break;
        }
        let Ok(frame) = tokio::time::timeout(Duration::from_millis(200), track.recv()).await else {
            continue;
        };
        let frame = frame.expect("the track ended");
        received.frames += 1;
        received.gaps += u64::from(!frame.contiguous);
        received.keyframes += u64::from(frame.keyframe);
        recent.push_back(Instant::now());
        let decoder = decoder.get_or_insert_with(|| {
            rtc_media::codec::new_decoder(frame.codec.into()).expect("a decoder")
        });
        keyframe_seen |= frame.keyframe;
        if !keyframe_seen {
            continue;
        }
        if let Ok(Some(picture)) = decoder.decode(&frame.data) {
            received.pictures += 1;
            if let Some(counter) = read_counter(&picture) {
                let first = received.counters.map_or(counter, |(first, _)| first);
                received.counters = Some((first, counter));
            }
        }
    }
    let end = Instant::now();
    received.frames_at_the_end =
        recent.iter().filter(|t| end.duration_since(**t) <= Duration::from_secs(2)).count() as u64;
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_behind_the_lossy_relay_loses_a_tenth_of_its_packets_and_keeps_receiving() {
    init_logs();
    let room = TestRoom::create("lossy-path").await;
    let lossy = LossyLiveKit::start(&room.stack).await.expect("the lossy path starts");
    lossy.set_seed(0x1055);
    eprintln!(
        "lossy path: signalling {} → {}, media relay {} → {}",
        lossy.url(),
        room.url(),
        lossy.client_facing_addr(),
        lossy.server_media_addr()
    );

    // Alice publishes directly; bob connects through the proxy.
    let (alice, _alice_events) =
        Room::connect(room.url(), &room.token("alice"), RoomOptions::default())
            .await
            .expect("alice connects");
    let (bob, mut bob_events) =
        Room::connect(lossy.url(), &room.token("bob"), RoomOptions::default())
            .await
            .expect("bob connects through the proxy");
    let track = alice
        .publish_video(VideoTrackOptions { width: 320, height: 240, ..Default::default() })
        .await
        .expect("alice publishes");
    let publisher = spawn_pattern_publisher(track, TestPattern::Moving, 320, 240, 30);
    let mut at_bob = next_subscription(&mut bob_events, Duration::from_secs(15)).await;
    assert_eq!(at_bob.info().participant_identity, "alice");

    // No loss: frames arrive, and bob's media go through the relay.
    decode_pictures(&mut at_bob, 10, Duration::from_secs(15)).await;
    let clean = lossy.stats();
    eprintln!("without loss: {clean:?}");
    assert_eq!(clean.signal_connections, 1, "bob's signalling went through the proxy");
    let candidates = clean.candidates;
    assert!(
        candidates.server_in_sdp + candidates.server_trickled > 0,
        "the server's candidates were rewritten: {candidates:?}"
    );
    assert!(
        candidates.client_in_sdp + candidates.client_trickled > 0,
        "bob's candidates were rewritten: {candidates:?}"
    );
    assert!(clean.to_client.forwarded > 0 && clean.to_server.forwarded > 0);
    assert_eq!((clean.to_client.dropped, clean.to_server.dropped), (0, 0));
    assert_eq!(clean.unrelayed, 0, "every datagram came from where it should");

    // 10 % loss, both ways: bob keeps receiving (NACKs and keyframe requests repair the gaps).
    lossy.set_loss(0.10);
    let before = lossy.stats();
    let window_started = Instant::now();
    let lossy_stretch =
        receive(&mut at_bob, Duration::from_secs(10), Duration::from_secs(40), || {
            lossy.stats().since(&before).to_client.total() >= 600
        })
        .await;
    let window = lossy.stats().since(&before);
    let seconds = window_started.elapsed().as_secs_f64();
    eprintln!(
        "at 10 % loss for {seconds:.1} s: toward bob {}/{} dropped ({:.1} %), toward the server \
         {}/{} dropped ({:.1} %); bob got {lossy_stretch:?}",
        window.to_client.dropped,
        window.to_client.total(),
        window.to_client.loss() * 100.0,
        window.to_server.dropped,
        window.to_server.total(),
        window.to_server.loss() * 100.0,
    );
    assert!(window.to_client.total() >= 300, "too few datagrams toward bob: {window:?}");
    let loss = window.to_client.loss();
    assert!((0.05..=0.15).contains(&loss), "loss toward bob {loss:.3} is not about 10 %");
    if window.to_server.total() >= 300 {
        let loss = window.to_server.loss();
        assert!((0.05..=0.15).contains(&loss), "loss toward the server {loss:.3}");
    }
    assert!(
        lossy_stretch.pictures as f64 >= seconds * 10.0,
        "bob decoded only {} pictures in {seconds:.1} s at 10 % loss",
        lossy_stretch.pictures
    );
    assert!(lossy_stretch.frames_at_the_end >= 10, "bob's video stalled: {lossy_stretch:?}");
    let (first, last) = lossy_stretch.counters.expect("bob reads the pattern's frame counter");
    assert!(last > first, "the picture moves on at bob ({first} → {last})");

    // Everything dropped: bob's frames stop, so none of his media go around the relay.
    lossy.set_loss(1.0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), at_bob.recv()).await {}
    let blackout = lossy.stats();
    let leaked = tokio::time::timeout(Duration::from_secs(2), at_bob.recv()).await;
    let during = lossy.stats().since(&blackout);
    eprintln!("with everything dropped: {during:?}");
    assert!(leaked.is_err(), "a frame reached bob although the relay dropped everything");
    assert!(during.to_client.dropped > 0, "the server kept sending toward bob through the relay");
    assert_eq!(during.to_client.forwarded + during.to_server.forwarded, 0);

    // The path heals: video comes back.
    lossy.set_loss(0.0);
    decode_pictures(&mut at_bob, 10, Duration::from_secs(20)).await;
    eprintln!("after the blackout: {:?}", lossy.stats());

    alice.disconnect().await;
    bob.disconnect().await;
    publisher.await.expect("the publisher task");
}
