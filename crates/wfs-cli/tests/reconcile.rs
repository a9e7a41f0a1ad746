//! `wfs reconcile` on a generated legacy export with known misses, extras and late sends:
//! exactly those are reported, in the table and in the JSON form.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use wfs_cli::CliError;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use wfs_cli::reconcile::{
    ReconcileOptions, parse_legacy, parse_new, reconcile, render_json, render_table,
};

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn fmt(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

type Key = (String, String, String);

/// A day of two tenants, every 15 minutes for 6 steps, with chosen defects.
struct Generated {
    legacy: String,
    new: String,
    matched: usize,
    missing: BTreeSet<Key>,
    extra: BTreeSet<Key>,
    late: BTreeSet<(String, String, String, &'static str)>,
}

fn generate() -> Generated {
    let start = t("2026-11-26T00:00:00Z");
    let mut g = Generated {
        legacy: String::new(),
        new: String::new(),
        matched: 0,
        missing: BTreeSet::new(),
        extra: BTreeSet::new(),
        late: BTreeSet::new(),
    };
    let mut n = 0u32;
    for tenant in ["acme", "initech"] {
        for step in 0..6 {
            for slot in 0..96 {
                n += 1;
                let at = start + chrono::Duration::minutes(15 * slot);
                let step_id = format!("s{step}");
                let key = (tenant.to_owned(), step_id.clone(), fmt(at));
                let mut legacy_sent = Some(at + chrono::Duration::seconds(2));
                let mut new_status = "EXECUTED";
                let mut new_sent = Some(at + chrono::Duration::milliseconds(30));
                match n % 97 {
                    // The new flow has nothing.
                    5 => new_status = "",
                    // The new flow skipped it.
                    17 => new_status = "SKIPPED",
                    // The legacy flow lost it.
                    29 | 61 => legacy_sent = None,
                    // The legacy flow sent it 5 minutes late.
                    41 => legacy_sent = Some(at + chrono::Duration::seconds(300)),
                    // The new flow sent it 2 minutes late.
                    73 => new_sent = Some(at + chrono::Duration::seconds(120)),
                    _ => {}
                }
                let mode = if tenant == "initech" {
                    "shadow"
                } else {
                    "active"
                };
                if let Some(sent) = legacy_sent {
                    g.legacy.push_str(&format!(
                        "{}\n",
                        json!({"tenant_id": tenant, "device_workflow_step_id": step_id, "scheduled_time": fmt(at),
                               "sent_at": sent.to_rfc3339(), "legacy_run_id": n})
                    ));
                }
                if !new_status.is_empty() {
                    let mut line = json!({"tenant_id": tenant, "device_workflow_step_id": step_id, "scheduled_time": fmt(at),
                        "status": new_status, "execution_id": format!("e{n}"), "mode": mode});
                    if new_status == "EXECUTED" {
                        line["sent_at"] = json!(new_sent.map(|s| s.to_rfc3339()));
                    }
                    g.new.push_str(&format!("{line}\n"));
                }
                let fired = new_status == "EXECUTED";
                match (legacy_sent.is_some(), fired) {
                    (true, true) => g.matched += 1,
                    (true, false) => {
                        g.missing.insert(key.clone());
                    }
                    (false, true) => {
                        g.extra.insert(key.clone());
                    }
                    (false, false) => {}
                }
                if legacy_sent.is_some_and(|s| (s - at).num_seconds() > 60) {
                    g.late
                        .insert((key.0.clone(), key.1.clone(), key.2.clone(), "legacy"));
                }
                if fired && new_sent.is_some_and(|s| (s - at).num_seconds() > 60) {
                    g.late.insert((key.0, key.1, key.2, "new"));
                }
            }
        }
    }
    // Outside the range, and a bad line: neither is counted.
    g.legacy.push_str(&format!(
        "{}\n",
        json!({"tenant_id": "acme", "device_workflow_step_id": "s0", "scheduled_time": "2026-11-27T00:00:00Z", "sent_at": "2026-11-27T00:00:01Z"})
    ));
    g.legacy
        .push_str("{\"tenant_id\": \"acme\", \"scheduled_time\": \"nope\"}\n");
    g
}

fn options() -> ReconcileOptions {
    ReconcileOptions {
        from: t("2026-11-26T00:00:00Z"),
        to: t("2026-11-27T00:00:00Z"),
        tenant: None,
        late_after: Duration::from_secs(60),
    }
}

fn keys(v: &Value) -> BTreeSet<Key> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["tenant_id"].as_str().unwrap().to_owned(),
                f["device_workflow_step_id"].as_str().unwrap().to_owned(),
                f["scheduled_time"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_generated_export_reports_exactly_its_misses_extras_and_late_sends() {
    let g = generate();
    assert!(!g.missing.is_empty() && !g.extra.is_empty() && !g.late.is_empty());
    let (legacy, bad) = parse_legacy(&g.legacy);
    let line_count = g.legacy.lines().count();
    assert_eq!(bad.len(), 1);
    assert_eq!(
        bad[0].line, line_count,
        "the bad line is named by its number"
    );
    assert!(
        bad[0].reason.contains("device_workflow_step_id"),
        "{}",
        bad[0].reason
    );
    let (new, bad_new) = parse_new(&g.new);
    assert!(bad_new.is_empty());

    let r = reconcile(&legacy, &new, &options());
    let json = render_json(&r);
    assert_eq!(json["matched"].as_u64().unwrap() as usize, g.matched);
    assert_eq!(keys(&json["missing"]), g.missing);
    assert_eq!(keys(&json["extra"]), g.extra);
    let late: BTreeSet<_> = json["late"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let side = if f["side"] == "legacy" {
                "legacy"
            } else {
                "new"
            };
            (
                f["tenant_id"].as_str().unwrap().to_owned(),
                f["device_workflow_step_id"].as_str().unwrap().to_owned(),
                f["scheduled_time"].as_str().unwrap().to_owned(),
                side,
            )
        })
        .collect();
    assert_eq!(late, g.late);
    let object_keys: BTreeSet<_> = json.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        object_keys,
        ["extra", "late", "matched", "missing"]
            .map(String::from)
            .into()
    );
    assert!(!r.is_clean());
    assert!(
        matches!(wfs_cli::reconcile::verdict(&r), Err(CliError::Failed(m)) if m == format!("{} missing, {} extra", g.missing.len(), g.extra.len()))
    );

    // The table: per-tenant counts, a total, and one line per finding.
    let table = render_table(&r);
    for (tenant, counts) in &r.tenants {
        let row = table
            .lines()
            .find(|l| l.starts_with(tenant.as_str()))
            .unwrap();
        let cells: Vec<&str> = row.split_whitespace().collect();
        let expect_missing = g.missing.iter().filter(|k| &k.0 == tenant).count();
        let expect_extra = g.extra.iter().filter(|k| &k.0 == tenant).count();
        let expect_late = g.late.iter().filter(|k| &k.0 == tenant).count();
        assert_eq!(
            cells[1..],
            [
                counts.matched.to_string(),
                expect_missing.to_string(),
                expect_extra.to_string(),
                expect_late.to_string()
            ]
        );
    }
    let total: Vec<&str> = table
        .lines()
        .find(|l| l.starts_with("TOTAL"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(
        total[1..],
        [
            g.matched.to_string(),
            g.missing.len().to_string(),
            g.extra.len().to_string(),
            g.late.len().to_string()
        ]
    );
    for (section, set) in [("missing:", &g.missing), ("extra:", &g.extra)] {
        let listed: BTreeSet<Key> = table
            .lines()
            .skip_while(|l| *l != section)
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            .map(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                (c[0].to_owned(), c[1].to_owned(), c[2].to_owned())
            })
            .collect();
        assert_eq!(&listed, set, "{section}");
    }
    let late_lines = table
        .lines()
        .skip_while(|l| *l != "late:")
        .skip(1)
        .filter(|l| l.contains(" sent ") && l.contains("s late"))
        .count();
    assert_eq!(late_lines, g.late.len());
}

#[test]
fn a_clean_day_passes_and_a_tenant_filter_narrows_it() {
    let legacy = parse_legacy(
        "{\"tenant_id\":\"a\",\"device_workflow_step_id\":\"s\",\"scheduled_time\":\"2026-11-26T08:00:00Z\",\"sent_at\":\"2026-11-26T08:00:01.250Z\"}\n\
         {\"tenant_id\":\"b\",\"device_workflow_step_id\":\"s\",\"scheduled_time\":\"2026-11-26T08:00:00Z\",\"sent_at\":\"2026-11-26T08:00:01Z\"}\n",
    )
    .0;
    let new = parse_new(
        "{\"tenant_id\":\"a\",\"device_workflow_step_id\":\"s\",\"scheduled_time\":\"2026-11-26T08:00:00Z\",\"status\":\"EXECUTED\",\"execution_id\":\"x\",\"sent_at\":\"2026-11-26T08:00:00Z\",\"mode\":\"shadow\"}\n",
    )
    .0;
    let mut o = options();
    o.tenant = Some("a".to_owned());
    let r = reconcile(&legacy, &new, &o);
    assert_eq!(
        (r.matched, r.missing.len(), r.extra.len(), r.late.len()),
        (1, 0, 0, 0)
    );
    assert!(wfs_cli::reconcile::verdict(&r).is_ok());
    o.tenant = None;
    let r = reconcile(&legacy, &new, &o);
    assert_eq!(r.missing.len(), 1);
    assert_eq!(r.missing[0].tenant_id, "b");
    assert_eq!(r.missing[0].new_status.as_deref(), Some("ABSENT"));
}

#[test]
fn the_command_line_names_a_bad_range_or_lateness() {
    use clap::Parser;
    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: wfs_cli::reconcile::ReconcileArgs,
    }
    let parse = |extra: &[&str]| {
        let base = [
            "wfs",
            "--legacy",
            "l.jsonl",
            "--new",
            "n.jsonl",
            "--schedule-table",
            "s",
            "--definitions-table",
            "d",
        ];
        Cli::try_parse_from(base.iter().chain(extra)).map(|c| c.args)
    };
    let ok = parse(&[
        "--from",
        "2026-11-26T00:00:00Z",
        "--to",
        "2026-11-27T00:00:00Z",
    ])
    .unwrap();
    let o = ok.options().unwrap();
    assert_eq!(
        o.late_after,
        Duration::from_secs(60),
        "default --late-after 60s"
    );
    assert!(!ok.json && ok.tenant.is_none());
    let backwards = parse(&[
        "--from",
        "2026-11-27T00:00:00Z",
        "--to",
        "2026-11-26T00:00:00Z",
    ])
    .unwrap()
    .options()
    .unwrap_err();
    assert!(
        matches!(&backwards, CliError::Usage(m) if m.contains("--to 2026-11-26T00:00:00Z must be after --from")),
        "{backwards:?}"
    );
    let late = parse(&[
        "--from",
        "2026-11-26T00:00:00Z",
        "--to",
        "2026-11-27T00:00:00Z",
        "--late-after",
        "soon",
    ])
    .unwrap()
    .options()
    .unwrap_err();
    assert!(
        matches!(&late, CliError::Usage(m) if m.contains("--late-after") && m.contains("soon")),
        "{late:?}"
    );
    let missing = parse(&["--from", "2026-11-26T00:00:00Z"]).unwrap_err();
    assert_eq!(missing.exit_code(), 2);
}

#[test]
fn a_schedule_item_reads_as_the_export_record() {
    use schedule_core::model::{Definition, ScheduleItem, StatusChange, TenantMode, Timestamp};
    let def = Definition::from_json(&json!({"tenant_id": "acme", "device_workflow_step_id": "s1", "workflow_id": "w",
        "device_id": "d", "schedule": {"type": "once", "at": "2026-11-26T08:00:00Z"}, "payload": {}}))
    .unwrap();
    let at = Timestamp::parse("2026-11-26T08:00:00Z").unwrap();
    let mut item = ScheduleItem::pending(&def, at, at, Duration::from_secs(3600), 4);
    let pending = wfs_cli::reconcile::NewOccurrence::from_item(&item);
    assert_eq!(
        (pending.status.as_str(), pending.sent_at, pending.mode),
        ("PENDING", None, None)
    );
    item.apply(&StatusChange::queued(at), 4);
    item.apply(
        &StatusChange::executed(Timestamp::parse("2026-11-26T08:00:01Z").unwrap())
            .with_mode(TenantMode::Shadow),
        4,
    );
    let done = wfs_cli::reconcile::NewOccurrence::from_item(&item);
    assert!(done.fired());
    assert_eq!(done.sent_at, Some(t("2026-11-26T08:00:01Z")));
    assert_eq!(done.mode.as_deref(), Some("shadow"));
    assert_eq!(
        done.execution_id.as_deref(),
        Some(item.execution_id().as_str())
    );
}
