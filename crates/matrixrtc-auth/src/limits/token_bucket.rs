//! Token buckets per key (client address, homeserver), sans I/O: the caller passes the time.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A rate: `per_minute` requests a minute on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// The bucket's size: how many requests may come at once.
    pub burst: u32,
    /// How many tokens come back a minute; 0 turns the limit off.
    pub per_minute: u32,
}

impl Rate {
    /// Whether the rate limits anything.
    pub fn is_off(self) -> bool {
        self.per_minute == 0 || self.burst == 0
    }

    fn per_second(self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// One bucket per key, each holding at most `rate.burst` tokens and refilled at `rate`. At most
/// `capacity` keys are tracked: full buckets are forgotten first (they are the same as new
/// ones), then the least recently used.
#[derive(Debug)]
pub struct TokenBuckets<K> {
    rate: Rate,
    capacity: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: Hash + Eq + Clone> TokenBuckets<K> {
    /// Buckets of `rate`, for at most `capacity` keys.
    pub fn new(rate: Rate, capacity: usize) -> Self {
        Self { rate, capacity: capacity.max(1), buckets: HashMap::new() }
    }

    /// Takes a token from `key`'s bucket at `now`, or says how long until one is there.
    pub fn take(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        if self.rate.is_off() {
            return Ok(());
        }
        let burst = f64::from(self.rate.burst);
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.capacity {
            self.make_room(now);
        }
        let bucket =
            self.buckets.entry(key.clone()).or_insert(Bucket { tokens: burst, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate.per_second()).min(burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate.per_second()))
        }
    }

    /// The number of keys tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Forgets full buckets; if that frees less than a tenth, also the least recently used
    /// tenth, so that the next inserts are cheap again.
    fn make_room(&mut self, now: Instant) {
        let (burst, per_second) = (f64::from(self.rate.burst), self.rate.per_second());
        self.buckets.retain(|_, b| {
            b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * per_second < burst
        });
        let target = self.capacity - self.capacity / 10 - 1;
        if self.buckets.len() > target {
            let mut ages: Vec<Instant> = self.buckets.values().map(|b| b.updated).collect();
            let excess = self.buckets.len() - target;
            let (_, &mut cutoff, _) = ages.select_nth_unstable(excess - 1);
            let mut removed = 0;
            self.buckets.retain(|_, b| {
                let keep = b.updated > cutoff || removed >= excess;
                removed += usize::from(!keep);
                keep
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate { burst: 3, per_minute: 60 };

    #[test]
    fn a_burst_then_waits_then_recovers() {
        let start = Instant::now();
        let mut buckets = TokenBuckets::new(RATE, 100);
        for _ in 0..3 {
            assert_eq!(buckets.take(&"a", start), Ok(()));
        }
        let wait = buckets.take(&"a", start).unwrap_err();
        assert!((wait.as_secs_f64() - 1.0).abs() < 1e-6, "{wait:?}");
        // Other keys have their own bucket.
        assert_eq!(buckets.take(&"b", start), Ok(()));
        // One token a second comes back, never more than the burst.
        let later = start + Duration::from_millis(1500);
        assert_eq!(buckets.take(&"a", later), Ok(()));
        let wait = buckets.take(&"a", later).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "{wait:?}");
        let much_later = start + Duration::from_secs(3600);
        for _ in 0..3 {
            assert_eq!(buckets.take(&"a", much_later), Ok(()));
        }
        assert!(buckets.take(&"a", much_later).is_err());
    }

    #[test]
    fn an_off_rate_never_limits_nor_tracks() {
        let now = Instant::now();
        for off in [Rate { burst: 3, per_minute: 0 }, Rate { burst: 0, per_minute: 60 }] {
            let mut buckets = TokenBuckets::new(off, 10);
            for _ in 0..100 {
                assert_eq!(buckets.take(&1, now), Ok(()));
            }
            assert!(buckets.is_empty());
        }
    }

    #[test]
    fn the_table_stays_bounded_and_keeps_the_busy_keys() {
        let start = Instant::now();
        let mut buckets = TokenBuckets::new(RATE, 100);
        // A busy key that has spent its burst.
        for _ in 0..3 {
            buckets.take(&u32::MAX, start).unwrap();
        }
        // Many keys that each spent one token, more recently.
        for key in 0..1000u32 {
            let now = start + Duration::from_millis(10 + u64::from(key));
            buckets.take(&key, now).unwrap();
            assert!(buckets.len() <= 100);
        }
        // The busy key was the least recently used: forgotten, it starts with a full bucket
        // again (what forgetting costs). Keys used recently are still limited.
        let now = start + Duration::from_millis(1010);
        assert!(buckets.buckets.contains_key(&999));
        assert!(!buckets.buckets.contains_key(&u32::MAX));
        buckets.take(&999, now).unwrap();
        buckets.take(&999, now).unwrap();
        assert!(buckets.take(&999, now).is_err());
    }

    #[test]
    fn full_buckets_are_forgotten_first() {
        let start = Instant::now();
        let mut buckets = TokenBuckets::new(RATE, 10);
        for key in 0..10u32 {
            buckets.take(&key, start).unwrap();
        }
        buckets.take(&0, start).unwrap();
        buckets.take(&0, start).unwrap();
        // Two seconds on, every bucket but 0's is full again: they go, 0 stays.
        let now = start + Duration::from_secs(2);
        buckets.take(&100, now).unwrap();
        assert_eq!(buckets.len(), 2);
        buckets.take(&0, now).unwrap();
        buckets.take(&0, now).unwrap();
        assert!(buckets.take(&0, now).is_err());
    }
}
