//! The relay between a network namespace and this machine's services, with faults.
//!
//! ```text
//!   namespace                          │ host (the stack, on 127.0.0.1)
//!   bot ──tcp──▶ 127.0.0.1:P (listener) ─┼─ faults ─▶ new connection ──▶ 127.0.0.1:P
//!   bot ──udp──▶ 127.0.0.1:U (socket)  ─┼─ faults ─▶ socket per bot address ──▶ 127.0.0.1:U
//!       ◀─────────────────────────────── ┼─ faults ◀─ (and back)
//! ```
//!
//! For every TCP and UDP port it is given, the relay binds the same port on 127.0.0.1 inside the
//! namespace, so a program there reaches each service at the address and port it has on the
//! host: URLs, ICE candidates and tokens work unchanged. UDP: each source address inside gets a
//! host socket of its own, connected to the service (the service sees one peer per source, as
//! through a NAT); datagrams go both ways. TCP: each accepted connection gets a connection to
//! the service; bytes are copied both ways in chunks, half-closes pass through, and a reset or
//! a service that refuses the connection resets the other side.
//!
//! What happens to each datagram and chunk is decided by [`super::faults`]; the faults change
//! through a [`RelayHandle`] while the relay runs, and its counters are read through it too.
//! The relay's tasks end when the [`Relay`] is dropped.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::AbortHandle;

use super::faults::{self, ChunkVerdict, DatagramVerdict, DropReason, Due, Faults, Lane, Random};
use super::netns::Namespace;

/// Every service, and every listener of the relay, is on loopback.
const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// The receive buffer for datagrams (any UDP datagram fits).
const DATAGRAM: usize = 64 * 1024;
/// The largest TCP chunk read and forwarded at once.
const CHUNK: usize = 16 * 1024;
/// Datagrams in flight per direction of a mapping (a second of video at 200 ms delay is a few
/// hundred); beyond, they are not relayed.
const DATAGRAM_QUEUE: usize = 4096;
/// TCP chunks in flight per direction of a connection (4 MiB at most); beyond, reading waits.
const CHUNK_QUEUE: usize = 256;
/// The most source addresses the relay maps per UDP port.
const MAX_MAPPINGS: usize = 1024;

/// The relay, running; its tasks end when it is dropped.
#[derive(Debug)]
pub(crate) struct Relay {
    handle: RelayHandle,
    shared: Arc<Shared>,
}

/// Changes the faults of a running relay and reads its counters.
#[derive(Debug, Clone)]
pub(crate) struct RelayHandle {
    faults: Arc<watch::Sender<Faults>>,
    counters: Arc<Counters>,
}

/// Counts of one direction of one protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Flow {
    /// Datagrams or TCP chunks passed on.
    pub(crate) forwarded: u64,
    /// Their bytes.
    pub(crate) forwarded_bytes: u64,
    /// Datagrams dropped by the random loss.
    pub(crate) lost: u64,
    /// Datagrams dropped because the path was cut when they arrived or when they were due.
    pub(crate) cut: u64,
    /// The bytes of the datagrams dropped (lost or cut).
    pub(crate) dropped_bytes: u64,
}

impl Flow {
    /// The share of the datagrams that met the random loss (not a cut) and were dropped by it.
    pub(crate) fn loss(&self) -> f64 {
        match self.forwarded + self.lost {
            0 => 0.0,
            seen => self.lost as f64 / seen as f64,
        }
    }

    fn since(&self, earlier: &Flow) -> Flow {
        Flow {
            forwarded: self.forwarded - earlier.forwarded,
            forwarded_bytes: self.forwarded_bytes - earlier.forwarded_bytes,
            lost: self.lost - earlier.lost,
            cut: self.cut - earlier.cut,
            dropped_bytes: self.dropped_bytes - earlier.dropped_bytes,
        }
    }
}

/// What the relay has done so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RelayStats {
    /// UDP from the namespace to the services.
    pub(crate) udp_to_service: Flow,
    /// UDP from the services to the namespace.
    pub(crate) udp_to_bot: Flow,
    /// TCP from the namespace to the services (chunks; never dropped).
    pub(crate) tcp_to_service: Flow,
    /// TCP from the services to the namespace (chunks; never dropped).
    pub(crate) tcp_to_bot: Flow,
    /// Source addresses inside that got a UDP socket on the host.
    pub(crate) udp_mappings: u64,
    /// TCP connections accepted inside.
    pub(crate) tcp_connections: u64,
    /// TCP connections whose service refused or failed the connection (reset inside).
    pub(crate) tcp_refused: u64,
    /// Datagrams not relayed for another reason than the faults: a full queue, too many source
    /// addresses, a failed send (a service that is down answers with ICMP).
    pub(crate) unrelayed: u64,
}

