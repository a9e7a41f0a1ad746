//! Test doubles that wrap a real adapter (never replace it): a sink that fails on
//! purpose, a store that drops writes, and the SQS → Lambda event translation the
//! Lambda service performs, for in-test pollers.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use schedule_core::error::{QueueError, StoreError};
use schedule_core::model::{
    ScheduleItem, ScheduleKey, Status, StatusChange, StatusShard, Timestamp, TriggerMessage,
};
use schedule_core::ports::{ActionSink, Cursor, DueEntry, Page, ReceivedMessage, ScheduleStore};

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

/// A store whose PENDING → QUEUED writes are lost once per item (a crash right after the
/// send), and otherwise the wrapped store.
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

    async fn get(&self, key: &ScheduleKey) -> Result<Option<ScheduleItem>, StoreError> {
        self.inner.get(key).await
    }

    async fn change_status(
        &self,
        key: &ScheduleKey,
        change: &StatusChange,
    ) -> Result<bool, StoreError> {
        if change.from == Status::Pending
            && change.to == Status::Queued
            && self.lost.lock().unwrap().insert(key.clone())
        {
            return Err(StoreError::Permanent {
                operation: "UpdateItem",
                source: "injected crash after send".into(),
            });
        }
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
