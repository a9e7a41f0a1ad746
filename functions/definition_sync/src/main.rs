//! Wiring only: config, clients, the runtime loop.

use aws_lambda_events::event::dynamodb::Event;
use lambda_runtime::{Error, LambdaEvent, service_fn};
use schedule_core::config::{Env, SyncConfig};
use schedule_core::logging::error_chain;
use schedule_core::metrics::Metrics;

#[tokio::main]
async fn main() -> Result<(), Error> {
    schedule_core::logging::init_lambda();
    let config = SyncConfig::from_env(&Env::process())
        .inspect_err(|e| error_chain("definition_sync cannot start", e))?;
    let sdk = schedule_core::adapters::load_sdk_config(&config.sdk).await;
    let sync = definition_sync::build(&config, &sdk);
    let metrics = Metrics::new("definition_sync");

    lambda_runtime::run(service_fn(|event: LambdaEvent<Event>| {
        let (sync, metrics) = (&sync, &metrics);
        async move {
            let (response, outcome) = definition_sync::handle(sync, &event.payload, metrics).await;
            metrics.flush(chrono::Utc::now().timestamp_millis());
            tracing::info!(
                records = outcome.records,
                created = outcome.created,
                refreshed = outcome.refreshed,
                reinstated = outcome.reinstated,
                cancelled = outcome.cancelled,
                unchanged = outcome.unchanged,
                stale_ignored = outcome.stale_ignored,
                invalid = outcome.invalid,
                failed = response.batch_item_failures.len(),
                "definition changes synced"
            );
            Ok::<_, Error>(response)
        }
    }))
    .await
}
