//! Definition sync: a change to the definitions table (its stream, new and old images)
//! takes effect within seconds instead of at the next daily scan.
//!
//! Every record is brought to the definition's *current* state, read with a consistent
//! get, never to the state the record describes:
//!
//! 1. **Target.** The current definition's occurrences in the horizon (nothing when it is
//!    disabled, deleted or invalid). The horizon runs from now to the end of what the
//!    daily scan has covered (`covered_to`), or to the end of the next UTC day when no
//!    scan has recorded one; beyond it, the next scan materializes the current version.
//! 2. **Materialize** (only when the record's new image *is* the current version): each
//!    target occurrence is created, refreshed to the new version and payload, or
//!    reinstated from CANCELLED — one conditional write each, keyed by version.
//! 3. **Cancel** every occurrence the record's images yielded that the target does not,
//!    conditionally on its version being older than the current one. QUEUED and terminal
//!    occurrences are left alone.
//!
//! A record older than the current version (a replay, a duplicate, or one overtaken by a
//! later edit) materializes nothing; its cancellations still run against the current
//! version, so versions skipped by a quick succession of edits leave nothing stale behind,
//! and a true replay finds every write already done (conditional writes change nothing).
//!
//! Devices are not pre-validated here: the executor validates every device before it
//! sends, so a step created during the day is checked at its due time.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use serde::Serialize;
use serde_json::Value;
use tracing::{info, warn};

use super::AppError;
use crate::error::StoreError;
use crate::metrics::{Metric, Metrics};
use crate::model::{
    Definition, DefinitionError, ScheduleItem, ScheduleKey, StepId, TenantId, Timestamp,
};
use crate::ports::{Clock, DefinitionSource, Materialized, ScannedDefinition, ScheduleStore};
use crate::recurrence::{Window, occurrences};
use crate::retry::{RetryPolicy, retrying};

/// What happened to the row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ChangeKind {
    Insert,
    Modify,
    Remove,
}

/// A definition image that does not read as a [`Definition`]: what can still be known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidImage {
    /// `PK|SK`, or what the ids give.
    pub key: String,
    /// The ids, when they parse (a forged id does not: such a row is reported, not acted on).
    pub ids: Option<(TenantId, StepId)>,
    pub version: Option<u64>,
    pub error: DefinitionError,
}

/// One image of a definition row in a stream record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Image {
    Valid(Definition),
    Invalid(InvalidImage),
}

impl Image {
    /// Reads the JSON form of a table item (`PK`/`SK` may be present; they derive from the
    /// ids). An invalid definition keeps its key, version and the reason.
    pub fn from_json(value: &Value) -> Self {
        match Definition::from_json(value) {
            Ok(def) => Image::Valid(def),
            Err(error) => {
                // The key the row lives under names it first: a row whose ids disagree
                // with its key is that row's problem, never another tenant's.
                let field = |name: &str| value.get(name).and_then(Value::as_str);
                let tenant = field("PK")
                    .and_then(|pk| pk.strip_prefix("TENANT#"))
                    .or_else(|| field("tenant_id"))
                    .and_then(|t| TenantId::parse(t).ok());
                let step = field("SK")
                    .and_then(|sk| sk.strip_prefix("STEP#"))
                    .or_else(|| field("device_workflow_step_id"))
                    .and_then(|s| StepId::parse(s).ok());
                let ids = tenant.zip(step);
                let key = match (field("PK"), field("SK"), &ids) {
                    (Some(pk), Some(sk), _) => format!("{pk}|{sk}"),
                    (_, _, Some((t, s))) => {
                        let (pk, sk) = Definition::key_of(t, s);
                        format!("{pk}|{sk}")
                    }
                    _ => "<unknown>".to_owned(),
                };
                Image::Invalid(InvalidImage {
                    key,
                    ids,
                    version: value.get("version").and_then(Value::as_u64),
                    error,
                })
            }
        }
    }

    pub fn version(&self) -> Option<u64> {
        match self {
            Image::Valid(d) => Some(d.version),
            Image::Invalid(i) => i.version,
        }
    }

