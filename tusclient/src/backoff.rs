//! Jittered, capped exponential backoff between attempts that made no progress.

use std::time::Duration;

/// The first wait.
const BASE: Duration = Duration::from_secs(1);
/// No wait is longer than this: a network that comes back is noticed within it.
const CAP: Duration = Duration::from_secs(30);

/// Waits `BASE × 2^n` for the n-th consecutive failure, capped at [`CAP`], each cut to a
/// random point in its upper half so that many clients cut off at once do not come back in
/// step.
#[derive(Debug)]
pub struct Backoff {
    failures: u32,
    rng: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

impl Backoff {
    pub fn new() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ (u64::from(std::process::id()) << 32);
        Backoff::with_seed(seed)
    }

    pub fn with_seed(seed: u64) -> Self {
        Backoff {
            failures: 0,
            // xorshift must not start at zero.
            rng: seed | 1,
        }
    }

    /// Failures since the last progress.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Progress was made: the next failure waits [`BASE`] again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Counts a failure and returns how long to wait before the next attempt.
    pub fn fail(&mut self) -> Duration {
        let full = BASE
            .checked_mul(1u32 << self.failures.min(16))
            .unwrap_or(CAP)
            .min(CAP);
        self.failures += 1;
        let half = full / 2;
        half + half.mul_f64(self.unit())
    }

    /// A pseudo-random number in [0, 1) (xorshift64*; jitter needs no more).
    fn unit(&mut self) -> f64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_within_their_jitter_and_stop_at_the_cap() {
        let mut b = Backoff::with_seed(7);
        let waits: Vec<Duration> = (0..8).map(|_| b.fail()).collect();
        for (n, w) in waits.iter().enumerate() {
            let full = (BASE * (1 << n)).min(CAP);
            assert!(*w >= full / 2 && *w <= full, "wait {n}: {w:?} for {full:?}");
        }
        assert_eq!(b.failures(), 8);
        b.reset();
        assert!(b.fail() <= BASE, "progress starts the series again");
    }
}
