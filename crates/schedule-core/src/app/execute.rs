//! Executing the messages of the execution queue, a batch (one SQS event) at a time; the
//! Lambda edge turns the outcomes into a partial batch response.
//!
//! The steps, in order, and why in that order. Steps 1 to 7 run for every message of the
//! batch concurrently while the batch is held before its due instants (SQS releases a
//! message up to a second early), so only the sends are left for the due instant:
//!
//! 1. **Too early?** Decided from the message alone, before any read or write: an early
//!    copy goes back as a fresh, delayed one ([`Outcome::Deferred`]); SQS counts every
//!    receive toward `maxReceiveCount`, so holding the same copy would spend the step's
//!    receives without a send.
//! 2. **Open**: read the occurrence; drop duplicates; PENDING → QUEUED (the scheduler's
//!    write may not have landed); FAILED → QUEUED (a message redriven from the DLQ runs the
//!    step again, under the same execution id).
//! 3. **Check grace**: later than its misfire grace → MISSED.
//! 4. **Re-validate** the device (cached): inactive → SKIPPED.
//! 5. **Deadline**: the wait until due and the send must fit before the invocation ends.
//! 6. **Route**: the tenant's rollout mode, read once for this occurrence just before it
//!    is due (through a short cache): `active` sends to the action trigger queue, `shadow`
//!    only records the trigger it would have sent (and sends it to the shadow queue, if one
//!    is configured), `off` sends nothing and the occurrence is SKIPPED.
//! 7. **Claim** a short lease, conditional on QUEUED: whoever moved the occurrence
//!    meanwhile (a concurrent copy, the scheduler's sweep of old QUEUED items) wins, and
//!    this copy sends nothing. The lease outlasts the hold, so nobody moves the occurrence
//!    between the claim and the send.
//! 8. **Deliver**, per due instant: wait on the injected clock until it reads that
//!    instant (never early), then send every trigger due then together, in one
//!    `SendMessageBatch` per 10 ([`crate::ports::ActionSink::send_batch`]), to where each
//!    route says; entries that failed for a retryable reason are resent (only they) within
//!    this receive and the deadline, through [`retrying`]; an entry refused for good fails
//!    alone.
//! 9. **Record** EXECUTED with the mode (and, in shadow mode, the would-be trigger), or the
//!    failed attempts, conditional on QUEUED; every message's outcome concurrently.
//!
//! Two copies of one occurrence in one batch: one claims it, the other finds the claim
//! (`Busy`); once the batch is recorded, the other is re-read and dropped as a duplicate
//! instead of coming back after the visibility timeout.
//!
//! Every write is conditional on the status read, and the send and the outcomes decided
//! before it (MISSED, SKIPPED) happen under the claim, so two deliveries never both win;
//! another writer (the sweep of old QUEUED items) must take the same lease, or wait for
//! it to expire, before it moves a QUEUED occurrence. On the
//! last receive (SQS moves the message to the DLQ next) no outcome leaves the occurrence
//! silently QUEUED: a retryable failure becomes FAILED, a send whose EXECUTED write failed
//! is recorded EXECUTED (never FAILED: the step fired), and a copy that found another
//! delivery's lease leaves the outcome to it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use serde::Serialize;
use tracing::{Instrument, error, info, info_span, warn};

use super::ExecutionMessage;
use crate::error::{QueueError, StoreError, ValidationError, chain};
use crate::metrics::{Metric, Metrics};
use crate::mode_cache::ModeRouting;
use crate::model::{
    ScheduleItem, ScheduleKey, Status, StatusChange, TenantMode, Timestamp, TriggerMessage,
    Validation,
};
use crate::ports::{ActionSink, Clock, DeviceValidator, ScheduleStore};
use crate::retry::{RetryPolicy, retrying};

#[derive(Debug, Clone)]
pub struct ExecuteSettings {
    /// The execution queue's `maxReceiveCount`: on that receive a failure is final.
    pub max_receive_count: u32,
    /// Attempts to push one trigger within one receive (3), with jittered backoff.
    pub send_retry: RetryPolicy,
    /// Retries of a read or a status write.
    pub status_retry: RetryPolicy,
    /// How long one copy of a message owns the occurrence.
    pub lease: Duration,
    /// A message that arrives at most this early is held until the step is due; an
    /// earlier one goes back to the queue as a fresh, delayed copy. It covers the
    /// scheduler's release lead (1–2 s, [`crate::app::schedule::RELEASE_LEAD_SECS`]) with
    /// a second to spare.
    pub early_wait_limit: Duration,
    pub default_misfire_grace: Duration,
    /// Time kept free before the invocation's deadline: no wait or send starts that
    /// would end closer to it (one send and its status write fit in it).
    pub deadline_margin: Duration,
}

impl Default for ExecuteSettings {
    fn default() -> Self {
        Self {
            max_receive_count: crate::limits::EXECUTION_MAX_RECEIVE_COUNT,
            send_retry: RetryPolicy::new(
                3,
                Duration::from_millis(100),
                Duration::from_secs(2),
                0xe7ec,
            ),
            status_retry: RetryPolicy::new(
                5,
                Duration::from_millis(50),
                Duration::from_secs(1),
                0x57a7,
            ),
            lease: Duration::from_secs(60),
            early_wait_limit: Duration::from_secs(3),
            default_misfire_grace: Duration::from_secs(3600),
            deadline_margin: Duration::from_secs(2),
        }
    }
}

/// One received message, as the Lambda event (or a local poller) gives it.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    pub message_id: &'a str,
    /// Names this delivery (the receipt handle): two deliveries of one message at once
    /// carry the same message id, and must not share a lease.
    pub delivery_id: &'a str,
    pub body: &'a str,
    /// `ApproximateReceiveCount`, 1 on the first delivery.
    pub receive_count: u32,
    /// When the invocation ends (the Lambda deadline); no attempt is started that could
    /// not finish before it. `None`: no limit (a local poller).
    pub deadline: Option<DateTime<Utc>>,
}

