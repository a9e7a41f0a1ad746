//! The scheduler run (every window, 5 minutes by default): PENDING occurrences due before
//! `now + window + margin` → the execution queue with a per-message delay → QUEUED.
//!
//! Order of writes, and why: **lease, send, then mark QUEUED**.
//! - Marking QUEUED before sending would strand the occurrence if the run died between the
//!   two: QUEUED with no message, and nothing would ever look at it again.
//! - Sending first means a crash after the send leaves the item PENDING with a message on
//!   the queue; the next run sends it again, and the executor absorbs the duplicate (it
//!   reads the item and leases it before sending a trigger). At worst a duplicate message,
//!   never a lost occurrence.
//! - The lease (a conditional write on a PENDING item) comes first so that two overlapping
//!   runs never both send: the second sees the lease and leaves the item alone. A run that
//!   dies holding a lease only delays the item until the lease runs out.
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

use std::collections::BTreeSet;
use std::time::Duration;

use backon::Retryable;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::join_all;
use serde::Serialize;
use tracing::{info, warn};

use super::{AppError, Deadline, ExecutionMessage};
use crate::error::StoreError;
use crate::limits::{SQS_MAX_BATCH, SQS_MAX_DELAY_SECONDS};
use crate::metrics::{Metric, Metrics};
use crate::model::{ScheduleKey, Status, StatusChange, Timestamp};
use crate::ports::{
    Clock, DefinitionKey, DefinitionSource, DispatchQueue, DueEntry, FetchedDefinitions,
    OutgoingMessage, ScannedDefinition, ScheduleStore, query_due,
};
use crate::recurrence::{Window, occurrences};
use crate::retry::RetryPolicy;

#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// Equal to the EventBridge rate of the scheduler (5 minutes).
    pub window: Duration,
    /// Extra look-ahead so a run that starts late still covers the whole next window.
    pub margin: Duration,
    /// How late an occurrence may still fire when its definition says nothing.
    pub default_misfire_grace: Duration,
    /// A QUEUED item older than this (past its time) is reported as stuck.
    pub stuck_after: Duration,
    pub page_size: u32,
    /// Send batches in flight at once.
    pub batches_in_flight: usize,
    /// How long a run's claim on an item lasts if the run dies.
    pub lease: Duration,
    pub status_retry: RetryPolicy,
    pub deadline_margin: Duration,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            window: crate::limits::DEFAULT_SCHEDULE_WINDOW,
            margin: Duration::from_secs(60),
            default_misfire_grace: Duration::from_secs(3600),
            stuck_after: Duration::from_secs(15 * 60),
            page_size: 500,
            batches_in_flight: 4,
            lease: Duration::from_secs(120),
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
    /// Sent, but the QUEUED write found the item changed (the executor got there first,
    /// or the definition was cancelled); the executor decides.
    pub status_lost: usize,
    pub status_errors: usize,
    pub stuck_queued: usize,
    /// Left for the next run because the deadline came first.
    pub left_for_next_run: usize,
    /// Cancelled before sending: the definition is gone, invalid, disabled, or no longer
    /// yields the occurrence's time.
    pub cancelled: usize,
    /// Sent without their definition checked (the definitions could not be read).
    pub definitions_unchecked: usize,
}

/// The `DelaySeconds` of a step due at `due`, sent at `now`: whole seconds, rounded
/// down, so SQS releases the message at most 1 s before the step is due; the executor
/// waits out the rest, so the trigger leaves within milliseconds of its time and never
/// before it. (Rounding up would be simpler and up to a second late.)
pub fn delay_until(now: DateTime<Utc>, due: Timestamp) -> Duration {
    let millis = (due.as_datetime() - now).num_milliseconds().max(0) as u64;
    Duration::from_secs((millis / 1000).min(u64::from(SQS_MAX_DELAY_SECONDS)))
}

/// Stuck candidates read per run; the index already bounds the rest.
const MAX_STUCK_CHECKS: usize = 200;

#[derive(Debug, Default)]
struct BatchReport {
    dispatched: usize,
    missed: usize,
    already_taken: usize,
    dispatch_failed: usize,
    status_lost: usize,
    status_errors: usize,
    left: usize,
}

