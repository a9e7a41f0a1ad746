//! Adapters behind the ports: DynamoDB and SQS for AWS (or an emulator, through the
//! standard `AWS_ENDPOINT_URL`), and [`memory`], the embedded twin used by `wfs demo`,
//! the fast tests and the simulation.

pub mod clock;
pub mod dynamo;
pub mod http_validator;
pub mod memory;
pub mod sqs;

mod aws_error;

/// The one `SdkConfig` of a process, loaded the standard way: region, credentials and
/// `AWS_ENDPOINT_URL` (which points every client at an emulator) from the environment.
pub async fn load_sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await
}
