//! The sender's drift-free audio schedule: [`AudioClock`].

use std::time::{Duration, Instant};

use super::{FRAME_DURATION, FRAME_SAMPLES};

/// The sender's audio schedule: frame `n` is due at `start + n · 20 ms`, computed from the start
/// each time, so it never drifts. Sans-IO: the caller passes the time.
///
/// Unlike [`FramePacer`](crate::pacing::FramePacer), which skips late video frames, a late
/// consumer gets every frame that is due, one per [`AudioClock::take`]: audio must not have holes.
/// Only after a stall longer than the bound (200 ms by default: the process was suspended, the
/// machine overloaded) does the clock jump to the frame due now, counting what it skipped.
///
/// Audio and video stay in sync when the `AudioClock` and the `FramePacer` get the same start
/// instant: audio frame `n` was captured at `start + n · 20 ms` (RTP timestamp `n · 960` at
/// 48 kHz) and video frame `m` at `start + m / fps` (RTP timestamp `m · 90000 / fps`), so both
/// map to the same wall clock and the receiver lines them up through their RTCP sender reports.
/// A skip keeps that mapping: the frame index jumps, the start does not move.
#[derive(Debug, Clone)]
pub struct AudioClock {
    start: Instant,
    next: u64,
    max_lag: Duration,
    skipped: u64,
    skips: u64,
}

impl AudioClock {
    /// How late the consumer may be before frames are skipped, by default.
    pub const DEFAULT_MAX_LAG: Duration = Duration::from_millis(200);

    /// A clock whose frame 0 is due at `start`.
    pub fn new(start: Instant) -> Self {
        Self { start, next: 0, max_lag: Self::DEFAULT_MAX_LAG, skipped: 0, skips: 0 }
    }

    /// The same clock with another bound on lateness.
    pub fn with_max_lag(mut self, max_lag: Duration) -> Self {
        self.max_lag = max_lag;
        self
    }

    /// When frame 0 is due.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The capture time of frame `index` from the start: `index · 20 ms`.
    pub fn offset(&self, index: u64) -> Duration {
        FRAME_DURATION.saturating_mul(u32::try_from(index).unwrap_or(u32::MAX))
    }

    /// The RTP timestamp of frame `index` at 48 kHz, from a random `base` as RTP wants.
    pub fn rtp_timestamp(base: u32, index: u64) -> u32 {
        base.wrapping_add((index.wrapping_mul(FRAME_SAMPLES as u64)) as u32)
    }

    /// When frame `index` is due.
    pub fn deadline(&self, index: u64) -> Instant {
        self.start
            .checked_add(self.offset(index))
            .unwrap_or_else(|| self.start + Duration::from_secs(1 << 32))
    }

    /// When the next frame is due.
    pub fn next_deadline(&self) -> Instant {
        self.deadline(self.next)
    }

    /// The index of the next frame to take.
    pub fn next_index(&self) -> u64 {
        self.next
    }

    /// Takes the next frame due at `now`, one per call: call again until `None`. After a stall
    /// longer than the bound, jumps to the frame due now.
    pub fn take(&mut self, now: Instant) -> Option<u64> {
        let due = self.next_deadline();
        if now < due {
            return None;
        }
        if now - due > self.max_lag {
            let elapsed = now.saturating_duration_since(self.start).as_nanos();
            let latest = u64::try_from(elapsed / FRAME_DURATION.as_nanos()).unwrap_or(u64::MAX);
            let skipped = latest.saturating_sub(self.next);
            tracing::warn!(
                skipped,
                late_ms = (now - due).as_millis() as u64,
                "audio clock stalled; skipping to now"
            );
            self.skipped += skipped;
            self.skips += 1;
            self.next = latest.max(self.next);
        }
        let index = self.next;
        self.next += 1;
        Some(index)
    }

    /// Frames skipped after stalls.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Stalls that made the clock skip.
    pub fn skips(&self) -> u64 {
        self.skips
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacing::FramePacer;

    #[test]
    fn a_late_consumer_gets_every_frame_until_the_bound() {
        let start = Instant::now();
        let mut clock = AudioClock::new(start);
        assert_eq!(clock.take(start), Some(0));
        assert_eq!(clock.take(start + Duration::from_millis(19)), None);
        // 100 ms late: frames 1..=5 all come, then nothing until frame 6 is due.
        let now = start + Duration::from_millis(100);
        let taken: Vec<u64> = std::iter::from_fn(|| clock.take(now)).collect();
        assert_eq!(taken, [1, 2, 3, 4, 5]);
        assert_eq!(clock.skipped(), 0);
        assert_eq!(clock.next_deadline() - start, Duration::from_millis(120));
        // A stall of about 1 s: skip to the frame due now (56, due at 1.12 s).
        let now = start + Duration::from_millis(1125);
        assert_eq!(clock.take(now), Some(56));
        assert_eq!(clock.take(now), None);
        assert_eq!((clock.skipped(), clock.skips()), (50, 1));
        assert_eq!(AudioClock::rtp_timestamp(u32::MAX, 1), 959);
        assert_eq!(clock.offset(u64::MAX), FRAME_DURATION * u32::MAX);
        assert!(clock.deadline(u64::MAX) > start);
    }

    #[test]
    fn no_drift_over_a_day() {
        let start = Instant::now();
        let clock = AudioClock::new(start);
        let frames_per_day = 24 * 3600 * 50;
        assert_eq!(clock.deadline(frames_per_day) - start, Duration::from_secs(24 * 3600));
    }

    /// A shared start keeps audio and video timestamps on the wall clock, also across a stall.
    #[test]
    fn audio_and_video_sharing_a_start_stay_in_sync() {
        let start = Instant::now();
        let mut audio = AudioClock::new(start);
        let mut video = FramePacer::new(start, 30, 1);
        let video_frame = Duration::from_nanos(33_333_334);
        let mut taken = (0, 0);
        let mut last_audio = None;
        let mut t = Duration::ZERO;
        while t < Duration::from_secs(10) {
            // Every 5 ms, or a 700 ms stall at 4 s.
            t += if t == Duration::from_secs(4) {
                Duration::from_millis(700)
            } else {
                Duration::from_millis(5)
            };
            let now = start + t;
            while let Some(n) = audio.take(now) {
                last_audio = Some(n);
                taken.0 += 1;
            }
            if let Some(m) = video.take(now) {
                taken.1 += 1;
                let video_time = video.offset(m);
                assert!(
                    video_time <= t && t - video_time < video_frame,
                    "video {video_time:?} at {t:?}"
                );
                let n = last_audio.expect("audio is due whenever video is");
                let audio_time = audio.offset(n);
                // Both capture times are the wall clock, each within its own frame.
                assert!(
                    audio_time <= t && t - audio_time < FRAME_DURATION,
                    "audio {audio_time:?} at {t:?}"
                );
                // And the RTP timestamps say the same time.
                let audio_rtp_secs = (n * 960) as f64 / 48_000.0;
                let video_rtp_secs = (m * 3000) as f64 / 90_000.0;
                assert!((audio_rtp_secs - video_rtp_secs).abs() < 0.034);
            }
        }
        // Every audio frame came except those of the stall; video skipped its own.
        // Frames 0..=500 are due by 10 s.
        assert_eq!(taken.0 + audio.skipped(), 501);
        assert!(audio.skipped() >= 30 && audio.skipped() <= 36, "{}", audio.skipped());
        assert_eq!(taken.1 + video.dropped(), 301);
    }
}
