//! The tokio task that owns a room connection's WebSocket, UDP sockets and timers, and moves
//! bytes between them and the sans-IO [`Engine`]. It also reconnects.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use livekit_protocol::{self as proto, signal_request, signal_response};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{Instrument as _, debug, info};

use crate::engine::{Engine, EngineConfig, EngineEvent, LocalAddrs, Output, ParticipantChange};
use crate::error::{ConnectError, DisconnectCause, PublishError};
use crate::net::{Sockets, local_ips};
use crate::room::{ConnectionState, RoomEvent, RoomOptions};
use crate::signal::{Incoming, SignalConnection, SignalParams, redacted_str};
use crate::track::{
    Incoming as TrackIncoming, LocalTrackOptions, LocalTrackShared, OutgoingFrame,
    RemoteAudioFrame, RemoteAudioTrack, RemoteTrack, RemoteTrackInfo, RemoteVideoFrame,
    RemoteVideoTrack, TrackKind,
};

/// Frames a remote video track buffers before new ones are dropped.
const REMOTE_FRAME_BUFFER: usize = 60;
/// Packets a remote audio track buffers before new ones are dropped (one second of 20 ms
/// packets: a reader that falls further behind hears a gap, not an ever-growing delay).
const REMOTE_AUDIO_BUFFER: usize = 50;
/// How long the server may take to confirm a published track.
pub(crate) const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// What the application asks of the connection task.
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        cid: String,
        options: LocalTrackOptions,
        shared: Arc<LocalTrackShared>,
        reply: oneshot::Sender<Result<String, PublishError>>,
    },
    WriteFrame {
        cid: String,
        frame: OutgoingFrame,
    },
    Mute {
        cid: String,
        muted: bool,
    },
    Unpublish {
        cid: String,
    },
    RequestKeyframe {
        track_sid: String,
    },
    SetSubscribed {
        track_sid: String,
        subscribe: bool,
    },
    Disconnect {
        reply: oneshot::Sender<()>,
    },
}

/// What the task shares with the `Room` handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: watch::Sender<ConnectionState>,
    pub(crate) local: std::sync::Mutex<(String, String)>,
}

/// The task's state across sessions.
pub(crate) struct Task {
    url: String,
    token: String,
    options: RoomOptions,
    engine: Engine,
    commands: mpsc::Receiver<Command>,
    /// For remote tracks' keyframe requests.
    command_sender: mpsc::WeakSender<Command>,
    events: mpsc::UnboundedSender<RoomEvent>,
    shared: Arc<Shared>,
    local_tracks: HashMap<String, Arc<LocalTrackShared>>,
    pending_publish: HashMap<String, (oneshot::Sender<Result<String, PublishError>>, Instant)>,
    remote_tracks: HashMap<String, mpsc::Sender<RemoteVideoFrame>>,
    remote_audio: HashMap<String, mpsc::Sender<RemoteAudioFrame>>,
    /// Frames of each subscribed track that did not decrypt.
    undecryptable: HashMap<String, Arc<AtomicU64>>,
    /// Remote tracks whose channel overflowed: the next frame delivered is marked non-contiguous.
    dropped_frames: HashSet<String>,
    /// Remote tracks whose decoder lost frames here and needs a keyframe.
    awaiting_keyframe: HashSet<String>,
    /// When the current trouble began (a resume attempt), so a rejoin after a failed resume
    /// still ends within the reconnect timeout.
    trouble_since: Option<Instant>,
}

/// How a session ended.
enum SessionEnd {
    Lost(String),
    MediaTimeout,
    Left(proto::DisconnectReason),
    Disconnect(Option<oneshot::Sender<()>>),
}

/// A joined session: its WebSocket and sockets.
pub(crate) struct Connection {
    signal: SignalConnection,
    publisher: Sockets,
    subscriber: Sockets,
    join: proto::JoinResponse,
}

