//! The operator commands on a fixed embedded world (a manual clock, known definitions, a
//! scan, 20 minutes of scheduler and executor): their library functions, the human output
//! of `plan`, `explain` and `status` against snapshots, the JSON shapes, and the binary's
//! help, version and exit codes.
//!
//! Snapshots live in `tests/snapshots/`; `WFS_UPDATE_SNAPSHOTS=1 cargo test -p wfs-cli`
//! rewrites them (review the diff).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::Command;

use chrono::{DateTime, NaiveDate, Utc};
use schedule_core::app::scan::ScanRequest;
use schedule_core::embedded::{Embedded, EmbeddedSettings};
use schedule_core::model::{Definition, DeviceId, StepId, TenantId, Timestamp};
use schedule_core::ports::{Clock, DefinitionSource};
use serde_json::{Value, json};
use wfs_cli::definitions::{self, Input};
use wfs_cli::status::DepthDyn;
use wfs_cli::{explain, export, plan, status};

const START: &str = "2026-11-26T08:00:00Z";

fn t(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn tenant(s: &str) -> TenantId {
    TenantId::parse(s).unwrap()
}

fn step(s: &str) -> StepId {
    StepId::parse(s).unwrap()
}

fn def(tenant: &str, step: &str, device: &str, schedule: Value) -> Value {
    json!({"tenant_id": tenant, "device_workflow_step_id": step, "workflow_id": "irrigation",
           "device_id": device, "enabled": true, "version": 1, "schedule": schedule,
           "payload": {"action": step}})
}

/// acme: a 15-minute rate on valve-1, a one-time step on pump-2 at 08:07:30, a step on an
/// inactive device at 08:05; beta: one step at 09:00. Scanned at 08:00, then 20 minutes of
/// scheduler (every 5 minutes) and executor (every second).
async fn world() -> Embedded {
    let start: DateTime<Utc> = START.parse().unwrap();
    let world = Embedded::new(start, EmbeddedSettings::default());
    for v in [
        def(
            "acme",
            "water",
            "valve-1",
            json!({"type": "rate", "every": "15m", "start": "2026-11-26T08:00:00Z", "end": "2026-11-26T10:00:00Z"}),
        ),
        def(
            "acme",
            "flush",
            "pump-2",
            json!({"type": "once", "at": "2026-11-26T08:07:30Z"}),
        ),
        def(
            "acme",
            "read",
            "sensor-9",
            json!({"type": "once", "at": "2026-11-26T08:05:00Z"}),
        ),
        def(
            "beta",
            "open",
            "gate-1",
            json!({"type": "once", "at": "2026-11-26T09:00:00Z"}),
        ),
    ] {
        world
            .definitions
            .put(&Definition::from_json(&v).unwrap())
            .await
            .unwrap();
    }
    world
        .registry
        .deactivate(&tenant("acme"), &DeviceId::parse("sensor-9").unwrap());
    world
        .scan(&ScanRequest::daily(t(START), &Default::default()))
        .await
        .unwrap();
    let end = start + chrono::Duration::minutes(20);
    let mut next_run = start;
    let mut run = 0;
    while world.clock.now() < end {
        let now = world.clock.now();
        if now >= next_run {
            run += 1;
            world.schedule(&format!("run-{run}")).await.unwrap();
            next_run = now + chrono::Duration::minutes(5);
        }
        world.execute_ready().await.unwrap();
        world.clock.advance_to(now + chrono::Duration::seconds(1));
    }
    world
}

fn snapshot(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{name}.txt"));
    if std::env::var_os("WFS_UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (WFS_UPDATE_SNAPSHOTS=1 writes it)", path.display()));
    assert_eq!(
        actual, expected,
        "snapshot {name} differs (WFS_UPDATE_SNAPSHOTS=1 rewrites it)"
    );
}

fn date() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, 26).unwrap()
}

