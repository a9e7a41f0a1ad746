//! Request and capacity accounting: what each DynamoDB and SQS operation consumed, per
//! operation name, and the billing rules the embedded twin applies to its own items so
//! its figures are deterministic (the AWS adapters record what the service reports).
//!
//! The rules follow the DynamoDB and SQS pricing documentation:
//! - item size: attribute name lengths + value sizes (S: UTF-8 bytes; N: one byte per two
//!   significant digits + 1; B: bytes; BOOL/NULL: 1; M/L: 3 + contents + 1 per element);
//! - a write: one unit per started 1 KB of the item; an update or replace on the larger of
//!   the before and after images; a failed conditional write is billed the same way;
//! - a read: one unit per started 4 KB, half for an eventually consistent read; a Query
//!   or Scan sums the sizes of every item it read and rounds once; BatchGetItem per item;
//! - a keys-only GSI entry: index key + table key + 100 bytes; an update that adds or
//!   removes the index key is one index write, one that changes it two (delete + put);
//! - SQS: every request is billed per started 64 KB of its payload.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;

use serde::Serialize;

/// DynamoDB bills writes per started kilobyte.
pub const WRITE_UNIT_BYTES: u64 = 1024;
/// DynamoDB bills reads per started 4 KB.
pub const READ_UNIT_BYTES: u64 = 4096;
/// Bytes DynamoDB adds to every GSI entry.
pub const INDEX_ENTRY_OVERHEAD_BYTES: u64 = 100;
/// SQS bills one request per started 64 KB of payload.
pub const SQS_BILLING_CHUNK_BYTES: u64 = 64 * 1024;
/// Overhead of a map or list attribute, whatever its contents.
const CONTAINER_OVERHEAD_BYTES: u64 = 3;
/// Overhead of each element of a map or list.
const ELEMENT_OVERHEAD_BYTES: u64 = 1;

// ---- Billing rules: pure functions. ----

/// Size of a string value: its UTF-8 bytes.
pub fn string_size(value: &str) -> u64 {
    value.len() as u64
}

/// Size of a number value as DynamoDB stores it: one byte per two significant digits
/// (leading and trailing zeros trimmed, sign, point and exponent not counted) plus one.
pub fn number_size(raw: &str) -> u64 {
    let mantissa = raw
        .trim()
        .split(['e', 'E'])
        .next()
        .unwrap_or_default()
        .trim_start_matches(['-', '+']);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let significant = digits.trim_start_matches('0').trim_end_matches('0').len() as u64;
    significant.div_ceil(2) + 1
}

/// Size of a boolean or null value.
pub const SCALAR_FLAG_SIZE: u64 = 1;

/// Size of a map or list value whose elements' sizes are `element_sizes` (for a map, each
/// element is its name's length plus its value's size).
pub fn container_size(element_sizes: impl IntoIterator<Item = u64>) -> u64 {
    element_sizes
        .into_iter()
        .fold(CONTAINER_OVERHEAD_BYTES, |acc, e| {
            acc + e + ELEMENT_OVERHEAD_BYTES
        })
}

/// Write units of writing (or deleting) one item of `size` bytes: at least one.
pub fn write_units(size: u64) -> u64 {
    size.div_ceil(WRITE_UNIT_BYTES).max(1)
}

/// Write units of an update or replace: on the larger of the before image (`None`: the
/// item did not exist) and the after image. A failed conditional write is billed the same.
pub fn update_write_units(before: Option<u64>, after: u64) -> u64 {
    write_units(before.unwrap_or(0).max(after))
}

/// How a read is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consistency {
    Strong,
    Eventual,
}

/// Read units of reading `size` bytes in one rounding (one GetItem, or the sum of what a
/// Query or Scan read): at least one unit, halved for an eventually consistent read.
pub fn read_units(size: u64, consistency: Consistency) -> f64 {
    let units = size.div_ceil(READ_UNIT_BYTES).max(1) as f64;
    match consistency {
        Consistency::Strong => units,
        Consistency::Eventual => units / 2.0,
    }
}

