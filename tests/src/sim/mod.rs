//! The deterministic simulation: the real scanner, scheduler, executor (through its
//! Lambda edge) and definition sync on the in-memory twin, under a virtual clock on a
//! paused tokio runtime, for a simulated day or more, with faults drawn from one seed.
//! After the faults stop and a drain lets everything settle, the guarantees of DESIGN.md
//! section 4 are checked; a violation names the seed and tells the occurrence's story.
//!
//! `SIM_SEEDS` (count, default 20), `SIM_SEED_BASE` (first seed, default 1), `SIM_SEED`
//! (exactly one seed), `SIM_OCCURRENCES` (occurrences per seed, default 300), `SIM_DAYS`
//! (default 2), `SIM_FAULTS` (`all`, `none`, a comma list, or `all,-name`; default `all`),
//! `SIM_THREADS` (seeds run at once, default 2).

pub mod chaos;
pub mod esm;
pub mod journal;
pub mod rng;
pub mod scale;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use schedule_core::adapters::clock::VirtualClock;
use schedule_core::adapters::memory::{InMemoryDefinitionSource, InMemoryScheduleStore, IndexLag};
use schedule_core::app::ExecutionMessage;
use schedule_core::app::execute::{ExecuteSettings, Executor};
use schedule_core::app::scan::{ScanSettings, Scanner};
use schedule_core::app::schedule::{ScheduleSettings, Scheduler};
use schedule_core::app::sync::{ChangeKind, DefinitionChange, DefinitionSync, Image, SyncSettings};
use schedule_core::limits::{EXECUTION_MAX_RECEIVE_COUNT, EXECUTION_VISIBILITY_TIMEOUT};
use schedule_core::metrics::{Metric, Metrics};
use schedule_core::model::{Definition, ScheduleItem, ScheduleKey, Status, Timestamp};
use schedule_core::ports::{Clock, DefinitionSource, ScheduleStore as _};
use schedule_core::recurrence::{Window, occurrences};
use serde_json::json;

pub use chaos::Fault;
use chaos::{
    Chaos, Ended, FaultyDefinitions, FaultyQueue, FaultyStore, Mark, SimRegistry, SimSink, Span,
    Tally,
};
use esm::SimQueue;
use journal::Journal;
use rng::Rng;

/// The size and the faults of a simulation.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seeds: Vec<u64>,
    pub occurrences: usize,
    pub days: u32,
    pub faults: BTreeSet<Fault>,
    pub threads: usize,
    /// The execution queue's visibility timeout (the template's, 180 s, by default).
    pub visibility: Duration,
}

fn env_num(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|e| format!("{name}={v:?}: not a whole number ({e})")),
        Err(_) => Ok(default),
    }
}

impl SimConfig {
    pub fn from_env() -> Result<Self, String> {
        let seeds = match std::env::var("SIM_SEED") {
            Ok(one) => vec![
                one.trim()
                    .parse()
                    .map_err(|e| format!("SIM_SEED={one:?}: not a whole number ({e})"))?,
            ],
            Err(_) => {
                let base = env_num("SIM_SEED_BASE", 1)?;
                (base..base + env_num("SIM_SEEDS", 20)?).collect()
            }
        };
        Ok(Self {
            seeds,
            occurrences: env_num("SIM_OCCURRENCES", 300)? as usize,
            days: env_num("SIM_DAYS", 2)?.max(1) as u32,
            faults: Fault::set_from(
                &std::env::var("SIM_FAULTS").unwrap_or_else(|_| "all".to_owned()),
            )?,
            threads: env_num("SIM_THREADS", 2)?.max(1) as usize,
            visibility: Duration::from_secs(env_num(
                "SIM_VISIBILITY_SECS",
                EXECUTION_VISIBILITY_TIMEOUT.as_secs(),
            )?),
        })
    }
}

/// One broken guarantee.
#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

/// What one seed did.
#[derive(Debug, Clone, Default)]
pub struct SeedReport {
    pub seed: u64,
    /// Occurrences the definitions yield inside the horizon.
    pub occurrences: usize,
    pub items: usize,
    pub triggers: usize,
    pub by_status: BTreeMap<String, usize>,
    pub faults: BTreeMap<&'static str, u64>,
    pub crash_window_duplicates: usize,
    pub violations: Vec<Violation>,
    /// A fingerprint of the end state: the same seed must give the same one.
    pub digest: u64,
}

/// How long after the last day the flow runs on without faults so everything settles:
/// the last scan's overlap (1 h), the misfire grace (1 h), three receives of a message.
const DRAIN: Duration = Duration::from_secs(3 * 3600 + 1800);
/// An occurrence this close to a definition edit may follow either version.
const EDIT_BEFORE: chrono::Duration = chrono::Duration::minutes(10);
const EDIT_AFTER: chrono::Duration = chrono::Duration::minutes(20);
/// SKIPPED is judged at the due time; the scheduler may judge it this much before.
const SKIP_EARLY: chrono::Duration = chrono::Duration::minutes(10);
const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(2);

/// Starting days: ordinary ones, and the weekends Europe and North America change clocks.
const START_DAYS: [&str; 4] = [
    "2026-11-26T00:00:00Z",
    "2026-03-28T00:00:00Z",
    "2026-10-24T00:00:00Z",
    "2026-11-01T00:00:00Z",
];
const ZONES: [&str; 4] = [
    "UTC",
    "Europe/Berlin",
    "Asia/Ho_Chi_Minh",
    "America/New_York",
];
const TENANTS: [&str; 3] = ["acme", "globex", "initech"];
const DEVICES_PER_TENANT: u64 = 6;

type SimScanner = Scanner<FaultyDefinitions, FaultyStore, Arc<SimRegistry>, VirtualClock>;
type SimScheduler = Scheduler<FaultyStore, FaultyQueue, FaultyDefinitions, VirtualClock>;
type SimExecutor = Executor<FaultyStore, SimSink, Arc<SimRegistry>, VirtualClock>;
type SimSync = DefinitionSync<FaultyStore, FaultyDefinitions, VirtualClock>;

