//! `wfs definitions put | get | list | disable | delete`: the definitions table, in the
//! plain JSON form of DESIGN.md. Every rejection names the definition (file and position,
//! tenant and step), the field and the value. `put` and `disable` write a version above the
//! stored one, so the definition sync and the next scan take the change.

use std::io::Write;
use std::path::PathBuf;

use schedule_core::error::StoreError;
use schedule_core::model::{Definition, StepId, TenantId, Timestamp};
use schedule_core::ports::{
    Clock, DefinitionAdmin, DefinitionSource, Paging, ScannedDefinition, scan_definitions_paged,
};
use serde::Serialize;
use serde_json::{Value, json};

use crate::aws::{AwsOptions, DefinitionsTable};
use crate::output::{self, table};
use crate::{CliError, failed};

#[derive(Debug, clap::Subcommand)]
pub enum DefinitionsCommand {
    /// Validate definitions and write them, each with a version above the stored one
    #[command(
        after_help = "Example:\n  wfs definitions put acme.json more/*.jsonl\n\n\
FILE is a JSON array of definitions or one definition per line. Exit 1 when any is rejected."
    )]
    Put {
        /// Files of definitions (a JSON array, or one JSON object per line)
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        #[command(flatten)]
        table: DefinitionsTable,
        /// One JSON line per definition: {origin, tenant_id, device_workflow_step_id, version, error}
        #[arg(long)]
        json: bool,
    },
    /// Print one stored definition as JSON
    #[command(
        after_help = "Example:\n  wfs definitions get --tenant acme --step water-1\n\nExit 1 when there is none."
    )]
    Get {
        #[command(flatten)]
        key: StepKey,
        #[command(flatten)]
        table: DefinitionsTable,
    },
    /// List the stored definitions, of one tenant or all
    #[command(after_help = "Example:\n  wfs definitions list --tenant acme --json")]
    List {
        /// Only this tenant's
        #[arg(long, value_name = "TENANT", value_parser = crate::cli::tenant_id)]
        tenant: Option<TenantId>,
        #[command(flatten)]
        table: DefinitionsTable,
        /// One JSON object per line (the definition, or {key, error} for a row that is invalid)
        #[arg(long)]
        json: bool,
    },
    /// Disable a definition (a new version with enabled = false): its PENDING occurrences are cancelled
    #[command(after_help = "Example:\n  wfs definitions disable --tenant acme --step water-1")]
    Disable {
        #[command(flatten)]
        key: StepKey,
        #[command(flatten)]
        table: DefinitionsTable,
        /// One JSON object {tenant_id, device_workflow_step_id, version, enabled}
        #[arg(long)]
        json: bool,
    },
    /// Delete a definition: its PENDING occurrences are cancelled
    #[command(
        after_help = "Example:\n  wfs definitions delete --tenant acme --step water-1\n\nExit 1 when there was none."
    )]
    Delete {
        #[command(flatten)]
        key: StepKey,
        #[command(flatten)]
        table: DefinitionsTable,
        /// One JSON object {tenant_id, device_workflow_step_id, deleted}
        #[arg(long)]
        json: bool,
    },
}

/// One definition's key.
#[derive(Debug, Clone, clap::Args)]
pub struct StepKey {
    /// Tenant id
    #[arg(long, value_name = "TENANT", value_parser = crate::cli::tenant_id)]
    pub tenant: TenantId,
    /// Device workflow step id
    #[arg(long, value_name = "STEP", value_parser = crate::cli::step_id)]
    pub step: StepId,
}

/// One definition read from a file, with where it came from (`file:position`, 1-based).
#[derive(Debug, Clone, PartialEq)]
pub struct Input {
    pub origin: String,
    pub value: Value,
}

/// Every definition of `files`, in order, each named `file:position`.
pub fn read_inputs(files: &[PathBuf]) -> Result<Vec<Input>, CliError> {
    let mut out = Vec::new();
    for file in files {
        let values = crate::demo::load(file).map_err(CliError::Failed)?;
        out.extend(values.into_iter().enumerate().map(|(i, value)| Input {
            origin: format!("{}:{}", file.display(), i + 1),
            value,
        }));
    }
    Ok(out)
}

/// What `put` did with one definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PutOutcome {
    pub origin: String,
    pub tenant_id: Option<String>,
    pub device_workflow_step_id: Option<String>,
    /// The version written; absent when rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Why it was rejected (names the field and the value).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PutOutcome {
    /// `file:3 (acme/water-1)`.
    pub fn name(&self) -> String {
        format!(
            "{} ({}/{})",
            self.origin,
            self.tenant_id.as_deref().unwrap_or("?"),
            self.device_workflow_step_id.as_deref().unwrap_or("?")
        )
    }
}

