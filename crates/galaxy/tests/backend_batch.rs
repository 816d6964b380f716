//! Backend loads gathered into `get_many` calls: a lone load goes at once, concurrent loads
//! go together, and every key keeps the guarantees of a load of its own (one load per key,
//! errors and panics per key); `get_many` answers what a loop of `get` answers.

mod common;

use std::sync::{Arc, Mutex};

use common::{Cluster, Loads, settle, value_of};
use galaxycache_galaxy::{
    BackendGetter, Error, ErrorKind, Galaxy, GalaxyBuilder, MAX_BATCH, Value,
};
use galaxycache_promoter::NeverPromote;
use proptest::prelude::*;
use tokio::sync::Semaphore;

/// A backend that batches and records every `get_many` call. Keys starting `missing` have
/// no value, keys starting `fail` fail, a call with a key starting `bomb` panics. Calls
/// after the first `free` wait for a permit of `gate`.
#[derive(Clone)]
struct Recording {
    calls: Arc<Mutex<Vec<Vec<String>>>>,
    gate: Arc<Semaphore>,
    free: usize,
    loads: Loads,
}

impl Recording {
    /// Every call answers at once.
    fn open() -> Self {
        Self::gated(usize::MAX)
    }

    /// The first `free` calls answer at once; the others wait for the gate.
    fn gated(free: usize) -> Self {
        Recording {
            calls: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
            free,
            loads: Loads::default(),
        }
    }

    fn calls(&self) -> Vec<Vec<String>> {
        self.calls.lock().unwrap().clone()
    }

    fn galaxy(&self) -> (Cluster, Galaxy) {
        self.galaxy_of(1)
    }

    /// The galaxy of the first of `nodes` nodes, each in front of this backend. No key is
    /// promoted: a hot copy carries the hot TTL, so a key asked again after a first get had
    /// promoted it would answer with an expiry its first get did not have.
    fn galaxy_of(&self, nodes: usize) -> (Cluster, Galaxy) {
        let unpromoted = |b: GalaxyBuilder| b.promoter(NeverPromote);
        let cluster = Cluster::with_backend(nodes, self.clone(), unpromoted, self.loads.clone());
        let galaxy = cluster.nodes[0].galaxy.clone();
        (cluster, galaxy)
    }
}

fn answer(key: &str) -> Result<Option<Value>, Error> {
    if key.starts_with("missing") {
        Ok(None)
    } else if key.starts_with("fail") {
        Err(Error::backend(format!("no database for {key}")))
    } else {
        Ok(Some(value_of(key)))
    }
}

impl BackendGetter for Recording {
    async fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        panic!("a batching backend is asked through get_many, not get({key})");
    }

    async fn get_many(&self, keys: &[&str]) -> Vec<Result<Option<Value>, Error>> {
        let turn = {
            let mut calls = self.calls.lock().unwrap();
            calls.push(keys.iter().map(|k| k.to_string()).collect());
            calls.len()
        };
        keys.iter().for_each(|k| self.loads.record(k));
        if turn > self.free {
            self.gate.acquire().await.unwrap().forget();
        }
        if let Some(bomb) = keys.iter().find(|k| k.starts_with("bomb")) {
            panic!("the database exploded on {bomb}");
        }
        keys.iter().map(|k| answer(k)).collect()
    }

    fn batches(&self) -> bool {
        true
    }
}

fn spawn_get(galaxy: &Galaxy, key: String) -> tokio::task::JoinHandle<Result<Value, Error>> {
    let galaxy = galaxy.clone();
    tokio::spawn(async move { galaxy.get(&key).await })
}

#[tokio::test(start_paused = true)]
async fn a_lone_get_is_a_batch_of_one_at_once() {
    let backend = Recording::open();
    let (_cluster, galaxy) = backend.galaxy();
    let start = tokio::time::Instant::now();
    assert_eq!(galaxy.get("k").await.unwrap(), value_of("k"));
    assert_eq!(start.elapsed(), std::time::Duration::ZERO, "no time passed");
    assert_eq!(backend.calls(), [["k"]]);
    let stats = galaxy.stats();
    assert_eq!((stats.backend_loads, stats.backend_batches), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn concurrent_loads_queue_behind_a_running_call_and_go_in_batches() {
    let backend = Recording::gated(0);
    let (_cluster, galaxy) = backend.galaxy();
    let keys: Vec<String> = (0..1000).map(|i| format!("key-{i}")).collect();
    let gets: Vec<_> = keys.iter().map(|k| spawn_get(&galaxy, k.clone())).collect();
    settle().await;
    // The first call (with the loads queued before its task ran) holds; full batches
    // started beside it (also held), the rest queue.
    let held = backend.calls();
    assert!(held.iter().all(|c| c.len() <= MAX_BATCH));
    assert!(
        held.len() <= 4,
        "at most four calls at once: {}",
        held.len()
    );
    backend.gate.add_permits(1000);
    for (get, key) in gets.into_iter().zip(&keys) {
        assert_eq!(get.await.unwrap().unwrap(), value_of(key));
    }
    let calls = backend.calls();
    assert!(calls.len() < keys.len(), "{} calls", calls.len());
    assert!(calls.iter().all(|c| c.len() <= MAX_BATCH));
    assert_eq!(backend.loads.total(), keys.len());
    assert!(keys.iter().all(|k| backend.loads.of(k) == 1));
    let stats = galaxy.stats();
    assert_eq!(stats.backend_loads, 1000);
    assert_eq!(stats.backend_batches, calls.len() as u64);
}

#[tokio::test(start_paused = true)]
async fn the_keys_of_a_get_many_go_in_one_call() {
    let backend = Recording::open();
    let (_cluster, galaxy) = backend.galaxy();
    let keys: Vec<String> = (0..100).map(|i| format!("key-{i}")).collect();
    let results = galaxy.get_many(&keys).await;
    for (key, result) in keys.iter().zip(results) {
        assert_eq!(result.unwrap(), value_of(key));
    }
    let calls = backend.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0], keys);
}

