//! Bad requests sent as raw bytes: each gets a clear 4xx (or, for HTTP/2 garbage, a
//! GOAWAY), and the server keeps serving.

mod common;

use std::net::SocketAddr;

use common::{Node, assert_still_serving, exchange, send, status};
use galaxycache_http::Dialect;
use galaxycache_universe::Universe;

/// Status line, headers and body of a `GET {path}` with `headers`, as text.
async fn get(addr: SocketAddr, path: &str, headers: &str) -> String {
    send(addr, "GET", path, headers, b"").await
}

/// A galaxycache-dialect node whose keys are at most 100 bytes.
async fn short_keys_node() -> Node {
    let builder = Universe::builder("http://self").max_key_len(100);
    Node::start_with(Dialect::Galaxycache, builder).await
}

/// What follows a route's prefix in paths malformed for keys of at most 100 bytes: each is
/// a `400`.
fn malformed_targets() -> Vec<String> {
    let long = "k".repeat(101);
    // Escaped, 303 bytes of path; decoded, 101 bytes of key: the bound is on the key.
    let escaped_long = "%6B".repeat(101);
    let targets = ["g/%zz", "g/%ff", "g/%C3", "g/%", "%zz/k", "g/", "g", ""];
    let mut targets: Vec<String> = targets.map(String::from).into();
    targets.extend([format!("g/{long}"), format!("g/{escaped_long}")]);
    targets
}

/// Each `GET {prefix}{rest}` with its headers gets its status, and the node keeps serving
/// `GET`s under `prefix` after each.
async fn assert_statuses(node: &Node, prefix: &str, cases: &[(String, &str, &str)]) {
    for (rest, headers, want) in cases {
        let path = format!("{prefix}{rest}");
        let response = get(node.addr, &path, headers).await;
        assert_eq!(status(&response), *want, "GET {path} {headers}: {response}");
        assert_still_serving(node, prefix).await;
    }
}

#[tokio::test]
async fn bad_requests_get_4xx_and_the_server_keeps_serving() {
    let node = short_keys_node().await;
    let mut cases: Vec<(String, &str, &str)> = malformed_targets()
        .into_iter()
        .map(|rest| (rest, "", "400"))
        .collect();
    cases.extend([
        ("nope/k".into(), "", "404"),
        ("g/missing".into(), "", "404"),
        ("g/k".into(), "X-Galaxycache-Timeout-Ms: soon\r\n", "400"),
        ("g/k".into(), "X-Galaxycache-Timeout-Ms: -5\r\n", "400"),
    ]);
    assert_statuses(&node, "/_galaxycache/", &cases).await;
    for path in ["/other", "/"] {
        let response = get(node.addr, path, "").await;
        assert_eq!(status(&response), "404", "GET {path}: {response}");
        assert_still_serving(&node, "/_galaxycache/").await;
    }
    let unknown = get(node.addr, "/_galaxycache/nope/k", "").await;
    assert!(
        unknown.contains("x-galaxycache-galaxy-status: Not Found"),
        "{unknown}"
    );
    let missing = get(node.addr, "/_galaxycache/g/missing", "").await;
    assert!(
        missing.contains("x-galaxycache-galaxy-status: Found"),
        "{missing}"
    );
    let elsewhere = get(node.addr, "/other", "").await;
    assert!(
        !elsewhere.contains("x-galaxycache-galaxy-status"),
        "{elsewhere}"
    );
    node.stop().await;
}

