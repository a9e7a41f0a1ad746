//! `wfs status`: what needs the scheduler now (PENDING and QUEUED counts per status shard,
//! from the sparse status index, and the oldest of each), the queue and DLQ depths, the
//! scanner's high-water mark and the largest shard count recorded.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;

use schedule_core::adapters::memory::InMemoryQueue;
use schedule_core::error::StoreError;
use schedule_core::model::{Status, Timestamp};
use schedule_core::ports::{Clock, Paging, ScheduleStore, query_due};
use serde::Serialize;

use crate::aws::{AwsOptions, ScheduleTable};
use crate::output::{self, table};
use crate::{CliError, failed};

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  wfs status\n  wfs status --json | jq .queues")]
pub struct StatusArgs {
    #[command(flatten)]
    pub table: ScheduleTable,
    /// The execution queue (its depth is shown when given)
    #[arg(
        long,
        env = "EXECUTION_QUEUE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub queue_url: Option<String>,
    /// The execution DLQ (its depth is shown when given)
    #[arg(
        long,
        env = "EXECUTION_DLQ_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub dlq_url: Option<String>,
    /// One JSON object {indexed, oldest, scan_horizon, max_status_shards, queues}
    #[arg(long)]
    pub json: bool,
}

/// Messages in a queue, as SQS counts them (approximate).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Depth {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

