//! The occurrence status set and, in one table, the transitions allowed between them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// Materialized, waiting for the scheduler.
    Pending,
    /// Sent to the execution queue, waiting for the executor.
    Queued,
    /// The trigger message reached the action trigger queue.
    Executed,
    /// Every send failed; the execution message is in the DLQ.
    Failed,
    /// The device failed validation.
    Skipped,
    /// The definition changed or was disabled or deleted.
    Cancelled,
    /// Found later than its misfire grace.
    Missed,
}

/// Every allowed transition, and nothing else. `FAILED → QUEUED` is an operator's DLQ
/// redrive; `CANCELLED → PENDING` is a newer definition version that yields the cancelled
/// instant again (re-enabled, re-timed) and is taken only with that newer version, so a
/// re-run of the same version can never reset one. Other terminal states have no way out.
pub const TRANSITIONS: &[(Status, &[Status])] = &[
    (
        Status::Pending,
        &[
            Status::Queued,
            Status::Skipped,
            Status::Cancelled,
            Status::Missed,
        ],
    ),
    (
        Status::Queued,
        &[
            Status::Executed,
            Status::Failed,
            Status::Skipped,
            Status::Cancelled,
            Status::Missed,
        ],
    ),
    (Status::Failed, &[Status::Queued]),
    (Status::Executed, &[]),
    (Status::Skipped, &[]),
    (Status::Cancelled, &[Status::Pending]),
    (Status::Missed, &[]),
];

impl Status {
    pub const ALL: [Status; 7] = [
        Status::Pending,
        Status::Queued,
        Status::Executed,
        Status::Failed,
        Status::Skipped,
        Status::Cancelled,
        Status::Missed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Queued => "QUEUED",
            Status::Executed => "EXECUTED",
            Status::Failed => "FAILED",
            Status::Skipped => "SKIPPED",
            Status::Cancelled => "CANCELLED",
            Status::Missed => "MISSED",
        }
    }

    pub fn can_become(self, to: Status) -> bool {
        TRANSITIONS
            .iter()
            .find(|(from, _)| *from == self)
            .is_some_and(|(_, tos)| tos.contains(&to))
    }

    /// No further work is owed: the occurrence has its final outcome.
    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Pending | Status::Queued)
    }

    /// Whether the item carries `status_shard` and so appears in the sparse GSI: PENDING
    /// items for the scheduler, QUEUED ones so that a stuck occurrence can be found.
    pub fn is_indexed(self) -> bool {
        matches!(self, Status::Pending | Status::Queued)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid status {0:?}: expected one of PENDING, QUEUED, EXECUTED, FAILED, SKIPPED, CANCELLED, MISSED"
)]
pub struct StatusParseError(pub String);

impl FromStr for Status {
    type Err = StatusParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Status::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| StatusParseError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_covers_every_status_once() {
        for st in Status::ALL {
            assert_eq!(
                TRANSITIONS.iter().filter(|(f, _)| *f == st).count(),
                1,
                "{st}"
            );
        }
    }

    #[test]
    fn terminal_states_cannot_be_reset_to_pending_or_queued_by_a_rerun() {
        for st in Status::ALL {
            let reinstated = st == Status::Cancelled;
            assert_eq!(
                st.can_become(Status::Pending),
                reinstated,
                "{st} -> PENDING"
            );
            assert!(!st.can_become(st), "{st} -> itself");
        }
        for st in [Status::Executed, Status::Skipped, Status::Missed] {
            assert!(
                Status::ALL.iter().all(|to| !st.can_become(*to)),
                "{st} has a way out"
            );
        }
        assert!(Status::Pending.can_become(Status::Queued));
        assert!(Status::Queued.can_become(Status::Executed));
        assert!(!Status::Pending.can_become(Status::Executed));
    }

    #[test]
    fn a_cancelled_occurrence_can_only_be_reinstated_as_pending() {
        let ways_out: Vec<Status> = Status::ALL
            .into_iter()
            .filter(|to| Status::Cancelled.can_become(*to))
            .collect();
        assert_eq!(ways_out, vec![Status::Pending]);
        assert!(Status::Cancelled.is_terminal());
        assert!(!Status::Cancelled.is_indexed() && Status::Pending.is_indexed());
    }

    #[test]
    fn parses_its_own_names_only() {
        for st in Status::ALL {
            assert_eq!(st.as_str().parse::<Status>().unwrap(), st);
        }
        let err = "pending".parse::<Status>().unwrap_err();
        assert!(err.to_string().contains("\"pending\""));
    }
}
