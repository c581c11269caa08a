//! The connection core (sans-IO): one room connection's policy over its sessions. It decides
//! when to join, resume or rejoin, how long each may take, when to give up, how signalling
//! requests wait while the WebSocket is down, and where the engine's events and media go. It
//! takes inputs and time and returns [`Action`]s; the connection task only moves bytes and
//! runs timers.
//!
//! ```text
//!  Joining ──join response──▶ Session ──signal lost, session connected──▶ Resuming
//!     ▲  │                       │  ▲                                        │
//!     │  └─failed: first join────┼──┼──▶ Closed ◀── disconnect, server leave │
//!     │     ends; a rejoin       │  └────────────── reconnect response ──────┤
//!     │     backs off (Backoff)  │                                           │
//!     └──── session lost ────────┴──────── resume refused or too slow ───────┘
//! ```

mod backoff;
mod delivery;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_protocol::{self as proto, signal_request, signal_response};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use crate::api::{Command, ConnectionState, RoomEvent, RoomOptions, Shared};
use crate::engine::{
    Engine, EngineConfig, EngineEvent, LocalAddrs, MEDIA_CONNECT_TIMEOUT, Output, ParticipantChange,
};
use crate::error::{ConnectError, DisconnectCause};
use crate::events::EventSender;
use crate::signal::{Incoming, NO_SUCH_ROOM, SignalParams};
use crate::track::TrackRequest;
use backoff::Backoff;
use delivery::Delivery;

/// How long a resume may take before the session is rejoined from scratch.
pub(crate) const RESUME_TIMEOUT: Duration = Duration::from_secs(10);
/// Signalling requests held while the WebSocket is down; the oldest go first beyond this (a
/// resumed session sends its whole state again anyway).
const HELD_REQUESTS: usize = 256;

/// What the connection task must do.
// Signal messages are large and rare; boxing them would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Action {
    /// Open a WebSocket (a join, or a resume when `params.resume_sid` is set) and report with
    /// [`Connection::handle_opened`]. Replaces any opening still in flight.
    OpenSignal { attempt: u64, params: SignalParams, token: String },
    /// Send on the WebSocket.
    Signal(signal_request::Message),
    /// Send what is queued, then close the WebSocket politely.
    CloseSignal,
    /// The WebSocket is broken: drop it.
    DropSignal,
    /// Send a datagram from one of the session's sockets.
    Transmit { source: SocketAddr, destination: SocketAddr, contents: Vec<u8> },
    /// Resolve these STUN server URLs and report with [`Connection::handle_stun_resolved`].
    ResolveStun(Vec<String>),
    /// The connection is over: let a closing WebSocket finish, answer `reply`, end the task.
    Finished { reply: Option<oneshot::Sender<()>> },
}

/// What an opened WebSocket said first.
// Moved once, from the task to the core.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Opened {
    /// A join response, with the sockets the task bound for the new session.
    Join { join: proto::JoinResponse, addrs: LocalAddrs, loopback: bool },
    /// The server took the session back.
    Resume(proto::ReconnectResponse),
}

/// Where the connection stands.
#[derive(Debug)]
enum Phase {
    /// Opening a WebSocket to join: the first join (`rejoin: None`), or one after trouble.
    Joining { attempt: u64, rejoin: Option<Rejoin> },
    /// Waiting before the next join attempt.
    JoinBackoff { at: Instant, rejoin: Rejoin },
    /// A session is running and its WebSocket is up.
    Session,
    /// The session runs on (media included); its WebSocket is being reopened.
    Resuming {
        attempt: Option<u64>,
        retry_at: Option<Instant>,
        deadline: Instant,
        backoff: Backoff,
    },
    /// Over.
    Closed,
}

/// A rejoin in progress.
#[derive(Debug)]
struct Rejoin {
    /// When the trouble began: rejoining ends within the reconnect timeout of it.
    since: Instant,
    attempts: u32,
    backoff: Backoff,
}

/// What the core is made with.
pub(crate) struct ConnectionParts {
    pub(crate) token: String,
    pub(crate) options: RoomOptions,
    pub(crate) events: EventSender,
    pub(crate) shared: Arc<Shared>,
    /// For remote video tracks' keyframe requests.
    pub(crate) track_requests: mpsc::WeakSender<TrackRequest>,
    /// Hears how the first join ends.
    pub(crate) connected: oneshot::Sender<Result<(), ConnectError>>,
}

