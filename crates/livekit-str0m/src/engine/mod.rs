//! The sans-IO core of a LiveKit connection: signalling state, the two peer connections, local
//! and remote tracks. It takes signal messages, datagrams, commands and time, and returns signal
//! messages, datagrams, events and its next deadline. The tokio task in [`crate::task`] only
//! moves bytes and waits.
//!
//! This module holds the engine, its session and the dispatch of inputs; the seams live in
//! [`publisher`] (local tracks), [`subscriber`] (remote media), [`keepalive`] (pings) and
//! [`stun_queries`] (server-reflexive candidates).

mod dtls;
mod keepalive;
mod participants;
pub(crate) mod peer;
mod publisher;
mod stun_queries;
mod subscriber;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use livekit_protocol as proto;
use proto::{signal_request, signal_response};
use str0m::bwe::{Bitrate, BweKind};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};
use tracing::{debug, info, trace, warn};

use crate::e2ee::{FrameCodec, FrameCryptor};
use crate::signal::candidate_init::{candidate_init_json, parse_candidate_init};
use crate::track::{RemoteAudioFrame, RemoteTrackInfo, RemoteVideoFrame, VideoCodec};
use dtls::process_dtls_cert;
use keepalive::{KeepAlive, KeepAliveDue};
pub(crate) use participants::{ParticipantChange, Participants};
pub use participants::{ParticipantSummary, Speaker};
use peer::{Peer, PeerKind};
use publisher::{LocalTrack, Publishing};
use stun_queries::StunQuery;
use subscriber::Subscriptions;

/// How long the required peer connection may take to connect after a join.
pub(crate) const MEDIA_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long ICE may stay disconnected before the session counts as lost.
const ICE_DISCONNECTED_GRACE: Duration = Duration::from_secs(8);
/// Where the publisher's bandwidth estimate starts: libwebrtc starts at 300 kbit/s and probes
/// upward; starting higher gives a sharper first second on the links calls usually have.
const INITIAL_BANDWIDTH_ESTIMATE: u64 = 1_000_000;

/// What the engine wants done.
// Signal messages are large and rare; boxing them would cost an allocation for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Output {
    /// Send on the WebSocket.
    Signal(signal_request::Message),
    /// Send a datagram from one of a peer's sockets.
    Transmit { source: SocketAddr, destination: SocketAddr, contents: Vec<u8> },
    /// Tell the application.
    Event(EngineEvent),
    /// Call `handle_timeout` at this instant (if nothing else happens first).
    Timeout(Instant),
}

/// What happened, for the task to route.
#[derive(Debug)]
pub(crate) enum EngineEvent {
    /// The required peer connection is up: the session is connected.
    Connected,
    /// Participants and their tracks changed.
    Participant(ParticipantChange),
    /// A remote track's media is arriving: make a frame channel for it.
    TrackSubscribed(RemoteTrackInfo),
    /// A remote track's media stopped (unpublished, unsubscribed or its m-line went away).
    TrackUnsubscribed { track_sid: String },
    /// A depacketised (decrypted) frame of a subscribed video track.
    Frame { track_sid: String, frame: RemoteVideoFrame },
    /// A (decrypted) packet of a subscribed audio track.
    AudioFrame { track_sid: String, frame: RemoteAudioFrame },
    /// A frame of an encrypted track that did not decrypt (dropped).
    FrameUndecryptable { track_sid: String },
    /// The server confirmed a local track.
    LocalTrackPublished { cid: String, sid: String },
    /// The server refused a local track.
    LocalTrackRefused { cid: String, reason: String },
    /// The server unpublished a local track.
    LocalTrackClosed { cid: String },
    /// A subscriber wants a keyframe of a local track.
    KeyframeRequested { cid: String },
    /// What a local track's encoder should aim at now, in bits per second: its share of the
    /// publisher connection's bandwidth estimate.
    TrackBitrate { cid: String, bits_per_second: u32 },
    /// The session is broken beyond repair (media never connected, a peer connection failed,
    /// the server asked for a new join): the task rejoins from scratch.
    Lost(String),
    /// The required peer connection did not connect within [`MEDIA_CONNECT_TIMEOUT`] of the
    /// join (a firewall, no usable candidate pair).
    MediaTimeout,
    /// The signalling connection looks dead or ICE broke, but the session may live on: the task
    /// reopens the WebSocket with `reconnect=1` and calls [`Engine::resume`].
    ResumeNeeded(String),
    /// The server ended the session for good.
    Left(proto::DisconnectReason),
}

