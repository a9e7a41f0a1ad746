//! Wiring only: config, clients, the runtime loop.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use schedule_core::config::{Env, ExecutorConfig};
use schedule_core::metrics::Metrics;

#[tokio::main]
async fn main() -> Result<(), Error> {
    schedule_core::logging::init_lambda();
    let config = ExecutorConfig::from_env(&Env::process())?;
    let sdk = schedule_core::adapters::load_sdk_config(&config.sdk).await;
    let executor = executor_v2::build(&config, &sdk)?;
    let metrics = Metrics::new("executor_v2");

    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (executor, metrics) = (&executor, &metrics);
        async move {
            let (response, _) = executor_v2::handle(executor, &event.payload, metrics).await;
            executor.validator.record_into(metrics);
            metrics.flush(chrono::Utc::now().timestamp_millis());
            Ok::<SqsBatchResponse, Error>(response)
        }
    }))
    .await
}
