//! The HTTP backend: GET the key from an origin server.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use galaxycache_universe::{InFlight, Value, sanitize_message, saturating_instant};
use http::{HeaderMap, StatusCode, Uri, header};
use percent_encoding::utf8_percent_encode;

use crate::client::{HttpClient, SEGMENT};

/// Where the key goes in a URL template (a template without it gets the key appended).
const PLACEHOLDER: &str = "{key}";

/// Loads keys from an origin: `{key}` in the URL template is replaced by the
/// percent-encoded key (a template without it gets the key appended; see [`push_key`]).
#[derive(Debug)]
pub(crate) struct HttpBackend {
    /// The template before `{key}`.
    prefix: String,
    /// The template after `{key}`.
    suffix: String,
    client: HttpClient,
}

impl HttpBackend {
    /// A backend for the URL `template`, giving each load `timeout`, reading bodies against
    /// `in_flight`.
    pub(crate) fn new(
        template: &str,
        timeout: Duration,
        in_flight: &InFlight,
    ) -> Result<Self, String> {
        if template.starts_with("https://") {
            return Err(format!(
                "HTTP backend {template:?}: https origins are not supported (this build has no \
                 TLS); put a plain-HTTP proxy in front"
            ));
        }
        if !template.starts_with("http://") {
            return Err(format!(
                "HTTP backend {template:?}: expected a URL template like \
                 http://origin:8080/items/{{key}}"
            ));
        }
        let (prefix, suffix) = template.split_once(PLACEHOLDER).unwrap_or((template, ""));
        if suffix.contains(PLACEHOLDER) {
            return Err(format!(
                "HTTP backend {template:?}: {PLACEHOLDER} may appear once in the URL template"
            ));
        }
        let backend = HttpBackend {
            prefix: prefix.to_owned(),
            suffix: suffix.to_owned(),
            client: HttpClient::new(64, timeout).in_flight(in_flight.clone()),
        };
        backend.uri("probe")?;
        Ok(backend)
    }

    fn uri(&self, key: &str) -> Result<Uri, String> {
        let capacity = [
            self.prefix.len(),
            key.len().saturating_mul(3),
            self.suffix.len(),
        ]
        .into_iter()
        .fold(0, usize::saturating_add);
        let mut url = String::with_capacity(capacity);
        url.push_str(&self.prefix);
        push_key(&mut url, key);
        url.push_str(&self.suffix);
        Uri::try_from(url.as_str()).map_err(|e| format!("HTTP backend: invalid URL {url:?}: {e}"))
    }

    /// The origin's answer: 2xx is the value (its instants from the cache headers, see
    /// [`value_of`]), 404 is no such key, anything else is an error quoting the start of
    /// the body, [sanitized](sanitize_message).
    pub(crate) async fn load(&self, key: &str) -> Result<Option<Value>, String> {
        let response = self.client.get(self.uri(key)?).await?;
        if response.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status.is_success() {
            let text = sanitize_message(&String::from_utf8_lossy(&response.body));
            return Err(format!("origin answered {}: {}", response.status, text));
        }
        Ok(Some(value_of(
            response.body,
            &response.headers,
            SystemTime::now(),
        )))
    }
}

/// Append `key` to `url` percent-encoded as one path segment ([`SEGMENT`]: `/` included).
/// A key that is a dot-segment, `.` or `..`, has its dots encoded too (`%2E`): RFC 3986's
/// dot-segment removal (5.2.4) matches literal dots only, so the origin gets the key, not
/// "this directory" or "the parent". (A normaliser that decodes `%2E` first, as WHATWG
/// URL parsers do, would still; such an origin must not route on raw paths.)
fn push_key(url: &mut String, key: &str) {
    match key {
        "." => url.push_str("%2E"),
        ".." => url.push_str("%2E%2E"),
        _ => url.extend(utf8_percent_encode(key, SEGMENT)),
    }
}

/// Longest span taken from an origin's header (a max-age, stale-while-revalidate or
/// stale-if-error): 100 years. Larger ones are taken as this, so no arithmetic overflows.
const MAX_SPAN: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// A response's `Cache-Control` directives, names lowercased, arguments unquoted.
struct Directives(Vec<(String, Option<String>)>);

