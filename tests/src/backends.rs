//! Backends for the contract suite. Each test gets fresh tables and queues.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use schedule_core::adapters::clock::ManualClock;
use schedule_core::adapters::dynamo::{
    DynamoDefinitionSource, DynamoScheduleStore, create_definitions_table, create_schedule_table,
    json_map_to_av,
};
use schedule_core::adapters::memory::{
    InMemoryDefinitionSource, InMemoryQueue, InMemoryScheduleStore, QueueSettings,
};
use schedule_core::adapters::sqs::{QueueSpec, SqsActionSink, SqsDispatchQueue, create_queue};
use schedule_core::ports::{ActionSink, Clock, DefinitionSource, DispatchQueue, ScheduleStore};
use serde_json::Value;

/// What a contract case needs from a backend.
pub trait Backend: Send + Sync {
    type Store: ScheduleStore
        + schedule_core::ports::ScheduleBrowse
        + schedule_core::ports::ScanRuns;
    type Defs: DefinitionSource
        + schedule_core::ports::DefinitionAdmin
        + schedule_core::ports::TenantModes;
    type Queue: DispatchQueue;
    type Sink: ActionSink;

    fn name(&self) -> &'static str;
    fn store(&self, shards: u16) -> impl Future<Output = Self::Store> + Send;
    fn definitions(&self) -> impl Future<Output = Self::Defs> + Send;
    /// Stores raw JSON in the definitions table, as a careless writer could.
    fn put_raw_definition(
        &self,
        defs: &Self::Defs,
        pk: &str,
        sk: &str,
        v: Value,
    ) -> impl Future<Output = ()> + Send;
    /// A queue and its DLQ, redriving after `max_receives`.
    fn queue_with_dlq(
        &self,
        visibility: Duration,
        max_receives: u32,
    ) -> impl Future<Output = (Self::Queue, Self::Queue)> + Send;
    /// An action trigger queue (FIFO or standard) as a sink, and the same queue to read.
    fn action_queue(&self, fifo: bool) -> impl Future<Output = (Self::Sink, Self::Queue)> + Send;
    fn now(&self) -> DateTime<Utc>;
    /// Lets time pass: moves the manual clock, or sleeps.
    fn wait(&self, d: Duration) -> impl Future<Output = ()> + Send;
}

/// The embedded twin on a manual clock.
#[derive(Debug)]
pub struct Memory {
    pub clock: Arc<ManualClock>,
}

impl Default for Memory {
    fn default() -> Self {
        Self {
            clock: Arc::new(ManualClock::new(Utc::now())),
        }
    }
}

impl Backend for Memory {
    type Store = InMemoryScheduleStore;
    type Defs = InMemoryDefinitionSource;
    type Queue = Arc<InMemoryQueue>;
    type Sink = Arc<InMemoryQueue>;

    fn name(&self) -> &'static str {
        "memory"
    }

    async fn store(&self, shards: u16) -> InMemoryScheduleStore {
        InMemoryScheduleStore::new(shards)
    }

    async fn definitions(&self) -> InMemoryDefinitionSource {
        InMemoryDefinitionSource::new()
    }

    async fn put_raw_definition(
        &self,
        defs: &InMemoryDefinitionSource,
        pk: &str,
        sk: &str,
        v: Value,
    ) {
        defs.put_raw(pk, sk, v);
    }

    async fn queue_with_dlq(
        &self,
        visibility: Duration,
        max_receives: u32,
    ) -> (Arc<InMemoryQueue>, Arc<InMemoryQueue>) {
        let dlq = Arc::new(InMemoryQueue::new(
            "dlq",
            self.clock.clone(),
            QueueSettings::default(),
        ));
        let settings = QueueSettings {
            visibility_timeout: visibility,
            redrive: Some((dlq.clone(), max_receives)),
            fifo: false,
        };
        (
            Arc::new(InMemoryQueue::new("queue", self.clock.clone(), settings)),
            dlq,
        )
    }

    async fn action_queue(&self, fifo: bool) -> (Arc<InMemoryQueue>, Arc<InMemoryQueue>) {
        let settings = QueueSettings {
            fifo,
            ..QueueSettings::default()
        };
        let q = Arc::new(InMemoryQueue::new("actions", self.clock.clone(), settings));
        (q.clone(), q)
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    async fn wait(&self, d: Duration) {
        self.clock.advance(d);
    }
}

/// The emulator (moto) or AWS itself, wherever `AWS_ENDPOINT_URL` and the standard
/// variables point, through the real DynamoDB and SQS adapters.
#[derive(Debug, Clone)]
pub struct Emulator {
    pub dynamo: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
}

