//! `wfs explain --tenant T --step S --at TIME`: one occurrence's whole story, from its
//! item (the definition version it came from, validation, queued, sent or why not, retries,
//! sweeps, the execution id) and from the current definition (its version, and whether it
//! still yields that time).

use std::io::Write;

use schedule_core::error::StoreError;
use schedule_core::model::{ScheduleItem, ScheduleKey, Status, StepId, TenantId, Timestamp};
use schedule_core::ports::{DefinitionSource, ScheduleStore};
use schedule_core::recurrence::{Window, occurrences};
use serde::Serialize;

use crate::aws::{AwsOptions, DefinitionsTable, ScheduleTable};
use crate::output::{self, millis};
use crate::{CliError, failed};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  wfs explain --tenant acme --step water-1 --at 2026-11-26T10:30:00Z\n\n\
Exit 1 when the schedule table has no such occurrence (the story then says why, if the \
definition tells)."
)]
pub struct ExplainArgs {
    /// Tenant id
    #[arg(long, value_name = "TENANT", value_parser = crate::cli::tenant_id)]
    pub tenant: TenantId,
    /// Device workflow step id
    #[arg(long, value_name = "STEP", value_parser = crate::cli::step_id)]
    pub step: StepId,
    /// The occurrence's scheduled time, RFC 3339 (UTC or with an offset)
    #[arg(long, value_name = "TIME", value_parser = crate::cli::timestamp)]
    pub at: Timestamp,
    #[command(flatten)]
    pub schedule: ScheduleTable,
    #[command(flatten)]
    pub definitions: DefinitionsTable,
    /// One JSON object {occurrence, definition, story}
    #[arg(long)]
    pub json: bool,
}

/// What the item records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    pub pk: String,
    pub sk: String,
    pub status: String,
    pub device_id: String,
    pub workflow_id: String,
    pub definition_version: u64,
    pub validation_result: Option<String>,
    pub created_at: String,
    pub queued_at: Option<String>,
    pub executed_at: Option<String>,
    pub lateness_ms: Option<u64>,
    pub retry_count: u32,
    pub sweeps: u32,
    pub last_error: Option<String>,
    pub cancelled_by_version: Option<u64>,
    pub execution_id: String,
}

/// What the definitions table says now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrentDefinition {
    /// `None` when the row does not read as a definition (see `invalid`).
    pub version: Option<u64>,
    pub enabled: Option<bool>,
    /// Whether the current rule still yields the occurrence's time.
    pub yields_time: Option<bool>,
    pub invalid: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Explanation {
    pub tenant_id: String,
    pub device_workflow_step_id: String,
    pub scheduled_time: String,
    pub occurrence: Option<Occurrence>,
    /// `None`: no definition of that step is stored.
    pub definition: Option<CurrentDefinition>,
    /// The story, one sentence a line.
    pub story: Vec<String>,
}

impl From<&ScheduleItem> for Occurrence {
    fn from(i: &ScheduleItem) -> Self {
        let t = |t: &Option<Timestamp>| t.map(|t| t.to_string());
        Self {
            pk: i.key.pk.clone(),
            sk: i.key.sk.clone(),
            status: i.status.to_string(),
            device_id: i.device_id.to_string(),
            workflow_id: i.workflow_id.to_string(),
            definition_version: i.definition_version,
            validation_result: i.validation_result.map(|v| format!("{v:?}").to_uppercase()),
            created_at: i.created_at.to_string(),
            queued_at: t(&i.queued_at),
            executed_at: t(&i.executed_at),
            lateness_ms: i.lateness_ms,
            retry_count: i.retry_count,
            sweeps: i.sweeps,
            last_error: i.last_error.clone(),
            cancelled_by_version: i.cancelled_by_version,
            execution_id: i.execution_id().to_string(),
        }
    }
}

