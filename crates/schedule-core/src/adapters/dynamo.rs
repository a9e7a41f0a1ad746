//! DynamoDB behind [`ScheduleStore`] and [`DefinitionSource`], plus the table definitions
//! used to create tables on an emulator (the SAM template creates them on AWS; a test
//! checks the two agree through [`crate::limits`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConsumedCapacity, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType,
    ReturnConsumedCapacity, ReturnValue, ScalarAttributeType, StreamSpecification, StreamViewType,
};
use futures::{StreamExt, TryStreamExt};
use serde_json::{Map, Number, Value};

use super::aws_error::{conditional_write, store_error};
use crate::adapters::clock::SystemClock;
use crate::error::StoreError;
use crate::limits::{DYNAMO_MAX_BATCH_GET, INLINE_ITEM_MAX_BYTES, STATUS_INDEX_NAME, attr};
use crate::model::scan_state::{
    COVERED_TO_ATTR, MAX_STATUS_SHARDS_ATTR, SEGMENTS_DONE_ATTR, TOTAL_SEGMENTS_ATTR,
    scan_horizon_key,
};
use crate::model::{
    Definition, DeviceId, MODE_ATTR, MODE_SK, OCCURRENCE_SK_PREFIX, Payload, SETTINGS_SK_PREFIX,
    ScheduleItem, ScheduleKey, Status, StatusChange, StatusShard, StepId, TenantId, TenantMode,
    TenantSetting, Timestamp, Validation, WorkflowId, mode_key, shard_of,
};
use crate::ports::Clock;
use crate::ports::{
    Cursor, DefinitionKey, DefinitionSource, DueEntry, Existing, FetchedDefinitions,
    InvalidDefinition, Materialized, Page, ScannedDefinition, ScheduleStore, Sweep, TenantModes,
};
use crate::retry::{RetryPolicy, retrying};
use crate::usage::{self, OpUsage, Usage};

type Item = HashMap<String, AttributeValue>;

/// A boxed store call.
type BoxedStoreFuture<'a, T> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// The schedule table in DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoScheduleStore {
    client: Client,
    table: String,
    shards: u16,
    written_payloads: Arc<WrittenPayloads>,
    /// A shard count known to be recorded already (0: none known), so the scheduler's
    /// call on every run writes only when the count grows.
    known_shards: Arc<std::sync::atomic::AtomicU16>,
    /// Requests made and the capacity DynamoDB reported for them.
    usage: Arc<Usage>,
}

impl DynamoScheduleStore {
    pub fn new(client: Client, table: impl Into<String>, shards: u16) -> Self {
        Self {
            client,
            table: table.into(),
            shards: shards.max(1),
            written_payloads: Arc::default(),
            known_shards: Arc::default(),
            usage: Arc::new(Usage::new()),
        }
    }

    /// The same store tallying its requests into `usage`.
    pub fn with_usage(self, usage: Arc<Usage>) -> Self {
        Self { usage, ..self }
    }

    /// Requests made and the capacity DynamoDB reported for them.
    pub fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// One item's attributes, read `consistent`ly or not; `None` when there is none.
    async fn get_attributes_with(
        &self,
        key: &ScheduleKey,
        consistent: bool,
    ) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::PK, s(&key.pk))
            .key(attr::SK, s(&key.sk))
            .consistent_read(consistent)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "GetItem")
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out.item)
    }
}

/// The capacity DynamoDB reports in an answer (asked for with
/// `ReturnConsumedCapacity::Indexes`).
trait Consumed {
    fn consumed(&self) -> Vec<&ConsumedCapacity>;
}

macro_rules! consumed_one {
    ($($t:ty),*) => {$(
        impl Consumed for $t {
            fn consumed(&self) -> Vec<&ConsumedCapacity> {
                self.consumed_capacity().into_iter().collect()
            }
        }
    )*};
}

consumed_one!(
    aws_sdk_dynamodb::operation::get_item::GetItemOutput,
    aws_sdk_dynamodb::operation::put_item::PutItemOutput,
    aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
    aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput,
    aws_sdk_dynamodb::operation::query::QueryOutput,
    aws_sdk_dynamodb::operation::scan::ScanOutput
);

impl Consumed for aws_sdk_dynamodb::operation::batch_get_item::BatchGetItemOutput {
    fn consumed(&self) -> Vec<&ConsumedCapacity> {
        self.consumed_capacity().iter().collect()
    }
}

/// One request's usage from the capacity the service reported (none on an error: a
/// failed condition is billed, but the SDK error does not carry the figure).
fn reported_usage(op: &'static str, consumed: &[&ConsumedCapacity]) -> OpUsage {
    let write = matches!(op, "PutItem" | "UpdateItem" | "DeleteItem");
    let mut u = OpUsage::call();
    if write {
        u.table_writes = 1;
    }
    for c in consumed {
        // `CapacityUnits` alone (no read/write split) is of the request's kind.
        let split = |cap: &aws_sdk_dynamodb::types::Capacity| {
            let total = cap.capacity_units();
            let read = cap
                .read_capacity_units()
                .or(if write { None } else { total });
            let written = cap
                .write_capacity_units()
                .or(if write { total } else { None });
            (read.unwrap_or(0.0), written.unwrap_or(0.0))
        };
        let (read, written) = match c.table() {
            Some(t) => split(t),
            None if write => (0.0, c.capacity_units().unwrap_or(0.0)),
            None => (c.capacity_units().unwrap_or(0.0), 0.0),
        };
        u.rru += read;
        u.table_wru += written;
        for ix in c
            .global_secondary_indexes()
            .into_iter()
            .flat_map(|m| m.values())
        {
            let (r, w) = split(ix);
            u.rru += r;
            u.index_wru += w;
            // Keys-only entries are far below 1 KB: one unit per index write.
            u.index_writes += w.round() as u64;
        }
    }
    u
}

/// Tallies one answer into a [`Usage`], passing it on unchanged.
trait Tally: Sized {
    fn tally(self, usage: &Usage, op: &'static str) -> Self;
}

impl<O: Consumed, E> Tally for Result<O, E> {
    fn tally(self, usage: &Usage, op: &'static str) -> Self {
        let consumed = self.as_ref().map(Consumed::consumed).unwrap_or_default();
        usage.record(op, reported_usage(op, &consumed));
        self
    }
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// On an executed occurrence of a tenant in shadow mode: the trigger body it would have sent.
const SHADOW_TRIGGER_ATTR: &str = "shadow_trigger";
/// The payload, on an occurrence that carries it and on a payload item.
const PAYLOAD_ATTR: &str = "payload";
/// On an occurrence whose payload is stored apart: the payload item's sort key.
const PAYLOAD_REF_ATTR: &str = "payload_ref";

/// How `item` is stored when it is too large to carry its payload (over
/// [`INLINE_ITEM_MAX_BYTES`] as this adapter writes it): the key of the payload item, and
/// the occurrence referring to it. `None`: it is stored whole.
pub(crate) fn split_payload(item: &ScheduleItem) -> Option<(ScheduleKey, ScheduleItem)> {
    if item.payload_ref.is_some() || schedule_item_size(item) <= INLINE_ITEM_MAX_BYTES {
        return None;
    }
    let key = item
        .key
        .payload_of(&item.device_workflow_step_id, item.definition_version);
    let mut occurrence = item.clone();
    occurrence.payload = Map::new();
    occurrence.payload_ref = Some(key.sk.clone());
    Some((key, occurrence))
}

/// A payload item: the payload and the `ttl` of the last occurrence of its day that may
/// refer to it (the day's end plus the retention the occurrence's own `ttl` carries). It
/// has no `status_shard`, so it is never in the status index.
pub(crate) fn payload_item_to_av(key: &ScheduleKey, item: &ScheduleItem) -> Item {
    let day_end = item
        .scheduled_time
        .date()
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(item.scheduled_time.epoch_seconds(), |t| {
            t.and_utc().timestamp()
        });
    let ttl = item.ttl + (day_end - item.scheduled_time.epoch_seconds()).max(0);
    Item::from([
        (attr::PK.into(), s(&key.pk)),
        (attr::SK.into(), s(&key.sk)),
        (
            PAYLOAD_ATTR.into(),
            AttributeValue::M(json_map_to_av(&item.payload)),
        ),
        (attr::TTL.into(), n(ttl)),
    ])
}

/// The payload of a payload item read back.
pub(crate) fn payload_from_av(
    key: &ScheduleKey,
    item: Option<&Item>,
) -> Result<Payload, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: key.to_string(),
        reason,
    };
    match item.and_then(|i| i.get(PAYLOAD_ATTR)) {
        Some(AttributeValue::M(m)) => {
            av_map_to_json(m).map_err(|e| corrupt(format!("payload: {e}")))
        }
        Some(other) => Err(corrupt(format!("payload is {other:?}, expected a map"))),
        None if item.is_none() => Err(corrupt(
            "the payload item an occurrence refers to is missing".to_owned(),
        )),
        None => Err(corrupt("the payload item has no payload".to_owned())),
    }
}

