//! The headers of the peer protocol, and how their values are written and read.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use galaxycache_universe::{Value, fmt_http_date, saturating_instant};
use http::header::EXPIRES;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::time::Instant;

/// Request header carrying the time the asking peer still waits, in whole milliseconds
/// (rounded up). The server turns it into the deadline it gives the universe, which answers
/// `504` when it passes. Go groupcache servers ignore it.
pub const TIMEOUT_HEADER: HeaderName = HeaderName::from_static("x-galaxycache-timeout-ms");

/// Response header of a `404`: [`GALAXY_FOUND`] when the galaxy exists but has no such key,
/// [`GALAXY_NOT_FOUND`] when there is no such galaxy. The galaxycache dialect's server sends
/// [`GALAXY_FOUND`] on the `500` of a failed load too, as galaxycache (Go) does.
pub const GALAXY_STATUS_HEADER: HeaderName = HeaderName::from_static("x-galaxycache-galaxy-status");

/// [`GALAXY_STATUS_HEADER`] value: the galaxy exists, the key does not.
pub const GALAXY_FOUND: &str = "Found";
/// [`GALAXY_STATUS_HEADER`] value: there is no such galaxy.
pub const GALAXY_NOT_FOUND: &str = "Not Found";

/// Response header of a `200` for a value that expires: the instant it expires, in whole
/// milliseconds since the Unix epoch (truncated, so a copy never outlives the original).
/// Sent in both dialects next to `Expires`, which names whole seconds only: a value in its
/// last second would arrive already expired. Clients read it first and fall back to
/// `Expires` (what humans and other servers send).
pub const EXPIRES_MS_HEADER: HeaderName = HeaderName::from_static("x-galaxycache-expires-ms");

/// Header of the galaxycache dialect, on a `200` answer and on a `PUT`, for a value that
/// names one: the instant from which the value is reloaded in the background (while still
/// served), in whole milliseconds since the Unix epoch (truncated), as
/// [`EXPIRES_MS_HEADER`] writes its instant. Absent when the value has no refresh instant.
pub const REFRESH_MS_HEADER: HeaderName = HeaderName::from_static("x-galaxycache-refresh-ms");

/// Header of the galaxycache dialect, on a `200` answer and on a `PUT`, for a value that
/// names one: the instant until which the value may be served past its expiry when
/// reloading it fails, in whole milliseconds since the Unix epoch (truncated), as
/// [`EXPIRES_MS_HEADER`] writes its instant. Absent when the value has no stale limit.
pub const STALE_MS_HEADER: HeaderName = HeaderName::from_static("x-galaxycache-stale-ms");

/// Request header of the galaxycache dialect naming the version of the galaxy the request
/// is for (decimal, a `u32`). Sent only for a version other than 0; absent means 0, which is
/// what a peer that knows no versions (a Go node) speaks. A server whose galaxy has another
/// version answers `409 Conflict`; a malformed value is a `400`.
pub const VERSION_HEADER: HeaderName = HeaderName::from_static("x-galaxycache-version");

/// An `Expires` value for `at`, truncated to the second (so a copy never outlives the
/// original) and clamped to the range an HTTP-date can express ([`fmt_http_date`]).
pub(crate) fn fmt_expires(at: SystemTime) -> HeaderValue {
    let text = fmt_http_date(at);
    // An HTTP-date is ASCII letters, digits, spaces, `,` and `:`: a valid header value.
    #[allow(clippy::expect_used)]
    HeaderValue::try_from(text).expect("an HTTP-date is a valid header value")
}