/// Where a datagram went ([`Engine::handle_datagram`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DatagramRoute {
    /// The answer to one of the session's STUN binding requests.
    StunAnswer,
    /// Into a peer connection.
    PeerConnection(PeerKind),
    /// Dropped without a trace in the engine's state: no session, not one of the session's
    /// addresses, not a datagram str0m can classify, or not for that peer connection.
    Dropped,
}

/// Settings that outlive sessions.
#[derive(Clone, Default)]
pub(crate) struct EngineConfig {
    pub(crate) cryptor: Option<Arc<dyn FrameCryptor>>,
}

/// One signalling session (one join, until it is lost).
struct Session {
    participant_sid: String,
    identity: String,
    subscriber_primary: bool,
    /// One peer connection (`/rtc/v1`): remote media arrives on the publisher connection, in
    /// m-lines we offer receive-only when the server asks for them.
    single_pc: bool,
    publisher: Peer,
    subscriber: Peer,
    started: Instant,
    connected: bool,
    participants: Participants,
    keepalive: KeepAlive,
    /// Local tracks' publications and the publisher connection's negotiation.
    publishing: Publishing,
    /// Remote media on the subscriber connection.
    subscriptions: Subscriptions,
    stun: Vec<StunQuery>,
}

impl Session {
    fn peer(&mut self, kind: PeerKind) -> &mut Peer {
        match kind {
            PeerKind::Publisher => &mut self.publisher,
            PeerKind::Subscriber => &mut self.subscriber,
        }
    }

    /// The connection remote media arrives on.
    fn media_peer(&self) -> PeerKind {
        if self.single_pc { PeerKind::Publisher } else { PeerKind::Subscriber }
    }
}

/// The local sockets' addresses of a session, per peer connection.
#[derive(Debug, Clone, Default)]
pub(crate) struct LocalAddrs {
    pub(crate) publisher: Vec<SocketAddr>,
    pub(crate) subscriber: Vec<SocketAddr>,
}

/// The core of one room connection.
pub(crate) struct Engine {
    config: EngineConfig,
    clock_base: (Instant, SystemTime),
    local_tracks: BTreeMap<String, LocalTrack>,
    session: Option<Session>,
    outputs: VecDeque<Output>,
}

impl Engine {
    pub(crate) fn new(config: EngineConfig, now: Instant) -> Self {
        Self {
            config,
            clock_base: (now, SystemTime::now()),
            local_tracks: BTreeMap::new(),
            session: None,
            outputs: VecDeque::new(),
        }
    }

    // ---------------------------------------------------------------- sessions

    /// Starts a session from the server's join response; local tracks are announced again.
    pub(crate) fn start_session(
        &mut self,
        join: proto::JoinResponse,
        addrs: LocalAddrs,
        single_pc: bool,
        now: Instant,
    ) {
        self.end_session();
        let participant = join.participant.clone().unwrap_or_default();
        let seconds =
            |s: i32, default: u64| Duration::from_secs(if s > 0 { s as u64 } else { default });
        let ping_interval = seconds(join.ping_interval, 5);
        let ping_timeout = seconds(join.ping_timeout, 15);
        let publisher = Peer::new(new_rtc(now, &addrs.publisher, true), addrs.publisher, now);
        let subscriber = Peer::new(new_rtc(now, &addrs.subscriber, false), addrs.subscriber, now);
        info!(
            participant_sid = %participant.sid,
            server_version = join.server_info.as_ref().map(|s| s.version.as_str()).unwrap_or(&join.server_version),
            subscriber_primary = join.subscriber_primary,
            single_pc,
            others = join.other_participants.len(),
            "joined"
        );
        let mut session = Session {
            participant_sid: participant.sid.clone(),
            identity: participant.identity.clone(),
            subscriber_primary: join.subscriber_primary,
            single_pc,
            publisher,
            subscriber,
            started: now,
            connected: false,
            participants: Participants::new(participant.sid.clone()),
            keepalive: KeepAlive::new(ping_interval, ping_timeout, self.clock_base, now),
            publishing: Publishing::new(!join.subscriber_primary),
            subscriptions: Subscriptions::new(join.sif_trailer.clone()),
            stun: Vec::new(),
        };
        for change in session.participants.update(join.other_participants) {
            self.outputs.push_back(Output::Event(EngineEvent::Participant(change)));
        }
        self.session = Some(session);
        let cids: Vec<String> = self.local_tracks.keys().cloned().collect();
        for cid in cids {
            self.send_add_track(&cid);
        }
        // A publisher-primary session needs a connected publisher even without tracks; a data
        // channel gives its offer an m-line.
        self.negotiate_publisher(now);
    }

