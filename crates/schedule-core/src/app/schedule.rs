//! The scheduler run (every window, 5 minutes by default): PENDING occurrences due before
//! `now + window + margin` → QUEUED → the execution queue with a per-message delay.
//!
//! Order of writes, and why: **mark QUEUED, then send; put back to PENDING only if the
//! send is refused** — one write per dispatched step (it was a lease, the send, then the
//! QUEUED write: two).
//! - The QUEUED write is conditional on the item being PENDING with no unexpired lease, so
//!   two overlapping runs never both send: the second finds it QUEUED and leaves it alone
//!   (and a run of an older scheduler that leased it is not overtaken).
//! - A refused send (the whole batch, or one entry after the queue adapter's retries) is
//!   put back to PENDING — conditionally on the item being exactly as this run left it —
//!   and the next run sends it. A write only on failure.
//! - A crash between the QUEUED write and the send (or a put-back that could not be
//!   written) leaves a QUEUED item with no message. The sweep below finds it once it is
//!   stuck: `maxReceiveCount × visibility + window` (3 × 180 s + 300 s = 14 min by default)
//!   after it was due, and sends it again under the same execution id — late, not lost —
//!   or records it MISSED if that is past its misfire grace (1 h by default). Sending
//!   first and writing after would instead cost the second write on every step to save
//!   minutes on a crash that is rare.
//! - An ambiguous send (a timeout after SQS took the message) that is put back to PENDING
//!   leaves a message for a PENDING item; the executor marks it QUEUED itself, and a
//!   second copy is dropped by status and execution id. At worst a duplicate message,
//!   never a lost occurrence.
//!
//! Before any of that, **check the definitions** of the due page: one batched, consistent
//! read of the distinct definitions, and every occurrence whose definition is gone,
//! invalid, disabled, or at a newer version that no longer yields its time is CANCELLED
//! instead of leased. This is the safety net under definition sync: a stream record that
//! is lost or late must never fire a step its owner switched off. It goes before the lease
//! because it is cheapest there (no lease to take and release for what will not fire),
//! and a cancel is a conditional write on a PENDING item, so an overlapping run that
//! already leased and sent the item loses nothing: the executor finds it CANCELLED and
//! drops the message. If the definitions cannot be read, the run fails open — it sends
//! unchecked and says so in a metric — because a read outage must not stop every step.
//!
//! Last, **sweep the stuck QUEUED occurrences**. SQS moves a message to the DLQ after
//! `maxReceiveCount` receives, and some of those receives never reach the handler's
//! bookkeeping (a Lambda timeout, out of memory, a throttled invocation, a busy or
//! unrecorded outcome on the last one): the item stays QUEUED with no message left to move
//! it. One that is still QUEUED `maxReceiveCount × visibility timeout + window` after it
//! was due (or queued, if later) is past every receive; the sweep then, conditionally on
//! the item being exactly as read (QUEUED, same `queued_at`, no live lease — so a late
//! executor and the sweep never both win):
//! - past its misfire grace: MISSED, as the executor would decide;
//! - otherwise, fewer than `stuck_redispatches` times swept: **claim, then send again**
//!   under the same execution id (the executor drops a duplicate). The claim (new
//!   `queued_at`, `sweeps` + 1) comes first so overlapping runs never both send; a run that
//!   dies between the two leaves a QUEUED item with no message, found again one threshold
//!   later, at the cost of one of its re-dispatches;
//! - otherwise FAILED, with a reason naming the sweep: its message sits in the execution
//!   DLQ, where an operator redrives it (FAILED → QUEUED).
//!
//! The run also records its `STATUS_SHARDS` in the store (only ever grows), and the due
//! query reads every shard up to the largest count recorded, so lowering the setting
//! strands nothing in the shards no longer written.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::join_all;
use serde::Serialize;
use tracing::{info, warn};

use super::{AppError, Deadline, ExecutionMessage};
use crate::error::StoreError;
use crate::limits::{
    EXECUTION_MAX_RECEIVE_COUNT, EXECUTION_VISIBILITY_TIMEOUT, SQS_MAX_BATCH, SQS_MAX_DELAY_SECONDS,
};
use crate::metrics::{Metric, Metrics};
use crate::model::{
    ScheduleItem, ScheduleKey, Status, StatusChange, StatusShard, Timestamp, TransitionError,
};
use crate::ports::{
    Clock, DefinitionKey, DefinitionSource, DispatchQueue, DueEntry, FetchedDefinitions,
    OutgoingMessage, Paging, ScannedDefinition, ScheduleStore, Sweep, query_due, query_due_shard,
};
use crate::recurrence::{Window, occurrences};
use crate::retry::{RetryPolicy, retrying};

#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// Equal to the EventBridge rate of the scheduler (5 minutes).
    pub window: Duration,
    /// Extra look-ahead so a run that starts late still covers the whole next window.
    pub margin: Duration,
    /// How late an occurrence may still fire when its definition says nothing.
    pub default_misfire_grace: Duration,
    /// `maxReceiveCount` of the execution queue's redrive policy.
    pub execution_max_receive_count: u32,
    /// Visibility timeout of the execution queue.
    pub execution_visibility: Duration,
    /// Times the sweep sends one stuck QUEUED occurrence again before it is FAILED.
    pub stuck_redispatches: u32,
    pub page_size: u32,
    /// `SendMessageBatch` calls in flight at once (`SEND_CONCURRENCY`). Each batch first
    /// makes its (at most 10) conditional QUEUED writes concurrently, so at most ten times
    /// this many store writes are in flight too.
    pub send_concurrency: usize,
    /// Due occurrences checked against their definitions at a time, before their batches
    /// go: the first steps leave before the definitions of the last are read.
    pub slice: usize,
    /// Continuations one window's backlog may chain through before the rest waits for the
    /// next run (a bound, not an expected count).
    pub max_handoffs: u32,
    pub status_retry: RetryPolicy,
    pub deadline_margin: Duration,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            window: crate::limits::DEFAULT_SCHEDULE_WINDOW,
            margin: Duration::from_secs(60),
            default_misfire_grace: Duration::from_secs(3600),
            execution_max_receive_count: EXECUTION_MAX_RECEIVE_COUNT,
            execution_visibility: EXECUTION_VISIBILITY_TIMEOUT,
            stuck_redispatches: 2,
            page_size: 500,
            // 16 batches: 16 SendMessageBatch and up to 160 UpdateItem calls in flight,
            // well within one 256 MB Lambda's connections, and about 5,000 steps/s at
            // 30 ms per batch.
            send_concurrency: 16,
            slice: 2_000,
            max_handoffs: 10,
            status_retry: RetryPolicy::new(
                5,
                Duration::from_millis(50),
                Duration::from_secs(1),
                0x5c4e,
            ),
            deadline_margin: Duration::from_secs(5),
        }
    }
}

