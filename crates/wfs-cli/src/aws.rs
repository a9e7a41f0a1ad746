//! AWS access: the standard credential chain (environment, profiles, the container and
//! instance roles), with `--region`, `--profile` and `--endpoint-url` (an emulator) on top,
//! and the SDK settings the functions use (retries off, explicit timeouts).

use schedule_core::adapters::SdkConfig;
use schedule_core::adapters::dynamo::{DynamoDefinitionSource, DynamoScheduleStore};
use schedule_core::adapters::sqs::SqsDispatchQueue;
use schedule_core::config::{Env, SdkSettings};
use schedule_core::limits::DEFAULT_STATUS_SHARDS;

use crate::CliError;

/// Where AWS is: global options of every command that reaches it.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AwsOptions {
    /// Send every AWS call to this endpoint (an emulator such as moto or LocalStack);
    /// default: AWS_ENDPOINT_URL, else AWS itself
    #[arg(long, global = true, value_name = "URL", help_heading = "AWS")]
    pub endpoint_url: Option<String>,
    /// AWS region (default: AWS_REGION, then the profile's region)
    #[arg(long, global = true, value_name = "REGION", help_heading = "AWS")]
    pub region: Option<String>,
    /// Named profile of ~/.aws/config (default: AWS_PROFILE, then "default")
    #[arg(long, global = true, value_name = "NAME", help_heading = "AWS")]
    pub profile: Option<String>,
}

impl AwsOptions {
    /// The SDK config: the standard chain plus these options, with the timeouts the
    /// functions read (`AWS_*_TIMEOUT_MS`).
    pub async fn sdk(&self) -> Result<SdkConfig, CliError> {
        let settings =
            SdkSettings::from_env(&Env::process()).map_err(|e| CliError::Usage(e.to_string()))?;
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(url) = &self.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        Ok(schedule_core::adapters::sdk_settings(loader, &settings)
            .load()
            .await)
    }
}

/// The schedule table, from a flag or the variable the functions read.
#[derive(Debug, Clone, clap::Args)]
pub struct ScheduleTable {
    /// The schedule table
    #[arg(
        long,
        env = "SCHEDULE_TABLE",
        hide_env_values = true,
        value_name = "NAME"
    )]
    pub schedule_table: String,
    /// Status shards the table is written with
    #[arg(long, env = "STATUS_SHARDS", hide_env_values = true, default_value_t = DEFAULT_STATUS_SHARDS, value_name = "N")]
    pub status_shards: u16,
}

impl ScheduleTable {
    pub fn store(&self, sdk: &SdkConfig) -> DynamoScheduleStore {
        DynamoScheduleStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            &self.schedule_table,
            self.status_shards,
        )
    }
}

/// The definitions table, from a flag or the variable the functions read.
#[derive(Debug, Clone, clap::Args)]
pub struct DefinitionsTable {
    /// The definitions table
    #[arg(
        long,
        env = "DEFINITIONS_TABLE",
        hide_env_values = true,
        value_name = "NAME"
    )]
    pub definitions_table: String,
}

impl DefinitionsTable {
    pub fn source(&self, sdk: &SdkConfig) -> DynamoDefinitionSource {
        DynamoDefinitionSource::new(aws_sdk_dynamodb::Client::new(sdk), &self.definitions_table)
    }
}

/// The execution queue and its DLQ.
#[derive(Debug, Clone, clap::Args)]
pub struct Queues {
    /// The execution queue
    #[arg(
        long,
        env = "EXECUTION_QUEUE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub queue_url: String,
    /// The execution queue's dead-letter queue
    #[arg(
        long,
        env = "EXECUTION_DLQ_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    pub dlq_url: String,
}

impl Queues {
    pub fn dlq(&self, sdk: &SdkConfig) -> SqsDispatchQueue {
        SqsDispatchQueue::new(aws_sdk_sqs::Client::new(sdk), &self.dlq_url)
    }

    pub fn queue(&self, sdk: &SdkConfig) -> SqsDispatchQueue {
        SqsDispatchQueue::new(aws_sdk_sqs::Client::new(sdk), &self.queue_url)
    }
}
