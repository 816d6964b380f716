//! The client API of a node (axum): values, writes, stats, metrics, health.
//!
//! - `GET /v1/galaxies/{galaxy}/keys/{key}` (key percent-encoded): 200 with the value
//!   bytes (and `Expires` when the value expires); 404 when the data source has no such
//!   key, cached miss (`not_found_ttl`) or not (`X-Galaxycache-Galaxy-Status: Found`), or
//!   no such galaxy (`Not Found`, and a different message); 400 for an empty or oversized
//!   key; 503 when the load failed, or when the values being sent stayed at their bound
//!   (see [`router`]) until the request's timeout; 504 when it did not finish in time.
//!
//!   A value served past its expiry, because reloading it failed or was slower than the
//!   soft timeout (`stale_if_error`, `soft_timeout`, or the origin's `stale-if-error`), is
//!   a 200 too, marked with `Warning: 110 - "Response is Stale"` (RFC 7234) and
//!   `X-Galaxycache-Stale: 1`.
//! - `DELETE /v1/galaxies/{galaxy}/keys/{key}`: remove the key from the whole cluster
//!   (the owner first, then every other peer); the next get loads it anew.
//! - `PUT /v1/galaxies/{galaxy}/keys/{key}`, body = the value's bytes (at most 64 MiB,
//!   the peer protocols' bound on a value, else 413): store the value at the key's owner
//!   (write-through); every other node drops its copy. `Cache-Control: max-age=N`
//!   (seconds from now) or else `Expires` (an HTTP date) sets the value's expiry; either
//!   one malformed is 400.
//!
//!   A get that carries a W3C `traceparent` header continues that trace: the spans of its
//!   load record the trace id, and its peer fetches send it on to the key's owner.
//! - `POST /v1/galaxies/{galaxy}/batch`, body = a JSON array of keys (at most 1,000, the
//!   body at most 64 MiB): the values of every key at once ([`Galaxy::get_many`]), 200
//!   with a JSON object keyed by key, each `{"status": 200, "value": BASE64, "expires":
//!   HTTP-DATE}` (`expires` only when the value expires, `"stale": true` when it is served
//!   stale), or `{"status": 404|400|503|504, "error": MSG}` with the status a get of that
//!   key alone would have had. A key asked twice is answered once. A body that is not a
//!   JSON array of strings, or has too many keys, is 400; an unknown galaxy 404; 504 when
//!   the values did not come within the request timeout.
//! - `POST /v1/galaxies/{galaxy}/flush`: every node drops every entry of the galaxy.
//!
//!   A write is answered 200 once this node applied it and every peer answered or timed
//!   out, with `{"galaxy": G, "key": K, "op": "remove"|"set"|"flush", "applied": [URL],
//!   "refused": [{"peer": URL, "error": MSG}], "failed": [{"peer": URL, "error": MSG}],
//!   "complete": BOOL}` (no `key` for a flush; peers other than this node; `refused`: the
//!   peer cannot apply the verb, `failed`: unreachable, retried in the background). The
//!   key is decoded as a get's is; an unknown galaxy is 404, a bad key 400. A write takes
//!   at most about twice the galaxy's peer timeout (the owner, then the others at once),
//!   and once started runs to its end even if the client goes away.
//! - `GET /v1/stats`: `{"node": URL, "peers": [URL, ...], "galaxies": {NAME: {STAT: N,
//!   ...}}}`: the peers on this node's ring (itself included, as they are now: they
//!   follow the peer file or DNS), every stat of the core, and `budget_bytes`, the
//!   galaxy's byte budget (against which `main_bytes + hot_bytes` is held).
//! - `GET /v1/peers`: this node's view of the ring, `{"self": URL, "peers": [{"url": URL,
//!   "state": "up"|"open"|"probing", "share": 0.33, "fetch_requests": N, "fetched_keys":
//!   N, "queued_fetches": N}, ...]}`: every peer on the ring (this node too, always `up`),
//!   its circuit (`open`: this node stopped asking it after failures, and loads its keys
//!   itself; `probing`: one request is testing it), its share of the keys, the fetch
//!   requests this node sent it (a batch counts once) and the keys they carried, and the
//!   fetches waiting now for a request to carry them.
//! - `GET /metrics`: in the Prometheus text format (`metrics-exporter-prometheus`), the
//!   library's metrics (every galaxy's counters and cache sizes, each peer's circuit,
//!   ring share and fetches, latency histograms of backend loads, peer fetches and gets
//!   that missed), client gets by outcome and their latency, client writes by op and
//!   outcome, `galaxycache_build_info` and the process metrics (`process_*`); every name
//!   is listed in docs/ARCHITECTURE.md.
//! - `GET /healthz`: `ok` while the node runs (liveness).
//! - `GET /readyz`: 200 `ready` once every start-up preload has ended (or failed, with
//!   `first_update_fail_ok`), 503 `preloading` before (readiness: route clients here
//!   only once it is 200).
//!
//! Another method on one of these paths is 405; a path with a malformed percent-escape
//! (`%zz`, a lone `%`) is 400, as on the peer port.

