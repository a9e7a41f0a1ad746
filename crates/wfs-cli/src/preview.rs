//! `wfs preview FILE [--count N] [--from TIME] [--json]`: the next occurrences of one
//! definition, in its local time and in UTC, marking those the daylight-saving policy moved
//! or dropped. Reads a definition in the plain JSON form of DESIGN.md; nothing is written.

use std::path::PathBuf;

use chrono::{DateTime, SecondsFormat, Utc};
use schedule_core::model::{Definition, Schedule, Timestamp};
use schedule_core::recurrence::{PreviewEntry, preview};
use serde_json::{Value, json};

use crate::CliError;

/// The most occurrences one preview prints.
const MAX_COUNT: usize = 10_000;

#[derive(Debug, PartialEq, Eq, clap::Args)]
#[command(
    after_help = "Example:\n  wfs preview examples/definition.json --count 5 --from 2026-03-28T00:00:00Z\n  cat def.json | wfs preview - --json\n\n\
FILE is one JSON definition; - reads standard input. Exit 1 when the definition is invalid."
)]
pub struct Options {
    /// The definition (one JSON object); - reads standard input
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// How many occurrences
    #[arg(long, value_name = "N", default_value_t = 10, value_parser = count)]
    count: usize,
    /// From this time (RFC 3339, UTC or with an offset); default now
    #[arg(long, value_name = "TIME", value_parser = parse_from)]
    from: Option<Timestamp>,
    /// A JSON array of {utc, local, note}
    #[arg(long)]
    json: bool,
}

fn count(raw: &str) -> Result<usize, String> {
    raw.parse::<usize>()
        .ok()
        .filter(|n| (1..=MAX_COUNT).contains(n))
        .ok_or_else(|| format!("expected a whole number from 1 to {MAX_COUNT}"))
}

/// `--from` as UTC (`2026-03-29T00:00:00Z`) or with an offset (`2026-03-29T00:00:00+01:00`).
pub(crate) fn parse_from(raw: &str) -> Result<Timestamp, String> {
    Timestamp::parse(raw).or_else(|_| {
        DateTime::parse_from_rfc3339(raw)
            .map(|t| Timestamp::from_datetime(t.with_timezone(&Utc)))
            .map_err(|_| {
                format!(
                    "expected RFC 3339, like 2026-03-29T00:00:00Z or 2026-03-29T00:00:00+01:00, not {raw:?}"
                )
            })
    })
}

/// Reads the definition: one JSON object, from a file or `-` for standard input.
fn read_definition(path: &PathBuf) -> Result<Definition, CliError> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin())
            .map_err(|e| CliError::Failed(format!("cannot read standard input: {e}")))?
    } else {
        std::fs::read_to_string(path)
            .map_err(|e| CliError::Failed(format!("cannot read {}: {e}", path.display())))?
    };
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        CliError::Failed(format!(
            "{}: not a JSON definition object: {e}",
            path.display()
        ))
    })?;
    Definition::from_json(&value).map_err(|e| CliError::Failed(format!("{}: {e}", path.display())))
}

pub fn run(options: &Options, now: DateTime<Utc>) -> Result<(), CliError> {
    let def = read_definition(&options.file)?;
    let from = options
        .from
        .unwrap_or_else(|| Timestamp::from_datetime(now));
    let entries = preview(&def.schedule, from, options.count)
        .map_err(|e| CliError::Failed(format!("{}: {e}", options.file.display())))?;
    if options.json {
        let rows: Vec<Value> = entries.iter().map(json_row).collect();
        println!("{}", Value::Array(rows));
        return Ok(());
    }
    println!(
        "{}/{}: {}{}",
        def.tenant_id,
        def.device_workflow_step_id,
        describe(&def.schedule.rule),
        if def.enabled {
            ""
        } else {
            " (disabled: nothing fires until it is enabled)"
        }
    );
    println!("next {} from {from}:", options.count);
    println!("  {:>4}  {:<25}  {:<20}  note", "#", "local", "utc");
    for (i, e) in entries.iter().enumerate() {
        println!(
            "  {:>4}  {:<25}  {:<20}  {}",
            i + 1,
            local_text(e),
            e.utc
                .map_or_else(|| "(dropped)".to_owned(), |t| t.to_string()),
            e.note
        );
    }
    if entries.len() < options.count {
        println!(
            "  the rule has no more occurrences after these {}",
            entries.len()
        );
    }
    Ok(())
}

fn local_text(e: &PreviewEntry) -> String {
    e.local.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// One entry as DESIGN.md §6 fixes it: `utc` (or null), `local`, `note`.
fn json_row(e: &PreviewEntry) -> Value {
    json!({
        "utc": e.utc.map(|t| t.to_string()),
        "local": local_text(e),
        "note": e.note,
    })
}

fn describe(rule: &Schedule) -> String {
    let v = serde_json::to_value(rule).unwrap_or(Value::Null);
    let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    match rule {
        Schedule::Once { .. } => format!("once at {}", field("at")),
        Schedule::Rate { .. } => format!("every {} from {}", field("every"), field("start")),
        Schedule::Cron { .. } => format!("cron {:?} in {}", field("expression"), field("timezone")),
        Schedule::Rrule { .. } => format!(
            "rrule {:?} from {} in {}",
            field("rule"),
            field("dtstart"),
            field("timezone")
        ),
    }
}
