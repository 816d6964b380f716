//! Many callers of one cold key, spread over the cluster: one backend load.

mod common;

use std::time::Duration;

use common::{Calls, Cluster, Loads, value_of};
use galaxycache_galaxy::{Error, ErrorKind};

#[tokio::test(start_paused = true)]
async fn a_thousand_gets_of_one_cold_key_make_one_backend_load() {
    let cluster = Cluster::new(3, Duration::from_millis(200), |b| b);
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let galaxy = cluster.nodes[i % 3].galaxy.clone();
        tasks.push(tokio::spawn(async move { galaxy.get("the-key").await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), value_of("the-key"));
    }
    assert_eq!(cluster.loads.total(), 1);
    let waits: u64 = cluster
        .nodes
        .iter()
        .map(|n| n.galaxy.stats().coalesced_waits)
        .sum();
    assert!(waits >= 997, "{waits} coalesced waits");
}

#[tokio::test(start_paused = true)]
async fn a_failing_backend_fails_every_caller_with_one_load() {
    let calls = Calls::default();
    let c = calls.clone();
    let backend = move |_key: String| {
        let c = c.clone();
        async move {
            c.bump();
            tokio::time::sleep(Duration::from_millis(200)).await;
            Err::<Option<galaxycache_galaxy::Value>, _>(Error::backend("database is down"))
        }
    };
    let cluster = Cluster::with_backend(3, backend, |b| b, Loads::default());
    let mut tasks = Vec::new();
    for i in 0..1000 {
        let galaxy = cluster.nodes[i % 3].galaxy.clone();
        tasks.push(tokio::spawn(async move { galaxy.get("the-key").await }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        errors.push(t.await.unwrap().unwrap_err());
    }
    assert_eq!(calls.get(), 1, "one backend load");
    // The owner's callers get the backend's error; the others get the same error from the
    // owner, and do not load the key themselves.
    let expected = Error::backend("database is down");
    assert!(
        errors.iter().all(|e| e == &expected),
        "{:?}",
        errors.iter().find(|e| *e != &expected)
    );
    assert_eq!(expected.kind(), ErrorKind::Backend);
    let fallbacks: u64 = cluster
        .nodes
        .iter()
        .map(|n| n.galaxy.stats().local_fallbacks)
        .sum();
    assert_eq!(fallbacks, 0);
}
