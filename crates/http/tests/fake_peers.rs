//! The client against peers that misbehave: raw listeners that answer with canned bytes,
//! hang, or are not there. Every fetch ends with the right error, never a hang.

mod common;

use galaxycache_universe::InFlight;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{client, fetcher, soon};
use galaxycache_http::{Dialect, HttpProtocol};
use galaxycache_universe::{
    Error, ErrorKind, FetchProtocol, FetchResult, GalaxyId, MAX_MESSAGE_LEN, Value, WriteOp,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What a fake peer does after writing its canned answer.
#[derive(Clone, Copy)]
enum Then {
    Close,
    Hang,
}

/// A peer that reads each request (its head, and as much body as its `content-length`
/// says), records it, writes `answer`, then closes or hangs.
struct FakePeer {
    url: String,
    /// Every request received, in order, as text.
    received: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl FakePeer {
    async fn start(answer: Vec<u8>, then: Then) -> FakePeer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let record = received.clone();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let request = read_request(&mut stream).await;
                record
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&request).into_owned());
                let _ = stream.write_all(&answer).await;
                if let Then::Hang = then {
                    held.push(stream);
                }
            }
        });
        FakePeer {
            url,
            received,
            task,
        }
    }

    fn received(&self) -> Vec<String> {
        self.received.lock().unwrap().clone()
    }

    /// A fetch bounded by `deadline` as a galaxy bounds it: the fetcher only sends the
    /// deadline on, so the caller's own timer ends a fetch nobody answers, as a Timeout.
    async fn fetch(&self, dialect: Dialect, max: usize, deadline: Instant) -> FetchResult {
        let protocol = HttpProtocol::builder()
            .dialect(dialect)
            .max_response_bytes(max)
            .build();
        let f = fetcher(protocol, &self.url);
        tokio::time::timeout_at(deadline, f.fetch("g".into(), "k", deadline))
            .await
            .unwrap_or_else(|_| Err(Error::new(ErrorKind::Timeout, "no answer by the deadline")))
    }
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One request's head and its `content-length` bytes of body (as far as they arrive).
async fn read_request(stream: &mut TcpStream) -> Vec<u8> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    let mut wanted = None;
    while wanted.is_none_or(|len| request.len() < len) {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
        if wanted.is_none()
            && let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let head = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
            let body_len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .unwrap_or(0);
            wanted = Some(end + 4 + body_len);
        }
    }
    request
}

fn kind(result: FetchResult) -> ErrorKind {
    result.expect_err("the fetch should have failed").kind()
}

#[tokio::test]
async fn a_claimed_huge_body_is_too_large_before_reading() {
    let peer = FakePeer::start(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000\r\n\r\nxx".to_vec(),
        Then::Hang,
    )
    .await;
    assert_eq!(
        kind(peer.fetch(Dialect::Galaxycache, 1024, soon()).await),
        ErrorKind::TooLarge
    );
}

#[tokio::test]
async fn a_streamed_huge_body_is_cut_at_the_bound() {
    let mut answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..16 {
        answer.extend_from_slice(b"400\r\n");
        answer.extend_from_slice(&[b'x'; 0x400]);
        answer.extend_from_slice(b"\r\n");
    }
    // No last chunk, and the peer hangs: only counting the bytes ends this fetch.
    let peer = FakePeer::start(answer, Then::Hang).await;
    let start = Instant::now();
    let result = peer.fetch(Dialect::Galaxycache, 4096, soon()).await;
    assert_eq!(kind(result), ErrorKind::TooLarge);
    assert!(start.elapsed() < Duration::from_secs(5));
    // Under the bound the same answer would be fine, were it finished.
    let small = FakePeer::start(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec(),
        Then::Hang,
    )
    .await;
    let v = small
        .fetch(Dialect::Galaxycache, 3, soon())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.bytes().as_ref(), b"abc");
}

