//! The scanner at scale: `cargo bench -p schedule-core --bench scan`. Prints figures; asserts
//! nothing about time.
//!
//! - `scan_twin`: one inline run over 100k and 1M (`SCAN_TWIN_SIZES`) definitions in the embedded twin, into a
//!   store that only counts. divan's allocation profiler reports `max alloc`: the most
//!   bytes the run held at once (the table itself is built outside the measured run), and
//!   the items counter the definitions per second.
//! - `fan_out_simulated`: a daily run over `SIM_DEFINITIONS` (10M) definitions generated
//!   on the fly per segment (never stored), fanned out to `SIM_SEGMENTS` segment tasks
//!   worked by `SIM_WORKERS` concurrent workers with a `SIM_TIMEOUT_S` (900 s) deadline each,
//!   on tokio's paused clock: every DynamoDB and SQS call costs a modelled latency, and the
//!   scanner's own CPU a modelled time per definition (calibrated here, scaled to a 512 MB
//!   Lambda's share of a vCPU; `SIM_CPU_US` gives it instead). Prints the simulated
//!   duration, tasks and continuations.

// A benchmark is a harness: a broken fixture should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use divan::Bencher;
use divan::counter::ItemsCount;
use schedule_core::adapters::clock::VirtualClock;
use schedule_core::adapters::http_validator::AllowAll;
use schedule_core::adapters::memory::{InMemoryDefinitionSource, InMemoryQueue, QueueSettings};
use schedule_core::app::scan::{
    ScanReport, ScanRequest, ScanSettings, Scanner, SegmentTask, SegmentWork,
};
use schedule_core::error::StoreError;
use schedule_core::metrics::Metrics;
use schedule_core::model::{
    Definition, ScheduleItem, ScheduleKey, Status, StatusChange, StatusShard, StepId, TenantId,
    Timestamp,
};
use schedule_core::ports::{
    Clock, Cursor, DefinitionKey, DefinitionSource, DispatchQueue, DueEntry, Existing,
    FetchedDefinitions, Materialized, Page, ScanRuns, ScannedDefinition, ScheduleStore, Sweep,
};
use serde_json::{Value, json};

#[global_allocator]
static ALLOC: divan::AllocProfiler = divan::AllocProfiler::system();

fn main() {
    divan::main();
}

fn start() -> DateTime<Utc> {
    "2026-11-26T00:00:00Z".parse().unwrap()
}

/// Definition `i` of a realistic mix: 70 % a daily cron in a tenant's zone, 20 % once
/// today, 10 % every 4 hours; 1,000 tenants, a small payload.
fn definition_json(i: u64) -> Value {
    let schedule = match i % 10 {
        0 => json!({"type": "rate", "every": "4h", "start": "2026-11-01T00:00:00Z"}),
        1 | 2 => {
            json!({"type": "once", "at": format!("2026-11-26T{:02}:{:02}:00Z", i % 24, i % 60)})
        }
        _ => json!({"type": "cron", "expression": format!("{} {} * * *", i % 60, (i / 7) % 24),
                    "timezone": if i.is_multiple_of(3) { "Asia/Ho_Chi_Minh" } else { "Europe/Berlin" }}),
    };
    json!({
        "tenant_id": format!("tenant-{:04}", i % 1000),
        "device_workflow_step_id": format!("step-{i:09}"),
        "workflow_id": format!("wf-{}", i % 5000),
        "device_id": format!("dev-{:07}", i / 3),
        "enabled": true, "version": 1,
        "schedule": schedule,
        "payload": {"action": "open_valve", "duration_s": 600, "zone": i % 12}
    })
}

fn definition(i: u64) -> Definition {
    Definition::from_json(&definition_json(i)).unwrap()
}

fn settings(segments: u32) -> ScanSettings {
    ScanSettings {
        segments,
        ..ScanSettings::default()
    }
}

/// A schedule store that keeps nothing: it counts writes and batch reads, answers that
/// nothing exists yet (a first run), and may make each call cost a modelled latency on
/// the (paused) tokio clock.
#[derive(Debug, Default)]
struct CountingStore {
    writes: AtomicU64,
    batch_gets: AtomicU64,
    write_latency: Duration,
    batch_get_latency: Duration,
    runs: Mutex<HashMap<String, BTreeSet<u32>>>,
    horizon: Mutex<Option<Timestamp>>,
}

