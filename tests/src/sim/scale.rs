//! The scheduler at size: many steps due in one window, through the real scheduler (its
//! scheduled runs every window and the continuations they hand off), on the in-memory twin
//! behind a throughput-limited store that models DynamoDB's per-partition limits and
//! per-call latencies, on a virtual clock (a paused tokio runtime: a simulated half hour
//! runs in seconds of CPU). It stops at the execution queue: each message is recorded with
//! the instant it was sent and its `DelaySeconds`.
//!
//! The model, and what it leaves out:
//! - The schedule table: each partition key (`TENANT#t#DATE#d`) serves at most
//!   `wcu_per_key` write units and `rcu_per_key` read units per second (DynamoDB: 1,000 WCU
//!   and 3,000 RCU per partition; a single partition key cannot exceed them, whatever
//!   adaptive capacity does). Items are under 1 KB: one WCU per write, one RCU per
//!   consistent read. A conditional write whose condition fails still costs its WCU.
//! - The status index: each `status_shard` value serves the same limits. A write that
//!   moves an item out of a shard (PENDING → QUEUED, a cancel) costs one index write on the
//!   shard it leaves, checked before the write (DynamoDB throttles the table write when an
//!   index cannot take it); the matching write on the shard it enters is counted, not
//!   checked (its shards see the same rate). A keys-only query page costs
//!   `ceil(entries × 100 B / 4 KB) × 0.5` RCU on its shard.
//! - The definitions table: `get_many` costs one RCU per key on the tenant's partition
//!   key (`TENANT#t`), at `batch_get_latency` per 100 keys, 8 requests in flight.
//! - Over a limit in the current second: a throttling error (transient), which the retry
//!   layer handles. Limits are per whole second of virtual time (no burst credit).
//! - SQS: `SendMessageBatch` takes `send_latency`; at most `sqs_batches_per_s` per second
//!   (standard queues: nearly unlimited, so unlimited by default).
//! - Lambda: the scheduled run every `window` with a `timeout`; continuations start
//!   `continuation_start` after they are sent, at most `continuation_concurrency` at once.
//!
//! `SCALE_STEPS` (default 1,000,000 for the ignored test, 5,000 in CI), `SCALE_TENANTS`
//! (1 = one huge tenant), `SCALE_SHARDS` (16), `SEND_CONCURRENCY` (16).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use schedule_core::adapters::clock::VirtualClock;
use schedule_core::adapters::memory::{InMemoryDefinitionSource, InMemoryScheduleStore};
use schedule_core::app::ExecutionMessage;
use schedule_core::app::schedule::{Continuation, ScheduleSettings, Scheduler};
use schedule_core::error::{QueueError, StoreError};
use schedule_core::metrics::Metrics;
use schedule_core::model::{
    Definition, ScheduleItem, ScheduleKey, Status, StatusChange, StatusShard, StepId, TenantId,
    Timestamp,
};
use schedule_core::ports::{
    Clock, Cursor, DefinitionKey, DefinitionSource, DispatchQueue, DueEntry, FetchedDefinitions,
    Materialized, OutgoingMessage, Page, ReceivedMessage, ScannedDefinition, ScheduleStore,
    SendReport, Sweep,
};
use serde_json::json;