    /// Drops the current session's state (peer connections included).
    pub(crate) fn end_session(&mut self) {
        if let Some(session) = self.session.take() {
            for track_sid in session.subscriptions.subscribed.keys() {
                self.outputs.push_back(Output::Event(EngineEvent::TrackUnsubscribed {
                    track_sid: track_sid.clone(),
                }));
            }
        }
        self.outputs.retain(|o| !matches!(o, Output::Transmit { .. } | Output::Signal(_)));
    }

    /// The participant sid to resume, while a session exists that may be resumed.
    pub(crate) fn resumable_sid(&self) -> Option<String> {
        self.session.as_ref().filter(|s| s.connected).map(|s| s.participant_sid.clone())
    }

    /// The WebSocket is gone: hold pings and silence checks until [`Engine::resume`].
    pub(crate) fn signal_lost(&mut self) {
        if let Some(session) = self.session.as_mut() {
            session.keepalive.signal_lost();
        }
    }

    /// The server accepted a resume (`reconnect` response): restart ICE on the publisher (the
    /// server restarts the subscriber with a new offer) and resynchronise once it is answered.
    pub(crate) fn resume(&mut self, response: proto::ReconnectResponse, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        info!(ice_servers = response.ice_servers.len(), "session resumed");
        session.keepalive.resume(now);
        session.publishing.resume(session.publisher.first_mid.is_some());
        session.subscriptions.sync_state_due = true;
        for peer in [&mut session.publisher, &mut session.subscriber] {
            if peer.disconnected_since.is_some() {
                peer.disconnected_since = Some(now);
            }
        }
        self.negotiate_publisher(now);
    }

    // ---------------------------------------------------------------- application commands

    /// Re-queues a request that waited for the signalling connection.
    pub(crate) fn queue_signal(&mut self, message: signal_request::Message) {
        self.outputs.push_back(Output::Signal(message));
    }

    /// Says goodbye to the server (the task closes the WebSocket after sending it).
    pub(crate) fn leave(&mut self) {
        if self.session.is_some() {
            self.outputs.push_back(Output::Signal(signal_request::Message::Leave(
                proto::LeaveRequest {
                    reason: proto::DisconnectReason::ClientInitiated as i32,
                    action: proto::leave_request::Action::Disconnect as i32,
                    ..Default::default()
                },
            )));
        }
    }

    // ---------------------------------------------------------------- network input

