//! Freshness: refresh ahead of expiry (and XFetch's spread), stale-if-error, the soft
//! timeout, cached misses, and preload. Paused tokio time for loads, a manual clock for
//! expiry.

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use common::{Cluster, Loads, VersionedDb, settle};
use galaxycache_galaxy::{
    Clock, Error, ErrorKind, Galaxy, GalaxyBuilder, ManualClock, Refresh, Value,
};
use galaxycache_promoter::AlwaysPromote;
use galaxycache_universe::{Fault, Universe};
use tokio::time::Instant;

const S: Duration = Duration::from_secs(1);
const LOAD: Duration = Duration::from_millis(50);

/// A data source that takes `LOAD` per read, answers `key@version`, and fails while
/// `failing` is set.
#[derive(Clone, Default)]
struct Source {
    db: VersionedDb,
    loads: Loads,
    failing: Arc<AtomicBool>,
    slow: Arc<AtomicBool>,
}

impl Source {
    fn backend(&self) -> impl galaxycache_galaxy::BackendGetter + Clone {
        let this = self.clone();
        move |key: String| {
            let this = this.clone();
            async move {
                this.loads.record(&key);
                let version = this.db.read(&key);
                let delay = if this.slow.load(Ordering::SeqCst) {
                    5 * S
                } else {
                    LOAD
                };
                tokio::time::sleep(delay).await;
                if this.failing.load(Ordering::SeqCst) {
                    return Err(Error::backend("the database is down"));
                }
                Ok(Some(VersionedDb::value(&key, version)))
            }
        }
    }

    fn cluster(&self, n: usize, tune: impl Fn(GalaxyBuilder) -> GalaxyBuilder) -> Cluster {
        Cluster::with_backend(n, self.backend(), tune, self.loads.clone())
    }
}

/// `n` nodes on `source` sharing a manual clock, each galaxy tuned by `tune`.
fn clocked(
    source: &Source,
    n: usize,
    tune: impl Fn(GalaxyBuilder) -> GalaxyBuilder + 'static,
) -> (Cluster, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new());
    let shared = Arc::clone(&clock);
    let cluster = source.cluster(n, move |b| tune(b.clock(shared.clone())));
    (cluster, clock)
}

fn version(v: &Value) -> u64 {
    VersionedDb::version_of(v)
}

/// A get, and how long it waited (in paused time).
async fn timed_get(g: &Galaxy, key: &str) -> (Result<Value, Error>, Duration) {
    let started = Instant::now();
    let result = g.get(key).await;
    (result, started.elapsed())
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_serves_at_once_and_reloads_once_in_the_cluster() {
    let source = Source::default();
    let (c, clock) = clocked(&source, 3, |b| {
        b.max_ttl(10 * S)
            .refresh(Refresh::AtFraction(0.5))
            .promoter(AlwaysPromote)
    });
    let key = c.key_owned_by(1, "k");
    for node in &c.nodes {
        assert_eq!(version(&node.galaxy.get(&key).await.unwrap()), 0);
    }
    assert_eq!(source.loads.of(&key), 1);

    source.db.write(&key);
    clock.advance(5 * S); // the refresh point
    for node in &c.nodes {
        let (v, waited) = timed_get(&node.galaxy, &key).await;
        assert_eq!(
            (version(&v.unwrap()), waited),
            (0, Duration::ZERO),
            "served at once"
        );
    }
    tokio::time::sleep(LOAD * 2).await;
    settle().await;
    assert_eq!(source.loads.of(&key), 2, "one reload in the cluster");
    let owner = &c.nodes[1].galaxy;
    assert_eq!(
        version(&owner.get(&key).await.unwrap()),
        1,
        "the new value replaced the old"
    );
    // A hot copy whose owner was itself refreshing asks again a peer timeout later.
    clock.advance(S);
    for node in &c.nodes {
        node.galaxy.get(&key).await.unwrap();
    }
    settle().await;
    for node in &c.nodes {
        let (v, waited) = timed_get(&node.galaxy, &key).await;
        assert_eq!((version(&v.unwrap()), waited), (1, Duration::ZERO));
    }
    assert_eq!(
        source.loads.of(&key),
        2,
        "hot copies refetch from the owner, never load"
    );
    let refreshes: u64 = c.nodes.iter().map(|n| n.galaxy.stats().refreshes).sum();
    assert!(refreshes >= 3, "{refreshes} refreshes");
}

#[tokio::test(start_paused = true)]
async fn without_refresh_ahead_the_get_at_expiry_waits_for_the_load() {
    let source = Source::default();
    let (c, clock) = clocked(&source, 1, |b| b.max_ttl(10 * S));
    c.nodes[0].galaxy.get("k").await.unwrap();
    clock.advance(10 * S);
    let (_, waited) = timed_get(&c.nodes[0].galaxy, "k").await;
    assert_eq!(waited, LOAD);
}

/// Refresh points of `n` keys loaded together by one node.
async fn refresh_points(n: usize, xfetch: bool) -> Vec<SystemTime> {
    let source = Source::default();
    let clock = Arc::new(ManualClock::new());
    let c = {
        let clock = Arc::clone(&clock);
        source.cluster(1, move |b| {
            let b = b
                .clock(clock.clone())
                .max_ttl(100 * S)
                .refresh(Refresh::AtFraction(0.8))
                .seed(42);
            if xfetch { b.xfetch(1.0) } else { b }
        })
    };
    let g = c.nodes[0].galaxy.clone();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let g = g.clone();
            tokio::spawn(async move { g.get(&format!("k{i}")).await.unwrap() })
        })
        .collect();
    let mut points = Vec::new();
    for t in tasks {
        points.push(t.await.unwrap().refresh_at().unwrap());
    }
    points
}

