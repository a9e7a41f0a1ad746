//! `wfs`: the operator CLI of the workflow step scheduler.
//!
//! ```text
//! wfs demo [--definitions FILE] [--speed N] [--duration SPAN]
//! wfs setup-local [--prefix NAME]
//! wfs definitions put FILE
//! ```

mod demo;
mod local;

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
  help    show this text
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
            Ok(options) => demo::run(options).await,
            Err(e) => Err(e),
        },
        Some("setup-local") => local::setup(&args[1..]).await,
        Some("definitions") if args.get(1).map(String::as_str) == Some("put") => {
            local::put_definitions(&args[2..]).await
        }
        Some("help") => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}")),
        None => Err(USAGE.to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("wfs: {message}");
            ExitCode::from(2)
        }
    }
}
