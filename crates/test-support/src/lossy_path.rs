//! A lossy media path to LiveKit for one client, built in user space (no netem): a signalling
//! proxy that rewrites ICE candidates and a UDP relay that drops datagrams at random.
//!
//! ```text
//!  client ──ws──▶ proxy (127.0.0.1:P) ──ws──▶ LiveKit signalling
//!  client B ──udp──▶ R ─(drop?)─▶ U_B ──udp──▶ LiveKit media port
//!  client B ◀──udp── R ◀─(drop?)─ U_B ◀──udp── LiveKit media port
//! ```
//!
//! The proxy relays every WebSocket message unchanged except the ICE candidates: those of the
//! server (trickled, or `a=candidate:` lines of an offer or answer) name R instead of the
//! server's media port, and those of the client name U_B, a socket of the relay allocated for
//! the client's address B (NAT-like), instead of B. Neither side learns an address through
//! which media could go around the relay; TCP candidates (and any candidate whose address is
//! not understood) are left out.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use livekit_protocol::{SignalRequest, SignalResponse, signal_request, signal_response};
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::AbortHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::{Error, StackInfo, XorShift64};

/// The largest HTTP request head the proxy reads.
const MAX_HEAD: usize = 16 * 1024;
/// The largest WebSocket message relayed (signalling messages are a few kilobytes).
const MAX_MESSAGE: usize = 4 * 1024 * 1024;
/// The largest error body passed back to a refused client.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// How long a client may take to send its request head, and the server to accept it.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most client addresses the relay maps (each gets a socket toward the server).
const MAX_CLIENT_ADDRESSES: usize = 64;
/// The receive buffer of the relay's sockets (any UDP datagram fits).
const DATAGRAM: usize = 64 * 1024;
/// The seed of the loss generator unless [`LossyLiveKit::set_seed`] sets another.
const DEFAULT_SEED: u64 = 0x5eed_0f10_55e5;

/// A LiveKit server seen through a lossy path: point one client at [`url`](Self::url) instead of
/// the server's URL, and every media datagram between the two goes through a relay that drops
/// it with the probability set by [`set_loss`](Self::set_loss) (0 at first).
///
/// The server must run on this machine (the relay talks to it over loopback), as the stack's
/// servers do. Tasks and sockets end when the value is dropped.
///
/// ```no_run
/// # async fn run() -> Result<(), rtc_test_support::Error> {
/// use rtc_test_support::{LossyLiveKit, StackInfo};
///
/// let stack = StackInfo::require();
/// let lossy = LossyLiveKit::start(&stack).await?;
/// // Connect the client to `lossy.url()` with a token for the stack's server, then:
/// lossy.set_loss(0.10);
/// let stats = lossy.stats();
/// println!("{} of {} datagrams toward the client dropped", stats.to_client.dropped, stats.to_client.total());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct LossyLiveKit {
    url: String,
    shared: Arc<Shared>,
}

/// Datagram counts of one direction of the relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathStats {
    /// Datagrams passed on.
    pub forwarded: u64,
    /// Datagrams dropped on purpose (the loss).
    pub dropped: u64,
}

impl PathStats {
    /// Datagrams seen: forwarded and dropped.
    pub fn total(&self) -> u64 {
        self.forwarded + self.dropped
    }

    /// The dropped fraction of the datagrams seen (0 when none were).
    pub fn loss(&self) -> f64 {
        match self.total() {
            0 => 0.0,
            total => self.dropped as f64 / total as f64,
        }
    }

    /// The counts since an earlier reading.
    pub fn since(&self, earlier: &PathStats) -> PathStats {
        PathStats {
            forwarded: self.forwarded.saturating_sub(earlier.forwarded),
            dropped: self.dropped.saturating_sub(earlier.dropped),
        }
    }
}

/// ICE candidates the signalling proxy saw, rewrote or left out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CandidateStats {
    /// Server candidates in offers and answers, rewritten to the relay.
    pub server_in_sdp: u64,
    /// Server candidates trickled, rewritten to the relay.
    pub server_trickled: u64,
    /// Client candidates in offers and answers, rewritten to the relay.
    pub client_in_sdp: u64,
    /// Client candidates trickled, rewritten to the relay.
    pub client_trickled: u64,
    /// Candidates left out (TCP, not IPv4 on the client side, another port on the server side,
    /// unreadable).
    pub dropped: u64,
}

/// What the relay has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LossyStats {
    /// Datagrams from the server toward the client.
    pub to_client: PathStats,
    /// Datagrams from the client toward the server.
    pub to_server: PathStats,
    /// Datagrams not relayed for another reason than the loss: from an unexpected sender, from a
    /// client address beyond the relay's limit, or failed sends.
    pub unrelayed: u64,
    /// Client addresses the relay has a socket for.
    pub client_addresses: usize,
    /// The candidates of the signalling.
    pub candidates: CandidateStats,
    /// Signalling connections proxied (WebSocket upgrades forwarded to the server).
    pub signal_connections: u64,
}

impl LossyStats {
    /// The datagram counts since an earlier reading (the rest as now).
    pub fn since(&self, earlier: &LossyStats) -> LossyStats {
        LossyStats {
            to_client: self.to_client.since(&earlier.to_client),
            to_server: self.to_server.since(&earlier.to_server),
            unrelayed: self.unrelayed.saturating_sub(earlier.unrelayed),
            ..*self
        }
    }
}

impl LossyLiveKit {
    /// Starts the proxy and the relay in front of the stack's (first) LiveKit server. Needs a
    /// tokio runtime with I/O and timers enabled.
    pub async fn start(stack: &StackInfo) -> Result<Self, Error> {
        Self::in_front_of(&stack.livekit_url, stack.livekit_udp_port).await
    }

