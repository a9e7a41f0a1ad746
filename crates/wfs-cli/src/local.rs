//! Commands against an emulator (or AWS): create the resources for a local run, and write
//! definitions into the definitions table.

use std::time::Duration;

use schedule_core::adapters::dynamo::{
    DynamoDefinitionSource, create_definitions_table, create_schedule_table,
};
use schedule_core::adapters::sqs::{QueueSpec, create_queue};
use schedule_core::config::{Env, SdkSettings};
use schedule_core::limits::{
    DLQ_RETENTION, EXECUTION_MAX_RECEIVE_COUNT, EXECUTION_VISIBILITY_TIMEOUT,
};
use schedule_core::model::Definition;
use schedule_core::ports::DefinitionSource;

/// The process's `SdkConfig`, with the timeouts the functions read (`AWS_*_TIMEOUT_MS`).
pub(crate) async fn load_sdk() -> Result<schedule_core::adapters::SdkConfig, String> {
    let settings = SdkSettings::from_env(&Env::process()).map_err(|e| e.to_string())?;
    Ok(schedule_core::adapters::load_sdk_config(&settings).await)
}

/// `wfs setup-local [--prefix NAME]`: tables and queues on the emulator that
/// `AWS_ENDPOINT_URL` names, then the variables the functions read, as `export` lines.
pub async fn setup(args: &[String]) -> Result<(), String> {
    let prefix = match args {
        [] => "wfs".to_owned(),
        [flag, value] if flag == "--prefix" => value.clone(),
        _ => return Err("usage: wfs setup-local [--prefix NAME]".to_owned()),
    };
    let endpoint = std::env::var("AWS_ENDPOINT_URL").map_err(|_| {
        "AWS_ENDPOINT_URL is not set: setup-local only creates resources on an emulator \
         (on AWS, deploy template.yaml with sam deploy)"
            .to_owned()
    })?;
    let sdk = load_sdk().await?;
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

/// `wfs definitions put FILE`: validates every definition, writes the valid ones, and
/// reports each rejection with its position, field and value. Fails if any was rejected.
pub async fn put_definitions(args: &[String]) -> Result<(), String> {
    let [file] = args else {
        return Err(
            "usage: wfs definitions put FILE (a JSON array, or one definition per line)".to_owned(),
        );
    };
    let table = std::env::var("DEFINITIONS_TABLE")
        .map_err(|_| "DEFINITIONS_TABLE is not set".to_owned())?;
    let values = crate::demo::load(&std::path::PathBuf::from(file))?;
    let sdk = load_sdk().await?;
    let source = DynamoDefinitionSource::new(aws_sdk_dynamodb::Client::new(&sdk), table);
    let (mut written, mut rejected) = (0, 0);
    for (i, value) in values.iter().enumerate() {
        let outcome = match Definition::from_json(value) {
            Ok(def) => source
                .put(&def)
                .await
                .map_err(|e| schedule_core::error::chain(&e)),
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => written += 1,
            Err(e) => {
                rejected += 1;
                eprintln!("definition #{}: {e}", i + 1);
            }
        }
    }
    println!("{written} written, {rejected} rejected");
    if rejected > 0 {
        Err(format!(
            "{rejected} of {} definitions rejected",
            values.len()
        ))
    } else {
        Ok(())
    }
}
