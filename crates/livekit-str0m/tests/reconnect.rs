//! Reconnecting: the LiveKit server is killed and restarted under two connected clients; the
//! subscriber gets video again. And when the server stays gone, the room ends with an error.

mod common;

use std::time::{Duration, Instant};

use common::{
    CuttableProxy, PrivateLiveKit, decode_pictures, init_logs, next_subscription,
    spawn_pattern_publisher,
};
use livekit_str0m::{
    ConnectionState, DisconnectCause, RemoteTrack, Room, RoomEvent, RoomOptions, VideoTrackOptions,
};
use rtc_media::pattern::TestPattern;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_comes_back_after_a_server_restart() {
    init_logs();
    let mut server = PrivateLiveKit::start().await;
    let (publisher, _publisher_events) =
        Room::connect(&server.url(), &server.token("restart", "publisher"), RoomOptions::default())
            .await
            .expect("publisher connects");
    let (subscriber, mut events) = Room::connect(
        &server.url(),
        &server.token("restart", "subscriber"),
        RoomOptions::default(),
    )
    .await
    .expect("subscriber connects");
    let track = publisher
        .publish_video(VideoTrackOptions { width: 320, height: 240, ..Default::default() })
        .await
        .expect("publish");
    let first_sid = track.sid().expect("sid");
    let frames = spawn_pattern_publisher(track.clone(), TestPattern::Moving, 320, 240, 30);
    let mut remote = next_subscription(&mut events, Duration::from_secs(15)).await;
    decode_pictures(&mut remote, 5, Duration::from_secs(10)).await;

    server.kill();
    let killed = Instant::now();
    server.restart().await;
    let restarted = killed.elapsed();

    // The old track ends, the subscriber goes through Reconnecting and gets the track again.
    let mut saw_reconnecting = false;
    let mut remote = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match events.recv().await.expect("events") {
                RoomEvent::ConnectionStateChanged(ConnectionState::Reconnecting) => {
                    saw_reconnecting = true
                }
                RoomEvent::TrackSubscribed(RemoteTrack::Video(track)) => return track,
                RoomEvent::Disconnected(cause) => panic!("disconnected: {cause}"),
                _ => {}
            }
        }
    })
    .await
    .expect("the track is subscribed again");
    assert!(saw_reconnecting, "the subscriber reported Reconnecting");
    decode_pictures(&mut remote, 5, Duration::from_secs(15)).await;
    let back = killed.elapsed();
    eprintln!(
        "server restart took {restarted:?}; video back at the subscriber {back:?} after the kill"
    );
    assert_eq!(subscriber.connection_state(), ConnectionState::Connected);
    assert_ne!(track.sid().expect("a new sid"), first_sid, "the track was published again");
    assert_eq!(remote.info().participant_identity, "publisher");

    publisher.disconnect().await;
    subscriber.disconnect().await;
    frames.await.expect("the frame task ends when the track closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_stays_gone_ends_the_room_with_an_error() {
    init_logs();
    let mut server = PrivateLiveKit::start().await;
    let options = RoomOptions { reconnect_timeout: Duration::from_secs(3), ..Default::default() };
    let (room, mut events) = Room::connect(&server.url(), &server.token("gone", "alone"), options)
        .await
        .expect("connects");
    server.kill();
    let killed = Instant::now();
    let cause = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let RoomEvent::Disconnected(cause) = events.recv().await.expect("events") {
                return cause;
            }
        }
    })
    .await
    .expect("the room gives up");
    eprintln!("gave up after {:?}: {cause}", killed.elapsed());
    assert!(matches!(cause, DisconnectCause::ReconnectFailed(_)), "{cause:?}");
    let gave_up = killed.elapsed();
    assert!(
        gave_up >= Duration::from_millis(2900) && gave_up < Duration::from_secs(10),
        "{gave_up:?}"
    );
    assert_eq!(room.connection_state(), ConnectionState::Disconnected);
    room.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_websocket_is_resumed_without_a_new_session() {
    init_logs();
    let server = PrivateLiveKit::start().await;
    let proxy = CuttableProxy::start(([127, 0, 0, 1], server.port).into()).await;
    let (publisher, mut publisher_events) =
        Room::connect(&proxy.url(), &server.token("cut", "publisher"), RoomOptions::default())
            .await
            .expect("publisher connects");
    let (subscriber, mut events) =
        Room::connect(&proxy.url(), &server.token("cut", "subscriber"), RoomOptions::default())
            .await
            .expect("subscriber connects");
    let track = publisher
        .publish_video(VideoTrackOptions { width: 320, height: 240, ..Default::default() })
        .await
        .expect("publish");
    let sid = track.sid();
    let frames = spawn_pattern_publisher(track.clone(), TestPattern::Moving, 320, 240, 30);
    let mut remote = next_subscription(&mut events, Duration::from_secs(15)).await;
    decode_pictures(&mut remote, 5, Duration::from_secs(10)).await;
    let (publisher_sid, subscriber_sid) =
        (publisher.local_participant().0, subscriber.local_participant().0);

    proxy.cut();
    let cut = Instant::now();
    // Both go through Reconnecting and come back Connected on the same session.
    for (name, events) in [("publisher", &mut publisher_events), ("subscriber", &mut events)] {
        let mut states = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                match events.recv().await.expect("events") {
                    RoomEvent::ConnectionStateChanged(state) => {
                        states.push(state);
                        if state == ConnectionState::Connected {
                            return;
                        }
                    }
                    RoomEvent::TrackUnsubscribed { track_sid } => {
                        panic!("{name}: {track_sid} unsubscribed")
                    }
                    RoomEvent::Disconnected(cause) => panic!("{name} disconnected: {cause}"),
                    _ => {}
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{name} resumes"));
        assert_eq!(states, [ConnectionState::Reconnecting, ConnectionState::Connected], "{name}");
    }
    let resumed = cut.elapsed();
    // The same subscription keeps delivering pictures.
    decode_pictures(&mut remote, 10, Duration::from_secs(10)).await;
    eprintln!("both resumed {resumed:?} after the cut; video flowing {:?} after it", cut.elapsed());
    assert_eq!(publisher.local_participant().0, publisher_sid, "the publisher kept its session");
    assert_eq!(subscriber.local_participant().0, subscriber_sid, "the subscriber kept its session");
    assert_eq!(track.sid(), sid, "the track kept its sid");

    publisher.disconnect().await;
    subscriber.disconnect().await;
    frames.await.expect("the frame task ends");
}
