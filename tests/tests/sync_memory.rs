//! Definition sync on the embedded twin, on a manual clock: every edit of a repeating and
//! a one-time step during the day leaves the schedule table holding exactly what the
//! current version implies; replays and out-of-order records change nothing; QUEUED and
//! terminal occurrences are never touched; what sync materializes fires, once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use schedule_core::adapters::clock::ManualClock;
use schedule_core::adapters::memory::{InMemoryDefinitionSource, InMemoryScheduleStore};
use schedule_core::app::scan::ScanRequest;
use schedule_core::app::sync::{
    ChangeKind, DefinitionChange, DefinitionSync, Image, SyncOutcome, SyncSettings,
};
use schedule_core::embedded::{Embedded, EmbeddedSettings};
use schedule_core::model::{Definition, ScheduleItem, Status, StatusChange, Timestamp};
use schedule_core::ports::{DefinitionSource, ScheduleStore};
use serde_json::{Value, json};

type Sync =
    DefinitionSync<Arc<InMemoryScheduleStore>, Arc<InMemoryDefinitionSource>, Arc<ManualClock>>;

const NOW: &str = "2026-11-26T10:00:00Z";

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

/// Every two hours from `start` (UTC). The tests only need the rule's times, so a cron
/// rule (`{"type": "cron", "expression": "0 1-23/2 * * *", "timezone": "UTC"}`) can take
/// its place once cron expands.
fn every_2h(start: &str) -> Value {
    json!({"type": "rate", "every": "2h", "start": start})
}

fn once(at: &str) -> Value {
    json!({"type": "once", "at": at})
}

fn definition(
    step: &str,
    version: u64,
    enabled: bool,
    schedule: Value,
    payload: Value,
) -> Definition {
    Definition::from_json(&json!({"tenant_id": "acme", "device_workflow_step_id": step, "workflow_id": "w1",
        "device_id": "dev-1", "enabled": enabled, "version": version, "schedule": schedule, "payload": payload}))
    .unwrap()
}

struct World {
    embedded: Embedded,
    sync: Sync,
    next_event: std::sync::atomic::AtomicU32,
}

impl World {
    /// A world at `NOW` whose daily scan has run (and recorded its horizon).
    async fn new() -> Self {
        let embedded = Embedded::new(ts(NOW).as_datetime(), EmbeddedSettings::default());
        let report = embedded
            .scan(&ScanRequest::daily(ts(NOW), &embedded.scanner.settings))
            .await
            .unwrap();
        assert!(report.is_complete());
        let sync = DefinitionSync {
            modes: schedule_core::mode_cache::ModeRouting::default(),
            store: embedded.memory_store.clone(),
            definitions: embedded.definitions.clone(),
            clock: embedded.clock.clone(),
            settings: SyncSettings {
                shards: EmbeddedSettings::default().shards,
                ..SyncSettings::default()
            },
        };
        Self {
            embedded,
            sync,
            next_event: Default::default(),
        }
    }

    fn event_id(&self) -> String {
        let n = self
            .next_event
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("event-{n}")
    }

    /// Writes `def` to the definitions table and returns the stream record it produces.
    async fn put(&self, def: Definition) -> DefinitionChange {
        let old = self.current(&def).await;
        self.embedded.definitions.put(&def).await.unwrap();
        DefinitionChange {
            event_id: self.event_id(),
            kind: if old.is_some() {
                ChangeKind::Modify
            } else {
                ChangeKind::Insert
            },
            old,
            new: Some(Image::Valid(def)),
        }
    }

    /// Deletes the row of `def` and returns the stream record.
    async fn delete(&self, def: &Definition) -> DefinitionChange {
        let old = self.current(def).await;
        let (pk, sk) = def.key();
        self.embedded.definitions.remove_raw(&pk, &sk);
        DefinitionChange {
            event_id: self.event_id(),
            kind: ChangeKind::Remove,
            old,
            new: None,
        }
    }

    async fn current(&self, def: &Definition) -> Option<Image> {
        self.embedded
            .definitions
            .get(&def.tenant_id, &def.device_workflow_step_id)
            .await
            .unwrap()
            .map(|d| Image::Valid(d.unwrap()))
    }

    async fn apply(&self, change: &DefinitionChange) -> SyncOutcome {
        let result = self
            .sync
            .apply_batch(std::slice::from_ref(change), &self.embedded.metrics)
            .await;
        assert!(result.failed.is_none(), "{:?}", result.failed);
        result.outcome
    }

