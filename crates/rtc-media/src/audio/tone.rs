//! A sine test tone.

use super::{AudioError, AudioFrame, AudioSource, FRAME_SAMPLES, SAMPLE_RATE};

/// A sine tone, in 20 ms frames of interleaved 16-bit samples; it never ends.
#[derive(Debug, Clone)]
pub struct ToneSource {
    frequency: f64,
    amplitude: f64,
    channels: u16,
    /// The phase in cycles, kept in 0..1 so that precision holds over long runs.
    phase: f64,
    /// How the loudness swells: (depth 0..1, period in samples, phase in cycles).
    swell: Option<(f64, f64, f64)>,
}

impl ToneSource {
    /// A tone of `frequency` Hz at `amplitude` (0..1 of full scale, clamped) on `channels`
    /// channels (clamped to 1..=2).
    pub fn new(frequency: f64, amplitude: f64, channels: u16) -> Self {
        let amplitude = if amplitude.is_finite() { amplitude.clamp(0.0, 1.0) } else { 0.0 };
        let frequency = if frequency.is_finite() { frequency } else { 0.0 };
        Self { frequency, amplitude, channels: channels.clamp(1, 2), phase: 0.0, swell: None }
    }

    /// The same tone, its loudness rising and falling like a voice's: between `amplitude` and
    /// `amplitude × (1 − depth)` (depth clamped to 0..1), one swell every `period`.
    ///
    /// LiveKit announces a speaker's level only when it changes: a perfectly steady tone is
    /// named speaking once, and whoever joins later never learns it. A swelling one is
    /// announced again and again, as a voice is.
    pub fn swelling(mut self, depth: f64, period: std::time::Duration) -> Self {
        let depth = if depth.is_finite() { depth.clamp(0.0, 1.0) } else { 0.0 };
        let samples = period.as_secs_f64() * f64::from(SAMPLE_RATE);
        self.swell = (samples >= 1.0).then_some((depth, samples, 0.0));
        self
    }

    /// The next 20 ms as interleaved samples.
    pub fn next_samples(&mut self) -> Vec<i16> {
        let mut out = Vec::with_capacity(FRAME_SAMPLES * usize::from(self.channels));
        let step = self.frequency / f64::from(SAMPLE_RATE);
        for _ in 0..FRAME_SAMPLES {
            let radians = 2.0 * std::f64::consts::PI * self.phase;
            let gain = match self.swell.as_mut() {
                Some((depth, period, phase)) => {
                    let envelope = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * *phase).cos();
                    *phase = (*phase + 1.0 / *period).rem_euclid(1.0);
                    1.0 - *depth * envelope
                }
                None => 1.0,
            };
            let sample = (self.amplitude * gain * f64::from(i16::MAX) * radians.sin()) as i16;
            out.extend(std::iter::repeat_n(sample, usize::from(self.channels)));
            self.phase = (self.phase + step).rem_euclid(1.0);
        }
        out
    }
}

impl AudioSource for ToneSource {
    fn channels(&self) -> u16 {
        self.channels
    }

    fn next_frame(&mut self) -> Result<Option<AudioFrame>, AudioError> {
        Ok(Some(AudioFrame { samples: self.next_samples(), channels: self.channels }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::test_util::dominant;

    #[test]
    fn a_continuous_tone_across_frames() {
        let mut tone = ToneSource::new(1000.0, 0.5, 2);
        let mut all = Vec::new();
        for _ in 0..5 {
            let frame = tone.next_frame().unwrap().unwrap();
            assert_eq!(frame.channels, 2);
            all.extend(frame.samples.chunks_exact(2).map(|p| p[0]));
        }
        assert!(dominant(&all, 1000.0));
        // No jump at frame edges: neighbouring samples differ by at most 2π·f/rate of the peak.
        let max_step = (0.5 * 32767.0 * 2.0 * std::f64::consts::PI * 1000.0 / 48_000.0) as i32 + 2;
        assert!(all.windows(2).all(|w| (i32::from(w[1]) - i32::from(w[0])).abs() <= max_step));
        // Bad parameters give silence or a clamped tone, never a panic.
        let mut odd = ToneSource::new(f64::NAN, f64::INFINITY, 9);
        assert_eq!(odd.channels(), 2);
        assert!(odd.next_samples().iter().all(|&s| s == 0));
    }

    #[test]
    fn a_swelling_tone_changes_its_level_and_keeps_its_pitch() {
        use crate::audio::audio_level_dbov;
        let mut tone =
            ToneSource::new(440.0, 0.5, 1).swelling(0.6, std::time::Duration::from_secs(2));
        let frames: Vec<Vec<i16>> = (0..100).map(|_| tone.next_samples()).collect();
        let levels: Vec<u8> = frames.iter().map(|f| audio_level_dbov(f)).collect();
        let (loudest, softest) = (*levels.iter().min().unwrap(), *levels.iter().max().unwrap());
        assert_eq!(loudest, audio_level_dbov(&ToneSource::new(440.0, 0.5, 1).next_samples()));
        // 1 − 0.6 of the amplitude is 8 dB softer.
        assert!((7..=9).contains(&(softest - loudest)), "{loudest}..{softest}");
        assert_eq!(levels[0], loudest, "it starts at full loudness");
        assert!(dominant(&frames.concat(), 440.0));
    }
}