/// Payload items this adapter has written (or found written), so each is written once
/// per container, not once per occurrence; bounded, as a warm container lives for hours.
#[derive(Debug, Default)]
pub(crate) struct WrittenPayloads(Mutex<std::collections::HashSet<ScheduleKey>>);

/// More payload keys than any run writes; past it the memory is simply started afresh.
const WRITTEN_PAYLOADS_MAX: usize = 100_000;

impl WrittenPayloads {
    pub(crate) fn contains(&self, key: &ScheduleKey) -> bool {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(key)
    }

    pub(crate) fn insert(&self, key: ScheduleKey) {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() >= WRITTEN_PAYLOADS_MAX {
            set.clear();
        }
        set.insert(key);
    }
}

/// The attribute map of one occurrence, as it is written to the schedule table.
pub fn item_to_av(item: &ScheduleItem) -> Item {
    let mut m = Item::new();
    if let Some(mode) = item.mode {
        m.insert(MODE_ATTR.into(), s(mode.as_str()));
    }
    if let Some(body) = &item.shadow_trigger {
        m.insert(SHADOW_TRIGGER_ATTR.into(), s(body));
    }
    m.insert(attr::PK.into(), s(&item.key.pk));
    m.insert(attr::SK.into(), s(&item.key.sk));
    m.insert("tenant_id".into(), s(item.tenant_id.as_str()));
    m.insert(
        "device_workflow_step_id".into(),
        s(item.device_workflow_step_id.as_str()),
    );
    m.insert("device_id".into(), s(item.device_id.as_str()));
    m.insert("workflow_id".into(), s(item.workflow_id.as_str()));
    m.insert(
        attr::SCHEDULED_TIME.into(),
        s(item.scheduled_time.to_string()),
    );
    m.insert("status".into(), s(item.status.as_str()));
    if let Some(v) = item.validation_result {
        m.insert("validation_result".into(), s(v.as_str()));
    }
    m.insert("retry_count".into(), n(item.retry_count));
    m.insert(attr::TTL.into(), n(item.ttl));
    m.insert("definition_version".into(), n(item.definition_version));
    match &item.payload_ref {
        Some(r) => {
            m.insert(PAYLOAD_REF_ATTR.into(), s(r));
        }
        None => {
            m.insert(
                PAYLOAD_ATTR.into(),
                AttributeValue::M(json_map_to_av(&item.payload)),
            );
        }
    }
    m.insert("created_at".into(), s(item.created_at.to_string()));
    if let Some(t) = item.queued_at {
        m.insert("queued_at".into(), s(t.to_string()));
    }
    if let Some(t) = item.executed_at {
        m.insert("executed_at".into(), s(t.to_string()));
    }
    if let Some(e) = &item.last_error {
        m.insert("last_error".into(), s(e));
    }
    if let Some(shard) = &item.status_shard {
        m.insert(attr::STATUS_SHARD.into(), s(shard.as_str()));
    }
    if let Some(g) = item.misfire_grace {
        m.insert("misfire_grace".into(), n(g.as_secs()));
    }
    if let Some(ms) = item.lateness_ms {
        m.insert("lateness_ms".into(), n(ms));
    }
    if let Some(o) = &item.lease_owner {
        m.insert("lease_owner".into(), s(o));
    }
    if let Some(t) = item.lease_until {
        m.insert("lease_until".into(), s(t.to_string()));
    }
    if item.sweeps > 0 {
        m.insert(SWEEPS_ATTR.into(), n(item.sweeps));
    }
    if let Some(v) = item.cancelled_by_version {
        m.insert("cancelled_by_version".into(), n(v));
    }
    m
}

/// Size of one attribute value as DynamoDB bills it ([`crate::usage`]).
pub fn value_size(v: &AttributeValue) -> u64 {
    match v {
        AttributeValue::S(st) => usage::string_size(st),
        AttributeValue::N(raw) => usage::number_size(raw),
        AttributeValue::B(b) => b.as_ref().len() as u64,
        AttributeValue::Bool(_) | AttributeValue::Null(_) => usage::SCALAR_FLAG_SIZE,
        AttributeValue::L(l) => usage::container_size(l.iter().map(value_size)),
        AttributeValue::M(m) => {
            usage::container_size(m.iter().map(|(k, v)| k.len() as u64 + value_size(v)))
        }
        AttributeValue::Ss(set) => set.iter().map(|x| usage::string_size(x)).sum(),
        AttributeValue::Ns(set) => set.iter().map(|x| usage::number_size(x)).sum(),
        AttributeValue::Bs(set) => set.iter().map(|b| b.as_ref().len() as u64).sum(),
        _ => 0,
    }
}

/// Size of an item as DynamoDB bills it: every attribute's name and value.
pub fn item_size(item: &Item) -> u64 {
    item.iter()
        .map(|(k, v)| k.len() as u64 + value_size(v))
        .sum()
}

/// Size of an occurrence as this adapter writes it (the twin bills its items by it).
pub fn schedule_item_size(item: &ScheduleItem) -> u64 {
    item_size(&item_to_av(item))
}

/// Size of an occurrence's entry in the keys-only status index, or `None` when it is not
/// in the index.
pub fn index_entry_size(item: &ScheduleItem) -> Option<u64> {
    let shard = item.status_shard.as_ref()?;
    Some(status_index_entry_size(
        shard,
        item.scheduled_time,
        &item.key,
    ))
}

/// Size of the status index entry of the occurrence `key` due at `time` under `shard`.
pub fn status_index_entry_size(shard: &StatusShard, time: Timestamp, key: &ScheduleKey) -> u64 {
    let attr_size = |name: &str, value: &str| (name.len() + value.len()) as u64;
    let index_key = attr_size(attr::STATUS_SHARD, shard.as_str())
        + attr_size(attr::SCHEDULED_TIME, &time.to_string());
    let table_key = attr_size(attr::PK, &key.pk) + attr_size(attr::SK, &key.sk);
    usage::keys_only_index_entry_size(index_key, table_key)
}

/// Size of the scanner's state item (horizon and shard count) as this adapter writes it.
pub fn scan_state_size(covered_to: Option<Timestamp>, max_status_shards: Option<u16>) -> u64 {
    let key = scan_horizon_key();
    let mut item = Item::from([(attr::PK.into(), s(&key.pk)), (attr::SK.into(), s(&key.sk))]);
    if let Some(t) = covered_to {
        item.insert(COVERED_TO_ATTR.into(), s(t.to_string()));
    }
    if let Some(m) = max_status_shards {
        item.insert(MAX_STATUS_SHARDS_ATTR.into(), n(m));
    }
    item_size(&item)
}

/// Size of a definitions row (its JSON form with `PK` and `SK`) as this adapter writes it.
pub fn definition_row_size(pk: &str, sk: &str, row: &Value) -> u64 {
    let body = match row {
        Value::Object(m) => item_size(&json_map_to_av(m)),
        other => value_size(&json_to_av(other)),
    };
    body + (attr::PK.len() + pk.len() + attr::SK.len() + sk.len()) as u64
}

/// Reads attributes of one item, naming the item and the attribute in every error.
struct Reader<'a> {
    item: &'a Item,
    key: String,
}

impl<'a> Reader<'a> {
    fn new(item: &'a Item) -> Self {
        let part = |k: &str| {
            item.get(k)
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                .unwrap_or("?")
        };
        let key = format!("{}|{}", part(attr::PK), part(attr::SK));
        Self { item, key }
    }

