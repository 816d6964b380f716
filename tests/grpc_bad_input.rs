//! Bad requests sent to a galaxy's gRPC server as raw bytes: each gets a clear status or a
//! closed connection, nothing reaches the backend or the cache, and the server goes on
//! serving.

#[path = "support/raw_grpc.rs"]
mod raw_grpc;

use galaxycache::universe::InFlight;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use galaxycache::universe::{ErrorKind, FetchProtocol};
use galaxycache::{Error, Galaxy, Universe, Value};
use galaxycache_grpc::pb::GetRequest;
use galaxycache_grpc::pb::galaxy_cache_client::GalaxyCacheClient;
use galaxycache_grpc::tonic::Code;
use galaxycache_grpc::tonic::codegen::Bytes;
use galaxycache_grpc::tonic::transport::{Channel, Endpoint};
use galaxycache_grpc::{GrpcProtocol, GrpcServer};
use raw_grpc::{framed, post_raw};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const PATIENCE: Duration = Duration::from_secs(30);
const GET: &str = "/galaxycachepb.GalaxyCache/GetFromPeer";
const MAX_KEY_LEN: usize = 256;

struct Server {
    url: String,
    galaxy: Galaxy,
    backend_calls: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), galaxycache::universe::Error>>,
}

impl Server {
    async fn start() -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let universe = Universe::builder(url.clone())
            .max_key_len(MAX_KEY_LEN)
            .build();
        let backend_calls = Arc::new(AtomicU64::new(0));
        let calls = Arc::clone(&backend_calls);
        let backend = move |key: String| {
            calls.fetch_add(1, Ordering::SeqCst);
            std::future::ready(Ok::<_, Error>(Some(Value::new(format!("v:{key}")))))
        };
        let galaxy = Galaxy::builder(&universe, "g", 1 << 20, backend)
            .build()
            .unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(GrpcServer::new(universe).serve(listener, async {
            stopped.await.ok();
        }));
        Server {
            url,
            galaxy,
            backend_calls,
            stop: Some(stop),
            task,
        }
    }

    /// Nothing reached the backend and nothing was cached.
    fn assert_untouched(&self) {
        assert_eq!(self.backend_calls.load(Ordering::SeqCst), 0);
        let s = self.galaxy.stats();
        assert_eq!((s.main_entries, s.hot_entries), (0, 0), "{s:?}");
    }

    /// A well-formed fetch still works, and then reaches the backend once.
    async fn assert_still_serving(&self) {
        let peer = GrpcProtocol::new()
            .connect(&self.url, &InFlight::unbounded())
            .unwrap();
        let deadline = tokio::time::Instant::now() + PATIENCE;
        let v = peer
            .fetch("g".into(), "fine", deadline)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.bytes().as_ref(), b"v:fine");
        assert_eq!(self.backend_calls.load(Ordering::SeqCst), 1);
    }

    async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.send(()).ok();
        }
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("graceful shutdown returns")
            .unwrap()
            .unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Write `bytes` and read until the server closes the connection; false if it does not
/// within [`PATIENCE`] (a server that stops reading stalls the writes: bounded too).
async fn server_hangs_up_after(addr: &str, bytes: &[u8]) -> bool {
    let stream = TcpStream::connect(addr).await.unwrap();
    let write_then_read_to_close = async {
        let mut written = 0;
        while written < bytes.len() {
            stream.writable().await.unwrap();
            match stream.try_write(&bytes[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
        let mut buf = [0u8; 4096];
        loop {
            stream.readable().await.unwrap();
            match stream.try_read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    };
    tokio::time::timeout(PATIENCE, write_then_read_to_close)
        .await
        .is_ok()
}

#[tokio::test]
async fn garbage_instead_of_http2_closes_that_connection() {
    let server = Server::start().await;
    let addr = server.url.trim_start_matches("http://").to_owned();
    for garbage in [
        &b"GET /_galaxycache/g/k HTTP/1.1\r\nHost: x\r\n\r\n"[..],
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 a TLS hello to a plaintext port",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\xff\xff\xff\xff\xff\xff\xff\xff\xff",
    ] {
        assert!(
            server_hangs_up_after(&addr, garbage).await,
            "{garbage:?} left the connection open"
        );
    }
    server.assert_untouched();
    server.assert_still_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_and_truncated_messages_get_internal() {
    let server = Server::start().await;
    let mut ch = server.channel().await;
    for (what, body) in [
        (
            "a field longer than the message",
            framed(&[0x0a, 0x7f, b'g']),
        ),
        ("a wire type that does not exist", framed(&[0x0f, 0x01])),
        (
            "a prefix promising more than arrives",
            vec![0, 0, 0, 0, 0x7f, b'a', b'b'],
        ),
        ("half a prefix", vec![0, 0, 0]),
    ] {
        let status = post_raw(&mut ch, GET, &body).await;
        assert_eq!(status.code(), Code::Internal, "{what}: {status:?}");
    }
    let status = post_raw(&mut ch, GET, &[0, 0x7f, 0x7f, 0x7f, 0x7f, b'x']).await;
    assert_eq!(
        status.code(),
        Code::OutOfRange,
        "a 2 GiB prefix: {status:?}"
    );
    server.assert_untouched();
    server.assert_still_serving().await;
    server.stop().await;
}

#[tokio::test]
async fn bad_keys_and_galaxies_are_invalid_arguments() {
    let server = Server::start().await;
    let mut client = GalaxyCacheClient::new(server.channel().await);
    let ask = |galaxy: &str, key: &[u8]| GetRequest {
        galaxy: galaxy.to_owned(),
        key: Bytes::copy_from_slice(key),
        version: 0,
    };
    for (what, request) in [
        ("a key that is not UTF-8", ask("g", &[b'k', 0xc3, 0x28])),
        ("an empty key", ask("g", b"")),
        ("a key over the bound", ask("g", &[b'k'; MAX_KEY_LEN + 1])),
        ("an unknown galaxy", ask("nope", b"k")),
        ("a huge galaxy name", ask(&"n".repeat(3_000), b"k")),
    ] {
        let status = client.get_from_peer(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
        assert!(status.message().len() < 1_024, "{what}: a bounded message");
    }
    server.assert_untouched();

    // The client side reads the difference between a bad key and an unknown galaxy.
    let peer = GrpcProtocol::new()
        .connect(&server.url, &InFlight::unbounded())
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let e = peer.fetch("nope".into(), "k", deadline).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownGalaxy, "{e}");
    let e = peer.fetch("g".into(), "", deadline).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
    server.assert_untouched();
    server.assert_still_serving().await;
    server.stop().await;
}
