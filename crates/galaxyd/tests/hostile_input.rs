//! What a hostile origin, peer or client sends, over loopback: far-future expiries are
//! served (no panic, an `Expires` an HTTP-date can name), a peer's error text reaches
//! neither a client nor a log raw, malformed escapes are 400, dot-segment keys do not
//! climb the origin's paths, and the client API is held to the server limits.

mod common;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::Uri;
use axum::response::IntoResponse;
use axum::routing::get;
use common::{key_owned_by, serve};
use galaxycache_universe::InFlight;
use galaxyd::{
    Backend, BackendOptions, BackendSpec, GalaxyConfig, HttpClient, Node, NodeConfig, PeerSource,
    Response,
};
use http::{StatusCode, header};

/// A node with galaxy `g` over `backend`, whose ring is itself and `others`.
async fn node(backend: BackendSpec, others: &[String]) -> Node {
    common::node(|local| {
        let mut peers = vec![local.self_url.clone()];
        peers.extend_from_slice(others);
        NodeConfig {
            peers: PeerSource::Static(peers),
            max_key_len: 1024,
            galaxies: vec![GalaxyConfig::new("g", backend)],
            ..local
        }
    })
    .await
}

async fn get_key(client: &HttpClient, node: &Node, encoded_key: &str) -> Response {
    let url = format!(
        "http://{}/v1/galaxies/g/keys/{encoded_key}",
        node.api_addr()
    );
    client.get(url.parse().unwrap()).await.unwrap()
}

fn client() -> HttpClient {
    HttpClient::new(4, Duration::from_secs(10))
}

/// The `Expires` of a 200, which must be an HTTP-date at least 50 years away.
fn assert_far_expires(r: &Response, what: &str) {
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, 200, "{what}: {body}");
    let expires = r.headers[header::EXPIRES].to_str().unwrap();
    let at = httpdate::parse_http_date(expires).unwrap();
    let fifty_years = Duration::from_secs(50 * 365 * 24 * 3600);
    assert!(at > SystemTime::now() + fifty_years, "{what}: {expires}");
}

/// An origin whose every key is fresh for as long as the key says.
async fn far_future(Path(key): Path<String>) -> axum::response::Response {
    let header = match key.as_str() {
        "u64-max" => (header::CACHE_CONTROL, "max-age=18446744073709551615"),
        "huge" => (header::CACHE_CONTROL, "max-age=300000000000"),
        "past-u64" => (header::CACHE_CONTROL, "max-age=99999999999999999999999"),
        _ => (header::EXPIRES, "Fri, 31 Dec 9999 23:59:59 GMT"),
    };
    ([header], format!("value of {key}")).into_response()
}

#[tokio::test]
async fn a_far_future_expiry_from_an_origin_is_served() {
    let origin = serve(Router::new().route("/items/{key}", get(far_future))).await;
    let node = node(BackendSpec::Http(format!("{origin}/items/{{key}}")), &[]).await;
    let client = client();
    for key in ["u64-max", "huge", "past-u64", "year-9999"] {
        // Loaded, then from the cache: neither panics.
        for _ in 0..2 {
            assert_far_expires(&get_key(&client, &node, key).await, key);
        }
    }
    node.shutdown().await.unwrap();
}

/// Text a hostile peer answers a failed load with: 64 KiB, terminal escapes throughout.
fn hostile_text() -> String {
    let mut text = "disk\x1b[31m on\r\nfire\x07 ".to_owned();
    while text.len() < 64 * 1024 {
        text.push_str("\x1b]0;owned\x07\x1b[2J\u{9b}\0");
    }
    text
}

/// A peer of the galaxycache dialect: `far…` keys are values that expire at the end of
/// time, every other key a failed load with [`hostile_text`].
async fn hostile_peer(Path((_, key)): Path<(String, String)>) -> axum::response::Response {
    if key.starts_with("far") {
        let headers = [
            ("x-galaxycache-expires-ms", "18446744073709551615"),
            ("expires", "Fri, 31 Dec 9999 23:59:59 GMT"),
        ];
        return (headers, "far").into_response();
    }
    let found = [("x-galaxycache-galaxy-status", "Found")];
    (StatusCode::INTERNAL_SERVER_ERROR, found, hostile_text()).into_response()
}

