//! Retry policy: exponential backoff with "equal jitter" (half fixed, half random), from a
//! seeded generator so tests and simulations are exact. It plugs into `backon` as a
//! [`backon::BackoffBuilder`]; callers retry only errors that say they are retryable.

use std::time::Duration;

/// How many attempts, and how long to wait between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (3 means at most 2 retries).
    pub attempts: u32,
    pub base: Duration,
    pub max: Duration,
    pub seed: u64,
}

impl RetryPolicy {
    pub const fn new(attempts: u32, base: Duration, max: Duration, seed: u64) -> Self {
        Self {
            attempts,
            base,
            max,
            seed,
        }
    }

    /// The same policy with another seed (for example one per message).
    pub fn seeded(self, seed: u64) -> Self {
        Self { seed, ..self }
    }

    /// The waits between attempts: `attempts - 1` of them.
    pub fn delays(&self) -> Jittered {
        Jittered {
            policy: *self,
            retry: 0,
            rng: SplitMix64(self.seed),
        }
    }
}

impl backon::BackoffBuilder for RetryPolicy {
    type Backoff = Jittered;
    fn build(self) -> Jittered {
        self.delays()
    }
}

/// Iterator of waits: retry `k` (from 0) waits `d/2 + rand[0, d/2]` with
/// `d = min(max, base · 2^k)`.
#[derive(Debug, Clone)]
pub struct Jittered {
    policy: RetryPolicy,
    retry: u32,
    rng: SplitMix64,
}

impl Iterator for Jittered {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        if self.retry + 1 >= self.policy.attempts {
            return None;
        }
        let exp = self
            .policy
            .base
            .saturating_mul(1u32.checked_shl(self.retry).unwrap_or(u32::MAX));
        let cap = exp.min(self.policy.max);
        self.retry += 1;
        let half = cap / 2;
        let nanos = half.as_nanos().min(u128::from(u64::MAX)) as u64;
        let jitter = if nanos == 0 {
            0
        } else {
            self.rng.next() % (nanos + 1)
        };
        Some(half + Duration::from_nanos(jitter))
    }
}

/// A tiny, seedable generator (SplitMix64): enough for jitter, no dependency.
#[derive(Debug, Clone)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delays_are_bounded_counted_and_reproducible(
            attempts in 1u32..12, base_ms in 1u64..1000, max_ms in 1u64..60_000, seed: u64,
        ) {
            let p = RetryPolicy::new(attempts, Duration::from_millis(base_ms), Duration::from_millis(max_ms), seed);
            let delays: Vec<_> = p.delays().collect();
            prop_assert_eq!(delays.len() as u32, attempts - 1);
            for (k, d) in delays.iter().enumerate() {
                let cap = Duration::from_millis(base_ms).saturating_mul(1 << k).min(Duration::from_millis(max_ms));
                prop_assert!(*d >= cap / 2 && *d <= cap, "retry {} waited {:?}, cap {:?}", k, d, cap);
            }
            prop_assert_eq!(delays, p.delays().collect::<Vec<_>>());
        }
    }

    #[test]
    fn different_seeds_spread_the_waits() {
        let p = RetryPolicy::new(2, Duration::from_secs(1), Duration::from_secs(1), 0);
        let waits: std::collections::HashSet<_> =
            (0..50).map(|s| p.seeded(s).delays().next()).collect();
        assert!(
            waits.len() > 40,
            "jitter barely varies: {} distinct",
            waits.len()
        );
    }
}
