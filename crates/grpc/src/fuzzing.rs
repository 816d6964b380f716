//! Entry points for the fuzz targets in `fuzz/` (not API: hidden, and may change at any
//! time). Each is a thin wrapper around the crate-private conversion it names, so the
//! fuzzers run the code the server and the client run, not a copy.

use std::time::{Duration, SystemTime};

use galaxycache_universe::{Error, Value};
use prost_types::Timestamp;

use crate::wire::{self, WireInstants};

/// A request's key as the server reads it: UTF-8, or an error.
pub fn key_str(key: &[u8]) -> Result<&str, Error> {
    wire::key_str(key)
}

/// A fetched value with its instants (fields `expiry`, `refresh`, `stale_until`), as the
/// client reads a `GetResponse` or `PeekResponse`.
pub fn value_from_wire(
    bytes: &[u8],
    expiry: Option<Timestamp>,
    refresh: Option<Timestamp>,
    stale_until: Option<Timestamp>,
) -> Result<Value, Error> {
    wire::value_from_wire(bytes, instants(expiry, refresh, stale_until))
}

/// A set's value with its instants, as the server reads a `SetRequest`.
pub fn set_value_from_wire(
    bytes: &[u8],
    expiry: Option<Timestamp>,
    refresh: Option<Timestamp>,
    stale_until: Option<Timestamp>,
) -> Result<Value, Error> {
    wire::set_value_from_wire(bytes, instants(expiry, refresh, stale_until))
}

fn instants(
    expiry: Option<Timestamp>,
    refresh: Option<Timestamp>,
    stale_until: Option<Timestamp>,
) -> WireInstants {
    WireInstants {
        expiry,
        refresh,
        stale_until,
    }
}

/// The instants of `value` as they travel: `(expiry, refresh, stale_until)`.
pub fn instants_to_wire(
    value: &Value,
) -> (Option<Timestamp>, Option<Timestamp>, Option<Timestamp>) {
    let WireInstants {
        expiry,
        refresh,
        stale_until,
    } = WireInstants::of(value);
    (expiry, refresh, stale_until)
}

/// The instant a `galaxycache-expires-ms` metadata entry names.
pub fn parse_unix_ms(text: &[u8]) -> Option<SystemTime> {
    wire::parse_unix_ms(text)
}

/// The `galaxycache-expires-ms` entry written for `at`, as a number.
pub fn fmt_unix_ms(at: SystemTime) -> u64 {
    wire::fmt_unix_ms(at)
}

/// The time a `grpc-timeout` value gives a request, as the server reads it from metadata;
/// `None` when it is absent, malformed, or not a valid metadata value.
pub fn grpc_timeout(text: &[u8]) -> Option<Duration> {
    let value = tonic::metadata::AsciiMetadataValue::try_from(text).ok()?;
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert("grpc-timeout", value);
    wire::request_timeout(&metadata)
}
