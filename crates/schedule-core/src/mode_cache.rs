//! A short cache in front of [`TenantModes`]: the mode the flow applies to a tenant, its
//! stored mode or, without a row, the deployment's default (`DEFAULT_TENANT_MODE`).
//!
//! A switch takes effect within the cache's TTL (30 s by default): each warm Lambda
//! container keeps its answer that long. That never drops or doubles an occurrence: the
//! executor reads the mode once per occurrence, under its claim, and sends it to exactly one
//! place (the action trigger queue, or the shadow record), so each occurrence is decided
//! by one reading — the old mode or the new one, never both. Errors are never cached.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::error::StoreError;
use crate::model::{TenantId, TenantMode, TenantSetting, Timestamp};
use crate::ports::TenantModes;

/// How long a tenant's mode is cached by default.
pub const DEFAULT_MODE_TTL: Duration = Duration::from_secs(30);

pub struct CachedModes<M> {
    inner: Arc<M>,
    default: TenantMode,
    /// `None`: a TTL of zero, every read goes to the store.
    cache: Option<Cache<TenantId, TenantMode>>,
}

impl<M> std::fmt::Debug for CachedModes<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedModes")
            .field("default", &self.default)
            .field("entries", &self.cache.as_ref().map(Cache::entry_count))
            .finish()
    }
}

impl<M: TenantModes> CachedModes<M> {
    pub fn new(inner: M, default: TenantMode, ttl: Duration) -> Self {
        Self {
            inner: Arc::new(inner),
            default,
            cache: (!ttl.is_zero()).then(|| {
                Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(ttl)
                    .build()
            }),
        }
    }

    /// The mode for a tenant without a stored one.
    pub fn default_mode(&self) -> TenantMode {
        self.default
    }

    pub fn inner(&self) -> &M {
        &self.inner
    }

    /// The mode the flow applies to `tenant` now (cached for the TTL).
    pub async fn mode(&self, tenant: &TenantId) -> Result<TenantMode, StoreError> {
        if let Some(cache) = &self.cache
            && let Some(mode) = cache.get(tenant).await
        {
            return Ok(mode);
        }
        let mode = self
            .inner
            .stored_mode(tenant)
            .await?
            .unwrap_or(self.default);
        if let Some(cache) = &self.cache {
            cache.insert(tenant.clone(), mode).await;
        }
        Ok(mode)
    }

    /// Stores `mode` and forgets this process's cached answer; other processes see it
    /// within their TTL.
    pub async fn set_mode(
        &self,
        tenant: &TenantId,
        mode: TenantMode,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        self.inner.set_mode(tenant, mode, at).await?;
        if let Some(cache) = &self.cache {
            cache.invalidate(tenant).await;
        }
        Ok(())
    }

    /// Every stored mode.
    pub async fn modes(&self) -> Result<Vec<TenantSetting>, StoreError> {
        self.inner.modes().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::memory::InMemoryDefinitionSource;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    #[tokio::test]
    async fn the_default_applies_without_a_row_and_a_switch_is_seen_after_the_ttl() {
        let source = Arc::new(InMemoryDefinitionSource::new());
        let acme = TenantId::parse("acme").unwrap();
        let here = CachedModes::new(
            source.clone(),
            TenantMode::Shadow,
            Duration::from_millis(150),
        );
        let elsewhere = CachedModes::new(
            source.clone(),
            TenantMode::Shadow,
            Duration::from_millis(150),
        );
        assert_eq!(here.mode(&acme).await.unwrap(), TenantMode::Shadow);
        assert_eq!(elsewhere.mode(&acme).await.unwrap(), TenantMode::Shadow);

        here.set_mode(&acme, TenantMode::Active, ts("2026-11-26T10:00:00Z"))
            .await
            .unwrap();
        assert_eq!(here.mode(&acme).await.unwrap(), TenantMode::Active);
        // Another container keeps its answer for the TTL, then reads the new mode.
        assert_eq!(elsewhere.mode(&acme).await.unwrap(), TenantMode::Shadow);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(elsewhere.mode(&acme).await.unwrap(), TenantMode::Active);

        let listed = here.modes().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].tenant_id, acme);
        assert_eq!(listed[0].mode, TenantMode::Active);
        assert_eq!(
            listed[0].updated_at.as_deref(),
            Some("2026-11-26T10:00:00Z")
        );
    }
}

/// The mode of a tenant as the executor reads it: object-safe, so an executor carries any
/// source of modes without another type parameter.
pub trait ModeOf: Send + Sync + std::fmt::Debug {
    fn mode_of<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> futures::future::BoxFuture<'a, Result<TenantMode, StoreError>>;
}

impl<M: TenantModes + 'static> ModeOf for CachedModes<M> {
    fn mode_of<'a>(
        &'a self,
        tenant: &'a TenantId,
    ) -> futures::future::BoxFuture<'a, Result<TenantMode, StoreError>> {
        Box::pin(self.mode(tenant))
    }
}

/// One mode for every tenant.
#[derive(Debug)]
struct Fixed(TenantMode);

impl ModeOf for Fixed {
    fn mode_of<'a>(
        &'a self,
        _tenant: &'a TenantId,
    ) -> futures::future::BoxFuture<'a, Result<TenantMode, StoreError>> {
        Box::pin(std::future::ready(Ok(self.0)))
    }
}

/// Where the would-be triggers of tenants in shadow mode go (the shadow queue).
pub trait ShadowSink: Send + Sync + std::fmt::Debug {
    fn record<'a>(
        &'a self,
        message: &'a crate::model::TriggerMessage,
    ) -> futures::future::BoxFuture<'a, Result<(), crate::error::QueueError>>;
}

impl<A: crate::ports::ActionSink + std::fmt::Debug> ShadowSink for A {
    fn record<'a>(
        &'a self,
        message: &'a crate::model::TriggerMessage,
    ) -> futures::future::BoxFuture<'a, Result<(), crate::error::QueueError>> {
        Box::pin(self.send(message))
    }
}

/// How the executor routes an occurrence by its tenant's mode. Without a source of
/// modes every tenant is active (the flow before rollout modes).
#[derive(Debug, Clone, Default)]
pub struct ModeRouting {
    pub modes: Option<Arc<dyn ModeOf>>,
    /// Optional: shadow triggers are always recorded on the item, and also sent here.
    pub shadow: Option<Arc<dyn ShadowSink>>,
}

impl ModeRouting {
    /// Every tenant in `mode` (tests, and a deployment without stored modes).
    pub fn fixed(mode: TenantMode) -> Self {
        Self::new(Arc::new(Fixed(mode)), None)
    }

    pub fn new(modes: Arc<dyn ModeOf>, shadow: Option<Arc<dyn ShadowSink>>) -> Self {
        Self {
            modes: Some(modes),
            shadow,
        }
    }

    /// The tenant's mode now (active without a source of modes).
    pub async fn mode(&self, tenant: &TenantId) -> Result<TenantMode, StoreError> {
        match &self.modes {
            Some(m) => m.mode_of(tenant).await,
            None => Ok(TenantMode::Active),
        }
    }
}
