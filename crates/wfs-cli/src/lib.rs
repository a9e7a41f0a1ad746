//! `wfs`: the operator CLI of the workflow step scheduler, as a library so every command's
//! logic runs in tests on the embedded twin as well as against AWS.
//!
//! ```text
//! cli.rs          the clap command tree, the AWS options, dispatch and exit codes
//! output.rs       tables, JSON, the progress bar (stderr, only on a terminal)
//! aws.rs          the SDK config (standard credential chain) and the AWS adapters
//! definitions.rs  definitions put | get | list | disable | delete
//! plan.rs         one tenant's day        explain.rs  one occurrence's story
//! status.rs       counts, depths, oldest  export.rs   JSON lines of occurrences
//! backfill.rs     the scanner's range mode, in process
//! dlq.rs          dlq list | redrive      demo.rs, local.rs, preview.rs: local runs
//! cost.rs         units, requests and Lambda time per executed step, priced
//! ```
//!
//! Exit codes: 0 ok, 1 a finding or a runtime failure, 2 a usage error.

pub mod aws;
pub mod backfill;
pub mod cli;
pub mod cost;
pub mod definitions;
pub mod demo;
pub mod dlq;
pub mod explain;
pub mod export;
pub mod local;
pub mod output;
pub mod plan;
pub mod preview;
pub mod reconcile;
pub mod status;
pub mod tenants;

/// Why a command did not succeed, and so its exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// The command line itself is wrong (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A finding, bad input data or a runtime failure (exit 1).
    #[error("{0}")]
    Failed(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            CliError::Failed(_) => 1,
        }
    }
}

/// A store error with its whole chain, as a runtime failure naming what was being done.
pub(crate) fn failed(doing: &str, e: &(dyn std::error::Error + 'static)) -> CliError {
    CliError::Failed(format!("{doing}: {}", schedule_core::error::chain(e)))
}