// No request may panic the node: outside tests, every unwrap, expect, index and unchecked
// arithmetic is an error; the few that cannot fail are allowed where they are, saying why.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use bytes::Bytes;
use galaxycache_galaxy::{Error, ErrorKind, Galaxy, GetOptions, Report, Value};
use galaxycache_http::{GALAXY_FOUND, GALAXY_NOT_FOUND, GALAXY_STATUS_HEADER};
use galaxycache_universe::{
    InFlight, Reservation, TRACEPARENT, TraceContext, fmt_http_date, saturating_instant, with_trace,
};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::time::Instant;

use crate::metrics::{NodeMetrics, Outcome, WriteOutcome, WriteVerb};
use crate::readiness::Readiness;
use crate::units::deadline_after;

/// Marks an answer served past its value's expiry: `1`.
pub(crate) const STALE_HEADER: &str = "x-galaxycache-stale";
/// The `Warning` of a stale answer (RFC 7234, 5.5.1).
const STALE_WARNING: &str = "110 - \"Response is Stale\"";

/// Largest value a `PUT` may carry: the peer protocols' bound on a value
/// ([`DEFAULT_MAX_RESPONSE_BYTES`](galaxycache_universe::DEFAULT_MAX_RESPONSE_BYTES),
/// 64 MiB), so whatever is set here can travel to every peer.
pub(crate) const MAX_VALUE_BYTES: usize = galaxycache_universe::DEFAULT_MAX_RESPONSE_BYTES;

/// Most keys one batch get may ask for.
pub(crate) const MAX_BATCH_KEYS: usize = 1000;

/// `max-age` past this is taken as this (RFC 9111, 1.2.2: 2^31 seconds).
const MAX_AGE_CAP: u64 = 1 << 31;

struct Served {
    galaxy: Galaxy,
}

struct Inner {
    node: String,
    galaxies: BTreeMap<String, Served>,
    request_timeout: Duration,
    readiness: Readiness,
    /// The bound on value bytes being sent to clients.
    sending: InFlight,
    metrics: NodeMetrics,
}

/// What the handlers share.
#[derive(Clone)]
struct Api(Arc<Inner>);