    fn items(&self, step: &str) -> Vec<ScheduleItem> {
        self.embedded
            .memory_store
            .items()
            .into_iter()
            .filter(|i| i.device_workflow_step_id.as_str() == step)
            .collect()
    }

    /// `(time, status, version)` of every occurrence of `step` in time order.
    fn table(&self, step: &str) -> Vec<(String, Status, u64)> {
        let mut rows: Vec<_> = self
            .items(step)
            .into_iter()
            .map(|i| (i.scheduled_time.to_string(), i.status, i.definition_version))
            .collect();
        rows.sort();
        rows
    }

    /// The times of `step` that are PENDING, with the version they carry.
    fn pending(&self, step: &str) -> Vec<(String, u64)> {
        self.table(step)
            .into_iter()
            .filter(|(_, st, _)| *st == Status::Pending)
            .map(|(t, _, v)| (t, v))
            .collect()
    }

    async fn set_status(&self, step: &str, time: &str, from: Status, to: Status) {
        let item = self
            .items(step)
            .into_iter()
            .find(|i| i.scheduled_time == ts(time))
            .unwrap();
        let change = StatusChange::transition(from, to, ts(NOW)).unwrap();
        assert!(
            self.embedded
                .memory_store
                .change_status(&item.key, &change)
                .await
                .unwrap()
        );
    }
}

fn times(list: &[&str], version: u64) -> Vec<(String, u64)> {
    list.iter()
        .map(|t| (format!("2026-11-{t}:00:00Z"), version))
        .collect()
}

/// The horizon the daily scan at 10:00 recorded: 25 h ahead, to 11:00 the next day.
const EVEN: [&str; 13] = [
    "26T10", "26T12", "26T14", "26T16", "26T18", "26T20", "26T22", "27T00", "27T02", "27T04",
    "27T06", "27T08", "27T10",
];
const ODD: [&str; 12] = [
    "26T11", "26T13", "26T15", "26T17", "26T19", "26T21", "26T23", "27T01", "27T03", "27T05",
    "27T07", "27T09",
];

