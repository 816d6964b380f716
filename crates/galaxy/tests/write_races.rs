//! The race every singleflight cache must win: a load in flight when a write of its key
//! arrives must not store its result, and a get after the write must not join it. On the
//! owner (a backend load) and on a non-owner (a peer fetch into the hotcache), for remove
//! and for flush; then a proptest that interleaves gets, removes and sets on 3 nodes.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::{Cluster, Loads, VersionedDb, settle};
use galaxycache_galaxy::{Error, Galaxy, Value};
use galaxycache_promoter::AlwaysPromote;
use proptest::prelude::*;
use tokio::sync::Semaphore;

/// A cluster whose backends read the database when a load starts, then wait for a
/// permit of `gate` before answering: a load "in flight" for as long as the test wants.
fn gated_cluster(n: usize, db: &VersionedDb, gate: &Arc<Semaphore>) -> Cluster {
    let (db, gate, loads) = (db.clone(), Arc::clone(gate), Loads::default());
    let l = loads.clone();
    let backend = move |key: String| {
        let (db, gate, l) = (db.clone(), Arc::clone(&gate), l.clone());
        async move {
            l.record(&key);
            let version = db.read(&key);
            gate.acquire().await.unwrap().forget();
            Ok::<_, Error>(Some(VersionedDb::value(&key, version)))
        }
    };
    Cluster::with_backend(n, backend, |b| b.promoter(AlwaysPromote), loads)
}

fn spawn_get(galaxy: &Galaxy, key: &str) -> tokio::task::JoinHandle<Result<Value, Error>> {
    let (galaxy, key) = (galaxy.clone(), key.to_owned());
    tokio::spawn(async move { galaxy.get(&key).await })
}

fn version(result: Result<Result<Value, Error>, tokio::task::JoinError>) -> u64 {
    VersionedDb::version_of(&result.unwrap().unwrap())
}

#[derive(Clone, Copy, Debug)]
enum Write {
    Remove,
    Flush,
}

impl Write {
    async fn apply(self, galaxy: &Galaxy, key: &str) {
        let report = match self {
            Write::Remove => galaxy.remove(key).await.unwrap(),
            Write::Flush => galaxy.flush().await,
        };
        assert!(report.is_complete(), "{report:?}");
    }
}

/// A get on `asker` of a key owned by `owner` is in flight (the owner's backend read
/// version 0 and waits); a write from a third node lands; then:
/// - the callers already waiting get version 0 (they asked before the write);
/// - a get after the write starts a new load, which reads version 1;
/// - neither the owner nor the asker stored version 0.
async fn load_in_flight_during(write: Write, asker: usize, owner: usize, writer: usize) {
    let db = VersionedDb::default();
    let gate = Arc::new(Semaphore::new(0));
    let c = gated_cluster(3, &db, &gate);
    let key = c.key_owned_by(owner, "k");
    let early = spawn_get(&c.nodes[asker].galaxy, &key);
    let also_early = spawn_get(&c.nodes[asker].galaxy, &key);
    settle().await;
    assert_eq!(c.loads.of(&key), 1, "one load in flight");

    db.write(&key);
    write.apply(&c.nodes[writer].galaxy, &key).await;
    let late = spawn_get(&c.nodes[asker].galaxy, &key);
    settle().await;
    assert_eq!(
        c.loads.of(&key),
        2,
        "the get after the write did not join the old load"
    );

    gate.add_permits(2);
    assert_eq!(version(early.await), 0);
    assert_eq!(version(also_early.await), 0);
    assert_eq!(version(late.await), 1);
    for node in &c.nodes {
        let v = node.galaxy.get(&key).await.unwrap();
        assert_eq!(VersionedDb::version_of(&v), 1, "no node kept the old value");
    }
    assert_eq!(
        c.loads.of(&key),
        2,
        "the new value was stored where it belongs"
    );
    let fenced: u64 = c.nodes.iter().map(|n| n.galaxy.stats().fenced_stores).sum();
    assert!(fenced >= 1, "the old load's store was fenced");
}

#[tokio::test(start_paused = true)]
async fn remove_during_a_backend_load_on_the_owner() {
    load_in_flight_during(Write::Remove, 0, 0, 1).await;
}

#[tokio::test(start_paused = true)]
async fn remove_during_a_peer_fetch_on_a_non_owner() {
    load_in_flight_during(Write::Remove, 0, 1, 2).await;
}

#[tokio::test(start_paused = true)]
async fn remove_from_the_asker_itself_during_its_peer_fetch() {
    load_in_flight_during(Write::Remove, 0, 1, 0).await;
}

#[tokio::test(start_paused = true)]
async fn flush_during_a_backend_load_on_the_owner() {
    load_in_flight_during(Write::Flush, 0, 0, 2).await;
}

#[tokio::test(start_paused = true)]
async fn flush_during_a_peer_fetch_on_a_non_owner() {
    load_in_flight_during(Write::Flush, 0, 1, 2).await;
}

