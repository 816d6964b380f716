//! The load does not belong to its first caller; a panicking backend harms no one else.

mod common;

use std::time::Duration;

use common::{Calls, Cluster, Loads, value_of};
use galaxycache_galaxy::{ErrorKind, Value};

#[tokio::test(start_paused = true)]
async fn a_dropped_leader_leaves_the_load_running_for_the_others() {
    let cluster = Cluster::new(1, Duration::from_millis(100), |b| b);
    let galaxy = cluster.nodes[0].galaxy.clone();
    let leader = {
        let g = galaxy.clone();
        tokio::spawn(async move { g.get("k").await })
    };
    tokio::time::sleep(Duration::from_millis(10)).await;
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let g = galaxy.clone();
            tokio::spawn(async move { g.get("k").await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    leader.abort();
    assert!(leader.await.unwrap_err().is_cancelled());
    for w in waiters {
        assert_eq!(w.await.unwrap().unwrap(), value_of("k"));
    }
    assert_eq!(cluster.loads.of("k"), 1, "the load was not repeated");
    // The value was stored by the detached load: the next get is a hit.
    galaxy.get("k").await.unwrap();
    assert_eq!(galaxy.stats().main_hits, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_leader_with_no_waiters_still_stores_the_value() {
    let cluster = Cluster::new(1, Duration::from_millis(100), |b| b);
    let galaxy = cluster.nodes[0].galaxy.clone();
    let get = galaxy.get("k");
    assert!(
        tokio::time::timeout(Duration::from_millis(10), get)
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(galaxy.get("k").await.unwrap(), value_of("k"));
    assert_eq!(cluster.loads.of("k"), 1);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_backend_is_an_error_for_every_waiter_and_the_node_keeps_working() {
    let calls = Calls::default();
    let c = calls.clone();
    let backend = move |key: String| {
        let c = c.clone();
        async move {
            c.bump();
            tokio::time::sleep(Duration::from_millis(50)).await;
            if key == "bomb" {
                panic!("backend exploded on {key}");
            }
            Ok(Some(Value::new(key)))
        }
    };
    let cluster = Cluster::with_backend(1, backend, |b| b, Loads::default());
    let galaxy = cluster.nodes[0].galaxy.clone();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let g = galaxy.clone();
            tokio::spawn(async move { g.get("bomb").await })
        })
        .collect();
    for t in tasks {
        let err = t
            .await
            .expect("a waiter's task must not panic")
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Panicked);
        assert!(err.message().contains("backend exploded"), "{err}");
    }
    assert_eq!(calls.get(), 1);
    assert_eq!(galaxy.get("fine").await.unwrap().bytes().as_ref(), b"fine");
    assert_eq!(
        galaxy.get("bomb").await.unwrap_err().kind(),
        ErrorKind::Panicked
    );
    assert_eq!(calls.get(), 3, "a panicked load is not cached");
}