impl ScheduleStore for CountingStore {
    fn status_shards(&self) -> u16 {
        16
    }
    async fn create_if_absent(&self, _: &ScheduleItem) -> Result<bool, StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }
    async fn materialize(&self, _: &ScheduleItem) -> Result<Materialized, StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        if !self.write_latency.is_zero() {
            tokio::time::sleep(self.write_latency).await;
        }
        Ok(Materialized::Created)
    }
    async fn cancel(&self, _: &ScheduleKey, _: u64, _: &str) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn scan_horizon(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(*self.horizon.lock().unwrap())
    }
    async fn record_scan_horizon(&self, covered_to: Timestamp) -> Result<bool, StoreError> {
        *self.horizon.lock().unwrap() = Some(covered_to);
        Ok(true)
    }
    async fn get(&self, _: &ScheduleKey) -> Result<Option<ScheduleItem>, StoreError> {
        Ok(None)
    }
    async fn change_status(&self, _: &ScheduleKey, _: &StatusChange) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn try_lease(
        &self,
        _: &ScheduleKey,
        _: Status,
        _: &str,
        _: Timestamp,
        _: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn query_due_page(
        &self,
        _: &StatusShard,
        _: Timestamp,
        _: u32,
        _: Option<&Cursor>,
    ) -> Result<Page<DueEntry>, StoreError> {
        Ok(Page {
            items: Vec::new(),
            next: None,
        })
    }
    async fn max_status_shards(&self) -> Result<Option<u16>, StoreError> {
        Ok(None)
    }
    async fn record_status_shards(&self, _: u16) -> Result<bool, StoreError> {
        Ok(true)
    }
    async fn sweep_queued(
        &self,
        _: &ScheduleKey,
        _: Option<Timestamp>,
        _: &Sweep,
        _: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn queue_unleased(
        &self,
        _: &ScheduleKey,
        _: &str,
        _: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn unqueue(
        &self,
        _: &ScheduleKey,
        _: Timestamp,
        _: &str,
        _: Timestamp,
    ) -> Result<bool, StoreError> {
        Ok(false)
    }
    async fn existing(
        &self,
        keys: &[ScheduleKey],
    ) -> Result<HashMap<ScheduleKey, Existing>, StoreError> {
        // 100 keys per BatchGetItem, 4 requests in flight (as the DynamoDB adapter does).
        let batches = keys.len().div_ceil(100) as u64;
        self.batch_gets.fetch_add(batches, Ordering::Relaxed);
        if !self.batch_get_latency.is_zero() {
            tokio::time::sleep(self.batch_get_latency * batches.div_ceil(4) as u32).await;
        }
        Ok(HashMap::new())
    }
}

impl ScanRuns for CountingStore {
    async fn segment_done(
        &self,
        run_id: &str,
        segment: u32,
        _: u32,
        _: Timestamp,
    ) -> Result<u32, StoreError> {
        let mut runs = self.runs.lock().unwrap();
        let done = runs.entry(run_id.to_owned()).or_default();
        done.insert(segment);
        Ok(done.len() as u32)
    }
}

fn twin(n: u64) -> Arc<InMemoryDefinitionSource> {
    let definitions = Arc::new(InMemoryDefinitionSource::new());
    for i in 0..n {
        let def = definition(i);
        let (pk, sk) = def.key();
        definitions.put_raw(&pk, &sk, def.to_json());
    }
    definitions
}

fn print_report(what: &str, report: &ScanReport, took: Duration) {
    eprintln!(
        "{what}: {} definitions, {} occurrences, {} writes, {} pages in {:.1} s = {:.0} definitions/s, {:.0} occurrences/s",
        report.definitions,
        report.occurrences,
        report.writes,
        report.pages,
        took.as_secs_f64(),
        report.definitions as f64 / took.as_secs_f64(),
        report.occurrences as f64 / took.as_secs_f64()
    );
}

/// Whether this is a measuring run (`cargo bench`), not the once-through check that
/// `cargo test --benches` makes: the check runs the same code on small sizes.
fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Table sizes of `scan_twin`: `SCAN_TWIN_SIZES` (comma separated), 100k and 1M by default
/// (2,000 in the test run).
fn twin_sizes() -> Vec<u64> {
    std::env::var("SCAN_TWIN_SIZES")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| {
            if measuring() {
                vec![100_000, 1_000_000]
            } else {
                vec![2_000]
            }
        })
}

/// One inline run over `n` definitions of the twin (4 segments, read in turn).
#[divan::bench(args = twin_sizes(), sample_count = 1, sample_size = 1)]
fn scan_twin(bencher: Bencher, n: u64) {
    bencher
        .counter(ItemsCount::new(n))
        .with_inputs(|| twin(n))
        .bench_local_values(|definitions| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap();
            let scanner = Scanner {
                definitions,
                store: CountingStore::default(),
                validator: AllowAll,
                clock: schedule_core::adapters::clock::SystemClock,
                settings: settings(4),
                modes: schedule_core::mode_cache::ModeRouting::default(),
            };
            let request = ScanRequest::daily(Timestamp::from_datetime(start()), &scanner.settings);
            let began = Instant::now();
            let report = runtime
                .block_on(scanner.run(&request, None, &Metrics::new("bench")))
                .unwrap();
            print_report(&format!("twin {n}"), &report, began.elapsed());
            assert_eq!(report.definitions as u64, n);
            assert_eq!(report.writes, report.occurrences);
            report
        });
}

