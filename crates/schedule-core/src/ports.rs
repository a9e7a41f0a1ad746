//! Ports: the small traits the use cases are generic over. Adapters implement them for a
//! technology (DynamoDB, SQS) and for memory (the embedded twin); the contract suite runs
//! the same cases against both so the twin cannot drift.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::try_join_all;

use crate::error::{QueueError, StoreError, ValidationError};
use crate::limits::MAX_STATUS_SHARDS;
use crate::model::scan_state::MAX_STATUS_SHARDS_ATTR;
use crate::model::{
    Definition, DefinitionError, DeviceId, Payload, ScheduleItem, ScheduleKey, Status,
    StatusChange, StatusShard, StepId, TenantId, TenantMode, TenantSetting, Timestamp,
    TriggerMessage, Validation,
};
use crate::retry::{RetryPolicy, retrying};

/// The time, injected so tests and simulations are exact.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    /// Lets `d` pass. Real clocks sleep; a manual clock moves itself forward, so code that
    /// waits (backoff, the last sub-second before a step is due) runs instantly in tests.
    fn sleep(&self, d: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// An opaque position to resume a paged read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(pub String);

/// One page of a paged read; `next` is `None` on the last page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<Cursor>,
}

/// What the sparse GSI gives back for one occurrence (keys only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueEntry {
    pub key: ScheduleKey,
    pub scheduled_time: Timestamp,
    pub status_shard: StatusShard,
}

/// What [`ScheduleStore::materialize`] did to one occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Materialized {
    /// It was absent and is now written as given.
    Created,
    /// It was PENDING with an older definition version and now carries the new version
    /// and payload.
    Refreshed,
    /// It was CANCELLED by an older definition version and the new version yields it
    /// again: PENDING once more, with the new version and payload, back in the index.
    Reinstated,
    /// Left exactly as it was: same or newer version, or already QUEUED or terminal.
    Unchanged,
}

/// The schedule table: one item per occurrence.
pub trait ScheduleStore: Send + Sync {
    /// Number of `status_shard` values per status this store writes.
    fn status_shards(&self) -> u16;

