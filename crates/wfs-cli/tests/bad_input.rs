//! The bad-input corpus (`tests/corpus/definitions.jsonl`) through the command line: each
//! definition is refused by `wfs preview` with exit code 1 and the whole error on
//! standard error, nothing on standard output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/src/corpus.rs"]
mod corpus;

use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn wfs_preview_refuses_every_bad_definition_naming_field_and_value() {
    let cases = corpus::bad_definitions();
    assert!(cases.len() >= 40);
    for case in cases {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wfs"))
            .args(["preview", "-", "--from", "2026-11-26T00:00:00Z"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(case.input.to_string().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", case.case);
        assert!(
            stderr.contains(&case.error),
            "{}: stderr {stderr:?} lacks {:?}",
            case.case,
            case.error
        );
        assert!(
            out.stdout.is_empty(),
            "{}: printed {:?}",
            case.case,
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
