//! The flow end to end on the embedded twin, on a manual clock: exact, fast, and free to
//! inject crashes and failures between any two calls.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use integration_tests::fakes::{FlakySink, LosesQueuedWrites};
use schedule_core::adapters::clock::ManualClock;
use schedule_core::adapters::memory::{InMemoryQueue, InMemoryScheduleStore, QueueSettings};
use schedule_core::app::execute::Outcome;
use schedule_core::app::scan::ScanRequest;
use schedule_core::embedded::{Embedded, EmbeddedSettings};
use schedule_core::model::{Definition, DeviceId, Status, TenantId, Timestamp};
use schedule_core::ports::{ActionSink, DefinitionSource, DispatchQueue, ScheduleStore};
use serde_json::json;

fn start() -> DateTime<Utc> {
    "2026-11-26T08:00:00Z".parse().unwrap()
}

fn at(offset_s: i64) -> String {
    Timestamp::from_datetime(start() + chrono::Duration::seconds(offset_s)).to_string()
}

fn once(step: &str, device: &str, offset_s: i64) -> Definition {
    Definition::from_json(&json!({"tenant_id": "acme", "device_workflow_step_id": step, "workflow_id": "w1",
        "device_id": device, "schedule": {"type": "once", "at": at(offset_s)}, "payload": {"action": "open_valve", "step": step}}))
    .unwrap()
}

/// A world whose action trigger queue refuses the first `fail_first` sends of each step.
fn with_flaky_sink(
    fail_first: u32,
    settings: EmbeddedSettings,
) -> Embedded<Arc<InMemoryScheduleStore>, FlakySink<Arc<InMemoryQueue>>> {
    let clock = Arc::new(ManualClock::new(start()));
    let memory = Arc::new(InMemoryScheduleStore::new(settings.shards));
    let actions = Arc::new(InMemoryQueue::new(
        "actions",
        clock.clone(),
        QueueSettings::default(),
    ));
    let sink = FlakySink::new(actions.clone(), fail_first);
    Embedded::with_parts(clock, memory.clone(), memory, actions, sink, settings)
}

/// `n` one-time steps on dev-1, the first `first_s` after the start, then every `every_s`.
fn steps(n: i64, first_s: i64, every_s: i64) -> Vec<Definition> {
    (0..n)
        .map(|i| once(&format!("s{i:02}"), "dev-1", first_s + i * every_s))
        .collect()
}

async fn seed<S: ScheduleStore + Clone, A: ActionSink>(
    world: &Embedded<S, A>,
    defs: &[Definition],
) {
    for d in defs {
        world.definitions.put(d).await.unwrap();
    }
}

fn daily(world_now: DateTime<Utc>) -> ScanRequest {
    ScanRequest::daily(Timestamp::from_datetime(world_now), &Default::default())
}

/// Drives the world for `span` in `tick` steps: the scheduler every window, the executor
/// on every tick.
async fn drive<S: ScheduleStore + Clone, A: ActionSink>(
    world: &Embedded<S, A>,
    span: Duration,
    tick: Duration,
) -> Vec<Outcome> {
    let end = world.clock.now_utc() + chrono::Duration::from_std(span).unwrap();
    let window = world.scheduler.settings.window;
    let mut next_schedule = world.clock.now_utc();
    let mut outcomes = Vec::new();
    let mut run = 0;
    while world.clock.now_utc() < end {
        if world.clock.now_utc() >= next_schedule {
            run += 1;
            world.schedule(&format!("run-{run}")).await.unwrap();
            next_schedule += chrono::Duration::from_std(window).unwrap();
        }
        outcomes.extend(
            world
                .execute_ready()
                .await
                .unwrap()
                .into_iter()
                .map(|(_, o)| o),
        );
        world.clock.advance(tick);
    }
    outcomes
}

trait NowUtc {
    fn now_utc(&self) -> DateTime<Utc>;
}

impl NowUtc for Arc<ManualClock> {
    fn now_utc(&self) -> DateTime<Utc> {
        schedule_core::ports::Clock::now(self.as_ref())
    }
}

