//! The executor's edges on the embedded twin: the last receive never leaves an occurrence
//! silently QUEUED, an early message goes back without touching its item or spending a
//! receive, no attempt starts that cannot finish before the invocation's deadline, a
//! late executor never sends for an occurrence another writer already failed, and a
//! redriven message re-runs a FAILED step under the same execution id.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use integration_tests::fakes::FlakySink;
use schedule_core::adapters::clock::ManualClock;
use schedule_core::adapters::memory::{InMemoryQueue, InMemoryScheduleStore, QueueSettings};
use schedule_core::app::ExecutionMessage;
use schedule_core::app::execute::{Executor, Incoming, Outcome};
use schedule_core::app::redrive::{RedriveAction, RedriveOptions, redrive};
use schedule_core::app::scan::ScanRequest;
use schedule_core::embedded::{Embedded, EmbeddedSettings};
use schedule_core::error::{StoreError, ValidationError};
use schedule_core::model::{
    Definition, DeviceId, ScheduleItem, ScheduleKey, Status, StatusChange, StatusShard, StepId,
    TenantId, Timestamp, Validation,
};
use schedule_core::ports::{
    ActionSink, Clock, Cursor, DefinitionSource, DeviceValidator, DispatchQueue, DueEntry,
    Materialized, OutgoingMessage, Page, ReceivedMessage, ScheduleStore, SendReport,
};
use serde_json::json;

fn start() -> DateTime<Utc> {
    "2026-11-26T08:00:00Z".parse().unwrap()
}

fn at(offset_s: i64) -> Timestamp {
    Timestamp::from_datetime(start() + chrono::Duration::seconds(offset_s))
}

fn once(step: &str, offset_s: i64) -> Definition {
    Definition::from_json(
        &json!({"tenant_id": "acme", "device_workflow_step_id": step,
        "workflow_id": "w1", "device_id": format!("dev-{step}"), "enabled": true, "version": 1,
        "schedule": {"type": "once", "at": at(offset_s).to_string()}, "payload": {"step": step}}),
    )
    .unwrap()
}

fn key(step: &str, offset_s: i64) -> ScheduleKey {
    ScheduleKey::new(
        &TenantId::parse("acme").unwrap(),
        at(offset_s),
        &StepId::parse(step).unwrap(),
    )
}

fn body(step: &str, offset_s: i64) -> String {
    ExecutionMessage::for_key(&key(step, offset_s), at(offset_s)).body()
}

/// Writes the definitions and materializes their occurrences (PENDING).
async fn seed<S: ScheduleStore + Clone, A: ActionSink>(
    world: &Embedded<S, A>,
    defs: &[Definition],
) {
    for d in defs {
        world.definitions.put(d).await.unwrap();
    }
    let now = Timestamp::from_datetime(world.clock.now());
    let report = world
        .scan(&ScanRequest::daily(now, &Default::default()))
        .await
        .unwrap();
    assert!(report.is_complete(), "{report:?}");
}

fn incoming<'a>(body: &'a str, receive_count: u32) -> Incoming<'a> {
    Incoming {
        message_id: "m-1",
        delivery_id: "receipt-1",
        body,
        receive_count,
        deadline: None,
    }
}

fn item<S, A>(world: &Embedded<S, A>, k: &ScheduleKey) -> ScheduleItem {
    world
        .memory_store
        .items()
        .into_iter()
        .find(|i| &i.key == k)
        .unwrap()
}

/// The in-memory store with faults that can be switched on: every read failing, or the
/// first QUEUED → EXECUTED writes failing (a throttled table right after a send).
#[derive(Debug)]
struct Faulty {
    inner: Arc<InMemoryScheduleStore>,
    fail_reads: AtomicBool,
    fail_executed_writes: AtomicU32,
}

impl Faulty {
    fn new(inner: Arc<InMemoryScheduleStore>) -> Self {
        Self {
            inner,
            fail_reads: AtomicBool::new(false),
            fail_executed_writes: AtomicU32::new(0),
        }
    }
}

fn throttled(operation: &'static str) -> StoreError {
    StoreError::Transient {
        operation,
        source: "injected ProvisionedThroughputExceededException".into(),
    }
}

