//! Per-tenant rollout modes against the emulator, through the functions' own wiring: a
//! tenant in shadow produces no action trigger and a complete shadow record (on the items
//! and on the shadow queue); a switch to active while its occurrences are in flight sends
//! each of them exactly once, by exactly one of the two paths.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use integration_tests::aws_world::{AwsWorld, DeviceState};
use integration_tests::fakes::sqs_event;
use schedule_core::adapters::sqs::SqsDispatchQueue;
use schedule_core::app::execute::Outcome;
use schedule_core::metrics::Metrics;
use schedule_core::model::{
    Definition, ExecutionId, ScheduleItem, ScheduleKey, Status, TenantId, TenantMode, Timestamp,
    TriggerMessage,
};
use schedule_core::ports::{DefinitionSource, DispatchQueue, ScheduleStore, TenantModes};
use serde_json::{Value, json};

fn time(base: DateTime<Utc>, offset_s: i64) -> Timestamp {
    Timestamp::from_datetime(base + chrono::Duration::seconds(offset_s))
}

fn once(tenant: &str, i: usize, at: Timestamp) -> Definition {
    Definition::from_json(&json!({
        "tenant_id": tenant, "device_workflow_step_id": format!("step-{i:02}"), "workflow_id": "wf",
        "device_id": "dev-1", "enabled": true, "version": 1, "schedule": {"type": "once", "at": at.to_string()},
        "payload": {"action": "open_valve", "step": i}
    }))
    .unwrap()
}

fn event(name: &str) -> Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The occurrences of `defs` as written, with their keys.
struct Plan {
    keys: Vec<(ScheduleKey, Timestamp, String)>,
}

/// Sets up the world: modes, definitions, one scan, then the scheduler and pollers of
/// the executor until every occurrence is settled; `during` runs alongside (a switch).
async fn run(
    world: &AwsWorld,
    defs: &[Definition],
    modes: &[(&str, TenantMode)],
    during: impl std::future::Future<Output = ()>,
) -> Plan {
    let scanner = daily_scanner_v2::build(&world.scanner_config(), &world.sdk).unwrap();
    let scheduler = scheduler_v2::build(&world.scheduler_config(), &world.sdk);
    let executor = executor_v2::build(&world.executor_config(), &world.sdk).unwrap();
    world.device("acme", "dev-1", DeviceState::Active).await;
    world.device("globex", "dev-1", DeviceState::Active).await;
    for (t, m) in modes {
        scanner
            .definitions
            .set_mode(
                &TenantId::parse(*t).unwrap(),
                *m,
                Timestamp::from_datetime(Utc::now()),
            )
            .await
            .unwrap();
    }
    let base = Utc::now();
    let mut keys = Vec::new();
    for d in defs {
        scanner.definitions.put(d).await.unwrap();
        let at = match &d.schedule.rule {
            schedule_core::model::Schedule::Once { at } => *at,
            other => panic!("{other:?}"),
        };
        let key = ScheduleKey::new(&d.tenant_id, at, &d.device_workflow_step_id);
        keys.push((key, at, d.tenant_id.to_string()));
    }
    scanner
        .store
        .record_scan_horizon(Timestamp::from_datetime(
            base - chrono::Duration::seconds(5),
        ))
        .await
        .unwrap();
    let metrics = Metrics::new("modes");
    let scan = daily_scanner_v2::handle(&scanner, &event("daily_scanner_v2.json"), None, &metrics)
        .await
        .unwrap();
    assert_eq!(scan.created, defs.len(), "{scan:?}");
    // The mode rows are no definitions, and no invalid ones.
    assert_eq!(
        (scan.definitions, scan.invalid_definitions),
        (defs.len(), 0)
    );

    let queue = SqsDispatchQueue::new(world.emu.sqs.clone(), &world.execution_url);
    let settled = Mutex::new(0usize);
    let want = defs.len();
    let started = Instant::now();
    let poller = || async {
        while started.elapsed() < Duration::from_secs(120) && *settled.lock().unwrap() < want {
            let received = queue.receive(10, Duration::ZERO).await.unwrap();
            if received.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
            let (response, handled) =
                executor_v2::handle(&executor, &queue, &sqs_event(&received), None, &metrics).await;
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
            *settled.lock().unwrap() += handled
                .iter()
                .filter(|(_, o)| matches!(o, Outcome::Executed { .. }))
                .count();
        }
    };
    let (schedule, ..) = tokio::join!(
        scheduler.run("modes-run-1", None, &metrics),
        poller(),
        poller(),
        during
    );
    let schedule = schedule.unwrap();
    assert_eq!(schedule.dispatched, want, "{schedule:?}");
    assert_eq!(*settled.lock().unwrap(), want, "every occurrence executed");
    Plan { keys }
}

async fn items(world: &AwsWorld, plan: &Plan) -> Vec<ScheduleItem> {
    let store = daily_scanner_v2::build(&world.scanner_config(), &world.sdk)
        .unwrap()
        .store;
    let mut out = Vec::new();
    for (key, _, _) in &plan.keys {
        out.push(store.get(key).await.unwrap().unwrap());
    }
    out
}

