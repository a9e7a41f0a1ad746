//! The scanner when things go wrong, on the twin: a registry that hangs, a device whose
//! status changes between the scan and the due time, scheduled runs that did not happen,
//! and a store that refuses one item for good.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use schedule_core::adapters::memory::{InMemoryDefinitionSource, InMemoryScheduleStore};
use schedule_core::app::scan::{ScanSettings, Scanner};
use schedule_core::embedded::{Embedded, EmbeddedSettings};
use schedule_core::error::{StoreError, ValidationError};
use schedule_core::metrics::{Metric, Metrics};
use schedule_core::model::{
    Definition, DeviceId, ScheduleItem, ScheduleKey, Status, StatusChange, StatusShard, TenantId,
    Timestamp, Validation,
};
use schedule_core::ports::{
    Clock, Cursor, DefinitionSource, DeviceValidator, DueEntry, Materialized, Page, ScheduleStore,
    Sweep,
};
use schedule_core::validation_cache::{CacheSettings, CachedValidator};
use serde_json::{Value, json};

fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

fn hourly(step: &str, device: &str, start: &str) -> Definition {
    Definition::from_json(&json!({"tenant_id": "acme", "device_workflow_step_id": step, "workflow_id": "w1",
        "device_id": device, "schedule": {"type": "rate", "every": "1h", "start": start}, "payload": {"step": step}}))
    .unwrap()
}

fn once(step: &str, device: &str, at: Timestamp) -> Definition {
    Definition::from_json(&json!({"tenant_id": "acme", "device_workflow_step_id": step, "workflow_id": "w1",
        "device_id": device, "schedule": {"type": "once", "at": at.to_string()}, "payload": {"step": step}}))
    .unwrap()
}

/// Time from tokio's clock: with the runtime's time paused, sleeps and timeouts end at
/// once in real time, in the order their virtual times say.
#[derive(Debug)]
struct TokioClock {
    base: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    fn new(base: DateTime<Utc>) -> Self {
        Self {
            base,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        self.base + chrono::Duration::from_std(self.start.elapsed()).unwrap()
    }
}

/// A registry that hangs: each call waits `hang`, then fails as the HTTP client's
/// timeout would.
#[derive(Debug)]
struct HangingRegistry {
    hang: Duration,
    calls: AtomicU32,
}

impl DeviceValidator for HangingRegistry {
    async fn validate(
        &self,
        tenant: &TenantId,
        device: &DeviceId,
    ) -> Result<Validation, ValidationError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.hang).await;
        Err(ValidationError {
            tenant: tenant.to_string(),
            device: device.to_string(),
            reason: format!("operation timed out after {:?}", self.hang),
        })
    }
}