impl ScheduleStore for Faulty {
    fn status_shards(&self) -> u16 {
        self.inner.status_shards()
    }
    async fn create_if_absent(&self, item: &ScheduleItem) -> Result<bool, StoreError> {
        self.inner.create_if_absent(item).await
    }
    async fn materialize(&self, item: &ScheduleItem) -> Result<Materialized, StoreError> {
        self.inner.materialize(item).await
    }
    async fn cancel(&self, key: &ScheduleKey, v: u64, reason: &str) -> Result<bool, StoreError> {
        self.inner.cancel(key, v, reason).await
    }
    async fn scan_horizon(&self) -> Result<Option<Timestamp>, StoreError> {
        self.inner.scan_horizon().await
    }
    async fn record_scan_horizon(&self, covered_to: Timestamp) -> Result<bool, StoreError> {
        self.inner.record_scan_horizon(covered_to).await
    }
    async fn get(&self, key: &ScheduleKey) -> Result<Option<ScheduleItem>, StoreError> {
        if self.fail_reads.load(Ordering::SeqCst) {
            return Err(throttled("GetItem"));
        }
        self.inner.get(key).await
    }
    async fn change_status(
        &self,
        key: &ScheduleKey,
        change: &StatusChange,
    ) -> Result<bool, StoreError> {
        if change.to == Status::Executed
            && self
                .fail_executed_writes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(throttled("UpdateItem"));
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
        sweep: &schedule_core::ports::Sweep,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner
            .sweep_queued(key, seen_queued_at, sweep, now)
            .await
    }

    async fn queue_unleased(
        &self,
        key: &ScheduleKey,
        owner: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.queue_unleased(key, owner, now).await
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

fn faulty_world() -> (Embedded<Arc<Faulty>, Arc<InMemoryQueue>>, Arc<Faulty>) {
    let clock = Arc::new(ManualClock::new(start()));
    let memory = Arc::new(InMemoryScheduleStore::new(16));
    let store = Arc::new(Faulty::new(memory.clone()));
    let action = Arc::new(InMemoryQueue::new(
        "action-trigger",
        clock.clone(),
        QueueSettings::default(),
    ));
    let world = Embedded::with_parts(
        clock,
        memory,
        store.clone(),
        action.clone(),
        action,
        EmbeddedSettings::default(),
    );
    (world, store)
}

#[tokio::test]
async fn last_receive_unrecorded_is_recorded_executed_never_left_queued() {
    let (world, store) = faulty_world();
    seed(&world, &[once("s1", 0)]).await;
    // Every status write the send path tries after the trigger went out fails.
    let attempts = world.executor.settings.status_retry.attempts;
    store.fail_executed_writes.store(attempts, Ordering::SeqCst);
    let b = body("s1", 0);
    let outcome = world.executor.handle(incoming(&b, 3), &world.metrics).await;
    let it = item(&world, &key("s1", 0));
    assert_eq!(world.triggers().len(), 1, "the trigger went out once");
    assert_eq!(
        it.status,
        Status::Executed,
        "the last receive must record EXECUTED (outcome {outcome:?}, error {:?})",
        it.last_error
    );
    assert!(outcome.acknowledge(), "{outcome:?}");
}

#[tokio::test]
async fn last_receive_with_the_table_unreadable_still_fails_the_queued_item() {
    let (world, store) = faulty_world();
    seed(&world, &[once("s1", 0)]).await;
    world.schedule("run-1").await.unwrap();
    assert_eq!(item(&world, &key("s1", 0)).status, Status::Queued);
    store.fail_reads.store(true, Ordering::SeqCst);
    let b = body("s1", 0);
    let outcome = world.executor.handle(incoming(&b, 3), &world.metrics).await;
    assert!(!outcome.acknowledge(), "{outcome:?}");
    let it = item(&world, &key("s1", 0));
    assert_eq!(
        it.status,
        Status::Failed,
        "a read failure on the last receive must not leave QUEUED ({outcome:?})"
    );
    assert!(
        it.last_error.as_deref().unwrap_or("").contains("GetItem"),
        "{:?}",
        it.last_error
    );
    assert!(world.triggers().is_empty());
}

#[tokio::test]
async fn last_receive_busy_is_left_to_the_lease_holder() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    seed(&world, &[once("s1", 0)]).await;
    world.schedule("run-1").await.unwrap();
    let k = key("s1", 0);
    let now = at(0);
    assert!(
        world
            .memory_store
            .try_lease(&k, Status::Queued, "other-delivery", at(60), now)
            .await
            .unwrap()
    );
    let b = body("s1", 0);
    let outcome = world.executor.handle(incoming(&b, 3), &world.metrics).await;
    assert_eq!(outcome, Outcome::Busy);
    let it = item(&world, &k);
    assert_eq!(it.status, Status::Queued, "the holder records the outcome");
    assert_eq!(it.lease_owner.as_deref(), Some("other-delivery"));
    assert!(world.triggers().is_empty());
}

/// A registry check during which another writer (the scheduler's sweep of old QUEUED
/// items) moves the occurrence to FAILED.
#[derive(Debug)]
struct SweptDuringValidation {
    store: Arc<InMemoryScheduleStore>,
    key: ScheduleKey,
}

impl DeviceValidator for SweptDuringValidation {
    async fn validate(
        &self,
        _tenant: &TenantId,
        _device: &DeviceId,
    ) -> Result<Validation, ValidationError> {
        let sweep = StatusChange::transition(Status::Queued, Status::Failed, at(0))
            .unwrap()
            .with_error("QUEUED too long");
        assert!(self.store.change_status(&self.key, &sweep).await.unwrap());
        Ok(Validation::Valid)
    }
}

#[tokio::test]
async fn a_late_executor_that_finds_failed_does_not_send() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    seed(&world, &[once("s1", 0)]).await;
    world.schedule("run-1").await.unwrap();
    let k = key("s1", 0);
    let executor = Executor {
        modes: schedule_core::mode_cache::ModeRouting::default(),
        store: world.memory_store.clone(),
        sink: world.action_queue.clone(),
        validator: SweptDuringValidation {
            store: world.memory_store.clone(),
            key: k.clone(),
        },
        clock: world.clock.clone(),
        settings: world.executor.settings.clone(),
    };
    let b = body("s1", 0);
    let outcome = executor.handle(incoming(&b, 3), &world.metrics).await;
    assert!(
        world.triggers().is_empty(),
        "sent for an occurrence already FAILED ({outcome:?})"
    );
    assert!(!outcome.acknowledge(), "{outcome:?}");
    assert_eq!(item(&world, &k).status, Status::Failed);
}

