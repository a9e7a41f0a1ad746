//! Wiring only: config, clients, the runtime loop.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use schedule_core::app::lambda_deadline;
use schedule_core::config::{Env, SchedulerConfig};
use schedule_core::logging::error_chain;
use schedule_core::metrics::Metrics;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    schedule_core::logging::init_lambda();
    let config = SchedulerConfig::from_env(&Env::process())
        .inspect_err(|e| error_chain("scheduler_v2 cannot start", e))?;
    let sdk = schedule_core::adapters::load_sdk_config(&config.sdk).await;
    let scheduler = scheduler_v2::build(&config, &sdk);
    let metrics = Metrics::new("scheduler_v2");

    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (scheduler, metrics) = (&scheduler, &metrics);
        async move {
            let deadline = lambda_deadline(event.context.deadline, chrono::Utc::now());
            let result = scheduler_v2::handle(
                scheduler,
                &event.context.request_id,
                deadline,
                metrics,
                event.payload,
            )
            .await;
            metrics.flush(chrono::Utc::now().timestamp_millis());
            result.map_err(|e| {
                tracing::error!(error = %schedule_core::error::chain(&e), "schedule run failed");
                Error::from(e)
            })
        }
    }))
    .await
}
