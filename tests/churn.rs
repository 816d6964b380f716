//! Churn under load over real loopback sockets (HTTP, galaxycache dialect): 3 nodes, then a
//! fourth joins, then it leaves again, while clients get 10k keys from every node. No get
//! fails; backend loads beyond the first load of each key stay within the keys whose
//! owner changed, and the warm hand-off (a new owner peeks the previous one) cuts them.
#![cfg(feature = "http")]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use galaxycache::http::{Dialect, HttpProtocol, PeerService};
use galaxycache::{Error, Galaxy, Universe, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const KEYS: usize = 10_000;
const CLIENTS_PER_NODE: usize = 4;

fn value_of(key: &str) -> Value {
    Value::new(format!("value of {key}"))
}

struct Node {
    url: String,
    universe: Universe,
    galaxy: Galaxy,
    stop: oneshot::Sender<()>,
}

async fn node(
    listener: TcpListener,
    warmup: Duration,
    loads: &Arc<Mutex<HashMap<String, u32>>>,
) -> Node {
    let url = format!("http://{}", listener.local_addr().unwrap());
    let protocol = HttpProtocol::builder()
        .dialect(Dialect::Galaxycache)
        .build();
    let universe = Universe::builder(&url)
        .protocol(Arc::new(protocol))
        .handoff_warmup(warmup)
        .build();
    let loads = Arc::clone(loads);
    let backend = move |key: String| {
        let loads = Arc::clone(&loads);
        async move {
            *loads.lock().unwrap().entry(key.clone()).or_default() += 1;
            Ok::<_, Error>(Some(value_of(&key)))
        }
    };
    let galaxy = Galaxy::builder(&universe, "g", 256 << 20, backend)
        .promoter(galaxycache::promoter::NeverPromote)
        .build()
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        PeerService::new(universe.clone(), Dialect::Galaxycache).serve(listener, async {
            stopped.await.ok();
        }),
    );
    Node {
        url,
        universe,
        galaxy,
        stop,
    }
}

/// What one churn run measured.
#[derive(Debug)]
struct Churn {
    moved: usize,
    extra_loads: u32,
    gets: usize,
    handoff_hits: u64,
}

async fn churn(warmup: Duration) -> Churn {
    let loads = Arc::new(Mutex::new(HashMap::new()));
    let mut nodes = Vec::new();
    for _ in 0..4 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        nodes.push(node(listener, warmup, &loads).await);
    }
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    for n in &nodes[..3] {
        n.universe.set_peers(&urls[..3]).unwrap();
    }
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|i| format!("key-{i}")).collect());

    // Clients get random keys until told to stop, counting gets and failures: on the
    // first three nodes throughout, on the fourth while it is in the ring.
    let (gets, failures) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(Mutex::new(Vec::<String>::new())),
    );
    let clients = |n: usize, galaxy: &Galaxy, stop: &Arc<AtomicBool>| {
        (0..CLIENTS_PER_NODE)
            .map(|c| {
                let (galaxy, keys, stop, gets, failures) = (
                    galaxy.clone(),
                    Arc::clone(&keys),
                    Arc::clone(stop),
                    Arc::clone(&gets),
                    Arc::clone(&failures),
                );
                let mut rng = fastrand::Rng::with_seed((n * 31 + c) as u64);
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let key = &keys[rng.usize(..keys.len())];
                        match galaxy.get(key).await {
                            Ok(v) if v.bytes() == value_of(key).bytes() => {}
                            other => failures.lock().unwrap().push(format!("{key}: {other:?}")),
                        }
                        gets.fetch_add(1, Ordering::Relaxed);
                        // A hit never waits: give the other tasks (servers, the test) a turn.
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect::<Vec<_>>()
    };
    let wait_for_gets = |n: usize| {
        let gets = Arc::clone(&gets);
        async move {
            let target = gets.load(Ordering::Relaxed) + n;
            let reached = async {
                while gets.load(Ordering::Relaxed) < target {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            };
            tokio::time::timeout(Duration::from_secs(120), reached)
                .await
                .expect("the clients stopped getting");
        }
    };

    // Warm: every key loaded once through its owner.
    for (i, key) in keys.iter().enumerate() {
        nodes[i % 3].galaxy.get(key).await.unwrap();
    }
    let first: u32 = loads.lock().unwrap().values().sum();
    assert_eq!(first as usize, KEYS, "one load per key");
    let (stop, stop_fourth) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut running: Vec<_> = (0..3)
        .flat_map(|n| clients(n, &nodes[n].galaxy, &stop))
        .collect();
    wait_for_gets(5_000).await;

    // The fourth node joins, with clients of its own...
    for n in &nodes {
        n.universe.set_peers(&urls).unwrap();
    }
    let moved = keys
        .iter()
        .filter(|k| nodes[0].universe.owner_url(k) == urls[3])
        .count();
    let fourth = clients(3, &nodes[3].galaxy, &stop_fourth);
    wait_for_gets(3 * KEYS).await;
    // ...and leaves: the others drop it from their rings, then it stops.
    for n in &nodes[..3] {
        n.universe.set_peers(&urls[..3]).unwrap();
    }
    stop_fourth.store(true, Ordering::Relaxed);
    for c in fourth {
        c.await.unwrap();
    }
    wait_for_gets(3 * KEYS).await;

    stop.store(true, Ordering::Relaxed);
    for c in running.drain(..) {
        c.await.unwrap();
    }
    let failures = failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "{} failed gets, first: {:?}",
        failures.len(),
        failures.first()
    );
    let total: u32 = loads.lock().unwrap().values().sum();
    let handoff_hits = nodes.iter().map(|n| n.galaxy.stats().handoff_hits).sum();
    let gets = gets.load(Ordering::Relaxed);
    for n in nodes {
        n.stop.send(()).ok();
    }
    Churn {
        moved,
        extra_loads: total - first,
        gets,
        handoff_hits,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn churn_3_4_3_under_load_fails_no_get_and_the_hand_off_saves_the_reloads() {
    let without = churn(Duration::ZERO).await;
    let with = churn(Duration::from_secs(30)).await;
    println!("3 -> 4 -> 3 churn, {KEYS} keys: without hand-off {without:?}; with it {with:?}");
    for run in [&without, &with] {
        assert!(run.moved > 1_000, "{run:?}");
        assert!(
            run.gets >= 6 * KEYS,
            "the clients ran through both changes: {run:?}"
        );
        assert!(
            run.extra_loads as usize <= run.moved,
            "bounded by the moved keys: {run:?}"
        );
    }
    assert!(
        without.extra_loads as usize > without.moved / 2,
        "{without:?}"
    );
    assert!(
        with.extra_loads * 10 < without.extra_loads,
        "{with:?} vs {without:?}"
    );
    assert!(with.handoff_hits > 0);
}