#[tokio::test]
async fn a_body_cut_short_is_an_error_not_a_hang() {
    let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten!!".to_vec();
    let closed = FakePeer::start(answer.clone(), Then::Close).await;
    assert_eq!(
        kind(closed.fetch(Dialect::Galaxycache, 1024, soon()).await),
        ErrorKind::Unavailable
    );
    let hung = FakePeer::start(answer, Then::Hang).await;
    let start = Instant::now();
    let result = hung
        .fetch(
            Dialect::Galaxycache,
            1024,
            start + Duration::from_millis(200),
        )
        .await;
    assert_eq!(kind(result), ErrorKind::Timeout);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_hanging_peer_times_out_at_the_deadline() {
    let peer = FakePeer::start(Vec::new(), Then::Hang).await;
    let start = Instant::now();
    let result = peer
        .fetch(
            Dialect::Galaxycache,
            1024,
            start + Duration::from_millis(200),
        )
        .await;
    assert_eq!(kind(result), ErrorKind::Timeout);
    assert!(start.elapsed() >= Duration::from_millis(200));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = client(Dialect::Galaxycache, &url)
        .fetch("g".into(), "k", soon())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains(&url), "{err}");
}

#[tokio::test]
async fn malformed_answers_are_protocol_errors() {
    let cases: [(&[u8], Dialect); 7] = [
        (b"HTTP/1.1 banana\r\n\r\n", Dialect::Galaxycache),
        (
            b"HTTP/1.1 200 OK\r\nExpires: whenever\r\nContent-Length: 1\r\n\r\nx",
            Dialect::Galaxycache,
        ),
        (
            b"HTTP/1.1 200 OK\r\nX-Galaxycache-Refresh-Ms: soon\r\nContent-Length: 1\r\n\r\nx",
            Dialect::Galaxycache,
        ),
        (
            b"HTTP/1.1 200 OK\r\nX-Galaxycache-Stale-Ms: 1.5\r\nContent-Length: 1\r\n\r\nx",
            Dialect::Galaxycache,
        ),
        (
            b"HTTP/1.1 404 Not Found\r\nX-Galaxycache-Galaxy-Status: Found\r\nX-Galaxycache-Expires-Ms: -1\r\nContent-Length: 0\r\n\r\n",
            Dialect::Galaxycache,
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n\x0a\x05x",
            Dialect::Groupcache,
        ),
        (
            b"HTTP/1.1 302 Found\r\nLocation: /\r\nContent-Length: 0\r\n\r\n",
            Dialect::Galaxycache,
        ),
    ];
    for (answer, dialect) in cases {
        let peer = FakePeer::start(answer.to_vec(), Then::Close).await;
        let result = peer.fetch(dialect, 1024, soon()).await;
        assert_eq!(
            kind(result),
            ErrorKind::Protocol,
            "{:?}",
            String::from_utf8_lossy(answer)
        );
    }
}

#[tokio::test]
async fn a_proxys_5xx_means_the_owner_did_not_answer() {
    let bad_gateway = b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 3\r\n\r\nbad";
    let peer = FakePeer::start(bad_gateway.to_vec(), Then::Close).await;
    assert_eq!(
        kind(peer.fetch(Dialect::Galaxycache, 1024, soon()).await),
        ErrorKind::Unavailable
    );
    let busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy";
    let peer = FakePeer::start(busy.to_vec(), Then::Close).await;
    assert_eq!(
        kind(peer.fetch(Dialect::Galaxycache, 1024, soon()).await),
        ErrorKind::Overloaded
    );
}

#[tokio::test]
async fn a_500_is_the_owners_answer_only_if_its_body_arrives() {
    // Cut short: no answer at all, so not the owner's load error.
    let cut = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 100\r\n\r\nonly ten!!";
    let peer = FakePeer::start(cut.to_vec(), Then::Close).await;
    let err = peer
        .fetch(Dialect::Galaxycache, 1024, soon())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    // Longer than the 64 KiB read: its start is the message, cut short.
    let mut long = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 70000\r\n\r\n".to_vec();
    long.extend_from_slice(&[b'e'; 70_000]);
    let peer = FakePeer::start(long, Then::Close).await;
    let err = peer
        .fetch(Dialect::Galaxycache, 1 << 20, soon())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Remote);
    assert_eq!(err.message(), "e".repeat(MAX_MESSAGE_LEN) + "...");
}