/// One room connection's state across sessions.
pub(crate) struct Connection {
    token: String,
    options: RoomOptions,
    engine: Engine,
    delivery: Delivery,
    events: EventSender,
    shared: Arc<Shared>,
    track_requests: mpsc::WeakSender<TrackRequest>,
    connected: Option<oneshot::Sender<Result<(), ConnectError>>>,
    phase: Phase,
    /// When the current trouble began (a resume), so a rejoin after it still ends within the
    /// reconnect timeout.
    trouble_since: Option<Instant>,
    /// Requests made while the WebSocket was down.
    held: VecDeque<signal_request::Message>,
    /// Held requests dropped (the oldest) during this outage.
    held_dropped: u64,
    actions: VecDeque<Action>,
    engine_timeout: Instant,
    next_attempt: u64,
    /// One peer connection (`/rtc/v1`) until the server shows it has no such endpoint.
    single_pc: bool,
    now: Instant,
}

impl Connection {
    /// A connection about to join: its first action opens the WebSocket.
    pub(crate) fn new(parts: ConnectionParts, now: Instant) -> Self {
        let config = EngineConfig { cryptor: parts.options.frame_cryptor.clone() };
        let single_pc = parts.options.single_peer_connection;
        let mut connection = Self {
            token: parts.token,
            options: parts.options,
            engine: Engine::new(config, now),
            delivery: Delivery::default(),
            events: parts.events,
            shared: parts.shared,
            track_requests: parts.track_requests,
            connected: Some(parts.connected),
            phase: Phase::Closed,
            trouble_since: None,
            held: VecDeque::new(),
            held_dropped: 0,
            actions: VecDeque::new(),
            engine_timeout: now,
            next_attempt: 0,
            single_pc,
            now,
        };
        connection.join(None);
        connection
    }

    // ------------------------------------------------------------------ outputs

    /// The next thing to do; `None` until an input or [`Connection::poll_timeout`].
    pub(crate) fn poll_action(&mut self) -> Option<Action> {
        loop {
            if let Some(action) = self.actions.pop_front() {
                return Some(action);
            }
            if matches!(self.phase, Phase::Closed) {
                return None;
            }
            match self.engine.poll_output() {
                Output::Signal(message) => {
                    if matches!(self.phase, Phase::Session) {
                        return Some(Action::Signal(message));
                    }
                    self.hold(message);
                }
                Output::Transmit { source, destination, contents } => {
                    return Some(Action::Transmit { source, destination, contents });
                }
                Output::Event(event) => self.route(event),
                Output::Timeout(at) => {
                    self.engine_timeout = at;
                    return None;
                }
            }
        }
    }

