//! The embedded twin: in-process stores and queues with the semantics of DynamoDB and SQS
//! that the use cases rely on — conditional writes that lose the same way, a sparse
//! sharded index, parallel scan segments, per-message delays, visibility timeouts,
//! receive counts, redrive to a DLQ after `maxReceiveCount`, FIFO deduplication.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::adapters::dynamo;
use crate::error::{QueueError, StoreError};
use crate::limits::{SQS_MAX_BATCH, SQS_MAX_DELAY_SECONDS, SQS_MAX_MESSAGE_BYTES, SQS_MAX_RECEIVE};
use crate::model::{
    Definition, MODE_ATTR, MODE_SK, Payload, ScheduleItem, ScheduleKey, Status, StatusChange,
    StatusShard, StepId, TenantId, TenantMode, TenantSetting, Timestamp, TriggerMessage, mode_key,
};
use crate::ports::{
    ActionSink, Clock, Cursor, DefinitionKey, DefinitionSource, DispatchQueue, DueEntry,
    FetchedDefinitions, InvalidDefinition, Materialized, OutgoingMessage, Page, ReceivedMessage,
    ScannedDefinition, ScheduleStore, SendReport, Sweep, TenantModes,
};
use crate::usage::{self, Consistency, OpUsage, Usage};

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; keep serving it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type IndexKey = (StatusShard, Timestamp, ScheduleKey);

#[derive(Debug, Default)]
struct Table {
    items: BTreeMap<ScheduleKey, ScheduleItem>,
    /// The sparse GSI: only items that carry `status_shard`.
    index: BTreeSet<IndexKey>,
    /// The scanner's state item (`covered_to`), kept apart from the occurrences.
    scan_horizon: Option<Timestamp>,
    /// The same item's `max_status_shards`.
    max_status_shards: Option<u16>,
    /// Payload items (`PAYLOAD#` keys beside the occurrences): the payload and its billed
    /// size.
    payloads: BTreeMap<ScheduleKey, (Payload, u64)>,
    /// Index changes not yet visible, when the index lags the table.
    lag: Option<LaggingIndex>,
}

/// How far the sparse index may lag the table, as a GSI does: each change to the index
/// becomes visible to queries after a delay drawn from `[0, max]` by a generator seeded
/// with `seed`, in the order the table made them for any one item. Reads of the table
/// itself (`get`, conditional writes) are never stale.
#[derive(Debug, Clone)]
pub struct IndexLag {
    pub max: Duration,
    pub seed: u64,
    /// The time the delays run on.
    pub clock: Arc<dyn ClockDebug>,
}

#[derive(Debug)]
struct LaggingIndex {
    settings: IndexLag,
    rng: u64,
    seq: u64,
    /// `(visible_at, seq)` → `(insert?, entry)`.
    pending: BTreeMap<(DateTime<Utc>, u64), (bool, IndexKey)>,
    /// The latest `visible_at` pending per item, so one item's changes keep their order.
    latest: HashMap<ScheduleKey, DateTime<Utc>>,
}

impl LaggingIndex {
    /// SplitMix64: a delay in `[0, max]`, in milliseconds.
    fn next_delay(&mut self) -> chrono::Duration {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let max_ms = u64::try_from(self.settings.max.as_millis()).unwrap_or(u64::MAX);
        let ms = if max_ms == 0 { 0 } else { z % (max_ms + 1) };
        chrono::Duration::milliseconds(i64::try_from(ms).unwrap_or(i64::MAX))
    }
}

impl Table {
    fn index_key(item: &ScheduleItem) -> Option<IndexKey> {
        item.status_shard
            .clone()
            .map(|s| (s, item.scheduled_time, item.key.clone()))
    }

    /// Adds (`insert`) or removes an index entry: at once, or after the lag.
    fn index_change(&mut self, insert: bool, ix: IndexKey) {
        let Some(lag) = self.lag.as_mut() else {
            if insert {
                self.index.insert(ix);
            } else {
                self.index.remove(&ix);
            }
            return;
        };
        let now = lag.settings.clock.now();
        let mut visible_at = now + lag.next_delay();
        if let Some(latest) = lag.latest.get(&ix.2) {
            visible_at = visible_at.max(*latest);
        }
        lag.latest.insert(ix.2.clone(), visible_at);
        lag.seq += 1;
        lag.pending.insert((visible_at, lag.seq), (insert, ix));
    }

    /// Applies the index changes whose time has come (a no-op without lag).
    fn settle_index(&mut self) {
        let Some(lag) = self.lag.as_mut() else {
            return;
        };
        let now = lag.settings.clock.now();
        while let Some(entry) = lag.pending.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let ((at, _), (insert, ix)) = entry.remove_entry();
            if lag.latest.get(&ix.2) == Some(&at) {
                lag.latest.remove(&ix.2);
            }
            if insert {
                self.index.insert(ix);
            } else {
                self.index.remove(&ix);
            }
        }
    }

    /// Replaces the stored item with `f` applied to it, keeping the index in step.
    fn update(&mut self, key: &ScheduleKey, f: impl FnOnce(&mut ScheduleItem)) {
        let Some(item) = self.items.get_mut(key) else {
            return;
        };
        let before = Table::index_key(item);
        f(item);
        let after = Table::index_key(item);
        if before == after {
            return;
        }
        if let Some(ix) = before {
            self.index_change(false, ix);
        }
        if let Some(ix) = after {
            self.index_change(true, ix);
        }
    }
}

/// The part of an occurrence that comes from its definition and that a newer version
/// replaces (the reference semantics of `materialize`; DynamoDB does the same in one
/// conditional update). Bookkeeping (`created_at`, retries, leases) is kept.
fn take_definition_fields(stored: &mut ScheduleItem, from: &ScheduleItem, shards: u16) {
    stored.status = Status::Pending;
    stored.status_shard = Some(StatusShard::new(
        Status::Pending,
        crate::model::shard_of(&stored.key, shards),
    ));
    stored.device_id = from.device_id.clone();
    stored.workflow_id = from.workflow_id.clone();
    stored.definition_version = from.definition_version;
    stored.payload = from.payload.clone();
    stored.payload_ref = from.payload_ref.clone();
    stored.misfire_grace = from.misfire_grace;
    stored.ttl = from.ttl;
    stored.validation_result = from
        .validation_result
        .filter(|v| *v == crate::model::Validation::Valid);
    stored.last_error = None;
    stored.cancelled_by_version = None;
}

/// The schedule table in memory.
#[derive(Debug)]
pub struct InMemoryScheduleStore {
    shards: AtomicU16,
    table: Mutex<Table>,
    /// What its requests would consume on DynamoDB, from its own items' sizes.
    usage: Arc<Usage>,
    written_payloads: dynamo::WrittenPayloads,
    /// A shard count known to be recorded (0: none), as the DynamoDB adapter keeps.
    known_shards: AtomicU16,
    /// The complete segments of each fanned-out scan run.
    scan_runs: Mutex<HashMap<String, BTreeSet<u32>>>,
}

/// Billed size of an occurrence: as the DynamoDB adapter writes it.
fn size_of(item: &ScheduleItem) -> u64 {
    dynamo::schedule_item_size(item)
}

/// What one write of an occurrence consumes: on the larger of the item `before` (`None`:
/// absent) and `after` (the item as written, or as it would have been written when the
/// condition failed); index writes only when it was `written`.
fn write_usage(before: Option<&ScheduleItem>, after: &ScheduleItem, written: bool) -> OpUsage {
    let wru = usage::update_write_units(before.map(size_of), size_of(after));
    let index = if written {
        usage::index_writes(
            before.and_then(|b| b.status_shard.as_ref()),
            after.status_shard.as_ref(),
            false,
        )
    } else {
        0
    };
    OpUsage::write(wru, index)
}

/// What a conditional write that found the item missing or unsuitable consumes.
fn refused_write(stored: Option<&ScheduleItem>) -> OpUsage {
    OpUsage::write(usage::write_units(stored.map_or(0, size_of)), 0)
}

