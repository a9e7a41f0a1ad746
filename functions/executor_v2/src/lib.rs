//! `executor_v2`: the Lambda edge of the executor. An SQS batch (up to 10) is handled as
//! one: every message read and claimed concurrently ahead of its due instant, the
//! triggers due at one instant sent in one `SendMessageBatch`, one span per message; the
//! response lists the messages to be delivered again (`batchItemFailures`), so one bad
//! message never fails the batch.
//! A message that arrived early goes back to the execution queue as a fresh, delayed
//! copy before the original is acknowledged, so waiting costs none of its receives.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::future::join_all;
use schedule_core::adapters::clock::SystemClock;
use schedule_core::adapters::dynamo::{DynamoDefinitionSource, DynamoScheduleStore};
use schedule_core::adapters::http_validator::RegistryValidator;
use schedule_core::adapters::sqs::{SqsActionSink, SqsDispatchQueue};
use schedule_core::app::execute::{Executor, Incoming, Outcome};
use schedule_core::config::ExecutorConfig;
use schedule_core::error::ConfigError;
use schedule_core::metrics::Metrics;
use schedule_core::mode_cache::{CachedModes, ModeOf, ModeRouting, ShadowSink};
use schedule_core::ports::{
    ActionSink, Clock, DeviceValidator, DispatchQueue, OutgoingMessage, ScheduleStore,
};
use schedule_core::validation_cache::CachedValidator;
use std::sync::Arc;
use std::time::Duration;
use tracing::{Instrument, warn};

pub type AwsExecutor =
    Executor<DynamoScheduleStore, SqsActionSink, CachedValidator<RegistryValidator>, SystemClock>;

pub fn build(
    config: &ExecutorConfig,
    sdk: &aws_config::SdkConfig,
) -> Result<AwsExecutor, ConfigError> {
    let dynamo = aws_sdk_dynamodb::Client::new(sdk);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    // Read at each due time, through a short cache: a switch takes effect within its TTL.
    let modes: Arc<dyn ModeOf> = Arc::new(CachedModes::new(
        DynamoDefinitionSource::new(dynamo.clone(), &config.definitions_table),
        config.modes.default,
        config.modes.ttl,
    ));
    let shadow = config
        .shadow_queue_url
        .as_ref()
        .map(|url| Arc::new(SqsActionSink::new(sqs.clone(), url)) as Arc<dyn ShadowSink>);
    Ok(Executor {
        store: DynamoScheduleStore::new(
            dynamo,
            &config.store.schedule_table,
            config.store.status_shards,
        ),
        sink: SqsActionSink::new(sqs, &config.action_trigger_queue_url),
        validator: CachedValidator::new(
            RegistryValidator::from_config(&config.validation)?,
            config.validation.cache,
        ),
        clock: SystemClock,
        settings: config.execute.clone(),
        modes: ModeRouting::new(modes, shadow),
    })
}

/// The execution queue, for the fresh copies of early messages.
pub fn requeue(config: &ExecutorConfig, sdk: &aws_config::SdkConfig) -> SqsDispatchQueue {
    SqsDispatchQueue::new(aws_sdk_sqs::Client::new(sdk), &config.execution_queue_url)
}

/// Handles a batch; returns the response and each message's outcome (for tests and logs).
/// `deadline` is the invocation's (from the Lambda context); `requeue` is the execution
/// queue.
pub async fn handle<S, A, V, C, Q>(
    executor: &Executor<S, A, V, C>,
    requeue: &Q,
    event: &SqsEvent,
    deadline: Option<chrono::DateTime<chrono::Utc>>,
    metrics: &Metrics,
) -> (SqsBatchResponse, Vec<(String, Outcome)>)
where
    S: ScheduleStore,
    A: ActionSink,
    V: DeviceValidator,
    C: Clock,
    Q: DispatchQueue,
{
    let incoming: Vec<Incoming<'_>> = event
        .records
        .iter()
        .map(|record| {
            let message_id = record.message_id.as_deref().unwrap_or_default();
            Incoming {
                message_id,
                // The receipt handle names this delivery; without one, the message id does.
                delivery_id: record.receipt_handle.as_deref().unwrap_or(message_id),
                body: record.body.as_deref().unwrap_or(""),
                receive_count: record
                    .attributes
                    .get("ApproximateReceiveCount")
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
                deadline,
            }
        })
        .collect();
    // The whole batch at once: its reads and claims ahead of the due instants, the
    // triggers due together sent together.
    let outcomes = executor.handle_batch(&incoming, metrics).await;
    let handled = join_all(incoming.iter().zip(outcomes).map(|(msg, outcome)| {
        let span = tracing::info_span!("message", message_id = %msg.message_id);
        async move {
            let acknowledged = match &outcome {
                Outcome::Deferred { delay } => {
                    defer(requeue, msg.message_id, msg.body, *delay).await
                }
                other => other.acknowledge(),
            };
            (msg.message_id.to_owned(), outcome, acknowledged)
        }
        .instrument(span)
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    let mut outcomes = Vec::with_capacity(handled.len());
    for (id, outcome, acknowledged) in handled {
        if !acknowledged {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id.clone();
            response.batch_item_failures.push(failure);
        }
        outcomes.push((id, outcome));
    }
    (response, outcomes)
}

/// Sends a fresh copy of an early message with `delay`; `true` when it went out, so the
/// original may be deleted. On failure the original is reported for redelivery instead
/// (one receive spent, nothing lost).
async fn defer<Q: DispatchQueue>(
    requeue: &Q,
    message_id: &str,
    body: &str,
    delay: Duration,
) -> bool {
    let copy = OutgoingMessage {
        id: message_id.to_owned(),
        body: body.to_owned(),
        delay,
    };
    match requeue.send_batch(std::slice::from_ref(&copy)).await {
        Ok(report) if report.failed.is_empty() => true,
        Ok(report) => {
            warn!(message_id, failed = ?report.failed, "fresh copy of an early message not sent; left for redelivery");
            false
        }
        Err(e) => {
            warn!(message_id, error = %schedule_core::error::chain(&e), "fresh copy of an early message not sent; left for redelivery");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schedule_core::embedded::{Embedded, EmbeddedSettings};

    #[tokio::test]
    async fn the_sample_event_gets_a_partial_batch_response() {
        let path = format!(
            "{}/../../events/executor_v2.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let event: SqsEvent =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let world = Embedded::new(
            "2026-11-26T10:30:00Z".parse().unwrap(),
            EmbeddedSettings::default(),
        );
        let (response, outcomes) = handle(
            &world.executor,
            &world.execution_queue,
            &event,
            None,
            &world.metrics,
        )
        .await;
        // The first names an occurrence this (empty) store does not have: dropped.
        // The second is not an execution message: reported, so SQS redelivers it and
        // finally moves it to the DLQ.
        assert!(matches!(outcomes[0].1, Outcome::Orphan), "{outcomes:?}");
        assert!(
            matches!(outcomes[1].1, Outcome::Malformed { .. }),
            "{outcomes:?}"
        );
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        assert_eq!(failed, vec!["2e1424d4-f796-459a-8184-9c92662be6da"]);
        let body = serde_json::to_value(&response).unwrap();
        assert_eq!(
            body["batchItemFailures"][0]["itemIdentifier"],
            "2e1424d4-f796-459a-8184-9c92662be6da"
        );
    }
}
