//! The headers that carry a value's instants: `Expires` (an HTTP-date, or galaxycache
//! (Go)'s form with a fraction of a second), `X-Galaxycache-Expires-Ms` and its refresh and
//! stale siblings, `X-Galaxycache-Timeout-Ms`, `X-Galaxycache-Version` (the HTTP peer
//! protocol), and an origin's `Cache-Control` and `Expires` as galaxyd's HTTP backend reads
//! them (`max-age`, `s-maxage`, `no-store`, `no-cache`, `stale-while-revalidate`,
//! `stale-if-error`).
//!
//! Input: lines `name: value`, each a header of one map (lines that are not a valid header
//! are skipped); every line's value is also parsed alone by each single-value parser.
//!
//! Must hold: no panic, at any "now" from the epoch to the end of what a `SystemTime`
//! holds; what parses, formats and parses back to the same instant (to the second for
//! `Expires`, the millisecond for `*-Ms`); an origin's value has its refresh instant
//! no later than its expiry and its stale limit no earlier.
#![no_main]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use galaxycache_http::fuzzing as h;
use galaxycache_http::{REFRESH_MS_HEADER, STALE_MS_HEADER};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

/// 9999-12-31T23:59:59Z, the last second an HTTP-date names.
const LAST_HTTP_DATE: u64 = 253_402_300_799;

fuzz_target!(|data: &[u8]| {
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(colon) => (&line[..colon], trim(&line[colon + 1..])),
            None => (&b""[..], line),
        };
        let Ok(value) = HeaderValue::from_bytes(value) else {
            continue;
        };
        single_value(&value);
        if let Ok(name) = HeaderName::from_bytes(name) {
            headers.append(name, value);
        }
    }
    header_map(&headers);
});

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

fn single_value(value: &HeaderValue) {
    if let Some(at) = h::parse_expires(value) {
        let since = at
            .duration_since(UNIX_EPOCH)
            .expect("an HTTP-date is after 1970");
        assert!(since.as_secs() <= LAST_HTTP_DATE, "{value:?} -> {at:?}");
        // Written back, it names the same second.
        let written = h::fmt_expires(at);
        let again = h::parse_expires(&written).expect("what we write parses");
        assert_eq!(
            again,
            UNIX_EPOCH + Duration::from_secs(since.as_secs()),
            "{value:?} -> {written:?}"
        );
    }
    if let Some(at) = h::parse_unix_ms(value) {
        let written = h::fmt_unix_ms(at);
        assert_eq!(
            h::parse_unix_ms(&written),
            Some(at),
            "{value:?} -> {written:?}"
        );
        let ms: u64 = value.to_str().unwrap().parse().unwrap();
        assert_eq!(written.to_str().unwrap(), ms.to_string());
    }
    let now = tokio::time::Instant::now();
    if let Some(Some(deadline)) = h::parse_timeout(value, now) {
        assert!(deadline >= now);
        let written = h::fmt_timeout(deadline - now);
        assert_eq!(
            h::parse_timeout(&written, now),
            Some(Some(deadline)),
            "{value:?}"
        );
    }
}

fn header_map(headers: &HeaderMap) {
    let _ = h::read_version(headers);
    if let Ok((expires, refresh, stale)) = h::read_instants(headers) {
        // Written as a server writes them, they read back the same, to the millisecond
        // (the `-Ms` headers carry milliseconds; `Expires` alone, a nanosecond).
        let mut written = HeaderMap::new();
        if let Some(at) = expires {
            h::insert_expiry(&mut written, at);
        }
        if let Some(at) = refresh {
            written.insert(REFRESH_MS_HEADER, h::fmt_unix_ms(at));
        }
        if let Some(at) = stale {
            written.insert(STALE_MS_HEADER, h::fmt_unix_ms(at));
        }
        let again = h::read_instants(&written).expect("what we write reads back");
        let ms = |t: Option<SystemTime>| t.map(truncate_ms);
        assert_eq!(
            (ms(again.0), ms(again.1), ms(again.2)),
            (ms(expires), ms(refresh), ms(stale)),
            "{headers:?} -> {written:?}"
        );
        // A copy never outlives the original (a value keeps its instants to the
        // nanosecond, saturated to what it holds; the headers carry milliseconds).
        assert!(again.0 <= expires && again.1 <= refresh && again.2 <= stale);
    }
    origin(headers);
}

/// The value galaxyd's HTTP backend makes of an origin's answer with these headers.
fn origin(headers: &HeaderMap) {
    // Each "now" with whether the ordering must hold there: a value holds its instants
    // to the nanosecond up to the year 2554 (u64 nanoseconds since the epoch) and
    // saturates past it (and before the epoch), so two instants 100 years apart from a clock past ~2350 may
    // both saturate to the same one. Past that, no panic is all that must hold.
    let nows = [
        (
            UNIX_EPOCH.checked_sub(Duration::from_secs(1_000_000)),
            false,
        ),
        (Some(UNIX_EPOCH), true),
        (
            UNIX_EPOCH.checked_add(Duration::from_secs(1_700_000_000)),
            true,
        ),
        (UNIX_EPOCH.checked_add(Duration::from_secs(1 << 32)), true),
        (
            UNIX_EPOCH.checked_add(Duration::from_secs(LAST_HTTP_DATE)),
            false,
        ),
        (
            UNIX_EPOCH.checked_add(Duration::from_secs(u64::MAX >> 2)),
            false,
        ),
    ];
    // (An origin's `Expires` can name the year 9999: its instants saturate to equal.)
    for (now, ordered) in nows {
        let Some(now) = now else { continue };
        let value = galaxyd::fuzzing::origin_value(Bytes::from_static(b"v"), headers, now);
        if !ordered {
            continue;
        }
        let (expires, refresh, stale) =
            (value.expires_at(), value.refresh_at(), value.stale_until());
        if let Some(refresh) = refresh {
            let expires = expires.expect("a refresh instant comes with an expiry");
            assert!(refresh <= expires, "{headers:?} at {now:?}: {value:?}");
        }
        if let Some(stale) = stale {
            let expires = expires.expect("a stale limit comes with an expiry");
            assert!(stale >= expires, "{headers:?} at {now:?}: {value:?}");
        }
    }
}

fn truncate_ms(t: SystemTime) -> SystemTime {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    UNIX_EPOCH + Duration::from_millis(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
}
