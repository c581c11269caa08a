//! The engine driven with fake time and an in-memory peer: no sockets, no server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use proto::{signal_request, signal_response};
use str0m::change::SdpOffer;
use str0m::media::{Direction, MediaKind, MediaTime};
use str0m::net::{Protocol, Receive};
use str0m::{Event, Input, Rtc};

use super::publisher::{KEY_CHANGE_KEYFRAMES, MIN_TRACK_BITRATE, SUBSCRIBER_KEYFRAME_REPEAT};
use super::test_peer::*;
use super::*;
use crate::track::{
    AudioLevel, AudioTrackOptions, EncodedAudioFrame, EncodedVideoFrame, LocalTrackOptions,
    OutgoingFrame, TrackKind, VideoTrackOptions,
};

/// A keyframe-shaped encoded frame `index` frames of `interval` into the stream.
fn frame(data: &[u8], index: u32, interval: Duration) -> OutgoingFrame {
    OutgoingFrame::Video(EncodedVideoFrame {
        data: data.to_vec(),
        keyframe: true,
        timestamp: interval * index,
    })
}

/// Publishes a default track `TR_RS1` (confirmed by the server as `TR_m`) and returns the
/// publisher offer that follows.
fn publish_default_track(engine: &mut Engine, now: Instant) -> proto::SessionDescription {
    engine.add_track("TR_RS1".into(), LocalTrackOptions::Video(VideoTrackOptions::default()));
    let published =
        proto::TrackPublishedResponse { cid: "TR_RS1".into(), track: Some(track("TR_m")) };
    engine.handle_signal(signal_response::Message::TrackPublished(published), now);
    let (signals, _, _) = drain(engine);
    match signals.into_iter().last() {
        Some(signal_request::Message::Offer(offer)) => offer,
        other => panic!("no offer after publishing: {other:?}"),
    }
}

/// An engine publishing the default track to the fake SFU over a connected peer connection;
/// the SFU's answer SDP.
fn publishing_and_connected(now: &mut Instant) -> (Engine, FakeServer, String) {
    let mut engine = started(*now);
    drain(&mut engine);
    let offer = publish_default_track(&mut engine, *now);
    let mut server = FakeServer::new(*now);
    let answer = answer_from(&mut server, &offer);
    let sdp = answer.sdp.clone();
    engine.handle_signal(signal_response::Message::Answer(answer), *now);
    pump(&mut engine, &mut server, now, |_, s| s.iter().any(|e| matches!(e, Event::Connected)));
    (engine, server, sdp)
}

/// Moves datagrams both ways and time forward until `done` or a time limit.
fn pump(
    engine: &mut Engine,
    server: &mut FakeServer,
    now: &mut Instant,
    done: impl FnMut(&[EngineEvent], &[Event]) -> bool,
) -> (Vec<EngineEvent>, Vec<Event>) {
    pump_lossy(engine, server, now, Duration::from_secs(10), |_| false, done)
}

/// Moves datagrams both ways for `duration` of fake time; the engine's events.
fn pump_for(
    engine: &mut Engine,
    server: &mut FakeServer,
    now: &mut Instant,
    duration: Duration,
) -> Vec<EngineEvent> {
    pump_lossy(engine, server, now, duration, |_| false, |_, _| false).0
}

/// [`pump`] for at most `within`, dropping the engine's datagrams for which `lose` says so.
fn pump_lossy(
    engine: &mut Engine,
    server: &mut FakeServer,
    now: &mut Instant,
    within: Duration,
    mut lose: impl FnMut(&[u8]) -> bool,
    mut done: impl FnMut(&[EngineEvent], &[Event]) -> bool,
) -> (Vec<EngineEvent>, Vec<Event>) {
    let (mut engine_events, mut server_events) = (Vec::new(), Vec::new());
    let limit = *now + within;
    while *now < limit {
        let (_, transmits, events) = drain(engine);
        engine_events.extend(events);
        for t in transmits {
            let Output::Transmit { source, destination, contents } = t else { continue };
            if destination != addr(SERVER) || lose(&contents) {
                continue;
            }
            let input = Input::Receive(
                *now,
                Receive {
                    proto: Protocol::Udp,
                    source,
                    destination,
                    contents: contents.as_slice().try_into().unwrap(),
                },
            );
            server.rtc.handle_input(input).unwrap();
        }
        let (datagrams, events, _) = server.transmits();
        server_events.extend(events);
        for (source, destination, contents) in datagrams {
            engine.handle_datagram(source, destination, &contents, *now);
        }
        if done(&engine_events, &server_events) {
            break;
        }
        *now += Duration::from_millis(5);
        engine.handle_timeout(*now);
        server.rtc.handle_input(Input::Timeout(*now)).unwrap();
    }
    (engine_events, server_events)
}

/// The fake SFU sends `payload` as VP8 frames on `mid` until the engine delivers one.
fn first_frame(
    engine: &mut Engine,
    server: &mut FakeServer,
    now: &mut Instant,
    mid: str0m::media::Mid,
    payload: &[u8],
) -> (String, RemoteVideoFrame) {
    for i in 0..30u64 {
        let writer = server.rtc.writer(mid).expect("the server sends on the m-line");
        let pt = writer.payload_params().next().expect("a codec").pt();
        let time = MediaTime::new(i * 3000, str0m::media::Frequency::NINETY_KHZ);
        writer.write(pt, *now, time, payload.to_vec()).expect("write");
        let (events, _) = pump(engine, server, now, |events, _| {
            events.iter().any(|e| matches!(e, EngineEvent::Frame { .. }))
        });
        let frame = events.into_iter().find_map(|e| match e {
            EngineEvent::Frame { track_sid, frame } => Some((track_sid, frame)),
            _ => None,
        });
        if let Some(frame) = frame {
            return frame;
        }
    }
    panic!("no frame arrives")
}

