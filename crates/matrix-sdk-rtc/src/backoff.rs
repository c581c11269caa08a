//! Exponential backoff between retries: the one policy every retry loop of this crate uses.

use std::time::Duration;

/// Delays that double from `first` up to `max`, with up to 10 % random jitter so that many
/// clients failing together do not retry together.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Self { first, max: max.max(first), next: first }
    }

    /// The delay before the next attempt (and doubles the one after).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        let jitter = delay.mul_f64(fastrand::f64() * 0.1);
        (delay + jitter).min(self.max)
    }

    /// Back to the first delay (after a success).
    pub(crate) fn reset(&mut self) {
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
