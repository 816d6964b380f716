//! Malformed requests as raw bytes: each gets a clear status or a closed connection, and
//! the server goes on serving.

mod common;

use std::future::poll_fn;
use std::pin::pin;

use bytes::Bytes;
use common::{Node, PATIENCE, later};
use galaxycache_grpc::GrpcProtocol;
use galaxycache_grpc::pb::GetRequest;
use galaxycache_grpc::pb::galaxy_cache_client::GalaxyCacheClient;
use galaxycache_universe::FetchProtocol;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::codegen::{Body, Service, http};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

const GET: &str = "/galaxycachepb.GalaxyCache/GetFromPeer";

/// The server still answers a well-formed fetch.
async fn still_serving(node: &Node) {
    let peer = GrpcProtocol::new().connect(&node.url).unwrap();
    let v = peer.fetch("g", "after", later()).await.unwrap().unwrap();
    assert_eq!(v.bytes().as_ref(), b"v:after");
}

async fn channel(node: &Node) -> Channel {
    Endpoint::from_shared(node.url.clone())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// POST `body` (gRPC framing included, or not) to `path` and return the gRPC status.
/// The bodies here are ASCII, so a `String` carries them.
async fn post_raw(channel: &mut Channel, path: &str, body: &[u8]) -> Status {
    let body = String::from_utf8(body.to_vec()).expect("ASCII test body");
    let request = http::Request::post(format!("http://127.0.0.1{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(tonic::body::Body::new(body))
        .unwrap();
    poll_fn(|cx| channel.poll_ready(cx)).await.unwrap();
    let response = tokio::time::timeout(PATIENCE, channel.call(request))
        .await
        .expect("an answer")
        .unwrap();
    let (parts, body) = response.into_parts();
    if let Some(status) = Status::from_header_map(&parts.headers) {
        return status; // trailers-only answer
    }
    let mut body = pin!(body);
    for _ in 0..1000 {
        let frame = poll_fn(|cx| body.as_mut().poll_frame(cx)).await;
        match frame {
            Some(Ok(frame)) => {
                if let Some(trailers) = frame.trailers_ref() {
                    return Status::from_header_map(trailers).expect("grpc-status");
                }
            }
            other => panic!(
                "body ended without trailers: {:?}",
                other.map(|f| f.is_ok())
            ),
        }
    }
    panic!("too many frames");
}

/// A gRPC message: uncompressed flag, big-endian length, then the bytes.
fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}

#[tokio::test]
async fn a_garbage_preface_closes_that_connection_only() {
    let node = Node::start().await;
    let addr = node.url.trim_start_matches("http://");
    let mut raw = tokio::net::TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nthis is not HTTP/2 at all\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(PATIENCE, raw.read_to_end(&mut answer)).await;
    assert!(
        read.is_ok(),
        "the server must close a connection it cannot speak to"
    );
    still_serving(&node).await;
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_malformed_message_gets_a_status() {
    let node = Node::start().await;
    let mut ch = channel(&node).await;
    // Field 1 (galaxy) claims 127 bytes but 1 follows.
    let status = post_raw(&mut ch, GET, &framed(&[0x0a, 0x7f, b'g'])).await;
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    // A wire type that does not exist.
    let status = post_raw(&mut ch, GET, &framed(&[0x0f, 0x01])).await;
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    // An unknown compression flag.
    let mut bad_flag = framed(b"");
    bad_flag[0] = 7;
    let status = post_raw(&mut ch, GET, &bad_flag).await;
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_eq!(node.fake.calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    still_serving(&node).await;
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_body_cut_short_gets_a_status() {
    let node = Node::start().await;
    let mut ch = channel(&node).await;
    // The prefix promises 127 bytes; 3 arrive, then the stream ends.
    let status = post_raw(&mut ch, GET, &[0, 0, 0, 0, 0x7f, b'a', b'b', b'c']).await;
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    // Not even a whole prefix.
    let status = post_raw(&mut ch, GET, &[0, 0, 0]).await;
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    // No message at all.
    let status = post_raw(&mut ch, GET, b"").await;
    assert_ne!(status.code(), Code::Ok, "{status:?}");
    still_serving(&node).await;
    node.stop().await.unwrap();
}

#[tokio::test]
async fn an_oversized_message_is_refused_before_it_is_read() {
    let node = Node::start_with(|b| b.max_key_len(64)).await;
    let mut ch = channel(&node).await;
    // A prefix announcing 2 GiB: refused from the prefix alone.
    let status = post_raw(&mut ch, GET, &[0, 0x7f, 0x7f, 0x7f, 0x7f, b'x']).await;
    assert_ne!(status.code(), Code::Ok, "{status:?}");
    // A real message over the bound (64-byte keys plus room for the galaxy name).
    let mut client = GalaxyCacheClient::new(ch.clone());
    let huge = GetRequest {
        galaxy: "g".into(),
        key: Bytes::from(vec![b'k'; 64 << 10]),
    };
    let status = client.get_from_peer(huge).await.unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    assert_eq!(node.fake.calls.load(std::sync::atomic::Ordering::SeqCst), 0);
    still_serving(&node).await;
    node.stop().await.unwrap();
}

#[tokio::test]
async fn keys_that_are_not_utf8_or_empty_are_invalid_arguments() {
    let node = Node::start().await;
    let mut client = GalaxyCacheClient::new(channel(&node).await);
    let bad = GetRequest {
        galaxy: "g".into(),
        key: Bytes::from_static(&[b'k', 0xff, 0xfe]),
    };
    let status = client.get_from_peer(bad).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(status.message().contains("UTF-8"), "{status:?}");
    let empty = GetRequest {
        galaxy: "g".into(),
        key: Bytes::new(),
    };
    let status = client.get_from_peer(empty).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    // An empty galaxy name is just an unknown galaxy, marked as such.
    let nameless = GetRequest {
        galaxy: String::new(),
        key: Bytes::from_static(b"k"),
    };
    let status = client.get_from_peer(nameless).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert_eq!(
        status.metadata().get("galaxycache-galaxy-status").unwrap(),
        "not-found"
    );
    assert_eq!(node.fake.calls.load(std::sync::atomic::Ordering::SeqCst), 0);
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
