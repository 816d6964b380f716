//! The HTTP backend against an origin on loopback: the backend alone, then a node in
//! front of an origin whose cache headers decide what is kept, refreshed, or served stale.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::get;
use galaxycache_universe::InFlight;
use galaxyd::{Backend, BackendOptions, BackendSpec, GalaxyConfig, HttpClient, Node, NodeConfig};
use http::{StatusCode, header};
use tokio::net::TcpListener;

async fn item(Path(key): Path<String>) -> axum::response::Response {
    match key.as_str() {
        "missing" => StatusCode::NOT_FOUND.into_response(),
        "broken" => (StatusCode::INTERNAL_SERVER_ERROR, "disk full").into_response(),
        "fresh" => ([(header::CACHE_CONTROL, "max-age=60")], "short-lived").into_response(),
        _ => format!("value of {key}").into_response(),
    }
}

/// Serve `app` on a loopback port until the returned sender is dropped or used.
async fn serve(app: Router) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                stopped.await.ok();
            })
            .into_future(),
    );
    (origin, stop)
}

#[tokio::test]
async fn origin_answers_become_values_not_found_and_errors() {
    let (origin, stop) = serve(Router::new().route("/items/{key}", get(item))).await;
    let spec: BackendSpec = format!("http:{origin}/items/{{key}}").parse().unwrap();
    let backend = Backend::open(&spec, &BackendOptions::default(), &InFlight::unbounded()).unwrap();
    let v = backend.load("a/b c").await.unwrap().unwrap();
    assert_eq!(
        v.bytes().as_ref(),
        b"value of a/b c",
        "the key travels percent-encoded"
    );
    assert_eq!(v.expires_at(), None);
    assert_eq!(backend.load("missing").await.unwrap(), None);
    let e = backend.load("broken").await.unwrap_err();
    assert!(e.contains("500") && e.contains("disk full"), "{e}");
    let before = SystemTime::now();
    let v = backend.load("fresh").await.unwrap().unwrap();
    let expiry = v.expires_at().expect("max-age gives an expiry");
    assert!(expiry >= before + Duration::from_secs(60));
    assert!(expiry <= SystemTime::now() + Duration::from_secs(60));

    stop.send(()).unwrap();
    let mut gone = None;
    for _ in 0..100 {
        match backend.load("a").await {
            Err(e) => {
                gone = Some(e);
                break;
            }
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
    let e = gone.expect("the origin still answers after its shutdown");
    assert!(e.contains("GET"), "an origin that is gone is an error: {e}");
}

/// An origin that counts the requests for each key, answers `{key} v{n}` with the cache
/// headers the key names, and fails every key once `failing` is set.
#[derive(Default)]
struct Origin {
    hits: Mutex<HashMap<String, u64>>,
    failing: AtomicBool,
}

impl Origin {
    fn hits(&self, key: &str) -> u64 {
        let hits = self.hits.lock().unwrap();
        hits.get(key).copied().unwrap_or(0)
    }
}

/// The cache headers of each test key.
fn cache_headers(key: &str) -> (header::HeaderName, &'static str) {
    let cc = header::CACHE_CONTROL;
    match key {
        "no-store" => (cc, "no-store"),
        "no-cache" => (cc, "no-cache"),
        "max-age-0" => (cc, "max-age=0"),
        "expires-past" => (header::EXPIRES, "Thu, 01 Jan 1970 00:00:00 GMT"),
        "max-age-60" => (cc, "public, max-age=60"),
        "swr" => (cc, "max-age=0, stale-while-revalidate=600"),
        "sie" => (cc, "max-age=1, stale-if-error=600"),
        _ => (cc, "no-transform"),
    }
}

async fn counted(
    State(origin): State<Arc<Origin>>,
    Path(key): Path<String>,
) -> axum::response::Response {
    let n = {
        let mut hits = origin.hits.lock().unwrap();
        let n = hits.entry(key.clone()).or_default();
        *n += 1;
        *n
    };
    if origin.failing.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, "origin down").into_response();
    }
    ([cache_headers(&key)], format!("{key} v{n}")).into_response()
}

