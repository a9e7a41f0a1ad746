//! Definition sync against the emulator: definitions written through the real adapter,
//! their stream records read from the emulator's DynamoDB Streams API and handed to the
//! real `definition_sync` handler. After every edit the schedule table holds exactly what
//! the current version implies.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::aws_world::AwsWorld;
use integration_tests::streams::{StreamReader, lambda_event};
use schedule_core::adapters::dynamo::DynamoDefinitionSource;
use schedule_core::app::sync::end_of_next_utc_day;
use schedule_core::metrics::Metrics;
use schedule_core::model::{Definition, Status, Timestamp};
use schedule_core::ports::DefinitionSource;
use schedule_core::recurrence::{Window, occurrences};
use serde_json::{Value, json};

/// `scheduled_time → (status, definition_version)` of every occurrence in the table.
async fn table(world: &AwsWorld) -> BTreeMap<String, (Status, u64)> {
    let out = world
        .emu
        .dynamo
        .scan()
        .table_name(&world.env["SCHEDULE_TABLE"])
        .consistent_read(true)
        .send()
        .await
        .unwrap();
    let s = |item: &std::collections::HashMap<String, AttributeValue>, k: &str| {
        item.get(k).and_then(|v| v.as_s().ok()).cloned()
    };
    out.items()
        .iter()
        .filter_map(|item| {
            let time = s(item, "scheduled_time")?;
            let status: Status = s(item, "status")?.parse().unwrap();
            let version = item["definition_version"].as_n().unwrap().parse().unwrap();
            Some((time, (status, version)))
        })
        .collect()
}

fn definition(version: u64, enabled: bool, schedule: &Value, payload: Value) -> Definition {
    Definition::from_json(
        &json!({"tenant_id": "acme", "device_workflow_step_id": "s1", "workflow_id": "w1",
        "device_id": "dev-1", "enabled": enabled, "version": version,
        "schedule": schedule, "payload": payload}),
    )
    .unwrap()
}

/// The times `def` yields in the sync's default horizon (no scan has run here).
fn expected(def: &Definition) -> Vec<String> {
    if !def.enabled {
        return Vec::new();
    }
    let now = Timestamp::from_datetime(chrono::Utc::now());
    occurrences(&def.schedule, Window::new(now, end_of_next_utc_day(now)))
        .unwrap()
        .into_iter()
        .map(|t| t.to_string())
        .collect()
}

fn pending(rows: &BTreeMap<String, (Status, u64)>) -> Vec<(String, u64)> {
    rows.iter()
        .filter(|(_, (st, _))| *st == Status::Pending)
        .map(|(t, (_, v))| (t.clone(), *v))
        .collect()
}

/// A rate rule starting on a whole hour at least an hour ahead, so nothing falls due
/// during the test; moved by an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_records_bring_the_table_to_the_current_version() {
    let now = chrono::Utc::now().timestamp();
    let hour = Timestamp::from_epoch_seconds((now / 3600 + 2) * 3600).unwrap();
    let moved = hour.plus(Duration::from_secs(3600));
    let rate =
        |start: Timestamp| json!({"type": "rate", "every": "3h", "start": start.to_string()});
    edit_sequence(rate(hour), rate(moved)).await;
}

/// A cron rule on Berlin's clock, every third hour at a minute at least 29 minutes away
/// from now's (so nothing falls due during the test); moved to another minute.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_rule_in_a_tenant_zone_follows_every_edit() {
    let minute = (chrono::Utc::now().timestamp() / 60) % 60;
    let cron = |m: i64| json!({"type": "cron", "expression": format!("{} */3 * * *", m % 60), "timezone": "Europe/Berlin"});
    edit_sequence(cron(minute + 30), cron(minute + 45)).await;
}

async fn edit_sequence(at: Value, moved: Value) {
    let Some(world) = AwsWorld::new(Duration::from_secs(30)).await else {
        return;
    };
    let config = world.sync_config();
    let sync = definition_sync::build(&config, &world.sdk);
    let definitions =
        DynamoDefinitionSource::new(world.emu.dynamo.clone(), &config.definitions_table);
    let mut stream = StreamReader::open(&world.emu.dynamo, &config.definitions_table).await;
    let metrics = Metrics::new("definition_sync");

    let edits = [
        (
            "created",
            definition(1, true, &at, json!({"duration_s": 30})),
        ),
        (
            "payload changed",
            definition(2, true, &at, json!({"duration_s": 90})),
        ),
        (
            "time moved",
            definition(3, true, &moved, json!({"duration_s": 90})),
        ),
        (
            "disabled",
            definition(4, false, &moved, json!({"duration_s": 90})),
        ),
        (
            "re-enabled",
            definition(5, true, &at, json!({"duration_s": 45})),
        ),
    ];
    let mut history: Vec<Vec<Value>> = Vec::new();
    let mut seen_times = std::collections::BTreeSet::new();
    for (what, def) in &edits {
        definitions.put(def).await.unwrap();
        let records = stream.read_new().await;
        assert_eq!(records.len(), 1, "{what}: {records:?}");
        let (response, outcome) =
            definition_sync::handle(&sync, &lambda_event(&records), &metrics).await;
        assert!(
            response.batch_item_failures.is_empty(),
            "{what}: {outcome:?}"
        );
        history.push(records);

        let rows = table(&world).await;
        let want: Vec<(String, u64)> = expected(def)
            .into_iter()
            .map(|t| (t, def.version))
            .collect();
        assert!(!def.enabled || !want.is_empty(), "{what}: nothing expected");
        assert_eq!(pending(&rows), want, "{what}: {outcome:?}");
        seen_times.extend(want.iter().map(|(t, _)| t.clone()));
        // Nothing else is live: every other occurrence ever written is CANCELLED.
        for (t, (status, _)) in &rows {
            if !want.iter().any(|(w, _)| w == t) {
                assert_eq!(*status, Status::Cancelled, "{what}: {t} is {status}");
            }
        }
        assert!(
            rows.keys().all(|t| seen_times.contains(t)),
            "{what}: unexpected rows {rows:?}"
        );
        if *what == "payload changed" {
            assert_eq!(outcome.refreshed, want.len(), "{outcome:?}");
        }
        if *what == "re-enabled" {
            assert_eq!(outcome.reinstated, want.len(), "{outcome:?}");
        }
    }

    // A replayed older record (time moved, version 3) and a duplicate of the last change
    // change nothing.
    let before = table(&world).await;
    for replay in [&history[2], &history[4]] {
        let (response, _) = definition_sync::handle(&sync, &lambda_event(replay), &metrics).await;
        assert!(response.batch_item_failures.is_empty());
        assert_eq!(table(&world).await, before, "a replay changed the table");
    }

    // Deleted: nothing is left PENDING.
    world
        .emu
        .dynamo
        .delete_item()
        .table_name(&config.definitions_table)
        .key("PK", AttributeValue::S("TENANT#acme".into()))
        .key("SK", AttributeValue::S("STEP#s1".into()))
        .send()
        .await
        .unwrap();
    let records = stream.read_new().await;
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["eventName"], "REMOVE");
    let (response, outcome) =
        definition_sync::handle(&sync, &lambda_event(&records), &metrics).await;
    assert!(response.batch_item_failures.is_empty());
    let rows = table(&world).await;
    assert!(pending(&rows).is_empty(), "{rows:?}");
    assert_eq!(
        outcome.cancelled,
        before
            .values()
            .filter(|(s, _)| *s == Status::Pending)
            .count()
    );
    assert!(rows.values().all(|(s, _)| *s == Status::Cancelled));
}
