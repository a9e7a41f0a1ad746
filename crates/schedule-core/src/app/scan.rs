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
//! **Pages, not the table.** A run streams the definitions scan: each page is selected,
//! expanded, validated and written before the next page is read, so memory holds one page
//! (and a bounded memory of the devices already asked about), whatever the table size.
//! Before writing, one cheap read ([`ScheduleStore::existing`]) of a chunk's keys finds the
//! occurrences already stored: only the missing ones, and those stored PENDING or CANCELLED
//! at an older definition version, are written, so a re-run writes nothing it need not (a
//! conditional write that fails is billed as a write).
//!
//! **Segments and checkpoints.** The definitions scan has `segments` parallel-scan
//! segments. Inline ([`Scanner::run`]) one invocation reads them all in turn. Fanned out
//! ([`Scanner::fan_out`]) each segment becomes a [`SegmentTask`] on the segment queue; a
//! worker ([`Scanner::work_segment`]) runs one, and when its deadline nears, before a page
//! it would not finish, sends a continuation carrying the checkpoint (the cursor of the
//! first page not done) and acknowledges. A page cut by the deadline is done again by the
//! continuation; the existing-read makes that free of duplicate writes. A finished segment
//! is recorded on the run ([`ScanRuns::segment_done`], idempotent); the worker that finishes
//! the last one records the horizon, so a half-done run is never taken for complete.
//!
//! **Devices.** Each distinct (tenant, device) is validated once per run, `concurrency` at
//! a time, all pages together spending at most a share of the time left. The answer is recorded on the
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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use tracing::{info, warn};

use super::{AppError, Deadline};
use crate::error::{QueueError, StoreError};
use crate::metrics::{Metric, Metrics};
use crate::model::{
    Definition, DeviceId, ScheduleItem, ScheduleKey, StepId, TenantId, Timestamp, Validation,
};
use crate::ports::{
    Clock, Cursor, DefinitionSource, DeviceValidator, DispatchQueue, Materialized, OutgoingMessage,
    ScanRuns, ScannedDefinition, ScheduleStore,
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

impl ScanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScanKind::Full => "full",
            ScanKind::Incremental => "incremental",
            ScanKind::Backfill => "backfill",
        }
    }
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
    /// Conditional writes made (occurrences found in the table by the cheap read first,
    /// at their version or a newer one, are not written again).
    pub writes: usize,
    /// Pages of the definitions scan read.
    pub pages: usize,
    /// Segments of the definitions scan not read to their end before the deadline.
    pub segments_unfinished: usize,
}

impl ScanReport {
    /// Everything in the window is in the table (or refused for good).
    pub fn is_complete(&self) -> bool {
        self.write_errors == 0 && self.not_written == 0 && self.segments_unfinished == 0
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

/// Occurrences checked against the store at once (one [`ScheduleStore::existing`] read):
/// bounds what a page of many frequent schedules holds in memory.
const OCCURRENCE_CHUNK: usize = 1_000;
/// Devices whose validation one run remembers; past that the memory starts over (the
/// validator keeps its own bounded cache, so a device asked again is usually answered
/// from it).
const DEVICES_REMEMBERED: usize = 100_000;
/// Retries of one throttled page of the definitions scan: one slow page must not fail a
/// whole run.
const PAGE_RETRY: RetryPolicy =
    RetryPolicy::new(5, Duration::from_millis(50), Duration::from_secs(1), 0x9a6f);
/// How long a fanned-out run's progress item is kept after the end of its window.
const RUN_RECORD_KEPT: Duration = Duration::from_secs(7 * 86_400);

/// What the pages of one invocation share: devices already asked about, the time left for
/// asking, and the definitions already counted invalid for a refused write. Bounded,
/// whatever the table size.
#[derive(Debug)]
struct RunState {
    devices: HashMap<(TenantId, DeviceId), Option<Validation>>,
    /// Time left for registry calls (`None`: no deadline, no bound).
    validation_left: Option<Duration>,
    refused_definitions: HashSet<(TenantId, StepId)>,
}

/// How a segment's pages ended.
#[derive(Debug)]
enum SegmentEnd {
    /// The last page is done.
    Finished,
    /// The deadline came first; the segment resumes at this cursor (`None`: its start).
    StoppedAt(Option<Cursor>),
}

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

    /// The whole request in this invocation: every segment of the definitions scan in
    /// turn, page by page, each page expanded and written before the next is read (memory
    /// holds a page, never the table). A run cut short by the deadline is incomplete.
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
        let mut state = self.run_state(stop);
        let total = self.settings.segments.max(1);
        for segment in 0..total {
            let end = self
                .scan_segment(
                    request,
                    (segment, total),
                    None,
                    stop,
                    &mut state,
                    &mut report,
                    metrics,
                )
                .await?;
            if let SegmentEnd::StoppedAt(_) = end {
                report.segments_unfinished += 1;
            }
        }
        metrics.count(Metric::NotWritten, report.not_written as u64);
        self.record_horizon(request, started, stop, &mut report)
            .await;
        info!(
            from = %report.from, to = %report.to, kind = ?request.kind, definitions = report.definitions,
            occurrences = report.occurrences, created = report.created, already_present = report.already_present,
            writes = report.writes, pages = report.pages,
            invalid_device = report.invalid_device, validation_unavailable = report.validation_unavailable,
            invalid_definitions = report.invalid_definitions, refused = report.refused,
            write_errors = report.write_errors, not_written = report.not_written,
            segments_unfinished = report.segments_unfinished,
            "scan finished"
        );
        Ok(report)
    }

