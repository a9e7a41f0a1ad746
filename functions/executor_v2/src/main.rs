//! Wiring only: config, clients, the runtime loop.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use schedule_core::config::{Env, ExecutorConfig};
use schedule_core::error::ConfigError;
use schedule_core::metrics::Metrics;

#[tokio::main]
async fn main() -> Result<(), Error> {
    schedule_core::logging::init_lambda();
    let config = ExecutorConfig::from_env(&Env::process()).inspect_err(log_chain)?;
    let sdk = schedule_core::adapters::load_sdk_config(&config.sdk).await;
    let executor = executor_v2::build(&config, &sdk).inspect_err(log_chain)?;
    let requeue = executor_v2::requeue(&config, &sdk);
    let metrics = Metrics::new("executor_v2");

    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (executor, requeue, metrics) = (&executor, &requeue, &metrics);
        async move {
            let deadline =
                schedule_core::app::lambda_deadline(event.context.deadline, chrono::Utc::now());
            let (response, _) =
                executor_v2::handle(executor, requeue, &event.payload, deadline, metrics).await;
            executor.validator.record_into(metrics);
            metrics.flush(chrono::Utc::now().timestamp_millis());
            Ok::<SqsBatchResponse, Error>(response)
        }
    }))
    .await
}

/// The whole chain of a startup error, once, before the runtime reports it.
fn log_chain(e: &ConfigError) {
    tracing::error!(error = %schedule_core::error::chain(e), "executor_v2 cannot start");
}