enum Prepared {
    Send { entry: DueEntry },
    Missed,
    Taken,
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

#[derive(Debug)]
pub struct Scheduler<S, Q, D, C> {
    pub store: S,
    pub queue: Q,
    /// The definitions table, read once per run to check the due occurrences.
    pub definitions: D,
    pub clock: C,
    pub settings: ScheduleSettings,
}

impl<S: ScheduleStore, Q: DispatchQueue, D: DefinitionSource, C: Clock> Scheduler<S, Q, D, C> {
    /// One run. `run_id` names this run's leases (the Lambda request id).
    pub async fn run(
        &self,
        run_id: &str,
        deadline: Option<DateTime<Utc>>,
        metrics: &Metrics,
    ) -> Result<ScheduleReport, AppError> {
        let started = self.clock.now();
        let stop = Deadline::new(deadline, started, self.settings.deadline_margin);
        let now = Timestamp::from_datetime(started);
        let bound = now.plus(self.settings.window + self.settings.margin);
        let mut report = ScheduleReport {
            now: started.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            due_before: bound.to_string(),
            ..Default::default()
        };
        let due = query_due(&self.store, Status::Pending, bound, self.settings.page_size).await?;
        report.due = due.len();
        let checked = self.check_definitions(due, metrics).await;
        report.cancelled = checked.cancelled;
        report.definitions_unchecked = checked.unchecked;
        report.already_taken = checked.already_taken;
        report.status_errors = checked.status_errors;
        let due = checked.to_dispatch;

        // Batches of 10 (one SendMessageBatch each), a few in flight at once; each batch
        // checks the deadline before it starts.
        let batches: Vec<BatchReport> = futures::stream::iter(due.chunks(SQS_MAX_BATCH))
            .map(|chunk| self.dispatch_batch(chunk, run_id, stop, metrics))
            .buffered(self.settings.batches_in_flight.max(1))
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        for b in batches {
            report.dispatched += b.dispatched;
            report.missed += b.missed;
            report.already_taken += b.already_taken;
            report.dispatch_failed += b.dispatch_failed;
            report.status_lost += b.status_lost;
            report.status_errors += b.status_errors;
            report.left_for_next_run += b.left;
        }
        if report.left_for_next_run > 0 {
            warn!(
                left = report.left_for_next_run,
                "deadline near; left the rest for the next run"
            );
        }
        metrics.count(Metric::Missed, report.missed as u64);
        metrics.count(Metric::AlreadyTaken, report.already_taken as u64);
        report.stuck_queued = self.report_stuck(now, metrics).await?;
        info!(
            due = report.due,
            dispatched = report.dispatched,
            missed = report.missed,
            already_taken = report.already_taken,
            dispatch_failed = report.dispatch_failed,
            cancelled = report.cancelled,
            definitions_unchecked = report.definitions_unchecked,
            stuck_queued = report.stuck_queued,
            left = report.left_for_next_run,
            "schedule run finished"
        );
        // The heartbeat: an alarm fires when no run succeeds for three windows.
        metrics.incr(Metric::SchedulerRunSucceeded);
        Ok(report)
    }