    /// When to call [`Connection::handle_timeout`] if nothing else happens first.
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Closed => return None,
            Phase::JoinBackoff { at, .. } => Some(*at),
            Phase::Resuming { retry_at, deadline, .. } => {
                Some(retry_at.map_or(*deadline, |at| at.min(*deadline)))
            }
            Phase::Joining { .. } | Phase::Session => None,
        };
        [Some(self.engine_timeout), phase, self.delivery.next_publish_expiry()]
            .into_iter()
            .flatten()
            .min()
    }

    // ------------------------------------------------------------------ inputs

    /// An opening asked for by [`Action::OpenSignal`] ended. `true`: keep the WebSocket (and,
    /// for a join, the sockets), it is the session's now; `false`: drop them.
    pub(crate) fn handle_opened(
        &mut self,
        attempt: u64,
        result: Result<Opened, ConnectError>,
        now: Instant,
    ) -> bool {
        self.now = now;
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::Joining { attempt: expected, rejoin } if expected == attempt => match result {
                Ok(Opened::Join { join, addrs, loopback }) => {
                    self.start_session(join, addrs, loopback, rejoin);
                    return true;
                }
                Ok(Opened::Resume(_)) => {
                    let error = ConnectError::Protocol("a reconnect response to a join".into());
                    self.join_failed(error, rejoin);
                }
                Err(error) => self.join_failed(error, rejoin),
            },
            Phase::Resuming { attempt: Some(expected), deadline, mut backoff, .. }
                if expected == attempt =>
            {
                match result {
                    Ok(Opened::Resume(response)) => {
                        self.resumed(response);
                        return true;
                    }
                    Err(ConnectError::Unreachable(error)) if now < deadline => {
                        // The server may be restarting: try again shortly, within the deadline.
                        let retry_at = (now + backoff.next_delay()).min(deadline);
                        debug!(%error, "resume attempt failed; retrying");
                        self.phase = Phase::Resuming {
                            attempt: None,
                            retry_at: Some(retry_at),
                            deadline,
                            backoff,
                        };
                    }
                    Ok(Opened::Join { .. }) => {
                        self.phase = Phase::Session;
                        self.session_lost("resume failed: a join response to a resume".into());
                    }
                    Err(error) => {
                        info!(%error, "resume refused; rejoining");
                        // Back in the session's shoes for `session_lost`: nothing is open.
                        self.phase = Phase::Session;
                        self.session_lost(format!("resume failed: {error}"));
                    }
                }
            }
            other => {
                debug!(attempt, "a stale signal connection attempt ended");
                self.phase = other;
            }
        }
        false
    }

    /// What arrived on the WebSocket.
    pub(crate) fn handle_signal(&mut self, incoming: Incoming, now: Instant) {
        self.now = now;
        if !matches!(self.phase, Phase::Session) {
            return;
        }
        match incoming {
            Incoming::Message(signal_response::Message::RefreshToken(token)) => {
                debug!("token refreshed");
                self.token = token;
            }
            Incoming::Message(message) => self.engine.handle_signal(message, now),
            Incoming::Closed(reason) => {
                self.signal_broken(format!("signal connection closed: {reason}"))
            }
        }
    }

    /// A request could not be sent on the WebSocket (see [`crate::signal::SignalLink::send`]).
    pub(crate) fn handle_signal_send_failed(&mut self, reason: String, now: Instant) {
        self.now = now;
        if matches!(self.phase, Phase::Session) {
            self.signal_broken(reason);
        }
    }

    /// A datagram arrived on one of the session's sockets.
    pub(crate) fn handle_datagram(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        contents: &[u8],
        now: Instant,
    ) {
        self.now = now;
        self.engine.handle_datagram(from, to, contents, now);
    }

    /// The STUN servers of [`Action::ResolveStun`].
    pub(crate) fn handle_stun_resolved(&mut self, servers: &[SocketAddr], now: Instant) {
        self.now = now;
        self.engine.add_stun_servers(servers, now);
    }

    /// A command of the room handle.
    pub(crate) fn handle_command(&mut self, command: Command, now: Instant) {
        self.now = now;
        match command {
            Command::Publish { cid, options, shared, reply } => {
                if matches!(self.phase, Phase::Closed) {
                    let _ = reply.send(Err(crate::error::PublishError::Disconnected));
                    return;
                }
                self.delivery.publish_requested(cid.clone(), shared, reply, now);
                self.engine.add_track(cid, options);
            }
            Command::SetSubscribed { track_sid, subscribe } => {
                self.engine.set_subscribed(&track_sid, subscribe)
            }
            Command::Disconnect { reply } => self.disconnect(Some(reply)),
        }
    }

    /// The room handle is gone.
    pub(crate) fn handle_commands_closed(&mut self, now: Instant) {
        self.now = now;
        self.disconnect(None);
    }

    /// A request of a track handle.
    pub(crate) fn handle_track_request(&mut self, request: TrackRequest, now: Instant) {
        self.now = now;
        match request {
            TrackRequest::WriteFrame { cid, frame } => {
                if self.engine.write_frame(&cid, frame, now) {
                    self.delivery.frame_sent(&cid);
                }
            }
            TrackRequest::Mute { cid, muted } => self.engine.set_muted(&cid, muted),
            TrackRequest::Unpublish { cid } => {
                self.delivery.closed(&cid);
                self.engine.remove_track(&cid, now);
            }
            TrackRequest::RequestKeyframe { track_sid } => {
                self.engine.request_keyframe(&track_sid, now)
            }
        }
    }

    /// Time passed.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        self.engine.handle_timeout(now);
        self.delivery.expire_publish_requests(now);
        match std::mem::replace(&mut self.phase, Phase::Closed) {
            Phase::JoinBackoff { at, rejoin } if at <= now => self.join(Some(rejoin)),
            phase @ Phase::Resuming { deadline, .. } if deadline <= now => {
                self.phase = phase;
                let within = RESUME_TIMEOUT.min(self.options.reconnect_timeout);
                self.session_lost(format!("no resume within {within:?}"));
            }
            Phase::Resuming { attempt: None, retry_at: Some(at), deadline, backoff }
                if at <= now =>
            {
                self.phase = Phase::Resuming { attempt: None, retry_at: None, deadline, backoff };
                self.open_resume();
            }
            other => self.phase = other,
        }
    }

    // ------------------------------------------------------------------ policy

    /// Opens a WebSocket for a join.
    fn join(&mut self, rejoin: Option<Rejoin>) {
        let attempt = self.attempt();
        let params = SignalParams {
            auto_subscribe: self.options.auto_subscribe,
            resume_sid: None,
            single_pc: self.single_pc,
        };
        self.actions.push_back(Action::OpenSignal { attempt, params, token: self.token.clone() });
        self.phase = Phase::Joining { attempt, rejoin };
    }

    fn attempt(&mut self) -> u64 {
        self.next_attempt += 1;
        self.next_attempt
    }

    fn start_session(
        &mut self,
        join: proto::JoinResponse,
        addrs: LocalAddrs,
        loopback: bool,
        rejoin: Option<Rejoin>,
    ) {
        if let Some(rejoin) = rejoin {
            info!(attempts = rejoin.attempts, elapsed = ?self.now - rejoin.since, "rejoined");
        }
        self.trouble_since = None;
        self.held.clear();
        self.held_dropped = 0;
        self.delivery.clear_remote();
        {
            let mut local = self.shared.local.lock().unwrap_or_else(|e| e.into_inner());
            let participant = join.participant.clone().unwrap_or_default();
            *local = (participant.sid, participant.identity);
        }
        // Server-reflexive candidates matter only across NATs: a server on this machine is
        // reached through loopback, and asking a public STUN server would only cost a DNS
        // lookup. Resolution runs alongside the session, never in front of it.
        let stun: Vec<String> = if loopback {
            Vec::new()
        } else {
            join.ice_servers.iter().flat_map(|s| s.urls.iter().cloned()).collect()
        };
        self.phase = Phase::Session;
        self.engine.start_session(join, addrs, self.single_pc, self.now);
        if !stun.is_empty() {
            self.actions.push_back(Action::ResolveStun(stun));
        }
    }

    fn join_failed(&mut self, error: ConnectError, rejoin: Option<Rejoin>) {
        if self.single_pc
            && let ConnectError::Refused { status: 404, message } = &error
            && !message.contains(NO_SUCH_ROOM)
        {
            // A server older than the single peer-connection endpoint (LiveKit < 1.9.10): the
            // same join with two, at once; this connection stays with two from now on.
            info!("the server has no single peer-connection endpoint; joining with two");
            self.single_pc = false;
            self.join(rejoin);
            return;
        }
        let Some(mut rejoin) = rejoin else {
            // Never connected: the caller of `connect` gets the error, no retries.
            self.fail_connect(error);
            return;
        };
        rejoin.attempts += 1;
        let elapsed = self.now.saturating_duration_since(rejoin.since);
        let left = self.options.reconnect_timeout.checked_sub(elapsed).filter(|l| !l.is_zero());
        // A refused token, or a room the server no longer has (it restarted, or the room was
        // deleted), will not change by trying again with this token: the application gets the
        // error at once and can connect anew with fresh credentials (which create the room).
        let hopeless = match &error {
            ConnectError::Refused { status: 401 | 403, .. } | ConnectError::Left(_) => true,
            ConnectError::Refused { status: 404, message } => message.contains(NO_SUCH_ROOM),
            _ => false,
        };
        match (hopeless, left) {
            (true, _) | (_, None) => self.finish(DisconnectCause::ReconnectFailed(error), None),
            (_, Some(left)) => {
                let delay = rejoin.backoff.next_delay().min(left);
                debug!(attempt = rejoin.attempts, %error, ?delay, "rejoin failed");
                self.phase = Phase::JoinBackoff { at: self.now + delay, rejoin };
            }
        }
    }

    /// The WebSocket broke. A connected session resumes on a new one; otherwise it is lost.
    fn signal_broken(&mut self, reason: String) {
        self.actions.push_back(Action::DropSignal);
        let Some(_) = self.engine.resumable_sid() else {
            self.session_lost(reason);
            return;
        };
        info!(%reason, "signal connection lost; resuming");
        self.engine.signal_lost();
        self.set_state(ConnectionState::Reconnecting);
        self.trouble_since = Some(self.now);
        let deadline = self.now + RESUME_TIMEOUT.min(self.options.reconnect_timeout);
        let backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        self.phase = Phase::Resuming { attempt: None, retry_at: None, deadline, backoff };
        self.open_resume();
    }

    fn open_resume(&mut self) {
        let Some(sid) = self.engine.resumable_sid() else { return };
        let attempt = self.attempt();
        if let Phase::Resuming { attempt: current, .. } = &mut self.phase {
            *current = Some(attempt);
        }
        let params = SignalParams {
            auto_subscribe: self.options.auto_subscribe,
            resume_sid: Some(sid),
            single_pc: self.single_pc,
        };
        self.actions.push_back(Action::OpenSignal { attempt, params, token: self.token.clone() });
    }

    fn resumed(&mut self, response: proto::ReconnectResponse) {
        let since = self.trouble_since.take().unwrap_or(self.now);
        let dropped = std::mem::take(&mut self.held_dropped);
        info!(elapsed = ?self.now - since, requests_dropped = dropped, "resumed");
        self.phase = Phase::Session;
        self.engine.resume(response, self.now);
        for message in self.held.drain(..) {
            self.engine.queue_signal(message);
        }
        self.set_state(ConnectionState::Connected);
    }

    /// The session is beyond repair: rejoin from scratch (or, never connected, give up).
    fn session_lost(&mut self, reason: String) {
        if !matches!(self.phase, Phase::Session | Phase::Resuming { .. }) {
            return;
        }
        self.actions.push_back(Action::CloseSignal);
        if self.connected.is_some() {
            let error = if reason == MEDIA_TIMEOUT_REASON {
                ConnectError::MediaTimeout(MEDIA_CONNECT_TIMEOUT)
            } else {
                ConnectError::LostBeforeConnected(reason)
            };
            self.end_session();
            self.fail_connect(error);
            return;
        }
        info!(%reason, "connection lost; reconnecting");
        self.set_state(ConnectionState::Reconnecting);
        let since = self.trouble_since.take().unwrap_or(self.now);
        let backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        self.join(Some(Rejoin { since, attempts: 0, backoff }));
        self.end_session();
    }

    /// Drops the engine's session and tells the application which tracks went with it.
    fn end_session(&mut self) {
        self.engine.end_session();
        while let Output::Event(event) = self.engine.poll_output() {
            self.route(event);
        }
        self.delivery.clear_remote();
    }

    fn hold(&mut self, message: signal_request::Message) {
        if matches!(message, signal_request::Message::PingReq(_)) {
            return;
        }
        if self.held.len() == HELD_REQUESTS {
            if self.held_dropped == 0 {
                warn!("signalling requests dropped while the connection is down (the oldest)");
            }
            self.held_dropped += 1;
            self.held.pop_front();
        }
        self.held.push_back(message);
    }

    fn disconnect(&mut self, reply: Option<oneshot::Sender<()>>) {
        if matches!(self.phase, Phase::Closed) {
            if let Some(reply) = reply {
                let _ = reply.send(());
            }
            return;
        }
        if matches!(self.phase, Phase::Session) {
            self.engine.leave();
            loop {
                match self.engine.poll_output() {
                    Output::Signal(message) => self.actions.push_back(Action::Signal(message)),
                    Output::Timeout(_) => break,
                    Output::Transmit { .. } | Output::Event(_) => {}
                }
            }
        }
        self.actions.push_back(Action::CloseSignal);
        self.finish(DisconnectCause::ClientInitiated, reply);
    }

    fn fail_connect(&mut self, error: ConnectError) {
        if let Some(connected) = self.connected.take() {
            let _ = connected.send(Err(error));
        }
        self.delivery.fail_pending();
        self.set_state(ConnectionState::Disconnected);
        self.phase = Phase::Closed;
        self.actions.push_back(Action::Finished { reply: None });
    }

    fn finish(&mut self, cause: DisconnectCause, reply: Option<oneshot::Sender<()>>) {
        info!(%cause, "disconnected");
        if let Some(connected) = self.connected.take() {
            let error = match &cause {
                DisconnectCause::Server(reason) => ConnectError::Left(*reason),
                other => ConnectError::LostBeforeConnected(other.to_string()),
            };
            let _ = connected.send(Err(error));
        }
        self.delivery.fail_pending();
        self.set_state(ConnectionState::Disconnected);
        self.events.finish(cause);
        self.phase = Phase::Closed;
        self.actions.push_back(Action::Finished { reply });
    }

    fn set_state(&self, state: ConnectionState) {
        let changed = self.shared.state.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
        if changed {
            self.events.send(RoomEvent::ConnectionStateChanged(state));
        }
    }

    /// Sends an engine event where it belongs.
    fn route(&mut self, event: EngineEvent) {
        match event {
            EngineEvent::Connected => {
                if let Some(connected) = self.connected.take() {
                    let _ = connected.send(Ok(()));
                }
                self.set_state(ConnectionState::Connected);
            }
            EngineEvent::Participant(change) => self.events.send(match change {
                ParticipantChange::Connected(p) => RoomEvent::ParticipantConnected(p),
                ParticipantChange::Disconnected(p) => RoomEvent::ParticipantDisconnected(p),
                ParticipantChange::TrackPublished(t) => RoomEvent::TrackPublished(t),
                ParticipantChange::TrackUnpublished(t) => RoomEvent::TrackUnpublished(t),
                ParticipantChange::TrackMuted(t) => RoomEvent::TrackMuted(t),
                ParticipantChange::Speakers(s) => RoomEvent::ActiveSpeakersChanged(s),
            }),
            EngineEvent::TrackSubscribed(info) => {
                if let Some(track) = self.delivery.subscribed(info, &self.track_requests) {
                    self.events.send(RoomEvent::TrackSubscribed(track));
                }
            }
            EngineEvent::TrackUnsubscribed { track_sid } => {
                if self.delivery.unsubscribed(&track_sid) {
                    self.events.send(RoomEvent::TrackUnsubscribed { track_sid });
                }
            }
            EngineEvent::Frame { track_sid, frame } => {
                if self.delivery.deliver_video(&track_sid, frame) {
                    self.engine.request_keyframe(&track_sid, self.now);
                }
            }
            EngineEvent::AudioFrame { track_sid, frame } => {
                self.delivery.deliver_audio(&track_sid, frame)
            }
            EngineEvent::FrameUndecryptable { track_sid } => {
                self.delivery.undecryptable(&track_sid)
            }
            EngineEvent::LocalTrackPublished { cid, sid } => self.delivery.published(&cid, sid),
            EngineEvent::LocalTrackClosed { cid } => self.delivery.closed(&cid),
            EngineEvent::LocalTrackRefused { cid, reason } => self.delivery.refused(&cid, reason),
            EngineEvent::TrackBitrate { cid, bits_per_second } => {
                self.delivery.set_bitrate(&cid, bits_per_second)
            }
            EngineEvent::KeyframeRequested { cid } => self.delivery.keyframe_requested(&cid),
            EngineEvent::MediaTimeout => self.session_lost(MEDIA_TIMEOUT_REASON.into()),
            EngineEvent::Lost(reason) => self.session_lost(reason),
            EngineEvent::ResumeNeeded(reason) => {
                if matches!(self.phase, Phase::Session) {
                    self.signal_broken(reason);
                }
            }
            EngineEvent::Left(reason) => {
                if !matches!(self.phase, Phase::Closed) {
                    self.actions.push_back(Action::CloseSignal);
                    self.end_session();
                    self.finish(DisconnectCause::Server(reason), None);
                }
            }
        }
    }
}

/// The reason a session is lost when its media never connected.
const MEDIA_TIMEOUT_REASON: &str = "no media connection in time";