/// The instant an `Expires` header names: an HTTP-date (RFC 9110's IMF-fixdate, or one of
/// its obsolete forms) names a whole second; an IMF-fixdate whose seconds carry a fraction
/// of 1 to 9 digits names the nanosecond, as galaxycache (Go) v1.4 writes it (Go's layout
/// `Mon, 02 Jan 2006 15:04:05.999999999 GMT`, trailing zeros trimmed). `None` for anything
/// else: an empty or non-digit fraction, more than 9 digits, a date past the year 9999.
pub(crate) fn parse_expires(value: &HeaderValue) -> Option<SystemTime> {
    let text = value.to_str().ok()?;
    match split_fraction(text) {
        None => httpdate::parse_http_date(text).ok(),
        Some((date, digits)) => {
            let second = httpdate::parse_http_date(&format!("{date} GMT")).ok()?;
            let fraction = Duration::from_nanos(parse_nanos(digits)?.into());
            // Below a second past a valid HTTP-date: never out of range, but saturate.
            Some(saturating_instant(second, fraction))
        }
    }
}

/// Length of an IMF-fixdate up to its seconds: `Mon, 02 Jan 2006 15:04:05`.
const FIXDATE_TO_SECONDS: usize = 25;

/// An IMF-fixdate with a fraction of a second, as `(date to its seconds, fraction digits)`;
/// `None` when no `.` follows the seconds (a whole-second date, or no date at all). The
/// digits are not checked yet.
fn split_fraction(text: &str) -> Option<(&str, &str)> {
    let date = text.get(..FIXDATE_TO_SECONDS)?;
    let digits = text
        .get(FIXDATE_TO_SECONDS..)?
        .strip_prefix('.')?
        .strip_suffix(" GMT")?;
    Some((date, digits))
}

/// A fraction of a second in nanoseconds, from its digits after the point: 1 to 9 ASCII
/// digits (`5` is 500,000,000 ns), else `None`.
fn parse_nanos(digits: &str) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u32 = digits.parse().ok()?;
    let missing = 9_usize.checked_sub(digits.len())?;
    let scale = 10_u32.checked_pow(u32::try_from(missing).ok()?)?;
    value.checked_mul(scale)
}

/// An instant in milliseconds since the Unix epoch, as [`EXPIRES_MS_HEADER`],
/// [`REFRESH_MS_HEADER`] and [`STALE_MS_HEADER`] carry it: truncated to the millisecond; an
/// instant before the epoch is the epoch.
pub(crate) fn fmt_unix_ms(at: SystemTime) -> HeaderValue {
    let since_epoch = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    HeaderValue::from(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
}

/// The instant a [`fmt_unix_ms`] value names: digits only, and representable.
pub(crate) fn parse_unix_ms(value: &HeaderValue) -> Option<SystemTime> {
    let ms = parse_digits(value)?.parse::<u64>().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_millis(ms))
}

/// Name `at` as a value's expiry in `headers`: [`EXPIRES_MS_HEADER`] and `Expires`, as a
/// `200` answer and a `PUT` carry it.
pub(crate) fn insert_expiry(headers: &mut HeaderMap, at: SystemTime) {
    headers.insert(EXPIRES_MS_HEADER, fmt_unix_ms(at));
    headers.insert(EXPIRES, fmt_expires(at));
}

/// The expiry `headers` name: to the millisecond from [`EXPIRES_MS_HEADER`] when present,
/// else from `Expires` ([`parse_expires`]: to the second, or to the nanosecond when it has
/// a fraction); `None` without either. A malformed one is an error naming the header.
pub(crate) fn read_expiry(headers: &HeaderMap) -> Result<Option<SystemTime>, &'static str> {
    let in_ms = read_unix_ms(
        headers,
        EXPIRES_MS_HEADER,
        "malformed X-Galaxycache-Expires-Ms header",
    )?;
    match (in_ms, headers.get(EXPIRES)) {
        (Some(at), _) => Ok(Some(at)),
        (None, None) => Ok(None),
        (None, Some(v)) => parse_expires(v).map(Some).ok_or("malformed Expires header"),
    }
}

