//! `wfs demo` as a user runs it: the binary, its output, its exit code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn wfs(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_wfs"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_sample_demo_fires_steps_on_time_and_summarizes() {
    let (ok, stdout, stderr) = wfs(&["demo", "--speed", "0", "--duration", "3m"]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("definition #10 rejected: invalid schedule.timezone \"Asia/Hanoi_City\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 for an inactive device (skipped when due)"),
        "{stdout}"
    );
    let fired: Vec<_> = stdout.lines().filter(|l| l.contains(" ms  {")).collect();
    let times = |step: &str| {
        fired
            .iter()
            .filter(|l| l.contains(&format!("acme/{step} ")))
            .count()
    };
    // open-valve at +20 s, read-meter at +30 s, +90 s, +150 s, flush-pump at +90 s,
    // close-valve at +140 s; the Berlin cron fires on the one even minute of its clock in
    // [+60 s, +180 s); the New York RRULE at +45 s and +165 s.
    for (step, n) in [
        ("open-valve-1", 1),
        ("read-meter", 3),
        ("flush-pump", 1),
        ("close-valve-1", 1),
        ("sprinkle", 1),
        ("poll-gateway", 2),
        ("retired-sensor", 0),
        ("paused", 0),
    ] {
        assert_eq!(times(step), n, "{step}: {stdout}");
    }
    assert!(
        fired.iter().all(|l| l.contains("       0 ms")),
        "lateness on the simulated clock is exact: {stdout}"
    );
    assert!(
        stdout.contains(&format!("EXECUTED    {:>6}", fired.len())),
        "{stdout}"
    );
}

#[test]
fn definitions_from_a_file_and_errors_that_name_the_problem() {
    let dir = std::env::temp_dir().join(format!("wfs-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("defs.jsonl");
    let at = (chrono::Utc::now() + chrono::Duration::seconds(30))
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    std::fs::write(
        &file,
        format!(
            "{{\"tenant_id\":\"t1\",\"device_workflow_step_id\":\"s1\",\"workflow_id\":\"w\",\"device_id\":\"d\",\"schedule\":{{\"type\":\"once\",\"at\":\"{at}\"}},\"payload\":{{\"go\":true}}}}\n\
             {{\"tenant_id\":\"t1#x\",\"device_workflow_step_id\":\"s2\",\"workflow_id\":\"w\",\"device_id\":\"d\",\"schedule\":{{\"type\":\"once\",\"at\":\"{at}\"}}}}\n"
        ),
    )
    .unwrap();
    let (ok, stdout, stderr) = wfs(&[
        "demo",
        "--speed",
        "0",
        "--duration",
        "2m",
        "--definitions",
        file.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("definition #2 rejected: invalid tenant_id \"t1#x\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("t1/s1") && stdout.contains("{\"go\":true}"),
        "{stdout}"
    );

    let (ok, _, stderr) = wfs(&["demo", "--definitions", "/nonexistent/defs.json"]);
    assert!(!ok);
    assert!(
        stderr.contains("cannot read /nonexistent/defs.json"),
        "{stderr}"
    );
    let (ok, _, stderr) = wfs(&["demo", "--speed", "fast"]);
    assert!(
        !ok && stderr.contains("invalid value 'fast' for '--speed <N>'"),
        "{stderr}"
    );
    let (ok, _, stderr) = wfs(&["launch"]);
    assert!(
        !ok && stderr.contains("unrecognized subcommand 'launch'"),
        "{stderr}"
    );
}
