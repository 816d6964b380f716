//! Conversions between the wire messages and the universe's types: keys, a value's instants
//! and the `grpc-timeout` header.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// A value's instants as they travel, each absent when the value has none: fields
/// `expiry`, `refresh` and `stale_until` of `GetResponse`, `PeekResponse` and `SetRequest`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct WireInstants {
    /// When the value stops being served as fresh.
    pub(crate) expiry: Option<Timestamp>,
    /// When the value is reloaded in the background.
    pub(crate) refresh: Option<Timestamp>,
    /// Until when the value may be served past its expiry.
    pub(crate) stale_until: Option<Timestamp>,
}

impl WireInstants {
    /// The instants of `value`, to the nanosecond.
    pub(crate) fn of(value: &Value) -> Self {
        WireInstants {
            expiry: value.expires_at().map(Timestamp::from),
            refresh: value.refresh_at().map(Timestamp::from),
            stale_until: value.stale_until().map(Timestamp::from),
        }
    }

    /// `value` with these instants; an unusable one is a [`ErrorKind::Protocol`] error
    /// naming it.
    fn apply(self, value: Value) -> Result<Value, Error> {
        Ok(value
            .with_expiry(instant_from_wire("expiry", self.expiry)?)
            .with_refresh_at(instant_from_wire("refresh", self.refresh)?)
            .with_stale_until(instant_from_wire("stale_until", self.stale_until)?))
    }
}

/// A value received from a peer, with its instants.
///
/// The decoded `bytes` are a slice of the receive buffer (8 KiB or more, whatever the
/// value's length); the value gets a copy of its own, so it holds no more memory than its
/// length, which is what caches count.
pub(crate) fn value_from_wire(bytes: &[u8], instants: WireInstants) -> Result<Value, Error> {
    instants.apply(Value::new(Bytes::copy_from_slice(bytes)))
}

/// The answer a batch's NOT_FOUND for a key is: a cached miss until `expiry`, or without
/// one plain NotFound.
pub(crate) fn absent_from_wire(expiry: Option<Timestamp>) -> Result<Option<Value>, Error> {
    Ok(instant_from_wire("expiry", expiry)?.map(Value::absent))
}

/// The value of a peer's set, with its instants: copied out of the receive buffer as a
/// fetched value is (the galaxy may cache it); an unusable instant makes the request
/// invalid.
pub(crate) fn set_value_from_wire(bytes: &[u8], instants: WireInstants) -> Result<Value, Error> {
    value_from_wire(bytes, instants).map_err(|e| Error::new(ErrorKind::InvalidRequest, e.message()))
}

/// First and last second a `google.protobuf.Timestamp` may hold: years 1 to 9999.
const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

/// The instant field `name` holds, if any; an error when it is outside the range of a
/// `google.protobuf.Timestamp` or of a `SystemTime`.
fn instant_from_wire(name: &str, ts: Option<Timestamp>) -> Result<Option<SystemTime>, Error> {
    let Some(ts) = ts else {
        return Ok(None);
    };
    let unusable = |why: &dyn std::fmt::Display| {
        Error::new(
            ErrorKind::Protocol,
            format!("peer sent an unusable {name} {ts}: {why}"),
        )
    };
    if !TIMESTAMP_SECONDS.contains(&ts.seconds) || !(0..1_000_000_000).contains(&ts.nanos) {
        return Err(unusable(&"outside the range of google.protobuf.Timestamp"));
    }
    SystemTime::try_from(ts).map(Some).map_err(|e| unusable(&e))
}

/// `at` in whole milliseconds since the Unix epoch (truncated, so a copy never outlives the
/// original; an instant before the epoch is the epoch), as metadata carries an instant.
pub(crate) fn fmt_unix_ms(at: SystemTime) -> u64 {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX)
}

/// The instant a [`fmt_unix_ms`] text names: ASCII digits only, and representable.
pub(crate) fn parse_unix_ms(text: &[u8]) -> Option<SystemTime> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let ms: u64 = std::str::from_utf8(text).ok()?.parse().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_millis(ms))
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
        b'H' => Duration::from_secs(n.checked_mul(3600)?),
        b'M' => Duration::from_secs(n.checked_mul(60)?),
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
    fn instants_round_trip_and_a_bad_one_is_a_protocol_error() {
        let at = |s| SystemTime::UNIX_EPOCH + Duration::new(s, 123_456_789);
        let v = Value::expiring("x", at(1_700_000_000))
            .with_refresh_at(Some(at(1_600_000_000)))
            .with_stale_until(Some(at(1_800_000_000)));
        let back = value_from_wire(v.bytes(), WireInstants::of(&v)).unwrap();
        assert_eq!(back, v, "to the nanosecond");
        assert_eq!(WireInstants::of(&Value::new("x")), WireInstants::default());
        for (seconds, nanos) in [(i64::MAX, 0), (i64::MIN, 0), (0, -1), (0, 1_000_000_000)] {
            let bad = Some(Timestamp { seconds, nanos });
            for (name, instants) in [
                (
                    "expiry",
                    WireInstants {
                        expiry: bad,
                        ..WireInstants::default()
                    },
                ),
                (
                    "refresh",
                    WireInstants {
                        refresh: bad,
                        ..WireInstants::default()
                    },
                ),
                (
                    "stale_until",
                    WireInstants {
                        stale_until: bad,
                        ..WireInstants::default()
                    },
                ),
            ] {
                let e = value_from_wire(b"x", instants).unwrap_err();
                assert_eq!(e.kind(), ErrorKind::Protocol, "{e}");
                assert!(e.message().contains(name), "{e}");
            }
        }
    }

    #[test]
    fn a_set_with_a_bad_instant_is_an_invalid_request() {
        let bad = Some(Timestamp {
            seconds: i64::MAX,
            nanos: 0,
        });
        let instants = WireInstants {
            expiry: bad,
            ..WireInstants::default()
        };
        let e = set_value_from_wire(b"x", instants).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
        assert!(e.message().contains("expiry"), "{e}");
        let e = set_value_from_wire(
            b"x",
            WireInstants {
                stale_until: bad,
                ..WireInstants::default()
            },
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let v = Value::expiring("x", at).with_refresh_at(Some(at));
        assert_eq!(set_value_from_wire(b"x", WireInstants::of(&v)).unwrap(), v);
    }

    #[test]
    fn unix_ms_truncate_and_parse_strictly() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_900_999);
        assert_eq!(fmt_unix_ms(at), 1_700_000_000_900);
        assert_eq!(
            parse_unix_ms(b"1700000000900"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_900))
        );
        assert_eq!(
            fmt_unix_ms(SystemTime::UNIX_EPOCH - Duration::from_secs(1)),
            0
        );
        for bad in [
            "",
            "-1",
            "+1",
            "1.5",
            " 1",
            "soon",
            "99999999999999999999999",
        ] {
            assert_eq!(parse_unix_ms(bad.as_bytes()), None, "{bad:?}");
        }
    }

    #[test]
    fn a_received_value_does_not_share_the_receive_buffer() {
        let buffer = Bytes::from(vec![7u8; 8192]);
        let v = value_from_wire(&buffer[10..13], WireInstants::default()).unwrap();
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
