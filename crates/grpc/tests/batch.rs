//! `GetMany` over loopback: each key's answer on its own (a value with its instants, a
//! miss, a cached miss, a failed load, a refused key), and a bad batch (unknown galaxy,
//! too many keys, truncated) a clear status that reaches no galaxy.

mod common;

use std::sync::Arc;

use common::{Node, all_instants, fetcher, later, post_raw};
use galaxycache_grpc::pb::GetManyRequest;
use galaxycache_grpc::tonic::Code;
use galaxycache_universe::{ErrorKind, MAX_BATCH_KEYS};
use prost::Message as _;

fn keys(list: &[&str]) -> Vec<Arc<str>> {
    list.iter().map(|&k| Arc::from(k)).collect()
}

#[tokio::test]
async fn each_key_of_a_batch_is_answered_on_its_own() {
    let node = Node::start().await;
    let peer = fetcher(&node);
    let asked = keys(&["a", "missing", "fail", "all-instants", "absent", ""]);
    let results = peer.fetch_many("g".into(), &asked, later()).await.unwrap();
    assert_eq!(results.len(), asked.len());
    assert_eq!(
        results[0]
            .as_ref()
            .unwrap()
            .as_ref()
            .unwrap()
            .bytes()
            .as_ref(),
        b"v:a"
    );
    assert!(results[1].as_ref().unwrap().is_none());
    let failed = results[2].as_ref().unwrap_err();
    assert_eq!(
        (failed.kind(), failed.message()),
        (ErrorKind::Remote, "backend exploded")
    );
    let expected = all_instants();
    let got = results[3].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(
        (got.expires_at(), got.refresh_at(), got.stale_until()),
        (
            expected.expires_at(),
            expected.refresh_at(),
            expected.stale_until()
        )
    );
    let absent = results[4].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(absent.expires_at(), Some(common::absent_until()));
    assert_eq!(
        results[5].as_ref().unwrap_err().kind(),
        ErrorKind::InvalidRequest
    );
    node.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_galaxy_or_too_many_keys_fail_the_batch_whole() {
    let node = Node::start().await;
    let peer = fetcher(&node);
    let e = peer
        .fetch_many("nope".into(), &keys(&["a"]), later())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownGalaxy, "{e}");
    let many: Vec<Arc<str>> = (0..=MAX_BATCH_KEYS)
        .map(|i| Arc::from(format!("k{i}")))
        .collect();
    let e = peer
        .fetch_many("g".into(), &many, later())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
    assert_eq!(node.fake.calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_truncated_batch_is_refused_before_any_galaxy() {
    let node = Node::start().await;
    let mut channel = common::channel(&node).await;
    let path = "/galaxycachepb.GalaxyCache/GetMany";
    let whole = GetManyRequest {
        galaxy: "g".into(),
        keys: vec!["a".into(), "b".into()],
        version: 0,
    }
    .encode_to_vec();
    let truncated = common::framed(&whole[..whole.len() - 1]);
    let status = post_raw(&mut channel, path, &truncated).await;
    assert!(
        matches!(status.code(), Code::Internal | Code::InvalidArgument),
        "{status:?}"
    );
    assert_eq!(node.fake.calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    node.stop().await.unwrap();
}
