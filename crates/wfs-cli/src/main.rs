//! `wfs`: the operator CLI of the workflow step scheduler.
//!
//! ```text
//! wfs demo [--definitions FILE] [--speed N] [--duration SPAN]
//! wfs setup-local [--prefix NAME]
//! wfs definitions put FILE
//! wfs preview FILE [--count N] [--from TIME] [--json]
//! wfs dlq redrive [--dry-run] [--max N] [--dlq-url URL] [--queue-url URL] [--endpoint-url URL]
//! ```
//!
//! Exit codes: 0 ok, 1 a finding or a runtime failure, 2 a usage error.

mod demo;
mod dlq;
mod local;
mod preview;

use std::process::ExitCode;

const USAGE: &str = r#"usage: wfs <command> [options]

commands:
  demo    run the whole flow (scanner, scheduler, executor) on the embedded backend and
          print each trigger as it fires
          --definitions FILE  definitions to load (a JSON array, or one object per line);
                              without it, a built-in sample set
          --speed N           simulated seconds per real second (default 60; 1 = real
                              time; 0 = as fast as possible)
          --duration SPAN     how much simulated time to run, like 10m or 2h (default 10m)
  setup-local [--prefix NAME]
          create the tables and queues on the emulator AWS_ENDPOINT_URL names, and
          print the variables the functions read (eval "$(wfs setup-local)")
  definitions put FILE
          validate and write definitions to DEFINITIONS_TABLE; each rejection names
          the definition, the field and the value
  preview FILE [--count N] [--from TIME] [--json]
          the next N occurrences (default 10) of the definition in FILE (one JSON
          object; - reads standard input) from TIME (default now), in local time and
          UTC, marking those the daylight-saving policy moved or dropped; --json
          prints a JSON array of {utc, local, note}
  dlq redrive [--dry-run] [--max N] [--dlq-url URL] [--queue-url URL] [--endpoint-url URL]
          send each message of the execution DLQ back to the execution queue, then
          delete it from the DLQ; the executor runs each FAILED step again under the
          same execution id. Safe to interrupt and re-run (a message sent twice is
          dropped by the executor). --dry-run lists what would be redriven (listed
          messages stay hidden in the DLQ for its visibility timeout); --max N stops
          after N messages. URLs default to EXECUTION_DLQ_URL, EXECUTION_QUEUE_URL and
          AWS_ENDPOINT_URL. Exit 1 when a message is left in the DLQ (not an execution
          message, or its send failed)
  help    show this text

exit codes: 0 ok, 1 a finding or a runtime failure, 2 a usage error
"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let result = match args.first().map(String::as_str) {
        Some("demo") => match demo::Options::parse(&args[1..]) {
            Ok(options) => demo::run(options).await.map_err(CliError::Failed),
            Err(e) => Err(CliError::Usage(e)),
        },
        Some("setup-local") => local::setup(&args[1..]).await.map_err(CliError::Failed),
        Some("definitions") if args.get(1).map(String::as_str) == Some("put") => {
            local::put_definitions(&args[2..])
                .await
                .map_err(CliError::Failed)
        }
        Some("dlq") => match dlq::Options::parse(&args[1..], |k| std::env::var(k).ok()) {
            Ok(options) => dlq::run(&options).await,
            Err(e) => Err(e),
        },
        Some("preview") => preview::Options::parse(&args[1..])
            .and_then(|options| preview::run(&options, chrono::Utc::now())),
        Some("help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(CliError::Usage(format!(
            "unknown command {other:?}\n\n{USAGE}"
        ))),
        None => Err(CliError::Usage(USAGE.to_owned())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::Usage(message)) => {
            eprintln!("wfs: {message}");
            ExitCode::from(2)
        }
        Err(CliError::Failed(message)) => {
            eprintln!("wfs: {message}");
            ExitCode::from(1)
        }
    }
}

/// Why a command did not succeed, and so its exit code.
#[derive(Debug)]
pub enum CliError {
    /// The command line itself is wrong (exit 2).
    Usage(String),
    /// A finding, bad input data or a runtime failure (exit 1).
    Failed(String),
}
