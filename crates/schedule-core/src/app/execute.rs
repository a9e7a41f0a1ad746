//! Executing one message of the execution queue: read the occurrence, drop duplicates,
//! re-validate the device, push the trigger message to the action trigger queue (with
//! retries), and record the outcome. Each message is handled on its own; the Lambda edge
//! turns the outcomes into a partial batch response.

use std::time::Duration;

use backon::Retryable;
use serde::Serialize;
use tracing::{info, warn};

use super::ExecutionMessage;
use crate::error::QueueError;
use crate::metrics::{Metric, Metrics};
use crate::model::{
    ScheduleItem, ScheduleKey, Status, StatusChange, Timestamp, TriggerMessage, Validation,
};
use crate::ports::{ActionSink, Clock, DeviceValidator, ScheduleStore};
use crate::retry::RetryPolicy;

#[derive(Debug, Clone)]
pub struct ExecuteSettings {
    /// The execution queue's `maxReceiveCount`: on that receive a failure is final.
    pub max_receive_count: u32,
    /// Attempts to push one trigger within one receive (3), with jittered backoff.
    pub send_retry: RetryPolicy,
    /// Retries of the status write after a send.
    pub status_retry: RetryPolicy,
    /// How long one copy of a message owns the occurrence.
    pub lease: Duration,
    /// A message that arrives at most this early is held until the step is due; an
    /// earlier one goes back to the queue.
    pub early_wait_limit: Duration,
    pub default_misfire_grace: Duration,
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
            early_wait_limit: Duration::from_secs(2),
            default_misfire_grace: Duration::from_secs(3600),
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
    /// Marked FAILED; the message stays unacknowledged so SQS moves it to the DLQ.
    Failed {
        reason: String,
    },
    /// The body cannot be read; unacknowledged, so it reaches the DLQ.
    Malformed {
        reason: String,
    },
}