impl InMemoryScheduleStore {
    pub fn new(shards: u16) -> Self {
        Self {
            shards: AtomicU16::new(shards.max(1)),
            table: Mutex::new(Table::default()),
            usage: Arc::new(Usage::new()),
            written_payloads: dynamo::WrittenPayloads::default(),
            known_shards: AtomicU16::new(0),
            scan_runs: Mutex::new(HashMap::new()),
        }
    }

    /// The same store tallying into `usage` (shared with other parts, say).
    pub fn with_usage(self, usage: Arc<Usage>) -> Self {
        Self { usage, ..self }
    }

    /// What its requests would have consumed on DynamoDB.
    pub fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }

    fn record(&self, op: &'static str, u: OpUsage) {
        self.usage.record(op, u);
    }

    fn state_size(t: &Table) -> u64 {
        dynamo::scan_state_size(t.scan_horizon, t.max_status_shards)
    }

    /// A conditional update of the scanner's state item, applied by `f` when it returns
    /// `true`.
    fn update_state(&self, t: &mut Table, f: impl FnOnce(&mut Table) -> bool) -> bool {
        let before = Self::state_size(t);
        let applied = f(t);
        let after = Self::state_size(t);
        self.record(
            "UpdateItem",
            OpUsage::write(usage::update_write_units(Some(before), after), 0),
        );
        applied
    }

    /// Serves the same table with another `STATUS_SHARDS`, as a redeployment with a changed
    /// setting does: items already written keep the shard they were written with.
    pub fn reconfigure_status_shards(&self, shards: u16) {
        self.shards.store(shards.max(1), Ordering::SeqCst);
    }

    /// The same store, its index lagging the table by up to `lag.max` (see [`IndexLag`]).
    /// Without it (the default) the index is always current.
    pub fn with_index_lag(self, lag: IndexLag) -> Self {
        lock(&self.table).lag = Some(LaggingIndex {
            rng: lag.seed,
            settings: lag,
            seq: 0,
            pending: BTreeMap::new(),
            latest: HashMap::new(),
        });
        self
    }

    /// Every occurrence, in key order (for reports and tests).
    pub fn items(&self) -> Vec<ScheduleItem> {
        lock(&self.table).items.values().cloned().collect()
    }

    /// An eventually consistent GetItem (the twin is never stale; it bills like one).
    fn peek(&self, key: &ScheduleKey) -> Option<ScheduleItem> {
        let found = lock(&self.table).items.get(key).cloned();
        let size = found.as_ref().map_or(0, size_of);
        self.record(
            "GetItem",
            OpUsage::read(usage::read_units(size, Consistency::Eventual)),
        );
        found
    }

    /// The payload items stored beside the occurrences, with their billed sizes.
    pub fn payload_items(&self) -> Vec<(ScheduleKey, u64)> {
        lock(&self.table)
            .payloads
            .iter()
            .map(|(k, (_, size))| (k.clone(), *size))
            .collect()
    }

    /// Writes the payload item `key` of `item` unless this store wrote it before or it
    /// exists, as the DynamoDB adapter does.
    fn put_payload_once(&self, key: &ScheduleKey, item: &ScheduleItem) {
        if self.written_payloads.contains(key) {
            return;
        }
        let size = dynamo::item_size(&dynamo::payload_item_to_av(key, item));
        let mut t = lock(&self.table);
        let before = t.payloads.get(key).map(|(_, s)| *s);
        self.record(
            "PutItem",
            OpUsage::write(usage::update_write_units(before, size), 0),
        );
        t.payloads
            .entry(key.clone())
            .or_insert_with(|| (item.payload.clone(), size));
        drop(t);
        self.written_payloads.insert(key.clone());
    }
}

impl InMemoryScheduleStore {
    async fn create_item(&self, item: &ScheduleItem) -> Result<bool, StoreError> {
        let mut t = lock(&self.table);
        if let Some(stored) = t.items.get(&item.key) {
            self.record("PutItem", write_usage(Some(stored), item, false));
            return Ok(false);
        }
        self.record("PutItem", write_usage(None, item, true));
        if let Some(ix) = Table::index_key(item) {
            t.index_change(true, ix);
        }
        t.items.insert(item.key.clone(), item.clone());
        Ok(true)
    }

    async fn materialize_item(&self, item: &ScheduleItem) -> Result<Materialized, StoreError> {
        if item.status != Status::Pending {
            // As the DynamoDB adapter does: a pre-judged occurrence is only ever created.
            return Ok(if self.create_item(item).await? {
                Materialized::Created
            } else {
                Materialized::Unchanged
            });
        }
        let mut t = lock(&self.table);
        let before = t.items.get(&item.key).cloned();
        let outcome = match t.items.get(&item.key) {
            None => {
                self.record("UpdateItem", write_usage(None, item, true));
                if let Some(ix) = Table::index_key(item) {
                    t.index_change(true, ix);
                }
                t.items.insert(item.key.clone(), item.clone());
                return Ok(Materialized::Created);
            }
            // An occurrence pre-judged SKIPPED (invalid device) is only ever created: the
            // executor validates the device of a PENDING one again anyway.
            Some(_) if item.status != Status::Pending => Materialized::Unchanged,
            Some(stored) if stored.definition_version >= item.definition_version => {
                Materialized::Unchanged
            }
            Some(stored) => match stored.status {
                Status::Pending => Materialized::Refreshed,
                Status::Cancelled => Materialized::Reinstated,
                _ => Materialized::Unchanged,
            },
        };
        if outcome == Materialized::Unchanged {
            // A failed condition is billed on the larger of the stored and the new image.
            self.record("UpdateItem", write_usage(before.as_ref(), item, false));
        } else {
            t.update(&item.key, |stored| {
                take_definition_fields(stored, item, self.status_shards())
            });
            if let (Some(before), Some(after)) = (before.as_ref(), t.items.get(&item.key)) {
                self.record("UpdateItem", write_usage(Some(before), after, true));
            }
        }
        Ok(outcome)
    }
}

impl ScheduleStore for InMemoryScheduleStore {
    fn status_shards(&self) -> u16 {
        self.shards.load(Ordering::SeqCst)
    }

    async fn create_if_absent(&self, item: &ScheduleItem) -> Result<bool, StoreError> {
        let Some((payload_key, occurrence)) = dynamo::split_payload(item) else {
            return self.create_item(item).await;
        };
        // As the DynamoDB adapter: one small read instead of a large payload write.
        if self.peek(&item.key).is_some() {
            return Ok(false);
        }
        self.put_payload_once(&payload_key, item);
        self.create_item(&occurrence).await
    }

    async fn materialize(&self, item: &ScheduleItem) -> Result<Materialized, StoreError> {
        // As the DynamoDB adapter: the payload before the occurrence that refers to it.
        let Some((payload_key, occurrence)) = dynamo::split_payload(item) else {
            return self.materialize_item(item).await;
        };
        self.put_payload_once(&payload_key, item);
        self.materialize_item(&occurrence).await
    }

    async fn payload(&self, item: &ScheduleItem) -> Result<Payload, StoreError> {
        let Some(sk) = &item.payload_ref else {
            return Ok(item.payload.clone());
        };
        let key = ScheduleKey {
            pk: item.key.pk.clone(),
            sk: sk.clone(),
        };
        let t = lock(&self.table);
        let found = t.payloads.get(&key);
        let size = found.map_or(0, |(_, size)| *size);
        self.record(
            "GetItem",
            OpUsage::read(usage::read_units(size, Consistency::Strong)),
        );
        found
            .map(|(p, _)| p.clone())
            .ok_or_else(|| StoreError::Corrupt {
                key: key.to_string(),
                reason: "the payload item an occurrence refers to is missing".to_owned(),
            })
    }

