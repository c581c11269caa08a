//! The tokio task of a room connection: it owns the WebSocket, the UDP sockets and the timer,
//! and moves bytes and time between them and the sans-IO [`Connection`] core, which decides
//! everything else. Nothing here waits on the network without a deadline, and nothing here
//! waits on the network inside the loop: openings run beside it, sends go to the
//! [`SignalLink`]'s writer.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::time::{Duration, Instant};

use livekit_protocol::signal_response;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{Instrument as _, debug};

use crate::api::Command;
use crate::connection::{Action, Connection, Opened};
use crate::engine::LocalAddrs;
use crate::error::ConnectError;
use crate::net::{Sockets, local_ips};
use crate::signal::{Incoming, SignalConnection, SignalLink, SignalParams, redacted_str};
use crate::track::TrackRequest;

/// An opened WebSocket, its first message as the core sees it, and (for a join) the sockets
/// bound for the session.
type OpenedSignal = (Opened, SignalConnection, Option<Vec<Sockets>>);
type Opening = Pin<Box<dyn Future<Output = Result<OpenedSignal, ConnectError>> + Send>>;
type Resolving = Pin<Box<dyn Future<Output = Vec<SocketAddr>> + Send>>;

/// Runs the connection until the core is finished.
pub(crate) async fn run(
    url: String,
    mut core: Connection,
    mut commands: mpsc::Receiver<Command>,
    mut requests: mpsc::Receiver<TrackRequest>,
) {
    let span = tracing::info_span!("livekit_room", url = %redacted_str(&url));
    async move {
        let mut signal: Option<SignalLink> = None;
        let mut opening: Option<(u64, Opening)> = None;
        let mut closing: Vec<JoinHandle<()>> = Vec::new();
        let mut sockets: Vec<Sockets> = Vec::new();
        let mut resolving: Option<Resolving> = None;
        let mut commands_open = true;
        let mut buffers = [vec![0u8; 2048], vec![0u8; 2048]];
        loop {
            while let Some(action) = core.poll_action() {
                match action {
                    Action::OpenSignal { attempt, params, token } => {
                        opening = Some((attempt, Box::pin(open(url.clone(), token, params))));
                    }
                    Action::Signal(message) => {
                        let sent = signal.as_ref().map(|link| link.send(message));
                        if let Some(Err(reason)) = sent {
                            core.handle_signal_send_failed(reason, Instant::now());
                        }
                    }
                    Action::CloseSignal => {
                        if let Some(link) = signal.take() {
                            closing.push(tokio::spawn(link.close()));
                        }
                    }
                    Action::DropSignal => signal = None,
                    Action::Transmit { source, destination, contents } => {
                        let _ = sockets.iter().any(|s| s.send(source, destination, &contents));
                    }
                    Action::ResolveStun(urls) => resolving = Some(Box::pin(resolve_stun(urls))),
                    Action::Finished { reply } => {
                        for close in closing {
                            let _ = close.await;
                        }
                        if let Some(reply) = reply {
                            let _ = reply.send(());
                        }
                        return;
                    }
                }
            }
            let deadline = core.poll_timeout().unwrap_or_else(|| Instant::now() + HOUR);
            let [publisher, subscriber] = &mut buffers;
            tokio::select! {
                incoming = recv_signal(&mut signal) => core.handle_signal(incoming, Instant::now()),
                (attempt, result) = poll_opening(&mut opening) => {
                    let (opened, connection, bound) = match result {
                        Ok((opened, connection, bound)) => (Ok(opened), Some(connection), bound),
                        Err(error) => (Err(error), None, None),
                    };
                    if core.handle_opened(attempt, opened, Instant::now()) {
                        signal = connection.map(SignalConnection::into_link);
                        if let Some(bound) = bound {
                            sockets = bound;
                        }
                    }
                }
                received = recv_datagram(&sockets, 0, publisher) => {
                    if let Ok((len, from, to)) = received {
                        core.handle_datagram(from, to, &publisher[..len], Instant::now());
                    }
                }
                received = recv_datagram(&sockets, 1, subscriber) => {
                    if let Ok((len, from, to)) = received {
                        core.handle_datagram(from, to, &subscriber[..len], Instant::now());
                    }
                }
                command = commands.recv(), if commands_open => match command {
                    Some(command) => core.handle_command(command, Instant::now()),
                    None => {
                        commands_open = false;
                        core.handle_commands_closed(Instant::now());
                    }
                },
                Some(request) = requests.recv() => core.handle_track_request(request, Instant::now()),
                servers = poll_resolving(&mut resolving) => {
                    core.handle_stun_resolved(&servers, Instant::now());
                }
                () = tokio::time::sleep_until(deadline.into()) => core.handle_timeout(Instant::now()),
            }
        }
    }
    .instrument(span)
    .await
}

const HOUR: Duration = Duration::from_secs(3600);