/// Read units of a Query or Scan that read items of `sizes`: summed, then rounded once.
pub fn query_read_units(sizes: impl IntoIterator<Item = u64>, consistency: Consistency) -> f64 {
    read_units(sizes.into_iter().sum(), consistency)
}

/// Read units of a BatchGetItem that read items of `sizes`: each item rounded on its own.
pub fn batch_get_read_units(sizes: impl IntoIterator<Item = u64>, consistency: Consistency) -> f64 {
    sizes.into_iter().map(|s| read_units(s, consistency)).sum()
}

/// Size of one entry of a keys-only GSI: its key attributes, the table's key attributes
/// and the per-entry overhead.
pub fn keys_only_index_entry_size(index_key_bytes: u64, table_key_bytes: u64) -> u64 {
    index_key_bytes + table_key_bytes + INDEX_ENTRY_OVERHEAD_BYTES
}

/// Index writes of one table write, from the item's index key before and after (`None`:
/// not in the index). Added or removed: one; changed: two (delete + put); the same key
/// with a changed projected attribute: one; otherwise none.
pub fn index_writes<K: PartialEq>(
    before: Option<&K>,
    after: Option<&K>,
    projected_changed: bool,
) -> u64 {
    match (before, after) {
        (None, None) => 0,
        (Some(_), None) | (None, Some(_)) => 1,
        (Some(b), Some(a)) if b != a => 2,
        (Some(_), Some(_)) => u64::from(projected_changed),
    }
}

/// Billed SQS requests of one request carrying `payload_bytes` (all its messages): one
/// per started 64 KB, at least one.
pub fn sqs_billed_requests(payload_bytes: u64) -> u64 {
    payload_bytes.div_ceil(SQS_BILLING_CHUNK_BYTES).max(1)
}

// ---- Counters. ----

/// What one operation consumed (or the sum of many).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct OpUsage {
    /// Requests made.
    pub calls: u64,
    /// Table items written (a failed conditional write included).
    pub table_writes: u64,
    pub table_wru: f64,
    /// Writes to the GSI (an entry added or removed: one; changed: two).
    pub index_writes: u64,
    pub index_wru: f64,
    pub rru: f64,
    /// SQS requests as billed (per started 64 KB of payload).
    pub sqs_requests: u64,
}

impl OpUsage {
    /// One call with nothing consumed yet.
    pub fn call() -> Self {
        Self {
            calls: 1,
            ..Self::default()
        }
    }

    /// One table write of `wru` units (and `index_writes` index writes of one unit each:
    /// keys-only entries are far below 1 KB).
    pub fn write(wru: u64, index_writes: u64) -> Self {
        Self {
            calls: 1,
            table_writes: 1,
            table_wru: wru as f64,
            index_writes,
            index_wru: index_writes as f64,
            ..Self::default()
        }
    }

    /// One read of `rru` units.
    pub fn read(rru: f64) -> Self {
        Self {
            calls: 1,
            rru,
            ..Self::default()
        }
    }

    /// One SQS request carrying `payload_bytes`.
    pub fn sqs(payload_bytes: u64) -> Self {
        Self {
            calls: 1,
            sqs_requests: sqs_billed_requests(payload_bytes),
            ..Self::default()
        }
    }

    pub fn add(&mut self, o: &OpUsage) {
        self.calls += o.calls;
        self.table_writes += o.table_writes;
        self.table_wru += o.table_wru;
        self.index_writes += o.index_writes;
        self.index_wru += o.index_wru;
        self.rru += o.rru;
        self.sqs_requests += o.sqs_requests;
    }

    /// Table and index write units together.
    pub fn wru(&self) -> f64 {
        self.table_wru + self.index_wru
    }
}