    async fn cancel(
        &self,
        key: &ScheduleKey,
        cancelling_version: u64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let mut t = lock(&self.table);
        let applies = t.items.get(key).is_some_and(|stored| {
            stored.status == Status::Pending && stored.definition_version < cancelling_version
        });
        let before = t.items.get(key).cloned();
        if applies {
            t.update(key, |stored| {
                stored.status = Status::Cancelled;
                stored.status_shard = None;
                stored.last_error = Some(reason.to_owned());
                stored.cancelled_by_version = Some(cancelling_version);
                stored.lease_owner = None;
                stored.lease_until = None;
            });
        }
        self.record_update(&t, key, before.as_ref(), applies);
        Ok(applies)
    }

    async fn scan_horizon(&self) -> Result<Option<Timestamp>, StoreError> {
        let t = lock(&self.table);
        self.record_state_read(&t);
        Ok(t.scan_horizon)
    }

    async fn record_scan_horizon(&self, covered_to: Timestamp) -> Result<bool, StoreError> {
        let mut t = lock(&self.table);
        Ok(self.update_state(&mut t, |t| {
            if t.scan_horizon.is_some_and(|h| h >= covered_to) {
                return false;
            }
            t.scan_horizon = Some(covered_to);
            true
        }))
    }

    async fn get(&self, key: &ScheduleKey) -> Result<Option<ScheduleItem>, StoreError> {
        let t = lock(&self.table);
        let found = t.items.get(key).cloned();
        let size = found.as_ref().map_or(0, size_of);
        self.record(
            "GetItem",
            OpUsage::read(usage::read_units(size, Consistency::Strong)),
        );
        Ok(found)
    }

    async fn change_status(
        &self,
        key: &ScheduleKey,
        change: &StatusChange,
    ) -> Result<bool, StoreError> {
        let mut t = lock(&self.table);
        let Some(item) = t.items.get_mut(key) else {
            self.record("UpdateItem", refused_write(None));
            return Ok(false);
        };
        if item.status != change.from {
            let refused = refused_write(Some(item));
            self.record("UpdateItem", refused);
            return Ok(false);
        }
        let image = item.clone();
        let before = Table::index_key(item);
        item.apply(change, self.status_shards());
        self.record("UpdateItem", write_usage(Some(&image), item, true));
        let after = Table::index_key(item);
        if before != after {
            if let Some(ix) = before {
                t.index_change(false, ix);
            }
            if let Some(ix) = after {
                t.index_change(true, ix);
            }
        }
        Ok(true)
    }

    async fn try_lease(
        &self,
        key: &ScheduleKey,
        status: Status,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let mut t = lock(&self.table);
        let Some(item) = t.items.get_mut(key) else {
            self.record("UpdateItem", refused_write(None));
            return Ok(false);
        };
        if item.status != status || item.leased_by_other(owner, now) {
            let refused = refused_write(Some(item));
            self.record("UpdateItem", refused);
            return Ok(false);
        }
        let image = item.clone();
        item.lease_owner = Some(owner.to_owned());
        item.lease_until = Some(until);
        self.record("UpdateItem", write_usage(Some(&image), item, true));
        Ok(true)
    }

    async fn query_due_page(
        &self,
        shard: &StatusShard,
        before: Timestamp,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<DueEntry>, StoreError> {
        let mut t = lock(&self.table);
        t.settle_index();
        let after = cursor.map(|c| decode_index_cursor(shard, c)).transpose()?;
        let limit = limit.max(1) as usize;
        let mut items = Vec::new();
        let range = t
            .index
            .range(
                (
                    shard.clone(),
                    Timestamp::from_epoch_seconds(0).unwrap_or(before),
                    ScheduleKey {
                        pk: String::new(),
                        sk: String::new(),
                    },
                )..,
            )
            .take_while(|(s, time, _)| s == shard && *time < before)
            .filter(|ix| after.as_ref().is_none_or(|a| *ix > a));
        let mut more = false;
        for (s, time, key) in range {
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(DueEntry {
                key: key.clone(),
                scheduled_time: *time,
                status_shard: s.clone(),
            });
        }
        let next = match (more, items.last()) {
            (true, Some(last)) => Some(Cursor(format!(
                "{}\n{}\n{}",
                last.scheduled_time, last.key.pk, last.key.sk
            ))),
            _ => None,
        };
        // A GSI is read eventually consistently; a keys-only entry is billed as such.
        let sizes = items
            .iter()
            .map(|e| dynamo::status_index_entry_size(&e.status_shard, e.scheduled_time, &e.key));
        let rru = usage::query_read_units(sizes, Consistency::Eventual);
        self.record("Query", OpUsage::read(rru));
        Ok(Page { items, next })
    }

    // ---- Status shards ever used, and the sweep of stuck QUEUED occurrences. ----

    async fn max_status_shards(&self) -> Result<Option<u16>, StoreError> {
        let t = lock(&self.table);
        self.record_state_read(&t);
        Ok(t.max_status_shards)
    }

    async fn record_status_shards(&self, shards: u16) -> Result<bool, StoreError> {
        // As the DynamoDB adapter: no write once a count as large is known recorded.
        if self.known_shards.load(Ordering::Relaxed) >= shards {
            return Ok(false);
        }
        let mut t = lock(&self.table);
        let recorded = self.update_state(&mut t, |t| {
            if t.max_status_shards.is_some_and(|m| m >= shards) {
                return false;
            }
            t.max_status_shards = Some(shards);
            true
        });
        self.known_shards.fetch_max(shards, Ordering::Relaxed);
        Ok(recorded)
    }

    async fn sweep_queued(
        &self,
        key: &ScheduleKey,
        seen_queued_at: Option<Timestamp>,
        sweep: &Sweep,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let shards = self.status_shards();
        let mut t = lock(&self.table);
        let applies = t.items.get(key).is_some_and(|stored| {
            stored.status == Status::Queued
                && stored.queued_at == seen_queued_at
                && stored.lease_until.is_none_or(|until| until <= now)
        });
        let before = t.items.get(key).cloned();
        if !applies {
            self.record_update(&t, key, before.as_ref(), false);
            return Ok(false);
        }
        let result = self.apply_sweep(&mut t, key, sweep, now, shards);
        self.record_update(&t, key, before.as_ref(), result.is_ok());
        result
    }

    /// One eventually consistent `BatchGetItem` per 100 keys, billed per key asked.
    async fn existing(
        &self,
        keys: &[ScheduleKey],
    ) -> Result<HashMap<ScheduleKey, crate::ports::Existing>, StoreError> {
        let t = lock(&self.table);
        let mut found = HashMap::new();
        for chunk in keys.chunks(crate::limits::DYNAMO_MAX_BATCH_GET) {
            let mut sizes = Vec::new();
            for k in chunk {
                // A key that finds nothing is billed too (the minimum read).
                sizes.push(t.items.get(k).map_or(0, size_of));
                if let Some(item) = t.items.get(k) {
                    found.insert(
                        k.clone(),
                        crate::ports::Existing {
                            status: item.status,
                            definition_version: item.definition_version,
                        },
                    );
                }
            }
            let rru = usage::batch_get_read_units(sizes, Consistency::Eventual);
            self.record("BatchGetItem", OpUsage::read(rru));
        }
        Ok(found)
    }

    async fn queue_unleased(
        &self,
        key: &ScheduleKey,
        owner: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let shards = self.status_shards();
        let mut t = lock(&self.table);
        let before = t.items.get(key).cloned();
        let Some(stored) = t.items.get(key) else {
            self.record_update(&t, key, None, false);
            return Ok(false);
        };
        let ours = stored.status == Status::Queued
            && stored.lease_owner.as_deref() == Some(owner)
            && stored.lease_until.is_none()
            && stored.queued_at == Some(now);
        let free =
            stored.status == Status::Pending && stored.lease_until.is_none_or(|until| until <= now);
        if free {
            t.update(key, |stored| {
                stored.apply(&StatusChange::queued(now), shards);
                stored.lease_owner = Some(owner.to_owned());
            });
        }
        // A retry that finds its own write lands again on DynamoDB, billed the same.
        self.record_update(&t, key, before.as_ref(), free || ours);
        Ok(free || ours)
    }

    async fn unqueue(
        &self,
        key: &ScheduleKey,
        queued_at: Timestamp,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let shards = self.status_shards();
        let mut t = lock(&self.table);
        let before = t.items.get(key).cloned();
        let applies = t.items.get(key).is_some_and(|stored| {
            stored.status == Status::Queued
                && stored.queued_at == Some(queued_at)
                && stored.lease_until.is_none_or(|until| until <= now)
        });
        if applies {
            t.update(key, |stored| {
                stored.status = Status::Pending;
                stored.status_shard = Some(StatusShard::new(
                    Status::Pending,
                    crate::model::shard_of(&stored.key, shards),
                ));
                stored.queued_at = None;
                stored.retry_count = stored.retry_count.saturating_add(1);
                stored.last_error = Some(reason.to_owned());
                stored.lease_owner = None;
                stored.lease_until = None;
            });
        }
        self.record_update(&t, key, before.as_ref(), applies);
        Ok(applies)
    }
}

impl InMemoryScheduleStore {
    fn record_state_read(&self, t: &Table) {
        let rru = usage::read_units(Self::state_size(t), Consistency::Strong);
        self.record("GetItem", OpUsage::read(rru));
    }

