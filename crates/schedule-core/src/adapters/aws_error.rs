//! Sorting SDK errors into retryable and not, once for both DynamoDB and SQS.

use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};

use crate::error::{QueueError, StoreError};

/// Error codes that mean "slow down or try again": every throttling code and every
/// server-side failure of DynamoDB and SQS, as the SDK reports them (SQS speaks its
/// query-compatible codes, for example `KMS.ThrottlingException` for `KmsThrottled`).
/// Everything else (validation, missing resources, access, a failed condition) is
/// permanent: retrying the same request gets the same answer.
const TRANSIENT_CODES: &[&str] = &[
    // Both services, and the generic codes of the AWS protocols.
    "ThrottlingException",
    "Throttling",
    "ThrottledException",
    "TooManyRequestsException",
    "RequestThrottledException",
    "InternalServerError",
    "InternalFailure",
    "InternalError",
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "RequestTimeout",
    "RequestTimeoutException",
    // DynamoDB.
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TransactionConflictException",
    "TransactionInProgressException",
    "ReplicatedWriteConflictException",
    // Too many concurrent control-plane operations (CreateTable on an emulator run).
    "LimitExceededException",
    // SQS (`AWS.SimpleQueueService.` prefixes are stripped before the lookup).
    "RequestThrottled",
    "KmsThrottled",
    "KMSThrottled",
    "KMS.ThrottlingException",
    "KmsUnavailable",
    "KMS.UnavailableException",
    "KMS.KMSInternalException",
    // Too many messages in flight: clears as the consumers delete theirs.
    "OverLimit",
];

/// Whether a service's answer is worth retrying: a transient code, or, whatever the
/// code, a 5xx or a 429 (an answer the SDK could not even read a code from included).
pub(crate) fn is_transient_answer(code: Option<&str>, status: u16) -> bool {
    if status >= 500 || status == 429 {
        return true;
    }
    let Some(code) = code else {
        return false;
    };
    // `com.amazonaws.dynamodb.v20120810#ThrottlingException` and the SQS query prefix.
    let code = code.rsplit_once('#').map_or(code, |(_, c)| c);
    let code = code.strip_prefix("AWS.SimpleQueueService.").unwrap_or(code);
    TRANSIENT_CODES.contains(&code)
}

/// Whether an SDK error is worth retrying: transport failures, timeouts, unreadable
/// answers, and service answers that [`is_transient_answer`] accepts; a request that
/// could not be built is not.
pub(crate) fn is_transient<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(se) => {
            is_transient_answer(se.err().code(), se.raw().status().as_u16())
        }
        _ => false,
    }
}

/// Whether retrying can help, and the error as a source that keeps the SDK error.
fn classify<E>(err: SdkError<E, HttpResponse>) -> (bool, Box<dyn std::error::Error + Send + Sync>)
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    (
        is_transient(&err),
        Box::new(Described(err_with_code(&err), Box::new(err))),
    )
}

pub(crate) fn store_error<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match classify(err) {
        (true, source) => StoreError::Transient { operation, source },
        (false, source) => StoreError::Permanent { operation, source },
    }
}

pub(crate) fn queue_error<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match classify(err) {
        (true, source) => QueueError::Transient { operation, source },
        (false, source) => QueueError::Permanent { operation, source },
    }
}

/// The result of a conditional write: `Ok(true)` written, `Ok(false)` its condition did
/// not hold (another writer got there first), `Err` anything else.
pub(crate) fn conditional_write<T, E>(
    operation: &'static str,
    out: Result<T, SdkError<E, HttpResponse>>,
) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
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

fn err_with_code<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> String {
    match err {
        SdkError::ServiceError(se) => format!(
            "{}: {} (HTTP {})",
            se.err().code().unwrap_or("unknown error"),
            se.err().message().unwrap_or("no message"),
            se.raw().status().as_u16()
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

#[cfg(test)]
mod tests {
    use super::is_transient_answer;

    #[test]
    fn every_throttling_and_server_code_of_both_services_is_transient_the_rest_permanent() {
        // (code as the SDK reports it, HTTP status, transient?)
        let table: &[(Option<&str>, u16, bool)] = &[
            // DynamoDB throttling and server failures.
            (Some("ProvisionedThroughputExceededException"), 400, true),
            (
                Some("com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"),
                400,
                true,
            ),
            (Some("ThrottlingException"), 400, true),
            (Some("RequestLimitExceeded"), 400, true),
            (Some("InternalServerError"), 500, true),
            (Some("ServiceUnavailable"), 503, true),
            (Some("TransactionConflictException"), 400, true),
            (Some("ReplicatedWriteConflictException"), 400, true),
            (Some("LimitExceededException"), 400, true),
            // SQS, both spellings of KMS throttling, and the query-compatible prefix.
            (Some("RequestThrottled"), 403, true),
            (Some("AWS.SimpleQueueService.RequestThrottled"), 403, true),
            (Some("KmsThrottled"), 400, true),
            (Some("KMS.ThrottlingException"), 400, true),
            (Some("ThrottlingException"), 400, true),
            (Some("ServiceUnavailable"), 503, true),
            (Some("InternalError"), 500, true),
            (Some("InternalFailure"), 500, true),
            (Some("OverLimit"), 403, true),
            // Any 5xx or 429, whatever (or without) its code.
            (None, 500, true),
            (None, 502, true),
            (None, 503, true),
            (None, 504, true),
            (Some("SomethingNew"), 500, true),
            (None, 429, true),
            // Permanent: the same request gets the same answer.
            (Some("ValidationException"), 400, false),
            (Some("ResourceNotFoundException"), 400, false),
            (Some("ConditionalCheckFailedException"), 400, false),
            (Some("AccessDeniedException"), 400, false),
            (Some("UnrecognizedClientException"), 400, false),
            (Some("ItemCollectionSizeLimitExceededException"), 400, false),
            (Some("TransactionCanceledException"), 400, false),
            (Some("AWS.SimpleQueueService.NonExistentQueue"), 400, false),
            (Some("InvalidMessageContents"), 400, false),
            (Some("KMS.AccessDeniedException"), 400, false),
            (Some("KMS.DisabledException"), 400, false),
            (
                Some("AWS.SimpleQueueService.BatchRequestTooLong"),
                400,
                false,
            ),
            (Some("InvalidSecurity"), 403, false),
            (None, 400, false),
            (None, 403, false),
            (None, 404, false),
        ];
        let wrong: Vec<_> = table
            .iter()
            .filter(|(code, status, want)| is_transient_answer(*code, *status) != *want)
            .collect();
        assert!(
            wrong.is_empty(),
            "misclassified (code, status, expected): {wrong:?}"
        );
    }
}
