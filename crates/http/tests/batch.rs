//! Batch fetches over loopback: every key's answer travels on its own (a value with all
//! its instants, a miss, a failed load, a refused key), and a bad batch is a clear error
//! that reaches no galaxy.

mod common;

#[path = "../../../tests/support/batch_answers.rs"]
mod batch_answers;

use std::sync::Arc;

use batch_answers::{batch_answers_as_singles, batches_refused_whole};

use common::{Node, exchange, fetcher, soon};
use galaxycache_http::{Dialect, HttpProtocol};
use galaxycache_universe::ErrorKind;

fn keys(list: &[&str]) -> Vec<Arc<str>> {
    list.iter().map(|&k| Arc::from(k)).collect()
}

#[tokio::test]
async fn each_key_of_a_batch_is_answered_as_a_single_fetch_would_be() {
    let node = Node::start(Dialect::Galaxycache).await;
    let peer = fetcher(HttpProtocol::default(), &node.url);
    let keys = ["a", "missing", "fail", "all-instants", "absent", "", "b/c"];
    let answers = batch_answers_as_singles(&*peer, &keys, soon()).await;
    // A value, besides the kinds the check knows.
    assert!(answers[0].as_ref().unwrap().is_some());
    node.stop().await;
}

#[tokio::test]
async fn a_batch_of_an_unknown_galaxy_or_too_many_keys_fails_whole() {
    let node = Node::start(Dialect::Galaxycache).await;
    let peer = fetcher(HttpProtocol::default(), &node.url);
    batches_refused_whole(&*peer, soon()).await;
    assert!(
        node.fake.seen.lock().unwrap().is_empty(),
        "no key reached the galaxy"
    );
    node.stop().await;
}

#[tokio::test]
async fn truncated_and_malformed_batch_bodies_are_400() {
    let node = Node::start(Dialect::Galaxycache).await;
    for body in [
        &b"\x00\x00\x00\x05ab"[..],
        b"\x00\x00",
        b"\x00\x00\x00\x01\xff",
    ] {
        let mut request = format!(
            "POST /_galaxycache_batch/g HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\
             Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        let answer = String::from_utf8_lossy(&exchange(node.addr, &request).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 400"), "{body:?}: {answer}");
    }
    // A batch path with a key segment, and another verb.
    let answer = exchange(
        node.addr,
        b"POST /_galaxycache_batch/g/k HTTP/1.1\r\nHost: p\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with(b"HTTP/1.1 400"));
    let answer = exchange(
        node.addr,
        b"GET /_galaxycache_batch/g HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with(b"HTTP/1.1 405"));
    assert!(node.fake.seen.lock().unwrap().is_empty());
    node.stop().await;
}

#[tokio::test]
async fn the_groupcache_dialect_has_no_batches() {
    let node = Node::start(Dialect::Groupcache).await;
    let protocol = HttpProtocol::builder().dialect(Dialect::Groupcache).build();
    let peer = fetcher(protocol, &node.url);
    let e = peer
        .fetch_many("g".into(), &keys(&["a"]), soon())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    // Its server has no batch route.
    let answer = exchange(
        node.addr,
        b"POST /_galaxycache_batch/g HTTP/1.1\r\nHost: p\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with(b"HTTP/1.1 404"));
    node.stop().await;
}
