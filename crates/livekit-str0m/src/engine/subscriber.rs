//! The subscribing side of a session: remote tracks' media on the subscriber connection. The
//! server's offers and our answers, which m-line carries which track, subscriptions, keyframe
//! requests toward remote publishers, received media turned into (decrypted) frames, and the
//! `sync_state` that resynchronises the server after a resume.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use livekit_protocol as proto;
use proto::signal_request;
use str0m::change::SdpOffer;
use str0m::media::{
    Direction, KeyframeRequestKind, MediaAdded, MediaChanged, MediaData, MediaKind, Mid,
};
use tracing::{debug, trace, warn};

use super::peer::{PeerKind, sdp_track_ids};
use super::{
    Engine, EngineEvent, Output, ParticipantChange, codec_of, first_mid, sdp_error_for_log,
};
use crate::e2ee::{FrameCodec, FrameContext};
use crate::track::{RemoteAudioFrame, RemoteVideoFrame, VideoCodec, is_keyframe};

/// Keyframe requests toward a publisher, at most one per this interval per track.
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// The subscribing state of one session.
pub(super) struct Subscriptions {
    /// Subscriber mid → track sid, from the offers' msid lines.
    sub_mid_tracks: HashMap<String, String>,
    /// Subscribed track sid → its mid.
    pub(super) subscribed: HashMap<String, Mid>,
    /// Media whose track info has not arrived yet.
    pending_media: Vec<(Mid, String)>,
    last_keyframe_request: HashMap<Mid, Instant>,
    /// Keyframe requests held back by the rate limit, with when they may go.
    keyframe_retry: HashMap<Mid, Instant>,
    /// Send `sync_state` after answering the next subscriber offer (after a resume).
    pub(super) sync_state_due: bool,
    /// Our latest answer on the subscriber connection, for `sync_state`.
    last_subscriber_answer: Option<proto::SessionDescription>,
    /// What ends frames the server injects itself (never encrypted), from the join response.
    sif_trailer: Vec<u8>,
}

impl Subscriptions {
    pub(super) fn new(sif_trailer: Vec<u8>) -> Self {
        Self {
            sub_mid_tracks: HashMap::new(),
            subscribed: HashMap::new(),
            pending_media: Vec::new(),
            last_keyframe_request: HashMap::new(),
            keyframe_retry: HashMap::new(),
            sync_state_due: false,
            last_subscriber_answer: None,
            sif_trailer,
        }
    }

    /// When the next held-back keyframe request may go.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        self.keyframe_retry.values().min().copied()
    }

    /// The subscribed track whose media is at `mid`.
    fn track_at(&self, mid: Mid) -> Option<String> {
        self.subscribed.iter().find(|(_, m)| **m == mid).map(|(t, _)| t.clone())
    }
}

impl Engine {
    /// Subscribes to or unsubscribes from a remote track (for `auto_subscribe: false`).
    pub(crate) fn set_subscribed(&mut self, track_sid: &str, subscribe: bool) {
        let Some(session) = self.session.as_mut() else { return };
        // The subscription ends now, whatever the server does with its m-line (with one peer
        // connection it may not renegotiate at all).
        if !subscribe && session.subscriptions.subscribed.remove(track_sid).is_some() {
            self.outputs.push_back(Output::Event(EngineEvent::TrackUnsubscribed {
                track_sid: track_sid.to_owned(),
            }));
        }
        self.outputs.push_back(Output::Signal(signal_request::Message::Subscription(
            proto::UpdateSubscription {
                track_sids: vec![track_sid.to_owned()],
                subscribe,
                ..Default::default()
            },
        )));
    }

    /// Asks the publisher of a subscribed track for a keyframe.
    pub(crate) fn request_keyframe(&mut self, track_sid: &str, now: Instant) {
        let Some(mid) =
            self.session.as_ref().and_then(|s| s.subscriptions.subscribed.get(track_sid).copied())
        else {
            return;
        };
        self.request_keyframe_mid(mid, now);
    }