    /// Writes `item` unless an item with its key exists. `Ok(false)`: it existed, and is
    /// left exactly as it was (its status is never reset).
    fn create_if_absent(
        &self,
        item: &ScheduleItem,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Writes the occurrence `item` for its `definition_version`, in one conditional
    /// write: absent → created as given; PENDING or CANCELLED with an older version → PENDING
    /// with the new version and payload ([`Materialized::Refreshed`],
    /// [`Materialized::Reinstated`]); anything else is left alone
    /// ([`Materialized::Unchanged`]), so a replay never resets a status.
    fn materialize(
        &self,
        item: &ScheduleItem,
    ) -> impl Future<Output = Result<Materialized, StoreError>> + Send;

    /// Cancels a PENDING occurrence materialized from a version older than
    /// `cancelling_version`: CANCELLED, out of the index, `reason` in `last_error`,
    /// `cancelled_by_version` recorded. `Ok(false)`: missing, not PENDING (QUEUED and
    /// terminal ones are left alone) or already of that version or newer.
    fn cancel(
        &self,
        key: &ScheduleKey,
        cancelling_version: u64,
        reason: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// The end of the window the last complete daily scan covered, if one was recorded.
    fn scan_horizon(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send;

    /// Records that every definition is materialized up to `covered_to`. Only moves
    /// forward: `Ok(false)` when an equal or later horizon is already recorded.
    fn record_scan_horizon(
        &self,
        covered_to: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// A strongly consistent read.
    fn get(
        &self,
        key: &ScheduleKey,
    ) -> impl Future<Output = Result<Option<ScheduleItem>, StoreError>> + Send;

    /// The payload of an occurrence read with [`Self::get`]: the one it carries, or, when
    /// it refers to a payload stored beside it (`payload_ref`), that one (one strongly
    /// consistent read; the payload is written before any occurrence refers to it). A
    /// store that never stores payloads apart keeps this default.
    fn payload(
        &self,
        item: &ScheduleItem,
    ) -> impl Future<Output = Result<Payload, StoreError>> + Send {
        let result = match &item.payload_ref {
            None => Ok(item.payload.clone()),
            Some(r) => Err(StoreError::Corrupt {
                key: item.key.to_string(),
                reason: format!("payload_ref {r:?}: this store does not store payloads apart"),
            }),
        };
        std::future::ready(result)
    }

    /// Applies `change` only if the item exists with status `change.from`. `Ok(true)`:
    /// this caller won; `Ok(false)`: the item is missing or another writer got there first.
    fn change_status(
        &self,
        key: &ScheduleKey,
        change: &StatusChange,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Takes (or renews) a short lease on an item whose status is `status`, unless someone
    /// else holds an unexpired one. `Ok(true)`: `owner` holds it until `until`. Any
    /// status change releases it.
    fn try_lease(
        &self,
        key: &ScheduleKey,
        status: Status,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// One page of one shard of the sparse GSI: entries with `scheduled_time < before`,
    /// in time order.
    fn query_due_page(
        &self,
        shard: &StatusShard,
        before: Timestamp,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> impl Future<Output = Result<Page<DueEntry>, StoreError>> + Send;

    // ---- Status shards ever used, and the sweep of stuck QUEUED occurrences. ----

    /// The largest shard count recorded by [`Self::record_status_shards`], if any.
    fn max_status_shards(&self) -> impl Future<Output = Result<Option<u16>, StoreError>> + Send;

    /// Records that occurrences may be indexed under `shards` shards, so the due query
    /// keeps reading all of them after `STATUS_SHARDS` is lowered. Only grows: `Ok(false)`
    /// when an equal or larger count is already recorded. The scheduler calls it at the
    /// start of every run; every writer of PENDING occurrences (the scanner, definition
    /// sync) should call it before its first write.
    fn record_status_shards(
        &self,
        shards: u16,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Applies `sweep` to an occurrence the scheduler found QUEUED long after every
    /// receive of its message, only while it is exactly as the sweep read it: QUEUED,
    /// `queued_at` equal to `seen_queued_at` (absent for `None`), and no unexpired lease
    /// (an executor at work on it). So a late executor and the sweep never both win.
    /// `Ok(false)`: it moved on, or someone holds it; the sweep leaves it alone.
    fn sweep_queued(
        &self,
        key: &ScheduleKey,
        seen_queued_at: Option<Timestamp>,
        sweep: &Sweep,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    // ---- The scheduler's one write per dispatched step. ----

    /// PENDING → QUEUED **before** the send, in one conditional write: only while the item
    /// is PENDING and nobody holds an unexpired lease on it (a run of an older scheduler
    /// that leased it and is sending it). `queued_at` becomes `now`, `lease_owner` records
    /// `owner` (with no `lease_until`: not a lease, so no executor waits on it) and the
    /// item moves to the QUEUED shard of the index. The same call again (same `owner` and
    /// `now`: a retry after a write that landed but whose answer was lost) finds it as it
    /// left it and wins again, so a lost answer does not strand the item without a
    /// message. `Ok(true)`: this caller owns the send.
    fn queue_unleased(
        &self,
        key: &ScheduleKey,
        owner: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Undoes [`Self::queue_unleased`] when the send was refused: QUEUED → PENDING (back in
    /// the PENDING shard, `queued_at` removed, `retry_count` + 1, `reason` in `last_error`),
    /// only while the item is QUEUED with `queued_at` equal to `queued_at` and no unexpired
    /// lease — exactly as this caller left it. Not a status transition: the QUEUED write is
    /// taken back before any message could act on it. `Ok(false)`: it moved on (an
    /// executor holds or finished it); it is left alone.
    fn unqueue(
        &self,
        key: &ScheduleKey,
        queued_at: Timestamp,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Which of `keys` already exist, with what a writer needs to know to leave them
    /// alone: their status and definition version. An eventually consistent read, as cheap
    /// as the store allows (DynamoDB: `BatchGetItem` of the keys and those two attributes,
    /// 100 keys a request, unprocessed keys asked again through [`retrying`]); keys without
    /// an item are absent from the answer.
    ///
    /// A stale answer is safe for the scanner: an occurrence is never deleted inside its
    /// window (only TTL removes it, long after), and its version and status only move
    /// forward, so an item seen present is present, at that version or a newer one. An
    /// item missed by a stale read is written through [`Self::materialize`], whose
    /// condition leaves it alone.
    ///
    /// The default reads each key with [`Self::get`]; stores override it with a batch.
    fn existing(
        &self,
        keys: &[ScheduleKey],
    ) -> impl Future<Output = Result<HashMap<ScheduleKey, Existing>, StoreError>> + Send {
        async move {
            let mut found = HashMap::new();
            for key in keys {
                if let Some(item) = self.get(key).await? {
                    found.insert(
                        key.clone(),
                        Existing {
                            status: item.status,
                            definition_version: item.definition_version,
                        },
                    );
                }
            }
            Ok(found)
        }
    }
}

/// What [`ScheduleStore::existing`] tells of one stored occurrence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Existing {
    pub status: Status,
    pub definition_version: u64,
}

impl Existing {
    /// Whether [`ScheduleStore::materialize`] of a PENDING occurrence of
    /// `definition_version` would change this stored one: only a PENDING or CANCELLED
    /// occurrence of an older version is taken over; anything else is left alone.
    pub fn would_change(&self, definition_version: u64) -> bool {
        matches!(self.status, Status::Pending | Status::Cancelled)
            && self.definition_version < definition_version
    }
}

/// The progress of fanned-out scan runs: which segments of a run are complete, so the
/// horizon is recorded by the one that completes the last, and only then.
pub trait ScanRuns: Send + Sync {
    /// Records that `segment` of run `run_id` (of `total_segments`) is complete, and
    /// answers how many distinct segments of the run are complete now. Idempotent: a
    /// segment recorded twice (a redelivered task) counts once. The record of the run
    /// expires at `expires` (it is bookkeeping only).
    fn segment_done(
        &self,
        run_id: &str,
        segment: u32,
        total_segments: u32,
        expires: Timestamp,
    ) -> impl Future<Output = Result<u32, StoreError>> + Send;
}

impl<T: ScanRuns + ?Sized> ScanRuns for std::sync::Arc<T> {
    fn segment_done(
        &self,
        run_id: &str,
        segment: u32,
        total_segments: u32,
        expires: Timestamp,
    ) -> impl Future<Output = Result<u32, StoreError>> + Send {
        (**self).segment_done(run_id, segment, total_segments, expires)
    }
}

/// What the scheduler's sweep does with one stuck QUEUED occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sweep {
    /// It is sent again under the same execution id: it stays QUEUED, `queued_at` becomes
    /// the sweep's `now` and `sweeps` grows by one (the bound on re-dispatches).
    Redispatch,
    /// QUEUED → FAILED with `reason` in `last_error`: re-dispatched as often as allowed.
    Fail { reason: String },
    /// QUEUED → MISSED with `reason` in `last_error`: past its misfire grace.
    Miss { reason: String },
}

impl Sweep {
    /// The status a sweep leaves the occurrence in.
    pub fn status(&self) -> Status {
        match self {
            Sweep::Redispatch => Status::Queued,
            Sweep::Fail { .. } => Status::Failed,
            Sweep::Miss { .. } => Status::Missed,
        }
    }

    /// The status change a settling sweep records (`None` for a re-dispatch).
    pub fn change(&self, at: Timestamp) -> Option<StatusChange> {
        let (to, reason) = match self {
            Sweep::Redispatch => return None,
            Sweep::Fail { reason } => (Status::Failed, reason),
            Sweep::Miss { reason } => (Status::Missed, reason),
        };
        StatusChange::transition(Status::Queued, to, at)
            .ok()
            .map(|c| c.with_error(reason.clone()))
    }
}

/// How a paged read runs: the page size, the clock its retries wait on and the deadline
/// no retry waits past.
#[derive(Debug)]
pub struct Paging<'a, C: ?Sized> {
    pub page_size: u32,
    pub clock: &'a C,
    pub deadline: Option<DateTime<Utc>>,
}

impl<C: ?Sized> Clone for Paging<'_, C> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C: ?Sized> Copy for Paging<'_, C> {}

/// Retries of one throttled page of a paged read: one slow page must not fail a whole run.
const PAGE_RETRY: RetryPolicy =
    RetryPolicy::new(5, Duration::from_millis(50), Duration::from_secs(1), 0x9a6e);

/// The shards the due query reads: every one up to the larger of the store's configured
/// count and the largest count ever recorded, so occurrences indexed before
/// `STATUS_SHARDS` was lowered are still found.
pub async fn due_shards<S: ScheduleStore, C: Clock + ?Sized>(
    store: &S,
    paging: Paging<'_, C>,
) -> Result<u16, StoreError> {
    let recorded = retrying(
        PAGE_RETRY,
        MAX_STATUS_SHARDS_ATTR,
        paging.clock,
        paging.deadline,
        || store.max_status_shards(),
    )
    .await?;
    Ok(store
        .status_shards()
        .max(recorded.unwrap_or(0))
        .min(MAX_STATUS_SHARDS))
}

/// Every entry of `status` due before `before`, across every shard that may hold one
/// ([`due_shards`]; queried concurrently, each paged to its end), in time order.
pub async fn query_due<S: ScheduleStore, C: Clock + ?Sized>(
    store: &S,
    status: Status,
    before: Timestamp,
    paging: Paging<'_, C>,
) -> Result<Vec<DueEntry>, StoreError> {
    let shards = due_shards(store, paging).await?;
    let shards = StatusShard::all(status, shards)
        .map(|shard| async move { query_due_shard(store, &shard, before, paging).await });
    let mut all: Vec<DueEntry> = try_join_all(shards).await?.into_iter().flatten().collect();
    all.sort_by(|a, b| (a.scheduled_time, &a.key).cmp(&(b.scheduled_time, &b.key)));
    Ok(all)
}

/// Every entry of one shard due before `before`, paged to its end, in time order.
pub async fn query_due_shard<S: ScheduleStore, C: Clock + ?Sized>(
    store: &S,
    shard: &StatusShard,
    before: Timestamp,
    paging: Paging<'_, C>,
) -> Result<Vec<DueEntry>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = retrying(
            PAGE_RETRY,
            shard.as_str(),
            paging.clock,
            paging.deadline,
            || store.query_due_page(shard, before, paging.page_size, cursor.as_ref()),
        )
        .await?;
        out.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// A definition as read from the table: valid, or the reason it is not (with its key),
/// so one bad definition is skipped and reported rather than failing a whole scan.
pub type ScannedDefinition = Result<Definition, InvalidDefinition>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("definition {key}: {error}")]
pub struct InvalidDefinition {
    pub key: String,
    pub error: DefinitionError,
}

/// The definitions table.
pub trait DefinitionSource: Send + Sync {
    /// One page of one parallel scan segment (`segment < total_segments`).
    fn scan_page(
        &self,
        segment: u32,
        total_segments: u32,
        cursor: Option<&Cursor>,
    ) -> impl Future<Output = Result<Page<ScannedDefinition>, StoreError>> + Send;

    fn get(
        &self,
        tenant: &TenantId,
        step: &StepId,
    ) -> impl Future<Output = Result<Option<ScannedDefinition>, StoreError>> + Send;

    /// Writes `def` if it is new or its version is greater than the stored one;
    /// otherwise [`StoreError::Conflict`].
    fn put(&self, def: &Definition) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Strongly consistent reads of many definitions at once, as few requests as the
    /// store allows. Every requested key is in the answer: `None` when the table has no
    /// row for it. Retries throttling and partial answers itself; `Err` means it gave up.
    fn get_many(
        &self,
        keys: &[DefinitionKey],
    ) -> impl Future<Output = Result<FetchedDefinitions, StoreError>> + Send;
}

/// The per-tenant rollout modes, stored beside the definitions (one settings row per
/// tenant) so an operator changes them without a deploy. Readers that decide per
/// occurrence go through [`crate::mode_cache::CachedModes`], which applies the
/// deployment's default to a tenant without a row.
pub trait TenantModes: Send + Sync {
    /// The stored mode of `tenant` (a strongly consistent read); `None`: no row.
    fn stored_mode(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Option<TenantMode>, StoreError>> + Send;

    /// Stores `mode` for `tenant`, recording `at` as its `updated_at`.
    fn set_mode(
        &self,
        tenant: &TenantId,
        mode: TenantMode,
        at: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Every stored mode, by tenant.
    fn modes(&self) -> impl Future<Output = Result<Vec<TenantSetting>, StoreError>> + Send;
}

impl<T: TenantModes + ?Sized> TenantModes for std::sync::Arc<T> {
    fn stored_mode(
        &self,
        tenant: &TenantId,
    ) -> impl Future<Output = Result<Option<TenantMode>, StoreError>> + Send {
        (**self).stored_mode(tenant)
    }

    fn set_mode(
        &self,
        tenant: &TenantId,
        mode: TenantMode,
        at: Timestamp,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).set_mode(tenant, mode, at)
    }

    fn modes(&self) -> impl Future<Output = Result<Vec<TenantSetting>, StoreError>> + Send {
        (**self).modes()
    }
}

/// The key of a definition: its tenant and its step.
pub type DefinitionKey = (TenantId, StepId);

/// What [`DefinitionSource::get_many`] found for each requested key: a valid definition,
/// an invalid row (with why), or `None` (no row).
pub type FetchedDefinitions = HashMap<DefinitionKey, Option<ScannedDefinition>>;

/// Every definition, all segments scanned concurrently; a throttled page is retried on
/// the system clock with no deadline. Callers that have a clock and a deadline use
/// [`scan_definitions_paged`].
pub async fn scan_definitions<D: DefinitionSource>(
    source: &D,
    segments: u32,
) -> Result<Vec<ScannedDefinition>, StoreError> {
    let clock = crate::adapters::clock::SystemClock;
    let paging = Paging {
        page_size: 0,
        clock: &clock,
        deadline: None,
    };
    scan_definitions_paged(source, segments, paging).await
}

/// Every definition, all segments scanned concurrently, each throttled page retried on
/// `paging`'s clock within its deadline (the table decides the page size).
pub async fn scan_definitions_paged<D: DefinitionSource, C: Clock + ?Sized>(
    source: &D,
    segments: u32,
    paging: Paging<'_, C>,
) -> Result<Vec<ScannedDefinition>, StoreError> {
    let segments = segments.max(1);
    let scans = (0..segments).map(|segment| async move {
        let mut out = Vec::new();
        let mut cursor = None;
        let key = format!("segment-{segment}/{segments}");
        loop {
            let page = retrying(PAGE_RETRY, &key, paging.clock, paging.deadline, || {
                source.scan_page(segment, segments, cursor.as_ref())
            })
            .await?;
            out.extend(page.items);
            match page.next {
                Some(c) => cursor = Some(c),
                None => return Ok::<_, StoreError>(out),
            }
        }
    });
    Ok(try_join_all(scans).await?.into_iter().flatten().collect())
}

/// A message for the execution queue. `id` is the caller's name for it in the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub id: String,
    pub body: String,
    /// 0..=900 s; SQS holds the message invisible until then.
    pub delay: Duration,
}

/// What became of a batch send: ids sent, and ids that still failed after retries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendReport {
    pub sent: Vec<String>,
    pub failed: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub receipt_handle: String,
    pub body: String,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
}

/// A work queue: the execution queue and its DLQ.
pub trait DispatchQueue: Send + Sync {
    /// Sends in batches of at most 10, retrying only the entries that failed for a
    /// retryable reason. `Err` only when the input itself is invalid (nothing sent).
    fn send_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> impl Future<Output = Result<SendReport, QueueError>> + Send;

    /// Up to `max` (≤ 10) visible messages, waiting up to `wait` for the first.
    fn receive(
        &self,
        max: u32,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, QueueError>> + Send;

    fn delete(&self, receipt_handle: &str) -> impl Future<Output = Result<(), QueueError>> + Send;
}

/// The action trigger queue. One attempt per call; the executor owns the retry policy.
pub trait ActionSink: Send + Sync {
    fn send(&self, message: &TriggerMessage)
    -> impl Future<Output = Result<(), QueueError>> + Send;

    /// One attempt at every message, in as few requests as the queue allows (SQS: 10
    /// entries per `SendMessageBatch`). One result per message, in the order given: an
    /// entry can fail while the others go out. The default sends each through
    /// [`Self::send`], concurrently.
    fn send_batch(
        &self,
        messages: &[TriggerMessage],
    ) -> impl Future<Output = Vec<Result<(), QueueError>>> + Send {
        futures::future::join_all(messages.iter().map(|m| self.send(m)))
    }
}

// Shared handles serve as the port itself, so one queue can be both a redrive target
// and a queue a caller reads.
impl<T: DispatchQueue + ?Sized> DispatchQueue for std::sync::Arc<T> {
    fn send_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> impl Future<Output = Result<SendReport, QueueError>> + Send {
        (**self).send_batch(messages)
    }

    fn receive(
        &self,
        max: u32,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<ReceivedMessage>, QueueError>> + Send {
        (**self).receive(max, wait)
    }

    fn delete(&self, receipt_handle: &str) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).delete(receipt_handle)
    }
}

impl<T: ActionSink + ?Sized> ActionSink for std::sync::Arc<T> {
    fn send(
        &self,
        message: &TriggerMessage,
    ) -> impl Future<Output = Result<(), QueueError>> + Send {
        (**self).send(message)
    }

    fn send_batch(
        &self,
        messages: &[TriggerMessage],
    ) -> impl Future<Output = Vec<Result<(), QueueError>>> + Send {
        (**self).send_batch(messages)
    }
}

/// Whether a device may be acted on. `Err` means the registry could not say (retryable);
/// a definite "no" is `Ok(Validation::Invalid)`.
pub trait DeviceValidator: Send + Sync {
    fn validate(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> impl Future<Output = Result<Validation, ValidationError>> + Send;
}

impl<T: DeviceValidator + ?Sized> DeviceValidator for std::sync::Arc<T> {
    fn validate(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> impl Future<Output = Result<Validation, ValidationError>> + Send {
        (**self).validate(tenant, device)
    }
}

impl<T: ScheduleStore + ?Sized> ScheduleStore for std::sync::Arc<T> {
    fn status_shards(&self) -> u16 {
        (**self).status_shards()
    }

    fn create_if_absent(
        &self,
        item: &ScheduleItem,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).create_if_absent(item)
    }

    fn materialize(
        &self,
        item: &ScheduleItem,
    ) -> impl Future<Output = Result<Materialized, StoreError>> + Send {
        (**self).materialize(item)
    }

    fn cancel(
        &self,
        key: &ScheduleKey,
        cancelling_version: u64,
        reason: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).cancel(key, cancelling_version, reason)
    }

    fn scan_horizon(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send {
        (**self).scan_horizon()
    }

    fn record_scan_horizon(
        &self,
        covered_to: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).record_scan_horizon(covered_to)
    }

    fn get(
        &self,
        key: &ScheduleKey,
    ) -> impl Future<Output = Result<Option<ScheduleItem>, StoreError>> + Send {
        (**self).get(key)
    }

    fn payload(
        &self,
        item: &ScheduleItem,
    ) -> impl Future<Output = Result<Payload, StoreError>> + Send {
        (**self).payload(item)
    }

    fn change_status(
        &self,
        key: &ScheduleKey,
        change: &StatusChange,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).change_status(key, change)
    }

    fn try_lease(
        &self,
        key: &ScheduleKey,
        status: Status,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).try_lease(key, status, owner, until, now)
    }

    fn query_due_page(
        &self,
        shard: &StatusShard,
        before: Timestamp,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> impl Future<Output = Result<Page<DueEntry>, StoreError>> + Send {
        (**self).query_due_page(shard, before, limit, cursor)
    }

    fn max_status_shards(&self) -> impl Future<Output = Result<Option<u16>, StoreError>> + Send {
        (**self).max_status_shards()
    }

    fn record_status_shards(
        &self,
        shards: u16,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).record_status_shards(shards)
    }

    fn sweep_queued(
        &self,
        key: &ScheduleKey,
        seen_queued_at: Option<Timestamp>,
        sweep: &Sweep,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).sweep_queued(key, seen_queued_at, sweep, now)
    }

    fn queue_unleased(
        &self,
        key: &ScheduleKey,
        owner: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).queue_unleased(key, owner, now)
    }

    fn unqueue(
        &self,
        key: &ScheduleKey,
        queued_at: Timestamp,
        reason: &str,
        now: Timestamp,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).unqueue(key, queued_at, reason, now)
    }

    fn existing(
        &self,
        keys: &[ScheduleKey],
    ) -> impl Future<Output = Result<HashMap<ScheduleKey, Existing>, StoreError>> + Send {
        (**self).existing(keys)
    }
}

impl<T: DefinitionSource + ?Sized> DefinitionSource for std::sync::Arc<T> {
    fn scan_page(
        &self,
        segment: u32,
        total_segments: u32,
        cursor: Option<&Cursor>,
    ) -> impl Future<Output = Result<Page<ScannedDefinition>, StoreError>> + Send {
        (**self).scan_page(segment, total_segments, cursor)
    }

    fn get(
        &self,
        tenant: &TenantId,
        step: &StepId,
    ) -> impl Future<Output = Result<Option<ScannedDefinition>, StoreError>> + Send {
        (**self).get(tenant, step)
    }

    fn put(&self, def: &Definition) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).put(def)
    }

