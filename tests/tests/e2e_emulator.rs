//! The flow end to end against the emulator: the real handler functions of the three
//! Lambdas, DynamoDB and SQS through the real adapters, and a device registry over HTTP.
//! The executor is fed by an in-test poller that turns received messages into the SQS
//! event Lambda would send and deletes only the messages the handler acknowledged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use integration_tests::aws_world::{AwsWorld, DeviceState};
use integration_tests::fakes::{FlakySink, sqs_event};
use schedule_core::adapters::dynamo::DynamoDefinitionSource;
use schedule_core::adapters::sqs::{SqsActionSink, SqsDispatchQueue};
use schedule_core::app::execute::{Executor, Outcome};
use schedule_core::metrics::Metrics;
use schedule_core::model::{Definition, ScheduleKey, Status, Timestamp, TriggerMessage};
use schedule_core::ports::{
    ActionSink, Clock, DefinitionSource, DeviceValidator, DispatchQueue, ScheduleStore,
};
use serde_json::{Value, json};

fn event(name: &str) -> Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A second-aligned instant `offset_s` from `base`.
fn time(base: DateTime<Utc>, offset_s: i64) -> Timestamp {
    Timestamp::from_datetime(base + chrono::Duration::seconds(offset_s))
}

fn definition(i: usize, tenant: &str, device: &str, schedule: Value) -> Definition {
    Definition::from_json(&json!({
        "tenant_id": tenant, "device_workflow_step_id": format!("step-{i:03}"), "workflow_id": format!("wf-{}", i % 7),
        "device_id": device, "enabled": true, "version": 1, "schedule": schedule,
        "payload": {"action": "set_mode", "mode": format!("m{i}"), "params": {"level": i, "confirm": true}}
    }))
    .unwrap()
}

/// Runs `pollers` concurrent receive loops against the execution queue until `done` says
/// so or `limit` passes; returns every outcome.
async fn poll<S, A, V, C>(
    world: &AwsWorld,
    executor: &Executor<S, A, V, C>,
    metrics: &Metrics,
    pollers: usize,
    limit: Duration,
    done: impl Fn(&[Outcome]) -> bool + Sync,
) -> Vec<Outcome>
where
    S: ScheduleStore,
    A: ActionSink,
    V: DeviceValidator,
    C: Clock,
{
    let queue = SqsDispatchQueue::new(world.emu.sqs.clone(), &world.execution_url);
    let outcomes = Mutex::new(Vec::new());
    let started = Instant::now();
    let one = || async {
        while started.elapsed() < limit && !done(&outcomes.lock().unwrap()) {
            let t0 = Instant::now();
            // Short polls: moto's long poll re-checks delayed messages only once a second
            // (SQS itself answers as soon as one becomes visible), which would add up to a
            // second of lateness that production does not have.
            let received = queue.receive(10, Duration::ZERO).await.unwrap();
            let t1 = Instant::now();
            if received.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let (response, handled) =
                executor_v2::handle(executor, &queue, &sqs_event(&received), None, metrics).await;
            if std::env::var("E2E_TRACE").is_ok() {
                eprintln!(
                    "{} received {} in {:?}, handled in {:?}",
                    Utc::now().format("%H:%M:%S%.3f"),
                    received.len(),
                    t1 - t0,
                    t1.elapsed()
                );
            }
            let failed: HashSet<_> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.clone())
                .collect();
            for m in &received {
                if !failed.contains(&m.message_id) {
                    queue.delete(&m.receipt_handle).await.unwrap();
                }
            }
            outcomes
                .lock()
                .unwrap()
                .extend(handled.into_iter().map(|(_, o)| o));
        }
    };
    futures::future::join_all((0..pollers).map(|_| one())).await;
    outcomes.into_inner().unwrap()
}

fn skipped(outcomes: &[Outcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Skipped))
        .count()
}

