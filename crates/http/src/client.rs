//! The client side: a [`FetchProtocol`] that fetches keys from their owners over HTTP.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use galaxycache_h2::{Connector, MakeStream, ResponseBody, Transport};
use galaxycache_universe::rustls::{self, ClientConfig};
use galaxycache_universe::{
    BoxFuture, DEFAULT_MAX_RESPONSE_BYTES, Error, ErrorKind, FetchProtocol, FetchResult, GalaxyId,
    InFlight, PeerToken, RemoteFetcher, TRACEPARENT, TlsConfig, Value, WriteOp, current_trace,
    error_chain, sanitize_message,
};
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use http::uri::{self, Authority, PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prost::Message as _;
use tokio::time::Instant;

use crate::batch;
use crate::body::{ReadError, read_value};
use crate::connector::StreamConnector;
use crate::dialect::MAX_PATH_LEN;
use crate::headers::{
    GALAXY_FOUND, GALAXY_NOT_FOUND, GALAXY_STATUS_HEADER, Instants, TIMEOUT_HEADER, VERSION_HEADER,
    fmt_timeout, insert_instants, read_expiry,
};
use crate::pb::GetResponse;
use crate::{DEFAULT_POOL_IDLE_TIMEOUT, Dialect};

/// Default of [`HttpProtocolBuilder::pool_max_idle_per_host`].
const DEFAULT_POOL_MAX_IDLE_PER_HOST: usize = 256;

/// The most of an error response's body that is kept as the error's message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// Room kept in a request path for the peer URL's own path, the dialect's prefix and the
/// escaped galaxy name.
const PATH_RESERVE: usize = 2_048;

/// [`HttpProtocol`]'s [`FetchProtocol::max_key_len`]: 21,162 bytes, so that a key of which
/// every byte travels as a 3-byte escape still fits in a request path.
const MAX_KEY_LEN: usize = (MAX_PATH_LEN - PATH_RESERVE) / 3;

/// How requests reach peers.
#[derive(Clone, Debug)]
enum Connections {
    /// HTTP/1.1: one pool of keep-alive connections for all peers.
    Pooled(Pool),
    /// HTTP/2: one connection per peer, which the peer's fetcher opens itself.
    PerPeer(H2Peers),
}

/// The connection pool, over TCP sockets or over the streams of a connector of the
/// application's own ([`HttpProtocolBuilder::connector`]). Request bodies are a value's bytes
/// (a `PUT`) or nothing: one type for every verb, so all share one pool.
#[derive(Clone, Debug)]
enum Pool {
    Tcp(Client<HttpsConnector<HttpConnector>, Full<Bytes>>),
    Streams(Client<HttpsConnector<StreamConnector>, Full<Bytes>>),
}

impl Pool {
    async fn request(
        &self,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<Incoming>, hyper_util::client::legacy::Error> {
        match self {
            Pool::Tcp(client) => client.request(request).await,
            Pool::Streams(client) => client.request(request).await,
        }
    }
}

/// What an HTTP/2 connection to a peer is opened with: the shared HTTP/2 client's
/// ([`galaxycache_h2::Transport`]), not hyper's, whose tasks cost a wake-up per hop.
#[derive(Clone, Debug)]
struct H2Peers {
    tls: Option<ClientConfig>,
    connector: Option<Connector>,
    connect_timeout: Duration,
}

impl H2Peers {
    /// A transport to the peer at `origin`, over TLS for `https://`.
    fn transport(&self, origin: &Uri) -> Result<Transport, String> {
        let tls = match origin.scheme() {
            Some(s) if *s == Scheme::HTTPS => self.tls.clone(),
            _ => None,
        };
        Transport::new(origin, tls, self.connector.clone(), self.connect_timeout)
    }
}

/// How a fetcher reaches its peer. (The pool is boxed: hyper's client is large.)
#[derive(Debug)]
enum Sender {
    Pooled(Box<Pool>),
    H2(Transport),
}

/// An answer's body, from either kind of connection.
type AnswerBody = Either<Incoming, ResponseBody>;

/// Fetches keys from peers over HTTP, in one [`Dialect`]: give it to
/// [`UniverseBuilder::protocol`](galaxycache_universe::UniverseBuilder::protocol).
///
/// Over HTTP/1.1 all peers share one pool of keep-alive connections; over HTTP/2
/// ([`HttpProtocolBuilder::http2`]) each peer has one connection, which its fetches share
/// and on which each fetch sends and reads its own request (no task of hyper's between).
/// Peer URLs look like
/// `http://10.0.0.2:8080` (a path after the authority is kept as a prefix; a query or a
/// fragment is refused), or `https://` ones with [`HttpProtocolBuilder::tls`]: mTLS, this
/// node presenting its certificate and checking the peer's against the CA.
///
/// Keys travel in the request path, which hyper and `http::Uri` bound at 65,534 bytes, and
/// each byte of a key may take three there: so keys are at most 21,162 bytes
/// ([`FetchProtocol::max_key_len`]; 2,048 bytes of the path are kept for the peer URL's own
/// path, the dialect's prefix and the galaxy name), and a universe using this protocol caps
/// its own key bound at that.
///
/// The fetcher sends the time left before the deadline to the peer, which stops there; it
/// keeps no timer of its own (the caller enforces the deadline) but refuses to send once
/// the deadline has passed. In the galaxycache dialect every request names the galaxy's
/// version in [`VERSION_HEADER`](crate::VERSION_HEADER) unless it is 0; the groupcache
/// dialect has no versions, so a fetch of another version than 0 is an
/// [`ErrorKind::Config`] error, sent to nobody.
///
/// How answers to a fetch map to results:
///
/// | answer | result |
/// | --- | --- |
/// | `200` | the value, with its expiry when one is sent ([`EXPIRES_MS_HEADER`](crate::EXPIRES_MS_HEADER), else `Expires`, whole seconds or, as galaxycache (Go) v1.4 writes it, with a fraction of 1 to 9 digits; a past one is kept: a stale answer), its refresh ([`REFRESH_MS_HEADER`](crate::REFRESH_MS_HEADER)) and its stale limit ([`STALE_MS_HEADER`](crate::STALE_MS_HEADER)) |
/// | `404` saying the galaxy exists, with an expiry (as a `200` names it) | `Ok(Some(`[`Value::absent`]`(expiry)))`: a cached miss |
/// | `404` saying the galaxy exists, without an expiry (an older peer) | `Ok(None)`: NotFound |
/// | `404` saying there is no such galaxy, or `no such group: …` | [`ErrorKind::UnknownGalaxy`] |
/// | `400`, `414` | [`ErrorKind::InvalidRequest`] |
/// | `401` | [`ErrorKind::Unauthenticated`]: the peer wants credentials this node did not send (a peer failure: the asking node loads the key itself) |
/// | `409` | [`ErrorKind::VersionMismatch`]: the peer's galaxy has another version |
/// | `405`, `501` | [`ErrorKind::Unsupported`]: the peer has no such verb |
/// | `413` | [`ErrorKind::TooLarge`] |
/// | `500` | [`ErrorKind::Remote`], its message the body alone, [sanitized](galaxycache_universe::sanitize_message) (at most 256 bytes of it, no control characters): the owner's load error as the owner's own callers see it |
/// | `500` whose body cannot be read | the read failure's kind ([`ErrorKind::Unavailable`], say): that is no answer |
/// | `503` | [`ErrorKind::Overloaded`] |
/// | `504`, or a deadline passed before sending | [`ErrorKind::Timeout`] |
/// | other `5xx` (a proxy's 502, say) | [`ErrorKind::Unavailable`]: the owner did not answer, so the asking node loads the key itself |
/// | refused, reset, or closed mid-answer | [`ErrorKind::Unavailable`] |
/// | a body over [`max_response_bytes`](HttpProtocolBuilder::max_response_bytes) | [`ErrorKind::TooLarge`] |
/// | anything else (unparsable, other statuses, bad protobuf, a malformed expiry, refresh or stale header) | [`ErrorKind::Protocol`] |
///
/// A [`peek`](RemoteFetcher::peek) (galaxycache dialect only: in the groupcache dialect it
/// is [`ErrorKind::Unsupported`] and sends nothing) is a `GET` under
/// [`Dialect::peek_prefix`], built and read as a fetch is: a key the peer has not cached is
/// its `404` `Found`, `Ok(None)`.
///
/// A [`write`](RemoteFetcher::write) (galaxycache dialect only: in the groupcache dialect
/// it is [`ErrorKind::Unsupported`] and sends nothing) is `DELETE` or `PUT` (see
/// [`Dialect::Galaxycache`]); `204` or `200` is `Ok(())`, and every other answer maps as
/// for a fetch, except that `500` and the statuses the table does not name are
/// [`ErrorKind::Unavailable`]: the write was not confirmed applied.
///
/// A value's bytes are copied out of the connection's read buffers into an allocation of
/// their own length, since caches count a value by its length.
#[derive(Clone, Debug)]
pub struct HttpProtocol {
    connections: Connections,
    dialect: Dialect,
    max_response_bytes: usize,
    /// Whether `https://` peers can be reached.
    tls: bool,
    /// `Bearer <token>`, sent with every request, when a token is configured.
    authorization: Option<HeaderValue>,
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
    tls: Option<ClientConfig>,
    token: Option<PeerToken>,
    connector: Option<Connector>,
}

impl HttpProtocol {
    /// Start building a protocol; every setting has a default.
    pub fn builder() -> HttpProtocolBuilder {
        HttpProtocolBuilder {
            dialect: Dialect::default(),
            http2: false,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            pool_max_idle_per_host: DEFAULT_POOL_MAX_IDLE_PER_HOST,
            pool_idle_timeout: DEFAULT_POOL_IDLE_TIMEOUT,
            connect_timeout: Duration::from_secs(1),
            tls: None,
            token: None,
            connector: None,
        }
    }
}

impl HttpProtocolBuilder {
    /// The URL dialect. Default: [`Dialect::Galaxycache`].
    pub fn dialect(mut self, dialect: Dialect) -> Self {
        self.dialect = dialect;
        self
    }

    /// Speak HTTP/2 with prior knowledge (h2c: cleartext, no upgrade; over TLS, ALPN `h2`),
    /// one multiplexed connection per peer, opened on the first fetch and again after it
    /// fails or the peer closes it (the pool settings do not apply). Each fetch sends its
    /// request and reads the answer itself, with the gRPC protocol's HTTP/2 client: no
    /// task in between, so a fetch costs about what an HTTP/1.1 one does. Go groupcache
    /// servers do not accept it. Default: false (HTTP/1.1 with keep-alive).
    pub fn http2(mut self, enabled: bool) -> Self {
        self.http2 = enabled;
        self
    }

    /// Largest response body accepted from a peer; a larger one is
    /// [`ErrorKind::TooLarge`], refused from its `Content-Length` or as soon as that many
    /// bytes have arrived. Default:
    /// [`DEFAULT_MAX_RESPONSE_BYTES`](galaxycache_universe::DEFAULT_MAX_RESPONSE_BYTES)
    /// (64 MiB), as every protocol.
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Idle keep-alive connections kept per peer (HTTP/1.1 only). Keep it near the number of
    /// concurrent fetches to one peer, or busy nodes open and close a connection per
    /// request and pile up sockets in `TIME_WAIT` (Go's default of 2 is what did that to
    /// groupcache users). Default: 256.
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.pool_max_idle_per_host = n;
        self
    }

    /// How long an idle pooled connection is kept (HTTP/1.1 only). Keep it below the peers' own idle
    /// timeout ([`SERVER_IDLE_TIMEOUT`](crate::SERVER_IDLE_TIMEOUT) for
    /// [`PeerService::serve`](crate::PeerService::serve)), or a request may go out on a
    /// connection the peer is closing, and fail. Default:
    /// [`DEFAULT_POOL_IDLE_TIMEOUT`] (20 s).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// How long connecting to a peer may take; longer is [`ErrorKind::Unavailable`].
    /// Default: 1 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Reach `https://` peers over mTLS: present this node's certificate and accept a peer
    /// only with a certificate signed by the CA that names the host of its URL. Loads the
    /// files now (an [`ErrorKind::Config`] error when they do not load); the client keeps
    /// what it loaded (a new certificate takes a new protocol, or a restart). Default:
    /// none, `http://` peers only.
    pub fn tls(mut self, tls: &TlsConfig) -> Result<Self, Error> {
        self.tls = Some(tls.client_config(&[])?);
        Ok(self)
    }

    /// Send `token` with every request, as `Authorization: Bearer <token>`, for peers that
    /// require it ([`PeerService::token`](crate::PeerService::token)). Default: none.
    pub fn token(mut self, token: PeerToken) -> Self {
        self.token = Some(token);
        self
    }

    /// Open connections to peers with `connector` instead of TCP sockets: a
    /// [`tower::Service`] that takes a peer's URI (`http://host:port/...`) and answers a
    /// byte stream to it, any tokio [`AsyncRead`](tokio::io::AsyncRead) +
    /// [`AsyncWrite`](tokio::io::AsyncWrite) (an in-memory pipe, a
    /// Unix socket, a simulated network's TCP stream). Each connect is bounded by
    /// [`connect_timeout`](Self::connect_timeout); TLS ([`tls`](Self::tls)), HTTP/2, the
    /// pool and every other setting apply to these streams as to sockets. Default: none,
    /// TCP sockets (with `TCP_NODELAY`).
    pub fn connector(mut self, connector: impl MakeStream) -> Self {
        self.connector = Some(Connector::new(connector));
        self
    }

    /// The protocol. Needs no runtime until the first fetch.
    pub fn build(self) -> HttpProtocol {
        let connections = match (self.http2, self.connector.clone()) {
            (true, connector) => Connections::PerPeer(H2Peers {
                tls: self.tls.clone(),
                connector,
                connect_timeout: self.connect_timeout,
            }),
            (false, Some(streams)) => Connections::Pooled(Pool::Streams(
                self.pool(StreamConnector::new(streams, self.connect_timeout)),
            )),
            (false, None) => {
                let mut connector = HttpConnector::new();
                connector.set_nodelay(true);
                connector.set_connect_timeout(Some(self.connect_timeout));
                connector.enforce_http(false);
                Connections::Pooled(Pool::Tcp(self.pool(connector)))
            }
        };
        let authorization = self.token.as_ref().and_then(|token| {
            let mut value = HeaderValue::try_from(token.authorization()).ok()?;
            value.set_sensitive(true);
            Some(value)
        });
        HttpProtocol {
            connections,
            dialect: self.dialect,
            max_response_bytes: self.max_response_bytes,
            tls: self.tls.is_some(),
            authorization,
        }
    }

    /// The HTTP/1.1 pool over `connector`'s connections, wrapped in TLS for `https://`
    /// peers.
    fn pool<C>(&self, connector: C) -> Client<HttpsConnector<C>, Full<Bytes>>
    where
        HttpsConnector<C>: Connect + Clone + Send + Sync + 'static,
    {
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(self.tls.clone().unwrap_or_else(plain_only))
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(self.pool_max_idle_per_host)
            .pool_idle_timeout(self.pool_idle_timeout)
            .pool_timer(TokioTimer::new())
            .build(connector)
    }
}

/// The TLS configuration of a client without TLS: never used, since such a client refuses
/// `https://` peers when connecting.
fn plain_only() -> ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| {
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        })
        .unwrap_or_else(|_| unreachable!("ring supports the default protocol versions"))
}