/// What became of one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Executed {
        execution_id: String,
        lateness_ms: u64,
        attempts: u32,
    },
    /// The occurrence already has its outcome; this copy is dropped.
    Duplicate {
        status: Status,
    },
    Skipped,
    Missed,
    /// No such occurrence (expired or never written).
    Orphan,
    /// Too early: the edge sends a fresh copy of the body with this delay (at most the
    /// SQS maximum of 900 s) and then deletes this one, so no receive of the step is
    /// spent; if that send fails, this copy is left for redelivery instead. The item was
    /// not read or written.
    Deferred {
        delay: Duration,
    },
    /// Try again on the next delivery.
    Retry {
        reason: String,
    },
    /// Another delivery of the same occurrence holds it and records the outcome; this
    /// copy comes back later and finds it.
    Busy,
    /// The trigger went out but its EXECUTED write failed. Redelivered so the write is
    /// tried again (the resend carries the same execution id, for the consumer to drop);
    /// never turned into FAILED, since the step did fire.
    Unrecorded {
        reason: String,
    },
    /// Marked FAILED (or found FAILED by a late copy); the message stays unacknowledged so
    /// SQS moves it to the DLQ.
    Failed {
        reason: String,
    },
    /// The body cannot be read; unacknowledged, so it reaches the DLQ.
    Malformed {
        reason: String,
    },
}

impl Outcome {
    /// Delete the message (`true`), or report it as a batch item failure. A
    /// [`Outcome::Deferred`] message is deleted only once its fresh copy is sent, which
    /// the edge does.
    pub fn acknowledge(&self) -> bool {
        matches!(
            self,
            Outcome::Executed { .. }
                | Outcome::Duplicate { .. }
                | Outcome::Skipped
                | Outcome::Missed
                | Outcome::Orphan
        )
    }
}

/// Why a step of the executor could not complete; the chain names the occurrence, the
/// operation and the service's own error.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("reading occurrence {key}")]
    Read {
        key: String,
        #[source]
        source: StoreError,
    },
    #[error("recording {from} -> {to} on occurrence {key}")]
    Write {
        key: String,
        from: Status,
        to: Status,
        #[source]
        source: StoreError,
    },
    #[error("leasing occurrence {key}")]
    Lease {
        key: String,
        #[source]
        source: StoreError,
    },
    #[error("re-validating the device")]
    Registry(#[source] ValidationError),
    #[error("reading the rollout mode of tenant {tenant}")]
    Mode {
        tenant: String,
        #[source]
        source: StoreError,
    },
    #[error("sending trigger {execution_id} (attempt {attempt})")]
    Send {
        execution_id: String,
        attempt: u32,
        #[source]
        source: QueueError,
    },
    #[error(
        "the invocation ends at {deadline}: too soon to {what} (due {due}, {margin_ms} ms kept free)"
    )]
    Deadline {
        deadline: DateTime<Utc>,
        due: Timestamp,
        margin_ms: u128,
        what: &'static str,
    },
}

impl ExecuteError {
    /// Whether a later delivery may succeed where this one failed.
    pub fn is_retryable(&self) -> bool {
        match self {
            ExecuteError::Read { source, .. }
            | ExecuteError::Write { source, .. }
            | ExecuteError::Lease { source, .. }
            | ExecuteError::Mode { source, .. } => source.is_retryable(),
            ExecuteError::Registry(e) => e.is_retryable(),
            ExecuteError::Send { source, .. } => source.is_retryable(),
            ExecuteError::Deadline { .. } => true,
        }
    }

    fn retry(self) -> Outcome {
        Outcome::Retry {
            reason: chain(&self),
        }
    }
}

#[derive(Debug)]
pub struct Executor<S, A, V, C> {
    pub store: S,
    pub sink: A,
    pub validator: V,
    pub clock: C,
    pub settings: ExecuteSettings,
    /// Per-tenant rollout modes; the default routes every tenant as active.
    pub modes: ModeRouting,
}

impl<S, A, V, C> Executor<S, A, V, C> {
    /// The same executor routing occurrences by their tenant's rollout mode.
    pub fn with_modes(self, modes: ModeRouting) -> Self {
        Self { modes, ..self }
    }

    /// The same executor sending through another sink (a wrapper, for example).
    pub fn with_sink<B>(self, sink: B) -> Executor<S, B, V, C> {
        Executor {
            store: self.store,
            sink,
            validator: self.validator,
            clock: self.clock,
            settings: self.settings,
            modes: self.modes,
        }
    }
}

/// Step 2's result: an occurrence to work on, or this message's outcome.
enum Opened {
    Ready(Box<ScheduleItem>),
    Done(Outcome),
}

/// Step 6's result.
enum Claim {
    Held,
    Lost(Outcome),
}

/// Steps 1 to 7's result for one message.
enum Prepared {
    /// Settled without the occurrence (malformed, or early and put back).
    Final(Outcome),
    /// Settled for the occurrence under the key, before any send.
    Decided(ScheduleKey, Outcome),
    /// Read, checked, routed and claimed: sent once due.
    Ready(Box<Ready>),
}

/// A claimed occurrence waiting for its due instant.
struct Ready {
    key: ScheduleKey,
    item: ScheduleItem,
    mode: TenantMode,
}

/// One trigger of a group being sent: its attempts that failed, its final result once
/// known, and the last retryable error while it is still to be sent.
#[derive(Default)]
struct Entry {
    failures: u32,
    result: Option<Result<TriggerMessage, ExecuteError>>,
    last: Option<ExecuteError>,
}

impl Entry {
    /// Takes the queue's answer to one attempt at `trigger`: sent, failed for good, or
    /// failed for a reason a retry may fix (kept, and the entry stays to be sent).
    fn answered(&mut self, trigger: TriggerMessage, result: Result<(), QueueError>) {
        let source = match result {
            Ok(()) => {
                self.result = Some(Ok(trigger));
                return;
            }
            Err(source) => source,
        };
        self.failures += 1;
        let e = ExecuteError::Send {
            execution_id: trigger.execution_id.to_string(),
            attempt: trigger.attempt,
            source,
        };
        warn!(execution_id = %trigger.execution_id, attempt = trigger.attempt, error = %chain(&e), retryable = e.is_retryable(), "trigger send failed");
        if e.is_retryable() {
            self.last = Some(e);
        } else {
            self.result = Some(Err(e));
        }
    }