#[tokio::test]
async fn plan_lists_the_tenants_day_in_time_order_with_status_and_lateness() {
    let w = world().await;
    let rows = plan::plan(&*w.memory_store, &tenant("acme"), date(), &*w.clock)
        .await
        .unwrap();
    // water every 15 min from 08:00 up to the scan's horizon, flush, read; not beta's.
    assert!(rows.iter().all(|r| r.step != "open"));
    let times: Vec<&str> = rows.iter().map(|r| r.scheduled_time.as_str()).collect();
    let mut sorted = times.clone();
    sorted.sort_unstable();
    assert_eq!(times, sorted);
    let status_of = |step: &str, at: &str| {
        rows.iter()
            .find(|r| r.step == step && r.scheduled_time == at)
            .map(|r| r.status.clone())
    };
    assert_eq!(
        status_of("water", "2026-11-26T08:15:00Z").as_deref(),
        Some("EXECUTED")
    );
    assert_eq!(
        status_of("flush", "2026-11-26T08:07:30Z").as_deref(),
        Some("EXECUTED")
    );
    assert_eq!(
        status_of("read", "2026-11-26T08:05:00Z").as_deref(),
        Some("SKIPPED")
    );
    assert_eq!(
        status_of("water", "2026-11-26T09:00:00Z").as_deref(),
        Some("PENDING")
    );
    snapshot("plan", &plan::render(&tenant("acme"), date(), &rows));

    let json = serde_json::to_value(&rows).unwrap();
    let first = &json[0];
    for key in [
        "scheduled_time",
        "step",
        "device",
        "status",
        "lateness_ms",
        "retries",
        "definition_version",
    ] {
        assert!(
            first.get(key).is_some(),
            "plan --json row lacks {key}: {first}"
        );
    }
}

#[tokio::test]
async fn explain_tells_an_executed_a_skipped_and_a_missing_occurrence() {
    let w = world().await;
    let e = explain::explain(
        &*w.memory_store,
        &*w.definitions,
        &tenant("acme"),
        &step("flush"),
        t("2026-11-26T08:07:30Z"),
    )
    .await
    .unwrap();
    let occ = e.occurrence.as_ref().unwrap();
    assert_eq!(occ.status, "EXECUTED");
    assert!(occ.executed_at.is_some() && occ.queued_at.is_some());
    assert_eq!(e.definition.as_ref().unwrap().yields_time, Some(true));
    snapshot("explain-executed", &explain::render(&e));

    let skipped = explain::explain(
        &*w.memory_store,
        &*w.definitions,
        &tenant("acme"),
        &step("read"),
        t("2026-11-26T08:05:00Z"),
    )
    .await
    .unwrap();
    assert_eq!(skipped.occurrence.as_ref().unwrap().status, "SKIPPED");
    snapshot("explain-skipped", &explain::render(&skipped));

    // Off the rule's grid: not materialized, the definition does not yield it, exit 1.
    let missing = explain::explain(
        &*w.memory_store,
        &*w.definitions,
        &tenant("acme"),
        &step("water"),
        t("2026-11-26T08:10:00Z"),
    )
    .await
    .unwrap();
    assert!(missing.occurrence.is_none());
    assert_eq!(
        missing.definition.as_ref().unwrap().yields_time,
        Some(false)
    );
    let mut out = Vec::new();
    let err = explain::print_explanation(&missing, true, &mut out).unwrap_err();
    assert_eq!(err.exit_code(), 1);
    let v: Value = serde_json::from_slice(&out).unwrap();
    for key in [
        "tenant_id",
        "device_workflow_step_id",
        "scheduled_time",
        "occurrence",
        "definition",
        "story",
    ] {
        assert!(v.get(key).is_some(), "explain --json lacks {key}: {v}");
    }
}