impl Default for HttpProtocol {
    fn default() -> Self {
        HttpProtocol::builder().build()
    }
}

impl FetchProtocol for HttpProtocol {
    fn connect(&self, url: &str, in_flight: &InFlight) -> Result<Arc<dyn RemoteFetcher>, Error> {
        let config_error =
            |why: &str| Error::new(ErrorKind::Config, format!("peer URL {url:?}: {why}"));
        let uri: Uri = url.parse().map_err(|_| config_error("not a URL"))?;
        let scheme = match uri.scheme() {
            Some(s) if *s == Scheme::HTTP => Scheme::HTTP,
            Some(s) if *s == Scheme::HTTPS && self.tls => Scheme::HTTPS,
            Some(s) if *s == Scheme::HTTPS => {
                return Err(config_error("https needs TLS (HttpProtocolBuilder::tls)"));
            }
            _ => return Err(config_error("the scheme must be http or https")),
        };
        let Some(authority) = uri.authority().cloned() else {
            return Err(config_error("no host"));
        };
        if uri.query().is_some() {
            return Err(config_error("a peer URL has no query"));
        }
        // `Uri` drops a fragment silently; refuse it rather than send to another path.
        if url.contains('#') {
            return Err(config_error("a peer URL has no fragment"));
        }
        let sender = match &self.connections {
            Connections::Pooled(pool) => Sender::Pooled(Box::new(pool.clone())),
            Connections::PerPeer(h2) => {
                Sender::H2(h2.transport(&uri).map_err(|e| config_error(&e))?)
            }
        };
        Ok(Arc::new(HttpFetcher {
            url: url.to_owned(),
            sender,
            scheme,
            authority,
            base_path: uri.path().trim_end_matches('/').to_owned(),
            protocol: self.clone(),
            in_flight: in_flight.clone(),
        }))
    }

