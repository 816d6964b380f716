//! The simulation over many seeds: every run's history passes the checker.
//!
//! `SIM_SEED=N cargo test -p galaxycache-sim` reruns one seed and prints its history;
//! `SIM_SEEDS=N` sets how many seeds the sweep runs (default 2,000, on two threads).

use std::collections::BTreeMap;
use std::time::Instant;

use galaxycache_sim::sim::{Report, Settings, run};

/// Seeds that found bugs, fixed since (see `seeds_that_found_bugs_pass`).
const FOUND_BUGS: [u64; 4] = [1, 391, 1552, 1652];

/// Operations per node in a sweep's run.
const OPS_PER_NODE: usize = 40;

fn env(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

fn describe(report: &Report) -> String {
    let mut text = format!(
        "seed {} ({} nodes) failed: {:?}\nfaults: {}\n",
        report.seed,
        report.nodes,
        report.failure,
        report.timeline.join(", ")
    );
    for v in &report.violations {
        text.push_str(&v.to_string());
    }
    text.push_str(&format!(
        "rerun: SIM_SEED={} cargo test -p galaxycache-sim --test simulation\n",
        report.seed
    ));
    text
}

#[test]
fn a_quiet_cluster_passes() {
    let report = run(1, Settings::quiet(OPS_PER_NODE));
    assert!(report.passed(), "{}", describe(&report));
    assert!(report.faults.is_empty());
    assert!(report.history.operations() >= 3 * OPS_PER_NODE as u64);
}

/// The same seed runs the same way: the whole history, event by event.
#[test]
fn a_seed_reproduces_its_history() {
    for seed in [7, 42] {
        let first = run(seed, Settings::faults(OPS_PER_NODE));
        let second = run(seed, Settings::faults(OPS_PER_NODE));
        assert_eq!(first.faults, second.faults);
        assert_eq!(
            first.history.events(),
            second.history.events(),
            "seed {seed}"
        );
    }
}

#[test]
fn seeds_with_faults_pass() {
    let started = Instant::now();
    let (first, seeds) = match env("SIM_SEED") {
        Some(seed) => (seed, 1),
        None => (0, env("SIM_SEEDS").unwrap_or(2_000)),
    };
    // Two threads, each its own seeds (turmoil's world is per thread).
    let halves = [(first, seeds / 2), (first + seeds / 2, seeds - seeds / 2)];
    let results: Vec<(u64, BTreeMap<&'static str, u64>, Vec<String>)> = std::thread::scope(|s| {
        let runs: Vec<_> = halves
            .iter()
            .map(|&(from, count)| {
                s.spawn(move || {
                    let mut ops = 0;
                    let mut kinds = BTreeMap::new();
                    let mut failed = Vec::new();
                    for seed in from..from + count {
                        let report = run(seed, Settings::faults(OPS_PER_NODE));
                        ops += report.history.operations();
                        for f in &report.faults {
                            *kinds.entry(f.kind()).or_insert(0) += 1;
                        }
                        if seeds == 1 {
                            for e in report.history.events() {
                                println!("{e}");
                            }
                        }
                        if !report.passed() {
                            failed.push(describe(&report));
                        }
                    }
                    (ops, kinds, failed)
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let ops: u64 = results.iter().map(|r| r.0).sum();
    let mut kinds: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, k, _) in &results {
        for (kind, n) in k {
            *kinds.entry(kind).or_insert(0) += n;
        }
    }
    let failed: Vec<&String> = results.iter().flat_map(|r| &r.2).collect();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "sim: {seeds} seeds, {ops} ops in {secs:.1}s ({:.0} seeds/min, {:.0} ops/min); faults {kinds:?}",
        seeds as f64 * 60.0 / secs,
        ops as f64 * 60.0 / secs
    );
    for kind in galaxycache_sim::faults::KINDS {
        assert!(
            seeds < 100 || kinds.contains_key(kind),
            "no {kind} fault drawn"
        );
    }
    assert!(
        failed.is_empty(),
        "{} failing seeds:\n{}",
        failed.len(),
        failed.iter().map(|s| s.as_str()).collect::<String>()
    );
}

/// Regressions, each a seed that failed before its fix:
/// - 1 and 1552: an owner whose backend outlasted the peer timeout opened its askers'
///   circuits, and a remove then skipped it although it was reachable (writes were refused
///   by the open circuit); every node served the old value until the background retry.
/// - 391 and 1652: a flush reached a non-owner before a key's owner; the non-owner fetched
///   the old value from the owner meanwhile and kept it after the flush completed (a flush
///   now takes a second round once every peer has applied it).
#[test]
fn seeds_that_found_bugs_pass() {
    let failed: Vec<String> = FOUND_BUGS
        .iter()
        .map(|&seed| run(seed, Settings::faults(OPS_PER_NODE)))
        .filter(|report| !report.passed())
        .map(|report| describe(&report))
        .collect();
    assert!(failed.is_empty(), "{}", failed.concat());
}
