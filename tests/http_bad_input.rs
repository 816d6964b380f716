//! Bad requests, as raw bytes, to a real galaxy behind the HTTP peer server: each gets a
//! clear error status, nothing is loaded or cached from it, and the server keeps serving.
#![cfg(feature = "http")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use galaxycache::http::{Dialect, PeerService};
use galaxycache::{Error, Galaxy, Universe, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

struct Server {
    addr: SocketAddr,
    galaxy: Galaxy,
    backend_calls: Arc<AtomicU64>,
    stop: oneshot::Sender<()>,
    serving: JoinHandle<()>,
}

/// A galaxy `g` with keys up to 64 bytes; its backend knows every key but `missing` and
/// fails on `fail`.
async fn start(dialect: Dialect) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let universe = Universe::builder(format!("http://{addr}"))
        .max_key_len(64)
        .build();
    let backend_calls = Arc::new(AtomicU64::new(0));
    let calls = backend_calls.clone();
    let backend = move |key: String| {
        calls.fetch_add(1, Ordering::Relaxed);
        std::future::ready(match key.as_str() {
            "missing" => Ok(None),
            "fail" => Err(Error::backend("the database is on fire")),
            _ => Ok(Some(Value::new(format!("value of {key}")))),
        })
    };
    let galaxy = Galaxy::builder(&universe, "g", 1 << 20, backend)
        .build()
        .unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = PeerService::new(universe, dialect);
    let serving = tokio::spawn(server.serve(listener, async {
        stopped.await.ok();
    }));
    Server {
        addr,
        galaxy,
        backend_calls,
        stop,
        serving,
    }
}

impl Server {
    async fn stop(self) {
        self.stop.send(()).ok();
        tokio::time::timeout(Duration::from_secs(5), self.serving)
            .await
            .expect("serve() did not return")
            .unwrap();
    }
}

/// Everything the server answers to `{method} {path}`, as text (bounded wait).
async fn request(addr: SocketAddr, method: &str, path: &str) -> String {
    let head = format!("{method} {path} HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n\r\n");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("the server neither answered nor closed the connection")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

fn status(response: &str) -> &str {
    response.get(9..12).unwrap_or(response)
}

/// What a real galaxy makes of bad requests: none reaches its backend or its caches, and
/// its own outcomes still come through. (The status of each bad request is the HTTP
/// crate's business: crates/http/tests/bad_input.rs.)
async fn bad_input_is_refused(dialect: Dialect) {
    let server = start(dialect).await;
    let p = dialect.path_prefix();
    let long_key = "k".repeat(65);
    let bad = [
        ("GET", format!("{p}g/%zz")),
        ("GET", format!("{p}g/%ff")),
        ("GET", format!("{p}g/")),
        ("GET", format!("{p}g/{long_key}")),
        ("GET", format!("{p}nope/k")),
        ("POST", format!("{p}g/k")),
    ];
    for (method, path) in &bad {
        let response = request(server.addr, method, path).await;
        assert!(
            status(&response).starts_with('4'),
            "{method} {path}: {response}"
        );
    }
    let stats = server.galaxy.stats();
    assert_eq!(server.backend_calls.load(Ordering::Relaxed), 0, "{stats:?}");
    assert_eq!((stats.main_entries, stats.hot_entries), (0, 0), "{stats:?}");

    // Still serving, and answering the galaxy's own outcomes.
    let ok = request(server.addr, "GET", &format!("{p}g/fine")).await;
    assert_eq!(status(&ok), "200", "{ok}");
    assert!(ok.ends_with("value of fine"), "{ok}");
    let missing = request(server.addr, "GET", &format!("{p}g/missing")).await;
    assert_eq!(status(&missing), "404", "{missing}");
    assert!(
        missing.contains("x-galaxycache-galaxy-status: Found"),
        "{missing}"
    );
    let fail = request(server.addr, "GET", &format!("{p}g/fail")).await;
    assert_eq!(status(&fail), "500", "{fail}");
    assert!(
        fail.ends_with("\r\n\r\nthe database is on fire\n"),
        "{fail}"
    );
    assert_eq!(
        server.galaxy.stats().main_entries,
        1,
        "only the good key is cached"
    );
    server.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_galaxycache_dialect() {
    bad_input_is_refused(Dialect::Galaxycache).await;
}

#[tokio::test]
async fn bad_input_is_refused_groupcache_dialect() {
    bad_input_is_refused(Dialect::Groupcache).await;
}
