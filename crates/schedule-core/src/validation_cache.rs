//! A cache in front of any [`DeviceValidator`]: answers live for a positive or a negative
//! TTL, concurrent misses for one device make one call, errors are never cached. Kept in a
//! static-lifetime value built in `main`, it survives across warm invocations.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use moka::Expiry;
use moka::future::Cache;

use crate::error::ValidationError;
use crate::model::{DeviceId, TenantId, Validation};
use crate::ports::DeviceValidator;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    pub positive_ttl: Duration,
    pub negative_ttl: Duration,
    pub capacity: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self {
            positive_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(60),
            capacity: 100_000,
        }
    }
}

struct TtlByAnswer(CacheSettings);

impl Expiry<(TenantId, DeviceId), Validation> for TtlByAnswer {
    fn expire_after_create(
        &self,
        _k: &(TenantId, DeviceId),
        v: &Validation,
        _now: Instant,
    ) -> Option<Duration> {
        Some(match v {
            Validation::Valid => self.0.positive_ttl,
            Validation::Invalid => self.0.negative_ttl,
        })
    }
}

/// Hits and misses since start (misses are calls to the wrapped validator).
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

pub struct CachedValidator<V> {
    inner: Arc<V>,
    cache: Cache<(TenantId, DeviceId), Validation>,
    stats: Arc<CacheStats>,
}

impl<V> std::fmt::Debug for CachedValidator<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedValidator")
            .field("entries", &self.cache.entry_count())
            .field("stats", &self.stats)
            .finish()
    }
}

impl<V: DeviceValidator + 'static> CachedValidator<V> {
    pub fn new(inner: V, settings: CacheSettings) -> Self {
        Self {
            inner: Arc::new(inner),
            cache: Cache::builder()
                .max_capacity(settings.capacity)
                .expire_after(TtlByAnswer(settings))
                .build(),
            stats: Arc::new(CacheStats::default()),
        }
    }

    /// `(hits, misses)` so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.stats.hits.load(Ordering::Relaxed),
            self.stats.misses.load(Ordering::Relaxed),
        )
    }

    /// Moves the hits and misses counted since the last call into `metrics`.
    pub fn record_into(&self, metrics: &crate::metrics::Metrics) {
        metrics.count(
            crate::metrics::Metric::ValidationCacheHit,
            self.stats.hits.swap(0, Ordering::Relaxed),
        );
        metrics.count(
            crate::metrics::Metric::ValidationCacheMiss,
            self.stats.misses.swap(0, Ordering::Relaxed),
        );
    }

    pub fn inner(&self) -> &V {
        &self.inner
    }
}

impl<V: DeviceValidator + 'static> DeviceValidator for CachedValidator<V> {
    async fn validate(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<Validation, ValidationError> {
        let key = (tenant.clone(), device.clone());
        let inner = self.inner.clone();
        let stats = self.stats.clone();
        let mut loaded = false;
        let result = self
            .cache
            .try_get_with(key, async {
                loaded = true;
                stats.misses.fetch_add(1, Ordering::Relaxed);
                inner.validate(tenant, device).await
            })
            .await;
        if !loaded {
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
        }
        result.map_err(|e: Arc<ValidationError>| (*e).clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[derive(Default)]
    struct Counting {
        calls: AtomicU32,
        fail: bool,
    }

    impl DeviceValidator for Counting {
        async fn validate(
            &self,
            _t: &TenantId,
            d: &DeviceId,
        ) -> Result<Validation, ValidationError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if self.fail {
                return Err(ValidationError {
                    tenant: "t".into(),
                    device: d.to_string(),
                    reason: "503".into(),
                });
            }
            Ok(if d.as_str().starts_with("off") {
                Validation::Invalid
            } else {
                Validation::Valid
            })
        }
    }

    fn ids(d: &str) -> (TenantId, DeviceId) {
        (
            TenantId::parse("acme").unwrap(),
            DeviceId::parse(d).unwrap(),
        )
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_call_and_answers_are_cached() {
        let cache = CachedValidator::new(Counting::default(), CacheSettings::default());
        let (t, d) = ids("dev-1");
        let all = futures::future::join_all((0..20).map(|_| cache.validate(&t, &d))).await;
        assert!(all.iter().all(|r| matches!(r, Ok(Validation::Valid))));
        assert_eq!(cache.inner().calls.load(Ordering::SeqCst), 1);
        let (t2, off) = ids("off-1");
        assert_eq!(
            cache.validate(&t2, &off).await.unwrap(),
            Validation::Invalid
        );
        assert_eq!(
            cache.validate(&t2, &off).await.unwrap(),
            Validation::Invalid
        );
        assert_eq!(cache.inner().calls.load(Ordering::SeqCst), 2);
        let (hits, misses) = cache.counts();
        assert_eq!((hits + misses, misses), (22, 2));
    }

    #[tokio::test]
    async fn errors_are_not_cached_and_negative_answers_expire_first() {
        let failing = CachedValidator::new(
            Counting {
                fail: true,
                ..Default::default()
            },
            CacheSettings::default(),
        );
        let (t, d) = ids("dev-1");
        assert!(failing.validate(&t, &d).await.is_err());
        assert!(failing.validate(&t, &d).await.is_err());
        assert_eq!(
            failing.inner().calls.load(Ordering::SeqCst),
            2,
            "an error must not be cached"
        );

        let settings = CacheSettings {
            positive_ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_millis(50),
            capacity: 10,
        };
        let cache = CachedValidator::new(Counting::default(), settings);
        let (t, on) = ids("on-1");
        let (_, off) = ids("off-1");
        cache.validate(&t, &on).await.unwrap();
        cache.validate(&t, &off).await.unwrap();
        tokio::time::sleep(Duration::from_millis(120)).await;
        cache.validate(&t, &on).await.unwrap();
        cache.validate(&t, &off).await.unwrap();
        assert_eq!(
            cache.inner().calls.load(Ordering::SeqCst),
            3,
            "only the negative answer should have expired"
        );
    }
}