#[test]
fn join_lists_participants_and_their_tracks() {
    let now = Instant::now();
    let mut engine = started(now);
    let (signals, transmits, events) = drain(&mut engine);
    assert!(
        signals.is_empty(),
        "a subscriber-primary join with no tracks sends nothing: {signals:?}"
    );
    assert!(transmits.is_empty());
    assert!(
        matches!(&events[0], EngineEvent::Participant(ParticipantChange::Connected(p)) if p.identity == "bob")
    );
    assert!(
        matches!(&events[1], EngineEvent::Participant(ParticipantChange::TrackPublished(t)) if t.track_sid == "TR_bob")
    );
}

#[test]
fn pings_follow_the_interval_and_silence_asks_for_a_resume() {
    let now = Instant::now();
    let mut engine = started(now);
    drain(&mut engine);
    engine.handle_timeout(now + Duration::from_secs(5));
    let (signals, _, _) = drain(&mut engine);
    assert!(matches!(signals[..], [signal_request::Message::PingReq(_)]), "{signals:?}");
    // A pong keeps the session alive past the timeout…
    engine.handle_signal(
        signal_response::Message::PongResp(proto::Pong::default()),
        now + Duration::from_secs(10),
    );
    engine.handle_timeout(now + Duration::from_secs(16));
    let (_, _, events) = drain(&mut engine);
    assert!(!events.iter().any(|e| matches!(e, EngineEvent::ResumeNeeded(_))), "{events:?}");
    // …15 s of silence does not.
    engine.handle_timeout(now + Duration::from_secs(25));
    let (_, _, events) = drain(&mut engine);
    assert!(events.iter().any(|e| matches!(e, EngineEvent::ResumeNeeded(_))), "{events:?}");
    // While the WebSocket is gone there are no pings and no second alarm.
    engine.handle_timeout(now + Duration::from_secs(40));
    let (signals, _, events) = drain(&mut engine);
    assert!(signals.is_empty(), "{signals:?}");
    assert!(!events.iter().any(|e| matches!(e, EngineEvent::ResumeNeeded(_))), "{events:?}");
}

#[test]
fn a_server_leave_ends_or_restarts_the_session() {
    let now = Instant::now();
    for (action, can_reconnect, rejoin) in [
        (proto::leave_request::Action::Disconnect, false, false),
        (proto::leave_request::Action::Reconnect, false, true),
        (proto::leave_request::Action::Resume, false, true),
        (proto::leave_request::Action::Disconnect, true, true),
    ] {
        let mut engine = started(now);
        drain(&mut engine);
        let leave = proto::LeaveRequest {
            reason: proto::DisconnectReason::ParticipantRemoved as i32,
            action: action as i32,
            can_reconnect,
            ..Default::default()
        };
        engine.handle_signal(signal_response::Message::Leave(leave), now);
        let (_, _, events) = drain(&mut engine);
        match &events[..] {
            [EngineEvent::Lost(_)] => assert!(rejoin, "{action:?}"),
            [EngineEvent::Left(proto::DisconnectReason::ParticipantRemoved)] => assert!(!rejoin),
            other => panic!("{action:?}: {other:?}"),
        }
    }
}