impl ScheduleSettings {
    /// How long after it was due (or queued, if later) a QUEUED occurrence is stuck: every
    /// receive of its message has had its whole visibility timeout, plus one window for the
    /// last attempt to record its outcome and for this run's own period.
    pub fn stuck_after(&self) -> Duration {
        self.execution_visibility
            .saturating_mul(self.execution_max_receive_count.max(1))
            .saturating_add(self.window)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScheduleReport {
    pub now: String,
    pub due_before: String,
    pub due: usize,
    pub dispatched: usize,
    pub missed: usize,
    /// Taken by another run (or already moved on by the executor).
    pub already_taken: usize,
    pub dispatch_failed: usize,
    /// Kept in the report's shape; always 0 since the QUEUED write comes before the send
    /// (an item that moved on first is counted in `already_taken`).
    pub status_lost: usize,
    pub status_errors: usize,
    /// QUEUED occurrences found past every receive of their message.
    pub stuck_queued: usize,
    /// Of those, sent again under their execution id.
    pub stuck_redispatched: usize,
    /// Of those, FAILED: re-dispatched as often as allowed.
    pub stuck_failed: usize,
    /// Of those, MISSED: past their misfire grace.
    pub stuck_missed: usize,
    /// Left for the next run: the deadline came first (or their QUEUED write stayed
    /// throttled) and no continuation took them.
    pub left_for_next_run: usize,
    /// Handed to continuations: the deadline came first, or their QUEUED write stayed
    /// throttled.
    pub handed_off: usize,
    /// Continuation messages sent (one per shard with work left).
    pub continuations: usize,
    /// Cancelled before sending: the definition is gone, invalid, disabled, or no longer
    /// yields the occurrence's time.
    pub cancelled: usize,
    /// Sent without their definition checked (the definitions could not be read).
    pub definitions_unchecked: usize,
}

/// A status write of the scheduler run that did not happen; the item is as it was.
#[derive(Debug, thiserror::Error)]
pub enum StatusWriteError {
    #[error("status of {key}: {source}")]
    Transition {
        key: ScheduleKey,
        #[source]
        source: TransitionError,
    },
    #[error("status of {key}: the write {from} -> {to} failed")]
    Store {
        key: ScheduleKey,
        from: Status,
        to: Status,
        #[source]
        source: StoreError,
    },
}

/// Whole seconds by which SQS releases a message ahead of its step, besides the rounding.
/// The executor uses that lead to read, check and claim the step (and its batch) before
/// the due instant, so only the send happens after it; see [`delay_until`].
pub const RELEASE_LEAD_SECS: u64 = 1;

/// The `DelaySeconds` of a step due at `due`, sent at `now`: whole seconds, rounded
/// down, less [`RELEASE_LEAD_SECS`], so SQS releases the message between 1 and 2 s before
/// the step is due (0 when it is due sooner); the executor does its reads and claims in
/// that lead and waits out the rest, so the trigger leaves within milliseconds of its time
/// and never before it. (Rounding up would be simpler and up to a second late.)
pub fn delay_until(now: DateTime<Utc>, due: Timestamp) -> Duration {
    let millis = (due.as_datetime() - now).num_milliseconds().max(0) as u64;
    let secs = (millis / 1000).saturating_sub(RELEASE_LEAD_SECS);
    Duration::from_secs(secs.min(u64::from(SQS_MAX_DELAY_SECONDS)))
}

/// Stuck candidates read per run; the rest are counted and left for the next run.
const MAX_STUCK_CHECKS: usize = 200;

/// One run's context: its id (the owner of its leases), when it stops starting work, the
/// instant no retry waits past, and its metrics.
#[derive(Clone, Copy)]
struct Run<'a> {
    id: &'a str,
    stop: Deadline,
    retry_until: Option<DateTime<Utc>>,
    metrics: &'a Metrics,
}

#[derive(Debug, Default)]
struct BatchReport {
    dispatched: usize,
    missed: usize,
    already_taken: usize,
    dispatch_failed: usize,
    status_errors: usize,
    /// Not sent: the deadline came first, or the QUEUED write stayed throttled.
    left: Vec<DueEntry>,
}

/// What a hand-off passed on.
#[derive(Debug, Default)]
struct Handed {
    entries: usize,
    messages: usize,
}

#[derive(Debug, Default)]
struct SweepReport {
    stuck: usize,
    redispatched: usize,
    failed: usize,
    missed: usize,
    dispatch_failed: usize,
    status_errors: usize,
}

enum Prepared {
    /// Marked QUEUED by this run at `queued_at`.
    Send {
        entry: DueEntry,
        queued_at: Timestamp,
    },
    Missed,
    Taken,
    /// The QUEUED write was still throttled after its retries: handed on with the
    /// backlog (a continuation re-reads its shard a moment later), not left for the next
    /// window.
    Throttled {
        entry: DueEntry,
    },
    Error,
}
/// What became of an occurrence whose message the queue refused.
enum PutBack {
    /// PENDING again: the next run sends it.
    Pending,
    /// It moved on meanwhile (an executor got a copy of an ambiguous send): left alone.
    MovedOn,
    /// Still QUEUED: the stuck sweep finds it.
    Error,
}

/// The cancelling version when no definition is left to compare with (deleted, or a row
/// that does not read as a definition): every pending occurrence of it goes.
const ANY_VERSION: u64 = u64::MAX;

/// What the current definition says about one due occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// It still asks for this occurrence.
    Fire,
    /// Cancel it, for the definition at `version`.
    Cancel { version: u64, reason: String },
    /// The definition at `version` does not yield this time (or cannot say): cancel the
    /// occurrence if it was made from an older version. One made from this very version
    /// stands — the materialized occurrence is the record of what that version meant.
    CancelIfOlder { version: u64, reason: String },
}

/// Judges the occurrence at `t` against its definition as read now (`None`: no row).
/// Pure: an enabled definition is asked whether it yields `t` in the one-second window
/// `[t, t + 1 s)` — cheap whatever the rule, and needs no read of the item.
fn verdict(found: Option<&ScannedDefinition>, t: Timestamp) -> Verdict {
    let def = match found {
        None => {
            return Verdict::Cancel {
                version: ANY_VERSION,
                reason: "definition deleted".to_owned(),
            };
        }
        Some(Err(invalid)) => {
            return Verdict::Cancel {
                version: ANY_VERSION,
                reason: format!("definition invalid: {}", invalid.error),
            };
        }
        Some(Ok(def)) => def,
    };
    let version = def.version;
    if !def.enabled {
        return Verdict::Cancel {
            version,
            reason: format!("definition disabled (version {version})"),
        };
    }
    match occurrences(
        &def.schedule,
        Window::new(t, t.plus(Duration::from_secs(1))),
    ) {
        Ok(times) if times.contains(&t) => Verdict::Fire,
        Ok(_) => Verdict::CancelIfOlder {
            version,
            reason: format!("version {version} no longer yields {t}"),
        },
        Err(e) => Verdict::CancelIfOlder {
            version,
            reason: format!("version {version} cannot be expanded: {e}"),
        },
    }
}

/// What the definitions check made of one due occurrence.
enum Checked {
    Fire,
    /// Sent as it is: its definition could not be checked.
    FireUnchecked,
    Cancelled,
    Taken,
    Error,
}

/// The due occurrences the check lets through, and the count of each other outcome.
#[derive(Debug, Default)]
struct CheckReport {
    to_dispatch: Vec<DueEntry>,
    cancelled: usize,
    unchecked: usize,
    already_taken: usize,
    status_errors: usize,
}

/// Pairs each due occurrence with its definition's key, read from the occurrence's own
/// key. One that names no definition (not a key this flow writes) is sent unchecked; the
/// executor rejects it with a reason.
fn key_by_definition(
    due: Vec<DueEntry>,
    report: &mut CheckReport,
) -> Vec<(DueEntry, DefinitionKey)> {
    let mut keyed = Vec::with_capacity(due.len());
    for entry in due {
        match ScheduleKey::parse(&entry.key.pk, &entry.key.sk) {
            Ok((_, tenant, _, step)) => keyed.push((entry, (tenant, step))),
            Err(e) => {
                warn!(key = %entry.key, error = %e, "due occurrence names no definition; sent unchecked");
                report.unchecked += 1;
                report.to_dispatch.push(entry);
            }
        }
    }
    keyed
}

/// Version of the continuation message body.
pub const CONTINUATION_VERSION: u32 = 1;

/// The body of a scheduler continuation: the rest of one PENDING shard, due before
/// `before`. No cursor is carried: every occurrence sent leaves the PENDING shard, so the
/// shard's start is where the work resumes (and what a run could not write is tried again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Continuation {
    pub v: u32,
    /// The `status_shard` value, as indexed (`PENDING#03`).
    pub status_shard: String,
    /// The due bound of the run that handed off.
    pub before: Timestamp,
    /// Hand-offs that led here, 1 for the first continuation.
    pub handoff: u32,
}

/// Why a continuation body cannot be run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedContinuation {
    #[error("body is not a scheduler continuation: {0}")]
    Shape(String),
    #[error("unsupported continuation version {0}")]
    Version(u32),
    #[error("status_shard {0:?} is not a PENDING shard (PENDING#nn)")]
    Shard(String),
}