/// Name all of `value`'s instants in `headers`, as a galaxycache-dialect `200` answer and a
/// `PUT` carry them: its expiry ([`insert_expiry`]), [`REFRESH_MS_HEADER`] and
/// [`STALE_MS_HEADER`], each only when the value has it.
pub(crate) fn insert_instants(headers: &mut HeaderMap, value: &Value) {
    if let Some(at) = value.expires_at() {
        insert_expiry(headers, at);
    }
    if let Some(at) = value.refresh_at() {
        headers.insert(REFRESH_MS_HEADER, fmt_unix_ms(at));
    }
    if let Some(at) = value.stale_until() {
        headers.insert(STALE_MS_HEADER, fmt_unix_ms(at));
    }
}

/// The instants of a value, as `headers` name them ([`insert_instants`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Instants {
    expires_at: Option<SystemTime>,
    refresh_at: Option<SystemTime>,
    stale_until: Option<SystemTime>,
}

impl Instants {
    /// The instants `headers` name, each `None` when its header is absent; a malformed
    /// header is an error naming it, as [`read_expiry`] says.
    pub(crate) fn read(headers: &HeaderMap) -> Result<Self, &'static str> {
        Ok(Instants {
            expires_at: read_expiry(headers)?,
            refresh_at: read_unix_ms(
                headers,
                REFRESH_MS_HEADER,
                "malformed X-Galaxycache-Refresh-Ms header",
            )?,
            stale_until: read_unix_ms(
                headers,
                STALE_MS_HEADER,
                "malformed X-Galaxycache-Stale-Ms header",
            )?,
        })
    }

    /// `value` with these instants.
    pub(crate) fn apply(self, value: Value) -> Value {
        value
            .with_expiry(self.expires_at)
            .with_refresh_at(self.refresh_at)
            .with_stale_until(self.stale_until)
    }
}

/// The instant header `name` names in `headers` ([`parse_unix_ms`]); `None` without one.
fn read_unix_ms(
    headers: &HeaderMap,
    name: HeaderName,
    malformed: &'static str,
) -> Result<Option<SystemTime>, &'static str> {
    headers
        .get(name)
        .map(|v| parse_unix_ms(v).ok_or(malformed))
        .transpose()
}

/// The galaxy version a request names in [`VERSION_HEADER`]: 0 without one; `Err` unless
/// it is digits only and fits a `u32`.
pub(crate) fn read_version(headers: &HeaderMap) -> Result<u32, &'static str> {
    match headers.get(VERSION_HEADER) {
        None => Ok(0),
        Some(v) => parse_digits(v)
            .and_then(|text| text.parse().ok())
            .ok_or("malformed X-Galaxycache-Version header"),
    }
}

/// A [`TIMEOUT_HEADER`] value for `remaining`, rounded up to the millisecond.
pub(crate) fn fmt_timeout(remaining: Duration) -> HeaderValue {
    let ms = remaining.as_nanos().div_ceil(1_000_000);
    HeaderValue::from(u64::try_from(ms).unwrap_or(u64::MAX))
}

/// The deadline a [`TIMEOUT_HEADER`] value names, counted from `now`. A timeout too long
/// to represent is no deadline.
pub(crate) fn parse_timeout(value: &HeaderValue, now: Instant) -> Result<Option<Instant>, ()> {
    let text = parse_digits(value).ok_or(())?;
    let Ok(ms) = text.parse::<u64>() else {
        return Ok(None); // more digits than a u64 holds: effectively forever
    };
    Ok(now.checked_add(Duration::from_millis(ms)))
}

