//! The sans-IO core of a LiveKit connection: signalling state, the two peer connections, local
//! and remote tracks. It takes signal messages, datagrams, commands and time, and returns signal
//! messages, datagrams, events and its next deadline. The tokio task in [`crate::task`] only
//! moves bytes and waits.

mod participants;
pub(crate) mod peer;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use livekit_protocol as proto;
use proto::{signal_request, signal_response};
use str0m::bwe::{Bitrate, BweKind};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, KeyframeRequestKind, MediaKind, MediaTime, Mid};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event, Input, Output as RtcOutput, Rtc};
use tracing::{debug, info, trace, warn};

use crate::e2ee::{FrameCodec, FrameContext, FrameCryptor};
use crate::signal::candidate_init::{candidate_init_json, parse_candidate_init};
use crate::stun;
use crate::track::{
    LocalTrackOptions, OutgoingFrame, RemoteAudioFrame, RemoteTrackInfo, RemoteVideoFrame,
    TrackKind, VideoCodec, is_keyframe,
};
pub(crate) use participants::{ParticipantChange, Participants};
pub use participants::{ParticipantSummary, Speaker};
use peer::{Peer, PeerKind, sdp_track_ids};

/// How long the required peer connection may take to connect after a join.
pub(crate) const MEDIA_CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long ICE may stay disconnected before the session counts as lost.
const ICE_DISCONNECTED_GRACE: Duration = Duration::from_secs(8);
/// Keyframe requests toward a publisher, at most one per this interval per track.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// When a new subscriber's keyframe is repeated. The server forwards the first one as soon as it
/// binds the subscription, often before the subscriber's browser has the receiver that decodes
/// it, and then rate-limits the browser's own requests (~0.7 s measured against LiveKit 1.13).
const SUBSCRIBER_KEYFRAME_REPEAT: Duration = Duration::from_millis(250);
/// Where the publisher's bandwidth estimate starts: libwebrtc starts at 300 kbit/s and probes
/// upward; starting higher gives a sharper first second on the links calls usually have.
const INITIAL_BANDWIDTH_ESTIMATE: u64 = 1_000_000;
/// The lowest bitrate handed to a video encoder, whatever the estimate says.
const MIN_TRACK_BITRATE: u32 = 100_000;
/// STUN binding retransmissions.
const STUN_RETRIES: u32 = 3;
const STUN_RTO: Duration = Duration::from_millis(500);

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

/// Settings that outlive sessions.
#[derive(Clone, Default)]
pub(crate) struct EngineConfig {
    pub(crate) cryptor: Option<Arc<dyn FrameCryptor>>,
}

/// A local track the application published; it survives reconnects.
#[derive(Debug, Clone)]
struct LocalTrack {
    options: LocalTrackOptions,
    muted: bool,
}

/// A local track's state in the current session.
#[derive(Debug, Default)]
struct Publication {
    sid: Option<String>,
    mid: Option<Mid>,
    /// The server's REMB for this track's media, if it sent one.
    remb: Option<u64>,
    /// The target last announced, to announce changes only.
    announced: Option<u32>,
    /// Whether a subscriber receives it (the server's subscribed-quality updates).
    watched: bool,
}

/// One signalling session (one join, until it is lost).
struct Session {
    participant_sid: String,
    identity: String,
    subscriber_primary: bool,
    publisher: Peer,
    subscriber: Peer,
    ping_interval: Duration,
    ping_timeout: Duration,
    next_ping: Instant,
    last_message: Instant,
    rtt_ms: i64,
    started: Instant,
    connected: bool,
    next_offer_id: u32,
    pending_offer: Option<(u32, SdpPendingOffer)>,
    /// Publisher m-lines to stop in the next offer.
    mids_to_stop: Vec<Mid>,
    /// A data channel is wanted in the next offer (publisher-primary sessions).
    want_channel: bool,
    /// The publisher connection has a data channel (an m-line that is never stopped).
    publisher_channel: bool,
    participants: Participants,
    publications: HashMap<String, Publication>,
    /// Subscriber mid → track sid, from the offers' msid lines.
    sub_mid_tracks: HashMap<String, String>,
    /// Subscribed track sid → (mid, codec info known once media flows).
    subscribed: HashMap<String, Mid>,
    /// Media whose track info has not arrived yet.
    pending_media: Vec<(Mid, String)>,
    last_keyframe_request: HashMap<Mid, Instant>,
    /// Keyframe requests held back by the rate limit, with when they may go.
    keyframe_retry: HashMap<Mid, Instant>,
    /// Local tracks (by cid) whose new subscriber gets its keyframe again, and when.
    keyframe_repeat: HashMap<String, Instant>,
    stun: Vec<StunQuery>,
    /// False between a lost signalling connection and a resume (pings wait).
    signal_up: bool,
    /// The next publisher offer restarts ICE.
    ice_restart: bool,
    /// Send `sync_state` after answering the next subscriber offer (after a resume).
    sync_state_due: bool,
    /// Our latest answer on the subscriber connection, for `sync_state`.
    last_subscriber_answer: Option<proto::SessionDescription>,
    /// The publisher connection's bandwidth estimate (TWCC), bits per second.
    egress_estimate: Option<u64>,
    /// What ends frames the server injects itself (never encrypted), from the join response.
    sif_trailer: Vec<u8>,
}

