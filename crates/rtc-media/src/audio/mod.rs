//! Audio at 48 kHz in 20 ms frames, as WebRTC carries it:
//!
//! * [`AudioSource`] and [`AudioFrame`]: 20 ms of interleaved 16-bit samples at a time, from a
//!   test tone ([`ToneSource`]), a WAV file ([`WavSource`], any PCM or float layout and rate,
//!   resampled) or, with the `alsa` feature, a microphone (`MicSource`);
//! * [`Resampler`]: any rate to another (windowed-sinc, polyphase), in streaming chunks;
//! * [`OpusEncoder`] / [`OpusDecoder`] on libopus with libwebrtc's settings (in-band FEC,
//!   DTX with its "first DTX packet is sent, the following are not" rule), FEC and PLC decoding;
//!   [`toc`]: packet durations from the TOC byte;
//! * [`AudioLevel`]: the RFC 6464 level (-dBov) and voice-activity flag of a frame, which the
//!   SFU reads for active-speaker detection;
//! * [`AudioClock`]: the drift-free 20 ms schedule of a sender, sharing its start with video;
//! * [`JitterBuffer`]: received packets in, one 20 ms frame out per playout slot, with FEC, PLC,
//!   silence for DTX and an adaptive depth.
//!
//! ```
//! use rtc_media::audio::{AudioSource, Encoded, OpusDecoder, OpusEncoder, OpusEncoderConfig, ToneSource};
//!
//! let mut tone = ToneSource::new(440.0, 0.5, 1);
//! let mut encoder = OpusEncoder::with_config(&OpusEncoderConfig::default())?;
//! let mut decoder = OpusDecoder::new(1)?;
//! let frame = tone.next_frame()?.expect("a tone never ends");
//! if let Encoded::Speech(packet) = encoder.encode(&frame.samples)? {
//!     assert_eq!(decoder.decode(Some(&packet))?.len(), 960);
//! }
//! # Ok::<(), rtc_media::audio::AudioError>(())
//! ```

mod analysis;
mod clock;
pub mod jitter;
mod level;
#[cfg(feature = "alsa")]
mod mic;
mod opus;
mod resample;
pub mod toc;
mod tone;
mod wav;

pub use analysis::{tone_margin_db, tone_power};
pub use clock::AudioClock;
pub use jitter::{JitterBuffer, JitterBufferConfig, JitterStats, TimestampExtender};
pub use level::{AudioLevel, audio_level_dbov};
#[cfg(feature = "alsa")]
pub use mic::{MicConfig, MicSource, MicStats};
pub use opus::{Encoded, OpusDecoder, OpusEncoder, OpusEncoderConfig};
pub use resample::Resampler;
pub use tone::ToneSource;
pub use wav::{WavError, WavFormat, WavHeader, WavSource, parse_wav};

/// The sample rate of call audio.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per channel in one 20 ms frame at [`SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = 960;
/// The duration of one frame.
pub const FRAME_DURATION: std::time::Duration = std::time::Duration::from_millis(20);

/// Audio failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AudioError {
    /// libopus refused the configuration or the data.
    #[error("opus: {0}")]
    Opus(String),
    /// The input is not one 20 ms frame.
    #[error("expected {expected} samples (20 ms), got {got}")]
    FrameSize {
        /// Samples expected.
        expected: usize,
        /// Samples given.
        got: usize,
    },
    /// Only mono and stereo exist here.
    #[error("unsupported channel count {0}")]
    Channels(u16),
    /// A sample rate the resampler does not take (outside 1 kHz..=384 kHz).
    #[error("unsupported sample rate {0} Hz")]
    SampleRate(u32),
    /// A WAV file that cannot be read.
    #[error("WAV: {0}")]
    Wav(#[from] WavError),
    /// An audio device failed (opening, negotiating, reading) or went away.
    #[error("audio device: {0}")]
    Device(String),
}

/// 20 ms of interleaved 16-bit audio at 48 kHz.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    /// Interleaved samples: [`FRAME_SAMPLES`] × `channels`.
    pub samples: Vec<i16>,
    /// 1 (mono) or 2 (stereo).
    pub channels: u16,
}

