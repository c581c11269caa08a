//! A signalling connection that stalls (a proxy in the path stops reading and forwarding, the
//! TCP connection stays open) must neither stop outgoing media nor delay the ping timeout: the
//! room notices, resumes on a new WebSocket, and media flows throughout.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{
    TestRoom, connected_with_track, init_logs, next_subscription, spawn_pattern_publisher,
};
use livekit_str0m::{ConnectionState, RemoteVideoTrack, Room, RoomEvent, RoomEvents, RoomOptions};
use rtc_media::pattern::TestPattern;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// What LiveKit's join response says (checked below): silence for this long is a dead link.
const PING_TIMEOUT: Duration = Duration::from_secs(15);

/// A TCP proxy whose open connections can be stalled: from then on it reads nothing from
/// either side and forwards nothing, but keeps both sockets open. New connections flow.
struct StallingProxy {
    port: u16,
    stalled: Arc<AtomicBool>,
}

impl StallingProxy {
    async fn start(target: SocketAddr) -> Self {
        let socket = TcpSocket::new_v4().expect("socket");
        // A small receive buffer: a client writing into a stalled connection is blocked soon.
        socket.set_recv_buffer_size(4096).expect("buffer size");
        socket.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
        let listener = socket.listen(16).expect("listen");
        let port = listener.local_addr().expect("address").port();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let stall_this = Arc::new(AtomicBool::new(false));
                let mine = stall_this.clone();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else { return };
                    forward(inbound, outbound, mine).await;
                });
                // Only connections open when `stall` is called stall; later ones flow.
                if flag.load(Ordering::Acquire) {
                    continue;
                }
                let flag = flag.clone();
                tokio::spawn(async move {
                    while !flag.load(Ordering::Acquire) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    stall_this.store(true, Ordering::Release);
                });
            }
        });
        Self { port, stalled }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Stalls every connection open now.
    fn stall(&self) {
        self.stalled.store(true, Ordering::Release);
    }
}

/// Copies both ways until `stalled`; then holds both sockets open without reading.
async fn forward(mut inbound: TcpStream, mut outbound: TcpStream, stalled: Arc<AtomicBool>) {
    let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
    loop {
        if stalled.load(Ordering::Acquire) {
            std::future::pending::<()>().await;
        }
        tokio::select! {
            n = inbound.read(&mut a) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if !stalled.load(Ordering::Acquire) && outbound.write_all(&a[..n]).await.is_err() { return },
            },
            n = outbound.read(&mut b) => match n {
                Ok(0) | Err(_) => return,
                Ok(n) => if !stalled.load(Ordering::Acquire) && inbound.write_all(&b[..n]).await.is_err() { return },
            },
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
}

/// The publisher connects through the proxy; the subscriber directly. Returns both rooms, the
/// publisher's events and the subscribed remote track, with media flowing.
async fn publishing_through(
    proxy: &StallingProxy,
    room: &TestRoom,
) -> (Room, RoomEvents, Room, RemoteVideoTrack, tokio::task::JoinHandle<u64>) {
    let (publisher, publisher_events) =
        Room::connect(&proxy.url(), &room.token("publisher"), RoomOptions::default())
            .await
            .expect("the publisher connects through the proxy");
    let track = publisher
        .publish_video(livekit_str0m::VideoTrackOptions {
            width: 160,
            height: 120,
            ..Default::default()
        })
        .await
        .expect("publishes");
    let frames = spawn_pattern_publisher(track, TestPattern::Moving, 160, 120, 20);
    let (subscriber, mut events, _unused) = connected_with_track(room, "subscriber").await;
    let remote = next_subscription(&mut events, Duration::from_secs(15)).await;
    (publisher, publisher_events, subscriber, remote, frames)
}

/// Frames the subscriber receives within `window`.
async fn frames_within(remote: &mut RemoteVideoTrack, window: Duration) -> usize {
    let end = tokio::time::Instant::now() + window;
    let mut count = 0;
    while let Ok(Some(_)) = tokio::time::timeout_at(end, remote.recv()).await {
        count += 1;
    }
    count
}

/// Waits for the publisher's room to say `state`; when it did, or `None` after `within`.
async fn state_within(
    events: &mut RoomEvents,
    state: ConnectionState,
    within: Duration,
) -> Option<Instant> {
    let end = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(end, events.recv()).await {
            Ok(Some(RoomEvent::ConnectionStateChanged(s))) if s == state => {
                return Some(Instant::now());
            }
            Ok(Some(RoomEvent::Disconnected(cause))) => panic!("the room ended: {cause}"),
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return None,
        }
    }
}