#[tokio::test]
async fn a_500_full_of_terminal_escapes_is_a_short_clean_message() {
    let mut body = b"disk\x1b[31m on\r\nfire\x07 ".to_vec();
    while body.len() < 64 * 1024 {
        body.extend_from_slice(b"\x1b]0;owned\x07\x1b[2J\x9b\x00");
    }
    let mut answer = format!(
        "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    let peer = FakePeer::start(answer, Then::Close).await;
    let err = peer
        .fetch(Dialect::Galaxycache, 1 << 20, soon())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Remote);
    let shown = err.to_string();
    assert!(shown.len() <= 64 + MAX_MESSAGE_LEN, "{} bytes", shown.len());
    assert!(!shown.chars().any(char::is_control), "{shown:?}");
    assert!(
        err.message().starts_with("disk[31m on  fire ]0;owned"),
        "{shown:?}"
    );
    // A status the protocol does not know carries the body's start as well, as clean.
    let mut teapot = b"HTTP/1.1 418 I'm a teapot\r\nContent-Length: 9\r\n\r\n".to_vec();
    teapot.extend_from_slice(b"\x1b[2Jtea\r\n");
    let peer = FakePeer::start(teapot, Then::Close).await;
    let err = peer
        .fetch(Dialect::Galaxycache, 1024, soon())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol);
    assert!(err.to_string().ends_with("[2Jtea"), "{err}");
}

#[tokio::test]
async fn answers_of_go_groupcache_servers() {
    // What golang/groupcache's HTTPPool sends, byte for byte in the parts that matter.
    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 4\r\n\r\n\x0a\x02hi";
    let peer = FakePeer::start(ok.to_vec(), Then::Close).await;
    let v = peer
        .fetch(Dialect::Groupcache, 1024, soon())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((v.bytes().as_ref(), v.expires_at()), (&b"hi"[..], None));

    let no_group = b"HTTP/1.1 404 Not Found\r\nContent-Length: 17\r\n\r\nno such group: g\n";
    let peer = FakePeer::start(no_group.to_vec(), Then::Close).await;
    assert_eq!(
        kind(peer.fetch(Dialect::Groupcache, 1024, soon()).await),
        ErrorKind::UnknownGalaxy
    );

    // Go has no NotFound answer: a getter's "not found" is a 500 with its text. That is the
    // owner's answer that its load failed: the asking galaxy returns it rather than loading
    // the key from its own backend a second time.
    let getter_error =
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 10\r\n\r\nnot found\n";
    let peer = FakePeer::start(getter_error.to_vec(), Then::Close).await;
    let err = peer
        .fetch(Dialect::Groupcache, 1024, soon())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Remote);
    assert_eq!(err.message(), "not found");

    // An empty value is a GetResponse without field 1.
    let empty = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    let peer = FakePeer::start(empty.to_vec(), Then::Close).await;
    let v = peer
        .fetch(Dialect::Groupcache, 1024, soon())
        .await
        .unwrap()
        .unwrap();
    assert!(v.is_empty());
}

#[tokio::test]
async fn unusable_peer_urls_are_config_errors() {
    let protocol = HttpProtocol::builder().build();
    for url in [
        "https://peer:443",
        "peer:8080",
        "not a url",
        "http://peer/?q=1",
        "http://peer/#frag",
        "http://peer#frag",
        "/path",
    ] {
        let err = protocol.connect(url, &InFlight::unbounded()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config, "{url}");
    }
    let f = protocol
        .connect("http://peer:8080/", &InFlight::unbounded())
        .unwrap();
    assert_eq!(f.url(), "http://peer:8080/");
}

