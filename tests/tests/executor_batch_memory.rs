//! The executor's batch path on the embedded twin: a batch's reads and claims happen
//! while it is held before the due instant, the triggers due at one instant leave in one
//! request at that instant and never before, a retry resends only the entries that
//! failed, an entry the queue refuses fails alone, and a copy of an occurrence inside the
//! same batch is dropped without a second send.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use schedule_core::adapters::clock::ManualClock;
use schedule_core::adapters::memory::{InMemoryQueue, InMemoryScheduleStore, QueueSettings};
use schedule_core::app::ExecutionMessage;
use schedule_core::app::execute::{Incoming, Outcome};
use schedule_core::app::scan::ScanRequest;
use schedule_core::embedded::{Embedded, EmbeddedSettings};
use schedule_core::error::QueueError;
use schedule_core::model::{Definition, ScheduleItem, Status, Timestamp, TriggerMessage};
use schedule_core::ports::{ActionSink, Clock, DefinitionSource, ReceivedMessage};
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

/// What one `send_batch` call saw: when, how many entries, and how many of the
/// occurrences they name were already leased at that moment.
#[derive(Debug, Clone, PartialEq)]
struct Call {
    at: DateTime<Utc>,
    entries: usize,
    leased: usize,
}

/// How the queue answers one step's entries.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// Throttled (retryable) this many more times.
    Transient(u32),
    /// Refused as given (SQS `SenderFault`): retrying cannot help.
    Permanent,
}

/// The twin's action trigger queue, recording every batch request and refusing the
/// entries of chosen steps.
#[derive(Debug)]
struct BatchSink {
    inner: Arc<InMemoryQueue>,
    clock: Arc<ManualClock>,
    store: Arc<InMemoryScheduleStore>,
    calls: Mutex<Vec<Call>>,
    refuse: Mutex<HashMap<String, Refusal>>,
}

impl BatchSink {
    fn refusal(&self, m: &TriggerMessage) -> Option<QueueError> {
        let mut refuse = self.refuse.lock().unwrap();
        let step = m.device_workflow_step_id.to_string();
        match refuse.get_mut(&step) {
            Some(Refusal::Transient(n)) if *n > 0 => {
                *n -= 1;
                Some(QueueError::Transient {
                    operation: "SendMessageBatch",
                    source: format!("injected throttle of {step}").into(),
                })
            }
            Some(Refusal::Permanent) => Some(QueueError::Permanent {
                operation: "SendMessageBatch",
                source: format!("InvalidMessageContents: injected refusal of {step}").into(),
            }),
            _ => None,
        }
    }
}

impl ActionSink for BatchSink {
    async fn send(&self, message: &TriggerMessage) -> Result<(), QueueError> {
        self.send_batch(std::slice::from_ref(message))
            .await
            .pop()
            .unwrap()
    }

    async fn send_batch(&self, messages: &[TriggerMessage]) -> Vec<Result<(), QueueError>> {
        let items = self.store.items();
        let leased = messages
            .iter()
            .filter(|m| {
                items.iter().any(|i: &ScheduleItem| {
                    i.execution_id() == m.execution_id && i.lease_owner.is_some()
                })
            })
            .count();
        self.calls.lock().unwrap().push(Call {
            at: self.clock.now(),
            entries: messages.len(),
            leased,
        });
        let mut out = Vec::new();
        for m in messages {
            out.push(match self.refusal(m) {
                Some(e) => Err(e),
                None => self.inner.send(m).await,
            });
        }
        out
    }
}

type World = Embedded<Arc<InMemoryScheduleStore>, Arc<BatchSink>>;

fn world() -> (World, Arc<BatchSink>) {
    let clock = Arc::new(ManualClock::new(start()));
    let store = Arc::new(InMemoryScheduleStore::new(16));
    let action = Arc::new(InMemoryQueue::new(
        "action-trigger",
        clock.clone(),
        QueueSettings::default(),
    ));
    let sink = Arc::new(BatchSink {
        inner: action.clone(),
        clock: clock.clone(),
        store: store.clone(),
        calls: Mutex::new(Vec::new()),
        refuse: Mutex::new(HashMap::new()),
    });
    let world = Embedded::with_parts(
        clock,
        store.clone(),
        store,
        action,
        sink.clone(),
        EmbeddedSettings::default(),
    );
    (world, sink)
}

