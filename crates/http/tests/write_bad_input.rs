//! Bad writes sent as raw bytes: each gets a clear status, the galaxy receives no write,
//! and the server keeps serving.

mod common;

use std::time::{Duration, UNIX_EPOCH};

use common::{Node, Written, assert_still_serving, exchange, send, status};
use galaxycache_http::Dialect;
use galaxycache_universe::Universe;

/// A galaxycache-dialect node for galaxy `g` (version 0), keys up to 100 bytes, request
/// bodies up to 1 KiB.
async fn small_node() -> Node {
    Node::start_configured(
        Dialect::Galaxycache,
        Universe::builder("http://self").max_key_len(100),
        |service| service.max_request_bytes(1024),
    )
    .await
}

/// `content-length` for `body`, as a header line.
fn sized(body: &[u8]) -> String {
    format!("Content-Length: {}\r\n", body.len())
}

#[tokio::test]
async fn bad_writes_change_nothing_and_the_server_keeps_serving() {
    let node = small_node().await;
    let long = "k".repeat(101);
    // Escaped, 303 bytes of path; decoded, 101 bytes of key: the bound is on the key.
    let escaped_long = "%6B".repeat(101);
    let v: &[u8] = b"value";
    let over = vec![b'x'; 1025];
    let z = "Content-Length: 0\r\n";
    // Two chunks of 768 bytes, and no last chunk: only counting ends the read.
    let mut streamed = Vec::new();
    for _ in 0..2 {
        streamed.extend_from_slice(b"300\r\n");
        streamed.extend_from_slice(&[b'x'; 0x300]);
        streamed.extend_from_slice(b"\r\n");
    }
    // (method, path, headers, body, status)
    let cases: Vec<(&str, String, String, &[u8], &str)> = vec![
        // No such galaxy.
        (
            "DELETE",
            "/_galaxycache/nope/k".into(),
            z.into(),
            b"",
            "404",
        ),
        ("DELETE", "/_galaxycache/nope".into(), z.into(), b"", "404"),
        ("PUT", "/_galaxycache/nope/k".into(), sized(v), v, "404"),
        // Empty, missing, oversized or malformed keys and galaxy names.
        ("DELETE", "/_galaxycache/g/".into(), z.into(), b"", "400"),
        ("PUT", "/_galaxycache/g/".into(), sized(v), v, "400"),
        ("PUT", "/_galaxycache/g".into(), sized(v), v, "400"),
        (
            "DELETE",
            format!("/_galaxycache/g/{long}"),
            z.into(),
            b"",
            "400",
        ),
        ("PUT", format!("/_galaxycache/g/{long}"), sized(v), v, "400"),
        (
            "DELETE",
            format!("/_galaxycache/g/{escaped_long}"),
            z.into(),
            b"",
            "400",
        ),
        ("DELETE", "/_galaxycache/g/%zz".into(), z.into(), b"", "400"),
        ("DELETE", "/_galaxycache/%zz".into(), z.into(), b"", "400"),
        ("PUT", "/_galaxycache/g/%ff".into(), sized(v), v, "400"),
        // Bodies over the bound: claimed, and streamed without a length.
        (
            "PUT",
            "/_galaxycache/g/k".into(),
            sized(&over),
            &over,
            "413",
        ),
        (
            "PUT",
            "/_galaxycache/g/k".into(),
            "Content-Length: 67108865\r\n".into(),
            b"",
            "413",
        ),
        (
            "PUT",
            "/_galaxycache/g/k".into(),
            "Transfer-Encoding: chunked\r\n".into(),
            &streamed,
            "413",
        ),
        // Malformed headers.
        (
            "PUT",
            "/_galaxycache/g/k".into(),
            format!("X-Galaxycache-Expires-Ms: soon\r\n{}", sized(v)),
            v,
            "400",
        ),
        (
            "PUT",
            "/_galaxycache/g/k".into(),
            format!("Expires: whenever\r\n{}", sized(v)),
            v,
            "400",
        ),
        // Malformed refresh and stale instants, beside a well-formed expiry.
        (
            "PUT",
            "/_galaxycache/g/k".into(),
            format!(
                "X-Galaxycache-Expires-Ms: 4000000000000\r\nX-Galaxycache-Refresh-Ms: soon\r\n{}",
                sized(v)
            ),
            v,
            "400",
        ),
        (
            "PUT",
            "/_galaxycache/g/k".into(),
            format!("X-Galaxycache-Stale-Ms: -1\r\n{}", sized(v)),
            v,
            "400",
        ),
        (
            "PUT",
            "/_galaxycache/g/k".into(),
            format!(
                "X-Galaxycache-Stale-Ms: 99999999999999999999999\r\n{}",
                sized(v)
            ),
            v,
            "400",
        ),
        (
            "DELETE",
            "/_galaxycache/g/k".into(),
            format!("X-Galaxycache-Timeout-Ms: soon\r\n{z}"),
            b"",
            "400",
        ),
        // A deadline that passed while the body has not arrived (100 bytes said, 5 sent).
        (
            "PUT",
            "/_galaxycache/g/k".into(),
            "X-Galaxycache-Timeout-Ms: 0\r\nContent-Length: 100\r\n".into(),
            v,
            "504",
        ),
    ];
    for (method, path, headers, body, want) in &cases {
        let response = send(node.addr, method, path, headers, body).await;
        assert_eq!(status(&response), *want, "{method} {path}: {response}");
        if *want == "404" {
            assert!(
                response.contains("x-galaxycache-galaxy-status: Not Found\r\n"),
                "{response}"
            );
        }
        assert_still_serving(&node, "/_galaxycache/").await;
        assert_eq!(node.fake.writes(), [], "{method} {path} changed something");
    }
    node.stop().await;
}