    fn corrupt(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            key: self.key.clone(),
            reason: reason.into(),
        }
    }

    fn opt_s(&self, name: &str) -> Result<Option<&'a str>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(AttributeValue::S(v)) => Ok(Some(v)),
            Some(other) => Err(self.corrupt(format!("{name} is {other:?}, expected a string"))),
        }
    }

    fn s(&self, name: &str) -> Result<&'a str, StoreError> {
        self.opt_s(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is missing")))
    }

    fn n<T: std::str::FromStr>(&self, name: &str) -> Result<T, StoreError> {
        match self.item.get(name) {
            Some(AttributeValue::N(v)) => v
                .parse()
                .map_err(|_| self.corrupt(format!("{name} {v:?} is out of range"))),
            None => Err(self.corrupt(format!("{name} is missing"))),
            Some(other) => Err(self.corrupt(format!("{name} is {other:?}, expected a number"))),
        }
    }

    fn opt_n<T: std::str::FromStr>(&self, name: &str) -> Result<Option<T>, StoreError> {
        match self.item.get(name) {
            None | Some(AttributeValue::Null(_)) => Ok(None),
            Some(_) => self.n(name).map(Some),
        }
    }

    fn parse<T, E: std::fmt::Display>(
        &self,
        name: &str,
        f: impl Fn(&str) -> Result<T, E>,
    ) -> Result<T, StoreError> {
        f(self.s(name)?).map_err(|e| self.corrupt(format!("{name}: {e}")))
    }

    fn opt_time(&self, name: &str) -> Result<Option<Timestamp>, StoreError> {
        self.opt_s(name)?
            .map(|v| Timestamp::parse(v).map_err(|e| self.corrupt(format!("{name}: {e}"))))
            .transpose()
    }
}

/// One occurrence read back from its attribute map.
pub fn item_from_av(item: &Item) -> Result<ScheduleItem, StoreError> {
    let r = Reader::new(item);
    let payload = match item.get("payload") {
        None => Map::new(),
        Some(AttributeValue::M(m)) => {
            av_map_to_json(m).map_err(|e| r.corrupt(format!("payload: {e}")))?
        }
        Some(other) => return Err(r.corrupt(format!("payload is {other:?}, expected a map"))),
    };
    let validation_result = r
        .opt_s("validation_result")?
        .map(|v| {
            Validation::parse(v).ok_or_else(|| {
                r.corrupt(format!("validation_result {v:?} is not VALID or INVALID"))
            })
        })
        .transpose()?;
    let status: Status = r.parse("status", str::parse)?;
    let key = ScheduleKey {
        pk: r.s(attr::PK)?.to_owned(),
        sk: r.s(attr::SK)?.to_owned(),
    };
    let status_shard = r
        .opt_s(attr::STATUS_SHARD)?
        .map(|raw| {
            parse_shard(raw, status).ok_or_else(|| {
                r.corrupt(format!(
                    "status_shard {raw:?} does not match status {status}"
                ))
            })
        })
        .transpose()?;
    Ok(ScheduleItem {
        key,
        tenant_id: r.parse("tenant_id", |v| TenantId::parse(v))?,
        device_workflow_step_id: r.parse("device_workflow_step_id", |v| StepId::parse(v))?,
        device_id: r.parse("device_id", |v| DeviceId::parse(v))?,
        workflow_id: r.parse("workflow_id", |v| WorkflowId::parse(v))?,
        scheduled_time: r.parse(attr::SCHEDULED_TIME, Timestamp::parse)?,
        status,
        validation_result,
        retry_count: r.n("retry_count")?,
        ttl: r.n(attr::TTL)?,
        definition_version: r.n("definition_version")?,
        payload,
        payload_ref: r.opt_s(PAYLOAD_REF_ATTR)?.map(str::to_owned),
        created_at: r.parse("created_at", Timestamp::parse)?,
        queued_at: r.opt_time("queued_at")?,
        executed_at: r.opt_time("executed_at")?,
        last_error: r.opt_s("last_error")?.map(str::to_owned),
        status_shard,
        misfire_grace: r
            .opt_n::<u64>("misfire_grace")?
            .map(std::time::Duration::from_secs),
        lateness_ms: r.opt_n("lateness_ms")?,
        lease_owner: r.opt_s("lease_owner")?.map(str::to_owned),
        lease_until: r.opt_time("lease_until")?,
        cancelled_by_version: r.opt_n("cancelled_by_version")?,
        sweeps: r.opt_n(SWEEPS_ATTR)?.unwrap_or(0),
        mode: r
            .opt_s(MODE_ATTR)?
            .map(|m| {
                m.parse::<TenantMode>()
                    .map_err(|e| r.corrupt(format!("{MODE_ATTR}: {e}")))
            })
            .transpose()?,
        shadow_trigger: r.opt_s(SHADOW_TRIGGER_ATTR)?.map(str::to_owned),
    })
}

fn parse_shard(raw: &str, status: Status) -> Option<StatusShard> {
    let (st, nn) = raw.split_once('#')?;
    (st == status.as_str()).then_some(())?;
    nn.parse::<u16>().ok().map(|n| StatusShard::new(status, n))
}

impl DynamoScheduleStore {
    async fn create_split(&self, item: &ScheduleItem) -> Result<bool, StoreError> {
        let Some((payload_key, occurrence)) = split_payload(item) else {
            return self.put_if_absent(item).await;
        };
        // One small read instead of a large payload write when the occurrence exists (an
        // eventually consistent one will do: a stale "absent" only costs the writes).
        if self.get_attributes_with(&item.key, false).await?.is_some() {
            return Ok(false);
        }
        self.put_payload_once(&payload_key, item).await?;
        self.put_if_absent(&occurrence).await
    }

    async fn materialize_split(&self, item: &ScheduleItem) -> Result<Materialized, StoreError> {
        // A replay is kept from the write by the scanner's batched `existing` read.
        let Some((payload_key, occurrence)) = split_payload(item) else {
            return self.materialize_item(item).await;
        };
        // The payload is written before the occurrence that refers to it, so a reader of
        // the occurrence always finds it.
        self.put_payload_once(&payload_key, item).await?;
        self.materialize_item(&occurrence).await
    }

