//! Use cases, generic over the ports: the daily scan, the 5-minute schedule run, the
//! execution of one queued occurrence, the redrive of the execution DLQ and the sync of
//! same-day definition changes.

pub mod execute;
pub mod redrive;
pub mod scan;
pub mod schedule;
pub mod sync;

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

/// The invocation deadline from the runtime's `Lambda-Runtime-Deadline-Ms`. AWS sends
/// epoch milliseconds; local runtimes (`cargo lambda watch`) send the timeout itself, a
/// small number — read as "from now" rather than as 1970, which would stop every run
/// before it starts.
pub fn lambda_deadline(
    deadline_ms: u64,
    now: chrono::DateTime<chrono::Utc>,
) -> Option<chrono::DateTime<chrono::Utc>> {
    const TEN_YEARS_MS: u64 = 10 * 365 * 86_400 * 1000;
    let ms = i64::try_from(deadline_ms).ok()?;
    if deadline_ms == 0 {
        None
    } else if deadline_ms < TEN_YEARS_MS {
        Some(now + chrono::Duration::milliseconds(ms))
    } else {
        chrono::DateTime::from_timestamp_millis(ms)
    }
}

/// When a run must stop starting new work: `margin` before the Lambda deadline, or a fifth
/// of the time left at the start when that is shorter (a short local timeout still gets
/// most of its time used).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Deadline {
    stop_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Deadline {
    pub(crate) fn new(
        deadline: Option<chrono::DateTime<chrono::Utc>>,
        now: chrono::DateTime<chrono::Utc>,
        margin: std::time::Duration,
    ) -> Self {
        let stop_at = deadline.map(|d| {
            let left = (d - now).max(chrono::Duration::zero());
            let margin = chrono::Duration::from_std(margin)
                .unwrap_or(chrono::Duration::MAX)
                .min(left / 5);
            d - margin
        });
        Self { stop_at }
    }

    pub(crate) fn near(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        self.stop_at.is_some_and(|s| now >= s)
    }

    /// When new work must stop (`None`: no deadline).
    pub(crate) fn stop_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.stop_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{StepId, TenantId};

    #[test]
    fn lambda_deadlines_absolute_or_relative() {
        let now: chrono::DateTime<chrono::Utc> = "2026-11-26T00:00:00Z".parse().unwrap();
        let aws = now.timestamp_millis() as u64 + 900_000;
        assert_eq!(
            lambda_deadline(aws, now),
            Some(now + chrono::Duration::seconds(900))
        );
        assert_eq!(
            lambda_deadline(600_000, now),
            Some(now + chrono::Duration::seconds(600))
        );
        assert_eq!(lambda_deadline(0, now), None);
    }

    #[test]
    fn deadlines_keep_a_margin_proportional_to_short_budgets() {
        let now: chrono::DateTime<chrono::Utc> = "2026-11-26T00:00:00Z".parse().unwrap();
        let s = |n: i64| now + chrono::Duration::seconds(n);
        let lambda = Deadline::new(Some(s(900)), now, std::time::Duration::from_secs(10));
        assert!(!lambda.near(s(889)) && lambda.near(s(890)));
        let short = Deadline::new(Some(s(5)), now, std::time::Duration::from_secs(10));
        assert!(
            !short.near(s(3)) && short.near(s(4)),
            "a 5 s budget keeps 1 s, not 10"
        );
        assert!(!Deadline::new(None, now, std::time::Duration::from_secs(10)).near(s(1_000_000)));
    }

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
