//! A small seeded random generator for the faults tests inject (which datagrams to drop):
//! fast, repeatable, not for anything secret.

/// xorshift64* (Marsaglia's shifts 13/7/17, Vigna's multiplier).
///
/// ```
/// use rtc_test_support::XorShift64;
///
/// let mut a = XorShift64::stream(42, 0);
/// let mut b = XorShift64::stream(42, 0);
/// assert_eq!(a.unit(), b.unit());
/// assert!((0.0..1.0).contains(&XorShift64::new(0).unit()));
/// ```
#[derive(Debug, Clone)]
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator seeded with `seed` (zero, the one state xorshift never leaves, is replaced).
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed })
    }

    /// Generator number `stream` of `seed`: streams of one seed are independent (their states
    /// are spread by SplitMix64), and the same seed and stream repeat.
    pub fn stream(seed: u64, stream: u64) -> Self {
        let mut z = seed ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self::new(z ^ (z >> 31))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::XorShift64;

    #[test]
    fn uniform_and_streams_differ() {
        let mut random = XorShift64::stream(42, 0);
        let n = 100_000;
        let values: Vec<f64> = (0..n).map(|_| random.unit()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let below = values.iter().filter(|v| **v < 0.05).count() as f64 / n as f64;
        assert!((below - 0.05).abs() < 0.005, "{below}");
        let mean = values.iter().sum::<f64>() / n as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert_ne!(XorShift64::stream(42, 0).unit(), XorShift64::stream(42, 1).unit());
        let mut zero = XorShift64::new(0);
        assert_ne!(zero.next_u64(), 0);
    }
}
