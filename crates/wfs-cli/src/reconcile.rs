//! `wfs reconcile`: the legacy flow's triggers against the new flow's occurrences over
//! one range, per tenant. The core, [`reconcile`], is a pure function over two record
//! lists; the command reads them from files (the legacy export, and `--new`, the
//! `wfs export` format) and prints a table or one JSON object.
//!
//! - `missing`: the legacy flow sent it; the new flow has nothing, or did not fire it.
//! - `extra`: the new flow fired it (or would have: EXECUTED in shadow mode counts), the
//!   legacy flow did not.
//! - `late`: either side sent it more than `late_after` after its scheduled time.
//!
//! Exit 1 when anything is missing or extra.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use schedule_core::model::{Timestamp, parse_span};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::CliError;

/// Compare the legacy flow's triggers with the new flow's occurrences.
///
/// Example: `wfs reconcile --legacy legacy.jsonl --new export.jsonl --from 2026-11-26T00:00:00Z --to 2026-11-27T00:00:00Z --json`
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = "Example:\n  wfs reconcile --legacy legacy.jsonl --from 2026-11-26T00:00:00Z --to 2026-11-27T00:00:00Z\n  wfs reconcile --legacy legacy.jsonl --new export.jsonl --from 2026-11-26T00:00:00Z --to 2026-11-27T00:00:00Z --json\n\nExit code 1 when anything is missing or extra."
)]
pub struct ReconcileArgs {
    /// The legacy flow's triggers: JSON lines with tenant_id, device_workflow_step_id,
    /// scheduled_time, sent_at (other fields ignored; bad lines reported and skipped).
    #[arg(long, value_name = "FILE")]
    pub legacy: PathBuf,
    /// Start of the range (scheduled_time >= FROM), RFC 3339.
    #[arg(long, value_name = "TIME")]
    pub from: String,
    /// End of the range (scheduled_time < TO), RFC 3339.
    #[arg(long, value_name = "TIME")]
    pub to: String,
    /// Only this tenant.
    #[arg(long)]
    pub tenant: Option<String>,
    /// The new flow's occurrences in the `wfs export` format (JSON lines); without it, they
    /// are read from the schedule table.
    #[arg(long, value_name = "FILE")]
    pub new: Option<PathBuf>,
    /// A send later than this after its scheduled time is reported late.
    #[arg(long, value_name = "SPAN", default_value = "60s")]
    pub late_after: String,
    /// One JSON object {matched, missing, extra, late} instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub schedule: crate::aws::ScheduleTable,
    #[command(flatten)]
    pub definitions: crate::aws::DefinitionsTable,
}

/// One trigger the legacy flow sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyTrigger {
    pub tenant_id: String,
    pub device_workflow_step_id: String,
    pub scheduled_time: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

/// One occurrence of the new flow, as `wfs export` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOccurrence {
    pub tenant_id: String,
    pub device_workflow_step_id: String,
    pub scheduled_time: DateTime<Utc>,
    pub status: String,
    pub execution_id: Option<String>,
    pub sent_at: Option<DateTime<Utc>>,
    pub mode: Option<String>,
}

impl NewOccurrence {
    /// The record of one schedule-table item, as `wfs export` prints it: `sent_at` is
    /// when it executed (sent, or recorded in shadow mode).
    pub fn from_item(item: &schedule_core::model::ScheduleItem) -> Self {
        let executed = item.status == schedule_core::model::Status::Executed;
        Self {
            tenant_id: item.tenant_id.to_string(),
            device_workflow_step_id: item.device_workflow_step_id.to_string(),
            scheduled_time: item.scheduled_time.as_datetime(),
            status: item.status.as_str().to_owned(),
            execution_id: Some(item.execution_id().to_string()),
            sent_at: item
                .executed_at
                .filter(|_| executed)
                .map(|t| t.as_datetime()),
            mode: item.mode.map(|m| m.as_str().to_owned()),
        }
    }

    /// Fired, or would have fired (EXECUTED in shadow mode).
    pub fn fired(&self) -> bool {
        self.status == "EXECUTED"
    }
}

#[derive(Debug, Clone)]
pub struct ReconcileOptions {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub tenant: Option<String>,
    pub late_after: Duration,
}