impl Directives {
    fn of(headers: &HeaderMap) -> Self {
        let directives = headers
            .get_all(header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|d| match d.split_once('=') {
                Some((name, arg)) => (
                    name.trim().to_ascii_lowercase(),
                    Some(arg.trim().trim_matches('"').to_owned()),
                ),
                None => (d.trim().to_ascii_lowercase(), None),
            })
            .collect();
        Directives(directives)
    }

    /// Whether directive `name` is there without an argument (`no-cache="Set-Cookie"`
    /// concerns header fields only, which are not cached).
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|(n, arg)| n == name && arg.is_none())
    }

    /// The argument of directive `name` (empty when it has none), if it is there.
    fn arg(&self, name: &str) -> Option<&str> {
        let (_, arg) = self.0.iter().find(|(n, _)| n == name)?;
        Some(arg.as_deref().unwrap_or(""))
    }

    /// The fresh lifetime: `s-maxage` (galaxyd is a shared cache), else `max-age`. A
    /// malformed one is zero: RFC 9111 (4.2.1) has caches take such a response as stale.
    fn lifetime(&self) -> Option<Duration> {
        let arg = self.arg("s-maxage").or_else(|| self.arg("max-age"))?;
        Some(seconds(arg).unwrap_or(Duration::ZERO))
    }

    /// The span of directive `name` (e.g. `stale-if-error=60`), when well-formed.
    fn span(&self, name: &str) -> Option<Duration> {
        self.arg(name).and_then(seconds)
    }
}

/// Delta-seconds (RFC 9111, 1.2.2): digits only; more than [`MAX_SPAN`] is `MAX_SPAN`.
fn seconds(text: &str) -> Option<Duration> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = text.parse::<u64>().unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_SPAN))
}

/// The origin's answer as a value, its instants from the cache headers, seen at `now`:
///
/// - `no-store` or `no-cache`: expired now, so the galaxy serves it to the callers of this
///   load and does not keep it (a later get asks the origin again);
/// - fresh until now + `s-maxage`, else `max-age` (`max-age=0`: as `no-cache`), else
///   until `Expires` (one in the past or unparseable: expired on arrival); none of them:
///   no expiry (the galaxy's max TTL bounds it);
/// - `stale-while-revalidate=S` (RFC 5861): refreshed at the end of that fresh lifetime,
///   and served meanwhile for S more seconds (the expiry moves there);
/// - `stale-if-error=E` (RFC 5861): served stale, when reloading fails, until E seconds
///   after the fresh lifetime ended (RFC 5861 counts both windows from there).
///
/// Spans are capped at 100 years, and instants saturate ([`saturating_instant`]).
fn value_of(body: Bytes, headers: &HeaderMap, now: SystemTime) -> Value {
    let value = Value::new(body);
    let directives = Directives::of(headers);
    if directives.has("no-store") || directives.has("no-cache") {
        return value.with_expiry(Some(now));
    }
    let fresh_until = match directives.lifetime() {
        Some(lifetime) => Some(saturating_instant(now, lifetime)),
        None => expires(headers, now),
    };
    let Some(fresh_until) = fresh_until else {
        return value;
    };
    let (refresh_at, expires_at) = match directives.span("stale-while-revalidate") {
        Some(window) if !window.is_zero() => (
            Some(fresh_until),
            Some(saturating_instant(fresh_until, window)),
        ),
        _ => (None, Some(fresh_until)),
    };
    let stale_until = directives
        .span("stale-if-error")
        .map(|window| saturating_instant(fresh_until, window))
        .filter(|&until| expires_at.is_some_and(|e| until > e));
    value
        .with_expiry(expires_at)
        .with_refresh_at(refresh_at)
        .with_stale_until(stale_until)
}

/// [`value_of`] for the fuzz targets (`crate::fuzzing`): an origin's answer as a value.
pub(crate) fn origin_value(body: Bytes, headers: &HeaderMap, now: SystemTime) -> Value {
    value_of(body, headers, now)
}

