//! Exponential backoff between retries: the one policy every retry loop of this crate uses (the
//! driver's connects and joins, the call observer's re-reads), public so that connectors use it
//! too.
//!
//! ```
//! use std::time::Duration;
//! use matrix_sdk_rtc::backoff::Backoff;
//!
//! let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
//! let first = backoff.next_delay();
//! assert!(first >= Duration::from_secs(1) && first <= Duration::from_millis(1100));
//! let second = backoff.next_delay();
//! assert!(second >= Duration::from_secs(2) && second <= Duration::from_millis(2200));
//! backoff.reset(); // after a success
//! assert!(backoff.next_delay() <= Duration::from_millis(1100));
//! ```

use std::time::Duration;

/// Delays that double from `first` up to `max`, with up to 10 % random jitter so that many
/// clients failing together do not retry together.
#[derive(Debug, Clone)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Delays from `first`, doubling up to `max` (`first` if `max` is smaller).
    pub fn new(first: Duration, max: Duration) -> Self {
        Self { first, max: max.max(first), next: first }
    }

    /// The delay before the next attempt (and doubles the one after).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        let jitter = delay.mul_f64(fastrand::f64() * 0.1);
        delay.saturating_add(jitter).min(self.max)
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum_and_resets() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let delays: Vec<Duration> = (0..5).map(|_| backoff.next_delay()).collect();
        let whole: Vec<u64> = delays.iter().map(|d| d.as_secs()).collect();
        assert_eq!(whole, [1, 2, 4, 5, 5]);
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(5)));
        backoff.reset();
        assert!(backoff.next_delay() < Duration::from_millis(1100));
    }
}
