//! The write verbs (remove, set, flush) and galaxy versions, client and server over real
//! loopback sockets: what the galaxy receives is what the caller sent.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Fake, Node, Written, client, fetcher, soon};
use galaxycache_http::{Dialect, HttpProtocol, PeerService};
use galaxycache_universe::{ErrorKind, GalaxyHandler, GalaxyId, Universe, Value, WriteOp};

/// Keys that need escaping in a path, and some that look escaped already.
const KEYS: [&str; 9] = [
    "plain",
    "a b",
    "a/b/c",
    "trail/",
    "100%",
    "%2F",
    "a+b",
    "?q=1#frag",
    "ünïcødé ✓ 鍵",
];

async fn writes_round_trip(http2: bool) {
    let node = Node::start(Dialect::Galaxycache).await;
    let f = fetcher(HttpProtocol::builder().http2(http2).build(), &node.url);
    let g = GalaxyId::from("g");
    // Microseconds on the wire would be lost: the expiry travels to the millisecond,
    // truncated, so a copy never outlives the original.
    let expires = UNIX_EPOCH + Duration::from_micros(4_000_000_000_123_456);
    let expires_ms = UNIX_EPOCH + Duration::from_millis(4_000_000_000_123);
    let mut want = Vec::new();
    for key in KEYS {
        f.write(g, WriteOp::Remove(key), soon()).await.unwrap();
        want.push(Written::Remove(key.into()));

        let plain = Value::new(format!("v:{key}"));
        f.write(g, WriteOp::Set(key, &plain), soon()).await.unwrap();
        want.push(Written::Set(key.into(), format!("v:{key}").into(), None));

        let binary = Value::expiring(vec![0, 255, b'\r', b'\n', 1], expires);
        f.write(g, WriteOp::Set(key, &binary), soon())
            .await
            .unwrap();
        want.push(Written::Set(
            key.into(),
            vec![0, 255, b'\r', b'\n', 1],
            Some(expires_ms),
        ));
    }
    let empty = Value::new("");
    f.write(g, WriteOp::Set("e", &empty), soon()).await.unwrap();
    want.push(Written::Set("e".into(), Vec::new(), None));
    let big = Value::new(vec![7u8; 1 << 20]);
    f.write(g, WriteOp::Set("big", &big), soon()).await.unwrap();
    want.push(Written::Set("big".into(), vec![7u8; 1 << 20], None));
    f.write(g, WriteOp::Flush, soon()).await.unwrap();
    want.push(Written::Flush);

    assert_eq!(node.fake.writes(), want);
    assert!(
        node.fake.seen.lock().unwrap().is_empty(),
        "a write loads nothing"
    );
    node.stop().await;
}

#[tokio::test]
async fn writes_round_trip_over_http1() {
    writes_round_trip(false).await;
}

#[tokio::test]
async fn writes_round_trip_over_h2c() {
    writes_round_trip(true).await;
}

#[tokio::test]
async fn galaxy_names_of_writes_are_escaped_too() {
    let node = Node::start(Dialect::Galaxycache).await;
    let odd = Arc::new(Fake::default());
    let handler: Arc<dyn GalaxyHandler> = odd.clone();
    node.universe
        .register("odd/galaxy é", Arc::downgrade(&handler))
        .unwrap();
    let f = client(Dialect::Galaxycache, &node.url);
    let g = GalaxyId::from("odd/galaxy é");
    f.write(g, WriteOp::Flush, soon()).await.unwrap();
    f.write(g, WriteOp::Remove("k/1"), soon()).await.unwrap();
    assert_eq!(
        odd.writes(),
        [Written::Flush, Written::Remove("k/1".into())],
        "a flush path has no key segment, so the `/` of the name must stay escaped"
    );
    assert_eq!(node.fake.writes(), [], "galaxy g was not written to");
    node.stop().await;
}

#[tokio::test]
async fn versions_must_match() {
    let node = Node::start(Dialect::Galaxycache).await;
    node.fake.set_version(3);
    let f = client(Dialect::Galaxycache, &node.url);
    let value = Value::new("v");

    let v3 = GalaxyId::new("g", 3);
    let got = f.fetch(v3, "k", soon()).await.unwrap().unwrap();
    assert_eq!(got.bytes().as_ref(), b"k");
    f.write(v3, WriteOp::Set("k", &value), soon())
        .await
        .unwrap();
    f.write(v3, WriteOp::Flush, soon()).await.unwrap();

    // Version 0 sends no header at all: absent means 0, which is not 3 either.
    for other in [
        GalaxyId::new("g", 2),
        GalaxyId::from("g"),
        GalaxyId::new("g", u32::MAX),
    ] {
        let e = f.fetch(other, "k2", soon()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::VersionMismatch, "{other:?}: {e}");
        for op in [
            WriteOp::Remove("k"),
            WriteOp::Set("k", &value),
            WriteOp::Flush,
        ] {
            let e = f.write(other, op, soon()).await.unwrap_err();
            assert_eq!(
                e.kind(),
                ErrorKind::VersionMismatch,
                "{other:?} {op:?}: {e}"
            );
            assert!(e.message().contains("409"), "{e}");
        }
    }
    assert_eq!(
        node.fake.writes(),
        [
            Written::Set("k".into(), b"v".to_vec(), None),
            Written::Flush
        ],
        "nothing of another version was applied"
    );
    let seen: Vec<String> = node
        .fake
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.0.clone())
        .collect();
    assert_eq!(seen, ["k"], "nothing of another version was loaded");
    node.stop().await;
}

