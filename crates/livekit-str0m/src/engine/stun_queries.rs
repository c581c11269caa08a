//! Server-reflexive candidates: STUN binding requests from every socket of a session to its STUN
//! servers, their retransmissions, and the answers that become local candidates.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::Candidate;
use tracing::debug;

use super::peer::PeerKind;
use super::{Engine, Output};
use crate::stun;

/// STUN binding retransmissions.
const STUN_RETRIES: u32 = 3;
const STUN_RTO: Duration = Duration::from_millis(500);

/// An outstanding STUN binding request for a server-reflexive candidate.
pub(super) struct StunQuery {
    peer: PeerKind,
    source: SocketAddr,
    server: SocketAddr,
    id: stun::TransactionId,
    packet: Vec<u8>,
    next_send: Instant,
    sends: u32,
}

/// When the next of `queries` is to be (re)sent.
pub(super) fn next_send(queries: &[StunQuery]) -> Option<Instant> {
    queries.iter().map(|q| q.next_send).min()
}

impl Engine {
    /// Resolved STUN servers of the session: ask each for every socket's public address.
    pub(crate) fn add_stun_servers(&mut self, servers: &[SocketAddr], now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        for peer in [PeerKind::Publisher, PeerKind::Subscriber] {
            let sources = session.peer(peer).local_addrs.clone();
            for source in sources {
                for server in servers.iter().filter(|s| s.is_ipv4() == source.is_ipv4()) {
                    if source.ip().is_loopback() && !server.ip().is_loopback() {
                        continue;
                    }
                    let (id, packet) = stun::binding_request();
                    session.stun.push(StunQuery {
                        peer,
                        source,
                        server: *server,
                        id,
                        packet,
                        next_send: now,
                        sends: 0,
                    });
                }
            }
        }
        self.handle_stun_timeouts(now);
    }

    /// Sends the binding requests that are due and forgets those out of retries.
    pub(super) fn handle_stun_timeouts(&mut self, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        session.stun.retain(|q| q.sends < STUN_RETRIES || now < q.next_send);
        for query in
            session.stun.iter_mut().filter(|q| q.next_send <= now && q.sends < STUN_RETRIES)
        {
            query.sends += 1;
            query.next_send = now + STUN_RTO * query.sends;
            self.outputs.push_back(Output::Transmit {
                source: query.source,
                destination: query.server,
                contents: query.packet.clone(),
            });
        }
    }

    /// Takes a datagram that answers one of the session's binding requests; whether it did.
    pub(super) fn handle_stun_answer(
        &mut self,
        source: SocketAddr,
        contents: &[u8],
        now: Instant,
    ) -> bool {
        let Some(session) = self.session.as_mut() else { return false };
        if stun::is_stun(contents)
            && let Some((id, mapped)) = stun::parse_binding_response(contents)
            && let Some(index) = session.stun.iter().position(|q| q.id == id && q.server == source)
        {
            let query = session.stun.remove(index);
            self.add_reflexive_candidate(query.peer, mapped, query.source, now);
            return true;
        }
        false
    }

    fn add_reflexive_candidate(
        &mut self,
        kind: PeerKind,
        mapped: SocketAddr,
        base: SocketAddr,
        _now: Instant,
    ) {
        let Some(session) = self.session.as_mut() else { return };
        if mapped == base {
            return;
        }
        let Ok(candidate) = Candidate::server_reflexive(mapped, base, "udp") else { return };
        debug!(?kind, %mapped, "server-reflexive candidate");
        let peer = session.peer(kind);
        if peer.rtc.add_local_candidate(candidate.clone()).is_some() {
            peer.pending_local.push(candidate);
            self.flush_local_candidates(kind);
        }
    }
}
