//! The fanned-out scan on the twin: segment tasks cover every definition exactly once
//! whatever the number of segments; a segment cut by its deadline continues from its
//! checkpoint without loss or duplicates; the horizon is recorded only when the last
//! segment of the run is done; a malformed task ends in the DLQ, its error naming the field.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use integration_tests::fakes::sqs_event;
use schedule_core::adapters::clock::ManualClock;
use schedule_core::adapters::http_validator::AllowAll;
use schedule_core::adapters::memory::{
    InMemoryDefinitionSource, InMemoryQueue, InMemoryScheduleStore, QueueSettings,
};
use schedule_core::app::scan::{ScanRequest, ScanSettings, Scanner, SegmentTask, SegmentWork};
use schedule_core::error::StoreError;
use schedule_core::metrics::{Metric, Metrics};
use schedule_core::model::{Definition, StepId, TenantId, Timestamp};
use schedule_core::ports::{
    Clock, Cursor, DefinitionKey, DefinitionSource, DispatchQueue, FetchedDefinitions, Page,
    ScannedDefinition, ScheduleStore,
};
use serde_json::json;

type TwinScanner<D> = Scanner<D, Arc<InMemoryScheduleStore>, AllowAll, Arc<ManualClock>>;

fn start() -> DateTime<Utc> {
    "2026-11-26T00:00:00Z".parse().unwrap()
}

/// A definition with one occurrence in the run's window, at a time spread by `i`.
fn once(tenant: &str, i: usize) -> Definition {
    Definition::from_json(&json!({
        "tenant_id": tenant, "device_workflow_step_id": format!("s{i:05}"), "workflow_id": "w1",
        "device_id": format!("d{}", i % 17), "enabled": true, "version": 1,
        "schedule": {"type": "once", "at": format!("2026-11-26T{:02}:{:02}:00Z", 1 + i % 20, i % 60)},
        "payload": {"n": i}
    }))
    .unwrap()
}

async fn table(n: usize) -> Arc<InMemoryDefinitionSource> {
    let definitions = Arc::new(InMemoryDefinitionSource::new());
    for i in 0..n {
        let tenant = format!("t{}", i % 7);
        definitions.put(&once(&tenant, i)).await.unwrap();
    }
    definitions
}

fn scanner<D>(definitions: D, clock: Arc<ManualClock>, segments: u32) -> TwinScanner<D> {
    Scanner {
        modes: schedule_core::mode_cache::ModeRouting::default(),
        definitions,
        store: Arc::new(InMemoryScheduleStore::new(16)),
        validator: AllowAll,
        clock,
        settings: ScanSettings {
            segments,
            ..ScanSettings::default()
        },
    }
}

fn segment_queue(clock: &Arc<ManualClock>) -> (Arc<InMemoryQueue>, Arc<InMemoryQueue>) {
    let dlq = Arc::new(InMemoryQueue::new(
        "scan-segment-dlq",
        clock.clone(),
        QueueSettings::default(),
    ));
    let queue = Arc::new(InMemoryQueue::new(
        "scan-segment",
        clock.clone(),
        QueueSettings {
            visibility_timeout: Duration::from_secs(60),
            redrive: Some((dlq.clone(), 3)),
            fifo: false,
        },
    ));
    (queue, dlq)
}

/// Works every task on the queue (and the continuations they send) until it is empty,
/// each invocation given `budget` before its deadline; returns the reports' totals.
#[derive(Debug, Default)]
struct Worked {
    invocations: usize,
    continuations: usize,
    created: usize,
    writes: usize,
    definitions: usize,
    done: Vec<u32>,
}

async fn drain<D: DefinitionSource>(
    scanner: &TwinScanner<D>,
    queue: &InMemoryQueue,
    budget: Option<Duration>,
    metrics: &Metrics,
) -> Worked {
    let mut worked = Worked::default();
    loop {
        let received = queue.receive(1, Duration::ZERO).await.unwrap();
        let Some(message) = received.first() else {
            return worked;
        };
        worked.invocations += 1;
        assert!(worked.invocations < 10_000, "the tasks never end");
        let task = SegmentTask::parse(&message.body).unwrap();
        let deadline = budget.map(|b| scanner.clock.now() + chrono::Duration::from_std(b).unwrap());
        let work = scanner
            .work_segment(&task, queue, deadline, metrics)
            .await
            .unwrap();
        let report = match &work {
            SegmentWork::Continued { report, next } => {
                worked.continuations += 1;
                assert_eq!(
                    (next.segment, next.continuation),
                    (task.segment, task.continuation + 1)
                );
                assert!(
                    next.cursor.is_some(),
                    "a continuation carries its checkpoint"
                );
                report
            }
            SegmentWork::Done { report, .. } => {
                worked.done.push(task.segment);
                report
            }
        };
        worked.created += report.created;
        worked.writes += report.writes;
        worked.definitions += report.definitions;
        queue.delete(&message.receipt_handle).await.unwrap();
    }
}