    /// A message from the server.
    pub(crate) fn handle_signal(&mut self, message: signal_response::Message, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        session.keepalive.on_message(now);
        use signal_response::Message as M;
        match message {
            M::Offer(offer) => self.handle_subscriber_offer(offer, now),
            M::Answer(answer) => self.handle_publisher_answer(answer, now),
            M::MediaSectionsRequirement(wanted) => self.handle_media_sections(wanted, now),
            M::Trickle(trickle) => self.handle_trickle(trickle, now),
            M::Update(update) => self.handle_participants(update.participants, now),
            M::TrackPublished(published) => self.handle_track_published(published, now),
            M::TrackUnpublished(unpublished) => {
                self.handle_track_unpublished(&unpublished.track_sid, now)
            }
            M::SubscribedQualityUpdate(update) => self.handle_subscribed_quality(update, now),
            M::TrackSubscribed(subscribed) => {
                self.subscribers_changed(&subscribed.track_sid, true, true, now);
            }
            M::Leave(leave) => {
                let reason = proto::DisconnectReason::try_from(leave.reason)
                    .unwrap_or(proto::DisconnectReason::UnknownReason);
                let action = proto::leave_request::Action::try_from(leave.action)
                    .unwrap_or(proto::leave_request::Action::Disconnect);
                info!(?reason, ?action, "the server sent leave");
                let event = match action {
                    proto::leave_request::Action::Disconnect if !leave.can_reconnect => {
                        EngineEvent::Left(reason)
                    }
                    _ => EngineEvent::Lost(format!("the server asked to reconnect ({reason:?})")),
                };
                self.outputs.push_back(Output::Event(event));
            }
            M::Mute(mute) => self.handle_server_mute(mute),
            M::SpeakersChanged(changed) => {
                let speakers = session.participants.speakers(changed.speakers);
                if !speakers.is_empty() {
                    self.outputs.push_back(Output::Event(EngineEvent::Participant(
                        ParticipantChange::Speakers(speakers),
                    )));
                }
            }
            M::PongResp(pong) => session.keepalive.on_pong(pong.last_ping_timestamp, now),
            M::RefreshToken(_) => {
                // The task keeps the newest token (it never reaches the engine's logs).
            }
            M::RequestResponse(response) => {
                if response.reason != proto::request_response::Reason::Ok as i32 {
                    warn!(reason = response.reason, message = %response.message, "the server refused a request");
                    if let Some(proto::request_response::Request::AddTrack(request)) =
                        response.request
                    {
                        let reason = format!("{:?}: {}", response.reason, response.message);
                        self.track_refused(request.cid, reason);
                    }
                }
            }
            M::Join(_) | M::Reconnect(_) => {
                debug!("unexpected join/reconnect response in a session; ignored")
            }
            other => trace!(message = ?std::mem::discriminant(&other), "signal message ignored"),
        }
    }

    fn handle_trickle(&mut self, trickle: proto::TrickleRequest, now: Instant) {
        let Some(kind) = PeerKind::from_target(trickle.target) else {
            debug!(target = trickle.target, "trickle for an unknown target; ignored");
            return;
        };
        let candidate = match parse_candidate_init(&trickle.candidate_init) {
            Ok(Some(candidate)) => candidate,
            Ok(None) => return,
            Err(error) => {
                debug!(%error, "remote candidate ignored");
                return;
            }
        };
        let Some(session) = self.session.as_mut() else { return };
        let described = match kind {
            PeerKind::Publisher => {
                session.publisher.first_mid.is_some() && !session.publishing.offer_pending()
            }
            PeerKind::Subscriber => session.subscriber.first_mid.is_some(),
        };
        let peer = session.peer(kind);
        if described {
            peer.rtc.add_remote_candidate(candidate);
            self.drain(kind, now);
        } else {
            peer.pending_remote.push(candidate);
        }
    }

    /// A datagram arrived on one of the session's sockets; where it went.
    pub(crate) fn handle_datagram(
        &mut self,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
        now: Instant,
    ) -> DatagramRoute {
        if self.handle_stun_answer(source, contents, now) {
            return DatagramRoute::StunAnswer;
        }
        let Some(session) = self.session.as_mut() else { return DatagramRoute::Dropped };
        let kind = if session.publisher.owns(destination) {
            PeerKind::Publisher
        } else if session.subscriber.owns(destination) {
            PeerKind::Subscriber
        } else {
            return DatagramRoute::Dropped;
        };
        let Ok(contents) = contents.try_into() else {
            trace!("datagram str0m cannot classify; ignored");
            return DatagramRoute::Dropped;
        };
        let input =
            Input::Receive(now, Receive { proto: Protocol::Udp, source, destination, contents });
        let peer = session.peer(kind);
        if !peer.rtc.accepts(&input) {
            trace!(?kind, %source, "datagram not for this peer connection");
            return DatagramRoute::Dropped;
        }
        if let Err(error) = peer.rtc.handle_input(input) {
            self.lost(format!("{kind:?} peer connection failed: {error}"));
            return DatagramRoute::PeerConnection(kind);
        }
        self.drain(kind, now);
        DatagramRoute::PeerConnection(kind)
    }

    /// Trickles local candidates of a peer once its description went out.
    fn flush_local_candidates(&mut self, kind: PeerKind) {
        let Some(session) = self.session.as_mut() else { return };
        let peer = session.peer(kind);
        let Some(mid) = peer.first_mid.clone() else { return };
        for candidate in std::mem::take(&mut peer.pending_local) {
            self.outputs.push_back(Output::Signal(signal_request::Message::Trickle(
                proto::TrickleRequest {
                    candidate_init: candidate_init_json(&candidate, &mid),
                    target: kind.target() as i32,
                    r#final: false,
                },
            )));
        }
    }