#[tokio::test(start_paused = true)]
async fn xfetch_spreads_the_refreshes_of_keys_loaded_together() {
    let together = refresh_points(1000, false).await;
    assert_eq!(
        together.iter().collect::<HashSet<_>>().len(),
        1,
        "all at one instant"
    );

    let spread = refresh_points(1000, true).await;
    let planned = together[0];
    assert!(spread.iter().all(|t| *t <= planned));
    assert!(spread.iter().collect::<HashSet<_>>().len() > 900);
    let earliest = spread.iter().min().unwrap();
    let span = planned.duration_since(*earliest).unwrap();
    assert!(span > 3 * LOAD, "spread over {span:?}");
}

#[tokio::test(start_paused = true)]
async fn a_stale_value_stands_in_for_a_failing_backend_until_its_limit() {
    let source = Source::default();
    let (c, clock) = clocked(&source, 1, |b| b.max_ttl(10 * S).stale_if_error(30 * S));
    let g = &c.nodes[0].galaxy;
    assert!(!g.get("k").await.unwrap().is_stale());
    source.failing.store(true, Ordering::SeqCst);
    clock.advance(10 * S);
    let v = g.get("k").await.unwrap();
    assert!(v.is_stale());
    assert_eq!(version(&v), 0);
    clock.advance(30 * S - Duration::from_millis(1));
    assert!(g.get("k").await.unwrap().is_stale());
    assert_eq!(g.stats().stale_served, 2);
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        g.get("k").await.unwrap_err().kind(),
        ErrorKind::Backend,
        "past the limit"
    );
    source.failing.store(false, Ordering::SeqCst);
    assert!(!g.get("k").await.unwrap().is_stale());
}

#[tokio::test(start_paused = true)]
async fn a_hot_copy_stands_in_when_the_owner_and_the_local_load_fail() {
    let source = Source::default();
    let (c, clock) = clocked(&source, 2, |b| {
        b.max_ttl(10 * S)
            .stale_if_error(30 * S)
            .promoter(AlwaysPromote)
    });
    let key = c.key_owned_by(1, "k");
    let holder = &c.nodes[0].galaxy;
    holder.get(&key).await.unwrap();
    assert_eq!(holder.stats().hot_entries, 1);
    c.net.set_fault(&c.nodes[1].url, Some(Fault::Fail));
    source.failing.store(true, Ordering::SeqCst);
    clock.advance(15 * S);
    let v = holder.get(&key).await.unwrap();
    assert!(v.is_stale());
    assert_eq!(
        holder.stats().local_fallbacks,
        1,
        "it tried the owner, then itself"
    );
}

#[tokio::test(start_paused = true)]
async fn the_owner_answers_its_peers_with_its_stale_value_too() {
    let source = Source::default();
    let (c, clock) = clocked(&source, 2, |b| b.max_ttl(10 * S).stale_if_error(30 * S));
    let key = c.key_owned_by(1, "k");
    c.nodes[1].galaxy.get(&key).await.unwrap();
    source.failing.store(true, Ordering::SeqCst);
    clock.advance(15 * S);
    let v = c.nodes[0].galaxy.get(&key).await.unwrap();
    assert!(
        v.is_stale(),
        "the asker had no copy: the owner's stale value answers"
    );
    assert_eq!(version(&v), 0);
}

