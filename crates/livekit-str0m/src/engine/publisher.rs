//! The publishing side of a session: the application's local tracks (which outlive sessions),
//! their publications in the current session, the publisher connection's offers and answers,
//! frames written to it, the share of its bandwidth estimate each track gets, and keyframes for
//! new subscribers.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use proto::signal_request;
use str0m::bwe::Bitrate;
use str0m::change::{SdpAnswer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid};
use tracing::{debug, info, trace, warn};

use super::peer::PeerKind;
use super::{Engine, EngineEvent, Output, codec_of, first_mid, sdp_error_for_log};
use crate::e2ee::{FrameCodec, FrameContext};
use crate::track::{LocalTrackOptions, OutgoingFrame, TrackKind};

/// Receive-only m-lines one peer connection keeps at most (single peer connection): a
/// server asking for more is broken or hostile.
const MAX_RECEIVING: u32 = 256;

/// When a new subscriber's keyframe is repeated. The server forwards the first one as soon as it
/// binds the subscription, often before the subscriber's browser has the receiver that decodes
/// it, and then rate-limits the browser's own requests (~0.7 s measured against LiveKit 1.13).
pub(super) const SUBSCRIBER_KEYFRAME_REPEAT: Duration = Duration::from_millis(250);
/// Keyframes after the key our video is encrypted with changed, counted from the first frame
/// with the new key. A subscriber that gets the key late drops the frames it cannot decrypt, and
/// its decoder then has lost its reference: a browser asks for a keyframe itself only after 3 s
/// without a decodable frame (measured with Element Call: 3.0-3.6 s still pictures when a key
/// arrived a second late). With these, the picture resumes within half a second of the key's
/// arrival for as long as a browser would wait.
pub(super) const KEY_CHANGE_KEYFRAMES: [Duration; 5] = [
    Duration::from_millis(500),
    Duration::from_millis(1000),
    Duration::from_millis(1500),
    Duration::from_millis(2000),
    Duration::from_millis(2500),
];
/// The lowest bitrate handed to a video encoder, whatever the estimate says.
pub(super) const MIN_TRACK_BITRATE: u32 = 100_000;

/// A local track the application published; it survives reconnects.
#[derive(Debug, Clone)]
pub(super) struct LocalTrack {
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
    /// The index of the key its last frame was encrypted with (encrypted tracks).
    key_index: Option<u8>,
}

/// The publishing state of one session.
pub(super) struct Publishing {
    next_offer_id: u32,
    pending_offer: Option<(u32, SdpPendingOffer)>,
    /// Publisher m-lines to stop in the next offer.
    mids_to_stop: Vec<Mid>,
    /// A data channel is wanted in the next offer (publisher-primary sessions).
    want_channel: bool,
    /// The publisher connection has a data channel (an m-line that is never stopped).
    publisher_channel: bool,
    /// Local track cid → its publication.
    publications: HashMap<String, Publication>,
    /// Keyframes asked for later (by cid, in time order): a new subscriber's again, and those
    /// after a key change.
    keyframes_due: HashMap<String, Vec<Instant>>,
    /// The next publisher offer restarts ICE.
    ice_restart: bool,
    /// The publisher connection's bandwidth estimate (TWCC), bits per second.
    egress_estimate: Option<u64>,
    /// Single peer connection: receive-only m-lines the server asked for and the next offer
    /// adds (audio, video).
    receive_wanted: (u32, u32),
    /// Single peer connection: the server needs a new offer even without new m-lines (it bound
    /// a track to an m-line we have).
    renegotiate: bool,
    /// Single peer connection: our receive-only m-lines.
    receiving: HashSet<Mid>,
    /// The latest offer and the answer to it (for `sync_state` with one peer connection).
    last_offer: Option<proto::SessionDescription>,
    last_answer: Option<proto::SessionDescription>,
}

impl Publishing {
    /// `want_channel`: the first offer carries a data channel (publisher-primary sessions).
    pub(super) fn new(want_channel: bool) -> Self {
        Self {
            next_offer_id: 1,
            pending_offer: None,
            mids_to_stop: Vec::new(),
            want_channel,
            publisher_channel: false,
            publications: HashMap::new(),
            keyframes_due: HashMap::new(),
            ice_restart: false,
            egress_estimate: None,
            receive_wanted: (0, 0),
            renegotiate: false,
            receiving: HashSet::new(),
            last_offer: None,
            last_answer: None,
        }
    }