    // ---------------------------------------------------------------- time

    /// Time passed: drive timers, pings, retransmissions.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        match session.keepalive.poll(now) {
            Some(KeepAliveDue::Silent(reason)) => {
                self.outputs.push_back(Output::Event(EngineEvent::ResumeNeeded(reason)));
                return;
            }
            Some(KeepAliveDue::Ping(ping)) => {
                self.outputs.push_back(Output::Signal(signal_request::Message::PingReq(ping)));
            }
            None => {}
        }
        if !session.connected
            && now.saturating_duration_since(session.started) >= MEDIA_CONNECT_TIMEOUT
        {
            warn!("the media connection did not come up within {MEDIA_CONNECT_TIMEOUT:?}");
            self.outputs.push_back(Output::Event(EngineEvent::MediaTimeout));
            return;
        }
        for kind in [PeerKind::Publisher, PeerKind::Subscriber] {
            let Some(session) = self.session.as_mut() else { return };
            let peer = session.peer(kind);
            if let Some(since) = peer.disconnected_since
                && now.saturating_duration_since(since) >= ICE_DISCONNECTED_GRACE
            {
                peer.disconnected_since = None;
                let reason = format!("{kind:?} ICE disconnected for {ICE_DISCONNECTED_GRACE:?}");
                warn!(%reason, "resuming");
                self.outputs.push_back(Output::Event(EngineEvent::ResumeNeeded(reason)));
                return;
            }
            if now >= peer.timeout {
                if let Err(error) = peer.rtc.handle_input(Input::Timeout(now)) {
                    self.lost(format!("{kind:?} peer connection failed: {error}"));
                    return;
                }
                self.drain(kind, now);
            }
        }
        self.handle_stun_timeouts(now);
        self.handle_keyframe_retries(now);
        self.handle_scheduled_keyframes(now);
    }

    /// The next output, or the next deadline.
    pub(crate) fn poll_output(&mut self) -> Output {
        if let Some(output) = self.outputs.pop_front() {
            return output;
        }
        let Some(session) = self.session.as_ref() else {
            return Output::Timeout(far_future());
        };
        let mut deadline = session.keepalive.next_deadline().unwrap_or_else(far_future);
        deadline = deadline.min(session.publisher.timeout).min(session.subscriber.timeout);
        if !session.connected {
            deadline = deadline.min(session.started + MEDIA_CONNECT_TIMEOUT);
        }
        for peer in [&session.publisher, &session.subscriber] {
            if let Some(since) = peer.disconnected_since {
                deadline = deadline.min(since + ICE_DISCONNECTED_GRACE);
            }
        }
        let others = [
            session.subscriptions.next_deadline(),
            session.publishing.next_deadline(),
            stun_queries::next_send(&session.stun),
        ];
        for next in others.into_iter().flatten() {
            deadline = deadline.min(next);
        }
        Output::Timeout(deadline)
    }

    fn lost(&mut self, reason: String) {
        warn!(%reason, "session lost");
        self.outputs.push_back(Output::Event(EngineEvent::Lost(reason)));
    }

    // ---------------------------------------------------------------- str0m

    /// Drains one peer connection's output (str0m's single-mutation rule).
    fn drain(&mut self, kind: PeerKind, now: Instant) {
        let mut events = Vec::new();
        {
            let Some(session) = self.session.as_mut() else { return };
            let peer = session.peer(kind);
            loop {
                match peer.rtc.poll_output() {
                    Ok(RtcOutput::Timeout(t)) => {
                        peer.timeout = t;
                        break;
                    }
                    Ok(RtcOutput::Transmit(t)) => self.outputs.push_back(Output::Transmit {
                        source: t.source,
                        destination: t.destination,
                        contents: t.contents.into(),
                    }),
                    Ok(RtcOutput::Event(event)) => events.push(event),
                    Err(error) => {
                        peer.timeout = now + Duration::from_secs(1);
                        self.lost(format!("{kind:?} peer connection failed: {error}"));
                        return;
                    }
                }
            }
        }
        for event in events {
            self.handle_rtc_event(kind, event, now);
        }
    }

    fn handle_rtc_event(&mut self, kind: PeerKind, event: Event, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        match event {
            Event::Connected => {
                info!(?kind, "peer connection up");
                let primary = if session.subscriber_primary {
                    PeerKind::Subscriber
                } else {
                    PeerKind::Publisher
                };
                session.peer(kind).connected = true;
                if kind == primary && !session.connected {
                    session.connected = true;
                    self.outputs.push_back(Output::Event(EngineEvent::Connected));
                }
                if kind == PeerKind::Publisher {
                    self.publisher_connected();
                }
            }
            Event::IceConnectionStateChange(state) => {
                debug!(?kind, ?state, "ICE");
                let peer = session.peer(kind);
                match state {
                    str0m::IceConnectionState::Disconnected => {
                        peer.disconnected_since.get_or_insert(now);
                    }
                    _ => peer.disconnected_since = None,
                }
            }
            Event::MediaAdded(added) if kind == PeerKind::Subscriber => {
                self.handle_media_added(added, now)
            }
            Event::MediaChanged(changed) if kind == session.media_peer() => {
                self.handle_media_changed(changed)
            }
            Event::MediaData(data) => self.handle_media_data(data, now),
            Event::KeyframeRequest(request) if kind == PeerKind::Publisher => {
                self.handle_keyframe_request(request)
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                self.handle_egress_estimate(estimate.as_u64())
            }
            Event::EgressBitrateEstimate(BweKind::Remb { estimate, mid }) => {
                self.handle_remb(mid, estimate.as_u64())
            }
            Event::ChannelOpen(_, label) => debug!(?kind, %label, "data channel open"),
            _ => {}
        }
    }
}