    fn ids(&self) -> Option<(TenantId, StepId)> {
        match self {
            Image::Valid(d) => Some((d.tenant_id.clone(), d.device_workflow_step_id.clone())),
            Image::Invalid(i) => i.ids.clone(),
        }
    }

    /// Whether the row is a settings row (a tenant's rollout mode), not a definition.
    pub fn is_settings_row(&self) -> bool {
        match self {
            Image::Valid(_) => false,
            Image::Invalid(i) => i
                .key
                .split_once('|')
                .is_some_and(|(_, sk)| crate::model::is_settings_row(sk)),
        }
    }

    fn definition(&self) -> Option<&Definition> {
        match self {
            Image::Valid(d) => Some(d),
            Image::Invalid(_) => None,
        }
    }
}

/// One record of the definitions table's stream (NEW_AND_OLD_IMAGES).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionChange {
    pub event_id: String,
    pub kind: ChangeKind,
    pub old: Option<Image>,
    pub new: Option<Image>,
}

#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Occurrences due this long before now are still cancelled when their definition
    /// changes (the scheduler may not have picked them up yet); new ones are only ever
    /// materialized from now on, so an edit never fires a past occurrence late.
    pub lookback: Duration,
    pub retention: Duration,
    pub shards: u16,
    /// Writes in flight at once for one record.
    pub concurrency: usize,
    /// Retries of throttled reads and writes.
    pub retry: RetryPolicy,
}

impl Default for SyncSettings {
    fn default() -> Self {
        Self {
            lookback: crate::limits::DEFAULT_SCHEDULE_WINDOW,
            retention: crate::limits::DEFAULT_RETENTION,
            shards: crate::limits::DEFAULT_STATUS_SHARDS,
            concurrency: 16,
            retry: RetryPolicy::new(6, Duration::from_millis(50), Duration::from_secs(2), 0x5c17),
        }
    }
}

/// What a batch (or one record) did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncOutcome {
    pub records: usize,
    pub created: usize,
    pub refreshed: usize,
    pub reinstated: usize,
    pub cancelled: usize,
    /// Materialize or cancel calls that found nothing to do (already done, QUEUED, terminal).
    pub unchanged: usize,
    /// Records older than the definition's current version.
    pub stale_ignored: usize,
    /// Records or current definitions that do not read as a definition, or whose rule
    /// cannot be expanded.
    pub invalid: usize,
    /// Records of settings rows (a tenant's rollout mode): no definition, nothing to do.
    pub settings: usize,
    /// Records of a tenant whose mode is off: nothing materialized.
    pub tenant_off: usize,
}

impl SyncOutcome {
    fn add(&mut self, other: &SyncOutcome) {
        self.records += other.records;
        self.created += other.created;
        self.refreshed += other.refreshed;
        self.reinstated += other.reinstated;
        self.cancelled += other.cancelled;
        self.unchanged += other.unchanged;
        self.stale_ignored += other.stale_ignored;
        self.invalid += other.invalid;
        self.settings += other.settings;
        self.tenant_off += other.tenant_off;
    }
}

/// A batch handled in order up to its first failure.
#[derive(Debug)]
pub struct BatchResult {
    pub outcome: SyncOutcome,
    /// The index of the first record that failed, and why; later records were not
    /// attempted (stream order is kept by retrying from there).
    pub failed: Option<(usize, AppError)>,
}

/// The current state of the row, as the sync acts on it.
enum Current {
    Absent,
    Valid(Box<Definition>),
    Invalid(String),
}

/// The definition sync use case, generic over its ports.
#[derive(Debug)]
pub struct DefinitionSync<S, D, C> {
    pub store: S,
    pub definitions: D,
    pub clock: C,
    pub settings: SyncSettings,
    /// Per-tenant rollout modes: nothing is materialized for a tenant that is off.
    pub modes: crate::mode_cache::ModeRouting,
}

