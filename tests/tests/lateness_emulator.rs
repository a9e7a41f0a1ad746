//! How late triggers leave, measured outside the executor: the real scheduler and executor
//! handlers on the emulator, the executor fed the way the Lambda event source feeds it
//! (batches of up to 10, a fixed number of concurrent instances, only the acknowledged
//! messages deleted), and lateness taken from the action trigger queue's own
//! `SentTimestamp` minus the occurrence's `scheduled_time`, never from what the executor
//! says of itself.
//!
//! Asserted: nothing early, every step delivered exactly once, none lost, every
//! occurrence EXECUTED. Printed, not asserted (timing on a shared machine and a Python
//! emulator is not a pass/fail matter): p50, p99, max lateness and the early count.
//!
//! Sizes: `LATENESS_SPREAD` (default 300 steps over a minute, five due each second, the
//! scheduler called every 15 s with a 15 s window) and `LATENESS_BURST` (default 200
//! steps due at the same second, `LATENESS_BURST_INSTANCES` executor instances, default
//! 5). `LATENESS_TRACE` prints each invocation's timing.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use integration_tests::aws_world::{AwsWorld, DeviceState};
use integration_tests::fakes::sqs_event;
use schedule_core::adapters::sqs::SqsDispatchQueue;
use schedule_core::app::execute::Outcome;
use schedule_core::metrics::Metrics;
use schedule_core::model::{
    Definition, ScheduleItem, ScheduleKey, Status, Timestamp, TriggerMessage, Validation,
};
use schedule_core::ports::{DefinitionSource, DispatchQueue, ScheduleStore};
use serde_json::json;

const TENANT: &str = "acme";
const DEVICES: usize = 20;