/// The value, if it is one or more ASCII digits and nothing else.
fn parse_digits(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expires_truncates_and_clamps() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_900);
        let v = fmt_expires(at);
        assert_eq!(v, "Tue, 14 Nov 2023 22:13:20 GMT");
        assert_eq!(
            parse_expires(&v),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        let before_epoch = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(parse_expires(&fmt_expires(before_epoch)), Some(UNIX_EPOCH));
        let far = UNIX_EPOCH + Duration::from_secs(1 << 40);
        assert_eq!(
            parse_expires(&fmt_expires(far)),
            Some(galaxycache_universe::latest_instant())
        );
        assert_eq!(parse_expires(&HeaderValue::from_static("soon")), None);
    }

    fn expires(text: &str) -> Option<SystemTime> {
        parse_expires(&HeaderValue::from_str(text).unwrap())
    }

    #[test]
    fn expires_keeps_a_fraction_of_a_second_to_the_nanosecond() {
        let second = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |nanos| Some(second + Duration::from_nanos(nanos));
        for (fraction, nanos) in [
            ("", 0),
            (".123456789", 123_456_789),
            (".5", 500_000_000),
            (".05", 50_000_000),
            (".000000001", 1),
            (".999999999", 999_999_999),
            (".0", 0),
        ] {
            let text = format!("Tue, 14 Nov 2023 22:13:20{fraction} GMT");
            assert_eq!(expires(&text), at(nanos), "{text}");
        }
        // The obsolete HTTP-date forms still name whole seconds.
        assert_eq!(expires("Tuesday, 14-Nov-23 22:13:20 GMT"), at(0));
        assert_eq!(expires("Tue Nov 14 22:13:20 2023"), at(0));
    }

    #[test]
    fn expires_fractions_saturate_and_parse_strictly() {
        let last = galaxycache_universe::latest_instant();
        assert_eq!(expires("Fri, 31 Dec 9999 23:59:59 GMT"), Some(last));
        assert_eq!(
            expires("Fri, 31 Dec 9999 23:59:59.999999999 GMT"),
            Some(last + Duration::from_nanos(999_999_999))
        );
        let value = Value::expiring("x", expires("Fri, 31 Dec 9999 23:59:59.5 GMT").unwrap());
        assert!(
            value.expires_at().is_some(),
            "the value saturates, no panic"
        );
        for bad in [
            "Tue, 14 Nov 2023 22:13:20. GMT",
            "Tue, 14 Nov 2023 22:13:20.abc GMT",
            "Tue, 14 Nov 2023 22:13:20.1234567890 GMT",
            "Tue, 14 Nov 2023 22:13:20.12345678901234567890 GMT",
            "Tue, 14 Nov 2023 22:13:20.-5 GMT",
            "Tue, 14 Nov 2023 22:13:20.+5 GMT",
            "Tue, 14 Nov 2023 22:13:20.5 ",
            "Tue, 14 Nov 2023 22:13:20.5GMT",
            "Tue, 14 Nov 2023 22:13:20.5 UTC",
            "Tue, 14 Nov 2023 22:13:20 .5 GMT",
            "Tue, 14 Nov 2023 22:13:20.5.5 GMT",
            "Wed, 14 Nov 2023 22:13:20.5 GMT",
            "Tue, 14 Nov 2023 22:13:60.5 GMT",
            "Fri, 31 Dec 9999 23:59:60.5 GMT",
            "Sat, 01 Jan 10000 00:00:00.5 GMT",
            "Tuesday, 14-Nov-23 22:13:20.5 GMT",
            "Thu, 01 Jan 1970 00:00:00é GMT",
            ".5 GMT",
            ".",
            "",
        ] {
            assert_eq!(expires(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn fractions_scale_to_nanoseconds() {
        assert_eq!(parse_nanos("1"), Some(100_000_000));
        assert_eq!(parse_nanos("123456789"), Some(123_456_789));
        assert_eq!(parse_nanos("000000000"), Some(0));
        for bad in ["", "1234567890", "1a", " 1", "+1", "١"] {
            assert_eq!(parse_nanos(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn expires_ms_truncates_and_parses_strictly() {
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_900_999);
        let v = fmt_unix_ms(at);
        assert_eq!(v, "1700000000900");
        assert_eq!(
            parse_unix_ms(&v),
            Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_900))
        );
        let before_epoch = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(parse_unix_ms(&fmt_unix_ms(before_epoch)), Some(UNIX_EPOCH));
        for bad in ["", "-1", "1.5", " 1", "soon", "99999999999999999999999"] {
            assert_eq!(
                parse_unix_ms(&HeaderValue::from_static(bad)),
                None,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn versions_parse_strictly() {
        let mut headers = HeaderMap::new();
        assert_eq!(read_version(&headers), Ok(0), "absent is version 0");
        for (text, want) in [("0", Ok(0)), ("7", Ok(7)), ("4294967295", Ok(u32::MAX))] {
            headers.insert(VERSION_HEADER, HeaderValue::from_static(text));
            assert_eq!(read_version(&headers), want, "{text:?}");
        }
        for bad in ["", "-1", "1.5", " 1", "v2", "4294967296"] {
            headers.insert(VERSION_HEADER, HeaderValue::from_static(bad));
            assert!(read_version(&headers).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn expiry_prefers_milliseconds_and_refuses_malformed_headers() {
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_900_999);
        let mut headers = HeaderMap::new();
        assert_eq!(read_expiry(&headers), Ok(None));
        insert_expiry(&mut headers, at);
        assert_eq!(
            read_expiry(&headers),
            Ok(Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_900)))
        );
        headers.remove(EXPIRES_MS_HEADER);
        assert_eq!(
            read_expiry(&headers),
            Ok(Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)))
        );
        headers.insert(EXPIRES, HeaderValue::from_static("whenever"));
        assert!(read_expiry(&headers).unwrap_err().contains("Expires"));
        headers.insert(EXPIRES_MS_HEADER, HeaderValue::from_static("soon"));
        assert!(read_expiry(&headers).unwrap_err().contains("Expires-Ms"));
    }

    #[test]
    fn all_instants_travel_to_the_millisecond_and_malformed_ones_are_refused() {
        let ms = |n: u64| UNIX_EPOCH + Duration::from_millis(n);
        let sub_ms = Duration::from_micros(999);
        let value = Value::expiring("x", ms(3_000) + sub_ms)
            .with_refresh_at(Some(ms(2_000) + sub_ms))
            .with_stale_until(Some(ms(4_000) + sub_ms));
        let mut headers = HeaderMap::new();
        insert_instants(&mut headers, &value);
        assert_eq!(headers[REFRESH_MS_HEADER], "2000");
        assert_eq!(headers[STALE_MS_HEADER], "4000");
        let want = Value::expiring("x", ms(3_000))
            .with_refresh_at(Some(ms(2_000)))
            .with_stale_until(Some(ms(4_000)));
        let read = Instants::read(&headers).unwrap();
        assert_eq!(read.apply(Value::new("x")), want);

        let mut none = HeaderMap::new();
        insert_instants(&mut none, &Value::new("x"));
        assert!(none.is_empty(), "{none:?}");
        assert_eq!(Instants::read(&none), Ok(Instants::default()));

        for (name, what) in [
            (REFRESH_MS_HEADER, "Refresh-Ms"),
            (STALE_MS_HEADER, "Stale-Ms"),
        ] {
            let mut bad = headers.clone();
            bad.insert(name, HeaderValue::from_static("-1"));
            assert!(Instants::read(&bad).unwrap_err().contains(what), "{what}");
        }
    }

    #[test]
    fn timeout_rounds_up_and_parses_strictly() {
        assert_eq!(fmt_timeout(Duration::from_micros(1)), "1");
        assert_eq!(fmt_timeout(Duration::from_millis(250)), "250");
        let now = Instant::now();
        let parse = |s: &'static str| parse_timeout(&HeaderValue::from_static(s), now);
        assert_eq!(parse("250"), Ok(Some(now + Duration::from_millis(250))));
        assert_eq!(parse("99999999999999999999999"), Ok(None));
        assert_eq!(
            parse("18446744073709551615"),
            Ok(now.checked_add(Duration::from_millis(u64::MAX))),
            "u64::MAX must not panic"
        );
        for bad in ["", "-1", "1.5", " 1", "1s"] {
            assert_eq!(parse(bad), Err(()), "{bad:?}");
        }
    }
}
