//! Per-tenant rollout modes on the embedded twin: a tenant in shadow sends nothing to the
//! action trigger queue and leaves a complete shadow record; a switch to active mid-day
//! neither drops nor doubles an occurrence; a tenant that is off gets nothing
//! materialized, and nothing sent if it is switched off after materialization.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use schedule_core::app::scan::ScanRequest;
use schedule_core::app::sync::{ChangeKind, DefinitionChange, DefinitionSync, Image};
use schedule_core::embedded::{Embedded, EmbeddedSettings};
use schedule_core::metrics::Metrics;
use schedule_core::model::{Definition, Status, TenantId, TenantMode, Timestamp, TriggerMessage};
use schedule_core::ports::{Clock, DefinitionSource, TenantModes};
use serde_json::json;

fn start() -> DateTime<Utc> {
    "2026-11-26T08:00:00Z".parse().unwrap()
}

fn ts(t: DateTime<Utc>) -> Timestamp {
    Timestamp::from_datetime(t)
}

fn tenant(t: &str) -> TenantId {
    TenantId::parse(t).unwrap()
}

/// A step every `every_m` minutes from 08:01 to 10:01 (exclusive).
fn every(tenant: &str, step: &str, every_m: u32) -> Definition {
    Definition::from_json(&json!({"tenant_id": tenant, "device_workflow_step_id": step, "workflow_id": "w1",
        "device_id": "dev-1", "schedule": {"type": "rate", "every": format!("{every_m}m"),
        "start": "2026-11-26T08:01:00Z", "end": "2026-11-26T10:01:00Z"}, "payload": {"action": "open_valve"}}))
    .unwrap()
}

async fn world(defs: &[Definition], modes: &[(&str, TenantMode)]) -> Embedded {
    let world = Embedded::new(start(), EmbeddedSettings::default());
    for d in defs {
        world.definitions.put(d).await.unwrap();
    }
    for (t, m) in modes {
        world
            .definitions
            .set_mode(&tenant(t), *m, ts(start()))
            .await
            .unwrap();
    }
    world
}

/// The scheduler every 5 minutes and the executor every 10 s, until `until`.
async fn drive(world: &Embedded, until: DateTime<Utc>) {
    let mut run = 0;
    let mut next_schedule = world.clock.now();
    while world.clock.now() < until {
        if world.clock.now() >= next_schedule {
            run += 1;
            world
                .schedule(&format!("run-{}-{run}", world.clock.now().timestamp()))
                .await
                .unwrap();
            next_schedule += chrono::Duration::minutes(5);
        }
        world.execute_ready().await.unwrap();
        world.clock.advance(Duration::from_secs(10));
    }
}

fn shadow_triggers(world: &Embedded) -> Vec<TriggerMessage> {
    world
        .shadow_queue
        .peek_bodies()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect()
}

#[tokio::test]
async fn a_tenant_in_shadow_sends_nothing_and_leaves_a_complete_shadow_record() {
    let defs = [
        every("acme", "a1", 10),
        every("acme", "a2", 15),
        every("initech", "i1", 10),
    ];
    let world = world(&defs, &[("acme", TenantMode::Shadow)]).await;
    world
        .scan(&ScanRequest::daily(ts(start()), &Default::default()))
        .await
        .unwrap();
    drive(
        &world,
        start() + chrono::Duration::hours(2) + chrono::Duration::minutes(5),
    )
    .await;

    let items = world.memory_store.items();
    let acme: Vec<_> = items
        .iter()
        .filter(|i| i.tenant_id.as_str() == "acme")
        .collect();
    assert_eq!(acme.len(), 12 + 8, "every acme occurrence materialized");
    for item in &acme {
        assert_eq!(item.status, Status::Executed, "{}", item.key);
        assert_eq!(item.mode, Some(TenantMode::Shadow), "{}", item.key);
        let body: TriggerMessage =
            serde_json::from_str(item.shadow_trigger.as_deref().unwrap()).unwrap();
        assert_eq!(body.execution_id, item.execution_id());
        assert_eq!(body.scheduled_time, item.scheduled_time);
        assert!(
            item.executed_at.unwrap() >= item.scheduled_time,
            "never early"
        );
    }
    let sent = world.triggers();
    assert!(
        sent.iter().all(|t| t.tenant_id.as_str() == "initech"),
        "no acme trigger sent"
    );
    assert_eq!(sent.len(), 12);
    let initech: Vec<_> = items
        .iter()
        .filter(|i| i.tenant_id.as_str() == "initech")
        .collect();
    assert!(
        initech
            .iter()
            .all(|i| i.mode == Some(TenantMode::Active) && i.shadow_trigger.is_none())
    );
    // The shadow queue holds the same would-be triggers, one per occurrence.
    let shadow: BTreeSet<_> = shadow_triggers(&world)
        .into_iter()
        .map(|t| t.execution_id.to_string())
        .collect();
    let recorded: BTreeSet<_> = acme.iter().map(|i| i.execution_id().to_string()).collect();
    assert_eq!(shadow, recorded);
}