impl RelayStats {
    /// The counts since an earlier reading.
    pub(crate) fn since(&self, earlier: &RelayStats) -> RelayStats {
        RelayStats {
            udp_to_service: self.udp_to_service.since(&earlier.udp_to_service),
            udp_to_bot: self.udp_to_bot.since(&earlier.udp_to_bot),
            tcp_to_service: self.tcp_to_service.since(&earlier.tcp_to_service),
            tcp_to_bot: self.tcp_to_bot.since(&earlier.tcp_to_bot),
            udp_mappings: self.udp_mappings - earlier.udp_mappings,
            tcp_connections: self.tcp_connections - earlier.tcp_connections,
            tcp_refused: self.tcp_refused - earlier.tcp_refused,
            unrelayed: self.unrelayed - earlier.unrelayed,
        }
    }

    /// The counts as lines of a report.
    pub(crate) fn report(&self) -> String {
        let flow = |name: &str, f: &Flow| {
            format!(
                "  {name:<16} {:>8} forwarded ({:>10} B)  {:>6} lost  {:>6} cut ({} B dropped)\n",
                f.forwarded, f.forwarded_bytes, f.lost, f.cut, f.dropped_bytes
            )
        };
        let mut text = String::new();
        text.push_str(&flow("udp to service", &self.udp_to_service));
        text.push_str(&flow("udp to bot", &self.udp_to_bot));
        text.push_str(&flow("tcp to service", &self.tcp_to_service));
        text.push_str(&flow("tcp to bot", &self.tcp_to_bot));
        text.push_str(&format!(
            "  udp mappings {}, tcp connections {} ({} refused by the service), unrelayed {}\n",
            self.udp_mappings, self.tcp_connections, self.tcp_refused, self.unrelayed
        ));
        text
    }
}

/// The counters behind [`Flow`].
#[derive(Debug, Default)]
struct FlowCounters {
    forwarded: AtomicU64,
    forwarded_bytes: AtomicU64,
    lost: AtomicU64,
    cut: AtomicU64,
    dropped_bytes: AtomicU64,
}

impl FlowCounters {
    fn forwarded(&self, bytes: usize) {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        self.forwarded_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn dropped(&self, bytes: usize, reason: DropReason) {
        match reason {
            DropReason::Loss => &self.lost,
            DropReason::Cut => &self.cut,
        }
        .fetch_add(1, Ordering::Relaxed);
        self.dropped_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn read(&self) -> Flow {
        Flow {
            forwarded: self.forwarded.load(Ordering::Relaxed),
            forwarded_bytes: self.forwarded_bytes.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            cut: self.cut.load(Ordering::Relaxed),
            dropped_bytes: self.dropped_bytes.load(Ordering::Relaxed),
        }
    }
}

/// The counters behind [`RelayStats`].
#[derive(Debug, Default)]
struct Counters {
    udp_to_service: FlowCounters,
    udp_to_bot: FlowCounters,
    tcp_to_service: FlowCounters,
    tcp_to_bot: FlowCounters,
    udp_mappings: AtomicU64,
    tcp_connections: AtomicU64,
    tcp_refused: AtomicU64,
    unrelayed: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the relay's tasks share.
#[derive(Debug)]
struct Shared {
    faults: watch::Receiver<Faults>,
    counters: Arc<Counters>,
    /// Every task, aborted when the relay is dropped.
    tasks: Mutex<Vec<AbortHandle>>,
    /// The seed of the loss decisions; each flow direction draws its own stream.
    seed: u64,
    streams: AtomicU64,
}

impl Shared {
    fn spawn(&self, task: impl Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task).abort_handle();
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        tasks.retain(|task| !task.is_finished());
        tasks.push(handle);
    }

    fn random(&self) -> Random {
        Random::stream(self.seed, self.streams.fetch_add(1, Ordering::Relaxed))
    }

    fn faults(&self) -> Faults {
        *self.faults.borrow()
    }
}

impl Relay {
    /// Binds `tcp_ports` and `udp_ports` on 127.0.0.1 inside `namespace` and relays each to the
    /// same port on 127.0.0.1 of the host, without faults at first; `seed` seeds the random
    /// loss. Needs a tokio runtime with I/O and timers.
    pub(crate) async fn start(
        namespace: &Namespace,
        tcp_ports: &[u16],
        udp_ports: &[u16],
        seed: u64,
    ) -> anyhow::Result<Relay> {
        let (tcp, udp) = (tcp_ports.to_vec(), udp_ports.to_vec());
        let (listeners, sockets) = namespace
            .inside(move || {
                let mut listeners = Vec::new();
                for port in tcp {
                    let listener = std::net::TcpListener::bind((LOOPBACK, port))
                        .with_context(|| format!("binding TCP port {port} in the namespace"))?;
                    listener.set_nonblocking(true)?;
                    listeners.push((port, listener));
                }
                let mut sockets = Vec::new();
                for port in udp {
                    let socket = std::net::UdpSocket::bind((LOOPBACK, port))
                        .with_context(|| format!("binding UDP port {port} in the namespace"))?;
                    socket.set_nonblocking(true)?;
                    sockets.push((port, socket));
                }
                Ok((listeners, sockets))
            })
            .await?;
        let (sender, receiver) = watch::channel(Faults::NONE);
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            faults: receiver,
            counters: counters.clone(),
            tasks: Mutex::new(Vec::new()),
            seed,
            streams: AtomicU64::new(0),
        });
        for (port, listener) in listeners {
            let listener = TcpListener::from_std(listener)?;
            shared.spawn(accept(shared.clone(), listener, port));
        }
        for (port, socket) in sockets {
            let socket = Arc::new(UdpSocket::from_std(socket)?);
            shared.spawn(udp_port(shared.clone(), socket, port));
        }
        Ok(Relay { handle: RelayHandle { faults: Arc::new(sender), counters }, shared })
    }

