//! `wfs cost`: what one executed step costs. Runs N steps through the whole flow on the
//! embedded twin — the day's scanner passes, the scheduler every 5 minutes, the executor
//! on the execution queue as the Lambda event source mapping drives it — and prints the
//! DynamoDB units, SQS requests and Lambda time per executed step, and the price of a
//! million steps at list prices beside EventBridge Scheduler's.

use std::collections::BTreeMap;
use std::io::Write;
use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::future::join_all;
use schedule_core::adapters::memory::EMPTY_RECEIVE;
use schedule_core::app::execute::{Incoming, Outcome};
use schedule_core::app::scan::ScanRequest;
use schedule_core::embedded::{Embedded, EmbeddedSettings};
use schedule_core::limits::{MAX_PAYLOAD_BYTES, SQS_MAX_RECEIVE};
use schedule_core::model::{Definition, Timestamp};
use schedule_core::ports::{
    Clock, DefinitionSource, DispatchQueue, OutgoingMessage, ScheduleStore,
};
use schedule_core::usage::{OpUsage, UsageReport};
use serde::Serialize;
use serde_json::{Value, json};

use crate::CliError;

/// List prices, us-east-1, in US dollars. Sources: aws.amazon.com/dynamodb/pricing
/// (on-demand, after the November 2024 reduction; provisioned), aws.amazon.com/sqs/pricing
/// (standard queue), aws.amazon.com/lambda/pricing, aws.amazon.com/eventbridge/pricing
/// (Scheduler).
pub mod prices {
    /// DynamoDB on-demand, per million write request units.
    pub const DYNAMO_WRU_PER_MILLION: f64 = 0.625;
    /// DynamoDB on-demand, per million read request units.
    pub const DYNAMO_RRU_PER_MILLION: f64 = 0.125;
    /// DynamoDB provisioned, per WCU-hour.
    pub const DYNAMO_WCU_HOUR: f64 = 0.00065;
    /// DynamoDB provisioned, per RCU-hour.
    pub const DYNAMO_RCU_HOUR: f64 = 0.00013;
    /// Share of provisioned capacity assumed used: capacity is bought for the peaks.
    pub const PROVISIONED_UTILIZATION: f64 = 0.70;
    /// SQS standard queue, per million requests (each 64 KB chunk of a payload is one).
    pub const SQS_PER_MILLION: f64 = 0.40;
    /// Lambda duration, per GB-second, arm64.
    pub const LAMBDA_GB_S_ARM64: f64 = 0.000_013_333_4;
    /// Lambda duration, per GB-second, x86_64.
    pub const LAMBDA_GB_S_X86_64: f64 = 0.000_016_666_7;
    /// Lambda, per million requests.
    pub const LAMBDA_REQUESTS_PER_MILLION: f64 = 0.20;
    /// EventBridge Scheduler, per million invocations (one schedule per step).
    pub const EVENTBRIDGE_SCHEDULER_PER_MILLION: f64 = 1.00;
}

/// Memory of each function in `template.yaml` (a test checks these against it).
pub const SCANNER_MEMORY_MB: u32 = 512;
pub const SCHEDULER_MEMORY_MB: u32 = 1024;
pub const EXECUTOR_MEMORY_MB: u32 = 256;
/// The template's default `Architecture` (a test checks it).
pub const TEMPLATE_ARCHITECTURE: &str = "arm64";

