//! Three nodes over real loopback sockets, each its own universe, for each wire: HTTP in
//! the galaxycache and groupcache dialects, and gRPC. One backend load per key in the
//! cluster, the same values everywhere, an owner that stops mid-run, an owner that hangs,
//! and remove, set and flush reaching every node.
#![cfg(all(feature = "http", feature = "grpc"))]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use galaxycache::grpc::{GrpcProtocol, GrpcServer};
use galaxycache::http::{Dialect, HttpProtocol, PeerService};
use galaxycache::universe::FetchProtocol;
use galaxycache::{Error, Galaxy, Universe, Value};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

const GALAXY: &str = "users";

/// How the nodes of a cluster speak to each other.
#[derive(Clone, Copy, Debug)]
enum Wire {
    Http(Dialect),
    Grpc,
}

impl Wire {
    fn protocol(self) -> Arc<dyn FetchProtocol> {
        match self {
            Wire::Http(dialect) => Arc::new(HttpProtocol::builder().dialect(dialect).build()),
            Wire::Grpc => Arc::new(GrpcProtocol::new()),
        }
    }

    /// Serve `universe`'s peers on `listener` until `shutdown`.
    fn serve(
        self,
        universe: Universe,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> JoinHandle<()> {
        match self {
            Wire::Http(dialect) => {
                tokio::spawn(PeerService::new(universe, dialect).serve(listener, shutdown))
            }
            Wire::Grpc => tokio::spawn(async move {
                let served = GrpcServer::new(universe).serve(listener, shutdown).await;
                served.expect("the gRPC server failed");
            }),
        }
    }
}
const WORKERS_PER_NODE: usize = 16;

fn value_of(key: &str) -> Value {
    Value::new(format!("value of {key}"))
}

/// Backend loads per key, across the whole cluster; and the data source's changes, if any
/// (a key not written answers `value_of(key)`).
#[derive(Clone, Default)]
struct Loads {
    loads: Arc<Mutex<HashMap<String, u32>>>,
    written: Arc<Mutex<HashMap<String, String>>>,
}

impl Loads {
    fn backend(
        &self,
    ) -> impl Fn(String) -> std::future::Ready<Result<Option<Value>, Error>> + use<> {
        let this = self.clone();
        move |key: String| {
            let value = match this.written.lock().unwrap().get(&key) {
                Some(written) => Value::new(written.clone()),
                None => value_of(&key),
            };
            *this.loads.lock().unwrap().entry(key).or_default() += 1;
            std::future::ready(Ok(Some(value)))
        }
    }

    fn per_key(&self) -> HashMap<String, u32> {
        self.loads.lock().unwrap().clone()
    }

    /// Change the data source's value of `key`.
    fn write(&self, key: &str, value: &str) {
        self.written
            .lock()
            .unwrap()
            .insert(key.to_owned(), value.to_owned());
    }
}

struct Node {
    galaxy: Galaxy,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<()>,
}

impl Node {
    async fn stop(self) {
        self.stop.send(()).ok();
        tokio::time::timeout(Duration::from_secs(10), self.serving)
            .await
            .expect("serve() did not return")
            .unwrap();
    }
}

/// `n` nodes, plus peers at `extra_peers` (which nobody serves here), all on one ring.
async fn cluster(
    wire: Wire,
    n: usize,
    extra_peers: &[String],
    peer_timeout: Duration,
    loads: &Loads,
) -> Vec<Node> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        listeners.push((listener, url));
    }
    let mut peers: Vec<String> = listeners.iter().map(|(_, url)| url.clone()).collect();
    peers.extend_from_slice(extra_peers);
    let mut nodes = Vec::new();
    for (listener, url) in listeners {
        let universe = Universe::builder(&url).protocol(wire.protocol()).build();
        universe.set_peers(&peers).unwrap();
        let galaxy = Galaxy::builder(&universe, GALAXY, 64 << 20, loads.backend())
            .peer_timeout(peer_timeout)
            .build()
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = wire.serve(universe, listener, async {
            stopped.await.ok();
        });
        nodes.push(Node {
            galaxy,
            stop,
            serving,
        });
    }
    nodes
}