/// One node whose value of `k` (version 0) has just expired, kept 30 s for errors, with
/// the database at version 1 and reloads that take 5 s against a 100 ms soft timeout.
async fn expired_with_a_slow_reload(source: &Source) -> Cluster {
    let (c, clock) = clocked(source, 1, |b| {
        b.max_ttl(10 * S)
            .stale_if_error(30 * S)
            .soft_timeout(Duration::from_millis(100))
    });
    c.nodes[0].galaxy.get("k").await.unwrap();
    source.db.write("k");
    source.slow.store(true, Ordering::SeqCst);
    clock.advance(10 * S);
    c
}

#[tokio::test(start_paused = true)]
async fn past_the_soft_timeout_the_stale_value_answers_and_the_reload_goes_on() {
    let source = Source::default();
    let c = expired_with_a_slow_reload(&source).await;
    let g = &c.nodes[0].galaxy;
    let (v, waited) = timed_get(g, "k").await;
    let v = v.unwrap();
    assert_eq!(
        (v.is_stale(), version(&v), waited),
        (true, 0, Duration::from_millis(100))
    );
    assert_eq!(g.stats().soft_timeouts, 1);
    tokio::time::sleep(5 * S).await;
    settle().await;
    let (v, waited) = timed_get(g, "k").await;
    let v = v.unwrap();
    assert_eq!(
        (v.is_stale(), version(&v), waited),
        (false, 1, Duration::ZERO),
        "stored"
    );
    assert_eq!(source.loads.of("k"), 2);
}

#[tokio::test(start_paused = true)]
async fn a_remove_fences_the_reload_that_outlived_the_soft_timeout() {
    let source = Source::default();
    let c = expired_with_a_slow_reload(&source).await;
    let g = &c.nodes[0].galaxy;
    assert!(g.get("k").await.unwrap().is_stale());
    source.db.write("k");
    g.remove("k").await.unwrap();
    source.slow.store(false, Ordering::SeqCst);
    tokio::time::sleep(5 * S).await;
    settle().await;
    assert_eq!(g.stats().fenced_stores, 1, "the old reload did not store");
    assert_eq!(version(&g.get("k").await.unwrap()), 2);
}