/// 60 hourly definitions over 30 devices, a registry that never answers in time, a
/// 120 s deadline: the scan writes all 1,500 occurrences of its 25 h window, validation
/// UNKNOWN, calling the registry once per device (and its retries), within the deadline.
#[tokio::test(start_paused = true)]
async fn a_hanging_registry_does_not_stop_the_scan_from_writing() {
    for hang in [Duration::from_secs(2), Duration::from_secs(3600)] {
        let now: DateTime<Utc> = "2026-11-26T00:00:00Z".parse().unwrap();
        let definitions = Arc::new(InMemoryDefinitionSource::new());
        for i in 0..60 {
            let def = hourly(
                &format!("s{i:02}"),
                &format!("dev-{:02}", i % 30),
                "2026-11-25T00:00:00Z",
            );
            definitions.put(&def).await.unwrap();
        }
        let store = Arc::new(InMemoryScheduleStore::new(16));
        let registry = Arc::new(HangingRegistry {
            hang,
            calls: AtomicU32::new(0),
        });
        let settings = ScanSettings::default();
        let scanner = Scanner {
            modes: schedule_core::mode_cache::ModeRouting::default(),
            definitions,
            store: store.clone(),
            validator: CachedValidator::new(registry.clone(), CacheSettings::default()),
            clock: TokioClock::new(now),
            settings: settings.clone(),
        };
        let request = daily_scanner_v2::request_from_event(
            &json!({}),
            Timestamp::from_datetime(now),
            None,
            &settings,
        )
        .unwrap();
        let deadline = now + chrono::Duration::seconds(120);
        let metrics = Metrics::new("scan");
        let run = tokio::time::timeout(
            Duration::from_secs(120),
            scanner.run(&request, Some(deadline), &metrics),
        )
        .await;
        let calls = registry.calls.load(Ordering::SeqCst);
        let items = store.items();
        let took = scanner.clock.now() - now;
        eprintln!(
            "registry hanging {hang:?}: {} of 1500 written, {calls} registry calls, {} s of the 120 s deadline used, {:?}",
            items.len(),
            took.num_seconds(),
            run.as_ref()
                .map(|r| r.as_ref().map(|r| (r.created, r.not_written)))
        );
        let report = run
            .unwrap_or_else(|_| {
                panic!(
                    "the scan did not finish within its 120 s deadline: {} of 1500 written, {calls} registry calls",
                    items.len()
                )
            })
            .unwrap();
        assert_eq!(
            (report.occurrences, report.created, report.not_written),
            (1500, 1500, 0)
        );
        assert!(report.is_complete(), "{report:?}");
        assert_eq!(items.len(), 1500);
        assert!(
            items
                .iter()
                .all(|i| i.status == Status::Pending && i.validation_result.is_none()),
            "written PENDING with validation unknown"
        );
        assert!(
            calls <= 30 * 3,
            "{calls} registry calls for 30 devices (3 attempts each at most)"
        );
        assert_eq!(report.validation_unavailable, 30, "{report:?}");
        assert_eq!(metrics.get(Metric::ValidationUnavailable), 30);
    }
}

/// An inactive device at scan time does not lose its day: the scanner records INVALID
/// but leaves the occurrence PENDING; at the due time the executor asks again. A device
/// activated in between fires; one still inactive is SKIPPED then, with no trigger.
#[tokio::test]
async fn a_device_inactive_at_scan_time_is_decided_at_its_due_time() {
    let start: DateTime<Utc> = "2026-11-26T00:00:00Z".parse().unwrap();
    let world = Embedded::new(start, EmbeddedSettings::default());
    let due = Timestamp::from_datetime(start + chrono::Duration::minutes(5));
    world
        .definitions
        .put(&once("later-active", "dev-a", due))
        .await
        .unwrap();
    world
        .definitions
        .put(&once("stays-inactive", "dev-b", due))
        .await
        .unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let (dev_a, dev_b) = (
        DeviceId::parse("dev-a").unwrap(),
        DeviceId::parse("dev-b").unwrap(),
    );
    world.registry.deactivate(&acme, &dev_a);
    world.registry.deactivate(&acme, &dev_b);

    daily_scanner_v2::handle(&world.scanner, &json!({}), None, &world.metrics)
        .await
        .unwrap();
    for item in world.memory_store.items() {
        assert_eq!(
            (item.status, item.validation_result),
            (Status::Pending, Some(Validation::Invalid)),
            "{}: the scan records the answer, the due time decides",
            item.key
        );
        assert!(item.status_shard.is_some(), "{} is in the index", item.key);
    }

    // Activated at 00:02, before its step is due at 00:05.
    world.clock.advance(Duration::from_secs(120));
    world.registry.activate(&acme, &dev_a);
    world.schedule("run-1").await.unwrap();
    world.clock.advance(Duration::from_secs(180));
    world.execute_ready().await.unwrap();

    let by_step: BTreeMap<String, Status> = world
        .memory_store
        .items()
        .into_iter()
        .map(|i| (i.device_workflow_step_id.to_string(), i.status))
        .collect();
    assert_eq!(by_step["later-active"], Status::Executed);
    assert_eq!(by_step["stays-inactive"], Status::Skipped);
    let triggers = world.triggers();
    assert_eq!(triggers.len(), 1);
    assert_eq!(triggers[0].device_id.as_str(), "dev-a");
}

/// Hourly steps of two devices, for the scheduled-run tests.
async fn hourly_world(start: DateTime<Utc>) -> Embedded {
    let world = Embedded::new(start, EmbeddedSettings::default());
    for (step, device) in [("h1", "dev-1"), ("h2", "dev-2")] {
        world
            .definitions
            .put(&hourly(step, device, "2026-11-01T00:00:00Z"))
            .await
            .unwrap();
    }
    world
}

