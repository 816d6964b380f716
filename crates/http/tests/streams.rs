//! The protocol over streams that are not TCP sockets: a connector of the test's own
//! (`HttpProtocolBuilder::connector`) that opens in-memory pipes, each served by
//! `PeerService::serve_connection`.

mod common;

use std::convert::Infallible;
use std::future::Ready;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use common::{Fake, Written, fetcher, soon};
use galaxycache_http::{Dialect, HttpProtocol, PeerService};
use galaxycache_universe::{ErrorKind, GalaxyHandler, Universe, WriteOp};
use http::Uri;
use tokio::io::DuplexStream;

/// Opens a pipe per connection and serves its other end with the peer service; counts
/// the connections and the URIs asked for.
#[derive(Clone)]
struct Pipes {
    service: PeerService,
    opened: Arc<AtomicUsize>,
    asked: Arc<std::sync::Mutex<Vec<Uri>>>,
}

impl tower::Service<Uri> for Pipes {
    type Response = DuplexStream;
    type Error = Infallible;
    type Future = Ready<Result<DuplexStream, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (client, server) = tokio::io::duplex(64 * 1024);
        self.opened.fetch_add(1, Ordering::SeqCst);
        self.asked.lock().unwrap().push(uri);
        tokio::spawn(self.service.clone().serve_connection(server));
        std::future::ready(Ok(client))
    }
}

fn pipes(http2: bool) -> (HttpProtocol, Arc<Fake>, Pipes) {
    let universe = Universe::builder("http://self").build();
    let fake = Arc::new(Fake::default());
    let handler: Arc<dyn GalaxyHandler> = fake.clone();
    universe.register("g", Arc::downgrade(&handler)).unwrap();
    let pipes = Pipes {
        service: PeerService::new(universe, Dialect::Galaxycache),
        opened: Arc::default(),
        asked: Arc::default(),
    };
    let protocol = HttpProtocol::builder()
        .http2(http2)
        .connector(pipes.clone())
        .build();
    (protocol, fake, pipes)
}

async fn fetch_and_write_over_pipes(http2: bool) {
    let (protocol, fake, pipes) = pipes(http2);
    let peer = fetcher(protocol, "http://peer.example:7000");
    for key in ["a", "a b/c", "ünï"] {
        let value = peer.fetch("g".into(), key, soon()).await.unwrap().unwrap();
        assert_eq!(value.bytes(), key.as_bytes());
        assert_eq!(fake.last_seen().0, key);
    }
    let missing = peer.fetch("g".into(), "missing", soon()).await.unwrap();
    assert!(missing.is_none());
    let failed = peer.fetch("g".into(), "fail", soon()).await.unwrap_err();
    assert_eq!(failed.kind(), ErrorKind::Remote);
    peer.write("g".into(), WriteOp::Remove("a"), soon())
        .await
        .unwrap();
    assert_eq!(fake.writes(), [Written::Remove("a".into())]);
    // One pooled connection carried every request, to the peer's authority.
    assert_eq!(pipes.opened.load(Ordering::SeqCst), 1);
    let asked = pipes.asked.lock().unwrap().clone();
    assert_eq!(asked[0].authority().unwrap().as_str(), "peer.example:7000");
}

#[tokio::test]
async fn fetches_and_writes_travel_over_the_connectors_streams() {
    fetch_and_write_over_pipes(false).await;
}

#[tokio::test]
async fn http2_travels_over_the_connectors_streams() {
    fetch_and_write_over_pipes(true).await;
}

/// A connector that never answers is bounded by the connect timeout: the fetch fails as
/// an unavailable peer.
#[tokio::test(start_paused = true)]
async fn a_connector_that_hangs_is_bounded_by_the_connect_timeout() {
    let hangs =
        tower::service_fn(|_: Uri| std::future::pending::<Result<DuplexStream, Infallible>>());
    let protocol = HttpProtocol::builder()
        .connect_timeout(Duration::from_millis(50))
        .connector(hangs)
        .build();
    let peer = fetcher(protocol, "http://peer.example:7000");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let e = peer.fetch("g".into(), "a", deadline).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(tokio::time::Instant::now() < deadline);
}