/// The client API over `galaxies`, as node `node_url`; a get that takes longer than
/// `request_timeout` is answered 504 (the load goes on for the next caller); `/readyz`
/// says what `readiness` says.
///
/// Values being sent are held against `sending`, a bound on bytes in flight, from the
/// get until the connection has taken the last of them: a value evicted from the cache
/// (or too large for it) while it is sent is memory no budget counts. A get that finds
/// no room waits holding nothing, then gets the value again.
pub fn router(
    node_url: &str,
    galaxies: &[Galaxy],
    request_timeout: Duration,
    readiness: Readiness,
    sending: InFlight,
) -> Router {
    let galaxies: BTreeMap<String, Served> = galaxies
        .iter()
        .map(|g| {
            let served = Served { galaxy: g.clone() };
            (g.name().to_owned(), served)
        })
        .collect();
    let node_metrics = NodeMetrics::new(galaxies.keys().map(String::as_str));
    let api = Api(Arc::new(Inner {
        node: node_url.to_owned(),
        galaxies,
        request_timeout,
        readiness,
        sending,
        metrics: node_metrics,
    }));
    Router::new()
        .route(
            "/v1/galaxies/{galaxy}/keys/{*key}",
            get(get_key).delete(delete_key).put(put_key),
        )
        .route(
            "/v1/galaxies/{galaxy}/keys/",
            get(empty_key).delete(delete_empty).put(put_empty),
        )
        .route(
            "/v1/galaxies/{galaxy}/keys",
            get(empty_key).delete(delete_empty).put(put_empty),
        )
        .route("/v1/galaxies/{galaxy}/batch", post(batch))
        .route("/v1/galaxies/{galaxy}/flush", post(flush))
        .route("/v1/stats", get(stats))
        .route("/v1/peers", get(peers))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { text(StatusCode::NOT_FOUND, "no such endpoint".to_owned()) })
        .layer(middleware::from_fn(strict_escapes))
        .with_state(api)
}

/// Refuse (400) a request whose path has a malformed percent-escape, as the peer port
/// does: axum's path extractor would take `%zz` as the literal text of a key.
async fn strict_escapes(request: Request, next: Next) -> Response {
    if has_malformed_escape(request.uri().path()) {
        let message = "malformed percent-encoding in the path".to_owned();
        return text(StatusCode::BAD_REQUEST, message);
    }
    next.run(request).await
}

