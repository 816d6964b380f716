//! A shortened demo: three nodes over loopback HTTP in front of SQLite, reads then an
//! update step (rows changed, their keys removed through one node).

use galaxyd::{DemoConfig, Dist, run_demo};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_demo_keeps_the_cluster_invariants() {
    let config = DemoConfig {
        keys: 500,
        requests: 3_000,
        concurrency: 8,
        dist: Dist::Zipf(1.1),
        value_size: 64,
        progress: false,
    };
    let summary = run_demo(&config).await.unwrap();
    summary.check().unwrap();

    assert_eq!(summary.requests, 3_000);
    assert_eq!(summary.nodes.len(), 3);
    // Round-robin over three nodes: every key owned by one node is fetched by the others.
    let peer_loads: u64 = summary.nodes.iter().map(|n| n.stats.peer_loads).sum();
    assert!(peer_loads > 0, "no key crossed the network");
    assert!(summary.latency.p50 > 0.0 && summary.latency.p50 <= summary.latency.p99);
    let text = summary.to_string();
    assert!(text.contains("backend loads"), "{text}");

    // The update step: 100 rows changed and removed through one node, then every node
    // served every new value, each changed key loaded from the database once.
    let update = &summary.update;
    assert_eq!(update.rows, 100);
    assert_eq!(update.removes_complete, 100);
    assert_eq!((update.fresh, update.stale), (300, 0));
    assert_eq!(update.backend_loads, 100);
    assert!(update.remove_latency.p50 > 0.0);
    assert!(
        text.contains("updated 100 rows; all 3 nodes serve the new values"),
        "{text}"
    );
    println!("{text}");
}
