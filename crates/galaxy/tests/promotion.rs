//! A key hammered on a non-owner ends up in its hotcache and stops crossing the network.

mod common;

use std::time::Duration;

use common::{Cluster, value_of};
use galaxycache_promoter::NeverPromote;

#[tokio::test(start_paused = true)]
async fn a_hammered_key_is_promoted_and_stops_causing_peer_loads() {
    let c = Cluster::new(2, Duration::ZERO, |b| b);
    let key = c.key_owned_by(1, "hot");
    let asker = &c.nodes[0].galaxy;
    for _ in 0..1000 {
        assert_eq!(
            asker.get(&key).await.unwrap().bytes(),
            value_of(&key).bytes()
        );
    }
    let s = asker.stats();
    assert_eq!(s.promotions, 1);
    assert_eq!(s.hot_entries, 1);
    assert!(s.peer_loads <= 2, "{} peer loads", s.peer_loads);
    assert!(s.hot_hits >= 998, "{} hot hits", s.hot_hits);
    assert_eq!(c.nodes[1].galaxy.stats().server_requests, s.peer_loads);
}

#[tokio::test(start_paused = true)]
async fn a_key_seen_once_is_not_promoted() {
    let c = Cluster::new(2, Duration::ZERO, |b| b);
    let asker = &c.nodes[0].galaxy;
    for i in 0..100 {
        let key = c.key_owned_by(1, &format!("scan{i}"));
        asker.get(&key).await.unwrap();
    }
    assert_eq!(asker.stats().hot_entries, 0);
}

#[tokio::test(start_paused = true)]
async fn never_promote_sends_every_get_to_the_owner() {
    let c = Cluster::new(2, Duration::ZERO, |b| b.promoter(NeverPromote));
    let key = c.key_owned_by(1, "hot");
    for _ in 0..50 {
        c.nodes[0].galaxy.get(&key).await.unwrap();
    }
    assert_eq!(c.nodes[0].galaxy.stats().peer_loads, 50);
    assert_eq!(c.nodes[1].galaxy.stats().server_requests, 50);
}

#[tokio::test(start_paused = true)]
async fn a_closure_promoter_sees_the_keys_rate() {
    let c = Cluster::new(2, Duration::ZERO, |b| {
        b.promoter(|_: &str, s: &galaxycache_promoter::Stats| s.key_fetches >= 5)
    });
    let key = c.key_owned_by(1, "hot");
    for _ in 0..10 {
        c.nodes[0].galaxy.get(&key).await.unwrap();
    }
    assert_eq!(c.nodes[0].galaxy.stats().peer_loads, 5);
}