/// Bad peeks get the answers bad `GET`s get, and never load anything.
#[tokio::test]
async fn bad_peeks_get_4xx_and_the_server_keeps_serving() {
    let node = short_keys_node().await;
    let mut cases: Vec<(String, &str, &str)> = malformed_targets()
        .into_iter()
        .map(|rest| (rest, "", "400"))
        .collect();
    cases.extend([
        ("g/k".into(), "X-Galaxycache-Version: two\r\n", "400"),
        ("g/k".into(), "X-Galaxycache-Version: 4294967296\r\n", "400"),
        ("g/k".into(), "X-Galaxycache-Timeout-Ms: soon\r\n", "400"),
        ("g/k".into(), "X-Galaxycache-Version: 1\r\n", "409"),
        ("nope/k".into(), "", "404"),
        ("g/cold".into(), "", "404"),
        ("g/missing".into(), "", "404"),
    ]);
    assert_statuses(&node, "/_galaxycache_peek/", &cases).await;
    // A galaxy name alone is no flush here: a peek has no write verbs.
    for method in ["PUT", "DELETE", "POST", "HEAD"] {
        for path in ["/_galaxycache_peek/g/k", "/_galaxycache_peek/g"] {
            let response = send(node.addr, method, path, "Content-Length: 0\r\n", b"").await;
            assert_eq!(status(&response), "405", "{method} {path}: {response}");
            assert!(response.contains("allow: GET\r\n"), "{response}");
        }
    }
    assert_still_serving(&node, "/_galaxycache_peek/").await;
    assert_eq!(node.fake.writes(), []);
    assert_eq!(
        node.fake.seen.lock().unwrap().len(),
        0,
        "a peek never loads"
    );
    node.stop().await;
}

/// The groupcache dialect has no peek: its path is outside the dialect.
#[tokio::test]
async fn the_groupcache_dialect_has_no_peek_path() {
    let node = Node::start(Dialect::Groupcache).await;
    let response = get(node.addr, "/_galaxycache_peek/g/k", "").await;
    assert_eq!(status(&response), "404", "{response}");
    assert!(
        !response.contains("x-galaxycache-galaxy-status"),
        "{response}"
    );
    assert!(node.fake.peeked.lock().unwrap().is_empty());
    node.stop().await;
}

#[tokio::test]
async fn groupcache_dialect_answers_as_go_does() {
    let node = Node::start(Dialect::Groupcache).await;
    let unknown = get(node.addr, "/_groupcache/nope/k", "").await;
    assert_eq!(status(&unknown), "404", "{unknown}");
    assert!(
        unknown.ends_with("\r\n\r\nno such group: nope\n"),
        "{unknown}"
    );
    let bad = get(node.addr, "/_groupcache/g", "").await;
    assert_eq!(status(&bad), "400", "{bad}");
    assert!(bad.contains("\r\n\r\nbad request"), "{bad}");
    let ok = get(node.addr, "/_groupcache/g/a+b", "").await;
    assert_eq!(status(&ok), "200", "{ok}");
    assert!(ok.contains("content-type: application/x-protobuf"), "{ok}");
    assert!(ok.ends_with("\r\n\r\n\x0a\x03a+b"), "{ok:?}");
    let fail = get(node.addr, "/_groupcache/g/fail", "").await;
    assert_eq!(status(&fail), "500", "{fail}");
    assert!(fail.contains("backend exploded"), "{fail}");
    assert_still_serving(&node, "/_groupcache/").await;
    node.stop().await;
}

/// A failed load is a `500` that, in the galaxycache dialect, says the galaxy exists (as
/// galaxycache's Go server does); Go's groupcache sends no such header, nor do we in its
/// dialect.
#[tokio::test]
async fn a_failed_load_is_a_500_of_a_galaxy_that_exists() {
    for (dialect, prefix, found) in [
        (Dialect::Galaxycache, "/_galaxycache/", true),
        (Dialect::Groupcache, "/_groupcache/", false),
    ] {
        let node = Node::start(dialect).await;
        let fail = get(node.addr, &format!("{prefix}g/fail"), "").await;
        assert_eq!(status(&fail), "500", "{fail}");
        assert!(fail.ends_with("\r\n\r\nbackend exploded\n"), "{fail}");
        let said = fail.contains("x-galaxycache-galaxy-status: Found\r\n");
        assert_eq!(said, found, "{dialect:?}: {fail}");
        node.stop().await;
    }
}

