//! The scheduler's safety net against the emulator, through the real wiring
//! (`scheduler_v2::build` reads `DEFINITIONS_TABLE`) and the real DynamoDB adapters: a
//! disabled and a deleted definition cancel their due occurrences before anything is
//! sent; an unchanged one is sent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::Utc;
use integration_tests::aws_world::{AwsWorld, DeviceState};
use schedule_core::app::scan::ScanRequest;
use schedule_core::metrics::{Metric, Metrics};
use schedule_core::model::{Definition, ScheduleKey, Status, StepId, TenantId, Timestamp};
use schedule_core::ports::{DefinitionSource, ScheduleStore};
use serde_json::json;

fn once(step: &str, version: u64, enabled: bool, at: Timestamp) -> Definition {
    Definition::from_json(
        &json!({"tenant_id": "acme", "device_workflow_step_id": step, "workflow_id": "w1",
        "device_id": "dev-1", "enabled": enabled, "version": version,
        "schedule": {"type": "once", "at": at.to_string()}, "payload": {"action": "open_valve"}}),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disabled_and_deleted_definitions_cancel_their_occurrences_and_the_rest_is_sent() {
    let Some(world) = AwsWorld::new(Duration::from_secs(30)).await else {
        return;
    };
    world.device("acme", "dev-1", DeviceState::Active).await;
    let scanner = daily_scanner_v2::build(&world.scanner_config(), &world.sdk).unwrap();
    let scheduler = scheduler_v2::build(&world.scheduler_config(), &world.sdk);

    let at = Timestamp::from_datetime(Utc::now()).plus(Duration::from_secs(120));
    for step in ["off", "gone", "same"] {
        scanner
            .definitions
            .put(&once(step, 1, true, at))
            .await
            .unwrap();
    }
    let metrics = Metrics::new("safety-net");
    let now = Timestamp::from_datetime(Utc::now());
    let scan = scanner
        .run(&ScanRequest::daily(now, &scanner.settings), None, &metrics)
        .await
        .unwrap();
    assert_eq!(scan.created, 3, "{scan:?}");

    // The owner disables one step and deletes another; no stream record is handled.
    scheduler
        .definitions
        .put(&once("off", 2, false, at))
        .await
        .unwrap();
    world
        .emu
        .dynamo
        .delete_item()
        .table_name(scheduler.definitions.table())
        .key(
            "PK",
            aws_sdk_dynamodb::types::AttributeValue::S("TENANT#acme".into()),
        )
        .key(
            "SK",
            aws_sdk_dynamodb::types::AttributeValue::S("STEP#gone".into()),
        )
        .send()
        .await
        .unwrap();

    let report = scheduler.run("run-1", None, &metrics).await.unwrap();
    assert_eq!(
        (
            report.due,
            report.cancelled,
            report.dispatched,
            report.definitions_unchecked
        ),
        (3, 2, 1, 0),
        "{report:?}"
    );
    assert_eq!(metrics.get(Metric::Cancelled), 2);

    let key = |step: &str| {
        ScheduleKey::new(
            &TenantId::parse("acme").unwrap(),
            at,
            &StepId::parse(step).unwrap(),
        )
    };
    for (step, reason) in [
        ("off", "definition disabled (version 2)"),
        ("gone", "definition deleted"),
    ] {
        let item = scheduler.store.get(&key(step)).await.unwrap().unwrap();
        assert_eq!(item.status, Status::Cancelled, "{step}");
        assert_eq!(item.last_error.as_deref(), Some(reason), "{step}");
    }
    let sent = scheduler.store.get(&key("same")).await.unwrap().unwrap();
    assert_eq!(sent.status, Status::Queued);

    // One message on the execution queue (delayed until its time): the unchanged step's.
    assert_eq!(world.queue_depth(&world.execution_url).await, 1);
}
