//! `wfs demo`: the whole flow on the embedded backend — definitions, the daily scan, the
//! 5-minute scheduler and the executor — on a clock that runs in real time or faster.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use schedule_core::app::scan::ScanRequest;
use schedule_core::embedded::{Embedded, EmbeddedSettings};
use schedule_core::model::{
    Definition, DeviceId, Status, TenantId, Timestamp, TriggerMessage, format_span, parse_span,
};
use schedule_core::ports::{Clock, DefinitionSource};
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  wfs demo --speed 0 --duration 2h\n  wfs demo --definitions examples/definitions.json"
)]
pub struct Options {
    /// Definitions to load (a JSON array, or one object per line); default: a built-in sample set
    #[arg(long, value_name = "FILE")]
    definitions: Option<PathBuf>,
    /// Simulated seconds per real second (1 = real time; 0 = as fast as possible)
    #[arg(long, value_name = "N", default_value = "60", value_parser = speed)]
    speed: f64,
    /// How much simulated time to run, like 10m or 2h
    #[arg(long, value_name = "SPAN", default_value = "10m", value_parser = span)]
    duration: Duration,
}

fn speed(raw: &str) -> Result<f64, String> {
    raw.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .ok_or_else(|| "expected a number ≥ 0".to_owned())
}

fn span(raw: &str) -> Result<Duration, String> {
    parse_span("--duration", raw).map_err(|e| e.to_string())
}

/// The built-in sample: a small fleet of one tenant, with one of everything: one-time
/// steps, rates, cron and RRULE rules in three time zones, a disabled step, an inactive
/// device and a definition with a typo in its zone.
fn sample(now: DateTime<Utc>) -> Vec<Value> {
    let at = |s: i64| Timestamp::from_datetime(now + chrono::Duration::seconds(s)).to_string();
    let local = |zone: chrono_tz::Tz, s: i64| {
        (now + chrono::Duration::seconds(s))
            .with_timezone(&zone)
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    let step = |id: &str, device: &str, schedule: Value, payload: Value| {
        json!({"tenant_id": "acme", "device_workflow_step_id": id, "workflow_id": "irrigation", "device_id": device,
               "enabled": true, "version": 1, "schedule": schedule, "payload": payload})
    };
    vec![
        step(
            "open-valve-1",
            "valve-1",
            json!({"type": "once", "at": at(20)}),
            json!({"action": "open_valve"}),
        ),
        step(
            "close-valve-1",
            "valve-1",
            json!({"type": "once", "at": at(140)}),
            json!({"action": "close_valve"}),
        ),
        step(
            "read-meter",
            "meter-7",
            json!({"type": "rate", "every": "1m", "start": at(30)}),
            json!({"action": "read"}),
        ),
        step(
            "flush-pump",
            "pump-3",
            json!({"type": "rate", "every": "5m", "start": at(90)}),
            json!({"action": "flush", "seconds": 30}),
        ),
        step(
            "retired-sensor",
            "sensor-9",
            json!({"type": "once", "at": at(50)}),
            json!({"action": "calibrate"}),
        ),
        json!({"tenant_id": "acme", "device_workflow_step_id": "paused", "workflow_id": "irrigation", "device_id": "valve-2",
               "enabled": false, "version": 1, "schedule": {"type": "once", "at": at(60)}, "payload": {}}),
        step(
            "weekday-report",
            "gateway-1",
            json!({"type": "cron", "expression": "0 8 * * MON-FRI", "timezone": "Asia/Ho_Chi_Minh"}),
            json!({"action": "report"}),
        ),
        // Repeating steps in two more zones, placed so that they fire within the first
        // minutes: every even minute of Berlin's clock from one minute in, and every two
        // minutes of New York's clock from 45 s in.
        step(
            "sprinkle",
            "sprinkler-2",
            json!({"type": "cron", "expression": "*/2 * * * *", "timezone": "Europe/Berlin", "start": at(60)}),
            json!({"action": "sprinkle", "litres": 40}),
        ),
        step(
            "poll-gateway",
            "gateway-2",
            json!({"type": "rrule", "rule": "FREQ=MINUTELY;INTERVAL=2", "timezone": "America/New_York",
                   "dtstart": local(chrono_tz::America::New_York, 45)}),
            json!({"action": "poll"}),
        ),
        step(
            "typo-zone",
            "gateway-1",
            json!({"type": "cron", "expression": "0 8 * * *", "timezone": "Asia/Hanoi_City"}),
            json!({}),
        ),
    ]
}

/// Reads definitions from a file: a JSON array, or one JSON object per line.
pub fn load(path: &PathBuf) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        serde_json::from_str::<Vec<Value>>(trimmed)
            .map_err(|e| format!("{}: not a JSON array of definitions: {e}", path.display()))
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l)
                    .map_err(|e| format!("{} line {}: {e}", path.display(), n + 1))
            })
            .collect()
    }
}