fn keys(n: usize) -> Arc<Vec<String>> {
    // `/` and non-ASCII travel escaped in both HTTP dialects (spaces would not in the
    // groupcache dialect: see Dialect).
    Arc::new((0..n).map(|i| format!("user/{i}/ü")).collect())
}

/// Every key from every galaxy, `WORKERS_PER_NODE` gets at a time per galaxy; calls
/// `on_progress` with the number of gets done after each get. Panics on any failed get.
async fn get_everything(
    galaxies: &[Galaxy],
    keys: &Arc<Vec<String>>,
    on_progress: Arc<dyn Fn(usize) + Send + Sync>,
) {
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (node, galaxy) in galaxies.iter().enumerate() {
        for worker in 0..WORKERS_PER_NODE {
            let (galaxy, keys, done, on_progress) = (
                galaxy.clone(),
                keys.clone(),
                done.clone(),
                on_progress.clone(),
            );
            tasks.push(tokio::spawn(async move {
                for key in keys.iter().skip(worker).step_by(WORKERS_PER_NODE) {
                    let got = galaxy.get(key).await;
                    let got = got.unwrap_or_else(|e| panic!("node {node}, key {key}: {e}"));
                    // Bytes only: a value loaded locally after its owner failed expires soon.
                    assert_eq!(got.bytes(), value_of(key).bytes(), "node {node}, key {key}");
                    on_progress(done.fetch_add(1, Ordering::Relaxed) + 1);
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
}

async fn each_key_is_loaded_once(wire: Wire) {
    let loads = Loads::default();
    let nodes = cluster(wire, 3, &[], Duration::from_secs(10), &loads).await;
    let keys = keys(10_000);
    let galaxies: Vec<Galaxy> = nodes.iter().map(|n| n.galaxy.clone()).collect();
    get_everything(&galaxies, &keys, Arc::new(|_| {})).await;

    let per_key = loads.per_key();
    assert_eq!(per_key.len(), keys.len(), "every key was loaded");
    let twice: Vec<_> = per_key.iter().filter(|(_, n)| **n != 1).take(5).collect();
    assert!(twice.is_empty(), "loaded more than once: {twice:?}");
    for (i, node) in nodes.iter().enumerate() {
        let s = node.galaxy.stats();
        assert_eq!(s.gets, keys.len() as u64, "node {i}");
        assert_eq!(
            (s.peer_errors, s.local_fallbacks),
            (0, 0),
            "node {i}: {s:?}"
        );
        assert!(s.peer_loads > 0 && s.server_requests > 0, "node {i}: {s:?}");
    }
    for node in nodes {
        node.stop().await;
    }
}

async fn an_owner_stopping_mid_run_fails_no_get(wire: Wire) {
    let loads = Loads::default();
    let mut nodes = cluster(wire, 3, &[], Duration::from_secs(10), &loads).await;
    let stopped = nodes.pop().unwrap();
    let keys = keys(3_000);
    let galaxies: Vec<Galaxy> = nodes.iter().map(|n| n.galaxy.clone()).collect();
    let total = galaxies.len() * keys.len();
    // Stop the third node's server (and drop its galaxy) a quarter of the way through.
    let quarter = Arc::new(Notify::new());
    let stopping = tokio::spawn({
        let quarter = quarter.clone();
        async move {
            quarter.notified().await;
            stopped.stop().await;
        }
    });
    let progress = {
        let quarter = quarter.clone();
        Arc::new(move |done: usize| {
            if done == total / 4 {
                quarter.notify_one();
            }
        })
    };
    get_everything(&galaxies, &keys, progress).await;
    stopping.await.unwrap();

    let fallbacks: u64 = nodes.iter().map(|n| n.galaxy.stats().local_fallbacks).sum();
    assert!(fallbacks > 0, "no get noticed the stopped owner");
    for node in nodes {
        node.stop().await;
    }
}

/// A peer that accepts connections and never answers.
async fn hanging_peer() -> (String, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    (url, task)
}

async fn a_hanging_owner_costs_one_peer_timeout(wire: Wire) {
    let peer_timeout = Duration::from_millis(200);
    let (hanging_url, hanging) = hanging_peer().await;
    let loads = Loads::default();
    let nodes = cluster(
        wire,
        2,
        std::slice::from_ref(&hanging_url),
        peer_timeout,
        &loads,
    )
    .await;
    let galaxy = nodes[0].galaxy.clone();
    let universe = galaxy.universe().clone();
    let hung_keys: Vec<String> = (0..)
        .map(|i| format!("key-{i}"))
        .filter(|k| universe.owner_url(k) == hanging_url)
        .take(50)
        .collect();
    let start = Instant::now();
    let mut gets = Vec::new();
    for key in hung_keys.clone() {
        let galaxy = galaxy.clone();
        gets.push(tokio::spawn(async move {
            galaxy.get(&key).await.map(|v| (key, v))
        }));
    }
    for get in gets {
        let (key, v) = get
            .await
            .unwrap()
            .expect("a hanging owner must not fail a get");
        assert_eq!(v.bytes(), value_of(&key).bytes());
    }
    let elapsed = start.elapsed();
    assert!(
        elapsed >= peer_timeout,
        "{elapsed:?}: the owner was not waited for"
    );
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let s = galaxy.stats();
    assert_eq!(s.local_fallbacks, hung_keys.len() as u64, "{s:?}");
    hanging.abort();
    for node in nodes {
        node.stop().await;
    }
}

/// Removes and sets from every node in turn, then a flush: every node serves the new
/// values, each loaded once in the cluster. The groupcache dialect has no write verbs:
/// there, every peer refuses, and says so in the report.
async fn writes_reach_every_node(wire: Wire) {
    let loads = Loads::default();
    let nodes = cluster(wire, 3, &[], Duration::from_secs(10), &loads).await;
    let galaxies: Vec<Galaxy> = nodes.iter().map(|n| n.galaxy.clone()).collect();
    let keys = keys(60);
    get_everything(&galaxies, &keys, Arc::new(|_| {})).await;
    let can_write = !matches!(wire, Wire::Http(Dialect::Groupcache));
    for (i, key) in keys.iter().enumerate() {
        let (writer, new) = (&galaxies[i % 3], format!("new {key}"));
        loads.write(key, &new);
        let report = if i % 2 == 0 {
            writer.remove(key).await.unwrap()
        } else {
            writer.set(key, Value::new(new.clone())).await.unwrap()
        };
        if !can_write {
            assert_eq!(report.refused.len(), 2, "{report:?}");
            continue;
        }
        assert!(report.is_complete(), "{key}: {report:?}");
        for (node, galaxy) in galaxies.iter().enumerate() {
            let got = galaxy.get(key).await.unwrap();
            assert_eq!(got.bytes(), new.as_bytes(), "node {node}, key {key}");
        }
        let expected = if i % 2 == 0 { 2 } else { 1 };
        assert_eq!(loads.per_key()[key], expected, "loads of {key}");
    }
    if can_write {
        for key in keys.iter() {
            loads.write(key, "after the flush");
        }
        let report = galaxies[1].flush().await;
        assert!(report.is_complete(), "{report:?}");
        let before: u32 = loads.per_key().values().sum();
        for galaxy in &galaxies {
            for key in keys.iter() {
                assert_eq!(
                    galaxy.get(key).await.unwrap().bytes().as_ref(),
                    b"after the flush"
                );
            }
        }
        let after: u32 = loads.per_key().values().sum();
        assert_eq!(
            after - before,
            keys.len() as u32,
            "one load per key after the flush"
        );
    }
    for node in nodes {
        node.stop().await;
    }
}

/// One test per scenario and wire.
macro_rules! for_each_wire {
    ($($scenario:ident),*) => {
        mod galaxycache_dialect {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(Wire::Http(Dialect::Galaxycache)).await; })*
        }
        mod groupcache_dialect {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(Wire::Http(Dialect::Groupcache)).await; })*
        }
        mod grpc {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() { super::$scenario(Wire::Grpc).await; })*
        }
    };
}

for_each_wire!(
    each_key_is_loaded_once,
    an_owner_stopping_mid_run_fails_no_get,
    a_hanging_owner_costs_one_peer_timeout,
    writes_reach_every_node
);
