//! Bad write requests sent as raw protobuf (the generated client) or hand-built frames:
//! each gets a clear status, the galaxy records nothing, and the server goes on serving.

mod common;

use bytes::Bytes;
use common::{Node, Written, channel, fetcher, framed, later, post_raw, still_serving};
use galaxycache_grpc::pb::galaxy_cache_client::GalaxyCacheClient;
use galaxycache_grpc::pb::{FlushRequest, RemoveRequest, SetRequest};
use galaxycache_universe::{ErrorKind, Value, WriteOp};
use prost::Message;
use prost_types::Timestamp;
use tonic::transport::Channel;
use tonic::{Code, Status};

const MAX_KEY_LEN: usize = 64;
const MAX_VALUE_BYTES: usize = 16 << 10;
const SET: &str = "/galaxycachepb.GalaxyCache/Set";
const REMOVE: &str = "/galaxycachepb.GalaxyCache/Remove";
const FLUSH: &str = "/galaxycachepb.GalaxyCache/Flush";

async fn start() -> Node {
    Node::start_configured(
        |b| b.max_key_len(MAX_KEY_LEN),
        |s| s.max_value_bytes(MAX_VALUE_BYTES),
    )
    .await
}

fn remove(galaxy: &str, key: &[u8]) -> RemoveRequest {
    RemoveRequest {
        galaxy: galaxy.to_owned(),
        key: Bytes::copy_from_slice(key),
        version: 0,
    }
}

fn set(galaxy: &str, key: &[u8], value: usize) -> SetRequest {
    SetRequest {
        galaxy: galaxy.to_owned(),
        key: Bytes::copy_from_slice(key),
        value: Bytes::from(vec![b'v'; value]),
        expiry: None,
        version: 0,
        refresh: None,
        stale_until: None,
    }
}

/// The status of a remove and of a set of `key` in `galaxy`.
async fn remove_and_set(
    client: &mut GalaxyCacheClient<Channel>,
    galaxy: &str,
    key: &[u8],
) -> [Status; 2] {
    [
        client.remove(remove(galaxy, key)).await.unwrap_err(),
        client.set(set(galaxy, key, 3)).await.unwrap_err(),
    ]
}

/// INVALID_ARGUMENT, saying whether the galaxy exists, with a bounded message.
fn assert_invalid(what: &str, status: &Status, galaxy_status: &str) {
    assert_eq!(status.code(), Code::InvalidArgument, "{what}: {status:?}");
    let entry = status.metadata().get("galaxycache-galaxy-status");
    assert_eq!(entry.unwrap(), galaxy_status, "{what}: {status:?}");
    assert!(status.message().len() < 1024, "{what}: a bounded message");
}