    pub(super) fn request_keyframe_mid(&mut self, mid: Mid, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        if let Some(last) = session.subscriptions.last_keyframe_request.get(&mid) {
            let next = *last + KEYFRAME_REQUEST_INTERVAL;
            if now < next {
                // Too soon after the last one: send it when the interval is over.
                session.subscriptions.keyframe_retry.entry(mid).or_insert(next);
                return;
            }
        }
        session.subscriptions.keyframe_retry.remove(&mid);
        session.subscriptions.last_keyframe_request.insert(mid, now);
        let media_peer = session.media_peer();
        match session.peer(media_peer).rtc.writer(mid) {
            Some(mut writer) if writer.is_request_keyframe_possible(KeyframeRequestKind::Pli) => {
                match writer.request_keyframe(None, KeyframeRequestKind::Pli) {
                    Ok(()) => debug!(%mid, "keyframe requested from the publisher"),
                    Err(error) => debug!(%mid, %error, "keyframe request failed"),
                }
            }
            _ => debug!(%mid, "no keyframe request possible on this media"),
        }
        self.drain(media_peer, now);
    }

    /// The server's offer on the subscriber connection: answer it.
    pub(super) fn handle_subscriber_offer(
        &mut self,
        offer: proto::SessionDescription,
        now: Instant,
    ) {
        let Some(session) = self.session.as_mut() else { return };
        if session.single_pc {
            // With one peer connection we offer, never the server.
            warn!(id = offer.id, "a server offer on a single peer connection; ignored");
            return;
        }
        let parsed = match SdpOffer::from_sdp_string(&offer.sdp) {
            Ok(parsed) => parsed,
            Err(error) => {
                let error = sdp_error_for_log(&error, &offer.sdp);
                warn!(%error, "the server's offer is not valid SDP; ignored");
                return;
            }
        };
        for (mid, track) in sdp_track_ids(&offer.sdp) {
            session.subscriptions.sub_mid_tracks.insert(mid, track);
        }
        for (mid, track) in &offer.mid_to_track_id {
            session.subscriptions.sub_mid_tracks.insert(mid.clone(), track.clone());
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
        session.subscriptions.last_subscriber_answer = Some(answer.clone());
        self.outputs.push_back(Output::Signal(signal_request::Message::Answer(answer)));
        let sync_state_due = std::mem::take(&mut session.subscriptions.sync_state_due);
        let queued = std::mem::take(&mut session.subscriber.pending_remote);
        for candidate in queued {
            session.subscriber.rtc.add_remote_candidate(candidate);
        }
        if sync_state_due {
            let state = self.sync_state();
            self.outputs.push_back(Output::Signal(signal_request::Message::SyncState(state)));
        }
        self.flush_local_candidates(PeerKind::Subscriber);
        self.drain(PeerKind::Subscriber, now);
        self.check_subscriptions();
    }

    /// The server's participant updates; remote tracks that went away are unsubscribed.
    pub(super) fn handle_participants(
        &mut self,
        infos: Vec<proto::ParticipantInfo>,
        _now: Instant,
    ) {
        let Some(session) = self.session.as_mut() else { return };
        let changes = session.participants.update(infos);
        for change in changes {
            if let ParticipantChange::TrackUnpublished(info) = &change
                && session.subscriptions.subscribed.remove(&info.track_sid).is_some()
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
    pub(super) fn check_subscriptions(&mut self) {
        let Some(session) = self.session.as_mut() else { return };
        let pending = std::mem::take(&mut session.subscriptions.pending_media);
        for (mid, track_sid) in pending {
            match session.participants.track(&track_sid) {
                Some(info) => {
                    session.subscriptions.subscribed.insert(track_sid, mid);
                    self.outputs.push_back(Output::Event(EngineEvent::TrackSubscribed(info)));
                }
                None => session.subscriptions.pending_media.push((mid, track_sid)),
            }
        }
    }

    /// Sends the keyframe requests the rate limit held back, once due.
    pub(super) fn handle_keyframe_retries(&mut self, now: Instant) {
        let due: Vec<Mid> = self
            .session
            .as_ref()
            .map(|s| {
                s.subscriptions
                    .keyframe_retry
                    .iter()
                    .filter(|(_, at)| **at <= now)
                    .map(|(m, _)| *m)
                    .collect()
            })
            .unwrap_or_default();
        for mid in due {
            self.request_keyframe_mid(mid, now);
        }
    }

    /// New media on the subscriber connection: a subscription once its track is known.
    pub(super) fn handle_media_added(&mut self, added: MediaAdded, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        let Some(track_sid) =
            session.subscriptions.sub_mid_tracks.get(&added.mid.to_string()).cloned()
        else {
            debug!(mid = %added.mid, "remote media without a track id; ignored");
            return;
        };
        session.subscriptions.pending_media.push((added.mid, track_sid));
        self.check_subscriptions();
        if added.kind == MediaKind::Video {
            self.request_keyframe_mid(added.mid, now);
        }
    }

    /// Media on the subscriber connection changed direction: stopped media ends its subscription.
    pub(super) fn handle_media_changed(&mut self, changed: MediaChanged) {
        let Some(session) = self.session.as_mut() else { return };
        if matches!(changed.direction, Direction::Inactive | Direction::SendOnly)
            && let Some(track_sid) = session.subscriptions.track_at(changed.mid)
        {
            session.subscriptions.subscribed.remove(&track_sid);
            self.outputs.push_back(Output::Event(EngineEvent::TrackUnsubscribed { track_sid }));
        }
    }

    /// A received frame of a subscribed track: decrypted (or its server trailer cut) and emitted.
    pub(super) fn handle_media_data(&mut self, data: MediaData, now: Instant) {
        let Some(session) = self.session.as_mut() else { return };
        let Some(codec) = codec_of(data.params.spec().codec) else { return };
        let Some(track_sid) = session.subscriptions.track_at(data.mid) else { return };
        let contiguous = data.contiguous;
        let mut frame = data.data.to_vec();
        let rtp_timestamp = data.time.numer();
        let encrypted = session.participants.track(&track_sid).filter(|i| i.encrypted);
        let injected = !session.subscriptions.sif_trailer.is_empty()
            && frame.ends_with(&session.subscriptions.sif_trailer);
        if injected {
            // The server's own frame (a blank keyframe while switching layers).
            frame.truncate(frame.len() - session.subscriptions.sif_trailer.len());
        } else if let Some(info) = encrypted {
            let Some(cryptor) = self.config.cryptor.as_ref() else {
                trace!(%track_sid, "encrypted frame and no cryptor; dropped");
                self.outputs
                    .push_back(Output::Event(EngineEvent::FrameUndecryptable { track_sid }));
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
                self.outputs
                    .push_back(Output::Event(EngineEvent::FrameUndecryptable { track_sid }));
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
                    frame: RemoteAudioFrame { data: frame, rtp_timestamp, level, contiguous },
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

    /// Single peer connection: the server's answer bound remote tracks to our receive-only
    /// m-lines (`mid_to_track_id`). A track on a new m-line becomes a subscription once its
    /// info is known; an m-line given to another track ends the old subscription.
    pub(super) fn bind_received_media(
        &mut self,
        mid_to_track: &HashMap<String, String>,
        now: Instant,
    ) {
        let Some(session) = self.session.as_mut() else { return };
        let mut bound = Vec::new();
        for (mid, track_sid) in mid_to_track {
            let mid = Mid::from(mid.as_str());
            if !session.publishing.is_receiving(mid)
                || session.subscriptions.subscribed.get(track_sid) == Some(&mid)
                || session.subscriptions.pending_media.contains(&(mid, track_sid.clone()))
            {
                continue;
            }
            if let Some(previous) = session.subscriptions.track_at(mid) {
                session.subscriptions.subscribed.remove(&previous);
                self.outputs.push_back(Output::Event(EngineEvent::TrackUnsubscribed {
                    track_sid: previous,
                }));
            }
            session.subscriptions.pending_media.push((mid, track_sid.clone()));
            bound.push(mid);
        }
        self.check_subscriptions();
        // Video starts with a keyframe (audio m-lines cannot ask; the request is skipped).
        for mid in bound {
            self.request_keyframe_mid(mid, now);
        }
    }

    /// What the server needs to resynchronise after a resume: the latest descriptions, what we
    /// are subscribed to and what we publish. With two peer connections that is our latest
    /// subscriber answer; with one, the publisher connection's latest offer and answer.
    pub(super) fn sync_state(&self) -> proto::SyncState {
        let Some(session) = self.session.as_ref() else { return proto::SyncState::default() };
        let (offer, answer) = if session.single_pc {
            session.publishing.last_descriptions()
        } else {
            (None, session.subscriptions.last_subscriber_answer.clone())
        };
        proto::SyncState {
            offer,
            answer,
            subscription: Some(proto::UpdateSubscription {
                track_sids: session.subscriptions.subscribed.keys().cloned().collect(),
                subscribe: true,
                ..Default::default()
            }),
            publish_tracks: self.published_tracks(),
            ..Default::default()
        }
    }
}
