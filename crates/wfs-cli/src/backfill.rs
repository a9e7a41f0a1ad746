//! `wfs backfill --from --to [--tenant]`: the daily scanner's range mode, run in this
//! process with the scanner's own configuration (the variables `daily_scanner_v2` reads):
//! materializes every occurrence due in `[from, to)`, idempotently (what exists is left as
//! it is), and prints the scan report.

use std::io::Write;

use schedule_core::adapters::clock::SystemClock;
use schedule_core::adapters::http_validator::RegistryValidator;
use schedule_core::app::AppError;
use schedule_core::app::scan::{ScanReport, ScanRequest, Scanner};
use schedule_core::config::{Env, ScannerConfig};
use schedule_core::metrics::Metrics;
use schedule_core::model::{TenantId, Timestamp};
use schedule_core::ports::{Clock, DefinitionSource, DeviceValidator, ScheduleStore};
use schedule_core::validation_cache::CachedValidator;

use crate::aws::AwsOptions;
use crate::output::{self, table};
use crate::{CliError, failed};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  wfs backfill --from 2026-11-26T00:00:00Z --to 2026-11-27T00:00:00Z --tenant acme\n\n\
Reads the scanner's variables: SCHEDULE_TABLE, DEFINITIONS_TABLE, STATUS_SHARDS, \
DEVICE_REGISTRY_URL, ... Exit 1 when the scan did not complete (write errors, or out of time)."
)]
pub struct BackfillArgs {
    /// Start of the range (inclusive), RFC 3339
    #[arg(long, value_name = "TIME", value_parser = crate::cli::timestamp)]
    pub from: Timestamp,
    /// End of the range (exclusive), RFC 3339
    #[arg(long, value_name = "TIME", value_parser = crate::cli::timestamp)]
    pub to: Timestamp,
    /// Only this tenant's definitions
    #[arg(long, value_name = "TENANT", value_parser = crate::cli::tenant_id)]
    pub tenant: Option<TenantId>,
    /// The scan report as one JSON object
    #[arg(long)]
    pub json: bool,
}

/// Runs `scanner` over `[from, to)` (of `tenant` when given).
pub async fn backfill<D, S, V, C>(
    scanner: &Scanner<D, S, V, C>,
    from: Timestamp,
    to: Timestamp,
    tenant: Option<TenantId>,
    metrics: &Metrics,
) -> Result<ScanReport, AppError>
where
    D: DefinitionSource,
    S: ScheduleStore,
    V: DeviceValidator,
    C: Clock,
{
    let request = ScanRequest::backfill(from, to, tenant, &scanner.settings)?;
    scanner.run(&request, None, metrics).await
}

pub fn render(r: &ScanReport) -> String {
    let v = serde_json::to_value(r).unwrap_or_default();
    let rows: Vec<Vec<String>> = v
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| vec![k.clone(), v.to_string().trim_matches('"').to_owned()])
                .collect()
        })
        .unwrap_or_default();
    table(&["field", "value"], &rows)
}

pub async fn run(
    args: BackfillArgs,
    aws: &AwsOptions,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let config =
        ScannerConfig::from_env(&Env::process()).map_err(|e| CliError::Usage(e.to_string()))?;
    let sdk = aws.sdk().await?;
    let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
    let validator = RegistryValidator::from_config(&config.validation)
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let scanner = Scanner {
        definitions: schedule_core::adapters::dynamo::DynamoDefinitionSource::new(
            dynamo.clone(),
            &config.definitions_table,
        ),
        store: schedule_core::adapters::dynamo::DynamoScheduleStore::new(
            dynamo,
            &config.store.schedule_table,
            config.store.status_shards,
        ),
        validator: CachedValidator::new(validator, config.validation.cache),
        clock: SystemClock,
        settings: config.scan.clone(),
        // A backfill materializes nothing for a tenant whose mode is `off`, as the scan does.
        modes: schedule_core::mode_cache::ModeRouting::new(
            std::sync::Arc::new(schedule_core::mode_cache::CachedModes::new(
                schedule_core::adapters::dynamo::DynamoDefinitionSource::new(
                    aws_sdk_dynamodb::Client::new(&sdk),
                    &config.definitions_table,
                ),
                config.modes.default,
                config.modes.ttl,
            )),
            None,
        ),
    };
    let bar = output::progress(None, args.json, "scanning");
    let report = backfill(
        &scanner,
        args.from,
        args.to,
        args.tenant,
        &Metrics::new("wfs"),
    )
    .await;
    bar.finish_and_clear();
    let report = report.map_err(|e| match e {
        AppError::InvalidRequest(_) => CliError::Usage(e.to_string()),
        e => failed("backfill", &e),
    })?;
    if args.json {
        output::json_line(out, &report)?;
    } else {
        write!(out, "{}", render(&report)).map_err(|e| CliError::Failed(e.to_string()))?;
    }
    if report.is_complete() {
        Ok(())
    } else {
        Err(CliError::Failed(format!(
            "backfill incomplete: {} write errors, {} not written; run it again",
            report.write_errors, report.not_written
        )))
    }
}
