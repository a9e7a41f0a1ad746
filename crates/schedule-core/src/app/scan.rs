//! The scan: enabled definitions → occurrences in `[from, to)` → one schedule item each,
//! written with a conditional create so a re-run, an overlapping run or a run after a
//! crash creates nothing twice and resets no status.
//!
//! **Where a run starts.** The store keeps the scan horizon: the end of the last complete
//! scan over every tenant. A scheduled run covers `[from, now + horizon + overlap)`:
//! - an *incremental* run (EventBridge, every hour: `{"mode": "incremental"}`) starts at
//!   the recorded horizon, so it writes only the occurrences that came into range since the
//!   last complete run — about one hour's worth, cheap enough to run hourly;
//! - a *full* run (EventBridge, daily at 00:00 UTC, or `{}` by hand) starts at the earlier
//!   of the horizon and now, so it also rewrites what is already there (idempotently:
//!   a definition change that definition sync could not apply is brought in here);
//! - either way never earlier than `now - catch_up` (7 days by default). Occurrences it
//!   brings in past their misfire grace are marked MISSED by the scheduler, so an outage
//!   of the scanner shows as MISSED steps, never as steps that silently do not exist (a
//!   definition's own grace may be longer than the default, too). With no horizon
//!   recorded (the first run) a run starts at now.
//!
//! So a missed or failed run costs nothing: the horizon stays where the last complete run
//! left it (about 24 h ahead), and the next run, an hour later, starts there. Only when
//! every run fails for longer than the lookahead does anything fall behind, and then the
//! next run materializes everything since the horizon: what is still inside its grace
//! fires late, the rest is recorded MISSED. A backfill (`{"from", "to"}`)
//! covers exactly its range.
//!
//! **Devices.** Each distinct (tenant, device) is validated once per run, `concurrency` at
//! a time, the phase bounded to a share of the time left. The answer is recorded on the
//! item (`validation_result`) but never decides its status: an inactive device's steps stay
//! PENDING and the executor asks again at the due time (SKIPPED then, or fired if the
//! device was activated meanwhile). A registry that cannot answer — down, slow, misconfigured
//! — or a phase out of time leaves the validation unknown, and the items are written anyway.
//!
//! **Errors per item.** A write still failing for a transient reason after its retries
//! leaves the run incomplete (the invocation fails; the next run covers it again). A write
//! refused for good (an item DynamoDB will never take) is that definition's fault: it is
//! counted as an invalid definition, logged with the key and the reason, and the run goes
//! on and completes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use tracing::{info, warn};

use super::{AppError, Deadline};
use crate::error::StoreError;
use crate::metrics::{Metric, Metrics};
use crate::model::{Definition, DeviceId, ScheduleItem, StepId, TenantId, Timestamp, Validation};
use crate::ports::{
    Clock, DefinitionSource, DeviceValidator, Materialized, Paging, ScheduleStore,
    scan_definitions_paged,
};
use crate::recurrence::{Window, occurrences};
use crate::retry::{RetryPolicy, retrying};

#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// How far ahead a run materializes (24 h).
    pub horizon: Duration,
    /// Added to the horizon so consecutive runs overlap; a late or slow run leaves no gap
    /// (the conditional create makes the overlap free of duplicates).
    pub overlap: Duration,
    /// How far back a scheduled run may start to catch up: the longest default misfire
    /// grace (older occurrences would only be marked MISSED).
    pub catch_up: Duration,
    pub segments: u32,
    /// Writes and validations in flight at once.
    pub concurrency: usize,
    pub retention: Duration,
    pub shards: u16,
    /// Retries of throttled writes (and of the horizon's read and write).
    pub write_retry: RetryPolicy,
    /// Retries of a registry call that could not answer.
    pub validation_retry: RetryPolicy,
    /// The validation phase takes at most `1 / validation_share` of the time left.
    pub validation_share: u32,
    /// Stop this long before the Lambda deadline.
    pub deadline_margin: Duration,
    /// The longest backfill range accepted.
    pub max_range: Duration,
}