/// A publisher behind a stalling proxy, its media flowing to a subscriber; then the stall.
struct Stalled {
    publisher: Room,
    events: RoomEvents,
    remote: RemoteVideoTrack,
    stalled_at: Instant,
    _subscriber: Room,
    _frames: tokio::task::JoinHandle<u64>,
    _proxy: StallingProxy,
}

async fn stalled(prefix: &str) -> Stalled {
    let room = TestRoom::create(prefix).await;
    let proxy = StallingProxy::start(room.server_addr()).await;
    let (publisher, events, subscriber, mut remote, frames) =
        publishing_through(&proxy, &room).await;
    assert!(frames_within(&mut remote, Duration::from_secs(1)).await > 5, "media flows");
    let stalled_at = Instant::now();
    proxy.stall();
    Stalled {
        publisher,
        events,
        remote,
        stalled_at,
        _subscriber: subscriber,
        _frames: frames,
        _proxy: proxy,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stalled_websocket_is_noticed_at_the_ping_timeout_while_media_flows() {
    init_logs();
    let Stalled { publisher, mut events, mut remote, stalled_at, _subscriber, _frames, _proxy } =
        stalled("stalled-silent").await;
    // Media does not go through the WebSocket, and must not wait for it.
    let during = frames_within(&mut remote, Duration::from_secs(5)).await;
    assert!(during >= 60, "20 fps for 5 s while the WebSocket stalls: {during} frames");
    let noticed = state_within(
        &mut events,
        ConnectionState::Reconnecting,
        PING_TIMEOUT + Duration::from_secs(3),
    )
    .await
    .expect("the dead WebSocket is noticed");
    let after = noticed - stalled_at;
    // Pongs stop at the stall; the last message arrived at most a ping interval before it.
    assert!(after <= PING_TIMEOUT + Duration::from_secs(1), "noticed after {after:?}");
    assert!(
        after >= PING_TIMEOUT - Duration::from_secs(6),
        "noticed after {after:?}: too early to be the ping timeout"
    );
    state_within(&mut events, ConnectionState::Connected, Duration::from_secs(10))
        .await
        .expect("resumed on a new WebSocket");
    assert!(frames_within(&mut remote, Duration::from_secs(1)).await > 5, "media still flows");
    publisher.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_into_a_stalled_websocket_neither_freeze_media_nor_the_room() {
    init_logs();
    let Stalled { publisher, mut events, mut remote, stalled_at, _subscriber, _frames, _proxy } =
        stalled("stalled-busy").await;
    // Requests without end, far more than the socket buffers hold: a connection task that
    // waited on the socket would freeze here, media, timers and commands with it.
    let spam = async {
        for i in 0u64.. {
            let sid = format!("TR_{i:0>40}");
            let sent =
                tokio::time::timeout(Duration::from_secs(2), publisher.set_subscribed(&sid, true))
                    .await;
            assert!(sent.is_ok(), "request {i}: the room stopped taking commands");
        }
    };
    let reconnecting =
        state_within(&mut events, ConnectionState::Reconnecting, Duration::from_secs(10));
    let watch = async {
        tokio::select! {
            noticed = reconnecting => noticed,
            () = spam => unreachable!("the requests never end"),
        }
    };
    let frames = frames_within(&mut remote, Duration::from_secs(5));
    let (noticed, during) = tokio::join!(watch, frames);
    let noticed = noticed.expect("the stalled WebSocket is noticed");
    assert!(
        noticed - stalled_at < Duration::from_secs(7),
        "noticed after {:?}",
        noticed - stalled_at
    );
    assert!(during >= 60, "20 fps for 5 s while the WebSocket stalls: {during} frames");
    state_within(&mut events, ConnectionState::Connected, Duration::from_secs(10))
        .await
        .expect("resumed on a new WebSocket");
    publisher.disconnect().await;
}