    /// A handle to change its faults and read its counters.
    pub(crate) fn handle(&self) -> RelayHandle {
        self.handle.clone()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let tasks = self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
        for task in tasks.iter() {
            task.abort();
        }
    }
}

impl RelayHandle {
    /// Drops this share of UDP datagrams in each direction from now on (0 to 1).
    pub(crate) fn set_loss(&self, loss: f64) {
        self.faults.send_modify(|faults| *faults = Faults { loss, ..*faults }.sanitized());
    }

    /// Delays every datagram and TCP chunk by this much in each direction from now on.
    pub(crate) fn set_delay(&self, delay: Duration) {
        self.faults.send_modify(|faults| faults.delay = delay);
    }

    /// Pulls the cable: UDP is dropped, TCP stops where it is (connections stay open, new ones
    /// are accepted inside but get no answer).
    pub(crate) fn cut(&self) {
        self.faults.send_modify(|faults| faults.cut = true);
    }

    /// Puts the cable back: held TCP data flows on, UDP goes through again (the loss and the
    /// delay set before still apply).
    pub(crate) fn restore(&self) {
        self.faults.send_modify(|faults| faults.cut = false);
    }

    /// The counters so far.
    pub(crate) fn stats(&self) -> RelayStats {
        let c = &self.counters;
        RelayStats {
            udp_to_service: c.udp_to_service.read(),
            udp_to_bot: c.udp_to_bot.read(),
            tcp_to_service: c.tcp_to_service.read(),
            tcp_to_bot: c.tcp_to_bot.read(),
            udp_mappings: c.udp_mappings.load(Ordering::Relaxed),
            tcp_connections: c.tcp_connections.load(Ordering::Relaxed),
            tcp_refused: c.tcp_refused.load(Ordering::Relaxed),
            unrelayed: c.unrelayed.load(Ordering::Relaxed),
        }
    }
}

/// Waits until the path is not cut; fails when the relay is gone.
async fn restored(faults: &mut watch::Receiver<Faults>) -> Result<(), watch::error::RecvError> {
    faults.wait_for(|faults| !faults.cut).await.map(|_| ())
}

/// Sleeps until `at` (not at all when it has passed).
async fn until(at: Instant) {
    if at > Instant::now() {
        tokio::time::sleep_until(at.into()).await;
    }
}

// ---------------------------------------------------------------------------------------- UDP

/// One source address inside, mapped to a host socket.
struct Mapping {
    /// Datagrams toward the service, with their delivery time.
    to_service: mpsc::Sender<(Instant, Vec<u8>)>,
    /// The order of that direction.
    lane: Lane,
}

/// Datagrams toward the namespace, with their delivery time and the address inside.
type ToBot = mpsc::Sender<(Instant, Vec<u8>, SocketAddr)>;

