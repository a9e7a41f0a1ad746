//! Test doubles that wrap a real adapter (never replace it): a sink that fails on
//! purpose, a store that drops writes, a definitions source that counts (or refuses) its
//! batched reads, and the SQS → Lambda event translation the Lambda service performs,
//! for in-test pollers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use schedule_core::error::{QueueError, StoreError};
use schedule_core::model::{
    Definition, ScheduleItem, ScheduleKey, Status, StatusChange, StatusShard, StepId, TenantId,
    Timestamp, TriggerMessage,
};
use schedule_core::ports::{
    ActionSink, Cursor, DefinitionKey, DefinitionSource, DueEntry, FetchedDefinitions,
    Materialized, Page, ReceivedMessage, ScannedDefinition, ScheduleStore, Sweep,
};

/// Fails the first `fail_first` sends of each execution id (or every send when
/// `fail_first` is `u32::MAX`) with a retryable error, then passes sends through.
#[derive(Debug)]
pub struct FlakySink<A> {
    pub inner: A,
    pub fail_first: u32,
    seen: Mutex<HashMap<String, u32>>,
    pub failures: AtomicU32,
}

impl<A> FlakySink<A> {
    pub fn new(inner: A, fail_first: u32) -> Self {
        Self {
            inner,
            fail_first,
            seen: Mutex::new(HashMap::new()),
            failures: AtomicU32::new(0),
        }
    }
}

impl<A: ActionSink> ActionSink for FlakySink<A> {
    async fn send(&self, message: &TriggerMessage) -> Result<(), QueueError> {
        let n = {
            let mut seen = self.seen.lock().unwrap();
            let n = seen.entry(message.execution_id.to_string()).or_default();
            *n += 1;
            *n
        };
        if n <= self.fail_first {
            self.failures.fetch_add(1, Ordering::Relaxed);
            return Err(QueueError::Transient {
                operation: "SendMessage",
                source: format!("injected failure {n} for {}", message.execution_id).into(),
            });
        }
        self.inner.send(message).await
    }
}

/// A store whose scheduler QUEUED writes land but whose answers are lost once per item (a
/// crash between the QUEUED write and the send), and otherwise the wrapped store.
#[derive(Debug)]
pub struct LosesQueuedWrites<S> {
    pub inner: S,
    lost: Mutex<std::collections::HashSet<ScheduleKey>>,
}

impl<S> LosesQueuedWrites<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            lost: Mutex::new(Default::default()),
        }
    }
}

impl<S: ScheduleStore> ScheduleStore for LosesQueuedWrites<S> {
    fn status_shards(&self) -> u16 {
        self.inner.status_shards()
    }

    async fn create_if_absent(&self, item: &ScheduleItem) -> Result<bool, StoreError> {
        self.inner.create_if_absent(item).await
    }

    async fn materialize(&self, item: &ScheduleItem) -> Result<Materialized, StoreError> {
        self.inner.materialize(item).await
    }

    async fn cancel(
        &self,
        key: &ScheduleKey,
        cancelling_version: u64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.inner.cancel(key, cancelling_version, reason).await
    }

    async fn scan_horizon(&self) -> Result<Option<Timestamp>, StoreError> {
        self.inner.scan_horizon().await
    }

    async fn record_scan_horizon(&self, covered_to: Timestamp) -> Result<bool, StoreError> {
        self.inner.record_scan_horizon(covered_to).await
    }

    async fn get(&self, key: &ScheduleKey) -> Result<Option<ScheduleItem>, StoreError> {
        self.inner.get(key).await
    }

    async fn payload(
        &self,
        item: &ScheduleItem,
    ) -> Result<schedule_core::model::Payload, StoreError> {
        self.inner.payload(item).await
    }

    async fn change_status(
        &self,
        key: &ScheduleKey,
        change: &StatusChange,
    ) -> Result<bool, StoreError> {
        self.inner.change_status(key, change).await
    }

    async fn try_lease(
        &self,
        key: &ScheduleKey,
        status: Status,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.try_lease(key, status, owner, until, now).await
    }

