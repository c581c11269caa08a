//! Where frame end-to-end encryption sits: after encoding and before packetisation on the way
//! out, after depacketisation and before decoding on the way in.
//!
//! LiveKit encrypts whole encoded frames (AES-GCM with a trailer, keeping a few codec header
//! bytes clear so the server can still find keyframes). This crate only calls the hook; the
//! cipher and the key management live with whoever distributes the keys.

use crate::track::VideoCodec;

/// What a frame cryptor knows about the frame it transforms.
#[derive(Debug, Clone, Copy)]
pub struct FrameContext<'a> {
    /// Identity of the participant who sent (or sends) the frame.
    pub participant_identity: &'a str,
    /// The track sid (`TR_…`), empty before the server confirmed a local track.
    pub track_sid: &'a str,
    /// The codec.
    pub codec: VideoCodec,
    /// Whether the frame is a keyframe.
    pub keyframe: bool,
    /// The RTP timestamp the frame is (or was) sent with, 90 kHz.
    pub rtp_timestamp: u32,
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
}