/// Receives on UDP port `port` inside and hands each datagram to its source's mapping.
async fn udp_port(shared: Arc<Shared>, inside: Arc<UdpSocket>, port: u16) {
    let service = SocketAddr::from((LOOPBACK, port));
    let (to_bot, queue) = mpsc::channel(DATAGRAM_QUEUE);
    shared.spawn(deliver_to_bots(shared.clone(), inside.clone(), queue));
    let mut mappings: HashMap<SocketAddr, Mapping> = HashMap::new();
    let mut random = shared.random();
    let mut buffer = vec![0u8; DATAGRAM];
    loop {
        let (n, bot) = match inside.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                eprintln!("chaos relay: UDP port {port} inside: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if !mappings.contains_key(&bot) {
            if mappings.len() >= MAX_MAPPINGS {
                Counters::add(&shared.counters.unrelayed);
                continue;
            }
            match open_mapping(&shared, service, bot, to_bot.clone()).await {
                Ok(mapping) => {
                    mappings.insert(bot, mapping);
                }
                Err(error) => {
                    eprintln!("chaos relay: no host socket for {bot} toward {service}: {error}");
                    Counters::add(&shared.counters.unrelayed);
                    continue;
                }
            }
        }
        let Some(mapping) = mappings.get_mut(&bot) else {
            continue;
        };
        match mapping.lane.datagram(&shared.faults(), Instant::now(), random.unit()) {
            DatagramVerdict::DeliverAt(at) => {
                if mapping.to_service.try_send((at, buffer[..n].to_vec())).is_err() {
                    Counters::add(&shared.counters.unrelayed);
                }
            }
            DatagramVerdict::Drop(reason) => shared.counters.udp_to_service.dropped(n, reason),
        }
    }
}

/// A host socket connected to `service` for source address `bot`, and its two tasks.
async fn open_mapping(
    shared: &Arc<Shared>,
    service: SocketAddr,
    bot: SocketAddr,
    to_bot: ToBot,
) -> std::io::Result<Mapping> {
    let socket = UdpSocket::bind((LOOPBACK, 0)).await?;
    socket.connect(service).await?;
    let socket = Arc::new(socket);
    let (to_service, queue) = mpsc::channel(DATAGRAM_QUEUE);
    shared.spawn(deliver_to_service(shared.clone(), socket.clone(), queue));
    shared.spawn(from_service(shared.clone(), socket, bot, to_bot));
    Counters::add(&shared.counters.udp_mappings);
    Ok(Mapping { to_service, lane: Lane::new() })
}

/// Sends each datagram of `queue` to the service when it is due.
async fn deliver_to_service(
    shared: Arc<Shared>,
    socket: Arc<UdpSocket>,
    mut queue: mpsc::Receiver<(Instant, Vec<u8>)>,
) {
    let counters = &shared.counters;
    while let Some((at, datagram)) = queue.recv().await {
        until(at).await;
        match faults::datagram_due(&shared.faults()) {
            Due::Send => match socket.send(&datagram).await {
                Ok(_) => counters.udp_to_service.forwarded(datagram.len()),
                // The service is down (an ICMP error came back for an earlier datagram).
                Err(_) => Counters::add(&counters.unrelayed),
            },
            Due::Drop | Due::Hold => {
                counters.udp_to_service.dropped(datagram.len(), DropReason::Cut)
            }
        }
    }
}

/// Receives the service's datagrams for source address `bot` and queues them toward it.
async fn from_service(shared: Arc<Shared>, socket: Arc<UdpSocket>, bot: SocketAddr, to_bot: ToBot) {
    let mut lane = Lane::new();
    let mut random = shared.random();
    let mut buffer = vec![0u8; DATAGRAM];
    loop {
        let n = match socket.recv(&mut buffer).await {
            Ok(n) => n,
            // ICMP port unreachable for what was sent: the service is down for now.
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        match lane.datagram(&shared.faults(), Instant::now(), random.unit()) {
            DatagramVerdict::DeliverAt(at) => {
                if to_bot.try_send((at, buffer[..n].to_vec(), bot)).is_err() {
                    Counters::add(&shared.counters.unrelayed);
                }
            }
            DatagramVerdict::Drop(reason) => shared.counters.udp_to_bot.dropped(n, reason),
        }
    }
}

/// Sends each datagram of `queue` to its address inside when it is due.
async fn deliver_to_bots(
    shared: Arc<Shared>,
    inside: Arc<UdpSocket>,
    mut queue: mpsc::Receiver<(Instant, Vec<u8>, SocketAddr)>,
) {
    let counters = &shared.counters;
    while let Some((at, datagram, bot)) = queue.recv().await {
        until(at).await;
        match faults::datagram_due(&shared.faults()) {
            Due::Send => match inside.send_to(&datagram, bot).await {
                Ok(_) => counters.udp_to_bot.forwarded(datagram.len()),
                Err(_) => Counters::add(&counters.unrelayed),
            },
            Due::Drop | Due::Hold => counters.udp_to_bot.dropped(datagram.len(), DropReason::Cut),
        }
    }
}

// ---------------------------------------------------------------------------------------- TCP

/// How one direction of a TCP connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The sender closed it; the close was passed on.
    Closed,
    /// A side failed (reset, or the relay is going): the connection is reset on both sides.
    Reset,
}