fn short_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub async fn run(options: Options) -> Result<(), String> {
    schedule_core::logging::init(false, "warn");
    let start = Utc::now();
    let world = Embedded::new(start, EmbeddedSettings::default());
    let raw = match &options.definitions {
        Some(path) => load(path)?,
        None => {
            let acme = TenantId::parse("acme").map_err(|e| e.to_string())?;
            world.registry.deactivate(
                &acme,
                &DeviceId::parse("sensor-9").map_err(|e| e.to_string())?,
            );
            sample(start)
        }
    };

    println!(
        "wfs demo: embedded backend, clock from {} at {}x, {} simulated",
        short_time(start),
        options.speed,
        format_span(&options.duration)
    );
    let mut rejected = 0;
    for (i, value) in raw.iter().enumerate() {
        match Definition::from_json(value) {
            Ok(def) => world
                .definitions
                .put(&def)
                .await
                .map_err(|e| e.to_string())?,
            Err(e) => {
                rejected += 1;
                println!("  definition #{} rejected: {e}", i + 1);
            }
        }
    }
    let scan = world
        .scan(&ScanRequest::daily(
            Timestamp::from_datetime(start),
            &Default::default(),
        ))
        .await
        .map_err(|e| e.to_string())?;
    println!(
        "scan {} .. {}: {} definitions ({} rejected, {} disabled) -> {} occurrences, {} for an inactive device (skipped when due)",
        scan.from,
        scan.to,
        scan.definitions + rejected,
        rejected,
        scan.disabled,
        scan.created,
        scan.invalid_device
    );
    println!();
    println!(
        "{:<24}  {:<24}  {:<10}  {:>10}  payload",
        "sent at", "step", "device", "lateness"
    );

    let end = start + chrono::Duration::from_std(options.duration).map_err(|e| e.to_string())?;
    let tick = Duration::from_millis(100);
    let window = world.scheduler.settings.window;
    let mut next_run = start;
    let mut runs = 0;
    let mut printed = 0;
    let mut lateness = Vec::new();
    while world.clock.now() < end {
        let now = world.clock.now();
        if now >= next_run {
            runs += 1;
            world
                .schedule(&format!("demo-run-{runs}"))
                .await
                .map_err(|e| e.to_string())?;
            next_run = now + chrono::Duration::from_std(window).map_err(|e| e.to_string())?;
        }
        world.execute_ready().await.map_err(|e| e.to_string())?;
        let triggers: Vec<TriggerMessage> = world.triggers();
        for t in &triggers[printed..] {
            let sent: DateTime<Utc> = t.sent_at.parse().unwrap_or(now);
            let late = (sent - t.scheduled_time.as_datetime()).num_milliseconds();
            lateness.push(late);
            println!(
                "{:<24}  {:<24}  {:<10}  {:>7} ms  {}",
                t.sent_at,
                format!("{}/{}", t.tenant_id, t.device_workflow_step_id),
                t.device_id,
                late,
                Value::Object(t.payload.clone())
            );
        }
        printed = triggers.len();
        if options.speed > 0.0 {
            tokio::time::sleep(tick.div_f64(options.speed)).await;
        }
        world
            .clock
            .advance_to(now + chrono::Duration::from_std(tick).map_err(|e| e.to_string())?);
    }

    // Occurrences due within the simulated span, by status; the rest of the day's are
    // still PENDING, waiting for their time.
    let mut by_status: BTreeMap<Status, usize> = BTreeMap::new();
    let mut later = 0;
    for item in world.memory_store.items() {
        if item.scheduled_time.as_datetime() < end {
            *by_status.entry(item.status).or_default() += 1;
        } else {
            later += 1;
        }
    }
    println!();
    println!(
        "after {} simulated ({runs} scheduler runs): {printed} triggers sent",
        format_span(&options.duration)
    );
    println!("occurrences due by {}:", short_time(end));
    println!("  {:<10}  {:>6}", "status", "count");
    for (status, n) in &by_status {
        println!("  {:<10}  {:>6}", status.as_str(), n);
    }
    if let Some(max) = lateness.iter().max() {
        println!("lateness: max {max} ms (a trigger is never sent before its scheduled_time)");
    }
    if later > 0 {
        println!(
            "{later} more occurrences are due later in the scanned horizon (run longer with --duration)"
        );
    }
    Ok(())
}
