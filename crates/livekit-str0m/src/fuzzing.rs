//! Entry points for the fuzz targets under `fuzz/`; not part of the API.

use std::time::{Duration, Instant};

use livekit_protocol as proto;
use prost::Message as _;

use crate::engine::{Engine, EngineConfig, LocalAddrs, Output};

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

/// Any text as the SDP of a server offer (subscriber) and of a server answer (publisher).
pub fn server_sdp(sdp: &str) {
    let now = Instant::now();
    let mut engine = engine(now, sdp.len() % 2 == 1);
    drain(&mut engine);
    let offer = proto::SessionDescription {
        r#type: "offer".into(),
        sdp: sdp.into(),
        id: 1,
        ..Default::default()
    };
    engine.handle_signal(proto::signal_response::Message::Offer(offer), now);
    drain(&mut engine);
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
    let answer = proto::SessionDescription {
        r#type: "answer".into(),
        sdp: sdp.into(),
        id: 1,
        ..Default::default()
    };
    engine.handle_signal(proto::signal_response::Message::Answer(answer), now);
    drain(&mut engine);
}

/// Any text as a trickled `candidateInit`.
pub fn candidate_init(json: &str) {
    let _ = crate::signal::candidate_init::parse_candidate_init(json);
}

/// Any bytes as a datagram on one of our sockets (STUN, DTLS, RTP, garbage).
pub fn datagram(data: &[u8]) {
    let _ = crate::stun::parse_binding_response(data);
    let now = Instant::now();
    let mut engine = engine(now, false);
    drain(&mut engine);
    let from = "127.0.0.1:7882".parse().unwrap_or_else(|_| unreachable!());
    let to = "127.0.0.1:40001".parse().unwrap_or_else(|_| unreachable!());
    engine.handle_datagram(from, to, data, now);
    drain(&mut engine);
}
