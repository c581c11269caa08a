//! Video tracks: codecs, encoded frames in and out, the handles.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{
    Incoming, LocalTrackHandle, OutgoingFrame, RemoteTrackInfo, TrackRequest, TrackSource,
};
use crate::error::TrackError;

/// A video codec LiveKit can carry and this client can packetise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VideoCodec {
    /// VP8 (RFC 7741 payload).
    Vp8,
    /// H.264, Annex B byte stream in, packetisation mode 1 on the wire (RFC 6184).
    H264,
}

impl VideoCodec {
    /// LiveKit's name for it (`AddTrackRequest.simulcast_codecs[].codec`).
    pub fn livekit_name(self) -> &'static str {
        match self {
            Self::Vp8 => "vp8",
            Self::H264 => "h264",
        }
    }

    /// The MIME type (`video/VP8`).
    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Vp8 => "video/VP8",
            Self::H264 => "video/H264",
        }
    }

    pub(crate) fn from_str0m(codec: str0m::format::Codec) -> Option<Self> {
        match codec {
            str0m::format::Codec::Vp8 => Some(Self::Vp8),
            str0m::format::Codec::H264 => Some(Self::H264),
            _ => None,
        }
    }
}

/// One encoded video frame going out.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedVideoFrame {
    /// The bitstream of one frame (VP8 frame, or H.264 access unit in Annex B).
    pub data: Vec<u8>,
    /// Whether it decodes on its own.
    pub keyframe: bool,
    /// Capture time on the source's clock; the RTP timestamp is derived from it (90 kHz).
    pub timestamp: Duration,
}

impl std::fmt::Debug for EncodedVideoFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedVideoFrame")
            .field("bytes", &self.data.len())
            .field("keyframe", &self.keyframe)
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

/// One encoded video frame received on a remote track, depacketised (and decrypted when a
/// frame cryptor is installed).
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteVideoFrame {
    /// The codec of this frame.
    pub codec: VideoCodec,
    /// The bitstream of one frame.
    pub data: Vec<u8>,
    /// Whether the frame is a keyframe (read from the bitstream).
    pub keyframe: bool,
    /// The RTP timestamp (90 kHz), extended to 64 bits.
    pub rtp_timestamp: u64,
    /// `false` when packets were lost before this frame: a decoder may need a keyframe (one is
    /// requested automatically).
    pub contiguous: bool,
}

impl std::fmt::Debug for RemoteVideoFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteVideoFrame")
            .field("codec", &self.codec)
            .field("bytes", &self.data.len())
            .field("keyframe", &self.keyframe)
            .field("rtp_timestamp", &self.rtp_timestamp)
            .field("contiguous", &self.contiguous)
            .finish()
    }
}

/// Whether an encoded frame is a keyframe, read from the bitstream.
pub(crate) fn is_keyframe(codec: VideoCodec, data: &[u8]) -> bool {
    match codec {
        // RFC 6386 §9.1: bit 0 of the frame tag is 0 for key frames.
        VideoCodec::Vp8 => data.first().is_some_and(|b| b & 1 == 0),
        VideoCodec::H264 => h264_nal_types(data).any(|t| t == 5),
    }
}

/// NAL unit types of an Annex B access unit.
fn h264_nal_types(data: &[u8]) -> impl Iterator<Item = u8> + '_ {
    data.windows(4).enumerate().filter_map(move |(i, w)| {
        let start = if w[..3] == [0, 0, 1] { Some(i + 3) } else { None };
        start.and_then(|s| data.get(s)).map(|b| b & 0x1f)
    })
}

/// How a local video track is published.
#[derive(Debug, Clone)]
pub struct VideoTrackOptions {
    /// The track name other participants see.
    pub name: String,
    /// The codec of the frames that will be written.
    pub codec: VideoCodec,
    /// Frame size, announced to the server (subscribers use it for layout).
    pub width: u32,
    /// Frame height.
    pub height: u32,
    /// The bitrate the encoder aims at, announced in the video layer.
    pub max_bitrate: u32,
    /// Camera or screen share.
    pub source: TrackSource,
    /// Whether frames are end-to-end encrypted (`TrackInfo.encryption = GCM`); needs a frame
    /// cryptor in the room options.
    pub encrypted: bool,
}

impl Default for VideoTrackOptions {
    fn default() -> Self {
        Self {
            name: "camera".into(),
            codec: VideoCodec::Vp8,
            width: 640,
            height: 480,
            max_bitrate: 1_500_000,
            source: TrackSource::Camera,
            encrypted: false,
        }
    }
}

