//! Peer health and ring changes: a hung owner costs one peer timeout per backoff window,
//! not one per get; after a ring change, new owners take keys over from their previous
//! owners instead of loading them again.

mod common;

use std::time::Duration;

use common::{Cluster, Loads, value_of};
use galaxycache_galaxy::{Error, Galaxy};
use galaxycache_promoter::NeverPromote;
use galaxycache_universe::{CircuitState, Fault, InProcessNetwork, Universe};
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn a_hung_owner_costs_one_peer_timeout_per_backoff_window() {
    let c = Cluster::new(2, Duration::ZERO, |b| b.promoter(NeverPromote));
    let (asker, owner) = (&c.nodes[0], &c.nodes[1]);
    let keys: Vec<String> = (0..20)
        .map(|i| c.key_owned_by(1, &format!("k{i}")))
        .collect();
    c.net.set_fault(&owner.url, Some(Fault::Hang));

    let started = Instant::now();
    let v = asker.galaxy.get(&keys[0]).await.unwrap();
    assert_eq!(v.bytes(), value_of(&keys[0]).bytes(), "loaded locally");
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(1),
        "the first get waits the peer timeout"
    );
    let state = |c: &Cluster| {
        let status = c.nodes[0].universe.peer_status();
        status
            .iter()
            .find(|p| p.url == c.nodes[1].url)
            .unwrap()
            .state
    };
    assert_eq!(state(&c), CircuitState::Open);

    let refused_at = Instant::now();
    for key in &keys[1..10] {
        assert_eq!(
            asker.galaxy.get(key).await.unwrap().bytes(),
            value_of(key).bytes()
        );
    }
    assert_eq!(
        refused_at.elapsed(),
        Duration::ZERO,
        "later gets fall back at once"
    );
    assert_eq!(
        c.net.received(&owner.url),
        1,
        "the hung owner was asked once"
    );
    assert_eq!(asker.galaxy.stats().local_fallbacks, 10);

    // The owner recovers; after the backoff a probe finds it and closes the circuit.
    c.net.set_fault(&owner.url, None);
    tokio::time::advance(Duration::from_secs(1)).await;
    asker.galaxy.get(&keys[10]).await.unwrap();
    assert_eq!(state(&c), CircuitState::Up);
    let loads_before = asker.galaxy.stats().peer_loads;
    for key in &keys[11..] {
        asker.galaxy.get(key).await.unwrap();
    }
    assert_eq!(
        asker.galaxy.stats().peer_loads,
        loads_before + 9,
        "asked the owner again"
    );
}

/// `n` nodes of `urls` (all on one ring), with the given hand-off warm-up.
fn node(net: &InProcessNetwork, url: &str, warmup: Duration, loads: &Loads) -> (Universe, Galaxy) {
    let universe = Universe::builder(url)
        .protocol(net.protocol())
        .handoff_warmup(warmup)
        .build();
    net.attach(&universe);
    let l = loads.clone();
    let backend = move |key: String| {
        let l = l.clone();
        async move {
            l.record(&key);
            Ok::<_, Error>(Some(value_of(&key)))
        }
    };
    let galaxy = Galaxy::builder(&universe, "g", 64 << 20, backend)
        .promoter(NeverPromote)
        .build()
        .unwrap();
    (universe, galaxy)
}

/// Loads of 300 keys through a 3 -> 4 -> 3 churn: (loads after the first pass, keys that
/// moved to the new node, loads after it joined, loads after it left).
async fn churn(warmup: Duration) -> (usize, usize, usize, usize) {
    let (net, loads) = (InProcessNetwork::new(), Loads::default());
    let urls: Vec<String> = (0..4).map(|i| format!("inproc://n{i}")).collect();
    let nodes: Vec<_> = urls.iter().map(|u| node(&net, u, warmup, &loads)).collect();
    let keys: Vec<String> = (0..300).map(|i| format!("key-{i}")).collect();
    let everyone_gets = |nodes: &[(Universe, Galaxy)]| {
        let (nodes, keys) = (nodes.to_vec(), keys.clone());
        async move {
            for (_, g) in &nodes {
                for key in &keys {
                    assert_eq!(g.get(key).await.unwrap().bytes(), value_of(key).bytes());
                }
            }
        }
    };
    for (u, _) in &nodes[..3] {
        u.set_peers(&urls[..3]).unwrap();
    }
    everyone_gets(&nodes[..3]).await;
    let first = loads.total();

    for (u, _) in &nodes {
        u.set_peers(&urls).unwrap();
    }
    let moved = keys
        .iter()
        .filter(|k| nodes[0].0.owner_url(k) == urls[3])
        .count();
    everyone_gets(&nodes).await;
    let joined = loads.total() - first;

    for (u, _) in &nodes[..3] {
        u.set_peers(&urls[..3]).unwrap();
    }
    everyone_gets(&nodes[..3]).await;
    let left = loads.total() - first - joined;
    (first, moved, joined, left)
}

#[tokio::test(start_paused = true)]
async fn after_a_ring_change_new_owners_take_keys_over_instead_of_loading_them() {
    let (first, moved, joined, left) = churn(Duration::ZERO).await;
    assert_eq!(first, 300, "one load per key");
    assert!(moved > 30, "{moved} keys moved to the new node");
    assert_eq!(
        joined, moved,
        "without hand-off every moved key is loaded again"
    );
    assert_eq!(left, 0, "the old owners still had them");

    let (first, moved, joined, left) = churn(Duration::from_secs(30)).await;
    assert_eq!((first, left), (300, 0));
    assert!(moved > 30);
    assert_eq!(joined, 0, "with hand-off, none is: {moved} keys taken over");
}

#[tokio::test(start_paused = true)]
async fn the_hand_off_ends_with_its_warm_up() {
    let (net, loads) = (InProcessNetwork::new(), Loads::default());
    let urls: Vec<String> = (0..2).map(|i| format!("inproc://n{i}")).collect();
    let nodes: Vec<_> = urls
        .iter()
        .map(|u| node(&net, u, Duration::from_secs(30), &loads))
        .collect();
    nodes[0].0.set_peers(&urls[..1]).unwrap();
    nodes[1].0.set_peers(&urls[..1]).unwrap();
    let key = (0..).map(|i| format!("k{i}")).find(|k| {
        nodes[0].0.set_peers(&urls).unwrap();
        let moves = nodes[0].0.owner_url(k) == urls[1];
        nodes[0].0.set_peers(&urls[..1]).unwrap();
        moves
    });
    let key = key.unwrap();
    nodes[0].1.get(&key).await.unwrap();
    for (u, _) in &nodes {
        u.set_peers(&urls).unwrap();
    }
    tokio::time::advance(Duration::from_secs(30)).await;
    assert!(nodes[1].0.previous_owner(&key).is_none());
    nodes[1].1.get(&key).await.unwrap();
    assert_eq!(loads.of(&key), 2, "past the warm-up the new owner loads it");
}
