//! Tracks: what goes in (encoded frames of a local track) and what comes out (encoded frames of
//! remote tracks), with the metadata LiveKit gives them. Video and audio share the handles'
//! plumbing here; [`video`] and [`audio`] hold what differs.

mod audio;
mod video;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use tokio::sync::mpsc;

pub use audio::{
    AudioLevel, AudioTrackOptions, EncodedAudioFrame, LocalAudioTrack, RemoteAudioFrame,
    RemoteAudioTrack,
};
pub(crate) use audio::{level_from_rtp, rtp_time};
pub(crate) use video::is_keyframe;
pub use video::{
    EncodedVideoFrame, LocalVideoTrack, RemoteVideoFrame, RemoteVideoTrack, VideoCodec,
    VideoTrackOptions,
};

use crate::error::TrackError;

/// What kind of source a track carries (LiveKit's `TrackSource`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TrackSource {
    /// A camera.
    #[default]
    Camera,
    /// A screen share.
    ScreenShare,
    /// A microphone (or any voice: text to speech, an agent).
    Microphone,
    /// The audio of a screen share.
    ScreenShareAudio,
}

impl TrackSource {
    pub(crate) fn to_proto(self) -> livekit_protocol::TrackSource {
        use livekit_protocol::TrackSource as P;
        match self {
            Self::Camera => P::Camera,
            Self::ScreenShare => P::ScreenShare,
            Self::Microphone => P::Microphone,
            Self::ScreenShareAudio => P::ScreenShareAudio,
        }
    }
}

/// Audio or video.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TrackKind {
    /// Sound.
    Audio,
    /// Pictures.
    Video,
}

/// How a local track is published: the options of its kind.
#[derive(Debug, Clone)]
pub(crate) enum LocalTrackOptions {
    Video(VideoTrackOptions),
    Audio(AudioTrackOptions),
}

impl LocalTrackOptions {
    pub(crate) fn kind(&self) -> TrackKind {
        match self {
            Self::Video(_) => TrackKind::Video,
            Self::Audio(_) => TrackKind::Audio,
        }
    }

    pub(crate) fn encrypted(&self) -> bool {
        match self {
            Self::Video(o) => o.encrypted,
            Self::Audio(o) => o.encrypted,
        }
    }

    /// What the track may send at most, bits per second.
    pub(crate) fn max_bitrate(&self) -> u32 {
        match self {
            Self::Video(o) => o.max_bitrate,
            Self::Audio(o) => o.max_bitrate,
        }
    }
}

/// One encoded frame of a local track, on its way to the connection task.
#[derive(Debug)]
pub(crate) enum OutgoingFrame {
    Video(EncodedVideoFrame),
    Audio(EncodedAudioFrame),
}

/// What a track handle asks of the connection task. Track handles have a channel of their own,
/// beside the room's commands, so the handles need nothing from the room.
#[derive(Debug)]
pub(crate) enum TrackRequest {
    WriteFrame { cid: String, frame: OutgoingFrame },
    Mute { cid: String, muted: bool },
    Unpublish { cid: String },
    RequestKeyframe { track_sid: String },
}

/// State a local track shares with the connection task.
#[derive(Debug, Default)]
pub(crate) struct LocalTrackShared {
    pub(crate) keyframe_requested: AtomicBool,
    /// The encoder target from the bandwidth estimate, bits per second; 0 before the first.
    pub(crate) target_bitrate: AtomicU32,
    /// Unpublished (by us or by the server): writes are refused.
    pub(crate) closed: AtomicBool,
    /// Frames handed to the connection (not dropped for want of a connection).
    pub(crate) frames_sent: AtomicU64,
    pub(crate) frames_dropped: AtomicU64,
    pub(crate) sid: std::sync::Mutex<Option<String>>,
}

/// What every local track handle does, whatever its kind.
#[derive(Debug, Clone)]
pub(crate) struct LocalTrackHandle {
    pub(crate) cid: String,
    pub(crate) requests: mpsc::Sender<TrackRequest>,
    pub(crate) shared: Arc<LocalTrackShared>,
}

impl LocalTrackHandle {
    pub(crate) fn sid(&self) -> Option<String> {
        self.shared.sid.lock().ok().and_then(|sid| sid.clone())
    }