/// Definitions made on the fly for one segment (never stored): definition `i` belongs to
/// segment `i % S`; a page is `page` definitions and costs `latency` plus the modelled CPU
/// of scanning them.
#[derive(Debug)]
struct Synthetic {
    total: u64,
    page: u64,
    latency: Duration,
    cpu_per_definition: Duration,
    pages: AtomicU64,
}

impl DefinitionSource for Synthetic {
    async fn scan_page(
        &self,
        segment: u32,
        total_segments: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<ScannedDefinition>, StoreError> {
        let s = u64::from(total_segments);
        let first: u64 = cursor.map_or(0, |c| c.0.parse().unwrap());
        let in_segment = (self.total + s - 1 - u64::from(segment)) / s;
        let last = (first + self.page).min(in_segment);
        let items = (first..last)
            .map(|k| Ok(definition(u64::from(segment) + k * s)))
            .collect::<Vec<_>>();
        self.pages.fetch_add(1, Ordering::Relaxed);
        let cost = self.latency + self.cpu_per_definition * items.len() as u32;
        if !cost.is_zero() {
            tokio::time::sleep(cost).await;
        }
        Ok(Page {
            items,
            next: (last < in_segment).then(|| Cursor(last.to_string())),
        })
    }
    async fn get(&self, _: &TenantId, _: &StepId) -> Result<Option<ScannedDefinition>, StoreError> {
        Ok(None)
    }
    async fn put(&self, _: &Definition) -> Result<(), StoreError> {
        Ok(())
    }
    async fn get_many(&self, _: &[DefinitionKey]) -> Result<FetchedDefinitions, StoreError> {
        Ok(HashMap::new())
    }
}

/// A size from the environment; unset, `default` when measuring and `check` in the test run.
fn env(name: &str, default: u64) -> u64 {
    sized(name, default, default)
}

fn sized(name: &str, default: u64, check: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if measuring() { default } else { check })
}

/// Real time per definition of the whole path (generate, expand, existing-read, write) on
/// this machine, with no modelled latency: the CPU a worker spends.
fn calibrate() -> Duration {
    let n = if measuring() { 50_000 } else { 2_000 };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let scanner = Scanner {
        definitions: Synthetic {
            total: n,
            page: 1000,
            latency: Duration::ZERO,
            cpu_per_definition: Duration::ZERO,
            pages: AtomicU64::new(0),
        },
        store: CountingStore::default(),
        validator: AllowAll,
        clock: schedule_core::adapters::clock::SystemClock,
        settings: settings(1),
        modes: schedule_core::mode_cache::ModeRouting::default(),
    };
    let request = ScanRequest::daily(Timestamp::from_datetime(start()), &scanner.settings);
    let began = Instant::now();
    let report = runtime
        .block_on(scanner.run(&request, None, &Metrics::new("bench")))
        .unwrap();
    let took = began.elapsed();
    print_report("calibration (synthetic, no latency)", &report, took);
    took / n as u32
}

