//! The daily scan: enabled definitions → occurrences in `[from, to)` → one schedule item
//! each, written with a conditional create so a re-run, an overlapping run or a run after a
//! crash creates nothing twice and resets no status.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use backon::Retryable;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use tracing::{info, warn};

use super::{AppError, Deadline};
use crate::metrics::{Metric, Metrics};
use crate::model::{Definition, DeviceId, ScheduleItem, Status, TenantId, Timestamp, Validation};
use crate::ports::{
    Clock, DefinitionSource, DeviceValidator, Materialized, ScheduleStore, scan_definitions,
};
use crate::recurrence::{Window, occurrences};
use crate::retry::RetryPolicy;

#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// How far ahead a daily run materializes (24 h).
    pub horizon: Duration,
    /// Added to the horizon so consecutive daily runs overlap; a late or slow run leaves
    /// no gap (the conditional create makes the overlap free of duplicates).
    pub overlap: Duration,
    pub segments: u32,
    /// Writes and validations in flight at once.
    pub concurrency: usize,
    pub retention: Duration,
    pub shards: u16,
    /// Retries of throttled writes.
    pub write_retry: RetryPolicy,
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
            deadline_margin: Duration::from_secs(10),
            max_range: Duration::from_secs(31 * 86_400),
        }
    }
}

/// What to scan: a window and, for a backfill, optionally one tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanRequest {
    pub window: Window,
    pub tenant: Option<TenantId>,
}