/// Accepts connections on TCP port `port` inside.
async fn accept(shared: Arc<Shared>, listener: TcpListener, port: u16) {
    loop {
        match listener.accept().await {
            Ok((bot, _)) => {
                Counters::add(&shared.counters.tcp_connections);
                shared.spawn(connection(shared.clone(), bot, port));
            }
            Err(error) => {
                eprintln!("chaos relay: TCP port {port} inside: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One connection accepted inside, relayed to the service on `port`.
async fn connection(shared: Arc<Shared>, mut bot: TcpStream, port: u16) {
    // During a cut a new connection waits here. With a real cable pulled its SYN would go
    // unanswered; here the namespace's kernel has completed the handshake already, so the bot
    // sees a connection that never answers, and gives up on its own timeout either way.
    if restored(&mut shared.faults.clone()).await.is_err() {
        return;
    }
    let mut service = match TcpStream::connect((LOOPBACK, port)).await {
        Ok(service) => service,
        Err(_) => {
            // The service is down: the bot sees a reset, as close to a refused connection as
            // an accepted one can come.
            Counters::add(&shared.counters.tcp_refused);
            let _ = bot.set_zero_linger();
            return;
        }
    };
    let _ = bot.set_nodelay(true);
    let _ = service.set_nodelay(true);
    let end = {
        let (bot_read, bot_write) = bot.split();
        let (service_read, service_write) = service.split();
        let counters = &shared.counters;
        let up = pump(&shared, bot_read, service_write, &counters.tcp_to_service);
        let down = pump(&shared, service_read, bot_write, &counters.tcp_to_bot);
        tokio::pin!(up, down);
        tokio::select! {
            end = &mut up => if end == End::Reset { End::Reset } else { down.await },
            end = &mut down => if end == End::Reset { End::Reset } else { up.await },
        }
    };
    if end == End::Reset {
        let _ = bot.set_zero_linger();
        let _ = service.set_zero_linger();
    }
}

/// Copies `from` to `to` in chunks, each delivered when the faults say (held during a cut);
/// passes the close on once everything before it is delivered.
async fn pump(
    shared: &Shared,
    mut from: impl AsyncRead + Unpin,
    mut to: impl AsyncWrite + Unpin,
    counters: &FlowCounters,
) -> End {
    let (tx, mut rx) = mpsc::channel::<(Instant, Vec<u8>)>(CHUNK_QUEUE);
    let mut read_faults = shared.faults.clone();
    let mut write_faults = shared.faults.clone();
    let read = async move {
        let tx = tx;
        let mut lane = Lane::new();
        loop {
            let mut chunk = vec![0u8; CHUNK];
            let n = match from.read(&mut chunk).await {
                Ok(0) => return End::Closed,
                Ok(n) => n,
                Err(_) => return End::Reset,
            };
            chunk.truncate(n);
            let at = loop {
                let faults = *read_faults.borrow_and_update();
                match lane.chunk(&faults, Instant::now()) {
                    ChunkVerdict::DeliverAt(at) => break at,
                    ChunkVerdict::Hold => {
                        if restored(&mut read_faults).await.is_err() {
                            return End::Reset;
                        }
                    }
                }
            };
            if tx.send((at, chunk)).await.is_err() {
                return End::Reset;
            }
        }
    };
    let write = async move {
        while let Some((at, chunk)) = rx.recv().await {
            until(at).await;
            loop {
                let faults = *write_faults.borrow_and_update();
                match faults::chunk_due(&faults) {
                    Due::Send => break,
                    Due::Hold | Due::Drop => {
                        if restored(&mut write_faults).await.is_err() {
                            return End::Reset;
                        }
                    }
                }
            }
            if to.write_all(&chunk).await.is_err() {
                return End::Reset;
            }
            counters.forwarded(chunk.len());
        }
        match to.shutdown().await {
            Ok(()) => End::Closed,
            Err(_) => End::Reset,
        }
    };
    tokio::pin!(read, write);
    tokio::select! {
        end = &mut read => if end == End::Reset { End::Reset } else { write.await },
        end = &mut write => end,
    }
}