#[test]
fn hostile_signal_messages_are_ignored() {
    let now = Instant::now();
    let mut engine = started(now);
    drain(&mut engine);
    let messages = [
        signal_response::Message::Offer(proto::SessionDescription {
            sdp: "not sdp".into(),
            ..Default::default()
        }),
        signal_response::Message::Answer(proto::SessionDescription {
            sdp: "v=0".into(),
            id: 9,
            ..Default::default()
        }),
        signal_response::Message::Trickle(proto::TrickleRequest {
            candidate_init: "{".into(),
            target: 1,
            r#final: false,
        }),
        signal_response::Message::Trickle(proto::TrickleRequest {
            candidate_init: "{}".into(),
            target: 77,
            r#final: false,
        }),
        signal_response::Message::TrackPublished(proto::TrackPublishedResponse {
            cid: "unknown".into(),
            track: None,
        }),
        signal_response::Message::Update(proto::ParticipantUpdate {
            participants: vec![proto::ParticipantInfo::default()],
        }),
    ];
    for message in messages {
        engine.handle_signal(message, now);
    }
    let (signals, _, events) = drain(&mut engine);
    assert!(signals.is_empty(), "{signals:?}");
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn a_published_track_is_offered_connected_and_its_frames_reach_the_peer() {
    let mut now = Instant::now();
    let mut engine = started(now);
    drain(&mut engine);
    assert!(
        !engine.write_frame("TR_RS1", frame(&[0x10], 0, Duration::ZERO), now),
        "nothing goes out for a track that is not published"
    );
    engine.add_track(
        "TR_RS1".into(),
        LocalTrackOptions::Video(VideoTrackOptions {
            width: 320,
            height: 240,
            ..Default::default()
        }),
    );
    let (signals, _, _) = drain(&mut engine);
    let [signal_request::Message::AddTrack(request)] = &signals[..] else { panic!("{signals:?}") };
    assert_eq!(request.cid, "TR_RS1");
    assert_eq!((request.width, request.height), (320, 240));
    assert_eq!(request.simulcast_codecs[0].codec, "vp8");
    assert_eq!(request.encryption, proto::encryption::Type::None as i32);

    let published =
        proto::TrackPublishedResponse { cid: "TR_RS1".into(), track: Some(track("TR_mine")) };
    engine.handle_signal(signal_response::Message::TrackPublished(published), now);
    let (signals, _, events) = drain(&mut engine);
    assert!(
        matches!(&events[..], [EngineEvent::LocalTrackPublished { sid, .. }] if sid == "TR_mine")
    );
    let [signal_request::Message::Offer(offer)] = &signals[..] else { panic!("{signals:?}") };
    assert_eq!(offer.id, 1);
    assert!(
        offer.sdp.contains("a=msid:PA_me TR_RS1"),
        "the msid track id is the cid:\n{}",
        offer.sdp
    );

    // The fake SFU answers; ICE and DTLS come up over the in-memory "network".
    let mut server = FakeServer::new(now);
    let answer = answer_from(&mut server, offer);
    engine.handle_signal(signal_response::Message::Answer(answer), now);
    let (engine_events, server_events) = pump(&mut engine, &mut server, &mut now, |ours, _| {
        ours.iter().any(|e| matches!(e, EngineEvent::KeyframeRequested { .. }))
    });
    assert!(server_events.iter().any(|e| matches!(e, Event::Connected)), "connected");
    // Frames written before the connection were dropped: the stream starts with a keyframe.
    assert!(
        engine_events
            .iter()
            .any(|e| matches!(e, EngineEvent::KeyframeRequested { cid } if cid == "TR_RS1")),
        "a keyframe is asked for once the publisher is connected: {engine_events:?}"
    );

    // Frames written now arrive at the peer as the same bytes.
    let payload = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 0x11, 0x22, 0x33];
    let mut received = None;
    for i in 0..30u32 {
        let written =
            engine.write_frame("TR_RS1", frame(&payload, i, Duration::from_millis(33)), now);
        assert!(written, "frames go out once the publisher is connected");
        let (_, server_events) = pump(&mut engine, &mut server, &mut now, |_, s| {
            s.iter().any(|e| matches!(e, Event::MediaData(_)))
        });
        received = server_events.into_iter().find_map(|e| match e {
            Event::MediaData(data) => Some(data),
            _ => None,
        });
        if received.is_some() {
            break;
        }
    }
    let received = received.expect("a frame reaches the peer");
    assert_eq!(&received.data[..], &payload[..]);

    // A PLI from the peer becomes a keyframe request for the track.
    let mid = received.mid;
    server
        .rtc
        .writer(mid)
        .unwrap()
        .request_keyframe(None, str0m::media::KeyframeRequestKind::Pli)
        .unwrap();
    let (events, _) = pump(&mut engine, &mut server, &mut now, |events, _| {
        events.iter().any(|e| matches!(e, EngineEvent::KeyframeRequested { .. }))
    });
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EngineEvent::KeyframeRequested { cid } if cid == "TR_RS1"))
    );
}

#[test]
fn a_server_offer_is_answered_with_its_id_and_media_becomes_a_subscription() {
    let mut now = Instant::now();
    let mut engine = started(now);
    drain(&mut engine);
    let mut server = FakeServer::new(now);
    let mut api = server.rtc.sdp_api();
    let mid = api.add_media(
        MediaKind::Video,
        Direction::SendOnly,
        Some("PA_bob|TR_bob".into()),
        Some("TR_bob".into()),
        None,
    );
    let (offer, pending) = api.apply().unwrap();
    let sdp = offer.to_sdp_string();
    engine.handle_signal(
        signal_response::Message::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp,
            id: 42,
            ..Default::default()
        }),
        now,
    );
    let (signals, _, _) = drain(&mut engine);
    let Some(signal_request::Message::Answer(answer)) = signals.first() else {
        panic!("{signals:?}")
    };
    assert_eq!(answer.id, 42, "the answer echoes the offer id");
    server
        .rtc
        .sdp_api()
        .accept_answer(pending, str0m::change::SdpAnswer::from_sdp_string(&answer.sdp).unwrap())
        .unwrap();

    let (events, _) = pump(&mut engine, &mut server, &mut now, |events, _| {
        events.iter().any(|e| matches!(e, EngineEvent::Connected))
    });
    assert!(events.iter().any(|e| matches!(e, EngineEvent::TrackSubscribed(info) if info.track_sid == "TR_bob" && info.participant_identity == "bob")), "{events:?}");

    let payload = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 0xaa, 0xbb];
    let (track_sid, frame) = first_frame(&mut engine, &mut server, &mut now, mid, &payload);
    assert_eq!(track_sid, "TR_bob");
    assert_eq!(frame.data, payload);
    assert!(frame.keyframe);
    assert_eq!(frame.codec, VideoCodec::Vp8);
}