/// Reads the occurrence and the current definition, and tells the story.
pub async fn explain<S: ScheduleStore, D: DefinitionSource>(
    store: &S,
    definitions: &D,
    tenant: &TenantId,
    step: &StepId,
    at: Timestamp,
) -> Result<Explanation, StoreError> {
    let item = store.get(&ScheduleKey::new(tenant, at, step)).await?;
    let definition = definitions.get(tenant, step).await?.map(|d| match d {
        Ok(def) => CurrentDefinition {
            version: Some(def.version),
            enabled: Some(def.enabled),
            yields_time: occurrences(
                &def.schedule,
                Window {
                    from: at,
                    to: at.plus(std::time::Duration::from_secs(1)),
                },
            )
            .ok()
            .map(|ts| ts.contains(&at)),
            invalid: None,
        },
        Err(bad) => CurrentDefinition {
            version: None,
            enabled: None,
            yields_time: None,
            invalid: Some(bad.error.to_string()),
        },
    });
    let occurrence = item.as_ref().map(Occurrence::from);
    let story = story(item.as_ref(), definition.as_ref());
    Ok(Explanation {
        tenant_id: tenant.to_string(),
        device_workflow_step_id: step.to_string(),
        scheduled_time: at.to_string(),
        occurrence,
        definition,
        story,
    })
}

fn story(item: Option<&ScheduleItem>, def: Option<&CurrentDefinition>) -> Vec<String> {
    let mut s = Vec::new();
    match item {
        None => s.push("not materialized: the schedule table has no such occurrence".to_owned()),
        Some(i) => {
            s.push(format!(
                "materialized at {} from definition version {}, device {}",
                i.created_at, i.definition_version, i.device_id
            ));
            match i.validation_result {
                Some(v) => s.push(format!(
                    "device validation: {}",
                    format!("{v:?}").to_uppercase()
                )),
                None => s.push("device validation: not yet".to_owned()),
            }
            if let Some(q) = i.queued_at {
                s.push(format!("queued at {q} (execution id {})", i.execution_id()));
            }
            if i.sweeps > 0 {
                s.push(format!(
                    "sent again by the scheduler's sweep {} time(s)",
                    i.sweeps
                ));
            }
            if i.retry_count > 0 {
                s.push(format!("{} send attempt(s) failed", i.retry_count));
            }
            s.push(match (i.status, i.executed_at) {
                (Status::Executed, Some(t)) => {
                    format!("EXECUTED: sent at {t}, {} late", millis(i.lateness_ms))
                }
                (status, _) => format!(
                    "{status}{}",
                    i.last_error
                        .as_ref()
                        .map(|e| format!(": {e}"))
                        .unwrap_or_default()
                ),
            });
            if let Some(v) = i.cancelled_by_version {
                s.push(format!("cancelled by definition version {v}"));
            }
        }
    }
    s.push(match def {
        None => "definition: none stored now (deleted?)".to_owned(),
        Some(CurrentDefinition {
            invalid: Some(e), ..
        }) => format!("definition: invalid now: {e}"),
        Some(d) => format!(
            "definition now: version {}, {}, {}",
            d.version.map_or_else(|| "?".to_owned(), |v| v.to_string()),
            if d.enabled == Some(true) {
                "enabled"
            } else {
                "disabled"
            },
            match d.yields_time {
                Some(true) => "still yields this time",
                Some(false) => "no longer yields this time",
                None => "its rule cannot be evaluated",
            }
        ),
    });
    s
}

/// The human form: the key, then the story.
pub fn render(e: &Explanation) -> String {
    let mut out = format!(
        "{}/{} at {}\n",
        e.tenant_id, e.device_workflow_step_id, e.scheduled_time
    );
    for line in &e.story {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
    out
}

pub async fn run(args: ExplainArgs, aws: &AwsOptions, out: &mut dyn Write) -> Result<(), CliError> {
    let sdk = aws.sdk().await?;
    let (store, defs) = (args.schedule.store(&sdk), args.definitions.source(&sdk));
    let e = explain(&store, &defs, &args.tenant, &args.step, args.at)
        .await
        .map_err(|e| failed("reading the occurrence", &e))?;
    print_explanation(&e, args.json, out)
}

/// Prints `e`; exit 1 when there is no such occurrence.
pub fn print_explanation(e: &Explanation, json: bool, out: &mut dyn Write) -> Result<(), CliError> {
    if json {
        output::json_line(out, e)?;
    } else {
        write!(out, "{}", render(e)).map_err(|err| CliError::Failed(err.to_string()))?;
    }
    match e.occurrence {
        Some(_) => Ok(()),
        None => Err(CliError::Failed(format!(
            "no occurrence {}/{} at {}",
            e.tenant_id, e.device_workflow_step_id, e.scheduled_time
        ))),
    }
}
