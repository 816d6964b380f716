//! A fake galaxy behind a real gRPC server on loopback, for the tests of this crate.

#![allow(dead_code, unreachable_pub)]

#[path = "../../../../tests/support/pki.rs"]
pub mod pki;
#[path = "../../../../tests/support/raw_grpc.rs"]
mod raw_grpc;

#[allow(unused_imports)] // not every test sends raw calls
pub use raw_grpc::{framed, post_raw};

use galaxycache_universe::InFlight;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use galaxycache_grpc::{GrpcProtocol, GrpcServer};
use galaxycache_universe::{
    BoxFuture, Error, ErrorKind, FetchProtocol, FetchResult, GalaxyHandler, RemoteFetcher,
    Universe, UniverseBuilder, Value, WriteOp,
};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

/// Bound on anything a test waits for that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The expiry the fake gives the key `expiring`.
pub fn fixed_expiry() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(2_000_000_000, 123_456_789)
}

/// The value with all three instants (to the nanosecond), that `all-instants` gets.
pub fn all_instants() -> Value {
    let at = |s| SystemTime::UNIX_EPOCH + Duration::new(s, 123_456_789);
    Value::expiring("all", at(2_000_000_001))
        .with_refresh_at(Some(at(2_000_000_000)))
        .with_stale_until(Some(at(2_000_000_002)))
}

/// Until when the cached miss of `absent` holds (below the millisecond too).
pub fn absent_until() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(2_000_000_003, 123_456_789)
}

/// The stale answer that `stale` gets: expired long ago, servable stale far ahead.
pub fn stale_answer() -> Value {
    let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
    Value::expiring("old", at(1_000_000_000)).with_stale_until(Some(at(2_000_000_004)))
}

/// A galaxy whose answers depend on the key:
/// `missing` -> no such key; `fail` -> a load error; `expiring` -> a value with
/// [`fixed_expiry`]; `all-instants` -> [`all_instants`]; `absent` -> a cached miss until
/// [`absent_until`]; `stale` -> [`stale_answer`]; `big` -> 4 KiB of `b`; `gate` -> waits
/// until [`Fake::open_gate`]; anything else -> `v:{key}`. Peeks find `cached`,
/// `all-instants` and `absent` (as above).
///
/// Writes are recorded in [`Fake::writes`], except those of the key `fail`, which fail as
/// [`ErrorKind::Remote`]. The galaxy's version is 0 until [`Fake::set_version`].
#[derive(Debug, Default)]
pub struct Fake {
    pub calls: AtomicU64,
    pub deadlines: Mutex<Vec<Option<Instant>>>,
    pub entered_gate: Notify,
    gate: Notify,
    writes: Mutex<Vec<Written>>,
    version: AtomicU32,
}

/// A write as the fake received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    Remove(String),
    Set(String, Value),
    Flush,
}

impl Written {
    fn of(op: WriteOp<'_>) -> Written {
        match op {
            WriteOp::Remove(key) => Written::Remove(key.to_owned()),
            WriteOp::Set(key, value) => Written::Set(key.to_owned(), value.clone()),
            WriteOp::Flush => Written::Flush,
        }
    }
}

impl Fake {
    /// Every write applied so far, in order.
    pub fn writes(&self) -> Vec<Written> {
        self.writes.lock().unwrap().clone()
    }

    /// The galaxy's version from now on.
    pub fn set_version(&self, version: u32) {
        self.version.store(version, Ordering::SeqCst);
    }

    /// Let every request waiting at `gate` (and the next one) go on.
    pub fn open_gate(&self) {
        self.gate.notify_waiters();
        self.gate.notify_one();
    }
}

impl GalaxyHandler for Fake {
    fn serve_get<'a>(
        &'a self,
        key: &'a str,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, FetchResult> {
        Box::pin(async move {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.deadlines.lock().unwrap().push(deadline);
            match key {
                "missing" => Ok(None),
                "fail" => Err(Error::new(ErrorKind::Remote, "backend exploded")),
                "expiring" => Ok(Some(Value::expiring("soon gone", fixed_expiry()))),
                "all-instants" => Ok(Some(all_instants())),
                "absent" => Ok(Some(Value::absent(absent_until()))),
                "stale" => Ok(Some(stale_answer())),
                "big" => Ok(Some(Value::new(vec![b'b'; 4096]))),
                "gate" => {
                    let opened = self.gate.notified();
                    self.entered_gate.notify_one();
                    opened.await;
                    Ok(Some(Value::new("through the gate")))
                }
                _ => Ok(Some(Value::new(format!("v:{key}")))),
            }
        })
    }

    fn serve_peek(&self, key: &str) -> Option<Value> {
        match key {
            "cached" => Some(Value::new("from cache")),
            "all-instants" => Some(all_instants()),
            "absent" => Some(Value::absent(absent_until())),
            _ => None,
        }
    }
    fn serve_write(&self, op: WriteOp<'_>) -> Result<(), Error> {
        if op.key() == Some("fail") {
            return Err(Error::new(ErrorKind::Remote, "the write failed here"));
        }
        self.writes.lock().unwrap().push(Written::of(op));
        Ok(())
    }

    fn version(&self) -> u32 {
        self.version.load(Ordering::SeqCst)
    }
}

/// A universe with the [`Fake`] registered as galaxy `g`, served over gRPC on loopback.
pub struct Node {
    pub url: String,
    pub universe: Universe,
    /// The galaxy `g`; the universe holds it weakly, so it lives as long as the node.
    pub fake: Arc<Fake>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<Result<(), Error>>,
}

impl Node {
    pub async fn start() -> Node {
        Node::start_with(|b| b).await
    }

    pub async fn start_with(configure: impl FnOnce(UniverseBuilder) -> UniverseBuilder) -> Node {
        Node::start_configured(configure, |s| s).await
    }

    /// A node whose universe and server are configured by the two functions.
    pub async fn start_configured(
        configure: impl FnOnce(UniverseBuilder) -> UniverseBuilder,
        server: impl FnOnce(GrpcServer) -> GrpcServer,
    ) -> Node {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let universe = configure(Universe::builder(url.clone())).build();
        let fake = Arc::new(Fake::default());
        let handler: Arc<dyn GalaxyHandler> = fake.clone();
        universe.register("g", Arc::downgrade(&handler)).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = server(GrpcServer::new(universe.clone()));
        let server = tokio::spawn(server.serve(listener, async {
            stopped.await.ok();
        }));
        Node {
            url,
            universe,
            fake,
            stop: Some(stop),
            server,
        }
    }

    /// Signal shutdown without waiting for it.
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
    }

    /// Shut the server down and wait, boundedly, for `serve` to return.
    pub async fn stop(mut self) -> Result<(), Error> {
        self.signal_stop();
        tokio::time::timeout(PATIENCE, &mut self.server)
            .await
            .expect("graceful shutdown did not return")
            .unwrap()
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// A deadline far enough away that only a broken server misses it.
pub fn later() -> Instant {
    Instant::now() + PATIENCE
}

/// A fetcher for `node`, as a universe would make it.
pub fn fetcher(node: &Node) -> Arc<dyn RemoteFetcher> {
    GrpcProtocol::new()
        .connect(&node.url, &InFlight::unbounded())
        .unwrap()
}

/// A channel of its own to `node`, for the generated client or raw calls.
pub async fn channel(node: &Node) -> Channel {
    Endpoint::from_shared(node.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The server still answers a well-formed fetch.
pub async fn still_serving(node: &Node) {
    let v = fetcher(node)
        .fetch("g".into(), "after", later())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.bytes().as_ref(), b"v:after");
}
