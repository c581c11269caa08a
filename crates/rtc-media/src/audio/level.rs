//! The RFC 6464 audio level: [`AudioLevel`], [`audio_level_dbov`].

/// The level and voice activity of one frame, as sent in the RTP header extension.
///
/// The audio level of RFC 6464 (the `ssrc-audio-level` RTP header extension): the RMS of a
/// frame relative to full scale, in -dBov (0 loudest, 127 silence), and a voice-activity flag.
/// The SFU reads it to find the active speakers.
///
/// Computed as libwebrtc does: the mean square of every sample of the frame (all channels), over
/// the square of 32768, in decibels, negated and rounded; at or below -127 dBov it is 127. The
/// voice-activity flag is the encoder's: libwebrtc marks a packet as speech unless Opus DTX made it
/// a comfort-noise packet ([`crate::audio::Encoded::is_speech`]), so without DTX every packet is
/// speech.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    /// -dBov, 0..=127 (127 = silence).
    pub level: u8,
    /// The V bit: the frame holds speech.
    pub voice_activity: bool,
}

impl AudioLevel {
    /// Silence, no voice.
    pub const SILENCE: Self = Self { level: 127, voice_activity: false };

    /// The level of `samples` (interleaved, any channel count) with the encoder's voice flag.
    pub fn measure(samples: &[i16], voice_activity: bool) -> Self {
        Self { level: audio_level_dbov(samples), voice_activity }
    }

    /// The one-byte form of the extension: V in the top bit, the level below (RFC 6464 §3).
    pub fn to_byte(self) -> u8 {
        (u8::from(self.voice_activity) << 7) | self.level.min(127)
    }

    /// From the one-byte form.
    pub fn from_byte(byte: u8) -> Self {
        Self { level: byte & 0x7f, voice_activity: byte & 0x80 != 0 }
    }
}

/// The RFC 6464 level of `samples` (interleaved, any channel count): -dBov rounded, 0..=127;
/// an empty frame is silence (127).
pub fn audio_level_dbov(samples: &[i16]) -> u8 {
    if samples.is_empty() {
        return 127;
    }
    // Exact in i64/u64: 32768² × 2^32 samples would still fit, and a frame has far fewer.
    let sum_squares: u64 = samples.iter().map(|&s| (i64::from(s) * i64::from(s)) as u64).sum();
    let mean_square = sum_squares as f64 / samples.len() as f64;
    let relative = mean_square / (32768.0 * 32768.0);
    // -127 dBov and below: silence.
    if relative <= 10f64.powf(-12.7) {
        return 127;
    }
    let dbov = 10.0 * relative.log10();
    (-dbov + 0.5).clamp(0.0, 127.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(amplitude: f64) -> Vec<i16> {
        (0..960)
            .map(|n| {
                (amplitude * 32767.0 * (2.0 * std::f64::consts::PI * n as f64 / 48.0).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn levels_of_known_signals() {
        assert_eq!(audio_level_dbov(&[]), 127);
        assert_eq!(audio_level_dbov(&[0; 960]), 127);
        // A full-scale square wave is 0 dBov.
        let square: Vec<i16> =
            (0..960).map(|n| if n % 48 < 24 { i16::MAX } else { i16::MIN }).collect();
        assert_eq!(audio_level_dbov(&square), 0);
        // A full-scale sine is -3 dBov; each halving of the amplitude is 6 dB lower.
        assert_eq!(audio_level_dbov(&sine(1.0)), 3);
        assert_eq!(audio_level_dbov(&sine(0.5)), 9);
        assert_eq!(audio_level_dbov(&sine(0.25)), 15);
        // 60 dB below full scale.
        assert_eq!(audio_level_dbov(&sine(0.001)), 63);
        // One LSB of DC: 20·log10(32768) ≈ 90.3 dB below.
        assert_eq!(audio_level_dbov(&[1; 960]), 90);
        // Stereo counts every sample.
        let stereo: Vec<i16> = sine(0.5).iter().flat_map(|&s| [s, s]).collect();
        assert_eq!(audio_level_dbov(&stereo), 9);
    }

    #[test]
    fn the_extension_byte() {
        let level = AudioLevel::measure(&sine(0.5), true);
        assert_eq!(level, AudioLevel { level: 9, voice_activity: true });
        assert_eq!(level.to_byte(), 0x80 | 9);
        assert_eq!(AudioLevel::from_byte(0x80 | 9), level);
        assert_eq!(AudioLevel::SILENCE.to_byte(), 127);
        assert_eq!(AudioLevel::from_byte(0xff), AudioLevel { level: 127, voice_activity: true });
        assert_eq!(AudioLevel { level: 200, voice_activity: false }.to_byte(), 127);
    }
}
