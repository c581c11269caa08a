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

/// A decoder for `codec` (H.264 needs the `h264` feature).
///
/// ```
/// use rtc_media::codec::{VideoCodec, new_decoder};
/// assert_eq!(new_decoder(VideoCodec::Vp8)?.codec(), VideoCodec::Vp8);
/// # Ok::<(), rtc_media::codec::CodecError>(())
/// ```
pub fn new_decoder(codec: VideoCodec) -> Result<Box<dyn VideoDecoder>, CodecError> {
    match codec {
        VideoCodec::Vp8 => Ok(Box::new(Vp8Decoder::new()?)),
        #[cfg(feature = "h264")]
        VideoCodec::H264 => Ok(Box::new(H264Decoder::new()?)),
        #[cfg(not(feature = "h264"))]
        VideoCodec::H264 => {
            Err(CodecError::Config("H.264 needs the `h264` feature of rtc-media (openh264)".into()))
        }
    }
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

/// Encodes noisy moving frames at 2 Mbit/s, then at 300 kbit/s: the second half must be much
/// smaller, and the rate change must not cost a keyframe (tests of both codecs).
#[cfg(test)]
pub(crate) fn check_rate_change(encoder: &mut dyn VideoEncoder) {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut frame_bytes = |encoder: &mut dyn VideoEncoder, index: u64| {
        let mut picture = crate::pattern::TestPattern::Moving
            .render(640, 480, index)
            .with_timestamp(Duration::from_millis(index * 33));
        let (y, _, _) = picture.planes_mut();
        for pixel in y.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *pixel = pixel.saturating_add((seed % 24) as u8);
        }
        let encoded = encoder.encode(&picture).unwrap();
        let keyframe = encoded.iter().any(|f| f.keyframe);
        (encoded.iter().map(|f| f.data.len()).sum::<usize>(), keyframe)
    };
    encoder.set_bitrate(2_000_000).unwrap();
    let mut high = 0;
    for index in 0..90 {
        let (bytes, keyframe) = frame_bytes(encoder, index);
        assert!(keyframe || index > 0, "the stream starts with a keyframe");
        if index >= 30 {
            high += bytes;
        }
    }
    encoder.set_bitrate(300_000).unwrap();
    let mut low = 0;
    for index in 90..180 {
        let (bytes, keyframe) = frame_bytes(encoder, index);
        // (Encoders may still start one on a scene change later, as openh264 does.)
        assert!(!keyframe || index >= 100, "a rate change needs no keyframe (frame {index})");
        if index >= 120 {
            low += bytes;
        }
    }
    // 60 frames each: about 500 kB at 2 Mbit/s, 75 kB at 300 kbit/s.
    assert!(low * 3 < high, "300 kbit/s gave {low} bytes against {high} at 2 Mbit/s");
}
