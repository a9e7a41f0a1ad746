//! One occurrence in the schedule table, and the status changes that may be applied to it.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::definition::Definition;
use super::ids::{DeviceId, StepId, TenantId, WorkflowId};
use super::keys::{ScheduleKey, StatusShard, shard_of};
use super::mode::TenantMode;
use super::status::Status;
use super::time::Timestamp;

/// The id a consumer uses to drop a duplicate trigger: the same for every send of one
/// occurrence (a UUID v5 of its key), and a valid SQS FIFO deduplication id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ExecutionId(String);

impl ExecutionId {
    /// Namespace of execution ids (a fixed random UUID; changing it changes every id).
    const NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6b1f_5a2e_93d4_4c0b_8f7e_2a61_d0c3_9e55);

    pub fn of(key: &ScheduleKey) -> Self {
        let name = format!("{}\n{}", key.pk, key.sk);
        Self(uuid::Uuid::new_v5(&Self::NAMESPACE, name.as_bytes()).to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ExecutionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Outcome of validating the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Validation {
    Valid,
    Invalid,
}

impl Validation {
    pub fn as_str(self) -> &'static str {
        match self {
            Validation::Valid => "VALID",
            Validation::Invalid => "INVALID",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "VALID" => Some(Validation::Valid),
            "INVALID" => Some(Validation::Invalid),
            _ => None,
        }
    }
}

/// The action payload of an occurrence, as its definition carries it.
pub type Payload = Map<String, Value>;

/// One occurrence of a definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleItem {
    pub key: ScheduleKey,
    pub tenant_id: TenantId,
    pub device_workflow_step_id: StepId,
    pub device_id: DeviceId,
    pub workflow_id: WorkflowId,
    pub scheduled_time: Timestamp,
    pub status: Status,
    pub validation_result: Option<Validation>,
    pub retry_count: u32,
    /// Epoch seconds after which DynamoDB deletes the item.
    pub ttl: i64,
    pub definition_version: u64,
    /// The payload when it is carried on the item; empty when it is stored apart
    /// (`payload_ref`): read it with [`crate::ports::ScheduleStore::payload`].
    pub payload: Payload,
    /// The sort key of the payload item, in the same partition, that holds this
    /// occurrence's payload; `None`: the payload is carried on the item.
    pub payload_ref: Option<String>,
    pub created_at: Timestamp,
    pub queued_at: Option<Timestamp>,
    pub executed_at: Option<Timestamp>,
    pub last_error: Option<String>,
    /// Present only while the status is indexed ([`Status::is_indexed`]).
    pub status_shard: Option<StatusShard>,
    /// How late the occurrence may still fire (from the definition); `None`: the
    /// deployment's default.
    pub misfire_grace: Option<Duration>,
    /// Milliseconds from `scheduled_time` to the send that executed it.
    pub lateness_ms: Option<u64>,
    /// Who is working on the occurrence right now, and until when: a short lease that
    /// keeps two copies of one message (or two overlapping runs) from both sending.
    pub lease_owner: Option<String>,
    pub lease_until: Option<Timestamp>,
    /// The definition version whose change cancelled this occurrence (CANCELLED only).
    pub cancelled_by_version: Option<u64>,
    /// Times the scheduler's sweep found it QUEUED past every receive of its message and
    /// sent it again (bounded; past the bound it is FAILED).
    pub sweeps: u32,
    /// The tenant's rollout mode when the occurrence executed (EXECUTED only).
    pub mode: Option<TenantMode>,
    /// In shadow mode, the trigger body the occurrence would have sent (JSON).
    pub shadow_trigger: Option<String>,
}

