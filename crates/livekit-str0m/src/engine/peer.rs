//! One peer connection: a `str0m::Rtc` with the local addresses it owns, the remote candidates
//! that wait for a remote description, and its next timeout.

use std::net::SocketAddr;
use std::time::Instant;

use livekit_protocol::SignalTarget;
use str0m::{Candidate, Rtc};

/// Which of LiveKit's two peer connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum PeerKind {
    /// We offer, we send media.
    Publisher,
    /// The server offers, we receive media.
    Subscriber,
}

impl PeerKind {
    pub(crate) fn target(self) -> SignalTarget {
        match self {
            Self::Publisher => SignalTarget::Publisher,
            Self::Subscriber => SignalTarget::Subscriber,
        }
    }

    pub(crate) fn from_target(target: i32) -> Option<Self> {
        match SignalTarget::try_from(target).ok()? {
            SignalTarget::Publisher => Some(Self::Publisher),
            SignalTarget::Subscriber => Some(Self::Subscriber),
        }
    }
}

/// A peer connection and its bookkeeping.
pub(crate) struct Peer {
    pub(crate) rtc: Rtc,
    /// The local sockets' addresses (host candidates).
    pub(crate) local_addrs: Vec<SocketAddr>,
    /// The mid trickled candidates refer to, once a description exists.
    pub(crate) first_mid: Option<String>,
    /// Remote candidates that arrived before the remote description.
    pub(crate) pending_remote: Vec<Candidate>,
    /// Local candidates found after the description went out, to trickle once possible.
    pub(crate) pending_local: Vec<Candidate>,
    /// When `poll_output` wants to be called next.
    pub(crate) timeout: Instant,
    /// ICE and DTLS are up.
    pub(crate) connected: bool,
    /// Since when ICE says disconnected.
    pub(crate) disconnected_since: Option<Instant>,
}

impl Peer {
    pub(crate) fn new(rtc: Rtc, local_addrs: Vec<SocketAddr>, now: Instant) -> Self {
        Self {
            rtc,
            local_addrs,
            first_mid: None,
            pending_remote: Vec::new(),
            pending_local: Vec::new(),
            timeout: now,
            connected: false,
            disconnected_since: None,
        }
    }

    /// Whether a datagram from `source` to `destination` belongs to this peer.
    pub(crate) fn owns(&self, destination: SocketAddr) -> bool {
        self.local_addrs.contains(&destination)
    }
}

/// The `(mid, track id)` pairs of an SDP, from `a=mid` and `a=msid` lines (the track id is the
/// second word of `a=msid`; LiveKit's stream id is `PA_…|TR_…`).
pub(crate) fn sdp_track_ids(sdp: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut mid: Option<String> = None;
    let mut track: Option<String> = None;
    let mut flush = |mid: &mut Option<String>, track: &mut Option<String>| {
        if let (Some(m), Some(t)) = (mid.take(), track.take()) {
            pairs.push((m, t));
        }
    };
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            flush(&mut mid, &mut track);
        } else if let Some(value) = line.strip_prefix("a=mid:") {
            mid = Some(value.to_owned());
        } else if let Some(value) = line.strip_prefix("a=msid:") {
            let mut words = value.split_whitespace();
            let stream = words.next().unwrap_or_default();
            let id = words.next().or_else(|| stream.split('|').nth(1));
            track = id.map(str::to_owned).or(track);
        }
    }
    flush(&mut mid, &mut track);
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_mid_to_track_from_a_livekit_offer() {
        let sdp = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:0\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=msid:PA_a|TR_b TR_b\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=msid:PA_c|TR_d TR_d\r\na=mid:2\r\n";
        assert_eq!(
            sdp_track_ids(sdp),
            [("1".to_owned(), "TR_b".to_owned()), ("2".to_owned(), "TR_d".to_owned())]
        );
    }

    #[test]
    fn a_one_word_msid_uses_the_packed_stream_id() {
        assert_eq!(
            sdp_track_ids("m=video\na=mid:3\na=msid:PA_x|TR_y\n"),
            [("3".into(), "TR_y".into())]
        );
    }

    #[test]
    fn targets_map_both_ways() {
        for kind in [PeerKind::Publisher, PeerKind::Subscriber] {
            assert_eq!(PeerKind::from_target(kind.target() as i32), Some(kind));
        }
        assert_eq!(PeerKind::from_target(7), None);
    }
}
