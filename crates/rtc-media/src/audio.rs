//! Audio: a test-tone source and Opus encode/decode (Debian's `libopus-dev`), 48 kHz, 20 ms
//! frames as WebRTC uses them.

use audiopus::coder::{Decoder, Encoder};
use audiopus::packet::Packet;
use audiopus::{Application, Bitrate, Channels, MutSignals, SampleRate};

/// The sample rate of call audio.
pub const SAMPLE_RATE: u32 = 48_000;
/// Samples per channel in one 20 ms frame at [`SAMPLE_RATE`].
pub const FRAME_SAMPLES: usize = 960;
/// Room for one encoded packet (RFC 6716 caps a 20 ms frame at 1275 bytes).
const MAX_PACKET: usize = 4000;

/// Audio codec failures.
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
    /// Only mono and stereo exist.
    #[error("unsupported channel count {0}")]
    Channels(u16),
}

fn opus_error(error: audiopus::Error) -> AudioError {
    AudioError::Opus(error.to_string())
}

fn channels(count: u16) -> Result<Channels, AudioError> {
    match count {
        1 => Ok(Channels::Mono),
        2 => Ok(Channels::Stereo),
        other => Err(AudioError::Channels(other)),
    }
}

/// A sine tone, in 20 ms frames of interleaved 16-bit samples.
#[derive(Debug, Clone)]
pub struct ToneSource {
    frequency: f64,
    amplitude: f64,
    channels: u16,
    position: u64,
}

impl ToneSource {
    /// A tone of `frequency` Hz at `amplitude` (0..1 of full scale) on `channels` channels.
    pub fn new(frequency: f64, amplitude: f64, channels: u16) -> Self {
        Self {
            frequency,
            amplitude: amplitude.clamp(0.0, 1.0),
            channels: channels.max(1),
            position: 0,
        }
    }

    /// The next 20 ms.
    pub fn next_frame(&mut self) -> Vec<i16> {
        let mut out = Vec::with_capacity(FRAME_SAMPLES * usize::from(self.channels));
        for n in 0..FRAME_SAMPLES as u64 {
            let t = (self.position + n) as f64 / f64::from(SAMPLE_RATE);
            let sample = (self.amplitude
                * f64::from(i16::MAX)
                * (2.0 * std::f64::consts::PI * self.frequency * t).sin())
                as i16;
            out.extend(std::iter::repeat_n(sample, usize::from(self.channels)));
        }
        self.position += FRAME_SAMPLES as u64;
        out
    }
}

/// An Opus encoder at 48 kHz for voice and music in calls.
pub struct OpusEncoder {
    inner: Encoder,
    channels: u16,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder").field("channels", &self.channels).finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// An encoder of `channel_count` channels at `bitrate` bits per second.
    pub fn new(channel_count: u16, bitrate: u32) -> Result<Self, AudioError> {
        let mut inner =
            Encoder::new(SampleRate::Hz48000, channels(channel_count)?, Application::Voip)
                .map_err(opus_error)?;
        inner
            .set_bitrate(Bitrate::BitsPerSecond(i32::try_from(bitrate).unwrap_or(i32::MAX)))
            .map_err(opus_error)?;
        Ok(Self { inner, channels: channel_count, buffer: vec![0; MAX_PACKET] })
    }

    /// Encodes one 20 ms frame of interleaved samples into one packet.
    pub fn encode(&mut self, samples: &[i16]) -> Result<Vec<u8>, AudioError> {
        let expected = FRAME_SAMPLES * usize::from(self.channels);
        if samples.len() != expected {
            return Err(AudioError::FrameSize { expected, got: samples.len() });
        }
        let len = self.inner.encode(samples, &mut self.buffer).map_err(opus_error)?;
        Ok(self.buffer[..len].to_vec())
    }
}

/// An Opus decoder at 48 kHz.
pub struct OpusDecoder {
    inner: Decoder,
    channels: u16,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").field("channels", &self.channels).finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A decoder of `channel_count` channels.
    pub fn new(channel_count: u16) -> Result<Self, AudioError> {
        Ok(Self {
            inner: Decoder::new(SampleRate::Hz48000, channels(channel_count)?)
                .map_err(opus_error)?,
            channels: channel_count,
        })
    }

    /// Decodes one packet into interleaved samples; `None` conceals a lost packet.
    pub fn decode(&mut self, packet: Option<&[u8]>) -> Result<Vec<i16>, AudioError> {
        // Room for the longest packet duration Opus has (120 ms); a concealed loss is one frame
        // (libopus fills the whole buffer it is given).
        let frames = if packet.is_some() { 6 } else { 1 };
        let mut out = vec![0i16; frames * FRAME_SAMPLES * usize::from(self.channels)];
        let packet = match packet {
            Some(bytes) => Some(Packet::try_from(bytes).map_err(opus_error)?),
            None => None,
        };
        let signals = MutSignals::try_from(&mut out[..]).map_err(opus_error)?;
        let per_channel = self.inner.decode(packet, signals, false).map_err(opus_error)?;
        out.truncate(per_channel * usize::from(self.channels));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Power of `frequency` in `samples` (Goertzel), normalised.
    fn power_at(samples: &[i16], frequency: f64) -> f64 {
        let k = 2.0 * (2.0 * std::f64::consts::PI * frequency / f64::from(SAMPLE_RATE)).cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &x in samples {
            let s = f64::from(x) / f64::from(i16::MAX) + k * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        (s1 * s1 + s2 * s2 - k * s1 * s2) / (samples.len() as f64).powi(2)
    }

    #[test]
    fn a_tone_survives_opus() {
        let mut tone = ToneSource::new(440.0, 0.5, 1);
        let mut encoder = OpusEncoder::new(1, 32_000).unwrap();
        let mut decoder = OpusDecoder::new(1).unwrap();
        let mut decoded = Vec::new();
        for _ in 0..25 {
            let packet = encoder.encode(&tone.next_frame()).unwrap();
            assert!(packet.len() < 200, "{} bytes at 32 kbit/s", packet.len());
            decoded.extend(decoder.decode(Some(&packet)).unwrap());
        }
        assert_eq!(decoded.len(), 25 * FRAME_SAMPLES);
        let tail = &decoded[10 * FRAME_SAMPLES..];
        let at_440 = power_at(tail, 440.0);
        assert!(at_440 > 50.0 * power_at(tail, 1000.0), "{at_440}");
        assert!(at_440 > 50.0 * power_at(tail, 200.0));
        // A lost packet is concealed with a frame of audio.
        assert_eq!(decoder.decode(None).unwrap().len(), FRAME_SAMPLES);
    }

    #[test]
    fn wrong_sizes_and_garbage_are_errors() {
        let mut encoder = OpusEncoder::new(2, 64_000).unwrap();
        assert!(matches!(
            encoder.encode(&[0; 960]),
            Err(AudioError::FrameSize { expected: 1920, got: 960 })
        ));
        assert!(OpusEncoder::new(3, 64_000).is_err());
        let mut decoder = OpusDecoder::new(1).unwrap();
        assert!(decoder.decode(Some(&[])).is_err());
    }
}