    /// Writes the occurrence `item` as it is unless its key exists.
    async fn put_if_absent(&self, item: &ScheduleItem) -> Result<bool, StoreError> {
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item_to_av(item)))
            .condition_expression("attribute_not_exists(PK)")
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "PutItem");
        conditional_write("PutItem", out)
    }

    /// Writes the payload item `key` of `item` unless this adapter wrote it before or it
    /// exists (same step, version and day: the same payload).
    async fn put_payload_once(
        &self,
        key: &ScheduleKey,
        item: &ScheduleItem,
    ) -> Result<(), StoreError> {
        if self.written_payloads.contains(key) {
            return Ok(());
        }
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(payload_item_to_av(key, item)))
            .condition_expression("attribute_not_exists(PK)")
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "PutItem");
        conditional_write("PutItem", out)?;
        self.written_payloads.insert(key.clone());
        Ok(())
    }

    async fn materialize_item(&self, item: &ScheduleItem) -> Result<Materialized, StoreError> {
        if item.status != Status::Pending {
            // Pre-judged SKIPPED (invalid device): only ever created, as the memory twin does.
            return Ok(if self.put_if_absent(item).await? {
                Materialized::Created
            } else {
                Materialized::Unchanged
            });
        }
        // One conditional UpdateItem for every case: it creates the item when absent, and
        // takes the new version over a PENDING or CANCELLED item of an older one. Fields
        // that are bookkeeping keep their stored value (`if_not_exists`). The old image
        // tells which case applied.
        let mut set = vec![
            "#status = :pending",
            "#shard = :shard",
            "tenant_id = :tenant",
            "device_workflow_step_id = :step",
            "device_id = :device",
            "workflow_id = :workflow",
            "#time = :time",
            "definition_version = :version",
            "#ttl = :ttl",
            "created_at = if_not_exists(created_at, :created)",
            "retry_count = if_not_exists(retry_count, :retries)",
        ];
        let mut remove = vec!["last_error", "cancelled_by_version"];
        let mut values: Item = HashMap::new();
        let shard = StatusShard::new(Status::Pending, shard_of(&item.key, self.shards));
        values.insert(":pending".into(), s(Status::Pending.as_str()));
        values.insert(":cancelled".into(), s(Status::Cancelled.as_str()));
        values.insert(":shard".into(), s(shard.as_str()));
        values.insert(":tenant".into(), s(item.tenant_id.as_str()));
        values.insert(":step".into(), s(item.device_workflow_step_id.as_str()));
        values.insert(":device".into(), s(item.device_id.as_str()));
        values.insert(":workflow".into(), s(item.workflow_id.as_str()));
        values.insert(":time".into(), s(item.scheduled_time.to_string()));
        values.insert(":version".into(), n(item.definition_version));
        // The payload on the item, or the reference to where it is stored: never both.
        match &item.payload_ref {
            Some(r) => {
                set.push("payload_ref = :payload_ref");
                remove.push("#payload");
                values.insert(":payload_ref".into(), s(r));
            }
            None => {
                set.push("#payload = :payload");
                remove.push("payload_ref");
                values.insert(
                    ":payload".into(),
                    AttributeValue::M(json_map_to_av(&item.payload)),
                );
            }
        }
        values.insert(":ttl".into(), n(item.ttl));
        values.insert(":created".into(), s(item.created_at.to_string()));
        values.insert(":retries".into(), n(item.retry_count));
        if item.validation_result == Some(Validation::Valid) {
            set.push("validation_result = :valid");
            values.insert(":valid".into(), s(Validation::Valid.as_str()));
        } else {
            remove.push("validation_result");
        }
        if let Some(g) = item.misfire_grace {
            set.push("misfire_grace = :grace");
            values.insert(":grace".into(), n(g.as_secs()));
        } else {
            remove.push("misfire_grace");
        }
        let update = format!("SET {} REMOVE {}", set.join(", "), remove.join(", "));
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, s(&item.key.pk))
            .key(attr::SK, s(&item.key.sk))
            .update_expression(update)
            .condition_expression(
                "attribute_not_exists(PK) \
                 OR (#status = :pending AND definition_version < :version) \
                 OR (#status = :cancelled AND definition_version < :version)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#shard", attr::STATUS_SHARD)
            .expression_attribute_names("#time", attr::SCHEDULED_TIME)
            .expression_attribute_names("#payload", "payload")
            .expression_attribute_names("#ttl", attr::TTL)
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "UpdateItem");
        let old = match out {
            Ok(o) => o.attributes,
            Err(e) => {
                // A failed condition is the "leave it alone" case; other errors propagate.
                conditional_write::<(), _>("UpdateItem", Err(e))?;
                return Ok(Materialized::Unchanged);
            }
        };
        let old_status = old
            .as_ref()
            .and_then(|o| o.get("status"))
            .and_then(|v| v.as_s().ok())
            .map(|st| st.parse::<Status>());
        match old_status {
            None => Ok(Materialized::Created),
            Some(Ok(Status::Pending)) => Ok(Materialized::Refreshed),
            Some(Ok(Status::Cancelled)) => Ok(Materialized::Reinstated),
            Some(other) => Err(StoreError::Corrupt {
                key: item.key.to_string(),
                reason: format!(
                    "materialize replaced an item whose status was {other:?}, not PENDING or CANCELLED"
                ),
            }),
        }
    }
}

impl ScheduleStore for DynamoScheduleStore {
    fn status_shards(&self) -> u16 {
        self.shards
    }

    async fn create_if_absent(&self, item: &ScheduleItem) -> Result<bool, StoreError> {
        // Boxed: callers nest this future deep, and a box keeps their types shallow enough
        // for the compiler's layout queries.
        let boxed: BoxedStoreFuture<'_, bool> = Box::pin(self.create_split(item));
        boxed.await
    }

    async fn materialize(&self, item: &ScheduleItem) -> Result<Materialized, StoreError> {
        let boxed: BoxedStoreFuture<'_, Materialized> = Box::pin(self.materialize_split(item));
        boxed.await
    }

    async fn payload(&self, item: &ScheduleItem) -> Result<Payload, StoreError> {
        let Some(sk) = &item.payload_ref else {
            return Ok(item.payload.clone());
        };
        let key = ScheduleKey {
            pk: item.key.pk.clone(),
            sk: sk.clone(),
        };
        // Strongly consistent: the payload was written before the occurrence.
        let found = self.get_attributes_with(&key, true).await?;
        payload_from_av(&key, found.as_ref())
    }

