//! Helpers for the tests against the local stack's LiveKit server.
#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, SystemTime};

use livekit_str0m::{
    LocalVideoTrack, RemoteTrack, RemoteVideoTrack, Room, RoomEvent, RoomEvents, RoomOptions,
    VideoTrackOptions,
};
use matrixrtc_auth::access_token::{Claims, VideoGrant};
use matrixrtc_auth::room_service::RoomServiceClient;
use matrixrtc_auth::secret::Secret;
use rtc_media::codec::{VideoDecoder, VideoEncoder, Vp8Encoder, Vp8EncoderConfig};
use rtc_media::frame::I420Frame;
use rtc_media::pattern::TestPattern;
use rtc_test_support::{StackInfo, unique_name};
use tokio::task::JoinHandle;

/// Logs to the test output (`RUST_LOG` to tune).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "livekit_str0m=debug,str0m=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A LiveKit room created on the stack's server, and tokens for it.
pub struct TestRoom {
    pub stack: StackInfo,
    pub name: String,
}

impl TestRoom {
    /// Creates a fresh room (the stack's server does not create rooms on join).
    pub async fn create(prefix: &str) -> Self {
        let stack = StackInfo::require();
        let name = unique_name(prefix);
        let client = RoomServiceClient::new(
            &stack.livekit_url.parse().expect("livekit url"),
            stack.livekit_api_key.clone(),
            Secret::new(stack.livekit_api_secret.clone()),
            Duration::from_secs(10),
        )
        .expect("room service client");
        client.create_room(&name).await.expect("the LiveKit server creates the room");
        Self { stack, name }
    }

    /// A join token for `identity`.
    pub fn token(&self, identity: &str) -> String {
        Claims::new(
            self.stack.livekit_api_key.clone(),
            identity,
            VideoGrant::participant(self.name.clone()),
            SystemTime::now(),
            Duration::from_secs(3600),
        )
        .sign(&Secret::new(self.stack.livekit_api_secret.clone()))
        .expect("test claims serialise")
    }

    pub fn url(&self) -> &str {
        &self.stack.livekit_url
    }

    /// The server's signalling address (for a proxy in front of it).
    pub fn server_addr(&self) -> std::net::SocketAddr {
        let url = url::Url::parse(self.url()).expect("LiveKit URL");
        let port = url.port_or_known_default().expect("port");
        std::net::SocketAddr::new([127, 0, 0, 1].into(), port)
    }
}

/// Connects `identity` to `room` and publishes a small VP8 track (nothing written yet).
pub async fn connected_with_track(
    room: &TestRoom,
    identity: &str,
) -> (Room, RoomEvents, LocalVideoTrack) {
    let (connected, events) =
        Room::connect(room.url(), &room.token(identity), RoomOptions::default())
            .await
            .expect("connects");
    let track = connected
        .publish_video(VideoTrackOptions { width: 64, height: 64, ..Default::default() })
        .await
        .expect("publishes");
    (connected, events, track)
}

/// Publishes a test pattern into a track in the background, at `fps`, as VP8.
pub fn spawn_pattern_publisher(
    track: LocalVideoTrack,
    pattern: TestPattern,
    width: u32,
    height: u32,
    fps: u32,
) -> JoinHandle<u64> {
    let mut config = Vp8EncoderConfig::new(width, height);
    config.bitrate = 800_000;
    let encoder = Vp8Encoder::new(config).expect("VP8 encoder");
    spawn_encoding_publisher(track, Box::new(encoder), pattern, width, height, fps)
}

/// Publishes a test pattern through any encoder; ends (with the frame count) when the track
/// closes.
pub fn spawn_encoding_publisher(
    track: LocalVideoTrack,
    mut encoder: Box<dyn VideoEncoder>,
    pattern: TestPattern,
    width: u32,
    height: u32,
    fps: u32,
) -> JoinHandle<u64> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1) / fps);
        let mut index = 0u64;
        loop {
            interval.tick().await;
            if track.take_keyframe_request() {
                encoder.request_keyframe();
            }
            let timestamp = Duration::from_secs(1) * index as u32 / fps;
            let picture = pattern.render(width, height, index).with_timestamp(timestamp);
            for encoded in encoder.encode(&picture).expect("encode") {
                if track.write(encoded.into()) == Err(livekit_str0m::TrackError::Closed) {
                    return index;
                }
            }
            index += 1;
        }
    })
}