/// The `Expires` header's instant; an unparseable one (often "0") means already expired.
fn expires(headers: &HeaderMap, now: SystemTime) -> Option<SystemTime> {
    let expires = headers.get(header::EXPIRES)?;
    let date = expires
        .to_str()
        .ok()
        .and_then(|t| httpdate::parse_http_date(t).ok());
    Some(date.unwrap_or(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn keys_are_percent_encoded_into_the_template() {
        let b = HttpBackend::new(
            "http://origin:8080/items/{key}?v=1",
            Duration::from_secs(1),
            &InFlight::unbounded(),
        )
        .unwrap();
        let uri = b.uri("a/b c?ü").unwrap();
        assert_eq!(
            uri.to_string(),
            "http://origin:8080/items/a%2Fb%20c%3F%C3%BC?v=1"
        );
        let b = HttpBackend::new(
            "http://origin/k/",
            Duration::from_secs(1),
            &InFlight::unbounded(),
        )
        .unwrap();
        assert_eq!(b.uri("x").unwrap().to_string(), "http://origin/k/x");
        // Dot-segments cannot climb; dots elsewhere travel as they are.
        assert_eq!(b.uri("..").unwrap().to_string(), "http://origin/k/%2E%2E");
        assert_eq!(b.uri(".").unwrap().to_string(), "http://origin/k/%2E");
        assert_eq!(b.uri("...").unwrap().to_string(), "http://origin/k/...");
        assert_eq!(b.uri("a.b").unwrap().to_string(), "http://origin/k/a.b");
    }

    #[test]
    fn bad_templates_say_why() {
        let e = HttpBackend::new(
            "https://origin/{key}",
            Duration::from_secs(1),
            &InFlight::unbounded(),
        )
        .unwrap_err();
        assert!(e.contains("https"), "{e}");
        let e = HttpBackend::new(
            "origin/{key}",
            Duration::from_secs(1),
            &InFlight::unbounded(),
        )
        .unwrap_err();
        assert!(e.contains("expected a URL template"), "{e}");
        let e = HttpBackend::new(
            "http://or igin/{key}",
            Duration::from_secs(1),
            &InFlight::unbounded(),
        )
        .unwrap_err();
        assert!(e.contains("invalid URL"), "{e}");
        let e = HttpBackend::new(
            "http://o/{key}/{key}",
            Duration::from_secs(1),
            &InFlight::unbounded(),
        )
        .unwrap_err();
        assert!(e.contains("once"), "{e}");
    }

    const S: Duration = Duration::from_secs(1);

    /// The value's (expiry, refresh, stale limit) for these headers, at `now`.
    fn instants(
        pairs: &[(header::HeaderName, &str)],
        now: SystemTime,
    ) -> (Option<SystemTime>, Option<SystemTime>, Option<SystemTime>) {
        let v = value_of(Bytes::from_static(b"v"), &headers(pairs), now);
        (v.expires_at(), v.refresh_at(), v.stale_until())
    }

    #[test]
    fn expiry_from_cache_headers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let cc = header::CACHE_CONTROL;
        let expiry = |pairs: &[(header::HeaderName, &str)]| instants(pairs, now).0;
        assert_eq!(
            expiry(&[(cc.clone(), "public, max-age=60")]),
            Some(now + 60 * S)
        );
        assert_eq!(
            expiry(&[(cc.clone(), "max-age=60, s-maxage=10")]),
            Some(now + 10 * S)
        );
        let past = "Thu, 01 Jan 1970 00:01:40 GMT";
        assert_eq!(
            expiry(&[(header::EXPIRES, past)]),
            Some(SystemTime::UNIX_EPOCH + 100 * S),
            "an Expires in the past: expired on arrival"
        );
        assert_eq!(expiry(&[(header::EXPIRES, "0")]), Some(now));
        assert_eq!(expiry(&[]), None);
        assert_eq!(expiry(&[(cc.clone(), "no-transform")]), None);
        // Served once, not kept: no-store, no-cache (even with a max-age), max-age=0, and
        // a malformed max-age.
        for directives in [
            "no-store",
            "max-age=60, No-Cache",
            "max-age=0",
            "max-age=soon",
            "max-age",
        ] {
            assert_eq!(
                expiry(&[(cc.clone(), directives)]),
                Some(now),
                "{directives}"
            );
        }
        // A qualified no-cache names header fields only.
        assert_eq!(
            expiry(&[(cc.clone(), "no-cache=\"Set-Cookie\", max-age=5")]),
            Some(now + 5 * S)
        );
        // max-age wins over Expires.
        assert_eq!(
            expiry(&[(header::EXPIRES, past), (cc.clone(), "max-age=7")]),
            Some(now + 7 * S)
        );
    }

    #[test]
    fn stale_while_revalidate_and_stale_if_error() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let cc = header::CACHE_CONTROL;
        assert_eq!(
            instants(
                &[(cc.clone(), "max-age=60, stale-while-revalidate=30")],
                now
            ),
            (Some(now + 90 * S), Some(now + 60 * S), None)
        );
        assert_eq!(
            instants(&[(cc.clone(), "max-age=60, stale-if-error=600")], now),
            (Some(now + 60 * S), None, Some(now + 660 * S))
        );
        // Both windows start when the value stops being fresh.
        assert_eq!(
            instants(
                &[(
                    cc.clone(),
                    "max-age=10, stale-while-revalidate=20, stale-if-error=100"
                )],
                now
            ),
            (Some(now + 30 * S), Some(now + 10 * S), Some(now + 110 * S))
        );
        // A stale-if-error window inside the revalidation window adds nothing.
        assert_eq!(
            instants(
                &[(
                    cc.clone(),
                    "max-age=10, stale-while-revalidate=20, stale-if-error=5"
                )],
                now
            ),
            (Some(now + 30 * S), Some(now + 10 * S), None)
        );
        let expires = "Thu, 01 Jan 1970 00:01:40 GMT";
        let at = SystemTime::UNIX_EPOCH + 100 * S;
        assert_eq!(
            instants(
                &[
                    (header::EXPIRES, expires),
                    (cc.clone(), "stale-if-error=60")
                ],
                now
            ),
            (Some(at), None, Some(at + 60 * S)),
            "Expires is a fresh lifetime too"
        );
        // Without an expiry, or with no-store, there is nothing to be stale about.
        assert_eq!(
            instants(
                &[(cc.clone(), "stale-while-revalidate=30, stale-if-error=60")],
                now
            ),
            (None, None, None)
        );
        assert_eq!(
            instants(
                &[(cc.clone(), "no-store, max-age=0, stale-if-error=60")],
                now
            ),
            (Some(now), None, None)
        );
        // A malformed window is ignored.
        assert_eq!(
            instants(&[(cc.clone(), "max-age=5, stale-if-error=x")], now),
            (Some(now + 5 * S), None, None)
        );
    }

    #[test]
    fn huge_spans_saturate() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let huge = "max-age=99999999999999999999999, stale-while-revalidate=18446744073709551615, \
                    stale-if-error=99999999999999999999";
        let (expires_at, refresh_at, stale_until) = instants(&[(header::CACHE_CONTROL, huge)], now);
        assert_eq!(refresh_at, Some(now + MAX_SPAN));
        assert_eq!(expires_at, Some(now + 2 * MAX_SPAN));
        assert_eq!(
            stale_until, None,
            "capped alike, within the revalidation window"
        );
        // At the end of time, instants past what a SystemTime holds saturate: no panic.
        let end = SystemTime::UNIX_EPOCH + Duration::from_secs(i64::MAX as u64 - 10);
        let (expires_at, refresh_at, _) = instants(&[(header::CACHE_CONTROL, huge)], end);
        assert!(expires_at.is_some() && refresh_at.is_some());
        let (expires_at, _, _) = instants(&[(header::CACHE_CONTROL, "max-age=5")], end);
        assert!(expires_at.is_some(), "saturated, not dropped");
    }
}
