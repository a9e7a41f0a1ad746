//! Every integration test of the crate, in one test binary: each file next to this one is
//! a module here, so the AWS SDK and the handlers are compiled and linked into one test
//! executable instead of one per file, and the emulator cases overlap with the rest.
//!
//! One file's tests: `cargo test -p integration-tests --test suite e2e_emulator::`.
//! A new test file is a new `mod` line below, or its own `[[test]]` in `Cargo.toml` as
//! `e2e_emulator` is (`every_test_file_is_built` fails until it is: `Cargo.toml` sets
//! `autotests = false`, so Cargo would not build it on its own).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod adapter_usage;
mod bad_input;
mod chaos_memory;
mod contract;
mod data_integrity;
mod dynamo_batch_get;
mod executor_batch_memory;
mod executor_memory;
mod flow_memory;
mod lateness_emulator;
mod modes_emulator;
mod modes_memory;
mod redrive_emulator;
mod registry;
mod retry_layer;
mod safety_net_emulator;
mod safety_net_memory;
mod scan_fanout;
mod scan_reliability;
mod sim;
mod sim_scale;
mod sync_emulator;
mod sync_memory;
mod template;

#[test]
fn every_test_file_is_built() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests");
    let suite = include_str!("suite.rs");
    let manifest = include_str!("../Cargo.toml");
    let mut files = 0;
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.extension().is_some_and(|e| e == "rs") && stem != "suite" {
            files += 1;
            if !suite.contains(&format!("\nmod {stem};\n"))
                && !manifest.contains(&format!("path = \"tests/{stem}.rs\""))
            {
                missing.push(stem);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "test files neither in tests/tests/suite.rs (`mod NAME;`) nor a [[test]] of tests/Cargo.toml: {missing:?}"
    );
    assert!(files >= 11, "read {files} test files from {dir}");
}