/// Each definition's versions, from the time they were written (`None`: deleted).
type History = BTreeMap<(String, String), Vec<(DateTime<Utc>, Option<Definition>)>>;

struct World {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    clock: VirtualClock,
    chaos: Arc<Chaos>,
    memory: Arc<InMemoryScheduleStore>,
    definitions: Arc<InMemoryDefinitionSource>,
    queue: Arc<SimQueue>,
    registry: Arc<SimRegistry>,
    sink: SimSink,
    marks: Arc<Mutex<Vec<Mark>>>,
    scanner: SimScanner,
    scheduler: SimScheduler,
    executor: SimExecutor,
    sync: SimSync,
    tally: Tally,
    /// Invocations whose metrics disagree with the outcomes their writes recorded.
    metric_errors: Mutex<Vec<Violation>>,
    journal: Journal,
    history: Mutex<History>,
    /// When each invocation ended (returned, crashed or timed out).
    ended: Mutex<BTreeMap<u64, DateTime<Utc>>>,
    /// Occurrences whose message was redriven from the DLQ.
    redriven: Mutex<BTreeSet<ScheduleKey>>,
    /// Executor invocations that did not return (crashed or timed out): a trigger one of
    /// them sent may have no record, the crash window between send and status write.
    cut: Mutex<BTreeSet<u64>>,
    stop: AtomicBool,
}

/// Runs one seed on a runtime of its own whose time is paused.
pub fn run_seed(seed: u64, config: &SimConfig) -> SeedReport {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    // A local set: the use cases' futures are not all provably `Send`, and one thread is
    // what makes the run exact anyway.
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, simulate(seed, config))
}

/// Every seed of `config`, `config.threads` at a time; reports in seed order.
pub fn run_all(config: &SimConfig) -> Vec<SeedReport> {
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..config.threads.min(config.seeds.len()).max(1) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(seed) = config.seeds.get(i) else {
                        return;
                    };
                    let report = run_seed(*seed, config);
                    out.lock().unwrap().push(report);
                }
            });
        }
    });
    let mut reports = out.into_inner().unwrap();
    reports.sort_by_key(|r| r.seed);
    reports
}

fn spans(
    rng: &mut Rng,
    n: u64,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    min: Duration,
    max: Duration,
) -> Vec<Span> {
    let length = (to - from).num_seconds().max(1) as u64;
    (0..n)
        .map(|_| {
            let a = from + chrono::Duration::seconds(rng.below(length) as i64);
            let len = rng.between(min.as_secs(), max.as_secs());
            (a, a + chrono::Duration::seconds(len as i64))
        })
        .collect()
}

fn definition(rng: &mut Rng, n: usize, start: DateTime<Utc>, days: u32) -> Definition {
    let tenant = TENANTS[rng.below(TENANTS.len() as u64) as usize];
    let device = format!("dev-{}", rng.below(DEVICES_PER_TENANT));
    let zone = ZONES[rng.below(ZONES.len() as u64) as usize];
    let t0 = Timestamp::from_datetime(start);
    let mut schedule = match rng.below(4) {
        0 => {
            let every = ["15m", "20m", "30m", "45m", "1h", "2h", "3h"][rng.below(7) as usize];
            let begin = t0.minus(Duration::from_secs(rng.below(7200)));
            json!({"type": "rate", "every": every, "start": begin.to_string()})
        }
        1 => {
            json!({"type": "cron", "expression": format!("{} {} * * *", rng.below(60), rng.below(24)), "timezone": zone})
        }
        2 => {
            json!({"type": "cron", "expression": format!("{}/{} * * * *", rng.below(10), [10, 15, 20, 30][rng.below(4) as usize]), "timezone": zone})
        }
        _ => {
            let at = t0.plus(Duration::from_secs(rng.below(u64::from(days) * 86_400)));
            json!({"type": "once", "at": at.to_string()})
        }
    };
    if rng.chance(0.2) {
        schedule["misfire_grace"] = json!(["5m", "10m", "30m"][rng.below(3) as usize]);
    }
    Definition::from_json(&json!({
        "tenant_id": tenant, "device_workflow_step_id": format!("step-{n}"), "workflow_id": format!("wf-{}", n % 7),
        "device_id": device, "enabled": true, "version": 1, "schedule": schedule,
        "payload": {"action": "open_valve", "n": n, "big": 12345678901234567890u64}
    }))
    .unwrap()
}

