//! The scheduler's safety net on the embedded twin: before anything is sent, each due
//! occurrence is checked against its definition as it is now (one batched read per run),
//! and the ones it no longer asks for are CANCELLED with the reason — whatever definition
//! sync did or did not do.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use integration_tests::fakes::CountingDefinitions;
use schedule_core::adapters::memory::InMemoryDefinitionSource;
use schedule_core::app::scan::ScanRequest;
use schedule_core::app::schedule::Scheduler;
use schedule_core::embedded::{Embedded, EmbeddedSettings};
use schedule_core::metrics::{Metric, Metrics};
use schedule_core::model::{
    Definition, ScheduleItem, ScheduleKey, Status, StepId, TenantId, Timestamp,
};
use schedule_core::ports::{DefinitionSource, ScheduleStore};
use serde_json::{Value, json};

fn start() -> DateTime<Utc> {
    "2026-11-26T08:00:00Z".parse().unwrap()
}

fn at(offset_s: i64) -> Timestamp {
    Timestamp::from_datetime(start() + chrono::Duration::seconds(offset_s))
}

fn def(step: &str, version: u64, enabled: bool, schedule: Value) -> Definition {
    Definition::from_json(&json!({"tenant_id": "acme", "device_workflow_step_id": step, "workflow_id": "w1",
        "device_id": format!("dev-{step}"), "enabled": enabled, "version": version, "schedule": schedule,
        "payload": {"action": "open_valve", "step": step}}))
    .unwrap()
}

fn once(offset_s: i64) -> Value {
    json!({"type": "once", "at": at(offset_s).to_string()})
}

/// Every 15 minutes from `start_s` (its one occurrence in the first run is `start_s + 900`).
fn every_15m(start_s: i64) -> Value {
    json!({"type": "rate", "every": "15m", "start": at(start_s).to_string()})
}

fn key(step: &str, offset_s: i64) -> ScheduleKey {
    ScheduleKey::new(
        &TenantId::parse("acme").unwrap(),
        at(offset_s),
        &StepId::parse(step).unwrap(),
    )
}

async fn scan(world: &Embedded) {
    let now = Timestamp::from_datetime(world.clock.now_utc());
    let report = world
        .scan(&ScanRequest::daily(now, &Default::default()))
        .await
        .unwrap();
    assert!(report.is_complete(), "{report:?}");
}

/// The steps whose executions sit on the execution queue.
fn queued_steps(world: &Embedded) -> BTreeSet<String> {
    world
        .execution_queue
        .peek_bodies()
        .iter()
        .map(|b| {
            let v: Value = serde_json::from_str(b).unwrap();
            let sk = v["SK"].as_str().unwrap();
            sk.split_once("#STEP#").unwrap().1.to_owned()
        })
        .collect()
}

trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}

impl NowUtc for Arc<schedule_core::adapters::clock::ManualClock> {
    fn now_utc(&self) -> DateTime<Utc> {
        schedule_core::ports::Clock::now(self.as_ref())
    }
}

/// A scheduler on the world's store, queue and clock whose definitions read is counted
/// (and can be made to fail).
fn counted(
    world: &Embedded,
) -> Scheduler<
    Arc<schedule_core::adapters::memory::InMemoryScheduleStore>,
    Arc<schedule_core::adapters::memory::InMemoryQueue>,
    CountingDefinitions<Arc<InMemoryDefinitionSource>>,
    Arc<schedule_core::adapters::clock::ManualClock>,
> {
    Scheduler {
        store: world.memory_store.clone(),
        queue: world.execution_queue.clone(),
        continuation: None,
        definitions: CountingDefinitions::new(world.definitions.clone()),
        clock: world.clock.clone(),
        settings: world.scheduler.settings.clone(),
    }
}