impl Depth {
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

/// A queue whose depth can be read.
pub trait QueueDepth: Send + Sync {
    fn depth(&self) -> impl Future<Output = Result<Depth, String>> + Send;
}

/// The embedded queue: every message it holds counts as visible.
impl QueueDepth for InMemoryQueue {
    async fn depth(&self) -> Result<Depth, String> {
        Ok(Depth {
            visible: self.len() as u64,
            ..Depth::default()
        })
    }
}

/// An SQS queue, read with GetQueueAttributes.
#[derive(Debug, Clone)]
pub struct SqsDepth {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
}

impl QueueDepth for SqsDepth {
    async fn depth(&self) -> Result<Depth, String> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .attribute_names(A::ApproximateNumberOfMessages)
            .attribute_names(A::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(A::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "GetQueueAttributes {}: {}",
                    self.url,
                    schedule_core::error::chain(&e)
                )
            })?;
        let n = |a: A| {
            out.attributes()
                .and_then(|m| m.get(&a))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(Depth {
            visible: n(A::ApproximateNumberOfMessages),
            in_flight: n(A::ApproximateNumberOfMessagesNotVisible),
            delayed: n(A::ApproximateNumberOfMessagesDelayed),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShardCount {
    pub status: String,
    pub shard: String,
    pub count: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Oldest {
    pub status: String,
    pub scheduled_time: String,
    pub pk: String,
    pub sk: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStatus {
    pub name: String,
    pub depth: Option<Depth>,
    /// Why the depth could not be read.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatusReport {
    /// Per status and shard, only shards that hold something.
    pub indexed: Vec<ShardCount>,
    /// Per status, all shards together.
    pub totals: BTreeMap<String, usize>,
    pub oldest: Vec<Oldest>,
    pub scan_horizon: Option<String>,
    pub max_status_shards: Option<u16>,
    pub status_shards: u16,
    pub queues: Vec<QueueStatus>,
}

/// Reads the index and the scanner's state; `queues` are read as given (name, queue).
pub async fn status<S: ScheduleStore, C: Clock + ?Sized>(
    store: &S,
    clock: &C,
    queues: &[(&str, &dyn DepthDyn)],
) -> Result<StatusReport, StoreError> {
    let paging = Paging {
        page_size: 1000,
        clock,
        deadline: None,
    };
    // Everything indexed, whatever its time: up to ten years ahead.
    let before = Timestamp::from_datetime(clock.now() + chrono::Duration::days(3650));
    let mut indexed = Vec::new();
    let mut totals = BTreeMap::new();
    let mut oldest = Vec::new();
    for status in [Status::Pending, Status::Queued] {
        let entries = query_due(store, status, before, paging).await?;
        let mut per_shard = BTreeMap::<String, usize>::new();
        for e in &entries {
            *per_shard
                .entry(e.status_shard.as_str().to_owned())
                .or_default() += 1;
        }
        indexed.extend(per_shard.into_iter().map(|(shard, count)| ShardCount {
            status: status.to_string(),
            shard,
            count,
        }));
        totals.insert(status.to_string(), entries.len());
        if let Some(e) = entries.first() {
            oldest.push(Oldest {
                status: status.to_string(),
                scheduled_time: e.scheduled_time.to_string(),
                pk: e.key.pk.clone(),
                sk: e.key.sk.clone(),
            });
        }
    }
    let mut queue_status = Vec::new();
    for (name, q) in queues {
        let (depth, error) = match q.depth_boxed().await {
            Ok(d) => (Some(d), None),
            Err(e) => (None, Some(e)),
        };
        queue_status.push(QueueStatus {
            name: (*name).to_owned(),
            depth,
            error,
        });
    }
    Ok(StatusReport {
        indexed,
        totals,
        oldest,
        scan_horizon: store.scan_horizon().await?.map(|t| t.to_string()),
        max_status_shards: store.max_status_shards().await?,
        status_shards: store.status_shards(),
        queues: queue_status,
    })
}

/// [`QueueDepth`] behind a reference, for a list of queues of different types.
pub trait DepthDyn: Send + Sync {
    fn depth_boxed(
        &self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Depth, String>> + Send + '_>>;
}

impl<Q: QueueDepth> DepthDyn for Q {
    fn depth_boxed(
        &self,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<Depth, String>> + Send + '_>> {
        Box::pin(self.depth())
    }
}

pub fn render(r: &StatusReport) -> String {
    let mut out = String::from("needs the scheduler (sparse status index):\n");
    let totals: Vec<Vec<String>> = ["PENDING", "QUEUED"]
        .iter()
        .map(|s| {
            let shards: Vec<String> = r
                .indexed
                .iter()
                .filter(|c| c.status == *s)
                .map(|c| {
                    format!(
                        "{}={}",
                        c.shard.rsplit('#').next().unwrap_or(&c.shard),
                        c.count
                    )
                })
                .collect();
            let oldest = r.oldest.iter().find(|o| o.status == *s);
            vec![
                (*s).to_owned(),
                r.totals.get(*s).copied().unwrap_or(0).to_string(),
                oldest.map_or_else(|| "-".to_owned(), |o| o.scheduled_time.clone()),
                if shards.is_empty() {
                    "-".to_owned()
                } else {
                    shards.join(" ")
                },
            ]
        })
        .collect();
    out.push_str(&table(&["status", "count", "oldest", "per shard"], &totals));
    out.push_str(&format!(
        "scan horizon: {}\nstatus shards: {} configured, {} recorded\n",
        r.scan_horizon.as_deref().unwrap_or("none recorded"),
        r.status_shards,
        r.max_status_shards
            .map_or_else(|| "none".to_owned(), |n| n.to_string())
    ));
    if !r.queues.is_empty() {
        let rows: Vec<Vec<String>> = r
            .queues
            .iter()
            .map(|q| match (&q.depth, &q.error) {
                (Some(d), _) => vec![
                    q.name.clone(),
                    d.visible.to_string(),
                    d.in_flight.to_string(),
                    d.delayed.to_string(),
                    d.total().to_string(),
                ],
                (None, e) => vec![
                    q.name.clone(),
                    format!("unreadable: {}", e.as_deref().unwrap_or("?")),
                ],
            })
            .collect();
        out.push_str(&table(
            &["queue", "visible", "in flight", "delayed", "total"],
            &rows,
        ));
    }
    out
}

pub async fn run(args: StatusArgs, aws: &AwsOptions, out: &mut dyn Write) -> Result<(), CliError> {
    let sdk = aws.sdk().await?;
    let store = args.table.store(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let depth = |url: &String| SqsDepth {
        client: sqs.clone(),
        url: url.clone(),
    };
    let queue = args.queue_url.as_ref().map(depth);
    let dlq = args.dlq_url.as_ref().map(depth);
    let mut queues: Vec<(&str, &dyn DepthDyn)> = Vec::new();
    if let Some(q) = &queue {
        queues.push(("execution", q));
    }
    if let Some(q) = &dlq {
        queues.push(("execution-dlq", q));
    }
    let clock = schedule_core::adapters::clock::SystemClock;
    let report = status(&store, &clock, &queues)
        .await
        .map_err(|e| failed("reading the schedule table", &e))?;
    if args.json {
        output::json_line(out, &report)
    } else {
        write!(out, "{}", render(&report)).map_err(|e| CliError::Failed(e.to_string()))
    }
}