impl ScanRequest {
    /// The daily run: `[now, now + horizon + overlap)`.
    pub fn daily(now: Timestamp, settings: &ScanSettings) -> Self {
        Self {
            window: Window::new(now, now.plus(settings.horizon + settings.overlap)),
            tenant: None,
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
    pub invalid_definitions: usize,
    pub invalid_schedules: usize,
    pub occurrences: usize,
    pub created: usize,
    pub already_present: usize,
    /// PENDING occurrences of an older definition version brought to the current one.
    pub refreshed: usize,
    /// CANCELLED occurrences that the current version yields again, PENDING once more.
    pub reinstated: usize,
    pub skipped_invalid_device: usize,
    pub devices_validated: usize,
    pub validation_unavailable: usize,
    pub write_errors: usize,
    /// Occurrences not attempted because the deadline came first.
    pub not_written: usize,
}

impl ScanReport {
    /// Everything in the window is in the table.
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
}

impl<D: DefinitionSource, S: ScheduleStore, V: DeviceValidator, C: Clock> Scanner<D, S, V, C> {
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
        let scanned = scan_definitions(&self.definitions, self.settings.segments).await?;
        let mut definitions: Vec<Definition> = Vec::new();
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
        // Occurrences refer to their definition: a payload is copied only into the items
        // being written, never once per occurrence up front.
        let mut wanted: Vec<(&Definition, Timestamp)> = Vec::new();
        for def in &definitions {
            match occurrences(&def.schedule, request.window) {
                Ok(times) => wanted.extend(times.into_iter().map(|t| (def, t))),
                Err(error) => {
                    report.invalid_schedules += 1;
                    metrics.incr(Metric::InvalidSchedule);
                    warn!(tenant_id = %def.tenant_id, device_workflow_step_id = %def.device_workflow_step_id, %error, "schedule could not be expanded; definition skipped");
                }
            }
        }
        report.occurrences = wanted.len();
        // Earliest first: if the deadline cuts the run short, what is left is the latest.
        wanted.sort_by(|a, b| {
            (a.1, &a.0.tenant_id, &a.0.device_workflow_step_id).cmp(&(
                b.1,
                &b.0.tenant_id,
                &b.0.device_workflow_step_id,
            ))
        });

        let validations = self.validate_devices(&wanted, &mut report, metrics).await;
        let now = Timestamp::from_datetime(self.clock.now());
        let item_of = |def: &Definition, at: Timestamp| {
            // The registry could not answer (no entry): the executor validates again.
            ScheduleItem::pending(def, at, now, self.settings.retention, self.settings.shards)
                .with_device_validation(
                    validations
                        .get(&(def.tenant_id.clone(), def.device_id.clone()))
                        .copied(),
                )
        };

        // Writes stream through a bounded window: at most `concurrency` items exist at once.
        let mut writes = futures::stream::iter(wanted.iter())
            .map(|(def, at)| async move {
                if stop.near(self.clock.now()) {
                    return None;
                }
                let item = item_of(def, *at);
                let write = || self.store.materialize(&item);
                let result = write
                    .retry(self.settings.write_retry.seeded(at.epoch_seconds() as u64))
                    .when(|e| e.is_retryable())
                    .await;
                Some((item, result))
            })
            .buffered(self.settings.concurrency.max(1));

        while let Some(result) = writes.next().await {
            match result {
                None => report.not_written += 1,
                Some((item, Ok(Materialized::Created))) => {
                    report.created += 1;
                    if item.status == Status::Skipped {
                        report.skipped_invalid_device += 1;
                        metrics.incr(Metric::Skipped);
                    }
                    metrics.incr(Metric::Materialized);
                }
                Some((_, Ok(Materialized::Refreshed))) => {
                    report.refreshed += 1;
                    metrics.incr(Metric::Refreshed);
                }
                Some((_, Ok(Materialized::Reinstated))) => {
                    report.reinstated += 1;
                    metrics.incr(Metric::Reinstated);
                }
                Some((_, Ok(Materialized::Unchanged))) => {
                    report.already_present += 1;
                    metrics.incr(Metric::AlreadyMaterialized);
                }
                Some((item, Err(e))) => {
                    report.write_errors += 1;
                    metrics.incr(Metric::WriteErrors);
                    warn!(pk = %item.key.pk, sk = %item.key.sk, error = %crate::error::chain(&e), "occurrence not written");
                }
            }
        }
        metrics.count(Metric::NotWritten, report.not_written as u64);
        drop(writes);
        self.record_horizon(request, started, &mut report).await;
        info!(
            from = %report.from, to = %report.to, definitions = report.definitions, occurrences = report.occurrences,
            created = report.created, already_present = report.already_present, skipped = report.skipped_invalid_device,
            invalid_definitions = report.invalid_definitions, write_errors = report.write_errors, not_written = report.not_written,
            "scan finished"
        );
        Ok(report)
    }

    /// After a complete run over every tenant from now on, records how far ahead every
    /// definition is materialized (definition sync covers same-day changes up to there).
    /// A failure counts as a write error: the run is retried, and a stale horizon would
    /// leave a changed definition's later occurrences to the next day.
    async fn record_horizon(
        &self,
        request: &ScanRequest,
        started: Timestamp,
        report: &mut ScanReport,
    ) {
        if request.tenant.is_some() || request.window.from > started || !report.is_complete() {
            return;
        }
        let covered_to = request.window.to;
        let write = || self.store.record_scan_horizon(covered_to);
        let result = write
            .retry(
                self.settings
                    .write_retry
                    .seeded(covered_to.epoch_seconds() as u64),
            )
            .when(|e| e.is_retryable())
            .await;
        if let Err(e) = result {
            report.write_errors += 1;
            warn!(covered_to = %covered_to, error = %crate::error::chain(&e), "scan horizon not recorded");
        }
    }

    /// Validates the device of every occurrence through the (cached) validator: one
    /// registry call per distinct device, the rest are cache hits. Devices the registry
    /// could not answer for are left out of the map.
    async fn validate_devices(
        &self,
        wanted: &[(&Definition, Timestamp)],
        report: &mut ScanReport,
        metrics: &Metrics,
    ) -> BTreeMap<(TenantId, DeviceId), Validation> {
        let answers: Vec<_> = futures::stream::iter(wanted)
            .map(|(def, _)| async move {
                let answer = self
                    .validator
                    .validate(&def.tenant_id, &def.device_id)
                    .await;
                ((def.tenant_id.clone(), def.device_id.clone()), answer)
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        let mut out = BTreeMap::new();
        let mut unavailable = BTreeSet::new();
        for (ids, answer) in answers {
            match answer {
                Ok(v) => {
                    out.insert(ids, v);
                }
                Err(e) => {
                    if unavailable.insert(ids.clone()) {
                        warn!(tenant_id = %ids.0, device_id = %ids.1, error = %crate::error::chain(&e), "device not pre-validated; the executor will validate it");
                    }
                }
            }
        }
        report.devices_validated = out.len();
        report.validation_unavailable = unavailable.len();
        metrics.count(Metric::ValidationUnavailable, unavailable.len() as u64);
        out
    }
}