/// The galaxy version travels in `X-Galaxycache-Version`, and only when it is not 0, on
/// every verb (a peek is a `GET` under its own prefix).
#[tokio::test]
async fn the_version_header_is_sent_unless_the_version_is_zero() {
    let ok = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    let peer = FakePeer::start(ok.to_vec(), Then::Close).await;
    let f = client(Dialect::Galaxycache, &peer.url);
    let at = std::time::UNIX_EPOCH + Duration::from_millis(4_000_000_000_123);
    let value = Value::expiring("v a l", at);
    for version in [0, 5] {
        let g = GalaxyId::new("g", version);
        f.fetch(g, "a b", soon()).await.unwrap().unwrap();
        f.peek(g, "a b", soon()).await.unwrap().unwrap();
        for op in [
            WriteOp::Remove("a b"),
            WriteOp::Set("a b", &value),
            WriteOp::Flush,
        ] {
            f.write(g, op, soon()).await.unwrap();
        }
    }
    let received = peer.received();
    let lines: Vec<&str> = received.iter().map(|r| r.lines().next().unwrap()).collect();
    let one_round = [
        "GET /_galaxycache/g/a%20b HTTP/1.1",
        "GET /_galaxycache_peek/g/a%20b HTTP/1.1",
        "DELETE /_galaxycache/g/a%20b HTTP/1.1",
        "PUT /_galaxycache/g/a%20b HTTP/1.1",
        "DELETE /_galaxycache/g HTTP/1.1",
    ];
    assert_eq!(lines, [one_round, one_round].concat());
    for (i, request) in received.iter().enumerate() {
        // The caller's remaining time, out of the 10 s of `soon()`, in whole milliseconds.
        let timeout_ms = request
            .lines()
            .find_map(|l| l.strip_prefix("x-galaxycache-timeout-ms: "))
            .and_then(|ms| ms.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no remaining time in {request}"));
        assert!((9_000..=10_000).contains(&timeout_ms), "{request}");
        let versioned = request.contains("x-galaxycache-version: 5\r\n");
        assert_eq!(versioned, i >= one_round.len(), "{request}");
        if i < one_round.len() {
            assert!(!request.contains("x-galaxycache-version"), "{request}");
        }
    }
    let put = &received[3];
    assert!(
        put.contains("x-galaxycache-expires-ms: 4000000000123\r\n"),
        "{put}"
    );
    assert!(
        put.contains("expires: Tue, 02 Oct 2096 07:06:40 GMT\r\n"),
        "{put}"
    );
    assert!(put.ends_with("\r\n\r\nv a l"), "{put}");
}

/// The groupcache dialect has neither writes, nor peeks, nor versions: such calls fail
/// unsent.
#[tokio::test]
async fn the_groupcache_dialect_sends_no_write_and_no_version() {
    let ok = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    let peer = FakePeer::start(ok.to_vec(), Then::Close).await;
    let f = client(Dialect::Groupcache, &peer.url);
    let value = Value::new("v");
    for op in [
        WriteOp::Remove("k"),
        WriteOp::Set("k", &value),
        WriteOp::Flush,
    ] {
        let e = f.write("g".into(), op, soon()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{op:?}: {e}");
    }
    let e = f
        .fetch(GalaxyId::new("g", 1), "k", soon())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Config, "{e}");
    for version in [0, 1] {
        let e = f
            .peek(GalaxyId::new("g", version), "k", soon())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    }
    // Version 0 is what Go speaks: sent, without a header. Had anything been sent before,
    // it would have been received first.
    f.fetch("g".into(), "k", soon()).await.unwrap().unwrap();
    let received = peer.received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert!(
        received[0].starts_with("GET /_groupcache/g/k "),
        "{received:?}"
    );
    assert!(
        !received[0].contains("x-galaxycache-version"),
        "{received:?}"
    );
}

/// A peer's answer to a write, and the kind the client makes of it.
#[tokio::test]
async fn write_answers_map_to_kinds() {
    let ok = Ok(());
    let cases: [(&str, &str, Result<(), ErrorKind>); 15] = [
        ("204 No Content", "", ok),
        ("200 OK", "", ok),
        // A server without the verb: Go's answers 405, others 501.
        (
            "405 Method Not Allowed",
            "Allow: GET\r\n",
            Err(ErrorKind::Unsupported),
        ),
        ("501 Not Implemented", "", Err(ErrorKind::Unsupported)),
        ("409 Conflict", "", Err(ErrorKind::VersionMismatch)),
        (
            "404 Not Found",
            "X-Galaxycache-Galaxy-Status: Not Found\r\n",
            Err(ErrorKind::UnknownGalaxy),
        ),
        ("400 Bad Request", "", Err(ErrorKind::InvalidRequest)),
        ("413 Payload Too Large", "", Err(ErrorKind::TooLarge)),
        ("503 Service Unavailable", "", Err(ErrorKind::Overloaded)),
        ("504 Gateway Timeout", "", Err(ErrorKind::Timeout)),
        // Anything else did not confirm the write.
        ("500 Internal Server Error", "", Err(ErrorKind::Unavailable)),
        ("502 Bad Gateway", "", Err(ErrorKind::Unavailable)),
        ("404 Not Found", "", Err(ErrorKind::Unavailable)),
        ("302 Found", "Location: /\r\n", Err(ErrorKind::Unavailable)),
        ("202 Accepted", "", Err(ErrorKind::Unavailable)),
    ];
    let value = Value::new("v");
    for (status, headers, want) in cases {
        let answer = format!(
            "HTTP/1.1 {status}\r\n{headers}Connection: close\r\nContent-Length: 4\r\n\r\nwhy\n"
        );
        let peer = FakePeer::start(answer.into_bytes(), Then::Close).await;
        let f = client(Dialect::Galaxycache, &peer.url);
        for op in [
            WriteOp::Remove("k"),
            WriteOp::Set("k", &value),
            WriteOp::Flush,
        ] {
            let got = f.write("g".into(), op, soon()).await.map_err(|e| e.kind());
            assert_eq!(got, want, "{status} to {op:?}");
        }
    }
}

/// The status mapping is one for fetches and writes: a fetch reads the new statuses alike.
#[tokio::test]
async fn fetch_answers_of_the_write_era_map_alike() {
    for (status, want) in [
        ("409 Conflict", ErrorKind::VersionMismatch),
        ("405 Method Not Allowed", ErrorKind::Unsupported),
        ("501 Not Implemented", ErrorKind::Unsupported),
    ] {
        let answer = format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
        let peer = FakePeer::start(answer.into_bytes(), Then::Close).await;
        let got = peer.fetch(Dialect::Galaxycache, 1024, soon()).await;
        assert_eq!(kind(got), want, "{status}");
    }
}

#[tokio::test]
async fn a_write_to_a_refused_connection_is_unavailable() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = client(Dialect::Galaxycache, &url)
        .write("g".into(), WriteOp::Flush, soon())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

/// A missing key from a peer that predates cached misses (or from a Go node) says no
/// expiry: plain NotFound. With one, the miss is cached until then.
#[tokio::test]
async fn a_404_for_a_missing_key_is_a_cached_miss_only_with_an_expiry() {
    let head = "HTTP/1.1 404 Not Found\r\nX-Galaxycache-Galaxy-Status: Found\r\n";
    let old = format!("{head}Content-Length: 12\r\n\r\nno such key\n");
    let peer = FakePeer::start(old.into_bytes(), Then::Close).await;
    assert_eq!(
        peer.fetch(Dialect::Galaxycache, 1024, soon()).await,
        Ok(None)
    );

    let at = UNIX_EPOCH + Duration::from_millis(4_000_000_000_123);
    let cached =
        format!("{head}X-Galaxycache-Expires-Ms: 4000000000123\r\nContent-Length: 0\r\n\r\n");
    let peer = FakePeer::start(cached.into_bytes(), Then::Close).await;
    let absent = peer.fetch(Dialect::Galaxycache, 1024, soon()).await;
    assert_eq!(absent, Ok(Some(Value::absent(at))));
    assert!(absent.unwrap().unwrap().is_absent());

    // `Expires` alone, as for a value, names the second.
    let dated =
        format!("{head}Expires: Sun, 09 Sep 2001 01:46:40 GMT\r\nContent-Length: 0\r\n\r\n");
    let peer = FakePeer::start(dated.into_bytes(), Then::Close).await;
    let absent = peer.fetch(Dialect::Galaxycache, 1024, soon()).await;
    let at = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    assert_eq!(absent, Ok(Some(Value::absent(at))));
}

/// A stale answer is a `200` whose expiry has passed: taken as it is, stale limit and all.
#[tokio::test]
async fn a_200_that_expired_already_keeps_its_stale_limit() {
    let answer = b"HTTP/1.1 200 OK\r\nExpires: Sun, 09 Sep 2001 01:46:40 GMT\r\n\
        X-Galaxycache-Stale-Ms: 4000000000123\r\nContent-Length: 3\r\n\r\nold";
    let peer = FakePeer::start(answer.to_vec(), Then::Close).await;
    let v = peer
        .fetch(Dialect::Galaxycache, 1024, soon())
        .await
        .unwrap()
        .expect("a stale answer");
    let expired = UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let stale_until = UNIX_EPOCH + Duration::from_millis(4_000_000_000_123);
    assert_eq!(
        v,
        Value::expiring("old", expired).with_stale_until(Some(stale_until))
    );
    assert!(v.is_expired_at(SystemTime::now()) && v.is_servable_stale_at(SystemTime::now()));
}

/// The value a galaxycache-dialect peer's `200` carries when its only expiry is `expires`.
async fn fetched_with_expires(expires: &str) -> FetchResult {
    let answer = format!("HTTP/1.1 200 OK\r\nExpires: {expires}\r\nContent-Length: 1\r\n\r\nv");
    let peer = FakePeer::start(answer.into_bytes(), Then::Close).await;
    peer.fetch(Dialect::Galaxycache, 1024, soon()).await
}

/// galaxycache (Go) v1.4 writes `Expires` with nanoseconds, trailing zeros trimmed: without
/// `X-Galaxycache-Expires-Ms`, the value expires at that instant, to the nanosecond.
#[tokio::test]
async fn an_expires_with_a_fraction_names_the_nanosecond() {
    let second = UNIX_EPOCH + Duration::from_secs(4_000_000_000);
    for (fraction, nanos) in [(".123456789", 123_456_789), (".5", 500_000_000), ("", 0)] {
        let expires = format!("Tue, 02 Oct 2096 07:06:40{fraction} GMT");
        let want = Value::expiring("v", second + Duration::from_nanos(nanos));
        assert_eq!(
            fetched_with_expires(&expires).await,
            Ok(Some(want)),
            "{expires}"
        );
    }
}

#[tokio::test]
async fn an_expires_with_a_malformed_fraction_is_a_protocol_error() {
    for fraction in [".", ".abc", ".1234567890", ".12345678901234567890"] {
        let expires = format!("Tue, 02 Oct 2096 07:06:40{fraction} GMT");
        let err = fetched_with_expires(&expires).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{expires}: {err}");
        assert!(err.message().contains("Expires"), "{err}");
    }
}

/// A peek's request starts with the peer URL's own path, as a fetch's does.
#[tokio::test]
async fn a_peek_goes_under_the_peer_urls_own_path() {
    let ok = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nv";
    let peer = FakePeer::start(ok.to_vec(), Then::Close).await;
    let f = client(Dialect::Galaxycache, &format!("{}/base/", peer.url));
    let v = f.peek("g/x".into(), "a/b?", soon()).await.unwrap();
    assert_eq!(v, Some(Value::new("v")));
    let received = peer.received();
    assert!(
        received[0].starts_with("GET /base/_galaxycache_peek/g%2Fx/a%2Fb%3F HTTP/1.1\r\n"),
        "{received:?}"
    );
}

/// A peek's answer is read as a fetch's: the same statuses, the same headers.
#[tokio::test]
async fn peek_answers_map_as_fetch_answers() {
    let found = "X-Galaxycache-Galaxy-Status: Found\r\n";
    let cases: [(&str, String, FetchResult); 6] = [
        (
            "200 OK",
            "Expires: Tue, 02 Oct 2096 07:06:40.25 GMT\r\n".into(),
            Ok(Some(Value::expiring(
                "why\n",
                UNIX_EPOCH + Duration::from_millis(4_000_000_000_250),
            ))),
        ),
        ("404 Not Found", found.into(), Ok(None)),
        (
            "404 Not Found",
            format!("{found}X-Galaxycache-Expires-Ms: 4000000000123\r\n"),
            Ok(Some(Value::absent(
                UNIX_EPOCH + Duration::from_millis(4_000_000_000_123),
            ))),
        ),
        (
            "404 Not Found",
            "X-Galaxycache-Galaxy-Status: Not Found\r\n".into(),
            Err(Error::new(ErrorKind::UnknownGalaxy, "")),
        ),
        (
            "409 Conflict",
            String::new(),
            Err(Error::new(ErrorKind::VersionMismatch, "")),
        ),
        (
            "500 Internal Server Error",
            found.into(),
            Err(Error::new(ErrorKind::Remote, "why")),
        ),
    ];
    for (status, headers, want) in cases {
        let answer = format!("HTTP/1.1 {status}\r\n{headers}Content-Length: 4\r\n\r\nwhy\n");
        let peer = FakePeer::start(answer.into_bytes(), Then::Close).await;
        let got = client(Dialect::Galaxycache, &peer.url)
            .peek("g".into(), "k", soon())
            .await;
        match (&got, &want) {
            (Err(got), Err(want)) if want.kind() != ErrorKind::Remote => {
                assert_eq!(got.kind(), want.kind(), "{status} {headers}: {got}");
            }
            _ => assert_eq!(got, want, "{status} {headers}"),
        }
    }
}
