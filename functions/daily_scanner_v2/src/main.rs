//! Wiring only: config, clients, the runtime loop.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use schedule_core::app::lambda_deadline;
use schedule_core::config::{Env, ScannerConfig};
use schedule_core::logging::error_chain;
use schedule_core::metrics::Metrics;
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    schedule_core::logging::init_lambda();
    let config = ScannerConfig::from_env(&Env::process())
        .inspect_err(|e| error_chain("daily_scanner_v2 cannot start", e))?;
    let sdk = schedule_core::adapters::load_sdk_config(&config.sdk).await;
    let scanner = daily_scanner_v2::build(&config, &sdk)
        .inspect_err(|e| error_chain("daily_scanner_v2 cannot start", e))?;
    let segment_queue = daily_scanner_v2::segment_queue(&config, &sdk);
    let metrics = Metrics::new("daily_scanner_v2");

    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| {
        let (scanner, metrics, segment_queue) = (&scanner, &metrics, segment_queue.as_ref());
        async move {
            let deadline = lambda_deadline(event.context.deadline, chrono::Utc::now());
            // Boxed: the scan's future nests deeply, past what the compiler lays out inline.
            let result = Box::pin(daily_scanner_v2::handle_event(
                scanner,
                segment_queue,
                &event.payload,
                deadline,
                metrics,
            ))
            .await;
            scanner.validator.record_into(metrics);
            metrics.flush(chrono::Utc::now().timestamp_millis());
            match result {
                Ok(answer) => Ok::<_, Error>(answer),
                Err(e) => {
                    error_chain("scan failed", &e);
                    Err(e.into())
                }
            }
        }
    }))
    .await
}