/// The frame codec of a negotiated payload, when this client sends or receives it.
fn codec_of(codec: str0m::format::Codec) -> Option<FrameCodec> {
    match codec {
        str0m::format::Codec::Opus => Some(FrameCodec::Opus),
        other => VideoCodec::from_str0m(other).map(FrameCodec::from),
    }
}

/// A new `Rtc` with our codecs and the host candidates of the sockets.
///
/// The publisher estimates its bandwidth from the server's transport-wide congestion control
/// feedback (TWCC), probing with padding when media alone cannot tell.
fn new_rtc(now: Instant, addrs: &[SocketAddr], estimate_bandwidth: bool) -> Rtc {
    let mut builder = Rtc::builder()
        .clear_codecs()
        .enable_vp8(true)
        .enable_h264(true)
        .enable_opus(true, false)
        .set_stats_interval(None)
        // Packets kept for retransmission: about a second at 720p. An older one would arrive
        // after its frame's time (and the SFU keeps its own history for its subscribers).
        .set_send_buffer_video(VIDEO_SEND_HISTORY);
    if estimate_bandwidth {
        builder = builder.enable_bwe(Some(Bitrate::bps(INITIAL_BANDWIDTH_ESTIMATE)));
    }
    builder = builder.set_crypto_provider(dtls::crypto_provider());
    if let Some(cert) = process_dtls_cert() {
        builder = builder.set_dtls_cert(cert.clone());
    }
    let mut rtc = builder.build(now);
    for addr in addrs {
        match Candidate::host(*addr, "udp") {
            Ok(candidate) => {
                rtc.add_local_candidate(candidate);
            }
            Err(error) => debug!(%addr, %error, "no host candidate for this address"),
        }
    }
    rtc
}

/// Video packets each peer connection keeps for retransmission (str0m's default is 1,000).
const VIDEO_SEND_HISTORY: usize = 300;

/// A parse error of `sdp` fit for logs: parser messages may quote the input, and the ICE
/// password (`a=ice-pwd`) is a credential of the session.
fn sdp_error_for_log(error: &impl std::fmt::Display, sdp: &str) -> String {
    let mut text = error.to_string();
    for line in sdp.lines() {
        if let Some(pwd) = line.trim().strip_prefix("a=ice-pwd:").map(str::trim)
            && !pwd.is_empty()
        {
            text = text.replace(pwd, "[redacted]");
        }
    }
    text
}

/// The first `a=mid:` of an SDP.
fn first_mid(sdp: &str) -> Option<String> {
    sdp.lines().find_map(|l| l.trim().strip_prefix("a=mid:").map(str::to_owned))
}

/// A deadline that never comes in practice.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

#[cfg(test)]
pub(crate) mod test_peer;
#[cfg(test)]
mod tests;