#[tokio::test]
async fn each_due_step_fires_once_on_time_and_invalid_devices_are_skipped() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    let mut defs: Vec<_> = (0..40)
        .map(|i| once(&format!("s{i}"), &format!("dev-{}", i % 8), 30 + i * 17))
        .collect();
    defs.push(Definition::from_json(&json!({"tenant_id": "acme", "device_workflow_step_id": "every-5m", "workflow_id": "w1",
        "device_id": "dev-1", "schedule": {"type": "rate", "every": "5m", "start": at(-60), "end": at(16 * 60)}, "payload": {}})).unwrap());
    let mut disabled = once("off", "dev-1", 60);
    disabled.enabled = false;
    defs.push(disabled);
    defs.push(once("past", "dev-1", -60));
    seed(&world, &defs).await;
    world
        .definitions
        .put_raw("TENANT#acme", "STEP#bad", json!({"tenant_id": "acme#x"}));
    world.registry.deactivate(
        &TenantId::parse("acme").unwrap(),
        &DeviceId::parse("dev-7").unwrap(),
    );

    let report = world.scan(&daily(start())).await.unwrap();
    // 40 one-time steps, rate occurrences at 4m, 9m, 14m; 'past' and 'off' produce none.
    assert_eq!(
        (
            report.definitions,
            report.invalid_definitions,
            report.disabled
        ),
        (44, 1, 1)
    );
    assert_eq!(
        (report.occurrences, report.created, report.invalid_device),
        (43, 43, 5),
        "written PENDING; the executor skips them when due"
    );

    let outcomes = drive(
        &world,
        Duration::from_secs(20 * 60),
        Duration::from_millis(250),
    )
    .await;
    let triggers = world.triggers();
    assert_eq!(
        triggers.len(),
        38,
        "43 occurrences less 5 on the inactive device"
    );
    let mut per_execution: HashMap<_, u32> = HashMap::new();
    for t in &triggers {
        *per_execution.entry(t.execution_id.clone()).or_default() += 1;
        let sent: DateTime<Utc> = t.sent_at.parse().unwrap();
        let lateness = sent - t.scheduled_time.as_datetime();
        assert!(
            lateness >= chrono::Duration::zero(),
            "{} sent {lateness} early",
            t.execution_id
        );
        assert!(
            lateness < chrono::Duration::milliseconds(300),
            "{} sent {lateness} late",
            t.execution_id
        );
        assert_ne!(t.device_id.as_str(), "dev-7");
    }
    assert!(
        per_execution.values().all(|n| *n == 1),
        "a step fired twice"
    );
    // Each trigger carries its tenant and execution id as message attributes.
    for (t, attributes) in triggers.iter().zip(world.action_queue.peek_attributes()) {
        assert!(
            attributes.contains(&("tenant_id".to_owned(), t.tenant_id.to_string())),
            "{attributes:?}"
        );
        assert!(
            attributes.contains(&("execution_id".to_owned(), t.execution_id.to_string())),
            "{attributes:?}"
        );
    }
    assert!(outcomes.iter().all(|o| o.acknowledge()), "{outcomes:?}");
    for item in world.memory_store.items() {
        assert!(
            item.status.is_terminal(),
            "{} left {}",
            item.key,
            item.status
        );
        let want = if item.device_id.as_str() == "dev-7" {
            Status::Skipped
        } else {
            Status::Executed
        };
        assert_eq!(item.status, want, "{}", item.key);
    }
    let (hits, misses) = world.executor_validator.counts();
    assert_eq!(misses, 8, "one registry call per device");
    assert_eq!(hits + misses, 43);
}

#[tokio::test]
async fn reruns_of_scanner_and_scheduler_change_nothing() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    seed(&world, &steps(12, 60, 10)).await;
    let first = world.scan(&daily(start())).await.unwrap();
    let again = world.scan(&daily(start())).await.unwrap();
    assert_eq!(
        (first.created, again.created, again.already_present),
        (12, 0, 12)
    );

    let run1 = world.schedule("run-1").await.unwrap();
    let run2 = world.schedule("run-2").await.unwrap();
    assert_eq!((run1.dispatched, run2.due, run2.dispatched), (12, 0, 0));
    assert_eq!(
        world.execution_queue.len(),
        12,
        "the second run must not send again"
    );
}

