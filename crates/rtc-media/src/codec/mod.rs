//! Video codecs behind small traits, so that transports only ever see encoded frames.

#[cfg(feature = "h264")]
mod h264;
mod vp8;

use std::time::Duration;

use crate::frame::I420Frame;

#[cfg(feature = "h264")]
pub use h264::{H264Decoder, H264Encoder, H264EncoderConfig};
pub use vp8::{Vp8Decoder, Vp8Encoder, Vp8EncoderConfig};

/// A video codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VideoCodec {
    /// VP8 (RFC 6386).
    Vp8,
    /// H.264 constrained baseline (Annex B byte stream).
    H264,
}

/// One encoded frame.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// The codec.
    pub codec: VideoCodec,
    /// The bitstream of one frame.
    pub data: Vec<u8>,
    /// Whether it decodes without earlier frames.
    pub keyframe: bool,
    /// The capture time of the source frame.
    pub timestamp: Duration,
}

impl std::fmt::Debug for EncodedFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedFrame")
            .field("codec", &self.codec)
            .field("bytes", &self.data.len())
            .field("keyframe", &self.keyframe)
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

/// Codec failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The codec library refused the configuration.
    #[error("cannot initialise the {codec:?} codec: {detail}")]
    Init {
        /// The codec.
        codec: VideoCodec,
        /// The library's message.
        detail: String,
    },
    /// Encoding failed.
    #[error("encoding failed: {0}")]
    Encode(String),
    /// The bitstream could not be decoded (corrupt, truncated, or not of this codec).
    #[error("decoding failed: {0}")]
    Decode(String),
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
}

/// Turns raw frames into encoded frames.
pub trait VideoEncoder: Send {
    /// The codec.
    fn codec(&self) -> VideoCodec;

    /// Encodes one frame; a real-time encoder returns zero or one frame per call.
    fn encode(&mut self, frame: &I420Frame) -> Result<Vec<EncodedFrame>, CodecError>;

    /// Makes the next encoded frame a keyframe (a receiver asked with PLI or FIR).
    fn request_keyframe(&mut self);

    /// Changes the target bitrate, in bits per second.
    fn set_bitrate(&mut self, bits_per_second: u32) -> Result<(), CodecError>;
}

/// Turns encoded frames back into pictures.
pub trait VideoDecoder: Send {
    /// The codec.
    fn codec(&self) -> VideoCodec;

    /// Decodes one encoded frame; `None` when it produced no picture.
    fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>, CodecError>;
}

/// Encodes `frames` frames of `pattern` and decodes each right away (tests of both codecs).
#[cfg(test)]
pub(crate) fn round_trip(
    encoder: &mut dyn VideoEncoder,
    decoder: &mut dyn VideoDecoder,
    pattern: crate::pattern::TestPattern,
    (width, height): (u32, u32),
    frames: u64,
) -> Vec<(EncodedFrame, I420Frame)> {
    (0..frames)
        .map(|i| {
            let source =
                pattern.render(width, height, i).with_timestamp(Duration::from_millis(i * 33));
            let encoded = encoder.encode(&source).unwrap().pop().expect("one frame per input");
            let decoded = decoder.decode(&encoded.data).unwrap().expect("a picture");
            (encoded, decoded)
        })
        .collect()
}
