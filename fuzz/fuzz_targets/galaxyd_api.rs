//! galaxyd's client API (the axum router of `galaxyd::router`) over an in-memory galaxy
//! whose backend plays an HTTP origin: arbitrary methods, paths, headers and bodies, a few
//! requests in a row (a `PUT`, then a `GET` of what it set, say), driven through
//! `tower::ServiceExt::oneshot` on a single-threaded runtime with a paused clock.
//!
//! Input: requests separated by a line `---`. A request is `METHOD TARGET`, then header
//! lines `name: value`, a blank line, and the body. A part whose first line is `ORIGIN`
//! instead names the headers (`Cache-Control`, `Expires`) the origin answers the loads
//! that follow with: galaxyd's HTTP backend reads them into a value's instants. The
//! origin's value of a key is the key's synthetic value; key `missing` is a miss and key
//! `fail` a failed load. Parts that are not a valid request are skipped.
//!
//! Must hold: no panic, in a handler or in any task it spawns; every request is answered,
//! and never with a `500` (no write fails in a one-node cluster).
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::body::Body;
use galaxycache_galaxy::{Error, Galaxy};
use galaxycache_universe::{InFlight, Universe};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

/// Most requests taken from one input.
const MAX_REQUESTS: usize = 8;

fuzz_target!(|data: &[u8]| {
    runtime().block_on(run(data));
});

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

async fn run(data: &[u8]) {
    let origin = Arc::new(Mutex::new(HeaderMap::new()));
    let router = node(origin.clone());
    for part in split(data, b"\n---\n").take(MAX_REQUESTS) {
        let (head, body) = match find(part, b"\n\n") {
            Some(at) => (&part[..at], &part[at + 2..]),
            None => (part, &b""[..]),
        };
        let mut lines = head.split(|&b| b == b'\n');
        let first = lines.next().unwrap_or_default();
        let headers = headers(lines);
        if first == b"ORIGIN" {
            *origin.lock().unwrap() = headers;
            continue;
        }
        let Some(request) = request(first, headers, body) else {
            continue;
        };
        let what = format!("{} {}", request.method(), request.uri());
        let call = router.clone().oneshot(request);
        let response = tokio::time::timeout(Duration::from_secs(600), call)
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer"))
            .expect("the router is infallible");
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("the answer's body is read")
            .to_bytes();
        assert_ne!(
            status,
            StatusCode::INTERNAL_SERVER_ERROR,
            "{what}: {}",
            String::from_utf8_lossy(&body)
        );
    }
}

/// One node of its own cluster, serving galaxy `g` in front of the origin.
fn node(origin: Arc<Mutex<HeaderMap>>) -> axum::Router {
    let url = "http://127.0.0.1:1";
    let universe = Universe::builder(url).build();
    let backend = move |key: String| {
        let headers = origin.lock().unwrap().clone();
        async move {
            match key.as_str() {
                "missing" => Ok(None),
                "fail" => Err(Error::backend("the origin failed")),
                _ => {
                    let body = galaxyd::synthetic_value(&key, 16);
                    let now = SystemTime::now();
                    Ok(Some(galaxyd::fuzzing::origin_value(body, &headers, now)))
                }
            }
        }
    };
    let galaxy: Galaxy = Galaxy::builder(&universe, "g", 1 << 20, backend)
        .build()
        .expect("a galaxy");
    galaxyd::router(
        url,
        &[galaxy],
        Duration::from_secs(5),
        galaxyd::Readiness::ready(),
        InFlight::unbounded(),
    )
}

/// `METHOD TARGET`, the headers and the body as a request, if they make one.
fn request(first: &[u8], headers: HeaderMap, body: &[u8]) -> Option<Request<Body>> {
    let space = first.iter().position(|&b| b == b' ')?;
    let method = Method::from_bytes(&first[..space]).ok()?;
    let uri = http::Uri::try_from(&first[space + 1..]).ok()?;
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_vec()))
        .ok()?;
    *request.headers_mut() = headers;
    Some(request)
}

fn headers<'a>(lines: impl Iterator<Item = &'a [u8]>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(value),
        ) {
            headers.append(name, value);
        }
    }
    headers
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn split<'a>(mut data: &'a [u8], separator: &'a [u8]) -> impl Iterator<Item = &'a [u8]> {
    std::iter::from_fn(move || {
        if data.is_empty() {
            return None;
        }
        match find(data, separator) {
            Some(at) => {
                let part = &data[..at];
                data = &data[at + separator.len()..];
                Some(part)
            }
            None => Some(std::mem::take(&mut data)),
        }
    })
}
