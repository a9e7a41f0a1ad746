//! The embedded twin: in-process stores and queues with the semantics of DynamoDB and SQS
//! that the use cases rely on — conditional writes that lose the same way, a sparse
//! sharded index, parallel scan segments, per-message delays, visibility timeouts,
//! receive counts, redrive to a DLQ after `maxReceiveCount`, FIFO deduplication.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{QueueError, StoreError};
use crate::limits::{SQS_MAX_BATCH, SQS_MAX_DELAY_SECONDS, SQS_MAX_MESSAGE_BYTES, SQS_MAX_RECEIVE};
use crate::model::{
    Definition, MODE_ATTR, MODE_SK, ScheduleItem, ScheduleKey, Status, StatusChange, StatusShard,
    StepId, TenantId, TenantMode, TenantSetting, Timestamp, TriggerMessage, mode_key,
};
use crate::ports::{
    ActionSink, Clock, Cursor, DefinitionKey, DefinitionSource, DispatchQueue, DueEntry,
    FetchedDefinitions, InvalidDefinition, Materialized, OutgoingMessage, Page, ReceivedMessage,
    ScannedDefinition, ScheduleStore, SendReport, Sweep, TenantModes,
};

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
}

impl InMemoryScheduleStore {
    pub fn new(shards: u16) -> Self {
        Self {
            shards: AtomicU16::new(shards.max(1)),
            table: Mutex::new(Table::default()),
        }
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

    /// Every item, in key order (for reports and tests).
    pub fn items(&self) -> Vec<ScheduleItem> {
        lock(&self.table).items.values().cloned().collect()
    }
}

impl ScheduleStore for InMemoryScheduleStore {
    fn status_shards(&self) -> u16 {
        self.shards.load(Ordering::SeqCst)
    }

    async fn create_if_absent(&self, item: &ScheduleItem) -> Result<bool, StoreError> {
        let mut t = lock(&self.table);
        if t.items.contains_key(&item.key) {
            return Ok(false);
        }
        if let Some(ix) = Table::index_key(item) {
            t.index_change(true, ix);
        }
        t.items.insert(item.key.clone(), item.clone());
        Ok(true)
    }

    async fn materialize(&self, item: &ScheduleItem) -> Result<Materialized, StoreError> {
        let mut t = lock(&self.table);
        let outcome = match t.items.get(&item.key) {
            None => {
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
        if outcome != Materialized::Unchanged {
            t.update(&item.key, |stored| {
                take_definition_fields(stored, item, self.status_shards())
            });
        }
        Ok(outcome)
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
        Ok(applies)
    }

    async fn scan_horizon(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(lock(&self.table).scan_horizon)
    }

    async fn record_scan_horizon(&self, covered_to: Timestamp) -> Result<bool, StoreError> {
        let mut t = lock(&self.table);
        if t.scan_horizon.is_some_and(|h| h >= covered_to) {
            return Ok(false);
        }
        t.scan_horizon = Some(covered_to);
        Ok(true)
    }

    async fn get(&self, key: &ScheduleKey) -> Result<Option<ScheduleItem>, StoreError> {
        Ok(lock(&self.table).items.get(key).cloned())
    }

    async fn change_status(
        &self,
        key: &ScheduleKey,
        change: &StatusChange,
    ) -> Result<bool, StoreError> {
        let mut t = lock(&self.table);
        let Some(item) = t.items.get_mut(key) else {
            return Ok(false);
        };
        if item.status != change.from {
            return Ok(false);
        }
        let before = Table::index_key(item);
        item.apply(change, self.status_shards());
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
            return Ok(false);
        };
        if item.status != status || item.leased_by_other(owner, now) {
            return Ok(false);
        }
        item.lease_owner = Some(owner.to_owned());
        item.lease_until = Some(until);
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
        Ok(Page { items, next })
    }

    // ---- Status shards ever used, and the sweep of stuck QUEUED occurrences. ----

    async fn max_status_shards(&self) -> Result<Option<u16>, StoreError> {
        Ok(lock(&self.table).max_status_shards)
    }

    async fn record_status_shards(&self, shards: u16) -> Result<bool, StoreError> {
        let mut t = lock(&self.table);
        if t.max_status_shards.is_some_and(|m| m >= shards) {
            return Ok(false);
        }
        t.max_status_shards = Some(shards);
        Ok(true)
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
        if !applies {
            return Ok(false);
        }
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

    async fn queue_unleased(
        &self,
        key: &ScheduleKey,
        owner: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let shards = self.status_shards();
        let mut t = lock(&self.table);
        let Some(stored) = t.items.get(key) else {
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
        Ok(applies)
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
}

impl InMemoryDefinitionSource {
    pub fn new() -> Self {
        Self::default()
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
        for (key, value) in rows.iter() {
            if crate::model::is_settings_row(&key.1) {
                // Settings rows (a tenant's mode) share the table; they are no definitions.
                continue;
            }
            if after.as_ref().is_some_and(|a| key <= a)
                || segment_of(key, total_segments.max(1)) != segment
            {
                continue;
            }
            if page.len() == MEMORY_SCAN_PAGE {
                more = true;
                break;
            }
            page.push(scanned(key, value));
            last = Some(key.clone());
        }
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
        Ok(lock(&self.rows).get(&key).map(|v| scanned(&key, v)))
    }

    async fn put(&self, def: &Definition) -> Result<(), StoreError> {
        let key = def.key();
        let mut rows = lock(&self.rows);
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
        rows.insert(key, def.to_json());
        Ok(())
    }

    async fn get_many(&self, keys: &[DefinitionKey]) -> Result<FetchedDefinitions, StoreError> {
        let rows = lock(&self.rows);
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
        lock(&self.rows).insert(mode_key(tenant), row);
        Ok(())
    }

    async fn modes(&self) -> Result<Vec<TenantSetting>, StoreError> {
        lock(&self.rows)
            .iter()
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
}

/// `Clock` plus `Debug`, so the queue can derive `Debug`.
pub trait ClockDebug: Clock + std::fmt::Debug {}
impl<T: Clock + std::fmt::Debug> ClockDebug for T {}

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
        Ok(out)
    }

    async fn delete(&self, receipt_handle: &str) -> Result<(), QueueError> {
        // SQS: a stale receipt handle "succeeds" without deleting; so does this.
        let mut st = lock(&self.state);
        st.messages
            .retain(|m| m.receipt.as_deref() != Some(receipt_handle));
        Ok(())
    }
}

impl ActionSink for InMemoryQueue {
    async fn send(&self, message: &TriggerMessage) -> Result<(), QueueError> {
        let attributes = vec![
            ("tenant_id".to_owned(), message.tenant_id.to_string()),
            ("execution_id".to_owned(), message.execution_id.to_string()),
        ];
        self.push(
            message.body(),
            Duration::ZERO,
            attributes,
            Some(message.execution_id.as_str()),
        )
        .map(|_| ())
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
