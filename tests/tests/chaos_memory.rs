//! Guarantees 1–3 under random faults: the whole flow on the twin while the store fails
//! calls at random — before they land, and after they landed (the caller sees an error
//! for a write that happened) — and the action trigger queue refuses sends at random.
//! Each case is one seed; a failing seed replays exactly.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use integration_tests::fakes::{ChaosStore, FlakySink};
use proptest::prelude::*;
use schedule_core::adapters::clock::ManualClock;
use schedule_core::adapters::memory::{InMemoryQueue, InMemoryScheduleStore, QueueSettings};
use schedule_core::app::scan::ScanRequest;
use schedule_core::embedded::{Embedded, EmbeddedSettings};
use schedule_core::model::{Definition, Status, Timestamp};
use schedule_core::ports::{Clock, DefinitionSource};
use serde_json::json;

fn start() -> DateTime<Utc> {
    "2026-11-26T08:00:00Z".parse().unwrap()
}

fn definitions() -> Vec<Definition> {
    let at = |s: i64| Timestamp::from_datetime(start() + chrono::Duration::seconds(s)).to_string();
    let mut defs: Vec<_> = (0..30)
        .map(|i| {
            json!({"tenant_id": "acme", "device_workflow_step_id": format!("once-{i}"), "workflow_id": "w", "device_id": format!("dev-{}", i % 5),
                   "schedule": {"type": "once", "at": at(45 + i * 23)}, "payload": {"i": i}})
        })
        .collect();
    defs.push(json!({"tenant_id": "acme", "device_workflow_step_id": "every-2m", "workflow_id": "w", "device_id": "dev-9",
                     "schedule": {"type": "rate", "every": "2m", "start": at(30), "end": at(14 * 60)}, "payload": {}}));
    defs.into_iter()
        .map(|v| Definition::from_json(&v).unwrap())
        .collect()
}

async fn run_case(seed: u64) {
    let clock = Arc::new(ManualClock::new(start()));
    let memory = Arc::new(InMemoryScheduleStore::new(4));
    let chaos = Arc::new(ChaosStore::new(memory.clone(), seed, 0.25, 0.1));
    let actions = Arc::new(InMemoryQueue::new(
        "actions",
        clock.clone(),
        QueueSettings::default(),
    ));
    // The sink refuses the first send of every step; FlakySink is per execution id.
    let sink = FlakySink::new(actions.clone(), 1);
    let settings = EmbeddedSettings {
        shards: 4,
        execution_visibility: Duration::from_secs(60),
        ..Default::default()
    };
    let world = Embedded::with_parts(
        clock.clone(),
        memory.clone(),
        chaos.clone(),
        actions,
        sink,
        settings,
    );
    for d in definitions() {
        world.definitions.put(&d).await.unwrap();
    }

    // The daily scan, retried (as EventBridge retries a failed invocation) until complete.
    let request = ScanRequest::daily(Timestamp::from_datetime(start()), &Default::default());
    let mut scans = 0;
    loop {
        scans += 1;
        match world.scan(&request).await {
            Ok(r) if r.is_complete() => break,
            _ if scans < 20 => continue,
            other => panic!("seed {seed}: scan never completed: {other:?}"),
        }
    }

    // 30 minutes of faults, then 30 without; the scheduler every 5 minutes, the executor
    // polling every half second.
    let tick = Duration::from_millis(500);
    let mut next_run = start();
    let mut run = 0;
    let mut kinds: HashMap<String, usize> = HashMap::new();
    let end = start() + chrono::Duration::minutes(60);
    while clock.now() < end {
        if clock.now() >= start() + chrono::Duration::minutes(30) {
            chaos.enabled.store(false, Ordering::Relaxed);
        }
        if clock.now() >= next_run {
            run += 1;
            let _ = world.schedule(&format!("run-{run}")).await;
            next_run += chrono::Duration::minutes(5);
        }
        if let Ok(outcomes) = world.execute_ready().await {
            for (_, o) in outcomes {
                let kind = format!("{o:?}");
                *kinds
                    .entry(kind.split([' ', '{']).next().unwrap_or("").to_owned())
                    .or_default() += 1;
            }
        }
        clock.advance(tick);
    }

    let items = memory.items();
    let triggers = world.triggers();
    let mut sent: HashMap<String, Vec<DateTime<Utc>>> = HashMap::new();
    for t in &triggers {
        sent.entry(t.execution_id.to_string())
            .or_default()
            .push(t.sent_at.parse().unwrap());
    }
    let mut duplicates = 0;
    for item in items
        .iter()
        .filter(|i| i.scheduled_time.as_datetime() < end - chrono::Duration::minutes(31))
    {
        let id = item.execution_id().to_string();
        let copies = sent.get(&id).map(Vec::len).unwrap_or(0);
        assert!(
            item.status.is_terminal(),
            "seed {seed}: {} left {} ({:?})",
            item.key,
            item.status,
            item.last_error
        );
        match item.status {
            Status::Executed => {
                assert!(
                    copies >= 1,
                    "seed {seed}: {} EXECUTED without a trigger",
                    item.key
                );
                duplicates += copies - 1;
            }
            Status::Failed => assert_eq!(copies, 0, "seed {seed}: {} FAILED but sent", item.key),
            other => panic!(
                "seed {seed}: {} ended {other} ({:?})",
                item.key, item.last_error
            ),
        }
        for at in sent.get(&id).into_iter().flatten() {
            assert!(
                *at >= item.scheduled_time.as_datetime(),
                "seed {seed}: {} sent early at {at}",
                item.key
            );
        }
    }
    if std::env::var("CHAOS_TRACE").is_ok() {
        let by = items
            .iter()
            .fold(HashMap::new(), |mut m: HashMap<Status, usize>, i| {
                *m.entry(i.status).or_default() += 1;
                m
            });
        eprintln!(
            "seed {seed}: injected before {} after {}, duplicates {duplicates}, statuses {by:?}, outcomes {kinds:?}",
            chaos.injected.before.load(Ordering::Relaxed),
            chaos.injected.after.load(Ordering::Relaxed)
        );
    }
    // A duplicate needs a write that landed but was reported lost.
    let after = chaos.injected.after.load(Ordering::Relaxed) as usize;
    assert!(
        duplicates <= after,
        "seed {seed}: {duplicates} duplicate triggers from {after} lost acknowledgements"
    );
    let failed = items.iter().filter(|i| i.status == Status::Failed).count();
    assert_eq!(
        world.execution_dlq.len(),
        failed,
        "seed {seed}: every FAILED occurrence has its message in the DLQ"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn every_occurrence_ends_terminal_once_and_never_early_under_faults(seed: u64) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(run_case(seed));
    }
}