/// Writes the definitions, materializes and dispatches their occurrences, and moves the
/// clock to `offset_ms` after the start.
async fn scheduled(world: &World, defs: &[Definition], offset_ms: i64) {
    for d in defs {
        world.definitions.put(d).await.unwrap();
    }
    let now = Timestamp::from_datetime(world.clock.now());
    world
        .scan(&ScanRequest::daily(now, &Default::default()))
        .await
        .unwrap();
    let run = world.schedule("run-1").await.unwrap();
    assert_eq!(run.dispatched, defs.len(), "{run:?}");
    world
        .clock
        .advance_to(start() + chrono::Duration::milliseconds(offset_ms));
}

/// The execution messages of every occurrence, by step, as a receive would give them
/// (each its own message id and receipt).
fn messages(world: &World) -> Vec<ReceivedMessage> {
    let mut items = world.memory_store.items();
    items.sort_by(|a, b| a.device_workflow_step_id.cmp(&b.device_workflow_step_id));
    items
        .iter()
        .map(|i| ReceivedMessage {
            message_id: format!("m-{}", i.device_workflow_step_id),
            receipt_handle: format!("r-{}", i.device_workflow_step_id),
            body: ExecutionMessage::for_key(&i.key, i.scheduled_time).body(),
            receive_count: 1,
        })
        .collect()
}

fn incoming(received: &[ReceivedMessage], receive_count: u32) -> Vec<Incoming<'_>> {
    received
        .iter()
        .map(|m| Incoming {
            message_id: &m.message_id,
            delivery_id: &m.receipt_handle,
            body: &m.body,
            receive_count,
            deadline: None,
        })
        .collect()
}

fn item(world: &World, step: &str) -> ScheduleItem {
    world
        .memory_store
        .items()
        .into_iter()
        .find(|i| i.device_workflow_step_id.as_str() == step)
        .unwrap()
}

fn executed(outcomes: &[Outcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Executed { .. }))
        .count()
}

#[tokio::test]
async fn triggers_due_together_leave_in_one_request_at_the_due_instant_after_their_claims() {
    let (world, sink) = world();
    let defs: Vec<Definition> = (0..6)
        .map(|i| once(&format!("s{i}"), if i < 5 { 30 } else { 31 }))
        .collect();
    // Held half a second before the first five are due; the sixth is due a second later.
    scheduled(&world, &defs, 29_500).await;
    let received = messages(&world);
    assert_eq!(received.len(), 6);
    let outcomes = world
        .executor
        .handle_batch(&incoming(&received, 1), &world.metrics)
        .await;
    assert_eq!(executed(&outcomes), 6, "{outcomes:?}");
    let calls = sink.calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        vec![
            Call {
                at: at(30).as_datetime(),
                entries: 5,
                leased: 5
            },
            Call {
                at: at(31).as_datetime(),
                entries: 1,
                leased: 1
            },
        ],
        "one request per due instant, at that instant, every occurrence claimed before it"
    );
    for t in world.triggers() {
        let sent: DateTime<Utc> = t.sent_at.parse().unwrap();
        assert_eq!(sent, t.scheduled_time.as_datetime(), "{}", t.execution_id);
    }
    for d in &defs {
        let it = item(&world, d.device_workflow_step_id.as_str());
        assert_eq!(
            (it.status, it.lateness_ms),
            (Status::Executed, Some(0)),
            "{}",
            it.key
        );
    }
}