/// Waits for the next subscribed track, failing on a disconnect.
pub async fn next_subscription(events: &mut RoomEvents, within: Duration) -> RemoteVideoTrack {
    tokio::time::timeout(within, async {
        loop {
            match events.recv().await.expect("room events end") {
                RoomEvent::TrackSubscribed(RemoteTrack::Video(track)) => return track,
                RoomEvent::Disconnected(cause) => panic!("disconnected: {cause}"),
                _ => {}
            }
        }
    })
    .await
    .expect("a track is subscribed in time")
}

/// Receives and decodes frames of a remote track (VP8 or H.264) until `count` pictures came out.
pub async fn decode_pictures(
    track: &mut RemoteVideoTrack,
    count: usize,
    within: Duration,
) -> Vec<I420Frame> {
    let mut decoder: Option<Box<dyn VideoDecoder>> = None;
    let mut pictures = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    // A fresh decoder starts at a keyframe: ask for one (a PLI through the server).
    let mut keyframe_seen = false;
    track.request_keyframe();
    let mut asked = tokio::time::Instant::now();
    while pictures.len() < count {
        let frame = tokio::time::timeout_at(deadline, track.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("only {} of {count} pictures within {within:?}", pictures.len())
            })
            .expect("the track ended");
        let decoder = decoder.get_or_insert_with(|| {
            rtc_media::codec::new_decoder(frame.codec.into()).expect("a decoder")
        });
        keyframe_seen |= frame.keyframe;
        if !keyframe_seen && asked.elapsed() > Duration::from_millis(1100) {
            // The server rate-limits keyframe requests per track (about one a second).
            track.request_keyframe();
            asked = tokio::time::Instant::now();
        }
        if !keyframe_seen {
            continue;
        }
        if let Ok(Some(picture)) = decoder.decode(&frame.data) {
            pictures.push(picture);
        }
    }
    pictures
}

/// Whether a picture's centre is close to an RGB colour.
pub fn centre_rgb(picture: &I420Frame) -> (u8, u8, u8) {
    let (y, u, v) = picture.pixel(picture.width() / 2, picture.height() / 2);
    yuv_to_rgb(y, u, v)
}

/// BT.601 limited range.
pub fn yuv_to_rgb(y: u8, u: u8, v: u8) -> (u8, u8, u8) {
    let (y, u, v) = (f64::from(y) - 16.0, f64::from(u) - 128.0, f64::from(v) - 128.0);
    let clamp = |x: f64| x.round().clamp(0.0, 255.0) as u8;
    (
        clamp(1.164 * y + 1.596 * v),
        clamp(1.164 * y - 0.392 * u - 0.813 * v),
        clamp(1.164 * y + 2.017 * u),
    )
}

pub fn close_to(actual: (u8, u8, u8), expected: (u8, u8, u8), tolerance: u8) -> bool {
    actual.0.abs_diff(expected.0) <= tolerance
        && actual.1.abs_diff(expected.1) <= tolerance
        && actual.2.abs_diff(expected.2) <= tolerance
}

/// One line of `interop/livekit-client.mjs`.
pub type JsEvent = serde_json::Value;

/// Runs the official livekit-client in headless Chromium (`interop/livekit-client.mjs`) and
/// collects its JSON lines; `extra` adds environment variables (MODE, COLOR, ...).
pub fn spawn_js_client(
    room: &TestRoom,
    identity: &str,
    extra: &[(&str, &str)],
) -> tokio::process::Child {
    let script = room.stack.interop_dir.join("livekit-client.mjs");
    assert!(script.exists(), "{} is missing: run `cargo xtask devstack up`", script.display());
    let mut command = tokio::process::Command::new("node");
    command
        .arg(&script)
        .current_dir(&room.stack.interop_dir)
        .env("LIVEKIT_URL", room.url())
        .env("TOKEN", room.token(identity))
        .env("CHROMIUM", &room.stack.chromium)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    for (key, value) in extra {
        command.env(key, value);
    }
    command.spawn().expect("node runs (install Node.js and `npm ci` in interop/)")
}

