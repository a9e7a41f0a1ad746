//! The deterministic simulation (see `integration_tests::sim`): the whole flow on the
//! in-memory twin under a virtual clock, faults from a seed, guarantees checked at the end.
//!
//! `SIM_SEEDS=500 SIM_OCCURRENCES=1000 cargo test --release -p integration-tests -- sim`;
//! `SIM_SEED=<n>` replays one seed exactly; `SIM_FAULTS=all,-crash` switches faults.

use integration_tests::sim::{SimConfig, run_all, run_seed, summary};

#[test]
fn sim_every_seed_keeps_the_guarantees() {
    let config = SimConfig::from_env().unwrap();
    let started = std::time::Instant::now();
    let reports = run_all(&config);
    let text = summary(&config, &reports);
    println!("{text}  wall time: {:.1?}", started.elapsed());
    assert!(
        reports.iter().map(|r| r.occurrences).sum::<usize>() > 0,
        "the simulation checked no occurrence"
    );
    assert!(
        reports.iter().all(|r| r.violations.is_empty()),
        "guarantees broken (replay one with SIM_SEED=<n>):\n{text}"
    );
}

#[test]
fn sim_one_seed_replays_exactly() {
    let mut config = SimConfig::from_env().unwrap();
    config.occurrences = config.occurrences.min(200);
    let seed = config.seeds.first().copied().unwrap_or(1);
    let first = run_seed(seed, &config);
    let second = run_seed(seed, &config);
    assert!(first.items > 0 && first.triggers > 0, "{first:?}");
    assert_eq!(
        (first.digest, &first.faults, first.violations.len()),
        (second.digest, &second.faults, second.violations.len()),
        "seed {seed} did not replay exactly"
    );
}
