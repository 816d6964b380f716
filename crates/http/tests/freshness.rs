//! A value's freshness on the wire (galaxycache dialect): refresh and stale instants beside
//! the expiry, cached misses and stale answers, client and server over real loopback
//! sockets. The instants are fixed wall-clock times, far from now: nothing here waits.

mod common;

use std::time::SystemTime;

use common::{
    Node, absent_until, client, fetcher, instants, send, soon, stale_instants, status, to_ms,
};
use galaxycache_http::{Dialect, HttpProtocol};
use galaxycache_universe::{Value, WriteOp};

/// A value with the refresh, expiry and stale limit `[refresh, expiry, stale]`.
fn with_instants(bytes: &'static str, [refresh, expiry, stale]: [SystemTime; 3]) -> Value {
    Value::expiring(bytes, expiry)
        .with_refresh_at(Some(refresh))
        .with_stale_until(Some(stale))
}

async fn freshness_round_trips(http2: bool) {
    let node = Node::start(Dialect::Galaxycache).await;
    let f = fetcher(HttpProtocol::builder().http2(http2).build(), &node.url);
    let fetch = |key: &'static str| f.fetch("g".into(), key, soon());

    let all = fetch("all-instants").await.unwrap().expect("a value");
    assert_eq!(
        all,
        with_instants("all", instants().map(to_ms)),
        "to the ms"
    );

    let none = fetch("plain").await.unwrap().expect("a value");
    assert_eq!(none, Value::new("plain"), "no instant appears on the way");

    let absent = fetch("absent").await.unwrap().expect("a cached miss");
    assert!(absent.is_absent() && absent.is_empty(), "{absent:?}");
    assert_eq!(absent.expires_at(), Some(to_ms(absent_until())));

    let stale = fetch("stale").await.unwrap().expect("a stale answer");
    let [expired, stale_until] = stale_instants();
    assert_eq!(
        stale,
        Value::expiring("old", expired).with_stale_until(Some(stale_until))
    );
    let now = SystemTime::now();
    assert!(stale.is_expired_at(now) && stale.is_servable_stale_at(now));
    assert!(
        !stale.is_absent() && !stale.is_stale(),
        "flags do not travel"
    );

    let sent = with_instants("set", instants());
    f.write("g".into(), WriteOp::Set("k", &sent), soon())
        .await
        .unwrap();
    f.write("g".into(), WriteOp::Set("k", &Value::new("bare")), soon())
        .await
        .unwrap();
    assert_eq!(
        *node.fake.set_values.lock().unwrap(),
        [
            with_instants("set", instants().map(to_ms)),
            Value::new("bare")
        ]
    );
    node.stop().await;
}

#[tokio::test]
async fn freshness_round_trips_over_http1() {
    freshness_round_trips(false).await;
}

#[tokio::test]
async fn freshness_round_trips_over_h2c() {
    freshness_round_trips(true).await;
}

/// The exact headers, as a peer in another language would read them.
#[tokio::test]
async fn the_headers_on_the_wire() {
    let node = Node::start(Dialect::Galaxycache).await;
    let get = |key: &str| {
        let path = format!("/_galaxycache/g/{key}");
        async move { send(node.addr, "GET", &path, "", b"").await.to_lowercase() }
    };
    let all = get("all-instants").await;
    assert_eq!(status(&all), "200", "{all}");
    for line in [
        "x-galaxycache-refresh-ms: 4000000000000\r\n",
        "x-galaxycache-expires-ms: 4000000001000\r\n",
        "x-galaxycache-stale-ms: 4000000002000\r\n",
        "expires: ",
    ] {
        assert!(all.contains(line), "{line:?} in {all}");
    }
    let plain = get("plain").await;
    assert!(
        !plain.contains("-ms:") && !plain.contains("expires:"),
        "{plain}"
    );

    let absent = get("absent").await;
    assert_eq!(status(&absent), "404", "{absent}");
    for line in [
        "x-galaxycache-galaxy-status: found\r\n",
        "x-galaxycache-expires-ms: 4000000003000\r\n",
        "expires: ",
    ] {
        assert!(absent.contains(line), "{line:?} in {absent}");
    }
    let missing = get("missing").await;
    assert_eq!(status(&missing), "404", "{missing}");
    assert!(missing.contains("x-galaxycache-galaxy-status: found\r\n"));
    assert!(!missing.contains("expires"), "a plain miss: {missing}");
    node.stop().await;
}

/// The groupcache dialect stays as Go's groupcache knows it: a cached miss is a plain
/// missing key, and a value carries its expiry alone.
#[tokio::test]
async fn the_groupcache_dialect_is_unchanged() {
    let node = Node::start(Dialect::Groupcache).await;
    let f = client(Dialect::Groupcache, &node.url);
    assert_eq!(f.fetch("g".into(), "absent", soon()).await.unwrap(), None);
    let all = f
        .fetch("g".into(), "all-instants", soon())
        .await
        .unwrap()
        .expect("a value");
    let [_, expiry, _] = instants();
    assert_eq!(all, Value::expiring("all", to_ms(expiry)));

    let absent = send(node.addr, "GET", "/_groupcache/g/absent", "", b"").await;
    assert_eq!(status(&absent), "404", "{absent}");
    assert!(!absent.to_lowercase().contains("expires"), "{absent}");
    let value = send(node.addr, "GET", "/_groupcache/g/all-instants", "", b"").await;
    assert!(!value.to_lowercase().contains("refresh-ms"), "{value}");
    assert!(!value.to_lowercase().contains("stale-ms"), "{value}");
    node.stop().await;
}
