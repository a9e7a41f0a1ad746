//! Expansion and validation throughput:
//! `cargo bench -p schedule-core --bench recurrence`.

// A benchmark is a test harness: a rule that fails to parse should stop it loudly.
#![allow(clippy::unwrap_used)]

use divan::counter::ItemsCount;
use divan::{Bencher, black_box};
use schedule_core::model::{Definition, ScheduleSpec, Timestamp};
use schedule_core::recurrence::{Window, occurrences};
use serde_json::{Value, json};

fn main() {
    divan::main();
}

fn spec(v: Value) -> ScheduleSpec {
    ScheduleSpec::from_json(&v).unwrap()
}

fn year_2026() -> Window {
    Window::new(
        Timestamp::parse("2026-01-01T00:00:00Z").unwrap(),
        Timestamp::parse("2027-01-01T00:00:00Z").unwrap(),
    )
}

fn expand(bencher: Bencher, s: ScheduleSpec) {
    let n = occurrences(&s, year_2026()).unwrap().len();
    bencher
        .counter(ItemsCount::new(n))
        .bench(|| occurrences(black_box(&s), black_box(year_2026())).unwrap());
}

/// A daily cron over 2026 in Europe/Berlin (365 occurrences, both transitions).
#[divan::bench]
fn daily_cron_2026_berlin(bencher: Bencher) {
    expand(
        bencher,
        spec(json!({"type":"cron","expression":"30 2 * * *","timezone":"Europe/Berlin"})),
    );
}

/// A weekly RRULE over 2026 in Europe/Berlin (104 occurrences).
#[divan::bench]
fn weekly_rrule_2026_berlin(bencher: Bencher) {
    expand(
        bencher,
        spec(
            json!({"type":"rrule","rule":"FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=8;BYMINUTE=0","dtstart":"2026-01-05T08:00:00","timezone":"Europe/Berlin"}),
        ),
    );
}

/// A year of a once-a-minute rule counted from its start (max_occurrences forces the walk
/// from the first occurrence): 525,600 occurrences.
#[divan::bench]
fn minutely_counted_year_berlin(bencher: Bencher) {
    expand(
        bencher,
        spec(
            json!({"type":"cron","expression":"* * * * *","timezone":"Europe/Berlin","start":"2026-01-01T00:00:00Z","max_occurrences":1_000_000}),
        ),
    );
}

/// `Definition::from_json` of a cron definition, validation included.
#[divan::bench]
fn definition_from_json_cron(bencher: Bencher) {
    let v = json!({"tenant_id":"acme","device_workflow_step_id":"s1","workflow_id":"w1","device_id":"d1",
        "schedule":{"type":"cron","expression":"0 8 * * MON-FRI","timezone":"Asia/Ho_Chi_Minh"},
        "payload":{"action":"open_valve"}});
    bencher
        .counter(ItemsCount::new(1usize))
        .bench(|| Definition::from_json(black_box(&v)).unwrap());
}