    async fn cancel(
        &self,
        key: &ScheduleKey,
        cancelling_version: u64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, s(&key.pk))
            .key(attr::SK, s(&key.sk))
            .update_expression(
                "SET #status = :cancelled, last_error = :reason, cancelled_by_version = :version \
                 REMOVE #shard, lease_owner, lease_until",
            )
            .condition_expression("#status = :pending AND definition_version < :version")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#shard", attr::STATUS_SHARD)
            .expression_attribute_values(":cancelled", s(Status::Cancelled.as_str()))
            .expression_attribute_values(":pending", s(Status::Pending.as_str()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":version", n(cancelling_version))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "UpdateItem");
        conditional_write("UpdateItem", out)
    }

    async fn scan_horizon(&self) -> Result<Option<Timestamp>, StoreError> {
        let Some(item) = self.get_attributes_with(&scan_horizon_key(), true).await? else {
            return Ok(None);
        };
        Reader::new(&item).opt_time(COVERED_TO_ATTR)
    }

    async fn record_scan_horizon(&self, covered_to: Timestamp) -> Result<bool, StoreError> {
        let key = scan_horizon_key();
        // Times are fixed-width UTC strings, so string order is time order.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, s(&key.pk))
            .key(attr::SK, s(&key.sk))
            .update_expression("SET #covered = :to")
            .condition_expression("attribute_not_exists(#covered) OR #covered < :to")
            .expression_attribute_names("#covered", COVERED_TO_ATTR)
            .expression_attribute_values(":to", s(covered_to.to_string()))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "UpdateItem");
        conditional_write("UpdateItem", out)
    }

    async fn get(&self, key: &ScheduleKey) -> Result<Option<ScheduleItem>, StoreError> {
        self.get_attributes_with(key, true)
            .await?
            .as_ref()
            .map(item_from_av)
            .transpose()
    }

    async fn change_status(
        &self,
        key: &ScheduleKey,
        change: &StatusChange,
    ) -> Result<bool, StoreError> {
        // One conditional UpdateItem expressing exactly `ScheduleItem::apply`.
        let mut set = vec!["#status = :to".to_owned()];
        // Every recorded change ends the writer's lease.
        let mut remove = vec!["lease_owner", "lease_until"];
        let mut values: Item = HashMap::new();
        values.insert(":to".into(), s(change.to.as_str()));
        values.insert(":from".into(), s(change.from.as_str()));
        if change.to.is_indexed() {
            set.push("#shard = :shard".into());
            values.insert(
                ":shard".into(),
                s(StatusShard::new(change.to, shard_of(key, self.shards)).as_str()),
            );
        } else {
            remove.push("#shard");
        }
        match change.to {
            Status::Queued if change.to != change.from => {
                set.push("queued_at = :at".into());
                values.insert(":at".into(), s(change.at.to_string()));
            }
            Status::Executed => {
                set.push("executed_at = :at".into());
                values.insert(":at".into(), s(change.at.to_string()));
            }
            _ => {}
        }
        if let Some(e) = &change.error {
            set.push("last_error = :err".into());
            values.insert(":err".into(), s(e));
        }
        if let Some(v) = change.validation {
            set.push("validation_result = :v".into());
            values.insert(":v".into(), s(v.as_str()));
        }
        if let Some(ms) = change.lateness_ms {
            set.push("lateness_ms = :late".into());
            values.insert(":late".into(), n(ms));
        }
        // `mode` is a DynamoDB reserved word: named through `#mode`.
        let mut names = vec![("#status", "status"), ("#shard", attr::STATUS_SHARD)];
        if let Some(mode) = change.mode {
            set.push("#mode = :mode".to_owned());
            names.push(("#mode", MODE_ATTR));
            values.insert(":mode".into(), s(mode.as_str()));
        }
        if let Some(body) = &change.shadow_trigger {
            set.push(format!("{SHADOW_TRIGGER_ATTR} = :shadow"));
            values.insert(":shadow".into(), s(body));
        }
        if change.retry_increment > 0 {
            set.push("retry_count = if_not_exists(retry_count, :zero) + :inc".into());
            values.insert(":zero".into(), n(0));
            values.insert(":inc".into(), n(change.retry_increment));
        }
        let update = format!("SET {} REMOVE {}", set.join(", "), remove.join(", "));
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, s(&key.pk))
            .key(attr::SK, s(&key.sk))
            .update_expression(update)
            .condition_expression("attribute_exists(PK) AND #status = :from")
            .set_expression_attribute_names(Some(
                names
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
            ))
            .set_expression_attribute_values(Some(values))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "UpdateItem");
        conditional_write("UpdateItem", out)
    }

    async fn try_lease(
        &self,
        key: &ScheduleKey,
        status: Status,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, s(&key.pk))
            .key(attr::SK, s(&key.sk))
            .update_expression("SET lease_owner = :owner, lease_until = :until")
            .condition_expression(
                "attribute_exists(PK) AND #status = :status \
                 AND (attribute_not_exists(lease_until) OR lease_until <= :now OR lease_owner = :owner)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":until", s(until.to_string()))
            .expression_attribute_values(":now", s(now.to_string()))
            .expression_attribute_values(":status", s(status.as_str()))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "UpdateItem");
        conditional_write("UpdateItem", out)
    }

    async fn query_due_page(
        &self,
        shard: &StatusShard,
        before: Timestamp,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<DueEntry>, StoreError> {
        let start = cursor.map(decode_cursor).transpose()?;
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(STATUS_INDEX_NAME)
            .key_condition_expression("#shard = :shard AND #time < :before")
            .expression_attribute_names("#shard", attr::STATUS_SHARD)
            .expression_attribute_names("#time", attr::SCHEDULED_TIME)
            .expression_attribute_values(":shard", s(shard.as_str()))
            .expression_attribute_values(":before", s(before.to_string()))
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "Query")
            .map_err(|e| store_error("Query", e))?;
        let mut items = Vec::new();
        for it in out.items() {
            let r = Reader::new(it);
            items.push(DueEntry {
                key: ScheduleKey {
                    pk: r.s(attr::PK)?.to_owned(),
                    sk: r.s(attr::SK)?.to_owned(),
                },
                scheduled_time: r.parse(attr::SCHEDULED_TIME, Timestamp::parse)?,
                status_shard: shard.clone(),
            });
        }
        let next = out.last_evaluated_key().map(encode_cursor);
        Ok(Page { items, next })
    }

    // ---- Status shards ever used, and the sweep of stuck QUEUED occurrences. ----

    async fn max_status_shards(&self) -> Result<Option<u16>, StoreError> {
        let Some(item) = self.get_attributes_with(&scan_horizon_key(), true).await? else {
            return Ok(None);
        };
        Reader::new(&item).opt_n(MAX_STATUS_SHARDS_ATTR)
    }

    async fn record_status_shards(&self, shards: u16) -> Result<bool, StoreError> {
        use std::sync::atomic::Ordering;
        // The count only grows: once this adapter knows one as large is recorded, the
        // conditional write would fail (and be billed) every time.
        if self.known_shards.load(Ordering::Relaxed) >= shards {
            return Ok(false);
        }
        let key = scan_horizon_key();
        // On the scanner's state item, beside the horizon; SET leaves `covered_to` alone.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, s(&key.pk))
            .key(attr::SK, s(&key.sk))
            .update_expression("SET #max = :shards")
            .condition_expression("attribute_not_exists(#max) OR #max < :shards")
            .expression_attribute_names("#max", MAX_STATUS_SHARDS_ATTR)
            .expression_attribute_values(":shards", n(shards))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "UpdateItem");
        let recorded = conditional_write("UpdateItem", out)?;
        // Written, or an equal or larger count was there: either way it is recorded.
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
        let mut values: Item = HashMap::new();
        values.insert(":queued".into(), s(Status::Queued.as_str()));
        values.insert(":now".into(), s(now.to_string()));
        let seen = match seen_queued_at {
            Some(t) => {
                values.insert(":seen".into(), s(t.to_string()));
                "queued_at = :seen"
            }
            None => "attribute_not_exists(queued_at)",
        };
        let update = match sweep {
            Sweep::Redispatch => {
                values.insert(":zero".into(), n(0));
                values.insert(":one".into(), n(1));
                format!(
                    "SET queued_at = :now, {SWEEPS_ATTR} = if_not_exists({SWEEPS_ATTR}, :zero) + :one \
                     REMOVE lease_owner, lease_until"
                )
            }
            Sweep::Fail { reason } | Sweep::Miss { reason } => {
                values.insert(":to".into(), s(sweep.status().as_str()));
                values.insert(":reason".into(), s(reason));
                "SET #status = :to, last_error = :reason REMOVE #shard, lease_owner, lease_until"
                    .to_owned()
            }
        };
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, s(&key.pk))
            .key(attr::SK, s(&key.sk))
            .update_expression(update)
            .condition_expression(format!(
                "attribute_exists(PK) AND #status = :queued AND {seen} \
                 AND (attribute_not_exists(lease_until) OR lease_until <= :now)"
            ))
            .expression_attribute_names("#status", "status");
        if !matches!(sweep, Sweep::Redispatch) {
            request = request.expression_attribute_names("#shard", attr::STATUS_SHARD);
        }
        let out = request
            .set_expression_attribute_values(Some(values))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "UpdateItem");
        conditional_write("UpdateItem", out)
    }

    async fn queue_unleased(
        &self,
        key: &ScheduleKey,
        owner: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let shard = StatusShard::new(Status::Queued, shard_of(key, self.shards));
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, s(&key.pk))
            .key(attr::SK, s(&key.sk))
            .update_expression(
                "SET #status = :queued, #shard = :shard, queued_at = :now, lease_owner = :owner \
                 REMOVE lease_until",
            )
            // PENDING and free, or exactly as this same call left it (a lost answer).
            .condition_expression(
                "attribute_exists(PK) AND ((#status = :pending \
                 AND (attribute_not_exists(lease_until) OR lease_until <= :now)) \
                 OR (#status = :queued AND lease_owner = :owner AND queued_at = :now \
                 AND attribute_not_exists(lease_until)))",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#shard", attr::STATUS_SHARD)
            .expression_attribute_values(":owner", s(owner))
            .expression_attribute_values(":queued", s(Status::Queued.as_str()))
            .expression_attribute_values(":pending", s(Status::Pending.as_str()))
            .expression_attribute_values(":shard", s(shard.as_str()))
            .expression_attribute_values(":now", s(now.to_string()))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "UpdateItem");
        conditional_write("UpdateItem", out)
    }

    async fn unqueue(
        &self,
        key: &ScheduleKey,
        queued_at: Timestamp,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let shard = StatusShard::new(Status::Pending, shard_of(key, self.shards));
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, s(&key.pk))
            .key(attr::SK, s(&key.sk))
            .update_expression(
                "SET #status = :pending, #shard = :shard, last_error = :reason, \
                 retry_count = if_not_exists(retry_count, :zero) + :one \
                 REMOVE queued_at, lease_owner, lease_until",
            )
            .condition_expression(
                "attribute_exists(PK) AND #status = :queued AND queued_at = :at \
                 AND (attribute_not_exists(lease_until) OR lease_until <= :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#shard", attr::STATUS_SHARD)
            .expression_attribute_values(":queued", s(Status::Queued.as_str()))
            .expression_attribute_values(":pending", s(Status::Pending.as_str()))
            .expression_attribute_values(":shard", s(shard.as_str()))
            .expression_attribute_values(":reason", s(reason))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":at", s(queued_at.to_string()))
            .expression_attribute_values(":now", s(now.to_string()))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "UpdateItem");
        conditional_write("UpdateItem", out)
    }

    async fn existing(
        &self,
        keys: &[ScheduleKey],
    ) -> Result<HashMap<ScheduleKey, Existing>, StoreError> {
        // Distinct keys only: DynamoDB refuses a request that names one key twice.
        let distinct: std::collections::BTreeSet<&ScheduleKey> = keys.iter().collect();
        let requests: Vec<Vec<Item>> = distinct
            .into_iter()
            .map(|k| Item::from([(attr::PK.into(), s(&k.pk)), (attr::SK.into(), s(&k.sk))]))
            .collect::<Vec<_>>()
            .chunks(DYNAMO_MAX_BATCH_GET)
            .map(<[Item]>::to_vec)
            .collect();
        let rows: Vec<Vec<Item>> = futures::stream::iter(requests)
            .map(|keys| self.existing_batch(keys))
            .buffer_unordered(BATCH_GETS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut found = HashMap::new();
        for row in rows.iter().flatten() {
            let r = Reader::new(row);
            let key = ScheduleKey {
                pk: r.s(attr::PK)?.to_owned(),
                sk: r.s(attr::SK)?.to_owned(),
            };
            let status = r.parse::<Status, _>("status", |raw| raw.parse::<Status>())?;
            let definition_version = r.opt_n::<u64>("definition_version")?.unwrap_or(0);
            found.insert(
                key,
                Existing {
                    status,
                    definition_version,
                },
            );
        }
        Ok(found)
    }
}

