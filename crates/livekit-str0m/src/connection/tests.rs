//! The connection core with fake time, a fake SFU for media and no sockets: every reconnect
//! path that otherwise only a real server would exercise.

use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use proto::{signal_request, signal_response};
use str0m::Input;
use str0m::net::{Protocol, Receive};
use tokio::sync::{mpsc, oneshot, watch};

use super::*;
use crate::api::{ConnectionState, RoomEvent, RoomOptions, Shared};
use crate::engine::test_peer::{
    FakeServer, PUBLISHER, SERVER, SUBSCRIBER, addr, answer_from, join,
};
use crate::events::{EVENT_QUEUE_CAPACITY, EventSender, RoomEvents};
use crate::track::{LocalTrackOptions, LocalTrackShared, VideoTrackOptions};

const TICK: Duration = Duration::from_millis(5);

struct Harness {
    core: Connection,
    events: RoomEvents,
    connected: oneshot::Receiver<Result<(), ConnectError>>,
    state: watch::Receiver<ConnectionState>,
    now: Instant,
    server: FakeServer,
    _requests: mpsc::Sender<TrackRequest>,
    /// Signal messages the core sent.
    sent: Vec<signal_request::Message>,
    /// Every other action, in order.
    actions: Vec<Action>,
    /// When the server last said something.
    last_server_message: Instant,
    /// Whether the fake server answers pings.
    answers_pings: bool,
}

fn publisher_primary_join() -> proto::JoinResponse {
    proto::JoinResponse { subscriber_primary: false, ..join() }
}

fn joined() -> Opened {
    let addrs = LocalAddrs { publisher: vec![addr(PUBLISHER)], subscriber: vec![addr(SUBSCRIBER)] };
    Opened::Join { join: publisher_primary_join(), addrs, loopback: true }
}

impl Harness {
    fn new(options: RoomOptions) -> Self {
        let now = Instant::now();
        let (events, events_rx) = EventSender::new(EVENT_QUEUE_CAPACITY);
        let (state_tx, state) = watch::channel(ConnectionState::Connected);
        let shared = Arc::new(Shared { state: state_tx, local: Default::default() });
        let (requests, _requests_rx) = mpsc::channel(8);
        let (connected_tx, connected) = oneshot::channel();
        let parts = ConnectionParts {
            token: "token-1".into(),
            options,
            events,
            shared,
            track_requests: requests.downgrade(),
            connected: connected_tx,
        };
        Self {
            core: Connection::new(parts, now),
            events: events_rx,
            connected,
            state,
            now,
            server: FakeServer::new(now),
            _requests: requests,
            sent: Vec::new(),
            actions: Vec::new(),
            last_server_message: now,
            answers_pings: true,
        }
    }

    /// Joined, with the publisher connection up (the session counts as connected).
    fn connected(options: RoomOptions) -> Self {
        let mut h = Self::new(options);
        let attempt = h.expect_open(None);
        assert!(h.core.handle_opened(attempt, Ok(joined()), h.now));
        h.answer_offer();
        h.run_until(Duration::from_secs(5), |h| matches!(h.connected.try_recv(), Ok(Ok(()))));
        h.actions.clear();
        h.sent.clear();
        h
    }

    /// Moves the core's actions out: datagrams to the fake SFU, signals into `sent`.
    fn pump(&mut self) {
        while let Some(action) = self.core.poll_action() {
            match action {
                Action::Transmit { source, destination, contents } => {
                    if destination != addr(SERVER) {
                        continue;
                    }
                    let receive = Receive {
                        proto: Protocol::Udp,
                        source,
                        destination,
                        contents: contents.as_slice().try_into().expect("datagram"),
                    };
                    let _ = self.server.rtc.handle_input(Input::Receive(self.now, receive));
                }
                Action::Signal(signal_request::Message::PingReq(ping)) if self.answers_pings => {
                    let pong = proto::Pong { last_ping_timestamp: ping.timestamp, timestamp: 0 };
                    let pong = Incoming::Message(signal_response::Message::PongResp(pong));
                    self.core.handle_signal(pong, self.now);
                    self.sent.push(signal_request::Message::PingReq(ping));
                }
                Action::Signal(message) => self.sent.push(message),
                other => self.actions.push(other),
            }
        }
        let (datagrams, _, _) = self.server.transmits();
        for (source, destination, contents) in datagrams {
            self.core.handle_datagram(source, destination, &contents, self.now);
        }
    }

