//! Use cases, generic over the ports: the daily scan, the 5-minute schedule run and the
//! execution of one queued occurrence.

pub mod execute;
pub mod scan;
pub mod schedule;

use serde::{Deserialize, Serialize};

use crate::error::{QueueError, StoreError};
use crate::model::{KeyError, ScheduleKey, Timestamp};

/// Errors of a use case as a whole (per-item problems are counted and reported instead).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

impl AppError {
    pub fn is_retryable(&self) -> bool {
        match self {
            AppError::Store(e) => e.is_retryable(),
            AppError::Queue(e) => e.is_retryable(),
            AppError::InvalidRequest(_) => false,
        }
    }
}

/// Version of the execution message body.
pub const EXECUTION_MESSAGE_VERSION: u32 = 1;

/// The body the scheduler puts on the execution queue: the occurrence's key, no more —
/// the executor reads the item itself, so a message can never carry stale data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutionMessage {
    pub v: u32,
    #[serde(rename = "PK")]
    pub pk: String,
    #[serde(rename = "SK")]
    pub sk: String,
    pub scheduled_time: Timestamp,
}

/// Why an execution message cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedMessage {
    #[error("body is not an execution message: {0}")]
    Shape(String),
    #[error("unsupported execution message version {0}")]
    Version(u32),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("scheduled_time {body} does not match the key's time {key}")]
    TimeMismatch { body: Timestamp, key: Timestamp },
}

impl ExecutionMessage {
    pub fn for_key(key: &ScheduleKey, scheduled_time: Timestamp) -> Self {
        Self {
            v: EXECUTION_MESSAGE_VERSION,
            pk: key.pk.clone(),
            sk: key.sk.clone(),
            scheduled_time,
        }
    }

    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads and validates a body: the key must be well formed (valid ids, date matching
    /// time) and agree with `scheduled_time`.
    pub fn parse(body: &str) -> Result<(Self, ScheduleKey), MalformedMessage> {
        let msg: Self =
            serde_json::from_str(body).map_err(|e| MalformedMessage::Shape(e.to_string()))?;
        if msg.v != EXECUTION_MESSAGE_VERSION {
            return Err(MalformedMessage::Version(msg.v));
        }
        let (key, _, time, _) = ScheduleKey::parse(&msg.pk, &msg.sk)?;
        if time != msg.scheduled_time {
            return Err(MalformedMessage::TimeMismatch {
                body: msg.scheduled_time,
                key: time,
            });
        }
        Ok((msg, key))
    }
}

/// A deadline check that leaves `margin` to finish cleanly.
pub(crate) fn past(
    deadline: Option<chrono::DateTime<chrono::Utc>>,
    now: chrono::DateTime<chrono::Utc>,
    margin: std::time::Duration,
) -> bool {
    deadline.is_some_and(|d| now + chrono::Duration::from_std(margin).unwrap_or_default() >= d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{StepId, TenantId};

    #[test]
    fn execution_messages_round_trip_and_reject_bad_bodies() {
        let t = Timestamp::parse("2026-11-26T10:30:00Z").unwrap();
        let key = ScheduleKey::new(
            &TenantId::parse("acme").unwrap(),
            t,
            &StepId::parse("s1").unwrap(),
        );
        let body = ExecutionMessage::for_key(&key, t).body();
        let (msg, parsed) = ExecutionMessage::parse(&body).unwrap();
        assert_eq!((parsed, msg.scheduled_time), (key.clone(), t));

        assert!(matches!(
            ExecutionMessage::parse("{not json"),
            Err(MalformedMessage::Shape(_))
        ));
        let other = body.replace("\"v\":1", "\"v\":9");
        assert_eq!(
            ExecutionMessage::parse(&other),
            Err(MalformedMessage::Version(9))
        );
        let forged = body.replace("TENANT#acme", "TENANT#acme#DATE#x");
        assert!(matches!(
            ExecutionMessage::parse(&forged),
            Err(MalformedMessage::Key(_))
        ));
        let moved = body.replace(
            "\"scheduled_time\":\"2026-11-26T10:30:00Z\"",
            "\"scheduled_time\":\"2026-11-26T10:31:00Z\"",
        );
        assert!(matches!(
            ExecutionMessage::parse(&moved),
            Err(MalformedMessage::TimeMismatch { .. })
        ));
    }
}
