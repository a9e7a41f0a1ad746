//! Commands against an emulator (or AWS): create the resources for a local run, and write
//! definitions into the definitions table.

use std::time::Duration;

use schedule_core::adapters::dynamo::{create_definitions_table, create_schedule_table};
use schedule_core::adapters::sqs::{QueueSpec, create_queue};
use schedule_core::config::{Env, SdkSettings};
use schedule_core::limits::{
    DLQ_RETENTION, EXECUTION_MAX_RECEIVE_COUNT, EXECUTION_VISIBILITY_TIMEOUT,
};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  AWS_ENDPOINT_URL=http://localhost:5000 eval \"$(wfs setup-local)\""
)]
pub struct SetupArgs {
    /// Prefix of the table and queue names
    #[arg(long, value_name = "NAME", default_value = "wfs")]
    pub prefix: String,
}

/// The process's `SdkConfig`, with the timeouts the functions read (`AWS_*_TIMEOUT_MS`).
pub async fn load_sdk() -> Result<schedule_core::adapters::SdkConfig, String> {
    let settings = SdkSettings::from_env(&Env::process()).map_err(|e| e.to_string())?;
    Ok(schedule_core::adapters::load_sdk_config(&settings).await)
}

/// `wfs setup-local [--prefix NAME]`: tables and queues on the emulator that
/// `AWS_ENDPOINT_URL` names, then the variables the functions read, as `export` lines.
pub async fn setup(args: SetupArgs, aws: &crate::aws::AwsOptions) -> Result<(), String> {
    let prefix = args.prefix;
    let endpoint = aws
        .endpoint_url
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .ok_or_else(|| {
            "AWS_ENDPOINT_URL is not set: setup-local only creates resources on an emulator \
         (on AWS, deploy template.yaml with sam deploy)"
                .to_owned()
        })?;
    let sdk = aws.sdk().await.map_err(|e| e.to_string())?;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let (schedule, definitions) = (
        format!("{prefix}-schedule"),
        format!("{prefix}-definitions"),
    );
    create_schedule_table(&dynamo, &schedule)
        .await
        .map_err(|e| format!("creating {schedule}: {}", schedule_core::error::chain(&e)))?;
    create_definitions_table(&dynamo, &definitions)
        .await
        .map_err(|e| {
            format!(
                "creating {definitions}: {}",
                schedule_core::error::chain(&e)
            )
        })?;
    let sqs = &sqs;
    let queue = |name: String, visibility, redrive, retention| async move {
        let spec = QueueSpec {
            name: &name,
            visibility_timeout: visibility,
            redrive,
            retention,
        };
        create_queue(sqs, &spec)
            .await
            .map_err(|e| format!("creating queue {name}: {}", schedule_core::error::chain(&e)))
    };
    let (dlq_url, dlq_arn) = queue(
        format!("{prefix}-execution-dlq"),
        Duration::from_secs(30),
        None,
        Some(DLQ_RETENTION),
    )
    .await?;
    let (exec_url, _) = queue(
        format!("{prefix}-execution"),
        EXECUTION_VISIBILITY_TIMEOUT,
        Some((dlq_arn.as_str(), EXECUTION_MAX_RECEIVE_COUNT)),
        None,
    )
    .await?;
    let (action_url, _) = queue(
        format!("{prefix}-action-trigger"),
        Duration::from_secs(30),
        None,
        None,
    )
    .await?;
    eprintln!("created on {endpoint}: tables {schedule}, {definitions}; queues with DLQ {dlq_url}");
    println!("export SCHEDULE_TABLE={schedule}");
    println!("export DEFINITIONS_TABLE={definitions}");
    println!("export EXECUTION_QUEUE_URL={exec_url}");
    println!("export EXECUTION_DLQ_URL={dlq_url}");
    println!("export ACTION_TRIGGER_QUEUE_URL={action_url}");
    println!("export EXECUTION_MAX_RECEIVE_COUNT={EXECUTION_MAX_RECEIVE_COUNT}");
    println!("export SCHEDULE_WINDOW=5m");
    Ok(())
}