/// The smallest payload `--payload-bytes` makes: `{"data":""}`.
const MIN_PAYLOAD_BYTES: usize = r#"{"data":""}"#.len();
/// The most steps one run simulates.
const MAX_STEPS: u64 = 1_000_000;
/// The day simulated (any day will do; a fixed one makes runs comparable).
const DAY_START: &str = "2026-11-26T00:00:00Z";
/// Repeating definitions fire every 6 hours: four times in the day.
const REPEAT_EVERY_HOURS: u64 = 6;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Runs the whole flow for one day on the embedded twin: the scanner's full pass \
at 00:00 and a second pass over the same window (as the hourly incremental and the daily full \
pass both write each occurrence), the hourly incremental runs, the scheduler every 5 minutes and \
the executor on the execution queue. DynamoDB units come from the twin's own items by the \
documented billing rules; Lambda time is measured on this machine.\n\nExample:\n  wfs cost --steps \
1000 --payload-bytes 4096\n  wfs cost --json --memory-mb executor=512"
)]
pub struct CostArgs {
    /// Executed steps to simulate
    #[arg(long, value_name = "N", default_value = "1000", value_parser = steps)]
    steps: u64,
    /// Size of each definition's payload as JSON, in bytes
    #[arg(long, value_name = "B", default_value = "100", value_parser = payload_bytes)]
    payload_bytes: usize,
    /// Which definitions: one-time steps, repeating ones (every 6 h) or half of each
    #[arg(long, value_enum, default_value = "mixed")]
    mix: Mix,
    /// Lambda memory: one size for every function, or FUNCTION=MB (scanner, scheduler,
    /// executor); repeatable [default: the template's: scanner=512, scheduler=1024, executor=256]
    #[arg(long, value_name = "MB|FUNCTION=MB", value_parser = memory)]
    memory_mb: Vec<MemoryOverride>,
    /// Print one JSON object
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mix {
    Once,
    Repeating,
    Mixed,
}

/// One `--memory-mb` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryOverride {
    /// `None`: every function.
    function: Option<Function>,
    mb: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Function {
    Scanner,
    Scheduler,
    Executor,
}

impl FromStr for Function {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "scanner" => Ok(Function::Scanner),
            "scheduler" => Ok(Function::Scheduler),
            "executor" => Ok(Function::Executor),
            other => Err(format!(
                "unknown function {other:?}: expected scanner, scheduler or executor"
            )),
        }
    }
}

fn steps(raw: &str) -> Result<u64, String> {
    raw.parse::<u64>()
        .ok()
        .filter(|n| (1..=MAX_STEPS).contains(n))
        .ok_or_else(|| format!("expected a whole number of steps from 1 to {MAX_STEPS}"))
}

fn payload_bytes(raw: &str) -> Result<usize, String> {
    raw.parse::<usize>()
        .ok()
        .filter(|n| (MIN_PAYLOAD_BYTES..=MAX_PAYLOAD_BYTES).contains(n))
        .ok_or_else(|| {
            format!(
                "expected a size in bytes from {MIN_PAYLOAD_BYTES} (an object with one empty \
                 string) to {MAX_PAYLOAD_BYTES} (the largest payload a definition may carry)"
            )
        })
}

fn memory(raw: &str) -> Result<MemoryOverride, String> {
    let (function, mb) = match raw.split_once('=') {
        Some((f, mb)) => (Some(f.parse::<Function>()?), mb),
        None => (None, raw),
    };
    // Lambda: 128 MB to 10 240 MB.
    let mb = mb
        .parse::<u32>()
        .ok()
        .filter(|mb| (128..=10_240).contains(mb))
        .ok_or_else(|| format!("expected megabytes from 128 to 10240, not {mb:?}"))?;
    Ok(MemoryOverride { function, mb })
}

/// Memory per function: the template's, then the overrides in order.
fn memory_of(overrides: &[MemoryOverride]) -> BTreeMap<Function, u32> {
    let mut m = BTreeMap::from([
        (Function::Scanner, SCANNER_MEMORY_MB),
        (Function::Scheduler, SCHEDULER_MEMORY_MB),
        (Function::Executor, EXECUTOR_MEMORY_MB),
    ]);
    for o in overrides {
        for (f, mb) in m.iter_mut() {
            if o.function.is_none_or(|g| g == *f) {
                *mb = o.mb;
            }
        }
    }
    m
}

/// The payload of `bytes` bytes as JSON.
fn payload(bytes: usize) -> Value {
    json!({"data": "x".repeat(bytes - MIN_PAYLOAD_BYTES)})
}

