//! The DLQ redrive against the emulator, through the real SQS and DynamoDB adapters and the
//! executor's Lambda edge: a FAILED occurrence's dead message goes back to the execution
//! queue (sent first, deleted after), and the executor moves the occurrence FAILED → QUEUED
//! and fires it once, under its own execution id.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::Utc;
use integration_tests::aws_world::{AwsWorld, DeviceState};
use integration_tests::fakes::sqs_event;
use schedule_core::adapters::sqs::SqsDispatchQueue;
use schedule_core::app::ExecutionMessage;
use schedule_core::app::execute::Outcome;
use schedule_core::app::redrive::{RedriveAction, RedriveOptions, redrive};
use schedule_core::metrics::Metrics;
use schedule_core::model::{Definition, ScheduleItem, Status, StatusChange, Timestamp};
use schedule_core::ports::{DispatchQueue, OutgoingMessage, ScheduleStore};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redriven_dead_message_fires_its_failed_step_once() {
    let Some(world) = AwsWorld::new(Duration::from_secs(30)).await else {
        return;
    };
    world.device("acme", "dev-1", DeviceState::Active).await;
    let executor = executor_v2::build(&world.executor_config(), &world.sdk).unwrap();
    let requeue = executor_v2::requeue(&world.executor_config(), &world.sdk);
    let dlq = SqsDispatchQueue::new(world.emu.sqs.clone(), &world.dlq_url);
    let execution = SqsDispatchQueue::new(world.emu.sqs.clone(), &world.execution_url);

    // An occurrence that failed on its last receive, its message in the DLQ.
    let now = Timestamp::from_datetime(Utc::now());
    let def = Definition::from_json(
        &json!({"tenant_id": "acme", "device_workflow_step_id": "s1",
        "workflow_id": "w1", "device_id": "dev-1", "enabled": true, "version": 1,
        "schedule": {"type": "once", "at": now.to_string()}, "payload": {"action": "open_valve"}}),
    )
    .unwrap();
    let item = ScheduleItem::pending(
        &def,
        now,
        now,
        Duration::from_secs(86_400),
        executor.store.status_shards(),
    );
    let key = item.key.clone();
    assert!(executor.store.create_if_absent(&item).await.unwrap());
    for change in [
        StatusChange::queued(now),
        StatusChange::failed(now, "SendMessage throttled or unavailable"),
    ] {
        assert!(executor.store.change_status(&key, &change).await.unwrap());
    }
    let body = ExecutionMessage::for_key(&key, now).body();
    let sent = dlq
        .send_batch(&[OutgoingMessage {
            id: "dead".to_owned(),
            body,
            delay: Duration::ZERO,
        }])
        .await
        .unwrap();
    assert!(sent.failed.is_empty(), "{sent:?}");

    let options = RedriveOptions {
        dry_run: false,
        max: None,
        wait: Duration::from_secs(1),
    };
    let report = redrive(&dlq, &execution, &options).await.unwrap();
    assert_eq!(report.entries.len(), 1, "{report:?}");
    assert_eq!(report.entries[0].action, RedriveAction::Redriven);
    assert!(
        dlq.receive(10, Duration::from_secs(1))
            .await
            .unwrap()
            .is_empty(),
        "deleted from the DLQ"
    );

    let metrics = Metrics::new("redrive-emulator");
    let mut outcomes = Vec::new();
    for _ in 0..20 {
        let received = execution.receive(10, Duration::from_secs(1)).await.unwrap();
        if received.is_empty() {
            if !outcomes.is_empty() {
                break;
            }
            continue;
        }
        let (response, handled) =
            executor_v2::handle(&executor, &requeue, &sqs_event(&received), None, &metrics).await;
        assert!(response.batch_item_failures.is_empty(), "{handled:?}");
        for m in &received {
            execution.delete(&m.receipt_handle).await.unwrap();
        }
        outcomes.extend(handled.into_iter().map(|(_, o)| o));
    }
    assert!(
        matches!(outcomes[..], [Outcome::Executed { .. }]),
        "{outcomes:?}"
    );
    let stored = executor.store.get(&key).await.unwrap().unwrap();
    assert_eq!(stored.status, Status::Executed);
    let action = SqsDispatchQueue::new(world.emu.sqs.clone(), &world.action_url);
    let triggers = action.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(triggers.len(), 1);
    let trigger: serde_json::Value = serde_json::from_str(&triggers[0].body).unwrap();
    assert_eq!(
        trigger["execution_id"].as_str(),
        Some(stored.execution_id().as_str())
    );
}
