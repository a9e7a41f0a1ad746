//! Items encoded and decoded per second: definitions from JSON and from their DynamoDB
//! row, occurrences to and from their attribute map, trigger messages to JSON.
//! `cargo bench -p schedule-core --bench codec`.

// A benchmark is a test harness: a fixture that fails to build should stop it loudly.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use schedule_core::adapters::dynamo::{av_map_to_json, item_from_av, item_to_av, json_map_to_av};
use schedule_core::model::{Definition, ScheduleItem, Timestamp, TriggerMessage};
use serde_json::{Value, json};

fn main() {
    divan::main();
}

/// A typical definition: a cron rule in a time zone and a small payload (about 300 bytes).
fn definition_json() -> Value {
    json!({
        "tenant_id": "acme-water",
        "device_workflow_step_id": "step-000123",
        "workflow_id": "night-watering",
        "device_id": "valve-0042",
        "enabled": true,
        "version": 7,
        "schedule": {"type": "cron", "expression": "30 2 * * *", "timezone": "Europe/Berlin",
                      "misfire_grace": "1h"},
        "payload": {"action": "open_valve", "duration_s": 600, "zone": 3,
                     "notes": "north field, drip line"},
        "updated_at": "2026-11-20T09:00:00Z"
    })
}

fn occurrence() -> ScheduleItem {
    let def = Definition::from_json(&definition_json()).unwrap();
    let at = Timestamp::parse("2026-11-27T01:30:00Z").unwrap();
    let now = Timestamp::parse("2026-11-27T00:00:00Z").unwrap();
    ScheduleItem::pending(&def, at, now, Duration::from_secs(30 * 86_400), 16)
}

#[divan::bench]
fn definition_from_json(bencher: Bencher) {
    let v = definition_json();
    bencher
        .counter(ItemsCount::new(1usize))
        .bench(|| Definition::from_json(black_box(&v)).unwrap());
}

/// The scanner's path: a definitions-table row (attribute map) to a checked definition.
#[divan::bench]
fn definition_from_row(bencher: Bencher) {
    let Value::Object(mut m) = definition_json() else {
        unreachable!()
    };
    m.insert("PK".into(), json!("TENANT#acme-water"));
    m.insert("SK".into(), json!("STEP#step-000123"));
    let row = json_map_to_av(&m);
    bencher.counter(ItemsCount::new(1usize)).bench(|| {
        let m = av_map_to_json(black_box(&row)).unwrap();
        let pk = m["PK"].as_str().unwrap_or_default().to_owned();
        let sk = m["SK"].as_str().unwrap_or_default().to_owned();
        Definition::from_row(&pk, &sk, &Value::Object(m)).unwrap()
    });
}

#[divan::bench]
fn occurrence_to_attributes(bencher: Bencher) {
    let item = occurrence();
    bencher
        .counter(ItemsCount::new(1usize))
        .bench(|| item_to_av(black_box(&item)));
}

#[divan::bench]
fn occurrence_from_attributes(bencher: Bencher) {
    let av = item_to_av(&occurrence());
    bencher
        .counter(ItemsCount::new(1usize))
        .bench(|| item_from_av(black_box(&av)).unwrap());
}

#[divan::bench]
fn trigger_message_to_json(bencher: Bencher) {
    let item = occurrence();
    let sent = Timestamp::parse("2026-11-27T01:30:00Z").unwrap();
    bencher.counter(ItemsCount::new(1usize)).bench(|| {
        let m = TriggerMessage::for_item(black_box(&item), sent.as_datetime(), 1);
        serde_json::to_string(&m).unwrap()
    });
}
