//! Redriving the execution DLQ: each dead message's body goes back to the execution queue
//! unchanged, and the executor, finding its occurrence FAILED, moves it FAILED → QUEUED
//! (conditional) and runs the step again under the same execution id.
//!
//! Order of the calls, and why: the copy is sent first and the dead message deleted only
//! after that send succeeded. Interrupted between the two, the message is in both queues;
//! a re-run sends it once more, and the executor absorbs the duplicate (the first copy
//! to claim the occurrence sends, the others find it EXECUTED). The other order could
//! lose the message.

use std::collections::HashSet;
use std::time::Duration;

use serde::Serialize;

use super::ExecutionMessage;
use crate::error::{QueueError, chain};
use crate::limits::SQS_MAX_RECEIVE;
use crate::ports::{DispatchQueue, OutgoingMessage, ReceivedMessage};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedriveOptions {
    /// List what would be redriven; send and delete nothing. The listed messages stay
    /// invisible in the DLQ for its visibility timeout.
    pub dry_run: bool,
    /// At most this many dead messages are handled (all when `None`).
    pub max: Option<usize>,
    /// How long one receive waits for a message (0 on the embedded twin; about a second
    /// on SQS, where a short poll may miss messages).
    pub wait: Duration,
}

/// What became of one dead message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum RedriveAction {
    /// Would be sent back (dry run).
    WouldRedrive,
    /// Sent back to the execution queue and deleted from the DLQ.
    Redriven,
    /// Sent back, but the delete failed: the dead copy reappears in the DLQ, and a re-run
    /// sends it again (the executor drops the duplicate).
    RedrivenNotDeleted { reason: String },
    /// Not sent; left in the DLQ.
    SendFailed { reason: String },
    /// Not an execution message: redriving it would only bring it back; left in the DLQ.
    Malformed { reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RedriveEntry {
    pub message_id: String,
    /// The occurrence's key, `PK/SK`, when the body names one.
    pub occurrence: Option<String>,
    #[serde(flatten)]
    pub action: RedriveAction,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RedriveReport {
    pub entries: Vec<RedriveEntry>,
}

impl RedriveReport {
    /// Dead messages sent back (or that would be, in a dry run).
    pub fn redriven(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| {
                matches!(
                    e.action,
                    RedriveAction::Redriven
                        | RedriveAction::WouldRedrive
                        | RedriveAction::RedrivenNotDeleted { .. }
                )
            })
            .count()
    }

    /// Dead messages left in the DLQ for a reason (malformed, send failed).
    pub fn left(&self) -> usize {
        self.entries
            .iter()
            .filter(|e| {
                matches!(
                    e.action,
                    RedriveAction::SendFailed { .. } | RedriveAction::Malformed { .. }
                )
            })
            .count()
    }
}

/// Moves the dead messages of `dlq` back to `target`, ten at a time, until the DLQ answers
/// empty or `options.max` messages were handled. `Err` only when the DLQ cannot be read;
/// per-message failures are in the report.
pub async fn redrive<D: DispatchQueue, E: DispatchQueue>(
    dlq: &D,
    target: &E,
    options: &RedriveOptions,
) -> Result<RedriveReport, QueueError> {
    let mut report = RedriveReport::default();
    let mut seen = HashSet::new();
    loop {
        // SQS answers at most 10 messages per receive.
        let per_receive = SQS_MAX_RECEIVE.unsigned_abs() as usize;
        let room = options
            .max
            .map_or(per_receive, |m| m.saturating_sub(report.entries.len()))
            .min(per_receive);
        if room == 0 {
            return Ok(report);
        }
        let batch = dlq.receive(room as u32, options.wait).await?;
        // A message seen before is back from its visibility timeout: every message was
        // handled once.
        let batch: Vec<ReceivedMessage> = batch
            .into_iter()
            .filter(|m| seen.insert(m.message_id.clone()))
            .collect();
        if batch.is_empty() {
            return Ok(report);
        }
        redrive_batch(dlq, target, &batch, options.dry_run, &mut report).await;
    }
}

async fn redrive_batch<D: DispatchQueue, E: DispatchQueue>(
    dlq: &D,
    target: &E,
    batch: &[ReceivedMessage],
    dry_run: bool,
    report: &mut RedriveReport,
) {
    let mut outgoing = Vec::new();
    for m in batch {
        match ExecutionMessage::parse(&m.body) {
            Ok((_, key)) => {
                if dry_run {
                    report
                        .entries
                        .push(entry(m, Some(&key), RedriveAction::WouldRedrive));
                } else {
                    outgoing.push((m, key));
                }
            }
            Err(e) => report.entries.push(entry(
                m,
                None,
                RedriveAction::Malformed {
                    reason: e.to_string(),
                },
            )),
        }
    }
    if outgoing.is_empty() {
        return;
    }
    let messages: Vec<OutgoingMessage> = outgoing
        .iter()
        .map(|(m, _)| OutgoingMessage {
            id: m.message_id.clone(),
            body: m.body.clone(),
            delay: Duration::ZERO,
        })
        .collect();
    let sent = match target.send_batch(&messages).await {
        Ok(sent) => sent,
        Err(e) => {
            let reason = chain(&e);
            for (m, key) in &outgoing {
                report.entries.push(entry(
                    m,
                    Some(key),
                    RedriveAction::SendFailed {
                        reason: reason.clone(),
                    },
                ));
            }
            return;
        }
    };
    for (m, key) in &outgoing {
        let action = if let Some((_, why)) = sent.failed.iter().find(|(id, _)| *id == m.message_id)
        {
            RedriveAction::SendFailed {
                reason: why.clone(),
            }
        } else {
            match dlq.delete(&m.receipt_handle).await {
                Ok(()) => RedriveAction::Redriven,
                Err(e) => RedriveAction::RedrivenNotDeleted { reason: chain(&e) },
            }
        };
        report.entries.push(entry(m, Some(key), action));
    }
}

fn entry(
    m: &ReceivedMessage,
    key: Option<&crate::model::ScheduleKey>,
    action: RedriveAction,
) -> RedriveEntry {
    RedriveEntry {
        message_id: m.message_id.clone(),
        occurrence: key.map(|k| format!("{}/{}", k.pk, k.sk)),
        action,
    }
}
