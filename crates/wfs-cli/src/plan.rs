//! `wfs plan --tenant T --date D`: one tenant's day, from its schedule table partition
//! `TENANT#{t}#DATE#{d}`: each occurrence's time, step, device, status, lateness, retries.

use std::io::Write;

use chrono::NaiveDate;
use schedule_core::error::StoreError;
use schedule_core::model::{ScheduleItem, TenantId};
use schedule_core::ports::{Clock, Paging, ScheduleBrowse, occurrences_on};
use serde::Serialize;

use crate::aws::{AwsOptions, ScheduleTable};
use crate::output::{self, millis, table};
use crate::{CliError, failed};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  wfs plan --tenant acme --date 2026-11-26\n  wfs plan --tenant acme --date 2026-11-26 --json | jq '.[] | select(.status == \"FAILED\")'"
)]
pub struct PlanArgs {
    /// Tenant id
    #[arg(long, value_name = "TENANT", value_parser = crate::cli::tenant_id)]
    pub tenant: TenantId,
    /// The UTC day, YYYY-MM-DD
    #[arg(long, value_name = "DATE", value_parser = crate::cli::date)]
    pub date: NaiveDate,
    #[command(flatten)]
    pub table: ScheduleTable,
    /// A JSON array of {scheduled_time, step, device, status, lateness_ms, retries, ...}
    #[arg(long)]
    pub json: bool,
}

/// One occurrence of the day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanRow {
    pub scheduled_time: String,
    pub step: String,
    pub device: String,
    pub workflow: String,
    pub status: String,
    /// From `scheduled_time` to the send that executed it.
    pub lateness_ms: Option<u64>,
    pub retries: u32,
    pub definition_version: u64,
    pub last_error: Option<String>,
}

impl From<&ScheduleItem> for PlanRow {
    fn from(i: &ScheduleItem) -> Self {
        Self {
            scheduled_time: i.scheduled_time.to_string(),
            step: i.device_workflow_step_id.to_string(),
            device: i.device_id.to_string(),
            workflow: i.workflow_id.to_string(),
            status: i.status.to_string(),
            lateness_ms: i.lateness_ms,
            retries: i.retry_count,
            definition_version: i.definition_version,
            last_error: i.last_error.clone(),
        }
    }
}

/// The day's occurrences of `tenant`, in time order.
pub async fn plan<S: ScheduleBrowse, C: Clock + ?Sized>(
    store: &S,
    tenant: &TenantId,
    date: NaiveDate,
    clock: &C,
) -> Result<Vec<PlanRow>, StoreError> {
    let paging = Paging {
        page_size: 500,
        clock,
        deadline: None,
    };
    let items = occurrences_on(store, tenant, date, paging).await?;
    Ok(items.iter().map(PlanRow::from).collect())
}

/// The human table, then a count per status.
pub fn render(tenant: &TenantId, date: NaiveDate, rows: &[PlanRow]) -> String {
    if rows.is_empty() {
        return format!("{tenant} {date}: no occurrences\n");
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.scheduled_time
                    .get(11..19)
                    .unwrap_or(&r.scheduled_time)
                    .to_owned(),
                r.step.clone(),
                r.device.clone(),
                r.status.clone(),
                millis(r.lateness_ms),
                r.retries.to_string(),
                r.last_error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    let mut out = format!("{tenant} {date} (UTC): {} occurrences\n", rows.len());
    out.push_str(&table(
        &[
            "time", "step", "device", "status", "lateness", "retries", "error",
        ],
        &cells,
    ));
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    for r in rows {
        *counts.entry(r.status.as_str()).or_default() += 1;
    }
    let summary: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    out.push_str(&summary.join(", "));
    out.push('\n');
    out
}

pub async fn run(args: PlanArgs, aws: &AwsOptions, out: &mut dyn Write) -> Result<(), CliError> {
    let store = args.table.store(&aws.sdk().await?);
    let clock = schedule_core::adapters::clock::SystemClock;
    let rows = plan(&store, &args.tenant, args.date, &clock)
        .await
        .map_err(|e| failed("reading the plan", &e))?;
    if args.json {
        output::json_line(out, &rows)
    } else {
        write!(out, "{}", render(&args.tenant, args.date, &rows))
            .map_err(|e| CliError::Failed(e.to_string()))
    }
}