/// Every stored occurrence time per step; panics on none.
fn times(world: &Embedded) -> BTreeSet<(String, Timestamp)> {
    world
        .memory_store
        .items()
        .into_iter()
        .map(|i| (i.device_workflow_step_id.to_string(), i.scheduled_time))
        .collect()
}

fn hours(from: &str, to: &str) -> Vec<Timestamp> {
    let (mut t, to) = (ts(from), ts(to));
    let mut out = Vec::new();
    while t < to {
        out.push(t);
        t = t.plus(Duration::from_secs(3600));
    }
    out
}

/// A daily run, a day with no run, the next run: every occurrence since the recorded
/// horizon is materialized once, none twice; what is past its misfire grace (1 h by
/// default) is recorded MISSED by the scheduler, what is still inside it fires.
#[tokio::test]
async fn a_missed_day_is_caught_up_and_what_is_past_its_grace_is_missed_not_lost() {
    let world = hourly_world("2026-11-26T00:00:00Z".parse().unwrap()).await;
    let first = daily_scanner_v2::handle(&world.scanner, &json!({}), None, &world.metrics)
        .await
        .unwrap();
    // The 2026-11-27 run never happens.
    world
        .clock
        .advance_to("2026-11-28T00:30:00Z".parse().unwrap());
    let third = daily_scanner_v2::handle(&world.scanner, &json!({}), None, &world.metrics)
        .await
        .unwrap();

    let mut want = BTreeSet::new();
    for step in ["h1", "h2"] {
        // The first run: 25 h from 26th 00:00. The third, at 00:30 on the 28th: from the
        // horizon the first left (01:00 on the 27th) to 01:30 on the 29th.
        for t in hours("2026-11-26T00:00:00Z", "2026-11-29T02:00:00Z") {
            want.insert((step.to_owned(), t));
        }
    }
    let got = times(&world);
    let missing: Vec<_> = want.difference(&got).collect();
    let extra: Vec<_> = got.difference(&want).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}; first {first:?}, third {third:?}"
    );
    assert_eq!(
        first.created + third.created,
        want.len(),
        "each occurrence created once"
    );
    assert_eq!(third.already_present, 0, "{third:?}");

    // The caught-up 00:00 occurrence is still within its grace: it fires, once.
    world.schedule("catch-up").await.unwrap();
    world.execute_ready().await.unwrap();
    let fired: BTreeSet<_> = world
        .triggers()
        .iter()
        .map(|t| (t.device_workflow_step_id.to_string(), t.scheduled_time))
        .collect();
    assert!(
        fired.contains(&("h1".to_owned(), ts("2026-11-28T00:00:00Z"))),
        "{fired:?}"
    );
    assert_eq!(fired.len(), world.triggers().len(), "a step fired twice");
    // Everything before 23:30 on the 27th (the 26th's too: no scheduler ran in this test)
    // was more than an hour late when found: MISSED, on record.
    let missed: BTreeSet<_> = world
        .memory_store
        .items()
        .into_iter()
        .filter(|i| i.status == Status::Missed)
        .map(|i| (i.device_workflow_step_id.to_string(), i.scheduled_time))
        .collect();
    let want_missed: BTreeSet<_> = ["h1", "h2"]
        .iter()
        .flat_map(|s| {
            hours("2026-11-26T00:00:00Z", "2026-11-28T00:00:00Z")
                .into_iter()
                .map(move |t| ((*s).to_owned(), t))
        })
        .collect();
    assert_eq!(missed, want_missed);
}

