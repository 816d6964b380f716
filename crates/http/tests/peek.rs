//! The peek verb (galaxycache dialect, as galaxycache (Go) v1.3+): client and server over
//! real loopback sockets. A peek answers from the owner's caches and never loads.

mod common;

use common::{Node, absent_until, fetcher, instants, send, soon, stale_instants, status, to_ms};
use galaxycache_http::{Dialect, HttpProtocol};
use galaxycache_universe::{ErrorKind, GalaxyId, Value};

async fn peek_round_trips(http2: bool) {
    let node = Node::start(Dialect::Galaxycache).await;
    let f = fetcher(HttpProtocol::builder().http2(http2).build(), &node.url);
    let peek = |key: &'static str| f.peek("g".into(), key, soon());

    assert_eq!(peek("plain").await, Ok(Some(Value::new("plain"))), "a hit");
    let [refresh, expiry, stale] = instants().map(to_ms);
    let all = Value::expiring("all", expiry)
        .with_refresh_at(Some(refresh))
        .with_stale_until(Some(stale));
    assert_eq!(peek("all-instants").await, Ok(Some(all)), "to the ms");
    let expiring = Value::expiring("soon", common::expiry());
    assert_eq!(peek("expiring").await, Ok(Some(expiring)));
    assert_eq!(peek("cold").await, Ok(None), "not cached: a miss");

    let absent = peek("absent").await.unwrap().expect("a cached miss");
    assert!(absent.is_absent(), "{absent:?}");
    assert_eq!(absent, Value::absent(to_ms(absent_until())));

    let [expired, stale_until] = stale_instants();
    let old = Value::expiring("old", expired).with_stale_until(Some(stale_until));
    assert_eq!(peek("stale").await, Ok(Some(old)), "as the owner has it");

    let unknown = f.peek("nope".into(), "k", soon()).await.unwrap_err();
    assert_eq!(unknown.kind(), ErrorKind::UnknownGalaxy, "{unknown}");
    let other = f.peek(GalaxyId::new("g", 2), "plain", soon()).await;
    assert_eq!(other.unwrap_err().kind(), ErrorKind::VersionMismatch);
    node.fake.set_version(2);
    let v2 = f.peek(GalaxyId::new("g", 2), "plain", soon()).await;
    assert_eq!(v2, Ok(Some(Value::new("plain"))), "at the galaxy's version");
    let v0 = f.peek("g".into(), "plain", soon()).await;
    assert_eq!(v0.unwrap_err().kind(), ErrorKind::VersionMismatch);

    let peeked = node.fake.peeked.lock().unwrap().clone();
    let want = [
        "plain",
        "all-instants",
        "expiring",
        "cold",
        "absent",
        "stale",
        "plain",
    ];
    assert_eq!(peeked, want, "versions and galaxies are refused first");
    assert_eq!(
        node.fake.seen.lock().unwrap().len(),
        0,
        "a peek never loads"
    );
    node.stop().await;
}

#[tokio::test]
async fn peek_round_trips_over_http1() {
    peek_round_trips(false).await;
}

#[tokio::test]
async fn peek_round_trips_over_h2c() {
    peek_round_trips(true).await;
}

/// A peek is answered exactly as a `GET` of the same key: status, headers and body.
#[tokio::test]
async fn a_peek_is_answered_as_a_get() {
    let node = Node::start(Dialect::Galaxycache).await;
    for (path, headers) in [
        ("g/all-instants", ""),
        ("g/expiring", ""),
        ("g/absent", ""),
        ("g/stale", ""),
        ("g/plain", "X-Galaxycache-Version: 3\r\n"),
        ("nope/k", ""),
    ] {
        let get = send(
            node.addr,
            "GET",
            &format!("/_galaxycache/{path}"),
            headers,
            b"",
        )
        .await;
        let peek = send(
            node.addr,
            "GET",
            &format!("/_galaxycache_peek/{path}"),
            headers,
            b"",
        )
        .await;
        assert_eq!(without_date(&peek), without_date(&get), "{path}");
    }
    let absent = send(node.addr, "GET", "/_galaxycache_peek/g/absent", "", b"").await;
    assert_eq!(status(&absent), "404", "{absent}");
    for header in [
        "x-galaxycache-galaxy-status: Found\r\n",
        "x-galaxycache-expires-ms: ",
        "expires: ",
    ] {
        assert!(absent.contains(header), "{header}: {absent}");
    }
    let cold = send(node.addr, "GET", "/_galaxycache_peek/g/cold", "", b"").await;
    assert_eq!(status(&cold), "404", "{cold}");
    assert!(
        cold.contains("x-galaxycache-galaxy-status: Found\r\n"),
        "{cold}"
    );
    assert!(!cold.contains("expires"), "a plain miss: {cold}");
    let nope = send(node.addr, "GET", "/_galaxycache_peek/nope/k", "", b"").await;
    assert!(
        nope.contains("x-galaxycache-galaxy-status: Not Found\r\n"),
        "{nope}"
    );
    node.stop().await;
}

/// `response` without its `date` header, which two answers a second apart do not share.
fn without_date(response: &str) -> String {
    response
        .split("\r\n")
        .filter(|line| !line.starts_with("date: "))
        .collect::<Vec<_>>()
        .join("\r\n")
}