#[tokio::test]
async fn switching_to_active_mid_day_neither_drops_nor_doubles_an_occurrence() {
    let defs = [every("acme", "a1", 5), every("acme", "a2", 10)];
    let world = world(&defs, &[("acme", TenantMode::Shadow)]).await;
    world
        .scan(&ScanRequest::daily(ts(start()), &Default::default()))
        .await
        .unwrap();
    // Switch at 09:03:05, between two due times, with occurrences already queued with
    // their delays on both sides of it.
    drive(&world, "2026-11-26T09:03:05Z".parse().unwrap()).await;
    world
        .definitions
        .set_mode(&tenant("acme"), TenantMode::Active, ts(world.clock.now()))
        .await
        .unwrap();
    drive(
        &world,
        start() + chrono::Duration::hours(2) + chrono::Duration::minutes(5),
    )
    .await;

    let items = world.memory_store.items();
    assert_eq!(items.len(), 24 + 12);
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    for t in world.triggers() {
        *sent.entry(t.execution_id.to_string()).or_default() += 1;
    }
    let mut shadowed = 0;
    for item in &items {
        assert_eq!(item.status, Status::Executed, "{}", item.key);
        let id = item.execution_id().to_string();
        let real = sent.get(&id).copied().unwrap_or(0);
        match item.mode {
            Some(TenantMode::Shadow) => {
                shadowed += 1;
                assert_eq!(real, 0, "{} shadowed and sent", item.key);
                assert!(item.shadow_trigger.is_some());
                assert!(
                    item.scheduled_time.as_datetime()
                        < "2026-11-26T09:03:05Z".parse::<DateTime<Utc>>().unwrap()
                );
            }
            Some(TenantMode::Active) => {
                assert_eq!(real, 1, "{} sent {real} times", item.key);
                assert!(item.shadow_trigger.is_none());
                assert!(
                    item.scheduled_time.as_datetime()
                        > "2026-11-26T09:03:05Z".parse::<DateTime<Utc>>().unwrap()
                );
            }
            other => panic!("{} executed under {other:?}", item.key),
        }
    }
    assert!(
        shadowed > 0 && shadowed < items.len(),
        "both flows took part: {shadowed}"
    );
    assert_eq!(
        sent.len() + shadowed,
        items.len(),
        "every occurrence exactly once"
    );
}

#[tokio::test]
async fn a_tenant_that_is_off_gets_nothing_materialized_or_sent() {
    let defs = [every("acme", "a1", 10), every("initech", "i1", 10)];
    let world = world(&defs, &[("acme", TenantMode::Off)]).await;
    let report = world
        .scan(&ScanRequest::daily(ts(start()), &Default::default()))
        .await
        .unwrap();
    // The mode rows are neither definitions nor invalid ones.
    assert_eq!(
        (
            report.definitions,
            report.invalid_definitions,
            report.tenant_off
        ),
        (2, 0, 1)
    );
    assert!(
        world
            .memory_store
            .items()
            .iter()
            .all(|i| i.tenant_id.as_str() == "initech")
    );

    // Switched off after its occurrences were materialized: SKIPPED at the due time.
    world
        .definitions
        .set_mode(&tenant("initech"), TenantMode::Off, ts(start()))
        .await
        .unwrap();
    drive(&world, start() + chrono::Duration::minutes(30)).await;
    assert!(world.triggers().is_empty());
    let done: Vec<_> = world
        .memory_store
        .items()
        .into_iter()
        .filter(|i| i.scheduled_time.as_datetime() < world.clock.now())
        .collect();
    assert_eq!(done.len(), 3);
    assert!(
        done.iter()
            .all(|i| i.status == Status::Skipped && i.mode == Some(TenantMode::Off))
    );
}

#[tokio::test]
async fn definition_sync_ignores_settings_rows_and_tenants_that_are_off() {
    let world = world(&[], &[("acme", TenantMode::Off)]).await;
    let sync = DefinitionSync {
        store: world.memory_store.clone(),
        definitions: world.definitions.clone(),
        clock: world.clock.clone(),
        settings: Default::default(),
        modes: world.scanner.modes.clone(),
    };
    let metrics = Metrics::new("test");
    let row =
        json!({"PK": "TENANT#acme", "SK": "SETTINGS#mode", "tenant_id": "acme", "mode": "off"});
    let settings = DefinitionChange {
        event_id: "e1".into(),
        kind: ChangeKind::Insert,
        old: None,
        new: Some(Image::from_json(&row)),
    };
    let out = sync.apply(&settings, &metrics).await.unwrap();
    assert_eq!((out.settings, out.invalid, out.created), (1, 0, 0));

    let def = every("acme", "a1", 10);
    world.definitions.put(&def).await.unwrap();
    let change = DefinitionChange {
        event_id: "e2".into(),
        kind: ChangeKind::Insert,
        old: None,
        new: Some(Image::Valid(def)),
    };
    let out = sync.apply(&change, &metrics).await.unwrap();
    assert_eq!((out.tenant_off, out.created), (1, 0));
    assert!(world.memory_store.items().is_empty());
}

/// A mode source that cannot answer.
#[derive(Debug)]
struct Unreadable;

impl schedule_core::mode_cache::ModeOf for Unreadable {
    fn mode_of<'a>(
        &'a self,
        _tenant: &'a TenantId,
    ) -> futures::future::BoxFuture<'a, Result<TenantMode, schedule_core::error::StoreError>> {
        Box::pin(async {
            Err(schedule_core::error::StoreError::Transient {
                operation: "GetItem",
                source: "throttled".into(),
            })
        })
    }
}

#[tokio::test]
async fn a_mode_that_cannot_be_read_sends_nothing_and_is_retried() {
    let mut world = world(&[every("acme", "a1", 10)], &[]).await;
    world.executor.modes =
        schedule_core::mode_cache::ModeRouting::new(std::sync::Arc::new(Unreadable), None);
    world
        .scan(&ScanRequest::daily(ts(start()), &Default::default()))
        .await
        .unwrap();
    drive(&world, start() + chrono::Duration::minutes(2)).await;
    assert!(world.triggers().is_empty());
    let first = world
        .memory_store
        .items()
        .into_iter()
        .min_by_key(|i| i.scheduled_time)
        .unwrap();
    assert_eq!(first.status, Status::Queued, "left for the next delivery");
    assert_eq!(first.mode, None);
}