impl<S: ScheduleStore, D: DefinitionSource, C: Clock> DefinitionSync<S, D, C> {
    /// Handles `changes` in order; stops at the first record that fails.
    pub async fn apply_batch(
        &self,
        changes: &[DefinitionChange],
        metrics: &Metrics,
    ) -> BatchResult {
        let mut outcome = SyncOutcome::default();
        for (i, change) in changes.iter().enumerate() {
            // Boxed: the record's future nests retries inside bounded streams, deep enough
            // to exceed the compiler's layout depth once inlined into the Lambda loop.
            match Box::pin(self.apply(change, metrics)).await {
                Ok(one) => outcome.add(&one),
                Err(e) => {
                    warn!(event_id = %change.event_id, error = %crate::error::chain(&e), "definition change not applied; it and the records after it are retried");
                    return BatchResult {
                        outcome,
                        failed: Some((i, e)),
                    };
                }
            }
        }
        BatchResult {
            outcome,
            failed: None,
        }
    }

    /// Applies one record (see the module head for the steps).
    pub async fn apply(
        &self,
        change: &DefinitionChange,
        metrics: &Metrics,
    ) -> Result<SyncOutcome, AppError> {
        let mut out = SyncOutcome {
            records: 1,
            ..SyncOutcome::default()
        };
        metrics.incr(Metric::SyncRecords);
        let images = [change.new.as_ref(), change.old.as_ref()];
        if images.iter().flatten().any(|i| i.is_settings_row()) {
            out.settings += 1;
            info!(event_id = %change.event_id, "settings row changed; no definition to apply");
            return Ok(out);
        }
        let ids = change
            .new
            .as_ref()
            .and_then(Image::ids)
            .or_else(|| change.old.as_ref().and_then(Image::ids));
        let Some((tenant, step)) = ids else {
            out.invalid += 1;
            metrics.incr(Metric::InvalidDefinition);
            warn!(event_id = %change.event_id, "definition change without valid ids ignored");
            return Ok(out);
        };
        let current = self.current(&tenant, &step).await?;
        let is_current = self.is_current(change, &current);
        let window = self.horizon().await?;
        let (wanted, cancelling_version, reason) =
            self.target(change, &current, window, &mut out, metrics, is_current);

        if is_current && !self.materializes(&tenant).await {
            out.tenant_off += 1;
            info!(event_id = %change.event_id, tenant_id = %tenant, "tenant mode is off: nothing materialized");
        } else if is_current {
            if let Current::Valid(def) = &current {
                let now = Timestamp::from_datetime(self.clock.now());
                let fresh: Vec<Timestamp> = wanted.iter().copied().filter(|t| *t >= now).collect();
                self.materialize(def, &fresh, now, &mut out, metrics)
                    .await?;
            }
        } else {
            out.stale_ignored += 1;
            metrics.incr(Metric::StaleRecordIgnored);
            info!(event_id = %change.event_id, tenant_id = %tenant, device_workflow_step_id = %step, version = ?change.new.as_ref().and_then(Image::version), "stream record older than the current definition: nothing materialized");
        }

        let mut previous: BTreeSet<Timestamp> = BTreeSet::new();
        let mut images = vec![change.old.as_ref()];
        if !is_current {
            images.push(change.new.as_ref());
        }
        for def in images.into_iter().flatten().filter_map(Image::definition) {
            if def.enabled
                && let Ok(times) = occurrences(&def.schedule, window)
            {
                previous.extend(times);
            }
        }
        let gone: Vec<ScheduleKey> = previous
            .difference(&wanted)
            .map(|t| ScheduleKey::new(&tenant, *t, &step))
            .collect();
        self.cancel(&gone, cancelling_version, &reason, &mut out, metrics)
            .await?;
        info!(event_id = %change.event_id, tenant_id = %tenant, device_workflow_step_id = %step,
            created = out.created, refreshed = out.refreshed, reinstated = out.reinstated, cancelled = out.cancelled,
            unchanged = out.unchanged, stale = out.stale_ignored, "definition change applied");
        Ok(out)
    }