#[test]
fn stun_answers_become_trickled_server_reflexive_candidates() {
    let now = Instant::now();
    let mut engine = started(now);
    drain(&mut engine);
    // A publication gives the publisher a description, so its candidates can be trickled.
    publish_default_track(&mut engine, now);

    let stun_server = addr("198.51.100.7:3478");
    engine.add_stun_servers(&[stun_server], now);
    let (_, transmits, _) = drain(&mut engine);
    let requests: Vec<(SocketAddr, Vec<u8>)> = transmits
        .into_iter()
        .filter_map(|t| match t {
            Output::Transmit { source, destination, contents } if destination == stun_server => {
                Some((source, contents))
            }
            _ => None,
        })
        .collect();
    let sources: Vec<SocketAddr> = requests.iter().map(|(s, _)| *s).collect();
    assert_eq!(sources, [addr(PUBLISHER), addr(SUBSCRIBER)], "one request per socket");

    // Unanswered requests are retried, then given up.
    engine.handle_timeout(now + Duration::from_millis(600));
    let (_, retries, _) = drain(&mut engine);
    assert_eq!(retries.len(), 2, "one retry per socket");

    // The publisher socket's answer: a trickle of a srflx candidate for the publisher.
    let (source, request) = &requests[0];
    let id: crate::stun::TransactionId = request[8..20].try_into().unwrap();
    let mapped = addr("203.0.113.5:61000");
    let response = crate::stun::binding_success(&id, mapped, true);
    let route =
        engine.handle_datagram(stun_server, *source, &response, now + Duration::from_millis(700));
    assert_eq!(route, DatagramRoute::StunAnswer);
    let (signals, _, _) = drain(&mut engine);
    let [signal_request::Message::Trickle(trickle)] = &signals[..] else { panic!("{signals:?}") };
    assert_eq!(trickle.target, proto::SignalTarget::Publisher as i32);
    let init: serde_json::Value = serde_json::from_str(&trickle.candidate_init).unwrap();
    let candidate = init["candidate"].as_str().unwrap();
    assert!(candidate.contains("203.0.113.5 61000 typ srflx"), "{candidate}");
    assert!(init["sdpMid"].is_string());

    // A forged answer (unknown transaction) or one from elsewhere changes nothing.
    let forged = crate::stun::binding_success(&[7; 12], mapped, true);
    let route = engine.handle_datagram(stun_server, *source, &forged, now);
    assert_eq!(route, DatagramRoute::Dropped);
    let route = engine.handle_datagram(addr("192.0.2.66:3478"), *source, &response, now);
    assert_eq!(route, DatagramRoute::Dropped);
    let (signals, _, _) = drain(&mut engine);
    assert!(signals.is_empty(), "{signals:?}");

    // The unanswered (subscriber) request gets its third and last try, then nothing more.
    let to_stun = |outputs: &[Output]| {
        outputs
            .iter()
            .filter(|t| matches!(t, Output::Transmit { destination, .. } if *destination == stun_server))
            .count()
    };
    engine.handle_timeout(now + Duration::from_secs(5));
    let (_, third, _) = drain(&mut engine);
    assert_eq!(to_stun(&third), 1);
    engine.handle_timeout(now + Duration::from_secs(10));
    let (_, after, _) = drain(&mut engine);
    assert_eq!(to_stun(&after), 0);
}

#[test]
fn a_lost_packet_is_retransmitted_after_a_nack() {
    let mut now = Instant::now();
    let (mut engine, mut server, answer) = publishing_and_connected(&mut now);
    assert!(answer.contains("rtx/90000"), "RTX is negotiated");

    // A keyframe bigger than one packet; the first packet of its second copy is lost.
    let mut payload = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
    payload.extend((0..6000u32).map(|i| (i * 7) as u8));
    let is_rtp = |d: &[u8]| d.len() > 12 && d[0] >> 6 == 2 && (96..=127).contains(&(d[1] & 0x7f));
    let mut frames_seen = Vec::new();
    let mut lost = 0;
    for i in 0..6u32 {
        engine.write_frame("TR_RS1", frame(&payload, i, Duration::from_millis(100)), now);
        let (_, events) = pump_lossy(
            &mut engine,
            &mut server,
            &mut now,
            Duration::from_secs(10),
            |d| {
                // Drop exactly one media packet, early on.
                if lost == 0 && i == 1 && is_rtp(d) && d.len() > 500 {
                    lost += 1;
                    return true;
                }
                false
            },
            |_, s| s.iter().any(|e| matches!(e, Event::MediaData(_))),
        );
        frames_seen.extend(events.into_iter().filter_map(|e| match e {
            Event::MediaData(data) => Some(data),
            _ => None,
        }));
    }
    assert_eq!(lost, 1, "a packet was dropped");
    assert_eq!(frames_seen.len(), 6, "every frame arrived");
    assert!(frames_seen.iter().all(|f| f.data[..] == payload[..]), "every frame arrived whole");
    assert!(frames_seen.iter().all(|f| f.contiguous), "the loss was repaired, not skipped");
}

#[test]
fn a_silent_peer_makes_ice_fail_and_asks_for_a_resume() {
    let mut now = Instant::now();
    let mut engine = started(now);
    drain(&mut engine);
    let mut server = FakeServer::new(now);
    let mut api = server.rtc.sdp_api();
    api.add_media(
        MediaKind::Video,
        Direction::SendOnly,
        Some("PA_bob|TR_bob".into()),
        Some("TR_bob".into()),
        None,
    );
    let (offer, pending) = api.apply().unwrap();
    let offer = proto::SessionDescription {
        r#type: "offer".into(),
        sdp: offer.to_sdp_string(),
        id: 1,
        ..Default::default()
    };
    engine.handle_signal(signal_response::Message::Offer(offer), now);
    let (signals, _, _) = drain(&mut engine);
    let Some(signal_request::Message::Answer(answer)) = signals.first() else {
        panic!("{signals:?}")
    };
    let answer = str0m::change::SdpAnswer::from_sdp_string(&answer.sdp).unwrap();
    server.rtc.sdp_api().accept_answer(pending, answer).unwrap();
    let (events, _) = pump(&mut engine, &mut server, &mut now, |events, _| {
        events.iter().any(|e| matches!(e, EngineEvent::Connected))
    });
    assert!(events.iter().any(|e| matches!(e, EngineEvent::Connected)));

    // The network goes away (the server keeps answering pings on the WebSocket).
    let mut resume = None;
    for _ in 0..600 {
        now += Duration::from_millis(100);
        engine.handle_signal(signal_response::Message::PongResp(proto::Pong::default()), now);
        engine.handle_timeout(now);
        let (_, _, events) = drain(&mut engine);
        if let Some(reason) = events.into_iter().find_map(|e| match e {
            EngineEvent::ResumeNeeded(reason) => Some(reason),
            _ => None,
        }) {
            resume = Some(reason);
            break;
        }
    }
    let reason = resume.expect("ICE failure leads to a resume within a minute");
    assert!(reason.contains("ICE disconnected"), "{reason}");
}

