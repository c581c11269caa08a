//! Where frame end-to-end encryption sits: after encoding and before packetisation on the way
//! out, after depacketisation and before decoding on the way in.
//!
//! LiveKit encrypts whole encoded frames (AES-GCM with a trailer, keeping a few codec header
//! bytes clear so the server can still find keyframes). [`GcmFrameCryptor`] does it as
//! LiveKit's clients and Element Call do, with keys from a [`KeyProvider`]; whoever distributes
//! keys (for Matrix calls, the MatrixRTC key exchange) sets them there. Any other scheme plugs in
//! through [`FrameCryptor`].

mod frame;
mod gcm;
mod kdf;
mod key_provider;

pub use gcm::GcmFrameCryptor;
pub use kdf::{DEFAULT_RATCHET_SALT, KeyDerivation};
pub use key_provider::{KeyError, KeyProvider, KeyProviderOptions};

use crate::track::VideoCodec;

/// The codec of a frame, as far as encryption cares: it decides how many leading bytes stay
/// clear (LiveKit keeps codec headers readable for the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameCodec {
    /// VP8 video.
    Vp8,
    /// H.264 video.
    H264,
    /// Opus audio (its TOC byte stays clear).
    Opus,
}

impl From<VideoCodec> for FrameCodec {
    fn from(codec: VideoCodec) -> Self {
        match codec {
            VideoCodec::Vp8 => Self::Vp8,
            VideoCodec::H264 => Self::H264,
        }
    }
}

/// Lower-case hex, for comparing with the published test vectors.
#[cfg(test)]
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a frame cryptor knows about the frame it transforms.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct FrameContext<'a> {
    /// Identity of the participant who sent (or sends) the frame.
    pub participant_identity: &'a str,
    /// The track sid (`TR_…`), empty before the server confirmed a local track.
    pub track_sid: &'a str,
    /// The codec.
    pub codec: FrameCodec,
    /// Whether the frame is a keyframe.
    pub keyframe: bool,
    /// The RTP timestamp the frame is (or was) sent with (90 kHz video, 48 kHz audio).
    pub rtp_timestamp: u32,
    /// The RTP stream's SSRC (part of the IV on the way out).
    pub ssrc: u32,
}

impl<'a> FrameContext<'a> {
    /// The context of a frame `participant_identity` sends in `codec`, for calling a cryptor
    /// outside a connection (tests, benchmarks, tools); the RTP fields start at zero.
    pub fn new(participant_identity: &'a str, codec: impl Into<FrameCodec>) -> Self {
        Self {
            participant_identity,
            track_sid: "",
            codec: codec.into(),
            keyframe: false,
            rtp_timestamp: 0,
            ssrc: 0,
        }
    }

    /// The same context for a frame with this RTP timestamp on this SSRC.
    pub fn with_rtp(self, rtp_timestamp: u32, ssrc: u32) -> Self {
        Self { rtp_timestamp, ssrc, ..self }
    }
}

/// Why a frame was dropped by the cryptor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameCryptError {
    /// No key for this sender (yet).
    #[error("no key for this sender")]
    MissingKey,
    /// Authentication failed: wrong key or a damaged frame.
    #[error("frame did not decrypt")]
    DecryptFailed,
    /// Not an encrypted frame: too short, or a trailer that does not fit the format.
    #[error("not an encrypted frame")]
    Malformed,
    /// The frame cannot be encrypted (too short, encoder failure).
    #[error("frame could not be encrypted: {0}")]
    Other(String),
}

/// Encrypts outgoing and decrypts incoming encoded frames of encrypted tracks.
///
/// Called on the connection task for every frame, so it must be fast and must not block.
/// Frames that fail are dropped (and counted by the caller); nothing is ever sent in clear on a
/// track published as encrypted.
pub trait FrameCryptor: Send + Sync + 'static {
    /// Encrypts `frame` in place.
    fn encrypt(
        &self,
        context: &FrameContext<'_>,
        frame: &mut Vec<u8>,
    ) -> Result<(), FrameCryptError>;
    /// Decrypts `frame` in place.
    fn decrypt(
        &self,
        context: &FrameContext<'_>,
        frame: &mut Vec<u8>,
    ) -> Result<(), FrameCryptError>;

    /// The index of the key `participant_identity`'s frames are encrypted with now, for schemes
    /// with key indices (`None` otherwise, the default). When the index our video is encrypted
    /// with changes, the publisher sends keyframes over the next seconds, so that subscribers
    /// who got the new key late see the picture again at once instead of when their decoder
    /// gives up waiting.
    fn encryption_key_index(&self, participant_identity: &str) -> Option<u8> {
        let _ = participant_identity;
        None
    }
}