#[tokio::test]
async fn status_counts_what_the_scheduler_still_needs_and_the_queues() {
    let w = world().await;
    let queues: Vec<(&str, &dyn DepthDyn)> = vec![
        ("execution", &*w.execution_queue),
        ("execution-dlq", &*w.execution_dlq),
    ];
    let r = status::status(&*w.memory_store, &*w.clock, &queues)
        .await
        .unwrap();
    let pending_items = w
        .memory_store
        .items()
        .iter()
        .filter(|i| i.status == schedule_core::model::Status::Pending)
        .count();
    assert!(pending_items > 0);
    assert_eq!(r.totals.get("PENDING"), Some(&pending_items));
    assert_eq!(
        r.indexed
            .iter()
            .filter(|c| c.status == "PENDING")
            .map(|c| c.count)
            .sum::<usize>(),
        pending_items
    );
    assert_eq!(
        r.oldest
            .iter()
            .find(|o| o.status == "PENDING")
            .unwrap()
            .scheduled_time,
        "2026-11-26T08:30:00Z"
    );
    assert!(r.scan_horizon.is_some());
    snapshot("status", &status::render(&r));
    let v = serde_json::to_value(&r).unwrap();
    for key in [
        "indexed",
        "totals",
        "oldest",
        "scan_horizon",
        "max_status_shards",
        "queues",
    ] {
        assert!(v.get(key).is_some(), "status --json lacks {key}: {v}");
    }
}

#[tokio::test]
async fn export_reads_every_tenant_of_the_definitions_table_in_the_range() {
    let w = world().await;
    let records = export::export_records(
        &*w.memory_store,
        &*w.definitions,
        t("2026-11-26T08:00:00Z"),
        t("2026-11-26T09:00:01Z"),
        None,
        &*w.clock,
        |_| {},
    )
    .await
    .unwrap();
    let beta: Vec<_> = records.iter().filter(|r| r.tenant_id == "beta").collect();
    assert_eq!(beta.len(), 1);
    assert_eq!(beta[0].scheduled_time, "2026-11-26T09:00:00Z");
    let executed = records
        .iter()
        .find(|r| r.device_workflow_step_id == "flush")
        .unwrap();
    assert_eq!(executed.status, "EXECUTED");
    assert!(executed.sent_at.is_some());
    assert!(beta[0].sent_at.is_none());
    // The stable shape: exactly these fields (sent_at only when sent).
    let v = serde_json::to_value(executed).unwrap();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "device_workflow_step_id",
            "execution_id",
            "mode",
            "scheduled_time",
            "sent_at",
            "status",
            "tenant_id"
        ]
    );
    assert_eq!(v["mode"], "active");
    // One tenant, half-open range: 09:00 is out.
    let acme = export::export_records(
        &*w.memory_store,
        &*w.definitions,
        t("2026-11-26T08:00:00Z"),
        t("2026-11-26T09:00:00Z"),
        Some(&tenant("acme")),
        &*w.clock,
        |_| {},
    )
    .await
    .unwrap();
    assert!(
        acme.iter()
            .all(|r| r.tenant_id == "acme" && r.scheduled_time.as_str() < "2026-11-26T09:00:00Z")
    );
    assert_eq!(acme.len(), 4 + 2); // water 08:00..08:45, flush, read
    let bad = export::export_records(
        &*w.memory_store,
        &*w.definitions,
        t("2026-11-26T09:00:00Z"),
        t("2026-11-26T08:00:00Z"),
        None,
        &*w.clock,
        |_| {},
    )
    .await;
    assert!(
        bad.unwrap_err()
            .to_string()
            .contains("'from' must be before 'to'")
    );
}