    /// Checks each due occurrence against its definition (one batched read of the distinct
    /// definitions) and cancels those it no longer asks for; the rest go on to be sent.
    async fn check_definitions(&self, due: Vec<DueEntry>, metrics: &Metrics) -> CheckReport {
        let mut report = CheckReport::default();
        let keyed = key_by_definition(due, &mut report);
        if !keyed.is_empty() {
            let distinct: BTreeSet<&DefinitionKey> = keyed.iter().map(|(_, k)| k).collect();
            let keys: Vec<DefinitionKey> = distinct.into_iter().cloned().collect();
            match self.definitions.get_many(&keys).await {
                Ok(found) => self.judge(keyed, &found, &mut report).await,
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
        metrics.count(Metric::Cancelled, report.cancelled as u64);
        metrics.count(Metric::DefinitionCheckUnavailable, report.unchecked as u64);
        report
    }

    /// Judges every keyed occurrence against the definitions read, concurrently.
    async fn judge(
        &self,
        keyed: Vec<(DueEntry, DefinitionKey)>,
        found: &FetchedDefinitions,
        report: &mut CheckReport,
    ) {
        let settled = join_all(keyed.iter().map(|(entry, key)| {
            // A key missing from the answer is unknown, not deleted.
            let verdict = found
                .get(key)
                .map(|row| verdict(row.as_ref(), entry.scheduled_time));
            self.settle(entry, verdict)
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
    async fn settle(&self, entry: &DueEntry, verdict: Option<Verdict>) -> Checked {
        let (version, reason) = match verdict {
            None => return Checked::FireUnchecked,
            Some(Verdict::Fire) => return Checked::Fire,
            Some(Verdict::Cancel { version, reason }) => (version, reason),
            Some(Verdict::CancelIfOlder { version, reason }) => {
                // The due page is keys only: read the item for its version. Only an
                // occurrence its definition no longer yields pays for this read.
                let read = || self.store.get(&entry.key);
                match read
                    .retry(self.settings.status_retry)
                    .when(|e| e.is_retryable())
                    .await
                {
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
        match self.cancel(&entry.key, version, &reason).await {
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

    /// PENDING → CANCELLED with `reason` recorded, for the definition at `version`
    /// ([`ANY_VERSION`] when there is none). Only an occurrence made from an older version
    /// is cancelled, so one that definition sync has just refreshed to `version` stays.
    /// `Ok(false)`: the item moved on first.
    async fn cancel(
        &self,
        key: &ScheduleKey,
        version: u64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let write = || self.store.cancel(key, version, reason);
        write
            .retry(self.settings.status_retry)
            .when(|e| e.is_retryable())
            .await
    }

    /// One batch: decide each entry, send the ones to send, mark them QUEUED.
    async fn dispatch_batch(
        &self,
        chunk: &[DueEntry],
        run_id: &str,
        deadline: Deadline,
        metrics: &Metrics,
    ) -> Result<BatchReport, AppError> {
        let mut report = BatchReport::default();
        if deadline.near(self.clock.now()) {
            report.left = chunk.len();
            return Ok(report);
        }
        let prepared = join_all(chunk.iter().map(|e| self.prepare(e, run_id))).await;
        let mut to_send = Vec::new();
        for p in prepared {
            match p {
                Prepared::Send { entry } => to_send.push(entry),
                Prepared::Missed => report.missed += 1,
                Prepared::Taken => report.already_taken += 1,
                Prepared::Error => report.status_errors += 1,
            }
        }
        if to_send.is_empty() {
            return Ok(report);
        }
        // Delays are taken right before the send so the time spent on leases is not added.
        let now = self.clock.now();
        let to_send: Vec<(DueEntry, Duration)> = to_send
            .into_iter()
            .map(|e| {
                let delay = delay_until(now, e.scheduled_time);
                (e, delay)
            })
            .collect();
        let messages: Vec<OutgoingMessage> = to_send
            .iter()
            .map(|(e, delay)| OutgoingMessage {
                id: e.key.to_string(),
                body: ExecutionMessage::for_key(&e.key, e.scheduled_time).body(),
                delay: *delay,
            })
            .collect();
        let sent = self.queue.send_batch(&messages).await?;
        for (id, why) in &sent.failed {
            report.dispatch_failed += 1;
            metrics.incr(Metric::DispatchFailed);
            warn!(key = %id, error = %why, "not sent to the execution queue; the next run retries");
        }
        let marks = to_send
            .iter()
            .filter(|(e, _)| sent.sent.contains(&e.key.to_string()))
            .map(|(e, delay)| self.mark_queued(&e.key, e.scheduled_time, *delay));
        for marked in join_all(marks).await {
            match marked {
                Ok(true) => {
                    report.dispatched += 1;
                    metrics.incr(Metric::Dispatched);
                }
                Ok(false) => report.status_lost += 1,
                Err(()) => report.status_errors += 1,
            }
        }
        Ok(report)
    }

    /// Decides one entry: too late (MISSED), taken by someone else, or ours to send.
    async fn prepare(&self, entry: &DueEntry, run_id: &str) -> Prepared {
        let now = Timestamp::from_datetime(self.clock.now());
        if entry.scheduled_time < now {
            // Overdue (skipped or failed runs): read its grace; rare in normal operation.
            let read = || self.store.get(&entry.key);
            let item = match read
                .retry(self.settings.status_retry)
                .when(|e| e.is_retryable())
                .await
            {
                Ok(Some(item)) if item.status == Status::Pending => item,
                Ok(_) => return Prepared::Taken,
                Err(e) => {
                    warn!(key = %entry.key, error = %crate::error::chain(&e), "could not read overdue occurrence");
                    return Prepared::Error;
                }
            };
            let grace = item
                .misfire_grace
                .unwrap_or(self.settings.default_misfire_grace);
            let late = now.epoch_seconds() - entry.scheduled_time.epoch_seconds();
            if late > grace.as_secs() as i64 {
                let change =
                    StatusChange::transition(Status::Pending, Status::Missed, now).map(|c| {
                        c.with_error(format!(
                            "found {late}s after it was due, past its misfire grace of {}s",
                            grace.as_secs()
                        ))
                    });
                return match change {
                    Ok(c) => match self.store.change_status(&entry.key, &c).await {
                        Ok(true) => {
                            warn!(key = %entry.key, scheduled_time = %entry.scheduled_time, late_s = late, "occurrence missed");
                            Prepared::Missed
                        }
                        Ok(false) => Prepared::Taken,
                        Err(_) => Prepared::Error,
                    },
                    Err(_) => Prepared::Error,
                };
            }
        }
        // Retried with the same owner: a lease that landed but whose answer was lost is
        // simply renewed.
        let lease = || {
            self.store.try_lease(
                &entry.key,
                Status::Pending,
                run_id,
                now.plus(self.settings.lease),
                now,
            )
        };
        match lease
            .retry(self.settings.status_retry)
            .when(|e| e.is_retryable())
            .await
        {
            Ok(true) => {}
            Ok(false) => return Prepared::Taken,
            Err(e) => {
                warn!(key = %entry.key, error = %crate::error::chain(&e), "could not lease occurrence");
                return Prepared::Error;
            }
        }
        Prepared::Send {
            entry: entry.clone(),
        }
    }

    async fn mark_queued(
        &self,
        key: &ScheduleKey,
        scheduled_time: Timestamp,
        delay: Duration,
    ) -> Result<bool, ()> {
        let now = Timestamp::from_datetime(self.clock.now());
        let change =
            StatusChange::transition(Status::Pending, Status::Queued, now).map_err(|_| ())?;
        let write = || self.store.change_status(key, &change);
        match write
            .retry(self.settings.status_retry)
            .when(|e| e.is_retryable())
            .await
        {
            Ok(won) => {
                if won {
                    info!(pk = %key.pk, sk = %key.sk, scheduled_time = %scheduled_time, delay_s = delay.as_secs(), "dispatched");
                }
                Ok(won)
            }
            Err(e) => {
                // The message is on its way; the executor moves the item on by itself.
                warn!(pk = %key.pk, sk = %key.sk, error = %crate::error::chain(&e), "sent, but the QUEUED write failed");
                Err(())
            }
        }
    }

    /// QUEUED items that have been waiting longer than `stuck_after`: their message was
    /// lost or sits in the DLQ. Candidates come from the index (due long ago); each is read
    /// to check when it was queued, so occurrences this very run sent late are not counted.
    async fn report_stuck(&self, now: Timestamp, metrics: &Metrics) -> Result<usize, AppError> {
        let limit = now.minus(self.settings.stuck_after);
        let candidates =
            query_due(&self.store, Status::Queued, limit, self.settings.page_size).await?;
        let items = join_all(
            candidates
                .iter()
                .take(MAX_STUCK_CHECKS)
                .map(|e| self.store.get(&e.key)),
        )
        .await;
        let mut stuck = 0;
        for item in items.into_iter().flatten().flatten() {
            if item.status == Status::Queued && item.queued_at.is_none_or(|q| q < limit) {
                stuck += 1;
                if stuck <= 20 {
                    warn!(pk = %item.key.pk, sk = %item.key.sk, scheduled_time = %item.scheduled_time,
                          queued_at = ?item.queued_at.map(|q| q.to_string()), "QUEUED for too long: check the execution DLQ");
                }
            }
        }
        // Past the checked ones, count the rest as stuck: better an alarm too many.
        stuck += candidates.len().saturating_sub(MAX_STUCK_CHECKS);
        metrics.count(Metric::StuckQueued, stuck as u64);
        Ok(stuck)
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
}