#[tokio::test]
async fn no_attempt_starts_that_cannot_finish_before_the_deadline() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    seed(&world, &[once("s1", 1), once("s2", 0)]).await;
    world.schedule("run-1").await.unwrap();
    // Due in 1 s (held until then), but the invocation ends in 500 ms.
    let b = body("s1", 1);
    let mut msg = incoming(&b, 1);
    msg.deadline = Some(start() + chrono::Duration::milliseconds(500));
    let outcome = world.executor.handle(msg, &world.metrics).await;
    assert!(matches!(outcome, Outcome::Retry { .. }), "{outcome:?}");
    assert_eq!(world.clock.now(), start(), "no wait started");
    // Due now, but the invocation ends before one send could finish.
    let b = body("s2", 0);
    let mut msg = incoming(&b, 1);
    msg.deadline = Some(start() + chrono::Duration::milliseconds(100));
    let outcome = world.executor.handle(msg, &world.metrics).await;
    assert!(matches!(outcome, Outcome::Retry { .. }), "{outcome:?}");
    assert!(world.triggers().is_empty(), "nothing sent");
    for step in [("s1", 1), ("s2", 0)] {
        let it = item(&world, &key(step.0, step.1));
        assert_eq!(
            (it.status, it.retry_count),
            (Status::Queued, 0),
            "{}",
            it.key
        );
    }
    // With time to spare, the same message goes through.
    let mut msg = incoming(&b, 2);
    msg.deadline = Some(start() + chrono::Duration::seconds(30));
    let outcome = world.executor.handle(msg, &world.metrics).await;
    assert!(matches!(outcome, Outcome::Executed { .. }), "{outcome:?}");
}

#[tokio::test]
async fn an_early_message_goes_back_without_touching_its_item_or_spending_receives() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    seed(&world, &[once("s1", 3600)]).await;
    let k = key("s1", 3600);
    let before = item(&world, &k);
    assert_eq!(before.status, Status::Pending);
    // Even on what SQS counts as its last receive.
    let b = body("s1", 3600);
    let outcome = world.executor.handle(incoming(&b, 3), &world.metrics).await;
    assert_eq!(item(&world, &k), before, "untouched ({outcome:?})");
    assert_eq!(
        outcome,
        Outcome::Deferred {
            delay: Duration::from_secs(900)
        }
    );

    // Through the edge: each early receive is answered by a fresh copy, delayed by the
    // time left (at most 900 s), so no copy is received more than once: an hour early
    // (four deferrals) never reaches the DLQ.
    world
        .execution_queue
        .push(b.clone(), Duration::ZERO, vec![], None)
        .unwrap();
    let mut deferred = 0;
    for _ in 0..10 {
        let outcomes = world.execute_ready().await.unwrap();
        if outcomes
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Executed { .. }))
        {
            break;
        }
        deferred += outcomes.len();
        assert_eq!(item(&world, &k), before, "untouched while early");
        let left = (at(3600).as_datetime() - world.clock.now()).num_seconds();
        world
            .clock
            .advance(Duration::from_secs(left.clamp(1, 900) as u64));
    }
    assert_eq!(deferred, 4, "one deferral per 900 s");
    let triggers = world.triggers();
    assert_eq!(triggers.len(), 1, "executed once");
    assert_eq!(item(&world, &k).status, Status::Executed);
    assert!(world.execution_queue.is_empty() && world.execution_dlq.is_empty());
    assert_eq!(triggers[0].scheduled_time, at(3600));
}