/// Opens the WebSocket and waits for its first message (both with deadlines); binds the
/// sockets of a new session after a join response.
async fn open(
    url: String,
    token: String,
    params: SignalParams,
) -> Result<OpenedSignal, ConnectError> {
    let mut connection = SignalConnection::open(&url, &token, &params).await?;
    match connection.first_message().await? {
        signal_response::Message::Join(join) => {
            // A socket set per peer connection: one with a single peer connection.
            let ips = local_ips();
            let io = |e: std::io::Error| ConnectError::Io(e.to_string());
            let mut bound = vec![Sockets::bind(&ips).await.map_err(io)?];
            if !params.single_pc {
                bound.push(Sockets::bind(&ips).await.map_err(io)?);
            }
            let addrs_of = |i: usize| bound.get(i).map(Sockets::local_addrs).unwrap_or_default();
            let addrs = LocalAddrs { publisher: addrs_of(0), subscriber: addrs_of(1) };
            let loopback = connection.peer_is_loopback();
            Ok((Opened::Join { join, addrs, loopback }, connection, Some(bound)))
        }
        signal_response::Message::Reconnect(response) => {
            Ok((Opened::Resume(response), connection, None))
        }
        _ => Err(ConnectError::Protocol("neither a join nor a reconnect response".into())),
    }
}

/// The next message of the WebSocket; pending while there is none.
async fn recv_signal(signal: &mut Option<SignalLink>) -> Incoming {
    match signal {
        Some(link) => link.recv().await,
        None => std::future::pending().await,
    }
}

/// The opening in flight, if any; pending otherwise.
async fn poll_opening(
    opening: &mut Option<(u64, Opening)>,
) -> (u64, Result<OpenedSignal, ConnectError>) {
    match opening.as_mut() {
        Some((attempt, future)) => {
            let result = future.await;
            let attempt = *attempt;
            *opening = None;
            (attempt, result)
        }
        None => std::future::pending().await,
    }
}

/// The STUN resolution in flight, if any; pending otherwise.
async fn poll_resolving(resolving: &mut Option<Resolving>) -> Vec<SocketAddr> {
    match resolving.as_mut() {
        Some(future) => {
            let servers = future.await;
            *resolving = None;
            servers
        }
        None => std::future::pending().await,
    }
}

/// A datagram on the session's `index`th socket set; pending while there is none.
async fn recv_datagram(
    sockets: &[Sockets],
    index: usize,
    buf: &mut [u8],
) -> std::io::Result<(usize, SocketAddr, SocketAddr)> {
    match sockets.get(index) {
        Some(sockets) => sockets.recv(buf).await,
        None => std::future::pending().await,
    }
}

/// Resolves `stun:` URLs (TURN is not used) to IPv4 addresses.
async fn resolve_stun(urls: Vec<String>) -> Vec<SocketAddr> {
    let mut resolved = Vec::new();
    for url in urls {
        let Some(target) = stun_target(&url) else { continue };
        if let Ok(addr) = target.parse::<SocketAddr>() {
            resolved.push(addr);
            continue;
        }
        let lookup = tokio::net::lookup_host(target.clone());
        match tokio::time::timeout(Duration::from_secs(2), lookup).await {
            Ok(Ok(addrs)) => {
                resolved.extend(addrs.filter(|a| !matches!(a.ip(), IpAddr::V6(_))).take(1))
            }
            Ok(Err(error)) => debug!(%target, %error, "STUN server not resolved"),
            Err(_) => debug!(%target, "STUN server resolution timed out"),
        }
    }
    debug!(count = resolved.len(), "STUN servers");
    resolved
}

/// `stun:host[:port][?transport=udp]` → `host:port` (3478 by default); `None` for other schemes.
fn stun_target(url: &str) -> Option<String> {
    let rest = url.strip_prefix("stun:")?;
    let host = rest.split('?').next().unwrap_or(rest);
    let has_port = match host.rsplit_once(':') {
        Some((h, port)) => port.parse::<u16>().is_ok() && (!h.contains(':') || h.ends_with(']')),
        None => false,
    };
    Some(if has_port { host.to_owned() } else { format!("{host}:3478") })
}

#[cfg(test)]
mod tests {
    use super::stun_target;

    #[test]
    fn stun_urls() {
        assert_eq!(
            stun_target("stun:stun.l.google.com:19302").as_deref(),
            Some("stun.l.google.com:19302")
        );
        assert_eq!(stun_target("stun:198.51.100.1").as_deref(), Some("198.51.100.1:3478"));
        assert_eq!(
            stun_target("stun:[2001:db8::1]:3479?transport=udp").as_deref(),
            Some("[2001:db8::1]:3479")
        );
        assert_eq!(stun_target("stun:[2001:db8::1]").as_deref(), Some("[2001:db8::1]:3478"));
        assert_eq!(stun_target("turn:t.example.org:3478"), None);
    }
}