/// True when a `%` in `path` does not start an escape of two hex digits.
fn has_malformed_escape(path: &str) -> bool {
    path.split('%').skip(1).any(|rest| {
        !rest
            .get(..2)
            .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
    })
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

async fn get_key(
    State(api): State<Api>,
    Path((galaxy, key)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    with_trace(request_trace(&headers), answer_get(&api, &galaxy, &key)).await
}

/// The trace a client request continues: its `traceparent`, when valid. The peer fetches
/// of its gets carry it on, so one trace spans the nodes.
fn request_trace(headers: &HeaderMap) -> Option<TraceContext> {
    let value = headers.get(TRACEPARENT)?.to_str().ok()?;
    value.parse().ok()
}

async fn answer_get(api: &Api, galaxy: &str, key: &str) -> Response {
    let Some(served) = api.0.galaxies.get(galaxy) else {
        return unknown_galaxy(galaxy);
    };
    let start = Instant::now();
    let deadline = deadline_after(start, api.0.request_timeout);
    let result = tokio::time::timeout_at(deadline, ready_to_send(api, served, key, deadline)).await;
    let (outcome, response) = match result {
        Ok(Ok((value, reservation))) => (Outcome::Ok, value_response(value, reservation)),
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
    api.0.metrics.record_get(galaxy, outcome, start.elapsed());
    response
}

/// `POST /v1/galaxies/{galaxy}/batch`: the values of a JSON array of keys (see the module
/// docs).
async fn batch(
    State(api): State<Api>,
    Path(galaxy): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(served) = api.0.galaxies.get(&galaxy) else {
        return unknown_galaxy(&galaxy);
    };
    let keys = match read_body(&headers, body, "a batch")
        .await
        .and_then(|body| batch_keys(&body))
    {
        Ok(keys) => keys,
        Err((status, message)) => return text(status, message),
    };
    let start = Instant::now();
    let deadline = deadline_after(start, api.0.request_timeout);
    let answer = tokio::time::timeout_at(deadline, batch_to_send(&api, served, &keys, deadline));
    match with_trace(request_trace(&headers), answer).await {
        Ok(Ok((values, reservation))) => {
            let mut answers = serde_json::Map::new();
            for (key, value) in keys.iter().zip(values) {
                let (outcome, answer) = batch_answer(&galaxy, key, value);
                api.0.metrics.record_get(&galaxy, outcome, start.elapsed());
                answers.insert(key.clone(), answer);
            }
            let json = Bytes::from(serde_json::Value::Object(answers).to_string());
            let body = Body::new(Sending {
                bytes: json,
                reservation: Arc::new(reservation),
            });
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        Ok(Err(e)) => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(_) => {
            let message = format!("no values within {:?}", api.0.request_timeout);
            text(StatusCode::GATEWAY_TIMEOUT, message)
        }
    }
}

/// The keys of a batch body: a JSON array of at most [`MAX_BATCH_KEYS`] strings, each
/// once (in their first order).
fn batch_keys(body: &[u8]) -> Result<Vec<String>, (StatusCode, String)> {
    let bad = |message: String| (StatusCode::BAD_REQUEST, message);
    let keys: Vec<String> = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "the body must be a JSON array of keys (strings): {e}"
        ))
    })?;
    if keys.len() > MAX_BATCH_KEYS {
        return Err(bad(format!(
            "a batch may ask for at most {MAX_BATCH_KEYS} keys, not {}",
            keys.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(keys.len());
    Ok(keys
        .into_iter()
        .filter(|k| seen.insert(k.clone()))
        .collect())
}

/// The values of `keys`, with room for them among the bytes being sent (as base64 in
/// JSON). Without room, the wait holds nothing, then gets the values again (see
/// [`ready_to_send`]).
async fn batch_to_send(
    api: &Api,
    served: &Served,
    keys: &[String],
    deadline: Instant,
) -> Result<(Vec<Result<Value, Error>>, Reservation), Error> {
    let options = GetOptions::new().deadline(deadline);
    let values = served.galaxy.get_many_with(keys, &options).await;
    let len = batch_bytes(&values);
    if len == 0 {
        return Ok((values, api.0.sending.empty()));
    }
    if let Some(reservation) = api.0.sending.try_reserve(len) {
        return Ok((values, reservation));
    }
    drop(values);
    let reservation = api.0.sending.reserve(len, deadline).await?;
    Ok((
        served.galaxy.get_many_with(keys, &options).await,
        reservation,
    ))
}

/// About the bytes of the values of a batch answer: base64 takes 4 bytes for every 3.
fn batch_bytes(values: &[Result<Value, Error>]) -> u64 {
    values
        .iter()
        .filter_map(|v| v.as_ref().ok())
        .map(|v| (v.bytes().len() as u64).saturating_mul(4) / 3)
        .fold(0, u64::saturating_add)
}

/// One key's part of a batch answer, and how its get went.
fn batch_answer(
    galaxy: &str,
    key: &str,
    value: Result<Value, Error>,
) -> (Outcome, serde_json::Value) {
    let value = match value {
        Ok(value) => {
            let mut answer = serde_json::json!({
                "status": 200,
                "value": BASE64_STANDARD.encode(value.bytes()),
            });
            if let Some(map) = answer.as_object_mut() {
                if let Some(expires) = value.expires_at() {
                    map.insert("expires".to_owned(), fmt_http_date(expires).into());
                }
                if value.is_stale() {
                    map.insert("stale".to_owned(), true.into());
                }
            }
            return (Outcome::Ok, answer);
        }
        Err(e) => e,
    };
    let (outcome, status, message) = match value.kind() {
        ErrorKind::NotFound => (
            Outcome::NotFound,
            StatusCode::NOT_FOUND,
            format!("no value for key {key:?} in galaxy {galaxy:?}"),
        ),
        ErrorKind::InvalidKey => (
            Outcome::BadRequest,
            StatusCode::BAD_REQUEST,
            value.to_string(),
        ),
        ErrorKind::Timeout => (
            Outcome::Timeout,
            StatusCode::GATEWAY_TIMEOUT,
            value.to_string(),
        ),
        _ => {
            tracing::warn!(galaxy, key, error = %value, "get failed");
            (
                Outcome::Error,
                StatusCode::SERVICE_UNAVAILABLE,
                value.to_string(),
            )
        }
    };
    let answer = serde_json::json!({"status": status.as_u16(), "error": message});
    (outcome, answer)
}

/// `DELETE /v1/galaxies/{galaxy}/keys[/]`: a remove of the empty key, refused (400).
async fn delete_empty(State(api): State<Api>, Path(galaxy): Path<String>) -> Response {
    answer_remove(&api, &galaxy, String::new()).await
}

/// `PUT /v1/galaxies/{galaxy}/keys[/]`: a set of the empty key, refused (400) before the
/// body is read.
async fn put_empty(
    State(api): State<Api>,
    Path(galaxy): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    answer_set(&api, &galaxy, String::new(), &headers, body).await
}

async fn delete_key(
    State(api): State<Api>,
    Path((galaxy, key)): Path<(String, String)>,
) -> Response {
    answer_remove(&api, &galaxy, key).await
}

async fn put_key(
    State(api): State<Api>,
    Path((galaxy, key)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    answer_set(&api, &galaxy, key, &headers, body).await
}

async fn flush(State(api): State<Api>, Path(galaxy): Path<String>) -> Response {
    let Some(served) = api.0.galaxies.get(&galaxy) else {
        return unknown_galaxy(&galaxy);
    };
    let g = served.galaxy.clone();
    let done = tokio::spawn(async move { Ok(g.flush().await) }).await;
    write_answer(&api.0.metrics, &galaxy, None, WriteVerb::Flush, done)
}

async fn answer_remove(api: &Api, galaxy: &str, key: String) -> Response {
    let Some(served) = api.0.galaxies.get(galaxy) else {
        return unknown_galaxy(galaxy);
    };
    let g = served.galaxy.clone();
    let task_key = key.clone();
    let done = tokio::spawn(async move { g.remove(&task_key).await }).await;
    write_answer(&api.0.metrics, galaxy, Some(&key), WriteVerb::Remove, done)
}

async fn answer_set(
    api: &Api,
    galaxy: &str,
    key: String,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let Some(served) = api.0.galaxies.get(galaxy) else {
        return unknown_galaxy(galaxy);
    };
    let refuse = |status: StatusCode, message: String| {
        api.0
            .metrics
            .record_write(galaxy, WriteVerb::Set, WriteOutcome::BadRequest);
        text(status, message)
    };
    if let Err(e) = served.galaxy.universe().check_key(&key) {
        return refuse(StatusCode::BAD_REQUEST, format!("invalid key: {e}"));
    }
    let expires_at = match requested_expiry(headers, SystemTime::now()) {
        Ok(expires_at) => expires_at,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    let bytes = match read_body(headers, body, "a value").await {
        Ok(bytes) => bytes,
        Err((status, message)) => return refuse(status, message),
    };
    let value = Value::new(bytes).with_expiry(expires_at);
    let g = served.galaxy.clone();
    let task_key = key.clone();
    let done = tokio::spawn(async move { g.set(&task_key, value).await }).await;
    write_answer(&api.0.metrics, galaxy, Some(&key), WriteVerb::Set, done)
}

/// The body of a `PUT` (a value) or a batch get (its keys), at most [`MAX_VALUE_BYTES`]:
/// 413 past that (told by `Content-Length` before reading, or while reading), 400 when it
/// cannot be read.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    what: &str,
) -> Result<Bytes, (StatusCode, String)> {
    let too_large = || {
        let message = format!("{what} may have at most {MAX_VALUE_BYTES} bytes");
        (StatusCode::PAYLOAD_TOO_LARGE, message)
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_VALUE_BYTES as u64) {
        return Err(too_large());
    }
    match Limited::new(body, MAX_VALUE_BYTES).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(e) => Err((
            StatusCode::BAD_REQUEST,
            format!("cannot read the body: {e}"),
        )),
    }
}

/// The expiry a `PUT` asks for, seen at `now`: `Cache-Control: max-age=N` (N seconds from
/// now), else `Expires` (an HTTP date), else none. Both headers are checked when both
/// are sent: either one malformed is an error (the message says which). Other
/// `Cache-Control` directives are ignored.
fn requested_expiry(headers: &HeaderMap, now: SystemTime) -> Result<Option<SystemTime>, String> {
    let max_age = max_age(headers)?;
    let expires = match headers.get(header::EXPIRES) {
        None => None,
        Some(v) => {
            let date = v
                .to_str()
                .ok()
                .and_then(|t| httpdate::parse_http_date(t).ok());
            Some(date.ok_or_else(|| {
                format!("malformed Expires {v:?}: expected an HTTP date such as \"Sun, 06 Nov 1994 08:49:37 GMT\"")
            })?)
        }
    };
    Ok(match max_age {
        Some(secs) => Some(saturating_instant(now, Duration::from_secs(secs))),
        None => expires,
    })
}

/// The `max-age` of every `Cache-Control` header together, in seconds (at most
/// [`MAX_AGE_CAP`]); an error when it is malformed or given twice.
fn max_age(headers: &HeaderMap) -> Result<Option<u64>, String> {
    let mut found = None;
    for v in headers.get_all(header::CACHE_CONTROL) {
        let malformed = || format!("malformed Cache-Control {v:?}: expected max-age=SECONDS");
        let line = v.to_str().map_err(|_| malformed())?;
        for directive in line.split(',').map(str::trim) {
            let (name, arg) = match directive.split_once('=') {
                Some((name, arg)) => (name.trim(), Some(arg.trim())),
                None => (directive, None),
            };
            if !name.eq_ignore_ascii_case("max-age") {
                continue;
            }
            let digits = arg.map(|a| a.trim_matches('"')).ok_or_else(malformed)?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(malformed());
            }
            if found.is_some() {
                return Err(format!("Cache-Control {v:?}: max-age given twice"));
            }
            let secs = digits.parse::<u64>().unwrap_or(MAX_AGE_CAP);
            found = Some(secs.min(MAX_AGE_CAP));
        }
    }
    Ok(found)
}

/// Answer a write whose task ended with `done`, and count it.
fn write_answer(
    metrics: &NodeMetrics,
    galaxy: &str,
    key: Option<&str>,
    verb: WriteVerb,
    done: Result<Result<Report, galaxycache_galaxy::Error>, tokio::task::JoinError>,
) -> Response {
    let (outcome, response) = match done {
        Ok(Ok(report)) => {
            let outcome = if report.is_complete() {
                WriteOutcome::Complete
            } else {
                tracing::warn!(galaxy, key, op = verb.label(), refused = ?report.refused, failed = ?report.failed, "write not applied by every peer");
                WriteOutcome::Incomplete
            };
            let json = report_json(galaxy, key, verb, &report);
            let r = ([(header::CONTENT_TYPE, "application/json")], json).into_response();
            (outcome, r)
        }
        Ok(Err(e)) if matches!(e.kind(), ErrorKind::InvalidKey) => (
            WriteOutcome::BadRequest,
            text(StatusCode::BAD_REQUEST, e.to_string()),
        ),
        Ok(Err(e)) => {
            tracing::warn!(galaxy, key, op = verb.label(), error = %e, "write failed");
            (
                WriteOutcome::Error,
                text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            )
        }
        Err(e) => {
            tracing::error!(galaxy, key, op = verb.label(), error = %e, "write task failed");
            let message = format!("the {} did not finish: {e}", verb.label());
            (
                WriteOutcome::Error,
                text(StatusCode::INTERNAL_SERVER_ERROR, message),
            )
        }
    };
    metrics.record_write(galaxy, verb, outcome);
    response
}

/// The JSON answer to a write (see the module docs).
fn report_json(galaxy: &str, key: Option<&str>, verb: WriteVerb, report: &Report) -> String {
    let peers = |list: &[(String, galaxycache_universe::Error)]| {
        list.iter()
            .map(|(peer, e)| serde_json::json!({"peer": peer, "error": e.to_string()}))
            .collect::<Vec<_>>()
    };
    let mut body = serde_json::json!({
        "galaxy": galaxy,
        "op": verb.label(),
        "applied": report.applied,
        "refused": peers(&report.refused),
        "failed": peers(&report.failed),
        "complete": report.is_complete(),
    });
    if let (Some(key), Some(map)) = (key, body.as_object_mut()) {
        map.insert("key".to_owned(), key.into());
    }
    body.to_string()
}

/// The value of `key`, with room for its bytes among those being sent. Without room, the
/// wait holds nothing (the value may be the only copy, evicted or too large to cache):
/// it waits for room for that many bytes, then gets the value again.
async fn ready_to_send(
    api: &Api,
    served: &Served,
    key: &str,
    deadline: Instant,
) -> Result<(Value, Reservation), Error> {
    let options = GetOptions::new().deadline(deadline);
    let value = served.galaxy.get_with(key, &options).await?;
    let len = value.bytes().len() as u64;
    if let Some(reservation) = api.0.sending.try_reserve(len) {
        return Ok((value, reservation));
    }
    drop(value);
    let reservation = api.0.sending.reserve(len, deadline).await?;
    Ok((served.galaxy.get_with(key, &options).await?, reservation))
}

/// Largest slice of a value handed to the connection at once: the bytes the connection
/// buffers beyond those still counted as being sent.
const SEND_CHUNK: usize = 256 * 1024;

/// A value's bytes as a body, in slices of at most [`SEND_CHUNK`], each holding the
/// value's reservation: it is released once the connection has written (and dropped)
/// the last slice, which is when the value's memory can go.
struct Sending {
    bytes: Bytes,
    reservation: Arc<Reservation>,
}

/// A slice of a value being sent, and the value's reservation.
struct Slice {
    bytes: Bytes,
    _reservation: Arc<Reservation>,
}

impl AsRef<[u8]> for Slice {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl http_body::Body for Sending {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let n = self.bytes.len().min(SEND_CHUNK);
        let frame = (n > 0).then(|| {
            let slice = Slice {
                bytes: self.bytes.split_to(n),
                _reservation: Arc::clone(&self.reservation),
            };
            Ok(http_body::Frame::data(Bytes::from_owner(slice)))
        });
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.bytes.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.bytes.len() as u64)
    }
}

/// A 200 with the value's bytes, its `Expires`, and the stale marks when it is stale.
fn value_response(value: Value, reservation: Reservation) -> Response {
    let expires = value.expires_at().map(fmt_http_date);
    let stale = value.is_stale();
    let body = Body::new(Sending {
        bytes: value.into_bytes(),
        reservation: Arc::new(reservation),
    });
    let mut r = ([(header::CONTENT_TYPE, "application/octet-stream")], body).into_response();
    let headers = r.headers_mut();
    if let Some(v) = expires.and_then(|e| HeaderValue::from_str(&e).ok()) {
        headers.insert(header::EXPIRES, v);
    }
    if stale {
        headers.insert(header::WARNING, HeaderValue::from_static(STALE_WARNING));
        headers.insert(STALE_HEADER, HeaderValue::from_static("1"));
    }
    r
}

/// `/readyz`: 200 once every start-up preload has ended, 503 before.
async fn readyz(State(api): State<Api>) -> Response {
    if api.0.readiness.is_ready() {
        text(StatusCode::OK, "ready".to_owned())
    } else {
        text(StatusCode::SERVICE_UNAVAILABLE, "preloading".to_owned())
    }
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
                .chain([(
                    "budget_bytes".to_owned(),
                    served.galaxy.budget_bytes().into(),
                )])
                .collect::<serde_json::Map<_, _>>();
            (name.clone(), stats.into())
        })
        .collect();
    // Every galaxy of a node shares its universe.
    let peers = api
        .0
        .galaxies
        .values()
        .next()
        .map_or_else(Vec::new, |served| served.galaxy.universe().peers());
    let mut body = serde_json::Map::new();
    body.insert("node".to_owned(), api.0.node.clone().into());
    body.insert("peers".to_owned(), peers.into());
    body.insert("galaxies".to_owned(), galaxies.into());
    let json = serde_json::Value::Object(body).to_string();
    ([(header::CONTENT_TYPE, "application/json")], json).into_response()
}

