//! The client side: a [`FetchProtocol`] that fetches keys from their owners over HTTP.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use galaxycache_universe::{
    BoxFuture, Error, ErrorKind, FetchProtocol, FetchResult, RemoteFetcher, Value,
};
use http::header::EXPIRES;
use http::{HeaderName, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prost::Message as _;
use tokio::time::Instant;

use crate::Dialect;
use crate::headers::{
    GALAXY_FOUND, GALAXY_NOT_FOUND, GALAXY_STATUS_HEADER, TIMEOUT_HEADER, fmt_timeout,
    parse_expires,
};
use crate::pb::GetResponse;

/// Default of [`HttpProtocolBuilder::max_response_bytes`]: 64 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 << 20;
/// Default of [`HttpProtocolBuilder::pool_max_idle_per_host`].
pub const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 256;

/// The most of an error response's body that is kept as the error's message.
const MAX_ERROR_BODY: usize = 64 * 1024;

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Fetches keys from peers over HTTP, in one [`Dialect`]: give it to
/// [`UniverseBuilder::protocol`](galaxycache_universe::UniverseBuilder::protocol).
///
/// All peers share one pool of keep-alive connections. Peer URLs look like
/// `http://10.0.0.2:8080` (a path after the authority is kept as a prefix); `https` is not
/// supported.
///
/// How answers map to results:
///
/// | answer | result |
/// | --- | --- |
/// | `200` | the value (with its expiry when `Expires` is sent) |
/// | `404` saying the galaxy exists | `Ok(None)`: NotFound |
/// | `404` saying there is no such galaxy, or `no such group: …` | [`ErrorKind::UnknownGalaxy`] |
/// | `400`, `414` | [`ErrorKind::InvalidRequest`] |
/// | `500` | [`ErrorKind::Remote`], its message the body alone: the owner's load error as the owner's own callers see it |
/// | `503` | [`ErrorKind::Overloaded`] |
/// | `504`, or no answer by the deadline | [`ErrorKind::Timeout`] |
/// | other `5xx` (a proxy's 502, say) | [`ErrorKind::Unavailable`]: the owner did not answer, so the asking node loads the key itself |
/// | refused, reset, or closed mid-answer | [`ErrorKind::Unavailable`] |
/// | a body over [`max_response_bytes`](HttpProtocolBuilder::max_response_bytes) | [`ErrorKind::TooLarge`] |
/// | anything else (unparsable, other statuses, bad protobuf or `Expires`) | [`ErrorKind::Protocol`] |
#[derive(Clone, Debug)]
pub struct HttpProtocol {
    client: HttpClient,
    dialect: Dialect,
    max_response_bytes: usize,
}

/// Builds an [`HttpProtocol`].
#[derive(Clone, Debug)]
pub struct HttpProtocolBuilder {
    dialect: Dialect,
    http2: bool,
    max_response_bytes: usize,
    pool_max_idle_per_host: usize,
    pool_idle_timeout: Duration,
    connect_timeout: Duration,
}

impl HttpProtocol {
    /// Start building a protocol; every setting has a default.
    pub fn builder() -> HttpProtocolBuilder {
        HttpProtocolBuilder {
            dialect: Dialect::default(),
            http2: false,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            pool_max_idle_per_host: DEFAULT_POOL_MAX_IDLE_PER_HOST,
            pool_idle_timeout: Duration::from_secs(90),
            connect_timeout: Duration::from_secs(1),
        }
    }

    /// The dialect this protocol speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }
}

impl HttpProtocolBuilder {
    /// The URL dialect. Default: [`Dialect::Galaxycache`].
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// Speak HTTP/2 with prior knowledge (h2c: cleartext, no upgrade), one multiplexed
    /// connection per peer. Go groupcache servers do not accept it. Default: false
    /// (HTTP/1.1 with keep-alive).
    pub fn http2(mut self, enabled: bool) -> Self {
        self.http2 = enabled;
        self
    }

    /// Largest response body accepted from a peer; a larger one is
    /// [`ErrorKind::TooLarge`], refused from its `Content-Length` or as soon as that many
    /// bytes have arrived. Default: 64 MiB.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Idle keep-alive connections kept per peer (HTTP/1.1). Keep it near the number of
    /// concurrent fetches to one peer, or busy nodes open and close a connection per
    /// request and pile up sockets in `TIME_WAIT` (Go's default of 2 is what did that to
    /// groupcache users). Default: 256.
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.pool_max_idle_per_host = n;
        self
    }

    /// How long an idle pooled connection is kept. Default: 90 s.
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How long connecting to a peer may take; longer is [`ErrorKind::Unavailable`]. The
    /// fetch's deadline bounds it too. Default: 1 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The protocol. Needs no runtime until the first fetch.
    pub fn build(self) -> HttpProtocol {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(self.connect_timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(self.http2)
            .build(connector);
        HttpProtocol {
            client,
            dialect: self.dialect,
            max_response_bytes: self.max_response_bytes,
        }
    }
}

impl Default for HttpProtocol {
    fn default() -> Self {
        HttpProtocol::builder().build()
    }
}

impl FetchProtocol for HttpProtocol {
    fn connect(&self, url: &str) -> Result<Arc<dyn RemoteFetcher>, Error> {
        let config_error =
            |why: &str| Error::new(ErrorKind::Config, format!("peer URL {url:?}: {why}"));
        let uri: Uri = url.parse().map_err(|_| config_error("not a URL"))?;
        if uri.scheme_str() != Some("http") {
            return Err(config_error("the scheme must be http"));
        }
        if uri.authority().is_none() {
            return Err(config_error("no host"));
        }
        if uri.query().is_some() {
            return Err(config_error("a peer URL has no query"));
        }
        let mut base = url.trim_end_matches('/').to_owned();
        base.push_str(self.dialect.path_prefix());
        Ok(Arc::new(HttpFetcher {
            url: url.to_owned(),
            base,
            protocol: self.clone(),
        }))
    }
}

/// One peer, reached through the protocol's shared connection pool.
#[derive(Debug)]
struct HttpFetcher {
    url: String,
    /// `{url}{path prefix}`: what every request URI starts with.
    base: String,
    protocol: HttpProtocol,
}

impl RemoteFetcher for HttpFetcher {
    fn fetch<'a>(
        &'a self,
        galaxy: &'a str,
        key: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, FetchResult> {
        Box::pin(async move {
            match tokio::time::timeout_at(deadline, self.fetch_inner(galaxy, key, deadline)).await {
                Ok(result) => result,
                Err(_) => Err(self.error(ErrorKind::Timeout, "no answer before the deadline")),
            }
        })
    }

    fn url(&self) -> &str {
        &self.url
    }
}

impl HttpFetcher {
    async fn fetch_inner(&self, galaxy: &str, key: &str, deadline: Instant) -> FetchResult {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(self.error(ErrorKind::Timeout, "the deadline passed before sending"));
        }
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = self.uri(galaxy, key)?;
        request.headers_mut().insert(
            HeaderName::from_static(TIMEOUT_HEADER),
            fmt_timeout(remaining),
        );
        let response = self
            .protocol
            .client
            .request(request)
            .await
            .map_err(|e| self.request_error(&e))?;
        self.answer(response).await
    }

    /// `{base}{galaxy}/{key}`, escaped, built in one string.
    fn uri(&self, galaxy: &str, key: &str) -> Result<Uri, Error> {
        let dialect = self.protocol.dialect;
        let mut s = String::with_capacity(self.base.len() + 3 * (galaxy.len() + key.len()) + 1);
        s.push_str(&self.base);
        dialect.encode_into(galaxy, &mut s);
        s.push('/');
        dialect.encode_into(key, &mut s);
        Uri::try_from(s).map_err(|e| self.error(ErrorKind::InvalidRequest, e))
    }

    async fn answer(&self, response: Response<Incoming>) -> FetchResult {
        let (parts, body) = response.into_parts();
        if parts.status != StatusCode::OK {
            let text = self.error_text(body).await;
            return self.status_error(parts.status, &parts.headers, text);
        }
        let bytes = self
            .read_body(body, self.protocol.max_response_bytes)
            .await?;
        let expires_at = match parts.headers.get(EXPIRES) {
            None => None,
            Some(v) => Some(
                parse_expires(v)
                    .ok_or_else(|| self.error(ErrorKind::Protocol, "malformed Expires header"))?,
            ),
        };
        let bytes = match self.protocol.dialect {
            Dialect::Galaxycache => bytes,
            Dialect::Groupcache => GetResponse::decode(bytes)
                .map_err(|e| self.error(ErrorKind::Protocol, format!("bad GetResponse: {e}")))?
                .value
                .unwrap_or_default(),
        };
        Ok(Some(Value::new(bytes).with_expiry(expires_at)))
    }

    fn status_error(
        &self,
        status: StatusCode,
        headers: &http::HeaderMap,
        text: String,
    ) -> FetchResult {
        let galaxy_status = headers.get(GALAXY_STATUS_HEADER).map(|v| v.as_bytes());
        let kind = match status {
            StatusCode::NOT_FOUND if galaxy_status == Some(GALAXY_FOUND.as_bytes()) => {
                return Ok(None);
            }
            StatusCode::NOT_FOUND
                if galaxy_status == Some(GALAXY_NOT_FOUND.as_bytes())
                    || text.starts_with("no such group") =>
            {
                ErrorKind::UnknownGalaxy
            }
            StatusCode::BAD_REQUEST | StatusCode::URI_TOO_LONG => ErrorKind::InvalidRequest,
            StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Overloaded,
            StatusCode::GATEWAY_TIMEOUT => ErrorKind::Timeout,
            StatusCode::INTERNAL_SERVER_ERROR => {
                // The owner's load failed: its message alone, as the owner's callers see it.
                let message = text.strip_suffix('\n').unwrap_or(&text);
                return Err(Error::new(ErrorKind::Remote, message));
            }
            // 502 and the like come from whatever stands between us and the owner: the
            // owner did not answer, so this node loads the key itself.
            s if s.is_server_error() => ErrorKind::Unavailable,
            _ => ErrorKind::Protocol,
        };
        Err(self.error(kind, format!("{status}: {}", text.trim_end())))
    }

    /// The whole body, unless it is longer than `limit`.
    async fn read_body(&self, body: Incoming, limit: usize) -> Result<Bytes, Error> {
        let claimed = body.size_hint().lower();
        if claimed > limit as u64 {
            return Err(self.error(
                ErrorKind::TooLarge,
                format!("response of {claimed} bytes exceeds the limit of {limit}"),
            ));
        }
        match Limited::new(body, limit).collect().await {
            Ok(collected) => Ok(collected.to_bytes()),
            Err(e) if e.is::<LengthLimitError>() => Err(self.error(
                ErrorKind::TooLarge,
                format!("response exceeds the limit of {limit} bytes"),
            )),
            Err(e) => Err(self.error(body_error_kind(&*e), error_chain(&*e))),
        }
    }

    /// The start of an error response's body, as text, for the error's message.
    async fn error_text(&self, body: Incoming) -> String {
        let limit = MAX_ERROR_BODY.min(self.protocol.max_response_bytes);
        match self.read_body(body, limit).await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => format!("(unreadable body: {})", e.message()),
        }
    }

    fn request_error(&self, e: &hyper_util::client::legacy::Error) -> Error {
        let kind = if e.is_connect() {
            ErrorKind::Unavailable
        } else {
            body_error_kind(e)
        };
        self.error(kind, error_chain(e))
    }

    fn error(&self, kind: ErrorKind, detail: impl std::fmt::Display) -> Error {
        Error::new(kind, format!("peer {}: {detail}", self.url))
    }
}

/// The kind of a failure on an established connection: a response hyper could not parse is
/// a protocol error; everything else (reset, closed, cut short) is an unavailable peer.
fn body_error_kind(e: &(dyn StdError + 'static)) -> ErrorKind {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_parse() || h.is_parse_status() {
                return ErrorKind::Protocol;
            }
            if h.is_timeout() {
                return ErrorKind::Timeout;
            }
        }
        source = err.source();
    }
    ErrorKind::Unavailable
}

/// `e` and its sources, joined by `: `.
fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(err) = source {
        let _ = write!(text, ": {err}");
        source = err.source();
    }
    text
}
