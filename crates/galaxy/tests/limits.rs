//! Limits: a non-owner never keeps what it loads for a peer beyond the fallback TTL,
//! values larger than the largest cacheable entry are served but not cached, and the
//! bound on bytes in flight follows the galaxies' budgets unless it is set.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, Loads, value_of};
use galaxycache_galaxy::{Clock, Error, Galaxy, ManualClock, Value};
use galaxycache_universe::Universe;

const FALLBACK_TTL: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_non_owner_serving_a_peer_keeps_its_copy_at_most_the_fallback_ttl() {
    let clock = Arc::new(ManualClock::new());
    let c = Cluster::new(2, Duration::ZERO, |b| {
        b.clock(clock.clone()).fallback_ttl(FALLBACK_TTL)
    });
    // A key node 1 owns, asked of node 0 as if node 0 owned it (rings that disagree, or
    // a caller that is no peer planting a copy).
    let key = c.key_owned_by(1, "planted");
    let non_owner = &c.nodes[0].universe;
    let served = non_owner
        .serve_get(common::GALAXY.into(), &key, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(served.bytes(), value_of(&key).bytes());
    let expires = served.expires_at().expect("the copy is capped");
    assert!(expires <= clock.now() + FALLBACK_TTL, "{expires:?}");
    // Within the fallback TTL the non-owner answers its peers from its copy...
    non_owner
        .serve_get(common::GALAXY.into(), &key, None)
        .await
        .unwrap();
    assert_eq!(c.loads.of(&key), 1);
    // ...and after it the copy is gone: the next peer request loads again.
    clock.advance(FALLBACK_TTL);
    non_owner
        .serve_get(common::GALAXY.into(), &key, None)
        .await
        .unwrap();
    assert_eq!(
        c.loads.of(&key),
        2,
        "the planted copy outlived the fallback TTL"
    );
    // The owner keeps what it loads for peers as its expiry says: none here.
    let owned = c.key_owned_by(0, "owned");
    let value = non_owner
        .serve_get(common::GALAXY.into(), &owned, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(value.expires_at(), None);
}

/// A one-node galaxy of `budget` bytes whose backend answers `len` bytes for every key.
fn sized(budget: u64, len: usize, loads: &Loads) -> Galaxy {
    let universe = Universe::builder("http://127.0.0.1:1").build();
    let l = loads.clone();
    let backend = move |key: String| {
        l.record(&key);
        async move { Ok::<_, Error>(Some(Value::new(vec![7u8; len]))) }
    };
    Galaxy::builder(&universe, "sized", budget, backend)
        .build()
        .unwrap()
}

#[tokio::test]
async fn values_up_to_the_largest_entry_are_cached_and_larger_ones_counted() {
    let probe = sized(64 << 20, 0, &Loads::default());
    let limit = probe.max_entry_bytes(1) as usize;
    assert!(
        limit >= 10 << 20,
        "a 64 MiB galaxy must keep 10 MiB values: {limit}"
    );
    drop(probe);

    for len in [7 << 20, 10 << 20, limit] {
        let loads = Loads::default();
        let g = sized(64 << 20, len, &loads);
        assert_eq!(g.get("k").await.unwrap().len(), len);
        assert_eq!(g.get("k").await.unwrap().len(), len);
        assert_eq!(loads.of("k"), 1, "a value of {len} bytes was not cached");
        assert_eq!(g.stats().too_large, 0);
    }

    let loads = Loads::default();
    let g = sized(64 << 20, limit + 1, &loads);
    for _ in 0..3 {
        assert_eq!(g.get("k").await.unwrap().len(), limit + 1, "served anyway");
    }
    assert_eq!(loads.of("k"), 3, "too large to cache: every get loads");
    let s = g.stats();
    assert_eq!((s.too_large, s.main_entries), (3, 0), "{s:?}");
}

#[tokio::test]
async fn the_bound_on_bytes_in_flight_is_half_the_budgets_unless_set() {
    let backend =
        |key: String| async move { Ok::<_, Error>(Some(Value::new(bytes::Bytes::from(key)))) };
    const MIB: u64 = 1 << 20;

    let universe = Universe::builder("http://a").build();
    assert_eq!(
        universe.in_flight().limit_bytes(),
        galaxycache_universe::MIN_IN_FLIGHT_BYTES,
        "no galaxy yet: the floor"
    );
    let _users = Galaxy::builder(&universe, "users", 64 * MIB, backend)
        .build()
        .unwrap();
    assert_eq!(universe.in_flight().limit_bytes(), 32 * MIB);
    let _pages = Galaxy::builder(&universe, "pages", 16 * MIB, backend)
        .build()
        .unwrap();
    assert_eq!(universe.in_flight().limit_bytes(), 40 * MIB);

    let set = Universe::builder("http://a")
        .max_in_flight_bytes(4 * MIB)
        .build();
    let _users = Galaxy::builder(&set, "users", 64 * MIB, backend)
        .build()
        .unwrap();
    assert_eq!(set.in_flight().limit_bytes(), 4 * MIB, "as set");
}