    /// Runs fake time in small steps until `done` or `limit` passed; whether `done` held.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            self.pump();
            if done(self) {
                return true;
            }
            if self.now >= end {
                return false;
            }
            self.now += TICK;
            if self.core.poll_timeout().is_some_and(|at| at <= self.now) {
                self.core.handle_timeout(self.now);
            }
            let _ = self.server.rtc.handle_input(Input::Timeout(self.now));
        }
    }

    /// Answers the publisher's latest offer as the SFU does.
    fn answer_offer(&mut self) {
        self.pump();
        let offer = self
            .sent
            .iter()
            .rev()
            .find_map(|m| match m {
                signal_request::Message::Offer(offer) => Some(offer.clone()),
                _ => None,
            })
            .expect("a publisher offer");
        let answer = answer_from(&mut self.server, &offer);
        self.core
            .handle_signal(Incoming::Message(signal_response::Message::Answer(answer)), self.now);
        self.last_server_message = self.now;
    }

    /// The next OpenSignal action (after pumping); asserts whether it resumes `resume_sid`.
    fn expect_open(&mut self, resume_sid: Option<&str>) -> u64 {
        self.pump();
        let index = self
            .actions
            .iter()
            .position(|a| matches!(a, Action::OpenSignal { .. }))
            .unwrap_or_else(|| panic!("no OpenSignal among {:?}", self.actions));
        let Action::OpenSignal { attempt, params, .. } = self.actions.remove(index) else {
            unreachable!()
        };
        assert_eq!(params.resume_sid.as_deref(), resume_sid, "what the opening is for");
        self.actions.drain(..index);
        attempt
    }

    fn open_tokens(&self) -> Vec<String> {
        self.actions
            .iter()
            .filter_map(|a| match a {
                Action::OpenSignal { token, .. } => Some(token.clone()),
                _ => None,
            })
            .collect()
    }

    fn finished(&self) -> bool {
        self.actions.iter().any(|a| matches!(a, Action::Finished { .. }))
    }

    fn events(&mut self) -> Vec<RoomEvent> {
        std::iter::from_fn(|| self.events.try_recv()).collect()
    }

    fn signal_closed(&mut self) {
        self.core.handle_signal(Incoming::Closed("reset by peer".into()), self.now);
    }
}

fn unreachable() -> ConnectError {
    ConnectError::Unreachable("connection refused".into())
}

#[test]
fn a_failed_first_join_ends_the_connection_without_retrying() {
    let mut h = Harness::new(RoomOptions::default());
    let attempt = h.expect_open(None);
    let refused = ConnectError::Refused { status: 401, message: "invalid token".into() };
    assert!(!h.core.handle_opened(attempt, Err(refused), h.now));
    h.pump();
    assert!(h.finished(), "{:?}", h.actions);
    assert!(matches!(h.connected.try_recv(), Ok(Err(ConnectError::Refused { status: 401, .. }))));
    assert_eq!(h.core.poll_timeout(), None, "nothing left to wait for");
    assert!(h.open_tokens().is_empty(), "no second attempt");
}

#[test]
fn media_that_never_connects_fails_the_first_join_after_the_media_timeout() {
    let mut h = Harness::new(RoomOptions::default());
    let attempt = h.expect_open(None);
    assert!(h.core.handle_opened(attempt, Ok(joined()), h.now));
    let started = h.now;
    // Nobody answers the offer.
    let done = h.run_until(MEDIA_CONNECT_TIMEOUT + Duration::from_secs(1), |h| h.finished());
    assert!(done, "the first join ends");
    assert!(h.now - started >= MEDIA_CONNECT_TIMEOUT);
    assert!(matches!(h.connected.try_recv(), Ok(Err(ConnectError::MediaTimeout(_)))));
}