/// A line of an input file that was skipped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    pub line: usize,
    pub reason: String,
}

/// One occurrence that does not reconcile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub tenant_id: String,
    pub device_workflow_step_id: String,
    pub scheduled_time: String,
    /// `legacy` or `new`: the side that sent late (late findings only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<&'static str>,
    /// Seconds from scheduled_time to the send (late findings only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_s: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legacy_sent_at: Option<String>,
    /// The new flow's status, or `ABSENT` when it has no occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_sent_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// Counts of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TenantCounts {
    pub matched: usize,
    pub missing: usize,
    pub extra: usize,
    pub late: usize,
}

/// What [`reconcile`] found; findings in (tenant, time, step) order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reconciliation {
    pub matched: usize,
    pub missing: Vec<Finding>,
    pub extra: Vec<Finding>,
    pub late: Vec<Finding>,
    #[serde(skip)]
    pub tenants: BTreeMap<String, TenantCounts>,
}

impl Reconciliation {
    /// Nothing missing and nothing extra (late sends alone do not fail a reconciliation).
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty()
    }
}

type Key = (String, DateTime<Utc>, String);

fn rfc3339(t: DateTime<Utc>) -> String {
    Timestamp::from_datetime(t).to_string()
}

fn seconds(t: DateTime<Utc>) -> DateTime<Utc> {
    Timestamp::from_datetime(t).as_datetime()
}

/// Compares the two flows over `options`' range and tenant. Duplicate records of one
/// occurrence on either side count once (the earliest send is kept).
pub fn reconcile(
    legacy: &[LegacyTrigger],
    new: &[NewOccurrence],
    options: &ReconcileOptions,
) -> Reconciliation {
    let wanted = |tenant: &str, at: DateTime<Utc>| {
        at >= options.from
            && at < options.to
            && options.tenant.as_deref().is_none_or(|t| t == tenant)
    };
    let mut old: BTreeMap<Key, Option<DateTime<Utc>>> = BTreeMap::new();
    for l in legacy
        .iter()
        .filter(|l| wanted(&l.tenant_id, l.scheduled_time))
    {
        let key = (
            l.tenant_id.clone(),
            seconds(l.scheduled_time),
            l.device_workflow_step_id.clone(),
        );
        let sent = old.entry(key).or_insert(l.sent_at);
        *sent = match (*sent, l.sent_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let mut fresh: BTreeMap<Key, &NewOccurrence> = BTreeMap::new();
    for n in new
        .iter()
        .filter(|n| wanted(&n.tenant_id, n.scheduled_time))
    {
        let key = (
            n.tenant_id.clone(),
            seconds(n.scheduled_time),
            n.device_workflow_step_id.clone(),
        );
        // A fired record wins over another record of the same occurrence.
        let keep = fresh.get(&key).is_none_or(|o| !o.fired() && n.fired());
        if keep {
            fresh.insert(key, n);
        }
    }

    let mut out = Reconciliation::default();
    let keys: BTreeSet<&Key> = old.keys().chain(fresh.keys()).collect();
    let late_s = i64::try_from(options.late_after.as_secs()).unwrap_or(i64::MAX);
    for key in keys {
        let (tenant, at, step) = key;
        let legacy_sent = old.get(key);
        let occurrence = fresh.get(key).copied();
        let finding = |side: Option<&'static str>, late: Option<i64>| Finding {
            tenant_id: tenant.clone(),
            device_workflow_step_id: step.clone(),
            scheduled_time: rfc3339(*at),
            side,
            late_s: late,
            legacy_sent_at: legacy_sent.copied().flatten().map(rfc3339),
            new_status: match (legacy_sent, occurrence) {
                (_, Some(o)) => Some(o.status.clone()),
                (Some(_), None) => Some("ABSENT".to_owned()),
                (None, None) => None,
            },
            new_sent_at: occurrence.and_then(|o| o.sent_at).map(rfc3339),
            mode: occurrence.and_then(|o| o.mode.clone()),
        };
        let counts = out.tenants.entry(tenant.clone()).or_default();
        let fired = occurrence.is_some_and(NewOccurrence::fired);
        match (legacy_sent.is_some(), fired) {
            (true, true) => {
                out.matched += 1;
                counts.matched += 1;
            }
            (true, false) => {
                out.missing.push(finding(None, None));
                counts.missing += 1;
            }
            (false, true) => {
                out.extra.push(finding(None, None));
                counts.extra += 1;
            }
            (false, false) => {}
        }
        let sides = [
            ("legacy", legacy_sent.copied().flatten()),
            (
                "new",
                occurrence.filter(|o| o.fired()).and_then(|o| o.sent_at),
            ),
        ];
        for (side, sent) in sides {
            if let Some(sent) = sent {
                let late = (sent - *at).num_seconds();
                if late > late_s {
                    out.late.push(finding(Some(side), Some(late)));
                    counts.late += 1;
                }
            }
        }
    }
    out
}

fn parse_time(field: &str, raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.to_utc())
        .map_err(|e| format!("{field} {raw:?} is not an RFC 3339 time: {e}"))
}