#[test]
fn sdp_errors_in_logs_never_quote_the_ice_password() {
    let sdp = "v=0\r\na=ice-pwd:s3cr3tpassword0123456789\r\nm=video 9 broken";
    let error = SdpOffer::from_sdp_string(sdp).unwrap_err();
    let shown = sdp_error_for_log(&error, sdp);
    assert!(!shown.contains("s3cr3tpassword0123456789"), "{shown}");
    let quoting = "unexpected s3cr3tpassword0123456789 at line 2";
    assert_eq!(sdp_error_for_log(&quoting, sdp), "unexpected [redacted] at line 2");
}

#[test]
fn the_bandwidth_estimate_sets_the_track_bitrate_within_its_bounds() {
    let mut now = Instant::now();
    let (mut engine, mut server, answer) = publishing_and_connected(&mut now);
    assert!(answer.contains("transport-wide-cc"), "TWCC is negotiated:\n{answer}");

    // Two seconds of 30 fps video; the peer's TWCC feedback drives the estimate.
    let mut payload = vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
    payload.extend((0..3000u32).map(|i| (i * 13) as u8));
    let mut targets = Vec::new();
    for i in 0..60u32 {
        engine.write_frame("TR_RS1", frame(&payload, i, Duration::from_millis(33)), now);
        let events = pump_for(&mut engine, &mut server, &mut now, Duration::from_millis(33));
        targets.extend(events.into_iter().filter_map(|e| match e {
            EngineEvent::TrackBitrate { cid, bits_per_second } => Some((cid, bits_per_second)),
            _ => None,
        }));
    }
    assert!(!targets.is_empty(), "the estimate reached the track");
    let max = VideoTrackOptions::default().max_bitrate;
    for (cid, bps) in &targets {
        assert_eq!(cid, "TR_RS1");
        assert!((MIN_TRACK_BITRATE..=max).contains(bps), "{bps} within bounds");
    }
}

#[test]
fn unpublishing_the_only_track_keeps_the_session() {
    let mut now = Instant::now();
    let (mut engine, mut server, _) = publishing_and_connected(&mut now);
    engine.remove_track("TR_RS1", now);
    let (signals, _, events) = drain(&mut engine);
    assert!(events.iter().all(|e| !matches!(e, EngineEvent::Lost(_))), "{events:?}");
    let offer = signals
        .into_iter()
        .find_map(|s| match s {
            signal_request::Message::Offer(offer) => Some(offer),
            _ => None,
        })
        .expect("an offer stops the track's media");
    let mut answer = answer_from(&mut server, &offer);
    // LiveKit (pion) answers an offer whose media are all stopped without a BUNDLE group, as
    // RFC 8843 has it: the session must survive that answer.
    if answer.sdp.lines().filter(|l| l.starts_with("m=")).all(|l| l.split(' ').nth(1) == Some("0"))
    {
        answer.sdp = answer
            .sdp
            .lines()
            .filter(|l| !l.starts_with("a=group:"))
            .map(|l| format!("{l}\r\n"))
            .collect();
    }
    engine.handle_signal(signal_response::Message::Answer(answer), now);
    let (_, _, events) = drain(&mut engine);
    assert!(
        events.iter().all(|e| !matches!(e, EngineEvent::Lost(_))),
        "the session survives its last track: {events:?}"
    );
}

