//! `wfs export --from --to [--tenant]`: one JSON line per occurrence due in `[from, to)`,
//! in the stable form of DESIGN.md §6 (`tenant_id`, `device_workflow_step_id`,
//! `scheduled_time`, `status`, `execution_id`, `sent_at` when sent, `mode`). Reconciliation
//! against the legacy flow reads the same records ([`export_records`]).

use std::collections::BTreeSet;
use std::io::Write;

use chrono::NaiveDate;
use schedule_core::error::StoreError;
use schedule_core::model::{ScheduleItem, Status, TenantId, Timestamp};
use schedule_core::ports::{
    Clock, DefinitionSource, Paging, ScheduleBrowse, occurrences_on, scan_definitions_paged,
};
use serde::{Deserialize, Serialize};

use crate::aws::{AwsOptions, DefinitionsTable, ScheduleTable};
use crate::output;
use crate::{CliError, failed};

/// The rollout mode of an occurrence until per-tenant modes are recorded on the item.
pub const DEFAULT_MODE: &str = "active";

/// The longest range one export reads (one query per tenant and day).
pub const MAX_EXPORT_DAYS: i64 = 366;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  wfs export --from 2026-11-26T00:00:00Z --to 2026-11-27T00:00:00Z > new.jsonl\n  wfs export --from 2026-11-26T00:00:00Z --to 2026-11-26T12:00:00Z --tenant acme\n\n\
Without --tenant, the tenants are those of the definitions table."
)]
pub struct ExportArgs {
    /// Start of the range (inclusive), RFC 3339
    #[arg(long, value_name = "TIME", value_parser = crate::cli::timestamp)]
    pub from: Timestamp,
    /// End of the range (exclusive), RFC 3339
    #[arg(long, value_name = "TIME", value_parser = crate::cli::timestamp)]
    pub to: Timestamp,
    /// Only this tenant
    #[arg(long, value_name = "TENANT", value_parser = crate::cli::tenant_id)]
    pub tenant: Option<TenantId>,
    #[command(flatten)]
    pub schedule: ScheduleTable,
    #[command(flatten)]
    pub definitions: DefinitionsTable,
}

/// One occurrence as exported (DESIGN.md §6: add fields, never rename).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportRecord {
    pub tenant_id: String,
    pub device_workflow_step_id: String,
    pub scheduled_time: String,
    pub status: String,
    pub execution_id: String,
    /// When the trigger was sent (EXECUTED occurrences only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent_at: Option<String>,
    pub mode: String,
}

impl From<&ScheduleItem> for ExportRecord {
    fn from(i: &ScheduleItem) -> Self {
        Self {
            tenant_id: i.tenant_id.to_string(),
            device_workflow_step_id: i.device_workflow_step_id.to_string(),
            scheduled_time: i.scheduled_time.to_string(),
            status: i.status.to_string(),
            execution_id: i.execution_id().to_string(),
            sent_at: match i.status {
                Status::Executed => i.executed_at.map(|t| t.to_string()),
                _ => None,
            },
            mode: i
                .mode
                .map_or_else(|| DEFAULT_MODE.to_owned(), |m| m.as_str().to_owned()),
        }
    }
}

/// Why an export could not run.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("invalid range from {from} to {to}: {reason}")]
    Range {
        from: Timestamp,
        to: Timestamp,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The tenants with at least one row in the definitions table (valid or not), sorted.
pub async fn tenants<D: DefinitionSource, C: Clock + ?Sized>(
    definitions: &D,
    clock: &C,
) -> Result<Vec<TenantId>, StoreError> {
    let paging = Paging {
        page_size: 0,
        clock,
        deadline: None,
    };
    let rows = scan_definitions_paged(definitions, 4, paging).await?;
    let mut out = BTreeSet::new();
    for row in rows {
        match row {
            Ok(def) => {
                out.insert(def.tenant_id.as_str().to_owned());
            }
            // An invalid row's key is `TENANT#{t}|STEP#{s}`; its tenant may still have
            // occurrences from an earlier, valid version.
            Err(bad) => {
                if let Some(t) = bad
                    .key
                    .strip_prefix("TENANT#")
                    .and_then(|r| r.split('|').next())
                {
                    out.insert(t.to_owned());
                }
            }
        }
    }
    Ok(out
        .into_iter()
        .filter_map(|t| TenantId::parse(t).ok())
        .collect())
}

/// The UTC days `[from, to)` touches.
pub fn days(from: Timestamp, to: Timestamp) -> Vec<NaiveDate> {
    let last = to.minus(std::time::Duration::from_secs(1)).date();
    from.date().iter_days().take_while(|d| *d <= last).collect()
}

/// Every occurrence due in `[from, to)`, of `tenant` or of every tenant of the
/// definitions table, ordered by tenant then time. `each` is called after every tenant-day
/// read (progress), with the number of tenant-days in all.
pub async fn export_records<S, D, C>(
    store: &S,
    definitions: &D,
    from: Timestamp,
    to: Timestamp,
    tenant: Option<&TenantId>,
    clock: &C,
    mut each: impl FnMut(usize),
) -> Result<Vec<ExportRecord>, ExportError>
where
    S: ScheduleBrowse,
    D: DefinitionSource,
    C: Clock + ?Sized,
{
    if from >= to {
        return Err(ExportError::Range {
            from,
            to,
            reason: "'from' must be before 'to'".to_owned(),
        });
    }
    let days = days(from, to);
    if days.len() as i64 > MAX_EXPORT_DAYS {
        return Err(ExportError::Range {
            from,
            to,
            reason: format!("{} days is more than {MAX_EXPORT_DAYS}", days.len()),
        });
    }
    let tenants = match tenant {
        Some(t) => vec![t.clone()],
        None => tenants(definitions, clock).await?,
    };
    let paging = Paging {
        page_size: 500,
        clock,
        deadline: None,
    };
    let mut out = Vec::new();
    for t in &tenants {
        for day in &days {
            let items = occurrences_on(store, t, *day, paging).await?;
            out.extend(
                items
                    .iter()
                    .filter(|i| i.scheduled_time >= from && i.scheduled_time < to)
                    .map(ExportRecord::from),
            );
            each(tenants.len() * days.len());
        }
    }
    Ok(out)
}

pub async fn run(args: ExportArgs, aws: &AwsOptions, out: &mut dyn Write) -> Result<(), CliError> {
    let sdk = aws.sdk().await?;
    let (store, defs) = (args.schedule.store(&sdk), args.definitions.source(&sdk));
    let clock = schedule_core::adapters::clock::SystemClock;
    let bar = output::progress(None, false, "tenant-days read");
    let records = export_records(
        &store,
        &defs,
        args.from,
        args.to,
        args.tenant.as_ref(),
        &clock,
        |n| {
            bar.set_length(n as u64);
            bar.inc(1);
        },
    )
    .await;
    bar.finish_and_clear();
    let records = records.map_err(|e| match e {
        ExportError::Range { .. } => CliError::Usage(e.to_string()),
        ExportError::Store(e) => failed("exporting", &e),
    })?;
    for r in &records {
        output::json_line(out, r)?;
    }
    eprintln!("{} occurrences exported", records.len());
    Ok(())
}