    /// Records an UpdateItem of `key` whose item was `before`; `applied`: the condition held
    /// and the table now holds the after image.
    fn record_update(
        &self,
        t: &Table,
        key: &ScheduleKey,
        before: Option<&ScheduleItem>,
        applied: bool,
    ) {
        let u = match (applied, before, t.items.get(key)) {
            (true, Some(b), Some(after)) => write_usage(Some(b), after, true),
            _ => refused_write(before),
        };
        self.record("UpdateItem", u);
    }

    fn apply_sweep(
        &self,
        t: &mut Table,
        key: &ScheduleKey,
        sweep: &Sweep,
        now: Timestamp,
        shards: u16,
    ) -> Result<bool, StoreError> {
        match (sweep, sweep.change(now)) {
            (Sweep::Redispatch, _) => t.update(key, |stored| {
                stored.queued_at = Some(now);
                stored.sweeps = stored.sweeps.saturating_add(1);
                stored.lease_owner = None;
                stored.lease_until = None;
            }),
            (_, Some(change)) => t.update(key, |stored| stored.apply(&change, shards)),
            (_, None) => {
                return Err(StoreError::Conflict {
                    key: key.to_string(),
                    reason: format!("QUEUED -> {} is not a transition", sweep.status()),
                });
            }
        }
        Ok(true)
    }
}

impl crate::ports::ScanRuns for InMemoryScheduleStore {
    async fn segment_done(
        &self,
        run_id: &str,
        segment: u32,
        _total_segments: u32,
        _expires: Timestamp,
    ) -> Result<u32, StoreError> {
        let mut runs = lock(&self.scan_runs);
        let done = runs.entry(run_id.to_owned()).or_default();
        done.insert(segment);
        Ok(u32::try_from(done.len()).unwrap_or(u32::MAX))
    }
}

fn decode_index_cursor(shard: &StatusShard, c: &Cursor) -> Result<IndexKey, StoreError> {
    let bad = || StoreError::Corrupt {
        key: c.0.clone(),
        reason: "not a cursor of this index".to_owned(),
    };
    let mut parts = c.0.splitn(3, '\n');
    let (Some(time), Some(pk), Some(sk)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let time = Timestamp::parse(time).map_err(|_| bad())?;
    Ok((
        shard.clone(),
        time,
        ScheduleKey {
            pk: pk.to_owned(),
            sk: sk.to_owned(),
        },
    ))
}

/// The definitions table in memory. Stores the JSON form, as DynamoDB stores attributes,
/// so a bad definition written by another service reads back as [`InvalidDefinition`].
#[derive(Debug, Default)]
pub struct InMemoryDefinitionSource {
    rows: Mutex<BTreeMap<(String, String), serde_json::Value>>,
    /// What its requests would consume on DynamoDB, from its rows' sizes.
    usage: Arc<Usage>,
}

/// Billed size of a definitions row: as the DynamoDB adapter writes it.
fn row_size(key: &(String, String), row: &serde_json::Value) -> u64 {
    dynamo::definition_row_size(&key.0, &key.1, row)
}

impl InMemoryDefinitionSource {
    pub fn new() -> Self {
        Self::default()
    }

    /// The same source tallying into `usage`.
    pub fn with_usage(self, usage: Arc<Usage>) -> Self {
        Self { usage, ..self }
    }

    /// What its requests would have consumed on DynamoDB.
    pub fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }

    /// A strongly consistent GetItem of `key` from `rows`.
    fn record_get(
        &self,
        rows: &BTreeMap<(String, String), serde_json::Value>,
        key: &(String, String),
    ) {
        let size = rows.get(key).map_or(0, |r| row_size(key, r));
        self.usage.record(
            "GetItem",
            OpUsage::read(usage::read_units(size, Consistency::Strong)),
        );
    }

    /// Stores raw JSON as another writer might, valid or not.
    pub fn put_raw(&self, pk: &str, sk: &str, value: serde_json::Value) {
        lock(&self.rows).insert((pk.to_owned(), sk.to_owned()), value);
    }

    /// Deletes a row, as the owning service does; `false` when there was none.
    pub fn remove_raw(&self, pk: &str, sk: &str) -> bool {
        lock(&self.rows)
            .remove(&(pk.to_owned(), sk.to_owned()))
            .is_some()
    }

    /// Deletes a definition, as its owner would.
    pub fn delete(&self, tenant: &TenantId, step: &StepId) {
        lock(&self.rows).remove(&Definition::key_of(tenant, step));
    }

    pub fn len(&self) -> usize {
        lock(&self.rows).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn scanned(key: &(String, String), value: &serde_json::Value) -> ScannedDefinition {
    Definition::from_row(&key.0, &key.1, value).map_err(|error| InvalidDefinition {
        key: format!("{}|{}", key.0, key.1),
        error,
    })
}

/// The segment a key belongs to in a parallel scan (DynamoDB spreads by hash, too).
fn segment_of(key: &(String, String), total: u32) -> u32 {
    let sk = ScheduleKey {
        pk: key.0.clone(),
        sk: key.1.clone(),
    };
    u32::from(crate::model::shard_of(
        &sk,
        u16::try_from(total).unwrap_or(u16::MAX),
    ))
}

/// Page size of the in-memory scan, small so that paging is exercised.
const MEMORY_SCAN_PAGE: usize = 100;

impl DefinitionSource for InMemoryDefinitionSource {
    async fn scan_page(
        &self,
        segment: u32,
        total_segments: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<ScannedDefinition>, StoreError> {
        let rows = lock(&self.rows);
        let after = cursor
            .and_then(|c| c.0.split_once('\n'))
            .map(|(a, b)| (a.to_owned(), b.to_owned()));
        let mut page = Vec::new();
        let mut last = None;
        let mut more = false;
        // From just after the cursor, as DynamoDB resumes from `ExclusiveStartKey`: a page
        // costs its own rows, not every row before it.
        let start = match &after {
            Some(a) => std::ops::Bound::Excluded(a),
            None => std::ops::Bound::Unbounded,
        };
        for (key, value) in rows.range((start, std::ops::Bound::Unbounded)) {
            if crate::model::is_settings_row(&key.1) {
                // Settings rows (a tenant's mode) share the table; they are no definitions.
                continue;
            }
            if segment_of(key, total_segments.max(1)) != segment {
                continue;
            }
            if page.len() == MEMORY_SCAN_PAGE {
                more = true;
                break;
            }
            page.push(scanned(key, value));
            last = Some(key.clone());
        }
        // A Scan reads (and bills) every row of its segment, filtered out or not.
        let read: Vec<u64> = rows
            .iter()
            .filter(|(key, _)| {
                after.as_ref().is_none_or(|a| *key > a)
                    && last.as_ref().is_none_or(|l| *key <= l)
                    && segment_of(key, total_segments.max(1)) == segment
            })
            .map(|(key, row)| row_size(key, row))
            .collect();
        self.usage.record(
            "Scan",
            OpUsage::read(usage::query_read_units(read, Consistency::Strong)),
        );
        let next = match (more, last) {
            (true, Some((pk, sk))) => Some(Cursor(format!("{pk}\n{sk}"))),
            _ => None,
        };
        Ok(Page { items: page, next })
    }

    async fn get(
        &self,
        tenant: &TenantId,
        step: &StepId,
    ) -> Result<Option<ScannedDefinition>, StoreError> {
        let key = Definition::key_of(tenant, step);
        let rows = lock(&self.rows);
        self.record_get(&rows, &key);
        Ok(rows.get(&key).map(|v| scanned(&key, v)))
    }

    async fn put(&self, def: &Definition) -> Result<(), StoreError> {
        let key = def.key();
        let mut rows = lock(&self.rows);
        let row = def.to_json();
        let before = rows.get(&key).map(|r| row_size(&key, r));
        self.usage.record(
            "PutItem",
            OpUsage::write(usage::update_write_units(before, row_size(&key, &row)), 0),
        );
        if let Some(stored) = rows
            .get(&key)
            .and_then(|v| v.get("version"))
            .and_then(|v| v.as_u64())
            && stored >= def.version
        {
            return Err(StoreError::Conflict {
                key: format!("{}|{}", key.0, key.1),
                reason: format!(
                    "version {} is not newer than the stored version {stored}",
                    def.version
                ),
            });
        }
        rows.insert(key, row);
        Ok(())
    }

    async fn get_many(&self, keys: &[DefinitionKey]) -> Result<FetchedDefinitions, StoreError> {
        let rows = lock(&self.rows);
        // One BatchGetItem per 100 distinct keys, each key billed on its own.
        let distinct: BTreeSet<(String, String)> =
            keys.iter().map(|(t, s)| Definition::key_of(t, s)).collect();
        let distinct: Vec<_> = distinct.into_iter().collect();
        for chunk in distinct.chunks(crate::limits::DYNAMO_MAX_BATCH_GET) {
            let sizes = chunk
                .iter()
                .map(|k| rows.get(k).map_or(0, |r| row_size(k, r)));
            self.usage.record(
                "BatchGetItem",
                OpUsage::read(usage::batch_get_read_units(sizes, Consistency::Strong)),
            );
        }
        Ok(keys
            .iter()
            .map(|(tenant, step)| {
                let key = Definition::key_of(tenant, step);
                let found = rows.get(&key).map(|v| scanned(&key, v));
                ((tenant.clone(), step.clone()), found)
            })
            .collect())
    }
}

impl TenantModes for InMemoryDefinitionSource {
    async fn stored_mode(&self, tenant: &TenantId) -> Result<Option<TenantMode>, StoreError> {
        let key = mode_key(tenant);
        let rows = lock(&self.rows);
        self.record_get(&rows, &key);
        let Some(row) = rows.get(&key) else {
            return Ok(None);
        };
        mode_of_row(&key, row).map(|s| Some(s.mode))
    }

    async fn set_mode(
        &self,
        tenant: &TenantId,
        mode: TenantMode,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let row = serde_json::json!({
            "tenant_id": tenant.as_str(), MODE_ATTR: mode.as_str(), "updated_at": at.to_string(),
        });
        let key = mode_key(tenant);
        let mut rows = lock(&self.rows);
        let before = rows.get(&key).map(|r| row_size(&key, r));
        self.usage.record(
            "PutItem",
            OpUsage::write(usage::update_write_units(before, row_size(&key, &row)), 0),
        );
        rows.insert(key, row);
        Ok(())
    }

    async fn modes(&self) -> Result<Vec<TenantSetting>, StoreError> {
        let rows = lock(&self.rows);
        let sizes = rows.iter().map(|(k, r)| row_size(k, r));
        self.usage.record(
            "Scan",
            OpUsage::read(usage::query_read_units(sizes, Consistency::Strong)),
        );
        rows.iter()
            .filter(|(key, _)| key.1 == MODE_SK)
            .map(|(key, row)| mode_of_row(key, row))
            .collect()
    }
}

/// A mode row as stored: the tenant from its key, the mode and when it was set.
fn mode_of_row(
    key: &(String, String),
    row: &serde_json::Value,
) -> Result<TenantSetting, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: format!("{}|{}", key.0, key.1),
        reason,
    };
    let tenant = key
        .0
        .strip_prefix("TENANT#")
        .ok_or_else(|| corrupt("PK does not start with TENANT#".to_owned()))
        .and_then(|t| TenantId::parse(t).map_err(|e| corrupt(e.to_string())))?;
    let raw = row
        .get(MODE_ATTR)
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    let mode = raw
        .parse()
        .map_err(|e: crate::model::ModeParseError| corrupt(format!("{MODE_ATTR}: {e}")))?;
    Ok(TenantSetting {
        tenant_id: tenant,
        mode,
        updated_at: row
            .get("updated_at")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
    })
}

#[derive(Debug, Clone)]
struct Message {
    id: String,
    body: String,
    attributes: Vec<(String, String)>,
    visible_at: DateTime<Utc>,
    receive_count: u32,
    receipt: Option<String>,
}

#[derive(Debug, Default)]
struct QueueState {
    messages: VecDeque<Message>,
    next_id: u64,
    /// FIFO deduplication ids and when they were first seen.
    dedup: HashMap<String, DateTime<Utc>>,
}

/// How a queue behaves: visibility timeout, redrive, FIFO.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub visibility_timeout: Duration,
    /// `(dlq, maxReceiveCount)`.
    pub redrive: Option<(Arc<InMemoryQueue>, u32)>,
    pub fifo: bool,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            redrive: None,
            fifo: false,
        }
    }
}

