//! `wfs tenants`: the per-tenant rollout modes (off, shadow, active), stored as one
//! settings row per tenant in the definitions table. A switch takes effect within the
//! functions' mode cache TTL (`TENANT_MODE_TTL`, 30 s by default); each occurrence is
//! decided once, at its due time, so a switch neither drops nor doubles one.

use std::fmt::Write as _;

use schedule_core::adapters::dynamo::DynamoDefinitionSource;
use schedule_core::model::{TenantId, TenantMode, TenantSetting, Timestamp};
use schedule_core::ports::TenantModes;

use crate::CliError;

/// Per-tenant rollout modes.
///
/// Example: `wfs tenants mode acme shadow`, then `wfs tenants list --json`
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Example:\n  wfs tenants mode acme shadow\n  wfs tenants list --json")]
pub struct TenantsArgs {
    #[command(subcommand)]
    pub command: TenantsCommand,
    /// The definitions table (default: DEFINITIONS_TABLE).
    #[arg(long, global = true, value_name = "NAME")]
    pub table: Option<String>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum TenantsCommand {
    /// Set a tenant's mode: off (nothing materialized or sent), shadow (the flow runs and
    /// records the trigger it would send, sending nothing to the action trigger queue) or
    /// active.
    ///
    /// Example: `wfs tenants mode acme active`
    #[command(
        after_help = "Example:\n  wfs tenants mode acme shadow\n  wfs tenants mode acme active"
    )]
    Mode {
        /// The tenant id.
        tenant: String,
        /// off, shadow or active.
        #[arg(value_parser = parse_mode)]
        mode: TenantMode,
    },
    /// Every tenant with a stored mode (tenants without one follow the deployment's
    /// DEFAULT_TENANT_MODE).
    ///
    /// Example: `wfs tenants list --json`
    #[command(after_help = "Example:\n  wfs tenants list\n  wfs tenants list --json")]
    List {
        /// A JSON array of {tenant_id, mode, updated_at} instead of a table.
        #[arg(long)]
        json: bool,
    },
}

fn parse_mode(raw: &str) -> Result<TenantMode, String> {
    raw.parse::<TenantMode>().map_err(|e| e.to_string())
}

/// Stores `mode` for `tenant`; returns the line to print (the previous and the new mode).
pub async fn set_mode<M: TenantModes>(
    modes: &M,
    tenant: &str,
    mode: TenantMode,
    now: Timestamp,
) -> Result<String, CliError> {
    let tenant = TenantId::parse(tenant).map_err(|e| CliError::Usage(e.to_string()))?;
    let failed = |e: schedule_core::error::StoreError| {
        CliError::Failed(format!(
            "tenant {tenant}: {}",
            schedule_core::error::chain(&e)
        ))
    };
    let before = modes.stored_mode(&tenant).await.map_err(failed)?;
    modes.set_mode(&tenant, mode, now).await.map_err(failed)?;
    let before = before.map_or_else(|| "default".to_owned(), |m| m.to_string());
    Ok(format!("{tenant}: {before} -> {mode}"))
}

/// The stored modes, as a table or a JSON array.
pub fn render_list(settings: &[TenantSetting], json: bool) -> String {
    if json {
        return format!(
            "{}\n",
            serde_json::to_string(settings).unwrap_or_else(|_| "[]".to_owned())
        );
    }
    let mut out = String::new();
    let _ = writeln!(out, "{:<32} {:<8} UPDATED_AT", "TENANT", "MODE");
    for s in settings {
        let _ = writeln!(
            out,
            "{:<32} {:<8} {}",
            s.tenant_id,
            s.mode,
            s.updated_at.as_deref().unwrap_or("-")
        );
    }
    out
}

async fn source(
    args: &TenantsArgs,
    aws: &crate::aws::AwsOptions,
) -> Result<DynamoDefinitionSource, CliError> {
    let table = match &args.table {
        Some(t) => t.clone(),
        None => std::env::var("DEFINITIONS_TABLE").map_err(|_| {
            CliError::Usage("--table NAME or DEFINITIONS_TABLE is required".to_owned())
        })?,
    };
    let sdk = aws.sdk().await?;
    Ok(DynamoDefinitionSource::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        table,
    ))
}

/// Runs `wfs tenants …` against the definitions table.
pub async fn run(args: &TenantsArgs, aws: &crate::aws::AwsOptions) -> Result<(), CliError> {
    let source = source(args, aws).await?;
    match &args.command {
        TenantsCommand::Mode { tenant, mode } => {
            let now = Timestamp::from_datetime(chrono::Utc::now());
            let line = set_mode(&source, tenant, *mode, now).await?;
            println!("{line}");
            eprintln!(
                "takes effect within the functions' TENANT_MODE_TTL (30 s by default); each occurrence is decided once, at its due time"
            );
            Ok(())
        }
        TenantsCommand::List { json } => {
            let settings = source.modes().await.map_err(|e| {
                CliError::Failed(format!(
                    "listing tenant modes: {}",
                    schedule_core::error::chain(&e)
                ))
            })?;
            print!("{}", render_list(&settings, *json));
            if !json {
                eprintln!("tenants without a row follow the deployment's DEFAULT_TENANT_MODE");
            }
            Ok(())
        }
    }
}
