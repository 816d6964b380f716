//! A client that ignores the server's stream limit: it opens 1,000 streams on one
//! connection, each a call whose request never ends, without waiting for any answer
//! (before the limit, one connection held 20,000 such streams, +168 MiB). The server
//! refuses every stream past its limit, and serves calls again once the client is gone.
//!
//! The frames are written by hand (RFC 9113), since a real HTTP/2 client would queue the
//! streams past the limit itself instead of sending them.

mod common;

use std::time::Duration;

use common::Node;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: u32 = 8;
const OPENED: u32 = 1000;

const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const END_HEADERS: u8 = 0x4;
const REFUSED_STREAM: u32 = 0x7;

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len[1..]);
    out.extend_from_slice(&[kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A header block of literal fields without indexing (HPACK, RFC 7541 6.2.2), each
/// name and value shorter than 127 bytes.
fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x00);
        out.push(u8::try_from(name.len()).unwrap());
        out.extend_from_slice(name.as_bytes());
        out.push(u8::try_from(value.len()).unwrap());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// What the server said about the opened streams, read until it has answered all of
/// them or gone away: the streams it refused, and the last one it says it processed.
#[derive(Debug, Default)]
struct Answers {
    refused: u32,
    /// Streams reset with another code.
    reset: u32,
    goaway_last_stream: Option<u32>,
}

async fn read_answers(stream: &mut TcpStream) -> Answers {
    let mut answers = Answers::default();
    let mut head = [0u8; 9];
    while answers.refused + answers.reset < OPENED - LIMIT && answers.goaway_last_stream.is_none() {
        if stream.read_exact(&mut head).await.is_err() {
            break; // closed
        }
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0; len];
        stream.read_exact(&mut payload).await.unwrap();
        match head[3] {
            RST_STREAM => match u32::from_be_bytes(payload[..4].try_into().unwrap()) {
                REFUSED_STREAM => answers.refused += 1,
                _ => answers.reset += 1,
            },
            GOAWAY => {
                let last = u32::from_be_bytes(payload[..4].try_into().unwrap()) & 0x7fff_ffff;
                answers.goaway_last_stream = Some(last);
            }
            _ => {}
        }
    }
    answers
}

#[tokio::test]
async fn streams_past_the_limit_are_refused_not_held() {
    let node = Node::start_configured(|u| u, |server| server.max_concurrent_streams(LIMIT)).await;
    let addr = node.url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(SETTINGS, 0, 0, &[]));
    let block = header_block(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/galaxycache.GalaxyCache/Get"),
        (":authority", "peer"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ]);
    for id in (0..OPENED).map(|i| 2 * i + 1) {
        // END_HEADERS but never END_STREAM: a request body that never ends.
        out.extend(frame(HEADERS, END_HEADERS, id, &block));
    }
    stream.write_all(&out).await.unwrap();

    let answers = tokio::time::timeout(Duration::from_secs(20), read_answers(&mut stream))
        .await
        .expect("the server answers the streams past its limit");
    // Every stream past the limit is refused, or past the last one the server processed
    // before going away: at most LIMIT are taken in.
    let held = match answers.goaway_last_stream {
        // Client streams are odd: 1, 3, … last.
        Some(last) => last.div_ceil(2) - answers.refused.min(last.div_ceil(2)),
        None => OPENED - answers.refused,
    };
    assert!(
        held <= LIMIT,
        "{held} streams taken in, not refused: {answers:?}"
    );
    drop(stream);

    // The server is still there for a well-behaved peer.
    let peer = common::fetcher(&node);
    let value = peer.fetch("g".into(), "k", common::later()).await.unwrap();
    assert!(value.is_some());
    node.stop().await.unwrap();
}
