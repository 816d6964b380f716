//! Entry points for the fuzz targets in `fuzz/` (not API: hidden, and may change at any
//! time). The client API itself is fuzzed through [`router`](crate::router), which is
//! public already; what is here wraps crate-private parsers, so the fuzzers run the code
//! galaxyd runs, not a copy.

use std::time::SystemTime;

use bytes::Bytes;
use galaxycache_universe::Value;
use http::HeaderMap;

/// An HTTP origin's answer as the value the HTTP backend loads: its instants from the
/// origin's `Cache-Control` (`max-age`, `s-maxage`, `no-store`, `no-cache`,
/// `stale-while-revalidate`, `stale-if-error`) and `Expires`, seen at `now`.
pub fn origin_value(body: Bytes, headers: &HeaderMap, now: SystemTime) -> Value {
    crate::backend::origin_value(body, headers, now)
}
