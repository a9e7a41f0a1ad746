//! `wfs preview` as a user runs it: the binary, its JSON and text output, its exit codes.
//! Expected instants come from Python's zoneinfo (Europe/Berlin moves to summer time on
//! 2026-03-29 at 02:00 local, back to winter time on 2026-10-25 at 03:00 local).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

fn wfs(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wfs"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn definition_file(name: &str, schedule: Value) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wfs-preview-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    let def = json!({"tenant_id": "acme", "device_workflow_step_id": "water", "workflow_id": "w1",
                     "device_id": "valve-1", "enabled": true, "version": 1,
                     "schedule": schedule, "payload": {"action": "open_valve"}});
    std::fs::write(&path, def.to_string()).unwrap();
    path
}

fn preview_json(path: &Path, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["preview", path.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let (code, stdout, stderr) = wfs(&args);
    assert_eq!(code, 0, "{stderr}");
    serde_json::from_str::<Vec<Value>>(&stdout).unwrap()
}

fn utcs(rows: &[Value]) -> Vec<Option<String>> {
    rows.iter()
        .map(|r| r["utc"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn spring_forward_shifts_or_drops_the_missing_time() {
    let shift = definition_file(
        "shift.json",
        json!({"type": "cron", "expression": "30 2 * * *", "timezone": "Europe/Berlin"}),
    );
    let rows = preview_json(&shift, &["--count", "3", "--from", "2026-03-28T00:00:00Z"]);
    assert_eq!(
        utcs(&rows),
        vec![
            Some("2026-03-28T01:30:00Z".to_owned()),
            Some("2026-03-29T01:30:00Z".to_owned()),
            Some("2026-03-30T00:30:00Z".to_owned()),
        ]
    );
    assert_eq!(rows[0]["local"], "2026-03-28T02:30:00+01:00");
    assert_eq!(rows[0]["note"], "");
    assert_eq!(rows[2]["local"], "2026-03-30T02:30:00+02:00");
    let moved = rows[1]["note"].as_str().unwrap();
    assert!(!moved.is_empty(), "the shifted time says why: {rows:?}");

    let skip = definition_file(
        "skip.json",
        json!({"type": "cron", "expression": "30 2 * * *", "timezone": "Europe/Berlin",
               "on_missing_time": "skip"}),
    );
    let rows = preview_json(&skip, &["--count", "3", "--from", "2026-03-28T00:00:00Z"]);
    assert_eq!(
        utcs(&rows),
        vec![
            Some("2026-03-28T01:30:00Z".to_owned()),
            None,
            Some("2026-03-30T00:30:00Z".to_owned()),
        ],
        "the dropped occurrence is listed with a null utc"
    );
    assert!(!rows[1]["note"].as_str().unwrap().is_empty(), "{rows:?}");
    assert!(
        rows[1]["local"]
            .as_str()
            .unwrap()
            .starts_with("2026-03-29T02:30:00"),
        "{rows:?}"
    );
}

#[test]
fn fall_back_fires_once_or_twice() {
    let schedule = |policy: &str| {
        json!({"type": "rrule", "rule": "FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "dtstart": "2026-10-20T02:30:00",
               "timezone": "Europe/Berlin", "on_repeated_time": policy})
    };
    let first = definition_file("first.json", schedule("first"));
    let rows = preview_json(&first, &["--count", "3", "--from", "2026-10-24T12:00:00Z"]);
    assert_eq!(
        utcs(&rows),
        vec![
            Some("2026-10-25T00:30:00Z".to_owned()),
            None,
            Some("2026-10-26T01:30:00Z".to_owned()),
        ],
        "the repeated 02:30 is listed, not fired"
    );
    assert_eq!(rows[0]["local"], "2026-10-25T02:30:00+02:00");
    assert!(
        rows[0]["note"].as_str().unwrap().contains("first"),
        "{rows:?}"
    );
    assert_eq!(rows[1]["local"], "2026-10-25T02:30:00+01:00");
    assert!(!rows[1]["note"].as_str().unwrap().is_empty(), "{rows:?}");

    let both = definition_file("both.json", schedule("both"));
    let rows = preview_json(&both, &["--count", "3", "--from", "2026-10-24T12:00:00Z"]);
    assert_eq!(
        utcs(&rows),
        vec![
            Some("2026-10-25T00:30:00Z".to_owned()),
            Some("2026-10-25T01:30:00Z".to_owned()),
            Some("2026-10-26T01:30:00Z".to_owned()),
        ]
    );
    assert_eq!(rows[1]["local"], "2026-10-25T02:30:00+01:00");
}

#[test]
fn text_output_and_a_rule_that_ends() {
    let path = definition_file(
        "count.json",
        json!({"type": "rrule", "rule": "FREQ=WEEKLY;BYDAY=MO,WE;COUNT=3", "dtstart": "2026-11-02T08:00:00",
               "timezone": "Asia/Ho_Chi_Minh"}),
    );
    let (code, stdout, stderr) = wfs(&[
        "preview",
        path.to_str().unwrap(),
        "--count",
        "5",
        "--from",
        "2026-11-01T00:00:00Z",
    ]);
    assert_eq!(code, 0, "{stderr}");
    // Ho Chi Minh City is UTC+7 all year: 08:00 local is 01:00Z.
    for line in [
        "2026-11-02T08:00:00+07:00  2026-11-02T01:00:00Z",
        "2026-11-04T08:00:00+07:00  2026-11-04T01:00:00Z",
        "2026-11-09T08:00:00+07:00  2026-11-09T01:00:00Z",
    ] {
        assert!(stdout.contains(line), "{line} in {stdout}");
    }
    assert!(stdout.contains("acme/water"), "{stdout}");
    assert!(
        stdout.contains("no more occurrences after these 3"),
        "{stdout}"
    );
}

#[test]
fn bad_definitions_and_bad_arguments_have_their_own_exit_codes() {
    let bad_zone = definition_file(
        "zone.json",
        json!({"type": "cron", "expression": "0 8 * * *", "timezone": "Mars/Olympus"}),
    );
    let (code, _, stderr) = wfs(&["preview", bad_zone.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("schedule.timezone") && stderr.contains("\"Mars/Olympus\""),
        "{stderr}"
    );
    let bad_cron = definition_file(
        "cron.json",
        json!({"type": "cron", "expression": "a b c d e", "timezone": "UTC"}),
    );
    let (code, _, stderr) = wfs(&["preview", bad_cron.to_str().unwrap()]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("schedule.expression") && stderr.contains("\"a b c d e\""),
        "{stderr}"
    );
    let (code, _, stderr) = wfs(&["preview", "/nonexistent/def.json"]);
    assert!(
        code == 1 && stderr.contains("cannot read /nonexistent/def.json"),
        "{stderr}"
    );
    let (code, _, stderr) = wfs(&["preview", bad_zone.to_str().unwrap(), "--count", "lots"]);
    assert!(
        code == 2 && stderr.contains("invalid value 'lots' for '--count <N>'"),
        "{stderr}"
    );
}

/// The README's example, on the sample file it names.
#[test]
fn the_readme_example_previews_the_sample_definition() {
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../events/night-watering.json");
    let rows = preview_json(&sample, &["--from", "2026-03-28T00:00:00Z", "--count", "3"]);
    assert_eq!(
        utcs(&rows),
        vec![
            Some("2026-03-28T01:30:00Z".to_owned()),
            Some("2026-03-29T01:30:00Z".to_owned()),
            Some("2026-03-30T00:30:00Z".to_owned()),
        ]
    );
    assert_eq!(rows[1]["local"], "2026-03-29T03:30:00+02:00");
}