    /// One segment task: its pages from its cursor until the last, or until the deadline
    /// nears (then [`SegmentOutcome::Continue`] carries the checkpoint: the cursor of the
    /// first page not finished). The caller sends the continuation or records the segment.
    pub async fn run_segment(
        &self,
        task: &SegmentTask,
        deadline: Option<DateTime<Utc>>,
        metrics: &Metrics,
    ) -> Result<SegmentRun, AppError> {
        let request = task.request()?;
        let mut report = ScanReport {
            from: request.window.from.to_string(),
            to: request.window.to.to_string(),
            ..ScanReport::default()
        };
        let stop = Deadline::new(deadline, self.clock.now(), self.settings.deadline_margin);
        let mut state = self.run_state(stop);
        let end = self
            .scan_segment(
                &request,
                (task.segment, task.total_segments),
                task.cursor.clone().map(Cursor),
                stop,
                &mut state,
                &mut report,
                metrics,
            )
            .await?;
        let outcome = match end {
            SegmentEnd::Finished => SegmentOutcome::Done,
            SegmentEnd::StoppedAt(cursor) => {
                // The items cut at the deadline are written by the continuation.
                report.not_written = 0;
                SegmentOutcome::Continue(task.continue_at(cursor.map(|c| c.0)))
            }
        };
        metrics.count(Metric::NotWritten, report.not_written as u64);
        info!(
            run_id = %task.run_id, segment = task.segment, total_segments = task.total_segments,
            continuation = task.continuation, pages = report.pages, definitions = report.definitions,
            occurrences = report.occurrences, created = report.created, writes = report.writes,
            already_present = report.already_present, write_errors = report.write_errors,
            done = matches!(outcome, SegmentOutcome::Done),
            "scan segment finished"
        );
        Ok(SegmentRun { report, outcome })
    }

    /// The segment tasks of `request`, one per segment of the definitions scan, all of
    /// one run (its id derived from the request, so a task redelivered or sent twice
    /// belongs to the same run).
    pub fn segment_tasks(&self, request: &ScanRequest, started: Timestamp) -> Vec<SegmentTask> {
        let total = self.settings.segments.max(1);
        let records_horizon = request.tenant.is_none()
            && match request.kind {
                ScanKind::Full | ScanKind::Incremental => true,
                ScanKind::Backfill => request.window.from <= started,
            };
        let run_id = format!(
            "{}/{}/{}/{}/{total}",
            request.kind.as_str(),
            request.window.from,
            request.window.to,
            request.tenant.as_ref().map_or("*", TenantId::as_str),
        );
        (0..total)
            .map(|segment| SegmentTask {
                schema_version: SEGMENT_TASK_VERSION,
                run_id: run_id.clone(),
                kind: request.kind,
                from: request.window.from,
                to: request.window.to,
                tenant_id: request.tenant.as_ref().map(|t| t.as_str().to_owned()),
                segment,
                total_segments: total,
                cursor: None,
                continuation: 0,
                records_horizon,
            })
            .collect()
    }

