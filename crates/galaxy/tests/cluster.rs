//! A 3-node cluster in one process: each key loaded once in the cluster, same values everywhere.

mod common;

use std::time::Duration;

use common::{Cluster, value_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_is_loaded_once_in_the_cluster_and_read_the_same_everywhere() {
    let cluster = Cluster::new(3, Duration::ZERO, |b| b);
    let keys: Vec<String> = (0..3000).map(|i| format!("user:{i}")).collect();
    let mut tasks = Vec::new();
    for node in 0..3 {
        let galaxy = cluster.nodes[node].galaxy.clone();
        let keys = keys.clone();
        tasks.push(tokio::spawn(async move {
            for key in &keys {
                let v = galaxy.get(key).await.unwrap();
                assert_eq!(v, value_of(key), "node {node}, key {key}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let per_key = cluster.loads.per_key();
    assert_eq!(per_key.len(), keys.len(), "every key was loaded");
    assert!(per_key.values().all(|&n| n == 1), "a key was loaded twice");

    let stats: Vec<_> = cluster.nodes.iter().map(|n| n.galaxy.stats()).collect();
    let backend_loads: u64 = stats.iter().map(|s| s.backend_loads).sum();
    assert_eq!(backend_loads, keys.len() as u64);
    for (i, s) in stats.iter().enumerate() {
        assert_eq!(s.gets, keys.len() as u64, "node {i}");
        assert!(s.peer_loads > 0 && s.server_requests > 0, "node {i}: {s:?}");
        assert_eq!(s.peer_errors, 0);
    }
}

#[tokio::test(start_paused = true)]
async fn requests_from_peers_are_never_forwarded() {
    let cluster = Cluster::new(2, Duration::ZERO, |b| b);
    // Node 1 is asked for a key node 0 owns, as if its ring disagreed: it loads it itself.
    let key = cluster.key_owned_by(0, "k");
    let served = cluster.nodes[1]
        .universe
        .serve_get(common::GALAXY.into(), &key, None)
        .await
        .unwrap()
        .unwrap();
    // Served as loaded, its copy capped at the fallback TTL (tests/limits.rs).
    assert_eq!(served.bytes(), value_of(&key).bytes());
    assert!(served.expires_at().is_some());
    assert_eq!(cluster.net.received(&cluster.nodes[0].url), 0);
    assert_eq!(cluster.nodes[1].galaxy.stats().backend_loads, 1);
}