#[tokio::test]
async fn the_default_body_bound_is_64_mib() {
    let node = Node::start(Dialect::Galaxycache).await;
    let too_big = format!("Content-Length: {}\r\n", (64 << 20) + 1);
    let response = send(node.addr, "PUT", "/_galaxycache/g/k", &too_big, b"").await;
    assert_eq!(status(&response), "413", "{response}");
    assert_eq!(node.fake.writes(), []);
    node.stop().await;
}

#[tokio::test]
async fn versions_are_checked_on_every_verb() {
    let node = small_node().await;
    let v: &[u8] = b"value";
    let verbs: [(&str, &str, &[u8]); 4] = [
        ("GET", "/_galaxycache/g/k", b""),
        ("DELETE", "/_galaxycache/g/k", b""),
        ("PUT", "/_galaxycache/g/k", v),
        ("DELETE", "/_galaxycache/g", b""),
    ];
    let malformed = ["x", "-1", "1.0", "1 1", "4294967296", "0x1", ""];
    for (method, path, body) in verbs {
        for version in malformed {
            let headers = format!("X-Galaxycache-Version: {version}\r\n{}", sized(body));
            let response = send(node.addr, method, path, &headers, body).await;
            assert_eq!(status(&response), "400", "{method} {version:?}: {response}");
            assert!(response.contains("X-Galaxycache-Version"), "{response}");
        }
        // Well-formed, but the galaxy is at version 0.
        let headers = format!("X-Galaxycache-Version: 1\r\n{}", sized(body));
        let response = send(node.addr, method, path, &headers, body).await;
        assert_eq!(status(&response), "409", "{method}: {response}");
        assert!(response.contains("version 0 here, not 1"), "{response}");
        assert_still_serving(&node, "/_galaxycache/").await;
    }
    assert_eq!(node.fake.writes(), []);
    assert!(
        node.fake
            .seen
            .lock()
            .unwrap()
            .iter()
            .all(|(k, _)| k == "fine"),
        "only the well-formed GETs loaded anything"
    );
    // Once the galaxy is at version 1, the same requests are applied.
    node.fake.set_version(1);
    for (method, path, body) in &verbs[1..] {
        let headers = format!("X-Galaxycache-Version: 1\r\n{}", sized(body));
        let response = send(node.addr, method, path, &headers, body).await;
        assert_eq!(status(&response), "204", "{method}: {response}");
    }
    assert_eq!(
        node.fake.writes(),
        [
            Written::Remove("k".into()),
            Written::Set("k".into(), v.to_vec(), None),
            Written::Flush
        ]
    );
    node.stop().await;
}

#[tokio::test]
async fn raw_writes_as_other_clients_send_them() {
    let node = small_node().await;
    // Only `Expires` (whole seconds), a chunked body, an explicit version 0.
    let chunked = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    let headers = "Transfer-Encoding: chunked\r\nExpires: Tue, 02 Oct 2096 07:06:40 GMT\r\n\
                   X-Galaxycache-Version: 0\r\n";
    let response = send(node.addr, "PUT", "/_galaxycache/g/a%20b", headers, chunked).await;
    assert!(
        response.starts_with("HTTP/1.1 204 No Content\r\n"),
        "{response}"
    );
    assert!(
        response.ends_with("\r\n\r\n"),
        "a 204 has no body: {response}"
    );
    let response = send(node.addr, "DELETE", "/_galaxycache/g", "", b"").await;
    assert_eq!(status(&response), "204", "{response}");
    assert_eq!(
        node.fake.writes(),
        [
            Written::Set(
                "a b".into(),
                b"abcde".to_vec(),
                Some(UNIX_EPOCH + Duration::from_secs(4_000_000_000))
            ),
            Written::Flush,
        ]
    );
    node.stop().await;
}

#[tokio::test]
async fn the_groupcache_dialect_has_no_write_verbs() {
    let node = Node::start(Dialect::Groupcache).await;
    for (method, path, body) in [
        ("DELETE", "/_groupcache/g/k", &b""[..]),
        ("DELETE", "/_groupcache/g", b""),
        ("PUT", "/_groupcache/g/k", b"value"),
    ] {
        let response = send(node.addr, method, path, &sized(body), body).await;
        assert_eq!(status(&response), "405", "{method} {path}: {response}");
        assert!(response.contains("allow: GET\r\n"), "{response}");
        assert_still_serving(&node, "/_groupcache/").await;
    }
    assert_eq!(node.fake.writes(), []);
    node.stop().await;
}

#[tokio::test]
async fn a_put_cut_short_changes_nothing() {
    let node = small_node().await;
    // The client closes its side before the 100 bytes it announced have arrived.
    let request =
        b"PUT /_galaxycache/g/k HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly ten!!";
    let mut stream = tokio::net::TcpStream::connect(node.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, request)
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::shutdown(&mut stream)
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer),
    )
    .await
    .expect("the server neither answered nor closed")
    .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || status(&answer) == "400", "{answer}");
    assert_still_serving(&node, "/_galaxycache/").await;
    assert_eq!(node.fake.writes(), []);
    // And garbage where a chunk size must be.
    let garbage = b"PUT /_galaxycache/g/k HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
    let answer = exchange(node.addr, garbage).await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || status(&answer) == "400", "{answer}");
    assert_still_serving(&node, "/_galaxycache/").await;
    assert_eq!(node.fake.writes(), []);
    node.stop().await;
}