/// Retries of one `BatchGetItem` of schedule keys: throttling, and unprocessed keys.
const EXISTING_RETRY: RetryPolicy =
    RetryPolicy::new(5, Duration::from_millis(50), Duration::from_secs(1), 0xe715);

impl DynamoScheduleStore {
    /// Reads up to [`DYNAMO_MAX_BATCH_GET`] keys (eventually consistent; the keys, the
    /// status and the definition version only), asking again through [`retrying`] for the
    /// keys DynamoDB left unprocessed until none is left or the attempts run out.
    async fn existing_batch(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        let seed_key = keys
            .first()
            .and_then(|k| k.get(attr::SK))
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        let state = Mutex::new(BatchGet {
            pending: keys,
            found: Vec::new(),
        });
        let shared = &state;
        let result = retrying(
            EXISTING_RETRY,
            &seed_key,
            &SystemClock,
            None,
            move || async move {
                let mut now =
                    std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()));
                let result = self.existing_batch_once(&mut now).await;
                *shared.lock().unwrap_or_else(|p| p.into_inner()) = now;
                result
            },
        )
        .await;
        let state = state.into_inner().unwrap_or_else(|p| p.into_inner());
        result.map(|()| state.found)
    }

    async fn existing_batch_once(&self, state: &mut BatchGet) -> Result<(), StoreError> {
        let request = KeysAndAttributes::builder()
            .set_keys(Some(state.pending.clone()))
            // Eventually consistent: half the read units, and a stale answer is safe
            // (see `ScheduleStore::existing`).
            .consistent_read(false)
            .projection_expression("#pk, #sk, #status, definition_version")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_names("#status", "status")
            .build()
            .map_err(|e| StoreError::Permanent {
                operation: "BatchGetItem",
                source: Box::new(e),
            })?;
        let out = self
            .client
            .batch_get_item()
            .request_items(&self.table, request)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "BatchGetItem")
            .map_err(|e| store_error("BatchGetItem", e))?;
        if let Some(rows) = out.responses.and_then(|mut r| r.remove(&self.table)) {
            state.found.extend(rows);
        }
        state.pending = out
            .unprocessed_keys
            .and_then(|mut u| u.remove(&self.table))
            .map(|k| k.keys)
            .unwrap_or_default();
        match state.pending.len() {
            0 => Ok(()),
            left => Err(StoreError::Transient {
                operation: "BatchGetItem",
                source: format!("{left} keys of table {} left unprocessed", self.table).into(),
            }),
        }
    }
}

impl crate::ports::ScanRuns for DynamoScheduleStore {
    async fn segment_done(
        &self,
        run_id: &str,
        segment: u32,
        total_segments: u32,
        expires: Timestamp,
    ) -> Result<u32, StoreError> {
        let key = crate::model::scan_state::scan_run_key(run_id);
        // ADD to a number set is idempotent: a redelivered segment counts once, and two
        // segments finishing together both land (one atomic update each).
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(attr::PK, s(&key.pk))
            .key(attr::SK, s(&key.sk))
            .update_expression("ADD #done :segment SET #total = :total, #ttl = :ttl")
            .expression_attribute_names("#done", SEGMENTS_DONE_ATTR)
            .expression_attribute_names("#total", TOTAL_SEGMENTS_ATTR)
            .expression_attribute_names("#ttl", attr::TTL)
            .expression_attribute_values(":segment", AttributeValue::Ns(vec![segment.to_string()]))
            .expression_attribute_values(":total", n(total_segments))
            .expression_attribute_values(":ttl", n(expires.epoch_seconds()))
            // The whole new item: an ADD that changed nothing (a segment recorded again) is
            // still answered with the set.
            .return_values(ReturnValue::AllNew)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "UpdateItem")
            .map_err(|e| store_error("UpdateItem", e))?;
        let done = out
            .attributes
            .as_ref()
            .and_then(|a| a.get(SEGMENTS_DONE_ATTR))
            .and_then(|v| v.as_ns().ok())
            .map_or(0, Vec::len);
        Ok(u32::try_from(done).unwrap_or(u32::MAX))
    }
}

/// Attribute counting the sweep's re-dispatches of one occurrence.
const SWEEPS_ATTR: &str = "sweeps";

/// A `LastEvaluatedKey` as a cursor: the JSON object of its string attributes, so any
/// value survives (a key written by another writer may hold a newline or `=`).
fn encode_cursor(key: &Item) -> Cursor {
    let parts: std::collections::BTreeMap<&str, &str> = key
        .iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|v| (k.as_str(), v.as_str())))
        .collect();
    Cursor(serde_json::to_string(&parts).unwrap_or_default())
}

fn decode_cursor(c: &Cursor) -> Result<Item, StoreError> {
    let parts: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&c.0).map_err(|e| StoreError::Corrupt {
            key: c.0.clone(),
            reason: format!("not a cursor of this table: {e}"),
        })?;
    Ok(parts.into_iter().map(|(k, v)| (k, s(v))).collect())
}

/// The definitions table in DynamoDB.
#[derive(Clone)]
pub struct DynamoDefinitionSource {
    client: Client,
    table: String,
    /// What the waits between retries of a batched read wait on.
    clock: Arc<dyn Clock>,
    /// Requests made and the capacity DynamoDB reported for them.
    usage: Arc<Usage>,
}

impl std::fmt::Debug for DynamoDefinitionSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DynamoDefinitionSource")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl DynamoDefinitionSource {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            clock: Arc::new(SystemClock),
            usage: Arc::new(Usage::new()),
        }
    }

    /// The same source tallying its requests into `usage`.
    pub fn with_usage(self, usage: Arc<Usage>) -> Self {
        Self { usage, ..self }
    }

    /// Requests made and the capacity DynamoDB reported for them.
    pub fn usage(&self) -> &Arc<Usage> {
        &self.usage
    }

    /// The same source waiting between retries on `clock` (a simulation's virtual clock).
    pub fn with_clock(self, clock: Arc<dyn Clock>) -> Self {
        Self { clock, ..self }
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

/// Retries of one `BatchGetItem`: throttling, and the keys it answered as unprocessed.
const BATCH_GET_RETRY: RetryPolicy =
    RetryPolicy::new(5, Duration::from_millis(50), Duration::from_secs(1), 0xb9e7);
/// `BatchGetItem` requests in flight at once for one [`DefinitionSource::get_many`].
const BATCH_GETS_IN_FLIGHT: usize = 4;

/// One `BatchGetItem` on its way: the keys still to read and the rows read so far.
#[derive(Debug, Default)]
struct BatchGet {
    pending: Vec<Item>,
    found: Vec<Item>,
}

impl DynamoDefinitionSource {
    /// Reads up to [`DYNAMO_MAX_BATCH_GET`] keys, asking again (through [`retrying`]) for
    /// the keys DynamoDB left unprocessed until none is left or the attempts run out.
    async fn batch_get(&self, keys: Vec<Item>) -> Result<Vec<Item>, StoreError> {
        // Jitter seeded by the first key: requests throttled together spread out.
        let seed_key = keys
            .first()
            .and_then(|k| k.get(attr::SK))
            .and_then(|v| v.as_s().ok())
            .cloned()
            .unwrap_or_default();
        let state = Mutex::new(BatchGet {
            pending: keys,
            found: Vec::new(),
        });
        let shared = &state;
        let result = retrying(
            BATCH_GET_RETRY,
            &seed_key,
            &*self.clock,
            None,
            move || async move {
                let mut now =
                    std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()));
                let result = self.batch_get_once(&mut now).await;
                *shared.lock().unwrap_or_else(|p| p.into_inner()) = now;
                result
            },
        )
        .await;
        let state = state.into_inner().unwrap_or_else(|p| p.into_inner());
        result.map(|()| state.found)
    }

    /// One request for the pending keys; what it leaves unprocessed becomes the pending
    /// keys, and a retryable error, so that the retry asks for exactly those.
    async fn batch_get_once(&self, state: &mut BatchGet) -> Result<(), StoreError> {
        let request = KeysAndAttributes::builder()
            .set_keys(Some(state.pending.clone()))
            .consistent_read(true)
            .build()
            .map_err(|e| StoreError::Permanent {
                operation: "BatchGetItem",
                source: Box::new(e),
            })?;
        let out = self
            .client
            .batch_get_item()
            .request_items(&self.table, request)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "BatchGetItem")
            .map_err(|e| store_error("BatchGetItem", e))?;
        if let Some(rows) = out.responses.and_then(|mut r| r.remove(&self.table)) {
            state.found.extend(rows);
        }
        state.pending = out
            .unprocessed_keys
            .and_then(|mut u| u.remove(&self.table))
            .map(|k| k.keys)
            .unwrap_or_default();
        match state.pending.len() {
            0 => Ok(()),
            left => Err(StoreError::Transient {
                operation: "BatchGetItem",
                source: format!("{left} keys of table {} left unprocessed", self.table).into(),
            }),
        }
    }
}