#[tokio::test]
async fn definitions_put_bumps_versions_names_rejections_and_disable_delete_edit_the_table() {
    let w = Embedded::new(START.parse().unwrap(), EmbeddedSettings::default());
    let now = t(START);
    let good = def(
        "acme",
        "water",
        "valve-1",
        json!({"type": "once", "at": "2026-11-26T10:00:00Z"}),
    );
    let mut bad = good.clone();
    bad["device_workflow_step_id"] = json!("s2");
    bad["schedule"] = json!({"type": "cron", "expression": "0 8 * * *", "timezone": "Mars/Base"});
    let inputs = vec![
        Input {
            origin: "a.json:1".into(),
            value: good.clone(),
        },
        Input {
            origin: "a.json:2".into(),
            value: bad,
        },
    ];
    let out = definitions::put_definitions(&*w.definitions, &inputs, now, || {}).await;
    assert_eq!(out[0].version, Some(1));
    let err = out[1].error.as_deref().unwrap();
    assert!(
        err.contains("schedule.timezone") && err.contains("Mars/Base"),
        "{err}"
    );
    assert_eq!(out[1].name(), "a.json:2 (acme/s2)");
    // The same file again: the stored version is 1, so it is written as 2.
    let again = definitions::put_definitions(&*w.definitions, &inputs[..1], now, || {}).await;
    assert_eq!(again[0].version, Some(2));
    let mut sink = Vec::new();
    let e = definitions::report_put(&out, true, &mut sink).unwrap_err();
    assert_eq!(e.exit_code(), 1);
    let lines: Vec<Value> = String::from_utf8(sink)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[1]["error"].as_str(), Some(err));

    let disabled =
        definitions::disable_definition(&*w.definitions, &tenant("acme"), &step("water"), now)
            .await
            .unwrap();
    assert!(!disabled.enabled);
    assert_eq!(disabled.version, 3);
    let listed = definitions::list_definitions(&*w.definitions, Some(&tenant("acme")), &*w.clock)
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert!(definitions::render_list(&listed).contains("acme    water  valve-1  no       3"));
    assert!(
        definitions::delete_definition(&*w.definitions, &tenant("acme"), &step("water"))
            .await
            .unwrap()
    );
    assert!(
        !definitions::delete_definition(&*w.definitions, &tenant("acme"), &step("water"))
            .await
            .unwrap()
    );
    assert!(
        definitions::get_definition(&*w.definitions, &tenant("acme"), &step("water"))
            .await
            .unwrap()
            .is_none()
    );
    let missing =
        definitions::disable_definition(&*w.definitions, &tenant("acme"), &step("water"), now)
            .await;
    assert_eq!(missing.unwrap_err().to_string(), "no definition acme/water");
}

// ---- The binary: help, version, exit codes. ----