/// An SQS queue in memory. Receives do not long-poll: they answer at once.
#[derive(Debug)]
pub struct InMemoryQueue {
    name: String,
    clock: Arc<dyn ClockDebug>,
    settings: QueueSettings,
    state: Mutex<QueueState>,
    /// What its requests would cost on SQS.
    usage: Arc<Usage>,
}

/// Payload bytes of one message as SQS bills it: its body and its attributes.
fn message_bytes(body: &str, attributes: &[(String, String)]) -> u64 {
    let attrs: usize = attributes
        .iter()
        // Name, the "String" data type and the value.
        .map(|(k, v)| k.len() + "String".len() + v.len())
        .sum();
    (body.len() + attrs) as u64
}

/// `Clock` plus `Debug`, so the queue can derive `Debug`.
pub trait ClockDebug: Clock + std::fmt::Debug {}
impl<T: Clock + std::fmt::Debug> ClockDebug for T {}

/// The operation name under which receives that found nothing are tallied.
pub const EMPTY_RECEIVE: &str = "ReceiveMessage(empty)";

/// SQS FIFO queues drop a repeated deduplication id for 5 minutes.
const FIFO_DEDUP_WINDOW: Duration = Duration::from_secs(300);

impl InMemoryQueue {
    pub fn new(
        name: impl Into<String>,
        clock: Arc<dyn ClockDebug>,
        settings: QueueSettings,
    ) -> Self {
        Self {
            name: name.into(),
            clock,
            settings,
            state: Mutex::new(QueueState::default()),
            usage: Arc::new(Usage::new()),
        }
    }

    /// The same queue tallying into `usage`.
    pub fn with_usage(self, usage: Arc<Usage>) -> Self {
        Self { usage, ..self }
    }

