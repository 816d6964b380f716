//! Raw gRPC calls, for sending a server bytes that the generated client never would:
//! what the bad-input tests of the root crate and of `galaxycache-grpc` use.
#![allow(dead_code, unreachable_pub)]

use std::future::poll_fn;
use std::pin::pin;
use std::time::Duration;

use galaxycache_grpc::tonic::Status;
use galaxycache_grpc::tonic::body::Body as GrpcBody;
use galaxycache_grpc::tonic::codegen::{Body, Service, http};
use galaxycache_grpc::tonic::transport::Channel;

/// Bound on the wait for the server's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(20);

/// POST `body` (gRPC framing included, or not) to `path` and return the gRPC status.
/// The bodies here are ASCII, so a `String` carries them.
pub async fn post_raw(channel: &mut Channel, path: &str, body: &[u8]) -> Status {
    let body = String::from_utf8(body.to_vec()).expect("ASCII test body");
    let request = http::Request::post(format!("http://127.0.0.1{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(GrpcBody::new(body))
        .unwrap();
    poll_fn(|cx| channel.poll_ready(cx)).await.unwrap();
    let response = tokio::time::timeout(ANSWER_WITHIN, channel.call(request))
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
pub fn framed(message: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&(message.len() as u32).to_be_bytes());
    out.extend_from_slice(message);
    out
}
