//! The client API of a node (axum): values, stats, metrics, health.
//!
//! - `GET /v1/galaxies/{galaxy}/keys/{key}` (key percent-encoded): 200 with the value
//!   bytes; 404 when the data source has no such key (`X-Galaxycache-Galaxy-Status:
//!   Found`) or no such galaxy (`Not Found`, and a different message); 400 for an empty or
//!   oversized key; 503 when the load failed; 504 when it did not finish in time.
//! - `GET /v1/stats`: `{"node": URL, "galaxies": {NAME: {STAT: N, ...}}}`, every stat of
//!   the core.
//! - `GET /metrics`: the same stats, client gets by outcome and their latency, in the
//!   Prometheus text format.
//! - `GET /healthz`: `ok`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use galaxycache_galaxy::{ErrorKind, Galaxy, Value};
use galaxycache_http::{GALAXY_FOUND, GALAXY_NOT_FOUND, GALAXY_STATUS_HEADER};
use http::{HeaderValue, StatusCode, header};
use tokio::time::Instant;

use crate::metrics::{ClientMetrics, GalaxyReport, Outcome, render_prometheus};

struct Served {
    galaxy: Galaxy,
    metrics: ClientMetrics,
}

struct Inner {
    node: String,
    galaxies: BTreeMap<String, Served>,
    request_timeout: Duration,
}

/// What the handlers share.
#[derive(Clone)]
struct Api(Arc<Inner>);

/// The client API over `galaxies`, as node `node_url`; a get that takes longer than
/// `request_timeout` is answered 504 (the load goes on for the next caller).
pub fn router(node_url: &str, galaxies: &[Galaxy], request_timeout: Duration) -> Router {
    let galaxies = galaxies
        .iter()
        .map(|g| {
            let served = Served {
                galaxy: g.clone(),
                metrics: ClientMetrics::default(),
            };
            (g.name().to_owned(), served)
        })
        .collect();
    let api = Api(Arc::new(Inner {
        node: node_url.to_owned(),
        galaxies,
        request_timeout,
    }));
    Router::new()
        .route("/v1/galaxies/{galaxy}/keys/{*key}", get(get_key))
        .route("/v1/galaxies/{galaxy}/keys/", get(empty_key))
        .route("/v1/galaxies/{galaxy}/keys", get(empty_key))
        .route("/v1/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "no such endpoint".to_owned()) })
        .with_state(api)
}

fn text(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

fn unknown_galaxy(name: &str) -> Response {
    let mut r = text(StatusCode::NOT_FOUND, format!("no galaxy named {name:?}"));
    r.headers_mut().insert(
        GALAXY_STATUS_HEADER,
        HeaderValue::from_static(GALAXY_NOT_FOUND),
    );
    r
}

/// `/v1/galaxies/{galaxy}/keys[/]`: a get of the empty key, which the galaxy refuses
/// (400) as it refuses any key it does not accept.
async fn empty_key(State(api): State<Api>, Path(galaxy): Path<String>) -> Response {
    answer_get(&api, &galaxy, "").await
}

async fn get_key(State(api): State<Api>, Path((galaxy, key)): Path<(String, String)>) -> Response {
    answer_get(&api, &galaxy, &key).await
}

async fn answer_get(api: &Api, galaxy: &str, key: &str) -> Response {
    let Some(served) = api.0.galaxies.get(galaxy) else {
        return unknown_galaxy(galaxy);
    };
    let start = Instant::now();
    let result = tokio::time::timeout(api.0.request_timeout, served.galaxy.get(key)).await;
    let (outcome, response) = match result {
        Ok(Ok(value)) => (Outcome::Ok, value_response(value)),
        Ok(Err(e)) => match e.kind() {
            ErrorKind::NotFound => {
                let message = format!("no value for key {key:?} in galaxy {galaxy:?}");
                let mut r = text(StatusCode::NOT_FOUND, message);
                r.headers_mut()
                    .insert(GALAXY_STATUS_HEADER, HeaderValue::from_static(GALAXY_FOUND));
                (Outcome::NotFound, r)
            }
            ErrorKind::InvalidKey => (
                Outcome::BadRequest,
                text(StatusCode::BAD_REQUEST, e.to_string()),
            ),
            ErrorKind::Timeout => (
                Outcome::Timeout,
                text(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
            ),
            _ => {
                tracing::warn!(galaxy, key, error = %e, "get failed");
                (
                    Outcome::Error,
                    text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
                )
            }
        },
        Err(_) => {
            let message = format!("no value within {:?}", api.0.request_timeout);
            (Outcome::Timeout, text(StatusCode::GATEWAY_TIMEOUT, message))
        }
    };
    served.metrics.record(outcome, start.elapsed());
    response
}

fn value_response(value: Value) -> Response {
    let expires = value.expires_at().map(httpdate::fmt_http_date);
    let mut r = (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        Bytes::clone(value.bytes()),
    )
        .into_response();
    if let Some(v) = expires.and_then(|e| HeaderValue::from_str(&e).ok()) {
        r.headers_mut().insert(header::EXPIRES, v);
    }
    r
}

async fn stats(State(api): State<Api>) -> Response {
    let galaxies: serde_json::Map<String, serde_json::Value> = api
        .0
        .galaxies
        .iter()
        .map(|(name, served)| {
            let stats = served
                .galaxy
                .stats()
                .fields()
                .map(|(stat, v)| (stat.to_owned(), v.into()))
                .collect::<serde_json::Map<_, _>>();
            (name.clone(), stats.into())
        })
        .collect();
    let mut body = serde_json::Map::new();
    body.insert("node".to_owned(), api.0.node.clone().into());
    body.insert("galaxies".to_owned(), galaxies.into());
    let json = serde_json::Value::Object(body).to_string();
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

async fn metrics(State(api): State<Api>) -> Response {
    let reports: Vec<GalaxyReport> = api
        .0
        .galaxies
        .iter()
        .map(|(name, served)| GalaxyReport {
            name: name.clone(),
            stats: served.galaxy.stats().fields().collect(),
            outcomes: served.metrics.outcomes(),
            latency: served.metrics.latency(),
        })
        .collect();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render_prometheus(&reports),
    )
        .into_response()
}