fn executed(outcomes: &[Outcome]) -> usize {
    outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Executed { .. }))
        .count()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_definitions_fire_once_on_time_with_invalid_devices_skipped() {
    let Some(world) = AwsWorld::new(Duration::from_secs(30)).await else {
        return;
    };
    let scanner = daily_scanner_v2::build(&world.scanner_config(), &world.sdk).unwrap();
    let scheduler = scheduler_v2::build(&world.scheduler_config(), &world.sdk);
    let executor = executor_v2::build(&world.executor_config(), &world.sdk).unwrap();

    // 50 devices: 3 inactive, 1 unknown to the registry; devices alternate tenants.
    let state = |d: usize| match d {
        5 | 15 | 25 => DeviceState::Inactive,
        35 => DeviceState::Unknown,
        _ => DeviceState::Active,
    };
    let tenant = |d: usize| {
        if d.is_multiple_of(2) {
            "acme"
        } else {
            "globex"
        }
    };
    for d in 0..50 {
        world
            .device(tenant(d), &format!("dev-{d:02}"), state(d))
            .await;
    }
    // 200 definitions: 10 one-time steps already past, 20 rates whose one occurrence in the
    // window is seconds away, the rest one-time steps due within the next minute — late
    // enough that the scan and the scheduler run (slow on the emulator) finish first.
    let base = Utc::now();
    let mut defs = Vec::new();
    let mut due: HashMap<String, (Definition, Timestamp)> = HashMap::new();
    for i in 0..200 {
        let d = i % 50;
        let (schedule, at) = match i {
            _ if i < 10 => (
                json!({"type": "once", "at": time(base, -3600).to_string()}),
                None,
            ),
            // Due within seconds: already due by the time the scheduler (slow on the
            // emulator) gets to them, so they go out at once.
            _ if i < 20 => {
                let at = time(base, 3);
                (json!({"type": "once", "at": at.to_string()}), Some(at))
            }
            _ if i % 10 == 3 => {
                let first = time(base, 30 + (i % 20) as i64);
                let start = first.minus(Duration::from_secs(120));
                (
                    json!({"type": "rate", "every": "1m", "start": start.to_string(), "end": first.plus(Duration::from_secs(30)).to_string()}),
                    Some(first),
                )
            }
            _ => {
                let at = time(base, 30 + (i % 20) as i64);
                (json!({"type": "once", "at": at.to_string()}), Some(at))
            }
        };
        let def = definition(i, tenant(d), &format!("dev-{d:02}"), schedule);
        if let Some(at) = at
            && state(d) == DeviceState::Active
        {
            let key = ScheduleKey::new(&def.tenant_id, at, &def.device_workflow_step_id);
            due.insert(
                schedule_core::model::ExecutionId::of(&key).to_string(),
                (def.clone(), at),
            );
        }
        scanner.definitions.put(&def).await.unwrap();
        defs.push(def);
    }
    let skipped_expected = defs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i >= 10 && state(i % 50) != DeviceState::Active)
        .count();

    // As if the previous run covered up to `base`: this run starts there, however long
    // the 200 puts took on the emulator, so the steps due seconds after `base` are in it.
    scanner
        .store
        .record_scan_horizon(Timestamp::from_datetime(base))
        .await
        .unwrap();
    let metrics = Metrics::new("e2e");
    let scan = daily_scanner_v2::handle(&scanner, &event("daily_scanner_v2.json"), None, &metrics)
        .await
        .unwrap();
    eprintln!("scan: {}", serde_json::to_string(&scan).unwrap());
    assert_eq!(
        (scan.definitions, scan.occurrences, scan.created),
        (200, 190, 190)
    );
    // Written PENDING with their INVALID answer: the executor skips them when due.
    assert_eq!(scan.invalid_device, skipped_expected);

    // The executor polls while the scheduler runs, as the Lambda event source would.
    let want = due.len();
    let (run, outcomes) = tokio::join!(
        scheduler.run("scheduler-run-1", None, &metrics),
        poll(
            &world,
            &executor,
            &metrics,
            8,
            Duration::from_secs(90),
            |o| executed(o) + skipped(o) >= want + skipped_expected
        )
    );
    let run = run.unwrap();
    eprintln!("schedule: {}", serde_json::to_string(&run).unwrap());
    assert_eq!(
        run.dispatched + run.status_lost,
        want + skipped_expected,
        "every occurrence is due within the window: {run:?}"
    );
    assert_eq!(executed(&outcomes), want, "outcomes: {outcomes:?}");

    let triggers = world.drain_triggers().await;
    assert_eq!(
        triggers.len(),
        want,
        "exactly one trigger per due valid occurrence"
    );
    let (mut lateness, mut lateness_soon) = (Vec::new(), Vec::new());
    let mut seen = HashSet::new();
    for (body, attrs) in &triggers {
        let t: TriggerMessage = serde_json::from_str(body).unwrap();
        let (def, at) = due
            .get(t.execution_id.as_str())
            .unwrap_or_else(|| panic!("unexpected trigger {body}"));
        assert!(
            seen.insert(t.execution_id.clone()),
            "{} sent twice",
            t.execution_id
        );
        assert_eq!(t.scheduled_time, *at);
        assert_eq!(t.payload, def.payload, "payload of {}", t.execution_id);
        assert_eq!(
            (&t.tenant_id, &t.device_id, &t.workflow_id),
            (&def.tenant_id, &def.device_id, &def.workflow_id)
        );
        assert_eq!((t.schema_version, t.attempt), (1, 1));
        assert_eq!(
            attrs.get("execution_id").map(String::as_str),
            Some(t.execution_id.as_str())
        );
        assert_eq!(
            attrs.get("tenant_id").map(String::as_str),
            Some(t.tenant_id.as_str())
        );
        let sent: DateTime<Utc> = t.sent_at.parse().unwrap();
        assert!(
            sent >= at.as_datetime(),
            "{} sent at {sent}, before its time {at}",
            t.execution_id
        );
        let late = (sent - at.as_datetime()).num_milliseconds();
        if *at == time(base, 3) {
            lateness_soon.push(late)
        } else {
            lateness.push(late)
        }
    }
    for (what, l) in [
        ("due 30-49 s after the scan", &mut lateness),
        (
            "due 3 s after the scan (overdue at dispatch)",
            &mut lateness_soon,
        ),
    ] {
        l.sort_unstable();
        eprintln!(
            "lateness of {} triggers {what}: p50 {} ms, p99 {} ms, max {} ms",
            l.len(),
            percentile(l, 0.5),
            percentile(l, 0.99),
            l[l.len() - 1]
        );
    }

    // Every materialized occurrence ended in a terminal status.
    let mut by_status: HashMap<Status, usize> = HashMap::new();
    for def in defs.iter().skip(10) {
        let at = match &def.schedule.rule {
            schedule_core::model::Schedule::Once { at } => *at,
            schedule_core::model::Schedule::Rate { start, .. } => {
                start.plus(Duration::from_secs(120))
            }
            _ => unreachable!(),
        };
        let key = ScheduleKey::new(&def.tenant_id, at, &def.device_workflow_step_id);
        let item = executor
            .store
            .get(&key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{key} missing"));
        assert!(item.status.is_terminal(), "{key} left {}", item.status);
        *by_status.entry(item.status).or_default() += 1;
    }
    eprintln!("final statuses: {by_status:?}");
    assert_eq!(by_status.get(&Status::Executed), Some(&want));
    assert_eq!(by_status.get(&Status::Skipped), Some(&skipped_expected));

    let (scan_hits, scan_misses) = scanner.validator.counts();
    let (exec_hits, exec_misses) = executor.validator.counts();
    let validations = scan_hits + scan_misses + exec_hits + exec_misses;
    let calls = world.registry_calls().await as u64;
    eprintln!(
        "validations {validations}, registry calls {calls} ({:.1}%)",
        100.0 * calls as f64 / validations as f64
    );
    assert_eq!(
        calls,
        scan_misses + exec_misses,
        "every cache miss is one registry call"
    );
    // The scanner asks once per distinct device; the executor's cache answers the rest.
    assert!(
        scan_misses <= 50 && exec_misses <= 50,
        "registry calls: scanner {scan_misses}, executor {exec_misses}, for 50 devices"
    );
}