#[tokio::test]
async fn write_errors_of_a_real_server() {
    let node = Node::start_with(
        Dialect::Galaxycache,
        Universe::builder("http://self").max_key_len(16),
    )
    .await;
    let f = client(Dialect::Galaxycache, &node.url);
    let value = Value::new("v");
    let e = f
        .write("nope".into(), WriteOp::Flush, soon())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownGalaxy, "{e}");
    let e = f
        .write("nope".into(), WriteOp::Set("k", &value), soon())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownGalaxy, "{e}");
    for key in ["", &"k".repeat(17)] {
        for op in [WriteOp::Remove(key), WriteOp::Set(key, &value)] {
            let e = f.write("g".into(), op, soon()).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{op:?}: {e}");
        }
    }
    // A passed deadline is refused before anything is sent.
    let e = f
        .write("g".into(), WriteOp::Flush, tokio::time::Instant::now())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(node.fake.writes(), []);
    node.stop().await;
}

#[tokio::test]
async fn a_value_over_the_servers_bound_is_too_large() {
    let node = Node::start_configured(
        Dialect::Galaxycache,
        Universe::builder("http://self"),
        |service| service.max_request_bytes(1024),
    )
    .await;
    let f = client(Dialect::Galaxycache, &node.url);
    let fits = Value::new(vec![1u8; 1024]);
    f.write("g".into(), WriteOp::Set("k", &fits), soon())
        .await
        .unwrap();
    let over = Value::new(vec![1u8; 1025]);
    let e = f
        .write("g".into(), WriteOp::Set("k", &over), soon())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    assert_eq!(
        node.fake.writes(),
        [Written::Set("k".into(), vec![1u8; 1024], None)]
    );
    node.stop().await;
}

#[tokio::test]
async fn a_galaxy_that_cannot_write_is_unsupported() {
    // A galaxy of its own whose serve_write refuses, as one that has no write path does.
    #[derive(Debug)]
    struct ReadOnly;
    impl GalaxyHandler for ReadOnly {
        fn serve_get<'a>(
            &'a self,
            _: &'a str,
            _: Option<tokio::time::Instant>,
        ) -> galaxycache_universe::BoxFuture<'a, galaxycache_universe::FetchResult> {
            Box::pin(async { Ok(None) })
        }
        fn serve_peek(&self, _: &str) -> Option<Value> {
            None
        }
        fn serve_write(&self, _: WriteOp<'_>) -> Result<(), galaxycache_universe::Error> {
            Err(galaxycache_universe::Error::new(
                ErrorKind::Unsupported,
                "read-only",
            ))
        }
    }
    let node = Node::start(Dialect::Galaxycache).await;
    let read_only: Arc<dyn GalaxyHandler> = Arc::new(ReadOnly);
    node.universe
        .register("ro", Arc::downgrade(&read_only))
        .unwrap();
    let e = client(Dialect::Galaxycache, &node.url)
        .write("ro".into(), WriteOp::Remove("k"), soon())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.message().contains("501"), "{e}");
    node.stop().await;
}

#[tokio::test]
async fn writes_reach_a_mounted_service_with_any_body() {
    use tower::ServiceExt;
    let universe = Universe::builder("http://self").build();
    let fake = Arc::new(Fake::default());
    let handler: Arc<dyn GalaxyHandler> = fake.clone();
    universe.register("g", Arc::downgrade(&handler)).unwrap();
    let service = PeerService::new(universe, Dialect::Galaxycache);
    let put = http::Request::put("/_galaxycache/g/a%20b")
        .header("x-galaxycache-expires-ms", "4000000000123")
        .body(String::from("value"))
        .unwrap();
    let response = service.clone().oneshot(put).await.unwrap();
    assert_eq!(response.status(), 204);
    let delete = http::Request::delete("/_galaxycache/g")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(service.oneshot(delete).await.unwrap().status(), 204);
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(4_000_000_000_123);
    assert_eq!(
        fake.writes(),
        [
            Written::Set("a b".into(), b"value".to_vec(), Some(at)),
            Written::Flush
        ]
    );
}