#[test]
fn a_lost_websocket_resumes_and_requests_made_meanwhile_follow() {
    let mut h = Harness::connected(RoomOptions::default());
    assert_eq!(*h.state.borrow(), ConnectionState::Connected);
    h.signal_closed();
    let attempt = h.expect_open(Some("PA_me"));
    assert!(matches!(h.actions.first(), None | Some(Action::DropSignal)) || h.actions.is_empty());
    assert_eq!(*h.state.borrow(), ConnectionState::Reconnecting);
    // While the WebSocket is down, requests wait.
    h.core.handle_command(
        Command::SetSubscribed { track_sid: "TR_bob".into(), subscribe: false },
        h.now,
    );
    h.pump();
    assert!(!h.sent.iter().any(|m| matches!(m, signal_request::Message::Subscription(_))));
    h.now += Duration::from_millis(300);
    assert!(h.core.handle_opened(attempt, Ok(Opened::Resume(Default::default())), h.now));
    h.pump();
    assert_eq!(*h.state.borrow(), ConnectionState::Connected);
    assert!(
        h.sent
            .iter()
            .any(|m| matches!(m, signal_request::Message::Subscription(s) if !s.subscribe)),
        "the held request goes out after the resume: {:?}",
        h.sent
    );
    let states: Vec<_> = h
        .events()
        .into_iter()
        .filter_map(|e| match e {
            RoomEvent::ConnectionStateChanged(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(states, [ConnectionState::Reconnecting, ConnectionState::Connected]);
}

#[test]
fn a_refused_resume_rejoins_from_scratch() {
    let mut h = Harness::connected(RoomOptions::default());
    h.signal_closed();
    let attempt = h.expect_open(Some("PA_me"));
    let refused = ConnectError::Refused { status: 404, message: "participant not found".into() };
    assert!(!h.core.handle_opened(attempt, Err(refused), h.now));
    let rejoin = h.expect_open(None);
    assert!(rejoin > attempt);
    assert!(h.core.handle_opened(rejoin, Ok(joined()), h.now));
    h.server = FakeServer::new(h.now);
    h.answer_offer();
    let connected =
        h.run_until(Duration::from_secs(5), |h| *h.state.borrow() == ConnectionState::Connected);
    assert!(connected, "the new session connects");
}

#[test]
fn a_restarting_server_is_asked_again_until_the_resume_deadline_then_rejoined() {
    let mut h = Harness::connected(RoomOptions::default());
    let lost = h.now;
    h.signal_closed();
    let mut attempts = vec![h.expect_open(Some("PA_me"))];
    let mut opened_at = vec![h.now];
    loop {
        let attempt = *attempts.last().expect("an attempt");
        assert!(!h.core.handle_opened(attempt, Err(unreachable()), h.now));
        // The next opening comes after a pause: a retry of the resume, or the rejoin.
        let mut next = None;
        h.run_until(RESUME_TIMEOUT, |h| {
            h.pump();
            next = h.actions.iter().find_map(|a| match a {
                Action::OpenSignal { attempt, params, .. } => {
                    Some((*attempt, params.resume_sid.is_some()))
                }
                _ => None,
            });
            next.is_some()
        });
        let (attempt, resume) = next.expect("another attempt within the deadline");
        h.actions.retain(|a| !matches!(a, Action::OpenSignal { .. }));
        if !resume {
            let elapsed = h.now - lost;
            assert!(
                elapsed >= RESUME_TIMEOUT && elapsed < RESUME_TIMEOUT + TICK * 2,
                "{elapsed:?}"
            );
            break;
        }
        attempts.push(attempt);
        opened_at.push(h.now);
    }
    let gaps: Vec<Duration> = opened_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 4, "several resume attempts: {gaps:?}");
    assert!(
        gaps[0] >= Duration::from_millis(75) && gaps[0] <= Duration::from_millis(110),
        "{gaps:?}"
    );
    assert!(gaps[3] > gaps[0] * 4, "the pauses grow: {gaps:?}");
    assert!(gaps.iter().all(|g| *g <= Duration::from_secs(2) + TICK), "{gaps:?}");
}

#[test]
fn rejoins_back_off_and_give_up_at_the_reconnect_timeout() {
    let options =
        RoomOptions { reconnect_timeout: Duration::from_secs(4), ..RoomOptions::default() };
    let mut h = Harness::connected(options);
    // A session lost for good (not resumable): the server asks for a full reconnect.
    let lost = h.now;
    let leave = proto::LeaveRequest {
        action: proto::leave_request::Action::Reconnect as i32,
        ..Default::default()
    };
    h.core.handle_signal(Incoming::Message(signal_response::Message::Leave(leave)), h.now);
    let mut opened_at = Vec::new();
    let mut attempt = h.expect_open(None);
    loop {
        opened_at.push(h.now - lost);
        assert!(!h.core.handle_opened(attempt, Err(unreachable()), h.now));
        let mut next = None;
        h.run_until(Duration::from_secs(6), |h| {
            h.pump();
            next = h.actions.iter().find_map(|a| match a {
                Action::OpenSignal { attempt, .. } => Some(*attempt),
                _ => None,
            });
            next.is_some() || h.finished()
        });
        h.actions.retain(|a| !matches!(a, Action::OpenSignal { .. }));
        match next {
            Some(next) => attempt = next,
            None => break,
        }
    }
    assert!(h.finished());
    let end = h.now - lost;
    assert!(end >= Duration::from_secs(4) && end < Duration::from_secs(4) + TICK * 2, "{end:?}");
    assert!(opened_at.len() >= 4, "{opened_at:?}");
    let gaps: Vec<Duration> = opened_at.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= Duration::from_millis(150) && gaps[0] <= Duration::from_millis(210),
        "{gaps:?}"
    );
    assert!(gaps[2] > gaps[0] * 2, "the pauses grow: {gaps:?}");
    let events = h.events();
    assert!(
        matches!(
            events.last(),
            Some(RoomEvent::Disconnected(DisconnectCause::ReconnectFailed(
                ConnectError::Unreachable(_)
            )))
        ),
        "{events:?}"
    );
    assert_eq!(*h.state.borrow(), ConnectionState::Disconnected);
}

#[test]
fn a_refused_token_ends_the_rejoin_at_once() {
    let mut h = Harness::connected(RoomOptions::default());
    h.signal_closed();
    let resume = h.expect_open(Some("PA_me"));
    assert!(!h.core.handle_opened(
        resume,
        Err(ConnectError::Refused { status: 404, message: String::new() }),
        h.now
    ));
    let rejoin = h.expect_open(None);
    let refused = ConnectError::Refused { status: 401, message: "token expired".into() };
    assert!(!h.core.handle_opened(rejoin, Err(refused), h.now));
    h.pump();
    assert!(h.finished());
    assert!(h.open_tokens().is_empty(), "no attempt after a refused token");
}

#[test]
fn a_room_the_server_no_longer_has_ends_the_rejoin_at_once() {
    // The server restarted: the resume and the rejoin with the same token find no room.
    let mut h = Harness::connected(RoomOptions::default());
    h.signal_closed();
    let resume = h.expect_open(Some("PA_me"));
    let missing = || ConnectError::Refused { status: 404, message: NO_SUCH_ROOM.to_string() };
    assert!(!h.core.handle_opened(resume, Err(missing()), h.now));
    let rejoin = h.expect_open(None);
    assert!(!h.core.handle_opened(rejoin, Err(missing()), h.now));
    h.pump();
    assert!(h.finished());
    assert!(h.open_tokens().is_empty(), "no attempt after the room is gone");
    let events = h.events();
    assert!(
        matches!(
            events.last(),
            Some(RoomEvent::Disconnected(DisconnectCause::ReconnectFailed(
                ConnectError::Refused { status: 404, .. }
            )))
        ),
        "{events:?}"
    );
}

#[test]
fn a_refreshed_token_opens_the_next_connection() {
    let mut h = Harness::connected(RoomOptions::default());
    let refresh = signal_response::Message::RefreshToken("token-2".into());
    h.core.handle_signal(Incoming::Message(refresh), h.now);
    h.signal_closed();
    h.pump();
    assert_eq!(h.open_tokens(), ["token-2"]);
}

#[test]
fn a_silent_server_is_resumed_at_the_ping_timeout() {
    let mut h = Harness::connected(RoomOptions::default());
    h.answers_pings = false;
    let last_message = h.last_server_message;
    let resumed = h.run_until(Duration::from_secs(20), |h| {
        h.actions.iter().any(|a| matches!(a, Action::OpenSignal { .. }))
    });
    assert!(resumed);
    // The join said: pings every 5 s, silence for 15 s is a dead connection. The answer to the
    // offer was the last message.
    let waited = h.now - last_message;
    assert!(
        waited >= Duration::from_secs(15) && waited <= Duration::from_secs(15) + TICK,
        "{waited:?}"
    );
    let pings = h.sent.iter().filter(|m| matches!(m, signal_request::Message::PingReq(_))).count();
    assert_eq!(pings, 2, "pings at 5 s and 10 s");
}

#[test]
fn a_signal_send_that_fails_resumes() {
    let mut h = Harness::connected(RoomOptions::default());
    h.core.handle_signal_send_failed("a signal send took longer than 5s".into(), h.now);
    h.pump();
    assert!(matches!(h.actions.first(), Some(Action::DropSignal)), "{:?}", h.actions);
    h.expect_open(Some("PA_me"));
}

#[test]
fn disconnect_sends_leave_then_closes_and_answers() {
    let mut h = Harness::connected(RoomOptions::default());
    let (reply, done) = oneshot::channel();
    h.core.handle_command(Command::Disconnect { reply }, h.now);
    h.pump();
    assert!(matches!(h.sent.last(), Some(signal_request::Message::Leave(_))), "{:?}", h.sent);
    assert!(
        matches!(h.actions.as_slice(), [Action::CloseSignal, Action::Finished { reply: Some(_) }]),
        "{:?}",
        h.actions
    );
    let Some(Action::Finished { reply: Some(reply) }) = h.actions.pop() else { unreachable!() };
    reply.send(()).expect("the caller waits");
    assert!(done.blocking_recv().is_ok());
    let events = h.events();
    assert!(matches!(
        events.last(),
        Some(RoomEvent::Disconnected(DisconnectCause::ClientInitiated))
    ));
}

#[test]
fn a_publish_the_server_never_confirms_fails_after_its_timeout() {
    let mut h = Harness::connected(RoomOptions::default());
    let (reply, mut answer) = oneshot::channel();
    let options = LocalTrackOptions::Video(VideoTrackOptions::default());
    let shared = Arc::new(LocalTrackShared::default());
    let asked = h.now;
    h.core.handle_command(Command::Publish { cid: "TR_RS1".into(), options, shared, reply }, h.now);
    h.pump();
    assert!(h.sent.iter().any(|m| matches!(m, signal_request::Message::AddTrack(_))));
    let expired = h.run_until(Duration::from_secs(12), |_| answer.try_recv().is_ok());
    assert!(expired);
    let waited = h.now - asked;
    assert!(waited >= crate::connection::delivery::PUBLISH_TIMEOUT);
    assert!(waited <= crate::connection::delivery::PUBLISH_TIMEOUT + TICK, "{waited:?}");
}

#[test]
fn ten_thousand_speaker_updates_to_a_reader_that_never_reads_hold_memory_flat() {
    let mut h = Harness::connected(RoomOptions::default());
    for i in 0..10_000u32 {
        let speakers = vec![proto::SpeakerInfo {
            sid: "PA_bob".into(),
            level: (i % 100) as f32 / 100.0,
            active: i % 2 == 0,
        }];
        let changed =
            signal_response::Message::SpeakersChanged(proto::SpeakersChanged { speakers });
        h.core.handle_signal(Incoming::Message(changed), h.now);
        h.pump();
    }
    let events = h.events();
    assert!(events.len() <= EVENT_QUEUE_CAPACITY, "{} events held", events.len());
    let speaker_updates: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            RoomEvent::ActiveSpeakersChanged(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(speaker_updates.len(), 1, "merged into one waiting update");
    assert_eq!(speaker_updates[0].len(), 1);
    assert!((speaker_updates[0][0].level - 0.99).abs() < 1e-6, "the newest level wins");
}

#[test]
fn a_server_without_the_single_pc_endpoint_is_joined_with_two_at_once() {
    let mut h = Harness::new(RoomOptions::default());
    h.pump();
    let Some(Action::OpenSignal { attempt, params, .. }) = h.actions.pop() else {
        panic!("an opening: {:?}", h.actions)
    };
    assert!(params.single_pc, "one peer connection first");
    let not_found = ConnectError::Refused { status: 404, message: "404 page not found".into() };
    assert!(!h.core.handle_opened(attempt, Err(not_found), h.now));
    h.pump();
    let Some(Action::OpenSignal { attempt, params, .. }) = h.actions.pop() else {
        panic!("a second opening at once: {:?}", h.actions)
    };
    assert!(!params.single_pc, "two peer connections after the 404");
    assert!(h.core.handle_opened(attempt, Ok(joined()), h.now));
    h.pump();
    // The connection stays with two: a resume goes to `/rtc` too.
    assert!(h.sent.iter().any(|m| matches!(m, signal_request::Message::Offer(_))));
}

#[test]
fn a_missing_room_is_an_error_not_a_reason_to_fall_back() {
    let mut h = Harness::new(RoomOptions::default());
    let attempt = h.expect_open(None);
    let missing = ConnectError::Refused { status: 404, message: NO_SUCH_ROOM.to_string() };
    assert!(!h.core.handle_opened(attempt, Err(missing), h.now));
    h.pump();
    assert!(h.finished());
    assert!(h.open_tokens().is_empty(), "no second attempt");
    assert!(matches!(h.connected.try_recv(), Ok(Err(ConnectError::Refused { status: 404, .. }))));
}

#[test]
fn two_peer_connections_when_asked() {
    let options = RoomOptions { single_peer_connection: false, ..RoomOptions::default() };
    let mut h = Harness::new(options);
    h.pump();
    assert!(
        matches!(h.actions.as_slice(), [Action::OpenSignal { params, .. }] if !params.single_pc),
        "{:?}",
        h.actions
    );
}