#[tokio::test]
async fn overlapping_scheduler_runs_send_each_occurrence_once() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    seed(&world, &steps(25, 60, 1)).await;
    world.scan(&daily(start())).await.unwrap();
    let (a, b) = tokio::join!(world.schedule("run-a"), world.schedule("run-b"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.dispatched + b.dispatched, 25, "{a:?} {b:?}");
    assert_eq!(world.execution_queue.len(), 25);
}

#[tokio::test]
async fn a_crash_between_the_queued_write_and_the_send_is_sent_by_the_sweep_late_not_lost() {
    let clock = Arc::new(ManualClock::new(start()));
    let memory = Arc::new(InMemoryScheduleStore::new(16));
    let lossy = Arc::new(LosesQueuedWrites::new(memory.clone()));
    let actions = Arc::new(InMemoryQueue::new(
        "actions",
        clock.clone(),
        QueueSettings::default(),
    ));
    let world = Embedded::with_parts(
        clock.clone(),
        memory,
        lossy,
        actions.clone(),
        actions,
        EmbeddedSettings::default(),
    );
    seed(&world, &[once("s1", "dev-1", 300)]).await;
    world.scan(&daily(start())).await.unwrap();

    let run1 = world.schedule("run-1").await.unwrap();
    assert_eq!(
        (run1.dispatched, run1.status_errors),
        (0, 1),
        "the run died after the QUEUED write: {run1:?}"
    );
    assert_eq!(world.memory_store.items()[0].status, Status::Queued);
    assert!(world.execution_queue.is_empty(), "nothing was sent");
    // The next runs leave it alone until it is stuck (maxReceiveCount × visibility +
    // window after it was due), then the sweep sends it under its execution id.
    let stuck_after = world.scheduler.settings.stuck_after();
    clock.advance(Duration::from_secs(300));
    let run2 = world.schedule("run-2").await.unwrap();
    assert_eq!((run2.dispatched, run2.stuck_queued), (0, 0), "{run2:?}");
    clock.advance(stuck_after + Duration::from_secs(60));
    let run3 = world.schedule("run-3").await.unwrap();
    assert_eq!(run3.stuck_redispatched, 1, "{run3:?}");
    assert_eq!(world.execution_queue.len(), 1, "one message, sent late");

    let outcomes = world.execute_ready().await.unwrap();
    let executed = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Executed { .. }))
        .count();
    assert_eq!(executed, 1, "{outcomes:?}");
    assert_eq!(world.triggers().len(), 1, "the step fired once");
    assert_eq!(world.memory_store.items()[0].status, Status::Executed);
}

#[tokio::test]
async fn a_message_delivered_twice_at_once_sends_one_trigger() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    seed(&world, &[once("s1", "dev-1", 30)]).await;
    world.scan(&daily(start())).await.unwrap();
    world.schedule("run-1").await.unwrap();
    // Copy the message, as an at-least-once queue may.
    let body = world.execution_queue.peek_bodies()[0].clone();
    world
        .execution_queue
        .push(body, Duration::from_secs(29), vec![], None)
        .unwrap();
    world.clock.advance(Duration::from_secs(30));
    let outcomes = world.execute_ready().await.unwrap();
    assert_eq!(world.triggers().len(), 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Executed { .. }))
    );
    assert!(
        outcomes
            .iter()
            .any(|(_, o)| matches!(o, Outcome::Duplicate { .. } | Outcome::Retry { .. })),
        "the copy is dropped or retried: {outcomes:?}"
    );
}