fn opt_time(field: &str, raw: Option<&str>) -> Result<Option<DateTime<Utc>>, String> {
    raw.filter(|s| !s.is_empty())
        .map(|s| parse_time(field, s))
        .transpose()
}

#[derive(Deserialize)]
struct LegacyLine {
    tenant_id: String,
    device_workflow_step_id: String,
    scheduled_time: String,
    #[serde(default)]
    sent_at: Option<String>,
}

#[derive(Deserialize)]
struct NewLine {
    tenant_id: String,
    device_workflow_step_id: String,
    scheduled_time: String,
    status: String,
    #[serde(default)]
    execution_id: Option<String>,
    #[serde(default)]
    sent_at: Option<String>,
    #[serde(default)]
    mode: Option<String>,
}

fn lines<T, L: serde::de::DeserializeOwned>(
    text: &str,
    convert: impl Fn(L) -> Result<T, String>,
) -> (Vec<T>, Vec<BadLine>) {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed = serde_json::from_str::<L>(line)
            .map_err(|e| e.to_string())
            .and_then(&convert);
        match parsed {
            Ok(v) => good.push(v),
            Err(reason) => bad.push(BadLine {
                line: i + 1,
                reason,
            }),
        }
    }
    (good, bad)
}

/// Reads a legacy export (JSON lines); unknown fields are ignored.
pub fn parse_legacy(text: &str) -> (Vec<LegacyTrigger>, Vec<BadLine>) {
    lines(text, |l: LegacyLine| {
        Ok(LegacyTrigger {
            scheduled_time: parse_time("scheduled_time", &l.scheduled_time)?,
            sent_at: opt_time("sent_at", l.sent_at.as_deref())?,
            tenant_id: l.tenant_id,
            device_workflow_step_id: l.device_workflow_step_id,
        })
    })
}

/// Reads the new flow's occurrences in the `wfs export` format (JSON lines).
pub fn parse_new(text: &str) -> (Vec<NewOccurrence>, Vec<BadLine>) {
    lines(text, |l: NewLine| {
        Ok(NewOccurrence {
            scheduled_time: parse_time("scheduled_time", &l.scheduled_time)?,
            sent_at: opt_time("sent_at", l.sent_at.as_deref())?,
            tenant_id: l.tenant_id,
            device_workflow_step_id: l.device_workflow_step_id,
            status: l.status,
            execution_id: l.execution_id,
            mode: l.mode,
        })
    })
}

/// The `--json` form: one object `{matched, missing, extra, late}`.
pub fn render_json(r: &Reconciliation) -> Value {
    serde_json::to_value(r).unwrap_or(Value::Null)
}

/// The human form: counts per tenant, then every finding.
pub fn render_table(r: &Reconciliation) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>8} {:>8} {:>8}",
        "TENANT", "MATCHED", "MISSING", "EXTRA", "LATE"
    );
    for (tenant, c) in &r.tenants {
        let _ = writeln!(
            out,
            "{tenant:<24} {:>8} {:>8} {:>8} {:>8}",
            c.matched, c.missing, c.extra, c.late
        );
    }
    let _ = writeln!(
        out,
        "{:<24} {:>8} {:>8} {:>8} {:>8}",
        "TOTAL",
        r.matched,
        r.missing.len(),
        r.extra.len(),
        r.late.len()
    );
    let sections = [
        ("missing", &r.missing),
        ("extra", &r.extra),
        ("late", &r.late),
    ];
    for (name, findings) in sections {
        if findings.is_empty() {
            continue;
        }
        let _ = writeln!(out, "\n{name}:");
        for f in findings {
            let _ = write!(
                out,
                "  {:<24} {:<24} {}",
                f.tenant_id, f.device_workflow_step_id, f.scheduled_time
            );
            if let (Some(side), Some(late)) = (f.side, f.late_s) {
                let _ = write!(out, "  {side} sent {late}s late");
            } else if let Some(status) = &f.new_status {
                let _ = write!(out, "  new: {status}");
            }
            if let Some(mode) = &f.mode {
                let _ = write!(out, " ({mode})");
            }
            out.push('\n');
        }
    }
    out
}