/// A 10M-definition daily run fanned out over S segment tasks and C workers, on tokio's
/// paused clock with modelled latencies.
#[divan::bench(sample_count = 1, sample_size = 1)]
fn fan_out_simulated() {
    let total = sized("SIM_DEFINITIONS", 10_000_000, 20_000);
    let segments = sized("SIM_SEGMENTS", 32, 4) as u32;
    let workers = sized("SIM_WORKERS", 16, 2) as usize;
    let timeout = Duration::from_secs(env("SIM_TIMEOUT_S", 900));
    let lambda_memory_mb = env("SIM_LAMBDA_MB", 512);
    // `SIM_CPU_US`: the CPU per definition measured elsewhere (e.g. by `scan_twin` on an idle
    // machine); unset, it is measured here first.
    let here = std::env::var("SIM_CPU_US")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .map_or_else(calibrate, |us| Duration::from_secs_f64(us / 1e6));
    // Lambda gives a function one vCPU at 1,769 MB, proportionally less below.
    let cpu = here * 1769 / lambda_memory_mb as u32;
    let (scan_ms, batch_get_ms, write_ms) = (50, 10, 6);
    eprintln!(
        "model: {total} definitions, {segments} segments, {workers} workers, {} s timeout; CPU {:.1} µs/definition here, {:.1} µs on a {lambda_memory_mb} MB Lambda; Scan page of 1,000 {scan_ms} ms, BatchGetItem of 100 {batch_get_ms} ms (4 in flight), UpdateItem {write_ms} ms ({} in flight)",
        timeout.as_secs(),
        here.as_secs_f64() * 1e6,
        cpu.as_secs_f64() * 1e6,
        ScanSettings::default().concurrency,
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let real = Instant::now();
    runtime.block_on(async {
        let clock = VirtualClock::new(start());
        let scanner = Arc::new(Scanner {
            definitions: Synthetic {
                total,
                page: 1000,
                latency: Duration::from_millis(scan_ms),
                cpu_per_definition: cpu,
                pages: AtomicU64::new(0),
            },
            store: CountingStore {
                write_latency: Duration::from_millis(write_ms),
                batch_get_latency: Duration::from_millis(batch_get_ms),
                ..CountingStore::default()
            },
            validator: AllowAll,
            clock,
            settings: ScanSettings {
                segments,
                ..ScanSettings::default()
            },
            modes: schedule_core::mode_cache::ModeRouting::default(),
        });
        let queue = Arc::new(InMemoryQueue::new(
            "scan-segment",
            Arc::new(clock),
            QueueSettings {
                visibility_timeout: Duration::from_secs(5400),
                redrive: None,
                fifo: false,
            },
        ));
        let request = ScanRequest::daily(Timestamp::from_datetime(clock.now()), &scanner.settings);
        let fan_out = scanner.fan_out(&request, &queue, None).await.unwrap();
        let invocations = Arc::new(AtomicU64::new(0));
        let continuations = Arc::new(AtomicU64::new(0));
        let occurrences = Arc::new(AtomicU64::new(0));
        let definitions = Arc::new(AtomicU64::new(0));
        let longest = Arc::new(Mutex::new(Duration::ZERO));
        let finished_at = Arc::new(Mutex::new(clock.now()));
        let worker = |_: usize| {
            let (scanner, queue) = (scanner.clone(), queue.clone());
            let (invocations, continuations, occurrences, definitions) = (
                invocations.clone(),
                continuations.clone(),
                occurrences.clone(),
                definitions.clone(),
            );
            let (longest, finished_at) = (longest.clone(), finished_at.clone());
            async move {
                let metrics = Metrics::new("bench");
                loop {
                    let received = queue.receive(1, Duration::ZERO).await.unwrap();
                    let Some(message) = received.first() else {
                        // The poller looks again a little later, while others still work.
                        if invocations.load(Ordering::SeqCst) > 0 && queue.is_empty() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    invocations.fetch_add(1, Ordering::SeqCst);
                    let began = scanner.clock.now();
                    let task = SegmentTask::parse(&message.body).unwrap();
                    let deadline = began + chrono::Duration::from_std(timeout).unwrap();
                    let work = scanner
                        .work_segment(&task, &*queue, Some(deadline), &metrics)
                        .await
                        .unwrap();
                    let report = match &work {
                        SegmentWork::Continued { report, .. } => {
                            continuations.fetch_add(1, Ordering::SeqCst);
                            report
                        }
                        SegmentWork::Done { report, .. } => report,
                    };
                    occurrences.fetch_add(report.occurrences as u64, Ordering::SeqCst);
                    definitions.fetch_add(report.definitions as u64, Ordering::SeqCst);
                    queue.delete(&message.receipt_handle).await.unwrap();
                    let took = (scanner.clock.now() - began).to_std().unwrap();
                    let mut l = longest.lock().unwrap();
                    *l = (*l).max(took);
                    let mut f = finished_at.lock().unwrap();
                    *f = (*f).max(scanner.clock.now());
                }
            }
        };
        futures::future::join_all((0..workers).map(worker)).await;
        let simulated = (*finished_at.lock().unwrap() - clock.epoch()).to_std().unwrap();
        let horizon = scanner.store.scan_horizon().await.unwrap();
        eprintln!(
            "fan-out {}: {} segment tasks, {} invocations, {} continuations; {} definitions, {} occurrences, {} writes, {} BatchGetItem, {} pages; longest invocation {:.0} s; simulated duration {:.0} s ({:.1} min); horizon recorded: {}; real time {:.0} s",
            fan_out.run_id,
            fan_out.segments,
            invocations.load(Ordering::SeqCst),
            continuations.load(Ordering::SeqCst),
            definitions.load(Ordering::SeqCst),
            occurrences.load(Ordering::SeqCst),
            scanner.store.writes.load(Ordering::SeqCst),
            scanner.store.batch_gets.load(Ordering::SeqCst),
            scanner.definitions.pages.load(Ordering::SeqCst),
            longest.lock().unwrap().as_secs_f64(),
            simulated.as_secs_f64(),
            simulated.as_secs_f64() / 60.0,
            horizon.map_or("no".to_owned(), |h| h.to_string()),
            real.elapsed().as_secs_f64(),
        );
        assert_eq!(definitions.load(Ordering::SeqCst), total);
        assert!(horizon.is_some());
    });
}