/// Log output, kept for the test to read.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// One thread: the subscriber set here sees every task of the node.
#[tokio::test(flavor = "current_thread")]
async fn a_hostile_peer_neither_panics_the_api_nor_reaches_clients_or_logs_raw() {
    let logs = Capture::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let peer = serve(Router::new().route("/_galaxycache/{galaxy}/{key}", get(hostile_peer))).await;
    let node = node(BackendSpec::Synthetic, std::slice::from_ref(&peer)).await;
    let ring = [format!("http://{}", node.peer_addr()), peer.clone()];
    let client = client();

    let far = key_owned_by(&ring, &peer, "far");
    for _ in 0..2 {
        assert_far_expires(&get_key(&client, &node, &far).await, &far);
    }

    let evil = key_owned_by(&ring, &peer, "evil");
    let r = get_key(&client, &node, &evil).await;
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(r.status, 503, "{body}");
    assert!(body.len() < 1024, "{} bytes echoed", body.len());
    assert!(body.contains("disk[31m on  fire"), "{body}");
    let body = body.strip_suffix('\n').unwrap();
    assert!(!body.chars().any(char::is_control), "{body:?}");

    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("get failed"), "{logs}");
    for line in logs.lines() {
        assert!(line.len() < 2048, "{} bytes logged", line.len());
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_malformed_escape_is_a_bad_request() {
    let node = node(BackendSpec::Synthetic, &[]).await;
    let client = client();
    for bad in ["%zz", "a%", "%4", "a%g0b"] {
        let r = get_key(&client, &node, bad).await;
        assert_eq!(r.status, 400, "{bad}: {}", String::from_utf8_lossy(&r.body));
    }
    for good in ["%7A%7A", "100%25", "a%2Fb"] {
        assert_eq!(get_key(&client, &node, good).await.status, 200, "{good}");
    }
    node.shutdown().await.unwrap();
}

/// An origin that records the path of every request and echoes the key it decoded.
async fn recording(
    State(paths): State<Arc<Mutex<Vec<String>>>>,
    uri: Uri,
    Path(key): Path<String>,
) -> String {
    paths.lock().unwrap().push(uri.path().to_owned());
    format!("value of {key}")
}

#[tokio::test]
async fn dot_segment_keys_reach_the_origin_escaped() {
    let paths = Arc::new(Mutex::new(Vec::new()));
    let app = Router::new()
        .route("/items/{key}", get(recording))
        .with_state(Arc::clone(&paths));
    let origin = serve(app).await;
    let spec: BackendSpec = format!("http:{origin}/items/{{key}}").parse().unwrap();
    let backend = Backend::open(&spec, &BackendOptions::default(), &InFlight::unbounded()).unwrap();
    for (key, path) in [
        ("..", "/items/%2E%2E"),
        (".", "/items/%2E"),
        ("...", "/items/..."),
        ("a.b", "/items/a.b"),
    ] {
        let v = backend.load(key).await.unwrap().unwrap();
        assert_eq!(v.bytes().as_ref(), format!("value of {key}").as_bytes());
        assert_eq!(paths.lock().unwrap().pop().as_deref(), Some(path), "{key}");
    }
}

/// Everything a server sends on `stream` until it closes it (at most 10 s of waiting).
async fn until_closed(stream: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(stream, &mut out);
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the client API did not close the connection")
        .ok();
    String::from_utf8_lossy(&out).into_owned()
}

/// The client API runs under the server limits: a slow head is cut, connections past the
/// bound get 503, and HTTP/0.9 gets 400; each is closed.
#[tokio::test]
async fn the_client_api_is_limited_like_the_peer_port() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    let node = common::node(|local| NodeConfig {
        server_limits: galaxycache_http::ServerLimits::default()
            .header_read_timeout(Duration::from_millis(300))
            .max_connections(2),
        galaxies: vec![GalaxyConfig::new("g", BackendSpec::Synthetic)],
        ..local
    })
    .await;
    let api = node.api_addr();

    let mut slowloris = TcpStream::connect(api).await.unwrap();
    slowloris
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    // A full exchange, so the API has surely taken this connection in.
    let mut held = TcpStream::connect(api).await.unwrap();
    held.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut status = [0; 12];
    tokio::io::AsyncReadExt::read_exact(&mut held, &mut status)
        .await
        .unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    let mut third = TcpStream::connect(api).await.unwrap();
    let answer = until_closed(&mut third).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    drop(held);

    assert_eq!(
        until_closed(&mut slowloris).await,
        "",
        "cut without an answer"
    );
    let mut ancient = TcpStream::connect(api).await.unwrap();
    ancient.write_all(b"GET /healthz\r\n\r\n").await.unwrap();
    let answer = until_closed(&mut ancient).await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer:?}");
    node.shutdown().await.unwrap();
}
