//! The one retry layer: exponential backoff with "equal jitter" (half fixed, half
//! random), from a generator seeded per key so tests and simulations are exact and
//! concurrent callers throttled together do not retry in lock-step. [`retrying`] is the
//! only place an operation is attempted again; the AWS clients have their own retries
//! off, so one logical call makes at most `attempts` requests. Waits go through the
//! injected [`Clock`], so a simulated clock runs them instantly, and none is started
//! that would end past the caller's deadline.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ports::Clock;

/// An error that knows whether trying again may help (throttling, 5xx, a timeout).
pub trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for crate::error::StoreError {
    fn is_transient(&self) -> bool {
        self.is_retryable()
    }
}

impl Transient for crate::error::QueueError {
    fn is_transient(&self) -> bool {
        self.is_retryable()
    }
}

impl Transient for crate::error::ValidationError {
    fn is_transient(&self) -> bool {
        self.is_retryable()
    }
}

/// FNV-1a of `key`: a stable seed per key (an item key, a message id).
pub fn seed_of(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Runs `op` until it succeeds, fails for a reason that is not transient, runs out of the
/// policy's attempts, or the next wait would end at or after `deadline`; returns the last
/// result. The jitter is seeded from the policy's seed and `key`, so two callers with
/// different keys spread out and one key replays exactly.
pub async fn retrying<T, E, Fut, C>(
    policy: RetryPolicy,
    key: &str,
    clock: &C,
    deadline: Option<DateTime<Utc>>,
    mut op: impl FnMut() -> Fut,
) -> Result<T, E>
where
    E: Transient,
    Fut: Future<Output = Result<T, E>>,
    C: Clock + ?Sized,
{
    let mut waits = policy.seeded(policy.seed ^ seed_of(key)).delays();
    loop {
        let error = match op().await {
            Ok(value) => return Ok(value),
            Err(e) if !e.is_transient() => return Err(e),
            Err(e) => e,
        };
        let Some(wait) = waits.next() else {
            return Err(error);
        };
        let ends = clock.now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        if deadline.is_some_and(|d| ends >= d) {
            return Err(error);
        }
        clock.sleep(wait).await;
    }
}

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
    use crate::adapters::clock::ManualClock;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct Flaky(bool);
    impl Transient for Flaky {
        fn is_transient(&self) -> bool {
            self.0
        }
    }

    fn start() -> DateTime<Utc> {
        "2026-11-26T10:00:00Z".parse().unwrap()
    }

    #[tokio::test]
    async fn retrying_stops_at_attempts_at_a_permanent_error_and_at_the_deadline() {
        let clock = ManualClock::new(start());
        let policy = RetryPolicy::new(4, Duration::from_secs(1), Duration::from_secs(8), 7);
        let calls = AtomicU32::new(0);
        let always = |transient| {
            let calls = &calls;
            move || {
                calls.fetch_add(1, Ordering::SeqCst);
                std::future::ready(Err::<(), _>(Flaky(transient)))
            }
        };
        assert!(
            retrying(policy, "k", &clock, None, always(true))
                .await
                .is_err()
        );
        assert_eq!(
            calls.swap(0, Ordering::SeqCst),
            4,
            "every attempt of the policy, no more"
        );
        assert!(
            retrying(policy, "k", &clock, None, always(false))
                .await
                .is_err()
        );
        assert_eq!(
            calls.swap(0, Ordering::SeqCst),
            1,
            "a permanent error is not retried"
        );
        // The first wait is at least 0.5 s: a deadline 0.4 s away leaves one attempt.
        let deadline = clock.now() + chrono::Duration::milliseconds(400);
        let before = clock.now();
        assert!(
            retrying(policy, "k", &clock, Some(deadline), always(true))
                .await
                .is_err()
        );
        assert_eq!(calls.swap(0, Ordering::SeqCst), 1);
        assert_eq!(clock.now(), before, "no wait started past the deadline");
        let ok = retrying(policy, "k", &clock, None, || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(if n < 2 { Err(Flaky(true)) } else { Ok(n) })
        })
        .await;
        assert!(matches!(ok, Ok(2)), "{ok:?}");
    }

    #[test]
    fn jitter_is_seeded_per_key() {
        let policy = RetryPolicy::new(2, Duration::from_secs(1), Duration::from_secs(1), 3);
        let first = |key: &str| policy.seeded(policy.seed ^ seed_of(key)).delays().next();
        let distinct: std::collections::HashSet<_> =
            (0..50).map(|i| first(&format!("TENANT#t{i}"))).collect();
        assert!(
            distinct.len() > 40,
            "keys share waits: {} distinct",
            distinct.len()
        );
        assert_eq!(first("TENANT#a"), first("TENANT#a"));
    }

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
