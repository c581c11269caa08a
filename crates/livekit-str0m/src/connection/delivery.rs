//! Where media and track state meet the application: the channels of subscribed tracks (with
//! the policy for a reader that does not keep up), the state local track handles share, and the
//! publish requests waiting for the server.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use crate::error::PublishError;
use crate::track::{
    Incoming, LocalTrackShared, RemoteAudioFrame, RemoteAudioTrack, RemoteTrack, RemoteTrackInfo,
    RemoteVideoFrame, RemoteVideoTrack, TrackKind, TrackRequest,
};

/// Frames a remote video track buffers before new ones are dropped.
pub(crate) const REMOTE_FRAME_BUFFER: usize = 60;
/// Packets a remote audio track buffers before new ones are dropped (one second of 20 ms
/// packets: a reader that falls further behind hears a gap, not an ever-growing delay).
pub(crate) const REMOTE_AUDIO_BUFFER: usize = 50;
/// How long the server may take to confirm a published track.
pub(crate) const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

type PublishReply = oneshot::Sender<Result<String, PublishError>>;

/// Remote track channels, local track state, pending publications.
#[derive(Default)]
pub(crate) struct Delivery {
    local: HashMap<String, Arc<LocalTrackShared>>,
    pending_publish: HashMap<String, (PublishReply, Instant)>,
    video: HashMap<String, mpsc::Sender<RemoteVideoFrame>>,
    audio: HashMap<String, mpsc::Sender<RemoteAudioFrame>>,
    /// Frames of each subscribed track that did not decrypt.
    undecryptable: HashMap<String, Arc<AtomicU64>>,
    /// Remote tracks that lost frames here: the next frame delivered is marked non-contiguous.
    dropped: HashSet<String>,
    /// Remote video tracks whose decoder lost frames here and needs a keyframe.
    awaiting_keyframe: HashSet<String>,
}

impl Delivery {
    // ------------------------------------------------------------------ local tracks

    pub(crate) fn publish_requested(
        &mut self,
        cid: String,
        shared: Arc<LocalTrackShared>,
        reply: PublishReply,
        now: Instant,
    ) {
        self.local.insert(cid.clone(), shared);
        self.pending_publish.insert(cid, (reply, now));
    }

    pub(crate) fn published(&mut self, cid: &str, sid: String) {
        if let Some(shared) = self.local.get(cid) {
            *shared.sid.lock().unwrap_or_else(|e| e.into_inner()) = Some(sid.clone());
            // A fresh publication starts with a keyframe.
            shared.keyframe_requested.store(true, Ordering::Release);
        }
        if let Some((reply, _)) = self.pending_publish.remove(cid) {
            let _ = reply.send(Ok(sid));
        }
    }

    pub(crate) fn refused(&mut self, cid: &str, reason: String) {
        self.closed(cid);
        if let Some((reply, _)) = self.pending_publish.remove(cid) {
            let _ = reply.send(Err(PublishError::Refused(reason)));
        }
    }

    /// The track is gone (unpublished by us or by the server): its handles refuse writes.
    pub(crate) fn closed(&mut self, cid: &str) {
        if let Some(shared) = self.local.remove(cid) {
            shared.closed.store(true, Ordering::Release);
        }
    }