    /// Receive-only m-lines offered or still to offer.
    #[cfg(test)]
    pub(super) fn receive_lines(&self) -> usize {
        self.receiving.len() + (self.receive_wanted.0 + self.receive_wanted.1) as usize
    }

    /// Whether `mid` is one of our receive-only m-lines (single peer connection).
    pub(super) fn is_receiving(&self, mid: Mid) -> bool {
        self.receiving.contains(&mid)
    }

    /// The latest offer and its answer.
    pub(super) fn last_descriptions(
        &self,
    ) -> (Option<proto::SessionDescription>, Option<proto::SessionDescription>) {
        (self.last_offer.clone(), self.last_answer.clone())
    }

    /// An offer awaits the server's answer.
    pub(super) fn offer_pending(&self) -> bool {
        self.pending_offer.is_some()
    }

    /// After a resume: forget the unanswered offer; the next one restarts ICE if asked.
    pub(super) fn resume(&mut self, ice_restart: bool) {
        self.pending_offer = None;
        self.ice_restart = ice_restart;
    }

    /// When the next keyframe asked for later is due.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.keyframes_due.values().filter_map(|due| due.first()).min().copied()
    }

    /// Asks for keyframes of the track `cid` at these times.
    fn schedule_keyframes(&mut self, cid: &str, at: impl IntoIterator<Item = Instant>) {
        let due = self.keyframes_due.entry(cid.to_owned()).or_default();
        due.extend(at);
        due.sort_unstable();
        due.dedup();
    }

    /// The cid of the local track the server knows as `sid`.
    fn cid_of_sid(&self, sid: &str) -> Option<String> {
        self.publications
            .iter()
            .find(|(_, p)| p.sid.as_deref() == Some(sid))
            .map(|(c, _)| c.clone())
    }
}

impl Engine {
    /// Announces a new local track; frames can be written once the server confirmed it.
    pub(crate) fn add_track(&mut self, cid: String, options: LocalTrackOptions) {
        self.local_tracks.insert(cid.clone(), LocalTrack { options, muted: false });
        self.send_add_track(&cid);
    }

    pub(super) fn send_add_track(&mut self, cid: &str) {
        let (Some(track), Some(session)) = (self.local_tracks.get(cid), self.session.as_mut())
        else {
            return;
        };
        session.publishing.publications.insert(cid.to_owned(), Publication::default());
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
        if let Some(mid) = session.publishing.publications.remove(cid).and_then(|p| p.mid) {
            session.publishing.mids_to_stop.push(mid);
            self.update_desired_bitrate();
            self.allocate_bitrate();
            self.negotiate_publisher(now);
        }
    }