fn wfs(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wfs"));
    cmd.args(args).env_remove("RUST_LOG");
    for var in [
        "SCHEDULE_TABLE",
        "DEFINITIONS_TABLE",
        "EXECUTION_QUEUE_URL",
        "EXECUTION_DLQ_URL",
        "STATUS_SHARDS",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_commands_help_matches_its_snapshot_and_shows_an_example() {
    let commands: &[&[&str]] = &[
        &[],
        &["demo"],
        &["setup-local"],
        &["preview"],
        &["definitions"],
        &["definitions", "put"],
        &["definitions", "get"],
        &["definitions", "list"],
        &["definitions", "disable"],
        &["definitions", "delete"],
        &["plan"],
        &["explain"],
        &["status"],
        &["dlq"],
        &["dlq", "list"],
        &["dlq", "redrive"],
        &["backfill"],
        &["export"],
        &["tenants"],
        &["tenants", "mode"],
        &["tenants", "list"],
        &["reconcile"],
        &["cost"],
    ];
    for path in commands {
        let mut args = path.to_vec();
        args.push("--help");
        let (code, stdout, stderr) = wfs(&args, &[]);
        assert_eq!(code, 0, "{args:?}: {stderr}");
        let is_group = path.is_empty() || path == &["definitions"] || path == &["dlq"];
        assert!(
            is_group || stdout.contains("Example:"),
            "{args:?} help has no example:\n{stdout}"
        );
        let name = if path.is_empty() {
            "wfs".to_owned()
        } else {
            format!("wfs-{}", path.join("-"))
        };
        snapshot(&format!("help-{name}"), &stdout);
    }
}

#[test]
fn version_usage_errors_and_findings_have_their_exit_codes() {
    let (code, stdout, _) = wfs(&["--version"], &[]);
    assert_eq!(
        (code, stdout.trim()),
        (0, format!("wfs {}", env!("CARGO_PKG_VERSION")).as_str())
    );
    for args in [
        &["launch"][..],
        &[],
        &["plan", "--tenant", "acme"],
        &[
            "plan",
            "--tenant",
            "acme",
            "--date",
            "26/11/2026",
            "--schedule-table",
            "t",
        ],
        &[
            "plan",
            "--tenant",
            "a#b",
            "--date",
            "2026-11-26",
            "--schedule-table",
            "t",
        ],
        &[
            "explain",
            "--tenant",
            "acme",
            "--step",
            "s",
            "--at",
            "noon",
            "--schedule-table",
            "t",
            "--definitions-table",
            "d",
        ],
        &[
            "dlq",
            "redrive",
            "--max",
            "0",
            "--queue-url",
            "q",
            "--dlq-url",
            "d",
        ],
        &["definitions", "put"],
    ] {
        let (code, stdout, stderr) = wfs(args, &[]);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?} printed {stdout}");
        assert!(!stderr.is_empty());
    }
    let (_, _, stderr) = wfs(
        &[
            "plan",
            "--tenant",
            "a#b",
            "--date",
            "2026-11-26",
            "--schedule-table",
            "t",
        ],
        &[],
    );
    assert!(stderr.contains("invalid tenant_id \"a#b\""), "{stderr}");
    let (_, _, stderr) = wfs(&["plan", "--tenant", "acme", "--date", "2026-11-26"], &[]);
    assert!(stderr.contains("--schedule-table"), "{stderr}");

    // A finding: a rejected definition exits 1 and names file:position, tenant/step,
    // field and value on stderr (nothing reaches the table: validation comes first).
    let dir = std::env::temp_dir().join(format!("wfs-commands-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.jsonl");
    let bad = def(
        "acme",
        "s2",
        "d",
        json!({"type": "cron", "expression": "0 8 * * *", "timezone": "Mars/Base"}),
    );
    let mut bad_id = bad.clone();
    bad_id["tenant_id"] = json!("a#b");
    std::fs::write(&file, format!("{bad}\n{bad_id}\n")).unwrap();
    let path = file.to_str().unwrap();
    let (code, stdout, stderr) = wfs(
        &["definitions", "put", path],
        &[("DEFINITIONS_TABLE", "defs"), ("AWS_REGION", "us-east-1")],
    );
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(stdout, "0 written, 2 rejected\n");
    assert!(
        stderr.contains(&format!("rejected {path}:1 (acme/s2): ")) && stderr.contains("Mars/Base"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "rejected {path}:2 (a#b/s2): invalid tenant_id \"a#b\""
        )),
        "{stderr}"
    );
    let (code, stdout, _) = wfs(
        &["definitions", "put", "--json", path],
        &[("DEFINITIONS_TABLE", "defs"), ("AWS_REGION", "us-east-1")],
    );
    assert_eq!(code, 1);
    let rows: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["origin"], format!("{path}:1"));
    assert!(rows[0]["error"].as_str().unwrap().contains("Mars/Base"));
}