#[tokio::test]
async fn occurrences_their_definition_no_longer_asks_for_are_cancelled_and_never_sent() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    let defs = [
        def("gone", 1, true, once(120)),
        def("off", 1, true, once(120)),
        def("bad", 1, true, once(120)),
        def("same", 1, true, once(180)),
        def("moved", 1, true, every_15m(-600)),
        def("newer", 1, true, every_15m(-600)),
    ];
    for d in &defs {
        world.definitions.put(d).await.unwrap();
    }
    scan(&world).await;

    // Changes whose stream records never arrived.
    let gone = &defs[0];
    world
        .definitions
        .delete(&gone.tenant_id, &gone.device_workflow_step_id);
    world
        .definitions
        .put(&def("off", 2, false, once(120)))
        .await
        .unwrap();
    world.definitions.put_raw(
        "TENANT#acme",
        "STEP#bad",
        json!({"tenant_id": "acme", "device_workflow_step_id": "bad",
        "workflow_id": "w1", "device_id": "dev-bad", "version": 2,
        "schedule": {"type": "once", "at": "tomorrow at nine"}}),
    );
    // The rate's start moved by a minute: 08:05 is no longer on its grid, 08:06 is.
    world
        .definitions
        .put(&def("moved", 2, true, every_15m(-540)))
        .await
        .unwrap();
    // A newer version that still yields 08:05 (only its end changed).
    let mut newer = def("newer", 2, true, every_15m(-600));
    if let schedule_core::model::Schedule::Rate { end, .. } = &mut newer.schedule.rule {
        *end = Some(at(86_400));
    }
    world.definitions.put(&newer).await.unwrap();

    let report = world.schedule("run-1").await.unwrap();
    assert_eq!(report.due, 6, "{report:?}");
    assert_eq!(
        (
            report.cancelled,
            report.dispatched,
            report.definitions_unchecked
        ),
        (4, 2, 0),
        "{report:?}"
    );
    assert_eq!(world.metrics.get(Metric::Cancelled), 4);
    assert_eq!(world.metrics.get(Metric::DefinitionCheckUnavailable), 0);

    let expect = [
        ("gone", 120, "definition deleted".to_owned()),
        ("off", 120, "definition disabled (version 2)".to_owned()),
        (
            "moved",
            300,
            format!("version 2 no longer yields {}", at(300)),
        ),
    ];
    for (step, offset, reason) in &expect {
        let item = world
            .memory_store
            .get(&key(step, *offset))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(item.status, Status::Cancelled, "{step}");
        assert_eq!(item.last_error.as_deref(), Some(reason.as_str()), "{step}");
        assert_eq!(item.status_shard, None, "{step}: out of the due index");
    }
    let bad = world
        .memory_store
        .get(&key("bad", 120))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(bad.status, Status::Cancelled);
    let why = bad.last_error.unwrap();
    assert!(
        why.starts_with("definition invalid: ") && why.contains("schedule.at"),
        "{why}"
    );

    assert_eq!(
        queued_steps(&world),
        BTreeSet::from(["newer".to_owned(), "same".to_owned()]),
        "only what the definitions still ask for reaches the queue"
    );
    world.clock.advance(Duration::from_secs(600));
    world.execute_ready().await.unwrap();
    let fired: BTreeSet<_> = world
        .triggers()
        .iter()
        .map(|t| t.device_workflow_step_id.to_string())
        .collect();
    assert_eq!(
        fired,
        BTreeSet::from(["newer".to_owned(), "same".to_owned()])
    );
    // A later run finds nothing more of the cancelled ones.
    let again = world.schedule("run-2").await.unwrap();
    assert_eq!(again.cancelled, 0, "{again:?}");
}