fn request(clock: &ManualClock, settings: &ScanSettings) -> ScanRequest {
    ScanRequest::daily(Timestamp::from_datetime(clock.now()), settings)
}

/// Property over the number of segments (and table sizes): the segments of the twin's
/// parallel scan partition the table, and the run's tasks write every occurrence once.
#[tokio::test]
async fn segment_tasks_cover_every_definition_exactly_once() {
    for (n, segments) in [
        (0, 3),
        (1, 5),
        (137, 1),
        (137, 2),
        (250, 3),
        (250, 7),
        (401, 16),
        (90, 64),
    ] {
        let clock = Arc::new(ManualClock::new(start()));
        let definitions = table(n).await;
        let scanner = scanner(definitions.clone(), clock.clone(), segments);
        // The partition itself: each definition in exactly one segment, in any page order.
        let mut seen: BTreeMap<String, u32> = BTreeMap::new();
        for segment in 0..segments {
            let mut cursor = None;
            loop {
                let page = definitions
                    .scan_page(segment, segments, cursor.as_ref())
                    .await
                    .unwrap();
                for def in page.items {
                    let def = def.unwrap();
                    let key = format!("{}/{}", def.tenant_id, def.device_workflow_step_id);
                    assert!(
                        seen.insert(key.clone(), segment).is_none(),
                        "{key} twice (S={segments})"
                    );
                }
                match page.next {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
        }
        assert_eq!(seen.len(), n, "S={segments}");

        let (queue, dlq) = segment_queue(&clock);
        let metrics = Metrics::new("scan");
        let fan_out = scanner
            .fan_out(&request(&clock, &scanner.settings), &queue, None)
            .await
            .unwrap();
        assert_eq!(fan_out.segments, segments as usize);
        assert_eq!(queue.len(), segments as usize);
        let worked = drain(&scanner, &queue, None, &metrics).await;
        assert_eq!(worked.definitions, n, "S={segments}");
        assert_eq!(worked.created, n, "S={segments}: {worked:?}");
        assert_eq!(
            worked.writes, n,
            "no occurrence written twice (S={segments})"
        );
        assert_eq!(scanner.store.items().len(), n);
        let mut done = worked.done.clone();
        done.sort_unstable();
        assert_eq!(done, (0..segments).collect::<Vec<_>>());
        assert!(dlq.is_empty());
    }
}

/// Moves the clock forward by `per_page` on every page read: a slow table.
#[derive(Debug)]
struct SlowPages {
    inner: Arc<InMemoryDefinitionSource>,
    clock: Arc<ManualClock>,
    per_page: Duration,
    pages: AtomicUsize,
}

impl DefinitionSource for SlowPages {
    async fn scan_page(
        &self,
        segment: u32,
        total_segments: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<ScannedDefinition>, StoreError> {
        self.pages.fetch_add(1, Ordering::SeqCst);
        self.clock.advance(self.per_page);
        self.inner.scan_page(segment, total_segments, cursor).await
    }
    async fn get(
        &self,
        tenant: &TenantId,
        step: &StepId,
    ) -> Result<Option<ScannedDefinition>, StoreError> {
        self.inner.get(tenant, step).await
    }
    async fn put(&self, def: &Definition) -> Result<(), StoreError> {
        self.inner.put(def).await
    }
    async fn get_many(&self, keys: &[DefinitionKey]) -> Result<FetchedDefinitions, StoreError> {
        self.inner.get_many(keys).await
    }
}

/// Each invocation has 20 s, pages take 4 s each: a segment of several pages is cut and
/// continued, and the continuations together write each occurrence exactly once.
#[tokio::test]
async fn a_continuation_resumes_from_its_checkpoint_without_loss_or_duplicates() {
    let n = 1_250;
    let clock = Arc::new(ManualClock::new(start()));
    let slow = SlowPages {
        inner: table(n).await,
        clock: clock.clone(),
        per_page: Duration::from_secs(4),
        pages: AtomicUsize::new(0),
    };
    let scanner = scanner(slow, clock.clone(), 2);
    let (queue, dlq) = segment_queue(&clock);
    let metrics = Metrics::new("scan");
    let run = request(&clock, &scanner.settings);
    scanner.fan_out(&run, &queue, None).await.unwrap();
    let worked = drain(&scanner, &queue, Some(Duration::from_secs(20)), &metrics).await;
    eprintln!(
        "{worked:?}, {} pages read",
        scanner.definitions.pages.load(Ordering::SeqCst)
    );
    assert!(worked.continuations >= 2, "{worked:?}");
    assert_eq!(
        metrics.get(Metric::ScanContinuations),
        worked.continuations as u64
    );
    assert_eq!(worked.created, n, "{worked:?}");
    assert_eq!(worked.definitions, n, "each page read once: {worked:?}");
    assert_eq!(worked.writes, n, "no occurrence written twice: {worked:?}");
    assert_eq!(scanner.store.items().len(), n);
    assert_eq!(
        scanner.store.scan_horizon().await.unwrap(),
        Some(run.window.to)
    );
    assert!(dlq.is_empty());
}

/// The horizon moves only when the last segment is done; a segment done twice (a
/// redelivered task) counts once and completes nothing early.
#[tokio::test]
async fn the_horizon_is_recorded_only_after_the_last_segment() {
    let clock = Arc::new(ManualClock::new(start()));
    let scanner = scanner(table(300).await, clock.clone(), 4);
    let (queue, _dlq) = segment_queue(&clock);
    let metrics = Metrics::new("scan");
    let run = request(&clock, &scanner.settings);
    let tasks = scanner.segment_tasks(&run, Timestamp::from_datetime(clock.now()));
    assert_eq!(tasks.len(), 4);
    for (i, task) in tasks.iter().enumerate() {
        let repeats = if i == 0 { 2 } else { 1 };
        for _ in 0..repeats {
            let work = scanner
                .work_segment(task, &queue, None, &metrics)
                .await
                .unwrap();
            let SegmentWork::Done {
                segments_done,
                run_complete,
                horizon_recorded,
                ..
            } = work
            else {
                panic!("no deadline, no continuation: {work:?}")
            };
            assert_eq!(segments_done, i as u32 + 1);
            assert_eq!(run_complete, i == 3);
            let horizon = scanner.store.scan_horizon().await.unwrap();
            if i < 3 {
                assert_eq!(
                    (horizon, horizon_recorded),
                    (None, None),
                    "after segment {i}"
                );
            } else {
                assert_eq!(horizon, Some(run.window.to));
                assert_eq!(horizon_recorded, Some(run.window.to));
            }
        }
    }
    assert_eq!(scanner.store.items().len(), 300);
}

/// Bodies that are not segment tasks: refused naming the field, the value and why.
#[test]
fn malformed_segment_tasks_name_the_field() {
    let good = json!({"schema_version": 1, "run_id": "full/x/y/*/4", "kind": "full",
        "from": "2026-11-26T00:00:00Z", "to": "2026-11-27T01:00:00Z", "segment": 1,
        "total_segments": 4, "cursor": null, "continuation": 0, "records_horizon": true});
    assert_eq!(SegmentTask::parse(&good.to_string()).unwrap().segment, 1);
    let with = |field: &str, value: serde_json::Value| {
        let mut v = good.clone();
        if value.is_null() {
            v.as_object_mut().unwrap().remove(field);
        } else {
            v[field] = value;
        }
        v.to_string()
    };
    let cases = [
        ("not json".to_owned(), "body", "not json"),
        ("[1]".to_owned(), "body", "[1]"),
        (with("schema_version", json!(2)), "schema_version", "2"),
        (with("segment", json!("x")), "segment", "\"x\""),
        (with("segment", json!(4)), "segment", "4"),
        (with("total_segments", json!(0)), "total_segments", "0"),
        (with("from", json!("yesterday")), "from", "yesterday"),
        (with("kind", json!("hourly")), "kind", "hourly"),
        (with("tenant_id", json!("a#b")), "tenant_id", "a#b"),
        (
            with("run_id", serde_json::Value::Null),
            "run_id",
            "<missing>",
        ),
        (
            with("records_horizon", json!("yes")),
            "records_horizon",
            "yes",
        ),
        (with("cursor", json!(5)), "cursor", "5"),
    ];
    for (body, field, value) in cases {
        let error = SegmentTask::parse(&body).unwrap_err();
        assert_eq!(error.field, field, "{body}: {error}");
        let text = error.to_string();
        assert!(
            text.contains(field) && text.contains(value),
            "{body}: {text}"
        );
    }
}

/// A malformed task is a failed item of the batch response, every time it is delivered,
/// until SQS moves it to the DLQ; the good task beside it is acknowledged.
#[tokio::test]
async fn a_malformed_segment_task_ends_in_the_dlq() {
    let clock = Arc::new(ManualClock::new(start()));
    let scanner = scanner(table(10).await, clock.clone(), 2);
    let (queue, dlq) = segment_queue(&clock);
    let metrics = Metrics::new("scan");
    let run = request(&clock, &scanner.settings);
    let good = scanner.segment_tasks(&run, Timestamp::from_datetime(clock.now()));
    let bad = good[1]
        .body()
        .replace("\"segment\":1", "\"segment\":\"one\"");
    queue
        .push(good[0].body(), Duration::ZERO, Vec::new(), None)
        .unwrap();
    queue.push(bad, Duration::ZERO, Vec::new(), None).unwrap();
    for delivery in 1..=4 {
        let received = queue.receive(10, Duration::ZERO).await.unwrap();
        if received.is_empty() {
            assert_eq!(delivery, 4, "in the DLQ after 3 receives");
            break;
        }
        let event = sqs_event(&received);
        let response =
            daily_scanner_v2::handle_segment_tasks(&scanner, &queue, &event, None, &metrics).await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for message in &received {
            if failed.contains(&message.message_id.as_str()) {
                assert!(
                    message.body.contains("\"one\""),
                    "only the malformed task fails"
                );
            } else {
                queue.delete(&message.receipt_handle).await.unwrap();
            }
        }
        assert_eq!(failed.len(), 1, "delivery {delivery}: {failed:?}");
        clock.advance(Duration::from_secs(61));
    }
    assert_eq!(queue.len(), 0);
    assert_eq!(dlq.len(), 1);
    assert!(dlq.peek_bodies()[0].contains("\"one\""));
}

/// Through the handler: a scheduled event fans out (nothing written, no horizon), the
/// workers run the tasks, and the one completing the run records the horizon and the
/// daily heartbeat once.
#[tokio::test]
async fn a_scheduled_event_fans_out_and_the_last_segment_completes_the_run() {
    let clock = Arc::new(ManualClock::new(start()));
    let scanner = scanner(table(500).await, clock.clone(), 5);
    let (queue, _dlq) = segment_queue(&clock);
    let metrics = Metrics::new("scan");
    let answer = daily_scanner_v2::handle_event(
        &scanner,
        Some(&queue),
        &json!({"mode": "full"}),
        None,
        &metrics,
    )
    .await
    .unwrap();
    assert_eq!(answer["segments"], 5, "{answer}");
    assert_eq!(queue.len(), 5);
    assert!(scanner.store.items().is_empty());
    assert_eq!(scanner.store.scan_horizon().await.unwrap(), None);
    loop {
        let received = queue.receive(1, Duration::ZERO).await.unwrap();
        if received.is_empty() {
            break;
        }
        let event = serde_json::to_value(sqs_event(&received)).unwrap();
        let answer = daily_scanner_v2::handle_event(&scanner, Some(&queue), &event, None, &metrics)
            .await
            .unwrap();
        assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
        queue.delete(&received[0].receipt_handle).await.unwrap();
    }
    assert_eq!(scanner.store.items().len(), 500);
    assert!(scanner.store.scan_horizon().await.unwrap().is_some());
    assert_eq!(metrics.get(Metric::DailyScanCompleted), 1);
    // Without a queue the same event runs inline.
    let inline = daily_scanner_v2::handle_event(
        &scanner,
        None::<&InMemoryQueue>,
        &json!({"mode": "full"}),
        None,
        &metrics,
    )
    .await
    .unwrap();
    assert_eq!(inline["already_present"], 500, "{inline}");
    assert_eq!(inline["writes"], 0, "{inline}");
}
