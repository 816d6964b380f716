//! Memory under hostile load, measured on a `galaxyd serve` child process: its peak
//! resident set (`VmHWM` in `/proc/PID/status`) stays under the cache budget, plus the
//! bound on bytes in flight, plus a fixed allowance for everything else (code, runtime,
//! connection buffers, allocator slack). Each test prints its figures.

mod common;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use common::{Galaxyd, key_owned_by, serve};
use http_body::Frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

const MIB: u64 = 1 << 20;
/// The galaxy's cache budget.
const BUDGET: u64 = 64 * MIB;
/// The node's bound on value bytes in flight.
const IN_FLIGHT: u64 = 32 * MIB;
/// Everything but values: the binary and the runtime (~23 MiB idle), 128 connections'
/// buffers, and what glibc's allocator keeps of freed values (after a freed 10 MiB
/// block it serves blocks that large from its arenas, which return memory only from
/// their top: measured up to ~50 MiB here; ~0 with `MALLOC_MMAP_THRESHOLD_=1048576`).
const ALLOWANCE: u64 = 96 * MIB;

/// A `/proc/PID/status` figure in bytes: `VmHWM` (the peak resident set) or `VmRSS`.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse().unwrap();
    kib * 1024
}

/// GET `path` from `addr` on a connection of its own, reading the answer as it arrives
/// and keeping none of it: the status and the body's length.
async fn get_discarding(addr: &str, path: &str) -> (u16, u64) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut buffer = vec![0; 64 * 1024];
    let mut head = Vec::new();
    let mut body = 0u64;
    loop {
        let n = stream.read(&mut buffer).await.unwrap();
        if n == 0 {
            break;
        }
        if body == 0 && head.len() < 4096 {
            head.extend_from_slice(&buffer[..n]);
            if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                body = (head.len() - end - 4) as u64;
            }
        } else {
            body += n as u64;
        }
    }
    let status = std::str::from_utf8(&head[9..12]).unwrap().parse().unwrap();
    (status, body)
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / MIB as f64)
}

/// 128 clients at once, each getting 3 keys of its own whose 10 MiB values an origin
/// sends: every load reads its body against the bound on bytes in flight, so at most 3
/// are read at once; the rest wait (or are refused with 503 when the wait outlasts the
/// load's timeout). Before the bound, 128 connections held 1.27 GiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_mib_values_at_128_connections_stay_under_budget_and_bound() {
    const VALUE: usize = 10 << 20;
    let value = Bytes::from(vec![b'v'; VALUE]);
    let origin = serve(Router::new().route(
        "/items/{key}",
        get(move |_: Path<String>| {
            let value = value.clone();
            async move { ([(header::CACHE_CONTROL, "max-age=600")], value) }
        }),
    ))
    .await;
    let backend = format!("http:{origin}/items/{{key}}");
    let (galaxyd, api) = Galaxyd::start(&[
        "--backend",
        &backend,
        "--cache-bytes",
        "64MiB",
        "--max-in-flight-bytes",
        "32MiB",
        "--request-timeout",
        "30s",
    ]);
    let idle = status_bytes(galaxyd.pid(), "VmRSS");

    let mut clients = JoinSet::new();
    for client in 0..128 {
        let api = api.clone();
        clients.spawn(async move {
            let mut answers = Vec::new();
            for key in 0..3 {
                let path = format!("/v1/galaxies/default/keys/c{client}-k{key}");
                answers.push(get_discarding(&api, &path).await);
            }
            answers
        });
    }
    let answers: Vec<(u16, u64)> = clients.join_all().await.into_iter().flatten().collect();
    let peak = status_bytes(galaxyd.pid(), "VmHWM");
    let served = answers.iter().filter(|(status, _)| *status == 200).count();
    eprintln!(
        "10 MiB x 128 connections: {served} of {} served; RSS idle {}, peak {} (budget {} + \
         in flight {} + allowance {})",
        answers.len(),
        mib(idle),
        mib(peak),
        mib(BUDGET),
        mib(IN_FLIGHT),
        mib(ALLOWANCE)
    );
    for (status, body) in &answers {
        match status {
            200 => assert_eq!(*body, VALUE as u64, "a whole value"),
            503 => {}
            other => panic!("answered {other}: only values and 503 (overloaded) are expected"),
        }
    }
    assert!(
        served >= answers.len() / 2,
        "most loads must get their turn: {served} of {}",
        answers.len()
    );
    assert!(
        peak < BUDGET + IN_FLIGHT + ALLOWANCE,
        "peak RSS {} over budget + in flight + allowance",
        mib(peak)
    );
}

/// A body that streams `left` bytes in 64 KiB chunks, claiming no length.
struct Endless {
    left: u64,
}

impl http_body::Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        static CHUNK: [u8; 64 * 1024] = [b'x'; 64 * 1024];
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let n = self.left.min(CHUNK.len() as u64);
        self.left -= n;
        let chunk = Bytes::from_static(&CHUNK[..n as usize]);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

/// A peer that answers every fetch with a 100 MiB chunked body, to 16 fetches at once.
/// Each body is cut at the 64 MiB response bound, and all of them together are read
/// against the bound on bytes in flight; the asking node then loads the keys itself.
/// Before the bound, RSS reached ~700 MiB and stayed at ~400 MiB afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_streaming_huge_bodies_is_read_within_the_bound() {
    let peer = serve(Router::new().route(
        "/_galaxycache/{galaxy}/{key}",
        get(|| async { Body::new(Endless { left: 100 * MIB }).into_response() }),
    ))
    .await;
    let me = "http://127.0.0.1:0";
    let (galaxyd, api) = Galaxyd::start(&[
        "--peers",
        &format!("{me},{peer}"),
        "--cache-bytes",
        "64MiB",
        "--max-in-flight-bytes",
        "32MiB",
        "--request-timeout",
        "30s",
    ]);
    let ring = [me.to_owned(), peer.clone()];

    let mut clients = JoinSet::new();
    for client in 0..16 {
        let (api, key) = (
            api.clone(),
            key_owned_by(&ring, &peer, &format!("c{client}-")),
        );
        clients.spawn(async move {
            get_discarding(&api, &format!("/v1/galaxies/default/keys/{key}")).await
        });
    }
    let answers = clients.join_all().await;
    let peak = status_bytes(galaxyd.pid(), "VmHWM");
    let after = status_bytes(galaxyd.pid(), "VmRSS");
    eprintln!(
        "16 fetches of 100 MiB bodies: RSS peak {}, after {}",
        mib(peak),
        mib(after)
    );
    for (status, _) in &answers {
        assert!(
            [200, 503].contains(status),
            "answered {status}: the node loads the key itself, or is overloaded"
        );
    }
    assert!(
        answers.iter().any(|(status, _)| *status == 200),
        "the node falls back to its own backend"
    );
    assert!(
        peak < BUDGET + IN_FLIGHT + ALLOWANCE,
        "peak RSS {} over budget + in flight + allowance",
        mib(peak)
    );
}