impl ScheduleItem {
    /// A new PENDING occurrence of `def` at `at`, kept for `retention` after it is due.
    pub fn pending(
        def: &Definition,
        at: Timestamp,
        now: Timestamp,
        retention: Duration,
        shards: u16,
    ) -> Self {
        let key = ScheduleKey::new(&def.tenant_id, at, &def.device_workflow_step_id);
        let status_shard = Some(StatusShard::new(Status::Pending, shard_of(&key, shards)));
        Self {
            key,
            tenant_id: def.tenant_id.clone(),
            device_workflow_step_id: def.device_workflow_step_id.clone(),
            device_id: def.device_id.clone(),
            workflow_id: def.workflow_id.clone(),
            scheduled_time: at,
            status: Status::Pending,
            validation_result: None,
            retry_count: 0,
            ttl: at.plus(retention).epoch_seconds(),
            definition_version: def.version,
            payload: def.payload.clone(),
            payload_ref: None,
            created_at: now,
            queued_at: None,
            executed_at: None,
            last_error: None,
            status_shard,
            misfire_grace: def.schedule.misfire_grace,
            lateness_ms: None,
            lease_owner: None,
            lease_until: None,
            cancelled_by_version: None,
            sweeps: 0,
            mode: None,
            shadow_trigger: None,
        }
    }

    /// The item with its device's scan-time validation recorded (`None`: the registry
    /// could not say). The status stays PENDING either way: whether a step on an inactive
    /// device is SKIPPED is decided at its due time, when the executor asks again — a
    /// device activated in between must not lose its day.
    pub fn with_device_validation(mut self, validation: Option<Validation>) -> Self {
        self.validation_result = validation;
        self
    }

    /// Whether a lease held by someone other than `owner` is still running at `now`.
    pub fn leased_by_other(&self, owner: &str, now: Timestamp) -> bool {
        match (&self.lease_owner, self.lease_until) {
            (Some(o), Some(until)) => o != owner && until > now,
            _ => false,
        }
    }

    pub fn execution_id(&self) -> ExecutionId {
        ExecutionId::of(&self.key)
    }

    /// Applies a change whose `from` matches the current status. This is the reference
    /// semantics; the DynamoDB adapter expresses the same as one conditional update.
    pub fn apply(&mut self, change: &StatusChange, shards: u16) {
        self.status = change.to;
        self.status_shard = change
            .to
            .is_indexed()
            .then(|| StatusShard::new(change.to, shard_of(&self.key, shards)));
        match change.to {
            Status::Queued if change.to != change.from => self.queued_at = Some(change.at),
            Status::Executed => self.executed_at = Some(change.at),
            _ => {}
        }
        if let Some(e) = &change.error {
            self.last_error = Some(e.clone());
        }
        if let Some(v) = change.validation {
            self.validation_result = Some(v);
        }
        self.retry_count = self.retry_count.saturating_add(change.retry_increment);
        if let Some(ms) = change.lateness_ms {
            self.lateness_ms = Some(ms);
        }
        if let Some(mode) = change.mode {
            self.mode = Some(mode);
        }
        if let Some(body) = &change.shadow_trigger {
            self.shadow_trigger = Some(body.clone());
        }
        // Every recorded change ends the writer's lease.
        self.lease_owner = None;
        self.lease_until = None;
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("status transition {from} -> {to} is not allowed")]
pub struct TransitionError {
    pub from: Status,
    pub to: Status,
}

/// A conditional change of one item: it applies only while the item's status is `from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusChange {
    pub from: Status,
    pub to: Status,
    pub at: Timestamp,
    pub error: Option<String>,
    pub validation: Option<Validation>,
    pub retry_increment: u32,
    pub lateness_ms: Option<u64>,
    /// The tenant's rollout mode the outcome was decided under.
    pub mode: Option<TenantMode>,
    /// In shadow mode, the trigger body that would have been sent.
    pub shadow_trigger: Option<String>,
}

impl StatusChange {
    /// A transition allowed by [`crate::model::Status::can_become`].
    pub fn transition(from: Status, to: Status, at: Timestamp) -> Result<Self, TransitionError> {
        if !from.can_become(to) {
            return Err(TransitionError { from, to });
        }
        Ok(Self {
            from,
            to,
            at,
            error: None,
            validation: None,
            retry_increment: 0,
            lateness_ms: None,
            mode: None,
            shadow_trigger: None,
        })
    }

