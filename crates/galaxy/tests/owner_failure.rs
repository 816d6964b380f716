//! An owner that fails, hangs or says NotFound.

mod common;

use std::time::Duration;

use common::{Cluster, value_of};
use galaxycache_galaxy::ErrorKind;
use galaxycache_universe::Fault;
use tokio::time::Instant;

const PEER_TIMEOUT: Duration = Duration::from_millis(300);

fn cluster() -> Cluster {
    Cluster::new(2, Duration::from_millis(20), |b| {
        b.peer_timeout(PEER_TIMEOUT)
            .fallback_ttl(Duration::from_secs(1))
    })
}

#[tokio::test(start_paused = true)]
async fn a_failing_owner_means_a_local_load() {
    let c = cluster();
    let key = c.key_owned_by(1, "k");
    c.net.set_fault(&c.nodes[1].url, Some(Fault::Fail));
    let asker = &c.nodes[0].galaxy;
    assert_eq!(
        asker.get(&key).await.unwrap().bytes(),
        value_of(&key).bytes()
    );
    let s = asker.stats();
    assert_eq!(
        (s.peer_errors, s.local_fallbacks, s.backend_loads),
        (1, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn a_hanging_owner_means_a_local_load_within_the_fetch_timeout() {
    let c = cluster();
    let key = c.key_owned_by(1, "k");
    c.net.set_fault(&c.nodes[1].url, Some(Fault::Hang));
    let start = Instant::now();
    assert_eq!(
        c.nodes[0].galaxy.get(&key).await.unwrap().bytes(),
        value_of(&key).bytes()
    );
    let took = start.elapsed();
    assert!(took >= PEER_TIMEOUT, "{took:?}");
    assert!(
        took <= PEER_TIMEOUT + Duration::from_millis(20) + Duration::from_millis(5),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_dead_owner_causes_no_stampede_and_no_long_lived_duplicate() {
    let c = cluster();
    let key = c.key_owned_by(1, "k");
    c.net.detach(&c.nodes[1].url);
    let asker = c.nodes[0].galaxy.clone();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let g = asker.clone();
            let k = key.clone();
            tokio::spawn(async move { g.get(&k).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().bytes(), value_of(&key).bytes());
    }
    assert_eq!(c.loads.of(&key), 1, "one fallback load for 100 callers");
    asker.get(&key).await.unwrap();
    assert_eq!(c.loads.of(&key), 1, "served from the fallback copy");
}

#[tokio::test(start_paused = true)]
async fn not_found_from_the_owner_is_not_found_without_a_local_load() {
    let c = cluster();
    let key = c.key_owned_by(1, "k");
    c.net.set_fault(&c.nodes[1].url, Some(Fault::NotFound));
    let err = c.nodes[0].galaxy.get(&key).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert_eq!(c.loads.total(), 0);
    assert_eq!(c.nodes[0].galaxy.stats().local_fallbacks, 0);
}

#[tokio::test(start_paused = true)]
async fn a_recovered_owner_is_used_again() {
    let c = cluster();
    let key = c.key_owned_by(1, "k");
    c.net.set_fault(&c.nodes[1].url, Some(Fault::Fail));
    c.nodes[0].galaxy.get(&key).await.unwrap();
    c.net.set_fault(&c.nodes[1].url, None);
    let other = c.key_owned_by(1, "other");
    c.nodes[0].galaxy.get(&other).await.unwrap();
    assert_eq!(c.nodes[1].galaxy.stats().server_requests, 1);
    assert_eq!(c.nodes[1].galaxy.stats().backend_loads, 1);
}