fn size(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The next whole second at least `lead` from now.
fn second_after(lead: Duration) -> DateTime<Utc> {
    let at = Utc::now() + chrono::Duration::from_std(lead).unwrap();
    Timestamp::from_datetime(at).as_datetime() + chrono::Duration::seconds(1)
}

/// A deployment whose scheduler window is `window`, so a minute of steps spans several
/// scheduler runs.
async fn world(window: &str) -> Option<AwsWorld> {
    let mut world = AwsWorld::new(Duration::from_secs(30)).await?;
    world.env.insert("SCHEDULE_WINDOW", window.to_owned());
    world.env.insert("SCHEDULE_MARGIN", "5s".to_owned());
    for d in 0..DEVICES {
        world
            .device(TENANT, &format!("dev-{d:02}"), DeviceState::Active)
            .await;
    }
    Some(world)
}

/// How long `n` writes take on the emulator on this machine now, from 20 writes of a
/// disabled definition: due instants chosen from it leave enough time for the seeding and
/// the scheduler, however loaded the machine is.
async fn pace(world: &AwsWorld, n: usize) -> Duration {
    let scanner = daily_scanner_v2::build(&world.scanner_config(), &world.sdk).unwrap();
    let began = Instant::now();
    for v in 1..=20 {
        let def = Definition::from_json(&json!({
            "tenant_id": TENANT, "device_workflow_step_id": "calibration", "workflow_id": "wf",
            "device_id": "dev-00", "enabled": false, "version": v,
            "schedule": {"type": "once", "at": "2026-01-01T00:00:00Z"}, "payload": {}
        }))
        .unwrap();
        scanner.definitions.put(&def).await.unwrap();
    }
    began.elapsed() * n as u32 / 20
}

/// Writes one definition and its PENDING occurrence (validated at scan time) per instant;
/// returns the execution ids with their keys and scheduled times.
async fn seed(world: &AwsWorld, times: &[Timestamp]) -> HashMap<String, (ScheduleKey, Timestamp)> {
    let scanner = daily_scanner_v2::build(&world.scanner_config(), &world.sdk).unwrap();
    let shards = scanner.store.status_shards();
    let now = Timestamp::from_datetime(Utc::now());
    let writes = times.iter().enumerate().map(|(i, at)| {
        let def = Definition::from_json(&json!({
            "tenant_id": TENANT, "device_workflow_step_id": format!("step-{i:04}"),
            "workflow_id": format!("wf-{}", i % 7), "device_id": format!("dev-{:02}", i % DEVICES),
            "enabled": true, "version": 1, "schedule": {"type": "once", "at": at.to_string()},
            "payload": {"action": "set_mode", "n": i}
        }))
        .unwrap();
        let item = ScheduleItem::pending(&def, *at, now, Duration::from_secs(86_400), shards)
            .with_device_validation(Some(Validation::Valid));
        let scanner = &scanner;
        async move {
            scanner.definitions.put(&def).await.unwrap();
            assert!(scanner.store.create_if_absent(&item).await.unwrap());
            (
                item.execution_id().to_string(),
                (item.key.clone(), item.scheduled_time),
            )
        }
    });
    futures::stream::iter(writes)
        .buffer_unordered(16)
        .collect()
        .await
}

/// What the action trigger queue received: execution id, scheduled time, `SentTimestamp`.
#[derive(Debug)]
struct Sent {
    execution_id: String,
    scheduled_time: Timestamp,
    sent_ms: i64,
}

/// Receives and deletes triggers until `want` arrived and the queue stayed empty for a
/// moment after (so a duplicate would be seen), or `limit` passed.
async fn drain_triggers(world: &AwsWorld, want: usize, limit: Duration) -> Vec<Sent> {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut idle_since: Option<Instant> = None;
    while started.elapsed() < limit {
        let got = world
            .emu
            .sqs
            .receive_message()
            .queue_url(&world.action_url)
            .max_number_of_messages(10)
            .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp)
            .send()
            .await
            .unwrap();
        let messages = got.messages();
        if messages.is_empty() {
            if out.len() >= want {
                let idle = *idle_since.get_or_insert_with(Instant::now);
                if idle.elapsed() > Duration::from_secs(2) {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        idle_since = None;
        let mut deletes = Vec::new();
        for (i, m) in messages.iter().enumerate() {
            let t: TriggerMessage = serde_json::from_str(m.body().unwrap()).unwrap();
            let sent_ms = m
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                .and_then(|v| v.parse().ok())
                .expect("SentTimestamp");
            out.push(Sent {
                execution_id: t.execution_id.to_string(),
                scheduled_time: t.scheduled_time,
                sent_ms,
            });
            deletes.push(
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle().unwrap())
                    .build()
                    .unwrap(),
            );
        }
        world
            .emu
            .sqs
            .delete_message_batch()
            .queue_url(&world.action_url)
            .set_entries(Some(deletes))
            .send()
            .await
            .unwrap();
    }
    out
}

/// The event source: `instances` concurrent pollers, each receiving up to 10 messages,
/// invoking the executor's handler with them (deadline 30 s, the template's timeout) and
/// deleting what it acknowledged in one request, until `stop`.
async fn event_source(
    world: &AwsWorld,
    instances: usize,
    stop: &AtomicBool,
    metrics: &Metrics,
) -> Vec<Outcome> {
    let executor = executor_v2::build(&world.executor_config(), &world.sdk).unwrap();
    let requeue = executor_v2::requeue(&world.executor_config(), &world.sdk);
    let queue = SqsDispatchQueue::new(world.emu.sqs.clone(), &world.execution_url);
    let outcomes = Mutex::new(Vec::new());
    let one = || async {
        while !stop.load(Ordering::Relaxed) {
            // Short polls: moto's long poll re-checks delayed messages only once a second
            // (SQS answers as soon as one becomes visible), which would add up to a second
            // that production does not have.
            let t0 = Instant::now();
            // A failed poll is tried again, as the event source does.
            let received = match queue.receive(10, Duration::ZERO).await {
                Ok(received) => received,
                Err(e) => {
                    eprintln!("receive failed, polling again: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            if received.is_empty() {
                // Every 100 ms per instance: often enough to take a message well inside
                // the second SQS releases it early, seldom enough not to load the emulator
                // (every call to it is serialized) with empty receives.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let t1 = Instant::now();
            let deadline = Some(Utc::now() + chrono::Duration::seconds(30));
            let (response, handled) = executor_v2::handle(
                &executor,
                &requeue,
                &sqs_event(&received),
                deadline,
                metrics,
            )
            .await;
            let failed: HashSet<_> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.clone())
                .collect();
            // As the event source does: one DeleteMessageBatch for the acknowledged ones.
            let deletes: Vec<DeleteMessageBatchRequestEntry> = received
                .iter()
                .enumerate()
                .filter(|(_, m)| !failed.contains(&m.message_id))
                .map(|(i, m)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&m.receipt_handle)
                        .build()
                        .unwrap()
                })
                .collect();
            if !deletes.is_empty() {
                world
                    .emu
                    .sqs
                    .delete_message_batch()
                    .queue_url(&world.execution_url)
                    .set_entries(Some(deletes))
                    .send()
                    .await
                    .unwrap();
            }
            if std::env::var("LATENESS_TRACE").is_ok() {
                eprintln!(
                    "{} received {} in {:?}, handled and deleted in {:?}",
                    Utc::now().format("%H:%M:%S%.3f"),
                    received.len(),
                    t1 - t0,
                    t1.elapsed()
                );
            }
            outcomes
                .lock()
                .unwrap()
                .extend(handled.into_iter().map(|(_, o)| o));
        }
    };
    futures::future::join_all((0..instances).map(|_| one())).await;
    outcomes.into_inner().unwrap()
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Checks that every step left exactly once and never early, and that every occurrence is
/// EXECUTED with no message left behind; prints the lateness figures.
async fn check_and_print(
    what: &str,
    world: &AwsWorld,
    due: &HashMap<String, (ScheduleKey, Timestamp)>,
    sent: &[Sent],
    outcomes: &[Outcome],
) {
    let mut seen = HashSet::new();
    let mut lateness = Vec::with_capacity(sent.len());
    let mut early = 0;
    for s in sent {
        let (_, at) = due
            .get(&s.execution_id)
            .unwrap_or_else(|| panic!("unexpected trigger {}", s.execution_id));
        assert_eq!(s.scheduled_time, *at, "{}", s.execution_id);
        assert!(
            seen.insert(&s.execution_id),
            "{} sent twice",
            s.execution_id
        );
        let late = s.sent_ms - at.as_datetime().timestamp_millis();
        if late < 0 {
            early += 1;
        }
        lateness.push(late);
    }
    let lost: Vec<_> = due.keys().filter(|id| !seen.contains(id)).collect();
    lateness.sort_unstable();
    if !lateness.is_empty() {
        eprintln!(
            "lateness [{what}]: {} triggers, p50 {} ms, p99 {} ms, max {} ms, early {early}",
            lateness.len(),
            percentile(&lateness, 0.5),
            percentile(&lateness, 0.99),
            lateness[lateness.len() - 1],
        );
    }
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for o in outcomes {
        let kind = match o {
            Outcome::Executed { .. } => "executed",
            Outcome::Deferred { .. } => "deferred",
            Outcome::Duplicate { .. } => "duplicate",
            Outcome::Busy => "busy",
            Outcome::Retry { .. } => "retry",
            _ => "other",
        };
        *kinds.entry(kind).or_default() += 1;
    }
    eprintln!("outcomes [{what}]: {kinds:?}");
    assert_eq!(early, 0, "triggers sent before their scheduled time");
    assert!(
        lost.is_empty(),
        "{} steps never delivered: {lost:?}",
        lost.len()
    );
    assert_eq!(sent.len(), due.len());

    let store = executor_v2::build(&world.executor_config(), &world.sdk)
        .unwrap()
        .store;
    let statuses: Vec<(ScheduleKey, Status)> = futures::stream::iter(due.values())
        .map(|(key, _)| {
            let store = &store;
            async move { (key.clone(), store.get(key).await.unwrap().unwrap().status) }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for (key, status) in statuses {
        assert_eq!(status, Status::Executed, "{key}");
    }
    assert_eq!(world.queue_depth(&world.execution_url).await, 0);
    assert_eq!(world.queue_depth(&world.dlq_url).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn steps_spread_over_several_scheduler_windows_leave_on_time_once() {
    let Some(world) = world("15s").await else {
        return;
    };
    let n = size("LATENESS_SPREAD", 300);
    // Five steps due each second (one every 200 ms, scheduled times being whole seconds),
    // from once the occurrences are written and the first scheduler run is done
    // (two writes per step, then the first scheduler run: about four writes per step of
    // the first 15 s).
    let start = second_after(pace(&world, 2 * n + 150).await + Duration::from_secs(2));
    let times: Vec<Timestamp> = (0..n)
        .map(|i| Timestamp::from_datetime(start + chrono::Duration::milliseconds(200 * i as i64)))
        .collect();
    let due = seed(&world, &times).await;
    let last = *times.iter().max().unwrap();

    let scheduler = scheduler_v2::build(&world.scheduler_config(), &world.sdk);
    let metrics = Metrics::new("lateness");
    let stop = AtomicBool::new(false);
    let window = Duration::from_secs(15);
    // The scheduler on its rate, as EventBridge calls it, until the last step is queued.
    let schedule = async {
        let mut run = 0;
        loop {
            let began = Instant::now();
            let report = scheduler
                .run(&format!("run-{run}"), None, &metrics)
                .await
                .unwrap();
            eprintln!(
                "scheduler run {run}: due {} dispatched {}",
                report.due, report.dispatched
            );
            run += 1;
            if Utc::now() + chrono::Duration::from_std(window).unwrap() > last.as_datetime() {
                break;
            }
            tokio::time::sleep(window.saturating_sub(began.elapsed())).await;
        }
    };
    // Generous: the drain stops as soon as every step arrived; a slow, shared emulator
    // makes steps late (printed), never lost.
    let limit = (last.as_datetime() - Utc::now()).to_std().unwrap() + Duration::from_secs(180);
    let drain = async {
        let sent = drain_triggers(&world, due.len(), limit).await;
        stop.store(true, Ordering::Relaxed);
        sent
    };
    let ((), sent, outcomes) =
        tokio::join!(schedule, drain, event_source(&world, 10, &stop, &metrics));
    check_and_print(
        &format!("spread, {n} steps, 10 instances"),
        &world,
        &due,
        &sent,
        &outcomes,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_due_at_one_second_leaves_on_time_once_from_a_few_instances() {
    let Some(world) = world("5m").await else {
        return;
    };
    let n = size("LATENESS_BURST", 200);
    let instances = size("LATENESS_BURST_INSTANCES", 5);
    // Due once the occurrences are written and the scheduler ran (two writes per step,
    // then about two more).
    let at = Timestamp::from_datetime(second_after(
        pace(&world, 4 * n).await + Duration::from_secs(2),
    ));
    let due = seed(&world, &vec![at; n]).await;

    let scheduler = scheduler_v2::build(&world.scheduler_config(), &world.sdk);
    let metrics = Metrics::new("lateness");
    let report = scheduler.run("run-0", None, &metrics).await.unwrap();
    eprintln!(
        "scheduler: due {} dispatched {}, done {} ms before the burst",
        report.due,
        report.dispatched,
        (at.as_datetime() - Utc::now()).num_milliseconds()
    );
    assert_eq!(report.dispatched, n);
    let stop = AtomicBool::new(false);
    let limit =
        (at.as_datetime() - Utc::now()).to_std().unwrap_or_default() + Duration::from_secs(180);
    let drain = async {
        let sent = drain_triggers(&world, due.len(), limit).await;
        stop.store(true, Ordering::Relaxed);
        sent
    };
    let (sent, outcomes) = tokio::join!(drain, event_source(&world, instances, &stop, &metrics));
    check_and_print(
        &format!("burst, {n} steps due at one second, {instances} instances"),
        &world,
        &due,
        &sent,
        &outcomes,
    )
    .await;
}