impl From<MalformedContinuation> for AppError {
    fn from(e: MalformedContinuation) -> Self {
        AppError::InvalidRequest(e.to_string())
    }
}

impl Continuation {
    pub fn new(shard: &StatusShard, before: Timestamp, handoff: u32) -> Self {
        Self {
            v: CONTINUATION_VERSION,
            status_shard: shard.to_string(),
            before,
            handoff,
        }
    }

    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(body: &str) -> Result<Self, MalformedContinuation> {
        let c: Self =
            serde_json::from_str(body).map_err(|e| MalformedContinuation::Shape(e.to_string()))?;
        if c.v != CONTINUATION_VERSION {
            return Err(MalformedContinuation::Version(c.v));
        }
        c.status_shard()?;
        Ok(c)
    }

    /// The shard, checked: `PENDING#nn` with `nn` below [`crate::limits::MAX_STATUS_SHARDS`].
    pub fn status_shard(&self) -> Result<StatusShard, MalformedContinuation> {
        let bad = || MalformedContinuation::Shard(self.status_shard.clone());
        let n: u16 = self
            .status_shard
            .strip_prefix("PENDING#")
            .filter(|n| n.len() == 2 && n.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(bad)?
            .parse()
            .map_err(|_| bad())?;
        if n >= crate::limits::MAX_STATUS_SHARDS {
            return Err(bad());
        }
        Ok(StatusShard::new(Status::Pending, n))
    }
}

#[derive(Debug)]
pub struct Scheduler<S, Q, D, C> {
    pub store: S,
    pub queue: Q,
    /// The scheduler continuation queue (`None`: a backlog waits for the next run).
    pub continuation: Option<Q>,
    /// The definitions table, read once per run to check the due occurrences.
    pub definitions: D,
    pub clock: C,
    pub settings: ScheduleSettings,
}

impl<S: ScheduleStore, Q: DispatchQueue, D: DefinitionSource, C: Clock> Scheduler<S, Q, D, C> {
    /// One run. `run_id` names this run (the Lambda request id): in its logs, and as the
    /// owner of its QUEUED writes.
    pub async fn run(
        &self,
        run_id: &str,
        deadline: Option<DateTime<Utc>>,
        metrics: &Metrics,
    ) -> Result<ScheduleReport, AppError> {
        let started = self.clock.now();
        let run = self.start(run_id, deadline, started, metrics);
        let now = Timestamp::from_datetime(started);
        let bound = now.plus(self.settings.window + self.settings.margin);
        let mut report = ScheduleReport {
            now: started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            due_before: bound.to_string(),
            ..Default::default()
        };
        self.record_status_shards(&run).await;
        let due = query_due(&self.store, Status::Pending, bound, self.paging(&run)).await?;
        self.dispatch_due(due, bound, 0, &mut report, &run).await?;
        let swept = self.sweep_stuck(now, &run).await?;
        report.stuck_queued = swept.stuck;
        report.stuck_redispatched = swept.redispatched;
        report.stuck_failed = swept.failed;
        report.stuck_missed = swept.missed;
        report.dispatch_failed += swept.dispatch_failed;
        report.status_errors += swept.status_errors;
        self.finish(&report, &run);
        // The heartbeat: an alarm fires when no run succeeds for three windows.
        metrics.incr(Metric::SchedulerRunSucceeded);
        Ok(report)
    }

    /// A continuation: the rest of one PENDING shard that an earlier run (or continuation)
    /// handed off when its deadline came, up to the same `before` bound. No sweep and no
    /// heartbeat: the scheduled run does those.
    pub async fn resume(
        &self,
        run_id: &str,
        deadline: Option<DateTime<Utc>>,
        metrics: &Metrics,
        continuation: &Continuation,
    ) -> Result<ScheduleReport, AppError> {
        let started = self.clock.now();
        let run = self.start(run_id, deadline, started, metrics);
        let mut report = ScheduleReport {
            now: started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            due_before: continuation.before.to_string(),
            ..Default::default()
        };
        let shard = continuation.status_shard()?;
        let due =
            query_due_shard(&self.store, &shard, continuation.before, self.paging(&run)).await?;
        self.dispatch_due(
            due,
            continuation.before,
            continuation.handoff,
            &mut report,
            &run,
        )
        .await?;
        metrics.incr(Metric::SchedulerContinuationRan);
        self.finish(&report, &run);
        Ok(report)
    }