/// Opens the WebSocket, waits for the join response and binds the sockets.
pub(crate) async fn open_connection(
    url: &str,
    token: &str,
    options: &RoomOptions,
) -> Result<Connection, ConnectError> {
    let params = SignalParams { auto_subscribe: options.auto_subscribe, resume_sid: None };
    let mut signal = SignalConnection::open(url, token, &params).await?;
    let join = match signal.first_message().await? {
        signal_response::Message::Join(join) => join,
        _ => return Err(ConnectError::Protocol("a reconnect response to a join".into())),
    };
    let ips = local_ips();
    let io = |e: std::io::Error| ConnectError::Io(e.to_string());
    let publisher = Sockets::bind(&ips).await.map_err(io)?;
    let subscriber = Sockets::bind(&ips).await.map_err(io)?;
    Ok(Connection { signal, publisher, subscriber, join })
}

impl Task {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        url: String,
        token: String,
        options: RoomOptions,
        commands: mpsc::Receiver<Command>,
        command_sender: mpsc::WeakSender<Command>,
        events: mpsc::UnboundedSender<RoomEvent>,
        shared: Arc<Shared>,
    ) -> Self {
        let config = EngineConfig { cryptor: options.frame_cryptor.clone() };
        Self {
            url,
            token,
            options,
            engine: Engine::new(config, Instant::now()),
            commands,
            command_sender,
            events,
            shared,
            local_tracks: HashMap::new(),
            pending_publish: HashMap::new(),
            remote_tracks: HashMap::new(),
            remote_audio: HashMap::new(),
            undecryptable: HashMap::new(),
            dropped_frames: HashSet::new(),
            awaiting_keyframe: HashSet::new(),
            trouble_since: None,
        }
    }

    /// Runs sessions until the room is disconnected; `connected` hears about the first one.
    pub(crate) async fn run(
        mut self,
        first: Connection,
        connected: oneshot::Sender<Result<(), ConnectError>>,
    ) {
        let span = tracing::info_span!("livekit_room", url = %redacted_str(&self.url));
        async move {
            let mut connected = Some(connected);
            let mut connection = first;
            loop {
                let end = self.run_session(connection, &mut connected).await;
                self.engine.end_session();
                self.flush_events();
                self.remote_tracks.clear();
                self.remote_audio.clear();
                self.undecryptable.clear();
                self.dropped_frames.clear();
                self.awaiting_keyframe.clear();
                let reason = match end {
                    SessionEnd::Disconnect(reply) => {
                        self.finish(DisconnectCause::ClientInitiated);
                        if let Some(reply) = reply {
                            let _ = reply.send(());
                        }
                        return;
                    }
                    SessionEnd::Left(reason) => {
                        if let Some(tx) = connected.take() {
                            let _ = tx.send(Err(ConnectError::Left(reason)));
                        }
                        self.finish(DisconnectCause::Server(reason));
                        return;
                    }
                    SessionEnd::Lost(reason) => Err(reason),
                    SessionEnd::MediaTimeout => Ok(crate::engine::MEDIA_CONNECT_TIMEOUT),
                };
                if let Some(tx) = connected.take() {
                    // Never connected: the caller of `connect` gets the error, no reconnects.
                    let error = match reason {
                        Ok(timeout) => ConnectError::MediaTimeout(timeout),
                        Err(reason) => ConnectError::LostBeforeConnected(reason),
                    };
                    let _ = tx.send(Err(error));
                    self.set_state(ConnectionState::Disconnected);
                    return;
                }
                let reason = match reason {
                    Ok(timeout) => format!("no media within {timeout:?}"),
                    Err(reason) => reason,
                };
                info!(%reason, "connection lost; reconnecting");
                self.set_state(ConnectionState::Reconnecting);
                match self.reconnect().await {
                    Ok(next) => connection = next,
                    Err(Some(error)) => {
                        self.finish(DisconnectCause::ReconnectFailed(error));
                        return;
                    }
                    Err(None) => {
                        self.finish(DisconnectCause::ClientInitiated);
                        return;
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    fn finish(&mut self, cause: DisconnectCause) {
        info!(%cause, "disconnected");
        for (_, (reply, _)) in self.pending_publish.drain() {
            let _ = reply.send(Err(PublishError::Disconnected));
        }
        self.set_state(ConnectionState::Disconnected);
        let _ = self.events.send(RoomEvent::Disconnected(cause));
    }

    fn set_state(&self, state: ConnectionState) {
        let changed = self.shared.state.send_if_modified(|current| {
            let changed = *current != state;
            *current = state;
            changed
        });
        if changed {
            let _ = self.events.send(RoomEvent::ConnectionStateChanged(state));
        }
    }

    /// Full rejoins with backoff until one works, the policy gives up (`Err(Some)`), or the
    /// application disconnects (`Err(None)`).
    async fn reconnect(&mut self) -> Result<Connection, Option<ConnectError>> {
        let started = self.trouble_since.take().unwrap_or_else(Instant::now);
        let mut delay = Duration::from_millis(200);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let (url, token, options) =
                (self.url.clone(), self.token.clone(), self.options.clone());
            let result = tokio::select! {
                result = open_connection(&url, &token, &options) => result,
                gone = self.idle_commands() => { if gone { return Err(None) } else { continue } }
            };
            match result {
                Ok(connection) => {
                    info!(attempt, elapsed = ?started.elapsed(), "rejoined");
                    return Ok(connection);
                }
                Err(
                    error @ (ConnectError::Refused { status: 401 | 403, .. }
                    | ConnectError::Left(_)),
                ) => {
                    return Err(Some(error));
                }
                Err(error) => {
                    let Some(left) = self.options.reconnect_timeout.checked_sub(started.elapsed())
                    else {
                        return Err(Some(error));
                    };
                    delay = delay.min(left);
                    debug!(attempt, %error, ?delay, "rejoin failed");
                }
            }
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    gone = self.idle_commands() => if gone { return Err(None) },
                }
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Handles one command while there is no session: `true` when the room is being closed.
    async fn idle_commands(&mut self) -> bool {
        match self.commands.recv().await {
            None => true,
            Some(Command::Disconnect { reply }) => {
                let _ = reply.send(());
                true
            }
            Some(command) => {
                self.handle_command(command, Instant::now());
                false
            }
        }
    }

    async fn run_session(
        &mut self,
        connection: Connection,
        connected: &mut Option<oneshot::Sender<Result<(), ConnectError>>>,
    ) -> SessionEnd {
        let Connection { signal, publisher, subscriber, join } = connection;
        let stun_servers = join.ice_servers.clone();
        {
            let mut local = self.shared.local.lock().unwrap_or_else(|e| e.into_inner());
            let participant = join.participant.clone().unwrap_or_default();
            *local = (participant.sid, participant.identity);
        }
        let addrs =
            LocalAddrs { publisher: publisher.local_addrs(), subscriber: subscriber.local_addrs() };
        self.engine.start_session(join, addrs, Instant::now());
        // Server-reflexive candidates matter only across NATs: a server on this machine is
        // reached through loopback, and asking a public STUN server would only cost a DNS
        // lookup. Resolution runs alongside the session, never in front of it.
        let urls: Vec<String> = if signal.peer_is_loopback() {
            Vec::new()
        } else {
            stun_servers.iter().flat_map(|s| s.urls.iter().cloned()).collect()
        };
        let stun_lookup = resolve_stun(urls);
        tokio::pin!(stun_lookup);
        let mut stun_pending = true;
        // `None` while the WebSocket is being reopened to resume the session; requests wait in
        // `queued` meanwhile, media keeps flowing.
        let mut signal = Some(signal);
        let mut queued: VecDeque<signal_request::Message> = VecDeque::new();
        let mut resume: Option<Pin<Box<dyn Future<Output = ResumeResult> + Send>>> = None;
        let mut resume_started = Instant::now();
        let mut buf_publisher = vec![0u8; 2048];
        let mut buf_subscriber = vec![0u8; 2048];
        let mut deadline;
        loop {
            // Drain the engine before waiting (str0m's rule, and ours).
            let mut lost_signal = None;
            loop {
                match self.engine.poll_output() {
                    Output::Signal(message) => match signal.as_mut() {
                        Some(connection) if lost_signal.is_none() => {
                            if let Err(error) = connection.send(message).await {
                                lost_signal = Some(format!("signal send failed: {error}"));
                            }
                        }
                        _ => {
                            if !matches!(message, signal_request::Message::PingReq(_)) {
                                queued.push_back(message);
                            }
                        }
                    },
                    Output::Transmit { source, destination, contents } => {
                        if !publisher.send(source, destination, &contents) {
                            subscriber.send(source, destination, &contents);
                        }
                    }
                    Output::Event(EngineEvent::ResumeNeeded(reason)) => lost_signal = Some(reason),
                    Output::Event(event) => {
                        if let Some(end) = self.route(event, connected) {
                            if let Some(connection) = signal.take() {
                                if matches!(end, SessionEnd::Disconnect(_)) {
                                    say_goodbye(&mut self.engine, connection).await;
                                } else {
                                    connection.close().await;
                                }
                            }
                            return end;
                        }
                    }
                    Output::Timeout(at) => {
                        deadline = at;
                        break;
                    }
                }
            }
            if let Some(reason) = lost_signal {
                if let Some(connection) = signal.take() {
                    drop(connection);
                }
                let Some(sid) = self.engine.resumable_sid() else {
                    return SessionEnd::Lost(reason);
                };
                if resume.is_none() {
                    info!(%reason, "signal connection lost; resuming");
                    self.engine.signal_lost();
                    self.set_state(ConnectionState::Reconnecting);
                    resume_started = Instant::now();
                    self.trouble_since = Some(resume_started);
                    let within = RESUME_TIMEOUT.min(self.options.reconnect_timeout);
                    let params = SignalParams {
                        auto_subscribe: self.options.auto_subscribe,
                        resume_sid: Some(sid),
                    };
                    let attempt = open_resume(self.url.clone(), self.token.clone(), params, within);
                    resume = Some(Box::pin(attempt));
                }
            }
            let sleep_until = deadline.min(Instant::now() + Duration::from_secs(1));
            tokio::select! {
                incoming = recv_signal(&mut signal) => match incoming {
                    Incoming::Message(signal_response::Message::RefreshToken(token)) => {
                        debug!("token refreshed");
                        self.token = token;
                    }
                    Incoming::Message(message) => self.engine.handle_signal(message, Instant::now()),
                    Incoming::Closed(reason) => {
                        signal = None;
                        self.engine.handle_signal_closed(format!("signal connection closed: {reason}"));
                    }
                },
                result = poll_resume(&mut resume) => match result {
                    Ok((connection, response)) => {
                        info!(elapsed = ?resume_started.elapsed(), "resumed");
                        self.trouble_since = None;
                        signal = Some(connection);
                        self.engine.resume(response, Instant::now());
                        for message in queued.drain(..) {
                            self.engine.queue_signal(message);
                        }
                        self.set_state(ConnectionState::Connected);
                    }
                    Err(error) => {
                        info!(%error, "resume refused; rejoining");
                        return SessionEnd::Lost(format!("resume failed: {error}"));
                    }
                },
                received = publisher.recv(&mut buf_publisher) => {
                    if let Ok((len, from, to)) = received {
                        self.engine.handle_datagram(from, to, &buf_publisher[..len], Instant::now());
                    }
                }
                received = subscriber.recv(&mut buf_subscriber) => {
                    if let Ok((len, from, to)) = received {
                        self.engine.handle_datagram(from, to, &buf_subscriber[..len], Instant::now());
                    }
                }
                command = self.commands.recv() => match command {
                    None => {
                        if let Some(connection) = signal.take() {
                            say_goodbye(&mut self.engine, connection).await;
                        }
                        return SessionEnd::Disconnect(None);
                    }
                    Some(Command::Disconnect { reply }) => {
                        if let Some(connection) = signal.take() {
                            say_goodbye(&mut self.engine, connection).await;
                        }
                        return SessionEnd::Disconnect(Some(reply));
                    }
                    Some(command) => self.handle_command(command, Instant::now()),
                },
                servers = &mut stun_lookup, if stun_pending => {
                    stun_pending = false;
                    self.engine.add_stun_servers(&servers, Instant::now());
                }
                () = tokio::time::sleep_until(sleep_until.into()) => {
                    self.engine.handle_timeout(Instant::now());
                    // The timer fires at least once a second, which is precise enough here.
                    self.expire_publish_requests();
                }
            }
        }
    }

    /// Fails publish requests the server left unanswered for too long.
    fn expire_publish_requests(&mut self) {
        let expired: Vec<String> = self
            .pending_publish
            .iter()
            .filter(|(_, (_, at))| at.elapsed() > PUBLISH_TIMEOUT)
            .map(|(cid, _)| cid.clone())
            .collect();
        for cid in expired {
            if let Some((reply, _)) = self.pending_publish.remove(&cid) {
                let _ = reply.send(Err(PublishError::Timeout(PUBLISH_TIMEOUT)));
            }
        }
    }

    fn handle_command(&mut self, command: Command, now: Instant) {
        match command {
            Command::Publish { cid, options, shared, reply } => {
                self.local_tracks.insert(cid.clone(), shared);
                self.pending_publish.insert(cid.clone(), (reply, now));
                self.engine.add_track(cid, options);
            }
            Command::WriteFrame { cid, frame } => {
                if self.engine.write_frame(&cid, frame, now)
                    && let Some(shared) = self.local_tracks.get(&cid)
                {
                    shared.frames_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
            Command::Mute { cid, muted } => self.engine.set_muted(&cid, muted),
            Command::Unpublish { cid } => {
                if let Some(shared) = self.local_tracks.remove(&cid) {
                    shared.closed.store(true, Ordering::Release);
                }
                self.engine.remove_track(&cid, now);
            }
            Command::RequestKeyframe { track_sid } => self.engine.request_keyframe(&track_sid, now),
            Command::SetSubscribed { track_sid, subscribe } => {
                self.engine.set_subscribed(&track_sid, subscribe)
            }
            Command::Disconnect { reply } => {
                let _ = reply.send(());
            }
        }
    }

    /// Hands a remote frame to its track's channel. When the application does not keep up,
    /// frames are dropped; the next one delivered is marked non-contiguous, and keyframes are
    /// asked for (rate-limited) until one is delivered. Asking while the channel is still full
    /// would be useless: that keyframe would be dropped too.
    fn deliver(&mut self, track_sid: String, mut frame: RemoteVideoFrame) {
        let Some(tx) = self.remote_tracks.get(&track_sid) else { return };
        let keyframe = frame.keyframe;
        frame.contiguous &= !self.dropped_frames.contains(&track_sid);
        match tx.try_send(frame) {
            Ok(()) => {
                self.dropped_frames.remove(&track_sid);
                if keyframe {
                    self.awaiting_keyframe.remove(&track_sid);
                } else if self.awaiting_keyframe.contains(&track_sid) {
                    self.engine.request_keyframe(&track_sid, Instant::now());
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.dropped_frames.insert(track_sid.clone()) {
                    debug!(%track_sid, "remote frames dropped: the application is not reading");
                }
                self.awaiting_keyframe.insert(track_sid);
            }
        }
    }

    /// Makes the receiving end of a newly subscribed track and hands it to the application.
    fn subscribed(&mut self, info: RemoteTrackInfo) {
        let undecryptable = Arc::new(AtomicU64::new(0));
        self.undecryptable.insert(info.track_sid.clone(), undecryptable.clone());
        let track_sid = info.track_sid.clone();
        let track = match info.kind {
            TrackKind::Audio => {
                let (tx, frames) = mpsc::channel(REMOTE_AUDIO_BUFFER);
                self.remote_audio.insert(track_sid, tx);
                let incoming = TrackIncoming { info, frames, undecryptable };
                RemoteTrack::Audio(RemoteAudioTrack { incoming })
            }
            TrackKind::Video => {
                // The room handle (and with it the application) is gone.
                let Some(commands) = self.command_sender.upgrade() else { return };
                let (tx, frames) = mpsc::channel(REMOTE_FRAME_BUFFER);
                self.remote_tracks.insert(track_sid, tx);
                let incoming = TrackIncoming { info, frames, undecryptable };
                RemoteTrack::Video(RemoteVideoTrack { incoming, commands })
            }
        };
        let _ = self.events.send(RoomEvent::TrackSubscribed(track));
    }

    /// Hands a remote audio packet to its track's channel; when the application does not keep
    /// up, packets are dropped and the next one delivered is marked non-contiguous.
    fn deliver_audio(&mut self, track_sid: String, mut frame: RemoteAudioFrame) {
        let Some(tx) = self.remote_audio.get(&track_sid) else { return };
        frame.contiguous &= !self.dropped_frames.contains(&track_sid);
        match tx.try_send(frame) {
            Ok(()) => {
                self.dropped_frames.remove(&track_sid);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.dropped_frames.insert(track_sid.clone()) {
                    debug!(%track_sid, "remote audio dropped: the application is not reading");
                }
            }
        }
    }

    /// Delivers events the engine produced outside a session (unsubscriptions at its end).
    fn flush_events(&mut self) {
        let mut none = None;
        while let Output::Event(event) = self.engine.poll_output() {
            self.route(event, &mut none);
        }
    }

    /// Sends an engine event where it belongs; `Some` ends the session.
    fn route(
        &mut self,
        event: EngineEvent,
        connected: &mut Option<oneshot::Sender<Result<(), ConnectError>>>,
    ) -> Option<SessionEnd> {
        match event {
            EngineEvent::Connected => {
                if let Some(tx) = connected.take() {
                    let _ = tx.send(Ok(()));
                }
                self.set_state(ConnectionState::Connected);
            }
            EngineEvent::Participant(change) => {
                let event = match change {
                    ParticipantChange::Connected(p) => RoomEvent::ParticipantConnected(p),
                    ParticipantChange::Disconnected(p) => RoomEvent::ParticipantDisconnected(p),
                    ParticipantChange::TrackPublished(t) => RoomEvent::TrackPublished(t),
                    ParticipantChange::TrackUnpublished(t) => RoomEvent::TrackUnpublished(t),
                    ParticipantChange::TrackMuted(t) => RoomEvent::TrackMuted(t),
                    ParticipantChange::Speakers(s) => RoomEvent::ActiveSpeakersChanged(s),
                };
                let _ = self.events.send(event);
            }
            EngineEvent::TrackSubscribed(info) => self.subscribed(info),
            EngineEvent::TrackUnsubscribed { track_sid } => {
                self.undecryptable.remove(&track_sid);
                let video = self.remote_tracks.remove(&track_sid).is_some();
                let audio = self.remote_audio.remove(&track_sid).is_some();
                if video || audio {
                    let _ = self.events.send(RoomEvent::TrackUnsubscribed { track_sid });
                }
            }
            EngineEvent::Frame { track_sid, frame } => self.deliver(track_sid, frame),
            EngineEvent::AudioFrame { track_sid, frame } => self.deliver_audio(track_sid, frame),
            EngineEvent::FrameUndecryptable { track_sid } => {
                if let Some(count) = self.undecryptable.get(&track_sid) {
                    if count.fetch_add(1, Ordering::Relaxed) == 0 {
                        debug!(%track_sid, "a frame did not decrypt (no key yet, or a wrong one)");
                    }
                    // The decoder misses a frame: the next one is not contiguous, and the
                    // stream needs a keyframe once frames decrypt again.
                    self.dropped_frames.insert(track_sid.clone());
                    self.awaiting_keyframe.insert(track_sid);
                }
            }
            EngineEvent::LocalTrackPublished { cid, sid } => {
                if let Some(shared) = self.local_tracks.get(&cid) {
                    *shared.sid.lock().unwrap_or_else(|e| e.into_inner()) = Some(sid.clone());
                    // A fresh publication starts with a keyframe.
                    shared.keyframe_requested.store(true, Ordering::Release);
                }
                if let Some((reply, _)) = self.pending_publish.remove(&cid) {
                    let _ = reply.send(Ok(sid));
                }
            }
            EngineEvent::LocalTrackClosed { cid } => {
                if let Some(shared) = self.local_tracks.remove(&cid) {
                    shared.closed.store(true, Ordering::Release);
                }
            }
            EngineEvent::LocalTrackRefused { cid, reason } => {
                if let Some(shared) = self.local_tracks.get(&cid) {
                    shared.closed.store(true, Ordering::Release);
                }
                self.local_tracks.remove(&cid);
                if let Some((reply, _)) = self.pending_publish.remove(&cid) {
                    let _ = reply.send(Err(PublishError::Refused(reason)));
                }
            }
            EngineEvent::TrackBitrate { cid, bits_per_second } => {
                if let Some(shared) = self.local_tracks.get(&cid) {
                    shared.target_bitrate.store(bits_per_second, Ordering::Release);
                }
            }
            EngineEvent::KeyframeRequested { cid } => {
                if let Some(shared) = self.local_tracks.get(&cid) {
                    shared.keyframe_requested.store(true, Ordering::Release);
                }
            }
            // The session loop handles resumes before routing; elsewhere a rejoin is all there is.
            EngineEvent::MediaTimeout => return Some(SessionEnd::MediaTimeout),
            EngineEvent::Lost(reason) | EngineEvent::ResumeNeeded(reason) => {
                return Some(SessionEnd::Lost(reason));
            }
            EngineEvent::Left(reason) => return Some(SessionEnd::Left(reason)),
        }
        None
    }
}

/// How long a resume may take before the session is rejoined from scratch.
const RESUME_TIMEOUT: Duration = Duration::from_secs(10);

type ResumeResult = Result<(SignalConnection, proto::ReconnectResponse), ConnectError>;

/// Reopens the WebSocket with `reconnect=1&sid=…`; the server's first message must be the
/// `reconnect` response. Retries briefly (the server may be restarting) within
/// `within`.
async fn open_resume(
    url: String,
    token: String,
    params: SignalParams,
    within: Duration,
) -> ResumeResult {
    let attempt = async {
        let mut delay = Duration::from_millis(100);
        loop {
            let result = async {
                let mut signal = SignalConnection::open(&url, &token, &params).await?;
                match signal.first_message().await? {
                    signal_response::Message::Reconnect(response) => Ok((signal, response)),
                    _ => Err(ConnectError::Protocol("a join response to a resume".into())),
                }
            }
            .await;
            match result {
                Err(ConnectError::Unreachable(_)) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    };
    tokio::time::timeout(within, attempt)
        .await
        .unwrap_or(Err(ConnectError::Unreachable(format!("no resume within {within:?}"))))
}

/// The next message of the signalling connection; pending while there is none.
async fn recv_signal(signal: &mut Option<SignalConnection>) -> Incoming {
    match signal {
        Some(connection) => connection.recv().await,
        None => std::future::pending().await,
    }
}

/// The resume in flight, if any; pending otherwise.
async fn poll_resume(
    resume: &mut Option<Pin<Box<dyn Future<Output = ResumeResult> + Send>>>,
) -> ResumeResult {
    match resume.as_mut() {
        Some(future) => {
            let result = future.await;
            *resume = None;
            result
        }
        None => std::future::pending().await,
    }
}

/// Sends `leave` (and anything still queued in front of it) and closes the WebSocket.
async fn say_goodbye(engine: &mut Engine, mut signal: SignalConnection) {
    engine.leave();
    loop {
        let sent = match engine.poll_output() {
            Output::Signal(message) => signal.send(message).await.is_ok(),
            Output::Timeout(_) => false,
            _ => true,
        };
        if !sent {
            break;
        }
    }
    signal.close().await;
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
        match tokio::time::timeout(Duration::from_secs(2), tokio::net::lookup_host(target.clone()))
            .await
        {
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