/// Scheduled every hour, a run writes only what came into its window since the last
/// complete run, and one missed run costs nothing: the next one starts where the last
/// complete run ended.
#[tokio::test]
async fn hourly_runs_write_only_what_is_new_and_a_missed_run_costs_nothing() {
    let world = hourly_world("2026-11-26T00:00:00Z".parse().unwrap()).await;
    let incremental = json!({"mode": "incremental"});
    let first = daily_scanner_v2::handle(&world.scanner, &json!({}), None, &world.metrics)
        .await
        .unwrap();
    assert_eq!(first.created, 2 * 25);
    let mut created = vec![];
    for hour in ["01", "02", "04", "05"] {
        // 03:00 is missed.
        world
            .clock
            .advance_to(format!("2026-11-26T{hour}:00:00Z").parse().unwrap());
        let run = daily_scanner_v2::handle(&world.scanner, &incremental, None, &world.metrics)
            .await
            .unwrap();
        assert_eq!(run.already_present, 0, "{hour}: {run:?}");
        created.push(run.created);
    }
    assert_eq!(
        created,
        vec![2, 2, 4, 2],
        "the hour(s) that came into range"
    );
    let want: BTreeSet<_> = ["h1", "h2"]
        .iter()
        .flat_map(|s| {
            hours("2026-11-26T00:00:00Z", "2026-11-27T06:00:00Z")
                .into_iter()
                .map(move |t| ((*s).to_owned(), t))
        })
        .collect();
    assert_eq!(times(&world), want);
    assert_eq!(
        world.memory_store.scan_horizon().await.unwrap(),
        Some(ts("2026-11-27T06:00:00Z"))
    );
    assert_eq!(world.metrics.get(Metric::DailyScanCompleted), 5);
}

/// A store that refuses one step's items for good (as DynamoDB refuses an item over
/// 400 KB), and otherwise the wrapped store.
#[derive(Debug)]
struct RefusesStep<S> {
    inner: S,
    step: &'static str,
    /// Refuse as throttled (transient) rather than for good.
    throttled: bool,
}

impl<S: ScheduleStore> ScheduleStore for RefusesStep<S> {
    fn status_shards(&self) -> u16 {
        self.inner.status_shards()
    }

    async fn create_if_absent(&self, item: &ScheduleItem) -> Result<bool, StoreError> {
        self.inner.create_if_absent(item).await
    }

    async fn materialize(&self, item: &ScheduleItem) -> Result<Materialized, StoreError> {
        if item.device_workflow_step_id.as_str() == self.step && self.throttled {
            return Err(StoreError::Transient {
                operation: "UpdateItem",
                source: "ProvisionedThroughputExceededException".into(),
            });
        }
        if item.device_workflow_step_id.as_str() == self.step {
            return Err(StoreError::Permanent {
                operation: "UpdateItem",
                source: "ValidationException: Item size has exceeded the maximum allowed size"
                    .into(),
            });
        }
        self.inner.materialize(item).await
    }

    async fn cancel(
        &self,
        key: &ScheduleKey,
        cancelling_version: u64,
        reason: &str,
    ) -> Result<bool, StoreError> {
        self.inner.cancel(key, cancelling_version, reason).await
    }

    async fn scan_horizon(&self) -> Result<Option<Timestamp>, StoreError> {
        self.inner.scan_horizon().await
    }

    async fn record_scan_horizon(&self, covered_to: Timestamp) -> Result<bool, StoreError> {
        self.inner.record_scan_horizon(covered_to).await
    }

    async fn get(&self, key: &ScheduleKey) -> Result<Option<ScheduleItem>, StoreError> {
        self.inner.get(key).await
    }

    async fn payload(
        &self,
        item: &ScheduleItem,
    ) -> Result<schedule_core::model::Payload, StoreError> {
        self.inner.payload(item).await
    }

    async fn change_status(
        &self,
        key: &ScheduleKey,
        change: &StatusChange,
    ) -> Result<bool, StoreError> {
        self.inner.change_status(key, change).await
    }

    async fn try_lease(
        &self,
        key: &ScheduleKey,
        status: Status,
        owner: &str,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.try_lease(key, status, owner, until, now).await
    }

    async fn query_due_page(
        &self,
        shard: &StatusShard,
        before: Timestamp,
        limit: u32,
        cursor: Option<&Cursor>,
    ) -> Result<Page<DueEntry>, StoreError> {
        self.inner
            .query_due_page(shard, before, limit, cursor)
            .await
    }

    async fn max_status_shards(&self) -> Result<Option<u16>, StoreError> {
        self.inner.max_status_shards().await
    }

    async fn record_status_shards(&self, shards: u16) -> Result<bool, StoreError> {
        self.inner.record_status_shards(shards).await
    }