fn yields(def: &Definition, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<Timestamp> {
    occurrences(
        &def.schedule,
        Window::new(Timestamp::from_datetime(from), Timestamp::from_datetime(to)),
    )
    .unwrap_or_default()
}

async fn simulate(seed: u64, config: &SimConfig) -> SeedReport {
    let mut rng = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ 0x51_u64);
    let start: DateTime<Utc> = START_DAYS[(seed % START_DAYS.len() as u64) as usize]
        .parse()
        .unwrap();
    let end = start + chrono::Duration::days(i64::from(config.days));
    let clock = VirtualClock::new(start);

    // Definitions until they yield the occurrences asked for.
    let mut defs = Vec::new();
    let mut total = 0;
    let mut def_rng = rng.fork();
    while total < config.occurrences {
        let def = definition(&mut def_rng, defs.len(), start, config.days);
        let n = yields(&def, start, end).len();
        if n == 0 || (total > 0 && total + n > config.occurrences * 11 / 10) {
            if defs.len() > config.occurrences * 4 + 10 {
                break;
            }
            continue;
        }
        total += n;
        defs.push(def);
    }

    // When things go wrong.
    let mut chaos = Chaos::new(config.faults.clone(), rng.fork());
    let mut span_rng = rng.fork();
    chaos.sink_down = spans(
        &mut span_rng,
        2,
        start,
        end,
        Duration::from_secs(120),
        Duration::from_secs(1200),
    );
    chaos.registry_down = spans(
        &mut span_rng,
        2,
        start,
        end,
        Duration::from_secs(300),
        Duration::from_secs(3600),
    );
    chaos.registry_401 = spans(
        &mut span_rng,
        1,
        start,
        end,
        Duration::from_secs(600),
        Duration::from_secs(7200),
    );
    chaos.timing_out = spans(
        &mut span_rng,
        u64::from(config.days),
        start,
        end,
        Duration::from_secs(300),
        Duration::from_secs(1800),
    );
    chaos.throttled = spans(
        &mut span_rng,
        2 * u64::from(config.days),
        start,
        end,
        Duration::from_secs(300),
        Duration::from_secs(1800),
    );
    for day in 0..config.days {
        let midnight = start + chrono::Duration::days(i64::from(day));
        if span_rng.chance(0.5) {
            chaos.registry_slow.push((
                midnight - chrono::Duration::minutes(1),
                midnight + chrono::Duration::minutes(span_rng.between(10, 180) as i64),
            ));
        }
    }
    let chaos = Arc::new(chaos);

    // Devices that go inactive and back; some across midnight, when the scan runs.
    let mut flips: BTreeMap<(String, String), Vec<DateTime<Utc>>> = BTreeMap::new();
    if config.faults.contains(&Fault::DeviceFlaps) {
        let mut flip_rng = rng.fork();
        for tenant in TENANTS {
            for d in 0..DEVICES_PER_TENANT {
                let key = (tenant.to_owned(), format!("dev-{d}"));
                if flip_rng.chance(0.3) {
                    let n = flip_rng.between(1, 4);
                    let mut times: Vec<DateTime<Utc>> = (0..n)
                        .map(|_| {
                            start
                                + chrono::Duration::seconds(
                                    flip_rng.below((end - start).num_seconds() as u64) as i64,
                                )
                        })
                        .collect();
                    times.sort();
                    chaos.count("device_flip");
                    flips.entry(key.clone()).or_default().extend(times);
                }
            }
        }
        for day in 0..config.days {
            if flip_rng.chance(0.5) {
                let midnight = start + chrono::Duration::days(i64::from(day));
                let tenant = TENANTS[flip_rng.below(3) as usize];
                let key = (
                    tenant.to_owned(),
                    format!("dev-{}", flip_rng.below(DEVICES_PER_TENANT)),
                );
                let list = flips.entry(key).or_default();
                // Inactive from just before midnight until a few minutes after it.
                list.push(midnight - chrono::Duration::minutes(30));
                list.push(midnight + chrono::Duration::minutes(flip_rng.between(2, 20) as i64));
                list.sort();
                chaos.count("device_flip_over_midnight");
            }
        }
    }

    let journal = Journal::default();
    let mut memory = InMemoryScheduleStore::new(schedule_core::limits::DEFAULT_STATUS_SHARDS);
    if config.faults.contains(&Fault::IndexLag) {
        memory = memory.with_index_lag(IndexLag {
            max: Duration::from_secs(5),
            seed: rng.next_u64(),
            clock: Arc::new(clock),
        });
    }
    let memory = Arc::new(memory);
    let definitions = Arc::new(InMemoryDefinitionSource::new());
    for def in &defs {
        definitions.put(def).await.unwrap();
    }
    let marks = Arc::new(Mutex::new(Vec::new()));
    let tally = Tally::default();
    let store = FaultyStore {
        inner: memory.clone(),
        chaos: chaos.clone(),
        clock,
        marks: marks.clone(),
        journal: journal.clone(),
        tally: tally.clone(),
    };
    let faulty_defs = FaultyDefinitions {
        inner: definitions.clone(),
        chaos: chaos.clone(),
    };
    let queue = Arc::new(SimQueue::new(
        chaos.clone(),
        clock,
        config.visibility,
        EXECUTION_MAX_RECEIVE_COUNT,
        journal.clone(),
    ));
    let registry = Arc::new(SimRegistry {
        chaos: chaos.clone(),
        clock,
        flips,
        timeout: REGISTRY_TIMEOUT,
    });
    let sink = SimSink {
        chaos: chaos.clone(),
        clock,
        table: memory.clone(),
        sent: Arc::new(Mutex::new(Vec::new())),
        journal: journal.clone(),
    };
    let history: History = defs
        .iter()
        .map(|d| {
            (
                d.key(),
                vec![(start - chrono::Duration::days(1), Some(d.clone()))],
            )
        })
        .collect();

    let world = Arc::new(World {
        start,
        end,
        clock,
        scanner: Scanner {
            definitions: faulty_defs.clone(),
            store: store.clone(),
            validator: registry.clone(),
            clock,
            modes: schedule_core::mode_cache::ModeRouting::default(),
            settings: ScanSettings::default(),
        },
        scheduler: Scheduler {
            store: store.clone(),
            queue: FaultyQueue {
                inner: queue.clone(),
                chaos: chaos.clone(),
            },
            continuation: None,
            definitions: faulty_defs.clone(),
            clock,
            settings: ScheduleSettings::default(),
        },
        executor: Executor {
            store: store.clone(),
            sink: sink.clone(),
            validator: registry.clone(),
            clock,
            modes: schedule_core::mode_cache::ModeRouting::default(),
            settings: ExecuteSettings::default(),
        },
        sync: DefinitionSync {
            store: store.clone(),
            definitions: faulty_defs,
            clock,
            modes: schedule_core::mode_cache::ModeRouting::default(),
            settings: SyncSettings::default(),
        },
        chaos,
        memory,
        definitions,
        queue,
        registry,
        sink,
        marks,
        tally,
        metric_errors: Mutex::new(Vec::new()),
        journal,
        history: Mutex::new(history),
        ended: Mutex::new(BTreeMap::new()),
        redriven: Mutex::new(BTreeSet::new()),
        cut: Mutex::new(BTreeSet::new()),
        stop: AtomicBool::new(false),
    });

    // The flow was running before the simulated days, so the scans before them left the
    // next 25 hours materialized: one fault-free full scan at the start stands for them (the
    // very first run of a new deployment starts at its own now instead).
    world.chaos.stop();
    world
        .memory
        .record_scan_horizon(Timestamp::from_datetime(start))
        .await
        .unwrap();
    daily_scanner_v2::handle(
        &world.scanner,
        &json!({ "mode": "full" }),
        None,
        &Metrics::new("daily_scanner_v2"),
    )
    .await
    .unwrap();
    world.chaos.resume();
    let scans = tokio::task::spawn_local(scanner_driver(world.clone(), config.days, rng.fork()));
    let schedules = tokio::task::spawn_local(scheduler_driver(world.clone()));
    let deliveries = tokio::task::spawn_local(esm_driver(world.clone(), rng.fork()));
    let edits = tokio::task::spawn_local(editor_driver(world.clone(), rng.fork(), defs.len()));
    clock.sleep_until(end).await;
    world.chaos.stop();
    // Half the seeds redrive (a redrive would also hide an occurrence left QUEUED with its
    // message in the DLQ, which the other half must show).
    if config.faults.contains(&Fault::Redrive) && seed.is_multiple_of(2) {
        clock.sleep_until(end + chrono::Duration::hours(2)).await;
        let keys = world.queue.redrive();
        world
            .chaos
            .count_n("dlq_message_redriven", keys.len() as u64);
        world.redriven.lock().unwrap().extend(keys);
    }
    clock
        .sleep_until(end + chrono::Duration::from_std(DRAIN).unwrap())
        .await;
    world.stop.store(true, Ordering::Relaxed);
    world.queue.arrived.notify_one();
    for task in [scans, schedules, deliveries, edits] {
        task.await.unwrap();
    }
    check(&world, seed)
}

