//! Adapters behind the ports: DynamoDB and SQS for AWS (or an emulator, through the
//! standard `AWS_ENDPOINT_URL`), and [`memory`], the embedded twin used by `wfs demo`,
//! the fast tests and the simulation.

pub mod clock;
pub mod dynamo;
pub mod http_validator;
pub mod memory;
pub mod sqs;

mod aws_error;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

pub use aws_config::SdkConfig;

use crate::config::SdkSettings;

/// The one `SdkConfig` of a process, loaded the standard way: region, credentials and
/// `AWS_ENDPOINT_URL` (which points every client at an emulator) from the environment,
/// with [`sdk_settings`] applied.
pub async fn load_sdk_config(settings: &SdkSettings) -> aws_config::SdkConfig {
    sdk_settings(
        aws_config::defaults(aws_config::BehaviorVersion::latest()),
        settings,
    )
    .load()
    .await
}

/// What every client of this project gets, whatever else the loader sets: the SDK's own
/// retries off (one logical call is retried only by [`crate::retry::retrying`], so it makes
/// at most the policy's attempts, not the policy's times the SDK's) and explicit connect,
/// operation and attempt timeouts (a hung call is cut, not left to the Lambda timeout).
pub fn sdk_settings(
    loader: aws_config::ConfigLoader,
    settings: &SdkSettings,
) -> aws_config::ConfigLoader {
    loader.retry_config(RetryConfig::disabled()).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(settings.connect_timeout)
            .operation_timeout(settings.operation_timeout)
            .operation_attempt_timeout(settings.attempt_timeout)
            .build(),
    )
}