    pub(crate) fn frame_sent(&self, cid: &str) {
        if let Some(shared) = self.local.get(cid) {
            shared.frames_sent.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn set_bitrate(&self, cid: &str, bits_per_second: u32) {
        if let Some(shared) = self.local.get(cid) {
            shared.target_bitrate.store(bits_per_second, Ordering::Release);
        }
    }

    pub(crate) fn keyframe_requested(&self, cid: &str) {
        if let Some(shared) = self.local.get(cid) {
            shared.keyframe_requested.store(true, Ordering::Release);
        }
    }

    /// Fails publish requests the server left unanswered for [`PUBLISH_TIMEOUT`].
    pub(crate) fn expire_publish_requests(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .pending_publish
            .iter()
            .filter(|(_, (_, at))| now.saturating_duration_since(*at) >= PUBLISH_TIMEOUT)
            .map(|(cid, _)| cid.clone())
            .collect();
        for cid in expired {
            if let Some((reply, _)) = self.pending_publish.remove(&cid) {
                let _ = reply.send(Err(PublishError::Timeout(PUBLISH_TIMEOUT)));
            }
        }
    }

    /// When the oldest publish request expires.
    pub(crate) fn next_publish_expiry(&self) -> Option<Instant> {
        self.pending_publish.values().map(|(_, at)| *at + PUBLISH_TIMEOUT).min()
    }

    /// The room is closed: every waiting publish fails.
    pub(crate) fn fail_pending(&mut self) {
        for (_, (reply, _)) in self.pending_publish.drain() {
            let _ = reply.send(Err(PublishError::Disconnected));
        }
    }

    // ------------------------------------------------------------------ remote tracks

    /// Makes the receiving end of a newly subscribed track. `None` when the application is
    /// gone (no track request channel left).
    pub(crate) fn subscribed(
        &mut self,
        info: RemoteTrackInfo,
        requests: &mpsc::WeakSender<TrackRequest>,
    ) -> Option<RemoteTrack> {
        let requests = requests.upgrade()?;
        let undecryptable = Arc::new(AtomicU64::new(0));
        self.undecryptable.insert(info.track_sid.clone(), undecryptable.clone());
        let track_sid = info.track_sid.clone();
        Some(match info.kind {
            TrackKind::Audio => {
                let (tx, frames) = mpsc::channel(REMOTE_AUDIO_BUFFER);
                self.audio.insert(track_sid, tx);
                RemoteTrack::Audio(RemoteAudioTrack {
                    incoming: Incoming { info, frames, undecryptable },
                })
            }
            TrackKind::Video => {
                let (tx, frames) = mpsc::channel(REMOTE_FRAME_BUFFER);
                self.video.insert(track_sid, tx);
                RemoteTrack::Video(RemoteVideoTrack {
                    incoming: Incoming { info, frames, undecryptable },
                    requests,
                })
            }
        })
    }

    /// Whether the track had a channel (and the application should hear it is gone).
    pub(crate) fn unsubscribed(&mut self, track_sid: &str) -> bool {
        self.undecryptable.remove(track_sid);
        self.dropped.remove(track_sid);
        self.awaiting_keyframe.remove(track_sid);
        let video = self.video.remove(track_sid).is_some();
        let audio = self.audio.remove(track_sid).is_some();
        video || audio
    }

    /// Forgets every remote track (a session ended).
    pub(crate) fn clear_remote(&mut self) {
        self.video.clear();
        self.audio.clear();
        self.undecryptable.clear();
        self.dropped.clear();
        self.awaiting_keyframe.clear();
    }

    /// Hands a remote video frame to its track. When the application does not keep up,
    /// frames are dropped; the next one delivered is marked non-contiguous, and a keyframe is
    /// wanted until one is delivered (asking while the channel is still full would be useless:
    /// that keyframe would be dropped too). Returns whether to ask the publisher for one now.
    pub(crate) fn deliver_video(&mut self, track_sid: &str, mut frame: RemoteVideoFrame) -> bool {
        let Some(tx) = self.video.get(track_sid) else { return false };
        let keyframe = frame.keyframe;
        frame.contiguous &= !self.dropped.contains(track_sid);
        match tx.try_send(frame) {
            Ok(()) => {
                self.dropped.remove(track_sid);
                if keyframe {
                    self.awaiting_keyframe.remove(track_sid);
                    false
                } else {
                    self.awaiting_keyframe.contains(track_sid)
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.dropped.insert(track_sid.to_owned()) {
                    debug!(%track_sid, "remote frames dropped: the application is not reading");
                }
                self.awaiting_keyframe.insert(track_sid.to_owned());
                false
            }
        }
    }

    /// Hands a remote audio packet to its track; when the application does not keep up,
    /// packets are dropped and the next one delivered is marked non-contiguous.
    pub(crate) fn deliver_audio(&mut self, track_sid: &str, mut frame: RemoteAudioFrame) {
        let Some(tx) = self.audio.get(track_sid) else { return };
        frame.contiguous &= !self.dropped.contains(track_sid);
        match tx.try_send(frame) {
            Ok(()) => {
                self.dropped.remove(track_sid);
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                if self.dropped.insert(track_sid.to_owned()) {
                    debug!(%track_sid, "remote audio dropped: the application is not reading");
                }
            }
        }
    }

    /// A frame of the track did not decrypt: the decoder misses it, so the next frame is not
    /// contiguous and the stream needs a keyframe once frames decrypt again.
    pub(crate) fn undecryptable(&mut self, track_sid: &str) {
        let Some(count) = self.undecryptable.get(track_sid) else { return };
        if count.fetch_add(1, Ordering::Relaxed) == 0 {
            debug!(%track_sid, "a frame did not decrypt (no key yet, or a wrong one)");
        }
        self.dropped.insert(track_sid.to_owned());
        self.awaiting_keyframe.insert(track_sid.to_owned());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::VideoCodec;

    fn info(sid: &str) -> RemoteTrackInfo {
        RemoteTrackInfo {
            participant_sid: "PA_bob".into(),
            participant_identity: "bob".into(),
            track_sid: sid.into(),
            kind: TrackKind::Video,
            source: None,
            name: "cam".into(),
            mime_type: "video/VP8".into(),
            width: 320,
            height: 240,
            encrypted: false,
            muted: false,
        }
    }

    fn frame(index: u64, keyframe: bool) -> RemoteVideoFrame {
        RemoteVideoFrame {
            codec: VideoCodec::Vp8,
            data: vec![0; 100],
            keyframe,
            rtp_timestamp: index * 3000,
            contiguous: true,
        }
    }

    #[tokio::test]
    async fn a_slow_reader_loses_frames_not_memory_and_resumes_at_a_keyframe() {
        let (requests, _rx) = mpsc::channel(1);
        let mut delivery = Delivery::default();
        let Some(RemoteTrack::Video(mut track)) =
            delivery.subscribed(info("TR_v"), &requests.downgrade())
        else {
            panic!("a video track")
        };
        // The reader sleeps while three times its buffer arrives.
        for i in 0..(REMOTE_FRAME_BUFFER as u64 * 3) {
            assert!(
                !delivery.deliver_video("TR_v", frame(i, i == 0)),
                "no keyframe asked while full"
            );
        }
        let mut held = 0;
        while let Ok(frame) = track.incoming.frames.try_recv() {
            assert!(frame.contiguous);
            held += 1;
        }
        assert_eq!(held, REMOTE_FRAME_BUFFER, "the buffer, and nothing more, was kept");
        // Reading again: the next frame says what was lost, and a keyframe is wanted until one
        // arrives.
        assert!(delivery.deliver_video("TR_v", frame(1000, false)));
        assert!(!track.recv().await.expect("delivered").contiguous);
        assert!(delivery.deliver_video("TR_v", frame(1001, false)));
        assert!(track.recv().await.expect("delivered").contiguous);
        assert!(!delivery.deliver_video("TR_v", frame(1002, true)));
        assert!(!delivery.deliver_video("TR_v", frame(1003, false)), "the keyframe arrived");
    }

    #[test]
    fn an_application_that_is_gone_gets_no_track() {
        let (requests, rx) = mpsc::channel::<TrackRequest>(1);
        let weak = requests.downgrade();
        drop((requests, rx));
        let mut delivery = Delivery::default();
        assert!(delivery.subscribed(info("TR_v"), &weak).is_none());
        assert!(!delivery.unsubscribed("TR_v"), "nothing to tell about");
    }
}