/// A world whose action trigger queue refuses the first `fail_first` sends of each step.
fn with_flaky_sink(
    fail_first: u32,
) -> Embedded<Arc<InMemoryScheduleStore>, Arc<FlakySink<Arc<InMemoryQueue>>>> {
    let clock = Arc::new(ManualClock::new(start()));
    let store = Arc::new(InMemoryScheduleStore::new(16));
    let action = Arc::new(InMemoryQueue::new(
        "action-trigger",
        clock.clone(),
        QueueSettings::default(),
    ));
    let sink = Arc::new(FlakySink::new(action.clone(), fail_first));
    Embedded::with_parts(
        clock,
        store.clone(),
        store,
        action,
        sink,
        EmbeddedSettings {
            execution_visibility: Duration::from_secs(30),
            ..Default::default()
        },
    )
}

/// Runs every delivery until the execution queue is empty (SQS moves what is left to the
/// DLQ after 3 receives).
async fn drain<S: ScheduleStore + Clone, A: ActionSink>(world: &Embedded<S, A>) {
    for _ in 0..6 {
        world.execute_ready().await.unwrap();
        world.clock.advance(Duration::from_secs(31));
    }
}

#[tokio::test]
async fn a_redriven_message_re_runs_a_failed_step_under_the_same_execution_id() {
    // 3 attempts on each of 3 receives fail; the 10th send succeeds.
    let world = with_flaky_sink(9);
    seed(&world, &[once("s1", 0)]).await;
    world.schedule("run-1").await.unwrap();
    drain(&world).await;
    let k = key("s1", 0);
    assert_eq!(item(&world, &k).status, Status::Failed);
    assert_eq!(world.execution_dlq.len(), 1);

    // The operator moves the message back, body unchanged (as the SQS console does).
    let dead = world
        .execution_dlq
        .receive(10, Duration::ZERO)
        .await
        .unwrap();
    for m in &dead {
        world
            .execution_queue
            .push(m.body.clone(), Duration::ZERO, vec![], None)
            .unwrap();
        world.execution_dlq.delete(&m.receipt_handle).await.unwrap();
    }
    let outcomes = world.execute_ready().await.unwrap();
    assert!(
        matches!(outcomes[..], [(_, Outcome::Executed { .. })]),
        "{outcomes:?}"
    );
    let it = item(&world, &k);
    assert_eq!(it.status, Status::Executed);
    let triggers = world.triggers();
    assert_eq!(triggers.len(), 1);
    assert_eq!(triggers[0].execution_id, it.execution_id());
    assert!(world.execution_queue.is_empty() && world.execution_dlq.is_empty());
}

/// An execution queue that takes nothing: every entry of every batch fails.
#[derive(Debug)]
struct RefusingQueue;

impl DispatchQueue for RefusingQueue {
    async fn send_batch(
        &self,
        messages: &[OutgoingMessage],
    ) -> Result<SendReport, schedule_core::error::QueueError> {
        Ok(SendReport {
            sent: vec![],
            failed: messages
                .iter()
                .map(|m| (m.id.clone(), "injected: queue unavailable".to_owned()))
                .collect(),
        })
    }
    async fn receive(
        &self,
        _max: u32,
        _wait: Duration,
    ) -> Result<Vec<ReceivedMessage>, schedule_core::error::QueueError> {
        Ok(vec![])
    }
    async fn delete(&self, _receipt: &str) -> Result<(), schedule_core::error::QueueError> {
        Ok(())
    }
}

fn redrive_options(dry_run: bool, max: Option<usize>) -> RedriveOptions {
    RedriveOptions {
        dry_run,
        max,
        wait: Duration::ZERO,
    }
}