#[test]
fn a_new_subscriber_gets_a_keyframe_at_once_and_again_shortly_after() {
    let now = Instant::now();
    let mut engine = started(now);
    drain(&mut engine);
    publish_default_track(&mut engine, now);
    let update = |enabled: bool| {
        signal_response::Message::SubscribedQualityUpdate(proto::SubscribedQualityUpdate {
            track_sid: "TR_m".into(),
            subscribed_codecs: vec![proto::SubscribedCodec {
                codec: "vp8".into(),
                qualities: vec![proto::SubscribedQuality {
                    quality: proto::VideoQuality::High as i32,
                    enabled,
                }],
            }],
            ..Default::default()
        })
    };
    let subscribed = || {
        signal_response::Message::TrackSubscribed(proto::TrackSubscribed {
            track_sid: "TR_m".into(),
        })
    };
    let keyframes = |engine: &mut Engine| {
        let (_, _, events) = drain(engine);
        events
            .iter()
            .filter(|e| matches!(e, EngineEvent::KeyframeRequested { cid } if cid == "TR_RS1"))
            .count()
    };
    // The repeat is due SUBSCRIBER_KEYFRAME_REPEAT later, and only then.
    let repeated = |engine: &mut Engine, since: Instant| {
        engine.handle_timeout(since + SUBSCRIBER_KEYFRAME_REPEAT - Duration::from_millis(1));
        assert_eq!(keyframes(engine), 0, "not yet");
        match engine.poll_output() {
            Output::Timeout(at) => assert!(at <= since + SUBSCRIBER_KEYFRAME_REPEAT),
            other => panic!("{other:?}"),
        }
        engine.handle_timeout(since + SUBSCRIBER_KEYFRAME_REPEAT);
        keyframes(engine)
    };

    engine.handle_signal(update(true), now);
    assert_eq!(keyframes(&mut engine), 1, "the first subscriber");
    assert_eq!(repeated(&mut engine, now), 1, "and again");
    let now = now + Duration::from_secs(1);
    engine.handle_signal(update(true), now);
    assert_eq!(keyframes(&mut engine), 0, "still watched: nothing new");
    engine.handle_timeout(now + SUBSCRIBER_KEYFRAME_REPEAT);
    assert_eq!(keyframes(&mut engine), 0);
    engine.handle_signal(subscribed(), now);
    assert_eq!(keyframes(&mut engine), 1, "one more subscriber, though others watch");
    assert_eq!(repeated(&mut engine, now), 1);
    let now = now + Duration::from_secs(1);
    engine.handle_signal(update(false), now);
    assert_eq!(keyframes(&mut engine), 0);
    engine.handle_signal(update(true), now);
    assert_eq!(keyframes(&mut engine), 1, "watched again");
    assert_eq!(repeated(&mut engine, now), 1);
    let other =
        proto::SubscribedQualityUpdate { track_sid: "TR_other".into(), ..Default::default() };
    engine.handle_signal(signal_response::Message::SubscribedQualityUpdate(other), now);
    assert_eq!(keyframes(&mut engine), 0, "another track");
}

#[test]
fn when_our_key_changes_keyframes_follow_for_late_receivers_of_the_key() {
    use crate::e2ee::{GcmFrameCryptor, KeyProvider, KeyProviderOptions};

    let keys = Arc::new(KeyProvider::new(KeyProviderOptions::element_call()));
    keys.set_key("me", 0, &[1; 16]).unwrap();
    let config = EngineConfig { cryptor: Some(Arc::new(GcmFrameCryptor::new(keys.clone()))) };
    let mut now = Instant::now();
    let mut engine = started_with(config, now);
    drain(&mut engine);
    let options = VideoTrackOptions { encrypted: true, ..Default::default() };
    engine.add_track("TR_RS1".into(), LocalTrackOptions::Video(options));
    let published =
        proto::TrackPublishedResponse { cid: "TR_RS1".into(), track: Some(track("TR_m")) };
    engine.handle_signal(signal_response::Message::TrackPublished(published), now);
    let (signals, _, _) = drain(&mut engine);
    let Some(signal_request::Message::Offer(offer)) = signals.into_iter().last() else {
        panic!("no offer")
    };
    let mut server = FakeServer::new(now);
    let answer = answer_from(&mut server, &offer);
    engine.handle_signal(signal_response::Message::Answer(answer), now);
    pump(&mut engine, &mut server, &mut now, |_, s| {
        s.iter().any(|e| matches!(e, Event::Connected))
    });
    drain(&mut engine);

    // Frames at 30 fps from `start` for `duration`: the times keyframes were asked for.
    let interval = Duration::from_millis(33);
    let mut index = 0;
    let mut send = |engine: &mut Engine, start: Instant, duration: Duration| {
        let mut asked = Vec::new();
        let mut at = start;
        while at < start + duration {
            engine.handle_timeout(at);
            assert!(engine.write_frame("TR_RS1", frame(&[0x10; 40], index, interval), at));
            index += 1;
            let (_, _, events) = drain(engine);
            let requests = events
                .iter()
                .filter(|e| matches!(e, EngineEvent::KeyframeRequested { cid } if cid == "TR_RS1"));
            asked.extend(requests.map(|_| at - start));
            at += interval;
        }
        asked
    };
    assert!(send(&mut engine, now, Duration::from_secs(1)).is_empty(), "one key: none asked");

    // The key changes: keyframes at each step of the schedule, within a frame of it.
    let changed = now + Duration::from_secs(1);
    keys.set_key("me", 1, &[2; 16]).unwrap();
    let asked = send(&mut engine, changed, Duration::from_secs(4));
    assert_eq!(asked.len(), KEY_CHANGE_KEYFRAMES.len(), "{asked:?}");
    for (asked, due) in asked.iter().zip(KEY_CHANGE_KEYFRAMES) {
        assert!(*asked >= due && *asked < due + interval, "{asked:?} for {due:?}");
    }
    // The same key set again is no change.
    keys.set_key("me", 1, &[2; 16]).unwrap();
    let later = changed + Duration::from_secs(4);
    assert!(send(&mut engine, later, Duration::from_secs(3)).is_empty());
}