    /// Starts the proxy and the relay in front of the LiveKit server at `livekit_url` (`ws` or
    /// `http`, on this machine) whose media are on UDP port `udp_port`.
    pub async fn in_front_of(livekit_url: &str, udp_port: u16) -> Result<Self, Error> {
        let io =
            |what: &'static str| move |e: std::io::Error| Error::Io { what, reason: e.to_string() };
        let upstream = Upstream::parse(livekit_url)?;
        let server_ip = tokio::net::lookup_host((upstream.host.as_str(), udp_port))
            .await
            .map_err(io("resolving the LiveKit host"))?
            .map(|a| a.ip())
            .min_by_key(|ip| !ip.is_ipv4())
            .ok_or_else(|| Error::Io {
                what: "resolving the LiveKit host",
                reason: "no address".into(),
            })?;
        let server_media = SocketAddr::new(server_ip, udp_port);
        let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let relay = UdpSocket::bind((local, 0)).await.map_err(io("binding the relay socket"))?;
        let relay_addr = relay.local_addr().map_err(io("binding the relay socket"))?;
        let listener =
            TcpListener::bind((local, 0)).await.map_err(io("binding the signalling proxy"))?;
        let proxy_addr = listener.local_addr().map_err(io("binding the signalling proxy"))?;
        let shared = Arc::new(Shared {
            server_media,
            relay: Arc::new(relay),
            relay_addr,
            loss: AtomicU64::new(0f64.to_bits()),
            rng_to_client: Mutex::new(XorShift64::new(DEFAULT_SEED)),
            rng_to_server: Mutex::new(XorShift64::new(!DEFAULT_SEED)),
            counters: Counters::default(),
            nat: Mutex::new(HashMap::new()),
            tasks: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
        });
        shared.spawn(client_side(shared.clone()));
        shared.spawn(accept_signalling(shared.clone(), listener, Arc::new(upstream)));
        Ok(Self { url: format!("ws://{proxy_addr}"), shared })
    }

    /// The signalling URL to give the client instead of the server's.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The relay's address facing the client (R): the only server candidate the client learns.
    pub fn client_facing_addr(&self) -> SocketAddr {
        self.shared.relay_addr
    }

    /// The server's media address the relay sends to.
    pub fn server_media_addr(&self) -> SocketAddr {
        self.shared.server_media
    }

    /// Sets the probability (0 to 1, clamped; NaN counts as 0) with which each datagram is
    /// dropped, in both directions, from now on.
    pub fn set_loss(&self, probability: f64) {
        let p = if probability.is_nan() { 0.0 } else { probability.clamp(0.0, 1.0) };
        self.shared.loss.store(p.to_bits(), Ordering::Relaxed);
    }

    /// The current loss probability.
    pub fn loss(&self) -> f64 {
        f64::from_bits(self.shared.loss.load(Ordering::Relaxed))
    }

    /// Restarts the loss generator (xorshift64*, one stream per direction) from `seed`.
    pub fn set_seed(&self, seed: u64) {
        *lock(&self.shared.rng_to_client) = XorShift64::new(seed);
        *lock(&self.shared.rng_to_server) = XorShift64::new(!seed);
    }

    /// The counters so far.
    pub fn stats(&self) -> LossyStats {
        let c = &self.shared.counters;
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        LossyStats {
            to_client: PathStats {
                forwarded: get(&c.to_client_forwarded),
                dropped: get(&c.to_client_dropped),
            },
            to_server: PathStats {
                forwarded: get(&c.to_server_forwarded),
                dropped: get(&c.to_server_dropped),
            },
            unrelayed: get(&c.unrelayed),
            client_addresses: lock(&self.shared.nat).len(),
            candidates: CandidateStats {
                server_in_sdp: get(&c.server_in_sdp),
                server_trickled: get(&c.server_trickled),
                client_in_sdp: get(&c.client_in_sdp),
                client_trickled: get(&c.client_trickled),
                dropped: get(&c.candidates_dropped),
            },
            signal_connections: get(&c.signal_connections),
        }
    }
}

impl Drop for LossyLiveKit {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

// ------------------------------------------------------------------------------------- state

#[derive(Debug, Default)]
struct Counters {
    to_client_forwarded: AtomicU64,
    to_client_dropped: AtomicU64,
    to_server_forwarded: AtomicU64,
    to_server_dropped: AtomicU64,
    unrelayed: AtomicU64,
    server_in_sdp: AtomicU64,
    server_trickled: AtomicU64,
    client_in_sdp: AtomicU64,
    client_trickled: AtomicU64,
    candidates_dropped: AtomicU64,
    signal_connections: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

#[derive(Debug)]
struct Shared {
    server_media: SocketAddr,
    /// R: faces the client.
    relay: Arc<UdpSocket>,
    relay_addr: SocketAddr,
    /// The loss probability, as `f64` bits.
    loss: AtomicU64,
    rng_to_client: Mutex<XorShift64>,
    rng_to_server: Mutex<XorShift64>,
    counters: Counters,
    /// Client address B → (U_B, its address).
    nat: Mutex<HashMap<SocketAddr, (Arc<UdpSocket>, SocketAddr)>>,
    tasks: Mutex<Vec<AbortHandle>>,
    closed: AtomicBool,
}

/// A poisoned lock still holds usable counters and maps.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    ToClient,
    ToServer,
}

impl Shared {
    /// Runs `task` until the fixture is dropped.
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let mut tasks = lock(&self.tasks);
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        tasks.retain(|t| !t.is_finished());
        tasks.push(tokio::spawn(task).abort_handle());
    }