    /// 21,162 bytes: see [`HttpProtocol`].
    fn max_key_len(&self) -> usize {
        MAX_KEY_LEN
    }
}

/// One peer, reached through the protocol's shared connection pool (HTTP/1.1) or a
/// connection of its own (HTTP/2).
#[derive(Debug)]
struct HttpFetcher {
    url: String,
    sender: Sender,
    scheme: Scheme,
    authority: Authority,
    /// The peer URL's own path, without a trailing `/`: what every request path starts
    /// with, before the dialect's prefix.
    base_path: String,
    protocol: HttpProtocol,
    /// The node's bound on bytes in flight, which answers are read against.
    in_flight: InFlight,
}

impl RemoteFetcher for HttpFetcher {
    fn fetch<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        key: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, FetchResult> {
        Box::pin(self.get(self.protocol.dialect.path_prefix(), galaxy, key, deadline))
    }

    fn fetch_many<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        keys: &'a [Arc<str>],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Vec<FetchResult>, Error>> {
        Box::pin(self.get_many(galaxy, keys, deadline))
    }

    fn peek<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        key: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, FetchResult> {
        Box::pin(self.peek_cached(galaxy, key, deadline))
    }

    fn write<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        op: WriteOp<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(self.send_write(galaxy, op, deadline))
    }

    fn url(&self) -> &str {
        &self.url
    }
}

