//! The command tree (clap derive), dispatch and exit codes: 0 ok, 1 a finding or a runtime
//! failure, 2 a usage error (clap's own included). Data goes to stdout, diagnostics to
//! stderr.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use chrono::{NaiveDate, Utc};
use clap::{Parser, Subcommand};
use schedule_core::model::{StepId, TenantId, Timestamp};

use crate::CliError;
use crate::aws::AwsOptions;

#[derive(Debug, Parser)]
#[command(
    name = "wfs",
    version,
    // Help is wrapped at 100 columns whatever the terminal, so it reads the same everywhere.
    term_width = 100,
    about = "Operator CLI of the workflow step scheduler",
    long_about = "Operator CLI of the workflow step scheduler: definitions, a tenant's day, one \
occurrence's story, the flow's status, the DLQ, backfills and exports, against AWS (the \
standard credential chain: environment, profiles, roles) or an emulator (--endpoint-url), and \
the whole flow locally on the embedded backend (demo).",
    after_help = "Exit codes: 0 ok, 1 a finding or a runtime failure, 2 a usage error.\n\
Tables and queues come from flags or the variables the functions read (SCHEDULE_TABLE, \
DEFINITIONS_TABLE, EXECUTION_QUEUE_URL, EXECUTION_DLQ_URL).\n\nExample:\n  wfs plan --tenant acme --date 2026-11-26"
)]
pub struct Cli {
    #[command(flatten)]
    pub aws: AwsOptions,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole flow on the embedded backend and print each trigger as it fires
    Demo(crate::demo::Options),
    /// Create the tables and queues on an emulator and print the variables the functions read
    SetupLocal(crate::local::SetupArgs),
    /// The next occurrences of one definition, in local time and UTC
    Preview(crate::preview::Options),
    /// Write, read, list, disable and delete definitions
    #[command(subcommand)]
    Definitions(crate::definitions::DefinitionsCommand),
    /// One tenant's day: each occurrence's time, step, device, status, lateness, retries
    Plan(crate::plan::PlanArgs),
    /// One occurrence's whole story
    Explain(crate::explain::ExplainArgs),
    /// Counts of PENDING and QUEUED per shard, the oldest of each, queue depths, the scan horizon
    Status(crate::status::StatusArgs),
    /// The execution dead-letter queue: list it, redrive it
    #[command(subcommand)]
    Dlq(crate::dlq::DlqCommand),
    /// Materialize the occurrences of a past or future range (the scanner's range mode)
    Backfill(crate::backfill::BackfillArgs),
    /// One JSON line per occurrence of a range
    Export(crate::export::ExportArgs),
    // Per-tenant rollout modes and reconciliation against the legacy flow join here:
    /// Per-tenant rollout modes: off, shadow (run to the end, send nothing), active
    Tenants(crate::tenants::TenantsArgs),
    /// Compare the legacy flow's triggers with the new flow's occurrences of a range
    Reconcile(crate::reconcile::ReconcileArgs),
    /// DynamoDB units, SQS requests and Lambda time per executed step, and their price
    Cost(crate::cost::CostArgs),
}

/// Parses `args` and runs the command; prints the error and returns the exit code.
pub async fn main<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors: clap prints them to stdout, exit 0.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = run(cli, &mut out).await;
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wfs: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs one parsed command, data to `out`.
pub async fn run(cli: Cli, out: &mut dyn Write) -> Result<(), CliError> {
    let aws = &cli.aws;
    match cli.command {
        Command::Demo(options) => crate::demo::run(options).await.map_err(CliError::Failed),
        Command::SetupLocal(args) => crate::local::setup(args, aws)
            .await
            .map_err(CliError::Failed),
        Command::Preview(options) => crate::preview::run(&options, Utc::now()),
        Command::Definitions(c) => crate::definitions::run(c, aws, out).await,
        Command::Plan(args) => crate::plan::run(args, aws, out).await,
        Command::Explain(args) => crate::explain::run(args, aws, out).await,
        Command::Status(args) => crate::status::run(args, aws, out).await,
        Command::Dlq(c) => crate::dlq::run(c, aws, out).await,
        Command::Backfill(args) => crate::backfill::run(args, aws, out).await,
        Command::Export(args) => crate::export::run(args, aws, out).await,
        Command::Tenants(args) => crate::tenants::run(&args, aws).await,
        Command::Reconcile(args) => crate::reconcile::run(&args, aws).await,
        Command::Cost(args) => crate::cost::run(args, out).await,
    }
}

// ---- Value parsers: each error names what was expected. ----

pub fn tenant_id(raw: &str) -> Result<TenantId, String> {
    TenantId::parse(raw).map_err(|e| e.to_string())
}

pub fn step_id(raw: &str) -> Result<StepId, String> {
    StepId::parse(raw).map_err(|e| e.to_string())
}

/// RFC 3339, UTC (`2026-11-26T10:30:00Z`) or with an offset.
pub fn timestamp(raw: &str) -> Result<Timestamp, String> {
    crate::preview::parse_from(raw)
}

/// A UTC day, `YYYY-MM-DD`.
pub fn date(raw: &str) -> Result<NaiveDate, String> {
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| format!("expected a day like 2026-11-26, not {raw:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }
}
