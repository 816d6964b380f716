//! A fake galaxy behind a real peer server on a loopback socket.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use galaxycache_http::{Dialect, HttpProtocol, PeerService};
use galaxycache_universe::{
    BoxFuture, Error, ErrorKind, FetchResult, GalaxyHandler, RemoteFetcher, Universe, Value,
    WriteOp,
};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// When the value of key `expiring` expires.
pub fn expiry() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000)
}

/// A galaxy whose answer depends on the key: `missing` is NotFound, `fail` a load error,
/// `expiring` expires at [`expiry`], `half-second` 500 ms from now (see
/// [`Fake::sent_expiry`]), `hang` never answers, `gate` waits for [`Fake::gate`], `big:N`
/// is N bytes; any other key's value is the key itself.
///
/// It records every write it is asked to apply ([`Fake::writes`]) and has the version
/// [`Fake::version`] says.
#[derive(Debug, Default)]
pub struct Fake {
    /// Every write that reached the galaxy, in order.
    pub writes: Mutex<Vec<Written>>,
    /// The galaxy's version (0 unless set).
    pub version: AtomicU32,
    /// Every key asked for, with the deadline the server passed on.
    pub seen: Mutex<Vec<(String, Option<Instant>)>>,
    /// Notified when a `gate` request arrives.
    pub started: Notify,
    /// Lets a `gate` request answer.
    pub gate: Notify,
    /// The expiry of the last `half-second` value served.
    pub sent_expiry: Mutex<Option<SystemTime>>,
}

/// A write as the galaxy received it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Written {
    Remove(String),
    /// Key, value bytes, expiry.
    Set(String, Vec<u8>, Option<SystemTime>),
    Flush,
}

impl Fake {
    /// The writes received so far.
    pub fn writes(&self) -> Vec<Written> {
        self.writes.lock().unwrap().clone()
    }

    pub fn set_version(&self, version: u32) {
        self.version.store(version, Ordering::SeqCst);
    }

    pub fn last_seen(&self) -> (String, Option<Instant>) {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request reached the galaxy")
    }
}

impl GalaxyHandler for Fake {
    fn serve_get<'a>(
        &'a self,
        key: &'a str,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, FetchResult> {
        self.seen.lock().unwrap().push((key.to_owned(), deadline));
        Box::pin(async move {
            match key {
                "missing" => Ok(None),
                "fail" => Err(Error::new(ErrorKind::Remote, "backend exploded")),
                "expiring" => Ok(Some(Value::expiring("soon", expiry()))),
                "half-second" => {
                    let at = SystemTime::now() + Duration::from_millis(500);
                    *self.sent_expiry.lock().unwrap() = Some(at);
                    Ok(Some(Value::expiring("soon", at)))
                }
                "hang" => std::future::pending().await,
                "gate" => {
                    self.started.notify_one();
                    self.gate.notified().await;
                    Ok(Some(Value::new("opened")))
                }
                k => match k.strip_prefix("big:").and_then(|n| n.parse().ok()) {
                    Some(n) => Ok(Some(Value::new(vec![b'x'; n]))),
                    None => Ok(Some(Value::new(k.to_owned()))),
                },
            }
        })
    }

    fn serve_peek(&self, _: &str) -> Option<Value> {
        None
    }
    fn serve_write(&self, op: WriteOp<'_>) -> Result<(), Error> {
        let written = match op {
            WriteOp::Remove(key) => Written::Remove(key.to_owned()),
            WriteOp::Set(key, value) => {
                Written::Set(key.to_owned(), value.bytes().to_vec(), value.expires_at())
            }
            WriteOp::Flush => Written::Flush,
        };
        self.writes.lock().unwrap().push(written);
        Ok(())
    }
    fn version(&self) -> u32 {
        self.version.load(Ordering::SeqCst)
    }
}

/// A peer server on 127.0.0.1 answering for galaxy `g` (a [`Fake`]).
pub struct Node {
    pub addr: SocketAddr,
    pub url: String,
    pub universe: Universe,
    pub fake: Arc<Fake>,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<()>,
}

impl Node {
    pub async fn start(dialect: Dialect) -> Node {
        Self::start_with(dialect, Universe::builder("http://self")).await
    }

    pub async fn start_with(
        dialect: Dialect,
        builder: galaxycache_universe::UniverseBuilder,
    ) -> Node {
        Self::start_configured(dialect, builder, |service| service).await
    }

    /// A node whose peer service `configure` sets up.
    pub async fn start_configured(
        dialect: Dialect,
        builder: galaxycache_universe::UniverseBuilder,
        configure: impl FnOnce(PeerService) -> PeerService,
    ) -> Node {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let universe = builder.build();
        let fake = Arc::new(Fake::default());
        let handler: Arc<dyn GalaxyHandler> = fake.clone();
        universe.register("g", Arc::downgrade(&handler)).unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = configure(PeerService::new(universe.clone(), dialect));
        let serving = tokio::spawn(server.serve(listener, async {
            stopped.await.ok();
        }));
        Node {
            addr,
            url: format!("http://{addr}"),
            universe,
            fake,
            stop,
            serving,
        }
    }

    /// Stop the server and wait (bounded) for `serve` to return.
    pub async fn stop(self) {
        self.stop.send(()).ok();
        tokio::time::timeout(Duration::from_secs(5), self.serving)
            .await
            .expect("serve() did not return after shutdown")
            .unwrap();
    }
}

pub fn fetcher(protocol: HttpProtocol, url: &str) -> Arc<dyn RemoteFetcher> {
    use galaxycache_universe::FetchProtocol;
    protocol.connect(url).unwrap()
}

pub fn client(dialect: Dialect, url: &str) -> Arc<dyn RemoteFetcher> {
    fetcher(HttpProtocol::builder().dialect(dialect).build(), url)
}

pub fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}
