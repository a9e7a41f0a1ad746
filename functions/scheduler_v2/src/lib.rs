//! `scheduler_v2`: the Lambda edge of the scheduler run. Two triggers: the EventBridge
//! schedule every window (5 minutes; the event carries nothing the run needs), and the
//! scheduler continuation queue, whose messages carry the backlog a run's deadline left
//! (one status shard each; batch size 1, partial batch responses).

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::{DateTime, Utc};
use schedule_core::adapters::clock::SystemClock;
use schedule_core::adapters::dynamo::{DynamoDefinitionSource, DynamoScheduleStore};
use schedule_core::adapters::sqs::SqsDispatchQueue;
use schedule_core::app::AppError;
use schedule_core::app::schedule::{Continuation, Scheduler};
use schedule_core::config::SchedulerConfig;
use schedule_core::metrics::Metrics;
use schedule_core::ports::{Clock, DefinitionSource, DispatchQueue, ScheduleStore};
use serde_json::Value;

pub type AwsScheduler =
    Scheduler<DynamoScheduleStore, SqsDispatchQueue, DynamoDefinitionSource, SystemClock>;

pub fn build(config: &SchedulerConfig, sdk: &aws_config::SdkConfig) -> AwsScheduler {
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    Scheduler {
        store: DynamoScheduleStore::new(
            dynamo.clone(),
            &config.store.schedule_table,
            config.store.status_shards,
        ),
        queue: SqsDispatchQueue::new(sqs.clone(), &config.execution_queue_url),
        continuation: config
            .continuation_queue_url
            .as_deref()
            .map(|url| SqsDispatchQueue::new(sqs, url)),
        definitions: DynamoDefinitionSource::new(dynamo, &config.definitions_table),
        clock: SystemClock,
        settings: config.schedule.clone(),
    }
}

/// One invocation: a scheduled run, or a batch of continuations (an event with
/// `Records`). The answer is the run's report, or the batch's item failures.
pub async fn handle<S, Q, D, C>(
    scheduler: &Scheduler<S, Q, D, C>,
    request_id: &str,
    deadline: Option<DateTime<Utc>>,
    metrics: &Metrics,
    event: Value,
) -> Result<Value, AppError>
where
    S: ScheduleStore,
    Q: DispatchQueue,
    D: DefinitionSource,
    C: Clock,
{
    if event.get("Records").is_none() {
        // Boxed: the run's future is deep, and the runtime's would overflow the type
        // layout's depth limit with it inline.
        let report = Box::pin(scheduler.run(request_id, deadline, metrics)).await?;
        return serde_json::to_value(report).map_err(|e| AppError::InvalidRequest(e.to_string()));
    }
    let batch: SqsEvent = serde_json::from_value(event)
        .map_err(|e| AppError::InvalidRequest(format!("not an SQS event: {e}")))?;
    let mut response = SqsBatchResponse::default();
    for record in &batch.records {
        let id = record.message_id.clone().unwrap_or_default();
        let outcome = match Continuation::parse(record.body.as_deref().unwrap_or_default()) {
            Ok(c) => Box::pin(scheduler.resume(request_id, deadline, metrics, &c))
                .await
                .map(|_| ()),
            Err(e) => Err(e.into()),
        };
        if let Err(e) = outcome {
            // Received again after the visibility timeout; a malformed one ends in the DLQ.
            tracing::error!(message_id = %id, error = %schedule_core::error::chain(&e), "continuation failed");
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    serde_json::to_value(response).map_err(|e| AppError::InvalidRequest(e.to_string()))
}

#[cfg(test)]
mod tests {
    use schedule_core::embedded::{Embedded, EmbeddedSettings};
    use schedule_core::metrics::Metric;

    #[tokio::test]
    async fn a_run_on_an_empty_table_reports_nothing_due() {
        // The sample event carries nothing the run reads; it must still be valid JSON.
        let path = format!(
            "{}/../../events/scheduler_v2.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let event: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(event["detail-type"], "Scheduled Event");
        let world = Embedded::new(
            "2026-11-26T10:25:00Z".parse().unwrap(),
            EmbeddedSettings::default(),
        );
        let report = world
            .scheduler
            .run("request-1", None, &world.metrics)
            .await
            .unwrap();
        assert_eq!((report.due, report.dispatched), (0, 0));
        assert_eq!(
            report.due_before, "2026-11-26T10:31:00Z",
            "window 5 min + margin 1 min"
        );
        assert_eq!(world.metrics.get(Metric::Dispatched), 0);
        assert_eq!(
            world.metrics.get(Metric::SchedulerRunSucceeded),
            1,
            "a run that finished writes the heartbeat, even with nothing due"
        );
    }

    fn event(name: &str) -> serde_json::Value {
        let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn a_continuation_event_runs_its_shard_and_a_malformed_one_is_a_batch_item_failure() {
        let world = Embedded::new(
            "2026-11-26T10:25:00Z".parse().unwrap(),
            EmbeddedSettings::default(),
        );
        // A step in the sample's shard, due before its bound.
        let mut sample = event("scheduler_v2_continuation.json");
        let at = schedule_core::model::Timestamp::parse("2026-11-26T10:30:00Z").unwrap();
        let now = schedule_core::model::Timestamp::parse("2026-11-26T10:25:00Z").unwrap();
        let found = (0..1000).find_map(|n| {
            let def = schedule_core::model::Definition::from_json(&serde_json::json!({
                "tenant_id": "acme", "device_workflow_step_id": format!("s{n}"), "workflow_id": "w1",
                "device_id": "d1", "schedule": {"type": "once", "at": at.to_string()}}))
            .ok()?;
            let item = schedule_core::model::ScheduleItem::pending(
                &def,
                at,
                now,
                std::time::Duration::from_secs(86_400),
                16,
            );
            (item.status_shard.as_ref()?.as_str() == "PENDING#03").then_some((def, item))
        });
        let (def, item) = found.unwrap();
        use schedule_core::ports::{DefinitionSource, ScheduleStore};
        world.definitions.put(&def).await.unwrap();
        assert!(world.memory_store.create_if_absent(&item).await.unwrap());

        let answer = crate::handle(
            &world.scheduler,
            "req-1",
            None,
            &world.metrics,
            sample.clone(),
        )
        .await
        .unwrap();
        assert_eq!(
            answer["batchItemFailures"],
            serde_json::json!([]),
            "{answer}"
        );
        let stored = world.memory_store.get(&item.key).await.unwrap().unwrap();
        assert_eq!(stored.status, schedule_core::model::Status::Queued);
        assert_eq!(world.execution_queue.len(), 1);
        assert_eq!(world.metrics.get(Metric::SchedulerContinuationRan), 1);

        sample["Records"][0]["body"] = serde_json::json!("{\"v\":1,\"status_shard\":\"#03\"}");
        let answer = crate::handle(&world.scheduler, "req-2", None, &world.metrics, sample)
            .await
            .unwrap();
        assert_eq!(
            answer["batchItemFailures"][0]["itemIdentifier"],
            "7b0c2f1e-5d7a-4c1e-9f3b-2a6d8e4c1b90",
            "{answer}"
        );
        // The scheduled event still runs the whole window.
        let report = crate::handle(
            &world.scheduler,
            "req-3",
            None,
            &world.metrics,
            event("scheduler_v2.json"),
        )
        .await
        .unwrap();
        assert_eq!(report["due_before"], "2026-11-26T10:31:00Z", "{report}");
    }
}
