//! The simulation over many seeds: every run's history passes the checker.
//!
//! `SIM_SEED=N cargo test -p galaxycache-sim` reruns one seed (and prints its history);
//! `SIM_SEEDS=N` sets how many seeds the long test runs.

use std::time::Instant;

use galaxycache_sim::sim::{Settings, run};

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

#[test]
fn a_quiet_cluster_passes() {
    let report = run(1, Settings::quiet(40));
    assert!(
        report.passed(),
        "{:?} {:#?}",
        report.failure,
        report
            .violations
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    );
    assert!(report.history.operations() >= 120);
    println!(
        "ops {} events {}",
        report.history.operations(),
        report.history.events().len()
    );
}

#[test]
fn seeds_with_faults_pass() {
    let started = Instant::now();
    let first = env("SIM_SEED").unwrap_or(0);
    let seeds = if env("SIM_SEED").is_some() {
        1
    } else {
        env("SIM_SEEDS").unwrap_or(50)
    };
    let mut ops = 0;
    let mut failed = Vec::new();
    for seed in first..first + seeds {
        let report = run(seed, Settings::faults(40));
        ops += report.history.operations();
        if seeds == 1 {
            for e in report.history.events() {
                println!("{e}");
            }
            println!("{:?}", report.conditions);
        }
        if !report.passed() {
            eprintln!(
                "seed {seed} failed: {:?} faults {:?}",
                report.failure, report.faults
            );
            for v in &report.violations {
                eprintln!("{v}");
            }
            failed.push(seed);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{seeds} seeds, {ops} ops in {secs:.1}s: {:.0} seeds/min",
        seeds as f64 * 60.0 / secs
    );
    assert!(failed.is_empty(), "failing seeds {failed:?}");
}