impl Outcome {
    /// Delete the message (`true`), or report it as a batch item failure.
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

#[derive(Debug)]
pub struct Executor<S, A, V, C> {
    pub store: S,
    pub sink: A,
    pub validator: V,
    pub clock: C,
    pub settings: ExecuteSettings,
}

impl<S, A, V, C> Executor<S, A, V, C> {
    /// The same executor sending through another sink (a wrapper, for example).
    pub fn with_sink<B>(self, sink: B) -> Executor<S, B, V, C> {
        Executor {
            store: self.store,
            sink,
            validator: self.validator,
            clock: self.clock,
            settings: self.settings,
        }
    }
}

fn seed_of(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl<S: ScheduleStore, A: ActionSink, V: DeviceValidator, C: Clock> Executor<S, A, V, C> {
    pub async fn handle(&self, msg: Incoming<'_>, metrics: &Metrics) -> Outcome {
        let key = match ExecutionMessage::parse(msg.body) {
            Ok((_, key)) => key,
            Err(e) => {
                metrics.incr(Metric::MalformedMessage);
                warn!(message_id = msg.message_id, receive_count = msg.receive_count, error = %e, "malformed execution message; left to reach the DLQ");
                return Outcome::Malformed {
                    reason: e.to_string(),
                };
            }
        };
        let outcome = self.execute(&key, msg, metrics).await;
        match outcome {
            Outcome::Retry { reason } if msg.receive_count >= self.settings.max_receive_count => {
                // This was the last delivery: SQS moves the message to the DLQ next, so the
                // occurrence must say FAILED too, never stay QUEUED.
                self.fail_on_last_receive(&key, reason, metrics).await
            }
            Outcome::Retry { ref reason } => {
                metrics.incr(Metric::Redelivered);
                info!(message_id = msg.message_id, pk = %key.pk, sk = %key.sk, reason = %reason, "left for redelivery");
                outcome
            }
            Outcome::Busy => {
                metrics.incr(Metric::Redelivered);
                outcome
            }
            Outcome::Unrecorded { ref reason } => {
                metrics.incr(Metric::Redelivered);
                warn!(message_id = msg.message_id, pk = %key.pk, sk = %key.sk, error = %reason, "trigger sent, outcome not recorded; left for redelivery");
                outcome
            }
            other => other,
        }
    }

    async fn fail_on_last_receive(
        &self,
        key: &ScheduleKey,
        reason: String,
        metrics: &Metrics,
    ) -> Outcome {
        let now = self.now();
        let status = match self.read(key).await {
            Ok(Some(item)) => item.status,
            Ok(None) => return Outcome::Orphan,
            Err(e) => {
                return Outcome::Failed {
                    reason: format!(
                        "{reason}; and reading it failed: {}",
                        crate::error::chain(&e)
                    ),
                };
            }
        };
        if status == Status::Pending
            && let Ok(c) = StatusChange::transition(Status::Pending, Status::Queued, now)
        {
            let _ = self.change(key, c).await;
        }
        if let Ok(c) = StatusChange::transition(Status::Queued, Status::Failed, now) {
            match self.change(key, c.with_error(reason.clone())).await {
                Ok(true) => {
                    metrics.incr(Metric::Failed);
                    warn!(pk = %key.pk, sk = %key.sk, error = %reason, "occurrence FAILED on its last delivery; its message goes to the DLQ");
                }
                Ok(false) => {}
                Err(e) => {
                    warn!(pk = %key.pk, sk = %key.sk, error = %e, "could not record FAILED; the scheduler reports it as stuck")
                }
            }
        }
        Outcome::Failed { reason }
    }

    /// A read, retried while the store is throttled: one slow moment must not cost a
    /// delivery (after the last one, the occurrence is FAILED).
    async fn read(
        &self,
        key: &ScheduleKey,
    ) -> Result<Option<ScheduleItem>, crate::error::StoreError> {
        let read = || self.store.get(key);
        read.retry(self.settings.status_retry)
            .when(|e| e.is_retryable())
            .await
    }

    async fn change(&self, key: &ScheduleKey, change: StatusChange) -> Result<bool, String> {
        let write = || self.store.change_status(key, &change);
        write
            .retry(self.settings.status_retry)
            .when(|e| e.is_retryable())
            .await
            .map_err(|e| crate::error::chain(&e))
    }

    fn now(&self) -> Timestamp {
        Timestamp::from_datetime(self.clock.now())
    }

    async fn execute(&self, key: &ScheduleKey, msg: Incoming<'_>, metrics: &Metrics) -> Outcome {
        let mut item = match self.read(key).await {
            Ok(Some(item)) => item,
            Ok(None) => {
                metrics.incr(Metric::OrphanMessage);
                warn!(message_id = msg.message_id, pk = %key.pk, sk = %key.sk, "no such occurrence; message dropped");
                return Outcome::Orphan;
            }
            Err(e) => {
                return Outcome::Retry {
                    reason: crate::error::chain(&e),
                };
            }
        };
        match item.status {
            Status::Failed => {
                // Its message belongs in the DLQ with it: keep failing it until SQS moves it.
                return Outcome::Failed {
                    reason: item
                        .last_error
                        .clone()
                        .unwrap_or_else(|| "already FAILED".to_owned()),
                };
            }
            st if st.is_terminal() => {
                metrics.incr(Metric::Duplicate);
                info!(message_id = msg.message_id, execution_id = %item.execution_id(), status = %st, "duplicate delivery dropped");
                return Outcome::Duplicate { status: st };
            }
            Status::Pending => {
                // The scheduler sent the message but its QUEUED write has not landed (or
                // was lost): move the occurrence on here; whoever wins, it is QUEUED.
                let to_queued =
                    StatusChange::transition(Status::Pending, Status::Queued, self.now());
                if let Ok(c) = to_queued
                    && let Err(e) = self.change(key, c).await
                {
                    return Outcome::Retry { reason: e };
                }
                item.status = Status::Queued;
            }
            _ => {}
        }

        // A message far too early goes back (SQS delays make this rare).
        let until_due = (item.scheduled_time.as_datetime() - self.clock.now()).num_milliseconds();
        if until_due > self.settings.early_wait_limit.as_millis() as i64 {
            return Outcome::Retry {
                reason: format!("arrived {until_due}ms before it is due"),
            };
        }

        let now = self.now();
        let lease = || {
            self.store.try_lease(
                key,
                Status::Queued,
                msg.delivery_id,
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
            Ok(false) => {
                // Another copy holds it, or it moved on since we read it.
                return match self.read(key).await {
                    Ok(Some(i)) if i.status.is_terminal() && i.status != Status::Failed => {
                        metrics.incr(Metric::Duplicate);
                        Outcome::Duplicate { status: i.status }
                    }
                    _ => Outcome::Busy,
                };
            }
            Err(e) => {
                return Outcome::Retry {
                    reason: crate::error::chain(&e),
                };
            }
        }

        let grace = item
            .misfire_grace
            .unwrap_or(self.settings.default_misfire_grace);
        let late_s = now.epoch_seconds() - item.scheduled_time.epoch_seconds();
        if late_s > grace.as_secs() as i64 {
            let reason = format!(
                "executed {late_s}s after it was due, past its misfire grace of {}s",
                grace.as_secs()
            );
            return self
                .finish(
                    key,
                    &item,
                    Status::Missed,
                    Some(reason),
                    None,
                    metrics,
                    Outcome::Missed,
                )
                .await;
        }

        match self
            .validator
            .validate(&item.tenant_id, &item.device_id)
            .await
        {
            Ok(Validation::Valid) => {}
            Ok(Validation::Invalid) => {
                let reason = "device is not active in the registry".to_owned();
                return self
                    .finish(
                        key,
                        &item,
                        Status::Skipped,
                        Some(reason),
                        Some(Validation::Invalid),
                        metrics,
                        Outcome::Skipped,
                    )
                    .await;
            }
            Err(e) if item.validation_result == Some(Validation::Valid) => {
                // Validated at scan time; a registry outage must not stop the fleet.
                metrics.incr(Metric::ValidationUnavailable);
                warn!(execution_id = %item.execution_id(), error = %e, "registry unavailable; going on with the scan-time validation");
            }
            Err(e) => {
                return Outcome::Retry {
                    reason: crate::error::chain(&e),
                };
            }
        }

        // Never early: the reads and writes above ran ahead of time; hold the last moment
        // before the step is due, then send at once.
        self.wait_until(item.scheduled_time).await;
        self.send(key, &item, msg, metrics).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn finish(
        &self,
        key: &ScheduleKey,
        item: &ScheduleItem,
        to: Status,
        reason: Option<String>,
        validation: Option<Validation>,
        metrics: &Metrics,
        outcome: Outcome,
    ) -> Outcome {
        let Ok(mut change) = StatusChange::transition(item.status, to, self.now()) else {
            return Outcome::Retry {
                reason: format!("{} cannot become {to}", item.status),
            };
        };
        if let Some(r) = &reason {
            change = change.with_error(r.clone());
        }
        if let Some(v) = validation {
            change = change.with_validation(v);
        }
        match self.change(key, change).await {
            Ok(_) => {
                metrics.incr(match to {
                    Status::Skipped => Metric::Skipped,
                    Status::Missed => Metric::Missed,
                    _ => Metric::Failed,
                });
                warn!(execution_id = %item.execution_id(), tenant_id = %item.tenant_id, device_id = %item.device_id,
                      scheduled_time = %item.scheduled_time, status = %to, reason = reason.as_deref().unwrap_or(""), "occurrence not executed");
                outcome
            }
            Err(e) => Outcome::Retry { reason: e },
        }
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

    async fn send(
        &self,
        key: &ScheduleKey,
        item: &ScheduleItem,
        msg: Incoming<'_>,
        metrics: &Metrics,
    ) -> Outcome {
        let mut waits = self
            .settings
            .send_retry
            .seeded(seed_of(msg.message_id) ^ u64::from(msg.receive_count))
            .delays();
        let mut failures = 0u32;
        let result: Result<TriggerMessage, QueueError> = loop {
            let trigger =
                TriggerMessage::for_item(item, self.clock.now(), item.retry_count + failures + 1);
            match self.sink.send(&trigger).await {
                Ok(()) => break Ok(trigger),
                Err(e) => {
                    failures += 1;
                    warn!(execution_id = %item.execution_id(), attempt = trigger.attempt, error = %crate::error::chain(&e), retryable = e.is_retryable(), "trigger send failed");
                    if !e.is_retryable() {
                        break Err(e);
                    }
                    match waits.next() {
                        Some(wait) => {
                            metrics.incr(Metric::SendRetries);
                            self.clock.sleep(wait).await;
                        }
                        None => break Err(e),
                    }
                }
            }
        };
        match result {
            Ok(trigger) => {
                let sent_at = chrono::DateTime::parse_from_rfc3339(&trigger.sent_at)
                    .map(|t| t.to_utc())
                    .unwrap_or_else(|_| self.clock.now());
                let lateness_ms = (sent_at - item.scheduled_time.as_datetime())
                    .num_milliseconds()
                    .max(0) as u64;
                let Ok(mut change) = StatusChange::transition(
                    Status::Queued,
                    Status::Executed,
                    Timestamp::from_datetime(sent_at),
                ) else {
                    return Outcome::Retry {
                        reason: "QUEUED cannot become EXECUTED".to_owned(),
                    };
                };
                change = change.with_lateness_ms(lateness_ms).with_retries(failures);
                metrics.incr(Metric::Executed);
                metrics.sample(Metric::LatenessMs, lateness_ms as f64);
                info!(execution_id = %trigger.execution_id, tenant_id = %item.tenant_id, device_workflow_step_id = %item.device_workflow_step_id,
                      device_id = %item.device_id, scheduled_time = %item.scheduled_time, lateness_ms, attempt = trigger.attempt, "trigger sent");
                match self.change(key, change).await {
                    Ok(_) => Outcome::Executed {
                        execution_id: trigger.execution_id.to_string(),
                        lateness_ms,
                        attempts: failures + 1,
                    },
                    // Sent but not recorded: a redelivery may send again, with the same
                    // execution_id, which the consumer drops.
                    Err(e) => Outcome::Unrecorded {
                        reason: format!("trigger sent but EXECUTED not recorded: {e}"),
                    },
                }
            }
            Err(e) => {
                let reason = crate::error::chain(&e);
                let last =
                    !e.is_retryable() || msg.receive_count >= self.settings.max_receive_count;
                let change = if last {
                    StatusChange::transition(Status::Queued, Status::Failed, self.now())
                        .map(|c| c.with_error(reason.clone()).with_retries(failures))
                } else {
                    Ok(StatusChange::attempts_failed(
                        Status::Queued,
                        self.now(),
                        failures,
                        reason.clone(),
                    ))
                };
                let Ok(change) = change else {
                    return Outcome::Retry { reason };
                };
                if let Err(write) = self.change(key, change).await {
                    return Outcome::Retry {
                        reason: format!("{reason}; and recording it failed: {write}"),
                    };
                }
                if last {
                    metrics.incr(Metric::Failed);
                    warn!(execution_id = %item.execution_id(), receive_count = msg.receive_count, error = %reason, "occurrence FAILED; its message goes to the DLQ");
                    Outcome::Failed { reason }
                } else {
                    Outcome::Retry { reason }
                }
            }
        }
    }
}
