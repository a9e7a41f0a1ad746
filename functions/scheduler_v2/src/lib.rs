//! `scheduler_v2`: the Lambda edge of the scheduler run, every window (5 minutes). The
//! EventBridge event carries nothing the run needs.

use schedule_core::adapters::clock::SystemClock;
use schedule_core::adapters::dynamo::{DynamoDefinitionSource, DynamoScheduleStore};
use schedule_core::adapters::sqs::SqsDispatchQueue;
use schedule_core::app::schedule::Scheduler;
use schedule_core::config::SchedulerConfig;

pub type AwsScheduler =
    Scheduler<DynamoScheduleStore, SqsDispatchQueue, DynamoDefinitionSource, SystemClock>;

pub fn build(config: &SchedulerConfig, sdk: &aws_config::SdkConfig) -> AwsScheduler {
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    Scheduler {
        store: DynamoScheduleStore::new(
            dynamo.clone(),
            &config.store.schedule_table,
            config.store.status_shards,
        ),
        queue: SqsDispatchQueue::new(aws_sdk_sqs::Client::new(sdk), &config.execution_queue_url),
        definitions: DynamoDefinitionSource::new(dynamo, &config.definitions_table),
        clock: SystemClock,
        settings: config.schedule.clone(),
    }
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
}