    /// Splits `request` into one task per segment and sends them to the segment queue
    /// (the workers run them; the last to finish records the horizon). The status shard
    /// count is recorded first, before any worker writes.
    pub async fn fan_out<Q: DispatchQueue>(
        &self,
        request: &ScanRequest,
        queue: &Q,
        deadline: Option<DateTime<Utc>>,
    ) -> Result<FanOut, AppError> {
        let stop = Deadline::new(deadline, self.clock.now(), self.settings.deadline_margin);
        self.record_status_shards(stop).await;
        let started = Timestamp::from_datetime(self.clock.now());
        let tasks = self.segment_tasks(request, started);
        let messages: Vec<OutgoingMessage> = tasks
            .iter()
            .map(|t| OutgoingMessage {
                id: format!("segment-{}", t.segment),
                body: t.body(),
                delay: Duration::ZERO,
            })
            .collect();
        let sent = queue.send_batch(&messages).await?;
        let run_id = tasks.first().map(|t| t.run_id.clone()).unwrap_or_default();
        info!(run_id = %run_id, segments = tasks.len(), sent = sent.sent.len(), failed = sent.failed.len(), "scan fanned out");
        if !sent.failed.is_empty() {
            return Err(QueueError::PartialBatch {
                failed: sent.failed,
            }
            .into());
        }
        Ok(FanOut {
            run_id,
            from: request.window.from.to_string(),
            to: request.window.to.to_string(),
            segments: tasks.len(),
        })
    }

