//! Three nodes on loopback, each its own universe, fetching from each other over gRPC.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use galaxycache::{Error, Galaxy, Universe, Value};
use galaxycache_grpc::{GrpcProtocol, GrpcServer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Bound on anything that should finish promptly; only a broken cluster reaches it.
const PATIENCE: Duration = Duration::from_secs(120);
/// Gets in flight at once per node.
const CONCURRENCY: usize = 64;

fn value_of(key: &str) -> String {
    format!("value of {key}")
}

fn keys(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("key-{i}")).collect()
}

/// Backend loads per key, across the whole cluster.
#[derive(Clone, Default)]
struct Loads(Arc<Mutex<HashMap<String, u32>>>);

impl Loads {
    /// A backend that counts its loads here.
    fn backend(
        &self,
    ) -> impl Fn(String) -> std::future::Ready<Result<Option<Value>, Error>> + use<> {
        let loads = self.clone();
        move |key: String| {
            *loads.0.lock().unwrap().entry(key.clone()).or_default() += 1;
            std::future::ready(Ok(Some(Value::new(value_of(&key)))))
        }
    }
}

struct Node {
    galaxy: Galaxy,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), galaxycache::universe::Error>>,
}

impl Node {
    /// Graceful shutdown; waits (boundedly) for the server to return.
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        tokio::time::timeout(PATIENCE, &mut self.server)
            .await
            .expect("graceful shutdown returns")
            .unwrap()
            .unwrap();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn bind() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

fn start_node(
    listener: TcpListener,
    url: &str,
    peers: &[String],
    loads: &Loads,
    peer_timeout: Duration,
) -> Node {
    let universe = Universe::builder(url)
        .protocol(Arc::new(GrpcProtocol::new()))
        .build();
    universe.set_peers(peers).unwrap();
    let galaxy = Galaxy::builder(&universe, "g", 64 << 20, loads.backend())
        .peer_timeout(peer_timeout)
        .build()
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(GrpcServer::new(universe).serve(listener, async {
        stopped.await.ok();
    }));
    Node {
        galaxy,
        stop: Some(stop),
        server,
    }
}

async fn start_cluster(n: usize, loads: &Loads, peer_timeout: Duration) -> Vec<Node> {
    let mut bound = Vec::new();
    for _ in 0..n {
        bound.push(bind().await);
    }
    let urls: Vec<String> = bound.iter().map(|(_, url)| url.clone()).collect();
    bound
        .into_iter()
        .map(|(listener, url)| start_node(listener, &url, &urls, loads, peer_timeout))
        .collect()
}

/// Get every key, `CONCURRENCY` at a time; the results in the keys' order.
async fn get_all(galaxy: Galaxy, keys: Arc<Vec<String>>) -> Vec<Result<Value, Error>> {
    let mut results = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(CONCURRENCY) {
        let gets: Vec<_> = chunk
            .iter()
            .map(|key| {
                let (galaxy, key) = (galaxy.clone(), key.clone());
                tokio::spawn(async move { galaxy.get(&key).await })
            })
            .collect();
        for get in gets {
            results.push(get.await.unwrap());
        }
    }
    results
}

/// Every get succeeded with the key's one true value.
fn assert_all_correct(node: usize, keys: &[String], results: Vec<Result<Value, Error>>) {
    assert_eq!(results.len(), keys.len());
    for (key, result) in keys.iter().zip(results) {
        match result {
            Ok(v) => assert_eq!(v.bytes(), value_of(key).as_bytes(), "node {node}, {key}"),
            Err(e) => panic!("node {node}: get {key:?} failed: {e}"),
        }
    }
}

async fn run_everywhere(nodes: &[&Node], keys: &Arc<Vec<String>>) {
    let runs: Vec<_> = nodes
        .iter()
        .map(|n| tokio::spawn(get_all(n.galaxy.clone(), Arc::clone(keys))))
        .collect();
    for (i, run) in runs.into_iter().enumerate() {
        let results = tokio::time::timeout(PATIENCE, run).await.unwrap().unwrap();
        assert_all_correct(i, keys, results);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_key_is_loaded_once_in_the_cluster_and_reads_the_same_everywhere() {
    let loads = Loads::default();
    // A peer timeout no healthy loopback fetch reaches: a fallback would load twice.
    let nodes = start_cluster(3, &loads, Duration::from_secs(60)).await;
    let keys = Arc::new(keys(0..10_000));

    run_everywhere(&nodes.iter().collect::<Vec<_>>(), &keys).await;

    {
        let loads = loads.0.lock().unwrap();
        assert_eq!(loads.len(), keys.len(), "every key was loaded");
        let twice: Vec<_> = loads.iter().filter(|(_, n)| **n != 1).take(5).collect();
        assert!(twice.is_empty(), "loaded more than once: {twice:?}");
    }
    let stats: Vec<_> = nodes.iter().map(|n| n.galaxy.stats()).collect();
    assert_eq!(stats.iter().map(|s| s.backend_loads).sum::<u64>(), 10_000);
    for (i, s) in stats.iter().enumerate() {
        assert!(s.backend_loads > 0, "node {i} owns a shard: {s:?}");
        assert!(s.peer_loads > 0, "node {i} fetched from its peers: {s:?}");
        assert!(s.server_requests > 0, "node {i} served its peers: {s:?}");
        assert_eq!(s.peer_errors, 0, "node {i}: {s:?}");
        assert_eq!(s.local_fallbacks, 0, "node {i}: {s:?}");
    }
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_get_fails_while_an_owner_shuts_down() {
    let loads = Loads::default();
    let mut nodes = start_cluster(3, &loads, Duration::from_secs(10)).await;
    let victim = nodes.pop().unwrap();
    let survivors: Vec<&Node> = nodes.iter().collect();

    let before = Arc::new(keys(0..2_000));
    run_everywhere(&survivors, &before).await;

    // Survivors keep getting while the owner of a third of the keys shuts down.
    let during = Arc::new(keys(2_000..6_000));
    let runs: Vec<_> = survivors
        .iter()
        .map(|n| tokio::spawn(get_all(n.galaxy.clone(), Arc::clone(&during))))
        .collect();
    victim.stop().await;
    for (i, run) in runs.into_iter().enumerate() {
        let results = tokio::time::timeout(PATIENCE, run).await.unwrap().unwrap();
        assert_all_correct(i, &during, results);
    }

    // With the owner gone for good, its keys are loaded by whoever asks.
    let after = Arc::new(keys(6_000..8_000));
    run_everywhere(&survivors, &after).await;
    let fallbacks: u64 = survivors
        .iter()
        .map(|n| n.galaxy.stats().local_fallbacks)
        .sum();
    assert!(fallbacks > 0, "keys of the dead owner were loaded locally");
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_owner_costs_at_most_the_peer_timeout() {
    // Accepts connections and never says a word.
    let (hanging, hang_url) = bind().await;
    let hang = tokio::spawn(async move {
        let mut held = Vec::new();
        for _ in 0..1_000 {
            match hanging.accept().await {
                Ok((socket, _)) => held.push(socket),
                Err(_) => break,
            }
        }
        std::future::pending::<()>().await;
    });

    let loads = Loads::default();
    let peer_timeout = Duration::from_millis(200);
    let (listener, url) = bind().await;
    let node = start_node(
        listener,
        &url,
        &[url.clone(), hang_url.clone()],
        &loads,
        peer_timeout,
    );
    let universe = node.galaxy.universe().clone();
    let theirs: Vec<String> = (0..)
        .map(|i| format!("key-{i}"))
        .filter(|k| universe.owner_url(k) == hang_url)
        .take(50)
        .collect();

    let start = Instant::now();
    let results = get_all(node.galaxy.clone(), Arc::new(theirs.clone())).await;
    let took = start.elapsed();
    assert_all_correct(0, &theirs, results);
    // All 50 run concurrently: one peer timeout, plus instant backend loads, plus
    // generous room for a loaded machine.
    assert!(took < peer_timeout + Duration::from_secs(10), "{took:?}");
    assert!(took >= peer_timeout, "the owner was waited for: {took:?}");
    let s = node.galaxy.stats();
    assert_eq!(s.local_fallbacks, 50, "{s:?}");
    assert_eq!(s.backend_loads, 50, "{s:?}");

    node.stop().await;
    hang.abort();
}
