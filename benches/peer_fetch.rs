//! Peer fetches over loopback: 1 KiB values already cached at the owner, 1 and 32
//! concurrent callers, for each protocol, beside a raw TCP echo of the same size (the
//! floor). Prints fetches/s and p50/p99 latency. Each protocol runs in the clear and over
//! mTLS (`+mTLS`: a CA and certificates made at start, ring, TLS 1.3), side by side.
//!
//! `cargo bench --bench peer_fetch` (`-- --seconds N` to change the time per case,
//! `-- --only LABEL` to run only the cases of that label and `-- --callers N`
//! only those with N callers, for a profile). With `GALAXYCACHE_BENCH_TRACE=1` every fetch
//! runs in a trace context, so it carries a `traceparent` that the owner parses.

use galaxycache::universe::InFlight;
use std::sync::Arc;
use std::time::{Duration, Instant};

use galaxycache::grpc::{GrpcProtocol, GrpcServer};
use galaxycache::http::{Dialect, HttpProtocol, PeerService};
use galaxycache::universe::{FetchProtocol, RemoteFetcher, TraceContext, with_trace};
use galaxycache::{Error, Galaxy, Universe, Value};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

#[path = "../tests/support/pki.rs"]
mod pki;

const VALUE_SIZE: usize = 1024;
const GALAXY: &str = "bench";
const KEY: &str = "the-cached-key";

struct Report {
    fetches: u64,
    elapsed: Duration,
    latency: Histogram<u64>,
}

impl Report {
    fn print(&self, name: &str, callers: usize) {
        let us = |q: f64| self.latency.value_at_quantile(q) as f64 / 1000.0;
        println!(
            "{name:<26} {callers:>3} callers {:>10.0} fetches/s   p50 {:>7.1} us   p99 {:>7.1} us",
            self.fetches as f64 / self.elapsed.as_secs_f64(),
            us(0.50),
            us(0.99),
        );
    }
}

/// Runs `callers` loops of `call` for `duration`; every call's latency in nanoseconds.
async fn drive<F, Fut>(callers: usize, duration: Duration, call: F) -> Report
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let end = start + duration;
    let tasks: Vec<_> = (0..callers)
        .map(|i| {
            let call = Arc::clone(&call);
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new(3).unwrap();
                let mut n = 0;
                while Instant::now() < end {
                    let t = Instant::now();
                    call(i).await;
                    h.record(t.elapsed().as_nanos() as u64).unwrap();
                    n += 1;
                }
                (n, h)
            })
        })
        .collect();
    let mut latency = Histogram::<u64>::new(3).unwrap();
    let mut fetches = 0;
    for t in tasks {
        let (n, h) = t.await.unwrap();
        fetches += n;
        latency.add(h).unwrap();
    }
    Report {
        fetches,
        elapsed: start.elapsed(),
        latency,
    }
}