#[tokio::test(start_paused = true)]
async fn a_missing_key_costs_one_backend_query_per_ttl_in_the_cluster() {
    let loads = Loads::default();
    let l = loads.clone();
    let clock = Arc::new(ManualClock::new());
    let c = {
        let clock = Arc::clone(&clock);
        let backend = move |key: String| {
            let l = l.clone();
            async move {
                l.record(&key);
                tokio::time::sleep(LOAD).await;
                Ok::<_, Error>(None)
            }
        };
        Cluster::with_backend(
            3,
            backend,
            move |b| b.clock(clock.clone()).not_found_ttl(10 * S),
            loads.clone(),
        )
    };
    let key = c.key_owned_by(2, "missing");
    let tasks: Vec<_> = (0..1000)
        .map(|i| {
            let (g, key) = (c.nodes[i % 3].galaxy.clone(), key.clone());
            tokio::spawn(async move { g.get(&key).await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap_err().kind(), ErrorKind::NotFound);
    }
    for node in &c.nodes {
        for _ in 0..10 {
            assert!(node.galaxy.get(&key).await.unwrap_err().is_not_found());
        }
    }
    assert_eq!(loads.of(&key), 1, "one query for 1,030 gets on 3 nodes");
    let hits: u64 = c
        .nodes
        .iter()
        .map(|n| n.galaxy.stats().not_found_hits)
        .sum();
    assert!(hits >= 20, "{hits} cached-miss hits");

    // A set clears it everywhere.
    c.nodes[0]
        .galaxy
        .set(&key, Value::new("here now"))
        .await
        .unwrap();
    for node in &c.nodes {
        assert_eq!(
            node.galaxy.get(&key).await.unwrap().bytes().as_ref(),
            b"here now"
        );
    }
    // A remove too, and past the TTL the data source is asked again.
    c.nodes[1].galaxy.remove(&key).await.unwrap();
    assert!(
        c.nodes[0]
            .galaxy
            .get(&key)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(loads.of(&key), 2);
    clock.advance(10 * S);
    assert!(
        c.nodes[0]
            .galaxy
            .get(&key)
            .await
            .unwrap_err()
            .is_not_found()
    );
    assert_eq!(loads.of(&key), 3);
}

#[tokio::test(start_paused = true)]
async fn a_preload_stores_only_the_nodes_own_shard() {
    let source = Source::default();
    let c = source.cluster(3, |b| b);
    let rows: Vec<(String, Value)> = (0..300)
        .map(|i| (format!("k{i}"), Value::new(format!("row {i}"))))
        .collect();
    let mut stored = 0;
    for node in &c.nodes {
        let entries = tokio_stream::iter(rows.clone().into_iter().map(Ok));
        let mut reports = Vec::new();
        let done = node
            .galaxy
            .preload(entries, |p| reports.push(*p))
            .await
            .unwrap();
        assert_eq!(done.seen, 300);
        assert_eq!(done.stored + done.skipped, 300);
        assert!(done.stored > 30, "roughly a third: {}", done.stored);
        assert_eq!(reports.last(), Some(&done), "the last report is the total");
        assert_eq!(node.galaxy.stats().main_entries, done.stored);
        stored += done.stored;
    }
    assert_eq!(stored, 300, "every row stored once, by its owner");
    for node in &c.nodes {
        for (key, value) in &rows {
            assert_eq!(node.galaxy.get(key).await.unwrap().bytes(), value.bytes());
        }
    }
    assert_eq!(
        source.loads.total(),
        0,
        "every get was answered by a preloaded value"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_preload_keeps_what_it_stored_and_says_why() {
    let universe = Universe::builder("http://me").build();
    let g = Galaxy::builder(&universe, "g", 1 << 20, |_: String| async { Ok(None) })
        .build()
        .unwrap();
    let entries = tokio_stream::iter((0..10).map(|i| {
        if i == 5 {
            Err(Error::backend("connection reset"))
        } else {
            Ok((format!("k{i}"), Value::new("v")))
        }
    }));
    let e = g.preload(entries, |_| {}).await.unwrap_err();
    assert!(e.to_string().contains("connection reset"));
    assert_eq!(g.stats().preloaded, 5);
}

#[tokio::test(start_paused = true)]
async fn a_write_during_a_preload_is_not_undone_by_it() {
    let universe = Universe::builder("http://me").build();
    let g = Galaxy::builder(&universe, "g", 1 << 20, |_: String| async { Ok(None) })
        .build()
        .unwrap();
    let (rows, feed) = tokio::sync::mpsc::unbounded_channel();
    let preloading = {
        let g = g.clone();
        let feed = tokio_stream::wrappers::UnboundedReceiverStream::new(feed);
        tokio::spawn(async move { g.preload(feed, |_| {}).await })
    };
    rows.send(Ok(("a".to_owned(), Value::new("old a"))))
        .unwrap();
    settle().await;
    // The preload read row b before this set, and stores it after.
    g.set("b", Value::new("new b")).await.unwrap();
    rows.send(Ok(("b".to_owned(), Value::new("old b"))))
        .unwrap();
    drop(rows);
    let done = preloading.await.unwrap().unwrap();
    assert_eq!((done.stored, done.skipped), (1, 1));
    assert_eq!(g.get("a").await.unwrap().bytes().as_ref(), b"old a");
    assert_eq!(g.get("b").await.unwrap().bytes().as_ref(), b"new b");
}

#[tokio::test(start_paused = true)]
async fn a_value_expired_on_arrival_is_served_once_and_not_kept() {
    let loads = Loads::default();
    let l = loads.clone();
    let clock = Arc::new(ManualClock::new());
    let c = {
        let clock2 = Arc::clone(&clock);
        let backend = move |key: String| {
            let (l, clock) = (l.clone(), Arc::clone(&clock2));
            async move {
                l.record(&key);
                // What an origin's `Cache-Control: no-store` becomes.
                Ok::<_, Error>(Some(Value::expiring("once", clock.now())))
            }
        };
        let clock = Arc::clone(&clock);
        Cluster::with_backend(2, backend, move |b| b.clock(clock.clone()), loads.clone())
    };
    let key = c.key_owned_by(1, "k");
    for node in &c.nodes {
        assert_eq!(
            node.galaxy.get(&key).await.unwrap().bytes().as_ref(),
            b"once"
        );
        assert_eq!(
            node.galaxy.stats().local_fallbacks,
            0,
            "the owner's answer is an answer"
        );
    }
    let not_kept: Vec<u64> = c.nodes.iter().map(|n| n.galaxy.stats().not_kept).collect();
    assert_eq!(
        not_kept,
        [1, 2],
        "the asker's copy, and both of the owner's loads"
    );
    assert_eq!(loads.of(&key), 2, "nothing kept, so each get loads");
    let entries: u64 = c.nodes.iter().map(|n| n.galaxy.stats().main_entries).sum();
    assert_eq!(entries, 0);
}