/// DynamoDB, SQS and Lambda as the simulation sees them.
#[derive(Debug, Clone)]
pub struct Limits {
    pub wcu_per_key: f64,
    pub rcu_per_key: f64,
    pub write_latency: Duration,
    pub read_latency: Duration,
    pub query_latency: Duration,
    pub batch_get_latency: Duration,
    pub send_latency: Duration,
    pub sqs_batches_per_s: Option<f64>,
    pub timeout: Duration,
    pub continuation_concurrency: usize,
    pub continuation_start: Duration,
    /// How long before its due instant a message must be on the queue for the executor
    /// to send the trigger on time (the delay is rounded down, and the event source polls).
    pub executor_lead: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            wcu_per_key: 1000.0,
            rcu_per_key: 3000.0,
            write_latency: Duration::from_millis(6),
            read_latency: Duration::from_millis(4),
            query_latency: Duration::from_millis(12),
            batch_get_latency: Duration::from_millis(10),
            send_latency: Duration::from_millis(15),
            sqs_batches_per_s: None,
            timeout: Duration::from_secs(120),
            continuation_concurrency: 16,
            continuation_start: Duration::from_secs(1),
            executor_lead: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScaleConfig {
    pub steps: usize,
    /// 1: one huge tenant; otherwise the steps spread evenly over this many tenants.
    pub tenants: usize,
    pub shards: u16,
    pub send_concurrency: usize,
    pub limits: Limits,
}

fn env_usize(name: &str, default: usize) -> Result<usize, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|e| format!("{name}={v:?}: not a whole number ({e})")),
        Err(_) => Ok(default),
    }
}

impl ScaleConfig {
    /// From `SCALE_STEPS`, `SCALE_TENANTS`, `SCALE_SHARDS` and `SEND_CONCURRENCY`.
    pub fn from_env(steps: usize, tenants: usize) -> Result<Self, String> {
        let steps = env_usize("SCALE_STEPS", steps)?;
        Ok(Self {
            steps,
            tenants: env_usize("SCALE_TENANTS", tenants)?.clamp(1, steps.max(1)),
            shards: env_usize("SCALE_SHARDS", 16)?.clamp(1, 100) as u16,
            send_concurrency: env_usize("SEND_CONCURRENCY", 16)?.max(1),
            limits: Limits::default(),
        })
    }
}

/// Fixed one-second windows of capacity per key.
#[derive(Debug, Default)]
struct Buckets(Mutex<HashMap<String, (i64, f64)>>);

impl Buckets {
    /// Takes `cost` units from `key`'s current second; `false` (nothing taken) when that
    /// would pass `cap`.
    fn take(&self, key: &str, now: DateTime<Utc>, cost: f64, cap: f64) -> bool {
        let second = now.timestamp();
        let mut map = self.0.lock().unwrap();
        let slot = map.entry(key.to_owned()).or_insert((second, 0.0));
        if slot.0 != second {
            *slot = (second, 0.0);
        }
        if slot.1 + cost > cap {
            return false;
        }
        slot.1 += cost;
        true
    }
}

/// What the store was asked, and refused.
#[derive(Debug, Default)]
pub struct Counters {
    pub table_writes: AtomicU64,
    pub table_reads: AtomicU64,
    pub index_writes: AtomicU64,
    pub queries: AtomicU64,
    pub definition_reads: AtomicU64,
    pub table_throttles: AtomicU64,
    pub index_throttles: AtomicU64,
    pub definition_throttles: AtomicU64,
    pub sqs_throttles: AtomicU64,
    pub sends: AtomicU64,
}

fn throttled(operation: &'static str, key: &str) -> StoreError {
    StoreError::Transient {
        operation,
        source: format!("ProvisionedThroughputExceededException: partition key {key}").into(),
    }
}

/// The schedule table behind DynamoDB's per-partition limits and latencies.
#[derive(Debug, Clone)]
pub struct ThrottledStore {
    pub inner: Arc<InMemoryScheduleStore>,
    pub clock: VirtualClock,
    pub limits: Limits,
    pub counters: Arc<Counters>,
    table: Arc<Buckets>,
    index: Arc<Buckets>,
}

impl ThrottledStore {
    pub fn new(inner: Arc<InMemoryScheduleStore>, clock: VirtualClock, limits: Limits) -> Self {
        Self {
            inner,
            clock,
            limits,
            counters: Arc::default(),
            table: Arc::default(),
            index: Arc::default(),
        }
    }

