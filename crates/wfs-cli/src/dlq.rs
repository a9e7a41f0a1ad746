//! `wfs dlq list` shows the execution DLQ; `wfs dlq redrive [--dry-run] [--max N]` moves the execution DLQ back to the execution queue. Each dead
//! message's body is sent back unchanged, then deleted from the DLQ; the executor moves
//! its FAILED occurrence back to QUEUED and runs the step again, under the same execution
//! id. Safe to interrupt and run again: a message sent twice is absorbed by the executor.

use std::time::Duration;

use std::io::Write;

use schedule_core::app::redrive::{RedriveAction, RedriveOptions, RedriveReport, redrive};
use schedule_core::error::QueueError;
use schedule_core::ports::DispatchQueue;

use crate::CliError;
use crate::aws::{AwsOptions, Queues};

/// On SQS a receive that waits this long sees the whole queue (a short poll samples only
/// some of its servers).
const RECEIVE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// List the messages in the execution DLQ and the occurrence each names, deleting nothing
    #[command(after_help = "Example:\n  wfs dlq list --max 50 --json\n\n\
The listed messages stay hidden in the DLQ for --visibility seconds (a receive is the \
only way SQS shows a message); a redrive after that sees them again.")]
    List {
        /// List at most N messages
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        max: Option<u64>,
        /// The execution queue's dead-letter queue
        #[arg(
            long,
            env = "EXECUTION_DLQ_URL",
            hide_env_values = true,
            value_name = "URL"
        )]
        dlq_url: String,
        /// Seconds each listed message stays hidden (instead of the DLQ's own visibility timeout)
        #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=43_200))]
        visibility: u32,
        /// One JSON object {entries: [{message_id, occurrence, action}]}
        #[arg(long)]
        json: bool,
    },
    /// Send each DLQ message back to the execution queue, then delete it from the DLQ
    #[command(
        after_help = "Example:\n  wfs dlq redrive --dry-run\n  wfs dlq redrive --max 100\n\n\
The executor runs each FAILED step again under the same execution id. Safe to interrupt \
and re-run: a message sent twice is dropped by the executor. Exit 1 when a message is left \
in the DLQ (not an execution message, or its send failed)."
    )]
    Redrive {
        /// List what would be redriven; send and delete nothing
        #[arg(long)]
        dry_run: bool,
        /// Stop after N messages
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
        max: Option<u64>,
        #[command(flatten)]
        queues: Queues,
        /// The report as one JSON object {entries: [{message_id, occurrence, action, reason?}]}
        #[arg(long)]
        json: bool,
    },
}

/// The DLQ's messages and what each names, nothing sent or deleted (each stays hidden for
/// the DLQ's visibility timeout).
pub async fn list_dead<D: DispatchQueue>(
    dlq: &D,
    max: Option<usize>,
    wait: Duration,
) -> Result<RedriveReport, QueueError> {
    redrive(
        dlq,
        dlq,
        &RedriveOptions {
            dry_run: true,
            max,
            wait,
        },
    )
    .await
}

pub async fn run(
    command: DlqCommand,
    aws: &AwsOptions,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let sdk = aws.sdk().await?;
    let usize_max = |m: Option<u64>| m.map(|m| usize::try_from(m).unwrap_or(usize::MAX));
    let (report, dlq_url, json, listing) = match command {
        DlqCommand::List {
            max,
            dlq_url,
            visibility,
            json,
        } => {
            let dlq = SqsPeek {
                client: aws_sdk_sqs::Client::new(&sdk),
                url: dlq_url.clone(),
                visibility: i32::try_from(visibility).unwrap_or(i32::MAX),
            };
            let bar = crate::output::progress(None, json, "reading the DLQ");
            let report = list_dead(&dlq, usize_max(max), RECEIVE_WAIT).await;
            bar.finish_and_clear();
            (report, dlq_url, json, true)
        }
        DlqCommand::Redrive {
            dry_run,
            max,
            queues,
            json,
        } => {
            let (dlq, target) = (queues.dlq(&sdk), queues.queue(&sdk));
            let bar = crate::output::progress(None, json, "redriving");
            let options = RedriveOptions {
                dry_run,
                max: usize_max(max),
                wait: RECEIVE_WAIT,
            };
            let report = redrive(&dlq, &target, &options).await;
            bar.finish_and_clear();
            (report, queues.dlq_url, json, false)
        }
    };
    let report = report.map_err(|e| crate::failed(&format!("reading the DLQ {dlq_url}"), &e))?;
    if json {
        crate::output::json_line(out, &report)?;
    } else {
        write!(out, "{}", render(&report)).map_err(|e| CliError::Failed(e.to_string()))?;
    }
    // A listing is data (exit 0); a redrive that left a message behind is a finding.
    if listing { Ok(()) } else { finish(&report) }
}

