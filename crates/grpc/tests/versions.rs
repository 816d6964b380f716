//! Galaxy versions on the wire: a request for another version than the server's galaxy is
//! refused (VersionMismatch at the client) and applies nothing; the same version works.

mod common;

use std::sync::atomic::Ordering;

use common::{Node, Written, fetcher, later};
use galaxycache_grpc::pb::galaxy_cache_client::GalaxyCacheClient;
use galaxycache_grpc::pb::{GetRequest, RemoveRequest};
use galaxycache_universe::{ErrorKind, GalaxyId, RemoteFetcher, Value, WriteOp};
use prost::Message;
use tonic::Code;

/// Every verb at `galaxy`'s version: each must be refused as VersionMismatch, its message
/// naming the server's version and the asked one.
async fn assert_all_refused(peer: &dyn RemoteFetcher, galaxy: GalaxyId<'_>, server: u32) {
    let both = |message: &str| {
        message.contains(&format!("version {server}"))
            && message.contains(&format!("not {}", galaxy.version))
    };
    let e = peer.fetch(galaxy, "k", later()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::VersionMismatch, "fetch: {e}");
    assert!(both(e.message()), "names both versions: {e}");
    let e = peer.peek(galaxy, "cached", later()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::VersionMismatch, "peek: {e}");
    let value = Value::new("v");
    for op in [
        WriteOp::Remove("k"),
        WriteOp::Set("k", &value),
        WriteOp::Flush,
    ] {
        let e = peer.write(galaxy, op, later()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::VersionMismatch, "{op:?}: {e}");
        assert!(both(e.message()), "{op:?} names both versions: {e}");
    }
}

#[tokio::test]
async fn another_version_is_refused_and_nothing_is_applied() {
    let node = Node::start().await;
    let peer = fetcher(&node);
    assert_all_refused(&*peer, GalaxyId::new("g", 3), 0).await;
    assert_eq!(node.fake.calls.load(Ordering::SeqCst), 0, "nothing loaded");
    assert_eq!(node.fake.writes(), [], "nothing written");

    // The same node answers its own version.
    let v = peer.fetch("g".into(), "k", later()).await.unwrap().unwrap();
    assert_eq!(v.bytes().as_ref(), b"v:k");
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_matching_non_zero_version_works_and_version_0_is_refused() {
    let node = Node::start().await;
    node.fake.set_version(7);
    let peer = fetcher(&node);
    let v7 = GalaxyId::new("g", 7);

    let v = peer.fetch(v7, "k", later()).await.unwrap().unwrap();
    assert_eq!(v.bytes().as_ref(), b"v:k");
    let v = peer.peek(v7, "cached", later()).await.unwrap().unwrap();
    assert_eq!(v.bytes().as_ref(), b"from cache");
    let value = Value::new("seven");
    for op in [
        WriteOp::Remove("k"),
        WriteOp::Set("k", &value),
        WriteOp::Flush,
    ] {
        assert_eq!(peer.write(v7, op, later()).await, Ok(()), "{op:?}");
    }
    assert_eq!(
        node.fake.writes(),
        [
            Written::Remove("k".into()),
            Written::Set("k".into(), value),
            Written::Flush,
        ]
    );

    // What a Go node (no version) or a node of the default version asks is refused.
    let calls = node.fake.calls.load(Ordering::SeqCst);
    assert_all_refused(&*peer, "g".into(), 7).await;
    assert_eq!(node.fake.calls.load(Ordering::SeqCst), calls);
    assert_eq!(node.fake.writes().len(), 3);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn the_raw_status_is_failed_precondition() {
    let node = Node::start().await;
    let mut client = GalaxyCacheClient::new(common::channel(&node).await);
    let status = client
        .remove(RemoveRequest {
            galaxy: "g".into(),
            key: "k".into(),
            version: 9,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("version 0"), "{status:?}");
    assert!(status.message().contains("not 9"), "{status:?}");
    assert_eq!(node.fake.writes(), []);
    node.stop().await.unwrap();
}

#[test]
fn version_0_is_what_go_sends_and_other_versions_take_field_100() {
    let go = GetRequest {
        galaxy: "g".into(),
        key: "k".into(),
        version: 0,
    };
    assert_eq!(go.encode_to_vec(), [0x0a, 1, b'g', 0x12, 1, b'k']);
    let v7 = GetRequest { version: 7, ..go };
    // Field 100, varint: tag (100 << 3) | 0 = 800 = 0xa0 0x06.
    assert_eq!(
        v7.encode_to_vec(),
        [0x0a, 1, b'g', 0x12, 1, b'k', 0xa0, 0x06, 7]
    );
}
