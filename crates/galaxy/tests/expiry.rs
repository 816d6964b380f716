//! Expired is gone: on the owner, in a fallback copy, and in a hot copy.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Cluster, Loads};
use galaxycache_galaxy::{Clock, Error, ManualClock, Value};
use galaxycache_promoter::AlwaysPromote;

const TTL: Duration = Duration::from_secs(10);

/// A cluster on one manual clock whose backends give values expiring `ttl` after loading
/// (or never, with `None`).
fn cluster(
    n: usize,
    ttl: Option<Duration>,
    tune: impl Fn(galaxycache_galaxy::GalaxyBuilder) -> galaxycache_galaxy::GalaxyBuilder,
) -> (Cluster, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let loads = Loads::default();
    let (c, l) = (Arc::clone(&clock), loads.clone());
    let backend = move |key: String| {
        let (c, l) = (Arc::clone(&c), l.clone());
        async move {
            l.record(&key);
            let bytes = format!("{key}@{:?}", c.now());
            Ok::<_, Error>(Some(match ttl {
                Some(ttl) => Value::expiring(bytes, c.now() + ttl),
                None => Value::new(bytes),
            }))
        }
    };
    let shared: Arc<dyn Clock> = clock.clone();
    let cluster = Cluster::with_backend(n, backend, |b| tune(b.clock(Arc::clone(&shared))), loads);
    (cluster, clock)
}

#[tokio::test(start_paused = true)]
async fn an_expired_value_is_never_returned() {
    let (c, clock) = cluster(1, Some(TTL), |b| b);
    let g = &c.nodes[0].galaxy;
    let first = g.get("k").await.unwrap();
    assert_eq!(first.expires_at(), Some(clock.now() + TTL));
    clock.advance(TTL - Duration::from_millis(1));
    assert_eq!(g.get("k").await.unwrap(), first, "still fresh");
    clock.advance(Duration::from_millis(1));
    let second = g.get("k").await.unwrap();
    assert_ne!(second, first, "expired at its instant");
    assert!(second.expires_at().unwrap() > clock.now());
    assert_eq!(c.loads.of("k"), 2);
}

#[tokio::test(start_paused = true)]
async fn max_ttl_caps_values_and_jitter_spreads_them() {
    let (c, clock) = cluster(1, None, |b| {
        b.max_ttl(TTL).ttl_jitter(Duration::from_secs(5))
    });
    let g = &c.nodes[0].galaxy;
    let now = clock.now();
    let mut expiries = std::collections::BTreeSet::new();
    for i in 0..50 {
        let v = g.get(&format!("k{i}")).await.unwrap();
        let at = v.expires_at().expect("capped by max_ttl");
        assert!(
            at > now + Duration::from_secs(5) && at <= now + TTL,
            "{at:?}"
        );
        expiries.insert(at);
    }
    assert!(
        expiries.len() > 10,
        "jitter spreads expiries: {}",
        expiries.len()
    );
    clock.advance(TTL);
    g.get("k0").await.unwrap();
    assert_eq!(c.loads.of("k0"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_hot_copy_expires_with_its_owners_expiry() {
    let (c, clock) = cluster(2, Some(TTL), |b| b.promoter(AlwaysPromote));
    let key = c.key_owned_by(1, "k");
    let asker = &c.nodes[0].galaxy;
    let fetched = asker.get(&key).await.unwrap();
    assert_eq!(
        fetched.expires_at(),
        Some(clock.now() + TTL),
        "expiry travelled"
    );
    assert_eq!(asker.stats().hot_entries, 1);
    assert_eq!(asker.get(&key).await.unwrap(), fetched);
    assert_eq!(asker.stats().hot_hits, 1);

    clock.advance(TTL);
    let refreshed = asker.get(&key).await.unwrap();
    assert_ne!(refreshed, fetched);
    assert_eq!(
        asker.stats().peer_loads,
        2,
        "the stale hot copy was not served"
    );
    assert_eq!(c.loads.of(&key), 2, "the owner's copy expired too");
}

#[tokio::test(start_paused = true)]
async fn a_fallback_copy_lives_no_longer_than_the_fallback_ttl() {
    let (c, clock) = cluster(2, None, |b| b.fallback_ttl(Duration::from_secs(1)));
    let key = c.key_owned_by(1, "k");
    c.net.detach(&c.nodes[1].url);
    let asker = &c.nodes[0].galaxy;
    let v = asker.get(&key).await.unwrap();
    assert_eq!(v.expires_at(), Some(clock.now() + Duration::from_secs(1)));
    asker.get(&key).await.unwrap();
    assert_eq!(c.loads.of(&key), 1);
    clock.advance(Duration::from_secs(1));
    asker.get(&key).await.unwrap();
    assert_eq!(c.loads.of(&key), 2);
}

#[tokio::test(start_paused = true)]
async fn a_max_ttl_past_the_clocks_range_saturates() {
    let (c, clock) = cluster(1, None, |b| {
        b.max_ttl(Duration::MAX).ttl_jitter(Duration::from_secs(5))
    });
    let v = c.nodes[0].galaxy.get("k").await.unwrap();
    assert!(v.expires_at().unwrap() > clock.now() + Duration::from_secs(3600 * 24 * 365));
}
