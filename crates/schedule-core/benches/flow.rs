//! Use-case CPU time per step on the embedded twin: the scanner, the scheduler and the
//! executor for N one-time steps due in one scheduler window, end to end, without I/O —
//! what the code itself costs, apart from the network.
//! `cargo bench -p schedule-core --bench flow`.

// A benchmark is a test harness: a fixture that fails to build should stop it loudly.
#![allow(clippy::unwrap_used, clippy::panic)]

use chrono::{DateTime, Utc};
use divan::Bencher;
use divan::counter::ItemsCount;
use schedule_core::app::scan::ScanRequest;
use schedule_core::embedded::{Embedded, EmbeddedSettings};
use schedule_core::model::{Definition, Timestamp};
use schedule_core::ports::{Clock, DefinitionSource};
use serde_json::json;

fn main() {
    divan::main();
}

fn start() -> DateTime<Utc> {
    "2026-11-27T07:00:00Z".parse().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// A world holding `n` one-time steps on 50 devices, due over the minute after 08:00.
fn world(rt: &tokio::runtime::Runtime, n: usize) -> Embedded {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    rt.block_on(async {
        for i in 0..n {
            let at = start() + chrono::Duration::seconds(3600 + (i % 60) as i64);
            let def = Definition::from_json(&json!({
                "tenant_id": format!("tenant-{}", i % 10), "device_workflow_step_id": format!("s{i}"),
                "workflow_id": "w1", "device_id": format!("dev-{}", i % 50),
                "schedule": {"type": "once", "at": Timestamp::from_datetime(at).to_string()},
                "payload": {"action": "open_valve", "duration_s": 600}}))
            .unwrap();
            world.definitions.put(&def).await.unwrap();
        }
    });
    world
}

/// Scan, schedule and execute: every step ends EXECUTED.
async fn run(world: &Embedded, n: usize) {
    let now = Timestamp::from_datetime(world.clock.now());
    let scanned = world
        .scan(&ScanRequest::daily(now, &Default::default()))
        .await
        .unwrap();
    assert_eq!(scanned.created, n);
    world
        .clock
        .advance_to(start() + chrono::Duration::seconds(3600 - 120));
    world.schedule("bench").await.unwrap();
    world
        .clock
        .advance_to(start() + chrono::Duration::seconds(3600 + 60));
    let outcomes = world.execute_ready().await.unwrap();
    assert_eq!(outcomes.len(), n);
    assert_eq!(world.triggers().len(), n);
}

#[divan::bench(args = [100, 1000])]
fn scan_schedule_execute(bencher: Bencher, n: usize) {
    let rt = runtime();
    bencher
        .counter(ItemsCount::new(n))
        .with_inputs(|| world(&rt, n))
        .bench_local_values(|w| {
            rt.block_on(run(&w, n));
            w
        });
}

/// The three use cases timed apart, per step.
#[divan::bench(args = [1000])]
fn scan_only(bencher: Bencher, n: usize) {
    let rt = runtime();
    bencher
        .counter(ItemsCount::new(n))
        .with_inputs(|| world(&rt, n))
        .bench_local_values(|w| {
            let now = Timestamp::from_datetime(w.clock.now());
            rt.block_on(w.scan(&ScanRequest::daily(now, &Default::default())))
                .unwrap();
            w
        });
}

#[divan::bench(args = [1000])]
fn schedule_only(bencher: Bencher, n: usize) {
    let rt = runtime();
    bencher
        .counter(ItemsCount::new(n))
        .with_inputs(|| {
            let w = world(&rt, n);
            let now = Timestamp::from_datetime(w.clock.now());
            rt.block_on(w.scan(&ScanRequest::daily(now, &Default::default())))
                .unwrap();
            w.clock
                .advance_to(start() + chrono::Duration::seconds(3600 - 120));
            w
        })
        .bench_local_values(|w| {
            let r = rt.block_on(w.schedule("bench")).unwrap();
            (w, r)
        });
}

#[divan::bench(args = [1000])]
fn execute_only(bencher: Bencher, n: usize) {
    let rt = runtime();
    bencher
        .counter(ItemsCount::new(n))
        .with_inputs(|| {
            let w = world(&rt, n);
            let now = Timestamp::from_datetime(w.clock.now());
            rt.block_on(w.scan(&ScanRequest::daily(now, &Default::default())))
                .unwrap();
            w.clock
                .advance_to(start() + chrono::Duration::seconds(3600 - 120));
            rt.block_on(w.schedule("bench")).unwrap();
            w.clock
                .advance_to(start() + chrono::Duration::seconds(3600 + 60));
            w
        })
        .bench_local_values(|w| {
            let r = rt.block_on(w.execute_ready()).unwrap();
            (w, r)
        });
}
