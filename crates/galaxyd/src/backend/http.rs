//! The HTTP backend: GET the key from an origin server.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri, header};
use percent_encoding::utf8_percent_encode;

use crate::client::{HttpClient, SEGMENT};

/// Where the key goes in a URL template (a template without it gets the key appended).
const PLACEHOLDER: &str = "{key}";

/// Loads keys from an origin: `{key}` in the URL template is replaced by the
/// percent-encoded key (a template without it gets the key appended).
#[derive(Debug)]
pub(crate) struct HttpBackend {
    /// The template before `{key}`.
    prefix: String,
    /// The template after `{key}`.
    suffix: String,
    client: HttpClient,
}

impl HttpBackend {
    pub(crate) fn new(template: &str, timeout: Duration) -> Result<Self, String> {
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
            client: HttpClient::new(64, timeout),
        };
        backend.uri("probe")?;
        Ok(backend)
    }

    fn uri(&self, key: &str) -> Result<Uri, String> {
        let mut url = String::with_capacity(self.prefix.len() + 3 * key.len() + self.suffix.len());
        url.push_str(&self.prefix);
        url.extend(utf8_percent_encode(key, SEGMENT));
        url.push_str(&self.suffix);
        Uri::try_from(url.as_str()).map_err(|e| format!("HTTP backend: invalid URL {url:?}: {e}"))
    }

    /// The origin's answer: 2xx is the value (with an expiry from its cache headers, see
    /// [`expiry`]), 404 is no such key, anything else is an error.
    pub(crate) async fn load(
        &self,
        key: &str,
    ) -> Result<Option<(Bytes, Option<SystemTime>)>, String> {
        let response = self.client.get(self.uri(key)?).await?;
        if response.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status.is_success() {
            let text = String::from_utf8_lossy(&response.body[..response.body.len().min(200)])
                .into_owned();
            return Err(format!(
                "origin answered {}: {}",
                response.status,
                text.trim()
            ));
        }
        let expiry = expiry(&response.headers, SystemTime::now());
        Ok(Some((response.body, expiry)))
    }
}

/// When a response stops being fresh: `s-maxage` (we are a shared cache), then `max-age`,
/// then `Expires`; `None` when the origin does not say. `no-store` and `no-cache` are not
/// honoured: an operator puts galaxyd in front of an origin to cache it, and a value that
/// expired on arrival would be answered NotFound. Bound such values with the galaxy's max
/// TTL instead.
fn expiry(headers: &HeaderMap, now: SystemTime) -> Option<SystemTime> {
    let directives: Vec<(String, Option<String>)> = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| match d.split_once('=') {
            Some((name, value)) => (
                name.trim().to_ascii_lowercase(),
                Some(value.trim().trim_matches('"').to_owned()),
            ),
            None => (d.trim().to_ascii_lowercase(), None),
        })
        .collect();
    for wanted in ["s-maxage", "max-age"] {
        let seconds = directives
            .iter()
            .find(|(name, _)| name == wanted)
            .and_then(|(_, v)| v.as_deref()?.parse::<u64>().ok());
        if let Some(seconds) = seconds {
            return Some(now + Duration::from_secs(seconds));
        }
    }
    let expires = headers.get(header::EXPIRES)?.to_str().ok()?;
    // An unparseable Expires (often "0") means already expired.
    Some(httpdate::parse_http_date(expires).unwrap_or(now))
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
        let b =
            HttpBackend::new("http://origin:8080/items/{key}?v=1", Duration::from_secs(1)).unwrap();
        let uri = b.uri("a/b c?ü").unwrap();
        assert_eq!(
            uri.to_string(),
            "http://origin:8080/items/a%2Fb%20c%3F%C3%BC?v=1"
        );
        let b = HttpBackend::new("http://origin/k/", Duration::from_secs(1)).unwrap();
        assert_eq!(b.uri("x").unwrap().to_string(), "http://origin/k/x");
    }

    #[test]
    fn bad_templates_say_why() {
        let e = HttpBackend::new("https://origin/{key}", Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("https"), "{e}");
        let e = HttpBackend::new("origin/{key}", Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("expected a URL template"), "{e}");
        let e = HttpBackend::new("http://or igin/{key}", Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("invalid URL"), "{e}");
        let e = HttpBackend::new("http://o/{key}/{key}", Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("once"), "{e}");
    }

    #[test]
    fn expiry_from_cache_headers() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let h = headers(&[(header::CACHE_CONTROL, "public, max-age=60")]);
        assert_eq!(expiry(&h, now), Some(now + Duration::from_secs(60)));
        let h = headers(&[(header::CACHE_CONTROL, "max-age=60, s-maxage=10")]);
        assert_eq!(expiry(&h, now), Some(now + Duration::from_secs(10)));
        let h = headers(&[(header::EXPIRES, "Thu, 01 Jan 1970 00:01:40 GMT")]);
        assert_eq!(
            expiry(&h, now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(100))
        );
        let h = headers(&[(header::EXPIRES, "0")]);
        assert_eq!(expiry(&h, now), Some(now));
        assert_eq!(expiry(&HeaderMap::new(), now), None);
        let h = headers(&[(header::CACHE_CONTROL, "no-transform")]);
        assert_eq!(expiry(&h, now), None);
        // no-store / no-cache are not honoured; max-age still is.
        let h = headers(&[(header::CACHE_CONTROL, "no-store")]);
        assert_eq!(expiry(&h, now), None);
        let h = headers(&[(header::CACHE_CONTROL, "max-age=60, No-Cache")]);
        assert_eq!(expiry(&h, now), Some(now + Duration::from_secs(60)));
    }
}