/// A definitions row: the whole item as JSON (its `PK`/`SK` included, which must be the
/// key its ids derive), validated; anything wrong is named with the row's key.
fn definition_from_av(item: &Item) -> ScannedDefinition {
    let r = Reader::new(item);
    let invalid = |field: &str, value: String, reason: String| InvalidDefinition {
        key: r.key.clone(),
        error: crate::model::DefinitionError {
            field: field.to_owned(),
            value,
            reason,
        },
    };
    let json = av_map_to_json(item).map_err(|e| invalid("definition", "<item>".to_owned(), e))?;
    let (Ok(pk), Ok(sk)) = (r.s(attr::PK), r.s(attr::SK)) else {
        return Err(invalid(
            "PK",
            format!("{:?}", item.get(attr::PK)),
            "the row's key is not a pair of strings".to_owned(),
        ));
    };
    Definition::from_row(pk, sk, &Value::Object(json)).map_err(|error| InvalidDefinition {
        key: r.key.clone(),
        error,
    })
}

impl DefinitionSource for DynamoDefinitionSource {
    async fn scan_page(
        &self,
        segment: u32,
        total_segments: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<ScannedDefinition>, StoreError> {
        let start = cursor.map(decode_cursor).transpose()?;
        let out = self
            .client
            .scan()
            .table_name(&self.table)
            .segment(i32::try_from(segment).unwrap_or(0))
            .total_segments(i32::try_from(total_segments.max(1)).unwrap_or(1))
            .set_exclusive_start_key(start)
            // Settings rows (a tenant's mode) share the table; they are no definitions.
            .filter_expression("NOT begins_with(#sk, :settings)")
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(":settings", s(SETTINGS_SK_PREFIX))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "Scan")
            .map_err(|e| store_error("Scan", e))?;
        Ok(Page {
            items: out.items().iter().map(definition_from_av).collect(),
            next: out.last_evaluated_key().map(encode_cursor),
        })
    }

    async fn get(
        &self,
        tenant: &TenantId,
        step: &StepId,
    ) -> Result<Option<ScannedDefinition>, StoreError> {
        let (pk, sk) = Definition::key_of(tenant, step);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::PK, s(pk))
            .key(attr::SK, s(sk))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "GetItem")
            .map_err(|e| store_error("GetItem", e))?;
        Ok(out.item.as_ref().map(definition_from_av))
    }

    async fn put(&self, def: &Definition) -> Result<(), StoreError> {
        let (pk, sk) = def.key();
        let Value::Object(json) = def.to_json() else {
            return Err(StoreError::Corrupt {
                key: format!("{pk}|{sk}"),
                reason: "definition did not serialize to an object".to_owned(),
            });
        };
        let mut item = json_map_to_av(&json);
        item.insert(attr::PK.into(), s(&pk));
        item.insert(attr::SK.into(), s(&sk));
        let out = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK) OR #version < :version")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":version", n(def.version))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "PutItem");
        if conditional_write("PutItem", out)? {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                key: format!("{pk}|{sk}"),
                reason: format!(
                    "version {} is not newer than the stored version",
                    def.version
                ),
            })
        }
    }

    async fn get_many(&self, keys: &[DefinitionKey]) -> Result<FetchedDefinitions, StoreError> {
        let mut fetched: FetchedDefinitions = keys.iter().map(|k| (k.clone(), None)).collect();
        // Rows come back in any order: match them to the requested keys by PK and SK.
        // Distinct keys only, as DynamoDB refuses a request that names one key twice.
        let by_key: HashMap<(String, String), &DefinitionKey> = fetched
            .keys()
            .map(|k| (Definition::key_of(&k.0, &k.1), k))
            .collect();
        let requests: Vec<Vec<Item>> = by_key
            .keys()
            .map(|(pk, sk)| Item::from([(attr::PK.into(), s(pk)), (attr::SK.into(), s(sk))]))
            .collect::<Vec<_>>()
            .chunks(DYNAMO_MAX_BATCH_GET)
            .map(<[Item]>::to_vec)
            .collect();
        let rows: Vec<Vec<Item>> = futures::stream::iter(requests)
            .map(|keys| self.batch_get(keys))
            .buffer_unordered(BATCH_GETS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut found = Vec::new();
        for row in rows.iter().flatten() {
            let part = |name: &str| row.get(name).and_then(|v| v.as_s().ok()).cloned();
            if let (Some(pk), Some(sk)) = (part(attr::PK), part(attr::SK))
                && let Some(key) = by_key.get(&(pk, sk))
            {
                found.push(((*key).clone(), definition_from_av(row)));
            }
        }
        for (key, def) in found {
            fetched.insert(key, Some(def));
        }
        Ok(fetched)
    }
}

/// JSON → DynamoDB attribute: numbers as `N`, objects as `M`, arrays as `L`.
pub fn json_to_av(v: &Value) -> AttributeValue {
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(num) => AttributeValue::N(num.to_string()),
        Value::String(st) => AttributeValue::S(st.clone()),
        Value::Array(a) => AttributeValue::L(a.iter().map(json_to_av).collect()),
        Value::Object(o) => AttributeValue::M(json_map_to_av(o)),
    }
}

pub fn json_map_to_av(m: &Map<String, Value>) -> Item {
    m.iter().map(|(k, v)| (k.clone(), json_to_av(v))).collect()
}

/// DynamoDB attribute → JSON; sets become arrays. Binary has no JSON form and is refused.
pub fn av_to_json(v: &AttributeValue) -> Result<Value, String> {
    Ok(match v {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::S(st) => Value::String(st.clone()),
        AttributeValue::N(raw) => Value::Number(number(raw)?),
        AttributeValue::L(l) => Value::Array(l.iter().map(av_to_json).collect::<Result<_, _>>()?),
        AttributeValue::M(m) => Value::Object(av_map_to_json(m)?),
        AttributeValue::Ss(set) => Value::Array(set.iter().cloned().map(Value::String).collect()),
        AttributeValue::Ns(set) => Value::Array(
            set.iter()
                .map(|x| number(x).map(Value::Number))
                .collect::<Result<_, _>>()?,
        ),
        other => return Err(format!("attribute {other:?} has no JSON form")),
    })
}

/// Every attribute of a map, at any depth (a payload may well have its own `PK`).
pub fn av_map_to_json(m: &Item) -> Result<Map<String, Value>, String> {
    m.iter()
        .map(|(k, v)| {
            av_to_json(v)
                .map(|j| (k.clone(), j))
                .map_err(|e| format!("{k}: {e}"))
        })
        .collect()
}

/// A DynamoDB number as JSON, exactly: `Number` keeps the text (serde_json's
/// `arbitrary_precision`), so the 38 digits DynamoDB keeps are not cut to an `f64`.
fn number(raw: &str) -> Result<Number, String> {
    let text = raw.trim();
    // DynamoDB answers canonical numbers; one written as `+5` or `.5` is made JSON first.
    let (sign, digits) = match text.strip_prefix('-') {
        Some(rest) => ("-", rest),
        None => ("", text.strip_prefix('+').unwrap_or(text)),
    };
    let digits = if digits.starts_with('.') {
        format!("0{digits}")
    } else {
        digits.to_owned()
    };
    format!("{sign}{digits}")
        .parse::<Number>()
        .map_err(|_| format!("number {raw:?} has no JSON form"))
}

type BuildError = aws_sdk_dynamodb::error::BuildError;

fn key_element(name: &str, key_type: KeyType) -> Result<KeySchemaElement, BuildError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
}

fn string_attribute(name: &str) -> Result<AttributeDefinition, BuildError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
}

fn build_error(e: BuildError) -> StoreError {
    StoreError::Permanent {
        operation: "CreateTable",
        source: Box::new(e),
    }
}