impl AudioFrame {
    /// A frame of `samples` (interleaved) on `channels` channels; an error unless it holds exactly
    /// 20 ms on 1 or 2 channels.
    pub fn new(samples: Vec<i16>, channels: u16) -> Result<Self, AudioError> {
        if !(1..=2).contains(&channels) {
            return Err(AudioError::Channels(channels));
        }
        let expected = FRAME_SAMPLES * usize::from(channels);
        if samples.len() != expected {
            return Err(AudioError::FrameSize { expected, got: samples.len() });
        }
        Ok(Self { samples, channels })
    }

    /// 20 ms of silence on `channels` channels (clamped to 1..=2).
    pub fn silence(channels: u16) -> Self {
        let channels = channels.clamp(1, 2);
        Self { samples: vec![0; FRAME_SAMPLES * usize::from(channels)], channels }
    }

    /// The same audio on `channels` channels (clamped to 1..=2): stereo to mono averages the
    /// two channels, mono to stereo duplicates.
    pub fn to_channels(&self, channels: u16) -> Self {
        let channels = channels.clamp(1, 2);
        if channels == self.channels {
            return self.clone();
        }
        let samples = if channels == 1 {
            self.samples
                .chunks_exact(2)
                .map(|pair| ((i32::from(pair[0]) + i32::from(pair[1])) / 2) as i16)
                .collect()
        } else {
            self.samples.iter().flat_map(|&s| [s, s]).collect()
        };
        Self { samples, channels }
    }

    /// The RFC 6464 level of this frame in -dBov (0 loudest, 127 silence).
    pub fn level_dbov(&self) -> u8 {
        audio_level_dbov(&self.samples)
    }
}

/// A source of 20 ms frames at 48 kHz.
///
/// Generated and file sources produce frames as fast as they are asked: pace them with an
/// [`AudioClock`]. Live sources ([`AudioSource::is_live`]) are paced by their device: their
/// `next_frame` waits for the next frame.
pub trait AudioSource: Send {
    /// Channels of the frames (1 or 2).
    fn channels(&self) -> u16;

    /// The next 20 ms; `Ok(None)` at the end (a file without looping).
    fn next_frame(&mut self) -> Result<Option<AudioFrame>, AudioError>;

    /// Whether the source paces itself (a device) rather than being paced by the caller.
    fn is_live(&self) -> bool {
        false
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Signal measurements shared by the audio tests.

    /// Whether `frequency` dominates `samples`: 50 times the power of each of a few others.
    pub(crate) fn dominant(samples: &[i16], frequency: f64) -> bool {
        let at = super::tone_power(samples, frequency);
        [frequency * 0.5, frequency * 1.5, frequency * 2.3, 100.0, 3000.0]
            .iter()
            .all(|&other| at > 50.0 * super::tone_power(samples, other))
    }

    /// A small deterministic generator (xorshift64*), for loss patterns and noise.
    #[derive(Debug)]
    pub(crate) struct Rng(pub(crate) u64);

    impl Rng {
        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        /// Uniform in [0, 1).
        pub(crate) fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_check_their_size_and_remix() {
        assert!(matches!(
            AudioFrame::new(vec![0; 960], 2),
            Err(AudioError::FrameSize { expected: 1920, got: 960 })
        ));
        assert!(matches!(AudioFrame::new(vec![0; 960 * 3], 3), Err(AudioError::Channels(3))));
        let stereo: Vec<i16> = (0..960).flat_map(|i| [i as i16, -(i as i16) + 100]).collect();
        let frame = AudioFrame::new(stereo, 2).unwrap();
        let mono = frame.to_channels(1);
        assert_eq!(mono.samples.len(), 960);
        assert!(mono.samples.iter().all(|&s| s == 50));
        let back = mono.to_channels(2);
        assert_eq!(&back.samples[..4], &[50, 50, 50, 50]);
        assert_eq!(AudioFrame::silence(1).level_dbov(), 127);
    }
}