/// Names unique to this process and call, so tests never share a table or queue.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = Utc::now().timestamp_subsec_nanos();
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

impl Emulator {
    /// The emulator backend, or `None` (with a note on stderr) when no endpoint is set.
    /// `WFS_REQUIRE_EMULATOR=1` (set by the test command) turns a missing endpoint into
    /// a failure, so a CI run cannot pass by skipping.
    pub async fn from_env() -> Option<Self> {
        if std::env::var("AWS_ENDPOINT_URL").is_err() {
            if std::env::var("WFS_REQUIRE_EMULATOR").is_ok_and(|v| v == "1") {
                panic!(
                    "WFS_REQUIRE_EMULATOR=1 but AWS_ENDPOINT_URL is not set: start the emulator (make test does)"
                );
            }
            // Straight to stderr, past the test harness's capture, so a skipped case is seen.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"AWS_ENDPOINT_URL is not set: emulator case skipped (make test runs it against moto)\n",
            );
            return None;
        }
        let config = schedule_core::adapters::load_sdk_config(
            &schedule_core::config::SdkSettings::from_env(&schedule_core::config::Env::process())
                .unwrap(),
        )
        .await;
        Some(Self {
            dynamo: aws_sdk_dynamodb::Client::new(&config),
            sqs: aws_sdk_sqs::Client::new(&config),
        })
    }

    pub async fn schedule_table(&self) -> String {
        let name = unique_name("schedule");
        create_schedule_table(&self.dynamo, &name).await.unwrap();
        name
    }

    pub async fn definitions_table(&self) -> String {
        let name = unique_name("definitions");
        create_definitions_table(&self.dynamo, &name).await.unwrap();
        name
    }
}

impl Backend for Emulator {
    type Store = DynamoScheduleStore;
    type Defs = DynamoDefinitionSource;
    type Queue = SqsDispatchQueue;
    type Sink = SqsActionSink;

    fn name(&self) -> &'static str {
        "emulator"
    }

    async fn store(&self, shards: u16) -> DynamoScheduleStore {
        DynamoScheduleStore::new(self.dynamo.clone(), self.schedule_table().await, shards)
    }

    async fn definitions(&self) -> DynamoDefinitionSource {
        DynamoDefinitionSource::new(self.dynamo.clone(), self.definitions_table().await)
    }

    async fn put_raw_definition(
        &self,
        defs: &DynamoDefinitionSource,
        pk: &str,
        sk: &str,
        v: Value,
    ) {
        let mut item = json_map_to_av(v.as_object().unwrap());
        item.insert(
            "PK".into(),
            aws_sdk_dynamodb::types::AttributeValue::S(pk.into()),
        );
        item.insert(
            "SK".into(),
            aws_sdk_dynamodb::types::AttributeValue::S(sk.into()),
        );
        self.dynamo
            .put_item()
            .table_name(defs.table())
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }

    async fn queue_with_dlq(
        &self,
        visibility: Duration,
        max_receives: u32,
    ) -> (SqsDispatchQueue, SqsDispatchQueue) {
        let dlq_name = unique_name("dlq");
        let (dlq_url, dlq_arn) = create_queue(
            &self.sqs,
            &QueueSpec {
                name: &dlq_name,
                visibility_timeout: Duration::from_secs(30),
                redrive: None,
                retention: None,
            },
        )
        .await
        .unwrap();
        let name = unique_name("queue");
        let (url, _) = create_queue(
            &self.sqs,
            &QueueSpec {
                name: &name,
                visibility_timeout: visibility,
                redrive: Some((&dlq_arn, max_receives)),
                retention: None,
            },
        )
        .await
        .unwrap();
        (
            SqsDispatchQueue::new(self.sqs.clone(), url),
            SqsDispatchQueue::new(self.sqs.clone(), dlq_url),
        )
    }

    async fn action_queue(&self, fifo: bool) -> (SqsActionSink, SqsDispatchQueue) {
        let name = format!(
            "{}{}",
            unique_name("actions"),
            if fifo { ".fifo" } else { "" }
        );
        let spec = QueueSpec {
            name: &name,
            visibility_timeout: Duration::from_secs(30),
            redrive: None,
            retention: None,
        };
        let (url, _) = create_queue(&self.sqs, &spec).await.unwrap();
        (
            SqsActionSink::new(self.sqs.clone(), &url),
            SqsDispatchQueue::new(self.sqs.clone(), url),
        )
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn wait(&self, d: Duration) {
        tokio::time::sleep(d).await;
    }
}