/// Creates the schedule table with its sparse GSI, as `template.yaml` declares it. For
/// emulators and local runs; on AWS the template owns the table.
pub async fn create_schedule_table(client: &Client, name: &str) -> Result<(), StoreError> {
    let gsi = GlobalSecondaryIndex::builder()
        .index_name(STATUS_INDEX_NAME)
        .key_schema(key_element(attr::STATUS_SHARD, KeyType::Hash).map_err(build_error)?)
        .key_schema(key_element(attr::SCHEDULED_TIME, KeyType::Range).map_err(build_error)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::KeysOnly)
                .build(),
        )
        .build()
        .map_err(build_error)?;
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .global_secondary_indexes(gsi);
    for a in [attr::PK, attr::SK, attr::STATUS_SHARD, attr::SCHEDULED_TIME] {
        request = request.attribute_definitions(string_attribute(a).map_err(build_error)?);
    }
    request
        .key_schema(key_element(attr::PK, KeyType::Hash).map_err(build_error)?)
        .key_schema(key_element(attr::SK, KeyType::Range).map_err(build_error)?)
        .send()
        .await
        .map_err(|e| store_error("CreateTable", e))?;
    Ok(())
}

/// Creates the definitions table (with its stream), as `template.yaml` declares it.
pub async fn create_definitions_table(client: &Client, name: &str) -> Result<(), StoreError> {
    let stream = StreamSpecification::builder()
        .stream_enabled(true)
        .stream_view_type(StreamViewType::NewAndOldImages)
        .build()
        .map_err(build_error)?;
    client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(string_attribute(attr::PK).map_err(build_error)?)
        .attribute_definitions(string_attribute(attr::SK).map_err(build_error)?)
        .key_schema(key_element(attr::PK, KeyType::Hash).map_err(build_error)?)
        .key_schema(key_element(attr::SK, KeyType::Range).map_err(build_error)?)
        .stream_specification(stream)
        .send()
        .await
        .map_err(|e| store_error("CreateTable", e))?;
    Ok(())
}

// ==== Operator reads and edits (the `wfs` CLI) ========================================

impl crate::ports::ScheduleBrowse for DynamoScheduleStore {
    async fn occurrences_page(
        &self,
        tenant: &TenantId,
        date: chrono::NaiveDate,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<ScheduleItem>, StoreError> {
        let start = cursor.map(decode_cursor).transpose()?;
        // SK is `TIME#{time}#STEP#{step}`: the partition reads back in time order.
        let out = self
            .client
            .query()
            .table_name(&self.table)
            // Occurrences only: the payload items beside them sort under `PAYLOAD#`.
            .key_condition_expression("#pk = :pk AND begins_with(#sk, :occurrence)")
            .expression_attribute_names("#pk", attr::PK)
            .expression_attribute_names("#sk", attr::SK)
            .expression_attribute_values(":pk", s(ScheduleKey::partition(tenant, date)))
            .expression_attribute_values(":occurrence", s(OCCURRENCE_SK_PREFIX))
            .consistent_read(true)
            .limit(i32::try_from(limit.max(1)).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "Query")
            .map_err(|e| store_error("Query", e))?;
        let items = out
            .items()
            .iter()
            .map(item_from_av)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            items,
            next: out.last_evaluated_key().map(encode_cursor),
        })
    }
}

impl crate::ports::DefinitionAdmin for DynamoDefinitionSource {
    async fn delete_definition(
        &self,
        tenant: &TenantId,
        step: &StepId,
    ) -> Result<bool, StoreError> {
        let (pk, sk) = Definition::key_of(tenant, step);
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(attr::PK, s(pk))
            .key(attr::SK, s(sk))
            .return_values(ReturnValue::AllOld)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "DeleteItem")
            .map_err(|e| store_error("DeleteItem", e))?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }
}
// ==== end of operator reads and edits ==================================================

/// A mode row as stored: the tenant from its key, the mode and when it was set.
fn mode_from_av(item: &Item) -> Result<TenantSetting, StoreError> {
    let r = Reader::new(item);
    let tenant = r
        .s(attr::PK)?
        .strip_prefix("TENANT#")
        .ok_or_else(|| r.corrupt("PK does not start with TENANT#".to_owned()))?;
    let tenant_id = TenantId::parse(tenant).map_err(|e| r.corrupt(e.to_string()))?;
    let mode = r.parse(MODE_ATTR, |v| v.parse::<TenantMode>())?;
    Ok(TenantSetting {
        tenant_id,
        mode,
        updated_at: r.opt_s("updated_at")?.map(str::to_owned),
    })
}

impl TenantModes for DynamoDefinitionSource {
    async fn stored_mode(&self, tenant: &TenantId) -> Result<Option<TenantMode>, StoreError> {
        let (pk, sk) = mode_key(tenant);
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(attr::PK, s(pk))
            .key(attr::SK, s(sk))
            .consistent_read(true)
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "GetItem")
            .map_err(|e| store_error("GetItem", e))?;
        out.item
            .as_ref()
            .map(|item| mode_from_av(item).map(|setting| setting.mode))
            .transpose()
    }

    async fn set_mode(
        &self,
        tenant: &TenantId,
        mode: TenantMode,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let (pk, sk) = mode_key(tenant);
        self.client
            .put_item()
            .table_name(&self.table)
            .item(attr::PK, s(pk))
            .item(attr::SK, s(sk))
            .item("tenant_id", s(tenant.as_str()))
            .item(MODE_ATTR, s(mode.as_str()))
            .item("updated_at", s(at.to_string()))
            .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
            .send()
            .await
            .tally(&self.usage, "PutItem")
            .map_err(|e| store_error("PutItem", e))?;
        Ok(())
    }

    async fn modes(&self) -> Result<Vec<TenantSetting>, StoreError> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("#sk = :mode")
                .expression_attribute_names("#sk", attr::SK)
                .expression_attribute_values(":mode", s(MODE_SK))
                .set_exclusive_start_key(start)
                .consistent_read(true)
                .return_consumed_capacity(ReturnConsumedCapacity::Indexes)
                .send()
                .await
                .tally(&self.usage, "Scan")
                .map_err(|e| store_error("Scan", e))?;
            for item in page.items() {
                out.push(mode_from_av(item)?);
            }
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => break,
            }
        }
        out.sort_by(|a, b| a.tenant_id.as_str().cmp(b.tenant_id.as_str()));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_any_key() {
        let key: Item = [
            ("PK", "TENANT#a\nPK=b"),
            ("SK", "TIME#x=y\n\nz"),
            ("status_shard", "PENDING#01"),
            ("scheduled_time", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), s(v)))
        .collect();
        assert_eq!(decode_cursor(&encode_cursor(&key)).unwrap(), key);
        let err = decode_cursor(&Cursor("PK=a\nSK=b".to_owned())).unwrap_err();
        assert!(err.to_string().contains("not a cursor"), "{err}");
    }

    #[test]
    fn item_sizes_count_names_values_and_container_overhead() {
        let item: Item = [
            ("PK".to_owned(), s("TENANT#a")),
            ("n".to_owned(), n(123)),
            (
                "m".to_owned(),
                AttributeValue::M(Item::from([("b".to_owned(), AttributeValue::Bool(true))])),
            ),
            (
                "l".to_owned(),
                AttributeValue::L(vec![s("ab"), AttributeValue::Null(true)]),
            ),
        ]
        .into_iter()
        .collect();
        // PK: 2 + 8; n: 1 + (2 digit pairs + 1 = 3); m: 1 + 3 + (1 + 1) + 1;
        // l: 1 + 3 + 2 + 1 + 1 + 1.
        assert_eq!(item_size(&item), 10 + 4 + 7 + 9);
    }

    #[test]
    fn numbers_keep_every_digit_both_ways() {
        for raw in [
            "1234567890123456789012345",
            "3.14159265358979323846264338327",
            "-0.000000000000000000012345678901234567",
            "99999999999999999999999999999999999999",
            "1e+130",
            "-7",
        ] {
            let json = av_to_json(&AttributeValue::N(raw.to_owned())).unwrap();
            assert_eq!(json.to_string(), raw);
            assert_eq!(json_to_av(&json), AttributeValue::N(raw.to_owned()));
        }
        assert_eq!(number("+5").unwrap().to_string(), "5");
        assert_eq!(number("-.5").unwrap().to_string(), "-0.5");
        assert!(number("five").is_err());
    }
}