/// A length-prefixed echo of a 1 KiB answer: what any protocol costs at the least.
async fn raw_echo(callers: usize, duration: Duration) -> Report {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            sock.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let value = vec![b'v'; VALUE_SIZE];
                let mut req = [0u8; 64];
                loop {
                    let Ok(len) = sock.read_u8().await else {
                        return;
                    };
                    if sock.read_exact(&mut req[..len as usize]).await.is_err()
                        || sock.write_all(&value).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let mut conns = Vec::new();
    for _ in 0..callers {
        let s = TcpStream::connect(addr).await.unwrap();
        s.set_nodelay(true).unwrap();
        conns.push(Arc::new(tokio::sync::Mutex::new(s)));
    }
    // The request is built once: the floor should not pay for work the protocols skip.
    let msg: Arc<[u8]> = [&[KEY.len() as u8][..], KEY.as_bytes()].concat().into();
    let report = drive(callers, duration, move |i| {
        let (conn, msg) = (Arc::clone(&conns[i]), Arc::clone(&msg));
        async move {
            let mut s = conn.lock().await;
            s.write_all(&msg).await.unwrap();
            let mut buf = [0u8; VALUE_SIZE];
            s.read_exact(&mut buf).await.unwrap();
        }
    })
    .await;
    server.abort();
    report
}

/// An owner with `KEY` cached, serving on loopback (over mTLS with `pki`); a fetcher to it.
async fn owner(
    protocol: &str,
    pki: Option<&pki::Pki>,
) -> (Arc<dyn RemoteFetcher>, oneshot::Sender<()>, Galaxy) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if pki.is_some() { "https" } else { "http" };
    let url = format!("{scheme}://{}", listener.local_addr().unwrap());
    let server_tls = pki.map(|pki| {
        pki.tls(&pki.issue("server"))
            .reload_interval(Duration::from_secs(5))
    });
    let acceptor = server_tls.map(|tls| tls.acceptor().unwrap());
    let client_tls = pki.map(|pki| pki.tls(&pki.issue("client")));
    let universe = Universe::builder(url.clone()).build();
    let value = Value::new(vec![b'v'; VALUE_SIZE]);
    let backend = move |_: String| {
        let value = value.clone();
        async move { Ok::<_, Error>(Some(value)) }
    };
    let galaxy = Galaxy::builder(&universe, GALAXY, 64 << 20, backend)
        .build()
        .unwrap();
    galaxy.get(KEY).await.unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let stopped = async move {
        stopped.await.ok();
    };
    let client: Arc<dyn FetchProtocol> = match protocol {
        "grpc" => {
            let mut server = GrpcServer::new(universe);
            let mut client = GrpcProtocol::new();
            if let (Some(acceptor), Some(tls)) = (acceptor, &client_tls) {
                server = server.tls(acceptor);
                client = client.tls(tls).unwrap();
            }
            tokio::spawn(server.serve(listener, stopped));
            Arc::new(client)
        }
        dialect => {
            let (dialect, h2) = match dialect {
                "http" => (Dialect::Galaxycache, false),
                "http2" => (Dialect::Galaxycache, true),
                _ => (Dialect::Groupcache, false),
            };
            let mut server = PeerService::new(universe, dialect);
            let mut client = HttpProtocol::builder().dialect(dialect).http2(h2);
            if let (Some(acceptor), Some(tls)) = (acceptor, &client_tls) {
                server = server.tls(acceptor);
                client = client.tls(tls).unwrap();
            }
            tokio::spawn(server.serve(listener, stopped));
            Arc::new(client.build())
        }
    };
    (
        client.connect(&url, &InFlight::unbounded()).unwrap(),
        stop,
        galaxy,
    )
}

/// Whether fetches carry a trace context (`GALAXYCACHE_BENCH_TRACE=1`).
fn traced() -> bool {
    static TRACED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACED.get_or_init(|| std::env::var("GALAXYCACHE_BENCH_TRACE").is_ok_and(|v| v == "1"))
}

async fn protocol(
    name: &str,
    pki: Option<&pki::Pki>,
    callers: usize,
    duration: Duration,
) -> Report {
    let (fetcher, stop, galaxy) = owner(name, pki).await;
    let report = drive(callers, duration, move |_| {
        let fetcher = Arc::clone(&fetcher);
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let trace = traced().then(TraceContext::random);
            let v = with_trace(trace, fetcher.fetch(GALAXY.into(), KEY, deadline))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(v.len(), VALUE_SIZE);
        }
    })
    .await;
    assert_eq!(
        galaxy.stats().backend_loads,
        1,
        "every fetch was served from the cache"
    );
    stop.send(()).ok();
    report
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        let at = args.iter().position(|a| a == name)?;
        args.get(at + 1).cloned()
    };
    let seconds = arg("--seconds").and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let only = arg("--only").unwrap_or_default();
    let caller_counts: Vec<usize> = match arg("--callers").and_then(|s| s.parse().ok()) {
        Some(n) => vec![n],
        None => vec![1, 32],
    };
    let runs = |label: &str| only.is_empty() || label == only;
    let duration = Duration::from_secs_f64(seconds);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pki = pki::Pki::new("bench");
        for &callers in &caller_counts {
            if runs("raw TCP echo (floor)") {
                raw_echo(callers, duration)
                    .await
                    .print("raw TCP echo (floor)", callers);
            }
            for (name, label) in [
                ("http", "HTTP/1.1 galaxycache"),
                ("http2", "HTTP/2 galaxycache"),
                ("groupcache", "HTTP/1.1 groupcache"),
                ("grpc", "gRPC"),
            ] {
                if runs(label) {
                    protocol(name, None, callers, duration)
                        .await
                        .print(label, callers);
                }
                let tls_label = format!("{label} +mTLS");
                if name != "groupcache" && runs(&tls_label) {
                    protocol(name, Some(&pki), callers, duration)
                        .await
                        .print(&tls_label, callers);
                }
            }
        }
    });
}
