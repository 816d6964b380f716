//! The protobuf decoders of the peer protocols: every `galaxycachepb` message, decoded
//! directly and through the gRPC server itself (tonic's framing and decoder, then the
//! service's handlers over an in-memory galaxy), the conversions of `wire.rs` (keys, values
//! and their `google.protobuf.Timestamp` instants, `grpc-timeout`,
//! `galaxycache-expires-ms`), and golang/groupcache's `GetResponse`, the body of a
//! groupcache-dialect HTTP answer.
//!
//! Input: the first byte picks the RPC the rest is sent to; the rest is a message.
//!
//! Must hold: no panic; a decoded message re-encodes to bytes that decode to the same
//! message; a value read from the wire writes its instants back to the same nanosecond; a
//! set with an unusable instant is an invalid request; the server answers every request
//! with a gRPC status.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use galaxycache_galaxy::{Error, Galaxy, Value};
use galaxycache_grpc::fuzzing as w;
use galaxycache_grpc::pb;
use galaxycache_universe::{ErrorKind, Universe};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use prost::Message;
use tower::ServiceExt;

const RPCS: [&str; 5] = ["GetFromPeer", "PeekPeer", "Remove", "Set", "Flush"];

fuzz_target!(|data: &[u8]| {
    let Some((&which, message)) = data.split_first() else {
        return;
    };
    decode_all(message);
    w::grpc_timeout(message);
    if let Some(at) = w::parse_unix_ms(message) {
        assert_eq!(
            w::parse_unix_ms(w::fmt_unix_ms(at).to_string().as_bytes()),
            Some(at)
        );
    }
    let rpc = RPCS[usize::from(which) % RPCS.len()];
    runtime().block_on(serve(rpc, message));
});

/// Decode `bytes` as every message; check each that decodes.
fn decode_all(bytes: &[u8]) {
    if let Ok(m) = pb::GetRequest::decode(bytes) {
        round_trip(&m);
        let _ = w::key_str(&m.key);
    }
    if let Ok(m) = pb::PeekRequest::decode(bytes) {
        round_trip(&m);
        let _ = w::key_str(&m.key);
    }
    if let Ok(m) = pb::RemoveRequest::decode(bytes) {
        round_trip(&m);
        let _ = w::key_str(&m.key);
    }
    if let Ok(m) = pb::FlushRequest::decode(bytes) {
        round_trip(&m);
    }
    if let Ok(m) = pb::GetResponse::decode(bytes) {
        round_trip(&m);
        fetched(w::value_from_wire(
            &m.value,
            m.expiry,
            m.refresh,
            m.stale_until,
        ));
    }
    if let Ok(m) = pb::PeekResponse::decode(bytes) {
        round_trip(&m);
        fetched(w::value_from_wire(
            &m.value,
            m.expiry,
            m.refresh,
            m.stale_until,
        ));
    }
    if let Ok(m) = pb::SetRequest::decode(bytes) {
        round_trip(&m);
        let _ = w::key_str(&m.key);
        match w::set_value_from_wire(&m.value, m.expiry, m.refresh, m.stale_until) {
            Ok(value) => fetched(Ok(value)),
            Err(e) => assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}"),
        }
    }
    if let Ok((value, encoded)) = galaxycache_http::fuzzing::decode_get_response(bytes) {
        let (again, encoded_again) = galaxycache_http::fuzzing::decode_get_response(&encoded)
            .expect("a re-encoded GetResponse decodes");
        assert_eq!((again, encoded_again), (value, encoded));
    }
}

/// Encoding a decoded message and decoding it again gives the same message (compared as
/// bytes: a `double` may be NaN).
fn round_trip<M: Message + Default>(m: &M) {
    let encoded = m.encode_to_vec();
    let again = M::decode(&encoded[..]).expect("a re-encoded message decodes");
    assert_eq!(again.encode_to_vec(), encoded);
}

/// A value read from the wire writes back the instants it was read from.
fn fetched(result: Result<Value, galaxycache_universe::Error>) {
    let Ok(value) = result else {
        return;
    };
    let (expiry, refresh, stale) = w::instants_to_wire(&value);
    let again = w::value_from_wire(value.bytes(), expiry, refresh, stale)
        .expect("instants we write are usable");
    assert_eq!(again, value);
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime")
    })
}

/// Send `message` to `rpc` of a fresh server over one galaxy `g`, whose keys `missing`
/// and `fail` are a miss and a failed load, and every other key its own value.
async fn serve(rpc: &str, message: &[u8]) {
    let url = "http://127.0.0.1:1";
    let universe = Universe::builder(url).build();
    let backend = |key: String| async move {
        match key.as_str() {
            "missing" => Ok(None),
            "fail" => Err(Error::backend("failed")),
            _ => Ok(Some(Value::new(key))),
        }
    };
    let _galaxy = Galaxy::builder(&universe, "g", 1 << 20, backend)
        .build()
        .expect("a galaxy");
    let mut framed = BytesMut::with_capacity(message.len() + 5);
    framed.put_u8(0);
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(message);
    let request = http::Request::post(format!("/galaxycachepb.GalaxyCache/{rpc}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(framed.freeze()))
        .expect("a request");
    let service = galaxycache_grpc::service(universe);
    let call = service.oneshot(request);
    let response = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("the server answers")
        .expect("the service does not fail");
    let (parts, body) = response.into_parts();
    let status_in_headers = parts.headers.contains_key("grpc-status");
    let collected = body.collect().await.expect("the body is read");
    let status_in_trailers = collected
        .trailers()
        .is_some_and(|t| t.contains_key("grpc-status"));
    let _: Bytes = collected.to_bytes();
    assert!(
        status_in_headers || status_in_trailers,
        "{rpc}: an answer without a gRPC status: {parts:?}"
    );
}