impl HttpFetcher {
    /// A `GET` of `key` under the dialect's `prefix`: a fetch, or a peek. The caller bounds
    /// it by `deadline`, which the request carries.
    async fn get(
        &self,
        prefix: &str,
        galaxy: GalaxyId<'_>,
        key: &str,
        deadline: Instant,
    ) -> FetchResult {
        let body = Bytes::new();
        let request = self.request(Method::GET, prefix, galaxy, Some(key), body, deadline)?;
        let response = self.send(request).await?;
        self.answer(response, deadline).await
    }

    /// A batch fetch: a `POST` of the keys under the dialect's batch prefix, answered by
    /// one framed body (see the `batch` module). The groupcache dialect has none:
    /// [`ErrorKind::Unsupported`], sent to nobody. A peer without the route (an older
    /// build) answers `404` or `405`: Unsupported too.
    async fn get_many(
        &self,
        galaxy: GalaxyId<'_>,
        keys: &[Arc<str>],
        deadline: Instant,
    ) -> Result<Vec<FetchResult>, Error> {
        let Some(prefix) = self.protocol.dialect.batch_prefix() else {
            return Err(self.error(
                ErrorKind::Unsupported,
                "the groupcache dialect has no batches",
            ));
        };
        let body = batch::encode_keys(keys);
        let mut request = self.request(Method::POST, prefix, galaxy, None, body, deadline)?;
        request
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(batch::CONTENT_TYPE));
        let response = self.send(request).await?;
        let (parts, body) = response.into_parts();
        let status = parts.status;
        let route_unknown =
            status == StatusCode::NOT_FOUND && !parts.headers.contains_key(GALAXY_STATUS_HEADER);
        if route_unknown || status == StatusCode::METHOD_NOT_ALLOWED {
            drain(body).await;
            return Err(self.error(ErrorKind::Unsupported, format!("{status}: no batch route")));
        }
        if status != StatusCode::OK {
            return Err(self
                .failure(status, &parts.headers, body, ErrorKind::Protocol)
                .await);
        }
        let mut reservation = self.in_flight.empty();
        let limit = self.protocol.max_response_bytes;
        let body = read_value(body, limit, &mut reservation, deadline)
            .await
            .map_err(|e| self.read_error(e))?;
        batch::decode_results(&body, keys.len()).map_err(|why| self.error(ErrorKind::Protocol, why))
    }

    /// A peek: a `GET` under the dialect's [`Dialect::peek_prefix`], answered as a fetch
    /// is. The groupcache dialect has none: [`ErrorKind::Unsupported`], sent to nobody.
    async fn peek_cached(&self, galaxy: GalaxyId<'_>, key: &str, deadline: Instant) -> FetchResult {
        let Some(prefix) = self.protocol.dialect.peek_prefix() else {
            return Err(self.error(
                ErrorKind::Unsupported,
                "the groupcache dialect has no peek verb",
            ));
        };
        self.get(prefix, galaxy, key, deadline).await
    }

    /// A write, as `DELETE` (remove, flush) or `PUT` (set); see [`Dialect::Galaxycache`].
    async fn send_write(
        &self,
        galaxy: GalaxyId<'_>,
        op: WriteOp<'_>,
        deadline: Instant,
    ) -> Result<(), Error> {
        if self.protocol.dialect == Dialect::Groupcache {
            return Err(self.error(
                ErrorKind::Unsupported,
                format!("the groupcache dialect has no {} verb", op.verb()),
            ));
        }
        let prefix = self.protocol.dialect.path_prefix();
        let delete =
            |key| self.request(Method::DELETE, prefix, galaxy, key, Bytes::new(), deadline);
        let request = match op {
            WriteOp::Remove(key) => delete(Some(key))?,
            WriteOp::Flush => delete(None)?,
            WriteOp::Set(key, value) => {
                // A refcounted handle on the value's bytes: nothing is copied to send it.
                let body = value.bytes().clone();
                let mut request =
                    self.request(Method::PUT, prefix, galaxy, Some(key), body, deadline)?;
                let headers = request.headers_mut();
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/octet-stream"),
                );
                insert_instants(headers, value);
                request
            }
        };
        let response = self.send(request).await?;
        self.write_answer(response).await
    }

    /// A request to this peer for `galaxy` (and `key`, when there is one) under the
    /// dialect's `prefix`: its method, URI, remaining time, galaxy version and `body`.
    /// Refused before anything is sent when the deadline has passed, or when the dialect
    /// cannot name the version.
    fn request(
        &self,
        method: Method,
        prefix: &str,
        galaxy: GalaxyId<'_>,
        key: Option<&str>,
        body: Bytes,
        deadline: Instant,
    ) -> Result<Request<Bytes>, Error> {
        let version = match (self.protocol.dialect, galaxy.version) {
            (_, 0) => None,
            (Dialect::Galaxycache, v) => Some(HeaderValue::from(v)),
            (Dialect::Groupcache, v) => {
                return Err(self.error(
                    ErrorKind::Config,
                    format!(
                        "galaxy {:?} is at version {v}, and the groupcache dialect has no versions",
                        galaxy.name
                    ),
                ));
            }
        };
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(self.error(ErrorKind::Timeout, "the deadline passed before sending"));
        }
        let length = (!body.is_empty()).then(|| HeaderValue::from(body.len()));
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = self.uri(prefix, galaxy.name, key)?;
        let headers = request.headers_mut();
        headers.insert(TIMEOUT_HEADER, fmt_timeout(remaining));
        // hyper names an HTTP/1.1 body's length itself; an HTTP/2 request needs it said.
        if let Some(length) = length {
            headers.insert(CONTENT_LENGTH, length);
        }
        if let Some(version) = version {
            headers.insert(VERSION_HEADER, version);
        }
        if let Some(authorization) = &self.protocol.authorization {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        if let Some(context) = current_trace()
            && let Ok(value) = HeaderValue::try_from(context.to_string())
        {
            headers.insert(TRACEPARENT, value);
        }
        Ok(request)
    }

    /// Send `request`; a failure to get an answer's head is the transport's error kind.
    async fn send(&self, request: Request<Bytes>) -> Result<Response<AnswerBody>, Error> {
        match &self.sender {
            Sender::Pooled(pool) => pool
                .request(request.map(Full::new))
                .await
                .map(|response| response.map(Either::Left))
                .map_err(|e| self.request_error(&e)),
            Sender::H2(transport) => {
                let (head, body) = request.into_parts();
                let body = Some(body).filter(|b| !b.is_empty());
                transport
                    .send(Request::from_parts(head, ()), body)
                    .await
                    .map(|response| response.map(Either::Right))
                    .map_err(|e| self.error(e.kind(), e.message()))
            }
        }
    }

    /// `{scheme}://{authority}{base path}{prefix}{galaxy}/{key}` (or `…{galaxy}` alone,
    /// without a key), escaped: only the path is built per request.
    fn uri(&self, prefix: &str, galaxy: &str, key: Option<&str>) -> Result<Uri, Error> {
        let dialect = self.protocol.dialect;
        // Room for every byte of the galaxy and the key as a 3-byte escape, and the `/`.
        let escaped = galaxy.len().saturating_add(key.map_or(0, str::len));
        let capacity = [
            self.base_path.len(),
            prefix.len(),
            escaped.saturating_mul(3),
            1,
        ]
        .into_iter()
        .fold(0, usize::saturating_add);
        let mut path = String::with_capacity(capacity);
        path.push_str(&self.base_path);
        path.push_str(prefix);
        dialect.encode_into(galaxy, &mut path);
        if let Some(key) = key {
            path.push('/');
            dialect.encode_into(key, &mut path);
        }
        let path =
            PathAndQuery::try_from(path).map_err(|e| self.error(ErrorKind::InvalidRequest, e))?;
        let mut parts = uri::Parts::default();
        parts.scheme = Some(self.scheme.clone());
        parts.authority = Some(self.authority.clone());
        parts.path_and_query = Some(path);
        Uri::from_parts(parts).map_err(|e| self.error(ErrorKind::InvalidRequest, e))
    }

    /// What a fetch's answer means (see [`HttpProtocol`]).
    async fn answer(&self, response: Response<AnswerBody>, deadline: Instant) -> FetchResult {
        let (parts, body) = response.into_parts();
        let galaxy_status = parts
            .headers
            .get(GALAXY_STATUS_HEADER)
            .map(|v| v.as_bytes());
        match parts.status {
            StatusCode::OK => self.value(&parts.headers, body, deadline).await.map(Some),
            StatusCode::NOT_FOUND if galaxy_status == Some(GALAXY_FOUND.as_bytes()) => {
                drain(body).await;
                self.no_such_key(&parts.headers)
            }
            StatusCode::INTERNAL_SERVER_ERROR => {
                // The owner's load failed: its message alone, as the owner's callers see
                // it. A body that cannot be read is no such answer: `?` keeps the read
                // failure's kind, and the asking node loads the key itself.
                let message = self.error_text(body).await?;
                Err(Error::new(ErrorKind::Remote, message))
            }
            status => Err(self
                .failure(status, &parts.headers, body, ErrorKind::Protocol)
                .await),
        }
    }

    /// What a write's answer means (see [`HttpProtocol`]).
    async fn write_answer(&self, response: Response<AnswerBody>) -> Result<(), Error> {
        let (parts, body) = response.into_parts();
        match parts.status {
            StatusCode::NO_CONTENT | StatusCode::OK => {
                drain(body).await;
                Ok(())
            }
            // Whatever the peer did, it did not confirm the write.
            status => Err(self
                .failure(status, &parts.headers, body, ErrorKind::Unavailable)
                .await),
        }
    }

    /// The error an answer of `status` is, its message the status and the body's start;
    /// `otherwise` for a status [`status_kind`] does not know.
    async fn failure(
        &self,
        status: StatusCode,
        headers: &HeaderMap,
        body: AnswerBody,
        otherwise: ErrorKind,
    ) -> Error {
        let text = match self.error_text(body).await {
            Ok(text) => text,
            Err(e) => format!("(unreadable body: {})", e.message()),
        };
        let kind = status_kind(status, headers, &text).unwrap_or(otherwise);
        self.error(kind, format!("{status}: {}", text.trim_end()))
    }

    /// What a `404` for a missing key means: a cached miss until the expiry it names, or
    /// without one (from a peer that predates cached misses, or a Go node) plain NotFound.
    fn no_such_key(&self, headers: &HeaderMap) -> FetchResult {
        let expires_at =
            read_expiry(headers).map_err(|why| self.error(ErrorKind::Protocol, why))?;
        Ok(expires_at.map(Value::absent))
    }

    /// The value of a `200`: its bytes in an allocation of their own, and its instants. An
    /// expiry in the past is no error: the owner answers so with a stale value.
    ///
    /// The body is read against the node's bound on bytes in flight, waiting for room
    /// until `deadline`; the bytes are held against it until the value is returned.
    async fn value(
        &self,
        headers: &HeaderMap,
        body: AnswerBody,
        deadline: Instant,
    ) -> Result<Value, Error> {
        let instants =
            Instants::read(headers).map_err(|why| self.error(ErrorKind::Protocol, why))?;
        let mut reservation = self.in_flight.empty();
        let limit = self.protocol.max_response_bytes;
        let body = read_value(body, limit, &mut reservation, deadline)
            .await
            .map_err(|e| self.read_error(e))?;
        let bytes = match self.protocol.dialect {
            Dialect::Galaxycache => body,
            Dialect::Groupcache => {
                // Decoding from a slice copies the value out of it, to its exact length:
                // the copy is in flight too.
                reservation
                    .grow(body.len() as u64, deadline)
                    .await
                    .map_err(|e| self.error(ErrorKind::Overloaded, e.message()))?;
                GetResponse::decode(&body[..])
                    .map_err(|e| self.error(ErrorKind::Protocol, format!("bad GetResponse: {e}")))?
                    .value
                    .unwrap_or_default()
            }
        };
        Ok(instants.apply(Value::new(bytes)))
    }

    /// The error a body that could not be read whole is.
    fn read_error(&self, e: ReadError) -> Error {
        match e {
            ReadError::TooLarge(why) => self.error(ErrorKind::TooLarge, format!("response {why}")),
            ReadError::Failed(e) => self.error(body_error_kind(&*e), error_chain(&*e)),
            ReadError::Overloaded(e) => self.error(ErrorKind::Overloaded, e.message()),
        }
    }

    /// The start of an error response's body (up to 64 KiB is read, the rest is not), as
    /// text for the error's message, [sanitized](sanitize_message): at most
    /// [`MAX_MESSAGE_LEN`](galaxycache_universe::MAX_MESSAGE_LEN) bytes, no control
    /// characters. The read failure if it cannot be read.
    async fn error_text(&self, mut body: AnswerBody) -> Result<String, Error> {
        let limit = MAX_ERROR_BODY.min(self.protocol.max_response_bytes);
        let mut text = Vec::new();
        while text.len() < limit {
            let Some(frame) = body.frame().await else {
                break;
            };
            let frame = frame.map_err(|e| self.error(body_error_kind(&*e), error_chain(&*e)))?;
            if let Ok(data) = frame.into_data() {
                let room = limit.saturating_sub(text.len());
                text.extend_from_slice(data.get(..room).unwrap_or(&data));
            }
        }
        Ok(sanitize_message(&String::from_utf8_lossy(&text)))
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

/// The error kind an answer of `status` (not a success) means, in fetches and writes alike;
/// `None` for a status this protocol gives no meaning (each verb says what that is).
fn status_kind(status: StatusCode, headers: &HeaderMap, text: &str) -> Option<ErrorKind> {
    let no_galaxy = headers
        .get(GALAXY_STATUS_HEADER)
        .is_some_and(|v| v == GALAXY_NOT_FOUND)
        || text.starts_with("no such group");
    Some(match status {
        StatusCode::NOT_FOUND if no_galaxy => ErrorKind::UnknownGalaxy,
        StatusCode::BAD_REQUEST | StatusCode::URI_TOO_LONG => ErrorKind::InvalidRequest,
        StatusCode::CONFLICT => ErrorKind::VersionMismatch,
        // The peer refused our credentials: a peer failure, not the owner's answer.
        StatusCode::UNAUTHORIZED => ErrorKind::Unauthenticated,
        // Reached, but the peer has no such verb (a Go node, an older build).
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED => ErrorKind::Unsupported,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::TooLarge,
        StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Overloaded,
        StatusCode::GATEWAY_TIMEOUT => ErrorKind::Timeout,
        // 502 and the like come from whatever stands between us and the peer: the peer did
        // not answer, so (for a fetch) this node loads the key itself.
        s if s.is_server_error() => ErrorKind::Unavailable,
        _ => return None,
    })
}

/// Read a body nobody needs to its end, so its connection goes back to the pool; a long
/// or broken one is dropped, and its connection with it.
async fn drain(mut body: AnswerBody) {
    let mut left = MAX_ERROR_BODY;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            let Some(rest) = left.checked_sub(data.len()) else {
                return;
            };
            left = rest;
        }
    }
}

/// The kind of a failure on an established connection: a response hyper could not parse is
/// a protocol error, the HTTP/2 client's errors say their kind; everything else (reset,
/// closed, cut short) is an unavailable peer.
fn body_error_kind(e: &(dyn StdError + 'static)) -> ErrorKind {
    let mut source: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(e) = err.downcast_ref::<Error>() {
            return e.kind();
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && (h.is_parse() || h.is_parse_status())
        {
            return ErrorKind::Protocol;
        }
        source = err.source();
    }
    ErrorKind::Unavailable
}
