//! `GetMany` over loopback: each key's answer on its own (a value with its instants, a
//! miss, a cached miss, a failed load, a refused key), and a bad batch (unknown galaxy,
//! too many keys, truncated) a clear status that reaches no galaxy.

mod common;

#[path = "../../../tests/support/batch_answers.rs"]
mod batch_answers;

use batch_answers::{batch_answers_as_singles, batches_refused_whole};

use common::{Node, fetcher, later, post_raw};
use galaxycache_grpc::pb::GetManyRequest;
use galaxycache_grpc::tonic::Code;
use prost::Message as _;

#[tokio::test]
async fn each_key_of_a_batch_is_answered_as_a_single_fetch_would_be() {
    let node = Node::start().await;
    let peer = fetcher(&node);
    let keys = ["a", "missing", "fail", "all-instants", "absent", ""];
    let answers = batch_answers_as_singles(&*peer, &keys, later()).await;
    // A value, besides the kinds the check knows.
    assert!(answers[0].as_ref().unwrap().is_some());
    node.stop().await.unwrap();
}

#[tokio::test]
async fn an_unknown_galaxy_or_too_many_keys_fail_the_batch_whole() {
    let node = Node::start().await;
    let peer = fetcher(&node);
    batches_refused_whole(&*peer, later()).await;
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