    /// What its requests would have cost on SQS.
    pub fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }

    /// Deletes up to 10 received messages in one request, as the Lambda event source
    /// mapping does with a batch's successes.
    pub fn delete_batch(&self, receipt_handles: &[&str]) {
        for chunk in receipt_handles.chunks(SQS_MAX_BATCH) {
            self.usage.record("DeleteMessageBatch", OpUsage::sqs(0));
            let mut st = lock(&self.state);
            st.messages
                .retain(|m| m.receipt.as_deref().is_none_or(|r| !chunk.contains(&r)));
        }
    }

    /// Messages held, visible or not.
    pub fn len(&self) -> usize {
        lock(&self.state).messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bodies held, in send order, without receiving them.
    pub fn peek_bodies(&self) -> Vec<String> {
        lock(&self.state)
            .messages
            .iter()
            .map(|m| m.body.clone())
            .collect()
    }

    /// Sends one message; `dedup_id` applies on a FIFO queue only. Returns the message id.
    pub fn push(
        &self,
        body: String,
        delay: Duration,
        attributes: Vec<(String, String)>,
        dedup_id: Option<&str>,
    ) -> Result<String, QueueError> {
        if delay.as_secs() > u64::from(SQS_MAX_DELAY_SECONDS) {
            return Err(QueueError::Invalid(format!(
                "delay {}s is over the SQS maximum of {SQS_MAX_DELAY_SECONDS}s",
                delay.as_secs()
            )));
        }
        if body.len() > SQS_MAX_MESSAGE_BYTES {
            return Err(QueueError::Invalid(format!(
                "body of {} bytes is over the SQS maximum of {SQS_MAX_MESSAGE_BYTES}",
                body.len()
            )));
        }
        let now = self.clock.now();
        let mut st = lock(&self.state);
        st.next_id += 1;
        let id = format!("{}-{}", self.name, st.next_id);
        if self.settings.fifo
            && let Some(dedup) = dedup_id
        {
            let window =
                chrono::Duration::from_std(FIFO_DEDUP_WINDOW).unwrap_or(chrono::Duration::MAX);
            st.dedup.retain(|_, seen| now - *seen < window);
            if st.dedup.contains_key(dedup) {
                return Ok(id);
            }
            st.dedup.insert(dedup.to_owned(), now);
        }
        let visible_at = now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX);
        st.messages.push_back(Message {
            id: id.clone(),
            body,
            attributes,
            visible_at,
            receive_count: 0,
            receipt: None,
        });
        Ok(id)
    }

    fn accept(&self, m: Message) {
        let mut st = lock(&self.state);
        st.messages.push_back(Message {
            visible_at: self.clock.now(),
            receive_count: 0,
            receipt: None,
            ..m
        });
    }

    /// Message attributes of the held messages, in send order.
    pub fn peek_attributes(&self) -> Vec<Vec<(String, String)>> {
        lock(&self.state)
            .messages
            .iter()
            .map(|m| m.attributes.clone())
            .collect()
    }
}

impl DispatchQueue for InMemoryQueue {
    async fn send_batch(&self, messages: &[OutgoingMessage]) -> Result<SendReport, QueueError> {
        for m in messages {
            if m.delay.as_secs() > u64::from(SQS_MAX_DELAY_SECONDS) {
                return Err(QueueError::Invalid(format!(
                    "message {}: delay {}s is over {SQS_MAX_DELAY_SECONDS}s",
                    m.id,
                    m.delay.as_secs()
                )));
            }
        }
        let mut report = SendReport::default();
        for chunk in messages.chunks(SQS_MAX_BATCH) {
            let bytes = chunk.iter().map(|m| m.body.len() as u64).sum();
            self.usage.record("SendMessageBatch", OpUsage::sqs(bytes));
            for m in chunk {
                match self.push(m.body.clone(), m.delay, Vec::new(), None) {
                    Ok(_) => report.sent.push(m.id.clone()),
                    Err(e) => report.failed.push((m.id.clone(), e.to_string())),
                }
            }
        }
        Ok(report)
    }

    async fn receive(&self, max: u32, _wait: Duration) -> Result<Vec<ReceivedMessage>, QueueError> {
        let max = max.clamp(1, SQS_MAX_RECEIVE as u32) as usize;
        let now = self.clock.now();
        let visibility = chrono::Duration::from_std(self.settings.visibility_timeout)
            .unwrap_or(chrono::Duration::MAX);
        let mut out = Vec::new();
        let mut to_dlq = Vec::new();
        {
            let mut st = lock(&self.state);
            let mut i = 0;
            while i < st.messages.len() && out.len() < max {
                if st.messages[i].visible_at > now {
                    i += 1;
                    continue;
                }
                // Like SQS: a message already received maxReceiveCount times moves to the
                // DLQ when a receive would hand it out again.
                if let Some((_, max_receives)) = &self.settings.redrive
                    && st.messages[i].receive_count >= *max_receives
                {
                    if let Some(m) = st.messages.remove(i) {
                        to_dlq.push(m);
                    }
                    continue;
                }
                let seq = st.next_id;
                st.next_id += 1;
                let m = &mut st.messages[i];
                m.receive_count += 1;
                m.visible_at = now + visibility;
                let receipt = format!("{}#{}", m.id, seq);
                m.receipt = Some(receipt.clone());
                out.push(ReceivedMessage {
                    message_id: m.id.clone(),
                    receipt_handle: receipt,
                    body: m.body.clone(),
                    receive_count: m.receive_count,
                });
                i += 1;
            }
        }
        if let Some((dlq, _)) = &self.settings.redrive {
            for m in to_dlq {
                dlq.accept(m);
            }
        }
        // An empty receive is tallied apart: with a Lambda event source mapping, empty
        // polls are a fixed cost of the queue, not of the messages.
        let bytes = out.iter().map(|m| m.body.len() as u64).sum();
        let op = if out.is_empty() {
            EMPTY_RECEIVE
        } else {
            "ReceiveMessage"
        };
        self.usage.record(op, OpUsage::sqs(bytes));
        Ok(out)
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        // SQS: a stale receipt handle "succeeds" without deleting; so does this.
        self.usage.record("DeleteMessage", OpUsage::sqs(0));
        let mut st = lock(&self.state);
        st.messages
            .retain(|m| m.receipt.as_deref() != Some(receipt_handle));
        Ok(())
    }
}

impl InMemoryQueue {
    /// One trigger on the queue, with the attributes and de-duplication id SQS would get;
    /// returns the bytes SQS bills for it.
    fn push_trigger(&self, message: &TriggerMessage) -> (u64, Result<(), QueueError>) {
        let attributes = vec![
            ("tenant_id".to_owned(), message.tenant_id.to_string()),
            ("execution_id".to_owned(), message.execution_id.to_string()),
        ];
        let body = message.body();
        let bytes = message_bytes(&body, &attributes);
        let pushed = self.push(
            body,
            Duration::ZERO,
            attributes,
            Some(message.execution_id.as_str()),
        );
        (bytes, pushed.map(|_| ()))
    }
}

impl ActionSink for InMemoryQueue {
    async fn send(&self, message: &TriggerMessage) -> Result<(), QueueError> {
        let (bytes, result) = self.push_trigger(message);
        self.usage.record("SendMessage", OpUsage::sqs(bytes));
        result
    }

    /// Each entry on its own, as SQS judges the entries of one `SendMessageBatch`: one
    /// refused entry does not stop the others. Billed as SQS does: one request per ten
    /// entries, per started 64 KB of each request.
    async fn send_batch(&self, messages: &[TriggerMessage]) -> Vec<Result<(), QueueError>> {
        let mut out = Vec::with_capacity(messages.len());
        for chunk in messages.chunks(crate::limits::SQS_MAX_BATCH) {
            let mut bytes = 0;
            for m in chunk {
                let (b, result) = self.push_trigger(m);
                bytes += b;
                out.push(result);
            }
            self.usage.record("SendMessageBatch", OpUsage::sqs(bytes));
        }
        out
    }
}