    /// A fixed edge of the transition table; the constructors below are its only callers
    /// and a test checks each against [`crate::model::status::TRANSITIONS`].
    fn edge(from: Status, to: Status, at: Timestamp) -> Self {
        Self {
            from,
            to,
            at,
            error: None,
            validation: None,
            retry_increment: 0,
            lateness_ms: None,
            mode: None,
            shadow_trigger: None,
        }
    }

    /// PENDING → QUEUED: its message is on the execution queue.
    pub fn queued(at: Timestamp) -> Self {
        Self::edge(Status::Pending, Status::Queued, at)
    }

    /// QUEUED → EXECUTED: the trigger went out at `at`.
    pub fn executed(at: Timestamp) -> Self {
        Self::edge(Status::Queued, Status::Executed, at)
    }

    /// QUEUED → FAILED: the last delivery could not send; its message goes to the DLQ.
    pub fn failed(at: Timestamp, error: impl Into<String>) -> Self {
        Self::edge(Status::Queued, Status::Failed, at).with_error(error)
    }

    /// FAILED → QUEUED: a message redriven from the DLQ runs the step again, under the
    /// same execution id.
    pub fn redriven(at: Timestamp) -> Self {
        Self::edge(Status::Failed, Status::Queued, at)
    }

    /// QUEUED → SKIPPED: the registry says the device is not active at the due time.
    pub fn skipped(at: Timestamp, reason: impl Into<String>) -> Self {
        Self::edge(Status::Queued, Status::Skipped, at)
            .with_error(reason)
            .with_validation(Validation::Invalid)
    }

    /// QUEUED → MISSED: delivered later than the occurrence's misfire grace.
    pub fn missed_in_queue(at: Timestamp, reason: impl Into<String>) -> Self {
        Self::edge(Status::Queued, Status::Missed, at).with_error(reason)
    }

    /// PENDING → MISSED: found later than the occurrence's misfire grace, never sent.
    pub fn missed_before_queue(at: Timestamp, reason: impl Into<String>) -> Self {
        Self::edge(Status::Pending, Status::Missed, at).with_error(reason)
    }

    /// Records failed send attempts without changing the status (it stays `status`).
    pub fn attempts_failed(
        status: Status,
        at: Timestamp,
        failed: u32,
        error: impl Into<String>,
    ) -> Self {
        Self {
            from: status,
            to: status,
            at,
            error: Some(error.into()),
            validation: None,
            retry_increment: failed,
            lateness_ms: None,
            mode: None,
            shadow_trigger: None,
        }
    }

    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    pub fn with_retries(mut self, failed: u32) -> Self {
        self.retry_increment = failed;
        self
    }

    pub fn with_lateness_ms(mut self, ms: u64) -> Self {
        self.lateness_ms = Some(ms);
        self
    }