    async fn sweep_queued(
        &self,
        key: &ScheduleKey,
        seen_queued_at: Option<Timestamp>,
        sweep: &Sweep,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner
            .sweep_queued(key, seen_queued_at, sweep, now)
            .await
    }

    async fn queue_unleased(
        &self,
        key: &ScheduleKey,
        owner: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.queue_unleased(key, owner, now).await
    }

    async fn unqueue(
        &self,
        key: &ScheduleKey,
        queued_at: Timestamp,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.unqueue(key, queued_at, reason, now).await
    }
}

/// A write refused for a permanent reason counts against that occurrence's definition
/// (InvalidDefinition, once per definition), not as a write error: the run is complete,
/// its horizon recorded, and it is not retried for the whole day.
#[tokio::test]
async fn a_permanently_refused_write_counts_as_an_invalid_definition() {
    let now: DateTime<Utc> = "2026-11-26T00:00:00Z".parse().unwrap();
    let definitions = Arc::new(InMemoryDefinitionSource::new());
    definitions
        .put(&hourly("big", "dev-1", "2026-11-01T00:00:00Z"))
        .await
        .unwrap();
    definitions
        .put(&hourly("fine", "dev-2", "2026-11-01T00:00:00Z"))
        .await
        .unwrap();
    let memory = Arc::new(InMemoryScheduleStore::new(16));
    let scanner = Scanner {
        modes: schedule_core::mode_cache::ModeRouting::default(),
        definitions,
        store: RefusesStep {
            inner: memory.clone(),
            step: "big",
            throttled: false,
        },
        validator: schedule_core::adapters::http_validator::AllowAll,
        clock: schedule_core::adapters::clock::ManualClock::new(now),
        settings: ScanSettings::default(),
    };
    let metrics = Metrics::new("scan");
    let report = daily_scanner_v2::handle(&scanner, &json!({}), None, &metrics)
        .await
        .unwrap_or_else(|e| panic!("the run failed for one refused item: {e}"));
    assert_eq!(
        (
            report.created,
            report.write_errors,
            report.invalid_definitions
        ),
        (25, 0, 1),
        "{report:?}"
    );
    assert_eq!(metrics.get(Metric::InvalidDefinition), 1);
    assert_eq!(metrics.get(Metric::WriteErrors), 0);
    assert_eq!(metrics.get(Metric::DailyScanCompleted), 1);
    assert_eq!(
        memory.scan_horizon().await.unwrap(),
        Some(ts("2026-11-27T01:00:00Z"))
    );
    let _: Value = serde_json::to_value(&report).unwrap();
}

/// A write still throttled after its retries is a write error: the run is incomplete, the
/// invocation fails (to be retried) and the horizon is not moved.
#[tokio::test]
async fn a_write_still_throttled_after_its_retries_leaves_the_run_incomplete() {
    let now: DateTime<Utc> = "2026-11-26T00:00:00Z".parse().unwrap();
    let definitions = Arc::new(InMemoryDefinitionSource::new());
    definitions
        .put(&once("busy", "dev-1", ts("2026-11-26T05:00:00Z")))
        .await
        .unwrap();
    definitions
        .put(&once("fine", "dev-2", ts("2026-11-26T05:00:00Z")))
        .await
        .unwrap();
    let memory = Arc::new(InMemoryScheduleStore::new(16));
    let scanner = Scanner {
        modes: schedule_core::mode_cache::ModeRouting::default(),
        definitions,
        store: RefusesStep {
            inner: memory.clone(),
            step: "busy",
            throttled: true,
        },
        validator: schedule_core::adapters::http_validator::AllowAll,
        clock: schedule_core::adapters::clock::ManualClock::new(now),
        settings: ScanSettings::default(),
    };
    let metrics = Metrics::new("scan");
    let failure = daily_scanner_v2::handle(&scanner, &json!({}), None, &metrics)
        .await
        .unwrap_err();
    let daily_scanner_v2::ScanFailure::Incomplete(report) = failure else {
        panic!("{failure}")
    };
    assert_eq!(
        (
            report.created,
            report.write_errors,
            report.invalid_definitions
        ),
        (1, 1, 0),
        "{report:?}"
    );
    assert_eq!(metrics.get(Metric::WriteErrors), 1);
    assert_eq!(memory.scan_horizon().await.unwrap(), None);
}
