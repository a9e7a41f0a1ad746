//! Clocks: the system clock, a manual one that tests move by hand, and a virtual one on
//! tokio's (pausable) time, under which concurrent sleeps overlap as they do in real time.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::ports::Clock;

#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<DateTime<Utc>>);

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Mutex::new(start))
    }

    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }

    /// Moves forward to `to`; never back (a sleeper may already have moved it further).
    pub fn advance_to(&self, to: DateTime<Utc>) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if to > *t {
            *t = to;
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sleep(&self, d: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        self.advance(d);
        Box::pin(std::future::ready(()))
    }
}

/// Time as tokio's clock tells it, from `epoch`: `now()` is `epoch` plus the time elapsed
/// on tokio's clock since the clock was made, and `sleep` is tokio's sleep. On a runtime
/// whose time is paused (`tokio::time::pause()`), time jumps to the next timer whenever
/// every task waits, so a simulated day runs in milliseconds, exactly the same way on
/// every run, and two tasks sleeping 1 s at once cost 1 s, not 2 (a [`ManualClock`]
/// moves its one shared time by each sleeper's duration).
///
/// Must be created inside a tokio runtime.
#[derive(Debug, Clone, Copy)]
pub struct VirtualClock {
    epoch: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl VirtualClock {
    pub fn new(epoch: DateTime<Utc>) -> Self {
        Self {
            epoch,
            start: tokio::time::Instant::now(),
        }
    }

    /// The time `now()` read when the clock was made.
    pub fn epoch(&self) -> DateTime<Utc> {
        self.epoch
    }

    /// Sleeps until `now()` reads `at` or later (at once when it already does).
    pub async fn sleep_until(&self, at: DateTime<Utc>) {
        if let Ok(wait) = (at - self.now()).to_std() {
            tokio::time::sleep(wait).await;
        }
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> DateTime<Utc> {
        self.epoch
            + chrono::Duration::from_std(self.start.elapsed()).unwrap_or(chrono::Duration::MAX)
    }

    fn sleep(&self, d: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(d))
    }
}

impl<C: Clock + ?Sized> Clock for std::sync::Arc<C> {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }

    fn sleep(&self, d: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        (**self).sleep(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn concurrent_virtual_sleeps_overlap() {
        let epoch: DateTime<Utc> = "2026-11-26T00:00:00Z".parse().unwrap();
        let clock = VirtualClock::new(epoch);
        let one = Duration::from_secs(1);
        futures::future::join(clock.sleep(one), clock.sleep(one)).await;
        assert_eq!(clock.now(), epoch + chrono::Duration::seconds(1));
        clock
            .sleep_until(epoch + chrono::Duration::milliseconds(2500))
            .await;
        assert_eq!(clock.now(), epoch + chrono::Duration::milliseconds(2500));
    }

    #[tokio::test]
    async fn concurrent_manual_sleeps_add_up() {
        let epoch: DateTime<Utc> = "2026-11-26T00:00:00Z".parse().unwrap();
        let clock = ManualClock::new(epoch);
        let one = Duration::from_secs(1);
        futures::future::join(clock.sleep(one), clock.sleep(one)).await;
        assert_eq!(clock.now(), epoch + chrono::Duration::seconds(2));
    }
}