/// A one-node cluster with galaxy `g` in front of `origin`.
async fn node_in_front_of(origin: &str) -> Node {
    let spec = BackendSpec::Http(format!("{origin}/items/{{key}}"));
    common::node(|local| NodeConfig {
        galaxies: vec![GalaxyConfig::new("g", spec)],
        ..local
    })
    .await
}

async fn get_key(client: &HttpClient, node: &Node, key: &str) -> galaxyd::Response {
    let url = format!("http://{}/v1/galaxies/g/keys/{key}", node.api_addr());
    client.get(url.parse().unwrap()).await.unwrap()
}

fn body(r: &galaxyd::Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

/// Poll `check` every 10 ms, up to `tries` times; true once it holds.
async fn poll(tries: usize, mut check: impl AsyncFnMut() -> bool) -> bool {
    for _ in 0..tries {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn origin_cache_headers_decide_what_is_kept_refreshed_and_served_stale() {
    let origin = Arc::new(Origin::default());
    let app = Router::new()
        .route("/items/{key}", get(counted))
        .with_state(Arc::clone(&origin));
    let (url, _stop) = serve(app).await;
    let node = node_in_front_of(&url).await;
    let client = HttpClient::new(4, Duration::from_secs(10));

    // Served, not kept: every get reaches the origin.
    for key in ["no-store", "no-cache", "max-age-0", "expires-past"] {
        for n in 1..=2 {
            let r = get_key(&client, &node, key).await;
            assert_eq!(r.status, 200, "{key}: {}", body(&r));
            assert_eq!(body(&r), format!("{key} v{n}"));
            assert!(!r.headers.contains_key("x-galaxycache-stale"));
        }
        assert_eq!(origin.hits(key), 2, "{key} was kept");
    }
    let stats = node.galaxies()[0].stats();
    assert_eq!(stats.not_kept, 8, "{stats:?}");

    // max-age: kept.
    for _ in 0..3 {
        assert_eq!(
            body(&get_key(&client, &node, "max-age-60").await),
            "max-age-60 v1"
        );
    }
    assert_eq!(origin.hits("max-age-60"), 1);

    // stale-while-revalidate: the value is served while it is reloaded in the background.
    assert_eq!(body(&get_key(&client, &node, "swr").await), "swr v1");
    let r = get_key(&client, &node, "swr").await;
    assert_eq!((r.status.as_u16(), body(&r)), (200, "swr v1".to_owned()));
    assert!(
        poll(500, async || origin.hits("swr") >= 2).await,
        "no background reload"
    );
    assert!(
        poll(500, async || body(&get_key(&client, &node, "swr").await)
            != "swr v1")
        .await,
        "the reloaded value is never served"
    );
    assert!(node.galaxies()[0].stats().refreshes >= 1);

    // stale-if-error: once max-age=1 has passed and the origin fails, the expired value
    // is served, marked stale.
    let r = get_key(&client, &node, "sie").await;
    assert_eq!(body(&r), "sie v1");
    assert!(!r.headers.contains_key(header::WARNING));
    origin.failing.store(true, Ordering::SeqCst);
    let mut stale = None;
    let seen = poll(1000, async || {
        let r = get_key(&client, &node, "sie").await;
        let marked = r.headers.contains_key("x-galaxycache-stale");
        stale = Some(r);
        marked
    })
    .await;
    let r = stale.unwrap();
    assert!(seen, "never served stale: {} {}", r.status, body(&r));
    assert_eq!((r.status.as_u16(), body(&r)), (200, "sie v1".to_owned()));
    assert_eq!(r.headers["x-galaxycache-stale"], "1");
    assert_eq!(r.headers[header::WARNING], "110 - \"Response is Stale\"");
    assert!(origin.hits("sie") >= 2, "the reload reached the origin");
    assert!(node.galaxies()[0].stats().stale_served >= 1);
    // A key with nothing stale to serve is still an error.
    let r = get_key(&client, &node, "never-loaded").await;
    assert_eq!(r.status, 503, "{}", body(&r));

    node.shutdown().await.unwrap();
}