/// The DLQ read with a visibility timeout of its own: listing hides each message for
/// `visibility` seconds, not for the DLQ's (possibly long) timeout. Sends and deletes
/// nothing.
#[derive(Debug, Clone)]
pub struct SqsPeek {
    pub client: aws_sdk_sqs::Client,
    pub url: String,
    pub visibility: i32,
}

impl DispatchQueue for SqsPeek {
    async fn send_batch(
        &self,
        _: &[schedule_core::ports::OutgoingMessage],
    ) -> Result<schedule_core::ports::SendReport, QueueError> {
        Err(QueueError::Invalid(
            "listing the DLQ sends nothing".to_owned(),
        ))
    }

    async fn receive(
        &self,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<schedule_core::ports::ReceivedMessage>, QueueError> {
        use aws_sdk_sqs::types::MessageSystemAttributeName as A;
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .wait_time_seconds(i32::try_from(wait.as_secs().min(20)).unwrap_or(20))
            .visibility_timeout(self.visibility)
            .message_system_attribute_names(A::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| QueueError::Permanent {
                operation: "ReceiveMessage",
                source: Box::new(e),
            })?;
        Ok(out
            .messages()
            .iter()
            .map(|m| schedule_core::ports::ReceivedMessage {
                message_id: m.message_id().unwrap_or_default().to_owned(),
                receipt_handle: m.receipt_handle().unwrap_or_default().to_owned(),
                body: m.body().unwrap_or_default().to_owned(),
                receive_count: m
                    .attributes()
                    .and_then(|a| a.get(&A::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1),
            })
            .collect())
    }

    async fn delete(&self, _: &str) -> Result<(), QueueError> {
        Err(QueueError::Invalid(
            "listing the DLQ deletes nothing".to_owned(),
        ))
    }
}

/// One line per dead message: what was done, its message id, its occurrence, and why it
/// was left when it was; then a summary line.
pub fn render(report: &RedriveReport) -> String {
    let mut out = String::new();
    for e in &report.entries {
        let (action, why) = match &e.action {
            RedriveAction::WouldRedrive => ("would-redrive", ""),
            RedriveAction::Redriven => ("redriven", ""),
            RedriveAction::RedrivenNotDeleted { reason } => {
                ("redriven-not-deleted", reason.as_str())
            }
            RedriveAction::SendFailed { reason } => ("left", reason.as_str()),
            RedriveAction::Malformed { reason } => ("left-malformed", reason.as_str()),
        };
        out.push_str(&format!(
            "{action}\t{}\t{}\t{why}\n",
            e.message_id,
            e.occurrence.as_deref().unwrap_or("-")
        ));
    }
    out.push_str(&format!(
        "{} {}, {} left in the DLQ\n",
        report.redriven(),
        if report
            .entries
            .iter()
            .any(|e| e.action == RedriveAction::WouldRedrive)
        {
            "would be redriven"
        } else {
            "redriven"
        },
        report.left()
    ));
    out
}

/// Exit 1 when a message was left in the DLQ (a finding for a person).
pub fn finish(report: &RedriveReport) -> Result<(), CliError> {
    match report.left() {
        0 => Ok(()),
        n => Err(CliError::Failed(format!("{n} message(s) left in the DLQ"))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use schedule_core::app::redrive::RedriveEntry;

    #[test]
    fn the_report_names_each_message_and_anything_left_fails_the_run() {
        let report = RedriveReport {
            entries: vec![
                RedriveEntry {
                    message_id: "m1".to_owned(),
                    occurrence: Some(
                        "TENANT#a#DATE#2026-11-26/TIME#2026-11-26T10:00:00Z#STEP#s".to_owned(),
                    ),
                    action: RedriveAction::Redriven,
                },
                RedriveEntry {
                    message_id: "m2".to_owned(),
                    occurrence: None,
                    action: RedriveAction::Malformed {
                        reason: "body is not an execution message".to_owned(),
                    },
                },
            ],
        };
        let text = render(&report);
        assert!(
            text.contains("redriven\tm1\tTENANT#a#DATE#2026-11-26/"),
            "{text}"
        );
        assert!(
            text.contains("left-malformed\tm2\t-\tbody is not"),
            "{text}"
        );
        assert!(text.ends_with("1 redriven, 1 left in the DLQ\n"), "{text}");
        assert!(matches!(finish(&report), Err(CliError::Failed(m)) if m.contains("1 message")));
    }
}