/// A device registry in memory: every device is active unless marked inactive, and it
/// can be made unavailable, as during an outage.
#[derive(Debug, Default)]
pub struct InMemoryDeviceRegistry {
    inactive: Mutex<std::collections::HashSet<(String, String)>>,
    unavailable: std::sync::atomic::AtomicBool,
}

impl InMemoryDeviceRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn deactivate(&self, tenant: &TenantId, device: &crate::model::DeviceId) {
        lock(&self.inactive).insert((tenant.to_string(), device.to_string()));
    }

    /// Makes a deactivated device active again.
    pub fn activate(&self, tenant: &TenantId, device: &crate::model::DeviceId) {
        lock(&self.inactive).remove(&(tenant.to_string(), device.to_string()));
    }

    /// While set, every call fails as a registry outage would.
    pub fn set_unavailable(&self, down: bool) {
        self.unavailable
            .store(down, std::sync::atomic::Ordering::Relaxed);
    }
}

impl crate::ports::DeviceValidator for InMemoryDeviceRegistry {
    async fn validate(
        &self,
        tenant: &TenantId,
        device: &crate::model::DeviceId,
    ) -> Result<crate::model::Validation, crate::error::ValidationError> {
        if self.unavailable.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(crate::error::ValidationError {
                tenant: tenant.to_string(),
                device: device.to_string(),
                reason: "registry unavailable".to_owned(),
            });
        }
        let inactive = lock(&self.inactive).contains(&(tenant.to_string(), device.to_string()));
        Ok(if inactive {
            crate::model::Validation::Invalid
        } else {
            crate::model::Validation::Valid
        })
    }
}

// ==== Operator reads and edits (the `wfs` CLI) ========================================

impl crate::ports::ScheduleBrowse for InMemoryScheduleStore {
    async fn occurrences_page(
        &self,
        tenant: &TenantId,
        date: chrono::NaiveDate,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<ScheduleItem>, StoreError> {
        let pk = ScheduleKey::partition(tenant, date);
        let limit = usize::try_from(limit.max(1)).unwrap_or(usize::MAX);
        let t = lock(&self.table);
        let mut rows = t
            .items
            .values()
            .filter(|i| i.key.pk == pk && cursor.is_none_or(|c| i.key.sk > c.0));
        let items: Vec<ScheduleItem> = rows.by_ref().take(limit).cloned().collect();
        let next = match (rows.next(), items.last()) {
            (Some(_), Some(last)) => Some(Cursor(last.key.sk.clone())),
            _ => None,
        };
        let rru = usage::query_read_units(items.iter().map(size_of), Consistency::Strong);
        self.record("Query", OpUsage::read(rru));
        Ok(Page { items, next })
    }
}

impl crate::ports::DefinitionAdmin for InMemoryDefinitionSource {
    async fn delete_definition(
        &self,
        tenant: &TenantId,
        step: &StepId,
    ) -> Result<bool, StoreError> {
        Ok(lock(&self.rows)
            .remove(&Definition::key_of(tenant, step))
            .is_some())
    }
}
// ==== end of operator reads and edits ==================================================

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::clock::ManualClock;
    use crate::ports::query_due;

    fn item_at(time: &str, now: Timestamp) -> ScheduleItem {
        let def = Definition::from_json(&serde_json::json!({
            "tenant_id": "acme", "device_workflow_step_id": "s1", "workflow_id": "w1",
            "device_id": "d1", "enabled": true, "version": 1,
            "schedule": {"type": "once", "at": time}, "payload": {}
        }))
        .unwrap();
        ScheduleItem::pending(
            &def,
            Timestamp::parse(time).unwrap(),
            now,
            Duration::from_secs(86_400),
            1,
        )
    }

