//! The scheduler at size on the throughput-limited twin (see `integration_tests::sim::scale`).
//! The small cases run in CI and assert correctness; the million-step cases are ignored and
//! print their figures:
//!
//! `cargo test -p integration-tests --test suite sim_scale:: -- --ignored --nocapture`
//! (`SCALE_STEPS`, `SCALE_TENANTS`, `SCALE_SHARDS`, `SEND_CONCURRENCY` change the size).

use std::time::Duration;

use integration_tests::sim::scale::{ScaleConfig, ScaleReport, run_scale};

fn assert_complete(r: &ScaleReport) {
    assert_eq!(r.sent, r.steps, "every step sent:\n{}", r.text());
    assert_eq!(r.duplicates, 0, "no step sent twice:\n{}", r.text());
    assert_eq!((r.unsent, r.missed), (0, 0), "{}", r.text());
}

#[test]
fn sim_scale_many_tenants_send_every_step_once_on_time_for_one_write_each() {
    let mut config = ScaleConfig::from_env(5_000, 50).unwrap();
    config.steps = 5_000;
    config.tenants = 50;
    let r = run_scale(&config);
    println!("{}", r.text());
    assert_complete(&r);
    assert_eq!(r.late, 0, "{}", r.text());
    // One conditional UpdateItem per dispatched step (it was a lease and a QUEUED write).
    assert_eq!(r.table_writes, r.sent as u64, "{}", r.text());
    assert_eq!(r.writes_per_dispatched_step(), 1.0);
    // Each write moves the item from a PENDING shard to a QUEUED one: two index writes.
    assert_eq!(r.index_writes, 2 * r.sent as u64, "{}", r.text());
    assert_eq!(r.continuations, 0, "{}", r.text());
}

#[test]
fn sim_scale_a_run_out_of_time_hands_off_and_continuations_finish_with_no_loss_or_duplicate() {
    let mut config = ScaleConfig::from_env(5_000, 50).unwrap();
    config.steps = 5_000;
    config.tenants = 50;
    // About 950 steps/s per invocation and 1.6 s of work each: the run that meets the
    // window's 4,000 steps cannot send them all.
    config.send_concurrency = 2;
    config.limits.timeout = Duration::from_secs(2);
    let r = run_scale(&config);
    println!("{}", r.text());
    assert_complete(&r);
    assert!(r.continuations > 0, "the run handed off:\n{}", r.text());
    assert_eq!(
        r.late,
        0,
        "continuations finish in the window:\n{}",
        r.text()
    );
}

/// One tenant's day is one partition key (1,000 WCU/s): the run's 160 writes in flight
/// are throttled. What stays throttled after its retries goes to a continuation a second
/// later, not to the next window five minutes later.
#[test]
fn sim_scale_one_tenant_throttled_writes_go_to_continuations_not_the_next_window() {
    let mut config = ScaleConfig::from_env(5_000, 1).unwrap();
    config.steps = 5_000;
    config.tenants = 1;
    let r = run_scale(&config);
    println!("{}", r.text());
    assert_complete(&r);
    assert!(
        r.table_throttles > 0,
        "the partition limit binds:\n{}",
        r.text()
    );
    assert!(r.continuations > 0, "{}", r.text());
    assert_eq!(r.late, 0, "{}", r.text());
}

#[test]
#[ignore = "a million steps: run on demand, prints figures"]
fn sim_scale_one_million_steps_many_small_tenants() {
    let config = ScaleConfig::from_env(1_000_000, 10_000).unwrap();
    let started = std::time::Instant::now();
    let r = run_scale(&config);
    println!(
        "many small tenants, {config:?}\n{}\nwall time {:.1?}",
        r.text(),
        started.elapsed()
    );
    assert_eq!(r.duplicates, 0, "{}", r.text());
}

#[test]
#[ignore = "a million steps: run on demand, prints figures"]
fn sim_scale_one_million_steps_one_huge_tenant() {
    let config = ScaleConfig::from_env(1_000_000, 1).unwrap();
    let started = std::time::Instant::now();
    let r = run_scale(&config);
    println!(
        "one huge tenant, {config:?}\n{}\nwall time {:.1?}",
        r.text(),
        started.elapsed()
    );
    assert_eq!(r.duplicates, 0, "{}", r.text());
}