/// Reads the script's JSON lines until it exits; every line is echoed for the test log.
pub async fn js_events(child: tokio::process::Child, within: Duration) -> (bool, Vec<JsEvent>) {
    use tokio::io::AsyncBufReadExt as _;
    let mut child = child;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut events = Vec::new();
    let read = async {
        while let Ok(Some(line)) = lines.next_line().await {
            eprintln!("livekit-client: {line}");
            if let Ok(event) = serde_json::from_str::<JsEvent>(&line) {
                events.push(event);
            }
        }
    };
    if tokio::time::timeout(within, read).await.is_err() {
        let _ = child.kill().await;
        panic!("livekit-client did not finish within {within:?}");
    }
    let status = child.wait().await.expect("wait for node");
    (status.success(), events)
}

/// The `sample` events with a picture.
pub fn samples(events: &[JsEvent]) -> Vec<&JsEvent> {
    events
        .iter()
        .filter(|e| e["event"] == "sample" && e["width"].as_u64().unwrap_or(0) > 0)
        .collect()
}

/// An `[r, g, b]` array of a sample.
pub fn rgb(value: &JsEvent) -> (u8, u8, u8) {
    let c = |i: usize| value[i].as_u64().unwrap_or(999).min(255) as u8;
    (c(0), c(1), c(2))
}

/// A LiveKit server of our own (the stack's binary, our own ports and config), for tests that
/// kill and restart it. Rooms are created on join here.
pub struct PrivateLiveKit {
    binary: std::path::PathBuf,
    dir: std::path::PathBuf,
    pub port: u16,
    pub udp_port: u16,
    child: Option<std::process::Child>,
    pub key: String,
    pub secret: String,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl PrivateLiveKit {
    pub async fn start() -> Self {
        let stack = StackInfo::require();
        let binary = stack.state_dir.join("bin/livekit-server");
        assert!(binary.exists(), "{} is missing: run `cargo xtask devstack up`", binary.display());
        let dir = stack.state_dir.join(unique_name("test-livekit"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            binary,
            dir,
            port: free_port(),
            udp_port: free_udp_port(),
            child: None,
            key: "testkey".into(),
            secret: "test-secret-that-is-long-enough-for-livekit".into(),
        };
        std::fs::write(
            server.dir.join("livekit.yaml"),
            format!(
                "port: {}\nbind_addresses: [\"127.0.0.1\"]\nkeys:\n  {}: {}\nlogging:\n  level: info\n\
                 room:\n  auto_create: true\nrtc:\n  udp_port: {}\n  tcp_port: 0\n  node_ip: 127.0.0.1\n  \
                 use_external_ip: false\n  enable_loopback_candidate: true\n  interfaces:\n    includes: [lo]\n\
                 turn:\n  enabled: false\n",
                server.port, server.key, server.secret, server.udp_port
            ),
        )
        .unwrap();
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub fn token(&self, room: &str, identity: &str) -> String {
        Claims::new(
            self.key.clone(),
            identity,
            VideoGrant::participant(room),
            SystemTime::now(),
            Duration::from_secs(3600),
        )
        .sign(&Secret::new(self.secret.clone()))
        .expect("test claims serialise")
    }

    /// Starts the server (again) and waits until it answers HTTP.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::File::create(self.dir.join("livekit.log")).unwrap();
        let child = std::process::Command::new(&self.binary)
            .arg("--config")
            .arg(self.dir.join("livekit.yaml"))
            .current_dir(&self.dir)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("livekit-server starts");
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "livekit-server listens within 20 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server (SIGKILL: no goodbye to anyone).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateLiveKit {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP proxy in front of a server's signalling port, whose connections a test can cut (the
/// server lives on; only the WebSockets die).
pub struct CuttableProxy {
    pub port: u16,
    connections: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: JoinHandle<()>,
}

impl CuttableProxy {
    pub async fn start(target: std::net::SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let registry = connections.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                registry.lock().unwrap().push(task.abort_handle());
            }
        });
        Self { port, connections, accept }
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// Drops every open connection.
    pub fn cut(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}