    fn start<'a>(
        &self,
        run_id: &'a str,
        deadline: Option<DateTime<Utc>>,
        started: DateTime<Utc>,
        metrics: &'a Metrics,
    ) -> Run<'a> {
        Run {
            id: run_id,
            stop: Deadline::new(deadline, started, self.settings.deadline_margin),
            retry_until: deadline.map(|d| {
                d - chrono::Duration::from_std(self.settings.deadline_margin)
                    .unwrap_or(chrono::Duration::zero())
            }),
            metrics,
        }
    }

    /// Checks and sends `due` (in time order), slice by slice so the first steps leave
    /// before the definitions of the last are read; what the deadline leaves is handed to
    /// continuations, one per shard (`handoff`: how many hand-offs led here).
    async fn dispatch_due(
        &self,
        due: Vec<DueEntry>,
        before: Timestamp,
        handoff: u32,
        report: &mut ScheduleReport,
        run: &Run<'_>,
    ) -> Result<(), AppError> {
        report.due += due.len();
        let mut left: Vec<DueEntry> = Vec::new();
        for slice in due.chunks(self.settings.slice.max(SQS_MAX_BATCH)) {
            if run.stop.near(self.clock.now()) {
                left.extend_from_slice(slice);
                continue;
            }
            let checked = self.check_definitions(slice.to_vec(), run).await;
            report.cancelled += checked.cancelled;
            report.definitions_unchecked += checked.unchecked;
            report.already_taken += checked.already_taken;
            report.status_errors += checked.status_errors;
            // Batches of 10 (one SendMessageBatch each), `send_concurrency` in flight at
            // once; each batch checks the deadline before it starts.
            let batches: Vec<BatchReport> =
                futures::stream::iter(checked.to_dispatch.chunks(SQS_MAX_BATCH))
                    .map(|chunk| self.dispatch_batch(chunk, run))
                    .buffer_unordered(self.settings.send_concurrency.max(1))
                    .collect::<Vec<_>>()
                    .await
                    .into_iter()
                    .collect::<Result<_, _>>()?;
            for b in batches {
                report.dispatched += b.dispatched;
                report.missed += b.missed;
                report.already_taken += b.already_taken;
                report.dispatch_failed += b.dispatch_failed;
                report.status_errors += b.status_errors;
                left.extend(b.left);
            }
        }
        if !left.is_empty() {
            let handed = self.hand_off(&left, before, handoff, run).await;
            report.handed_off = handed.entries;
            report.continuations = handed.messages;
            report.left_for_next_run = left.len() - handed.entries;
            warn!(
                handed_off = report.handed_off,
                continuations = report.continuations,
                left = report.left_for_next_run,
                "backlog (deadline near, or throttled) handed to continuations"
            );
        }
        run.metrics.count(Metric::Missed, report.missed as u64);
        run.metrics
            .count(Metric::AlreadyTaken, report.already_taken as u64);
        run.metrics
            .count(Metric::LeftForNextRun, report.left_for_next_run as u64);
        Ok(())
    }

    /// Sends one continuation per shard of `left` (at once: no delay). Without a
    /// continuation queue, past `max_handoffs`, or when the send is refused, the rest
    /// stays PENDING for the next run.
    async fn hand_off(
        &self,
        left: &[DueEntry],
        before: Timestamp,
        handoff: u32,
        run: &Run<'_>,
    ) -> Handed {
        let mut handed = Handed::default();
        let Some(queue) = &self.continuation else {
            return handed;
        };
        if handoff >= self.settings.max_handoffs {
            warn!(
                handoff,
                max = self.settings.max_handoffs,
                "hand-off limit reached; the rest waits for the next run"
            );
            return handed;
        }
        let mut per_shard: std::collections::BTreeMap<&StatusShard, usize> = Default::default();
        for entry in left {
            *per_shard.entry(&entry.status_shard).or_default() += 1;
        }
        let messages: Vec<OutgoingMessage> = per_shard
            .keys()
            .map(|shard| OutgoingMessage {
                id: shard.to_string(),
                body: Continuation::new(shard, before, handoff + 1).body(),
                delay: Duration::ZERO,
            })
            .collect();
        let sent = match queue.send_batch(&messages).await {
            Ok(sent) => sent.sent,
            Err(e) => {
                warn!(error = %crate::error::chain(&e), "continuations not sent; the rest waits for the next run");
                Vec::new()
            }
        };
        for (shard, count) in per_shard {
            if sent.contains(&shard.to_string()) {
                handed.entries += count;
                handed.messages += 1;
                info!(status_shard = %shard, left = count, before = %before, handoff = handoff + 1, "continuation sent");
            }
        }
        run.metrics
            .count(Metric::ContinuationSent, handed.messages as u64);
        handed
    }

    /// The run's closing log line.
    fn finish(&self, report: &ScheduleReport, run: &Run<'_>) {
        info!(
            run_id = run.id,
            due = report.due,
            dispatched = report.dispatched,
            missed = report.missed,
            already_taken = report.already_taken,
            dispatch_failed = report.dispatch_failed,
            cancelled = report.cancelled,
            definitions_unchecked = report.definitions_unchecked,
            stuck_queued = report.stuck_queued,
            stuck_redispatched = report.stuck_redispatched,
            stuck_failed = report.stuck_failed,
            stuck_missed = report.stuck_missed,
            handed_off = report.handed_off,
            continuations = report.continuations,
            left = report.left_for_next_run,
            "schedule run finished"
        );
    }

    fn paging(&self, run: &Run<'_>) -> Paging<'_, C> {
        Paging {
            page_size: self.settings.page_size,
            clock: &self.clock,
            deadline: run.retry_until,
        }
    }

    /// Retries `op` (a store call on `key`) under the status policy, its jitter seeded by
    /// the key, no wait past the run's deadline.
    async fn retried<T, F, Fut>(&self, key: &str, run: &Run<'_>, op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        retrying(
            self.settings.status_retry,
            key,
            &self.clock,
            run.retry_until,
            op,
        )
        .await
    }

    /// Records this deployment's shard count (only ever grows), so a later, lower
    /// `STATUS_SHARDS` still reads the shards written now. A failure costs nothing this run
    /// (the due query reads what was recorded before); the next run records it.
    async fn record_status_shards(&self, run: &Run<'_>) {
        let shards = self.store.status_shards();
        let recorded = self
            .retried("max_status_shards", run, || {
                self.store.record_status_shards(shards)
            })
            .await;
        if let Err(e) = recorded {
            warn!(status_shards = shards, error = %crate::error::chain(&e), "could not record the status shard count");
        }
    }

    /// Checks each due occurrence against its definition (one batched read of the distinct
    /// definitions) and cancels those it no longer asks for; the rest go on to be sent.
    async fn check_definitions(&self, due: Vec<DueEntry>, run: &Run<'_>) -> CheckReport {
        let mut report = CheckReport::default();
        let keyed = key_by_definition(due, &mut report);
        if !keyed.is_empty() {
            let distinct: BTreeSet<&DefinitionKey> = keyed.iter().map(|(_, k)| k).collect();
            let keys: Vec<DefinitionKey> = distinct.into_iter().cloned().collect();
            // One batched read, retried as a whole when throttled (a huge tenant's
            // definitions share one partition key).
            let read = retrying(
                self.settings.status_retry,
                "definitions",
                &self.clock,
                run.retry_until,
                || self.definitions.get_many(&keys),
            )
            .await;
            match read {
                Ok(found) => self.judge(keyed, &found, &mut report, run).await,
                Err(e) => {
                    warn!(occurrences = keyed.len(), definitions = keys.len(), error = %crate::error::chain(&e),
                          "definitions could not be read; sending the due occurrences unchecked");
                    report.unchecked += keyed.len();
                    report.to_dispatch.extend(keyed.into_iter().map(|(e, _)| e));
                }
            }
            // Sent in time order, as the due query gave them.
            report
                .to_dispatch
                .sort_by(|a, b| (a.scheduled_time, &a.key).cmp(&(b.scheduled_time, &b.key)));
        }
        run.metrics
            .count(Metric::Cancelled, report.cancelled as u64);
        run.metrics
            .count(Metric::DefinitionCheckUnavailable, report.unchecked as u64);
        report
    }

    /// Judges every keyed occurrence against the definitions read, concurrently.
    async fn judge(
        &self,
        keyed: Vec<(DueEntry, DefinitionKey)>,
        found: &FetchedDefinitions,
        report: &mut CheckReport,
        run: &Run<'_>,
    ) {
        let settled = join_all(keyed.iter().map(|(entry, key)| {
            // A key missing from the answer is unknown, not deleted.
            let verdict = found
                .get(key)
                .map(|row| verdict(row.as_ref(), entry.scheduled_time));
            self.settle(entry, verdict, run)
        }))
        .await;
        for ((entry, _), outcome) in keyed.into_iter().zip(settled) {
            match outcome {
                Checked::Fire => report.to_dispatch.push(entry),
                Checked::FireUnchecked => {
                    report.unchecked += 1;
                    report.to_dispatch.push(entry);
                }
                Checked::Cancelled => report.cancelled += 1,
                Checked::Taken => report.already_taken += 1,
                Checked::Error => report.status_errors += 1,
            }
        }
    }

    /// Acts on one verdict (`None`: the definition's answer is missing).
    async fn settle(&self, entry: &DueEntry, verdict: Option<Verdict>, run: &Run<'_>) -> Checked {
        let (version, reason) = match verdict {
            None => return Checked::FireUnchecked,
            Some(Verdict::Fire) => return Checked::Fire,
            Some(Verdict::Cancel { version, reason }) => (version, reason),
            Some(Verdict::CancelIfOlder { version, reason }) => {
                // The due page is keys only: read the item for its version. Only an
                // occurrence its definition no longer yields pays for this read.
                let key = entry.key.to_string();
                match self.retried(&key, run, || self.store.get(&entry.key)).await {
                    Ok(Some(item)) if item.status != Status::Pending => return Checked::Taken,
                    Ok(None) => return Checked::Taken,
                    Ok(Some(item)) if item.definition_version >= version => {
                        warn!(key = %entry.key, definition_version = version, reason = %reason,
                              "occurrence made from the current version is not yielded by it; sent as materialized");
                        return Checked::Fire;
                    }
                    Ok(Some(_)) => (version, reason),
                    Err(e) => {
                        warn!(key = %entry.key, error = %crate::error::chain(&e), "could not read occurrence to check its version; sent unchecked");
                        return Checked::FireUnchecked;
                    }
                }
            }
        };
        let key = entry.key.to_string();
        let cancelled = self
            .retried(&key, run, || {
                self.store.cancel(&entry.key, version, &reason)
            })
            .await;
        match cancelled {
            // PENDING → CANCELLED with the reason, for the definition at `version`
            // ([`ANY_VERSION`] when there is none). Only an occurrence made from an older
            // version is cancelled, so one that definition sync has just refreshed stays.
            Ok(true) => {
                let version = (version != ANY_VERSION).then_some(version);
                info!(pk = %entry.key.pk, sk = %entry.key.sk, scheduled_time = %entry.scheduled_time,
                      definition_version = ?version, reason = %reason, "occurrence cancelled");
                Checked::Cancelled
            }
            Ok(false) => Checked::Taken,
            Err(e) => {
                // Not sent either: the next run checks it again.
                warn!(key = %entry.key, error = %crate::error::chain(&e), "could not cancel occurrence");
                Checked::Error
            }
        }
    }

    /// One batch: mark each entry QUEUED (the one write a dispatched step costs), send the
    /// ones this run marked, and put back to PENDING the ones the queue refused.
    async fn dispatch_batch(
        &self,
        chunk: &[DueEntry],
        run: &Run<'_>,
    ) -> Result<BatchReport, AppError> {
        let mut report = BatchReport::default();
        if run.stop.near(self.clock.now()) {
            report.left = chunk.to_vec();
            return Ok(report);
        }
        let prepared = join_all(chunk.iter().map(|e| self.prepare(e, run))).await;
        let mut marked = Vec::new();
        for p in prepared {
            match p {
                Prepared::Send { entry, queued_at } => marked.push((entry, queued_at)),
                Prepared::Missed => report.missed += 1,
                Prepared::Taken => report.already_taken += 1,
                Prepared::Throttled { entry } => report.left.push(entry),
                Prepared::Error => report.status_errors += 1,
            }
        }
        if marked.is_empty() {
            return Ok(report);
        }
        // Delays are taken right before the send so the time spent on the writes is not added.
        let now = self.clock.now();
        let messages: Vec<OutgoingMessage> = marked
            .iter()
            .map(|(e, _)| OutgoingMessage {
                id: e.key.to_string(),
                body: ExecutionMessage::for_key(&e.key, e.scheduled_time).body(),
                delay: delay_until(now, e.scheduled_time),
            })
            .collect();
        // A refused batch costs this batch only (its entries go back to PENDING for the next
        // run); the rest of the run, and what it counted, goes on.
        let refused: Vec<(String, String)> = match self.queue.send_batch(&messages).await {
            Ok(sent) => sent.failed,
            Err(e) => {
                let why = crate::error::chain(&e);
                messages
                    .iter()
                    .map(|m| (m.id.clone(), why.clone()))
                    .collect()
            }
        };
        for (entry, message) in marked.iter().zip(&messages) {
            if !refused.iter().any(|(id, _)| *id == message.id) {
                report.dispatched += 1;
                run.metrics.incr(Metric::Dispatched);
                info!(pk = %entry.0.key.pk, sk = %entry.0.key.sk, scheduled_time = %entry.0.scheduled_time,
                      delay_s = message.delay.as_secs(), "dispatched");
            }
        }
        report.dispatch_failed += refused.len();
        run.metrics
            .count(Metric::DispatchFailed, refused.len() as u64);
        let undo = marked.iter().filter_map(|(entry, queued_at)| {
            let id = entry.key.to_string();
            let (_, why) = refused.iter().find(|(r, _)| *r == id)?;
            Some(self.put_back(entry, *queued_at, why, run))
        });
        for outcome in join_all(undo).await {
            match outcome {
                PutBack::Pending | PutBack::MovedOn => {}
                PutBack::Error => report.status_errors += 1,
            }
        }
        Ok(report)
    }

    /// The queue refused `entry`'s message: QUEUED → PENDING, as this run left it, so the
    /// next run sends it. If the write cannot be made, the item stays QUEUED with no
    /// message and the stuck sweep sends it again (late, never lost).
    async fn put_back(
        &self,
        entry: &DueEntry,
        queued_at: Timestamp,
        why: &str,
        run: &Run<'_>,
    ) -> PutBack {
        let key = entry.key.to_string();
        let reason = format!("execution queue refused the message: {why}");
        let now = Timestamp::from_datetime(self.clock.now());
        let undone = self
            .retried(&key, run, || {
                self.store.unqueue(&entry.key, queued_at, &reason, now)
            })
            .await;
        match undone {
            Ok(true) => {
                warn!(key = %entry.key, error = %why, "not sent to the execution queue; back to PENDING for the next run");
                PutBack::Pending
            }
            Ok(false) => {
                warn!(key = %entry.key, error = %why, "not sent, and the occurrence moved on meanwhile; left as it is");
                PutBack::MovedOn
            }
            Err(e) => {
                warn!(key = %entry.key, error = %crate::error::chain(&e),
                      "not sent, and could not be put back to PENDING; the stuck sweep sends it again");
                PutBack::Error
            }
        }
    }

    /// Decides one entry: too late (MISSED), taken by someone else, or marked QUEUED by
    /// this run and so ours to send.
    async fn prepare(&self, entry: &DueEntry, run: &Run<'_>) -> Prepared {
        let now = Timestamp::from_datetime(self.clock.now());
        let key = entry.key.to_string();
        if entry.scheduled_time < now {
            // Overdue (skipped or failed runs): read its grace; rare in normal operation.
            let item = match self.retried(&key, run, || self.store.get(&entry.key)).await {
                Ok(Some(item)) if item.status == Status::Pending => item,
                Ok(_) => return Prepared::Taken,
                Err(e) => {
                    warn!(key = %entry.key, error = %crate::error::chain(&e), "could not read overdue occurrence");
                    return Prepared::Error;
                }
            };
            if let Some(reason) = self.past_grace(&item, now, "found") {
                return match self.write_missed(&item.key, reason, now, run).await {
                    Ok(true) => {
                        warn!(key = %entry.key, scheduled_time = %entry.scheduled_time, "occurrence missed");
                        Prepared::Missed
                    }
                    Ok(false) => Prepared::Taken,
                    Err(e) => {
                        warn!(error = %crate::error::chain(&e), "could not mark overdue occurrence MISSED");
                        Prepared::Error
                    }
                };
            }
        }
        // Retried with the same owner and instant: a write that landed but whose answer
        // was lost is recognized as ours. (Past the retries, or after a crash, the item is
        // QUEUED with no message, and the stuck sweep sends it: late, not lost.)
        let queued = self
            .retried(&key, run, || {
                self.store.queue_unleased(&entry.key, run.id, now)
            })
            .await;
        match queued {
            Ok(true) => Prepared::Send {
                entry: entry.clone(),
                queued_at: now,
            },
            Ok(false) => Prepared::Taken,
            Err(e) if e.is_retryable() => {
                warn!(key = %entry.key, error = %crate::error::chain(&e), "occurrence not marked QUEUED (throttled); handed on with the backlog");
                Prepared::Throttled {
                    entry: entry.clone(),
                }
            }
            Err(e) => {
                warn!(key = %entry.key, error = %crate::error::chain(&e), "could not mark occurrence QUEUED");
                Prepared::Error
            }
        }
    }

    /// Why `item` may no longer fire at `now` (`None`: still within its misfire grace).
    /// `seen` says how it was come upon, for the reason recorded.
    fn past_grace(&self, item: &ScheduleItem, now: Timestamp, seen: &str) -> Option<String> {
        let grace = item
            .misfire_grace
            .unwrap_or(self.settings.default_misfire_grace);
        let late = now.epoch_seconds() - item.scheduled_time.epoch_seconds();
        (late > grace.as_secs() as i64).then(|| {
            format!(
                "{seen} {late}s after it was due, past its misfire grace of {}s",
                grace.as_secs()
            )
        })
    }

    /// PENDING → MISSED with `reason`. `Ok(false)`: the item moved on first.
    async fn write_missed(
        &self,
        key: &ScheduleKey,
        reason: String,
        now: Timestamp,
        run: &Run<'_>,
    ) -> Result<bool, StatusWriteError> {
        let change = StatusChange::transition(Status::Pending, Status::Missed, now)
            .map_err(|source| StatusWriteError::Transition {
                key: key.clone(),
                source,
            })?
            .with_error(reason);
        self.write_status(key, &change, run).await
    }

    /// One conditional status change, retried.
    async fn write_status(
        &self,
        key: &ScheduleKey,
        change: &StatusChange,
        run: &Run<'_>,
    ) -> Result<bool, StatusWriteError> {
        self.retried(&key.to_string(), run, || {
            self.store.change_status(key, change)
        })
        .await
        .map_err(|source| StatusWriteError::Store {
            key: key.clone(),
            from: change.from,
            to: change.to,
            source,
        })
    }

    /// The sweep (see the head of this file): QUEUED occurrences past every receive of
    /// their message are sent again, MISSED or FAILED. Candidates come from the index (due
    /// before the threshold); each is read to check when it was queued, so occurrences
    /// this very run sent late are left alone.
    async fn sweep_stuck(&self, now: Timestamp, run: &Run<'_>) -> Result<SweepReport, AppError> {
        let mut report = SweepReport::default();
        if run.stop.near(self.clock.now()) {
            return Ok(report);
        }
        let limit = now.minus(self.settings.stuck_after());
        let candidates = query_due(&self.store, Status::Queued, limit, self.paging(run)).await?;
        let items = join_all(
            candidates
                .iter()
                .take(MAX_STUCK_CHECKS)
                .map(|e| async move {
                    let key = e.key.to_string();
                    self.retried(&key, run, || self.store.get(&e.key)).await
                }),
        )
        .await;
        let stuck: Vec<ScheduleItem> = items
            .into_iter()
            .filter_map(|read| match read {
                Ok(item) => item,
                Err(e) => {
                    warn!(error = %crate::error::chain(&e), "could not read a stuck candidate; the next run reads it again");
                    None
                }
            })
            .filter(|item| {
                item.status == Status::Queued
                    && item.queued_at.unwrap_or(item.scheduled_time).max(item.scheduled_time)
                        < limit
            })
            .collect();
        report.stuck = stuck.len();
        // Past the checked ones, count the rest as stuck: better an alarm too many.
        report.stuck += candidates.len().saturating_sub(MAX_STUCK_CHECKS);
        run.metrics.count(Metric::StuckQueued, report.stuck as u64);

        let decided = join_all(stuck.iter().map(|item| async move {
            let sweep = self.sweep_of(item, now);
            let key = item.key.to_string();
            let won = self
                .retried(&key, run, || {
                    self.store
                        .sweep_queued(&item.key, item.queued_at, &sweep, now)
                })
                .await;
            (item, sweep, won)
        }))
        .await;
        let mut resend = Vec::new();
        for (item, sweep, won) in decided {
            match won {
                Ok(false) => {}
                Err(e) => {
                    warn!(key = %item.key, error = %crate::error::chain(&e), "could not sweep a stuck occurrence; the next run tries again");
                    report.status_errors += 1;
                }
                Ok(true) => match sweep {
                    Sweep::Redispatch => resend.push(item),
                    Sweep::Fail { reason } => {
                        warn!(pk = %item.key.pk, sk = %item.key.sk, scheduled_time = %item.scheduled_time,
                              sweeps = item.sweeps, reason = %reason, "stuck occurrence FAILED; its message is in the execution DLQ");
                        report.failed += 1;
                    }
                    Sweep::Miss { reason } => {
                        warn!(pk = %item.key.pk, sk = %item.key.sk, scheduled_time = %item.scheduled_time,
                              reason = %reason, "stuck occurrence missed");
                        report.missed += 1;
                    }
                },
            }
        }
        self.resend(&resend, &mut report, run).await?;
        run.metrics
            .count(Metric::StuckRedispatched, report.redispatched as u64);
        run.metrics.count(Metric::StuckFailed, report.failed as u64);
        run.metrics.count(Metric::Failed, report.failed as u64);
        run.metrics.count(Metric::Missed, report.missed as u64);
        Ok(report)
    }

    /// What the sweep does with one stuck occurrence: MISSED past its grace, otherwise
    /// sent again while re-dispatches are left, otherwise FAILED.
    fn sweep_of(&self, item: &ScheduleItem, now: Timestamp) -> Sweep {
        let queued = item
            .queued_at
            .map_or_else(|| "an unknown time".to_owned(), |q| q.to_string());
        if let Some(why) = self.past_grace(item, now, "found stuck QUEUED by the sweep") {
            return Sweep::Miss { reason: why };
        }
        if item.sweeps < self.settings.stuck_redispatches {
            return Sweep::Redispatch;
        }
        Sweep::Fail {
            reason: format!(
                "still QUEUED (queued at {queued}) after {} re-dispatches by the stuck sweep; \
                 every receive of its message was used up without an outcome",
                item.sweeps
            ),
        }
    }

    /// Sends the claimed stuck occurrences again, under their execution ids.
    async fn resend(
        &self,
        items: &[&ScheduleItem],
        report: &mut SweepReport,
        run: &Run<'_>,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        for chunk in items.chunks(SQS_MAX_BATCH) {
            let messages: Vec<OutgoingMessage> = chunk
                .iter()
                .map(|item| OutgoingMessage {
                    id: item.key.to_string(),
                    body: ExecutionMessage::for_key(&item.key, item.scheduled_time).body(),
                    delay: delay_until(now, item.scheduled_time),
                })
                .collect();
            let sent = match self.queue.send_batch(&messages).await {
                Ok(sent) => sent,
                Err(e) => {
                    // Claimed but not sent: found again one threshold later.
                    report.dispatch_failed += messages.len();
                    run.metrics
                        .count(Metric::DispatchFailed, messages.len() as u64);
                    warn!(entries = messages.len(), error = %crate::error::chain(&e), "stuck occurrences not sent again; the sweep finds them again later");
                    continue;
                }
            };
            for (id, why) in &sent.failed {
                // Claimed but not sent: found again one threshold later.
                report.dispatch_failed += 1;
                run.metrics.incr(Metric::DispatchFailed);
                warn!(key = %id, error = %why, "stuck occurrence not sent again; the sweep finds it again later");
            }
            for item in chunk
                .iter()
                .filter(|i| sent.sent.contains(&i.key.to_string()))
            {
                report.redispatched += 1;
                warn!(pk = %item.key.pk, sk = %item.key.sk, scheduled_time = %item.scheduled_time,
                      sweep = item.sweeps + 1, "stuck QUEUED occurrence sent again");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Definition;
    use crate::ports::InvalidDefinition;
    use serde_json::json;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse(s).unwrap()
    }

    fn def(version: u64, enabled: bool, schedule: serde_json::Value) -> ScannedDefinition {
        Ok(Definition::from_json(
            &json!({"tenant_id": "acme", "device_workflow_step_id": "s1",
            "workflow_id": "w1", "device_id": "d1", "enabled": enabled, "version": version,
            "schedule": schedule}),
        )
        .unwrap())
    }

    #[test]
    fn verdicts_follow_the_definition_as_it_is_now() {
        let t = ts("2026-11-26T10:30:00Z");
        let rate = |start: &str| json!({"type": "rate", "every": "15m", "start": start});
        let cancel = |version, reason: &str| Verdict::Cancel {
            version,
            reason: reason.to_owned(),
        };
        assert_eq!(verdict(None, t), cancel(ANY_VERSION, "definition deleted"));
        let invalid = Err(InvalidDefinition {
            key: "TENANT#acme|STEP#s1".into(),
            error: crate::model::DefinitionError {
                field: "schedule.timezone".into(),
                value: "\"Mars/Olympus\"".into(),
                reason: "unknown time zone".into(),
            },
        });
        assert_eq!(
            verdict(Some(&invalid), t),
            cancel(
                ANY_VERSION,
                "definition invalid: invalid schedule.timezone \"Mars/Olympus\": unknown time zone"
            )
        );
        assert_eq!(
            verdict(Some(&def(4, false, rate("2026-11-26T10:00:00Z"))), t),
            cancel(4, "definition disabled (version 4)")
        );
        assert_eq!(
            verdict(Some(&def(4, true, rate("2026-11-26T10:00:00Z"))), t),
            Verdict::Fire
        );
        assert_eq!(
            verdict(Some(&def(5, true, rate("2026-11-26T10:01:00Z"))), t),
            Verdict::CancelIfOlder {
                version: 5,
                reason: "version 5 no longer yields 2026-11-26T10:30:00Z".into()
            }
        );
        // The edge the cancel writes is in the transition table.
        assert!(Status::Pending.can_become(Status::Cancelled));
    }

    /// Flows of the scheduler run on the embedded twin, on a manual clock.
    mod flow {
        use std::time::Duration;

        use chrono::{DateTime, Utc};
        use serde_json::json;

        use crate::embedded::{Embedded, EmbeddedSettings};
        use crate::model::{Definition, ScheduleItem, ScheduleKey, Status, Timestamp};
        use crate::ports::{Clock, DefinitionSource, DispatchQueue, ScheduleStore};

        fn start() -> DateTime<Utc> {
            "2026-11-26T08:00:00Z".parse().unwrap()
        }

        fn world(shards: u16) -> Embedded {
            Embedded::new(
                start(),
                EmbeddedSettings {
                    shards,
                    ..Default::default()
                },
            )
        }

        /// A one-time step `offset_s` after the start, its definition stored and its
        /// occurrence written PENDING with `shards` shards.
        async fn pending(world: &Embedded, step: &str, offset_s: i64, shards: u16) -> ScheduleKey {
            let at = Timestamp::from_datetime(start() + chrono::Duration::seconds(offset_s));
            let def = Definition::from_json(&json!({"tenant_id": "acme", "device_workflow_step_id": step,
                "workflow_id": "w1", "device_id": "dev-1", "schedule": {"type": "once", "at": at.to_string()}}))
            .unwrap();
            world.definitions.put(&def).await.unwrap();
            let now = Timestamp::from_datetime(world.clock.now());
            let item = ScheduleItem::pending(&def, at, now, Duration::from_secs(86_400), shards);
            assert!(world.memory_store.create_if_absent(&item).await.unwrap());
            item.key
        }

        async fn status(world: &Embedded, key: &ScheduleKey) -> ScheduleItem {
            world.memory_store.get(key).await.unwrap().unwrap()
        }

        /// What a Lambda timeout, an out-of-memory or a throttled invocation on every
        /// receive does: the message is received `maxReceiveCount` times, never handled,
        /// and moves to the DLQ; the item is not touched.
        async fn lose_to_the_dlq(world: &Embedded) {
            let visibility = crate::limits::EXECUTION_VISIBILITY_TIMEOUT;
            let in_dlq = world.execution_dlq.len();
            assert!(
                !world.execution_queue.is_empty(),
                "no message to lose: the occurrence was not sent again"
            );
            for _ in 0..10 {
                let got = world
                    .execution_queue
                    .receive(10, Duration::ZERO)
                    .await
                    .unwrap();
                if got.is_empty() && world.execution_dlq.len() > in_dlq {
                    return;
                }
                world.clock.advance(visibility + Duration::from_secs(1));
            }
            panic!("the message never reached the DLQ");
        }

        #[tokio::test]
        async fn a_queued_occurrence_whose_message_went_to_the_dlq_is_redispatched_and_executes() {
            let world = world(4);
            let key = pending(&world, "s1", 60, 4).await;
            assert_eq!(world.schedule("run-1").await.unwrap().dispatched, 1);
            world.clock.advance(Duration::from_secs(60));
            lose_to_the_dlq(&world).await;
            assert_eq!(status(&world, &key).await.status, Status::Queued);
            // Not yet past maxReceiveCount × visibility + window after it was due: left alone.
            let report = world.schedule("run-2").await.unwrap();
            assert_eq!(report.stuck_queued, 0, "{report:?}");
            world.clock.advance(Duration::from_secs(5 * 60));
            let report = world.schedule("run-3").await.unwrap();
            assert_eq!(report.stuck_queued, 1, "{report:?}");
            let outcomes = world.execute_ready().await.unwrap();
            assert_eq!(outcomes.len(), 1, "the sweep sent the occurrence again");
            let item = status(&world, &key).await;
            assert_eq!(item.status, Status::Executed, "{item:?}");
            let triggers = world.triggers();
            assert_eq!(triggers.len(), 1);
            assert_eq!(
                triggers[0].execution_id,
                item.execution_id(),
                "same execution id"
            );
        }

        #[tokio::test]
        async fn a_stuck_occurrence_ends_failed_naming_the_sweep_after_its_redispatches() {
            // A grace long enough that every re-dispatch is still in time.
            let mut settings = EmbeddedSettings {
                shards: 4,
                ..Default::default()
            };
            settings.schedule.default_misfire_grace = Duration::from_secs(6 * 3600);
            let world = Embedded::new(start(), settings);
            let key = pending(&world, "s1", 60, 4).await;
            world.schedule("run-0").await.unwrap();
            world.clock.advance(Duration::from_secs(60));
            let sweeps = world.scheduler.settings.stuck_redispatches;
            let mut run = 0;
            // Every copy is lost; each sweep after the threshold sends it again, up to the bound.
            while status(&world, &key).await.status == Status::Queued && run < 20 {
                run += 1;
                lose_to_the_dlq(&world).await;
                world.clock.advance(Duration::from_secs(15 * 60));
                world.schedule(&format!("run-{run}")).await.unwrap();
            }
            let item = status(&world, &key).await;
            assert_eq!(item.status, Status::Failed, "{item:?}");
            assert_eq!(
                run,
                sweeps as usize + 1,
                "one run per re-dispatch, then FAILED"
            );
            let error = item.last_error.unwrap_or_default();
            assert!(error.contains("sweep"), "{error}");
            assert!(world.triggers().is_empty());
        }

        #[tokio::test]
        async fn a_stuck_occurrence_past_its_misfire_grace_is_missed_not_sent_again() {
            let world = world(4);
            let key = pending(&world, "s1", 60, 4).await;
            world.schedule("run-1").await.unwrap();
            world.clock.advance(Duration::from_secs(60));
            lose_to_the_dlq(&world).await;
            // Past the default one-hour grace by the time it is found.
            world.clock.advance(Duration::from_secs(3600));
            let report = world.schedule("run-2").await.unwrap();
            assert_eq!(report.stuck_queued, 1, "{report:?}");
            let item = status(&world, &key).await;
            assert_eq!(item.status, Status::Missed, "{item:?}");
            assert!(
                world.execution_queue.is_empty(),
                "nothing sent for a missed step"
            );
        }

        #[tokio::test]
        async fn overlapping_runs_send_a_stuck_occurrence_once_and_a_late_executor_wins() {
            let world = world(4);
            let a = pending(&world, "s1", 60, 4).await;
            let b = pending(&world, "s2", 60, 4).await;
            world.schedule("run-1").await.unwrap();
            world.clock.advance(Duration::from_secs(60));
            lose_to_the_dlq(&world).await;
            world.clock.advance(Duration::from_secs(5 * 60));
            // A late executor is at work on `b`: it holds a live lease.
            let now = Timestamp::from_datetime(world.clock.now());
            let until = now.plus(Duration::from_secs(60));
            assert!(
                world
                    .memory_store
                    .try_lease(&b, Status::Queued, "executor", until, now)
                    .await
                    .unwrap()
            );
            let (r1, r2) = futures::join!(world.schedule("run-a"), world.schedule("run-b"));
            let (r1, r2) = (r1.unwrap(), r2.unwrap());
            // The second finds `a` re-dispatched (new `queued_at`) or loses its claim.
            assert!(r1.stuck_queued.min(r2.stuck_queued) >= 1, "{r1:?} {r2:?}");
            assert_eq!(
                r1.stuck_redispatched + r2.stuck_redispatched,
                1,
                "{r1:?} {r2:?}"
            );
            assert_eq!(world.execution_queue.len(), 1, "one copy, not two");
            assert_eq!(status(&world, &a).await.sweeps, 1);
            let leased = status(&world, &b).await;
            assert_eq!(
                (leased.status, leased.sweeps),
                (Status::Queued, 0),
                "{leased:?}"
            );
        }

        /// The execution queue, refusing every entry whose id is listed (as SQS answers a
        /// batch entry it could not take, after the adapter's retries).
        struct Refusing {
            inner: std::sync::Arc<crate::adapters::memory::InMemoryQueue>,
            refuse: std::sync::Mutex<Vec<String>>,
        }

        impl DispatchQueue for Refusing {
            async fn send_batch(
                &self,
                messages: &[crate::ports::OutgoingMessage],
            ) -> Result<crate::ports::SendReport, crate::error::QueueError> {
                let refuse = self.refuse.lock().unwrap().clone();
                let (refused, passed): (Vec<_>, Vec<_>) = messages
                    .iter()
                    .cloned()
                    .partition(|m| refuse.contains(&m.id));
                let mut report = self.inner.send_batch(&passed).await?;
                report.failed.extend(
                    refused
                        .into_iter()
                        .map(|m| (m.id, "ServiceUnavailable: injected".to_owned())),
                );
                Ok(report)
            }

            async fn receive(
                &self,
                max: u32,
                wait: Duration,
            ) -> Result<Vec<crate::ports::ReceivedMessage>, crate::error::QueueError> {
                self.inner.receive(max, wait).await
            }

            async fn delete(&self, receipt_handle: &str) -> Result<(), crate::error::QueueError> {
                self.inner.delete(receipt_handle).await
            }
        }

        #[tokio::test]
        async fn a_refused_send_puts_the_occurrence_back_to_pending_and_the_next_run_sends_it() {
            let world = world(4);
            let refused = pending(&world, "s1", 240, 4).await;
            let sent = pending(&world, "s2", 240, 4).await;
            let scheduler = crate::app::schedule::Scheduler {
                store: world.memory_store.clone(),
                queue: Refusing {
                    inner: world.execution_queue.clone(),
                    refuse: std::sync::Mutex::new(vec![refused.to_string()]),
                },
                continuation: None,
                definitions: world.definitions.clone(),
                clock: world.clock.clone(),
                settings: world.scheduler.settings.clone(),
            };
            let report = scheduler.run("run-1", None, &world.metrics).await.unwrap();
            assert_eq!(
                (
                    report.dispatched,
                    report.dispatch_failed,
                    report.status_errors
                ),
                (1, 1, 0),
                "{report:?}"
            );
            let back = status(&world, &refused).await;
            assert_eq!(
                (back.status, back.queued_at, back.retry_count),
                (Status::Pending, None, 1),
                "{back:?}"
            );
            assert!(
                back.last_error
                    .as_deref()
                    .is_some_and(|e| e.contains("refused") && e.contains("ServiceUnavailable")),
                "{back:?}"
            );
            assert_eq!(status(&world, &sent).await.status, Status::Queued);
            // The queue takes it again: the next run finds it PENDING and sends it once.
            scheduler.queue.refuse.lock().unwrap().clear();
            world.clock.advance(Duration::from_secs(60));
            let report = scheduler.run("run-2", None, &world.metrics).await.unwrap();
            assert_eq!((report.due, report.dispatched), (1, 1), "{report:?}");
            assert_eq!(status(&world, &refused).await.status, Status::Queued);
            assert_eq!(world.execution_queue.len(), 2, "one message per occurrence");
        }

        #[tokio::test]
        async fn a_run_out_of_time_hands_each_shard_to_a_continuation_that_sends_the_rest_once() {
            let world = world(4);
            let mut keys = Vec::new();
            for i in 0..30 {
                keys.push(pending(&world, &format!("s{i:02}"), 60 + i, 4).await);
            }
            // A deadline that is already here: nothing can be started.
            let now = world.clock.now();
            let report = world
                .scheduler
                .run("run-1", Some(now), &world.metrics)
                .await
                .unwrap();
            let shards: std::collections::BTreeSet<String> = {
                let items = world.memory_store.items();
                items
                    .iter()
                    .filter_map(|i| i.status_shard.as_ref().map(|s| s.to_string()))
                    .collect()
            };
            assert_eq!(
                (report.due, report.dispatched, report.handed_off),
                (30, 0, 30),
                "{report:?}"
            );
            assert_eq!(report.left_for_next_run, 0, "{report:?}");
            assert_eq!(
                report.continuations,
                shards.len(),
                "one per shard: {shards:?}"
            );
            assert_eq!(world.continuation_queue.len(), shards.len());
            for key in &keys {
                assert_eq!(status(&world, key).await.status, Status::Pending);
            }
            let reports = world.continue_ready(None).await.unwrap();
            assert_eq!(reports.len(), shards.len(), "{reports:?}");
            assert_eq!(
                reports.iter().map(|r| r.dispatched).sum::<usize>(),
                30,
                "{reports:?}"
            );
            assert!(reports.iter().all(|r| r.handed_off == 0), "{reports:?}");
            for key in &keys {
                assert_eq!(status(&world, key).await.status, Status::Queued, "{key}");
            }
            assert_eq!(
                world.execution_queue.len(),
                30,
                "one message per occurrence"
            );
            assert!(world.continuation_queue.is_empty());
            // A continuation delivered twice finds nothing left: no duplicate.
            let again = crate::app::schedule::Continuation::new(
                &crate::model::StatusShard::new(Status::Pending, 0),
                Timestamp::parse(&report.due_before).unwrap(),
                1,
            );
            let rerun = world
                .scheduler
                .resume("dup", None, &world.metrics, &again)
                .await
                .unwrap();
            assert_eq!((rerun.due, rerun.dispatched), (0, 0), "{rerun:?}");
            assert_eq!(world.execution_queue.len(), 30);
        }

        #[tokio::test]
        async fn hand_offs_stop_at_their_bound_and_the_rest_waits_for_the_next_run() {
            let mut settings = EmbeddedSettings {
                shards: 2,
                ..Default::default()
            };
            settings.schedule.max_handoffs = 1;
            let world = Embedded::new(start(), settings);
            pending(&world, "s1", 60, 2).await;
            let now = world.clock.now();
            let first = world
                .scheduler
                .run("run-1", Some(now), &world.metrics)
                .await
                .unwrap();
            assert_eq!(first.continuations, 1, "{first:?}");
            // The continuation is out of time too; it may not hand off again.
            let msg = world
                .continuation_queue
                .receive(1, Duration::ZERO)
                .await
                .unwrap();
            let c = crate::app::schedule::Continuation::parse(&msg[0].body).unwrap();
            assert_eq!(c.handoff, 1);
            let second = world
                .scheduler
                .resume("c-1", Some(now), &world.metrics, &c)
                .await
                .unwrap();
            assert_eq!(
                (second.handed_off, second.left_for_next_run),
                (0, 1),
                "{second:?}"
            );
        }

        #[test]
        fn continuation_bodies_name_a_pending_shard() {
            use crate::app::schedule::{Continuation, MalformedContinuation};
            let ok = Continuation::parse(
                r#"{"v":1,"status_shard":"PENDING#07","before":"2026-11-26T10:06:00Z","handoff":2}"#,
            )
            .unwrap();
            assert_eq!(ok.status_shard().unwrap().as_str(), "PENDING#07");
            let bad = |body: &str| Continuation::parse(body).unwrap_err();
            assert_eq!(
                bad(
                    r#"{"v":1,"status_shard":"QUEUED#07","before":"2026-11-26T10:06:00Z","handoff":1}"#
                ),
                MalformedContinuation::Shard("QUEUED#07".into())
            );
            assert_eq!(
                bad(
                    r#"{"v":2,"status_shard":"PENDING#07","before":"2026-11-26T10:06:00Z","handoff":1}"#
                ),
                MalformedContinuation::Version(2)
            );
            assert!(matches!(bad("{}"), MalformedContinuation::Shape(_)));
        }

        #[tokio::test]
        async fn lowering_status_shards_strands_no_due_occurrence() {
            let world = world(8);
            // A run of the deployment with 8 shards, then its occurrences.
            world.schedule("run-8").await.unwrap();
            let mut keys = Vec::new();
            for i in 0..40 {
                keys.push(pending(&world, &format!("s{i:02}"), 600 + i, 8).await);
            }
            // Redeployed with 2 shards: every occurrence is still found and dispatched.
            world.memory_store.reconfigure_status_shards(2);
            world.clock.advance(Duration::from_secs(6 * 60));
            let report = world.schedule("run-2").await.unwrap();
            assert_eq!((report.due, report.dispatched), (40, 40), "{report:?}");
            for key in &keys {
                assert_eq!(status(&world, key).await.status, Status::Queued, "{key}");
            }
        }
    }
}