#[tokio::test]
async fn edits_of_a_repeating_step_take_effect_at_once() {
    let w = World::new().await;
    assert_eq!(
        w.embedded.memory_store.scan_horizon().await.unwrap(),
        Some(ts("2026-11-27T11:00:00Z"))
    );
    let pay = |n: u32| json!({"action": "open_valve", "duration_s": n});

    // Created during the day: its occurrences up to the scanned horizon appear.
    let v1 = definition("r1", 1, true, every_2h("2026-11-26T00:00:00Z"), pay(30));
    let out = w.apply(&w.put(v1.clone()).await).await;
    assert_eq!((out.created, out.cancelled), (13, 0), "{out:?}");
    assert_eq!(w.pending("r1"), times(&EVEN, 1));

    // Payload changed: every PENDING occurrence carries the new version and payload.
    let v2 = definition("r1", 2, true, every_2h("2026-11-26T00:00:00Z"), pay(90));
    let v2_record = w.put(v2.clone()).await;
    let out = w.apply(&v2_record).await;
    assert_eq!(
        (out.refreshed, out.created, out.cancelled),
        (13, 0, 0),
        "{out:?}"
    );
    assert_eq!(w.pending("r1"), times(&EVEN, 2));
    assert!(w.items("r1").iter().all(|i| i.payload["duration_s"] == 90));

    // The scheduler has taken 10:00, and 12:00 has (say) been executed already.
    w.set_status(
        "r1",
        "2026-11-26T10:00:00Z",
        Status::Pending,
        Status::Queued,
    )
    .await;
    w.set_status(
        "r1",
        "2026-11-26T12:00:00Z",
        Status::Pending,
        Status::Queued,
    )
    .await;
    w.set_status(
        "r1",
        "2026-11-26T12:00:00Z",
        Status::Queued,
        Status::Executed,
    )
    .await;

    // Time moved by an hour: the even hours are cancelled, the odd ones appear; the QUEUED
    // and EXECUTED ones are left as they are.
    let v3 = definition("r1", 3, true, every_2h("2026-11-26T01:00:00Z"), pay(90));
    let v3_record = w.put(v3.clone()).await;
    let out = w.apply(&v3_record).await;
    assert_eq!((out.created, out.cancelled), (12, 11), "{out:?}");
    assert_eq!(w.pending("r1"), times(&ODD, 3));
    let table = w.table("r1");
    assert!(table.contains(&("2026-11-26T10:00:00Z".into(), Status::Queued, 2)));
    assert!(table.contains(&("2026-11-26T12:00:00Z".into(), Status::Executed, 2)));
    let cancelled = w
        .items("r1")
        .into_iter()
        .find(|i| i.scheduled_time == ts("2026-11-26T14:00:00Z"))
        .unwrap();
    assert_eq!(
        (
            cancelled.status,
            cancelled.cancelled_by_version,
            cancelled.last_error.as_deref()
        ),
        (
            Status::Cancelled,
            Some(3),
            Some("version 3 no longer yields this time")
        )
    );

    // Disabled: nothing PENDING is left.
    let v4 = definition("r1", 4, false, every_2h("2026-11-26T01:00:00Z"), pay(90));
    let out = w.apply(&w.put(v4.clone()).await).await;
    assert_eq!((out.cancelled, out.created), (12, 0), "{out:?}");
    assert!(w.pending("r1").is_empty());
    assert!(
        w.items("r1")
            .iter()
            .any(|i| i.last_error.as_deref() == Some("definition disabled (version 4)"))
    );

    // Re-enabled with the even hours again: cancelled ones come back, new version.
    let v5 = definition("r1", 5, true, every_2h("2026-11-26T00:00:00Z"), pay(45));
    let v5_record = w.put(v5.clone()).await;
    let out = w.apply(&v5_record).await;
    assert_eq!(
        (out.reinstated, out.created, out.cancelled),
        (11, 0, 0),
        "{out:?}"
    );
    let mut expected = times(&EVEN[2..], 5);
    expected.sort();
    assert_eq!(w.pending("r1"), expected);

    // Replays and out-of-order records change nothing.
    let before = w.embedded.memory_store.items();
    for stale in [&v2_record, &v3_record] {
        let out = w.apply(stale).await;
        assert_eq!(out.stale_ignored, 1, "{out:?}");
        assert_eq!(
            (out.created, out.refreshed, out.reinstated, out.cancelled),
            (0, 0, 0, 0)
        );
    }
    let out = w.apply(&v5_record).await; // the current record delivered twice
    assert_eq!(
        (out.created, out.refreshed, out.reinstated, out.cancelled),
        (0, 0, 0, 0),
        "{out:?}"
    );
    assert_eq!(
        w.embedded.memory_store.items(),
        before,
        "a replay changed the table"
    );

    // Deleted: nothing PENDING is left; QUEUED and terminal ones keep their status.
    let out = w.apply(&w.delete(&v5).await).await;
    assert_eq!(out.cancelled, 11, "{out:?}");
    assert!(w.pending("r1").is_empty());
    let table = w.table("r1");
    assert!(table.contains(&("2026-11-26T10:00:00Z".into(), Status::Queued, 2)));
    assert!(table.contains(&("2026-11-26T12:00:00Z".into(), Status::Executed, 2)));
    let metrics = &w.embedded.metrics;
    use schedule_core::metrics::Metric;
    assert_eq!(metrics.get(Metric::StaleRecordIgnored), 2);
    assert_eq!(metrics.get(Metric::Cancelled), 11 + 12 + 11);
    assert_eq!(metrics.get(Metric::Reinstated), 11);
}

/// Three quick edits whose first record arrives after the last write: the stale record
/// materializes nothing but still cancels what the skipped version left behind.
#[tokio::test]
async fn versions_skipped_by_quick_edits_leave_nothing_stale() {
    let w = World::new().await;
    let pay = json!({"action": "open_valve"});
    let v1 = definition("r2", 1, true, every_2h("2026-11-26T00:00:00Z"), pay.clone());
    w.apply(&w.put(v1).await).await;
    let to_v2 = w
        .put(definition(
            "r2",
            2,
            true,
            every_2h("2026-11-26T01:00:00Z"),
            pay.clone(),
        ))
        .await;
    let to_v3 = w
        .put(definition(
            "r2",
            3,
            true,
            once("2026-11-26T15:30:00Z"),
            pay.clone(),
        ))
        .await;

    let out = w.apply(&to_v2).await;
    assert_eq!((out.stale_ignored, out.created), (1, 0), "{out:?}");
    assert!(
        w.pending("r2").is_empty(),
        "v1's even hours cancelled against v3"
    );
    let out = w.apply(&to_v3).await;
    assert_eq!(out.created, 1, "{out:?}");
    assert_eq!(
        w.pending("r2"),
        vec![("2026-11-26T15:30:00Z".to_owned(), 3)]
    );
}