/// The definitions of the day: `steps` executed steps, all inside the day.
fn definitions(steps: u64, mix: Mix, payload_bytes: usize) -> Result<Vec<Definition>, String> {
    let per_def = 24 / REPEAT_EVERY_HOURS;
    let repeating_steps = match mix {
        Mix::Once => 0,
        Mix::Repeating => steps / per_def * per_def,
        Mix::Mixed => steps / 2 / per_def * per_def,
    };
    let once = steps - repeating_steps;
    let repeating = repeating_steps / per_def;
    let start: DateTime<Utc> = DAY_START.parse().map_err(|e| format!("{e}"))?;
    let end = start + chrono::Duration::days(1);
    let at = |t: DateTime<Utc>| Timestamp::from_datetime(t).to_string();
    let body = payload(payload_bytes);
    let def = |id: String, schedule: Value| {
        json!({"tenant_id": "acme", "device_workflow_step_id": id, "workflow_id": "w1",
               "device_id": "d1", "enabled": true, "version": 1, "schedule": schedule,
               "payload": body.clone()})
    };
    let mut out = Vec::new();
    // One-time steps spread over the day, from 00:00:30 to before 23:59:30.
    let span = 86_340_f64;
    for i in 0..once {
        let offset = 30 + (span * i as f64 / once as f64) as i64;
        let when = start + chrono::Duration::seconds(offset);
        out.push(def(
            format!("once-{i}"),
            json!({"type": "once", "at": at(when)}),
        ));
    }
    // Repeating steps every 6 h from a start spread over the first 6 h, ending at midnight.
    for j in 0..repeating {
        let offset = 15 + (21_570_f64 * j as f64 / repeating.max(1) as f64) as i64;
        let first = start + chrono::Duration::seconds(offset);
        out.push(def(
            format!("every-6h-{j}"),
            json!({"type": "rate", "every": format!("{REPEAT_EVERY_HOURS}h"),
                   "start": at(first), "end": at(end)}),
        ));
    }
    out.iter()
        .map(|v| Definition::from_json(v).map_err(|e| e.to_string()))
        .collect()
}

/// Wall time of each function's invocations (Lambda bills each rounded up to 1 ms).
#[derive(Debug, Default)]
struct Invocations {
    by_function: BTreeMap<Function, (u64, f64)>,
}

impl Invocations {
    fn record(&mut self, f: Function, took: Duration) {
        let billed_s = (took.as_secs_f64() * 1000.0).ceil() / 1000.0;
        let e = self.by_function.entry(f).or_default();
        e.0 += 1;
        e.1 += billed_s;
    }
}