    fn run_state(&self, stop: Deadline) -> RunState {
        let now = self.clock.now();
        let share = self.settings.validation_share.max(1);
        RunState {
            devices: HashMap::new(),
            validation_left: stop
                .stop_at()
                .map(|s| (s - now).to_std().unwrap_or(Duration::ZERO) / share),
            refused_definitions: HashSet::new(),
        }
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

    /// The pages of one segment from `cursor`, each read, expanded and written before the
    /// next is read. Stops before a page that would not finish before the deadline (judged
    /// by the slowest page so far), and after a page the deadline cut, answering where to
    /// resume; the first page is always tried.
    #[allow(clippy::too_many_arguments)]
    async fn scan_segment(
        &self,
        request: &ScanRequest,
        (segment, total): (u32, u32),
        mut cursor: Option<Cursor>,
        stop: Deadline,
        state: &mut RunState,
        report: &mut ScanReport,
        metrics: &Metrics,
    ) -> Result<SegmentEnd, AppError> {
        let key = format!("segment-{segment}/{total}");
        let mut slowest = chrono::Duration::zero();
        let mut first = true;
        loop {
            let page_start = self.clock.now();
            // A segment's first page is always tried: a continuation makes progress, and a
            // run out of time still says what it left (its items count as not written).
            if !first && stop.near(page_start + slowest) {
                return Ok(SegmentEnd::StoppedAt(cursor));
            }
            first = false;
            let page = retrying(PAGE_RETRY, &key, &self.clock, stop.stop_at(), || {
                self.definitions.scan_page(segment, total, cursor.as_ref())
            })
            .await?;
            report.pages += 1;
            let cut_before = report.not_written;
            self.scan_page(page.items, request, stop, state, report, metrics)
                .await?;
            if report.not_written > cut_before {
                // Cut by the deadline: the whole page is done again from its cursor (what
                // it wrote is found by the existing-read and not written twice).
                return Ok(SegmentEnd::StoppedAt(cursor));
            }
            slowest = slowest.max(self.clock.now() - page_start);
            match page.next {
                Some(c) => cursor = Some(c),
                None => return Ok(SegmentEnd::Finished),
            }
        }
    }

    /// One page: its definitions selected, expanded, their devices validated, and their
    /// occurrences written, a chunk at a time.
    async fn scan_page(
        &self,
        items: Vec<ScannedDefinition>,
        request: &ScanRequest,
        stop: Deadline,
        state: &mut RunState,
        report: &mut ScanReport,
        metrics: &Metrics,
    ) -> Result<(), AppError> {
        let definitions = Self::select(items, request, report, metrics);
        let definitions = self.drop_tenants_off(definitions, report).await?;
        let wanted = self.expand(&definitions, request.window, report, metrics);
        self.validate_devices(&wanted, state, report, metrics).await;
        for chunk in wanted.chunks(OCCURRENCE_CHUNK) {
            self.write_chunk(chunk, stop, state, report, metrics).await;
        }
        Ok(())
    }

    /// The enabled definitions of a page that the request covers; invalid ones are counted
    /// and logged.
    fn select(
        items: Vec<ScannedDefinition>,
        request: &ScanRequest,
        report: &mut ScanReport,
        metrics: &Metrics,
    ) -> Vec<Definition> {
        let mut definitions = Vec::new();
        for entry in items {
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
        definitions
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

    /// Every occurrence of a page's definitions in `window`, earliest first: if the
    /// deadline cuts the page short, what is left is the latest. Occurrences refer to
    /// their definition: a payload is copied only into the items being written, never
    /// once per occurrence up front.
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
        report.occurrences += wanted.len();
        wanted.sort_by(|a, b| {
            (a.1, &a.0.tenant_id, &a.0.device_workflow_step_id).cmp(&(
                b.1,
                &b.0.tenant_id,
                &b.0.device_workflow_step_id,
            ))
        });
        wanted
    }

    /// Validates each device of the page not asked about yet in this run, `concurrency` at
    /// a time, each call retried through [`retrying`]. All pages together spend at most
    /// `1 / validation_share` of the time the run had; devices the registry did not answer
    /// for in time are remembered as unknown (their items are written with validation
    /// unknown, and the executor validates at the due time).
    async fn validate_devices(
        &self,
        wanted: &[Wanted<'_>],
        state: &mut RunState,
        report: &mut ScanReport,
        metrics: &Metrics,
    ) {
        let devices: BTreeSet<(TenantId, DeviceId)> = wanted
            .iter()
            .map(|(def, _)| (def.tenant_id.clone(), def.device_id.clone()))
            .filter(|ids| !state.devices.contains_key(ids))
            .collect();
        if devices.is_empty() {
            return;
        }
        if state.devices.len() + devices.len() > DEVICES_REMEMBERED {
            state.devices.clear();
        }
        let budget = state.validation_left;
        let mut answers = BTreeMap::new();
        let began = tokio::time::Instant::now();
        if budget != Some(Duration::ZERO) {
            let phase_end = budget.map(|b| {
                self.clock.now() + chrono::Duration::from_std(b).unwrap_or(chrono::Duration::MAX)
            });
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
            // Cut on the runtime's timer: a registry call that hangs holds no clock
            // reading that could end it.
            let cut = match budget {
                Some(budget) => tokio::time::timeout(budget, collect).await.is_err(),
                None => {
                    collect.await;
                    false
                }
            };
            if cut {
                warn!(
                    validated = answers.len(),
                    devices = devices.len(),
                    "validation out of time; the other devices are written with validation unknown"
                );
            }
        }
        state.validation_left = budget.map(|b| b.saturating_sub(began.elapsed()));
        let unavailable = devices.len() - answers.len();
        report.devices_validated += answers.len();
        report.validation_unavailable += unavailable;
        metrics.count(Metric::ValidationUnavailable, unavailable as u64);
        for ids in devices {
            let answer = answers.get(&ids).copied();
            state.devices.insert(ids, answer);
        }
    }

    /// Writes the occurrences of a chunk that are missing from the table (or whose stored
    /// version is older): one cheap read of the chunk's keys first, so a re-run writes
    /// nothing it need not (a conditional write that fails is billed as a write). The
    /// writes go through a bounded window (at most `concurrency` items exist at once), each
    /// retried through [`retrying`] with its key as the seed.
    async fn write_chunk(
        &self,
        chunk: &[Wanted<'_>],
        stop: Deadline,
        state: &mut RunState,
        report: &mut ScanReport,
        metrics: &Metrics,
    ) {
        let keys: Vec<ScheduleKey> = chunk
            .iter()
            .map(|(def, at)| ScheduleKey::new(&def.tenant_id, *at, &def.device_workflow_step_id))
            .collect();
        let existing = match self.store.existing(&keys).await {
            Ok(found) => found,
            Err(e) => {
                // Only a saving is lost: every occurrence goes through the conditional write.
                warn!(occurrences = keys.len(), error = %crate::error::chain(&e), "existing occurrences not read; all of them are written conditionally");
                HashMap::new()
            }
        };
        let mut needed = Vec::with_capacity(chunk.len());
        for ((def, at), key) in chunk.iter().zip(&keys) {
            match existing.get(key) {
                Some(found) if !found.would_change(def.version) => {
                    report.already_present += 1;
                    metrics.incr(Metric::AlreadyMaterialized);
                }
                _ => needed.push((*def, *at)),
            }
        }
        drop(existing);
        let now = Timestamp::from_datetime(self.clock.now());
        let devices = &state.devices;
        let mut writes = futures::stream::iter(needed.iter())
            .map(|(def, at)| async move {
                if stop.near(self.clock.now()) {
                    return None;
                }
                let validation = devices
                    .get(&(def.tenant_id.clone(), def.device_id.clone()))
                    .copied()
                    .flatten();
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
        let mut refused = Vec::new();
        while let Some(result) = writes.next().await {
            let Some((item, result)) = result else {
                report.not_written += 1;
                continue;
            };
            report.writes += 1;
            match result {
                Ok(done) => Self::count_written(&item, done, report, metrics),
                Err(e) if e.is_retryable() => {
                    report.write_errors += 1;
                    metrics.incr(Metric::WriteErrors);
                    warn!(pk = %item.key.pk, sk = %item.key.sk, error = %crate::error::chain(&e), "occurrence not written; the run is incomplete");
                }
                Err(e) => {
                    report.refused += 1;
                    refused.push((item.tenant_id.clone(), item.device_workflow_step_id.clone()));
                    warn!(pk = %item.key.pk, sk = %item.key.sk, tenant_id = %item.tenant_id, device_workflow_step_id = %item.device_workflow_step_id,
                          reason = %crate::error::chain(&e), "occurrence refused by the store; its definition is counted invalid");
                }
            }
        }
        drop(writes);
        for definition in refused {
            if state.refused_definitions.insert(definition) {
                report.invalid_definitions += 1;
                metrics.incr(Metric::InvalidDefinition);
            }
        }
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
        if let Err(e) = self.store_horizon(request.window.to, stop.stop_at()).await {
            report.write_errors += 1;
            warn!(covered_to = %request.window.to, error = %crate::error::chain(&e), "scan horizon not recorded");
        }
    }

    async fn store_horizon(
        &self,
        covered_to: Timestamp,
        stop_at: Option<DateTime<Utc>>,
    ) -> Result<bool, StoreError> {
        retrying(
            self.settings.write_retry,
            "scan-horizon",
            &self.clock,
            stop_at,
            || self.store.record_scan_horizon(covered_to),
        )
        .await
    }
}

impl<D, S, V, C> Scanner<D, S, V, C>
where
    D: DefinitionSource,
    S: ScheduleStore + ScanRuns,
    V: DeviceValidator,
    C: Clock,
{
    /// Works one segment task from the segment queue: runs it to its end or its
    /// checkpoint; then sends the continuation (a segment cut by the deadline), or records
    /// the segment complete — and, when it completes the run, records the horizon. A
    /// segment with a write still failing is [`SegmentFailure::Incomplete`]: the task is
    /// not acknowledged, SQS delivers it again (from the same checkpoint) and, after
    /// `maxReceiveCount`, moves it to the DLQ.
    pub async fn work_segment<Q: DispatchQueue>(
        &self,
        task: &SegmentTask,
        queue: &Q,
        deadline: Option<DateTime<Utc>>,
        metrics: &Metrics,
    ) -> Result<SegmentWork, SegmentFailure> {
        let run = self.run_segment(task, deadline, metrics).await?;
        if run.report.write_errors > 0 {
            return Err(SegmentFailure::Incomplete {
                run_id: task.run_id.clone(),
                segment: task.segment,
                write_errors: run.report.write_errors,
                report: Box::new(run.report),
            });
        }
        match run.outcome {
            SegmentOutcome::Continue(next) => {
                let message = OutgoingMessage {
                    id: format!("segment-{}-{}", next.segment, next.continuation),
                    body: next.body(),
                    delay: Duration::ZERO,
                };
                let sent = queue.send_batch(std::slice::from_ref(&message)).await?;
                if !sent.failed.is_empty() {
                    return Err(SegmentFailure::App(
                        QueueError::PartialBatch {
                            failed: sent.failed,
                        }
                        .into(),
                    ));
                }
                metrics.incr(Metric::ScanContinuations);
                Ok(SegmentWork::Continued {
                    report: run.report,
                    next: Box::new(next),
                })
            }
            SegmentOutcome::Done => {
                let stop = Deadline::new(deadline, self.clock.now(), self.settings.deadline_margin);
                let expires = task.to.plus(RUN_RECORD_KEPT);
                let done = retrying(
                    self.settings.write_retry,
                    &task.run_id,
                    &self.clock,
                    stop.stop_at(),
                    || {
                        self.store.segment_done(
                            &task.run_id,
                            task.segment,
                            task.total_segments,
                            expires,
                        )
                    },
                )
                .await
                .map_err(AppError::from)?;
                let run_complete = done >= task.total_segments;
                let mut horizon_recorded = None;
                if run_complete && task.records_horizon {
                    // Every segment is done: only now is the window covered. A failure here
                    // fails the task; its redelivery finds the segment done and tries again.
                    self.store_horizon(task.to, stop.stop_at())
                        .await
                        .map_err(AppError::from)?;
                    horizon_recorded = Some(task.to);
                }
                info!(run_id = %task.run_id, segment = task.segment, segments_done = done, total_segments = task.total_segments, run_complete, "scan segment recorded");
                Ok(SegmentWork::Done {
                    report: run.report,
                    segments_done: done,
                    run_complete,
                    horizon_recorded,
                })
            }
        }
    }
}

/// Version of the segment task message.
pub const SEGMENT_TASK_VERSION: u32 = 1;

/// One segment of a fanned-out run, as sent to the segment queue (JSON):
/// `{"schema_version": 1, "run_id": "...", "kind": "full", "from": "...", "to": "...",
/// "segment": 3, "total_segments": 16, "cursor": null, "continuation": 0,
/// "records_horizon": true}` plus `"tenant_id"` for a one-tenant backfill. A continuation
/// is the same task with the checkpoint: `cursor` (where the scan of the segment resumes)
/// and `continuation` (how many times the segment has been continued).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentTask {
    pub schema_version: u32,
    pub run_id: String,
    pub kind: ScanKind,
    pub from: Timestamp,
    pub to: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    pub segment: u32,
    pub total_segments: u32,
    pub cursor: Option<String>,
    pub continuation: u32,
    /// Whether the run, once every segment is done, records the scan horizon.
    pub records_horizon: bool,
}

/// Why a segment task message cannot be read: the field, its value and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("segment task field {field} = {value}: {reason}")]
pub struct MalformedTask {
    pub field: &'static str,
    pub value: String,
    pub reason: String,
}

impl SegmentTask {
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The same task resuming at `cursor`.
    pub fn continue_at(&self, cursor: Option<String>) -> Self {
        Self {
            cursor,
            continuation: self.continuation.saturating_add(1),
            ..self.clone()
        }
    }

    /// The request the task scans a segment of.
    pub fn request(&self) -> Result<ScanRequest, AppError> {
        let tenant = self
            .tenant_id
            .as_deref()
            .map(TenantId::parse)
            .transpose()
            .map_err(|e| AppError::InvalidRequest(format!("tenant_id: {}", e.reason)))?;
        Ok(ScanRequest {
            window: Window::new(self.from, self.to),
            tenant,
            kind: self.kind,
        })
    }

    /// Reads a message body, naming the first field that is missing or wrong.
    pub fn parse(body: &str) -> Result<Self, MalformedTask> {
        let bad = |field: &'static str, value: String, reason: &str| MalformedTask {
            field,
            value,
            reason: reason.to_owned(),
        };
        let value: serde_json::Value = serde_json::from_str(body).map_err(|e| {
            bad(
                "body",
                short(body),
                &format!("not JSON: {e}; a segment task is a JSON object"),
            )
        })?;
        let Some(object) = value.as_object() else {
            return Err(bad("body", short(body), "must be a JSON object"));
        };
        let get = |field: &'static str| object.get(field).filter(|v| !v.is_null());
        let required = |field: &'static str| {
            get(field).ok_or_else(|| bad(field, "<missing>".to_owned(), "is required"))
        };
        let number = |field: &'static str| -> Result<u32, MalformedTask> {
            let v = required(field)?;
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| bad(field, v.to_string(), "must be a whole number ≥ 0"))
        };
        let string = |field: &'static str| -> Result<&str, MalformedTask> {
            let v = required(field)?;
            v.as_str()
                .ok_or_else(|| bad(field, v.to_string(), "must be a string"))
        };
        let time = |field: &'static str| -> Result<Timestamp, MalformedTask> {
            let raw = string(field)?;
            Timestamp::parse(raw).map_err(|e| bad(field, format!("{raw:?}"), &e.reason))
        };
        let schema_version = number("schema_version")?;
        if schema_version != SEGMENT_TASK_VERSION {
            return Err(bad(
                "schema_version",
                schema_version.to_string(),
                &format!("this scanner reads version {SEGMENT_TASK_VERSION}"),
            ));
        }
        let run_id = string("run_id")?.to_owned();
        if run_id.is_empty() {
            return Err(bad("run_id", "\"\"".to_owned(), "must not be empty"));
        }
        let kind = match string("kind")? {
            "full" => ScanKind::Full,
            "incremental" => ScanKind::Incremental,
            "backfill" => ScanKind::Backfill,
            other => {
                return Err(bad(
                    "kind",
                    format!("{other:?}"),
                    "expected \"full\", \"incremental\" or \"backfill\"",
                ));
            }
        };
        let (from, to) = (time("from")?, time("to")?);
        if from > to {
            return Err(bad("to", to.to_string(), "must not be before from"));
        }
        let tenant_id = match get("tenant_id") {
            None => None,
            Some(v) => {
                let raw = v
                    .as_str()
                    .ok_or_else(|| bad("tenant_id", v.to_string(), "must be a string"))?;
                TenantId::parse(raw).map_err(|e| bad("tenant_id", format!("{raw:?}"), e.reason))?;
                Some(raw.to_owned())
            }
        };
        let total_segments = number("total_segments")?;
        if total_segments == 0 {
            return Err(bad("total_segments", "0".to_owned(), "must be at least 1"));
        }
        let segment = number("segment")?;
        if segment >= total_segments {
            return Err(bad(
                "segment",
                segment.to_string(),
                &format!("must be less than total_segments ({total_segments})"),
            ));
        }
        let cursor = match get("cursor") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .ok_or_else(|| bad("cursor", v.to_string(), "must be a string or null"))?
                    .to_owned(),
            ),
        };
        let continuation = match get("continuation") {
            None => 0,
            Some(_) => number("continuation")?,
        };
        let records_horizon = match required("records_horizon")? {
            serde_json::Value::Bool(b) => *b,
            other => {
                return Err(bad(
                    "records_horizon",
                    other.to_string(),
                    "must be true or false",
                ));
            }
        };
        Ok(Self {
            schema_version,
            run_id,
            kind,
            from,
            to,
            tenant_id,
            segment,
            total_segments,
            cursor,
            continuation,
            records_horizon,
        })
    }
}