fn ids(
    messages: &[(String, std::collections::HashMap<String, String>)],
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (body, _) in messages {
        let t: TriggerMessage = serde_json::from_str(body).unwrap();
        *out.entry(t.execution_id.to_string()).or_default() += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tenant_in_shadow_sends_no_trigger_and_leaves_a_complete_shadow_record() {
    let Some(mut world) = AwsWorld::new(Duration::from_secs(30)).await else {
        return;
    };
    let shadow_url = world.add_shadow_queue().await;
    let base = Utc::now();
    let mut defs: Vec<_> = (0..8)
        .map(|i| once("acme", i, time(base, 20 + i as i64)))
        .collect();
    defs.extend((0..3).map(|i| once("globex", 10 + i, time(base, 21 + i as i64))));
    let plan = run(&world, &defs, &[("acme", TenantMode::Shadow)], async {}).await;

    let sent = ids(&world.drain_triggers().await);
    let shadow = ids(&world.drain_queue(&shadow_url).await);
    for item in items(&world, &plan).await {
        let id = item.execution_id().to_string();
        assert_eq!(item.status, Status::Executed, "{}", item.key);
        if item.tenant_id.as_str() == "acme" {
            assert_eq!(item.mode, Some(TenantMode::Shadow));
            let body: TriggerMessage =
                serde_json::from_str(item.shadow_trigger.as_deref().unwrap()).unwrap();
            assert_eq!(body.execution_id, ExecutionId::of(&item.key));
            assert_eq!(body.scheduled_time, item.scheduled_time);
            assert!(
                body.sent_at.parse::<DateTime<Utc>>().unwrap() >= item.scheduled_time.as_datetime()
            );
            assert_eq!(
                sent.get(&id),
                None,
                "{} reached the action trigger queue",
                item.key
            );
            assert_eq!(
                shadow.get(&id),
                Some(&1),
                "{} on the shadow queue",
                item.key
            );
        } else {
            assert_eq!(item.mode, Some(TenantMode::Active));
            assert_eq!(sent.get(&id), Some(&1));
            assert_eq!(shadow.get(&id), None);
        }
    }
    assert_eq!((sent.len(), shadow.len()), (3, 8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn switching_to_active_mid_flight_neither_drops_nor_doubles_an_occurrence() {
    let Some(mut world) = AwsWorld::new(Duration::from_secs(30)).await else {
        return;
    };
    // A short cache, so the switch lands within the test.
    world.env.insert("TENANT_MODE_TTL", "1s".to_owned());
    let shadow_url = world.add_shadow_queue().await;
    let base = Utc::now();
    let defs: Vec<_> = (0..16)
        .map(|i| once("acme", i, time(base, 20 + i as i64)))
        .collect();
    let switch_at = base + chrono::Duration::seconds(28);
    let modes = daily_scanner_v2::build(&world.scanner_config(), &world.sdk)
        .unwrap()
        .definitions;
    let switch = async {
        let wait = (switch_at - Utc::now()).to_std().unwrap_or_default();
        tokio::time::sleep(wait).await;
        modes
            .set_mode(
                &TenantId::parse("acme").unwrap(),
                TenantMode::Active,
                Timestamp::from_datetime(Utc::now()),
            )
            .await
            .unwrap();
    };
    let plan = run(&world, &defs, &[("acme", TenantMode::Shadow)], switch).await;

    let sent = ids(&world.drain_triggers().await);
    let shadow = ids(&world.drain_queue(&shadow_url).await);
    let mut shadowed = BTreeSet::new();
    let mut active = BTreeSet::new();
    for item in items(&world, &plan).await {
        let id = item.execution_id().to_string();
        assert_eq!(item.status, Status::Executed, "{}", item.key);
        match item.mode {
            Some(TenantMode::Shadow) => {
                assert!(item.shadow_trigger.is_some());
                assert_eq!(
                    (sent.get(&id), shadow.get(&id)),
                    (None, Some(&1)),
                    "{}",
                    item.key
                );
                shadowed.insert(item.scheduled_time);
            }
            Some(TenantMode::Active) => {
                assert!(item.shadow_trigger.is_none());
                assert_eq!(
                    (sent.get(&id), shadow.get(&id)),
                    (Some(&1), None),
                    "{}",
                    item.key
                );
                active.insert(item.scheduled_time);
            }
            other => panic!("{} executed under {other:?}", item.key),
        }
    }
    assert_eq!(
        shadowed.len() + active.len(),
        16,
        "every occurrence exactly once"
    );
    assert_eq!(sent.len() + shadow.len(), 16);
    assert!(
        !shadowed.is_empty() && !active.is_empty(),
        "shadow {shadowed:?} active {active:?}"
    );
    // The switch splits the day: everything shadowed is due before everything sent.
    assert!(
        shadowed.iter().max() < active.iter().min(),
        "shadow {shadowed:?} active {active:?}"
    );
}