    fn shutdown(&self) {
        let tasks = {
            let mut tasks = lock(&self.tasks);
            self.closed.store(true, Ordering::Release);
            std::mem::take(&mut *tasks)
        };
        for task in tasks {
            task.abort();
        }
        lock(&self.nat).clear();
    }

    /// Whether the next datagram in `direction` is to be dropped (and counts it either way).
    fn drop_next(&self, direction: Direction) -> bool {
        let p = f64::from_bits(self.loss.load(Ordering::Relaxed));
        let (rng, forwarded, dropped) = match direction {
            Direction::ToClient => (
                &self.rng_to_client,
                &self.counters.to_client_forwarded,
                &self.counters.to_client_dropped,
            ),
            Direction::ToServer => (
                &self.rng_to_server,
                &self.counters.to_server_forwarded,
                &self.counters.to_server_dropped,
            ),
        };
        let drop = p > 0.0 && lock(rng).unit() < p;
        bump(if drop { dropped } else { forwarded }, 1);
        drop
    }

    /// U_B for client address B, allocated (with its task) when first asked for.
    fn upstream_for(self: &Arc<Self>, client: SocketAddr) -> Option<(Arc<UdpSocket>, SocketAddr)> {
        let mut nat = lock(&self.nat);
        if let Some(found) = nat.get(&client) {
            return Some(found.clone());
        }
        // The client may learn U_B from the server's STUN answers and offer it back (as a
        // peer-reflexive or server-reflexive candidate): the server knows it already.
        if let Some(found) = nat.values().find(|(_, upstream)| *upstream == client) {
            return Some(found.clone());
        }
        if nat.len() >= MAX_CLIENT_ADDRESSES || self.closed.load(Ordering::Acquire) {
            return None;
        }
        let bound = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|s| s.set_nonblocking(true).map(|()| s))
            .and_then(UdpSocket::from_std)
            .and_then(|s| s.local_addr().map(|addr| (Arc::new(s), addr)));
        let (socket, addr) = match bound {
            Ok(bound) => bound,
            Err(error) => {
                eprintln!("lossy LiveKit relay: no socket for a client address: {error}");
                return None;
            }
        };
        nat.insert(client, (socket.clone(), addr));
        drop(nat);
        self.spawn(server_side(self.clone(), socket.clone(), client));
        Some((socket, addr))
    }
}

// ------------------------------------------------------------------------------------- relay

/// R: datagrams from client address B go out of U_B to the server.
async fn client_side(shared: Arc<Shared>) {
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let (len, from) = match shared.relay.recv_from(&mut buf).await {
            Ok(received) => received,
            // ICMP errors surface as receive errors: not fatal for UDP.
            Err(_) => {
                tokio::task::yield_now().await;
                continue;
            }
        };
        let Some((upstream, _)) = shared.upstream_for(from) else {
            bump(&shared.counters.unrelayed, 1);
            continue;
        };
        if shared.drop_next(Direction::ToServer) {
            continue;
        }
        if upstream.send_to(&buf[..len], shared.server_media).await.is_err() {
            bump(&shared.counters.unrelayed, 1);
        }
    }
}

/// U_B: datagrams from the server go out of R to client address B.
async fn server_side(shared: Arc<Shared>, upstream: Arc<UdpSocket>, client: SocketAddr) {
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let (len, from) = match upstream.recv_from(&mut buf).await {
            Ok(received) => received,
            Err(_) => {
                tokio::task::yield_now().await;
                continue;
            }
        };
        if from != shared.server_media {
            bump(&shared.counters.unrelayed, 1);
            continue;
        }
        if shared.drop_next(Direction::ToClient) {
            continue;
        }
        if shared.relay.send_to(&buf[..len], client).await.is_err() {
            bump(&shared.counters.unrelayed, 1);
        }
    }
}

// -------------------------------------------------------------------------------- signalling

/// The server's signalling endpoint.
#[derive(Debug)]
struct Upstream {
    /// `ws://host:port` and the base path (no trailing `/`).
    origin: String,
    host: String,
    port: u16,
}

impl Upstream {
    fn parse(livekit_url: &str) -> Result<Self, Error> {
        let invalid = |reason: &str| Error::Io {
            what: "reading the LiveKit URL",
            reason: format!("{reason}: {livekit_url}"),
        };
        let url = url::Url::parse(livekit_url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "ws" | "http") {
            return Err(invalid("only ws:// and http:// servers can be proxied"));
        }
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| invalid("no host"))?;
        let port = url.port_or_known_default().ok_or_else(|| invalid("no port"))?;
        let authority = match url.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        let path = url.path().trim_end_matches('/');
        Ok(Self {
            origin: format!("ws://{authority}{path}"),
            host: host.trim_start_matches('[').trim_end_matches(']').to_owned(),
            port,
        })
    }
}

async fn accept_signalling(shared: Arc<Shared>, listener: TcpListener, upstream: Arc<Upstream>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let (task_shared, upstream) = (shared.clone(), upstream.clone());
        shared.spawn(async move {
            if let Err(reason) = proxy_connection(task_shared, stream, &upstream).await {
                eprintln!("lossy LiveKit proxy: {reason}");
            }
        });
    }
}

/// The request head of a connection to the proxy.
#[derive(Debug, PartialEq, Eq)]
struct RequestHead {
    /// Path and query.
    target: String,
    authorization: Option<String>,
    websocket: bool,
}