    /// Mutes or unmutes a local track.
    pub(crate) fn set_muted(&mut self, cid: &str, muted: bool) {
        let Some(track) = self.local_tracks.get_mut(cid) else { return };
        track.muted = muted;
        let sid = self
            .session
            .as_ref()
            .and_then(|s| s.publishing.publications.get(cid))
            .and_then(|p| p.sid.clone());
        if let Some(sid) = sid {
            self.outputs.push_back(Output::Signal(signal_request::Message::Mute(
                proto::MuteTrackRequest { sid, muted },
            )));
        }
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
        let Some(publication) = session.publishing.publications.get(cid) else { return false };
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
            if codec != FrameCodec::Opus {
                let index = cryptor.encryption_key_index(&session.identity);
                let publishing = &mut session.publishing;
                let previous = publishing
                    .publications
                    .get_mut(cid)
                    .and_then(|p| std::mem::replace(&mut p.key_index, index));
                if previous.is_some() && index.is_some() && previous != index {
                    debug!(cid, ?previous, ?index, "our key changed: keyframes follow");
                    publishing
                        .schedule_keyframes(cid, KEY_CHANGE_KEYFRAMES.map(|after| now + after));
                }
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

    /// Shares the publisher's bandwidth estimate among the published video tracks (audio keeps
    /// its fixed rate) in proportion to their maximum bitrates (each capped at its maximum and at the server's
    /// REMB for it), and announces targets that changed by more than 5 %.
    fn allocate_bitrate(&mut self) {
        let Some(session) = self.session.as_mut() else { return };
        let Some(estimate) = session.publishing.egress_estimate else { return };
        let tracks: Vec<(&String, u32)> = session
            .publishing
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
            let remb =
                session.publishing.publications.get(cid).and_then(|p| p.remb).unwrap_or(u64::MAX);
            let target = share.min(remb).min(u64::from(max)).max(u64::from(MIN_TRACK_BITRATE));
            targets.push((cid.clone(), u32::try_from(target).unwrap_or(u32::MAX)));
        }
        for (cid, target) in targets {
            let Some(publication) = session.publishing.publications.get_mut(&cid) else { continue };
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
            .publishing
            .publications
            .keys()
            .filter_map(|cid| self.local_tracks.get(cid))
            .map(|t| u64::from(t.options.max_bitrate()))
            .sum();
        session.publisher.rtc.bwe().set_bitrate(Bitrate::ZERO, Bitrate::bps(desired));
    }

    /// A subscriber started (or stopped) receiving a local track (`new_subscriber`: one more
    /// subscriber, which the server announces whether or not others watch already). Starting gets a
    /// keyframe at once and again shortly after, as a browser's encoder makes one when the server
    /// enables a layer: the server's own keyframe requests are rate-limited, and a subscriber would
    /// wait for them.
    pub(super) fn subscribers_changed(
        &mut self,
        track_sid: &str,
        watched: bool,
        new_subscriber: bool,
        now: Instant,
    ) {
        let Some(session) = self.session.as_mut() else { return };
        let Some((cid, publication)) = session
            .publishing
            .publications
            .iter_mut()
            .find(|(_, p)| p.sid.as_deref() == Some(track_sid))
        else {
            return;
        };
        let started = watched && (new_subscriber || !publication.watched);
        publication.watched = watched;
        debug!(%cid, watched, new_subscriber, "subscribers of a local track");
        let video = self.local_tracks.get(cid).map(|t| t.options.kind()) == Some(TrackKind::Video);
        if started && video {
            let cid = cid.clone();
            session.publishing.schedule_keyframes(&cid, [now + SUBSCRIBER_KEYFRAME_REPEAT]);
            self.outputs.push_back(Output::Event(EngineEvent::KeyframeRequested { cid }));
        }
    }

    /// The server confirmed a local track: negotiate its media.
    pub(super) fn handle_track_published(
        &mut self,
        published: proto::TrackPublishedResponse,
        now: Instant,
    ) {
        let track = published.track.unwrap_or_default();
        info!(cid = %published.cid, sid = %track.sid, mime = %track.mime_type, "track published");
        let (cid, sid) = (published.cid, track.sid);
        let Some(session) = self.session.as_mut() else { return };
        let Some(publication) = session.publishing.publications.get_mut(&cid) else {
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

    pub(super) fn negotiate_publisher(&mut self, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        if session.publishing.pending_offer.is_some() {
            // One offer at a time; the answer triggers the next round.
            return;
        }
        // str0m stages changes in the `SdpApi` value, so every round builds all of them.
        let mut api = session.publisher.rtc.sdp_api();
        let mut added = Vec::new();
        for (cid, publication) in &session.publishing.publications {
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
        let stopping = !session.publishing.mids_to_stop.is_empty();
        for mid in session.publishing.mids_to_stop.drain(..) {
            api.stop_media(mid);
        }
        // Stopping the last media would leave no m-line in use, and LiveKit then answers without
        // a BUNDLE group, which str0m refuses: keep a data channel in the session instead, as
        // livekit-client always has one.
        let media_left =
            session.publishing.publications.values().any(|p| p.mid.is_some()) || !added.is_empty();
        if stopping && !media_left && !session.publishing.publisher_channel {
            session.publishing.want_channel = true;
        }
        if std::mem::take(&mut session.publishing.want_channel) {
            api.add_channel("_reliable".into());
            session.publishing.publisher_channel = true;
        }
        let (audios, mut videos) = std::mem::take(&mut session.publishing.receive_wanted);
        if std::mem::take(&mut session.publishing.renegotiate)
            && !api.has_changes()
            && audios + videos == 0
            && added.is_empty()
        {
            // str0m offers only when something changed: a spare receive-only m-line is the
            // cheapest change (an ICE restart would disturb media), within the cap.
            if session.publishing.receiving.len() < MAX_RECEIVING as usize {
                videos = 1;
            } else {
                api.ice_restart(true);
            }
        }
        let mut receiving = Vec::new();
        for (kind, count) in [(MediaKind::Audio, audios), (MediaKind::Video, videos)] {
            for _ in 0..count {
                receiving.push(api.add_media(kind, Direction::RecvOnly, None, None, None));
            }
        }
        if std::mem::take(&mut session.publishing.ice_restart) {
            api.ice_restart(true);
        }
        let Some((offer, pending)) = api.apply() else { return };
        session.publishing.receiving.extend(receiving);
        for (cid, mid) in added {
            if let Some(publication) = session.publishing.publications.get_mut(&cid) {
                publication.mid = Some(mid);
            }
        }
        let id = session.publishing.next_offer_id;
        session.publishing.next_offer_id += 1;
        let sdp = offer.to_sdp_string();
        if session.publisher.first_mid.is_none() {
            session.publisher.first_mid = first_mid(&sdp);
        }
        session.publishing.pending_offer = Some((id, pending));
        debug!(id, "publisher offer");
        let offer =
            proto::SessionDescription { r#type: "offer".into(), sdp, id, ..Default::default() };
        session.publishing.last_offer = Some(offer.clone());
        self.outputs.push_back(Output::Signal(signal_request::Message::Offer(offer)));
        self.flush_local_candidates(PeerKind::Publisher);
        self.drain(PeerKind::Publisher, now);
    }

    pub(super) fn handle_publisher_answer(
        &mut self,
        answer: proto::SessionDescription,
        now: Instant,
    ) {
        let Some(session) = self.session.as_mut() else { return };
        let Some((id, pending)) = session.publishing.pending_offer.take() else {
            debug!("answer without a pending offer; ignored");
            return;
        };
        if answer.id != 0 && answer.id != id {
            debug!(answer.id, id, "answer to an older offer; ignored");
            session.publishing.pending_offer = Some((id, pending));
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
        let single_pc = session.single_pc;
        let sync_state_due = single_pc && std::mem::take(&mut session.subscriptions.sync_state_due);
        let mid_to_track = answer.mid_to_track_id.clone();
        session.publishing.last_answer = Some(answer);
        if single_pc {
            self.bind_received_media(&mid_to_track, now);
        }
        if sync_state_due {
            let state = self.sync_state();
            self.outputs.push_back(Output::Signal(signal_request::Message::SyncState(state)));
        }
        self.update_desired_bitrate();
        self.allocate_bitrate();
        self.drain(PeerKind::Publisher, now);
        self.negotiate_publisher(now);
    }

    /// Single peer connection: the server has tracks for us and asks for receive-only m-lines
    /// to send them on; the next offer adds them.
    pub(super) fn handle_media_sections(
        &mut self,
        wanted: proto::MediaSectionsRequirement,
        now: Instant,
    ) {
        let Some(session) = self.session.as_mut() else { return };
        if !session.single_pc {
            debug!("media sections asked for on two peer connections; ignored");
            return;
        }
        let publishing = &mut session.publishing;
        let (audios, videos) = &mut publishing.receive_wanted;
        let room =
            MAX_RECEIVING.saturating_sub(publishing.receiving.len() as u32 + *audios + *videos);
        let (more_audios, more_videos) = (
            wanted.num_audios.min(room),
            wanted.num_videos.min(room - wanted.num_audios.min(room)),
        );
        if (more_audios, more_videos) != (wanted.num_audios, wanted.num_videos) {
            warn!(
                audios = wanted.num_audios,
                videos = wanted.num_videos,
                "the server asks for more receive m-lines than we keep; capped at {MAX_RECEIVING}"
            );
        }
        *audios += more_audios;
        *videos += more_videos;
        publishing.renegotiate = true;
        debug!(audios = more_audios, videos = more_videos, "receive m-lines asked for");
        self.negotiate_publisher(now);
    }

    /// The server unpublished one of our tracks.
    pub(super) fn handle_track_unpublished(&mut self, track_sid: &str, now: Instant) {
        let Some(session) = self.session.as_ref() else { return };
        if let Some(cid) = session.publishing.cid_of_sid(track_sid) {
            info!(%cid, "the server unpublished our track");
            self.remove_track(&cid, now);
            self.outputs.push_back(Output::Event(EngineEvent::LocalTrackClosed { cid }));
        }
    }

    /// Which layers of a local track subscribers receive.
    pub(super) fn handle_subscribed_quality(
        &mut self,
        update: proto::SubscribedQualityUpdate,
        now: Instant,
    ) {
        // Servers fill the per-codec list; older ones only the deprecated flat one.
        #[allow(deprecated)]
        let watched = update.subscribed_qualities.iter().any(|q| q.enabled)
            || update.subscribed_codecs.iter().flat_map(|c| &c.qualities).any(|q| q.enabled);
        self.subscribers_changed(&update.track_sid, watched, false, now);
    }

    /// The server asks to mute or unmute one of our tracks.
    pub(super) fn handle_server_mute(&mut self, mute: proto::MuteTrackRequest) {
        debug!(sid = %mute.sid, muted = mute.muted, "the server asks to change a track's mute state");
        let Some(session) = self.session.as_ref() else { return };
        if let Some(cid) = session.publishing.cid_of_sid(&mute.sid) {
            self.set_muted(&cid, mute.muted);
        }
    }

    /// The server refused to publish a local track: forget it.
    pub(super) fn track_refused(&mut self, cid: String, reason: String) {
        let Some(session) = self.session.as_mut() else { return };
        session.publishing.publications.remove(&cid);
        self.local_tracks.remove(&cid);
        self.outputs.push_back(Output::Event(EngineEvent::LocalTrackRefused { cid, reason }));
    }

    /// The publisher connection came up. Frames written before were dropped, the first keyframe
    /// among them: start the stream on the wire with one, or subscribers wait for the server's
    /// rate-limited keyframe request.
    pub(super) fn publisher_connected(&mut self) {
        let Some(session) = self.session.as_ref() else { return };
        let cids: Vec<String> = session
            .publishing
            .publications
            .iter()
            .filter(|(_, p)| p.mid.is_some())
            .filter(|(cid, _)| {
                self.local_tracks.get(*cid).map(|t| t.options.kind()) == Some(TrackKind::Video)
            })
            .map(|(cid, _)| cid.clone())
            .collect();
        for cid in cids {
            self.outputs.push_back(Output::Event(EngineEvent::KeyframeRequested { cid }));
        }
    }

    /// A subscriber (through the server) asks for a keyframe of the media at `mid`.
    pub(super) fn handle_keyframe_request(&mut self, request: str0m::media::KeyframeRequest) {
        let Some(session) = self.session.as_ref() else { return };
        let cid = session
            .publishing
            .publications
            .iter()
            .find(|(_, p)| p.mid == Some(request.mid))
            .map(|(c, _)| c.clone());
        if let Some(cid) = cid {
            debug!(%cid, kind = ?request.kind, "keyframe requested");
            self.outputs.push_back(Output::Event(EngineEvent::KeyframeRequested { cid }));
        }
    }

    /// The publisher connection's bandwidth estimate (TWCC) changed.
    pub(super) fn handle_egress_estimate(&mut self, bits_per_second: u64) {
        trace!(bps = bits_per_second, "bandwidth estimate");
        let Some(session) = self.session.as_mut() else { return };
        session.publishing.egress_estimate = Some(bits_per_second);
        self.allocate_bitrate();
    }

    /// The server's REMB for the media at `mid`.
    pub(super) fn handle_remb(&mut self, mid: Mid, bits_per_second: u64) {
        trace!(%mid, bps = bits_per_second, "REMB");
        let Some(session) = self.session.as_mut() else { return };
        if let Some(publication) =
            session.publishing.publications.values_mut().find(|p| p.mid == Some(mid))
        {
            publication.remb = Some(bits_per_second);
        }
        self.allocate_bitrate();
    }

    /// Asks for the keyframes that are due (one per track, however many fell due).
    pub(super) fn handle_scheduled_keyframes(&mut self, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        let publishing = &mut session.publishing;
        let mut due = Vec::new();
        publishing.keyframes_due.retain(|cid, times| {
            let passed = times.partition_point(|at| *at <= now);
            if passed > 0 {
                times.drain(..passed);
                due.push(cid.clone());
            }
            !times.is_empty()
        });
        for cid in due {
            if publishing.publications.contains_key(&cid) {
                self.outputs.push_back(Output::Event(EngineEvent::KeyframeRequested { cid }));
            }
        }
    }

    /// The published tracks as `sync_state` lists them after a resume.
    pub(super) fn published_tracks(&self) -> Vec<proto::TrackPublishedResponse> {
        let Some(session) = self.session.as_ref() else { return Vec::new() };
        session
            .publishing
            .publications
            .iter()
            .filter_map(|(cid, publication)| {
                let sid = publication.sid.clone()?;
                let r#type = match self.local_tracks.get(cid).map(|t| t.options.kind()) {
                    Some(TrackKind::Audio) => proto::TrackType::Audio,
                    _ => proto::TrackType::Video,
                };
                let track = proto::TrackInfo { sid, r#type: r#type as i32, ..Default::default() };
                Some(proto::TrackPublishedResponse { cid: cid.clone(), track: Some(track) })
            })
            .collect()
    }
}
