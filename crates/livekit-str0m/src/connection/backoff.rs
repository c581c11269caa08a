//! The one retry rhythm of a room connection: doubling delays up to a ceiling, each shortened
//! by a random quarter at most, so that clients a server dropped together do not return in step.

use std::hash::{BuildHasher as _, RandomState};
use std::time::Duration;

/// Delays between attempts.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
    seed: u64,
}

impl Backoff {
    /// Starts at `first`, doubles up to `max`.
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        let seed = RandomState::new().hash_one(0u8) | 1;
        Self { next: first, max, seed }
    }

    /// The delay before the next attempt: between three quarters of the current step and the
    /// whole of it.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let step = self.next;
        self.next = (step * 2).min(self.max);
        // xorshift64: plenty for spreading retries.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let quarter = step / 4;
        let cut = quarter.mul_f64((self.seed % 1024) as f64 / 1024.0);
        step - cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_ceiling_with_at_most_a_quarter_off() {
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let steps = [200, 400, 800, 1600, 3200, 5000, 5000];
        for step in steps {
            let step = Duration::from_millis(step);
            let delay = backoff.next_delay();
            assert!(delay <= step && delay >= step * 3 / 4, "{delay:?} for a step of {step:?}");
        }
    }

    #[test]
    fn two_clients_do_not_retry_in_step() {
        let delays = |mut b: Backoff| (0..8).map(|_| b.next_delay()).collect::<Vec<_>>();
        let first = Duration::from_millis(1000);
        let a = delays(Backoff::new(first, Duration::from_secs(60)));
        let b = delays(Backoff::new(first, Duration::from_secs(60)));
        assert_ne!(a, b, "independent backoffs draw independent jitter");
    }
}
