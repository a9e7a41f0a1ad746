//! `scheduler_v2`: the Lambda edge of the scheduler run, every window (5 minutes). The
//! EventBridge event carries nothing the run needs.

use schedule_core::adapters::clock::SystemClock;
use schedule_core::adapters::dynamo::DynamoScheduleStore;
use schedule_core::adapters::sqs::SqsDispatchQueue;
use schedule_core::app::schedule::Scheduler;
use schedule_core::config::SchedulerConfig;

pub type AwsScheduler = Scheduler<DynamoScheduleStore, SqsDispatchQueue, SystemClock>;

pub fn build(config: &SchedulerConfig, sdk: &aws_config::SdkConfig) -> AwsScheduler {
    Scheduler {
        store: DynamoScheduleStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            &config.store.schedule_table,
            config.store.status_shards,
        ),
        queue: SqsDispatchQueue::new(aws_sdk_sqs::Client::new(sdk), &config.execution_queue_url),
        clock: SystemClock,
        settings: config.schedule.clone(),
    }
}