    fn paging(clock: &ManualClock, page_size: u32) -> crate::ports::Paging<'_, ManualClock> {
        crate::ports::Paging {
            page_size,
            clock,
            deadline: None,
        }
    }

    /// `item` with its payload padded so that it is exactly `bytes` as DynamoDB bills it.
    fn sized(mut item: ScheduleItem, bytes: u64) -> ScheduleItem {
        item.payload
            .insert("pad".to_owned(), serde_json::Value::String(String::new()));
        let bare = dynamo::schedule_item_size(&item);
        let pad = "x".repeat(usize::try_from(bytes - bare).unwrap());
        item.payload
            .insert("pad".to_owned(), serde_json::Value::String(pad));
        assert_eq!(dynamo::schedule_item_size(&item), bytes);
        item
    }

    #[tokio::test]
    async fn the_twin_bills_a_known_sequence_exactly() {
        let now = Timestamp::parse("2026-11-26T00:00:00Z").unwrap();
        let store = InMemoryScheduleStore::new(4);
        let item = sized(item_at("2026-11-26T01:00:00Z", now), 1024);

        // A 1 KB item: 1 WRU, and one index entry added.
        assert!(store.create_if_absent(&item).await.unwrap());
        let u = store.usage().snapshot();
        assert_eq!((u.total.table_wru, u.total.index_writes), (1.0, 1));

        // PENDING -> QUEUED adds `queued_at` (9 + 20 bytes) and shortens `status` and
        // `status_shard` by one byte each: the after image is 1051 bytes, so 2 WRU; the
        // index entry moves from PENDING#nn to QUEUED#nn: 2 writes.
        let queued = StatusChange::transition(Status::Pending, Status::Queued, now).unwrap();
        assert!(store.change_status(&item.key, &queued).await.unwrap());
        let stored = store.get(&item.key).await.unwrap().unwrap();
        assert_eq!(dynamo::schedule_item_size(&stored), 1024 + 29 - 2);
        let u = store.usage().snapshot();
        assert_eq!(u.operations["UpdateItem"].table_wru, 2.0);
        assert_eq!(u.operations["UpdateItem"].index_writes, 2);

        // A failed conditional put is billed on the larger image (1051 bytes): 2 WRU,
        // and the index is left alone.
        assert!(!store.create_if_absent(&item).await.unwrap());
        let u = store.usage().snapshot();
        assert_eq!(u.operations["PutItem"].calls, 2);
        assert_eq!(u.operations["PutItem"].table_wru, 1.0 + 2.0);
        assert_eq!(u.operations["PutItem"].index_writes, 1);

        // A strongly consistent query of the day: 1051 bytes, 1 RRU; the GSI query of the
        // QUEUED shard is eventually consistent: 0.5 RRU; the `get` above 1 RRU.
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 26).unwrap();
        let page =
            crate::ports::ScheduleBrowse::occurrences_page(&store, &item.tenant_id, day, 10, None)
                .await
                .unwrap();
        assert_eq!(page.items.len(), 1);
        let shard = stored.status_shard.clone().unwrap();
        let far = Timestamp::parse("2026-11-27T00:00:00Z").unwrap();
        let due = store.query_due_page(&shard, far, 10, None).await.unwrap();
        assert_eq!(due.items.len(), 1);
        let u = store.usage().snapshot();
        assert_eq!(u.operations["Query"].rru, 1.0 + 0.5);
        assert_eq!(u.operations["GetItem"].rru, 1.0);
        assert_eq!(u.total.table_wru, 5.0);
        assert_eq!(u.total.index_writes, 3);
        assert_eq!(u.total.calls, 6);
    }

    #[tokio::test]
    async fn a_status_change_costs_one_unit_whatever_the_payload() {
        let now = Timestamp::parse("2026-11-26T00:00:00Z").unwrap();
        let mut wrus = Vec::new();
        for bytes in [200, 4 * 1024, 64 * 1024] {
            let store = InMemoryScheduleStore::new(4);
            let mut first = item_at("2026-11-26T01:00:00Z", now);
            first.payload.insert(
                "blob".to_owned(),
                serde_json::Value::String("x".repeat(bytes)),
            );
            let mut second = first.clone();
            second.scheduled_time = Timestamp::parse("2026-11-26T02:00:00Z").unwrap();
            second.key = ScheduleKey::new(
                &second.tenant_id,
                second.scheduled_time,
                &second.device_workflow_step_id,
            );
            assert_eq!(
                store.materialize(&first).await.unwrap(),
                Materialized::Created
            );
            assert_eq!(
                store.materialize(&second).await.unwrap(),
                Materialized::Created
            );
            let payload_items = store.payload_items();
            if bytes > 1024 {
                assert_eq!(
                    payload_items.len(),
                    1,
                    "one payload item for both occurrences"
                );
                assert!(payload_items[0].1 > bytes as u64);
            } else {
                assert!(payload_items.is_empty(), "a small payload stays inline");
            }
            let before = store.usage().snapshot();
            let queued = StatusChange::transition(Status::Pending, Status::Queued, now).unwrap();
            assert!(store.change_status(&first.key, &queued).await.unwrap());
            let after = store.usage().snapshot();
            wrus.push(after.total.table_wru - before.total.table_wru);
            // A replay of the scan: one small batch read finds it, no write at all.
            let replay = store.usage().snapshot();
            let found = store.existing(&[first.key.clone()]).await.unwrap();
            assert!(
                found
                    .get(&first.key)
                    .is_some_and(|e| !e.would_change(first.definition_version)),
                "{bytes}"
            );
            let replayed = store.usage().snapshot();
            assert_eq!(replayed.total.table_wru, replay.total.table_wru, "{bytes}");
            assert_eq!(replayed.total.rru - replay.total.rru, 0.5, "{bytes}");
            let stored = store.get(&first.key).await.unwrap().unwrap();
            assert_eq!(store.payload(&stored).await.unwrap(), first.payload);
        }
        assert_eq!(wrus, vec![1.0, 1.0, 1.0]);
    }

    #[tokio::test]
    async fn the_shard_count_is_written_only_when_it_grows() {
        let store = InMemoryScheduleStore::new(16);
        assert!(store.record_status_shards(16).await.unwrap());
        // Every scheduler run records it again: no request once it is known recorded.
        for _ in 0..5 {
            assert!(!store.record_status_shards(16).await.unwrap());
            assert!(!store.record_status_shards(8).await.unwrap());
        }
        assert!(store.record_status_shards(32).await.unwrap());
        assert_eq!(store.max_status_shards().await.unwrap(), Some(32));
        let u = store.usage().snapshot();
        assert_eq!(u.operations["UpdateItem"].calls, 2);
        assert_eq!(u.operations["UpdateItem"].table_wru, 2.0);
    }

    #[tokio::test]
    async fn queues_bill_per_started_64kb_and_tally_empty_receives_apart() {
        let clock = Arc::new(ManualClock::new("2026-11-26T00:00:00Z".parse().unwrap()));
        let q = InMemoryQueue::new("q", clock, QueueSettings::default());
        let msg = |i: usize, bytes: usize| OutgoingMessage {
            id: i.to_string(),
            body: "x".repeat(bytes),
            delay: Duration::ZERO,
        };
        // Ten 1 KB messages: one SendMessageBatch, one billed request.
        let ten: Vec<_> = (0..10).map(|i| msg(i, 1024)).collect();
        DispatchQueue::send_batch(&q, &ten).await.unwrap();
        // One body just over 64 KB: two billed requests.
        DispatchQueue::send_batch(&q, &[msg(10, 64 * 1024 + 1)])
            .await
            .unwrap();
        let got = q.receive(10, Duration::ZERO).await.unwrap();
        let handles: Vec<&str> = got.iter().map(|m| m.receipt_handle.as_str()).collect();
        assert_eq!(got.len(), 10, "at most ten per receive");
        q.delete_batch(&handles);
        assert_eq!(q.len(), 1, "the ten received are deleted in one request");
        let big = q.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(big.len(), 1);
        let empty = q.receive(10, Duration::ZERO).await.unwrap();
        assert!(empty.is_empty(), "the big one is in flight");
        let u = q.usage().snapshot();
        assert_eq!(u.operations["SendMessageBatch"].calls, 2);
        assert_eq!(u.operations["SendMessageBatch"].sqs_requests, 1 + 2);
        assert_eq!(u.operations["ReceiveMessage"].calls, 2);
        assert_eq!(u.operations["ReceiveMessage"].sqs_requests, 1 + 2);
        assert_eq!(u.operations["DeleteMessageBatch"].sqs_requests, 1);
        assert_eq!(u.operations[EMPTY_RECEIVE].calls, 1);
    }

    #[tokio::test]
    async fn a_lagging_index_shows_changes_only_after_their_delay() {
        let start: DateTime<Utc> = "2026-11-26T00:00:00Z".parse().unwrap();
        let clock = Arc::new(ManualClock::new(start));
        let lag = IndexLag {
            max: Duration::from_secs(2),
            seed: 7,
            clock: clock.clone(),
        };
        let store = InMemoryScheduleStore::new(1).with_index_lag(lag);
        let now = Timestamp::from_datetime(start);
        let item = item_at("2026-11-26T01:00:00Z", now);
        assert!(store.create_if_absent(&item).await.unwrap());
        let far = Timestamp::parse("2026-11-27T00:00:00Z").unwrap();
        // Written, readable at once, but not yet in the index (unless its delay drew 0).
        assert!(store.get(&item.key).await.unwrap().is_some());
        clock.advance(Duration::from_millis(2001));
        let due = query_due(&store, Status::Pending, far, paging(&clock, 10))
            .await
            .unwrap();
        assert_eq!(due.len(), 1, "visible once the lag has passed");

        let queued = StatusChange::transition(Status::Pending, Status::Queued, now).unwrap();
        assert!(store.change_status(&item.key, &queued).await.unwrap());
        clock.advance(Duration::from_millis(2001));
        assert!(
            query_due(&store, Status::Pending, far, paging(&clock, 10))
                .await
                .unwrap()
                .is_empty(),
            "the PENDING entry leaves the index after the lag"
        );
    }

    #[tokio::test]
    async fn a_lagging_index_keeps_one_items_changes_in_order_and_can_be_stale() {
        let start: DateTime<Utc> = "2026-11-26T00:00:00Z".parse().unwrap();
        let clock = Arc::new(ManualClock::new(start));
        let store = InMemoryScheduleStore::new(1).with_index_lag(IndexLag {
            max: Duration::from_secs(60),
            seed: 11,
            clock: clock.clone(),
        });
        let now = Timestamp::from_datetime(start);
        let far = Timestamp::parse("2026-11-27T00:00:00Z").unwrap();
        let mut keys = Vec::new();
        for minute in 0..20 {
            let item = item_at(&format!("2026-11-26T02:{minute:02}:00Z"), now);
            store.create_if_absent(&item).await.unwrap();
            keys.push(item.key);
        }
        clock.advance(Duration::from_secs(61));
        assert_eq!(
            query_due(&store, Status::Pending, far, paging(&clock, 100))
                .await
                .unwrap()
                .len(),
            20
        );
        let mut stale_seen = false;
        for key in &keys {
            let queued = StatusChange::transition(Status::Pending, Status::Queued, now).unwrap();
            store.change_status(key, &queued).await.unwrap();
            // Right after the write the index may still list the item as PENDING.
            let due = query_due(&store, Status::Pending, far, paging(&clock, 100))
                .await
                .unwrap();
            stale_seen |= due.iter().any(|d| d.key == *key);
        }
        // A quick create-then-queue: the removal must not overtake the insert.
        let quick = item_at("2026-11-26T03:00:00Z", now);
        store.create_if_absent(&quick).await.unwrap();
        let queued = StatusChange::transition(Status::Pending, Status::Queued, now).unwrap();
        store.change_status(&quick.key, &queued).await.unwrap();
        clock.advance(Duration::from_secs(61));
        assert!(
            query_due(&store, Status::Pending, far, paging(&clock, 100))
                .await
                .unwrap()
                .is_empty(),
            "the removal never overtakes the insert of the same item"
        );
        assert!(stale_seen, "a 60 s lag shows some stale entries");
    }
}
