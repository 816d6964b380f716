//! Client and server over real loopback sockets, in both dialects.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use common::{Node, client, expiry, fetcher, soon};
use galaxycache_http::{Dialect, HttpProtocol, PeerService};
use galaxycache_universe::{ErrorKind, FetchProtocol, GalaxyHandler, Universe};
use tokio::time::Instant;

fn odd_keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "plain",
        "a b",
        "a+b",
        "a/b/c",
        "/lead",
        "trail/",
        "100%",
        "%zz",
        "%2F",
        "?q=1#frag",
        "../up",
        "ünïcødé ✓ 鍵",
        "tab\there",
        "semi;colon,comma",
        "$&:=@",
    ]
    .map(String::from)
    .into();
    keys.push("k".repeat(4096));
    keys.push("é".repeat(2048));
    keys
}

async fn round_trip(dialect: Dialect, http2: bool) {
    let node = Node::start(dialect).await;
    let protocol = HttpProtocol::builder()
        .dialect(dialect)
        .http2(http2)
        .build();
    let f = fetcher(protocol, &node.url);
    for key in odd_keys() {
        let value = f
            .fetch("g".into(), &key, soon())
            .await
            .unwrap()
            .expect("a value");
        // The groupcache quirk: the client sends a space as `+`, and the server (as Go's)
        // does not turn it back; every other byte survives.
        let arrived = match dialect {
            Dialect::Galaxycache => key.clone(),
            _ => key.replace(' ', "+"),
        };
        assert_eq!(node.fake.last_seen().0, arrived, "key {key:?}");
        assert_eq!(value.bytes(), arrived.as_bytes(), "key {key:?}");
        assert_eq!(value.expires_at(), None);
    }
    node.stop().await;
}

#[tokio::test]
async fn odd_keys_round_trip_galaxycache_http1() {
    round_trip(Dialect::Galaxycache, false).await;
}

#[tokio::test]
async fn odd_keys_round_trip_galaxycache_h2c() {
    round_trip(Dialect::Galaxycache, true).await;
}

#[tokio::test]
async fn odd_keys_round_trip_groupcache_http1() {
    round_trip(Dialect::Groupcache, false).await;
}

/// Keys as long as the protocol says it carries, every byte escaped to three, get through;
/// one byte more is refused by the owner's universe, as an invalid request.
async fn longest_key_round_trips(dialect: Dialect, http2: bool) {
    let protocol = HttpProtocol::builder()
        .dialect(dialect)
        .http2(http2)
        .build();
    let max = protocol.max_key_len();
    let builder = Universe::builder("http://self").protocol(Arc::new(protocol.clone()));
    let node = Node::start_with(dialect, builder).await;
    assert_eq!(
        node.universe.max_key_len(),
        max,
        "the universe takes the bound"
    );
    let f = fetcher(protocol, &node.url);
    let key = "/".repeat(max);
    let value = f
        .fetch("g".into(), &key, soon())
        .await
        .unwrap()
        .expect("a value");
    assert_eq!(node.fake.last_seen().0, key);
    assert_eq!(value.bytes(), key.as_bytes());
    let too_long = "/".repeat(max + 1);
    let err = f.fetch("g".into(), &too_long, soon()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{err}");
    node.stop().await;
}

#[tokio::test]
async fn the_longest_key_round_trips_galaxycache_http1() {
    longest_key_round_trips(Dialect::Galaxycache, false).await;
}

#[tokio::test]
async fn the_longest_key_round_trips_galaxycache_h2c() {
    longest_key_round_trips(Dialect::Galaxycache, true).await;
}

#[tokio::test]
async fn the_longest_key_round_trips_groupcache_http1() {
    longest_key_round_trips(Dialect::Groupcache, false).await;
}

#[tokio::test]
async fn values_hold_no_more_memory_than_their_length() {
    for dialect in [Dialect::Galaxycache, Dialect::Groupcache] {
        let node = Node::start(dialect).await;
        let f = client(dialect, &node.url);
        for len in [10, 100_000] {
            let value = f
                .fetch("g".into(), &format!("big:{len}"), soon())
                .await
                .unwrap()
                .unwrap();
            let bytes = value.into_bytes();
            // Not a slice of a receive buffer: the only owner of an allocation of its length.
            assert!(bytes.is_unique(), "{dialect:?}, {len} bytes");
            assert_eq!(BytesMut::from(bytes).capacity(), len, "{dialect:?}");
        }
        node.stop().await;
    }
}

#[tokio::test]
async fn groupcache_space_arrives_as_plus() {
    let node = Node::start(Dialect::Groupcache).await;
    let f = client(Dialect::Groupcache, &node.url);
    let spaced = f.fetch("g".into(), "a b", soon()).await.unwrap().unwrap();
    let plussed = f.fetch("g".into(), "a+b", soon()).await.unwrap().unwrap();
    assert_eq!(
        spaced.bytes().as_ref(),
        b"a+b",
        "Go's server keeps `+` in a path"
    );
    assert_eq!(
        spaced, plussed,
        "so `a b` and `a+b` are one key on the owner"
    );
    node.stop().await;
}

#[tokio::test]
async fn galaxy_names_are_escaped_too() {
    let node = Node::start(Dialect::Galaxycache).await;
    let handler: std::sync::Arc<dyn GalaxyHandler> = node.fake.clone();
    node.universe
        .register("odd/galaxy é", std::sync::Arc::downgrade(&handler))
        .unwrap();
    let f = client(Dialect::Galaxycache, &node.url);
    let v = f
        .fetch("odd/galaxy é".into(), "k", soon())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.bytes().as_ref(), b"k");
    node.stop().await;
}