/// A published video track: write encoded frames into it.
///
/// Frames are sent as they come (no queue beyond a few frames: a busy connection drops them and
/// says so). Check [`LocalVideoTrack::take_keyframe_request`] before encoding each frame: it is
/// set when a subscriber lost a picture (PLI/FIR) or joined; and follow
/// [`LocalVideoTrack::target_bitrate`] with the encoder's bitrate.
#[derive(Debug, Clone)]
pub struct LocalVideoTrack {
    pub(crate) handle: LocalTrackHandle,
    pub(crate) options: VideoTrackOptions,
}

impl LocalVideoTrack {
    /// The client id of the track (`AddTrackRequest.cid`).
    pub fn cid(&self) -> &str {
        &self.handle.cid
    }

    /// The server's track sid (`TR_…`) of the current session (it changes after a full
    /// reconnect).
    pub fn sid(&self) -> Option<String> {
        self.handle.sid()
    }

    /// How it was published.
    pub fn options(&self) -> &VideoTrackOptions {
        &self.options
    }

    /// Sends one encoded frame. Never blocks: when the connection task is behind the frame is
    /// dropped and [`TrackError::Busy`] returned.
    pub fn write(&self, frame: EncodedVideoFrame) -> Result<(), TrackError> {
        self.handle.write(OutgoingFrame::Video(frame))
    }

    /// Whether a keyframe was asked for since the last call (and clears the request).
    pub fn take_keyframe_request(&self) -> bool {
        self.handle.shared.keyframe_requested.swap(false, Ordering::AcqRel)
    }

    /// The bitrate the encoder should aim at now, in bits per second: this track's share of
    /// what the connection to the server can carry (from the server's congestion-control
    /// feedback), never above [`VideoTrackOptions::max_bitrate`]. `None` until the first
    /// estimate, a moment after media starts; encode at the maximum until then.
    pub fn target_bitrate(&self) -> Option<u32> {
        Some(self.handle.shared.target_bitrate.load(Ordering::Acquire)).filter(|&bps| bps > 0)
    }

    /// Frames that went out on the connection so far. Frames written before the track's media
    /// connection is up are dropped (and the first one after it is a keyframe, asked for with
    /// [`LocalVideoTrack::take_keyframe_request`]); this counts the ones that were not.
    pub fn frames_sent(&self) -> u64 {
        self.handle.frames_sent()
    }

    /// Frames dropped because the connection was busy.
    pub fn frames_dropped(&self) -> u64 {
        self.handle.frames_dropped()
    }

    /// Mutes or unmutes the track (other participants see the state; write nothing while muted).
    pub async fn set_muted(&self, muted: bool) -> Result<(), TrackError> {
        self.handle.set_muted(muted).await
    }

    /// Stops publishing the track; writes to it (through any clone) fail with
    /// [`TrackError::Closed`] from now on.
    pub async fn unpublish(self) -> Result<(), TrackError> {
        self.handle.unpublish().await
    }
}

/// A subscribed remote video track: receive its encoded frames.
#[derive(Debug)]
pub struct RemoteVideoTrack {
    pub(crate) incoming: Incoming<RemoteVideoFrame>,
    pub(crate) requests: mpsc::Sender<TrackRequest>,
}

impl RemoteVideoTrack {
    /// Publisher and track metadata.
    pub fn info(&self) -> &RemoteTrackInfo {
        &self.incoming.info
    }

    /// The next frame; `None` once the track is unsubscribed or the room is gone.
    pub async fn recv(&mut self) -> Option<RemoteVideoFrame> {
        self.incoming.recv().await
    }

    /// Frames of this (encrypted) track that did not decrypt and were dropped: sent before
    /// we had the sender's key, or with a key we do not have.
    pub fn frames_undecryptable(&self) -> u64 {
        self.incoming.frames_undecryptable()
    }

    /// Asks the publisher for a keyframe (a PLI through the server).
    pub fn request_keyframe(&self) {
        let track_sid = self.incoming.info.track_sid.clone();
        let _ = self.requests.try_send(TrackRequest::RequestKeyframe { track_sid });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframes_are_read_from_the_bitstream() {
        assert!(is_keyframe(VideoCodec::Vp8, &[0x10, 0x02, 0x00, 0x9d]));
        assert!(!is_keyframe(VideoCodec::Vp8, &[0x31, 0x02]));
        assert!(!is_keyframe(VideoCodec::Vp8, &[]));
        let idr = [0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 1, 0x65, 9];
        assert!(is_keyframe(VideoCodec::H264, &idr));
        assert!(!is_keyframe(VideoCodec::H264, &[0, 0, 0, 1, 0x41, 7, 7]));
    }
}