#[tokio::test]
async fn bad_keys_are_invalid_arguments_and_change_nothing() {
    let node = start().await;
    let mut client = GalaxyCacheClient::new(channel(&node).await);
    for (what, key) in [
        ("an empty key", &b""[..]),
        ("a key over the bound", &[b'k'; MAX_KEY_LEN + 1]),
        ("a key that is not UTF-8", &[b'k', 0xc3, 0x28]),
    ] {
        for status in remove_and_set(&mut client, "g", key).await {
            assert_invalid(what, &status, "found");
        }
    }
    // An instant no SystemTime can hold, or no Timestamp: in each field, beside well-formed
    // others.
    let fine = Some(Timestamp {
        seconds: 4_000_000_000,
        nanos: 0,
    });
    let out_of_range = [
        Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        },
        Timestamp {
            seconds: 0,
            nanos: -1,
        },
    ];
    for bad in out_of_range.map(Some) {
        for field in ["expiry", "refresh", "stale_until"] {
            let mut far = set("g", b"k", 3);
            (far.expiry, far.refresh, far.stale_until) = match field {
                "expiry" => (bad, fine, fine),
                "refresh" => (fine, bad, fine),
                _ => (fine, fine, bad),
            };
            let status = client.set(far).await.unwrap_err();
            assert_invalid(&format!("{field} {bad:?}"), &status, "found");
            assert!(status.message().contains(field), "{status:?}");
        }
    }

    assert_eq!(node.fake.writes(), []);
    still_serving(&node).await;
    node.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_galaxies_are_invalid_arguments_and_change_nothing() {
    let node = start().await;
    let mut client = GalaxyCacheClient::new(channel(&node).await);
    let huge = "n".repeat(3000);
    for galaxy in ["nope", huge.as_str()] {
        for status in remove_and_set(&mut client, galaxy, b"k").await {
            assert_invalid(galaxy, &status, "not-found");
        }
        let flush = FlushRequest {
            galaxy: galaxy.to_owned(),
            version: 0,
        };
        let status = client.flush(flush).await.unwrap_err();
        assert_invalid(galaxy, &status, "not-found");
    }
    assert_eq!(node.fake.writes(), []);
    still_serving(&node).await;
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_wrong_version_is_failed_precondition_and_changes_nothing() {
    let node = start().await;
    let mut client = GalaxyCacheClient::new(channel(&node).await);
    let statuses = [
        client
            .remove(RemoveRequest {
                version: 1,
                ..remove("g", b"k")
            })
            .await,
        client
            .set(SetRequest {
                version: u32::MAX,
                ..set("g", b"k", 3)
            })
            .await
            .map(|_| tonic::Response::new(Default::default())),
        client
            .flush(FlushRequest {
                galaxy: "g".into(),
                version: 2,
            })
            .await
            .map(|_| tonic::Response::new(Default::default())),
    ];
    for status in statuses {
        let status = status.unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
        assert!(status.message().contains("version 0"), "{status:?}");
    }
    assert_eq!(node.fake.writes(), []);
    still_serving(&node).await;
    node.stop().await.unwrap();
}

#[tokio::test]
async fn a_set_value_over_the_bound_is_out_of_range_and_changes_nothing() {
    let node = start().await;
    let mut client = GalaxyCacheClient::new(channel(&node).await);
    // The message bound is the longest key, the largest value and 4 KiB. Just over it,
    // within one HTTP/2 window, and far past it (many windows): the status arrives in each
    // case, read from the length prefix.
    let bound = MAX_KEY_LEN + MAX_VALUE_BYTES + 4096;
    // Galaxy, key and the value's tag and length take a few bytes beyond the value.
    let fields = set("g", b"k", bound).encoded_len() - bound;
    let just_over = set("g", b"k", bound + 1 - fields);
    assert_eq!(just_over.encoded_len(), bound + 1);
    for request in [just_over, set("g", b"k", 60 << 10), set("g", b"k", 4 << 20)] {
        let value = request.value.len();
        let status = client.set(request).await.unwrap_err();
        assert_eq!(status.code(), Code::OutOfRange, "{value} bytes: {status:?}");
        assert!(status.message().contains("too large"), "{status:?}");
    }
    // Through the fetcher: TooLarge.
    let big = Value::new(vec![b'v'; 1 << 20]);
    let e = fetcher(&node)
        .write("g".into(), WriteOp::Set("k", &big), later())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TooLarge, "{e}");
    assert_eq!(node.fake.writes(), []);

    // The bound is not tighter than promised: the longest key with the largest value.
    let key = "k".repeat(MAX_KEY_LEN);
    let largest = set("g", key.as_bytes(), MAX_VALUE_BYTES);
    client.set(largest).await.unwrap();
    let value = Value::new(vec![b'v'; MAX_VALUE_BYTES]);
    assert_eq!(node.fake.writes(), [Written::Set(key, value)]);
    still_serving(&node).await;
    node.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_and_truncated_messages_get_internal() {
    let node = start().await;
    let mut ch = channel(&node).await;
    // A set of galaxy "g", key "k", whose value field promises 127 bytes and has 1.
    let short_value = framed(&[0x0a, 1, b'g', 0x12, 1, b'k', 0x1a, 0x7f, b'v']);
    for (what, path, body) in [
        ("a value longer than the message", SET, short_value),
        (
            "a key longer than the message",
            REMOVE,
            framed(&[0x0a, 1, b'g', 0x12, 0x7f]),
        ),
        (
            "a wire type that does not exist",
            FLUSH,
            framed(&[0x0f, 0x01]),
        ),
        ("a truncated varint", FLUSH, framed(&[0x0a, 1, b'g', 0x10])),
        (
            "a prefix promising more than arrives",
            SET,
            vec![0, 0, 0, 0, 0x7f, b'a'],
        ),
        ("half a prefix", REMOVE, vec![0, 0, 0]),
    ] {
        let status = post_raw(&mut ch, path, &body).await;
        assert_eq!(status.code(), Code::Internal, "{what}: {status:?}");
    }
    let status = post_raw(&mut ch, SET, &[0, 0x7f, 0x7f, 0x7f, 0x7f, b'x']).await;
    assert_eq!(
        status.code(),
        Code::OutOfRange,
        "a 2 GiB prefix: {status:?}"
    );
    assert_eq!(node.fake.writes(), []);

    // A well-formed flush, framed by hand, is applied: the frames above were not refused
    // for their framing alone.
    let status = post_raw(&mut ch, FLUSH, &framed(&[0x0a, 1, b'g'])).await;
    assert_eq!(status.code(), Code::Ok, "{status:?}");
    assert_eq!(node.fake.writes(), [Written::Flush]);
    still_serving(&node).await;
    node.stop().await.unwrap();
}
