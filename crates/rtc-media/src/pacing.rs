//! Frame pacing: frame `n` is due at `start + n / fps`, computed from the start each time, so the
//! schedule never drifts. Sans-IO: the caller passes the time.

use std::time::{Duration, Instant};

/// Schedules frames at a fixed rate.
#[derive(Debug, Clone)]
pub struct FramePacer {
    start: Instant,
    fps_num: u32,
    fps_den: u32,
    next: u64,
    dropped: u64,
}

impl FramePacer {
    /// A pacer for `fps_num / fps_den` frames per second starting at `start`.
    ///
    /// # Panics
    /// When the rate is zero.
    pub fn new(start: Instant, fps_num: u32, fps_den: u32) -> Self {
        assert!(fps_num > 0 && fps_den > 0, "the frame rate must be positive");
        Self { start, fps_num, fps_den, next: 0, dropped: 0 }
    }

    /// When frame `index` is due.
    pub fn deadline(&self, index: u64) -> Instant {
        self.start + self.offset(index)
    }

    /// The capture timestamp of frame `index`, from the start.
    pub fn offset(&self, index: u64) -> Duration {
        let nanos =
            u128::from(index) * u128::from(self.fps_den) * 1_000_000_000 / u128::from(self.fps_num);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// When the next frame is due.
    pub fn next_deadline(&self) -> Instant {
        self.deadline(self.next)
    }

    /// Takes the frame to produce at `now`: the latest one already due, skipping (and counting)
    /// frames that are more than a frame late; `None` when none is due yet.
    pub fn take(&mut self, now: Instant) -> Option<u64> {
        if now < self.next_deadline() {
            return None;
        }
        let elapsed = now.saturating_duration_since(self.start).as_nanos();
        let latest = u64::try_from(
            elapsed * u128::from(self.fps_num) / (u128::from(self.fps_den) * 1_000_000_000),
        )
        .unwrap_or(u64::MAX);
        let index = latest.max(self.next);
        self.dropped += index - self.next;
        self.next = index + 1;
        Some(index)
    }

    /// Frames skipped because the consumer was late.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_drift_over_an_hour_at_29_97() {
        let start = Instant::now();
        let pacer = FramePacer::new(start, 30_000, 1001);
        let frames_per_hour = 3600 * 30_000 / 1001;
        let offset = pacer.offset(frames_per_hour);
        assert!(
            offset <= Duration::from_secs(3600)
                && offset > Duration::from_secs(3600) - Duration::from_millis(34)
        );
    }

    #[test]
    fn on_time_consumers_get_every_frame_late_ones_skip() {
        let start = Instant::now();
        let mut pacer = FramePacer::new(start, 30, 1);
        assert_eq!(pacer.take(start), Some(0));
        assert_eq!(pacer.take(start), None, "frame 1 is not due yet");
        assert_eq!(pacer.next_deadline() - start, Duration::from_nanos(33_333_333));
        assert_eq!(pacer.take(pacer.next_deadline()), Some(1));
        // 100 ms late: frames 2 and 3 are skipped.
        assert_eq!(pacer.take(start + Duration::from_millis(134)), Some(4));
        assert_eq!(pacer.dropped(), 2);
        assert_eq!(pacer.take(pacer.deadline(5)), Some(5));
    }
}