#[tokio::test(start_paused = true)]
async fn a_stampede_on_one_key_among_batches_loads_it_once() {
    let backend = Recording::gated(0);
    let (_cluster, galaxy) = backend.galaxy();
    let gets: Vec<_> = (0..1000)
        .flat_map(|i| ["hot".to_owned(), format!("cold-{i}")])
        .map(|k| (k.clone(), spawn_get(&galaxy, k)))
        .collect();
    settle().await;
    backend.gate.add_permits(10_000);
    for (key, get) in gets {
        assert_eq!(get.await.unwrap().unwrap(), value_of(&key));
    }
    assert_eq!(backend.loads.of("hot"), 1);
    assert_eq!(backend.loads.total(), 1001);
    assert!(backend.calls().len() < 1001);
    assert_eq!(galaxy.stats().coalesced_waits, 999);
}

#[tokio::test(start_paused = true)]
async fn errors_and_missing_keys_are_per_key_and_a_panic_fails_its_whole_batch() {
    let backend = Recording::gated(0);
    let (_cluster, galaxy) = backend.galaxy();
    let first = spawn_get(&galaxy, "first".into());
    settle().await;
    // Queued behind the first call: one batch of three.
    let bomb = spawn_get(&galaxy, "bomb".into());
    let fine = spawn_get(&galaxy, "fine".into());
    let gone = spawn_get(&galaxy, "missing".into());
    settle().await;
    backend.gate.add_permits(2);
    assert_eq!(first.await.unwrap().unwrap(), value_of("first"));
    for get in [bomb, fine, gone] {
        let e = get.await.expect("no task panics").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Panicked, "{e}");
        assert!(e.message().contains("exploded on bomb"), "{e}");
    }
    assert_eq!(
        backend.calls(),
        [vec!["first"], vec!["bomb", "fine", "missing"]]
    );

    // The node goes on: the keys load again, each its own answer.
    backend.gate.add_permits(100);
    let answers = galaxy.get_many(&["fine", "missing", "fail"]).await;
    assert_eq!(answers[0], Ok(value_of("fine")));
    assert_eq!(answers[1].as_ref().unwrap_err().kind(), ErrorKind::NotFound);
    assert_eq!(answers[2], Err(Error::backend("no database for fail")));
}

#[tokio::test(start_paused = true)]
async fn a_plain_backend_is_called_once_per_key_as_before() {
    let loads = Loads::default();
    let l = loads.clone();
    let backend = move |key: String| {
        let l = l.clone();
        async move {
            l.record(&key);
            answer(&key)
        }
    };
    let cluster = Cluster::with_backend(1, backend, |b| b, loads.clone());
    let galaxy = cluster.nodes[0].galaxy.clone();
    let answers = galaxy.get_many(&["a", "b", "missing"]).await;
    assert_eq!(answers[0], Ok(value_of("a")));
    assert_eq!(loads.total(), 3);
    assert_eq!(galaxy.stats().backend_batches, 0);
}

#[tokio::test]
async fn the_default_get_many_loops_over_get() {
    let backend = |key: String| async move { answer(&key) };
    let answers = backend.get_many(&["a", "missing", "fail"]).await;
    assert_eq!(
        answers,
        [
            Ok(Some(value_of("a"))),
            Ok(None),
            Err(Error::backend("no database for fail"))
        ]
    );
    assert!(!BackendGetter::batches(&backend));
}

fn key() -> impl Strategy<Value = String> {
    (prop_oneof!["k", "missing", "fail"], 0..8u8).prop_map(|(kind, i)| format!("{kind}-{i}"))
}

/// What the first node of a cluster of `nodes` answers for `keys`, asked in one
/// `get_many`, and asked of another such cluster one `get` at a time. With more than one
/// node, most keys are another node's: they travel in batches to their owners.
async fn many_equals_a_loop(
    nodes: usize,
    keys: Vec<String>,
) -> (Vec<Result<Value, Error>>, Vec<Result<Value, Error>>) {
    let (_batched_cluster, batched) = Recording::open().galaxy_of(nodes);
    let (_looped_cluster, looped) = Recording::open().galaxy_of(nodes);
    let many = batched.get_many(&keys).await;
    let mut each = Vec::new();
    for key in &keys {
        each.push(looped.get(key).await);
    }
    (many, each)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn get_many_answers_what_a_loop_of_get_answers(
        nodes in 1..=3usize,
        keys in proptest::collection::vec(key(), 0..40),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let (many, each) = runtime.block_on(many_equals_a_loop(nodes, keys));
        prop_assert_eq!(many, each);
    }
}