#[tokio::test]
async fn malformed_http_gets_400() {
    let node = Node::start(Dialect::Galaxycache).await;
    let garbage: [&[u8]; 5] = [
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /_galaxycache/g/k HTTP/9.9\r\n\r\n",
        b"GET /_galaxycache/g/a b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET /_galaxycache/g/\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ];
    for request in garbage {
        let response = exchange(node.addr, request).await;
        let response = String::from_utf8_lossy(&response);
        assert!(
            response.starts_with("HTTP/1.1 4"),
            "{:?} -> {response:?}",
            String::from_utf8_lossy(request)
        );
        assert_still_serving(&node, "/_galaxycache/").await;
    }
    // Unescaped UTF-8 in a path is not what our clients send, but it is unambiguous: the
    // key is taken as written.
    let raw = b"GET /_galaxycache/g/\xc3\xa9 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    let response = exchange(node.addr, raw).await;
    assert!(response.starts_with(b"HTTP/1.1 200"));
    assert_eq!(node.fake.last_seen().0, "é");
    node.stop().await;
}

#[tokio::test]
async fn wrong_methods_get_405() {
    // PUT and DELETE are the galaxycache dialect's write verbs (tests/write_bad_input.rs);
    // the groupcache dialect has none.
    for (dialect, prefix, methods, allow) in [
        (
            Dialect::Galaxycache,
            "/_galaxycache/",
            &["POST", "PATCH", "HEAD", "OPTIONS"][..],
            "allow: GET, PUT, DELETE",
        ),
        (
            Dialect::Groupcache,
            "/_groupcache/",
            &["POST", "PUT", "DELETE", "HEAD"][..],
            "allow: GET\r\n",
        ),
    ] {
        let node = Node::start(dialect).await;
        for method in methods {
            let request = format!(
                "{method} {prefix}g/k HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let response = String::from_utf8_lossy(&exchange(node.addr, request.as_bytes()).await)
                .into_owned();
            assert_eq!(status(&response), "405", "{method}: {response}");
            assert!(response.contains(allow), "{response}");
        }
        assert_still_serving(&node, prefix).await;
        assert_eq!(node.fake.writes(), [], "{dialect:?}");
        node.stop().await;
    }
}

#[tokio::test]
async fn garbage_after_the_h2_preface_is_refused() {
    let node = Node::start(Dialect::Galaxycache).await;
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    // A DATA frame on stream 1 where the SETTINGS frame must come.
    let mut request = preface.to_vec();
    request.extend_from_slice(b"\x00\x00\x05\x00\x00\x00\x00\x00\x01hello");
    let response = exchange(node.addr, &request).await;
    // The server's SETTINGS, then a GOAWAY (frame type 7), then it closes.
    let goaway = response
        .windows(4)
        .any(|w| w[3] == 0x07 && w[0..3] == [0, 0, 8]);
    assert!(goaway, "no GOAWAY in {response:?}");
    // A preface cut short and followed by garbage is not HTTP/2; as HTTP/1 it is garbage.
    let response = exchange(node.addr, b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n garbage").await;
    assert!(
        response.starts_with(b"HTTP/1.1 4") || response.starts_with(b"HTTP/1.1 505"),
        "{:?}",
        String::from_utf8_lossy(&response)
    );
    assert_still_serving(&node, "/_galaxycache/").await;
    node.stop().await;
}

#[tokio::test]
async fn a_passed_deadline_gets_504() {
    let node = Node::start(Dialect::Galaxycache).await;
    // 0 ms: the deadline has passed on arrival, so nothing waits on real time.
    let response = get(
        node.addr,
        "/_galaxycache/g/hang",
        "X-Galaxycache-Timeout-Ms: 0\r\n",
    )
    .await;
    assert_eq!(status(&response), "504", "{response}");
    assert_still_serving(&node, "/_galaxycache/").await;
    node.stop().await;
}