    pub(crate) fn write(&self, frame: OutgoingFrame) -> Result<(), TrackError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(TrackError::Closed);
        }
        match self.requests.try_send(TrackRequest::WriteFrame { cid: self.cid.clone(), frame }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.frames_dropped.fetch_add(1, Ordering::Relaxed);
                Err(TrackError::Busy)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(TrackError::Closed),
        }
    }

    pub(crate) fn frames_sent(&self) -> u64 {
        self.shared.frames_sent.load(Ordering::Relaxed)
    }

    pub(crate) fn frames_dropped(&self) -> u64 {
        self.shared.frames_dropped.load(Ordering::Relaxed)
    }

    pub(crate) async fn set_muted(&self, muted: bool) -> Result<(), TrackError> {
        self.requests
            .send(TrackRequest::Mute { cid: self.cid.clone(), muted })
            .await
            .map_err(|_| TrackError::Closed)
    }

    pub(crate) async fn unpublish(self) -> Result<(), TrackError> {
        self.shared.closed.store(true, Ordering::Release);
        self.requests
            .send(TrackRequest::Unpublish { cid: self.cid.clone() })
            .await
            .map_err(|_| TrackError::Closed)
    }
}

/// Who published a remote track, and what the server says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteTrackInfo {
    /// The publisher's participant sid (`PA_…`).
    pub participant_sid: String,
    /// The publisher's identity.
    pub participant_identity: String,
    /// The track sid (`TR_…`).
    pub track_sid: String,
    /// Audio or video.
    pub kind: TrackKind,
    /// What the publisher says the track carries (camera, microphone, ...).
    pub source: Option<TrackSource>,
    /// The track name.
    pub name: String,
    /// The MIME type the server announced (`audio/red` tracks arrive here as plain Opus).
    pub mime_type: String,
    /// Width and height the publisher announced (0 for audio).
    pub width: u32,
    /// Height.
    pub height: u32,
    /// Whether the publisher encrypts its frames.
    pub encrypted: bool,
    /// Whether the publisher muted it.
    pub muted: bool,
}

impl RemoteTrackInfo {
    pub(crate) fn from_proto(
        participant: &livekit_protocol::ParticipantInfo,
        track: &livekit_protocol::TrackInfo,
    ) -> Self {
        use livekit_protocol::TrackSource as P;
        let kind = if track.r#type == livekit_protocol::TrackType::Audio as i32 {
            TrackKind::Audio
        } else {
            TrackKind::Video
        };
        let source = match P::try_from(track.source) {
            Ok(P::Camera) => Some(TrackSource::Camera),
            Ok(P::ScreenShare) => Some(TrackSource::ScreenShare),
            Ok(P::Microphone) => Some(TrackSource::Microphone),
            Ok(P::ScreenShareAudio) => Some(TrackSource::ScreenShareAudio),
            _ => None,
        };
        Self {
            participant_sid: participant.sid.clone(),
            participant_identity: participant.identity.clone(),
            track_sid: track.sid.clone(),
            kind,
            source,
            name: track.name.clone(),
            mime_type: track.mime_type.clone(),
            width: track.width,
            height: track.height,
            encrypted: track.encryption != livekit_protocol::encryption::Type::None as i32,
            muted: track.muted,
        }
    }
}

/// A subscribed remote track, audio or video.
#[derive(Debug)]
#[non_exhaustive]
pub enum RemoteTrack {
    /// Encoded video frames.
    Video(RemoteVideoTrack),
    /// Opus packets.
    Audio(RemoteAudioTrack),
}

impl RemoteTrack {
    /// Publisher and track metadata.
    pub fn info(&self) -> &RemoteTrackInfo {
        match self {
            Self::Video(track) => track.info(),
            Self::Audio(track) => track.info(),
        }
    }
}

/// The receiving end every remote track has: metadata, frames, a count of undecryptable ones.
#[derive(Debug)]
pub(crate) struct Incoming<F> {
    pub(crate) info: RemoteTrackInfo,
    pub(crate) frames: mpsc::Receiver<F>,
    pub(crate) undecryptable: Arc<AtomicU64>,
}

impl<F> Incoming<F> {
    pub(crate) async fn recv(&mut self) -> Option<F> {
        self.frames.recv().await
    }

    pub(crate) fn frames_undecryptable(&self) -> u64 {
        self.undecryptable.load(Ordering::Relaxed)
    }
}
