//! A value's freshness on the wire: refresh and stale instants beside the expiry, cached
//! misses and stale answers, client and server over real loopback sockets. The instants
//! are fixed wall-clock times, far from now: nothing here waits.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use common::{Node, Written, absent_until, all_instants, channel, fetcher, later, stale_answer};
use galaxycache_grpc::pb::galaxy_cache_client::GalaxyCacheClient;
use galaxycache_grpc::pb::{GetRequest, PeekRequest};
use galaxycache_universe::{Value, WriteOp};
use tonic::Code;

/// The metadata entry of a cached miss's NOT_FOUND.
const EXPIRES_MS: &str = "galaxycache-expires-ms";

/// `at`, truncated to the millisecond, as the metadata of a cached miss carries it.
fn to_ms(at: SystemTime) -> SystemTime {
    let since = at.duration_since(UNIX_EPOCH).unwrap();
    UNIX_EPOCH + Duration::from_millis(since.as_millis().try_into().unwrap())
}

#[tokio::test]
async fn values_travel_with_all_their_instants_or_none() {
    let node = Node::start().await;
    let peer = fetcher(&node);
    for (key, want) in [
        ("all-instants", all_instants()),
        ("plain", Value::new("v:plain")),
    ] {
        let got = peer.fetch("g".into(), key, later()).await.unwrap();
        assert_eq!(got, Some(want.clone()), "fetch {key}: to the nanosecond");
    }
    let got = peer.peek("g".into(), "all-instants", later()).await;
    assert_eq!(got, Ok(Some(all_instants())), "peek");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_cached_miss_arrives_absent_with_its_expiry() {
    let node = Node::start().await;
    let peer = fetcher(&node);
    let fetched = peer.fetch("g".into(), "absent", later()).await.unwrap();
    let peeked = peer.peek("g".into(), "absent", later()).await.unwrap();
    for absent in [fetched, peeked] {
        let absent = absent.expect("a cached miss");
        assert!(absent.is_absent() && absent.is_empty(), "{absent:?}");
        assert_eq!(
            absent.expires_at(),
            Some(to_ms(absent_until())),
            "to the ms"
        );
    }
    // A plain miss, as from an old peer, is NotFound.
    assert_eq!(peer.fetch("g".into(), "missing", later()).await, Ok(None));
    assert_eq!(peer.peek("g".into(), "other", later()).await, Ok(None));
    node.stop().await.unwrap();
}

/// What a Go client sees: NOT_FOUND either way (a miss), the expiry only in metadata.
#[tokio::test]
async fn on_the_wire_a_cached_miss_is_not_found_with_metadata() {
    let node = Node::start().await;
    let mut client = GalaxyCacheClient::new(channel(&node).await);
    let get = |key: &'static str| GetRequest {
        galaxy: "g".into(),
        key: Bytes::from_static(key.as_bytes()),
        version: 0,
    };
    let absent = client.get_from_peer(get("absent")).await.unwrap_err();
    assert_eq!(absent.code(), Code::NotFound);
    let entry = absent.metadata().get(EXPIRES_MS).expect("the expiry");
    assert_eq!(entry, "2000000003123");
    let peek = PeekRequest {
        galaxy: "g".into(),
        key: Bytes::from_static(b"absent"),
        version: 0,
    };
    let peeked = client.peek_peer(peek).await.unwrap_err();
    assert_eq!(peeked.code(), Code::NotFound);
    assert_eq!(peeked.metadata().get(EXPIRES_MS).unwrap(), "2000000003123");
    let missing = client.get_from_peer(get("missing")).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.metadata().get(EXPIRES_MS).is_none());

    let all = client.get_from_peer(get("all-instants")).await.unwrap();
    let all = all.into_inner();
    assert_eq!(all.refresh.unwrap().seconds, 2_000_000_000);
    assert_eq!(all.expiry.unwrap().seconds, 2_000_000_001);
    assert_eq!(all.stale_until.unwrap().nanos, 123_456_789);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_stale_answer_arrives_expired_with_its_stale_limit() {
    let node = Node::start().await;
    let v = fetcher(&node)
        .fetch("g".into(), "stale", later())
        .await
        .unwrap()
        .expect("a stale answer");
    assert_eq!(v, stale_answer());
    let now = SystemTime::now();
    assert!(v.is_expired_at(now) && v.is_servable_stale_at(now));
    assert!(!v.is_absent() && !v.is_stale(), "flags do not travel");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_set_carries_its_refresh_and_stale_instants() {
    let node = Node::start().await;
    let peer = fetcher(&node);
    let sent = all_instants();
    let bare = Value::new("bare");
    peer.write("g".into(), WriteOp::Set("k", &sent), later())
        .await
        .unwrap();
    peer.write("g".into(), WriteOp::Set("b", &bare), later())
        .await
        .unwrap();
    assert_eq!(
        node.fake.writes(),
        [
            Written::Set("k".into(), sent),
            Written::Set("b".into(), bare)
        ],
        "to the nanosecond"
    );
    node.stop().await.unwrap();
}
