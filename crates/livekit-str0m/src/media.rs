//! The one conversion point between `rtc-media`'s codec types and this crate's (feature
//! `rtc-media`, on by default): an encoder's output goes into a [`crate::LocalVideoTrack`] with
//! `.into()`, an Opus encoder's into a [`crate::LocalAudioTrack`] with [`encode_audio`], and codecs map both ways (a remote frame's codec picks an `rtc-media` decoder with
//! `rtc_media::codec::new_decoder(frame.codec.into())`).
//!
//! ```
//! use livekit_str0m::EncodedVideoFrame;
//! use rtc_media::codec::{VideoEncoder as _, Vp8Encoder, Vp8EncoderConfig};
//! use rtc_media::pattern::TestPattern;
//!
//! let mut encoder = Vp8Encoder::new(Vp8EncoderConfig::new(320, 240))?;
//! for encoded in encoder.encode(&TestPattern::RED.render(320, 240, 0))? {
//!     let frame: EncodedVideoFrame = encoded.into();
//!     assert!(frame.keyframe);
//! }
//! # Ok::<(), rtc_media::codec::CodecError>(())
//! ```

use rtc_media::codec::{self, EncodedFrame};

use rtc_media::audio::{AudioError, OpusEncoder};

use crate::track::{AudioLevel, EncodedAudioFrame, EncodedVideoFrame, VideoCodec};

impl From<EncodedFrame> for EncodedVideoFrame {
    fn from(frame: EncodedFrame) -> Self {
        Self { data: frame.data, keyframe: frame.keyframe, timestamp: frame.timestamp }
    }
}

impl From<VideoCodec> for codec::VideoCodec {
    fn from(codec: VideoCodec) -> Self {
        match codec {
            VideoCodec::Vp8 => Self::Vp8,
            VideoCodec::H264 => Self::H264,
        }
    }
}

impl From<rtc_media::audio::AudioLevel> for AudioLevel {
    fn from(level: rtc_media::audio::AudioLevel) -> Self {
        Self { dbov: level.level.min(127), voice: level.voice_activity }
    }
}

/// Encodes 20 ms of PCM captured at `timestamp` into the packet to write into a
/// [`crate::LocalAudioTrack`], with its RFC 6464 level (the encoder's voice verdict); `None`
/// when the encoder has nothing to send (DTX during silence).
///
/// ```
/// use std::time::Duration;
/// use livekit_str0m::media::encode_audio;
/// use rtc_media::audio::{OpusEncoder, OpusEncoderConfig, ToneSource};
///
/// let mut encoder = OpusEncoder::with_config(&OpusEncoderConfig::default())?;
/// let mut tone = ToneSource::new(440.0, 0.5, 1);
/// let frame = encode_audio(&mut encoder, &tone.next_samples(), Duration::ZERO)?.expect("speech");
/// assert!(frame.level.is_some_and(|level| level.voice && level.dbov < 20));
/// # Ok::<(), rtc_media::audio::AudioError>(())
/// ```
pub fn encode_audio(
    encoder: &mut OpusEncoder,
    samples: &[i16],
    timestamp: std::time::Duration,
) -> Result<Option<EncodedAudioFrame>, AudioError> {
    let encoded = encoder.encode(samples)?;
    let level = rtc_media::audio::AudioLevel::measure(samples, encoded.is_speech());
    Ok(encoded.into_packet().map(|data| EncodedAudioFrame {
        data,
        timestamp,
        level: Some(level.into()),
    }))
}

/// An `rtc-media` codec this crate cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("LiveKit tracks of this client carry VP8 and H.264, not {0:?}")]
pub struct UnsupportedCodec(pub codec::VideoCodec);

impl TryFrom<codec::VideoCodec> for VideoCodec {
    type Error = UnsupportedCodec;

    fn try_from(codec: codec::VideoCodec) -> Result<Self, Self::Error> {
        match codec {
            codec::VideoCodec::Vp8 => Ok(Self::Vp8),
            codec::VideoCodec::H264 => Ok(Self::H264),
            other => Err(UnsupportedCodec(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn codecs_map_both_ways() {
        for codec in [VideoCodec::Vp8, VideoCodec::H264] {
            assert_eq!(VideoCodec::try_from(codec::VideoCodec::from(codec)), Ok(codec));
        }
    }

    #[test]
    fn encoded_frames_keep_their_fields() {
        let encoded = EncodedFrame {
            codec: codec::VideoCodec::Vp8,
            data: vec![1, 2, 3],
            keyframe: true,
            timestamp: Duration::from_millis(66),
        };
        let frame = EncodedVideoFrame::from(encoded);
        assert_eq!(frame.data, [1, 2, 3]);
        assert!(frame.keyframe);
        assert_eq!(frame.timestamp, Duration::from_millis(66));
    }
}