#[tokio::test]
async fn occurrences_found_past_their_grace_are_missed_not_fired() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    let mut late = once("s1", "dev-1", 60);
    late.schedule.misfire_grace = Some(Duration::from_secs(600));
    seed(&world, &[late, once("s2", "dev-1", 90)]).await;
    world.scan(&daily(start())).await.unwrap();
    // The scheduler does not run for two hours (an outage); s1 allows 10 min, s2 the default 1 h.
    world.clock.advance(Duration::from_secs(7200));
    let report = world.schedule("after-outage").await.unwrap();
    assert_eq!((report.missed, report.dispatched), (2, 0));
    assert!(
        world
            .memory_store
            .items()
            .iter()
            .all(|i| i.status == Status::Missed && i.last_error.is_some())
    );
    assert!(world.triggers().is_empty());
}

#[tokio::test]
async fn overdue_within_grace_fires_at_once() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    seed(&world, &[once("s1", "dev-1", 60)]).await;
    world.scan(&daily(start())).await.unwrap();
    world.clock.advance(Duration::from_secs(600));
    let report = world.schedule("late-run").await.unwrap();
    assert_eq!(report.dispatched, 1);
    world.execute_ready().await.unwrap();
    let t = &world.triggers()[0];
    assert_eq!(t.scheduled_time.to_string(), at(60));
}

#[tokio::test]
async fn a_sink_failing_twice_then_recovering_executes_with_retries_recorded() {
    let world = with_flaky_sink(2, EmbeddedSettings::default());
    seed(&world, &steps(5, 20, 0)).await;
    world.scan(&daily(start())).await.unwrap();
    world.schedule("run").await.unwrap();
    world.clock.advance(Duration::from_secs(20));
    let outcomes = world.execute_ready().await.unwrap();
    assert!(
        outcomes
            .iter()
            .all(|(_, o)| matches!(o, Outcome::Executed { attempts: 3, .. })),
        "{outcomes:?}"
    );
    let triggers = world.triggers();
    assert_eq!(triggers.len(), 5);
    assert!(triggers.iter().all(|t| t.attempt == 3));
    assert!(
        world
            .memory_store
            .items()
            .iter()
            .all(|i| i.status == Status::Executed && i.retry_count == 2)
    );
}

#[tokio::test]
async fn a_sink_that_always_fails_ends_failed_with_the_message_in_the_dlq() {
    let settings = EmbeddedSettings {
        execution_visibility: Duration::from_secs(30),
        ..Default::default()
    };
    let world = with_flaky_sink(u32::MAX, settings);
    let clock = world.clock.clone();
    seed(&world, &steps(3, 20, 0)).await;
    world.scan(&daily(start())).await.unwrap();
    world.schedule("run").await.unwrap();
    clock.advance(Duration::from_secs(20));
    for _ in 0..4 {
        world.execute_ready().await.unwrap();
        clock.advance(Duration::from_secs(31));
    }
    assert!(world.triggers().is_empty());
    for item in world.memory_store.items() {
        assert_eq!(item.status, Status::Failed, "{}", item.key);
        assert_eq!(item.retry_count, 9, "3 attempts on each of 3 receives");
        assert!(
            item.last_error
                .as_deref()
                .unwrap_or("")
                .contains("injected failure"),
            "{:?}",
            item.last_error
        );
    }
    assert_eq!(
        world.execution_dlq.len(),
        3,
        "each FAILED occurrence has its message in the DLQ"
    );
    assert!(world.execution_queue.is_empty());
}

#[tokio::test]
async fn a_malformed_message_reaches_the_dlq_instead_of_looping() {
    let settings = EmbeddedSettings {
        execution_visibility: Duration::from_secs(10),
        ..Default::default()
    };
    let world = Embedded::new(start(), settings);
    world
        .execution_queue
        .push(
            "{\"v\":1,\"PK\":\"TENANT#a#b\"}".into(),
            Duration::ZERO,
            vec![],
            None,
        )
        .unwrap();
    for _ in 0..4 {
        let outcomes = world.execute_ready().await.unwrap();
        assert!(
            outcomes
                .iter()
                .all(|(_, o)| matches!(o, Outcome::Malformed { .. }))
        );
        world.clock.advance(Duration::from_secs(11));
    }
    assert!(world.execution_queue.is_empty());
    assert_eq!(world.execution_dlq.len(), 1);
}