/// Marks the invocation ended now.
fn ended(world: &World, id: u64) {
    world.ended.lock().unwrap().insert(id, world.clock.now());
}

/// The outcomes an invocation that returned counted in its metrics must be the ones its
/// writes recorded (a crashed one flushes no metrics, as a Lambda that dies writes no EMF).
fn audit(world: &World, inv: &chaos::Invocation, metrics: &Metrics) {
    let made = world.tally.of(inv.id);
    for (metric, status) in [
        (Metric::Executed, Status::Executed),
        (Metric::Failed, Status::Failed),
        (Metric::Skipped, Status::Skipped),
        (Metric::Missed, Status::Missed),
        (Metric::Cancelled, Status::Cancelled),
    ] {
        let written = made.get(&status).copied().unwrap_or(0);
        let counted = metrics.get(metric);
        if written != counted {
            world.metric_errors.lock().unwrap().push(Violation {
                invariant: "metrics",
                detail: format!(
                    "{} invocation {} at {} counted {} {counted} time(s) but recorded {written} {status} item(s)",
                    inv.function,
                    inv.id,
                    world.clock.now(),
                    metric.name()
                ),
            });
        }
    }
}

/// The scans as the template schedules them: a full run at 00:00 UTC and an incremental
/// one every other hour. Each may run late or twice; a day may lose all its runs; each is
/// retried twice on failure as an asynchronous invoke is; one more at the end.
async fn scanner_driver(world: Arc<World>, days: u32, mut rng: Rng) {
    let chaos = world.chaos.clone();
    let mut times = Vec::new();
    for day in 0..days {
        let midnight = world.start + chrono::Duration::days(i64::from(day));
        if day > 0 && chaos.enabled.contains(&Fault::ScannerSkip) && rng.chance(0.3) {
            chaos.count("scanner_day_skipped");
            continue;
        }
        for hour in 0..24 {
            let at = midnight + chrono::Duration::hours(hour);
            let mode = if hour == 0 { "full" } else { "incremental" };
            if (day > 0 || hour > 0)
                && chaos.enabled.contains(&Fault::ScannerSkip)
                && rng.chance(0.05)
            {
                chaos.count("scanner_run_skipped");
                continue;
            }
            let late = if chaos.enabled.contains(&Fault::ScannerLate) && rng.chance(0.1) {
                chaos.count("scanner_late");
                chrono::Duration::seconds(rng.between(60, 3 * 3600) as i64)
            } else {
                chrono::Duration::zero()
            };
            times.push((at + late, mode));
            if chaos.enabled.contains(&Fault::ScannerLate) && rng.chance(0.05) {
                chaos.count("scanner_twice");
                times.push((
                    at + late + chrono::Duration::seconds(rng.between(1, 3600) as i64),
                    mode,
                ));
            }
        }
    }
    times.push((world.end, "full"));
    times.sort();
    let mut runs = Vec::new();
    for (at, mode) in times {
        let w = world.clone();
        runs.push(tokio::task::spawn_local(async move {
            w.clock.sleep_until(at).await;
            for retry in 0..3 {
                if retry > 0 {
                    w.chaos.count("scanner_retried");
                    w.clock.sleep(Duration::from_secs(60 * retry)).await;
                }
                let inv = w.chaos.invocation("scanner", 0.3, 2 * 3000);
                let metrics = Metrics::new("daily_scanner_v2");
                let deadline = w.clock.now() + chrono::Duration::seconds(900);
                let out = inv
                    .run(
                        Duration::from_secs(900),
                        Box::pin(daily_scanner_v2::handle(
                            &w.scanner,
                            &json!({ "mode": mode }),
                            Some(deadline),
                            &metrics,
                        )),
                    )
                    .await;
                ended(&w, inv.id);
                if std::env::var("SIM_DEBUG_SCAN").is_ok() {
                    match &out {
                        Ended::Returned(Ok(r)) => eprintln!(
                            "SCAN {at} {mode}: {} .. {} complete={} created={}",
                            r.from,
                            r.to,
                            r.is_complete(),
                            r.created
                        ),
                        Ended::Returned(Err(e)) => eprintln!("SCAN {at} {mode}: error {e}"),
                        _ => eprintln!("SCAN {at} {mode}: cut"),
                    }
                }
                if matches!(out, Ended::Returned(_)) {
                    audit(&w, &inv, &metrics);
                }
                if matches!(out, Ended::Returned(Ok(_))) {
                    return;
                }
            }
        }));
    }
    for r in runs {
        r.await.unwrap();
    }
}