impl Session {
    fn peer(&mut self, kind: PeerKind) -> &mut Peer {
        match kind {
            PeerKind::Publisher => &mut self.publisher,
            PeerKind::Subscriber => &mut self.subscriber,
        }
    }
}

/// An outstanding STUN binding request for a server-reflexive candidate.
struct StunQuery {
    peer: PeerKind,
    source: SocketAddr,
    server: SocketAddr,
    id: stun::TransactionId,
    packet: Vec<u8>,
    next_send: Instant,
    sends: u32,
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
            others = join.other_participants.len(),
            "joined"
        );
        let mut session = Session {
            participant_sid: participant.sid.clone(),
            identity: participant.identity.clone(),
            subscriber_primary: join.subscriber_primary,
            publisher,
            subscriber,
            ping_interval,
            ping_timeout,
            next_ping: now + ping_interval,
            last_message: now,
            rtt_ms: 0,
            started: now,
            connected: false,
            next_offer_id: 1,
            pending_offer: None,
            mids_to_stop: Vec::new(),
            want_channel: !join.subscriber_primary,
            publisher_channel: false,
            participants: Participants::new(participant.sid.clone()),
            publications: HashMap::new(),
            sub_mid_tracks: HashMap::new(),
            subscribed: HashMap::new(),
            pending_media: Vec::new(),
            last_keyframe_request: HashMap::new(),
            keyframe_retry: HashMap::new(),
            keyframe_repeat: HashMap::new(),
            stun: Vec::new(),
            signal_up: true,
            ice_restart: false,
            sync_state_due: false,
            last_subscriber_answer: None,
            egress_estimate: None,
            sif_trailer: join.sif_trailer.clone(),
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
            for track_sid in session.subscribed.keys() {
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
            session.signal_up = false;
        }
    }

    /// The server accepted a resume (`reconnect` response): restart ICE on the publisher (the
    /// server restarts the subscriber with a new offer) and resynchronise once it is answered.
    pub(crate) fn resume(&mut self, response: proto::ReconnectResponse, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        info!(ice_servers = response.ice_servers.len(), "session resumed");
        session.signal_up = true;
        session.last_message = now;
        session.next_ping = now + session.ping_interval;
        session.pending_offer = None;
        session.ice_restart = session.publisher.first_mid.is_some();
        session.sync_state_due = true;
        for peer in [&mut session.publisher, &mut session.subscriber] {
            if peer.disconnected_since.is_some() {
                peer.disconnected_since = Some(now);
            }
        }
        self.negotiate_publisher(now);
    }

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

    // ---------------------------------------------------------------- application commands

    /// Announces a new local track; frames can be written once the server confirmed it.
    pub(crate) fn add_track(&mut self, cid: String, options: LocalTrackOptions) {
        self.local_tracks.insert(cid.clone(), LocalTrack { options, muted: false });
        self.send_add_track(&cid);
    }

    fn send_add_track(&mut self, cid: &str) {
        let (Some(track), Some(session)) = (self.local_tracks.get(cid), self.session.as_mut())
        else {
            return;
        };
        session.publications.insert(cid.to_owned(), Publication::default());
        let encryption = if track.options.encrypted() {
            proto::encryption::Type::Gcm
        } else {
            proto::encryption::Type::None
        } as i32;
        let request = match &track.options {
            LocalTrackOptions::Video(o) => {
                let layer = proto::VideoLayer {
                    quality: proto::VideoQuality::High as i32,
                    width: o.width,
                    height: o.height,
                    bitrate: o.max_bitrate,
                    ..Default::default()
                };
                proto::AddTrackRequest {
                    cid: cid.to_owned(),
                    name: o.name.clone(),
                    r#type: proto::TrackType::Video as i32,
                    width: o.width,
                    height: o.height,
                    muted: track.muted,
                    source: o.source.to_proto() as i32,
                    layers: vec![layer.clone()],
                    simulcast_codecs: vec![proto::SimulcastCodec {
                        codec: o.codec.livekit_name().into(),
                        cid: cid.to_owned(),
                        layers: vec![layer],
                        ..Default::default()
                    }],
                    encryption,
                    ..Default::default()
                }
            }
            LocalTrackOptions::Audio(o) => {
                let mut features = Vec::new();
                if o.stereo {
                    features.push(proto::AudioTrackFeature::TfStereo as i32);
                }
                if !o.dtx {
                    features.push(proto::AudioTrackFeature::TfNoDtx as i32);
                }
                #[allow(deprecated)]
                proto::AddTrackRequest {
                    cid: cid.to_owned(),
                    name: o.name.clone(),
                    r#type: proto::TrackType::Audio as i32,
                    muted: track.muted,
                    source: o.source.to_proto() as i32,
                    disable_dtx: !o.dtx,
                    disable_red: true,
                    stereo: o.stereo,
                    audio_features: features,
                    simulcast_codecs: vec![proto::SimulcastCodec {
                        codec: "opus".into(),
                        cid: cid.to_owned(),
                        ..Default::default()
                    }],
                    encryption,
                    ..Default::default()
                }
            }
        };
        self.outputs.push_back(Output::Signal(signal_request::Message::AddTrack(request)));
    }

    /// Stops publishing a local track.
    pub(crate) fn remove_track(&mut self, cid: &str, now: Instant) {
        self.local_tracks.remove(cid);
        let Some(session) = self.session.as_mut() else { return };
        if let Some(mid) = session.publications.remove(cid).and_then(|p| p.mid) {
            session.mids_to_stop.push(mid);
            self.update_desired_bitrate();
            self.allocate_bitrate();
            self.negotiate_publisher(now);
        }
    }

    /// Mutes or unmutes a local track.
    pub(crate) fn set_muted(&mut self, cid: &str, muted: bool) {
        let Some(track) = self.local_tracks.get_mut(cid) else { return };
        track.muted = muted;
        let sid =
            self.session.as_ref().and_then(|s| s.publications.get(cid)).and_then(|p| p.sid.clone());
        if let Some(sid) = sid {
            self.outputs.push_back(Output::Signal(signal_request::Message::Mute(
                proto::MuteTrackRequest { sid, muted },
            )));
        }
    }

    /// Subscribes to or unsubscribes from a remote track (for `auto_subscribe: false`).
    pub(crate) fn set_subscribed(&mut self, track_sid: &str, subscribe: bool) {
        if self.session.is_none() {
            return;
        }
        self.outputs.push_back(Output::Signal(signal_request::Message::Subscription(
            proto::UpdateSubscription {
                track_sids: vec![track_sid.to_owned()],
                subscribe,
                ..Default::default()
            },
        )));
    }

    /// Sends one encoded frame of a local track; whether it went out (frames are dropped
    /// while the track is muted, not negotiated, or its connection is not up).
    pub(crate) fn write_frame(&mut self, cid: &str, frame: OutgoingFrame, now: Instant) -> bool {
        let Some(track) = self.local_tracks.get(cid) else { return false };
        if track.muted {
            return false;
        }
        let encrypted = track.options.encrypted();
        let (codec, keyframe, rtp_time, level, mut data) = match (frame, &track.options) {
            (OutgoingFrame::Video(frame), LocalTrackOptions::Video(o)) => {
                let rtp_time = (frame.timestamp.as_micros() * 9 / 100) as u64;
                let time = MediaTime::new(rtp_time, Frequency::NINETY_KHZ);
                (FrameCodec::from(o.codec), frame.keyframe, time, None, frame.data)
            }
            (OutgoingFrame::Audio(frame), LocalTrackOptions::Audio(_)) => {
                let time = MediaTime::new(
                    crate::track::rtp_time(frame.timestamp),
                    Frequency::FORTY_EIGHT_KHZ,
                );
                (FrameCodec::Opus, false, time, frame.level, frame.data)
            }
            _ => {
                debug!(cid, "a frame of the wrong kind for the track; dropped");
                return false;
            }
        };
        let Some(session) = self.session.as_mut() else { return false };
        let Some(publication) = session.publications.get(cid) else { return false };
        let (Some(mid), Some(sid)) = (publication.mid, publication.sid.clone()) else {
            return false;
        };
        if !session.publisher.connected {
            return false;
        }
        if encrypted {
            let Some(cryptor) = self.config.cryptor.as_ref() else {
                warn!(
                    cid,
                    "track is published as encrypted but no frame cryptor is set; frame dropped"
                );
                return false;
            };
            let ssrc = session
                .publisher
                .rtc
                .direct_api()
                .stream_tx_by_mid(mid, None)
                .map_or(0, |stream| *stream.ssrc());
            let context = FrameContext {
                participant_identity: &session.identity,
                track_sid: &sid,
                codec,
                keyframe,
                rtp_timestamp: rtp_time.numer() as u32,
                ssrc,
            };
            if let Err(error) = cryptor.encrypt(&context, &mut data) {
                debug!(cid, %error, "frame not encrypted; dropped");
                return false;
            }
        }
        let Some(writer) = session.publisher.rtc.writer(mid) else { return false };
        let Some(pt) = writer
            .payload_params()
            .find(|p| codec_of(p.spec().codec) == Some(codec))
            .map(|p| p.pt())
        else {
            warn!(
                cid,
                ?codec,
                "the server's answer has no payload type for the codec; frame dropped"
            );
            return false;
        };
        let writer = match level {
            // str0m takes RFC 6464's -dBov as the negative number it stands for.
            Some(level) => writer.audio_level(-(level.dbov.min(127) as i8), level.voice),
            None => writer,
        };
        let written = match writer.write(pt, now, rtp_time, data) {
            Ok(()) => true,
            Err(error) => {
                debug!(cid, %error, "frame not written");
                false
            }
        };
        self.drain(PeerKind::Publisher, now);
        written
    }

    /// Asks the publisher of a subscribed track for a keyframe.
    pub(crate) fn request_keyframe(&mut self, track_sid: &str, now: Instant) {
        let Some(mid) = self.session.as_ref().and_then(|s| s.subscribed.get(track_sid).copied())
        else {
            return;
        };
        self.request_keyframe_mid(mid, now);
    }

    fn request_keyframe_mid(&mut self, mid: Mid, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        if let Some(last) = session.last_keyframe_request.get(&mid) {
            let next = *last + KEYFRAME_REQUEST_INTERVAL;
            if now < next {
                // Too soon after the last one: send it when the interval is over.
                session.keyframe_retry.entry(mid).or_insert(next);
                return;
            }
        }
        session.keyframe_retry.remove(&mid);
        session.last_keyframe_request.insert(mid, now);
        match session.subscriber.rtc.writer(mid) {
            Some(mut writer) if writer.is_request_keyframe_possible(KeyframeRequestKind::Pli) => {
                match writer.request_keyframe(None, KeyframeRequestKind::Pli) {
                    Ok(()) => debug!(%mid, "keyframe requested from the publisher"),
                    Err(error) => debug!(%mid, %error, "keyframe request failed"),
                }
            }
            _ => debug!(%mid, "no keyframe request possible on this media"),
        }
        self.drain(PeerKind::Subscriber, now);
    }

    /// Shares the publisher's bandwidth estimate among the published video tracks (audio keeps
    /// its fixed rate) in proportion to their maximum bitrates (each capped at its maximum and at the server's
    /// REMB for it), and announces targets that changed by more than 5 %.
    fn allocate_bitrate(&mut self) {
        let Some(session) = self.session.as_mut() else { return };
        let Some(estimate) = session.egress_estimate else { return };
        let tracks: Vec<(&String, u32)> = session
            .publications
            .iter()
            .filter(|(_, p)| p.mid.is_some())
            .filter_map(|(cid, _)| match &self.local_tracks.get(cid)?.options {
                LocalTrackOptions::Video(o) => Some((cid, o.max_bitrate)),
                LocalTrackOptions::Audio(_) => None,
            })
            .collect();
        let total: u64 = tracks.iter().map(|(_, max)| u64::from(*max)).sum();
        if total == 0 {
            return;
        }
        let mut targets = Vec::new();
        for (cid, max) in tracks {
            let share = estimate * u64::from(max) / total;
            let remb = session.publications.get(cid).and_then(|p| p.remb).unwrap_or(u64::MAX);
            let target = share.min(remb).min(u64::from(max)).max(u64::from(MIN_TRACK_BITRATE));
            targets.push((cid.clone(), u32::try_from(target).unwrap_or(u32::MAX)));
        }
        for (cid, target) in targets {
            let Some(publication) = session.publications.get_mut(&cid) else { continue };
            let changed = publication
                .announced
                .is_none_or(|last| u64::from(last.abs_diff(target)) * 20 > u64::from(last));
            if changed {
                publication.announced = Some(target);
                self.outputs.push_back(Output::Event(EngineEvent::TrackBitrate {
                    cid,
                    bits_per_second: target,
                }));
            }
        }
    }

    /// Tells the publisher's estimator what the published tracks would like to send.
    fn update_desired_bitrate(&mut self) {
        let Some(session) = self.session.as_mut() else { return };
        let desired: u64 = session
            .publications
            .keys()
            .filter_map(|cid| self.local_tracks.get(cid))
            .map(|t| u64::from(t.options.max_bitrate()))
            .sum();
        session.publisher.rtc.bwe().set_bitrate(Bitrate::ZERO, Bitrate::bps(desired));
    }

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
        let clock_base = self.clock_base;
        let Some(session) = self.session.as_mut() else { return };
        session.last_message = now;
        use signal_response::Message as M;
        match message {
            M::Offer(offer) => self.handle_subscriber_offer(offer, now),
            M::Answer(answer) => self.handle_publisher_answer(answer, now),
            M::Trickle(trickle) => self.handle_trickle(trickle, now),
            M::Update(update) => self.handle_participants(update.participants, now),
            M::TrackPublished(published) => {
                let track = published.track.unwrap_or_default();
                info!(cid = %published.cid, sid = %track.sid, mime = %track.mime_type, "track published");
                self.handle_track_published(published.cid, track.sid, now);
            }
            M::TrackUnpublished(unpublished) => {
                let cid = session
                    .publications
                    .iter()
                    .find(|(_, p)| p.sid.as_deref() == Some(&unpublished.track_sid))
                    .map(|(c, _)| c.clone());
                if let Some(cid) = cid {
                    info!(%cid, "the server unpublished our track");
                    self.remove_track(&cid, now);
                    self.outputs.push_back(Output::Event(EngineEvent::LocalTrackClosed { cid }));
                }
            }
            M::SubscribedQualityUpdate(update) => {
                // Servers fill the per-codec list; older ones only the deprecated flat one.
                #[allow(deprecated)]
                let watched = update.subscribed_qualities.iter().any(|q| q.enabled)
                    || update
                        .subscribed_codecs
                        .iter()
                        .flat_map(|c| &c.qualities)
                        .any(|q| q.enabled);
                self.subscribers_changed(&update.track_sid, watched, false, now);
            }
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
            M::Mute(mute) => {
                debug!(sid = %mute.sid, muted = mute.muted, "the server asks to change a track's mute state");
                let cid = session
                    .publications
                    .iter()
                    .find(|(_, p)| p.sid.as_deref() == Some(&mute.sid))
                    .map(|(c, _)| c.clone());
                if let Some(cid) = cid {
                    self.set_muted(&cid, mute.muted);
                }
            }
            M::SpeakersChanged(changed) => {
                let speakers = session.participants.speakers(changed.speakers);
                if !speakers.is_empty() {
                    self.outputs.push_back(Output::Event(EngineEvent::Participant(
                        ParticipantChange::Speakers(speakers),
                    )));
                }
            }
            M::PongResp(pong) => {
                session.rtt_ms = (unix_ms(clock_base, now) - pong.last_ping_timestamp).max(0);
                trace!(rtt_ms = session.rtt_ms, "pong");
            }
            M::RefreshToken(_) => {
                // The task keeps the newest token (it never reaches the engine's logs).
            }
            M::RequestResponse(response) => {
                if response.reason != proto::request_response::Reason::Ok as i32 {
                    warn!(reason = response.reason, message = %response.message, "the server refused a request");
                    if let Some(proto::request_response::Request::AddTrack(request)) =
                        response.request
                    {
                        session.publications.remove(&request.cid);
                        self.local_tracks.remove(&request.cid);
                        self.outputs.push_back(Output::Event(EngineEvent::LocalTrackRefused {
                            cid: request.cid,
                            reason: format!("{:?}: {}", response.reason, response.message),
                        }));
                    }
                }
            }
            M::Join(_) | M::Reconnect(_) => {
                debug!("unexpected join/reconnect response in a session; ignored")
            }
            other => trace!(message = ?std::mem::discriminant(&other), "signal message ignored"),
        }
    }

    /// A subscriber started (or stopped) receiving a local track (`new_subscriber`: one more
    /// subscriber, which the server announces whether or not others watch already). Starting gets a
    /// keyframe at once and again shortly after, as a browser's encoder makes one when the server
    /// enables a layer: the server's own keyframe requests are rate-limited, and a subscriber would
    /// wait for them.
    fn subscribers_changed(
        &mut self,
        track_sid: &str,
        watched: bool,
        new_subscriber: bool,
        now: Instant,
    ) {
        let Some(session) = self.session.as_mut() else { return };
        let Some((cid, publication)) =
            session.publications.iter_mut().find(|(_, p)| p.sid.as_deref() == Some(track_sid))
        else {
            return;
        };
        let started = watched && (new_subscriber || !publication.watched);
        publication.watched = watched;
        debug!(%cid, watched, new_subscriber, "subscribers of a local track");
        let video = self.local_tracks.get(cid).map(|t| t.options.kind()) == Some(TrackKind::Video);
        if started && video {
            let cid = cid.clone();
            session.keyframe_repeat.insert(cid.clone(), now + SUBSCRIBER_KEYFRAME_REPEAT);
            self.outputs.push_back(Output::Event(EngineEvent::KeyframeRequested { cid }));
        }
    }

    fn handle_track_published(&mut self, cid: String, sid: String, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        let Some(publication) = session.publications.get_mut(&cid) else {
            debug!(%cid, "track_published for an unknown track");
            return;
        };
        if publication.sid.is_some() {
            return;
        }
        publication.sid = Some(sid.clone());
        self.outputs.push_back(Output::Event(EngineEvent::LocalTrackPublished { cid, sid }));
        self.negotiate_publisher(now);
    }

    fn negotiate_publisher(&mut self, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        if session.pending_offer.is_some() {
            // One offer at a time; the answer triggers the next round.
            return;
        }
        // str0m stages changes in the `SdpApi` value, so every round builds all of them.
        let mut api = session.publisher.rtc.sdp_api();
        let mut added = Vec::new();
        for (cid, publication) in &session.publications {
            if publication.sid.is_some() && publication.mid.is_none() {
                let kind = match self.local_tracks.get(cid).map(|t| t.options.kind()) {
                    Some(TrackKind::Audio) => MediaKind::Audio,
                    _ => MediaKind::Video,
                };
                let stream = Some(session.participant_sid.clone());
                let mid = api.add_media(kind, Direction::SendOnly, stream, Some(cid.clone()), None);
                added.push((cid.clone(), mid));
            }
        }
        let stopping = !session.mids_to_stop.is_empty();
        for mid in session.mids_to_stop.drain(..) {
            api.stop_media(mid);
        }
        // Stopping the last media would leave no m-line in use, and LiveKit then answers without
        // a BUNDLE group, which str0m refuses: keep a data channel in the session instead, as
        // livekit-client always has one.
        let media_left =
            session.publications.values().any(|p| p.mid.is_some()) || !added.is_empty();
        if stopping && !media_left && !session.publisher_channel {
            session.want_channel = true;
        }
        if std::mem::take(&mut session.want_channel) {
            api.add_channel("_reliable".into());
            session.publisher_channel = true;
        }
        if std::mem::take(&mut session.ice_restart) {
            api.ice_restart(true);
        }
        let Some((offer, pending)) = api.apply() else { return };
        for (cid, mid) in added {
            if let Some(publication) = session.publications.get_mut(&cid) {
                publication.mid = Some(mid);
            }
        }
        let id = session.next_offer_id;
        session.next_offer_id += 1;
        let sdp = offer.to_sdp_string();
        if session.publisher.first_mid.is_none() {
            session.publisher.first_mid = first_mid(&sdp);
        }
        session.pending_offer = Some((id, pending));
        debug!(id, "publisher offer");
        self.outputs.push_back(Output::Signal(signal_request::Message::Offer(
            proto::SessionDescription { r#type: "offer".into(), sdp, id, ..Default::default() },
        )));
        self.flush_local_candidates(PeerKind::Publisher);
        self.drain(PeerKind::Publisher, now);
    }

    fn handle_publisher_answer(&mut self, answer: proto::SessionDescription, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        let Some((id, pending)) = session.pending_offer.take() else {
            debug!("answer without a pending offer; ignored");
            return;
        };
        if answer.id != 0 && answer.id != id {
            debug!(answer.id, id, "answer to an older offer; ignored");
            session.pending_offer = Some((id, pending));
            return;
        }
        let parsed = match SdpAnswer::from_sdp_string(&answer.sdp) {
            Ok(parsed) => parsed,
            Err(error) => {
                let error = sdp_error_for_log(&error, &answer.sdp);
                self.lost(format!("the server's answer is not valid SDP: {error}"));
                return;
            }
        };
        if let Err(error) = session.publisher.rtc.sdp_api().accept_answer(pending, parsed) {
            self.lost(format!("the server's answer was not accepted: {error}"));
            return;
        }
        debug!(id, "publisher answer applied");
        let queued = std::mem::take(&mut session.publisher.pending_remote);
        for candidate in queued {
            session.publisher.rtc.add_remote_candidate(candidate);
        }
        self.update_desired_bitrate();
        self.allocate_bitrate();
        self.drain(PeerKind::Publisher, now);
        self.negotiate_publisher(now);
    }

    fn handle_subscriber_offer(&mut self, offer: proto::SessionDescription, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        let parsed = match SdpOffer::from_sdp_string(&offer.sdp) {
            Ok(parsed) => parsed,
            Err(error) => {
                let error = sdp_error_for_log(&error, &offer.sdp);
                warn!(%error, "the server's offer is not valid SDP; ignored");
                return;
            }
        };
        for (mid, track) in sdp_track_ids(&offer.sdp) {
            session.sub_mid_tracks.insert(mid, track);
        }
        for (mid, track) in &offer.mid_to_track_id {
            session.sub_mid_tracks.insert(mid.clone(), track.clone());
        }
        let answer = match session.subscriber.rtc.sdp_api().accept_offer(parsed) {
            Ok(answer) => answer,
            Err(error) => {
                self.lost(format!("the server's offer was not accepted: {error}"));
                return;
            }
        };
        let sdp = answer.to_sdp_string();
        if session.subscriber.first_mid.is_none() {
            session.subscriber.first_mid = first_mid(&sdp);
        }
        debug!(id = offer.id, "subscriber answer");
        let answer = proto::SessionDescription {
            r#type: "answer".into(),
            sdp,
            id: offer.id,
            ..Default::default()
        };
        session.last_subscriber_answer = Some(answer.clone());
        self.outputs.push_back(Output::Signal(signal_request::Message::Answer(answer)));
        if std::mem::take(&mut session.sync_state_due) {
            let state = sync_state(session, &self.local_tracks);
            self.outputs.push_back(Output::Signal(signal_request::Message::SyncState(state)));
        }
        let queued = std::mem::take(&mut session.subscriber.pending_remote);
        for candidate in queued {
            session.subscriber.rtc.add_remote_candidate(candidate);
        }
        self.flush_local_candidates(PeerKind::Subscriber);
        self.drain(PeerKind::Subscriber, now);
        self.check_subscriptions();
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
                session.publisher.first_mid.is_some() && session.pending_offer.is_none()
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

    fn handle_participants(&mut self, infos: Vec<proto::ParticipantInfo>, _now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        let changes = session.participants.update(infos);
        for change in changes {
            if let ParticipantChange::TrackUnpublished(info) = &change
                && session.subscribed.remove(&info.track_sid).is_some()
            {
                self.outputs.push_back(Output::Event(EngineEvent::TrackUnsubscribed {
                    track_sid: info.track_sid.clone(),
                }));
            }
            self.outputs.push_back(Output::Event(EngineEvent::Participant(change)));
        }
        self.check_subscriptions();
    }

    /// Emits `TrackSubscribed` for media whose track info is now known.
    fn check_subscriptions(&mut self) {
        let Some(session) = self.session.as_mut() else { return };
        let pending = std::mem::take(&mut session.pending_media);
        for (mid, track_sid) in pending {
            match session.participants.track(&track_sid) {
                Some(info) => {
                    session.subscribed.insert(track_sid, mid);
                    self.outputs.push_back(Output::Event(EngineEvent::TrackSubscribed(info)));
                }
                None => session.pending_media.push((mid, track_sid)),
            }
        }
    }

    /// A datagram arrived on one of the session's sockets.
    pub(crate) fn handle_datagram(
        &mut self,
        source: SocketAddr,
        destination: SocketAddr,
        contents: &[u8],
        now: Instant,
    ) {
        let Some(session) = self.session.as_mut() else { return };
        if stun::is_stun(contents)
            && let Some((id, mapped)) = stun::parse_binding_response(contents)
            && let Some(index) = session.stun.iter().position(|q| q.id == id && q.server == source)
        {
            let query = session.stun.remove(index);
            self.add_reflexive_candidate(query.peer, mapped, query.source, now);
            return;
        }
        let kind = if session.publisher.owns(destination) {
            PeerKind::Publisher
        } else if session.subscriber.owns(destination) {
            PeerKind::Subscriber
        } else {
            return;
        };
        let Ok(contents) = contents.try_into() else {
            trace!("datagram str0m cannot classify; ignored");
            return;
        };
        let input =
            Input::Receive(now, Receive { proto: Protocol::Udp, source, destination, contents });
        let peer = session.peer(kind);
        if !peer.rtc.accepts(&input) {
            trace!(?kind, %source, "datagram not for this peer connection");
            return;
        }
        if let Err(error) = peer.rtc.handle_input(input) {
            self.lost(format!("{kind:?} peer connection failed: {error}"));
            return;
        }
        self.drain(kind, now);
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
        let clock_base = self.clock_base;
        let Some(session) = self.session.as_mut() else { return };
        if session.signal_up
            && now.saturating_duration_since(session.last_message) >= session.ping_timeout
        {
            session.signal_up = false;
            let reason = format!("no message from the server for {:?}", session.ping_timeout);
            self.outputs.push_back(Output::Event(EngineEvent::ResumeNeeded(reason)));
            return;
        }
        if session.signal_up && now >= session.next_ping {
            session.next_ping = now + session.ping_interval;
            let ping = proto::Ping { timestamp: unix_ms(clock_base, now), rtt: session.rtt_ms };
            self.outputs.push_back(Output::Signal(signal_request::Message::PingReq(ping)));
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
        let due: Vec<Mid> = self
            .session
            .as_ref()
            .map(|s| {
                s.keyframe_retry.iter().filter(|(_, at)| **at <= now).map(|(m, _)| *m).collect()
            })
            .unwrap_or_default();
        for mid in due {
            self.request_keyframe_mid(mid, now);
        }
        let Some(session) = self.session.as_mut() else { return };
        let repeats: Vec<String> = session
            .keyframe_repeat
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(c, _)| c.clone())
            .collect();
        for cid in repeats {
            session.keyframe_repeat.remove(&cid);
            if session.publications.contains_key(&cid) {
                self.outputs.push_back(Output::Event(EngineEvent::KeyframeRequested { cid }));
            }
        }
    }

    fn handle_stun_timeouts(&mut self, now: Instant) {
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

    /// The next output, or the next deadline.
    pub(crate) fn poll_output(&mut self) -> Output {
        if let Some(output) = self.outputs.pop_front() {
            return output;
        }
        let Some(session) = self.session.as_ref() else {
            return Output::Timeout(far_future());
        };
        let mut deadline = if session.signal_up {
            session.next_ping.min(session.last_message + session.ping_timeout)
        } else {
            far_future()
        };
        deadline = deadline.min(session.publisher.timeout).min(session.subscriber.timeout);
        if !session.connected {
            deadline = deadline.min(session.started + MEDIA_CONNECT_TIMEOUT);
        }
        for peer in [&session.publisher, &session.subscriber] {
            if let Some(since) = peer.disconnected_since {
                deadline = deadline.min(since + ICE_DISCONNECTED_GRACE);
            }
        }
        if let Some(next) = session.keyframe_retry.values().min() {
            deadline = deadline.min(*next);
        }
        if let Some(next) = session.keyframe_repeat.values().min() {
            deadline = deadline.min(*next);
        }
        if let Some(next) = session.stun.iter().map(|q| q.next_send).min() {
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
                    // Frames written before were dropped, the first keyframe among them: start
                    // the stream on the wire with one, or subscribers wait for the server's
                    // rate-limited keyframe request.
                    let cids: Vec<String> = session
                        .publications
                        .iter()
                        .filter(|(_, p)| p.mid.is_some())
                        .filter(|(cid, _)| {
                            self.local_tracks.get(*cid).map(|t| t.options.kind())
                                == Some(TrackKind::Video)
                        })
                        .map(|(cid, _)| cid.clone())
                        .collect();
                    for cid in cids {
                        self.outputs
                            .push_back(Output::Event(EngineEvent::KeyframeRequested { cid }));
                    }
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
                let Some(track_sid) = session.sub_mid_tracks.get(&added.mid.to_string()).cloned()
                else {
                    debug!(mid = %added.mid, "remote media without a track id; ignored");
                    return;
                };
                session.pending_media.push((added.mid, track_sid));
                self.check_subscriptions();
                if added.kind == MediaKind::Video {
                    self.request_keyframe_mid(added.mid, now);
                }
            }
            Event::MediaChanged(changed) if kind == PeerKind::Subscriber => {
                if matches!(changed.direction, Direction::Inactive | Direction::SendOnly) {
                    let track = session
                        .subscribed
                        .iter()
                        .find(|(_, m)| **m == changed.mid)
                        .map(|(t, _)| t.clone());
                    if let Some(track_sid) = track {
                        session.subscribed.remove(&track_sid);
                        self.outputs
                            .push_back(Output::Event(EngineEvent::TrackUnsubscribed { track_sid }));
                    }
                }
            }
            Event::MediaData(data) => {
                let Some(codec) = codec_of(data.params.spec().codec) else { return };
                let Some(track_sid) = session
                    .subscribed
                    .iter()
                    .find(|(_, m)| **m == data.mid)
                    .map(|(t, _)| t.clone())
                else {
                    return;
                };
                let contiguous = data.contiguous;
                let mut frame = data.data.to_vec();
                let rtp_timestamp = data.time.numer();
                let encrypted = session.participants.track(&track_sid).filter(|i| i.encrypted);
                let injected =
                    !session.sif_trailer.is_empty() && frame.ends_with(&session.sif_trailer);
                if injected {
                    // The server's own frame (a blank keyframe while switching layers).
                    frame.truncate(frame.len() - session.sif_trailer.len());
                } else if let Some(info) = encrypted {
                    let Some(cryptor) = self.config.cryptor.as_ref() else {
                        trace!(%track_sid, "encrypted frame and no cryptor; dropped");
                        self.outputs.push_back(Output::Event(EngineEvent::FrameUndecryptable {
                            track_sid,
                        }));
                        return;
                    };
                    let context = FrameContext {
                        participant_identity: &info.participant_identity,
                        track_sid: &track_sid,
                        codec,
                        keyframe: false,
                        rtp_timestamp: rtp_timestamp as u32,
                        ssrc: 0,
                    };
                    if let Err(error) = cryptor.decrypt(&context, &mut frame) {
                        trace!(%track_sid, %error, "frame not decrypted; dropped");
                        self.outputs.push_back(Output::Event(EngineEvent::FrameUndecryptable {
                            track_sid,
                        }));
                        return;
                    }
                }
                let video_codec = match codec {
                    FrameCodec::Vp8 => VideoCodec::Vp8,
                    FrameCodec::H264 => VideoCodec::H264,
                    _ => {
                        let level = crate::track::level_from_rtp(
                            data.ext_vals.audio_level,
                            data.ext_vals.voice_activity,
                        );
                        trace!(%track_sid, contiguous, bytes = frame.len(), "remote audio");
                        self.outputs.push_back(Output::Event(EngineEvent::AudioFrame {
                            track_sid,
                            frame: RemoteAudioFrame {
                                data: frame,
                                rtp_timestamp,
                                level,
                                contiguous,
                            },
                        }));
                        return;
                    }
                };
                let keyframe = is_keyframe(video_codec, &frame);
                trace!(%track_sid, keyframe, contiguous, bytes = frame.len(), "remote frame");
                self.outputs.push_back(Output::Event(EngineEvent::Frame {
                    track_sid,
                    frame: RemoteVideoFrame {
                        codec: video_codec,
                        data: frame,
                        keyframe,
                        rtp_timestamp,
                        contiguous,
                    },
                }));
                if !contiguous {
                    self.request_keyframe_mid(data.mid, now);
                }
            }
            Event::KeyframeRequest(request) if kind == PeerKind::Publisher => {
                let cid = session
                    .publications
                    .iter()
                    .find(|(_, p)| p.mid == Some(request.mid))
                    .map(|(c, _)| c.clone());
                if let Some(cid) = cid {
                    debug!(%cid, kind = ?request.kind, "keyframe requested");
                    self.outputs.push_back(Output::Event(EngineEvent::KeyframeRequested { cid }));
                }
            }
            Event::EgressBitrateEstimate(BweKind::Twcc { estimate, .. }) => {
                trace!(bps = estimate.as_u64(), "bandwidth estimate");
                session.egress_estimate = Some(estimate.as_u64());
                self.allocate_bitrate();
            }
            Event::EgressBitrateEstimate(BweKind::Remb { estimate, mid }) => {
                trace!(%mid, bps = estimate.as_u64(), "REMB");
                if let Some(publication) =
                    session.publications.values_mut().find(|p| p.mid == Some(mid))
                {
                    publication.remb = Some(estimate.as_u64());
                }
                self.allocate_bitrate();
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

/// What the server needs to resynchronise after a resume: our latest subscriber answer, what we
/// are subscribed to and what we publish.
fn sync_state(session: &Session, local_tracks: &BTreeMap<String, LocalTrack>) -> proto::SyncState {
    let publish_tracks = session
        .publications
        .iter()
        .filter_map(|(cid, publication)| {
            let sid = publication.sid.clone()?;
            let r#type = match local_tracks.get(cid).map(|t| t.options.kind()) {
                Some(TrackKind::Audio) => proto::TrackType::Audio,
                _ => proto::TrackType::Video,
            };
            let track = proto::TrackInfo { sid, r#type: r#type as i32, ..Default::default() };
            Some(proto::TrackPublishedResponse { cid: cid.clone(), track: Some(track) })
        })
        .collect();
    proto::SyncState {
        answer: session.last_subscriber_answer.clone(),
        subscription: Some(proto::UpdateSubscription {
            track_sids: session.subscribed.keys().cloned().collect(),
            subscribe: true,
            ..Default::default()
        }),
        publish_tracks,
        ..Default::default()
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
        .set_stats_interval(None);
    if estimate_bandwidth {
        builder = builder.enable_bwe(Some(Bitrate::bps(INITIAL_BANDWIDTH_ESTIMATE)));
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

/// Milliseconds since the Unix epoch at `now`, from a fixed (Instant, SystemTime) pair.
fn unix_ms(base: (Instant, SystemTime), now: Instant) -> i64 {
    let wall = base.1 + now.saturating_duration_since(base.0);
    wall.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

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