    async fn query_due_page(
        &self,
        shard: &StatusShard,
        before: Timestamp,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<DueEntry>, StoreError> {
        self.inner
            .query_due_page(shard, before, limit, cursor)
            .await
    }

    async fn max_status_shards(&self) -> Result<Option<u16>, StoreError> {
        self.inner.max_status_shards().await
    }

    async fn record_status_shards(&self, shards: u16) -> Result<bool, StoreError> {
        self.inner.record_status_shards(shards).await
    }

    async fn sweep_queued(
        &self,
        key: &ScheduleKey,
        seen_queued_at: Option<Timestamp>,
        sweep: &Sweep,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner
            .sweep_queued(key, seen_queued_at, sweep, now)
            .await
    }

    /// The QUEUED write lands, but its answer is lost once per item (a crash right after
    /// it, before the send).
    async fn queue_unleased(
        &self,
        key: &ScheduleKey,
        owner: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let won = self.inner.queue_unleased(key, owner, now).await?;
        if won && self.lost.lock().unwrap().insert(key.clone()) {
            return Err(StoreError::Permanent {
                operation: "UpdateItem",
                source: "injected crash after the QUEUED write".into(),
            });
        }
        Ok(won)
    }

    async fn unqueue(
        &self,
        key: &ScheduleKey,
        queued_at: Timestamp,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.unqueue(key, queued_at, reason, now).await
    }
}

/// What the Lambda SQS event source hands the executor for received messages.
pub fn sqs_event(messages: &[ReceivedMessage]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = messages
        .iter()
        .map(|m| {
            let mut record = SqsMessage::default();
            record.message_id = Some(m.message_id.clone());
            record.receipt_handle = Some(m.receipt_handle.clone());
            record.body = Some(m.body.clone());
            record.attributes.insert(
                "ApproximateReceiveCount".into(),
                m.receive_count.to_string(),
            );
            record.event_source = Some("aws:sqs".into());
            record
        })
        .collect();
    event
}

/// A small seeded generator for fault injection (SplitMix64).
#[derive(Debug)]
struct Dice(u64);

impl Dice {
    fn roll(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Counts of the faults a [`ChaosStore`] injected.
#[derive(Debug, Default)]
pub struct Injected {
    /// Calls refused before they reached the store.
    pub before: AtomicU32,
    /// Writes applied, then reported as failed (a crash or timeout after the write).
    pub after: AtomicU32,
}

/// Wraps a store and, while enabled, fails calls at random: before they reach the store
/// (`p_before`), or — for writes — after they were applied (`p_after`), as a timeout
/// after a successful write looks to the caller. Seeded, so a failing case replays.
#[derive(Debug)]
pub struct ChaosStore<S> {
    pub inner: S,
    dice: Mutex<Dice>,
    p_before: f64,
    p_after: f64,
    pub enabled: std::sync::atomic::AtomicBool,
    pub injected: Injected,
}

impl<S> ChaosStore<S> {
    pub fn new(inner: S, seed: u64, p_before: f64, p_after: f64) -> Self {
        Self {
            inner,
            dice: Mutex::new(Dice(seed)),
            p_before,
            p_after,
            enabled: std::sync::atomic::AtomicBool::new(true),
            injected: Injected::default(),
        }
    }

    fn fault(operation: &'static str, when: &str) -> StoreError {
        StoreError::Transient {
            operation,
            source: format!("injected fault {when} {operation}").into(),
        }
    }

    fn before(&self, operation: &'static str) -> Result<(), StoreError> {
        if self.enabled.load(Ordering::Relaxed) && self.dice.lock().unwrap().roll() < self.p_before
        {
            self.injected.before.fetch_add(1, Ordering::Relaxed);
            return Err(Self::fault(operation, "before"));
        }
        Ok(())
    }

    fn after<T>(
        &self,
        operation: &'static str,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if result.is_ok()
            && self.enabled.load(Ordering::Relaxed)
            && self.dice.lock().unwrap().roll() < self.p_after
        {
            self.injected.after.fetch_add(1, Ordering::Relaxed);
            return Err(Self::fault(operation, "after"));
        }
        result
    }
}

impl<S: ScheduleStore> ScheduleStore for ChaosStore<S> {
    fn status_shards(&self) -> u16 {
        self.inner.status_shards()
    }

    async fn create_if_absent(&self, item: &ScheduleItem) -> Result<bool, StoreError> {
        self.before("PutItem")?;
        let result = self.inner.create_if_absent(item).await;
        self.after("PutItem", result)
    }

    async fn materialize(&self, item: &ScheduleItem) -> Result<Materialized, StoreError> {
        self.before("UpdateItem")?;
        let result = self.inner.materialize(item).await;
        self.after("UpdateItem", result)
    }

    async fn cancel(
        &self,
        key: &ScheduleKey,
        cancelling_version: u64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.before("UpdateItem")?;
        let result = self.inner.cancel(key, cancelling_version, reason).await;
        self.after("UpdateItem", result)
    }

    async fn scan_horizon(&self) -> Result<Option<Timestamp>, StoreError> {
        self.before("GetItem")?;
        self.inner.scan_horizon().await
    }

    async fn record_scan_horizon(&self, covered_to: Timestamp) -> Result<bool, StoreError> {
        self.before("UpdateItem")?;
        let result = self.inner.record_scan_horizon(covered_to).await;
        self.after("UpdateItem", result)
    }

    async fn get(&self, key: &ScheduleKey) -> Result<Option<ScheduleItem>, StoreError> {
        self.before("GetItem")?;
        self.inner.get(key).await
    }

    async fn payload(
        &self,
        item: &ScheduleItem,
    ) -> Result<schedule_core::model::Payload, StoreError> {
        // A payload carried on the item needs no request, so no fault can hit it.
        if item.payload_ref.is_some() {
            self.before("GetItem")?;
        }
        self.inner.payload(item).await
    }

    async fn change_status(
        &self,
        key: &ScheduleKey,
        change: &StatusChange,
    ) -> Result<bool, StoreError> {
        self.before("UpdateItem")?;
        let result = self.inner.change_status(key, change).await;
        self.after("UpdateItem", result)
    }

    async fn try_lease(
        &self,
        key: &ScheduleKey,
        status: Status,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.before("UpdateItem")?;
        let result = self.inner.try_lease(key, status, owner, until, now).await;
        self.after("UpdateItem", result)
    }

    async fn query_due_page(
        &self,
        shard: &StatusShard,
        before: Timestamp,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<DueEntry>, StoreError> {
        self.before("Query")?;
        self.inner
            .query_due_page(shard, before, limit, cursor)
            .await
    }

    async fn max_status_shards(&self) -> Result<Option<u16>, StoreError> {
        self.before("GetItem")?;
        self.inner.max_status_shards().await
    }

    async fn record_status_shards(&self, shards: u16) -> Result<bool, StoreError> {
        self.before("UpdateItem")?;
        let result = self.inner.record_status_shards(shards).await;
        self.after("UpdateItem", result)
    }

    async fn sweep_queued(
        &self,
        key: &ScheduleKey,
        seen_queued_at: Option<Timestamp>,
        sweep: &Sweep,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.before("UpdateItem")?;
        let result = self
            .inner
            .sweep_queued(key, seen_queued_at, sweep, now)
            .await;
        self.after("UpdateItem", result)
    }

    async fn queue_unleased(
        &self,
        key: &ScheduleKey,
        owner: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.before("UpdateItem")?;
        let result = self.inner.queue_unleased(key, owner, now).await;
        self.after("UpdateItem", result)
    }

    async fn unqueue(
        &self,
        key: &ScheduleKey,
        queued_at: Timestamp,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.before("UpdateItem")?;
        let result = self.inner.unqueue(key, queued_at, reason, now).await;
        self.after("UpdateItem", result)
    }
}

/// A definitions source that counts its batched reads and, while `failing` is set,
/// answers them as a read outage that outlasted its retries; otherwise the wrapped source.
#[derive(Debug)]
pub struct CountingDefinitions<D> {
    pub inner: D,
    /// `get_many` calls.
    pub batch_reads: AtomicU32,
    /// Keys asked for, over every `get_many` call.
    pub keys_asked: AtomicU32,
    pub failing: AtomicBool,
}

impl<D> CountingDefinitions<D> {
    pub fn new(inner: D) -> Self {
        Self {
            inner,
            batch_reads: AtomicU32::new(0),
            keys_asked: AtomicU32::new(0),
            failing: AtomicBool::new(false),
        }
    }
}

impl<D: DefinitionSource> DefinitionSource for CountingDefinitions<D> {
    async fn scan_page(
        &self,
        segment: u32,
        total_segments: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<ScannedDefinition>, StoreError> {
        self.inner.scan_page(segment, total_segments, cursor).await
    }

    async fn get(
        &self,
        tenant: &TenantId,
        step: &StepId,
    ) -> Result<Option<ScannedDefinition>, StoreError> {
        self.inner.get(tenant, step).await
    }

    async fn put(&self, def: &Definition) -> Result<(), StoreError> {
        self.inner.put(def).await
    }

    async fn get_many(&self, keys: &[DefinitionKey]) -> Result<FetchedDefinitions, StoreError> {
        self.batch_reads.fetch_add(1, Ordering::Relaxed);
        self.keys_asked
            .fetch_add(u32::try_from(keys.len()).unwrap(), Ordering::Relaxed);
        if self.failing.load(Ordering::Relaxed) {
            return Err(StoreError::Transient {
                operation: "BatchGetItem",
                source: "injected outage of the definitions table".into(),
            });
        }
        self.inner.get_many(keys).await
    }
}
