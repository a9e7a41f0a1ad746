//! The scanner writes only what is missing: a second run over the same window makes no
//! write at all, and a definition whose version changed has only its own occurrences
//! written again.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use schedule_core::adapters::clock::ManualClock;
use schedule_core::adapters::http_validator::AllowAll;
use schedule_core::adapters::memory::{InMemoryDefinitionSource, InMemoryScheduleStore};
use schedule_core::app::scan::{ScanRequest, ScanSettings, Scanner};
use schedule_core::error::StoreError;
use schedule_core::metrics::Metrics;
use schedule_core::model::{
    Definition, ScheduleItem, ScheduleKey, Status, StatusChange, StatusShard, Timestamp,
};
use schedule_core::ports::{
    Cursor, DefinitionSource, DueEntry, Materialized, Page, ScheduleStore, Sweep,
};

/// The twin, counting the conditional writes of occurrences made through it.
#[derive(Debug)]
struct CountingWrites {
    inner: Arc<InMemoryScheduleStore>,
    writes: AtomicUsize,
}

impl ScheduleStore for CountingWrites {
    fn status_shards(&self) -> u16 {
        self.inner.status_shards()
    }
    async fn create_if_absent(&self, item: &ScheduleItem) -> Result<bool, StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.create_if_absent(item).await
    }
    async fn materialize(&self, item: &ScheduleItem) -> Result<Materialized, StoreError> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.inner.materialize(item).await
    }
    async fn cancel(&self, key: &ScheduleKey, v: u64, reason: &str) -> Result<bool, StoreError> {
        self.inner.cancel(key, v, reason).await
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
    async fn change_status(&self, key: &ScheduleKey, c: &StatusChange) -> Result<bool, StoreError> {
        self.inner.change_status(key, c).await
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
    async fn sweep_queued(
        &self,
        key: &ScheduleKey,
        seen: Option<Timestamp>,
        sweep: &Sweep,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.inner.sweep_queued(key, seen, sweep, now).await
    }
    // `existing` is the store's own (the batch read of the twin), as a wrapper forwards it.
    async fn existing(
        &self,
        keys: &[ScheduleKey],
    ) -> Result<std::collections::HashMap<ScheduleKey, schedule_core::ports::Existing>, StoreError>
    {
        self.inner.existing(keys).await
    }
}

fn hourly(step: &str, version: u64) -> Definition {
    Definition::from_json(&serde_json::json!({
        "tenant_id": "acme", "device_workflow_step_id": step, "workflow_id": "w1",
        "device_id": format!("dev-{step}"), "enabled": true, "version": version,
        "schedule": {"type": "rate", "every": "1h", "start": "2026-11-25T00:00:00Z"},
        "payload": {"action": "open_valve"}
    }))
    .unwrap()
}

#[tokio::test]
async fn a_second_run_over_the_same_window_writes_nothing_it_need_not() {
    let now: DateTime<Utc> = "2026-11-26T00:00:00Z".parse().unwrap();
    let definitions = Arc::new(InMemoryDefinitionSource::new());
    for i in 0..20 {
        definitions
            .put(&hourly(&format!("s{i:02}"), 1))
            .await
            .unwrap();
    }
    let memory = Arc::new(InMemoryScheduleStore::new(16));
    let store = Arc::new(CountingWrites {
        inner: memory.clone(),
        writes: AtomicUsize::new(0),
    });
    let scanner = Scanner {
        modes: schedule_core::mode_cache::ModeRouting::default(),
        definitions: definitions.clone(),
        store: store.clone(),
        validator: AllowAll,
        clock: ManualClock::new(now),
        settings: ScanSettings::default(),
    };
    let request = ScanRequest::daily(Timestamp::from_datetime(now), &scanner.settings);
    let metrics = Metrics::new("scan");

    let first = scanner.run(&request, None, &metrics).await.unwrap();
    let occurrences = first.occurrences;
    assert_eq!(occurrences, 20 * 25, "{first:?}");
    assert_eq!(first.created, occurrences);
    assert_eq!(store.writes.swap(0, Ordering::SeqCst), occurrences);
    let before = memory.items();

    let second = scanner.run(&request, None, &metrics).await.unwrap();
    assert_eq!(second.created, 0);
    assert_eq!(second.already_present, occurrences, "{second:?}");
    assert_eq!(
        store.writes.swap(0, Ordering::SeqCst),
        0,
        "a second run over the same window re-put occurrences that exist"
    );
    assert_eq!(memory.items(), before, "nothing changed");

    // One definition changes: its occurrences are brought to the new version, and only they.
    definitions.put(&hourly("s07", 2)).await.unwrap();
    let third = scanner.run(&request, None, &metrics).await.unwrap();
    assert_eq!(third.refreshed, 25, "{third:?}");
    assert_eq!(store.writes.load(Ordering::SeqCst), 25);
    assert!(
        memory
            .items()
            .iter()
            .filter(|i| i.device_workflow_step_id.as_str() == "s07")
            .all(|i| i.definition_version == 2)
    );
}