#[tokio::test]
async fn dlq_redrive_sends_first_deletes_after_and_re_runs_each_failed_step_once() {
    let world = with_flaky_sink(9);
    seed(&world, &[once("s1", 0), once("s2", 0), once("s3", 0)]).await;
    world.schedule("run-1").await.unwrap();
    drain(&world).await;
    assert!(
        world
            .memory_store
            .items()
            .iter()
            .all(|i| i.status == Status::Failed)
    );
    world
        .execution_dlq
        .push("not json".into(), Duration::ZERO, vec![], None)
        .unwrap();
    assert_eq!(world.execution_dlq.len(), 4);

    // A dry run lists, and moves nothing.
    let report = redrive(
        &world.execution_dlq,
        &world.execution_queue,
        &redrive_options(true, None),
    )
    .await
    .unwrap();
    assert_eq!((report.redriven(), report.left()), (3, 1), "{report:?}");
    assert!(report.entries.iter().all(|e| matches!(
        e.action,
        RedriveAction::WouldRedrive | RedriveAction::Malformed { .. }
    )));
    assert_eq!(world.execution_dlq.len(), 4);
    assert!(world.execution_queue.is_empty());
    world.clock.advance(Duration::from_secs(31));

    // A queue that refuses the copies: nothing is deleted.
    let report = redrive(
        &world.execution_dlq,
        &RefusingQueue,
        &redrive_options(false, None),
    )
    .await
    .unwrap();
    assert_eq!(report.left(), 4, "{report:?}");
    assert_eq!(world.execution_dlq.len(), 4);
    world.clock.advance(Duration::from_secs(31));

    // At most two, then the rest; the malformed one stays.
    let report = redrive(
        &world.execution_dlq,
        &world.execution_queue,
        &redrive_options(false, Some(2)),
    )
    .await
    .unwrap();
    assert_eq!(report.entries.len(), 2, "{report:?}");
    assert_eq!(report.redriven(), 2);
    assert_eq!(
        (world.execution_dlq.len(), world.execution_queue.len()),
        (2, 2)
    );
    let report = redrive(
        &world.execution_dlq,
        &world.execution_queue,
        &redrive_options(false, None),
    )
    .await
    .unwrap();
    assert_eq!((report.redriven(), report.left()), (1, 1), "{report:?}");
    assert_eq!(
        world.execution_dlq.peek_bodies(),
        vec!["not json".to_owned()]
    );

    // An interrupted earlier run sent one copy twice: the executor absorbs it.
    let again = world.execution_queue.peek_bodies()[0].clone();
    world
        .execution_queue
        .push(again, Duration::ZERO, vec![], None)
        .unwrap();
    drain(&world).await;
    let items = world.memory_store.items();
    assert!(
        items.iter().all(|i| i.status == Status::Executed),
        "{items:?}"
    );
    let triggers = world.triggers();
    assert_eq!(triggers.len(), 3, "each step once");
    let ids: std::collections::HashSet<_> =
        triggers.iter().map(|t| t.execution_id.clone()).collect();
    let expected: std::collections::HashSet<_> = items.iter().map(|i| i.execution_id()).collect();
    assert_eq!(ids, expected, "under the occurrences' own execution ids");
    assert_eq!(world.execution_dlq.len(), 1, "only the malformed one");
}

#[tokio::test]
async fn a_copy_that_would_skip_leaves_an_occurrence_another_delivery_is_sending() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    seed(&world, &[once("s1", 0)]).await;
    world.schedule("run-1").await.unwrap();
    let k = key("s1", 0);
    assert!(
        world
            .memory_store
            .try_lease(&k, Status::Queued, "sending-delivery", at(60), at(0))
            .await
            .unwrap()
    );
    world.registry.deactivate(
        &TenantId::parse("acme").unwrap(),
        &DeviceId::parse("dev-s1").unwrap(),
    );
    let b = body("s1", 0);
    let outcome = world.executor.handle(incoming(&b, 1), &world.metrics).await;
    assert_eq!(outcome, Outcome::Busy);
    assert_eq!(
        item(&world, &k).status,
        Status::Queued,
        "not SKIPPED under the holder"
    );
}

#[tokio::test]
async fn a_last_receive_that_must_retry_leaves_an_occurrence_another_delivery_is_sending() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    seed(&world, &[once("s1", 0)]).await;
    world.schedule("run-1").await.unwrap();
    let k = key("s1", 0);
    assert!(
        world
            .memory_store
            .try_lease(&k, Status::Queued, "sending-delivery", at(60), at(0))
            .await
            .unwrap()
    );
    // Out of time on its last receive: a retry, which would mean FAILED.
    let b = body("s1", 0);
    let mut msg = incoming(&b, 3);
    msg.deadline = Some(start() + chrono::Duration::milliseconds(100));
    let outcome = world.executor.handle(msg, &world.metrics).await;
    assert_eq!(outcome, Outcome::Busy);
    let it = item(&world, &k);
    assert_eq!(it.status, Status::Queued, "not FAILED under the holder");
    assert_eq!(it.lease_owner.as_deref(), Some("sending-delivery"));
}