#[test]
fn an_audio_track_is_announced_as_opus_and_its_packets_carry_their_level() {
    let mut now = Instant::now();
    let mut engine = started(now);
    drain(&mut engine);
    engine.add_track("TR_RS9".into(), LocalTrackOptions::Audio(AudioTrackOptions::default()));
    let (signals, _, _) = drain(&mut engine);
    let [signal_request::Message::AddTrack(request)] = &signals[..] else { panic!("{signals:?}") };
    assert_eq!(request.r#type, proto::TrackType::Audio as i32);
    assert_eq!(request.source, proto::TrackSource::Microphone as i32);
    assert_eq!(request.simulcast_codecs[0].codec, "opus");
    assert!(request.disable_red, "we send plain Opus, never RED");
    assert!(request.layers.is_empty());

    let mut mic = track("TR_mic");
    mic.r#type = proto::TrackType::Audio as i32;
    let published = proto::TrackPublishedResponse { cid: "TR_RS9".into(), track: Some(mic) };
    engine.handle_signal(signal_response::Message::TrackPublished(published), now);
    let (signals, _, _) = drain(&mut engine);
    let [signal_request::Message::Offer(offer)] = &signals[..] else { panic!("{signals:?}") };
    assert!(offer.sdp.contains("m=audio"), "{}", offer.sdp);
    assert!(offer.sdp.contains("opus/48000/2"), "{}", offer.sdp);
    assert!(offer.sdp.contains("ssrc-audio-level"), "{}", offer.sdp);

    let mut server = FakeServer::new(now);
    let answer = answer_from(&mut server, offer);
    engine.handle_signal(signal_response::Message::Answer(answer), now);
    let (engine_events, _) = pump(&mut engine, &mut server, &mut now, |_, s| {
        s.iter().any(|e| matches!(e, Event::Connected))
    });
    assert!(
        !engine_events.iter().any(|e| matches!(e, EngineEvent::KeyframeRequested { .. })),
        "audio has no keyframes: {engine_events:?}"
    );
    assert!(
        !engine.write_frame("TR_RS9", frame(&[0x10], 0, Duration::ZERO), now),
        "a video frame on an audio track is dropped"
    );

    let packet = vec![0x78, 0x01, 0x02, 0x03, 0x04];
    let mut received = None;
    for i in 0..30u32 {
        let written = engine.write_frame(
            "TR_RS9",
            OutgoingFrame::Audio(EncodedAudioFrame {
                data: packet.clone(),
                timestamp: Duration::from_millis(20) * i,
                level: Some(AudioLevel { dbov: 30, voice: true }),
            }),
            now,
        );
        assert!(written);
        let (_, server_events) = pump(&mut engine, &mut server, &mut now, |_, s| {
            s.iter().any(|e| matches!(e, Event::MediaData(_)))
        });
        received = server_events.into_iter().find_map(|e| match e {
            Event::MediaData(data) => Some(data),
            _ => None,
        });
        if received.is_some() {
            break;
        }
    }
    let received = received.expect("a packet reaches the peer");
    assert_eq!(&received.data[..], &packet[..]);
    assert_eq!(received.params.spec().codec, str0m::format::Codec::Opus);
    assert_eq!(received.time.frequency(), str0m::media::Frequency::FORTY_EIGHT_KHZ);
    assert_eq!(received.ext_vals.audio_level, Some(-30));
    assert_eq!(received.ext_vals.voice_activity, Some(true));
}

#[test]
fn a_remote_audio_track_becomes_an_audio_subscription_with_levels() {
    let mut now = Instant::now();
    let mut engine = Engine::new(EngineConfig::default(), now);
    let mut joined = join();
    let mut mic = track("TR_bob_mic");
    mic.r#type = proto::TrackType::Audio as i32;
    mic.source = proto::TrackSource::Microphone as i32;
    mic.mime_type = "audio/red".into();
    joined.other_participants[0].tracks = vec![mic];
    let addrs = LocalAddrs { publisher: vec![addr(PUBLISHER)], subscriber: vec![addr(SUBSCRIBER)] };
    engine.start_session(joined, addrs, false, now);
    drain(&mut engine);

    let mut server = FakeServer::new(now);
    let mut api = server.rtc.sdp_api();
    let mid = api.add_media(
        MediaKind::Audio,
        Direction::SendOnly,
        Some("PA_bob|TR_bob_mic".into()),
        Some("TR_bob_mic".into()),
        None,
    );
    let (offer, pending) = api.apply().unwrap();
    engine.handle_signal(
        signal_response::Message::Offer(proto::SessionDescription {
            r#type: "offer".into(),
            sdp: offer.to_sdp_string(),
            id: 7,
            ..Default::default()
        }),
        now,
    );
    let (signals, _, _) = drain(&mut engine);
    let Some(signal_request::Message::Answer(answer)) = signals.first() else {
        panic!("{signals:?}")
    };
    server
        .rtc
        .sdp_api()
        .accept_answer(pending, str0m::change::SdpAnswer::from_sdp_string(&answer.sdp).unwrap())
        .unwrap();
    let (events, _) = pump(&mut engine, &mut server, &mut now, |events, _| {
        events.iter().any(|e| matches!(e, EngineEvent::Connected))
    });
    let info = events
        .iter()
        .find_map(|e| match e {
            EngineEvent::TrackSubscribed(info) => Some(info.clone()),
            _ => None,
        })
        .expect("subscribed");
    assert_eq!(info.kind, TrackKind::Audio);
    assert_eq!(info.source, Some(crate::TrackSource::Microphone));

    let mut packets = Vec::new();
    for i in 0..30u64 {
        let writer = server.rtc.writer(mid).unwrap().audio_level(-12, true);
        let pt = writer.payload_params().next().unwrap().pt();
        writer
            .write(
                pt,
                now,
                MediaTime::new(i * 960, str0m::media::Frequency::FORTY_EIGHT_KHZ),
                vec![0x78, i as u8],
            )
            .unwrap();
        let (events, _) = pump(&mut engine, &mut server, &mut now, |events, _| {
            events.iter().any(|e| matches!(e, EngineEvent::AudioFrame { .. }))
        });
        packets.extend(events.into_iter().filter_map(|e| match e {
            EngineEvent::AudioFrame { track_sid, frame } => Some((track_sid, frame)),
            EngineEvent::Frame { .. } => panic!("audio delivered as video"),
            _ => None,
        }));
        if packets.len() >= 3 {
            break;
        }
    }
    assert!(packets.len() >= 3, "{packets:?}");
    let (track_sid, first) = &packets[0];
    assert_eq!(track_sid, "TR_bob_mic");
    assert_eq!(first.level, Some(AudioLevel { dbov: 12, voice: true }));
    assert_eq!(first.data[0], 0x78);
    let steps: Vec<u64> =
        packets.windows(2).map(|w| w[1].1.rtp_timestamp - w[0].1.rtp_timestamp).collect();
    assert!(steps.iter().all(|&s| s == 960), "20 ms apart at 48 kHz: {steps:?}");
}

#[test]
fn every_peer_connection_of_the_process_shares_one_dtls_certificate() {
    let now = Instant::now();
    let mut a = new_rtc(now, &[addr(PUBLISHER)], true);
    let mut b = new_rtc(now, &[addr(SUBSCRIBER)], false);
    let fingerprint = |rtc: &mut Rtc| rtc.direct_api().local_dtls_fingerprint().to_string();
    assert_eq!(fingerprint(&mut a), fingerprint(&mut b));
    assert!(process_dtls_cert().is_some(), "the aws-lc-rs provider makes certificates");
}

/// One peer connection: remote media arrives in receive-only m-lines we add when the server
/// asks, bound to tracks by the answer's `mid_to_track_id`.
#[test]
fn with_one_peer_connection_remote_media_arrives_in_the_m_lines_the_server_asked_for() {
    let mut now = Instant::now();
    let mut engine = Engine::new(EngineConfig::default(), now);
    let addrs = LocalAddrs { publisher: vec![addr(PUBLISHER)], subscriber: vec![] };
    let single = proto::JoinResponse { subscriber_primary: false, ..join() };
    engine.start_session(single, addrs, true, now);
    let (signals, _, _) = drain(&mut engine);
    let Some(signal_request::Message::Offer(first)) = signals.last() else {
        panic!("the first offer goes out at once: {signals:?}")
    };
    let mut server = FakeServer::new(now);
    let answer = answer_from(&mut server, first);
    engine.handle_signal(signal_response::Message::Answer(answer), now);
    pump(&mut engine, &mut server, &mut now, |events, _| {
        events.iter().any(|e| matches!(e, EngineEvent::Connected))
    });

    // The server has bob's video for us and asks for a place to send it.
    let wanted = proto::MediaSectionsRequirement { num_audios: 0, num_videos: 1 };
    engine.handle_signal(signal_response::Message::MediaSectionsRequirement(wanted), now);
    let (signals, _, _) = drain(&mut engine);
    let Some(signal_request::Message::Offer(offer)) = signals.last() else {
        panic!("a new offer: {signals:?}")
    };
    assert!(offer.sdp.contains("a=recvonly"), "a receive-only m-line: {}", offer.sdp);
    let mid = offer
        .sdp
        .lines()
        .filter_map(|l| l.strip_prefix("a=mid:"))
        .next_back()
        .expect("mids")
        .to_owned();
    let mut answer = answer_from(&mut server, offer);
    answer.mid_to_track_id.insert(mid.clone(), "TR_bob".into());
    engine.handle_signal(signal_response::Message::Answer(answer), now);
    let (events, _) = pump(&mut engine, &mut server, &mut now, |events, _| {
        events.iter().any(|e| matches!(e, EngineEvent::TrackSubscribed(_)))
    });
    assert!(
        events
            .iter()
            .any(|e| matches!(e, EngineEvent::TrackSubscribed(i) if i.track_sid == "TR_bob")),
        "{events:?}"
    );

    let payload = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 0xaa, 0xbb];
    let mid = str0m::media::Mid::from(mid.as_str());
    let (track_sid, frame) = first_frame(&mut engine, &mut server, &mut now, mid, &payload);
    assert_eq!(track_sid, "TR_bob");
    assert_eq!(frame.data, payload);

    // Unsubscribing ends the track at once (the server may not renegotiate).
    engine.set_subscribed("TR_bob", false);
    let (_, _, events) = drain(&mut engine);
    assert!(
        events.iter().any(
            |e| matches!(e, EngineEvent::TrackUnsubscribed { track_sid } if track_sid == "TR_bob")
        ),
        "{events:?}"
    );

    // A renegotiation asked for without new m-lines still makes an offer.
    let again = proto::MediaSectionsRequirement { num_audios: 0, num_videos: 0 };
    engine.handle_signal(signal_response::Message::MediaSectionsRequirement(again), now);
    let (signals, _, _) = drain(&mut engine);
    assert!(signals.iter().any(|m| matches!(m, signal_request::Message::Offer(_))), "{signals:?}");
}

#[test]
fn a_server_asking_for_endless_m_lines_is_capped() {
    let now = Instant::now();
    let mut engine = Engine::new(EngineConfig::default(), now);
    let addrs = LocalAddrs { publisher: vec![addr(PUBLISHER)], subscriber: vec![] };
    engine.start_session(
        proto::JoinResponse { subscriber_primary: false, ..join() },
        addrs,
        true,
        now,
    );
    drain(&mut engine);
    let wanted = proto::MediaSectionsRequirement { num_audios: u32::MAX, num_videos: u32::MAX };
    engine.handle_signal(signal_response::Message::MediaSectionsRequirement(wanted), now);
    drain(&mut engine);
    let session = engine.session.as_ref().expect("session");
    let lines = session.publishing.receive_lines();
    assert_eq!(lines, 256, "capped, and the cap offered");
}