/// Reads the request head (and whatever followed it) from the client.
async fn read_head(stream: &mut TcpStream) -> Result<(Vec<u8>, RequestHead), String> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 2048];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = parse_head(&buf[..end])?;
            return Ok((buf, head));
        }
        if buf.len() > MAX_HEAD {
            return Err("request head too long".into());
        }
        let read = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("the client closed before its request was complete".into());
        }
        buf.extend_from_slice(&chunk[..read]);
    }
}

fn parse_head(head: &[u8]) -> Result<RequestHead, String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split_whitespace();
    let (_method, target) = (parts.next(), parts.next());
    let target = target.filter(|t| t.starts_with('/')).ok_or("not an HTTP request")?.to_owned();
    let mut authorization = None;
    let mut websocket = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("authorization") {
            authorization = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("upgrade") {
            websocket = value.eq_ignore_ascii_case("websocket");
        }
    }
    Ok(RequestHead { target, authorization, websocket })
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
        .max_write_buffer_size(2 * MAX_MESSAGE)
}

/// One client connection: a WebSocket relayed with candidate rewriting, anything else passed
/// through as bytes.
async fn proxy_connection(
    shared: Arc<Shared>,
    mut client: TcpStream,
    upstream: &Upstream,
) -> Result<(), String> {
    let (head_bytes, head) = tokio::time::timeout(HANDSHAKE_TIMEOUT, read_head(&mut client))
        .await
        .map_err(|_| "no request head in time".to_owned())??;
    if !head.websocket {
        // Plain HTTP (such as `/rtc/validate`): bytes both ways.
        let mut server = TcpStream::connect((upstream.host.as_str(), upstream.port))
            .await
            .map_err(|e| format!("cannot reach the LiveKit server: {e}"))?;
        server.write_all(&head_bytes).await.map_err(|e| e.to_string())?;
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        return Ok(());
    }
    // The token travels in the query and the header: keep both out of error messages.
    let secrets: Vec<String> = head
        .target
        .split(['?', '&'])
        .filter_map(|pair| pair.strip_prefix("access_token="))
        .map(str::to_owned)
        .chain(head.authorization.iter().cloned())
        .filter(|s| !s.is_empty())
        .collect();
    let redact =
        |text: String| secrets.iter().fold(text, |t, s| t.replace(s.as_str(), "[redacted]"));
    let mut request = format!("{}{}", upstream.origin, head.target)
        .into_client_request()
        .map_err(|e| redact(format!("cannot build the upstream request: {e}")))?;
    if let Some(value) = head.authorization.as_deref()
        && let Ok(value) = HeaderValue::from_str(value)
    {
        request.headers_mut().insert("Authorization", value);
    }
    let connect = tokio_tungstenite::connect_async_with_config(request, Some(ws_config()), false);
    let server = match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect).await {
        Ok(Ok((server, _))) => server,
        Ok(Err(tungstenite::Error::Http(response))) => {
            // Refused (a bad token, a missing room): the client hears what the server said.
            let status = response.status();
            let body = response.body().clone().unwrap_or_default();
            let body = &body[..body.len().min(MAX_ERROR_BODY)];
            let head = format!(
                "HTTP/1.1 {} {}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("Error"),
                body.len()
            );
            let _ = client.write_all(head.as_bytes()).await;
            let _ = client.write_all(body).await;
            let _ = client.shutdown().await;
            return Ok(());
        }
        Ok(Err(error)) => {
            let _ = client.write_all(BAD_GATEWAY).await;
            return Err(redact(format!(
                "the LiveKit server did not accept the WebSocket: {error}"
            )));
        }
        Err(_) => {
            let _ = client.write_all(BAD_GATEWAY).await;
            return Err("the LiveKit server did not accept the WebSocket in time".into());
        }
    };
    let rewound = Rewound { prefix: head_bytes, read: 0, inner: client };
    let client = tokio::time::timeout(
        HANDSHAKE_TIMEOUT,
        tokio_tungstenite::accept_async_with_config(rewound, Some(ws_config())),
    )
    .await
    .map_err(|_| "the client's WebSocket handshake timed out".to_owned())?
    .map_err(|e| redact(format!("the client's WebSocket handshake failed: {e}")))?;
    bump(&shared.counters.signal_connections, 1);
    relay_messages(&shared, client, server).await;
    Ok(())
}

const BAD_GATEWAY: &[u8] =
    b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// Relays WebSocket messages both ways until either side closes.
