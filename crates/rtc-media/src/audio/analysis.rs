//! How strong one frequency is in a signal: for checking tones (tests, monitoring a feed, a bot
//! that listens for a beep) without a whole FFT.

use super::SAMPLE_RATE;

/// The power of `frequency` Hz in mono `samples` at 48 kHz, normalised by the length (the
/// Goertzel algorithm: one DFT bin; a full-scale sine gives about 0.25).
pub fn tone_power(samples: &[i16], frequency: f64) -> f64 {
    if samples.is_empty() {
        return 0.0;
    }
    let k = 2.0 * (2.0 * std::f64::consts::PI * frequency / f64::from(SAMPLE_RATE)).cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in samples {
        let s = f64::from(x) / 32768.0 + k * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    (s1 * s1 + s2 * s2 - k * s1 * s2) / (samples.len() as f64).powi(2)
}

/// How far `frequency` stands above the strongest of `others`, in dB (negative when one of
/// them is stronger).
///
/// ```
/// use rtc_media::audio::{ToneSource, tone_margin_db};
///
/// let mut tone = ToneSource::new(440.0, 0.5, 1);
/// let samples: Vec<i16> = (0..50).flat_map(|_| tone.next_samples()).collect();
/// assert!(tone_margin_db(&samples, 440.0, &[220.0, 660.0, 1000.0]) > 40.0);
/// ```
pub fn tone_margin_db(samples: &[i16], frequency: f64, others: &[f64]) -> f64 {
    let at = tone_power(samples, frequency);
    let strongest =
        others.iter().map(|&f| tone_power(samples, f)).fold(f64::MIN_POSITIVE, f64::max);
    10.0 * (at.max(f64::MIN_POSITIVE) / strongest).log10()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::ToneSource;

    #[test]
    fn a_tone_has_its_power_at_its_frequency_only() {
        let mut tone = ToneSource::new(1000.0, 1.0, 1);
        let samples: Vec<i16> = (0..10).flat_map(|_| tone.next_samples()).collect();
        assert!((tone_power(&samples, 1000.0) - 0.25).abs() < 0.01);
        assert!(tone_power(&samples, 1500.0) < 1e-6);
        assert!(tone_margin_db(&samples, 1000.0, &[500.0, 2000.0]) > 50.0);
        assert!(tone_margin_db(&samples, 500.0, &[1000.0]) < -50.0);
        assert_eq!(tone_power(&[], 1000.0), 0.0);
        assert!(tone_margin_db(&[0; 960], 1000.0, &[500.0]).is_finite());
    }
}