impl ReconcileArgs {
    /// The range, tenant and lateness bound, checked.
    pub fn options(&self) -> Result<ReconcileOptions, CliError> {
        let usage = |e: String| CliError::Usage(e);
        let from = parse_time("--from", &self.from).map_err(usage)?;
        let to = parse_time("--to", &self.to).map_err(usage)?;
        if to <= from {
            return Err(CliError::Usage(format!(
                "--to {} must be after --from {}",
                self.to, self.from
            )));
        }
        let late_after = parse_span("--late-after", &self.late_after)
            .map_err(|e| CliError::Usage(e.to_string()))?;
        Ok(ReconcileOptions {
            from,
            to,
            tenant: self.tenant.clone(),
            late_after,
        })
    }
}

fn read(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path)
        .map_err(|e| CliError::Failed(format!("reading {}: {e}", path.display())))
}

fn report_bad(file: &Path, bad: &[BadLine]) {
    for b in bad {
        eprintln!(
            "wfs: {} line {}: {}; skipped",
            file.display(),
            b.line,
            b.reason
        );
    }
}

/// Prints the reconciliation of `args` (stdout) and the skipped lines (stderr).
/// `Err(CliError::Failed)` when anything is missing or extra.
pub async fn run(args: &ReconcileArgs, aws: &crate::aws::AwsOptions) -> Result<(), CliError> {
    let options = args.options()?;
    let (legacy, bad) = parse_legacy(&read(&args.legacy)?);
    report_bad(&args.legacy, &bad);
    let new = match &args.new {
        Some(new_file) => {
            let (new, bad) = parse_new(&read(new_file)?);
            report_bad(new_file, &bad);
            new
        }
        None => from_table(args, aws).await?,
    };
    let result = reconcile(&legacy, &new, &options);
    if args.json {
        println!("{}", render_json(&result));
    } else {
        print!("{}", render_table(&result));
    }
    verdict(&result)
}

/// The new flow's occurrences of the range, read from the schedule table as `wfs export`
/// reads them (the tenants of the definitions table, or `--tenant`).
async fn from_table(
    args: &ReconcileArgs,
    aws: &crate::aws::AwsOptions,
) -> Result<Vec<NewOccurrence>, CliError> {
    let from = crate::cli::timestamp(&args.from).map_err(CliError::Usage)?;
    let to = crate::cli::timestamp(&args.to).map_err(CliError::Usage)?;
    let tenant = args
        .tenant
        .as_deref()
        .map(crate::cli::tenant_id)
        .transpose()
        .map_err(CliError::Usage)?;
    let sdk = aws.sdk().await?;
    let (store, defs) = (args.schedule.store(&sdk), args.definitions.source(&sdk));
    let clock = schedule_core::adapters::clock::SystemClock;
    let records =
        crate::export::export_records(&store, &defs, from, to, tenant.as_ref(), &clock, |_| {})
            .await
            .map_err(|e| CliError::Failed(format!("reading the schedule table: {e}")))?;
    let lines: Vec<String> = records
        .iter()
        .filter_map(|r| serde_json::to_string(r).ok())
        .collect();
    let (new, bad) = parse_new(&lines.join("\n"));
    if let Some(b) = bad.first() {
        return Err(CliError::Failed(format!(
            "an exported occurrence did not read back: {b:?}"
        )));
    }
    Ok(new)
}

/// Exit 1 when anything is missing or extra.
pub fn verdict(r: &Reconciliation) -> Result<(), CliError> {
    if r.is_clean() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "{} missing, {} extra",
            r.missing.len(),
            r.extra.len()
        )))
    }
}
