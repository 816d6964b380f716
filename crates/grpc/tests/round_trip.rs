//! Fetches and peeks over real loopback sockets, against a fake galaxy; and what the
//! root's `tests/grpc_bad_input.rs` does not cover of bad input.

mod common;

use galaxycache_universe::InFlight;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use common::{
    Node, PATIENCE, channel, fetcher, fixed_expiry, framed, later, post_raw, still_serving,
};
use galaxycache_grpc::GrpcProtocol;
use galaxycache_grpc::pb::GetRequest;
use galaxycache_grpc::pb::galaxy_cache_client::GalaxyCacheClient;
use galaxycache_universe::{Error, ErrorKind, FetchProtocol};
use tokio::time::Instant;
use tonic::Code;

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
        let v = peer.fetch("g".into(), key, later()).await.unwrap().unwrap();
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
        .fetch("g".into(), "expiring", later())
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

    assert_eq!(peer.fetch("g".into(), "missing", later()).await, Ok(None));

    let e = peer.fetch("nope".into(), "k", later()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownGalaxy, "{e}");

    // The owner's load error, exactly as the owner's own callers get it.
    let e = peer.fetch("g".into(), "fail", later()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Remote, "{e}");
    assert!(e.message().contains("backend exploded"), "{e}");
    assert_eq!(e, Error::new(ErrorKind::Remote, "backend exploded"));

    let e = peer.fetch("g".into(), "", later()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn the_server_bounds_keys_by_its_universe() {
    let node = Node::start_with(|b| b.max_key_len(16)).await;
    let e = fetcher(&node)
        .fetch("g".into(), &"k".repeat(17), later())
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
    let v = peer
        .peek("g".into(), "cached", later())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.bytes().as_ref(), b"from cache");
    assert_eq!(peer.peek("g".into(), "other", later()).await, Ok(None));
    let e = peer
        .peek("nope".into(), "cached", later())
        .await
        .unwrap_err();
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
    fetcher(&node)
        .fetch("g".into(), "k", sent)
        .await
        .unwrap()
        .unwrap();
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
        .connect(&node.url, &InFlight::unbounded())
        .unwrap();
    let e = peer.fetch("g".into(), "big", later()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    let v = peer
        .fetch("g".into(), "small", later())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.bytes().as_ref(), b"v:small", "the channel still works");
    let roomy = GrpcProtocol::new()
        .max_response_bytes(8192)
        .connect(&node.url, &InFlight::unbounded())
        .unwrap();
    assert_eq!(
        roomy
            .fetch("g".into(), "big", later())
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
        async move { peer.fetch("g".into(), "gate", later()).await }
    });
    tokio::time::timeout(PATIENCE, node.fake.entered_gate.notified())
        .await
        .unwrap();

    let e = peer.fetch("g".into(), "k", later()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Overloaded, "{e}");

    node.fake.open_gate();
    let v = held.await.unwrap().unwrap().unwrap();
    assert_eq!(v.bytes().as_ref(), b"through the gate");
    assert!(
        peer.fetch("g".into(), "k", later())
            .await
            .unwrap()
            .is_some(),
        "free again"
    );
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_peer_that_never_answers_times_out_at_the_deadline() {
    let node = Node::start().await;
    let peer = fetcher(&node);
    // Far enough that the real clock does not reach it while the request travels; once the
    // fake holds the request, the clock is paused and jumps to it.
    let deadline = Instant::now() + PATIENCE;
    let held = tokio::spawn({
        let peer = peer.clone();
        // The caller's own bound, as a galaxy's: a fetcher adds no timer. The call's
        // grpc-timeout is to end it first.
        async move {
            let bound = deadline + Duration::from_secs(1);
            tokio::time::timeout_at(bound, peer.fetch("g".into(), "gate", deadline)).await
        }
    });
    tokio::time::timeout(PATIENCE, node.fake.entered_gate.notified())
        .await
        .expect("the request reached the fake");
    tokio::time::pause();
    let e = held
        .await
        .unwrap()
        .expect("the grpc-timeout ends the call")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(Instant::now() >= deadline);
    assert!(Instant::now() < deadline + Duration::from_secs(1));
    assert_eq!(node.fake.calls.load(Ordering::SeqCst), 1);
    tokio::time::resume();
    node.fake.open_gate();
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_peer_that_is_not_there_is_unavailable() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let peer = GrpcProtocol::new()
        .connect(&url, &InFlight::unbounded())
        .unwrap();
    let e = peer.fetch("g".into(), "k", later()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
}

#[tokio::test]
async fn graceful_shutdown_finishes_requests_in_progress_and_returns() {
    let mut node = Node::start().await;
    let peer = fetcher(&node);
    let held = tokio::spawn({
        let peer = peer.clone();
        async move { peer.fetch("g".into(), "gate", later()).await }
    });
    tokio::time::timeout(PATIENCE, node.fake.entered_gate.notified())
        .await
        .unwrap();

    node.signal_stop();
    let addr = node.url.trim_start_matches("http://").to_owned();
    tokio::time::timeout(PATIENCE, async {
        while tokio::net::TcpStream::connect(&addr).await.is_ok() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("shutdown closes the listener");
    node.fake.open_gate();
    let v = tokio::time::timeout(PATIENCE, held)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(v.unwrap().bytes().as_ref(), b"through the gate");

    let url = node.url.clone();
    node.stop().await.unwrap();
    let after = GrpcProtocol::new()
        .connect(&url, &InFlight::unbounded())
        .unwrap();
    let e = after.fetch("g".into(), "k", later()).await.unwrap_err();
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
    peer.fetch("g".into(), "k", later()).await.unwrap();
    node.stop().await.unwrap();
    let e = peer.fetch("g".into(), "k", later()).await.unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Unavailable),
        "the pooled connection is gone: {e}"
    );
}

#[test]
fn a_fetcher_outlives_the_runtime_of_its_first_fetch() {
    let server = tokio::runtime::Runtime::new().unwrap();
    let node = server.block_on(Node::start());
    let peer = fetcher(&node);
    for round in 0..2 {
        // Each runtime ends after its fetch, taking the channel's background task along.
        let client = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let v = client
            .block_on(async {
                tokio::time::timeout(PATIENCE, peer.fetch("g".into(), "k", later())).await
            })
            .expect("an answer")
            .unwrap_or_else(|e| panic!("round {round}: {e}"))
            .unwrap();
        assert_eq!(v.bytes().as_ref(), b"v:k");
    }
    server.block_on(node.stop()).unwrap();
}

#[tokio::test]
async fn a_message_over_the_bound_is_out_of_range() {
    let node = Node::start_configured(|b| b.max_key_len(64), |s| s.max_value_bytes(0)).await;
    // A real message over the bound (64-byte keys, no value, room for the galaxy name).
    let mut client = GalaxyCacheClient::new(channel(&node).await);
    let huge = GetRequest {
        galaxy: "g".into(),
        key: Bytes::from(vec![b'k'; 64 << 10]),
        version: 0,
    };
    let status = client.get_from_peer(huge).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(node.fake.calls.load(Ordering::SeqCst), 0);
    still_serving(&node).await;
    node.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_methods_and_bad_timeouts_do_not_hurt() {
    let node = Node::start().await;
    let mut ch = channel(&node).await;
    let status = post_raw(&mut ch, "/galaxycachepb.GalaxyCache/Nope", &framed(b"")).await;
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    let status = post_raw(&mut ch, "/nothing/here", &framed(b"")).await;
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");

    // A malformed grpc-timeout is ignored: the request is served without a deadline.
    let mut client = GalaxyCacheClient::new(ch.clone());
    let mut request = tonic::Request::new(GetRequest {
        galaxy: "g".into(),
        key: Bytes::from_static(b"k"),
        version: 0,
    });
    request
        .metadata_mut()
        .insert("grpc-timeout", "soon".parse().unwrap());
    let v = client.get_from_peer(request).await.unwrap().into_inner();
    assert_eq!(v.value.as_ref(), b"v:k");
    assert_eq!(node.fake.deadlines.lock().unwrap()[0], None);
    still_serving(&node).await;
    node.stop().await.unwrap();
}
