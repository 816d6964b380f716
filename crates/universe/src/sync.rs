//! The peer circuit's mutex, swapped for shuttle's in a `--cfg shuttle` build so the model
//! checker schedules around it. See docs/ARCHITECTURE.md (Testing).

#[cfg(shuttle)]
pub(crate) use shuttle::sync::{Mutex, MutexGuard};
#[cfg(not(shuttle))]
pub(crate) use std::sync::{Mutex, MutexGuard};

/// Runs `test` under shuttle's random scheduler, then under its PCT scheduler (depth 3),
/// each for `GALAXYCACHE_SHUTTLE_ITERATIONS` schedules (default 1,000). Only in a
/// `--cfg shuttle` build, for this workspace's model-checked tests.
#[cfg(shuttle)]
pub fn explore(test: impl Fn() + Send + Sync + Clone + 'static) {
    let iterations = std::env::var("GALAXYCACHE_SHUTTLE_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000);
    shuttle::check_random(test.clone(), iterations);
    shuttle::check_pct(test, iterations, 3);
}