/// The figures of a run; the `--json` shape (stable: add fields, never rename).
#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    pub steps: u64,
    pub executed_steps: u64,
    pub payload_bytes: usize,
    pub mix: Mix,
    pub table_writes_per_step: f64,
    pub index_writes_per_step: f64,
    pub table_wru_per_step: f64,
    pub index_wru_per_step: f64,
    /// Table and index write units together.
    pub wru_per_step: f64,
    pub rru_per_step: f64,
    pub sqs_requests_per_step: f64,
    pub lambda_invocations_per_step: f64,
    pub lambda_gb_s_per_step: f64,
    pub usd_per_million_on_demand: f64,
    pub usd_per_million_provisioned: f64,
    /// Each part's share, per million steps.
    pub usd_per_million: UsdBreakdown,
    pub eventbridge_scheduler_usd_per_million: f64,
    pub prices: Prices,
    pub lambda: BTreeMap<Function, LambdaFigures>,
    /// Everything each operation consumed in the run (not per step).
    pub operations: BTreeMap<String, OpUsage>,
    /// Receives that found the queue empty: the event source mapping's polling, a fixed
    /// cost of the queue, not counted per step.
    pub empty_receives: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UsdBreakdown {
    pub dynamodb_on_demand: f64,
    pub dynamodb_provisioned: f64,
    pub sqs: f64,
    pub lambda: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LambdaFigures {
    pub memory_mb: u32,
    pub invocations: u64,
    pub billed_seconds: f64,
    pub gb_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Prices {
    pub region: &'static str,
    pub dynamodb_on_demand_usd_per_million_wru: f64,
    pub dynamodb_on_demand_usd_per_million_rru: f64,
    pub dynamodb_provisioned_usd_per_wcu_hour: f64,
    pub dynamodb_provisioned_usd_per_rcu_hour: f64,
    pub dynamodb_provisioned_utilization: f64,
    pub sqs_usd_per_million_requests: f64,
    pub lambda_architecture: &'static str,
    pub lambda_usd_per_gb_s: f64,
    pub lambda_usd_per_million_requests: f64,
    pub eventbridge_scheduler_usd_per_million: f64,
}

impl Prices {
    fn list() -> Self {
        use prices::*;
        let arm = TEMPLATE_ARCHITECTURE == "arm64";
        Self {
            region: "us-east-1",
            dynamodb_on_demand_usd_per_million_wru: DYNAMO_WRU_PER_MILLION,
            dynamodb_on_demand_usd_per_million_rru: DYNAMO_RRU_PER_MILLION,
            dynamodb_provisioned_usd_per_wcu_hour: DYNAMO_WCU_HOUR,
            dynamodb_provisioned_usd_per_rcu_hour: DYNAMO_RCU_HOUR,
            dynamodb_provisioned_utilization: PROVISIONED_UTILIZATION,
            sqs_usd_per_million_requests: SQS_PER_MILLION,
            lambda_architecture: TEMPLATE_ARCHITECTURE,
            lambda_usd_per_gb_s: if arm {
                LAMBDA_GB_S_ARM64
            } else {
                LAMBDA_GB_S_X86_64
            },
            lambda_usd_per_million_requests: LAMBDA_REQUESTS_PER_MILLION,
            eventbridge_scheduler_usd_per_million: EVENTBRIDGE_SCHEDULER_PER_MILLION,
        }
    }

    /// Provisioned: a unit-hour serves 3600 units at full use, fewer at the utilization.
    fn provisioned_per_million(unit_hour: f64, utilization: f64) -> f64 {
        1_000_000.0 / (3600.0 * utilization) * unit_hour
    }
}

/// Prices a run's figures.
pub fn report(
    steps: u64,
    payload_bytes: usize,
    mix: Mix,
    executed: u64,
    usage: &UsageReport,
    lambda: BTreeMap<Function, LambdaFigures>,
) -> CostReport {
    let p = Prices::list();
    let n = executed.max(1) as f64;
    let empty_receives = usage.operations.get(EMPTY_RECEIVE).map_or(0, |o| o.calls);
    let mut billed = usage.operations.clone();
    billed.remove(EMPTY_RECEIVE);
    let t = UsageReport::from_ops(billed).total;
    let invocations: u64 = lambda.values().map(|l| l.invocations).sum();
    let gb_s: f64 = lambda.values().map(|l| l.gb_s).sum();
    let (wru, rru) = (t.wru() / n, t.rru / n);
    let sqs = t.sqs_requests as f64 / n;
    let dynamo_on_demand = wru * p.dynamodb_on_demand_usd_per_million_wru
        + rru * p.dynamodb_on_demand_usd_per_million_rru;
    let dynamo_provisioned =
        wru * Prices::provisioned_per_million(
            p.dynamodb_provisioned_usd_per_wcu_hour,
            p.dynamodb_provisioned_utilization,
        ) + rru
            * Prices::provisioned_per_million(
                p.dynamodb_provisioned_usd_per_rcu_hour,
                p.dynamodb_provisioned_utilization,
            );
    let sqs_usd = sqs * p.sqs_usd_per_million_requests;
    let lambda_usd = gb_s / n * p.lambda_usd_per_gb_s * 1_000_000.0
        + invocations as f64 / n * p.lambda_usd_per_million_requests;
    CostReport {
        steps,
        executed_steps: executed,
        payload_bytes,
        mix,
        table_writes_per_step: t.table_writes as f64 / n,
        index_writes_per_step: t.index_writes as f64 / n,
        table_wru_per_step: t.table_wru / n,
        index_wru_per_step: t.index_wru / n,
        wru_per_step: wru,
        rru_per_step: rru,
        sqs_requests_per_step: sqs,
        lambda_invocations_per_step: invocations as f64 / n,
        lambda_gb_s_per_step: gb_s / n,
        usd_per_million_on_demand: dynamo_on_demand + sqs_usd + lambda_usd,
        usd_per_million_provisioned: dynamo_provisioned + sqs_usd + lambda_usd,
        usd_per_million: UsdBreakdown {
            dynamodb_on_demand: dynamo_on_demand,
            dynamodb_provisioned: dynamo_provisioned,
            sqs: sqs_usd,
            lambda: lambda_usd,
        },
        eventbridge_scheduler_usd_per_million: p.eventbridge_scheduler_usd_per_million,
        prices: p,
        lambda,
        operations: usage.operations.clone(),
        empty_receives,
    }
}

/// Runs the day and measures it.
async fn simulate(args: &CostArgs) -> Result<CostReport, String> {
    let start: DateTime<Utc> = DAY_START.parse().map_err(|e| format!("{e}"))?;
    let world = Embedded::new(start, EmbeddedSettings::default());
    for def in definitions(args.steps, args.mix, args.payload_bytes)? {
        world
            .definitions
            .put(&def)
            .await
            .map_err(|e| e.to_string())?;
    }
    // Loading the definitions is their owner's cost, not the flow's.
    world.definitions.usage().reset();
    let memory = memory_of(&args.memory_mb);
    let mut calls = Invocations::default();
    let bar = crate::output::progress(Some(24 * 12), args.json, "simulating the day");

    // 00:00: the full pass, and a second pass over the same window.
    let first = ScanRequest::daily(Timestamp::from_datetime(start), &world.scanner.settings);
    for _ in 0..2 {
        let t = Instant::now();
        world.scan(&first).await.map_err(|e| e.to_string())?;
        calls.record(Function::Scanner, t.elapsed());
    }
    let end = start + chrono::Duration::days(1) + chrono::Duration::minutes(10);
    let window =
        chrono::Duration::from_std(world.scheduler.settings.window).map_err(|e| e.to_string())?;
    let mut next_schedule = start;
    let mut next_scan = start + chrono::Duration::hours(2);
    let mut executed = 0;
    let mut run = 0;
    while world.clock.now() < end {
        let now = world.clock.now();
        if now >= next_scan && now < start + chrono::Duration::days(1) {
            // Hourly incremental runs from the recorded horizon (01:00 was the second pass).
            let t = Instant::now();
            let horizon = world
                .memory_store
                .scan_horizon()
                .await
                .map_err(|e| e.to_string())?;
            let request = ScanRequest::incremental(
                Timestamp::from_datetime(now),
                horizon,
                &world.scanner.settings,
            );
            world.scan(&request).await.map_err(|e| e.to_string())?;
            calls.record(Function::Scanner, t.elapsed());
            next_scan += chrono::Duration::hours(1);
        }
        if now >= next_schedule {
            run += 1;
            let t = Instant::now();
            world
                .schedule(&format!("cost-run-{run}"))
                .await
                .map_err(|e| e.to_string())?;
            calls.record(Function::Scheduler, t.elapsed());
            next_schedule += window;
            bar.inc(1);
        }
        executed += execute_ready(&world, &mut calls).await?;
        world.clock.advance_to(now + chrono::Duration::seconds(1));
    }
    bar.finish_and_clear();
    let usage = world
        .memory_store
        .usage()
        .snapshot()
        .merged(&world.definitions.usage().snapshot())
        .merged(&world.execution_queue.usage().snapshot())
        .merged(&world.action_queue.usage().snapshot());
    let lambda = calls
        .by_function
        .iter()
        .map(|(f, (n, secs))| {
            let mb = memory.get(f).copied().unwrap_or(0);
            let figures = LambdaFigures {
                memory_mb: mb,
                invocations: *n,
                billed_seconds: *secs,
                gb_s: secs * f64::from(mb) / 1024.0,
            };
            (*f, figures)
        })
        .collect();
    Ok(report(
        args.steps,
        args.payload_bytes,
        args.mix,
        executed,
        &usage,
        lambda,
    ))
}

/// Delivers what is visible on the execution queue as the event source mapping does:
/// batches of 10, one invocation each, the acknowledged deleted in one request.
async fn execute_ready(world: &Embedded, calls: &mut Invocations) -> Result<u64, String> {
    let mut executed = 0;
    loop {
        let batch = world
            .execution_queue
            .receive(SQS_MAX_RECEIVE as u32, Duration::ZERO)
            .await
            .map_err(|e| e.to_string())?;
        if batch.is_empty() {
            return Ok(executed);
        }
        let t = Instant::now();
        let handled = join_all(batch.iter().map(|m| async move {
            let incoming = Incoming {
                message_id: &m.message_id,
                delivery_id: &m.receipt_handle,
                body: &m.body,
                receive_count: m.receive_count,
                deadline: None,
            };
            (m, world.executor.handle(incoming, &world.metrics).await)
        }))
        .await;
        let mut done = Vec::new();
        for (m, outcome) in &handled {
            let ok = match outcome {
                Outcome::Deferred { delay } => world
                    .execution_queue
                    .send_batch(&[OutgoingMessage {
                        id: m.message_id.clone(),
                        body: m.body.clone(),
                        delay: *delay,
                    }])
                    .await
                    .is_ok_and(|r| r.failed.is_empty()),
                other => other.acknowledge(),
            };
            if ok {
                done.push(m.receipt_handle.as_str());
            }
            if matches!(outcome, Outcome::Executed { .. }) {
                executed += 1;
            }
        }
        world.execution_queue.delete_batch(&done);
        calls.record(Function::Executor, t.elapsed());
    }
}

pub async fn run(args: CostArgs, out: &mut dyn Write) -> Result<(), CliError> {
    let report = simulate(&args).await.map_err(CliError::Failed)?;
    if report.executed_steps == 0 {
        return Err(CliError::Failed(
            "no step was executed: nothing to divide the cost by".to_owned(),
        ));
    }
    if args.json {
        crate::output::json_line(out, &report)
    } else {
        crate::output::line(out, &render(&report))
    }
}

/// The report for people.
pub fn render(r: &CostReport) -> String {
    let p = &r.prices;
    let mut s = String::new();
    let mut line = |text: String| {
        s.push_str(&text);
        s.push('\n');
    };
    line(format!(
        "wfs cost: {} executed steps ({:?} definitions, payload {} bytes) on the embedded twin, one day",
        r.executed_steps, r.mix, r.payload_bytes
    ));
    line(String::new());
    line("per executed step".to_owned());
    let rows: Vec<(&str, String)> = vec![
        ("table writes", format!("{:.3}", r.table_writes_per_step)),
        ("index writes", format!("{:.3}", r.index_writes_per_step)),
        ("table WRU", format!("{:.3}", r.table_wru_per_step)),
        ("index WRU", format!("{:.3}", r.index_wru_per_step)),
        ("WRU (table + index)", format!("{:.3}", r.wru_per_step)),
        ("RRU", format!("{:.3}", r.rru_per_step)),
        ("SQS requests", format!("{:.3}", r.sqs_requests_per_step)),
        (
            "Lambda invocations",
            format!("{:.3}", r.lambda_invocations_per_step),
        ),
        ("Lambda GB-s", format!("{:.6}", r.lambda_gb_s_per_step)),
    ];
    for (k, v) in rows {
        line(format!("  {k:<22} {v:>12}"));
    }
    line(String::new());
    line(format!("USD per million steps ({}, list prices)", p.region));
    let b = &r.usd_per_million;
    for (k, v) in [
        ("DynamoDB on-demand", b.dynamodb_on_demand),
        ("DynamoDB provisioned", b.dynamodb_provisioned),
        ("SQS", b.sqs),
        ("Lambda", b.lambda),
        ("total, on-demand", r.usd_per_million_on_demand),
        ("total, provisioned", r.usd_per_million_provisioned),
        (
            "EventBridge Scheduler",
            r.eventbridge_scheduler_usd_per_million,
        ),
    ] {
        line(format!("  {k:<22} {v:>12.4}"));
    }
    line(String::new());
    line("Lambda (measured on this machine)".to_owned());
    for (f, l) in &r.lambda {
        line(format!(
            "  {:<10} {:>5} MB {:>7} invocations {:>10.3} s billed {:>10.4} GB-s",
            format!("{f:?}").to_lowercase(),
            l.memory_mb,
            l.invocations,
            l.billed_seconds,
            l.gb_s
        ));
    }
    line(String::new());
    line("the run's requests by operation".to_owned());
    let ops = UsageReport::from_ops(r.operations.clone());
    for l in ops.to_string().lines() {
        line(format!("  {l}"));
    }
    line(String::new());
    line(format!(
        "prices: DynamoDB on-demand ${}/M WRU, ${}/M RRU; provisioned ${}/WCU-h, ${}/RCU-h at {:.0}% \
         utilization; SQS ${}/M requests; Lambda {} ${}/GB-s (x86_64 ${}) + ${}/M requests; \
         EventBridge Scheduler ${}/M",
        p.dynamodb_on_demand_usd_per_million_wru,
        p.dynamodb_on_demand_usd_per_million_rru,
        p.dynamodb_provisioned_usd_per_wcu_hour,
        p.dynamodb_provisioned_usd_per_rcu_hour,
        p.dynamodb_provisioned_utilization * 100.0,
        p.sqs_usd_per_million_requests,
        p.lambda_architecture,
        p.lambda_usd_per_gb_s,
        prices::LAMBDA_GB_S_X86_64,
        p.lambda_usd_per_million_requests,
        p.eventbridge_scheduler_usd_per_million,
    ));
    line(format!(
        "not per step: {} empty receives (the event source mapping's polling, a fixed cost of \
         the queue); scheduler and hourly scanner runs are a fixed cost a day, shared by the \
         day's steps",
        r.empty_receives
    ));
    s.trim_end().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use schedule_core::recurrence::Window;

    #[test]
    fn memory_overrides_apply_in_order() {
        let m = memory_of(&[memory("1024").unwrap(), memory("executor=128").unwrap()]);
        assert_eq!(m[&Function::Scanner], 1024);
        assert_eq!(m[&Function::Executor], 128);
        assert!(memory("planner=256").unwrap_err().contains("planner"));
        assert!(memory("64").unwrap_err().contains("\"64\""));
    }

    #[test]
    fn the_day_holds_exactly_the_steps_asked_for() {
        for (n, mix) in [(1000, Mix::Mixed), (7, Mix::Repeating), (3, Mix::Once)] {
            let defs = definitions(n, mix, 100).unwrap();
            let start: DateTime<Utc> = DAY_START.parse().unwrap();
            let from = Timestamp::from_datetime(start);
            let to = Timestamp::from_datetime(start + chrono::Duration::days(1));
            let total: usize = defs
                .iter()
                .map(|d| {
                    schedule_core::recurrence::occurrences(&d.schedule, Window::new(from, to))
                        .unwrap()
                        .len()
                })
                .sum();
            assert_eq!(total as u64, n, "{mix:?}");
            let payload = serde_json::to_string(&defs[0].payload).unwrap();
            assert_eq!(payload.len(), 100);
        }
    }

    #[test]
    fn the_memory_sizes_and_architecture_are_the_templates() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml");
        let template = std::fs::read_to_string(path).unwrap();
        // A resource's body: the lines indented deeper than its name.
        let function = |name: &str| {
            let start = template.find(&format!("\n  {name}:\n")).unwrap() + 1;
            template[start..]
                .lines()
                .skip(1)
                .take_while(|l| l.is_empty() || l.starts_with("   "))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let memory_in = |text: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix("MemorySize:"))
                .map(|v| v.trim().parse::<u32>().unwrap())
        };
        let globals = memory_in(&template[template.find("Globals:").unwrap()..]).unwrap();
        for (name, expected) in [
            ("DailyScannerFunction", SCANNER_MEMORY_MB),
            ("SchedulerFunction", SCHEDULER_MEMORY_MB),
            ("ExecutorFunction", EXECUTOR_MEMORY_MB),
        ] {
            let mb = memory_in(&function(name)).unwrap_or(globals);
            assert_eq!(mb, expected, "{name}");
        }
        let arch = &template[template.find("\n  Architecture:\n").unwrap()..];
        let default = arch
            .lines()
            .find_map(|l| l.trim().strip_prefix("Default:"))
            .unwrap()
            .trim();
        assert_eq!(default, TEMPLATE_ARCHITECTURE);
    }

    #[test]
    fn prices_follow_the_units() {
        let usage = UsageReport::from_ops(BTreeMap::from([
            ("UpdateItem".to_owned(), OpUsage::write(4, 2)),
            ("Query".to_owned(), OpUsage::read(2.0)),
            ("SendMessage".to_owned(), OpUsage::sqs(100)),
            (EMPTY_RECEIVE.to_owned(), OpUsage::sqs(0)),
        ]));
        let r = report(2, 100, Mix::Once, 2, &usage, BTreeMap::new());
        assert_eq!(r.wru_per_step, 3.0);
        assert_eq!(r.rru_per_step, 1.0);
        assert_eq!(
            r.sqs_requests_per_step, 0.5,
            "empty receives are not per step"
        );
        assert_eq!(r.empty_receives, 1);
        let expected = 3.0 * 0.625 + 1.0 * 0.125 + 0.5 * 0.40;
        assert!((r.usd_per_million_on_demand - expected).abs() < 1e-9);
        // Provisioned: 1e6 / (3600 * 0.7) WCU-hours per million WRU.
        let wcu = 1e6 / 2520.0 * 0.00065;
        let rcu = 1e6 / 2520.0 * 0.00013;
        let expected = 3.0 * wcu + rcu + 0.5 * 0.40;
        assert!((r.usd_per_million_provisioned - expected).abs() < 1e-9);
    }
}
