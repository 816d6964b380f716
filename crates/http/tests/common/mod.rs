//! A fake galaxy behind a real peer server on a loopback socket.
#![allow(dead_code, unreachable_pub)]

#[path = "../../../../tests/support/pki.rs"]
pub mod pki;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use galaxycache_http::{Dialect, HttpProtocol, PeerService};
use galaxycache_universe::{
    BoxFuture, Error, ErrorKind, FetchResult, GalaxyHandler, InFlight, RemoteFetcher, Universe,
    Value, WriteOp,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// When the value of key `expiring` expires.
pub fn expiry() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000)
}

/// Refresh, expiry and stale limit of the value of key `all-instants`, each with a part
/// below the millisecond, which the wire truncates.
pub fn instants() -> [SystemTime; 3] {
    let sub_ms = Duration::from_micros(999);
    [4_000_000_000_000, 4_000_000_001_000, 4_000_000_002_000]
        .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms) + sub_ms)
}

/// Until when the cached miss of key `absent` holds (with a part below the millisecond).
pub fn absent_until() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_micros(4_000_000_003_000_999)
}

/// The expiry (long past) and the stale limit (far ahead) of the value of key `stale`.
pub fn stale_instants() -> [SystemTime; 2] {
    [1_000_000_000_000, 4_000_000_004_000]
        .map(|ms| SystemTime::UNIX_EPOCH + Duration::from_millis(ms))
}

/// `at`, truncated to the millisecond, as the wire carries it.
pub fn to_ms(at: SystemTime) -> SystemTime {
    let since = at.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_millis(since.as_millis().try_into().unwrap())
}

/// A galaxy whose answer depends on the key: `missing` is NotFound, `fail` a load error,
/// `expiring` expires at [`expiry`], `half-second` 500 ms from now (see
/// [`Fake::sent_expiry`]), `all-instants` has all of [`instants`], `absent` is a cached
/// miss until [`absent_until`], `stale` a stale answer ([`stale_instants`]), `hang` never
/// answers, `gate` waits for [`Fake::gate`], `big:N` is N bytes; any other key's value is
/// the key itself.
///
/// A peek ([`GalaxyHandler::serve_peek`]) never loads: it finds what a fetch of `expiring`,
/// `all-instants`, `absent` or `stale` answers, nothing for `missing`, `fail` and keys
/// starting with `cold`, and for any other key the key itself. Peeks are recorded in
/// [`Fake::peeked`], loads in [`Fake::seen`] alone.
///
/// It records every write it is asked to apply ([`Fake::writes`], and each set's value
/// whole in [`Fake::set_values`]) and has the version [`Fake::version`] says.
#[derive(Debug, Default)]
pub struct Fake {
    /// Every write that reached the galaxy, in order.
    pub writes: Mutex<Vec<Written>>,
    /// The galaxy's version (0 unless set).
    pub version: AtomicU32,
    /// Every key asked for, with the deadline the server passed on.
    pub seen: Mutex<Vec<(String, Option<Instant>)>>,
    /// Every key peeked at.
    pub peeked: Mutex<Vec<String>>,
    /// Notified when a `gate` request arrives.
    pub started: Notify,
    /// Lets a `gate` request answer.
    pub gate: Notify,
    /// The expiry of the last `half-second` value served.
    pub sent_expiry: Mutex<Option<SystemTime>>,
    /// The value of every set received, whole, in order.
    pub set_values: Mutex<Vec<Value>>,
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

/// The answer to a fetch of `key` that needs neither waiting nor recording; `None` for the
/// other keys.
fn immediate(key: &str) -> Option<FetchResult> {
    let answer = match key {
        "missing" => Ok(None),
        "fail" => Err(Error::new(ErrorKind::Remote, "backend exploded")),
        "expiring" => Ok(Some(Value::expiring("soon", expiry()))),
        "all-instants" => {
            let [refresh, expiry, stale] = instants();
            let value = Value::expiring("all", expiry)
                .with_refresh_at(Some(refresh))
                .with_stale_until(Some(stale));
            Ok(Some(value))
        }
        "absent" => Ok(Some(Value::absent(absent_until()))),
        "stale" => {
            let [expiry, stale] = stale_instants();
            Ok(Some(
                Value::expiring("old", expiry).with_stale_until(Some(stale)),
            ))
        }
        _ => return None,
    };
    Some(answer)
}

impl GalaxyHandler for Fake {
    fn serve_get<'a>(
        &'a self,
        key: &'a str,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, FetchResult> {
        self.seen.lock().unwrap().push((key.to_owned(), deadline));
        Box::pin(async move {
            if let Some(answer) = immediate(key) {
                return answer;
            }
            match key {
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

    fn serve_peek(&self, key: &str) -> Option<Value> {
        self.peeked.lock().unwrap().push(key.to_owned());
        match immediate(key) {
            Some(answer) => answer.ok().flatten(),
            None if key.starts_with("cold") => None,
            None => Some(Value::new(key.to_owned())),
        }
    }
    fn serve_write(&self, op: WriteOp<'_>) -> Result<(), Error> {
        let written = match op {
            WriteOp::Remove(key) => Written::Remove(key.to_owned()),
            WriteOp::Set(key, value) => {
                self.set_values.lock().unwrap().push(value.clone());
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
    protocol.connect(url, &InFlight::unbounded()).unwrap()
}

pub fn client(dialect: Dialect, url: &str) -> Arc<dyn RemoteFetcher> {
    fetcher(HttpProtocol::builder().dialect(dialect).build(), url)
}

pub fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// Everything the server sends back to the raw `request` before it closes the connection
/// (bounded).
pub async fn exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let read_all = async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read_all)
        .await
        .expect("the server neither answered nor closed the connection");
    out
}

/// The status code of a raw HTTP/1.1 response.
pub fn status(response: &str) -> &str {
    response.get(9..12).unwrap_or(response)
}

/// Status line, headers and body of the answer to `{method} {path}` with `headers` (each
/// line ending in `\r\n`) and `body`, as text. The connection is closed after it.
pub async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
    body: &[u8],
) -> String {
    let mut request =
        format!("{method} {path} HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n{headers}\r\n")
            .into_bytes();
    request.extend_from_slice(body);
    String::from_utf8_lossy(&exchange(addr, &request).await).into_owned()
}

/// The node still answers a well-formed `GET` under `prefix`.
pub async fn assert_still_serving(node: &Node, prefix: &str) {
    let ok = send(node.addr, "GET", &format!("{prefix}g/fine"), "", b"").await;
    assert_eq!(status(&ok), "200", "{ok}");
}