/// The scheduler every window: on time, or skipped, delayed into the next, or doubled.
async fn scheduler_driver(world: Arc<World>) {
    let chaos = world.chaos.clone();
    let window =
        chrono::Duration::from_std(schedule_core::limits::DEFAULT_SCHEDULE_WINDOW).unwrap();
    let stop_at = world.end + chrono::Duration::from_std(DRAIN).unwrap();
    let mut runs = Vec::new();
    let mut at = world.start;
    let mut n = 0u64;
    while at < stop_at {
        world.clock.sleep_until(at).await;
        let mut starts = Vec::new();
        if !chaos.strikes(Fault::SchedulerChaos, 0.05, "scheduler_run_skipped") {
            let delay = if chaos.strikes(Fault::SchedulerChaos, 0.08, "scheduler_run_delayed") {
                chaos.with_rng(|r| r.between(1, 480))
            } else {
                0
            };
            starts.push(Duration::from_secs(delay));
            if chaos.strikes(Fault::SchedulerChaos, 0.05, "scheduler_run_doubled") {
                starts.push(Duration::from_millis(
                    delay * 1000 + chaos.with_rng(|r| r.below(3000)),
                ));
            }
        }
        for delay in starts {
            n += 1;
            let w = world.clone();
            runs.push(tokio::task::spawn_local(async move {
                w.clock.sleep(delay).await;
                let inv = w.chaos.invocation("scheduler", 0.1, 60);
                let metrics = Metrics::new("scheduler_v2");
                let deadline = w.clock.now() + chrono::Duration::seconds(120);
                let run_id = format!("run-{n}");
                let out = inv
                    .run(
                        Duration::from_secs(120),
                        w.scheduler.run(&run_id, Some(deadline), &metrics),
                    )
                    .await;
                ended(&w, inv.id);
                if matches!(out, Ended::Returned(_)) {
                    audit(&w, &inv, &metrics);
                }
            }));
        }
        runs.retain(|r| !r.is_finished());
        at += window;
    }
    for r in runs {
        r.await.unwrap();
    }
}

/// The event source mapping: polls the execution queue, hands each batch to an
/// invocation of the executor's Lambda edge, deletes what the partial batch response
/// acknowledges; throttled invocations spend the receive, timed-out ones are cut.
async fn esm_driver(world: Arc<World>, mut rng: Rng) {
    let mut invocations = Vec::new();
    while !world.stop.load(Ordering::Relaxed) {
        let batch = world.queue.poll(10);
        if batch.is_empty() {
            let next = world
                .queue
                .next_visible()
                .unwrap_or(world.clock.now() + chrono::Duration::hours(1));
            tokio::select! {
                () = world.clock.sleep_until(next) => {}
                () = world.queue.arrived.notified() => {}
            }
            invocations.retain(|h: &tokio::task::JoinHandle<()>| !h.is_finished());
            continue;
        }
        // A second copy of a message goes to another invocation, running at the same time.
        let mut first: Vec<schedule_core::ports::ReceivedMessage> = Vec::new();
        let mut copies = Vec::new();
        for m in batch {
            if first.iter().any(|f| f.message_id == m.message_id) {
                copies.push(m);
            } else {
                first.push(m);
            }
        }
        for part in [first, copies] {
            if part.is_empty() {
                continue;
            }
            let w = world.clone();
            let cut = rng.next_u64();
            invocations.push(tokio::task::spawn_local(async move {
                execute_batch(&w, part, cut).await
            }));
        }
    }
    for h in invocations {
        h.await.unwrap();
    }
}

async fn execute_batch(world: &World, batch: Vec<schedule_core::ports::ReceivedMessage>, cut: u64) {
    let chaos = &world.chaos;
    let now = world.clock.now();
    let keys: Vec<Option<ScheduleKey>> = batch
        .iter()
        .map(|m| ExecutionMessage::parse(&m.body).ok().map(|(_, k)| k))
        .collect();
    let p_throttle = if Chaos::in_span(&chaos.throttled, now) {
        0.7
    } else {
        0.01
    };
    if chaos.strikes(Fault::Throttle, p_throttle, "invocation_throttled") {
        for (m, k) in batch.iter().zip(&keys) {
            if let Some(k) = k {
                world.journal.note(
                    k,
                    now,
                    format!("receive {} throttled: handler not run", m.receive_count),
                );
            }
        }
        return;
    }
    let p_timeout = if Chaos::in_span(&chaos.timing_out, now) {
        0.7
    } else {
        0.01
    };
    let calls = 12 * batch.len() as u64;
    let timed_out = chaos.strikes(Fault::Timeout, p_timeout, "invocation_timed_out");
    let (inv, limit) = if timed_out {
        // Cut at a random await point: before one of its calls, or while it waits.
        (
            chaos.cut_invocation("executor", calls),
            Duration::from_millis(cut % 3000),
        )
    } else {
        (
            chaos.invocation("executor", 0.05, calls),
            Duration::from_secs(30),
        )
    };
    let event = crate::fakes::sqs_event(&batch);
    let metrics = Metrics::new("executor_v2");
    // An early message goes back through the same (faulty) execution queue; the deadline
    // is the function's timeout, whatever cuts the invocation short.
    let requeue = FaultyQueue {
        inner: world.queue.clone(),
        chaos: world.chaos.clone(),
    };
    let deadline = Some(now + chrono::Duration::seconds(30));
    let out = inv
        .run(
            limit,
            executor_v2::handle(&world.executor, &requeue, &event, deadline, &metrics),
        )
        .await;
    ended(world, inv.id);
    if !matches!(out, Ended::Returned(_)) {
        world.cut.lock().unwrap().insert(inv.id);
    }
    let now = world.clock.now();
    match out {
        Ended::Returned((response, outcomes)) => {
            audit(world, &inv, &metrics);
            let failed: BTreeSet<&str> = response
                .batch_item_failures
                .iter()
                .map(|f| f.item_identifier.as_str())
                .collect();
            for ((m, k), (_, outcome)) in batch.iter().zip(&keys).zip(&outcomes) {
                if let Some(k) = k {
                    world.journal.note(
                        k,
                        now,
                        format!("receive {} (inv {}): {outcome:?}", m.receive_count, inv.id),
                    );
                }
            }
            for m in &batch {
                if failed.contains(m.message_id.as_str()) {
                    continue;
                }
                if chaos.strikes(Fault::QueueErrors, 0.01, "delete_failed") {
                    continue;
                }
                world.queue.delete_receipt(&m.receipt_handle);
            }
        }
        other => {
            for (m, k) in batch.iter().zip(&keys) {
                if let Some(k) = k {
                    let how = if timed_out {
                        "cut by its timeout".to_owned()
                    } else {
                        format!("{other:?}")
                    };
                    world.journal.note(
                        k,
                        now,
                        format!(
                            "receive {} (inv {}): invocation {how}",
                            m.receive_count, inv.id
                        ),
                    );
                }
            }
        }
    }
}

