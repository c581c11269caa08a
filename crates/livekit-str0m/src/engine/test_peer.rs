//! Test fixtures shared by the engine's and the connection core's tests: addresses, a join
//! response, and a str0m `Rtc` playing the SFU's side of a peer connection.

use std::net::SocketAddr;
use std::time::Instant;

use livekit_protocol as proto;
use proto::signal_request;
use str0m::change::SdpOffer;
use str0m::{Candidate, Event, Output as RtcOutput, Rtc};

use super::{Engine, EngineConfig, EngineEvent, LocalAddrs, Output};

pub(crate) const SERVER: &str = "10.0.0.1:7882";
pub(crate) const PUBLISHER: &str = "10.0.0.2:6000";
pub(crate) const SUBSCRIBER: &str = "10.0.0.2:6001";

pub(crate) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

pub(crate) fn track(sid: &str) -> proto::TrackInfo {
    proto::TrackInfo {
        sid: sid.into(),
        name: "cam".into(),
        r#type: proto::TrackType::Video as i32,
        mime_type: "video/VP8".into(),
        width: 320,
        height: 240,
        ..Default::default()
    }
}

pub(crate) fn join() -> proto::JoinResponse {
    proto::JoinResponse {
        participant: Some(proto::ParticipantInfo {
            sid: "PA_me".into(),
            identity: "me".into(),
            ..Default::default()
        }),
        other_participants: vec![proto::ParticipantInfo {
            sid: "PA_bob".into(),
            identity: "bob".into(),
            version: 1,
            tracks: vec![track("TR_bob")],
            ..Default::default()
        }],
        subscriber_primary: true,
        ping_interval: 5,
        ping_timeout: 15,
        server_info: Some(proto::ServerInfo {
            version: "test".into(),
            protocol: 16,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub(crate) fn started(now: Instant) -> Engine {
    started_with(EngineConfig::default(), now)
}

/// [`started`] with `config`.
pub(crate) fn started_with(config: EngineConfig, now: Instant) -> Engine {
    let mut engine = Engine::new(config, now);
    let addrs = LocalAddrs { publisher: vec![addr(PUBLISHER)], subscriber: vec![addr(SUBSCRIBER)] };
    engine.start_session(join(), addrs, false, now);
    engine
}

/// Everything the engine has to say right now (until its timeout).
pub(crate) fn drain(
    engine: &mut Engine,
) -> (Vec<signal_request::Message>, Vec<Output>, Vec<EngineEvent>) {
    let (mut signals, mut transmits, mut events) = (Vec::new(), Vec::new(), Vec::new());
    loop {
        match engine.poll_output() {
            Output::Signal(message) => signals.push(message),
            t @ Output::Transmit { .. } => transmits.push(t),
            Output::Event(event) => events.push(event),
            Output::Timeout(_) => return (signals, transmits, events),
        }
    }
}

/// A datagram: from, to, bytes.
pub(crate) type Datagram = (SocketAddr, SocketAddr, Vec<u8>);

/// A str0m `Rtc` playing the SFU's side of one peer connection.
pub(crate) struct FakeServer {
    pub(crate) rtc: Rtc,
}

impl FakeServer {
    pub(crate) fn new(now: Instant) -> Self {
        let mut rtc = Rtc::builder()
            .clear_codecs()
            .enable_vp8(true)
            .enable_opus(true, false)
            .set_stats_interval(None)
            .build(now);
        rtc.add_local_candidate(Candidate::host(addr(SERVER), "udp").unwrap());
        Self { rtc }
    }

    /// Drains the server and returns its datagrams.
    pub(crate) fn transmits(&mut self) -> (Vec<Datagram>, Vec<Event>, Instant) {
        let (mut out, mut events) = (Vec::new(), Vec::new());
        loop {
            match self.rtc.poll_output().unwrap() {
                RtcOutput::Transmit(t) => out.push((t.source, t.destination, t.contents.to_vec())),
                RtcOutput::Event(e) => events.push(e),
                RtcOutput::Timeout(at) => return (out, events, at),
            }
        }
    }
}

/// The fake SFU's answer to a publisher offer, carrying the offer's id.
pub(crate) fn answer_from(
    server: &mut FakeServer,
    offer: &proto::SessionDescription,
) -> proto::SessionDescription {
    let parsed = SdpOffer::from_sdp_string(&offer.sdp).unwrap();
    let answer = server.rtc.sdp_api().accept_offer(parsed).unwrap();
    proto::SessionDescription {
        r#type: "answer".into(),
        sdp: answer.to_sdp_string(),
        id: offer.id,
        ..Default::default()
    }
}