    fn get_many(
        &self,
        keys: &[DefinitionKey],
    ) -> impl Future<Output = Result<FetchedDefinitions, StoreError>> + Send {
        (**self).get_many(keys)
    }
}

// ==== Operator reads and edits (the `wfs` CLI) ========================================
// Kept apart from the ports the functions use, so a wrapper of `ScheduleStore` or
// `DefinitionSource` (fault injection in tests) need not implement them.

/// Reads a person needs and the functions do not: one tenant's day.
pub trait ScheduleBrowse: Send + Sync {
    /// One page of the occurrences of `tenant` due on the UTC `date` (the partition
    /// `TENANT#{tenant}#DATE#{date}`), in time order (then step).
    fn occurrences_page(
        &self,
        tenant: &TenantId,
        date: chrono::NaiveDate,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> impl Future<Output = Result<Page<ScheduleItem>, StoreError>> + Send;
}

/// Edits a person makes to the definitions table besides `put`.
pub trait DefinitionAdmin: Send + Sync {
    /// Deletes the definition of `tenant`/`step`. `Ok(false)`: there was none.
    fn delete_definition(
        &self,
        tenant: &TenantId,
        step: &StepId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

/// Every occurrence of `tenant` on the UTC `date`, paged to the end (each throttled page
/// retried on `paging`'s clock), in time order.
pub async fn occurrences_on<S: ScheduleBrowse + ?Sized, C: Clock + ?Sized>(
    store: &S,
    tenant: &TenantId,
    date: chrono::NaiveDate,
    paging: Paging<'_, C>,
) -> Result<Vec<ScheduleItem>, StoreError> {
    let key = format!("{tenant}/{date}");
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = retrying(PAGE_RETRY, &key, paging.clock, paging.deadline, || {
            store.occurrences_page(tenant, date, paging.page_size, cursor.as_ref())
        })
        .await?;
        out.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

impl<T: ScheduleBrowse + ?Sized> ScheduleBrowse for std::sync::Arc<T> {
    fn occurrences_page(
        &self,
        tenant: &TenantId,
        date: chrono::NaiveDate,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> impl Future<Output = Result<Page<ScheduleItem>, StoreError>> + Send {
        (**self).occurrences_page(tenant, date, limit, cursor)
    }
}

impl<T: DefinitionAdmin + ?Sized> DefinitionAdmin for std::sync::Arc<T> {
    fn delete_definition(
        &self,
        tenant: &TenantId,
        step: &StepId,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        (**self).delete_definition(tenant, step)
    }
}
// ==== end of operator reads and edits ==================================================