/// The universe every galaxy of this node lives in.
fn universe(api: &Api) -> Option<&galaxycache_universe::Universe> {
    api.0.galaxies.values().next().map(|s| s.galaxy.universe())
}

async fn peers(State(api): State<Api>) -> Response {
    let peers: Vec<serde_json::Value> = universe(&api)
        .map(|u| u.peer_status())
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            serde_json::json!({
                "url": p.url,
                "state": p.state.as_str(),
                "share": (p.share * 10_000.0).round() / 10_000.0,
                "fetch_requests": p.fetch_requests,
                "fetched_keys": p.fetched_keys,
                "queued_fetches": p.queued_fetches,
            })
        })
        .collect();
    let body = serde_json::json!({ "self": api.0.node, "peers": peers });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn metrics(State(api): State<Api>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        api.0.metrics.render(universe(&api)),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn expiry_from_max_age_or_expires() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let at = |secs| Some(now + Duration::from_secs(secs));
        let expiry = |pairs: &[(header::HeaderName, &str)]| requested_expiry(&headers(pairs), now);
        assert_eq!(expiry(&[]), Ok(None));
        assert_eq!(expiry(&[(header::CACHE_CONTROL, "max-age=60")]), Ok(at(60)));
        assert_eq!(
            expiry(&[(
                header::CACHE_CONTROL,
                "public, MAX-AGE = \"5\" ,no-transform"
            )]),
            Ok(at(5))
        );
        // Other directives alone set nothing; max-age on a second line counts.
        assert_eq!(expiry(&[(header::CACHE_CONTROL, "no-cache")]), Ok(None));
        assert_eq!(
            expiry(&[
                (header::CACHE_CONTROL, "public"),
                (header::CACHE_CONTROL, "max-age=7")
            ]),
            Ok(at(7))
        );
        // Past 2^31 s (and past u64) is 2^31 s.
        let huge = "max-age=99999999999999999999999";
        assert_eq!(expiry(&[(header::CACHE_CONTROL, huge)]), Ok(at(1 << 31)));
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let parsed = httpdate::parse_http_date(date).ok();
        assert_eq!(expiry(&[(header::EXPIRES, date)]), Ok(parsed));
        // max-age wins over Expires, as in HTTP caching.
        assert_eq!(
            expiry(&[
                (header::EXPIRES, date),
                (header::CACHE_CONTROL, "max-age=1")
            ]),
            Ok(at(1))
        );
    }

    #[test]
    fn malformed_escapes_are_found() {
        for good in ["/v1/galaxies/g/keys/a", "/k/%2F%c3%A9", "/k/100%25", ""] {
            assert!(!has_malformed_escape(good), "{good}");
        }
        for bad in [
            "/k/%zz", "/k/%", "/k/%4", "/k/a%g1", "/k/%%41", "/k/%é1", "/k/%2F%",
        ] {
            assert!(has_malformed_escape(bad), "{bad}");
        }
    }

    #[test]
    fn malformed_expiry_headers_are_errors() {
        let now = SystemTime::UNIX_EPOCH;
        for pairs in [
            vec![(header::CACHE_CONTROL, "max-age=abc")],
            vec![(header::CACHE_CONTROL, "max-age=")],
            vec![(header::CACHE_CONTROL, "max-age")],
            vec![(header::CACHE_CONTROL, "max-age=-1")],
            vec![(header::CACHE_CONTROL, "max-age=1.5")],
            vec![(header::CACHE_CONTROL, "max-age=1, max-age=2")],
            vec![(header::EXPIRES, "0")],
            vec![(header::EXPIRES, "tomorrow")],
            vec![
                (header::CACHE_CONTROL, "max-age=1"),
                (header::EXPIRES, "never"),
            ],
        ] {
            let e = requested_expiry(&headers(&pairs), now).unwrap_err();
            assert!(
                e.contains("malformed") || e.contains("twice"),
                "{pairs:?}: {e}"
            );
        }
        let mut bytes = HeaderMap::new();
        bytes.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_bytes(b"max-age=\xff").unwrap(),
        );
        assert!(requested_expiry(&bytes, now).is_err());
    }
}
