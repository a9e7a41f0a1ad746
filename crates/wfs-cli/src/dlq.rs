//! `wfs dlq redrive [--dry-run] [--max N] [--dlq-url URL] [--queue-url URL]
//! [--endpoint-url URL]`: moves the execution DLQ back to the execution queue. Each dead
//! message's body is sent back unchanged, then deleted from the DLQ; the executor moves
//! its FAILED occurrence back to QUEUED and runs the step again, under the same execution
//! id. Safe to interrupt and run again: a message sent twice is absorbed by the executor.

use std::time::Duration;

use schedule_core::adapters::sqs::SqsDispatchQueue;
use schedule_core::app::redrive::{RedriveAction, RedriveOptions, RedriveReport, redrive};

use crate::CliError;

/// On SQS a receive that waits this long sees the whole queue (a short poll samples only
/// some of its servers).
const RECEIVE_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub dry_run: bool,
    pub max: Option<usize>,
    pub dlq_url: String,
    pub queue_url: String,
    pub endpoint_url: Option<String>,
}

impl Options {
    /// Flags first, then `EXECUTION_DLQ_URL`, `EXECUTION_QUEUE_URL` and
    /// `AWS_ENDPOINT_URL` from `env`.
    pub fn parse(args: &[String], env: impl Fn(&str) -> Option<String>) -> Result<Self, CliError> {
        let [sub, rest @ ..] = args else {
            return Err(CliError::Usage(USAGE.to_owned()));
        };
        if sub != "redrive" {
            return Err(CliError::Usage(format!(
                "unknown dlq command {sub:?}\n{USAGE}"
            )));
        }
        let (mut dry_run, mut max, mut dlq_url, mut queue_url, mut endpoint_url) =
            (false, None, None, None, None);
        let mut it = rest.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .ok_or_else(|| CliError::Usage(format!("{name} needs a value\n{USAGE}")))
            };
            match arg.as_str() {
                "--dry-run" => dry_run = true,
                "--max" => {
                    let raw = value("--max")?;
                    max = Some(
                        raw.parse::<usize>()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| {
                                CliError::Usage(format!(
                                    "invalid --max {raw:?}: expected a whole number of at least 1"
                                ))
                            })?,
                    );
                }
                "--dlq-url" => dlq_url = Some(value("--dlq-url")?),
                "--queue-url" => queue_url = Some(value("--queue-url")?),
                "--endpoint-url" => endpoint_url = Some(value("--endpoint-url")?),
                other => {
                    return Err(CliError::Usage(format!(
                        "unknown option {other:?} for dlq redrive\n{USAGE}"
                    )));
                }
            }
        }
        let required = |flag: Option<String>, name: &str, var: &str| {
            flag.or_else(|| env(var)).ok_or_else(|| {
                CliError::Usage(format!("{name} is required: pass it or set {var}\n{USAGE}"))
            })
        };
        Ok(Self {
            dry_run,
            max,
            dlq_url: required(dlq_url, "--dlq-url", "EXECUTION_DLQ_URL")?,
            queue_url: required(queue_url, "--queue-url", "EXECUTION_QUEUE_URL")?,
            endpoint_url: endpoint_url.or_else(|| env("AWS_ENDPOINT_URL")),
        })
    }
}

pub const USAGE: &str = "usage: wfs dlq redrive [--dry-run] [--max N] [--dlq-url URL] \
                         [--queue-url URL] [--endpoint-url URL]";

pub async fn run(options: &Options) -> Result<(), CliError> {
    let sdk = crate::local::load_sdk().await.map_err(CliError::Failed)?;
    let mut sqs = aws_sdk_sqs::config::Builder::from(&sdk);
    if let Some(url) = &options.endpoint_url {
        sqs = sqs.endpoint_url(url);
    }
    let client = aws_sdk_sqs::Client::from_conf(sqs.build());
    let dlq = SqsDispatchQueue::new(client.clone(), &options.dlq_url);
    let target = SqsDispatchQueue::new(client, &options.queue_url);
    let report = redrive(
        &dlq,
        &target,
        &RedriveOptions {
            dry_run: options.dry_run,
            max: options.max,
            wait: RECEIVE_WAIT,
        },
    )
    .await
    .map_err(|e| {
        CliError::Failed(format!(
            "reading the DLQ {}: {}",
            options.dlq_url,
            schedule_core::error::chain(&e)
        ))
    })?;
    print!("{}", render(&report));
    finish(&report)
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
fn finish(report: &RedriveReport) -> Result<(), CliError> {
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

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn env(k: &str) -> Option<String> {
        match k {
            "EXECUTION_DLQ_URL" => Some("http://q/dlq".to_owned()),
            "EXECUTION_QUEUE_URL" => Some("http://q/exec".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn flags_override_the_environment_and_bad_input_is_a_usage_error() {
        let o =
            Options::parse(&args("redrive --dry-run --max 5 --dlq-url http://x/d"), env).unwrap();
        assert_eq!(
            o,
            Options {
                dry_run: true,
                max: Some(5),
                dlq_url: "http://x/d".to_owned(),
                queue_url: "http://q/exec".to_owned(),
                endpoint_url: None,
            }
        );
        let usage = |a: &str, f: &dyn Fn(&str) -> Option<String>| match Options::parse(&args(a), f)
        {
            Err(CliError::Usage(m)) => m,
            other => panic!("{a}: {other:?}"),
        };
        assert!(usage("redrive --max 0", &env).contains("\"0\""));
        assert!(usage("redrive --max", &env).contains("--max needs a value"));
        assert!(usage("redrive --fast", &env).contains("\"--fast\""));
        assert!(usage("purge", &env).contains("\"purge\""));
        assert!(usage("redrive", &|_| None).contains("EXECUTION_DLQ_URL"));
    }

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
