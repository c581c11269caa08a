//! Entry points for the fuzz targets under `fuzz/`; not part of the API.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use prost::Message as _;

use crate::engine::{DatagramRoute, Engine, EngineConfig, LocalAddrs, Output};

/// An engine in a fresh session, as after a join on one or two peer connections.
fn engine(now: Instant, single_pc: bool) -> Engine {
    let mut engine = Engine::new(EngineConfig::default(), now);
    let join = proto::JoinResponse {
        participant: Some(proto::ParticipantInfo {
            sid: "PA_me".into(),
            identity: "me".into(),
            ..Default::default()
        }),
        subscriber_primary: !single_pc,
        ping_interval: 5,
        ping_timeout: 15,
        ..Default::default()
    };
    let addrs = LocalAddrs {
        publisher: vec!["127.0.0.1:40000".parse().unwrap_or_else(|_| unreachable!())],
        subscriber: vec!["127.0.0.1:40001".parse().unwrap_or_else(|_| unreachable!())],
    };
    engine.start_session(join, addrs, single_pc, now);
    engine
}

fn drain(engine: &mut Engine) {
    for _ in 0..10_000 {
        if let Output::Timeout(_) = engine.poll_output() {
            return;
        }
    }
}

/// Any bytes as a `SignalResponse` from the server, then time passing.
pub fn signal_response(data: &[u8]) {
    let Ok(proto::SignalResponse { message: Some(message) }) = proto::SignalResponse::decode(data)
    else {
        return;
    };
    let now = Instant::now();
    // The first byte picks the mode, so both kinds of session meet every message.
    let single_pc = data.first().is_some_and(|b| b & 1 == 1);
    let mut engine = engine(now, single_pc);
    drain(&mut engine);
    engine.handle_signal(message, now);
    drain(&mut engine);
    engine.handle_timeout(now + Duration::from_secs(20));
    drain(&mut engine);
}

/// Any text as the SDP of a server offer (subscriber) or of a server answer (publisher).
///
/// The length picks which, and the kind of session: one negotiation an input, so that each input
/// costs one SDP parse (str0m's parser dominates the cost of an input).
pub fn server_sdp(sdp: &str) {
    let now = Instant::now();
    let single_pc = sdp.len() % 2 == 1;
    let as_offer = sdp.len() % 4 < 2;
    let mut engine = engine(now, single_pc);
    drain(&mut engine);
    let description = |kind: &str| proto::SessionDescription {
        r#type: kind.into(),
        sdp: sdp.into(),
        id: 1,
        ..Default::default()
    };
    if as_offer {
        engine.handle_signal(proto::signal_response::Message::Offer(description("offer")), now);
        drain(&mut engine);
        return;
    }
    engine.add_track(
        "TR_fuzz".into(),
        crate::track::LocalTrackOptions::Video(crate::VideoTrackOptions::default()),
    );
    engine.add_track(
        "TR_fuzz_audio".into(),
        crate::track::LocalTrackOptions::Audio(crate::AudioTrackOptions::default()),
    );
    let published = proto::TrackPublishedResponse {
        cid: "TR_fuzz".into(),
        track: Some(proto::TrackInfo { sid: "TR_x".into(), ..Default::default() }),
    };
    engine.handle_signal(proto::signal_response::Message::TrackPublished(published), now);
    drain(&mut engine);
    engine.handle_signal(proto::signal_response::Message::Answer(description("answer")), now);
    drain(&mut engine);
}

/// Any text as a trickled `candidateInit`.
pub fn candidate_init(json: &str) {
    let _ = crate::signal::candidate_init::parse_candidate_init(json);
}

thread_local! {
    /// An engine in a fresh session and its clock, kept between inputs while they leave it as it
    /// was (see [`datagram`]).
    static FRESH_ENGINE: RefCell<Option<(Engine, Instant)>> = const { RefCell::new(None) };
}

/// Any bytes as a datagram on one of our sockets (STUN, DTLS, RTP, garbage), from the server's
/// address, in a fresh session; the length picks the socket (publisher or subscriber).
///
/// Each input meets an engine exactly as new, without building one for each: a datagram the
/// engine drops leaves no trace in it ([`DatagramRoute::Dropped`]), so the engine is kept for the
/// next input, and one that went anywhere else is followed by a new engine. Building two peer
/// connections was most of an input's cost.
pub fn datagram(data: &[u8]) {
    let _ = crate::stun::parse_binding_response(data);
    let from = "127.0.0.1:7882".parse().unwrap_or_else(|_| unreachable!());
    let to = if data.len().is_multiple_of(2) { "127.0.0.1:40001" } else { "127.0.0.1:40000" };
    let to = to.parse().unwrap_or_else(|_| unreachable!());
    FRESH_ENGINE.with_borrow_mut(|fresh| {
        let (engine, now) = fresh.get_or_insert_with(|| {
            let now = Instant::now();
            let mut engine = engine(now, false);
            drain(&mut engine);
            (engine, now)
        });
        if engine.handle_datagram(from, to, data, *now) != DatagramRoute::Dropped {
            drain(engine);
            *fresh = None;
        }
    });
}