    /// What the attempts came to for `item`'s trigger.
    fn into_delivery(self, item: &ScheduleItem) -> Delivery {
        let failures = self.failures;
        match (self.result, self.last) {
            (Some(Ok(trigger)), _) => Delivery::Sent { trigger, failures },
            (Some(Err(error)), _) | (None, Some(error)) => Delivery::NotSent { error, failures },
            // No attempt was made: the deadline came first.
            (None, None) => Delivery::NotSent {
                error: ExecuteError::Send {
                    execution_id: item.execution_id().to_string(),
                    attempt: item.retry_count + 1,
                    source: QueueError::Transient {
                        operation: "SendMessageBatch",
                        source: "not attempted before the invocation's deadline".into(),
                    },
                },
                failures,
            },
        }
    }
}

/// Some entries of a group are still to be sent: worth another attempt.
struct EntriesLeft;

impl crate::retry::Transient for EntriesLeft {
    fn is_transient(&self) -> bool {
        true
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Step 8's result: the trigger that went out and how many attempts failed before it, or
/// the last error and the number of failed attempts.
enum Delivery {
    Sent {
        trigger: TriggerMessage,
        failures: u32,
    },
    NotSent {
        error: ExecuteError,
        failures: u32,
    },
}

impl<S: ScheduleStore, A: ActionSink, V: DeviceValidator, C: Clock> Executor<S, A, V, C> {
    /// One message: [`Self::handle_batch`] of one.
    pub async fn handle(&self, msg: Incoming<'_>, metrics: &Metrics) -> Outcome {
        self.handle_batch(&[msg], metrics)
            .await
            .into_iter()
            .next()
            .unwrap_or_else(|| Outcome::Retry {
                reason: "the message was not handled".to_owned(),
            })
    }

    /// A batch of messages (an SQS event), grouped by the due instant each names: per
    /// group, every read, check and claim concurrently ahead of that instant, then one wait
    /// and one send of all its triggers together, then every outcome recorded
    /// concurrently. The groups run side by side, so a slow read delays only its own
    /// instant. Returns one outcome per message, in order.
    pub async fn handle_batch(&self, msgs: &[Incoming<'_>], metrics: &Metrics) -> Vec<Outcome> {
        // Unreadable messages form a group of their own, settled without any I/O.
        let mut groups: BTreeMap<Option<Timestamp>, Vec<usize>> = BTreeMap::new();
        for (i, m) in msgs.iter().enumerate() {
            let due = ExecutionMessage::parse(m.body)
                .ok()
                .map(|(message, _)| message.scheduled_time);
            groups.entry(due).or_default().push(i);
        }
        let done = join_all(
            groups
                .into_values()
                .map(|members| self.handle_group(members, msgs, metrics)),
        )
        .await;
        let mut outcomes: Vec<Option<Outcome>> = msgs.iter().map(|_| None).collect();
        for (i, outcome) in done.into_iter().flatten() {
            outcomes[i] = Some(outcome);
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Outcome::Retry {
                    reason: "the message was not handled".to_owned(),
                })
            })
            .collect()
    }

    /// The messages of a batch that name one due instant (`members`, positions in
    /// `msgs`): prepared together, sent together, settled.
    async fn handle_group(
        &self,
        members: Vec<usize>,
        msgs: &[Incoming<'_>],
        metrics: &Metrics,
    ) -> Vec<(usize, Outcome)> {
        let prepared = join_all(members.iter().map(|&i| {
            self.prepare(msgs[i], metrics)
                .instrument(info_span!("message", message_id = %msgs[i].message_id))
        }))
        .await;
        let mut outcomes = Vec::with_capacity(members.len());
        let mut decided = Vec::new();
        let mut ready = Vec::new();
        for (&i, p) in members.iter().zip(prepared) {
            match p {
                Prepared::Final(outcome) => outcomes.push((i, outcome)),
                Prepared::Decided(key, outcome) => decided.push((i, key, outcome)),
                Prepared::Ready(r) => ready.push((i, *r)),
            }
        }
        if !ready.is_empty() {
            decided.extend(self.send_group(ready, msgs, metrics).await);
        }
        let decided = self.after_copies(decided, msgs, metrics).await;
        let settled = join_all(decided.into_iter().map(|(i, key, outcome)| {
            let span = info_span!("message", message_id = %msgs[i].message_id);
            async move { (i, self.settle(&key, msgs[i], outcome, metrics).await) }.instrument(span)
        }))
        .await;
        outcomes.extend(settled);
        outcomes
    }

    /// Two copies of one occurrence in one group: the one that found the other's claim
    /// was `Busy` while the other was sending; now that the other recorded its outcome,
    /// a read tells whether this copy is a plain duplicate, so it is dropped now rather
    /// than redelivered after the visibility timeout only to find the same.
    async fn after_copies(
        &self,
        decided: Vec<(usize, ScheduleKey, Outcome)>,
        msgs: &[Incoming<'_>],
        metrics: &Metrics,
    ) -> Vec<(usize, ScheduleKey, Outcome)> {
        let mut copies: HashMap<&ScheduleKey, usize> = HashMap::new();
        for (_, key, _) in &decided {
            *copies.entry(key).or_default() += 1;
        }
        let shared: HashSet<ScheduleKey> = copies
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|(key, _)| key.clone())
            .collect();
        join_all(decided.into_iter().map(|(i, key, outcome)| {
            let recheck = outcome == Outcome::Busy && shared.contains(&key);
            async move {
                if !recheck {
                    return (i, key, outcome);
                }
                let outcome = match self.read(&key, msgs[i]).await {
                    Ok(Some(item)) if item.status.is_terminal() && item.status != Status::Failed => {
                        metrics.incr(Metric::Duplicate);
                        info!(message_id = msgs[i].message_id, execution_id = %item.execution_id(), status = %item.status, "copy of an occurrence settled in the same batch; dropped");
                        Outcome::Duplicate {
                            status: item.status,
                        }
                    }
                    _ => Outcome::Busy,
                };
                (i, key, outcome)
            }
        }))
        .await
    }

    /// Steps 1 to 7 for one message, all ahead of its due instant.
    async fn prepare(&self, msg: Incoming<'_>, metrics: &Metrics) -> Prepared {
        let (message, key) = match ExecutionMessage::parse(msg.body) {
            Ok(parsed) => parsed,
            Err(e) => {
                metrics.incr(Metric::MalformedMessage);
                warn!(message_id = msg.message_id, receive_count = msg.receive_count, error = %chain(&e), "malformed execution message; left to reach the DLQ");
                return Prepared::Final(Outcome::Malformed {
                    reason: e.to_string(),
                });
            }
        };
        let limit = self.settings.early_wait_limit;
        if let Some(delay) = put_back_for(message.scheduled_time, self.clock.now(), limit) {
            metrics.incr(Metric::Deferred);
            info!(message_id = msg.message_id, pk = %key.pk, sk = %key.sk, delay_s = delay.as_secs(), "early; goes back as a delayed copy");
            return Prepared::Final(Outcome::Deferred { delay });
        }
        match self.check(&key, msg, metrics).await {
            Ok((item, mode)) => Prepared::Ready(Box::new(Ready { key, item, mode })),
            Err(outcome) => Prepared::Decided(key, outcome),
        }
    }

    /// What the outcome of a delivery means for the message: on its last receive nothing
    /// is left silently QUEUED; otherwise a redelivery is counted and logged.
    async fn settle(
        &self,
        key: &ScheduleKey,
        msg: Incoming<'_>,
        outcome: Outcome,
        metrics: &Metrics,
    ) -> Outcome {
        if msg.receive_count >= self.settings.max_receive_count {
            return self.settle_last_receive(key, msg, outcome, metrics).await;
        }
        match &outcome {
            Outcome::Retry { reason } => {
                metrics.incr(Metric::Redelivered);
                info!(message_id = msg.message_id, pk = %key.pk, sk = %key.sk, reason = %reason, "left for redelivery");
            }
            Outcome::Busy => metrics.incr(Metric::Redelivered),
            Outcome::Unrecorded { reason } => {
                metrics.incr(Metric::Redelivered);
                warn!(message_id = msg.message_id, pk = %key.pk, sk = %key.sk, error = %reason, "trigger sent, outcome not recorded; left for redelivery");
            }
            _ => {}
        }
        outcome
    }

    /// Steps 2 to 7: the occurrence read, opened, checked, routed and claimed, or this
    /// message's outcome.
    async fn check(
        &self,
        key: &ScheduleKey,
        msg: Incoming<'_>,
        metrics: &Metrics,
    ) -> Result<(ScheduleItem, TenantMode), Outcome> {
        let item = match self.read(key, msg).await {
            Ok(Some(item)) => item,
            Ok(None) => {
                metrics.incr(Metric::OrphanMessage);
                warn!(message_id = msg.message_id, pk = %key.pk, sk = %key.sk, "no such occurrence; message dropped");
                return Err(Outcome::Orphan);
            }
            Err(e) => return Err(e.retry()),
        };
        let item = match self.open(key, item, msg, metrics).await {
            Ok(Opened::Ready(item)) => *item,
            Ok(Opened::Done(outcome)) => return Err(outcome),
            Err(e) => return Err(e.retry()),
        };
        if let Some(reason) = self.past_grace(&item) {
            let change = StatusChange::missed_in_queue(self.now(), reason);
            return Err(self.finish(key, &item, change, msg, metrics).await);
        }
        match self.revalidate(&item, metrics).await {
            Ok(Validation::Valid) => {}
            Ok(Validation::Invalid) => {
                let change =
                    StatusChange::skipped(self.now(), "device is not active in the registry");
                return Err(self.finish(key, &item, change, msg, metrics).await);
            }
            Err(e) => return Err(e.retry()),
        }
        self.time_left_to_send(item.scheduled_time, msg)
            .map_err(ExecuteError::retry)?;
        // A payload stored beside the occurrence is read once, ahead of the due moment.
        let item = match self.store.payload(&item).await {
            Ok(payload) => ScheduleItem { payload, ..item },
            Err(source) => {
                let key = key.to_string();
                return Err(ExecuteError::Read { key, source }.retry());
            }
        };
        let mode = self.route(&item).await.map_err(ExecuteError::retry)?;
        if mode == TenantMode::Off {
            metrics.incr(Metric::TenantOff);
            info!(execution_id = %item.execution_id(), tenant_id = %item.tenant_id, "tenant mode is off; nothing sent");
            let change = StatusChange::tenant_off(self.now());
            return Err(self.finish(key, &item, change, msg, metrics).await);
        }
        match self.claim(key, msg, metrics).await {
            Ok(Claim::Held) => Ok((item, mode)),
            Ok(Claim::Lost(outcome)) => Err(outcome),
            Err(e) => Err(e.retry()),
        }
    }

    /// Steps 8 and 9 for the claimed occurrences due at one instant: one wait, one send
    /// of them all, then each outcome recorded, concurrently.
    async fn send_group(
        &self,
        group: Vec<(usize, Ready)>,
        msgs: &[Incoming<'_>],
        metrics: &Metrics,
    ) -> Vec<(usize, ScheduleKey, Outcome)> {
        // Never early: the reads, checks and claims ran ahead of time; hold until the clock
        // reads the due instant (the latest of the group's, which are all one), then send
        // at once.
        if let Some(due) = group.iter().map(|(_, r)| r.item.scheduled_time).max() {
            self.wait_until(due).await;
        }
        let deliveries = self.deliver(&group, msgs, metrics).await;
        join_all(
            group
                .into_iter()
                .zip(deliveries)
                .map(|((i, ready), delivery)| {
                    let span = info_span!("message", message_id = %msgs[i].message_id);
                    async move {
                        let Ready { key, item, mode } = ready;
                        let outcome = self
                            .record(&key, &item, mode, delivery, msgs[i], metrics)
                            .await;
                        (i, key, outcome)
                    }
                    .instrument(span)
                }),
        )
        .await
    }

    /// Step 6: the tenant's rollout mode, read once for this occurrence.
    async fn route(&self, item: &ScheduleItem) -> Result<TenantMode, ExecuteError> {
        self.modes
            .mode(&item.tenant_id)
            .await
            .map_err(|source| ExecuteError::Mode {
                tenant: item.tenant_id.to_string(),
                source,
            })
    }

    /// Sends each trigger where its mode routes it: the active ones to the action trigger
    /// queue together, in one batch; the shadow ones to the shadow queue when one is
    /// configured (without one nothing is sent). One result per entry, in order.
    async fn send_routed(
        &self,
        pending: &[(usize, TriggerMessage, TenantMode)],
    ) -> Vec<Result<(), QueueError>> {
        let active: Vec<TriggerMessage> = pending
            .iter()
            .filter(|(_, _, mode)| *mode == TenantMode::Active)
            .map(|(_, trigger, _)| trigger.clone())
            .collect();
        let others = pending
            .iter()
            .filter(|(_, _, mode)| *mode != TenantMode::Active)
            .map(|(_, trigger, mode)| async move {
                match (mode, &self.modes.shadow) {
                    (TenantMode::Shadow, Some(shadow)) => shadow.record(trigger).await,
                    _ => Ok(()),
                }
            });
        let (active, others) = futures::join!(
            async {
                if active.is_empty() {
                    Vec::new()
                } else {
                    self.sink.send_batch(&active).await
                }
            },
            join_all(others)
        );
        let (mut active, mut others) = (active.into_iter(), others.into_iter());
        pending
            .iter()
            .map(|(_, _, mode)| {
                let next = if *mode == TenantMode::Active {
                    active.next()
                } else {
                    others.next()
                };
                next.unwrap_or_else(|| {
                    Err(QueueError::Invalid(
                        "the sink answered fewer entries than it was given".to_owned(),
                    ))
                })
            })
            .collect()
    }

    /// Step 2: what the occurrence's status says about this message, moving it to QUEUED
    /// when it is PENDING (the scheduler's write has not landed) or FAILED (a redrive).
    async fn open(
        &self,
        key: &ScheduleKey,
        mut item: ScheduleItem,
        msg: Incoming<'_>,
        metrics: &Metrics,
    ) -> Result<Opened, ExecuteError> {
        match item.status {
            Status::Queued => {}
            Status::Pending => {
                // Whoever wins, it is QUEUED (or moved on, which the claim finds out).
                self.change(key, StatusChange::queued(self.now()), msg)
                    .await?;
                item.status = Status::Queued;
            }
            Status::Failed => {
                // FAILED is written on a message's last receive only, so this is a message
                // moved back from the DLQ: run the step again, same execution id.
                if !self
                    .change(key, StatusChange::redriven(self.now()), msg)
                    .await?
                {
                    return Ok(Opened::Done(Outcome::Busy));
                }
                metrics.incr(Metric::Redriven);
                info!(message_id = msg.message_id, execution_id = %item.execution_id(), "FAILED occurrence redriven; running it again");
                item.status = Status::Queued;
            }
            st => {
                metrics.incr(Metric::Duplicate);
                info!(message_id = msg.message_id, execution_id = %item.execution_id(), status = %st, "duplicate delivery dropped");
                return Ok(Opened::Done(Outcome::Duplicate { status: st }));
            }
        }
        Ok(Opened::Ready(Box::new(item)))
    }

    /// Step 3: why the occurrence is past its misfire grace, if it is.
    fn past_grace(&self, item: &ScheduleItem) -> Option<String> {
        let grace = item
            .misfire_grace
            .unwrap_or(self.settings.default_misfire_grace);
        let late_s = self.now().epoch_seconds() - item.scheduled_time.epoch_seconds();
        (late_s > grace.as_secs() as i64).then(|| {
            format!(
                "executed {late_s}s after it was due, past its misfire grace of {}s",
                grace.as_secs()
            )
        })
    }

    /// Step 4: the device's status now; a registry outage falls back on the scan-time
    /// result when there is one, so it does not stop the fleet.
    async fn revalidate(
        &self,
        item: &ScheduleItem,
        metrics: &Metrics,
    ) -> Result<Validation, ExecuteError> {
        match self
            .validator
            .validate(&item.tenant_id, &item.device_id)
            .await
        {
            Ok(v) => Ok(v),
            Err(e) if item.validation_result == Some(Validation::Valid) => {
                metrics.incr(Metric::ValidationUnavailable);
                warn!(execution_id = %item.execution_id(), error = %chain(&e), "registry unavailable; going on with the scan-time validation");
                Ok(Validation::Valid)
            }
            Err(e) => Err(ExecuteError::Registry(e)),
        }
    }

    /// Step 5's guard: the wait until `due` and one send must end `deadline_margin` before
    /// the invocation's deadline.
    fn time_left_to_send(&self, due: Timestamp, msg: Incoming<'_>) -> Result<(), ExecuteError> {
        let Some(deadline) = msg.deadline else {
            return Ok(());
        };
        let starts = due.as_datetime().max(self.clock.now());
        let margin = self.settings.deadline_margin;
        if starts + chrono::Duration::from_std(margin).unwrap_or(chrono::Duration::MAX) <= deadline
        {
            return Ok(());
        }
        Err(ExecuteError::Deadline {
            deadline,
            due,
            margin_ms: margin.as_millis(),
            what: "wait until due and send",
        })
    }

    /// Step 7: a lease on the QUEUED occurrence for this delivery; when another writer got
    /// there first, what that means for this copy.
    async fn claim(
        &self,
        key: &ScheduleKey,
        msg: Incoming<'_>,
        metrics: &Metrics,
    ) -> Result<Claim, ExecuteError> {
        if self.lease(key, msg).await? {
            return Ok(Claim::Held);
        }
        // Another copy holds it, or it moved on since it was read.
        let outcome = match self.read(key, msg).await? {
            None => Outcome::Orphan,
            Some(i) if i.status == Status::Failed => {
                // Another writer (the sweep of old QUEUED items) gave up on it: send
                // nothing, and let this message join it in the DLQ.
                warn!(message_id = msg.message_id, execution_id = %i.execution_id(), "found FAILED before sending; nothing sent");
                Outcome::Failed {
                    reason: i
                        .last_error
                        .unwrap_or_else(|| "FAILED by another writer".to_owned()),
                }
            }
            Some(i) if i.status.is_terminal() => {
                metrics.incr(Metric::Duplicate);
                Outcome::Duplicate { status: i.status }
            }
            Some(_) => Outcome::Busy,
        };
        Ok(Claim::Lost(outcome))
    }

    /// Step 8: the triggers of a group, sent together (one `SendMessageBatch` per 10 on
    /// SQS) and attempted up to `send_retry.attempts` times within this receive: each
    /// retry resends only the entries that failed for a reason a retry may fix, with
    /// jitter seeded per batch and receive, and no wait past the deadline. One delivery
    /// per member, in order.
    async fn deliver(
        &self,
        group: &[(usize, Ready)],
        msgs: &[Incoming<'_>],
        metrics: &Metrics,
    ) -> Vec<Delivery> {
        let entries: Mutex<Vec<Entry>> =
            Mutex::new(group.iter().map(|_| Entry::default()).collect());
        let seed_key = group
            .first()
            .map(|(i, _)| format!("{}#{}", msgs[*i].message_id, msgs[*i].receive_count))
            .unwrap_or_default();
        let stop = group
            .iter()
            .filter_map(|(i, _)| self.stop_at(msgs[*i]))
            .min();
        let entries_ref = &entries;
        // The error only says that some entries are still to be sent; each entry's own
        // error is kept in its entry.
        let _ = retrying(
            self.settings.send_retry,
            &seed_key,
            &self.clock,
            stop,
            || self.send_attempt(group, entries_ref, metrics),
        )
        .await;
        let entries = entries.into_inner().unwrap_or_else(|p| p.into_inner());
        entries
            .into_iter()
            .zip(group)
            .map(|(entry, (_, ready))| entry.into_delivery(&ready.item))
            .collect()
    }

    /// One attempt at the entries of a group still to be sent, each trigger built anew
    /// (its `sent_at` and attempt number); records each entry's result.
    async fn send_attempt(
        &self,
        group: &[(usize, Ready)],
        entries: &Mutex<Vec<Entry>>,
        metrics: &Metrics,
    ) -> Result<(), EntriesLeft> {
        let now = self.clock.now();
        let pending: Vec<(usize, TriggerMessage, TenantMode)> = {
            let entries = lock(entries);
            group
                .iter()
                .zip(entries.iter())
                .enumerate()
                .filter(|(_, (_, e))| e.result.is_none())
                .map(|(pos, ((_, ready), e))| {
                    if e.failures > 0 {
                        metrics.incr(Metric::SendRetries);
                    }
                    let attempt = ready.item.retry_count + e.failures + 1;
                    let trigger = TriggerMessage::for_item(&ready.item, now, attempt);
                    (pos, trigger, ready.mode)
                })
                .collect()
        };
        let results = self.send_routed(&pending).await;
        let mut entries = lock(entries);
        for ((pos, trigger, _), result) in pending.into_iter().zip(results) {
            entries[pos].answered(trigger, result);
        }
        if entries.iter().all(|e| e.result.is_some()) {
            Ok(())
        } else {
            Err(EntriesLeft)
        }
    }

    /// Step 9: EXECUTED, or the failed attempts (FAILED on the last receive).
    async fn record(
        &self,
        key: &ScheduleKey,
        item: &ScheduleItem,
        mode: TenantMode,
        delivery: Delivery,
        msg: Incoming<'_>,
        metrics: &Metrics,
    ) -> Outcome {
        match delivery {
            Delivery::Sent { trigger, failures } => {
                self.record_sent(key, item, mode, trigger, failures, msg, metrics)
                    .await
            }
            Delivery::NotSent { error, failures } => {
                self.record_not_sent(key, item, error, failures, msg, metrics)
                    .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_sent(
        &self,
        key: &ScheduleKey,
        item: &ScheduleItem,
        mode: TenantMode,
        trigger: TriggerMessage,
        failures: u32,
        msg: Incoming<'_>,
        metrics: &Metrics,
    ) -> Outcome {
        let sent_at = chrono::DateTime::parse_from_rfc3339(&trigger.sent_at)
            .map(|t| t.to_utc())
            .unwrap_or_else(|_| self.clock.now());
        let lateness_ms = (sent_at - item.scheduled_time.as_datetime())
            .num_milliseconds()
            .max(0) as u64;
        let mut change = StatusChange::executed(Timestamp::from_datetime(sent_at))
            .with_lateness_ms(lateness_ms)
            .with_retries(failures)
            .with_mode(mode);
        if mode == TenantMode::Shadow {
            metrics.incr(Metric::ShadowRecorded);
            info!(execution_id = %trigger.execution_id, tenant_id = %item.tenant_id, device_workflow_step_id = %item.device_workflow_step_id,
                  device_id = %item.device_id, scheduled_time = %item.scheduled_time, lateness_ms, "shadow: trigger recorded, not sent");
            change = change.with_shadow_trigger(trigger.body());
        } else {
            info!(execution_id = %trigger.execution_id, tenant_id = %item.tenant_id, device_workflow_step_id = %item.device_workflow_step_id,
                  device_id = %item.device_id, scheduled_time = %item.scheduled_time, lateness_ms, attempt = trigger.attempt, "trigger sent");
        }
        // On the last receive nothing but the sweep comes after this write, and the sweep
        // could only fail an occurrence that did fire: give it a second round of attempts.
        let rounds = if self.is_last(msg) { 2 } else { 1 };
        let mut written = Ok(false);
        for _ in 0..rounds {
            written = self.change(key, change.clone(), msg).await;
            if written.is_ok() {
                break;
            }
        }
        match written {
            Ok(recorded) => {
                // Counted with the write that records it, so the metric equals the table's
                // EXECUTED count (a resend after a lost write is not counted twice).
                if recorded {
                    metrics.incr(Metric::Executed);
                    metrics.sample(Metric::LatenessMs, lateness_ms as f64);
                } else {
                    // Moved on while the trigger was in flight, by a writer that ignored
                    // this delivery's lease: the table now disagrees with what was sent.
                    error!(execution_id = %trigger.execution_id, pk = %key.pk, sk = %key.sk, "trigger sent, but the occurrence was no longer QUEUED under this delivery's lease");
                }
                Outcome::Executed {
                    execution_id: trigger.execution_id.to_string(),
                    lateness_ms,
                    attempts: failures + 1,
                }
            }
            // Sent but not recorded: a redelivery may send again, with the same
            // execution_id, which the consumer drops.
            Err(e) => Outcome::Unrecorded {
                reason: format!("trigger sent but EXECUTED not recorded: {}", chain(&e)),
            },
        }
    }

    async fn record_not_sent(
        &self,
        key: &ScheduleKey,
        item: &ScheduleItem,
        error: ExecuteError,
        failures: u32,
        msg: Incoming<'_>,
        metrics: &Metrics,
    ) -> Outcome {
        let reason = chain(&error);
        let last = self.is_last(msg);
        let change = if last {
            StatusChange::failed(self.now(), reason.clone()).with_retries(failures)
        } else {
            StatusChange::attempts_failed(Status::Queued, self.now(), failures, reason.clone())
        };
        let recorded = match self.change(key, change, msg).await {
            Ok(recorded) => recorded,
            Err(write) => {
                return Outcome::Retry {
                    reason: format!("{reason}; and recording it failed: {}", chain(&write)),
                };
            }
        };
        if last {
            // Counted only when this write made it FAILED (another writer may have settled
            // it first), so the metric equals the table's count.
            if recorded {
                metrics.incr(Metric::Failed);
            }
            warn!(execution_id = %item.execution_id(), receive_count = msg.receive_count, error = %reason, "occurrence FAILED; its message goes to the DLQ");
            Outcome::Failed { reason }
        } else {
            Outcome::Retry { reason }
        }
    }

    /// Records a final outcome decided before any send (MISSED, SKIPPED), under a claim.
    async fn finish(
        &self,
        key: &ScheduleKey,
        item: &ScheduleItem,
        change: StatusChange,
        msg: Incoming<'_>,
        metrics: &Metrics,
    ) -> Outcome {
        // Claimed like a send: a concurrent copy that holds the lease may be sending right
        // now, and must not find its occurrence SKIPPED or MISSED under it.
        match self.claim(key, msg, metrics).await {
            Ok(Claim::Held) => {}
            Ok(Claim::Lost(outcome)) => return outcome,
            Err(e) => return e.retry(),
        }
        let to = change.to;
        let reason = change.error.clone().unwrap_or_default();
        match self.change(key, change, msg).await {
            Ok(true) => {
                metrics.incr(match to {
                    Status::Skipped => Metric::Skipped,
                    _ => Metric::Missed,
                });
                warn!(execution_id = %item.execution_id(), tenant_id = %item.tenant_id, device_id = %item.device_id,
                      scheduled_time = %item.scheduled_time, status = %to, reason = %reason, "occurrence not executed");
                if to == Status::Skipped {
                    Outcome::Skipped
                } else {
                    Outcome::Missed
                }
            }
            // Another writer moved it first; the next delivery finds out what to do.
            Ok(false) => Outcome::Busy,
            Err(e) => e.retry(),
        }
    }

    /// On the last receive, SQS moves an unacknowledged message to the DLQ next: make sure
    /// the occurrence does not stay QUEUED behind it.
    async fn settle_last_receive(
        &self,
        key: &ScheduleKey,
        msg: Incoming<'_>,
        outcome: Outcome,
        metrics: &Metrics,
    ) -> Outcome {
        match outcome {
            Outcome::Retry { reason } => self.fail_on_last_receive(key, reason, msg, metrics).await,
            Outcome::Busy => self.left_to_holder(key, msg, metrics),
            Outcome::Unrecorded { reason } => {
                // The trigger went out: never FAILED. The message goes to the DLQ; the
                // sweep of old QUEUED items re-dispatches it under the same execution id.
                error!(message_id = msg.message_id, pk = %key.pk, sk = %key.sk, error = %reason, "trigger sent on the last receive and EXECUTED could not be recorded");
                Outcome::Unrecorded { reason }
            }
            other => other,
        }
    }

    /// QUEUED → FAILED under a claim, so a delivery that is sending right now keeps the
    /// occurrence. The claim and the write need no read first, so an unreadable table does
    /// not leave the occurrence QUEUED; a read only explains a lost claim.
    async fn fail_on_last_receive(
        &self,
        key: &ScheduleKey,
        reason: String,
        msg: Incoming<'_>,
        metrics: &Metrics,
    ) -> Outcome {
        let failed = StatusChange::failed(self.now(), reason.clone());
        let written = match self.lease(key, msg).await {
            Ok(true) => self.change(key, failed, msg).await,
            Ok(false) => match self.read(key, msg).await {
                Ok(None) => return Outcome::Orphan,
                Ok(Some(i)) if i.status == Status::Pending => {
                    // Never marked QUEUED: mark it, claim it, fail it, each conditional.
                    match self
                        .change(key, StatusChange::queued(self.now()), msg)
                        .await
                    {
                        Ok(_) => match self.lease(key, msg).await {
                            Ok(true) => self.change(key, failed, msg).await,
                            Ok(false) => return self.left_to_holder(key, msg, metrics),
                            Err(e) => Err(e),
                        },
                        Err(e) => Err(e),
                    }
                }
                Ok(Some(i)) if i.status == Status::Queued => {
                    return self.left_to_holder(key, msg, metrics);
                }
                Ok(Some(i)) if i.status == Status::Failed => Ok(false),
                Ok(Some(i)) => {
                    metrics.incr(Metric::Duplicate);
                    return Outcome::Duplicate { status: i.status };
                }
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match written {
            Ok(true) => {
                metrics.incr(Metric::Failed);
                warn!(pk = %key.pk, sk = %key.sk, error = %reason, "occurrence FAILED on its last delivery; its message goes to the DLQ");
                Outcome::Failed { reason }
            }
            Ok(false) => Outcome::Failed { reason },
            Err(e) => {
                error!(pk = %key.pk, sk = %key.sk, error = %chain(&e), cause = %reason, "could not record FAILED on the last delivery; the scheduler's sweep of old QUEUED items settles it");
                Outcome::Failed {
                    reason: format!("{reason}; and recording FAILED failed: {}", chain(&e)),
                }
            }
        }
    }

    /// Another delivery holds the occurrence on this message's last receive: it records
    /// the outcome; failing it here could fail a step that is being sent right now.
    fn left_to_holder(&self, key: &ScheduleKey, msg: Incoming<'_>, metrics: &Metrics) -> Outcome {
        metrics.incr(Metric::Redelivered);
        info!(message_id = msg.message_id, pk = %key.pk, sk = %key.sk, "last receive found another delivery's lease; the outcome is left to it");
        Outcome::Busy
    }

    /// Takes (or renews) this delivery's lease on the QUEUED occurrence; `Ok(false)`: not
    /// QUEUED, or another delivery holds it.
    async fn lease(&self, key: &ScheduleKey, msg: Incoming<'_>) -> Result<bool, ExecuteError> {
        let now = self.now();
        let until = now.plus(self.settings.lease);
        retrying(
            self.settings.status_retry,
            &key.sk,
            &self.clock,
            self.stop_at(msg),
            || {
                self.store
                    .try_lease(key, Status::Queued, msg.delivery_id, until, now)
            },
        )
        .await
        .map_err(|source| ExecuteError::Lease {
            key: key.to_string(),
            source,
        })
    }

    /// A strongly consistent read, retried while the store is throttled: one slow moment
    /// must not cost a delivery.
    async fn read(
        &self,
        key: &ScheduleKey,
        msg: Incoming<'_>,
    ) -> Result<Option<ScheduleItem>, ExecuteError> {
        retrying(
            self.settings.status_retry,
            &key.sk,
            &self.clock,
            self.stop_at(msg),
            || self.store.get(key),
        )
        .await
        .map_err(|source| ExecuteError::Read {
            key: key.to_string(),
            source,
        })
    }

    /// A conditional status write, retried while the store is throttled. `Ok(false)`:
    /// the item was not in `change.from` (another writer won).
    async fn change(
        &self,
        key: &ScheduleKey,
        change: StatusChange,
        msg: Incoming<'_>,
    ) -> Result<bool, ExecuteError> {
        retrying(
            self.settings.status_retry,
            &key.sk,
            &self.clock,
            self.stop_at(msg),
            || self.store.change_status(key, &change),
        )
        .await
        .map_err(|source| ExecuteError::Write {
            key: key.to_string(),
            from: change.from,
            to: change.to,
            source,
        })
    }

    fn is_last(&self, msg: Incoming<'_>) -> bool {
        msg.receive_count >= self.settings.max_receive_count
    }

    /// When retries must stop: the deadline less the margin kept free.
    fn stop_at(&self, msg: Incoming<'_>) -> Option<DateTime<Utc>> {
        msg.deadline.map(|d| {
            d - chrono::Duration::from_std(self.settings.deadline_margin)
                .unwrap_or(chrono::Duration::zero())
        })
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(self.clock.now())
    }

    /// Returns once the clock reads `due` or later (to the nanosecond).
    async fn wait_until(&self, due: Timestamp) {
        loop {
            let left = due.as_datetime() - self.clock.now();
            match left.to_std() {
                Ok(wait) if !wait.is_zero() => self.clock.sleep(wait).await,
                _ => return,
            }
        }
    }
}

/// Step 1: how long to put an early message back for, or `None` when it may go on.
/// Rounded down to whole seconds (SQS delays are whole seconds), so the copy arrives
/// within a second before the due time and is held for that last moment; at least 1 s,
/// so a copy is never re-sent at once; at most the SQS maximum of 900 s.
fn put_back_for(
    due: Timestamp,
    now: DateTime<Utc>,
    early_wait_limit: Duration,
) -> Option<Duration> {
    let until_due = (due.as_datetime() - now).to_std().ok()?;
    if until_due <= early_wait_limit {
        return None;
    }
    let max = Duration::from_secs(u64::from(crate::limits::SQS_MAX_DELAY_SECONDS));
    Some(Duration::from_secs(until_due.as_secs().max(1)).min(max))
}

impl crate::retry::Transient for ExecuteError {
    fn is_transient(&self) -> bool {
        self.is_retryable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_early_message_is_put_back_for_whole_seconds_at_most_900() {
        let now: DateTime<Utc> = "2026-11-26T10:00:00.500Z".parse().unwrap();
        let limit = ExecuteSettings::default().early_wait_limit;
        for (at, expected) in [
            ("2026-11-26T09:00:00Z", None),
            ("2026-11-26T10:00:00Z", None),
            ("2026-11-26T10:00:02Z", None),
            // Released up to 2 s early (the scheduler's lead plus rounding): held, not put back.
            ("2026-11-26T10:00:03Z", None),
            ("2026-11-26T10:00:04Z", Some(3)),
            ("2026-11-26T10:10:00Z", Some(599)),
            ("2026-11-26T11:00:00Z", Some(900)),
        ] {
            let due = Timestamp::parse(at).unwrap();
            assert_eq!(
                put_back_for(due, now, limit),
                expected.map(Duration::from_secs),
                "due {at}"
            );
        }
        let zero_limit = put_back_for(
            Timestamp::parse("2026-11-26T10:00:01Z").unwrap(),
            now,
            Duration::ZERO,
        );
        assert_eq!(zero_limit, Some(Duration::from_secs(1)), "never 0 s");
    }
}