fn short(text: &str) -> String {
    match text.char_indices().nth(80) {
        Some((cut, _)) => format!("{:?}…", &text[..cut]),
        None => format!("{text:?}"),
    }
}

/// What one invocation of a segment task did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRun {
    pub report: ScanReport,
    pub outcome: SegmentOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentOutcome {
    /// The segment's last page is done.
    Done,
    /// The deadline came first: this task (with the checkpoint) goes on from there.
    Continue(SegmentTask),
}

/// What [`Scanner::work_segment`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "segment", rename_all = "snake_case")]
pub enum SegmentWork {
    /// Cut by the deadline; the continuation is on the segment queue.
    Continued {
        report: ScanReport,
        next: Box<SegmentTask>,
    },
    /// The segment is complete.
    Done {
        report: ScanReport,
        segments_done: u32,
        run_complete: bool,
        horizon_recorded: Option<Timestamp>,
    },
}

/// Why a segment task is not acknowledged (SQS delivers it again, then the DLQ).
#[derive(Debug, thiserror::Error)]
pub enum SegmentFailure {
    #[error(transparent)]
    App(#[from] AppError),
    #[error(
        "segment {segment} of run {run_id} incomplete: {write_errors} writes still failing after their retries"
    )]
    Incomplete {
        run_id: String,
        segment: u32,
        write_errors: usize,
        report: Box<ScanReport>,
    },
}

impl From<QueueError> for SegmentFailure {
    fn from(e: QueueError) -> Self {
        Self::App(e.into())
    }
}

/// What a fan-out sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FanOut {
    pub run_id: String,
    pub from: String,
    pub to: String,
    pub segments: usize,
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