#[tokio::test]
async fn expiry_travels() {
    for dialect in [Dialect::Galaxycache, Dialect::Groupcache] {
        let node = Node::start(dialect).await;
        let v = client(dialect, &node.url)
            .fetch("g".into(), "expiring", soon())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.bytes().as_ref(), b"soon");
        assert_eq!(v.expires_at(), Some(expiry()), "{dialect:?}");
        node.stop().await;
    }
}

#[tokio::test]
async fn expiry_travels_to_the_millisecond() {
    for dialect in [Dialect::Galaxycache, Dialect::Groupcache] {
        let node = Node::start(dialect).await;
        let v = client(dialect, &node.url)
            .fetch("g".into(), "half-second", soon())
            .await
            .unwrap()
            .unwrap();
        let sent = node.fake.sent_expiry.lock().unwrap().expect("served");
        let arrived = v.expires_at().expect("an expiry");
        assert!(
            !v.is_expired_at(SystemTime::now()),
            "{dialect:?}: a value with 500 ms to live arrived expired"
        );
        let lost = sent
            .duration_since(arrived)
            .expect("a copy never outlives its original");
        assert!(lost < Duration::from_millis(1), "{dialect:?}: {lost:?}");
        node.stop().await;
    }
}

#[tokio::test]
async fn not_found_unknown_galaxy_and_load_error_are_distinct() {
    for dialect in [Dialect::Galaxycache, Dialect::Groupcache] {
        let node = Node::start(dialect).await;
        let f = client(dialect, &node.url);
        assert_eq!(
            f.fetch("g".into(), "missing", soon()).await.unwrap(),
            None,
            "{dialect:?}"
        );
        let unknown = f.fetch("nope".into(), "k", soon()).await.unwrap_err();
        assert_eq!(
            unknown.kind(),
            ErrorKind::UnknownGalaxy,
            "{dialect:?}: {unknown}"
        );
        let failed = f.fetch("g".into(), "fail", soon()).await.unwrap_err();
        assert_eq!(failed.kind(), ErrorKind::Remote, "{dialect:?}: {failed}");
        assert_eq!(
            failed.message(),
            "backend exploded",
            "the load's message, unwrapped"
        );
        let empty = f.fetch("g".into(), "", soon()).await.unwrap_err();
        assert_eq!(
            empty.kind(),
            ErrorKind::InvalidRequest,
            "{dialect:?}: {empty}"
        );
        node.stop().await;
    }
}