#[tokio::test]
async fn dlq_list_names_each_message_and_deletes_nothing() {
    use schedule_core::ports::{DispatchQueue, OutgoingMessage};
    let w = world().await;
    let msg = |id: &str, body: &str| OutgoingMessage {
        id: id.into(),
        body: body.into(),
        delay: std::time::Duration::ZERO,
    };
    let item = w.memory_store.items().into_iter().next().unwrap();
    let body = json!({"v": 1, "PK": item.key.pk, "SK": item.key.sk, "scheduled_time": item.scheduled_time.to_string()}).to_string();
    w.execution_dlq
        .send_batch(&[msg("a", &body), msg("b", "not json")])
        .await
        .unwrap();
    let report = wfs_cli::dlq::list_dead(&*w.execution_dlq, None, std::time::Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(report.entries.len(), 2);
    assert_eq!(w.execution_dlq.len(), 2, "listing deleted a message");
    let text = wfs_cli::dlq::render(&report);
    let occurrence = format!("{}/{}", item.key.pk, item.key.sk);
    assert!(
        text.contains("would-redrive\t") && text.contains(&occurrence),
        "{text}"
    );
    assert!(text.contains("left-malformed"), "{text}");
    assert_eq!(wfs_cli::dlq::finish(&report).unwrap_err().exit_code(), 1);
}

#[tokio::test]
async fn backfill_materializes_a_range_once() {
    let w = world().await;
    let metrics = schedule_core::metrics::Metrics::new("test");
    let (from, to) = (t("2026-11-28T00:00:00Z"), t("2026-11-28T06:00:00Z"));
    let first = wfs_cli::backfill::backfill(&w.scanner, from, to, Some(tenant("beta")), &metrics)
        .await
        .unwrap();
    // beta's only step is on the 26th; acme's water ends at 10:00 on the 26th.
    assert_eq!(first.created, 0);
    let (from, to) = (t("2026-11-26T09:30:00Z"), t("2026-11-26T12:00:00Z"));
    let before = w.memory_store.items().len();
    let again = wfs_cli::backfill::backfill(&w.scanner, from, to, None, &metrics)
        .await
        .unwrap();
    assert_eq!((again.created, again.already_present), (0, 2), "{again:?}");
    assert_eq!(w.memory_store.items().len(), before);
    let text = wfs_cli::backfill::render(&again);
    assert!(
        text.lines()
            .any(|l| l.starts_with("already_present ") && l.ends_with(" 2")),
        "{text}"
    );
    let bad = wfs_cli::backfill::backfill(&w.scanner, to, from, None, &metrics).await;
    assert!(
        bad.unwrap_err()
            .to_string()
            .contains("'from' must be before 'to'")
    );
}

#[test]
fn cost_prints_one_priced_json_object_and_refuses_bad_flags_naming_them() {
    let (code, stdout, stderr) = wfs(
        &["cost", "--steps", "40", "--payload-bytes", "4096", "--json"],
        &[],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim().lines().count(), 1, "one object on stdout");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    for field in [
        "wru_per_step",
        "rru_per_step",
        "sqs_requests_per_step",
        "lambda_gb_s_per_step",
        "usd_per_million_on_demand",
        "usd_per_million_provisioned",
        "prices",
        "steps",
        "payload_bytes",
        "table_writes_per_step",
        "index_writes_per_step",
        "lambda_invocations_per_step",
        "operations",
    ] {
        assert!(v.get(field).is_some(), "no {field} in {v}");
    }
    assert_eq!(v["executed_steps"], 40);
    assert_eq!(v["payload_bytes"], 4096);
    assert_eq!(v["prices"]["dynamodb_on_demand_usd_per_million_wru"], 0.625);
    // A 4 KB payload is stored apart: every update (status, lease) is one unit.
    let updates = &v["operations"]["UpdateItem"];
    assert_eq!(
        updates["table_wru"].as_f64(),
        updates["table_writes"].as_f64()
    );
    let per_step = |k: &str| v[k].as_f64().unwrap();
    assert!(
        (per_step("wru_per_step")
            - per_step("table_wru_per_step")
            - per_step("index_wru_per_step"))
        .abs()
            < 1e-9
    );
    assert!(per_step("usd_per_million_provisioned") < per_step("usd_per_million_on_demand"));

    for (args, named) in [
        (&["cost", "--steps", "0"][..], ["--steps", "0"]),
        (
            &["cost", "--payload-bytes", "5"][..],
            ["--payload-bytes", "5"],
        ),
        (
            &["cost", "--memory-mb", "planner=256"][..],
            ["--memory-mb", "planner"],
        ),
        (&["cost", "--mix", "weekly"][..], ["--mix", "weekly"]),
    ] {
        let (code, stdout, stderr) = wfs(args, &[]);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}");
        for n in named {
            assert!(stderr.contains(n), "{args:?}: {stderr}");
        }
    }
}