/// A one-time step created today for later today fires today, once; moved, it fires at
/// its new time only; deleted, it never fires.
#[tokio::test]
async fn a_one_time_step_created_moved_and_deleted_today() {
    let w = World::new().await;
    let pay = json!({"action": "open_valve"});
    let out = w
        .apply(
            &w.put(definition(
                "o1",
                1,
                true,
                once("2026-11-26T10:20:00Z"),
                pay.clone(),
            ))
            .await,
        )
        .await;
    assert_eq!(out.created, 1);
    let moved = w
        .put(definition(
            "o1",
            2,
            true,
            once("2026-11-26T10:40:00Z"),
            pay.clone(),
        ))
        .await;
    let out = w.apply(&moved).await;
    assert_eq!((out.created, out.cancelled), (1, 1), "{out:?}");
    let out = w
        .apply(
            &w.put(definition(
                "o2",
                1,
                true,
                once("2026-11-26T10:50:00Z"),
                pay.clone(),
            ))
            .await,
        )
        .await;
    assert_eq!(out.created, 1);
    let o2 = definition("o2", 1, true, once("2026-11-26T10:50:00Z"), pay.clone());
    let out = w.apply(&w.delete(&o2).await).await;
    assert_eq!(out.cancelled, 1, "{out:?}");

    // Run the flow through the afternoon: scheduler every 5 minutes, executor after.
    for _ in 0..24 {
        w.embedded.schedule("run").await.unwrap();
        w.embedded.clock.advance(Duration::from_secs(300));
        w.embedded.execute_ready().await.unwrap();
    }
    let fired: Vec<(String, String)> = w
        .embedded
        .triggers()
        .into_iter()
        .map(|t| {
            (
                t.device_workflow_step_id.to_string(),
                t.scheduled_time.to_string(),
            )
        })
        .collect();
    assert_eq!(
        fired,
        vec![("o1".to_owned(), "2026-11-26T10:40:00Z".to_owned())]
    );
    assert_eq!(
        w.table("o1"),
        vec![
            ("2026-11-26T10:20:00Z".to_owned(), Status::Cancelled, 1),
            ("2026-11-26T10:40:00Z".to_owned(), Status::Executed, 2),
        ]
    );
    assert_eq!(
        w.table("o2"),
        vec![("2026-11-26T10:50:00Z".to_owned(), Status::Cancelled, 1)]
    );
}

/// With no horizon recorded (no complete scan yet), sync covers to the end of the next
/// UTC day; the next scan finds them written and rewrites nothing.
#[tokio::test]
async fn without_a_recorded_horizon_sync_covers_to_the_end_of_tomorrow() {
    let embedded = Embedded::new(ts(NOW).as_datetime(), EmbeddedSettings::default());
    let sync = DefinitionSync {
        modes: schedule_core::mode_cache::ModeRouting::default(),
        store: embedded.memory_store.clone(),
        definitions: embedded.definitions.clone(),
        clock: embedded.clock.clone(),
        settings: SyncSettings::default(),
    };
    let def = definition(
        "r3",
        1,
        true,
        json!({"type": "rate", "every": "6h", "start": "2026-11-26T00:00:00Z"}),
        json!({}),
    );
    embedded.definitions.put(&def).await.unwrap();
    let change = DefinitionChange {
        event_id: "e".into(),
        kind: ChangeKind::Insert,
        old: None,
        new: Some(Image::Valid(def)),
    };
    let out = sync.apply_batch(&[change], &embedded.metrics).await.outcome;
    // 12:00, 18:00 today; 00:00, 06:00, 12:00, 18:00 tomorrow.
    assert_eq!(out.created, 6, "{out:?}");
    let report = embedded
        .scan(&ScanRequest::daily(ts(NOW), &embedded.scanner.settings))
        .await
        .unwrap();
    // The scan reaches 11:00 tomorrow: 12:00 and 18:00 today, 00:00 and 06:00 tomorrow.
    assert_eq!(
        (report.created, report.refreshed, report.already_present),
        (0, 0, 4)
    );
}