/// A thread-safe tally per operation name; cheap enough for every request (one short
/// lock). Share one `Arc<Usage>` between the adapters whose requests should add up.
#[derive(Debug, Default)]
pub struct Usage {
    ops: Mutex<BTreeMap<&'static str, OpUsage>>,
}

impl Usage {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `usage` to operation `op` (a DynamoDB or SQS action name).
    pub fn record(&self, op: &'static str, usage: OpUsage) {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        ops.entry(op).or_default().add(&usage);
    }

    /// Everything recorded so far.
    pub fn snapshot(&self) -> UsageReport {
        let ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        UsageReport::from_ops(ops.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect())
    }

    /// Forgets everything recorded.
    pub fn reset(&self) {
        self.ops.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }
}

/// A snapshot of a [`Usage`]: per operation and in total.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UsageReport {
    pub operations: BTreeMap<String, OpUsage>,
    pub total: OpUsage,
}

impl UsageReport {
    pub fn from_ops(operations: BTreeMap<String, OpUsage>) -> Self {
        let mut total = OpUsage::default();
        operations.values().for_each(|o| total.add(o));
        Self { operations, total }
    }

    /// This report and `other` added up (for example two adapters' tallies).
    pub fn merged(&self, other: &UsageReport) -> Self {
        let mut operations = self.operations.clone();
        for (k, v) in &other.operations {
            operations.entry(k.clone()).or_default().add(v);
        }
        Self::from_ops(operations)
    }
}