async fn relay_messages<C, S>(
    shared: &Arc<Shared>,
    mut client: tokio_tungstenite::WebSocketStream<C>,
    mut server: tokio_tungstenite::WebSocketStream<S>,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    loop {
        tokio::select! {
            message = client.next() => {
                let Some(Ok(message)) = message else { break };
                let forward = match message {
                    Message::Binary(bytes) => match client_to_server(shared, &bytes) {
                        Rewrite::Unchanged => Message::Binary(bytes),
                        Rewrite::Replaced(bytes) => Message::Binary(bytes.into()),
                        Rewrite::Dropped => continue,
                    },
                    Message::Close(frame) => {
                        let _ = server.send(Message::Close(frame)).await;
                        break;
                    }
                    // Each side answers its own pings.
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                    text @ Message::Text(_) => text,
                };
                if server.send(forward).await.is_err() {
                    break;
                }
            }
            message = server.next() => {
                let Some(Ok(message)) = message else { break };
                let forward = match message {
                    Message::Binary(bytes) => match server_to_client(shared, &bytes) {
                        Rewrite::Unchanged => Message::Binary(bytes),
                        Rewrite::Replaced(bytes) => Message::Binary(bytes.into()),
                        Rewrite::Dropped => continue,
                    },
                    Message::Close(frame) => {
                        let _ = client.send(Message::Close(frame)).await;
                        break;
                    }
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                    text @ Message::Text(_) => text,
                };
                if client.send(forward).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = client.close(None).await;
    let _ = server.close(None).await;
}

/// What becomes of one signalling message.
#[derive(Debug, PartialEq, Eq)]
enum Rewrite {
    Unchanged,
    Replaced(Vec<u8>),
    Dropped,
}

/// A server message: its candidates name R.
fn server_to_client(shared: &Arc<Shared>, bytes: &[u8]) -> Rewrite {
    let mut response = match SignalResponse::decode(bytes) {
        Ok(response) => response,
        Err(error) => {
            eprintln!("lossy LiveKit proxy: a server message passed unread ({error})");
            return Rewrite::Unchanged;
        }
    };
    let (server_port, relay) = (shared.server_media.port(), shared.relay_addr);
    let mut map = |addr: SocketAddr| (addr.port() == server_port).then_some(relay);
    let c = &shared.counters;
    let changed = match response.message.as_mut() {
        Some(signal_response::Message::Offer(sd) | signal_response::Message::Answer(sd)) => {
            rewrite_description(sd, &mut map, &c.server_in_sdp, &c.candidates_dropped, "server")
        }
        Some(signal_response::Message::Trickle(trickle)) => {
            rewrite_trickle(trickle, &mut map, &c.server_trickled, &c.candidates_dropped, "server")
        }
        _ => return Rewrite::Unchanged,
    };
    finish(changed, || response.encode_to_vec())
}

/// A client message: its candidates name U_B.
fn client_to_server(shared: &Arc<Shared>, bytes: &[u8]) -> Rewrite {
    let mut request = match SignalRequest::decode(bytes) {
        Ok(request) => request,
        Err(error) => {
            eprintln!("lossy LiveKit proxy: a client message passed unread ({error})");
            return Rewrite::Unchanged;
        }
    };
    let mut map = |addr: SocketAddr| match addr.ip() {
        IpAddr::V4(ip) if !ip.is_unspecified() && addr.port() != 0 => {
            shared.upstream_for(addr).map(|(_, upstream)| upstream)
        }
        _ => None,
    };
    let c = &shared.counters;
    let changed = match request.message.as_mut() {
        Some(signal_request::Message::Offer(sd) | signal_request::Message::Answer(sd)) => {
            rewrite_description(sd, &mut map, &c.client_in_sdp, &c.candidates_dropped, "client")
        }
        Some(signal_request::Message::Trickle(trickle)) => {
            rewrite_trickle(trickle, &mut map, &c.client_trickled, &c.candidates_dropped, "client")
        }
        _ => return Rewrite::Unchanged,
    };
    finish(changed, || request.encode_to_vec())
}

/// Whether a message changed (`Some(true)`), stays as it came (`Some(false)`) or goes
/// (`None`). An unchanged message is passed on as its original bytes (re-encoding would lose
/// fields newer than our protocol types).
fn finish(changed: Option<bool>, encode: impl FnOnce() -> Vec<u8>) -> Rewrite {
    match changed {
        Some(true) => Rewrite::Replaced(encode()),
        Some(false) => Rewrite::Unchanged,
        None => Rewrite::Dropped,
    }
}

type AddressMap<'a> = dyn FnMut(SocketAddr) -> Option<SocketAddr> + 'a;

fn rewrite_description(
    sd: &mut livekit_protocol::SessionDescription,
    map: &mut AddressMap<'_>,
    rewritten: &AtomicU64,
    dropped: &AtomicU64,
    side: &str,
) -> Option<bool> {
    let outcome = rewrite_sdp(&sd.sdp, map);
    bump(rewritten, outcome.rewritten);
    bump(dropped, outcome.dropped);
    if outcome.rewritten + outcome.dropped > 0 {
        eprintln!(
            "lossy LiveKit proxy: {side} {} (id {}): {} candidate(s) rewritten, {} left out: {}",
            sd.r#type,
            sd.id,
            outcome.rewritten,
            outcome.dropped,
            outcome.changes.join("; ")
        );
    }
    let changed = outcome.sdp.is_some();
    if let Some(sdp) = outcome.sdp {
        sd.sdp = sdp;
    }
    Some(changed)
}

fn rewrite_trickle(
    trickle: &mut livekit_protocol::TrickleRequest,
    map: &mut AddressMap<'_>,
    rewritten: &AtomicU64,
    dropped: &AtomicU64,
    side: &str,
) -> Option<bool> {
    match rewrite_candidate_init(&trickle.candidate_init, map) {
        Trickled::Unchanged => Some(false),
        Trickled::Rewritten { json, from, to } => {
            bump(rewritten, 1);
            eprintln!(
                "lossy LiveKit proxy: {side} trickle (target {}): {from} → {to}",
                trickle.target
            );
            trickle.candidate_init = json;
            Some(true)
        }
        Trickled::Dropped(candidate) => {
            bump(dropped, 1);
            eprintln!("lossy LiveKit proxy: {side} trickle left out: {candidate}");
            None
        }
    }
}

/// An SDP with its candidate lines rewritten.
#[derive(Debug, PartialEq, Eq)]
struct SdpRewrite {
    /// `None` when there was no candidate line.
    sdp: Option<String>,
    rewritten: u64,
    dropped: u64,
    /// For the log: `from → to`, or the candidate left out.
    changes: Vec<String>,
}

fn rewrite_sdp(sdp: &str, map: &mut AddressMap<'_>) -> SdpRewrite {
    let mut out = String::with_capacity(sdp.len());
    let (mut rewritten, mut dropped) = (0, 0);
    let mut changes = Vec::new();
    for line in sdp.split_inclusive('\n') {
        let content = line.trim_end_matches(['\r', '\n']);
        let ending = &line[content.len()..];
        if !content.starts_with("a=candidate:") {
            out.push_str(line);
            continue;
        }
        match rewrite_candidate(content, map) {
            Some((new, from, to)) => {
                rewritten += 1;
                changes.push(format!("{from} → {to}"));
                out.push_str(&new);
                out.push_str(ending);
            }
            None => {
                dropped += 1;
                changes.push(format!("left out: {content}"));
            }
        }
    }
    let sdp = (rewritten + dropped > 0).then_some(out);
    SdpRewrite { sdp, rewritten, dropped, changes }
}

/// What became of a trickled `candidateInit`.
#[derive(Debug, PartialEq, Eq)]
enum Trickled {
    /// Not a candidate we need to touch (end of candidates, unreadable JSON).
    Unchanged,
    Rewritten {
        json: String,
        from: SocketAddr,
        to: SocketAddr,
    },
    /// Left out: the candidate as it came.
    Dropped(String),
}

fn rewrite_candidate_init(json: &str, map: &mut AddressMap<'_>) -> Trickled {
    let mut init = match serde_json::from_str::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(init)) => init,
        _ => {
            eprintln!("lossy LiveKit proxy: a candidateInit passed unread");
            return Trickled::Unchanged;
        }
    };
    let candidate = match init.get("candidate") {
        Some(serde_json::Value::String(c)) if !c.trim().is_empty() => c.trim().to_owned(),
        // End of candidates.
        None | Some(serde_json::Value::Null) => return Trickled::Unchanged,
        Some(serde_json::Value::String(_)) => return Trickled::Unchanged,
        Some(_) => return Trickled::Dropped(json.to_owned()),
    };
    match rewrite_candidate(&candidate, map) {
        Some((new, from, to)) => {
            init.insert("candidate".into(), new.into());
            Trickled::Rewritten { json: serde_json::Value::Object(init).to_string(), from, to }
        }
        None => Trickled::Dropped(candidate),
    }
}

/// Rewrites one candidate (`candidate:…`, with or without `a=`): the new line and the address
/// change, or `None` to leave it out (not UDP, unreadable, or `map` has no address for it).
/// A related address (`raddr`/`rport`) becomes the new address too, so no real one is left.
fn rewrite_candidate(
    line: &str,
    map: &mut AddressMap<'_>,
) -> Option<(String, SocketAddr, SocketAddr)> {
    let (prefix, body) = match line.strip_prefix("a=") {
        Some(body) => ("a=", body),
        None => ("", line),
    };
    let mut fields: Vec<String> = body.split_whitespace().map(str::to_owned).collect();
    if fields.len() < 8 || !fields[0].starts_with("candidate:") || fields[6] != "typ" {
        return None;
    }
    if !fields[2].eq_ignore_ascii_case("udp") {
        return None;
    }
    let ip: IpAddr = fields[4].parse().ok()?;
    let port: u16 = fields[5].parse().ok()?;
    let from = SocketAddr::new(ip, port);
    let to = map(from)?;
    fields[4] = to.ip().to_string();
    fields[5] = to.port().to_string();
    let mut i = 8;
    while i + 1 < fields.len() {
        match fields[i].as_str() {
            "raddr" => fields[i + 1] = to.ip().to_string(),
            "rport" => fields[i + 1] = to.port().to_string(),
            _ => {}
        }
        i += 2;
    }
    Some((format!("{prefix}{}", fields.join(" ")), from, to))
}

/// A TCP stream whose first bytes (the request head already read) are read again.
struct Rewound {
    prefix: Vec<u8>,
    read: usize,
    inner: TcpStream,
}

impl AsyncRead for Rewound {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if this.read < this.prefix.len() {
            let rest = &this.prefix[this.read..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.read += n;
            if this.read == this.prefix.len() {
                this.prefix = Vec::new();
                this.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewound {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_server_candidate_names_the_relay() {
        let relay = addr("127.0.0.1:4000");
        let mut map = |a: SocketAddr| (a.port() == 7882).then_some(relay);
        let (line, from, to) = rewrite_candidate(
            "candidate:1589475735 1 udp 2130706431 127.0.0.1 7882 typ host generation 0",
            &mut map,
        )
        .unwrap();
        assert_eq!(
            line,
            "candidate:1589475735 1 udp 2130706431 127.0.0.1 4000 typ host generation 0"
        );
        assert_eq!((from, to), (addr("127.0.0.1:7882"), relay));
        assert!(
            rewrite_candidate("candidate:1 1 udp 1 127.0.0.1 9999 typ host", &mut map).is_none()
        );
    }

    #[test]
    fn tcp_mdns_and_garbage_are_left_out() {
        let mut map = |_: SocketAddr| Some(addr("127.0.0.1:1"));
        for bad in [
            "candidate:1 1 tcp 1 127.0.0.1 9 typ host tcptype passive",
            "candidate:1 1 udp 1 abc.local 9 typ host",
            "candidate:1 1 udp 1 127.0.0.1 99999 typ host",
            "candidate:1 1 udp",
            "",
            "a=candidate:x y z w v u t s",
        ] {
            assert!(rewrite_candidate(bad, &mut map).is_none(), "{bad}");
        }
    }

    #[test]
    fn related_addresses_are_hidden_too() {
        let mut map = |_: SocketAddr| Some(addr("127.0.0.1:5"));
        let (line, ..) = rewrite_candidate(
            "a=candidate:2 1 UDP 1 203.0.113.9 6000 typ srflx raddr 192.168.1.2 rport 6001",
            &mut map,
        )
        .unwrap();
        assert_eq!(line, "a=candidate:2 1 UDP 1 127.0.0.1 5 typ srflx raddr 127.0.0.1 rport 5");
    }

    #[test]
    fn sdp_lines_keep_their_endings_and_order() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 5 127.0.0.1 7882 typ host\r\na=candidate:2 1 tcp 5 127.0.0.1 7881 typ host tcptype passive\r\na=end-of-candidates\r\n";
        let mut map = |a: SocketAddr| (a.port() == 7882).then_some(addr("127.0.0.1:4000"));
        let out = rewrite_sdp(sdp, &mut map);
        assert_eq!(
            out.sdp.as_deref(),
            Some(
                "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=candidate:1 1 udp 5 127.0.0.1 4000 typ host\r\na=end-of-candidates\r\n"
            )
        );
        assert_eq!((out.rewritten, out.dropped), (1, 1));
        assert_eq!(rewrite_sdp("v=0\r\n", &mut map).sdp, None);
    }

    #[test]
    fn trickled_candidates_keep_their_other_fields() {
        let mut map = |_: SocketAddr| Some(addr("127.0.0.1:4000"));
        let json = r#"{"candidate":"candidate:1 1 udp 5 127.0.0.1 7882 typ host","sdpMid":"0","sdpMLineIndex":0}"#;
        let Trickled::Rewritten { json, .. } = rewrite_candidate_init(json, &mut map) else {
            panic!("not rewritten")
        };
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["candidate"], "candidate:1 1 udp 5 127.0.0.1 4000 typ host");
        assert_eq!(value["sdpMid"], "0");
        assert_eq!(value["sdpMLineIndex"], 0);
        for unchanged in [r#"{"candidate":"","sdpMid":null}"#, "{", "[]", r#"{"sdpMid":"0"}"#] {
            assert_eq!(rewrite_candidate_init(unchanged, &mut map), Trickled::Unchanged);
        }
        let tcp = r#"{"candidate":"candidate:1 1 tcp 5 127.0.0.1 7881 typ host"}"#;
        assert!(matches!(rewrite_candidate_init(tcp, &mut map), Trickled::Dropped(_)));
    }

    #[test]
    fn request_heads_are_read_without_panics() {
        let head = parse_head(
            b"GET /rtc?access_token=abc&protocol=16 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nAuthorization: Bearer abc",
        )
        .unwrap();
        assert_eq!(
            head,
            RequestHead {
                target: "/rtc?access_token=abc&protocol=16".into(),
                authorization: Some("Bearer abc".into()),
                websocket: true,
            }
        );
        for bad in [&b""[..], b"\xff\xfe", b"GET", b"GET http://x/ HTTP/1.1"] {
            assert!(parse_head(bad).is_err());
        }
    }

    #[test]
    fn stats_subtract_and_divide_safely() {
        let now = PathStats { forwarded: 90, dropped: 10 };
        assert_eq!(now.loss(), 0.1);
        assert_eq!(PathStats::default().loss(), 0.0);
        assert_eq!(PathStats::default().since(&now), PathStats::default());
    }

    #[test]
    fn urls_of_the_stack_are_understood() {
        let up = Upstream::parse("ws://127.0.0.1:7880").unwrap();
        assert_eq!(
            (up.origin.as_str(), up.host.as_str(), up.port),
            ("ws://127.0.0.1:7880", "127.0.0.1", 7880)
        );
        let up = Upstream::parse("http://localhost:7880/prefix/").unwrap();
        assert_eq!(up.origin, "ws://localhost:7880/prefix");
        assert!(Upstream::parse("wss://example.org").is_err());
        assert!(Upstream::parse("not a url").is_err());
    }

    /// A stand-in for LiveKit's media port: echoes every datagram.
    async fn echo_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while let Ok((len, from)) = socket.recv_from(&mut buf).await {
                let _ = socket.send_to(&buf[..len], from).await;
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn the_relay_drops_the_asked_fraction_both_ways_and_stops_when_dropped() {
        let (server, echo) = echo_server().await;
        let lossy = LossyLiveKit::in_front_of("ws://127.0.0.1:9", server.port()).await.unwrap();
        assert_eq!(lossy.server_media_addr(), server);
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let relay = lossy.client_facing_addr();
        let mut buf = [0u8; 64];

        // No loss: an echo comes back through R, from R.
        client.send_to(b"hello", relay).await.unwrap();
        let (len, from) = tokio::time::timeout(Duration::from_secs(2), client.recv_from(&mut buf))
            .await
            .expect("the echo comes back")
            .unwrap();
        assert_eq!((&buf[..len], from), (&b"hello"[..], relay));

        lossy.set_loss(0.5);
        let before = lossy.stats();
        for i in 0..2000u32 {
            client.send_to(&i.to_be_bytes(), relay).await.unwrap();
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let window = lossy.stats().since(&before);
        assert_eq!(window.to_server.total(), 2000, "{window:?}");
        assert!((0.45..0.55).contains(&window.to_server.loss()), "{window:?}");
        assert_eq!(window.to_client.total(), window.to_server.forwarded, "{window:?}");
        assert!((0.4..0.6).contains(&window.to_client.loss()), "{window:?}");
        assert_eq!((window.unrelayed, window.client_addresses), (0, 1));

        // Anything from elsewhere than the server at U_B is not relayed.
        let (_, upstream) = lossy.shared.upstream_for(client.local_addr().unwrap()).unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        stranger.send_to(b"x", upstream).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(lossy.stats().unrelayed, 1);

        lossy.set_loss(f64::NAN);
        assert_eq!(lossy.loss(), 0.0);
        lossy.set_loss(7.0);
        assert_eq!(lossy.loss(), 1.0);
        lossy.set_loss(0.0);
        drop(lossy);
        tokio::time::sleep(Duration::from_millis(50)).await;
        while client.try_recv_from(&mut buf).is_ok() {}
        let _ = client.send_to(b"after", relay).await;
        let late =
            tokio::time::timeout(Duration::from_millis(300), client.recv_from(&mut buf)).await;
        assert!(!matches!(late, Ok(Ok(_))), "the relay forwarded after it was dropped");
        echo.abort();
    }

    /// A stand-in for LiveKit's signalling: refuses `access_token=bad`, otherwise tells what it
    /// saw of the request, sends one trickled candidate and echoes what the client sends.
    async fn signalling_server(udp_port: u16) -> SocketAddr {
        use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut seen = String::new();
                    // The callback's type is tungstenite's, large error and all.
                    #[allow(clippy::result_large_err)]
                    let callback = |request: &Request, response: Response| {
                        let target = request.uri().to_string();
                        if target.contains("access_token=bad") {
                            let mut refusal = ErrorResponse::new(Some("invalid token".into()));
                            *refusal.status_mut() = tungstenite::http::StatusCode::UNAUTHORIZED;
                            return Err(refusal);
                        }
                        let auth = request
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("none");
                        seen = format!("{target} {auth}");
                        Ok(response)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await
                    else {
                        return;
                    };
                    let _ = ws.send(Message::text(seen)).await;
                    let trickle = SignalResponse {
                        message: Some(signal_response::Message::Trickle(
                            livekit_protocol::TrickleRequest {
                                candidate_init: format!(
                                    r#"{{"candidate":"candidate:1 1 udp 2130706431 127.0.0.1 {udp_port} typ host","sdpMid":"0"}}"#
                                ),
                                target: 1,
                                r#final: false,
                            },
                        )),
                    };
                    let _ = ws.send(Message::binary(trickle.encode_to_vec())).await;
                    while let Some(Ok(message)) = ws.next().await {
                        if message.is_binary() && ws.send(message).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn next<S: AsyncRead + AsyncWrite + Unpin>(
        ws: &mut tokio_tungstenite::WebSocketStream<S>,
    ) -> Message {
        let next = tokio::time::timeout(Duration::from_secs(2), ws.next());
        next.await.expect("a message in time").expect("open").unwrap()
    }

    #[tokio::test]
    async fn the_proxy_relays_signalling_and_rewrites_candidates_both_ways() {
        let server = signalling_server(7882).await;
        let lossy = LossyLiveKit::in_front_of(&format!("http://{server}"), 7882).await.unwrap();
        let url = format!("{}/rtc?access_token=good&protocol=16", lossy.url());
        let mut request = url.into_client_request().unwrap();
        request.headers_mut().insert("Authorization", HeaderValue::from_static("Bearer good"));
        let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();

        let seen = next(&mut ws).await;
        assert_eq!(seen.to_text().unwrap(), "/rtc?access_token=good&protocol=16 Bearer good");
        let trickle = SignalResponse::decode(next(&mut ws).await.into_data()).unwrap();
        let Some(signal_response::Message::Trickle(trickle)) = trickle.message else {
            panic!("not a trickle")
        };
        let relay = lossy.client_facing_addr();
        let expected = format!("127.0.0.1 {} typ host", relay.port());
        assert!(trickle.candidate_init.contains(&expected), "{}", trickle.candidate_init);

        // The client's candidates come back (echoed) naming U_B; TCP ones are left out.
        let offer = |sdp: &str| SignalRequest {
            message: Some(signal_request::Message::Offer(livekit_protocol::SessionDescription {
                r#type: "offer".into(),
                sdp: sdp.into(),
                ..Default::default()
            })),
        };
        let sdp = "v=0\r\na=candidate:1 1 udp 1 192.0.2.7 5000 typ host\r\na=candidate:2 1 tcp 1 192.0.2.7 5001 typ host tcptype passive\r\n";
        ws.send(Message::binary(offer(sdp).encode_to_vec())).await.unwrap();
        let echoed = SignalRequest::decode(next(&mut ws).await.into_data()).unwrap();
        let Some(signal_request::Message::Offer(echoed)) = echoed.message else {
            panic!("not an offer")
        };
        let (_, upstream) = lossy.shared.upstream_for("192.0.2.7:5000".parse().unwrap()).unwrap();
        assert_eq!(
            echoed.sdp,
            format!("v=0\r\na=candidate:1 1 udp 1 127.0.0.1 {} typ host\r\n", upstream.port())
        );
        // Garbage passes unchanged.
        ws.send(Message::binary(vec![0xff, 0xff, 0xff])).await.unwrap();
        assert_eq!(next(&mut ws).await.into_data().as_ref(), &[0xff, 0xff, 0xff]);
        let stats = lossy.stats();
        assert_eq!(stats.signal_connections, 1);
        assert_eq!((stats.candidates.server_trickled, stats.candidates.client_in_sdp), (1, 1));
        assert_eq!(stats.candidates.dropped, 1);

        // A refusal reaches the client with its status.
        let refused =
            tokio_tungstenite::connect_async(format!("{}/rtc?access_token=bad", lossy.url())).await;
        match refused {
            Err(tungstenite::Error::Http(response)) => assert_eq!(response.status().as_u16(), 401),
            other => panic!("not refused: {:?}", other.map(|_| ())),
        }
    }
}