    /// Whether occurrences are materialized for `tenant` (a mode that cannot be read
    /// counts as yes: the executor reads it again at each due time).
    async fn materializes(&self, tenant: &TenantId) -> bool {
        match self.modes.mode(tenant).await {
            Ok(mode) => mode.materializes(),
            Err(e) => {
                warn!(tenant_id = %tenant, error = %crate::error::chain(&e), "tenant mode not read; materialized, the executor decides at the due time");
                true
            }
        }
    }

    async fn current(&self, tenant: &TenantId, step: &StepId) -> Result<Current, StoreError> {
        let (pk, sk) = Definition::key_of(tenant, step);
        let found: Option<ScannedDefinition> = retrying(
            self.settings.retry,
            &format!("{pk}|{sk}"),
            &self.clock,
            None,
            || self.definitions.get(tenant, step),
        )
        .await?;
        Ok(match found {
            None => Current::Absent,
            Some(Ok(def)) => Current::Valid(Box::new(def)),
            Some(Err(bad)) => Current::Invalid(bad.error.to_string()),
        })
    }

    /// Whether the record describes the row as it is now.
    fn is_current(&self, change: &DefinitionChange, current: &Current) -> bool {
        match (change.kind, &change.new, current) {
            (ChangeKind::Remove, _, current) => matches!(current, Current::Absent),
            (_, Some(Image::Valid(new)), Current::Valid(def)) => new.version == def.version,
            // The stored row does not parse either: nothing tells a newer invalid write
            // apart, and acting on it only cancels (conditionally on version).
            (_, Some(Image::Invalid(_)), Current::Invalid(_)) => true,
            _ => false,
        }
    }

    /// `[now - lookback, covered_to)`, or to the end of the next UTC day when no complete
    /// scan has recorded how far it reached (or that is already past).
    async fn horizon(&self) -> Result<Window, StoreError> {
        let now = Timestamp::from_datetime(self.clock.now());
        let covered = retrying(
            self.settings.retry,
            "scan-horizon",
            &self.clock,
            None,
            || self.store.scan_horizon(),
        )
        .await?;
        let to = match covered {
            Some(to) if to > now => to,
            _ => end_of_next_utc_day(now),
        };
        Ok(Window::new(now.minus(self.settings.lookback), to))
    }

    /// The occurrences the current state wants in `window`, the version that cancels the
    /// others, and the reason recorded on them.
    fn target(
        &self,
        change: &DefinitionChange,
        current: &Current,
        window: Window,
        out: &mut SyncOutcome,
        metrics: &Metrics,
        is_current: bool,
    ) -> (BTreeSet<Timestamp>, u64, String) {
        let record_version = change
            .new
            .as_ref()
            .and_then(Image::version)
            .or_else(|| change.old.as_ref().and_then(Image::version))
            .unwrap_or(0);
        match current {
            Current::Absent => (
                BTreeSet::new(),
                record_version.saturating_add(1),
                "definition deleted".to_owned(),
            ),
            Current::Invalid(error) => {
                if is_current {
                    out.invalid += 1;
                    metrics.incr(Metric::InvalidDefinition);
                    warn!(event_id = %change.event_id, error = %error, "definition is invalid; its pending occurrences are cancelled");
                }
                let version = match &change.new {
                    Some(Image::Invalid(i)) => i.version,
                    _ => None,
                }
                .unwrap_or(record_version.saturating_add(1));
                (
                    BTreeSet::new(),
                    version,
                    format!("definition version {version} is invalid: {error}"),
                )
            }
            Current::Valid(def) if !def.enabled => (
                BTreeSet::new(),
                def.version,
                format!("definition disabled (version {})", def.version),
            ),
            Current::Valid(def) => {
                let wanted = match occurrences(&def.schedule, window) {
                    Ok(times) => times.into_iter().collect(),
                    Err(e) => {
                        if is_current {
                            out.invalid += 1;
                            metrics.incr(Metric::InvalidSchedule);
                            warn!(event_id = %change.event_id, error = %e, "schedule cannot be expanded; its pending occurrences are cancelled");
                        }
                        BTreeSet::new()
                    }
                };
                (
                    wanted,
                    def.version,
                    format!("version {} no longer yields this time", def.version),
                )
            }
        }
    }