impl fmt::Display for UsageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<26} {:>9} {:>9} {:>10} {:>9} {:>10} {:>10} {:>9}",
            "operation", "calls", "writes", "table WRU", "idx wr", "index WRU", "RRU", "SQS req"
        )?;
        let row = |f: &mut fmt::Formatter<'_>, name: &str, o: &OpUsage| {
            writeln!(
                f,
                "{:<26} {:>9} {:>9} {:>10.1} {:>9} {:>10.1} {:>10.1} {:>9}",
                name,
                o.calls,
                o.table_writes,
                o.table_wru,
                o.index_writes,
                o.index_wru,
                o.rru,
                o.sqs_requests
            )
        };
        for (name, o) in &self.operations {
            row(f, name, o)?;
        }
        row(f, "total", &self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_their_utf8_bytes_and_numbers_two_digits_a_byte() {
        assert_eq!(string_size("R"), 1);
        assert_eq!(string_size("Đà Lạt"), "Đà Lạt".len() as u64);
        assert_eq!(number_size("7"), 2);
        assert_eq!(number_size("12"), 2);
        assert_eq!(number_size("123"), 3);
        assert_eq!(number_size("1234567890"), 6);
        // Leading and trailing zeros, sign, point and exponent are not digits DynamoDB keeps.
        assert_eq!(number_size("-0.00120"), number_size("12"));
        assert_eq!(number_size("1200000"), number_size("12"));
        assert_eq!(number_size("1.5e+10"), number_size("15"));
        assert_eq!(number_size("0"), 1);
        // 38 significant digits: the most DynamoDB keeps, 20 bytes.
        assert_eq!(number_size(&"9".repeat(38)), 20);
    }

    #[test]
    fn maps_and_lists_cost_three_bytes_and_one_per_element() {
        assert_eq!(container_size([]), 3);
        // {"a": "xy", "b": true}: (1 + 2) + (1 + 1) contents, 2 elements.
        assert_eq!(container_size([3, 2]), 3 + 5 + 2);
    }

    #[test]
    fn writes_round_up_per_kilobyte_and_updates_bill_the_larger_image() {
        // AWS: a 500-byte item costs 1 WCU; a 1.5 KB item 2 WCU.
        assert_eq!(write_units(500), 1);
        assert_eq!(write_units(1536), 2);
        assert_eq!(write_units(1024), 1);
        assert_eq!(write_units(1025), 2);
        assert_eq!(write_units(0), 1);
        // An update shrinking a 3 KB item to 200 bytes is billed on the 3 KB.
        assert_eq!(update_write_units(Some(3 * 1024), 200), 3);
        assert_eq!(update_write_units(Some(200), 2100), 3);
        assert_eq!(update_write_units(None, 800), 1);
    }

    #[test]
    fn reads_round_up_per_4kb_and_queries_round_once() {
        // AWS: a 3.5 KB item is 1 RCU strongly consistent, 0.5 eventually consistent.
        assert_eq!(read_units(3584, Consistency::Strong), 1.0);
        assert_eq!(read_units(3584, Consistency::Eventual), 0.5);
        // AWS: a Query returning 40.8 KB in all rounds to 44 KB: 11 RCU.
        let sizes = std::iter::repeat_n(4178, 10); // 10 items, 41 780 bytes ≈ 40.8 KB
        assert_eq!(query_read_units(sizes, Consistency::Strong), 11.0);
        // AWS: 1500 items of 64 bytes are 96 KB: 24 RCU (not 1500).
        let small = std::iter::repeat_n(64, 1500);
        assert_eq!(query_read_units(small, Consistency::Strong), 24.0);
        // AWS: BatchGetItem of a 1.5 KB and a 6.5 KB item is 4 KB + 8 KB: 3 RCU.
        assert_eq!(batch_get_read_units([1536, 6656], Consistency::Strong), 3.0);
        // A read that finds nothing still costs the minimum.
        assert_eq!(query_read_units([], Consistency::Eventual), 0.5);
    }

    #[test]
    fn index_writes_count_entries_added_removed_and_moved() {
        let (pending, queued) = ("PENDING#03", "QUEUED#03");
        assert_eq!(index_writes(None, Some(&pending), true), 1, "added");
        assert_eq!(index_writes(Some(&pending), None, true), 1, "removed");
        assert_eq!(
            index_writes(Some(&pending), Some(&queued), false),
            2,
            "moved"
        );
        assert_eq!(
            index_writes(Some(&pending), Some(&pending), false),
            0,
            "untouched"
        );
        assert_eq!(
            index_writes(Some(&pending), Some(&pending), true),
            1,
            "projected"
        );
        assert_eq!(index_writes::<&str>(None, None, true), 0, "never indexed");
        assert_eq!(keys_only_index_entry_size(30, 70), 200);
    }

    #[test]
    fn sqs_bills_per_started_64kb() {
        // AWS: ten 1 KB messages in one SendMessageBatch are one request.
        assert_eq!(sqs_billed_requests(10 * 1024), 1);
        assert_eq!(sqs_billed_requests(64 * 1024), 1);
        assert_eq!(sqs_billed_requests(64 * 1024 + 1), 2);
        // AWS: a 256 KB payload is billed as 4 requests.
        assert_eq!(sqs_billed_requests(256 * 1024), 4);
        assert_eq!(sqs_billed_requests(0), 1);
    }

    #[test]
    fn a_usage_adds_up_per_operation_and_in_total() {
        let usage = Usage::new();
        usage.record("PutItem", OpUsage::write(2, 1));
        usage.record("PutItem", OpUsage::write(1, 0));
        usage.record("Query", OpUsage::read(0.5));
        usage.record("SendMessageBatch", OpUsage::sqs(70_000));
        let r = usage.snapshot();
        assert_eq!(r.operations["PutItem"].calls, 2);
        assert_eq!(r.operations["PutItem"].table_wru, 3.0);
        assert_eq!(r.total.index_writes, 1);
        assert_eq!(r.total.rru, 0.5);
        assert_eq!(r.total.sqs_requests, 2);
        assert_eq!(r.total.calls, 4);
        assert_eq!(r.total.wru(), 4.0);
        assert!(r.to_string().contains("PutItem"));
        let twice = r.merged(&r);
        assert_eq!(twice.total.table_wru, 6.0);
        usage.reset();
        assert_eq!(usage.snapshot().total.calls, 0);
    }
}