    /// One write to `key`: its latency, its WCU, and the index write on the shard it may
    /// leave; `Err` when a partition is over its limit this second.
    async fn write(&self, key: &ScheduleKey, operation: &'static str) -> Result<(), StoreError> {
        self.clock.sleep(self.limits.write_latency).await;
        let now = self.clock.now();
        let shard = self.inner.get(key).await?.and_then(|i| i.status_shard);
        if let Some(shard) = &shard
            && !self
                .index
                .take(shard.as_str(), now, 1.0, self.limits.wcu_per_key)
        {
            self.counters
                .index_throttles
                .fetch_add(1, Ordering::Relaxed);
            return Err(throttled(operation, shard.as_str()));
        }
        if !self.table.take(&key.pk, now, 1.0, self.limits.wcu_per_key) {
            self.counters
                .table_throttles
                .fetch_add(1, Ordering::Relaxed);
            return Err(throttled(operation, &key.pk));
        }
        self.counters.table_writes.fetch_add(1, Ordering::Relaxed);
        if shard.is_some() {
            self.counters.index_writes.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Counts the index write on the shard an item entered (not limited; see the module).
    fn entered(&self, before: Option<&StatusShard>, after: Option<&StatusShard>) {
        if after.is_some() && before != after {
            self.counters.index_writes.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn shard_of(&self, key: &ScheduleKey) -> Option<StatusShard> {
        self.inner
            .get(key)
            .await
            .ok()
            .flatten()
            .and_then(|i| i.status_shard)
    }

    async fn written<T>(
        &self,
        key: &ScheduleKey,
        operation: &'static str,
        op: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.write(key, operation).await?;
        let before = self.shard_of(key).await;
        let out = op.await;
        let after = self.shard_of(key).await;
        self.entered(before.as_ref(), after.as_ref());
        out
    }
}

impl ScheduleStore for ThrottledStore {
    fn status_shards(&self) -> u16 {
        self.inner.status_shards()
    }

    async fn create_if_absent(&self, item: &ScheduleItem) -> Result<bool, StoreError> {
        self.written(&item.key, "PutItem", self.inner.create_if_absent(item))
            .await
    }

    async fn materialize(&self, item: &ScheduleItem) -> Result<Materialized, StoreError> {
        self.written(&item.key, "UpdateItem", self.inner.materialize(item))
            .await
    }

    async fn cancel(
        &self,
        key: &ScheduleKey,
        cancelling_version: u64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.written(
            key,
            "UpdateItem",
            self.inner.cancel(key, cancelling_version, reason),
        )
        .await
    }

    async fn scan_horizon(&self) -> Result<Option<Timestamp>, StoreError> {
        self.clock.sleep(self.limits.read_latency).await;
        self.inner.scan_horizon().await
    }

    async fn record_scan_horizon(&self, covered_to: Timestamp) -> Result<bool, StoreError> {
        self.clock.sleep(self.limits.write_latency).await;
        self.inner.record_scan_horizon(covered_to).await
    }

    async fn get(&self, key: &ScheduleKey) -> Result<Option<ScheduleItem>, StoreError> {
        self.clock.sleep(self.limits.read_latency).await;
        if !self.table.take(
            &format!("{}/r", key.pk),
            self.clock.now(),
            1.0,
            self.limits.rcu_per_key,
        ) {
            self.counters
                .table_throttles
                .fetch_add(1, Ordering::Relaxed);
            return Err(throttled("GetItem", &key.pk));
        }
        self.counters.table_reads.fetch_add(1, Ordering::Relaxed);
        self.inner.get(key).await
    }

    async fn change_status(
        &self,
        key: &ScheduleKey,
        change: &StatusChange,
    ) -> Result<bool, StoreError> {
        self.written(key, "UpdateItem", self.inner.change_status(key, change))
            .await
    }

    async fn try_lease(
        &self,
        key: &ScheduleKey,
        status: Status,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        // A lease moves no index key: the table's WCU only.
        self.clock.sleep(self.limits.write_latency).await;
        if !self
            .table
            .take(&key.pk, self.clock.now(), 1.0, self.limits.wcu_per_key)
        {
            self.counters
                .table_throttles
                .fetch_add(1, Ordering::Relaxed);
            return Err(throttled("UpdateItem", &key.pk));
        }
        self.counters.table_writes.fetch_add(1, Ordering::Relaxed);
        self.inner.try_lease(key, status, owner, until, now).await
    }

    async fn query_due_page(
        &self,
        shard: &StatusShard,
        before: Timestamp,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<DueEntry>, StoreError> {
        self.clock.sleep(self.limits.query_latency).await;
        let page = self
            .inner
            .query_due_page(shard, before, limit, cursor)
            .await?;
        // Keys-only entries of about 100 bytes, eventually consistent: half an RCU per 4 KB.
        let rcu = ((page.items.len() * 100).div_ceil(4096)).max(1) as f64 * 0.5;
        if !self.index.take(
            &format!("{}/r", shard.as_str()),
            self.clock.now(),
            rcu,
            self.limits.rcu_per_key,
        ) {
            self.counters
                .index_throttles
                .fetch_add(1, Ordering::Relaxed);
            return Err(throttled("Query", shard.as_str()));
        }
        self.counters.queries.fetch_add(1, Ordering::Relaxed);
        Ok(page)
    }

    async fn max_status_shards(&self) -> Result<Option<u16>, StoreError> {
        self.clock.sleep(self.limits.read_latency).await;
        self.inner.max_status_shards().await
    }

    async fn record_status_shards(&self, shards: u16) -> Result<bool, StoreError> {
        self.clock.sleep(self.limits.write_latency).await;
        self.inner.record_status_shards(shards).await
    }

    async fn sweep_queued(
        &self,
        key: &ScheduleKey,
        seen_queued_at: Option<Timestamp>,
        sweep: &Sweep,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.written(
            key,
            "UpdateItem",
            self.inner.sweep_queued(key, seen_queued_at, sweep, now),
        )
        .await
    }

    async fn queue_unleased(
        &self,
        key: &ScheduleKey,
        owner: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.written(
            key,
            "UpdateItem",
            self.inner.queue_unleased(key, owner, now),
        )
        .await
    }

    async fn unqueue(
        &self,
        key: &ScheduleKey,
        queued_at: Timestamp,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.written(
            key,
            "UpdateItem",
            self.inner.unqueue(key, queued_at, reason, now),
        )
        .await
    }
}

/// The definitions table behind the same limits (partition key `TENANT#t`).
#[derive(Debug, Clone)]
pub struct ThrottledDefinitions {
    pub inner: Arc<InMemoryDefinitionSource>,
    pub clock: VirtualClock,
    pub limits: Limits,
    pub counters: Arc<Counters>,
    buckets: Arc<Buckets>,
}

impl DefinitionSource for ThrottledDefinitions {
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
        self.clock.sleep(self.limits.read_latency).await;
        self.inner.get(tenant, step).await
    }

    async fn put(&self, def: &Definition) -> Result<(), StoreError> {
        self.inner.put(def).await
    }

    async fn get_many(&self, keys: &[DefinitionKey]) -> Result<FetchedDefinitions, StoreError> {
        // 100 keys per BatchGetItem, 8 in flight.
        let requests = keys.len().div_ceil(100) as u32;
        self.clock
            .sleep(self.limits.batch_get_latency * requests.div_ceil(8).max(1))
            .await;
        let mut per_tenant: HashMap<&str, f64> = HashMap::new();
        for (tenant, _) in keys {
            *per_tenant.entry(tenant.as_str()).or_default() += 1.0;
        }
        let now = self.clock.now();
        for (tenant, rcu) in per_tenant {
            if !self.buckets.take(tenant, now, rcu, self.limits.rcu_per_key) {
                self.counters
                    .definition_throttles
                    .fetch_add(1, Ordering::Relaxed);
                return Err(throttled("BatchGetItem", tenant));
            }
        }
        self.counters
            .definition_reads
            .fetch_add(keys.len() as u64, Ordering::Relaxed);
        self.inner.get_many(keys).await
    }
}

/// One message on the execution queue.
#[derive(Debug, Clone, Copy)]
pub struct Sent {
    pub key_hash: u64,
    pub scheduled_time: Timestamp,
    pub sent_at: DateTime<Utc>,
    pub delay: Duration,
}

/// The execution queue: records what is sent, with its latency and optional rate limit.
#[derive(Debug, Clone)]
pub struct RecordingQueue {
    pub clock: VirtualClock,
    pub limits: Limits,
    pub counters: Arc<Counters>,
    pub sent: Arc<Mutex<Vec<Sent>>>,
    buckets: Arc<Buckets>,
}

impl DispatchQueue for RecordingQueue {
    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<SendReport, QueueError> {
        self.clock.sleep(self.limits.send_latency).await;
        let now = self.clock.now();
        if let Some(cap) = self.limits.sqs_batches_per_s
            && !self.buckets.take("sqs", now, 1.0, cap)
        {
            self.counters.sqs_throttles.fetch_add(1, Ordering::Relaxed);
            return Ok(SendReport {
                sent: Vec::new(),
                failed: messages
                    .iter()
                    .map(|m| (m.id.clone(), "RequestThrottled".to_owned()))
                    .collect(),
            });
        }
        self.counters.sends.fetch_add(1, Ordering::Relaxed);
        let mut sent = self.sent.lock().unwrap();
        for m in messages {
            let parsed =
                ExecutionMessage::parse(&m.body).map_err(|e| QueueError::Invalid(e.to_string()))?;
            sent.push(Sent {
                key_hash: schedule_core::retry::seed_of(&m.id),
                scheduled_time: parsed.0.scheduled_time,
                sent_at: now,
                delay: m.delay,
            });
        }
        Ok(SendReport {
            sent: messages.iter().map(|m| m.id.clone()).collect(),
            failed: Vec::new(),
        })
    }

    async fn receive(
        &self,
        _max: u32,
        _wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        Ok(Vec::new())
    }

    async fn delete(&self, _receipt_handle: &str) -> Result<(), QueueError> {
        Ok(())
    }
}

/// Continuation bodies with the instant each was sent, oldest first.
pub type Waiting = Arc<Mutex<VecDeque<(DateTime<Utc>, String)>>>;

/// The continuation queue: bodies with the instant they were sent.
#[derive(Debug, Clone)]
pub struct ContinuationQueue {
    pub clock: VirtualClock,
    pub waiting: Waiting,
    pub sent: Arc<AtomicU64>,
}

impl DispatchQueue for ContinuationQueue {
    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<SendReport, QueueError> {
        let now = self.clock.now();
        let mut waiting = self.waiting.lock().unwrap();
        for m in messages {
            waiting.push_back((now, m.body.clone()));
        }
        self.sent
            .fetch_add(messages.len() as u64, Ordering::Relaxed);
        Ok(SendReport {
            sent: messages.iter().map(|m| m.id.clone()).collect(),
            failed: Vec::new(),
        })
    }

    async fn receive(
        &self,
        _max: u32,
        _wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        Ok(Vec::new())
    }

    async fn delete(&self, _receipt_handle: &str) -> Result<(), QueueError> {
        Ok(())
    }
}

/// Either queue, so one scheduler type sends to both.
#[derive(Debug, Clone)]
pub enum SimQueue {
    Execution(RecordingQueue),
    Continuations(ContinuationQueue),
}

impl DispatchQueue for SimQueue {
    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<SendReport, QueueError> {
        match self {
            SimQueue::Execution(q) => q.send_batch(messages).await,
            SimQueue::Continuations(q) => q.send_batch(messages).await,
        }
    }

    async fn receive(&self, max: u32, wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        match self {
            SimQueue::Execution(q) => q.receive(max, wait).await,
            SimQueue::Continuations(q) => q.receive(max, wait).await,
        }
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        match self {
            SimQueue::Execution(q) => q.delete(receipt_handle).await,
            SimQueue::Continuations(q) => q.delete(receipt_handle).await,
        }
    }
}

/// What the simulation measured.
#[derive(Debug, Clone, Default)]
pub struct ScaleReport {
    pub steps: usize,
    pub tenants: usize,
    pub sent: usize,
    pub duplicates: usize,
    /// Still PENDING or QUEUED without a message at the end.
    pub unsent: usize,
    pub missed: usize,
    pub on_time: usize,
    pub late: usize,
    pub max_lateness: Duration,
    pub p99_lateness: Duration,
    /// When the last message was sent, after the window opened.
    pub last_sent_after_window: Duration,
    pub scheduled_runs: usize,
    pub continuations: u64,
    pub table_writes: u64,
    pub index_writes: u64,
    pub table_reads: u64,
    pub definition_reads: u64,
    pub queries: u64,
    pub sends: u64,
    pub table_throttles: u64,
    pub index_throttles: u64,
    pub definition_throttles: u64,
    pub sqs_throttles: u64,
    /// Which limit bound the run, in words.
    pub bound_by: String,
}

impl ScaleReport {
    pub fn writes_per_dispatched_step(&self) -> f64 {
        self.table_writes as f64 / self.sent.max(1) as f64
    }

    pub fn text(&self) -> String {
        format!(
            "steps {} over {} tenant(s): sent {} (duplicates {}), unsent {}, missed {}\n\
             on time {} ({:.2} %), late {}, p99 lateness {:.1?}, max lateness {:.1?}; last send {:.1?} after the window opened\n\
             scheduled runs {}, continuations {}\n\
             table writes {} ({:.2} per dispatched step), index writes {}, table reads {}, definition reads {}, queries {}, SendMessageBatch {}\n\
             throttles: table {}, index {}, definitions {}, SQS {}\n\
             bound by: {}",
            self.steps,
            self.tenants,
            self.sent,
            self.duplicates,
            self.unsent,
            self.missed,
            self.on_time,
            100.0 * self.on_time as f64 / self.steps.max(1) as f64,
            self.late,
            self.p99_lateness,
            self.max_lateness,
            self.last_sent_after_window,
            self.scheduled_runs,
            self.continuations,
            self.table_writes,
            self.writes_per_dispatched_step(),
            self.index_writes,
            self.table_reads,
            self.definition_reads,
            self.queries,
            self.sends,
            self.table_throttles,
            self.index_throttles,
            self.definition_throttles,
            self.sqs_throttles,
            self.bound_by,
        )
    }
}

type SimScheduler = Scheduler<ThrottledStore, SimQueue, ThrottledDefinitions, VirtualClock>;

/// When the scheduled runs start: every window from `epoch`; the steps are due in the
/// window that opens one window later.
fn epoch() -> DateTime<Utc> {
    "2026-11-26T09:55:00Z".parse().unwrap_or_default()
}

/// Runs the scenario on a fresh paused runtime.
pub fn run_scale(config: &ScaleConfig) -> ScaleReport {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    // Local tasks: the scheduler's futures need not be `Send` on one thread.
    tokio::task::LocalSet::new().block_on(&runtime, scenario(config))
}

async fn scenario(config: &ScaleConfig) -> ScaleReport {
    let clock = VirtualClock::new(epoch());
    let settings = ScheduleSettings {
        send_concurrency: config.send_concurrency,
        ..ScheduleSettings::default()
    };
    let window = settings.window;
    let opens = epoch() + chrono::Duration::from_std(window).unwrap();
    let memory = Arc::new(InMemoryScheduleStore::new(config.shards));
    let definitions = Arc::new(InMemoryDefinitionSource::new());
    seed(config, &memory, &definitions, opens).await;

    let counters = Arc::new(Counters::default());
    let limits = config.limits.clone();
    let store = ThrottledStore {
        counters: counters.clone(),
        ..ThrottledStore::new(memory.clone(), clock, limits.clone())
    };
    let sent = Arc::new(Mutex::new(Vec::new()));
    let continuations = ContinuationQueue {
        clock,
        waiting: Arc::default(),
        sent: Arc::default(),
    };
    let scheduler: Arc<SimScheduler> = Arc::new(Scheduler {
        store,
        queue: SimQueue::Execution(RecordingQueue {
            clock,
            limits: limits.clone(),
            counters: counters.clone(),
            sent: sent.clone(),
            buckets: Arc::default(),
        }),
        continuation: Some(SimQueue::Continuations(continuations.clone())),
        definitions: ThrottledDefinitions {
            inner: definitions,
            clock,
            limits: limits.clone(),
            counters: counters.clone(),
            buckets: Arc::default(),
        },
        clock,
        settings,
    });

    // Scheduled runs every window, from one window before the steps' window to two after.
    let metrics = Arc::new(Metrics::new("scheduler_v2"));
    let runs = 4;
    let mut tasks = Vec::new();
    for n in 0..runs {
        let (scheduler, metrics) = (scheduler.clone(), metrics.clone());
        let at = epoch() + chrono::Duration::from_std(window * n).unwrap();
        tasks.push(tokio::task::spawn_local(async move {
            clock.sleep_until(at).await;
            let deadline = at + chrono::Duration::from_std(limits.timeout).unwrap();
            let _ = scheduler
                .run(&format!("run-{n}"), Some(deadline), &metrics)
                .await;
        }));
    }
    // The continuation event source: polls every second, starts up to its concurrency.
    let end = epoch() + chrono::Duration::from_std(window * runs + limits.timeout).unwrap();
    let poller = {
        let (scheduler, metrics, limits) =
            (scheduler.clone(), metrics.clone(), config.limits.clone());
        let waiting = continuations.waiting.clone();
        tokio::task::spawn_local(async move {
            let running = Arc::new(AtomicU64::new(0));
            let mut started = 0u64;
            while clock.now() < end {
                loop {
                    if running.load(Ordering::SeqCst) as usize >= limits.continuation_concurrency {
                        break;
                    }
                    let ready = {
                        let mut w = waiting.lock().unwrap();
                        let now = clock.now();
                        match w.front() {
                            Some((at, _))
                                if *at
                                    + chrono::Duration::from_std(limits.continuation_start)
                                        .unwrap()
                                    <= now =>
                            {
                                w.pop_front()
                            }
                            _ => None,
                        }
                    };
                    let Some((_, body)) = ready else { break };
                    let Ok(c) = Continuation::parse(&body) else {
                        continue;
                    };
                    started += 1;
                    running.fetch_add(1, Ordering::SeqCst);
                    let (scheduler, metrics, running) =
                        (scheduler.clone(), metrics.clone(), running.clone());
                    let deadline =
                        clock.now() + chrono::Duration::from_std(limits.timeout).unwrap();
                    let id = format!("continuation-{started}");
                    tokio::task::spawn_local(async move {
                        let _ = scheduler.resume(&id, Some(deadline), &metrics, &c).await;
                        running.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                clock.sleep(Duration::from_secs(1)).await;
            }
        })
    };
    for t in tasks {
        let _ = t.await;
    }
    let _ = poller.await;
    clock.sleep_until(end).await;

    let items = memory.items();
    let sent = sent.lock().unwrap().clone();
    figures(
        config,
        &items,
        &sent,
        &counters,
        continuations.sent.load(Ordering::Relaxed),
        opens,
        runs as usize,
    )
}

/// Writes every step's definition and PENDING occurrence, due evenly over the window that
/// opens at `opens`.
async fn seed(
    config: &ScaleConfig,
    memory: &InMemoryScheduleStore,
    definitions: &InMemoryDefinitionSource,
    opens: DateTime<Utc>,
) {
    let window_s = 300u64;
    let created = Timestamp::from_datetime(epoch());
    for i in 0..config.steps {
        let tenant = format!("tenant-{:05}", i % config.tenants);
        let at = Timestamp::from_datetime(
            opens
                + chrono::Duration::seconds(
                    (i as u64 * window_s / config.steps.max(1) as u64) as i64,
                ),
        );
        let def = Definition::from_json(&json!({
            "tenant_id": tenant, "device_workflow_step_id": format!("step-{i:07}"),
            "workflow_id": "w", "device_id": format!("d-{i}"),
            "schedule": {"type": "once", "at": at.to_string()}}))
        .unwrap();
        definitions.put(&def).await.unwrap();
        let item = ScheduleItem::pending(
            &def,
            at,
            created,
            Duration::from_secs(86_400),
            config.shards,
        );
        memory.create_if_absent(&item).await.unwrap();
    }
}

fn figures(
    config: &ScaleConfig,
    items: &[ScheduleItem],
    sent: &[Sent],
    counters: &Counters,
    continuations: u64,
    opens: DateTime<Utc>,
    runs: usize,
) -> ScaleReport {
    let lead = chrono::Duration::from_std(config.limits.executor_lead).unwrap();
    let mut seen = HashSet::new();
    let mut duplicates = 0;
    let mut lateness = Vec::new();
    let mut last = opens;
    for s in sent {
        if !seen.insert(s.key_hash) {
            duplicates += 1;
            continue;
        }
        let due = s.scheduled_time.as_datetime();
        let late = (s.sent_at + lead - due).max(chrono::Duration::zero());
        lateness.push(late.to_std().unwrap_or_default());
        last = last.max(s.sent_at);
    }
    lateness.sort();
    let on_time = lateness.iter().filter(|l| l.is_zero()).count();
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let unsent = items.iter().filter(|i| i.status == Status::Pending).count()
        + items
            .iter()
            .filter(|i| {
                i.status == Status::Queued
                    && !seen.contains(&schedule_core::retry::seed_of(&i.key.to_string()))
            })
            .count();
    let mut report = ScaleReport {
        steps: config.steps,
        tenants: config.tenants,
        sent: seen.len(),
        duplicates,
        unsent,
        missed: items.iter().filter(|i| i.status == Status::Missed).count(),
        on_time,
        late: lateness.len() - on_time,
        max_lateness: lateness.last().copied().unwrap_or_default(),
        p99_lateness: lateness
            .get((lateness.len() * 99 / 100).min(lateness.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default(),
        last_sent_after_window: (last - opens).to_std().unwrap_or_default(),
        scheduled_runs: runs,
        continuations,
        table_writes: load(&counters.table_writes),
        index_writes: load(&counters.index_writes),
        table_reads: load(&counters.table_reads),
        definition_reads: load(&counters.definition_reads),
        queries: load(&counters.queries),
        sends: load(&counters.sends),
        table_throttles: load(&counters.table_throttles),
        index_throttles: load(&counters.index_throttles),
        definition_throttles: load(&counters.definition_throttles),
        sqs_throttles: load(&counters.sqs_throttles),
        bound_by: String::new(),
    };
    report.bound_by = bound_by(config, &report);
    report
}

/// Names the limit that bound the run: the throttled resource that refused most, or, with
/// no throttle, the per-invocation pipeline (latency × concurrency).
fn bound_by(config: &ScaleConfig, r: &ScaleReport) -> String {
    let l = &config.limits;
    let per_batch = l.write_latency + l.send_latency;
    let pipeline = config.send_concurrency as f64 * 10.0 / per_batch.as_secs_f64();
    let throttles = [
        (
            r.table_throttles,
            "table partition key throughput (1,000 WCU/s per TENANT#t#DATE#d)",
        ),
        (
            r.index_throttles,
            "status index shard throughput (1,000 WCU/s per status_shard value)",
        ),
        (
            r.definition_throttles,
            "definitions partition key reads (3,000 RCU/s per TENANT#t)",
        ),
        (r.sqs_throttles, "SQS SendMessageBatch rate"),
    ];
    match throttles.iter().max_by_key(|(n, _)| *n) {
        Some((n, what)) if *n > 0 => format!("{what}: {n} throttled calls"),
        _ => format!(
            "no throttle; each invocation's pipeline: {} batches in flight × 10 / {:?} per batch ≈ {pipeline:.0} steps/s, continuations up to {} at once",
            config.send_concurrency, per_batch, l.continuation_concurrency
        ),
    }
}