    async fn materialize(
        &self,
        def: &Definition,
        times: &[Timestamp],
        now: Timestamp,
        out: &mut SyncOutcome,
        metrics: &Metrics,
    ) -> Result<(), StoreError> {
        let results: Vec<Result<Materialized, StoreError>> = futures::stream::iter(times)
            .map(|at| async move {
                let item = ScheduleItem::pending(
                    def,
                    *at,
                    now,
                    self.settings.retention,
                    self.settings.shards,
                );
                retrying(
                    self.settings.retry,
                    &item.key.to_string(),
                    &self.clock,
                    None,
                    || self.store.materialize(&item),
                )
                .await
            })
            .buffered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for result in results {
            match result? {
                Materialized::Created => {
                    out.created += 1;
                    metrics.incr(Metric::Materialized);
                }
                Materialized::Refreshed => {
                    out.refreshed += 1;
                    metrics.incr(Metric::Refreshed);
                }
                Materialized::Reinstated => {
                    out.reinstated += 1;
                    metrics.incr(Metric::Reinstated);
                }
                Materialized::Unchanged => out.unchanged += 1,
            }
        }
        Ok(())
    }

    async fn cancel(
        &self,
        keys: &[ScheduleKey],
        version: u64,
        reason: &str,
        out: &mut SyncOutcome,
        metrics: &Metrics,
    ) -> Result<(), StoreError> {
        let results: Vec<Result<bool, StoreError>> = futures::stream::iter(keys)
            .map(|key| async move {
                retrying(
                    self.settings.retry,
                    &key.to_string(),
                    &self.clock,
                    None,
                    || self.store.cancel(key, version, reason),
                )
                .await
            })
            .buffered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for result in results {
            if result? {
                out.cancelled += 1;
                metrics.incr(Metric::Cancelled);
            } else {
                out.unchanged += 1;
            }
        }
        Ok(())
    }
}

/// Midnight UTC at the end of the day after `now`'s.
pub fn end_of_next_utc_day(now: Timestamp) -> Timestamp {
    let day = now.epoch_seconds().div_euclid(86_400);
    Timestamp::from_epoch_seconds((day + 2) * 86_400).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_default_horizon_ends_at_midnight_after_tomorrow() {
        let now = Timestamp::parse("2026-11-26T10:30:00Z").unwrap();
        assert_eq!(end_of_next_utc_day(now).to_string(), "2026-11-28T00:00:00Z");
        let midnight = Timestamp::parse("2026-11-26T00:00:00Z").unwrap();
        assert_eq!(
            end_of_next_utc_day(midnight).to_string(),
            "2026-11-28T00:00:00Z"
        );
    }

    #[test]
    fn invalid_images_keep_key_version_and_reason() {
        let image = Image::from_json(&json!({
            "PK": "TENANT#acme", "SK": "STEP#s1", "tenant_id": "acme", "device_workflow_step_id": "s1",
            "workflow_id": "w1", "device_id": "d1", "version": 7,
            "schedule": {"type": "cron", "expression": "0 8 * * *", "timezone": "Mars/Olympus"}
        }));
        let Image::Invalid(bad) = image else {
            panic!("an unknown zone must not parse: {image:?}");
        };
        assert_eq!(bad.key, "TENANT#acme|STEP#s1");
        assert_eq!(bad.version, Some(7));
        assert_eq!(
            bad.ids.map(|(t, s)| (t.to_string(), s.to_string())),
            Some(("acme".to_owned(), "s1".to_owned()))
        );
        assert!(
            bad.error.to_string().contains("Mars/Olympus"),
            "{}",
            bad.error
        );

        let forged = Image::from_json(&json!({"PK": "TENANT#a#b", "SK": "STEP#s1", "version": 2}));
        let Image::Invalid(forged) = forged else {
            panic!("no schedule must not parse");
        };
        assert_eq!(
            (forged.ids, forged.key.as_str()),
            (None, "TENANT#a#b|STEP#s1")
        );
    }
}
