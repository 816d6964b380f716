//! A fake galaxy behind a real gRPC server on loopback, for the tests of this crate.

#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use galaxycache_grpc::GrpcServer;
use galaxycache_universe::{
    BoxFuture, Error, ErrorKind, FetchResult, GalaxyHandler, Universe, UniverseBuilder, Value,
    WriteOp,
};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Bound on anything a test waits for that should happen at once.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// The expiry the fake gives the key `expiring`.
pub fn fixed_expiry() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(2_000_000_000, 123_456_789)
}

/// A galaxy whose answers depend on the key:
/// `missing` -> no such key; `fail` -> a load error; `expiring` -> a value with
/// [`fixed_expiry`]; `big` -> 4 KiB of `b`; `gate` -> waits until [`Fake::open_gate`];
/// anything else -> `v:{key}`. Peeks find only `cached`.
#[derive(Debug, Default)]
pub struct Fake {
    pub calls: AtomicU64,
    pub deadlines: Mutex<Vec<Option<Instant>>>,
    pub entered_gate: Notify,
    gate: Notify,
}

impl Fake {
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
        (key == "cached").then(|| Value::new("from cache"))
    }
    fn serve_write(&self, _: WriteOp<'_>) -> Result<(), Error> {
        Ok(())
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let universe = configure(Universe::builder(url.clone())).build();
        let fake = Arc::new(Fake::default());
        let handler: Arc<dyn GalaxyHandler> = fake.clone();
        universe.register("g", Arc::downgrade(&handler)).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(GrpcServer::new(universe.clone()).serve(listener, async {
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