#[tokio::test(start_paused = true)]
async fn a_set_during_a_load_is_not_overwritten_by_it() {
    let db = VersionedDb::default();
    let gate = Arc::new(Semaphore::new(0));
    let c = gated_cluster(3, &db, &gate);
    let key = c.key_owned_by(1, "k");
    let early = spawn_get(&c.nodes[1].galaxy, &key);
    settle().await;
    let written = db.write(&key);
    let report = c.nodes[2]
        .galaxy
        .set(&key, VersionedDb::value(&key, written))
        .await
        .unwrap();
    assert!(report.is_complete());
    gate.add_permits(1);
    assert_eq!(version(early.await), 0);
    for node in &c.nodes {
        let v = node.galaxy.get(&key).await.unwrap();
        assert_eq!(VersionedDb::version_of(&v), written, "the set value stands");
    }
    assert_eq!(c.loads.of(&key), 1);
}

// ---- Interleavings -------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Op {
    Get,
    Remove,
    Set,
}

#[derive(Clone, Debug)]
struct Step {
    op: Op,
    node: usize,
    key: usize,
    /// When the step starts, in ms of paused time.
    start_ms: u64,
    /// How long a backend load that this step may cause takes, in ms.
    load_ms: u64,
}

fn step() -> impl Strategy<Value = Step> {
    (
        prop_oneof![3 => Just(Op::Get), 1 => Just(Op::Remove), 1 => Just(Op::Set)],
        0..3usize,
        0..3usize,
        0..200u64,
        0..30u64,
    )
        .prop_map(|(op, node, key, start_ms, load_ms)| Step {
            op,
            node,
            key,
            start_ms,
            load_ms,
        })
}

/// What one step did, on a logical clock shared by all steps.
#[derive(Debug)]
struct Record {
    op: Op,
    key: usize,
    started: u64,
    ended: u64,
    /// The version a get returned or a write wrote.
    version: u64,
}

/// Run `steps` concurrently on 3 nodes whose backends take the time each step says.
async fn run(steps: Vec<Step>) -> Vec<Record> {
    let db = VersionedDb::default();
    let delays: Arc<std::sync::Mutex<std::collections::VecDeque<u64>>> = Arc::new(
        std::sync::Mutex::new(steps.iter().map(|s| s.load_ms).collect()),
    );
    let backend = {
        let (db, delays) = (db.clone(), Arc::clone(&delays));
        move |key: String| {
            let (db, delays) = (db.clone(), Arc::clone(&delays));
            async move {
                let version = db.read(&key);
                let ms = delays.lock().unwrap().pop_front().unwrap_or(5);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                Ok::<_, Error>(Some(VersionedDb::value(&key, version)))
            }
        }
    };
    let c = Arc::new(Cluster::with_backend(
        3,
        backend,
        |b| b.promoter(AlwaysPromote),
        Loads::default(),
    ));
    let clock = Arc::new(AtomicU64::new(0));
    let tick = move |clock: &AtomicU64| clock.fetch_add(1, Ordering::SeqCst);
    let mut tasks = Vec::new();
    for s in steps {
        let (c, db, clock) = (Arc::clone(&c), db.clone(), Arc::clone(&clock));
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(s.start_ms)).await;
            let key = format!("key-{}", s.key);
            let galaxy = &c.nodes[s.node].galaxy;
            let started = tick(&clock);
            let version = match s.op {
                Op::Get => VersionedDb::version_of(&galaxy.get(&key).await.unwrap()),
                Op::Remove => {
                    let v = db.write(&key);
                    assert!(galaxy.remove(&key).await.unwrap().is_complete());
                    v
                }
                Op::Set => {
                    let v = db.write(&key);
                    let report = galaxy.set(&key, VersionedDb::value(&key, v)).await.unwrap();
                    assert!(report.is_complete());
                    v
                }
            };
            Record {
                op: s.op,
                key: s.key,
                started,
                ended: tick(&clock),
                version,
            }
        }));
    }
    let mut records = Vec::new();
    for t in tasks {
        records.push(t.await.unwrap());
    }
    records
}

/// The first get that returned a version older than a write that completed before the
/// get started, if any.
fn stale_read(records: &[Record]) -> Option<(&Record, &Record)> {
    records
        .iter()
        .filter(|r| matches!(r.op, Op::Get))
        .find_map(|get| {
            records
                .iter()
                .filter(|w| !matches!(w.op, Op::Get) && w.key == get.key && w.ended < get.started)
                .find(|w| w.version > get.version)
                .map(|w| (get, w))
        })
}

#[test]
fn the_checker_catches_a_stale_read() {
    let write = Record {
        op: Op::Remove,
        key: 0,
        started: 0,
        ended: 1,
        version: 1,
    };
    let stale = Record {
        op: Op::Get,
        key: 0,
        started: 2,
        ended: 3,
        version: 0,
    };
    let concurrent = Record {
        op: Op::Get,
        key: 0,
        started: 0,
        ended: 3,
        version: 0,
    };
    assert!(stale_read(&[write, stale]).is_some());
    let write = Record {
        op: Op::Remove,
        key: 0,
        started: 0,
        ended: 1,
        version: 1,
    };
    assert!(stale_read(&[write, concurrent]).is_none());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_get_returns_a_value_older_than_the_last_completed_write(
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let records = runtime.block_on(run(steps));
        if let Some((get, write)) = stale_read(&records) {
            prop_assert!(false, "get {get:?} returned an older version than {write:?}");
        }
    }
}
