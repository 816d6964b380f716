//! The server's limits over loopback: slowloris, the connection bound, HTTP/0.9 and
//! garbage. Real time, bounded: each wait is a read with a deadline, never a sleep.

use std::time::Duration;

use galaxycache_http::{Dialect, PeerService, ServerLimits};
use galaxycache_universe::Universe;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long any one read may wait before the test fails.
const PATIENCE: Duration = Duration::from_secs(10);

async fn server(limits: ServerLimits) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let universe = Universe::builder(format!("http://{addr}")).build();
    let service = PeerService::new(universe, Dialect::Galaxycache);
    tokio::spawn(service.serve_limited(listener, limits, std::future::pending()));
    addr
}

/// Everything the server sends until it closes the connection.
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut out))
        .await
        .expect("the server did not close the connection")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn a_slow_request_head_is_cut_at_the_header_timeout() {
    let limits = ServerLimits::default().header_read_timeout(Duration::from_millis(300));
    let addr = server(limits).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    // One byte at a time would do; a head that never ends is the same.
    slow.write_all(b"GET /_galaxycache/g/k HTTP/1.1\r\nHost: x\r\nX-A")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    until_closed(&mut slow).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn an_idle_connection_is_closed_at_the_idle_timeout() {
    let limits = ServerLimits::default().idle_timeout(Duration::from_millis(300));
    let addr = server(limits).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    until_closed(&mut idle).await;
}

#[tokio::test]
async fn connections_over_the_bound_are_answered_503_and_closed() {
    let addr = server(ServerLimits::default().max_connections(2)).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        // A full exchange, so the server has surely accepted this one.
        s.write_all(b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 404");
        held.push(s);
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    let answer = until_closed(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    drop(held);
}

#[tokio::test]
async fn http_0_9_and_garbage_are_answered_400_and_closed() {
    let addr = server(ServerLimits::default()).await;
    for request in [
        &b"GET /\r\n\r\n"[..],
        b"\x16\x03\x01garbage\r\n\r\n",
        b"GET / HTTP/1.1\r\n\x00\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let answer = until_closed(&mut s).await;
        assert!(
            answer.starts_with("HTTP/1.1 400"),
            "{request:?}: {answer:?}"
        );
    }
}