#[tokio::test]
async fn an_occurrence_made_from_the_current_version_fires_even_if_its_rule_cannot_say() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    let now = at(0);
    // 08:02 every day, UTC; materialized directly from version 1.
    let cron = |version, expression: &str| {
        def(
            "cron",
            version,
            true,
            json!({"type": "cron", "expression": expression, "timezone": "UTC"}),
        )
    };
    let v1 = cron(1, "2 8 * * *");
    world.definitions.put(&v1).await.unwrap();
    let made = ScheduleItem::pending(&v1, at(120), now, Duration::from_secs(86_400), 16);
    world.memory_store.create_if_absent(&made).await.unwrap();
    // A second step whose cron moved to 09:00 at version 2, with its 08:02 item from v1.
    let other_v1 = def(
        "cron-moved",
        1,
        true,
        json!({"type": "cron", "expression": "2 8 * * *", "timezone": "UTC"}),
    );
    let stale = ScheduleItem::pending(&other_v1, at(120), now, Duration::from_secs(86_400), 16);
    world.memory_store.create_if_absent(&stale).await.unwrap();
    let mut other_v2 = other_v1.clone();
    other_v2.version = 2;
    other_v2.schedule = cron(2, "0 9 * * *").schedule;
    world.definitions.put(&other_v2).await.unwrap();

    let report = world.schedule("run-1").await.unwrap();
    assert_eq!(
        (report.due, report.dispatched, report.cancelled),
        (2, 1, 1),
        "{report:?}"
    );
    let fired = world.memory_store.get(&made.key).await.unwrap().unwrap();
    assert_eq!(fired.status, Status::Queued);
    let cancelled = world.memory_store.get(&stale.key).await.unwrap().unwrap();
    assert_eq!(cancelled.status, Status::Cancelled);
    let why = cancelled.last_error.unwrap();
    assert!(why.starts_with("version 2 "), "{why}");
}

#[tokio::test]
async fn the_definitions_are_read_once_per_run_whatever_the_number_of_occurrences() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    let scheduler = counted(&world);
    let metrics = Metrics::new("test");
    let empty = scheduler.run("run-0", None, &metrics).await.unwrap();
    assert_eq!(empty.due, 0);
    assert_eq!(
        scheduler.definitions.batch_reads.load(Ordering::Relaxed),
        0,
        "nothing due, nothing read"
    );

    // 4 definitions every minute from 08:00:30: 6 occurrences each before 08:06.
    for i in 0..4 {
        let d = def(
            &format!("m{i}"),
            1,
            true,
            json!({"type": "rate", "every": "1m", "start": at(30).to_string()}),
        );
        world.definitions.put(&d).await.unwrap();
    }
    scan(&world).await;
    let first = scheduler.run("run-1", None, &metrics).await.unwrap();
    assert_eq!(
        (first.due, first.dispatched, first.cancelled),
        (24, 24, 0),
        "{first:?}"
    );
    assert_eq!(scheduler.definitions.batch_reads.load(Ordering::Relaxed), 1);
    assert_eq!(
        scheduler.definitions.keys_asked.load(Ordering::Relaxed),
        4,
        "each distinct definition once"
    );

    world.clock.advance(Duration::from_secs(300));
    let second = scheduler.run("run-2", None, &metrics).await.unwrap();
    assert_eq!((second.due, second.dispatched), (20, 20), "{second:?}");
    assert_eq!(scheduler.definitions.batch_reads.load(Ordering::Relaxed), 2);
    assert_eq!(scheduler.definitions.keys_asked.load(Ordering::Relaxed), 8);
}

#[tokio::test]
async fn when_the_definitions_cannot_be_read_the_run_sends_anyway_and_says_so() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    for d in [
        def("off", 1, true, once(120)),
        def("same", 1, true, once(180)),
    ] {
        world.definitions.put(&d).await.unwrap();
    }
    scan(&world).await;
    world
        .definitions
        .put(&def("off", 2, false, once(120)))
        .await
        .unwrap();

    let scheduler = counted(&world);
    scheduler.definitions.failing.store(true, Ordering::Relaxed);
    let metrics = Metrics::new("test");
    let report = scheduler.run("run-1", None, &metrics).await.unwrap();
    assert_eq!(
        (
            report.due,
            report.dispatched,
            report.cancelled,
            report.definitions_unchecked
        ),
        (2, 2, 0, 2),
        "{report:?}"
    );
    assert_eq!(metrics.get(Metric::DefinitionCheckUnavailable), 2);
    assert_eq!(metrics.get(Metric::Cancelled), 0);
    assert_eq!(
        queued_steps(&world),
        BTreeSet::from(["off".to_owned(), "same".to_owned()])
    );
    // One batched read, tried as often as the retry layer allows, never once per item.
    assert_eq!(
        scheduler.definitions.batch_reads.load(Ordering::Relaxed),
        scheduler.settings.status_retry.attempts
    );
}