#[tokio::test]
async fn a_partial_batch_failure_resends_only_the_entries_that_failed() {
    let (world, sink) = world();
    let defs: Vec<Definition> = (0..4).map(|i| once(&format!("s{i}"), 30)).collect();
    sink.refuse
        .lock()
        .unwrap()
        .insert("s2".to_owned(), Refusal::Transient(2));
    scheduled(&world, &defs, 29_500).await;
    let received = messages(&world);
    let outcomes = world
        .executor
        .handle_batch(&incoming(&received, 1), &world.metrics)
        .await;
    assert_eq!(executed(&outcomes), 4, "{outcomes:?}");
    let sizes: Vec<usize> = sink
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.entries)
        .collect();
    assert_eq!(sizes, vec![4, 1, 1], "only the failed entry is sent again");
    let triggers = world.triggers();
    assert_eq!(triggers.len(), 4, "each step sent once");
    for t in &triggers {
        let expected = if t.device_workflow_step_id.as_str() == "s2" {
            3
        } else {
            1
        };
        assert_eq!(t.attempt, expected, "{}", t.device_workflow_step_id);
    }
    let s2 = item(&world, "s2");
    assert_eq!((s2.status, s2.retry_count), (Status::Executed, 2));
    assert_eq!(item(&world, "s0").retry_count, 0);
}

#[tokio::test]
async fn one_entry_refused_fails_alone_and_the_others_execute() {
    let (world, sink) = world();
    let defs: Vec<Definition> = (0..3).map(|i| once(&format!("s{i}"), 30)).collect();
    sink.refuse
        .lock()
        .unwrap()
        .insert("s1".to_owned(), Refusal::Permanent);
    scheduled(&world, &defs, 29_500).await;
    let received = messages(&world);

    // Not the last receive: the refused entry is recorded as a failed attempt and left
    // for redelivery; it is not resent within this receive (a retry cannot help).
    let outcomes = world
        .executor
        .handle_batch(&incoming(&received, 1), &world.metrics)
        .await;
    assert_eq!(executed(&outcomes), 2, "{outcomes:?}");
    assert_eq!(sink.calls.lock().unwrap().len(), 1);
    let s1 = item(&world, "s1");
    assert_eq!((s1.status, s1.retry_count), (Status::Queued, 1));
    let refused: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| !matches!(o, Outcome::Executed { .. }))
        .collect();
    assert!(
        matches!(refused[..], [Outcome::Retry { reason }] if reason.contains("injected refusal of s1")),
        "{outcomes:?}"
    );

    // The last receive of the same entry: FAILED, its message left for the DLQ.
    let s1_message: Vec<ReceivedMessage> = received
        .iter()
        .filter(|m| m.body.contains("s1"))
        .cloned()
        .collect();
    let last = world
        .executor
        .handle_batch(&incoming(&s1_message, 3), &world.metrics)
        .await;
    assert!(matches!(last[..], [Outcome::Failed { .. }]), "{last:?}");
    assert!(!last[0].acknowledge());
    let s1 = item(&world, "s1");
    assert_eq!(s1.status, Status::Failed);
    assert!(
        s1.last_error.unwrap().contains("injected refusal of s1"),
        "the reason is kept"
    );
    assert_eq!(world.triggers().len(), 2);
    for step in ["s0", "s2"] {
        assert_eq!(item(&world, step).status, Status::Executed, "{step}");
    }
}

#[tokio::test]
async fn a_duplicate_delivery_inside_one_batch_sends_once_and_drops_the_copy() {
    let (world, sink) = world();
    scheduled(&world, &[once("s1", 30), once("s2", 30)], 29_500).await;
    let mut received = messages(&world);
    // SQS may hand one message out twice at once: the same message, another receipt.
    let mut copy = received[0].clone();
    copy.receipt_handle = format!("{}-again", copy.receipt_handle);
    received.push(copy);
    let outcomes = world
        .executor
        .handle_batch(&incoming(&received, 1), &world.metrics)
        .await;
    assert_eq!(executed(&outcomes), 2, "{outcomes:?}");
    assert!(
        matches!(
            outcomes[2],
            Outcome::Duplicate {
                status: Status::Executed
            }
        ) || matches!(outcomes[0], Outcome::Duplicate { .. }),
        "the copy is dropped, not redelivered: {outcomes:?}"
    );
    assert!(outcomes.iter().all(Outcome::acknowledge), "{outcomes:?}");
    assert_eq!(world.triggers().len(), 2, "each step sent once");
    assert_eq!(
        sink.calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.entries)
            .sum::<usize>(),
        2
    );
}