impl Default for ScanSettings {
    fn default() -> Self {
        Self {
            horizon: Duration::from_secs(24 * 3600),
            overlap: Duration::from_secs(3600),
            catch_up: crate::limits::DEFAULT_SCAN_CATCH_UP,
            segments: 4,
            concurrency: 16,
            retention: crate::limits::DEFAULT_RETENTION,
            shards: crate::limits::DEFAULT_STATUS_SHARDS,
            write_retry: RetryPolicy::new(
                6,
                Duration::from_millis(50),
                Duration::from_secs(2),
                0x5ca9,
            ),
            validation_retry: RetryPolicy::new(
                3,
                Duration::from_millis(200),
                Duration::from_secs(2),
                0x7a1d,
            ),
            validation_share: 3,
            deadline_margin: Duration::from_secs(10),
            max_range: Duration::from_secs(31 * 86_400),
        }
    }
}

/// Which kind of run a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScanKind {
    /// Scheduled: from the earlier of the horizon and now (rewrites what is there).
    Full,
    /// Scheduled: from the horizon (writes only what is new).
    Incremental,
    /// A given range, possibly of one tenant.
    Backfill,
}

/// What to scan: a window and, for a backfill, optionally one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    pub window: Window,
    pub tenant: Option<TenantId>,
    pub kind: ScanKind,
}

impl ScanRequest {
    /// A full run with no horizon recorded: `[now, now + horizon + overlap)`.
    pub fn daily(now: Timestamp, settings: &ScanSettings) -> Self {
        Self::full(now, None, settings)
    }

    /// A full scheduled run: from the earlier of the recorded `horizon` and now, but not
    /// before `now - catch_up`, to `now + horizon + overlap`.
    pub fn full(now: Timestamp, horizon: Option<Timestamp>, settings: &ScanSettings) -> Self {
        let from = horizon.map_or(now, |h| h.min(now));
        Self::scheduled(from, now, ScanKind::Full, settings)
    }

    /// An incremental scheduled run: from the recorded `horizon` (now when none), but not
    /// before `now - catch_up`, to `now + horizon + overlap`; empty when the horizon is
    /// already beyond that.
    pub fn incremental(
        now: Timestamp,
        horizon: Option<Timestamp>,
        settings: &ScanSettings,
    ) -> Self {
        Self::scheduled(horizon.unwrap_or(now), now, ScanKind::Incremental, settings)
    }

    fn scheduled(from: Timestamp, now: Timestamp, kind: ScanKind, settings: &ScanSettings) -> Self {
        let to = now.plus(settings.horizon + settings.overlap);
        let from = from.max(now.minus(settings.catch_up)).min(to);
        Self {
            window: Window::new(from, to),
            tenant: None,
            kind,
        }
    }

    /// A backfill of `[from, to)`; the range must be positive and at most `max_range`.
    pub fn backfill(
        from: Timestamp,
        to: Timestamp,
        tenant: Option<TenantId>,
        settings: &ScanSettings,
    ) -> Result<Self, AppError> {
        if from >= to {
            return Err(AppError::InvalidRequest(format!(
                "range from {from} to {to} is empty: 'from' must be before 'to'"
            )));
        }
        if to.epoch_seconds() - from.epoch_seconds() > settings.max_range.as_secs() as i64 {
            return Err(AppError::InvalidRequest(format!(
                "range from {from} to {to} is longer than the {} days a backfill may cover",
                settings.max_range.as_secs() / 86_400
            )));
        }
        Ok(Self {
            window: Window::new(from, to),
            tenant,
            kind: ScanKind::Backfill,
        })
    }
}

/// What a scan did; every definition and occurrence is accounted for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScanReport {
    pub from: String,
    pub to: String,
    pub definitions: usize,
    pub disabled: usize,
    pub other_tenants: usize,
    /// Definitions rejected when read, or whose occurrences the store refused for good.
    pub invalid_definitions: usize,
    pub invalid_schedules: usize,
    pub occurrences: usize,
    pub created: usize,
    pub already_present: usize,
    /// PENDING occurrences of an older definition version brought to the current one.
    pub refreshed: usize,
    /// CANCELLED occurrences that the current version yields again, PENDING once more.
    pub reinstated: usize,
    /// Occurrences written (PENDING) for a device the registry said is inactive; the
    /// executor decides at the due time.
    pub invalid_device: usize,
    /// Distinct devices the registry answered for.
    pub devices_validated: usize,
    /// Distinct devices left with validation unknown (registry unavailable, or out of time).
    pub validation_unavailable: usize,
    /// Writes refused for a permanent reason (counted against their definition).
    pub refused: usize,
    /// Writes that still failed for a transient reason after their retries.
    pub write_errors: usize,
    /// Enabled definitions of tenants whose rollout mode is off: nothing materialized.
    pub tenant_off: usize,
    /// Occurrences not attempted because the deadline came first.
    pub not_written: usize,
}

