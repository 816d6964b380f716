//! Fetches and peeks over real loopback sockets, against a fake galaxy.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Node, PATIENCE, fixed_expiry, later};
use galaxycache_grpc::GrpcProtocol;
use galaxycache_universe::{ErrorKind, FetchProtocol, RemoteFetcher};
use tokio::time::Instant;

fn fetcher(node: &Node) -> Arc<dyn RemoteFetcher> {
    GrpcProtocol::new().connect(&node.url).unwrap()
}

#[tokio::test]
async fn keys_of_every_shape_round_trip() {
    let node = Node::start().await;
    let peer = fetcher(&node);
    let long = "k".repeat(4096);
    let keys = [
        "plain",
        "with space",
        "a+b",
        "a/b/../c",
        "100%",
        "%2F%20",
        "?query=1&x#frag",
        "ünïcødé ☃ 日本",
        long.as_str(),
    ];
    for key in keys {
        let v = peer.fetch("g", key, later()).await.unwrap().unwrap();
        assert_eq!(v.bytes(), format!("v:{key}").as_bytes(), "key {key:?}");
        assert_eq!(v.expires_at(), None);
    }
    assert_eq!(node.fake.calls.load(Ordering::SeqCst), keys.len() as u64);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn expiry_travels_with_the_value() {
    let node = Node::start().await;
    let v = fetcher(&node)
        .fetch("g", "expiring", later())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.bytes().as_ref(), b"soon gone");
    assert_eq!(v.expires_at(), Some(fixed_expiry()), "to the nanosecond");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn not_found_unknown_galaxy_and_load_error_are_distinct() {
    let node = Node::start().await;
    let peer = fetcher(&node);

    assert_eq!(peer.fetch("g", "missing", later()).await, Ok(None));

    let e = peer.fetch("nope", "k", later()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownGalaxy, "{e}");

    let e = peer.fetch("g", "fail", later()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
    assert!(e.message().contains("backend exploded"), "{e}");

    let e = peer.fetch("g", "", later()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn the_server_bounds_keys_by_its_universe() {
    let node = Node::start_with(|b| b.max_key_len(16)).await;
    let e = fetcher(&node)
        .fetch("g", &"k".repeat(17), later())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
    assert_eq!(node.fake.calls.load(Ordering::SeqCst), 0, "nothing loaded");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn peek_answers_from_cache_only() {
    let node = Node::start().await;
    let peer = fetcher(&node);
    let v = peer.peek("g", "cached", later()).await.unwrap().unwrap();
    assert_eq!(v.bytes().as_ref(), b"from cache");
    assert_eq!(peer.peek("g", "other", later()).await, Ok(None));
    let e = peer.peek("nope", "cached", later()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownGalaxy);
    assert_eq!(
        node.fake.calls.load(Ordering::SeqCst),
        0,
        "a peek never loads"
    );
    node.stop().await.unwrap();
}

#[tokio::test]
async fn the_callers_remaining_time_becomes_the_servers_deadline() {
    let node = Node::start().await;
    let sent = Instant::now() + Duration::from_secs(30);
    fetcher(&node).fetch("g", "k", sent).await.unwrap().unwrap();
    let seen = node.fake.deadlines.lock().unwrap()[0].expect("a deadline");
    // Same clock in one process: the server's deadline is the client's, shifted by the
    // time the request took to arrive (grpc-timeout carries a duration, not an instant).
    let skew = seen.max(sent) - seen.min(sent);
    assert!(skew < Duration::from_secs(5), "{skew:?}");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn responses_over_the_bound_fail_as_too_large() {
    let node = Node::start().await;
    let peer = GrpcProtocol::new()
        .max_response_bytes(1024)
        .connect(&node.url)
        .unwrap();
    let e = peer.fetch("g", "big", later()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    let v = peer.fetch("g", "small", later()).await.unwrap().unwrap();
    assert_eq!(v.bytes().as_ref(), b"v:small", "the channel still works");
    let roomy = GrpcProtocol::new()
        .max_response_bytes(8192)
        .connect(&node.url)
        .unwrap();
    assert_eq!(
        roomy
            .fetch("g", "big", later())
            .await
            .unwrap()
            .unwrap()
            .len(),
        4096
    );
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_busy_server_answers_overloaded() {
    let node = Node::start_with(|b| b.max_concurrent_serves(1)).await;
    let peer = fetcher(&node);
    let held = tokio::spawn({
        let peer = peer.clone();
        async move { peer.fetch("g", "gate", later()).await }
    });
    tokio::time::timeout(PATIENCE, node.fake.entered_gate.notified())
        .await
        .unwrap();

    let e = peer.fetch("g", "k", later()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Overloaded, "{e}");

    node.fake.open_gate();
    let v = held.await.unwrap().unwrap().unwrap();
    assert_eq!(v.bytes().as_ref(), b"through the gate");
    assert!(
        peer.fetch("g", "k", later()).await.unwrap().is_some(),
        "free again"
    );
    node.stop().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_never_answers_times_out_at_the_deadline() {
    let node = Node::start().await;
    let peer = fetcher(&node);
    let start = Instant::now();
    let deadline = start + Duration::from_millis(300);
    let e = peer.fetch("g", "gate", deadline).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(Instant::now() >= deadline);
    assert!(Instant::now() < deadline + Duration::from_secs(1));
    node.fake.open_gate();
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_peer_that_is_not_there_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let peer = GrpcProtocol::new().connect(&url).unwrap();
    let e = peer.fetch("g", "k", later()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_progress_and_returns() {
    let mut node = Node::start().await;
    let peer = fetcher(&node);
    let held = tokio::spawn({
        let peer = peer.clone();
        async move { peer.fetch("g", "gate", later()).await }
    });
    tokio::time::timeout(PATIENCE, node.fake.entered_gate.notified())
        .await
        .unwrap();

    node.signal_stop();
    tokio::task::yield_now().await;
    node.fake.open_gate();
    let v = tokio::time::timeout(PATIENCE, held)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(v.unwrap().bytes().as_ref(), b"through the gate");

    let url = node.url.clone();
    node.stop().await.unwrap();
    let after = GrpcProtocol::new().connect(&url).unwrap();
    let e = after.fetch("g", "k", later()).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Unavailable,
        "the listener is closed: {e}"
    );
}

#[tokio::test]
async fn shutdown_with_idle_connections_returns() {
    let node = Node::start().await;
    let peer = fetcher(&node);
    peer.fetch("g", "k", later()).await.unwrap();
    node.stop().await.unwrap();
    let e = peer.fetch("g", "k", later()).await.unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Unavailable),
        "the pooled connection is gone: {e}"
    );
}