#[tokio::test]
async fn overloaded_server_says_so() {
    let node = Node::start_with(
        Dialect::Galaxycache,
        Universe::builder("http://self").max_concurrent_serves(1),
    )
    .await;
    let f = client(Dialect::Galaxycache, &node.url);
    let held = tokio::spawn({
        let f = f.clone();
        async move { f.fetch("g".into(), "gate", soon()).await }
    });
    node.fake.started.notified().await;
    let refused = f.fetch("g".into(), "k", soon()).await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Overloaded, "{refused}");
    node.fake.gate.notify_one();
    assert_eq!(
        held.await.unwrap().unwrap().unwrap().bytes().as_ref(),
        b"opened"
    );
    node.stop().await;
}

#[tokio::test]
async fn the_deadline_reaches_the_server() {
    let node = Node::start(Dialect::Galaxycache).await;
    let f = client(Dialect::Galaxycache, &node.url);
    let before = Instant::now();
    let deadline = before + Duration::from_secs(7);
    f.fetch("g".into(), "k", deadline).await.unwrap();
    let (_, seen) = node.fake.last_seen();
    let seen = seen.expect("the server passed no deadline on");
    // Sent as the remaining whole milliseconds (rounded up), re-anchored on arrival.
    assert!(
        seen > before + Duration::from_secs(6),
        "{:?}",
        seen - before
    );
    assert!(
        seen <= Instant::now() + Duration::from_secs(7),
        "{:?}",
        seen - before
    );
    node.stop().await;
}

#[tokio::test]
async fn a_hanging_load_ends_at_the_deadline() {
    let node = Node::start(Dialect::Galaxycache).await;
    let f = client(Dialect::Galaxycache, &node.url);
    let start = Instant::now();
    // The owner's universe answers 504 at the deadline the request carries; the bound
    // here only keeps a broken server from hanging the test.
    let err = tokio::time::timeout(
        Duration::from_secs(5),
        f.fetch("g".into(), "hang", start + Duration::from_millis(200)),
    )
    .await
    .expect("the owner did not answer at the deadline")
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(
        f.fetch("g".into(), "k", soon()).await.unwrap().is_some(),
        "still serving"
    );
    // A passed deadline is refused before anything is sent.
    let err = f.fetch("g".into(), "k", Instant::now()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    node.stop().await;
}

#[tokio::test]
async fn shutdown_lets_the_request_in_progress_finish() {
    let node = Node::start(Dialect::Galaxycache).await;
    let f = client(Dialect::Galaxycache, &node.url);
    // A pooled keep-alive connection, idle: shutdown must close it, not wait on it.
    f.fetch("g".into(), "k", soon()).await.unwrap();
    let in_progress = tokio::spawn({
        let f = f.clone();
        async move { f.fetch("g".into(), "gate", soon()).await }
    });
    node.fake.started.notified().await;
    let fake = node.fake.clone();
    let addr = node.addr;
    let stopping = tokio::spawn(node.stop());
    // Once the listener is closed, shutdown has begun; only then may the request finish.
    let mut closed = false;
    for _ in 0..100 {
        tokio::task::yield_now().await;
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            closed = true;
            break;
        }
    }
    assert!(closed, "serve() kept its listener after shutdown was asked");
    assert!(
        !stopping.is_finished(),
        "serve() returned with a request in progress"
    );
    fake.gate.notify_one();
    let v = in_progress.await.unwrap().unwrap().unwrap();
    assert_eq!(v.bytes().as_ref(), b"opened");
    stopping.await.unwrap();
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(
        refused.is_err(),
        "the listener must be closed after serve() returns"
    );
}

#[tokio::test]
async fn the_service_mounts_with_any_request_body() {
    use tower::ServiceExt;
    let universe = Universe::builder("http://self").build();
    let fake = std::sync::Arc::new(common::Fake::default());
    let handler: std::sync::Arc<dyn GalaxyHandler> = fake.clone();
    universe
        .register("g", std::sync::Arc::downgrade(&handler))
        .unwrap();
    let service = PeerService::new(universe, Dialect::Galaxycache);
    // Any `http_body::Body`: hyper's and axum's in servers, these two here.
    let request = http::Request::get("/_galaxycache/g/a%20b")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = service.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(fake.last_seen().0, "a b");
    let request = http::Request::get("/elsewhere")
        .body(String::new())
        .unwrap();
    assert_eq!(service.oneshot(request).await.unwrap().status(), 404);
}