async fn seed_due(
    world: &AwsWorld,
    defs: &DynamoDefinitionSource,
    n: usize,
    offset_s: i64,
) -> Vec<ScheduleKey> {
    let base = Utc::now();
    let mut keys = Vec::new();
    for i in 0..n {
        world
            .device("acme", &format!("dev-{i:02}"), DeviceState::Active)
            .await;
        let at = time(base, offset_s);
        let def = definition(
            i,
            "acme",
            &format!("dev-{i:02}"),
            json!({"type": "once", "at": at.to_string()}),
        );
        defs.put(&def).await.unwrap();
        keys.push(ScheduleKey::new(
            &def.tenant_id,
            at,
            &def.device_workflow_step_id,
        ));
    }
    keys
}

type FlakyExecutor = Executor<
    schedule_core::adapters::dynamo::DynamoScheduleStore,
    FlakySink<SqsActionSink>,
    schedule_core::validation_cache::CachedValidator<
        schedule_core::adapters::http_validator::RegistryValidator,
    >,
    schedule_core::adapters::clock::SystemClock,
>;

/// A deployment whose action trigger queue fails the first `fail_first` sends of each
/// step, with `n` steps due `offset_s` from now already scanned and scheduled.
async fn with_failing_action_queue(
    visibility: Duration,
    fail_first: u32,
    n: usize,
    offset_s: i64,
) -> Option<(AwsWorld, FlakyExecutor, Vec<ScheduleKey>, Metrics)> {
    let world = AwsWorld::new(visibility).await?;
    let scanner = daily_scanner_v2::build(&world.scanner_config(), &world.sdk).unwrap();
    let scheduler = scheduler_v2::build(&world.scheduler_config(), &world.sdk);
    let executor = executor_v2::build(&world.executor_config(), &world.sdk)
        .unwrap()
        .with_sink(FlakySink::new(
            SqsActionSink::new(world.emu.sqs.clone(), &world.action_url),
            fail_first,
        ));
    let keys = seed_due(&world, &scanner.definitions, n, offset_s).await;
    let metrics = Metrics::new("e2e");
    daily_scanner_v2::handle(&scanner, &json!({}), None, &metrics)
        .await
        .unwrap();
    scheduler.run("run-1", None, &metrics).await.unwrap();
    Some((world, executor, keys, metrics))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_action_queue_failing_twice_then_recovering_executes_with_retries_recorded() {
    let Some((world, executor, keys, metrics)) =
        with_failing_action_queue(Duration::from_secs(30), 2, 10, 3).await
    else {
        return;
    };
    let outcomes = poll(
        &world,
        &executor,
        &metrics,
        2,
        Duration::from_secs(45),
        |o| executed(o) >= 10,
    )
    .await;
    assert_eq!(executed(&outcomes), 10, "{outcomes:?}");
    assert_eq!(
        executor
            .sink
            .failures
            .load(std::sync::atomic::Ordering::Relaxed),
        20
    );

    let triggers = world.drain_triggers().await;
    assert_eq!(triggers.len(), 10);
    for (body, _) in &triggers {
        let t: TriggerMessage = serde_json::from_str(body).unwrap();
        assert_eq!(t.attempt, 3, "the third attempt went through");
    }
    for key in &keys {
        let item = executor.store.get(key).await.unwrap().unwrap();
        assert_eq!(
            (item.status, item.retry_count),
            (Status::Executed, 2),
            "{key}"
        );
        assert!(item.lateness_ms.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_action_queue_failing_always_ends_failed_with_messages_in_the_dlq() {
    let Some((world, executor, keys, metrics)) =
        with_failing_action_queue(Duration::from_secs(2), u32::MAX, 5, 2).await
    else {
        return;
    };

    let dlq = SqsDispatchQueue::new(world.emu.sqs.clone(), &world.dlq_url);
    let failed = |o: &[Outcome]| {
        o.iter()
            .filter(|o| matches!(o, Outcome::Failed { .. }))
            .count()
    };
    // Keep receiving until SQS has moved every message to the DLQ (moto redrives on the
    // receive after the last allowed one).
    let started = Instant::now();
    let mut outcomes = Vec::new();
    while world.queue_depth(&world.dlq_url).await < 5 && started.elapsed() < Duration::from_secs(60)
    {
        outcomes.extend(
            poll(
                &world,
                &executor,
                &metrics,
                2,
                Duration::from_secs(3),
                |_| false,
            )
            .await,
        );
    }
    assert!(failed(&outcomes) >= 5, "{outcomes:?}");
    assert_eq!(
        world.queue_depth(&world.dlq_url).await,
        5,
        "every message in the DLQ"
    );
    assert_eq!(world.queue_depth(&world.execution_url).await, 0);
    for key in &keys {
        let item = executor.store.get(key).await.unwrap().unwrap();
        assert_eq!(
            item.status,
            Status::Failed,
            "{key}: nothing may be left QUEUED"
        );
        assert_eq!(
            item.retry_count, 9,
            "{key}: 3 attempts on each of 3 receives"
        );
        assert!(item.last_error.unwrap().contains("injected failure"));
    }
    let dead = dlq.receive(10, Duration::from_secs(1)).await.unwrap();
    assert!(!dead.is_empty());
    assert!(world.drain_triggers().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn running_scanner_and_scheduler_twice_changes_nothing_the_second_time() {
    let Some(world) = AwsWorld::new(Duration::from_secs(30)).await else {
        return;
    };
    let scanner = daily_scanner_v2::build(&world.scanner_config(), &world.sdk).unwrap();
    let scheduler = scheduler_v2::build(&world.scheduler_config(), &world.sdk);
    seed_due(&world, &scanner.definitions, 12, 120).await;
    let metrics = Metrics::new("e2e");
    let scan1 = daily_scanner_v2::handle(&scanner, &event("daily_scanner_v2.json"), None, &metrics)
        .await
        .unwrap();
    let scan2 = daily_scanner_v2::handle(&scanner, &event("daily_scanner_v2.json"), None, &metrics)
        .await
        .unwrap();
    eprintln!(
        "scan 1: created {} already {}; scan 2: created {} already {}",
        scan1.created, scan1.already_present, scan2.created, scan2.already_present
    );
    assert_eq!(
        (scan1.created, scan2.created, scan2.already_present),
        (12, 0, 12)
    );

    // Two overlapping runs, then a third: each occurrence is sent exactly once.
    let (a, b) = tokio::join!(
        scheduler.run("run-a", None, &metrics),
        scheduler.run("run-b", None, &metrics)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let c = scheduler.run("run-c", None, &metrics).await.unwrap();
    eprintln!(
        "schedule: run a dispatched {}, run b {}, run c due {} dispatched {}",
        a.dispatched, b.dispatched, c.due, c.dispatched
    );
    assert_eq!(a.dispatched + b.dispatched, 12);
    assert_eq!((c.due, c.dispatched), (0, 0));
    assert_eq!(
        world.queue_depth(&world.execution_url).await,
        12,
        "one message per occurrence"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_for_one_tenant_writes_only_its_range() {
    let Some(world) = AwsWorld::new(Duration::from_secs(30)).await else {
        return;
    };
    let scanner = daily_scanner_v2::build(&world.scanner_config(), &world.sdk).unwrap();
    let base = Utc::now();
    for (i, tenant) in ["acme", "globex"].iter().enumerate() {
        world.device(tenant, "dev-1", DeviceState::Active).await;
        let rate =
            json!({"type": "rate", "every": "1h", "start": time(base, -10 * 3600).to_string()});
        scanner
            .definitions
            .put(&definition(i, tenant, "dev-1", rate))
            .await
            .unwrap();
    }
    let request = json!({"from": time(base, -6 * 3600).to_string(), "to": time(base, -3 * 3600).to_string(), "tenant_id": "acme"});
    let metrics = Metrics::new("e2e");
    let report = daily_scanner_v2::handle(&scanner, &request, None, &metrics)
        .await
        .unwrap();
    assert_eq!((report.other_tenants, report.created), (1, 3), "{report:?}");

    let bad = json!({"from": "yesterday", "to": time(base, 0).to_string()});
    let err = daily_scanner_v2::handle(&scanner, &bad, None, &metrics)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("from") && err.to_string().contains("yesterday"),
        "{err}"
    );
}