impl ScanReport {
    /// Everything in the window is in the table (or refused for good).
    pub fn is_complete(&self) -> bool {
        self.write_errors == 0 && self.not_written == 0
    }
}

/// The scanner, generic over its ports.
#[derive(Debug)]
pub struct Scanner<D, S, V, C> {
    pub definitions: D,
    pub store: S,
    pub validator: V,
    pub clock: C,
    pub settings: ScanSettings,
    /// Per-tenant rollout modes: nothing is materialized for a tenant that is off.
    pub modes: crate::mode_cache::ModeRouting,
}

/// One occurrence to write: its definition and its time.
type Wanted<'a> = (&'a Definition, Timestamp);

impl<D: DefinitionSource, S: ScheduleStore, V: DeviceValidator, C: Clock> Scanner<D, S, V, C> {
    /// The recorded scan horizon (throttling retried, up to `deadline`).
    pub async fn recorded_horizon(
        &self,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<Option<Timestamp>, StoreError> {
        retrying(
            self.settings.write_retry,
            "scan-horizon",
            &self.clock,
            deadline,
            || self.store.scan_horizon(),
        )
        .await
    }

    pub async fn run(
        &self,
        request: &ScanRequest,
        deadline: Option<DateTime<Utc>>,
        metrics: &Metrics,
    ) -> Result<ScanReport, AppError> {
        let mut report = ScanReport {
            from: request.window.from.to_string(),
            to: request.window.to.to_string(),
            ..ScanReport::default()
        };
        let started = Timestamp::from_datetime(self.clock.now());
        let stop = Deadline::new(deadline, self.clock.now(), self.settings.deadline_margin);
        self.record_status_shards(stop).await;
        let definitions = self
            .read_definitions(request, stop, &mut report, metrics)
            .await?;
        let wanted = self.expand(&definitions, request.window, &mut report, metrics);
        let validations = self
            .validate_devices(&wanted, stop.stop_at(), &mut report, metrics)
            .await;
        self.write_all(&wanted, &validations, stop, &mut report, metrics)
            .await;
        self.record_horizon(request, started, stop, &mut report)
            .await;
        info!(
            from = %report.from, to = %report.to, kind = ?request.kind, definitions = report.definitions,
            occurrences = report.occurrences, created = report.created, already_present = report.already_present,
            invalid_device = report.invalid_device, validation_unavailable = report.validation_unavailable,
            invalid_definitions = report.invalid_definitions, refused = report.refused,
            write_errors = report.write_errors, not_written = report.not_written,
            "scan finished"
        );
        Ok(report)
    }

    /// Records the shard count this run writes under before its first write, so the due
    /// query keeps reading those shards if `STATUS_SHARDS` is lowered later. A failure is
    /// logged and the run goes on: the scheduler records the same count every window.
    async fn record_status_shards(&self, stop: Deadline) {
        let shards = self.settings.shards;
        let record = retrying(
            self.settings.write_retry,
            "status-shards",
            &self.clock,
            stop.stop_at(),
            || self.store.record_status_shards(shards),
        )
        .await;
        if let Err(e) = record {
            warn!(shards, error = %crate::error::chain(&e), "status shard count not recorded");
        }
    }

    /// The enabled definitions the request covers; invalid ones are counted and logged.
    async fn read_definitions(
        &self,
        request: &ScanRequest,
        stop: Deadline,
        report: &mut ScanReport,
        metrics: &Metrics,
    ) -> Result<Vec<Definition>, AppError> {
        let paging = Paging {
            page_size: 0,
            clock: &self.clock,
            deadline: stop.stop_at(),
        };
        let scanned =
            scan_definitions_paged(&self.definitions, self.settings.segments, paging).await?;
        let mut definitions = Vec::new();
        for entry in scanned {
            report.definitions += 1;
            let def = match entry {
                Ok(d) => d,
                Err(bad) => {
                    report.invalid_definitions += 1;
                    metrics.incr(Metric::InvalidDefinition);
                    warn!(key = %bad.key, field = %bad.error.field, value = %bad.error.value, reason = %bad.error.reason, "invalid definition skipped");
                    continue;
                }
            };
            if request.tenant.as_ref().is_some_and(|t| *t != def.tenant_id) {
                report.other_tenants += 1;
            } else if !def.enabled {
                report.disabled += 1;
            } else {
                definitions.push(def);
            }
        }
        self.drop_tenants_off(definitions, report).await
    }

    /// The definitions whose tenant is not off. A mode that cannot be read keeps the
    /// tenant's definitions (the executor reads the mode again at each due time, and
    /// sends nothing for a tenant that is off).
    async fn drop_tenants_off(
        &self,
        definitions: Vec<Definition>,
        report: &mut ScanReport,
    ) -> Result<Vec<Definition>, AppError> {
        let tenants: BTreeSet<&TenantId> = definitions.iter().map(|d| &d.tenant_id).collect();
        let mut off = BTreeSet::new();
        for tenant in tenants {
            match self.modes.mode(tenant).await {
                Ok(mode) if !mode.materializes() => {
                    off.insert(tenant.clone());
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(tenant_id = %tenant, error = %crate::error::chain(&e), "tenant mode not read; its definitions are materialized and the executor decides at the due time");
                }
            }
        }
        if off.is_empty() {
            return Ok(definitions);
        }
        let (kept, dropped): (Vec<_>, Vec<_>) = definitions
            .into_iter()
            .partition(|d| !off.contains(&d.tenant_id));
        report.tenant_off += dropped.len();
        info!(tenants = ?off, definitions = dropped.len(), "tenants off: nothing materialized");
        Ok(kept)
    }

    /// Every occurrence in `window`, earliest first: if the deadline cuts the run short,
    /// what is left is the latest. Occurrences refer to their definition: a payload is
    /// copied only into the items being written, never once per occurrence up front.
    fn expand<'a>(
        &self,
        definitions: &'a [Definition],
        window: Window,
        report: &mut ScanReport,
        metrics: &Metrics,
    ) -> Vec<Wanted<'a>> {
        let mut wanted: Vec<Wanted<'a>> = Vec::new();
        for def in definitions {
            match occurrences(&def.schedule, window) {
                Ok(times) => wanted.extend(times.into_iter().map(|t| (def, t))),
                Err(error) => {
                    report.invalid_schedules += 1;
                    metrics.incr(Metric::InvalidSchedule);
                    warn!(tenant_id = %def.tenant_id, device_workflow_step_id = %def.device_workflow_step_id, %error, "schedule could not be expanded; definition skipped");
                }
            }
        }
        report.occurrences = wanted.len();
        wanted.sort_by(|a, b| {
            (a.1, &a.0.tenant_id, &a.0.device_workflow_step_id).cmp(&(
                b.1,
                &b.0.tenant_id,
                &b.0.device_workflow_step_id,
            ))
        });
        wanted
    }

    /// Validates each distinct device once, `concurrency` at a time, each call retried
    /// through [`retrying`]; the whole phase ends at `1 / validation_share` of the time
    /// left before `stop_at`. Devices the registry did not answer for in time are left out
    /// of the map (validation unknown).
    async fn validate_devices(
        &self,
        wanted: &[Wanted<'_>],
        stop_at: Option<DateTime<Utc>>,
        report: &mut ScanReport,
        metrics: &Metrics,
    ) -> BTreeMap<(TenantId, DeviceId), Validation> {
        let devices: BTreeSet<(TenantId, DeviceId)> = wanted
            .iter()
            .map(|(def, _)| (def.tenant_id.clone(), def.device_id.clone()))
            .collect();
        let now = self.clock.now();
        let share = i32::try_from(self.settings.validation_share.max(1)).unwrap_or(i32::MAX);
        let phase_end = stop_at.map(|s| now + (s - now).max(chrono::Duration::zero()) / share);
        let mut answers = BTreeMap::new();
        let mut calls = futures::stream::iter(&devices)
            .map(|ids| async move {
                let key = format!("{}/{}", ids.0, ids.1);
                let answer = retrying(
                    self.settings.validation_retry,
                    &key,
                    &self.clock,
                    phase_end,
                    || self.validator.validate(&ids.0, &ids.1),
                )
                .await;
                (ids, answer)
            })
            .buffer_unordered(self.settings.concurrency.max(1));
        let collect = async {
            while let Some((ids, answer)) = calls.next().await {
                match answer {
                    Ok(v) => {
                        answers.insert(ids.clone(), v);
                    }
                    Err(e) => {
                        warn!(tenant_id = %ids.0, device_id = %ids.1, error = %crate::error::chain(&e), "device not validated; written with validation unknown, the executor validates it");
                    }
                }
            }
        };
        // The phase is cut on the runtime's timer: a registry call that hangs holds no
        // clock reading that could end it.
        let budget = phase_end.map(|e| (e - now).to_std().unwrap_or(Duration::ZERO));
        let cut = match budget {
            Some(budget) => tokio::time::timeout(budget, collect).await.is_err(),
            None => {
                collect.await;
                false
            }
        };
        let unavailable = devices.len() - answers.len();
        if cut {
            warn!(
                validated = answers.len(),
                devices = devices.len(),
                "validation phase out of time; the other devices are written with validation unknown"
            );
        }
        report.devices_validated = answers.len();
        report.validation_unavailable = unavailable;
        metrics.count(Metric::ValidationUnavailable, unavailable as u64);
        answers
    }

    /// Writes every occurrence through a bounded window (at most `concurrency` items exist
    /// at once), each write retried through [`retrying`] with its key as the seed.
    async fn write_all(
        &self,
        wanted: &[Wanted<'_>],
        validations: &BTreeMap<(TenantId, DeviceId), Validation>,
        stop: Deadline,
        report: &mut ScanReport,
        metrics: &Metrics,
    ) {
        let now = Timestamp::from_datetime(self.clock.now());
        let mut writes = futures::stream::iter(wanted.iter())
            .map(|(def, at)| async move {
                if stop.near(self.clock.now()) {
                    return None;
                }
                let validation = validations
                    .get(&(def.tenant_id.clone(), def.device_id.clone()))
                    .copied();
                let item = ScheduleItem::pending(
                    def,
                    *at,
                    now,
                    self.settings.retention,
                    self.settings.shards,
                )
                .with_device_validation(validation);
                let key = format!("{}|{}", item.key.pk, item.key.sk);
                let result = retrying(
                    self.settings.write_retry,
                    &key,
                    &self.clock,
                    stop.stop_at(),
                    || self.store.materialize(&item),
                )
                .await;
                Some((item, result))
            })
            .buffered(self.settings.concurrency.max(1));
        let mut refused_definitions: BTreeSet<(TenantId, StepId)> = BTreeSet::new();
        while let Some(result) = writes.next().await {
            let Some((item, result)) = result else {
                report.not_written += 1;
                continue;
            };
            match result {
                Ok(done) => Self::count_written(&item, done, report, metrics),
                Err(e) if e.is_retryable() => {
                    report.write_errors += 1;
                    metrics.incr(Metric::WriteErrors);
                    warn!(pk = %item.key.pk, sk = %item.key.sk, error = %crate::error::chain(&e), "occurrence not written; the run is incomplete");
                }
                Err(e) => {
                    report.refused += 1;
                    let definition = (item.tenant_id.clone(), item.device_workflow_step_id.clone());
                    if refused_definitions.insert(definition) {
                        report.invalid_definitions += 1;
                        metrics.incr(Metric::InvalidDefinition);
                    }
                    warn!(pk = %item.key.pk, sk = %item.key.sk, tenant_id = %item.tenant_id, device_workflow_step_id = %item.device_workflow_step_id,
                          reason = %crate::error::chain(&e), "occurrence refused by the store; its definition is counted invalid");
                }
            }
        }
        metrics.count(Metric::NotWritten, report.not_written as u64);
    }

    fn count_written(
        item: &ScheduleItem,
        done: Materialized,
        report: &mut ScanReport,
        metrics: &Metrics,
    ) {
        match done {
            Materialized::Created => {
                report.created += 1;
                metrics.incr(Metric::Materialized);
            }
            Materialized::Refreshed => {
                report.refreshed += 1;
                metrics.incr(Metric::Refreshed);
            }
            Materialized::Reinstated => {
                report.reinstated += 1;
                metrics.incr(Metric::Reinstated);
            }
            Materialized::Unchanged => {
                report.already_present += 1;
                metrics.incr(Metric::AlreadyMaterialized);
                return;
            }
        }
        if item.validation_result == Some(Validation::Invalid) {
            report.invalid_device += 1;
        }
    }

    /// After a complete run over every tenant that continues what is covered (a scheduled
    /// run, or a backfill from now or earlier), records how far ahead every definition is
    /// materialized (definition sync covers same-day changes up to there). A failure counts
    /// as a write error: the run is retried, and a stale horizon would make the next run
    /// redo this one.
    async fn record_horizon(
        &self,
        request: &ScanRequest,
        started: Timestamp,
        stop: Deadline,
        report: &mut ScanReport,
    ) {
        let continues = match request.kind {
            ScanKind::Full | ScanKind::Incremental => true,
            ScanKind::Backfill => request.window.from <= started,
        };
        if request.tenant.is_some() || !continues || !report.is_complete() {
            return;
        }
        let covered_to = request.window.to;
        let result = retrying(
            self.settings.write_retry,
            "scan-horizon",
            &self.clock,
            stop.stop_at(),
            || self.store.record_scan_horizon(covered_to),
        )
        .await;
        if let Err(e) = result {
            report.write_errors += 1;
            warn!(covered_to = %covered_to, error = %crate::error::chain(&e), "scan horizon not recorded");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn window(r: &ScanRequest) -> (String, String) {
        (r.window.from.to_string(), r.window.to.to_string())
    }

    #[test]
    fn scheduled_runs_start_at_the_horizon_within_the_catch_up_bound() {
        let settings = ScanSettings::default();
        let now = ts("2026-11-26T10:00:00Z");
        let end = "2026-11-27T11:00:00Z".to_owned();
        let cases = [
            // (horizon, full from, incremental from)
            (None, "2026-11-26T10:00:00Z", "2026-11-26T10:00:00Z"),
            // Normal: the horizon is ahead of now.
            (
                Some("2026-11-27T10:00:00Z"),
                "2026-11-26T10:00:00Z",
                "2026-11-27T10:00:00Z",
            ),
            // A run was missed, not long ago: catch up from the horizon.
            (
                Some("2026-11-26T09:30:00Z"),
                "2026-11-26T09:30:00Z",
                "2026-11-26T09:30:00Z",
            ),
            // Two days ago: caught up from there (what is past its grace becomes MISSED).
            (
                Some("2026-11-24T00:00:00Z"),
                "2026-11-24T00:00:00Z",
                "2026-11-24T00:00:00Z",
            ),
            // Longer ago than the catch-up bound (7 days): no earlier than the bound.
            (
                Some("2026-11-01T00:00:00Z"),
                "2026-11-19T10:00:00Z",
                "2026-11-19T10:00:00Z",
            ),
            // Beyond this run's end: an incremental run has nothing to write.
            (
                Some("2026-11-28T00:00:00Z"),
                "2026-11-26T10:00:00Z",
                "2026-11-27T11:00:00Z",
            ),
        ];
        for (horizon, full, incremental) in cases {
            let h = horizon.map(ts);
            let f = ScanRequest::full(now, h, &settings);
            let i = ScanRequest::incremental(now, h, &settings);
            assert_eq!(window(&f), (full.to_owned(), end.clone()), "{horizon:?}");
            assert_eq!(
                window(&i),
                (incremental.to_owned(), end.clone()),
                "{horizon:?}"
            );
            assert_eq!((f.kind, i.kind), (ScanKind::Full, ScanKind::Incremental));
            assert!(f.tenant.is_none() && i.tenant.is_none());
        }
        assert_eq!(
            ScanRequest::daily(now, &settings),
            ScanRequest::full(now, None, &settings)
        );
    }
}