/// Definitions edited during the day by their owner, each change delivered to definition
/// sync as its stream record (late, twice, and retried until it applies).
async fn editor_driver(world: Arc<World>, mut rng: Rng, defs: usize) {
    if !world.chaos.enabled.contains(&Fault::Edits) {
        return;
    }
    let span = (world.end - world.start).num_seconds() as u64;
    let count = (defs as u64 / 6).max(1) * u64::from((span / 86_400).max(1) as u32);
    let mut times: Vec<DateTime<Utc>> = (0..count)
        .map(|_| world.start + chrono::Duration::seconds(rng.between(600, span - 1800) as i64))
        .collect();
    times.sort();
    let mut deliveries = Vec::new();
    for (i, at) in times.into_iter().enumerate() {
        world.clock.sleep_until(at).await;
        let Some(change) = edit(&world, &mut rng, i) else {
            continue;
        };
        let copies = if rng.chance(0.1) {
            world.chaos.count("stream_record_duplicated");
            2
        } else {
            1
        };
        for _ in 0..copies {
            let late = if rng.chance(0.2) {
                world.chaos.count("stream_record_late");
                rng.between(1_000, 300_000)
            } else {
                rng.between(100, 2_000)
            };
            let w = world.clone();
            let change = change.clone();
            deliveries.push(tokio::task::spawn_local(async move {
                w.clock.sleep(Duration::from_millis(late)).await;
                for attempt in 0..200 {
                    if attempt > 0 {
                        w.chaos.count("stream_record_retried");
                        w.clock.sleep(Duration::from_secs(2 + attempt)).await;
                    }
                    let inv = w.chaos.invocation("sync", 0.2, 40);
                    let metrics = Metrics::new("definition_sync");
                    let out = inv
                        .run(
                            Duration::from_secs(60),
                            Box::pin(w.sync.apply_batch(std::slice::from_ref(&change), &metrics)),
                        )
                        .await;
                    ended(&w, inv.id);
                    if let Ended::Returned(result) = out {
                        audit(&w, &inv, &metrics);
                        if result.failed.is_none() {
                            return;
                        }
                    }
                }
            }));
        }
    }
    for d in deliveries {
        d.await.unwrap();
    }
}

/// One edit by the owning service: payload, time, disable/enable, or delete.
fn edit(world: &World, rng: &mut Rng, i: usize) -> Option<DefinitionChange> {
    let now = world.clock.now();
    let mut history = world.history.lock().unwrap();
    let keys: Vec<(String, String)> = history
        .iter()
        .filter(|(_, v)| v.last().is_some_and(|(_, d)| d.is_some()))
        .map(|(k, _)| k.clone())
        .collect();
    if keys.is_empty() {
        return None;
    }
    let key = keys[rng.below(keys.len() as u64) as usize].clone();
    let versions = history.get_mut(&key)?;
    let old = versions.last()?.1.clone()?;
    let mut new = old.clone();
    new.version += 1;
    new.updated_at = Some(Timestamp::from_datetime(now));
    let kind = rng.below(10);
    let what = match kind {
        0..=2 => {
            new.payload.insert("edited".to_owned(), json!(i));
            "payload"
        }
        3..=5 => {
            let fresh = definition(rng, i, world.start, 2);
            new.schedule = fresh.schedule;
            "time"
        }
        6..=7 => {
            new.enabled = !new.enabled;
            if new.enabled { "enabled" } else { "disabled" }
        }
        _ => "deleted",
    };
    world.chaos.count(match what {
        "payload" => "edit_payload",
        "time" => "edit_time",
        "deleted" => "edit_delete",
        _ => "edit_enabled",
    });
    let (pk, sk) = key.clone();
    let change = if what == "deleted" {
        world.definitions.remove_raw(&pk, &sk);
        versions.push((now, None));
        DefinitionChange {
            event_id: format!("ev-{i}"),
            kind: ChangeKind::Remove,
            old: Some(Image::Valid(old)),
            new: None,
        }
    } else {
        world.definitions.put_raw(&pk, &sk, new.to_json());
        versions.push((now, Some(new.clone())));
        DefinitionChange {
            event_id: format!("ev-{i}"),
            kind: ChangeKind::Modify,
            old: Some(Image::Valid(old)),
            new: Some(Image::Valid(new)),
        }
    };
    Some(change)
}

fn story(world: &World, item: Option<&ScheduleItem>, key: &ScheduleKey) -> String {
    let mut out = String::new();
    if let Some(i) = item {
        out.push_str(&format!(
            "\n      item: status {} device {} v{} retries {} queued_at {:?} validation {:?} last_error {:?}",
            i.status, i.device_id, i.definition_version, i.retry_count, i.queued_at.map(|t| t.to_string()), i.validation_result, i.last_error
        ));
    }
    let lines = world.journal.story(key);
    let skip = lines.len().saturating_sub(30);
    for line in lines.into_iter().skip(skip) {
        out.push_str("\n      ");
        out.push_str(&line);
    }
    out
}

