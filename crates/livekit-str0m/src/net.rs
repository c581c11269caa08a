//! Local UDP sockets: one per local address and peer connection, and waiting on all of them.

use std::future::poll_fn;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::task::Poll;

use tokio::io::ReadBuf;
use tokio::net::UdpSocket;

/// The addresses host candidates are made from: every IPv4 address of an interface that is up,
/// plus global IPv6 addresses. Link-local addresses are left out (browsers and servers ignore
/// them). Loopback stays: it is how a server on the same machine is reached.
pub(crate) fn local_ips() -> Vec<IpAddr> {
    let mut ips = Vec::new();
    if let Ok(interfaces) = nix::ifaddrs::getifaddrs() {
        for interface in interfaces {
            if !interface.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP) {
                continue;
            }
            let Some(address) = interface.address else { continue };
            let ip = if let Some(v4) = address.as_sockaddr_in() {
                IpAddr::V4(v4.ip())
            } else if let Some(v6) = address.as_sockaddr_in6() {
                IpAddr::V6(v6.ip())
            } else {
                continue;
            };
            if usable(ip) && !ips.contains(&ip) {
                ips.push(ip);
            }
        }
    }
    if ips.is_empty() {
        ips.push(IpAddr::from([127, 0, 0, 1]));
    }
    ips
}

fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_link_local() && !v4.is_unspecified() && !v4.is_broadcast(),
        IpAddr::V6(v6) => {
            !v6.is_loopback()
                && !v6.is_unspecified()
                && !v6.is_unicast_link_local()
                && !v6.is_multicast()
        }
    }
}

/// The sockets of one peer connection, with the address each is bound to (read once: looking
/// it up per datagram would cost a system call on the hot path).
#[derive(Debug)]
pub(crate) struct Sockets {
    sockets: Vec<(UdpSocket, SocketAddr)>,
}

impl Sockets {
    /// Binds one socket per address on an ephemeral port.
    pub(crate) async fn bind(ips: &[IpAddr]) -> io::Result<Self> {
        let mut sockets = Vec::new();
        let mut last_error = None;
        for ip in ips {
            let bound = match UdpSocket::bind(SocketAddr::new(*ip, 0)).await {
                Ok(socket) => socket.local_addr().map(|addr| (socket, addr)),
                Err(error) => Err(error),
            };
            match bound {
                Ok(pair) => sockets.push(pair),
                Err(error) => last_error = Some(error),
            }
        }
        match (sockets.is_empty(), last_error) {
            (true, Some(error)) => Err(error),
            (true, None) => Err(io::Error::other("no local address to bind")),
            _ => Ok(Self { sockets }),
        }
    }

    /// The bound addresses.
    pub(crate) fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sockets.iter().map(|(_, addr)| *addr).collect()
    }

    /// Sends from the socket bound to `source`; a full socket buffer drops the datagram (as the
    /// network would).
    pub(crate) fn send(
        &self,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
    ) -> bool {
        let Some((socket, _)) = self.sockets.iter().find(|(_, addr)| *addr == source) else {
            return false;
        };
        match socket.try_send_to(contents, destination) {
            Ok(_) => true,
            Err(error) => {
                tracing::trace!(%error, %destination, "datagram not sent");
                true
            }
        }
    }

    /// Waits for a datagram on any socket: `(length, from, to)`.
    pub(crate) async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr, SocketAddr)> {
        if self.sockets.is_empty() {
            return std::future::pending().await;
        }
        poll_fn(|cx| {
            for (socket, to) in &self.sockets {
                let mut read = ReadBuf::new(buf);
                match socket.poll_recv_from(cx, &mut read) {
                    Poll::Ready(Ok(from)) => {
                        return Poll::Ready(Ok((read.filled().len(), from, *to)));
                    }
                    // ICMP errors surface as recv errors on Linux: not fatal for UDP.
                    Poll::Ready(Err(error)) => {
                        tracing::trace!(%error, "recv error ignored");
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                    Poll::Pending => {}
                }
            }
            Poll::Pending
        })
        .await
    }
}
