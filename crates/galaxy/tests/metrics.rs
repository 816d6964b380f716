//! Metrics through the `metrics` facade: after a scripted run of a 3-node cluster, a
//! debugging recorder sees every metric of docs/ARCHITECTURE.md with its kind and labels,
//! and the counters published from the snapshot say what the script did.
//!
//! The recorder is this test binary's global one, so this file holds one test.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Cluster, GALAXY, Loads};
use galaxycache_galaxy::{Error, Value};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use metrics_util::{CompositeKey, MetricKind};

/// Every metric the library publishes: name, kind, label names.
const EXPECTED: &[(&str, MetricKind, &[&str])] = &[
    (
        "galaxycache_gets_total",
        MetricKind::Counter,
        &["galaxy", "outcome"],
    ),
    (
        "galaxycache_cache_bytes",
        MetricKind::Gauge,
        &["galaxy", "tier"],
    ),
    (
        "galaxycache_cache_entries",
        MetricKind::Gauge,
        &["galaxy", "tier"],
    ),
    (
        "galaxycache_evictions_total",
        MetricKind::Counter,
        &["galaxy", "tier"],
    ),
    ("galaxycache_budget_bytes", MetricKind::Gauge, &["galaxy"]),
    (
        "galaxycache_pending_retries",
        MetricKind::Gauge,
        &["galaxy"],
    ),
    (
        "galaxycache_backend_loads_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_backend_errors_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_backend_batches_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_peer_loads_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_peer_errors_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_not_found_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_coalesced_waits_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_server_requests_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_local_fallbacks_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_promotions_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_removes_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    ("galaxycache_sets_total", MetricKind::Counter, &["galaxy"]),
    (
        "galaxycache_flushes_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_fenced_stores_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_broadcast_failures_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_broadcast_retries_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_retries_dropped_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_refreshes_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_stale_served_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_soft_timeouts_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_preloaded_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_not_kept_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_handoff_hits_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_handoff_misses_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    (
        "galaxycache_too_large_total",
        MetricKind::Counter,
        &["galaxy"],
    ),
    ("galaxycache_peer_up", MetricKind::Gauge, &["peer"]),
    (
        "galaxycache_peer_circuit_open",
        MetricKind::Gauge,
        &["peer"],
    ),
    ("galaxycache_peer_ring_share", MetricKind::Gauge, &["peer"]),
    (
        "galaxycache_peer_queued_fetches",
        MetricKind::Gauge,
        &["peer"],
    ),
    (
        "galaxycache_peer_fetch_requests_total",
        MetricKind::Counter,
        &["peer"],
    ),
    (
        "galaxycache_peer_fetched_keys_total",
        MetricKind::Counter,
        &["peer"],
    ),
    (
        "galaxycache_backend_load_duration_seconds",
        MetricKind::Histogram,
        &["galaxy", "outcome"],
    ),
    (
        "galaxycache_peer_fetch_duration_seconds",
        MetricKind::Histogram,
        &["galaxy", "outcome", "peer"],
    ),
    (
        "galaxycache_miss_duration_seconds",
        MetricKind::Histogram,
        &["galaxy", "outcome"],
    ),
];

type Seen = BTreeMap<(String, Vec<(String, String)>), (MetricKind, DebugValue)>;

fn labels(key: &CompositeKey) -> Vec<(String, String)> {
    let mut labels: Vec<_> = key
        .key()
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    labels.sort();
    labels
}

fn counter(seen: &Seen, name: &str, labels: &[(&str, &str)]) -> u64 {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    match seen.get(&(name.to_owned(), labels.clone())) {
        Some((MetricKind::Counter, DebugValue::Counter(n))) => *n,
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_sees_every_metric_with_its_kind_and_labels() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().unwrap();

    let loads = Loads::default();
    let l = loads.clone();
    let backend = move |key: String| {
        l.record(&key);
        async move {
            match key.as_str() {
                k if k.starts_with("missing") => Ok(None),
                k => Ok::<_, Error>(Some(Value::new(format!("value-of-{k}")))),
            }
        }
    };
    let cluster = Cluster::with_backend(
        3,
        backend,
        |b| {
            b.not_found_ttl(Duration::from_secs(60))
                .promoter(|_: &str, _: &galaxycache_promoter::Stats| true)
        },
        loads,
    );
    let node0 = &cluster.nodes[0];
    let g = &node0.galaxy;
    let mine = cluster.key_owned_by(0, "mine");
    let theirs = cluster.key_owned_by(1, "theirs");
    let missing = cluster.key_owned_by(0, "missing");
    g.get(&mine).await.unwrap(); // miss, backend load
    g.get(&mine).await.unwrap(); // main hit
    g.get(&theirs).await.unwrap(); // miss, peer fetch, promoted
    g.get(&theirs).await.unwrap(); // hot hit
    assert!(g.get(&missing).await.unwrap_err().is_not_found()); // miss, cached
    assert!(g.get(&missing).await.unwrap_err().is_not_found()); // not-found hit
    node0.universe.publish_metrics();

    let seen: Seen = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let name = key.key().name().to_owned();
            ((name, labels(&key)), (key.kind(), value))
        })
        .collect();
    for (name, kind, label_names) in EXPECTED {
        let found: Vec<_> = seen
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|((_, labels), (k, _))| (labels, k))
            .collect();
        assert!(!found.is_empty(), "{name} was not recorded");
        for (labels, k) in found {
            assert_eq!(k, kind, "{name} {labels:?}");
            let names: Vec<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(&names, label_names, "{name}");
        }
    }
    let known: BTreeSet<&str> = EXPECTED.iter().map(|(n, ..)| *n).collect();
    for (name, _) in seen.keys() {
        assert!(known.contains(name.as_str()), "{name} is not documented");
    }

    let gets = |outcome| {
        counter(
            &seen,
            "galaxycache_gets_total",
            &[("galaxy", GALAXY), ("outcome", outcome)],
        )
    };
    assert_eq!(
        [
            gets("main_hit"),
            gets("hot_hit"),
            gets("not_found_hit"),
            gets("miss")
        ],
        [1, 1, 1, 3]
    );
    let g0 = [("galaxy", GALAXY)];
    assert_eq!(counter(&seen, "galaxycache_backend_loads_total", &g0), 2);
    assert_eq!(counter(&seen, "galaxycache_peer_loads_total", &g0), 1);
    assert_eq!(counter(&seen, "galaxycache_promotions_total", &g0), 1);
    let peer1 = [("peer", cluster.nodes[1].url.as_str())];
    assert_eq!(
        counter(&seen, "galaxycache_peer_fetched_keys_total", &peer1),
        1
    );
    let key = (
        "galaxycache_cache_entries".to_owned(),
        vec![
            ("galaxy".to_owned(), GALAXY.to_owned()),
            ("tier".to_owned(), "hot".to_owned()),
        ],
    );
    assert!(matches!(seen.get(&key), Some((_, DebugValue::Gauge(v))) if v.0 == 1.0));
    // The peer fetch, labelled by the peer it went to and how it ended.
    let fetch = (
        "galaxycache_peer_fetch_duration_seconds".to_owned(),
        vec![
            ("galaxy".to_owned(), GALAXY.to_owned()),
            ("outcome".to_owned(), "ok".to_owned()),
            ("peer".to_owned(), cluster.nodes[1].url.clone()),
        ],
    );
    assert!(
        matches!(seen.get(&fetch), Some((_, DebugValue::Histogram(v))) if v.len() == 1),
        "{:?}",
        seen.get(&fetch)
    );
}
