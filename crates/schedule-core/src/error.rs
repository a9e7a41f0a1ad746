//! Errors, one enum per layer. Each knows whether retrying can help; sources are kept.

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An error with its sources, `outer: inner: innermost`, for a log field or a record.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// Errors of the stores (schedule table, definitions table).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Throttled or briefly unavailable: retry with backoff.
    #[error("{operation} throttled or unavailable")]
    Transient {
        operation: &'static str,
        #[source]
        source: Source,
    },
    /// A request the store refused or could not serve; retrying will not help.
    #[error("{operation} failed")]
    Permanent {
        operation: &'static str,
        #[source]
        source: Source,
    },
    /// An item in the table that does not read back as the model (names its key).
    #[error("corrupt item {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// A conditional write lost to a newer write (for example a stale definition version).
    #[error("conflict on {key}: {reason}")]
    Conflict { key: String, reason: String },
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Transient { .. })
    }
}

/// Errors of the queues (execution queue, DLQ, action trigger queue).
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("{operation} throttled or unavailable")]
    Transient {
        operation: &'static str,
        #[source]
        source: Source,
    },
    #[error("{operation} failed")]
    Permanent {
        operation: &'static str,
        #[source]
        source: Source,
    },
    /// Entries of a batch that still failed after their retries: (entry id, reason).
    #[error("{} of the batch could not be sent: {}", failed.len(), failed.iter().map(|(id, why)| format!("{id}: {why}")).collect::<Vec<_>>().join("; "))]
    PartialBatch { failed: Vec<(String, String)> },
    /// The message cannot be sent as given (too large, bad delay); retrying will not help.
    #[error("invalid message: {0}")]
    Invalid(String),
}

impl QueueError {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            QueueError::Transient { .. } | QueueError::PartialBatch { .. }
        )
    }
}

/// A configuration value missing or malformed; names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    #[error("environment variable {name} has an invalid value {value:?}: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// The device registry could not answer (timeout, 5xx, transport). Never cached.
#[derive(Debug, Clone, thiserror::Error)]
#[error("device registry unavailable for {tenant}/{device}: {reason}")]
pub struct ValidationError {
    pub tenant: String,
    pub device: String,
    pub reason: String,
}

impl ValidationError {
    pub fn is_retryable(&self) -> bool {
        true
    }
}
