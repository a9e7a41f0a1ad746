//! `wfs`: wiring only; the commands live in the `wfs_cli` library.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    wfs_cli::cli::main(std::env::args_os()).await
}
