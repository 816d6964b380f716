//! Conversions between the wire messages and the universe's types: keys, expiries and the
//! `grpc-timeout` header.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use galaxycache_universe::{Error, ErrorKind, Value};
use prost_types::Timestamp;
use tonic::metadata::MetadataMap;

/// The metadata entry that carries the caller's remaining time (gRPC over HTTP/2 spec).
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// A request's key as a `&str`; keys travel as `bytes` but galaxycache keys are strings.
pub(crate) fn key_str(key: &[u8]) -> Result<&str, Error> {
    std::str::from_utf8(key).map_err(|e| {
        Error::new(
            ErrorKind::InvalidRequest,
            format!("key is not valid UTF-8 (byte {})", e.valid_up_to()),
        )
    })
}

/// A key as it travels: its UTF-8 bytes, in a buffer of their own.
pub(crate) fn key_to_wire(key: &str) -> Bytes {
    Bytes::copy_from_slice(key.as_bytes())
}

/// A value's expiry as it travels: absent when the value does not expire.
pub(crate) fn expiry_to_wire(value: &Value) -> Option<Timestamp> {
    value.expires_at().map(Timestamp::from)
}

/// A value received from a peer, with its expiry.
///
/// The decoded `bytes` are a slice of the receive buffer (8 KiB or more, whatever the
/// value's length); the value gets a copy of its own, so it holds no more memory than its
/// length, which is what caches count.
pub(crate) fn value_from_wire(bytes: &[u8], expiry: Option<Timestamp>) -> Result<Value, Error> {
    let expires_at = expiry.map(expiry_from_wire).transpose()?;
    Ok(Value::new(Bytes::copy_from_slice(bytes)).with_expiry(expires_at))
}

/// The value of a peer's set, with its expiry: copied out of the receive buffer as a fetched
/// value is (the galaxy may cache it); an unusable expiry makes the request invalid.
pub(crate) fn set_value_from_wire(bytes: &[u8], expiry: Option<Timestamp>) -> Result<Value, Error> {
    value_from_wire(bytes, expiry).map_err(|e| Error::new(ErrorKind::InvalidRequest, e.message()))
}

/// First and last second a `google.protobuf.Timestamp` may hold: years 1 to 9999.
const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

fn expiry_from_wire(ts: Timestamp) -> Result<SystemTime, Error> {
    let unusable = |why: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Protocol,
            format!("peer sent an unusable expiry {ts}: {why}"),
        )
    };
    if !TIMESTAMP_SECONDS.contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(unusable(&"outside the range of google.protobuf.Timestamp"));
    }
    SystemTime::try_from(ts).map_err(|e| unusable(&e))
}

/// The time the caller gives the request, from its `grpc-timeout` metadata: `None` when
/// absent or malformed (a malformed one is ignored, as tonic's own timeout layer does).
pub(crate) fn request_timeout(metadata: &MetadataMap) -> Option<Duration> {
    parse_grpc_timeout(metadata.get(GRPC_TIMEOUT)?.as_bytes())
}

/// Parse a `grpc-timeout` value as tonic does: at most 8 characters that parse as a `u64`
/// (digits, with an optional leading `+`), then a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(text: &[u8]) -> Option<Duration> {
    let (unit, digits) = text.split_last()?;
    if digits.len() > 8 {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_as_tonic_parses_them() {
        let parse = |text: &str| parse_grpc_timeout(text.as_bytes());
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("2M"), Some(Duration::from_secs(120)));
        assert_eq!(parse("3S"), Some(Duration::from_secs(3)));
        assert_eq!(parse("250m"), Some(Duration::from_millis(250)));
        assert_eq!(parse("99999999u"), Some(Duration::from_micros(99_999_999)));
        assert_eq!(parse("7n"), Some(Duration::from_nanos(7)));
        assert_eq!(
            parse("+1S"),
            Some(Duration::from_secs(1)),
            "a u64 may have a +"
        );
        for bad in [
            "",
            "S",
            "+S",
            "123456789S",
            "+12345678S",
            "12x",
            "-1S",
            "1.5S",
            "1 S",
        ] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_timeout_is_read_from_metadata() {
        let mut md = MetadataMap::new();
        assert_eq!(request_timeout(&md), None);
        md.insert(GRPC_TIMEOUT, "1500m".parse().unwrap());
        assert_eq!(request_timeout(&md), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn expiry_round_trips_and_a_bad_one_is_a_protocol_error() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let v = Value::expiring("x", at);
        let back = value_from_wire(v.bytes(), expiry_to_wire(&v)).unwrap();
        assert_eq!(back, v);
        assert_eq!(expiry_to_wire(&Value::new("x")), None);
        for (seconds, nanos) in [(i64::MAX, 0), (i64::MIN, 0), (0, -1), (0, 1_000_000_000)] {
            let bad = Timestamp { seconds, nanos };
            let e = value_from_wire(b"x", Some(bad)).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
        }
    }

    #[test]
    fn a_set_with_a_bad_expiry_is_an_invalid_request() {
        let bad = Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        };
        let e = set_value_from_wire(b"x", Some(bad)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
        assert!(e.message().contains("expiry"), "{e}");
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let v = set_value_from_wire(b"x", Some(Timestamp::from(at))).unwrap();
        assert_eq!(v, Value::expiring("x", at));
    }

    #[test]
    fn a_received_value_does_not_share_the_receive_buffer() {
        let buffer = Bytes::from(vec![7u8; 8192]);
        let v = value_from_wire(&buffer[10..13], None).unwrap();
        assert_eq!(v.bytes().as_ref(), [7, 7, 7]);
        assert!(!buffer.as_ptr_range().contains(&v.bytes().as_ptr()));
    }

    #[test]
    fn keys_must_be_utf8() {
        assert_eq!(key_str("a b/%+é".as_bytes()).unwrap(), "a b/%+é");
        let e = key_str(&[b'a', 0xff]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        assert!(e.message().contains("UTF-8"), "{e}");
    }
}
