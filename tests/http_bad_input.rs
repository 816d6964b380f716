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

/// Everything the server sends before closing the connection, as text (bounded wait).
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
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
    String::from_utf8_lossy(&out).into_owned()
}

async fn request(addr: SocketAddr, method: &str, path: &str) -> String {
    let head = format!("{method} {path} HTTP/1.1\r\nHost: peer\r\nConnection: close\r\n\r\n");
    exchange(addr, head.as_bytes()).await
}

fn status(response: &str) -> &str {
    response.get(9..12).unwrap_or(response)
}

async fn bad_input_is_refused(dialect: Dialect) {
    let server = start(dialect).await;
    let p = dialect.path_prefix();
    let long_key = "k".repeat(65);
    let huge_key = "k".repeat(100_000);
    let cases: Vec<(&str, String, &str)> = vec![
        ("GET", format!("{p}g/%zz"), "400"),
        ("GET", format!("{p}g/%ff"), "400"),
        ("GET", format!("{p}g/"), "400"),
        ("GET", format!("{p}g"), "400"),
        ("GET", format!("{p}g/{long_key}"), "400"),
        ("GET", format!("{p}g/{huge_key}"), "414"),
        ("GET", format!("{p}nope/k"), "404"),
        ("GET", "/not/ours".to_owned(), "404"),
        ("POST", format!("{p}g/k"), "405"),
        ("DELETE", format!("{p}g/k"), "405"),
    ];
    for (method, path, want) in &cases {
        let response = request(server.addr, method, path).await;
        let shown = &path[..path.len().min(60)];
        assert_eq!(
            status(&response),
            *want,
            "{method} {shown}: {response:.200}"
        );
    }
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/7.0\r\n\r\n",
        b"\x00\x01\x02\r\n\r\n",
    ] {
        let response = exchange(server.addr, garbage).await;
        assert!(
            response.starts_with("HTTP/1.1 4"),
            "{garbage:?}: {response}"
        );
    }
    let h2_garbage = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x05\x00\x00\x00\x00\x00\x01hello";
    exchange(server.addr, h2_garbage).await; // a GOAWAY; the point is what follows

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
