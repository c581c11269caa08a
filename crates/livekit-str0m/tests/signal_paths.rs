//! One peer connection (`/rtc/v1`) or two (`/rtc`): a server without the single peer-connection
//! endpoint (a LiveKit older than 1.9.10, played here by a proxy that answers 404 there) is
//! joined with two, and media flows both ways; a room that does not exist is an error, not a
//! reason to fall back.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TestRoom, decode_pictures, init_logs, next_subscription, spawn_pattern_publisher};
use livekit_str0m::{ConnectError, Room, RoomOptions, VideoTrackOptions};
use rtc_media::pattern::TestPattern;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// A proxy in front of the server's signalling port that records each request's path and,
/// when `old_server`, answers `/rtc/v1` with the 404 of a server that has no such route.
struct PathProxy {
    port: u16,
    paths: Arc<Mutex<Vec<String>>>,
}

impl PathProxy {
    async fn start(target: SocketAddr, old_server: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = paths.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(relay(inbound, target, old_server, seen));
            }
        });
        Self { port, paths }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

async fn relay(
    mut inbound: TcpStream,
    target: SocketAddr,
    old_server: bool,
    seen: Arc<Mutex<Vec<String>>>,
) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match inbound.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let path = text.split(' ').nth(1).unwrap_or_default().split('?').next().unwrap_or_default();
    seen.lock().unwrap().push(path.to_owned());
    if old_server && path.starts_with("/rtc/v1") {
        let body = "404 page not found\n";
        let response = format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = inbound.write_all(response.as_bytes()).await;
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(target).await else { return };
    if outbound.write_all(&head).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_rtc_v1_is_joined_with_two_peer_connections_and_media_flows() {
    init_logs();
    let room = TestRoom::create("old-server").await;
    let proxy = PathProxy::start(room.server_addr(), true).await;
    let (publisher, _publisher_events) =
        Room::connect(&proxy.url(), &room.token("publisher"), RoomOptions::default())
            .await
            .expect("joins through the fallback");
    let (subscriber, mut events) =
        Room::connect(&proxy.url(), &room.token("subscriber"), RoomOptions::default())
            .await
            .expect("joins through the fallback");
    let paths = proxy.paths();
    assert_eq!(paths, ["/rtc/v1", "/rtc", "/rtc/v1", "/rtc"], "each tried one, then two");
    let track = publisher
        .publish_video(VideoTrackOptions { width: 160, height: 120, ..Default::default() })
        .await
        .expect("publishes with two peer connections");
    let _frames = spawn_pattern_publisher(track, TestPattern::RED, 160, 120, 15);
    let mut remote = next_subscription(&mut events, Duration::from_secs(15)).await;
    let pictures = decode_pictures(&mut remote, 3, Duration::from_secs(10)).await;
    let (r, g, b) = common::centre_rgb(pictures.last().expect("a picture"));
    assert!(r > 180 && g < 80 && b < 80, "red arrives: {:?}", (r, g, b));
    publisher.disconnect().await;
    subscriber.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_on_one_peer_connection_and_one_on_two_see_each_other() {
    init_logs();
    let room = TestRoom::create("mixed-modes").await;
    let two = RoomOptions { single_peer_connection: false, ..RoomOptions::default() };
    let (dual, mut dual_events) =
        Room::connect(room.url(), &room.token("dual"), two).await.expect("joins with two");
    let (single, mut single_events) =
        Room::connect(room.url(), &room.token("single"), RoomOptions::default())
            .await
            .expect("joins with one");
    let dual_track = dual
        .publish_video(VideoTrackOptions { width: 160, height: 120, ..Default::default() })
        .await
        .expect("publishes");
    let single_track = single
        .publish_video(VideoTrackOptions { width: 160, height: 120, ..Default::default() })
        .await
        .expect("publishes");
    let _a = spawn_pattern_publisher(dual_track, TestPattern::RED, 160, 120, 15);
    let _b = spawn_pattern_publisher(
        single_track,
        TestPattern::Solid(rtc_media::pattern::Rgb(0, 0, 255)),
        160,
        120,
        15,
    );
    let mut at_single = next_subscription(&mut single_events, Duration::from_secs(15)).await;
    let mut at_dual = next_subscription(&mut dual_events, Duration::from_secs(15)).await;
    let red = decode_pictures(&mut at_single, 3, Duration::from_secs(10)).await;
    let blue = decode_pictures(&mut at_dual, 3, Duration::from_secs(10)).await;
    let (r, _, b) = common::centre_rgb(red.last().expect("a picture"));
    assert!(r > 180 && b < 80, "the one-connection client sees red");
    let (r, _, b) = common::centre_rgb(blue.last().expect("a picture"));
    assert!(b > 180 && r < 80, "the two-connection client sees blue");
    dual.disconnect().await;
    single.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_room_is_refused_without_falling_back() {
    init_logs();
    let room = TestRoom::create("exists").await;
    let proxy = PathProxy::start(room.server_addr(), false).await;
    let missing = TestRoom { stack: room.stack.clone(), name: format!("{}-missing", room.name) };
    let result =
        Room::connect(&proxy.url(), &missing.token("nobody"), RoomOptions::default()).await;
    match result {
        Err(ConnectError::Refused { status: 404, message }) => {
            assert!(message.contains("requested room does not exist"), "{message}");
        }
        other => panic!("expected a 404 for a missing room, got {other:?}"),
    }
    assert_eq!(proxy.paths(), ["/rtc/v1"], "no fallback to /rtc");
}