    /// Records the tenant's mode the outcome was decided under.
    pub fn with_mode(mut self, mode: TenantMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Records, in shadow mode, the trigger body that would have been sent.
    pub fn with_shadow_trigger(mut self, body: impl Into<String>) -> Self {
        self.shadow_trigger = Some(body.into());
        self
    }

    /// QUEUED → SKIPPED at the due time: the tenant's mode is off, nothing is sent.
    pub fn tenant_off(at: Timestamp) -> Self {
        Self::edge(Status::Queued, Status::Skipped, at)
            .with_error("tenant mode is off: nothing sent")
            .with_mode(TenantMode::Off)
    }

    pub fn with_validation(mut self, v: Validation) -> Self {
        self.validation = Some(v);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn def() -> Definition {
        Definition::from_json(&json!({"tenant_id":"acme","device_workflow_step_id":"s1","workflow_id":"w1",
            "device_id":"d1","version":2,"schedule":{"type":"once","at":"2026-11-26T10:30:00Z"},"payload":{"a":1}}))
        .unwrap()
    }

    #[test]
    fn fixed_edges_are_edges_of_the_transition_table() {
        let at = Timestamp::parse("2026-11-26T10:30:00Z").unwrap();
        let fixed = [
            StatusChange::queued(at),
            StatusChange::executed(at),
            StatusChange::failed(at, "e"),
            StatusChange::redriven(at),
            StatusChange::skipped(at, "e"),
            StatusChange::missed_in_queue(at, "e"),
            StatusChange::missed_before_queue(at, "e"),
        ];
        for c in &fixed {
            assert!(
                crate::model::status::TRANSITIONS
                    .iter()
                    .any(|(from, tos)| *from == c.from && tos.contains(&c.to)),
                "{} -> {} is not in the table",
                c.from,
                c.to
            );
            assert_eq!(
                StatusChange::transition(c.from, c.to, at)
                    .unwrap()
                    .with_retries(c.retry_increment),
                StatusChange {
                    error: None,
                    validation: None,
                    mode: None,
                    ..c.clone()
                },
                "{} -> {}",
                c.from,
                c.to
            );
        }
        let edges: std::collections::HashSet<_> = fixed.iter().map(|c| (c.from, c.to)).collect();
        assert_eq!(edges.len(), fixed.len(), "each constructor is its own edge");
        assert_eq!(
            StatusChange::skipped(at, "inactive").validation,
            Some(Validation::Invalid)
        );
        // A tenant that is off: the same edge as an inactive device, but the device's
        // validation is left as it was.
        let off = StatusChange::tenant_off(at);
        assert_eq!(
            (off.from, off.to, off.validation),
            (Status::Queued, Status::Skipped, None)
        );
        assert_eq!(off.mode, Some(TenantMode::Off));
    }

    #[test]
    fn pending_item_is_indexed_with_ttl_from_retention() {
        let at = Timestamp::parse("2026-11-26T10:30:00Z").unwrap();
        let now = Timestamp::parse("2026-11-26T00:00:00Z").unwrap();
        let item = ScheduleItem::pending(&def(), at, now, Duration::from_secs(30 * 86_400), 16);
        assert_eq!(item.status, Status::Pending);
        assert!(
            item.status_shard
                .as_ref()
                .unwrap()
                .as_str()
                .starts_with("PENDING#")
        );
        assert_eq!(item.ttl, at.epoch_seconds() + 30 * 86_400);
        assert_eq!(item.definition_version, 2);
        assert_eq!(item.execution_id(), ExecutionId::of(&item.key));
        assert_eq!(item.execution_id().as_str().len(), 36);
    }

    #[test]
    fn scan_time_validation_is_recorded_and_leaves_the_item_pending() {
        let at = Timestamp::parse("2026-11-26T10:30:00Z").unwrap();
        for v in [None, Some(Validation::Valid), Some(Validation::Invalid)] {
            let item = ScheduleItem::pending(&def(), at, at, Duration::from_secs(60), 16)
                .with_device_validation(v);
            assert_eq!((item.status, item.validation_result), (Status::Pending, v));
            assert!(item.status_shard.is_some() && item.last_error.is_none());
        }
    }

    #[test]
    fn applying_changes_moves_the_item_through_the_index() {
        let at = Timestamp::parse("2026-11-26T10:30:00Z").unwrap();
        let mut item = ScheduleItem::pending(&def(), at, at, Duration::from_secs(60), 16);
        let q = StatusChange::transition(Status::Pending, Status::Queued, at).unwrap();
        item.apply(&q, 16);
        assert!(
            item.status_shard
                .as_ref()
                .unwrap()
                .as_str()
                .starts_with("QUEUED#")
        );
        assert_eq!(item.queued_at, Some(at));
        item.apply(
            &StatusChange::attempts_failed(Status::Queued, at, 2, "throttled"),
            16,
        );
        assert_eq!(
            (item.retry_count, item.last_error.as_deref()),
            (2, Some("throttled"))
        );
        item.apply(
            &StatusChange::transition(Status::Queued, Status::Executed, at).unwrap(),
            16,
        );
        assert_eq!(item.status_shard, None);
        assert_eq!(item.executed_at, Some(at));
        assert!(StatusChange::transition(Status::Executed, Status::Pending, at).is_err());
    }
}
