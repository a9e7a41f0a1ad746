//! Sorting SDK errors into retryable and not, once for both DynamoDB and SQS.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::error::{QueueError, StoreError};

/// Error codes that mean "slow down or try again", across DynamoDB and SQS.
const TRANSIENT_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "TransactionConflictException",
    "KMSThrottled",
    "RequestThrottled",
    "AWS.SimpleQueueService.RequestThrottled",
];

/// Whether an SDK error is worth retrying: transport failures, timeouts, 5xx and
/// throttling codes are; everything else (validation, missing resources, access) is not.
pub(crate) fn is_transient<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or_default();
            TRANSIENT_CODES.contains(&code)
        }
        _ => false,
    }
}

/// Whether retrying can help, and the error as a source that keeps the SDK error.
fn classify<E, R>(err: SdkError<E, R>) -> (bool, Box<dyn std::error::Error + Send + Sync>)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    (
        is_transient(&err),
        Box::new(Described(err_with_code(&err), Box::new(err))),
    )
}

pub(crate) fn store_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match classify(err) {
        (true, source) => StoreError::Transient { operation, source },
        (false, source) => StoreError::Permanent { operation, source },
    }
}

pub(crate) fn queue_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match classify(err) {
        (true, source) => QueueError::Transient { operation, source },
        (false, source) => QueueError::Permanent { operation, source },
    }
}

/// The result of a conditional write: `Ok(true)` written, `Ok(false)` its condition did
/// not hold (another writer got there first), `Err` anything else.
pub(crate) fn conditional_write<T, E, R>(
    operation: &'static str,
    out: Result<T, SdkError<E, R>>,
) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match out {
        Ok(_) => Ok(true),
        Err(SdkError::ServiceError(se))
            if se.err().code() == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(store_error(operation, e)),
    }
}

fn err_with_code<E: ProvideErrorMetadata, R>(err: &SdkError<E, R>) -> String {
    match err {
        SdkError::ServiceError(se) => format!(
            "{}: {}",
            se.err().code().unwrap_or("unknown error"),
            se.err().message().unwrap_or("no message")
        ),
        SdkError::TimeoutError(_) => "request timed out".to_owned(),
        SdkError::DispatchFailure(_) => "could not reach the service".to_owned(),
        SdkError::ResponseError(_) => "unreadable response".to_owned(),
        _ => "request could not be built".to_owned(),
    }
}

/// An SDK error with its code and message in `Display` (the SDK's own `Display` says only
/// "service error"), the SDK error kept as the source.
#[derive(Debug)]
struct Described(String, Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for Described {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Described {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.1.as_ref())
    }
}
