//! Expiry arithmetic that never panics: instants saturate, HTTP-dates clamp.
//!
//! Every protocol, backend and API that turns a span it was sent (a `max-age`, a TTL) into
//! an instant, or an instant into an HTTP-date, goes through these two functions, so no
//! input can overflow a [`SystemTime`] or ask `httpdate` for a year it cannot write.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last second an HTTP-date can name, 9999-12-31T23:59:59Z, as seconds since the
/// Unix epoch.
const LAST_HTTP_DATE_SECS: u64 = 253_402_300_799;

/// The latest instant expiry arithmetic yields: 9999-12-31T23:59:59Z, the last an
/// HTTP-date can name (and later than any instant a [`Value`](crate::Value) holds, which
/// saturates in the year 2554).
pub fn latest_instant() -> SystemTime {
    // Representable on every platform std supports (Windows' reaches the year 30828).
    #[allow(clippy::arithmetic_side_effects)]
    let latest = UNIX_EPOCH + Duration::from_secs(LAST_HTTP_DATE_SECS);
    latest
}

/// `base + d`, saturating: past what a [`SystemTime`] holds, [`latest_instant`] (or
/// `base` itself, should `base` be later still). Never panics.
pub fn saturating_instant(base: SystemTime, d: Duration) -> SystemTime {
    base.checked_add(d)
        .unwrap_or_else(|| base.max(latest_instant()))
}

/// `at` as an HTTP-date (RFC 9110's IMF-fixdate), truncated to the second and clamped to
/// what one can name: an instant before the Unix epoch is the epoch, one past
/// [`latest_instant`] is that. Never panics (`httpdate` does, past the year 9999 or
/// before 1970).
pub fn fmt_http_date(at: SystemTime) -> String {
    let clamped = at.clamp(UNIX_EPOCH, latest_instant());
    httpdate::fmt_http_date(clamped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_saturate() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let minute = Duration::from_secs(60);
        assert_eq!(saturating_instant(now, minute), now + minute);
        assert_eq!(saturating_instant(now, Duration::MAX), latest_instant());
        let huge = Duration::from_secs(u64::MAX);
        assert_eq!(saturating_instant(now, huge), latest_instant());
        // Later than the latest instant already: it stays where it is.
        let far = UNIX_EPOCH + Duration::from_secs(1 << 40);
        assert_eq!(saturating_instant(far, Duration::MAX), far);
    }

    #[test]
    fn http_dates_clamp_to_what_they_can_name() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_900);
        assert_eq!(fmt_http_date(at), "Tue, 14 Nov 2023 22:13:20 GMT");
        let last = "Fri, 31 Dec 9999 23:59:59 GMT";
        assert_eq!(fmt_http_date(latest_instant()), last);
        let far = UNIX_EPOCH + Duration::from_secs(1 << 40);
        assert_eq!(fmt_http_date(far), last, "the year 36812 is 9999");
        let before_epoch = UNIX_EPOCH - Duration::from_secs(5);
        assert_eq!(fmt_http_date(before_epoch), "Thu, 01 Jan 1970 00:00:00 GMT");
        let end = saturating_instant(SystemTime::now(), Duration::MAX);
        assert_eq!(fmt_http_date(end), last);
    }
}