#[tokio::test]
async fn the_registry_being_down_does_not_stop_pre_validated_steps() {
    // A registry answer is cached per device; with the cache cold and the registry
    // failing, a step validated at scan time still fires (and is counted).
    let world = Embedded::new(start(), EmbeddedSettings::default());
    seed(&world, &[once("s1", "dev-1", 30)]).await;
    world.scan(&daily(start())).await.unwrap();
    assert_eq!(
        world.memory_store.items()[0].validation_result,
        Some(schedule_core::model::Validation::Valid)
    );
    world.registry.set_unavailable(true);
    world.schedule("run").await.unwrap();
    world.clock.advance(Duration::from_secs(30));
    world.execute_ready().await.unwrap();
    assert_eq!(world.triggers().len(), 1);
    assert_eq!(
        world
            .metrics
            .get(schedule_core::metrics::Metric::ValidationUnavailable),
        1
    );
}

#[tokio::test]
async fn a_scan_stopped_by_its_deadline_says_what_is_left_and_a_rerun_completes_it() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    seed(&world, &steps(30, 60, 60)).await;
    // A deadline already reached: nothing may be started.
    let report = world
        .scanner
        .run(&daily(start()), Some(start()), &world.metrics)
        .await
        .unwrap();
    assert_eq!((report.created, report.not_written), (0, 30));
    assert!(!report.is_complete());
    // The full run afterwards completes it; nothing was lost.
    let report = world.scan(&daily(start())).await.unwrap();
    assert_eq!((report.created, report.not_written), (30, 0));
}

#[tokio::test]
async fn only_occurrences_queued_long_ago_count_as_stuck() {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    seed(&world, &[once("s1", "dev-1", 60)]).await;
    world.scan(&daily(start())).await.unwrap();
    // Sent 20 min late (within its 1 h grace): queued now, so not stuck yet.
    world.clock.advance(Duration::from_secs(20 * 60));
    let report = world.schedule("late").await.unwrap();
    assert_eq!((report.dispatched, report.stuck_queued), (1, 0));
    // Its message is lost (never executed): 16 minutes later it is stuck.
    let lost = world
        .execution_queue
        .receive(10, Duration::ZERO)
        .await
        .unwrap();
    world
        .execution_queue
        .delete(&lost[0].receipt_handle)
        .await
        .unwrap();
    world.clock.advance(Duration::from_secs(16 * 60));
    let report = world.schedule("later").await.unwrap();
    assert_eq!(report.stuck_queued, 1);
}

#[tokio::test]
async fn a_registry_down_for_every_delivery_ends_failed_not_queued() {
    let settings = EmbeddedSettings {
        execution_visibility: Duration::from_secs(30),
        ..Default::default()
    };
    let world = Embedded::new(start(), settings);
    seed(&world, &steps(2, 20, 0)).await;
    // Down from the start: nothing is pre-validated, so the executor may not go on without it.
    world.registry.set_unavailable(true);
    world.scan(&daily(start())).await.unwrap();
    assert!(
        world
            .memory_store
            .items()
            .iter()
            .all(|i| i.validation_result.is_none())
    );
    world.schedule("run").await.unwrap();
    world.clock.advance(Duration::from_secs(20));
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        outcomes.extend(world.execute_ready().await.unwrap());
        world.clock.advance(Duration::from_secs(31));
    }
    let failed = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Failed { .. }))
        .count();
    assert_eq!(failed, 2, "{outcomes:?}");
    for item in world.memory_store.items() {
        assert_eq!(item.status, Status::Failed, "{}", item.key);
        assert!(
            item.last_error
                .as_deref()
                .unwrap_or("")
                .contains("registry unavailable"),
            "{:?}",
            item.last_error
        );
    }
    assert_eq!(world.execution_dlq.len(), 2);
    assert!(world.triggers().is_empty());
}
