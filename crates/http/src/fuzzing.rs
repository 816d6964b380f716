//! Entry points for the fuzz targets in `fuzz/` (not API: hidden, and may change at any
//! time). Each is a thin wrapper around the crate-private parser it names, so the fuzzers
//! run the code the server and the client run, not a copy.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue};
use tokio::time::Instant;

use crate::Dialect;
use crate::dialect::Route;
use crate::headers::{self, Instants};

/// Which of `dialect`'s routes `path` is under (`true`: the peek path) and the rest of it
/// after the route's prefix, as the server routes a request.
pub fn route(dialect: Dialect, path: &str) -> Option<(bool, &str)> {
    dialect
        .route(path)
        .map(|(route, rest)| (route == Route::Peek, rest))
}

/// The galaxy and key the path after a prefix names, as the server decodes it.
pub fn decode_target(
    dialect: Dialect,
    rest: &str,
) -> Result<(Cow<'_, str>, Option<Cow<'_, str>>), &'static str> {
    dialect.decode_target(rest)
}

/// `segment` escaped as `dialect`'s client writes it into a path.
pub fn encode_segment(dialect: Dialect, segment: &str) -> String {
    let mut out = String::new();
    dialect.encode_into(segment, &mut out);
    out
}

/// The strict percent-decoding both dialects' servers use.
pub fn percent_decode(s: &str) -> Result<Cow<'_, str>, &'static str> {
    crate::dialect::percent_decode(s)
}

/// The instant an `Expires` value names (whole seconds, or a fraction of 1 to 9 digits).
pub fn parse_expires(value: &HeaderValue) -> Option<SystemTime> {
    headers::parse_expires(value)
}

/// The `Expires` value the server writes for `at`.
pub fn fmt_expires(at: SystemTime) -> HeaderValue {
    headers::fmt_expires(at)
}

/// The instant an `X-Galaxycache-*-Ms` value names.
pub fn parse_unix_ms(value: &HeaderValue) -> Option<SystemTime> {
    headers::parse_unix_ms(value)
}

/// The `X-Galaxycache-*-Ms` value written for `at`.
pub fn fmt_unix_ms(at: SystemTime) -> HeaderValue {
    headers::fmt_unix_ms(at)
}

/// A value's `(expiry, refresh instant, stale limit)`, each `None` when it has none.
pub type ValueInstants = (Option<SystemTime>, Option<SystemTime>, Option<SystemTime>);

/// A value's instants, as a client reads them from a `200` and the server from a `PUT`.
pub fn read_instants(headers: &HeaderMap) -> Result<ValueInstants, &'static str> {
    let value = Instants::read(headers)?.apply(galaxycache_universe::Value::new(""));
    Ok((value.expires_at(), value.refresh_at(), value.stale_until()))
}

/// Write `at` as a value's expiry into `headers`, as a `200` and a `PUT` carry it.
pub fn insert_expiry(headers: &mut HeaderMap, at: SystemTime) {
    headers::insert_expiry(headers, at);
}

/// The galaxy version a request names.
pub fn read_version(headers: &HeaderMap) -> Result<u32, &'static str> {
    headers::read_version(headers)
}

/// The deadline an `X-Galaxycache-Timeout-Ms` value names, counted from `now` (`Some(None)`:
/// too long to represent, no deadline); `None` when it is malformed.
pub fn parse_timeout(value: &HeaderValue, now: Instant) -> Option<Option<Instant>> {
    headers::parse_timeout(value, now).ok()
}

/// The `X-Galaxycache-Timeout-Ms` value the client writes for `remaining`.
pub fn fmt_timeout(remaining: Duration) -> HeaderValue {
    headers::fmt_timeout(remaining)
}

/// Decode a groupcache-dialect `200` body (golang/groupcache's `GetResponse`): the value's
/// bytes, and the message re-encoded.
pub fn decode_get_response(body: &[u8]) -> Result<(Option<bytes::Bytes>, Vec<u8>), String> {
    use prost::Message as _;
    let message = crate::pb::GetResponse::decode(body).map_err(|e| e.to_string())?;
    let encoded = message.encode_to_vec();
    Ok((message.value, encoded))
}

/// The keys of a batch request body, at most `max_keys`, as the server reads them.
pub fn decode_batch_keys(body: &[u8], max_keys: usize) -> Result<Vec<String>, String> {
    crate::batch::decode_keys(body, max_keys)
}

/// The batch request body the client writes for `keys`.
pub fn encode_batch_keys(keys: &[String]) -> bytes::Bytes {
    crate::batch::encode_keys(keys)
}

/// The answers of a batch response body to `keys` keys, as the client reads them.
pub fn decode_batch_results(
    body: &[u8],
    keys: usize,
) -> Result<Vec<galaxycache_universe::FetchResult>, String> {
    crate::batch::decode_results(body, keys)
}

/// The batch response body the server writes for `results`.
pub fn encode_batch_results(results: &[galaxycache_universe::FetchResult]) -> bytes::Bytes {
    crate::batch::encode_results(results)
}
