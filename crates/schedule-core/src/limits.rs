//! AWS limits and product constants. Each is defined here once and used everywhere,
//! including by the test that checks `template.yaml` against the code.

use std::time::Duration;

/// SQS `SendMessageBatch` takes at most 10 entries.
pub const SQS_MAX_BATCH: usize = 10;
/// SQS `ReceiveMessage` returns at most 10 messages.
pub const SQS_MAX_RECEIVE: i32 = 10;
/// SQS `DelaySeconds` ranges over 0..=900 (15 minutes).
pub const SQS_MAX_DELAY_SECONDS: u32 = 900;
/// An SQS message body (plus attributes) is at most 256 KiB.
pub const SQS_MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// A DynamoDB item is at most 400 KB.
pub const DYNAMO_MAX_ITEM_BYTES: usize = 400 * 1000;
/// DynamoDB nests maps and lists at most 32 levels deep (a top-level attribute is level 1).
pub const DYNAMO_MAX_DEPTH: usize = 32;
/// Room kept below [`DYNAMO_MAX_ITEM_BYTES`] when a row's size is estimated from its JSON:
/// the key attributes, and the bookkeeping attributes a schedule item adds to a payload.
pub const DYNAMO_ITEM_MARGIN_BYTES: usize = 16 * 1000;
/// The largest definitions row accepted, as the JSON of the definition (an upper bound of
/// DynamoDB's own size of the item: JSON spends more on quotes and punctuation).
pub const MAX_DEFINITION_ITEM_BYTES: usize = DYNAMO_MAX_ITEM_BYTES - DYNAMO_ITEM_MARGIN_BYTES;
/// `BatchWriteItem` takes at most 25 requests — and cannot carry a condition, so this
/// project never uses it for schedule items (an overwrite could reset a status).
pub const DYNAMO_MAX_BATCH_WRITE: usize = 25;
/// `BatchGetItem` takes at most 100 keys per request (and answers at most 16 MB; past
/// that, or when throttled, the rest comes back as `UnprocessedKeys`).
pub const DYNAMO_MAX_BATCH_GET: usize = 100;

/// The action payload must fit, with the envelope, in one SQS message (256 KiB) and, with
/// the bookkeeping attributes, in one DynamoDB item (400 KB). 128 KiB leaves room for both.
pub const MAX_PAYLOAD_BYTES: usize = 128 * 1024;
/// An occurrence carries its payload while the whole item stays within one write unit
/// (1 KB); above that the payload is stored once beside it, so that each status change
/// costs one unit whatever the payload.
pub const INLINE_ITEM_MAX_BYTES: u64 = 1024;
/// Ids match `[A-Za-z0-9_.:-]{1,128}`.
pub const MAX_ID_LEN: usize = 128;

/// Name of the sparse GSI the scheduler queries.
pub const STATUS_INDEX_NAME: &str = "status-scheduled_time-index";
/// Default number of `status_shard` values per status.
pub const DEFAULT_STATUS_SHARDS: u16 = 16;
/// Upper bound on shards: two decimal digits in `{STATUS}#{nn}`.
pub const MAX_STATUS_SHARDS: u16 = 100;

/// Receives before SQS moves an execution message to the DLQ (`maxReceiveCount`).
pub const EXECUTION_MAX_RECEIVE_COUNT: u32 = 3;
/// Visibility timeout of the execution queue; at least six times the executor's timeout,
/// as AWS advises for Lambda event sources.
pub const EXECUTION_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(180);
/// The execution queue keeps a message one day: far past the longest legitimate wait (a
/// delay of at most 900 s plus three receives of the visibility timeout each).
pub const EXECUTION_RETENTION: Duration = Duration::from_secs(86_400);
/// The DLQ keeps messages for the longest SQS allows, 14 days.
pub const DLQ_RETENTION: Duration = Duration::from_secs(14 * 24 * 3600);

/// Receives of a scan segment task before SQS moves it to the segment DLQ.
pub const SCAN_SEGMENT_MAX_RECEIVE_COUNT: u32 = 3;
/// Visibility timeout of the scan segment queue: six times the scanner's 900 s timeout,
/// as AWS advises for Lambda event sources.
pub const SCAN_SEGMENT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(5400);
/// Continuations of the scheduler that run at once (the continuation event source's
/// `MaximumConcurrency`); the scheduler's reserved concurrency is this plus the scheduled run.
pub const SCHEDULER_CONTINUATION_CONCURRENCY: u32 = 16;
/// Timeout of `scheduler_v2`; the continuation queue's visibility timeout is six times it.
pub const SCHEDULER_TIMEOUT: Duration = Duration::from_secs(120);

/// Attribute names of the schedule table that appear in its key schema.
pub mod attr {
    pub const PK: &str = "PK";
    pub const SK: &str = "SK";
    pub const STATUS_SHARD: &str = "status_shard";
    pub const SCHEDULED_TIME: &str = "scheduled_time";
    pub const TTL: &str = "ttl";
}

/// The scheduler's window, equal to its EventBridge rate (a design choice, not a tuning
/// knob: precision inside the window comes from `DelaySeconds`).
pub const DEFAULT_SCHEDULE_WINDOW: Duration = Duration::from_secs(5 * 60);
/// How long after it was due an occurrence is kept (DynamoDB TTL).
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// How far back a scheduled scan may start to catch up runs that did not complete (7
/// days). Occurrences it brings in past their misfire grace are recorded MISSED by the
/// scheduler: an outage shows as MISSED steps, never as steps that silently do not exist.
pub const DEFAULT_SCAN_CATCH_UP: Duration = Duration::from_secs(7 * 86_400);

/// Occurrences of one schedule are at least this far apart: a typo such as `1s` for `1h`,
/// or a cron seconds field of `*`, would otherwise materialize up to 86,400 items a day
/// for one step.
pub const MIN_OCCURRENCE_INTERVAL: Duration = Duration::from_secs(60);
/// At most this many occurrences of one schedule in one UTC day (one a minute).
pub const MAX_OCCURRENCES_PER_UTC_DAY: usize = 1_440;