/// Validates and writes each input. A definition whose version is not above the stored
/// one is written as the stored version + 1, stamped `updated_at = now`. `each` is called
/// after every definition (progress).
pub async fn put_definitions<D: DefinitionSource>(
    source: &D,
    inputs: &[Input],
    now: Timestamp,
    mut each: impl FnMut(),
) -> Vec<PutOutcome> {
    let mut out = Vec::with_capacity(inputs.len());
    for input in inputs {
        let id = |k: &str| {
            input
                .value
                .get(k)
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let mut outcome = PutOutcome {
            origin: input.origin.clone(),
            tenant_id: id("tenant_id"),
            device_workflow_step_id: id("device_workflow_step_id"),
            version: None,
            error: None,
        };
        match put_one(source, &input.value, now).await {
            Ok(version) => outcome.version = Some(version),
            Err(e) => outcome.error = Some(e),
        }
        out.push(outcome);
        each();
    }
    out
}

async fn put_one<D: DefinitionSource>(
    source: &D,
    value: &Value,
    now: Timestamp,
) -> Result<u64, String> {
    let mut def = Definition::from_json(value).map_err(|e| e.to_string())?;
    let stored = source
        .get(&def.tenant_id, &def.device_workflow_step_id)
        .await
        .map_err(|e| schedule_core::error::chain(&e))?;
    if let Some(Ok(stored)) = stored
        && stored.version >= def.version
    {
        def.version = stored.version + 1;
    }
    def.updated_at = Some(now);
    source
        .put(&def)
        .await
        .map_err(|e| schedule_core::error::chain(&e))?;
    Ok(def.version)
}

/// The stored definition of `tenant`/`step`: valid, invalid (with why), or `None`.
pub async fn get_definition<D: DefinitionSource>(
    source: &D,
    tenant: &TenantId,
    step: &StepId,
) -> Result<Option<ScannedDefinition>, StoreError> {
    source.get(tenant, step).await
}

/// Every stored definition (of `tenant` when given), sorted by tenant and step; invalid
/// rows are kept with their key and error.
pub async fn list_definitions<D: DefinitionSource, C: Clock + ?Sized>(
    source: &D,
    tenant: Option<&TenantId>,
    clock: &C,
) -> Result<Vec<ScannedDefinition>, StoreError> {
    let paging = Paging {
        page_size: 0,
        clock,
        deadline: None,
    };
    let mut all = scan_definitions_paged(source, 4, paging).await?;
    if let Some(t) = tenant {
        let prefix = format!("TENANT#{t}|");
        all.retain(|d| match d {
            Ok(def) => &def.tenant_id == t,
            Err(bad) => bad.key.starts_with(&prefix),
        });
    }
    all.sort_by_key(sort_key);
    Ok(all)
}

fn sort_key(d: &ScannedDefinition) -> String {
    match d {
        Ok(def) => {
            let (pk, sk) = def.key();
            format!("{pk}|{sk}")
        }
        Err(bad) => bad.key.clone(),
    }
}

/// Why a definition could not be disabled.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("no definition {tenant}/{step}")]
    NotFound { tenant: TenantId, step: StepId },
    #[error("definition {tenant}/{step} is invalid and cannot be edited: {reason}")]
    Invalid {
        tenant: TenantId,
        step: StepId,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Writes `tenant`/`step` again with `enabled = false` and the next version.
pub async fn disable_definition<D: DefinitionSource>(
    source: &D,
    tenant: &TenantId,
    step: &StepId,
    now: Timestamp,
) -> Result<Definition, EditError> {
    let mut def = match source.get(tenant, step).await? {
        None => {
            return Err(EditError::NotFound {
                tenant: tenant.clone(),
                step: step.clone(),
            });
        }
        Some(Err(bad)) => {
            return Err(EditError::Invalid {
                tenant: tenant.clone(),
                step: step.clone(),
                reason: bad.error.to_string(),
            });
        }
        Some(Ok(def)) => def,
    };
    def.enabled = false;
    def.version += 1;
    def.updated_at = Some(now);
    source.put(&def).await?;
    Ok(def)
}

/// Deletes `tenant`/`step`; `Ok(false)` when there was none.
pub async fn delete_definition<D: DefinitionAdmin>(
    source: &D,
    tenant: &TenantId,
    step: &StepId,
) -> Result<bool, StoreError> {
    source.delete_definition(tenant, step).await
}

/// A stored row as JSON: the definition, or `{key, error}`.
pub fn scanned_json(d: &ScannedDefinition) -> Value {
    match d {
        Ok(def) => def.to_json(),
        Err(bad) => json!({"key": bad.key, "error": bad.error.to_string()}),
    }
}

/// The human list: one row per definition.
pub fn render_list(defs: &[ScannedDefinition]) -> String {
    let rows: Vec<Vec<String>> = defs
        .iter()
        .map(|d| match d {
            Ok(def) => {
                let kind = serde_json::to_value(&def.schedule.rule)
                    .ok()
                    .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_default();
                vec![
                    def.tenant_id.to_string(),
                    def.device_workflow_step_id.to_string(),
                    def.device_id.to_string(),
                    if def.enabled { "yes" } else { "no" }.to_owned(),
                    def.version.to_string(),
                    kind,
                ]
            }
            Err(bad) => vec![
                bad.key.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                format!("invalid: {}", bad.error),
            ],
        })
        .collect();
    table(
        &["tenant", "step", "device", "enabled", "version", "schedule"],
        &rows,
    )
}

pub async fn run(
    command: DefinitionsCommand,
    aws: &AwsOptions,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let now = Timestamp::from_datetime(chrono::Utc::now());
    match command {
        DefinitionsCommand::Put { files, table, json } => {
            let inputs = read_inputs(&files)?;
            let source = table.source(&aws.sdk().await?);
            let bar = output::progress(Some(inputs.len() as u64), json, "writing definitions");
            let outcomes = put_definitions(&source, &inputs, now, || bar.inc(1)).await;
            bar.finish_and_clear();
            report_put(&outcomes, json, out)
        }
        DefinitionsCommand::Get { key, table } => {
            let source = table.source(&aws.sdk().await?);
            match get_definition(&source, &key.tenant, &key.step)
                .await
                .map_err(|e| failed("reading the definition", &e))?
            {
                Some(d) => output::json_line(out, &scanned_json(&d)),
                None => Err(CliError::Failed(format!(
                    "no definition {}/{}",
                    key.tenant, key.step
                ))),
            }
        }
        DefinitionsCommand::List {
            tenant,
            table,
            json,
        } => {
            let source = table.source(&aws.sdk().await?);
            let clock = schedule_core::adapters::clock::SystemClock;
            let defs = list_definitions(&source, tenant.as_ref(), &clock)
                .await
                .map_err(|e| failed("listing definitions", &e))?;
            if json {
                for d in &defs {
                    output::json_line(out, &scanned_json(d))?;
                }
                Ok(())
            } else {
                write!(out, "{}", render_list(&defs)).map_err(|e| CliError::Failed(e.to_string()))
            }
        }
        DefinitionsCommand::Disable { key, table, json } => {
            let source = table.source(&aws.sdk().await?);
            let def = disable_definition(&source, &key.tenant, &key.step, now)
                .await
                .map_err(|e| failed("disabling", &e))?;
            if json {
                return output::json_line(
                    out,
                    &json!({"tenant_id": def.tenant_id.as_str(), "device_workflow_step_id": def.device_workflow_step_id.as_str(),
                            "version": def.version, "enabled": def.enabled}),
                );
            }
            output::line(
                out,
                &format!(
                    "{}/{} disabled at version {}",
                    def.tenant_id, def.device_workflow_step_id, def.version
                ),
            )
        }
        DefinitionsCommand::Delete { key, table, json } => {
            let source = table.source(&aws.sdk().await?);
            if delete_definition(&source, &key.tenant, &key.step)
                .await
                .map_err(|e| failed("deleting", &e))?
            {
                if json {
                    return output::json_line(
                        out,
                        &json!({"tenant_id": key.tenant.as_str(), "device_workflow_step_id": key.step.as_str(), "deleted": true}),
                    );
                }
                output::line(out, &format!("{}/{} deleted", key.tenant, key.step))
            } else {
                Err(CliError::Failed(format!(
                    "no definition {}/{}",
                    key.tenant, key.step
                )))
            }
        }
    }
}

/// Prints the outcome of `put`: each rejection on stderr (and in the JSON), a summary;
/// exit 1 when any definition was rejected.
pub fn report_put(
    outcomes: &[PutOutcome],
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let rejected = outcomes.iter().filter(|o| o.error.is_some()).count();
    for o in outcomes {
        if json {
            output::json_line(out, o)?;
        }
        if let Some(e) = &o.error {
            eprintln!("rejected {}: {e}", o.name());
        }
    }
    if !json {
        output::line(
            out,
            &format!("{} written, {rejected} rejected", outcomes.len() - rejected),
        )?;
    }
    match rejected {
        0 => Ok(()),
        n => Err(CliError::Failed(format!(
            "{n} of {} definitions rejected",
            outcomes.len()
        ))),
    }
}