/// The guarantees, checked on the end state.
fn check(world: &World, seed: u64) -> SeedReport {
    let mut v: Vec<Violation> = Vec::new();
    let mut violation =
        |invariant: &'static str, detail: String| v.push(Violation { invariant, detail });
    let items: BTreeMap<ScheduleKey, ScheduleItem> = world
        .memory
        .items()
        .into_iter()
        .map(|i| (i.key.clone(), i))
        .collect();
    let history = world.history.lock().unwrap();

    // 1. Every occurrence inside the horizon materialized, from the version in force.
    let mut expected = 0;
    let mut accounted: BTreeSet<ScheduleKey> = BTreeSet::new();
    for (_, versions) in history.iter() {
        let mut times: BTreeSet<Timestamp> = BTreeSet::new();
        for def in versions
            .iter()
            .filter_map(|(_, d)| d.as_ref())
            .filter(|d| d.enabled)
        {
            times.extend(yields(def, world.start, world.end));
        }
        let edits: Vec<DateTime<Utc>> = versions.iter().skip(1).map(|(t, _)| *t).collect();
        let some = versions.iter().find_map(|(_, d)| d.as_ref()).unwrap();
        for t in times {
            let key = ScheduleKey::new(&some.tenant_id, t, &some.device_workflow_step_id);
            accounted.insert(key.clone());
            let at = t.as_datetime();
            if edits
                .iter()
                .any(|e| at >= *e - EDIT_BEFORE && at <= *e + EDIT_AFTER)
            {
                continue;
            }
            let in_force = versions
                .iter()
                .rev()
                .find(|(e, _)| *e <= at)
                .and_then(|(_, d)| d.as_ref());
            let wanted = in_force.is_some_and(|d| {
                d.enabled && yields(d, at, at + chrono::Duration::seconds(1)).contains(&t)
            });
            let item = items.get(&key);
            if wanted {
                expected += 1;
                match item {
                    None => violation(
                        "materialized",
                        format!(
                            "{key} due {t} (v{}) was never materialized{}",
                            in_force.map_or(0, |d| d.version),
                            story(world, None, &key)
                        ),
                    ),
                    Some(i) if i.status == Status::Cancelled => violation(
                        "materialized",
                        format!(
                            "{key} due {t} is CANCELLED although version {} still yields it{}",
                            in_force.map_or(0, |d| d.version),
                            story(world, item, &key)
                        ),
                    ),
                    Some(_) => {}
                }
            } else if let Some(i) = item
                && matches!(i.status, Status::Executed | Status::Failed | Status::Queued)
            {
                // Dispatched although its definition no longer asked for it (an occurrence
                // left PENDING is reported as not terminal).
                violation(
                    "cancelled",
                    format!(
                        "{key} due {t} is {} although its definition (now {}) no longer yields it{}",
                        i.status,
                        in_force.map_or("deleted".to_owned(), |d| format!(
                            "v{} enabled={}",
                            d.version, d.enabled
                        )),
                        story(world, item, &key)
                    ),
                );
            }
        }
    }
    for (key, item) in &items {
        let t = item.scheduled_time.as_datetime();
        if t >= world.start && t < world.end && !accounted.contains(key) {
            violation(
                "materialized",
                format!(
                    "{key} exists but no version of its definition yields it{}",
                    story(world, Some(item), key)
                ),
            );
        }
    }

    // 2. Every materialized occurrence terminal (the last scan's overlap included).
    let settled_before = world.end + chrono::Duration::hours(1);
    for (key, item) in &items {
        if item.scheduled_time.as_datetime() < settled_before && !item.status.is_terminal() {
            violation(
                "terminal",
                format!(
                    "{key} is still {}{}",
                    item.status,
                    story(world, Some(item), key)
                ),
            );
        }
    }

    // 3. Never early; never twice, except the crash window between send and status write.
    let sent = world.sink.sent.lock().unwrap().clone();
    let ended_at = world.ended.lock().unwrap().clone();
    let mut per_key: BTreeMap<ScheduleKey, Vec<&chaos::Sent>> = BTreeMap::new();
    for s in &sent {
        if s.at < s.scheduled_time.as_datetime() {
            violation(
                "on_time",
                format!(
                    "{} sent at {} before its time {}{}",
                    s.key,
                    s.at,
                    s.scheduled_time,
                    story(world, items.get(&s.key), &s.key)
                ),
            );
        }
        per_key.entry(s.key.clone()).or_default().push(s);
    }
    let mut crash_window = 0;
    let cut = world.cut.lock().unwrap().clone();
    for (key, list) in &per_key {
        for pair in list.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            let a_over = ended_at.get(&a.invocation).is_some_and(|t| *t <= b.at)
                && a.invocation != b.invocation;
            if a.execution_id != b.execution_id {
                violation(
                    "once",
                    format!(
                        "{key} sent with execution ids {} and {}",
                        a.execution_id, b.execution_id
                    ),
                );
            } else if a.ambiguous || (a_over && b.status_then != Some(Status::Executed)) {
                crash_window += 1;
            } else {
                violation(
                    "once",
                    format!(
                        "{key} sent twice (inv {} at {}, inv {} at {}) outside the crash window{}",
                        a.invocation,
                        a.at,
                        b.invocation,
                        b.at,
                        story(world, items.get(key), key)
                    ),
                );
            }
        }
        if let Some(item) = items.get(key)
            && matches!(
                item.status,
                Status::Cancelled | Status::Skipped | Status::Missed
            )
            && list.iter().any(|s| !s.ambiguous)
        {
            // Sent by an invocation that died before recording it, then settled otherwise
            // by a later delivery that could not know: the named crash window.
            if list
                .iter()
                .filter(|s| !s.ambiguous)
                .all(|s| cut.contains(&s.invocation))
            {
                crash_window += 1;
                continue;
            }
            violation(
                "once",
                format!(
                    "{key} was sent but is {}{}",
                    item.status,
                    story(world, Some(item), key)
                ),
            );
        }
    }
    for (key, item) in &items {
        if item.status == Status::Executed && !per_key.contains_key(key) {
            violation(
                "once",
                format!(
                    "{key} is EXECUTED but no trigger went out{}",
                    story(world, Some(item), key)
                ),
            );
        }
    }

    // 4. Every FAILED occurrence's message in the DLQ; a redriven one runs again.
    let dlq: BTreeSet<ScheduleKey> = world.queue.dlq_keys().into_iter().flatten().collect();
    let redriven = world.redriven.lock().unwrap().clone();
    for (key, item) in &items {
        if item.status == Status::Failed && redriven.contains(key) {
            violation(
                "redrive_reruns",
                format!(
                    "{key} is still FAILED after its message was redriven from the DLQ{}",
                    story(world, Some(item), key)
                ),
            );
        } else if item.status == Status::Failed && !dlq.contains(key) {
            violation(
                "failed_in_dlq",
                format!(
                    "{key} is FAILED but its message is not in the DLQ{}",
                    story(world, Some(item), key)
                ),
            );
        }
    }

    // 5 and 6. MISSED only past the grace; SKIPPED only for a device inactive at the due time.
    for mark in world.marks.lock().unwrap().iter() {
        let Some(item) = items.get(&mark.key) else {
            continue;
        };
        let due = item.scheduled_time.as_datetime();
        match mark.status {
            Status::Missed => {
                let grace = chrono::Duration::from_std(item.misfire_grace.unwrap_or(DEFAULT_GRACE))
                    .unwrap();
                if mark.at - due < grace {
                    violation(
                        "missed_past_grace",
                        format!(
                            "{} marked MISSED at {}, {}s after its time, within its grace of {}s{}",
                            mark.key,
                            mark.at,
                            (mark.at - due).num_seconds(),
                            grace.num_seconds(),
                            story(world, Some(item), &mark.key)
                        ),
                    );
                }
            }
            Status::Failed if mark.at < due => {
                violation(
                    "failed_not_before_due",
                    format!(
                        "{} marked FAILED at {}, before its time {due}: no send could have been tried{}",
                        mark.key,
                        mark.at,
                        story(world, Some(item), &mark.key)
                    ),
                );
            }
            Status::Skipped => {
                let to = mark.at.max(due);
                if !world.registry.inactive_during(
                    item.tenant_id.as_str(),
                    item.device_id.as_str(),
                    due - SKIP_EARLY,
                    to,
                ) {
                    violation(
                        "skipped_inactive",
                        format!(
                            "{} marked SKIPPED at {} (due {}) but device {} was active from {} to {}{}",
                            mark.key,
                            mark.at,
                            due,
                            item.device_id,
                            due - SKIP_EARLY,
                            to,
                            story(world, Some(item), &mark.key)
                        ),
                    );
                }
            }
            _ => {}
        }
    }

    // 7. The metrics agree with the table.
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for item in items.values() {
        *by_status.entry(item.status.to_string()).or_default() += 1;
    }
    v.extend(world.metric_errors.lock().unwrap().iter().cloned());

    let mut digest = 0xcbf2_9ce4_8422_2325u64;
    let mut mix = |s: &str| {
        for b in s.bytes() {
            digest = (digest ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for item in items.values() {
        mix(&format!("{}{}{}", item.key, item.status, item.retry_count));
    }
    for s in &sent {
        mix(&format!("{}{}", s.key, s.at));
    }
    for (k, n) in world.chaos.counts() {
        mix(&format!("{k}{n}"));
    }
    SeedReport {
        seed,
        occurrences: expected,
        items: items.len(),
        triggers: sent.len(),
        by_status,
        faults: world.chaos.counts(),
        crash_window_duplicates: crash_window,
        violations: v,
        digest,
    }
}

/// The summary of many seeds, and the failing ones with `SIM_SEED=<n>` and their violations.
pub fn summary(config: &SimConfig, reports: &[SeedReport]) -> String {
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let mut invariants: BTreeMap<&str, usize> = BTreeMap::new();
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for r in reports {
        for (k, n) in &r.faults {
            *faults.entry(k).or_default() += n;
        }
        for v in &r.violations {
            *invariants.entry(v.invariant).or_default() += 1;
        }
        for (k, n) in &r.by_status {
            *statuses.entry(k.clone()).or_default() += n;
        }
    }
    let failing: Vec<&SeedReport> = reports
        .iter()
        .filter(|r| !r.violations.is_empty())
        .collect();
    let mut out = format!(
        "simulation: {} seeds, {} days each, faults [{}]\n  occurrences checked: {}; items: {}; triggers: {}; by status: {statuses:?}\n  faults injected: {faults:?}\n  crash-window duplicates: {}\n  violations: {} in {} seeds, by invariant: {invariants:?}\n",
        reports.len(),
        config.days,
        config
            .faults
            .iter()
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(","),
        reports.iter().map(|r| r.occurrences).sum::<usize>(),
        reports.iter().map(|r| r.items).sum::<usize>(),
        reports.iter().map(|r| r.triggers).sum::<usize>(),
        reports
            .iter()
            .map(|r| r.crash_window_duplicates)
            .sum::<usize>(),
        reports.iter().map(|r| r.violations.len()).sum::<usize>(),
        failing.len(),
    );
    // Per invariant: the seeds that broke it, and the first violation with its story.
    let mut by_invariant: BTreeMap<&str, Vec<(u64, &Violation)>> = BTreeMap::new();
    for r in &failing {
        for v in &r.violations {
            by_invariant
                .entry(v.invariant)
                .or_default()
                .push((r.seed, v));
        }
    }
    for (invariant, list) in &by_invariant {
        let mut seeds: Vec<u64> = list.iter().map(|(s, _)| *s).collect();
        seeds.dedup();
        let shown: Vec<String> = seeds.iter().take(20).map(u64::to_string).collect();
        out.push_str(&format!(
            "\n[{invariant}] broken in {} seeds: {}{}\n",
            seeds.len(),
            shown.join(" "),
            if seeds.len() > 20 { " …" } else { "" }
        ));
        let (seed, first) = list[0];
        out.push_str(&format!("  SIM_SEED={seed}: {}\n", first.detail));
    }
    out
}
