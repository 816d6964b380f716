//! A galaxy's metrics through the `metrics` facade: counters and gauges published from a
//! snapshot of [`Stats`] (the hit path records nothing here), latency histograms recorded
//! as the slow events end. docs/ARCHITECTURE.md lists every name, kind and label.

use std::sync::Arc;
use std::time::Duration;

use metrics::{counter, gauge, histogram};

use crate::Stats;

/// Set every counter and gauge of galaxy `name` from `stats` (counters to their absolute
/// values), with its byte budget.
pub(crate) fn publish(name: &Arc<str>, stats: &Stats, budget_bytes: u64) {
    let g = || Arc::clone(name);
    for (outcome, n) in [
        ("main_hit", stats.main_hits),
        ("hot_hit", stats.hot_hits),
        ("not_found_hit", stats.not_found_hits),
        ("miss", stats.misses),
    ] {
        counter!("galaxycache_gets_total", "galaxy" => g(), "outcome" => outcome).absolute(n);
    }
    for (tier, bytes, entries, evictions) in [
        (
            "main",
            stats.main_bytes,
            stats.main_entries,
            stats.main_evictions,
        ),
        (
            "hot",
            stats.hot_bytes,
            stats.hot_entries,
            stats.hot_evictions,
        ),
    ] {
        gauge!("galaxycache_cache_bytes", "galaxy" => g(), "tier" => tier).set(bytes as f64);
        gauge!("galaxycache_cache_entries", "galaxy" => g(), "tier" => tier).set(entries as f64);
        counter!("galaxycache_evictions_total", "galaxy" => g(), "tier" => tier)
            .absolute(evictions);
    }
    gauge!("galaxycache_budget_bytes", "galaxy" => g()).set(budget_bytes as f64);
    gauge!("galaxycache_pending_retries", "galaxy" => g()).set(stats.pending_retries as f64);
    for (name, n) in counters(stats) {
        counter!(name, "galaxy" => g()).absolute(n);
    }
}

/// The counters of `stats` that have a family of their own, by metric name.
fn counters(s: &Stats) -> [(&'static str, u64); 25] {
    [
        ("galaxycache_backend_loads_total", s.backend_loads),
        ("galaxycache_backend_errors_total", s.backend_errors),
        ("galaxycache_backend_batches_total", s.backend_batches),
        ("galaxycache_peer_loads_total", s.peer_loads),
        ("galaxycache_peer_errors_total", s.peer_errors),
        ("galaxycache_not_found_total", s.not_found),
        ("galaxycache_coalesced_waits_total", s.coalesced_waits),
        ("galaxycache_server_requests_total", s.server_requests),
        ("galaxycache_local_fallbacks_total", s.local_fallbacks),
        ("galaxycache_promotions_total", s.promotions),
        ("galaxycache_removes_total", s.removes),
        ("galaxycache_sets_total", s.sets),
        ("galaxycache_flushes_total", s.flushes),
        ("galaxycache_fenced_stores_total", s.fenced_stores),
        ("galaxycache_broadcast_failures_total", s.broadcast_failures),
        ("galaxycache_broadcast_retries_total", s.broadcast_retries),
        ("galaxycache_retries_dropped_total", s.retries_dropped),
        ("galaxycache_refreshes_total", s.refreshes),
        ("galaxycache_stale_served_total", s.stale_served),
        ("galaxycache_soft_timeouts_total", s.soft_timeouts),
        ("galaxycache_preloaded_total", s.preloaded),
        ("galaxycache_not_kept_total", s.not_kept),
        ("galaxycache_handoff_hits_total", s.handoff_hits),
        ("galaxycache_handoff_misses_total", s.handoff_misses),
        ("galaxycache_too_large_total", s.too_large),
    ]
}

/// A backend load of galaxy `name` ended with `outcome` after `took`.
pub(crate) fn backend_load(name: &Arc<str>, outcome: &'static str, took: Duration) {
    histogram!(
        "galaxycache_backend_load_duration_seconds",
        "galaxy" => Arc::clone(name),
        "outcome" => outcome
    )
    .record(took);
}

/// A fetch of a key of galaxy `name` from `peer` ended with `outcome` after `took`.
pub(crate) fn peer_fetch(name: &Arc<str>, peer: &str, outcome: &'static str, took: Duration) {
    histogram!(
        "galaxycache_peer_fetch_duration_seconds",
        "galaxy" => Arc::clone(name),
        "peer" => peer.to_owned(),
        "outcome" => outcome
    )
    .record(took);
}

/// A get of galaxy `name` that missed here ended with `outcome` after `took`.
pub(crate) fn miss(name: &Arc<str>, outcome: &'static str, took: Duration) {
    histogram!(
        "galaxycache_miss_duration_seconds",
        "galaxy" => Arc::clone(name),
        "outcome" => outcome
    )
    .record(took);
}
