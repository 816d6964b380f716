//! The server side: answers peers' fetches for a [`Universe`].

use std::borrow::Cow;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use galaxycache_universe::{
    BoxFuture, DEFAULT_MAX_RESPONSE_BYTES, Error, ErrorKind, FetchResult, GalaxyId, MAX_BATCH_KEYS,
    PeerAuth, PeerToken, TRACEPARENT, TlsAcceptor, TraceContext, Universe, Value, WriteOp,
    has_verified_peer, with_trace,
};
use http::header::{ALLOW, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;
use prost::Message as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;

use crate::body::{BoxError, ReadError, read_value};
use crate::dialect::{MAX_PATH_LEN, MISSING_KEY, Route};
use crate::headers::{
    GALAXY_FOUND, GALAXY_NOT_FOUND, GALAXY_STATUS_HEADER, Instants, TIMEOUT_HEADER, insert_expiry,
    insert_instants, parse_timeout, read_version,
};
use crate::limits::{ServerLimits, serve_accepting, serve_connection, serve_with_limits};
use crate::pb::GetResponse;
use crate::{Dialect, batch};

/// Room for a request's headers other than its path, in the HTTP/2 header list bound.
const H2_OTHER_HEADERS: usize = 16 * 1024;

/// How long a `PUT` from a peer that named no deadline waits for room among the node's
/// bytes in flight.
const NO_DEADLINE_WAIT: Duration = Duration::from_secs(10);

/// What the server answers with.
type Answer = Response<Full<Bytes>>;

/// Answers peers' fetches, peeks and writes for a [`Universe`], in one [`Dialect`].
///
/// It is a [`tower::Service`] for requests with any [`http_body::Body`] (hyper's, axum's),
/// answering with a `Answer`, so an application can mount it in its own
/// hyper or axum server, on one port with its other routes: route every path under the
/// dialect's [`Dialect::path_prefix`] and [`Dialect::peek_prefix`] to it. Or it runs on a
/// listener of its own with [`PeerService::serve`], which drives the same service. Only a
/// `PUT`'s body is read, whole, and at most [`max_request_bytes`](Self::max_request_bytes)
/// of it.
///
/// Cheap to clone. Answers:
///
/// | answer | when |
/// | --- | --- |
/// | `200` | with the value and its instants, to a `GET` (in the groupcache dialect, its expiry alone); a stale answer too, its expiry past; to a peek, only when the value is cached |
/// | `204` | a write (`DELETE`, `PUT`; see [`Dialect::Galaxycache`]) was applied |
/// | `400` | a malformed path, key or header ([`TIMEOUT_HEADER`](crate::TIMEOUT_HEADER), [`VERSION_HEADER`](crate::VERSION_HEADER), a `PUT`'s expiry, refresh or stale instant), an empty key, or a key longer than the universe's [`max_key_len`](Universe::max_key_len) |
/// | `404` | a missing key or galaxy (see [`GALAXY_STATUS_HEADER`](crate::GALAXY_STATUS_HEADER)), a key a peek does not find cached (a missing key), or a path outside the prefixes; a cached miss is a missing key with its expiry (galaxycache dialect) |
/// | `405` | another method than `GET`, `PUT` and `DELETE`; on the peek path, and in the groupcache dialect, another than `GET` |
/// | `401` | credentials are configured ([`token`](Self::token), [`tls`](Self::tls)) and the request has neither the token nor a verified client certificate |
/// | `409` | the galaxy has another version than the request names (absent: 0) |
/// | `413` | a `PUT` body over [`max_request_bytes`](Self::max_request_bytes) |
/// | `500` | the load failed, with the error's text (and, in the galaxycache dialect, [`GALAXY_STATUS_HEADER`](crate::GALAXY_STATUS_HEADER) `Found`, as Go's galaxycache sends it) |
/// | `501` | the galaxy cannot apply writes |
/// | `503` | the universe is at its bound of concurrent serves |
/// | `504` | the asking peer's deadline passed (the universe enforces it; a `PUT` body that has not arrived by then is refused too) |
///
/// (hyper itself answers `414` to a path over 65,534 bytes.) An answer that is not a `2xx`
/// has changed nothing.
///
/// In the groupcache dialect a missing key is a `404` with `X-Galaxycache-Galaxy-Status:
/// Found` too. golang/groupcache has no such answer (its servers send `500` with the
/// getter's error text), but its clients treat every non-`200` alike, as a failure to fall
/// back from, so Go nodes lose nothing, while Rust nodes of a mixed ring tell NotFound
/// from a failed load without guessing from error text. For the same reason a value's expiry
/// travels in this dialect too ([`EXPIRES_MS_HEADER`](crate::EXPIRES_MS_HEADER) and
/// `Expires`): Go ignores it, Rust clients honour it.
#[derive(Clone, Debug)]
pub struct PeerService {
    universe: Universe,
    dialect: Dialect,
    max_request_bytes: usize,
    auth: PeerAuth,
    tls: Option<TlsAcceptor>,
    /// Whether this clone serves a connection whose client certificate was verified.
    verified: bool,
}

/// What a request of the peer protocol names.
struct Asked<'a> {
    galaxy: Cow<'a, str>,
    /// `None` when the path has no key segment (a flush).
    key: Option<Cow<'a, str>>,
    version: u32,
    /// When the asking peer stops waiting, if it said.
    deadline: Option<Instant>,
}

impl Asked<'_> {
    fn galaxy(&self) -> GalaxyId<'_> {
        GalaxyId::new(&self.galaxy, self.version)
    }
}

impl PeerService {
    /// A service answering for the galaxies of `universe`.
    pub fn new(universe: Universe, dialect: Dialect) -> Self {
        PeerService {
            universe,
            dialect,
            max_request_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            auth: PeerAuth::default(),
            tls: None,
            verified: false,
        }
    }

    /// Serve over mTLS: [`serve`](Self::serve) completes a TLS handshake on every
    /// connection with `acceptor`, which requires a client certificate signed by the CA
    /// (and re-reads its files when they change). From then on every request needs
    /// credentials: a service mounted in an application's own server (which knows nothing
    /// of its connections' certificates) answers only requests with the
    /// [`token`](Self::token). Default: none, plain HTTP.
    pub fn tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self.auth = self.auth.mtls(true);
        self
    }

    /// Accept requests that carry `token` as `Authorization: Bearer <token>`; once set,
    /// every request (get, peek, remove, set, flush) needs it, or a connection whose client
    /// certificate was verified ([`tls`](Self::tls)). Others are answered `401` and change
    /// nothing. Default: none; with neither a token nor TLS every request is served.
    pub fn token(mut self, token: PeerToken) -> Self {
        self.auth = self.auth.token(Some(token));
        self
    }

    /// Largest request body (a `PUT`'s value) accepted; a larger one is answered `413`,
    /// refused from its `Content-Length` or as soon as that many bytes have arrived.
    /// Default: [`DEFAULT_MAX_RESPONSE_BYTES`] (64 MiB), the largest value a peer's client
    /// accepts by default.
    pub fn max_request_bytes(mut self, bytes: usize) -> Self {
        self.max_request_bytes = bytes;
        self
    }

    /// Serve peers on `listener` until `shutdown` resolves, then stop accepting, let the
    /// requests in progress finish, and return once every connection is closed. Accepts
    /// HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same port; sets `TCP_NODELAY`.
    /// It runs under the default [`ServerLimits`] (see
    /// [`serve_limited`](Self::serve_limited)), with room in the header bound for the
    /// longest path of the peer protocol. With [`tls`](Self::tls), every connection starts
    /// with a TLS handshake that requires a client certificate signed by the CA; one that
    /// fails is closed before any request. A connection counts against the connection bound
    /// from its handshake on.
    ///
    /// A request in progress ends at the asking peer's deadline when it sent one; wrap this
    /// future in a timeout to bound the wait for the others.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        self.serve_limited(listener, ServerLimits::default(), shutdown)
            .await;
    }

    /// [`serve`](Self::serve) under `limits`. Their header bound is raised, when lower, to
    /// what the longest path of the peer protocol needs. They apply to TLS connections
    /// too.
    pub async fn serve_limited(
        self,
        listener: TcpListener,
        limits: ServerLimits,
        shutdown: impl Future<Output = ()>,
    ) {
        let limits = for_peer_paths(limits);
        match self.tls.clone() {
            None => serve_with_limits(listener, self, limits, shutdown).await,
            Some(acceptor) => {
                let accept = |stream| self.clone().handshake(acceptor.clone(), stream);
                serve_accepting(listener, limits, accept, shutdown).await;
            }
        }
    }

    /// Serve peers on one connection that is already open, `io`: any tokio byte stream (a
    /// socket accepted by a server loop of the application's own, an in-memory pipe, a
    /// simulated network's TCP stream), until the peer closes it or it has been idle for
    /// [`SERVER_IDLE_TIMEOUT`](crate::SERVER_IDLE_TIMEOUT). HTTP/1.1 and HTTP/2 with prior
    /// knowledge (h2c), under the per-connection limits of the default [`ServerLimits`]
    /// (header read timeout, idle timeout, HTTP/2 streams, header bound raised for the
    /// peer protocol's longest path) and its bound of requests in flight, counted for this
    /// connection alone; the bounds across connections are the caller's. The stream is
    /// spoken to as it is: no TLS handshake is made, so with [`tls`](Self::tls) only
    /// requests with the [`token`](Self::token) are answered, as in a mounted service.
    pub async fn serve_connection<I>(self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = for_peer_paths(ServerLimits::default());
        let requests = Arc::new(Semaphore::new(limits.max_requests_in_flight));
        let builder = limits.builder();
        serve_connection(&builder, io, self, requests, limits.idle_timeout, None).await;
    }

    /// The TLS handshake of one accepted connection, and this service for it, knowing
    /// whether its client certificate was verified; `None` (the connection is closed,
    /// nothing served) when the handshake fails.
    async fn handshake(
        mut self,
        acceptor: TlsAcceptor,
        stream: TcpStream,
    ) -> Option<(TlsStream<TcpStream>, Self)> {
        match acceptor.accept(stream).await {
            Ok(stream) => {
                self.verified = has_verified_peer(&stream);
                Some((stream, self))
            }
            Err(e) => {
                tracing::debug!(error = %e, "peer server: TLS handshake failed");
                None
            }
        }
    }

    /// Answer one request. Never fails and never panics: bad input is an error status, and
    /// changes nothing.
    async fn respond<B>(&self, parts: Parts, body: B) -> Answer
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let authorization = parts.headers.get(AUTHORIZATION).map(HeaderValue::as_bytes);
        if !self.auth.admits(self.verified, authorization) {
            return unauthorized();
        }
        let Some((route, rest)) = self.dialect.route(parts.uri.path()) else {
            return text(StatusCode::NOT_FOUND, "not found".into());
        };
        if !self.has_verb(route, &parts.method) {
            return self.method_not_allowed(route);
        }
        let asked = match self.asked(rest, &parts.headers) {
            Ok(asked) => asked,
            Err(why) => return self.bad_request(why),
        };
        // The asking node's trace goes on here; a malformed `traceparent` is ignored.
        let trace = parts
            .headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<TraceContext>().ok());
        let answer = async {
            match (route, parts.method) {
                (Route::Peek, _) => self.peek(&asked),
                (Route::Batch, _) => self.batch(&asked, body).await,
                (Route::Main, Method::GET) => self.get(&asked).await,
                (Route::Main, Method::PUT) => self.put(&asked, &parts.headers, body).await,
                (Route::Main, _) => self.delete(&asked),
            }
        };
        with_trace(trace, answer).await
    }

    /// What a request's path and headers name; why not, when any is malformed.
    fn asked<'a>(&self, rest: &'a str, headers: &HeaderMap) -> Result<Asked<'a>, &'static str> {
        let (galaxy, key) = self.dialect.decode_target(rest)?;
        let version = read_version(headers)?;
        let deadline = match headers.get(TIMEOUT_HEADER) {
            None => None,
            Some(v) => parse_timeout(v, Instant::now())
                .map_err(|()| "malformed X-Galaxycache-Timeout-Ms header")?,
        };
        Ok(Asked {
            galaxy,
            key,
            version,
            deadline,
        })
    }

    /// A `GET`: the value, from the universe, which checks the key and answers Timeout
    /// once the deadline passes.
    async fn get(&self, asked: &Asked<'_>) -> Answer {
        let Some(key) = &asked.key else {
            return self.bad_request(MISSING_KEY);
        };
        let result = self
            .universe
            .serve_get(asked.galaxy(), key, asked.deadline)
            .await;
        self.answer(&asked.galaxy, result)
    }

    /// A batch fetch (a `POST` under [`Dialect::batch_prefix`]): the keys of the body, each
    /// answered as a `GET` of it would be, in one framed body (see the `batch` module).
    async fn batch<B>(&self, asked: &Asked<'_>, body: B) -> Answer
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        if asked.key.is_some() {
            return self.bad_request("the path must be {prefix}{galaxy}");
        }
        let keys = match self.request_body(body, asked.deadline).await {
            Ok(body) => match batch::decode_keys(&body, MAX_BATCH_KEYS) {
                Ok(keys) => keys,
                Err(why) => return self.bad_request(&why),
            },
            Err(e) => return self.failed(&asked.galaxy, &e),
        };
        let results = self
            .universe
            .serve_get_many(asked.galaxy(), &keys, asked.deadline)
            .await;
        match results {
            Ok(results) => {
                let mut response = Response::new(Full::new(batch::encode_results(&results)));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(batch::CONTENT_TYPE));
                response
            }
            Err(e) => self.failed(&asked.galaxy, &e),
        }
    }

    /// A peek (a `GET` under [`Dialect::peek_prefix`]): the value only if the galaxy has it
    /// cached, from the universe, which checks the key and never loads. Answered as a `GET`
    /// is; a key not cached is a missing key.
    fn peek(&self, asked: &Asked<'_>) -> Answer {
        let Some(key) = &asked.key else {
            return self.bad_request(MISSING_KEY);
        };
        let result = self.universe.serve_peek(asked.galaxy(), key);
        self.answer(&asked.galaxy, result)
    }

    /// A `DELETE`: remove the key, or flush the galaxy when the path names no key.
    fn delete(&self, asked: &Asked<'_>) -> Answer {
        let op = match &asked.key {
            Some(key) => WriteOp::Remove(key),
            None => WriteOp::Flush,
        };
        self.written(asked, self.universe.serve_write(asked.galaxy(), op))
    }

    /// A `PUT`: read the value whole (bounded in size, and by the deadline), then set the
    /// key to it.
    async fn put<B>(&self, asked: &Asked<'_>, headers: &HeaderMap, body: B) -> Answer
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let Some(key) = &asked.key else {
            return self.bad_request(MISSING_KEY);
        };
        let value = match self.value_of(headers, body, asked.deadline).await {
            Ok(value) => value,
            Err(e) => return self.failed(&asked.galaxy, &e),
        };
        let op = WriteOp::Set(key, &value);
        self.written(asked, self.universe.serve_write(asked.galaxy(), op))
    }

    /// The value a `PUT` carries: the body, copied to an allocation of its own length (the
    /// galaxy may cache it), and the instants its headers name (expiry, refresh, stale
    /// limit), read before the body. Refused as
    /// [`ErrorKind::InvalidRequest`], [`ErrorKind::TooLarge`] or, when the deadline passes
    /// before the body has arrived, [`ErrorKind::Timeout`].
    async fn value_of<B>(
        &self,
        headers: &HeaderMap,
        body: B,
        deadline: Option<Instant>,
    ) -> Result<Value, Error>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let instants =
            Instants::read(headers).map_err(|why| Error::new(ErrorKind::InvalidRequest, why))?;
        let bytes = self.request_body(body, deadline).await?;
        Ok(instants.apply(Value::new(bytes)))
    }

    /// A request's body (a `PUT`'s value, a batch's keys), whole, in an allocation of its
    /// own length: read against the node's bound on bytes in flight (held until it is
    /// returned; a peer that names no deadline gets [`NO_DEADLINE_WAIT`] for the wait) and
    /// within [`max_request_bytes`](Self::max_request_bytes). Refused as
    /// [`ErrorKind::TooLarge`], [`ErrorKind::Overloaded`], [`ErrorKind::InvalidRequest`]
    /// (it could not be read) or, when the deadline passes before the body has arrived,
    /// [`ErrorKind::Timeout`].
    async fn request_body<B>(&self, body: B, deadline: Option<Instant>) -> Result<Bytes, Error>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let mut reservation = self.universe.in_flight().empty();
        let now = Instant::now();
        let wait_until =
            deadline.unwrap_or_else(|| now.checked_add(NO_DEADLINE_WAIT).unwrap_or(now));
        let read = read_value(body, self.max_request_bytes, &mut reservation, wait_until);
        let read = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, read).await.map_err(|_| {
                let why = "the asking peer's deadline passed before the body arrived";
                Error::new(ErrorKind::Timeout, why)
            })?,
            None => read.await,
        };
        read.map_err(|e| match e {
            ReadError::TooLarge(why) => Error::new(ErrorKind::TooLarge, why),
            ReadError::Overloaded(e) => e,
            ReadError::Failed(e) => Error::new(
                ErrorKind::InvalidRequest,
                format!("the body could not be read: {e}"),
            ),
        })
    }

    /// The answer to a write: `204` once applied.
    fn written(&self, asked: &Asked<'_>, result: Result<(), Error>) -> Answer {
        match result {
            Ok(()) => no_content(),
            Err(e) => self.failed(&asked.galaxy, &e),
        }
    }

    /// The methods this dialect has on `route`, as an `Allow` header lists them: `GET`
    /// everywhere, and the write verbs `PUT` and `DELETE` on the galaxycache dialect's main
    /// route (golang/groupcache has no write verbs; a peek is a `GET`).
    fn allowed(&self, route: Route) -> &'static str {
        match (self.dialect, route) {
            (Dialect::Galaxycache, Route::Main) => "GET, PUT, DELETE",
            (_, Route::Batch) => "POST",
            _ => "GET",
        }
    }

    /// Whether this dialect has `method` on `route` ([`allowed`](Self::allowed)).
    fn has_verb(&self, route: Route, method: &Method) -> bool {
        self.allowed(route)
            .split(", ")
            .any(|allowed| allowed == method.as_str())
    }

    /// `405`, naming the methods this dialect has on `route`.
    fn method_not_allowed(&self, route: Route) -> Answer {
        let allowed = self.allowed(route);
        let mut response = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("only {allowed} allowed"),
        );
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allowed));
        response
    }

    /// The answer to a `GET`.
    fn answer(&self, galaxy: &str, result: FetchResult) -> Answer {
        match result {
            Ok(Some(value)) if value.is_absent() => self.no_such_key(&value),
            Ok(Some(value)) => self.value(value),
            Ok(None) => no_such_key(),
            Err(e) => self.failed(galaxy, &e),
        }
    }

    /// The answer for a cached miss: the `404` of a missing key, and in the galaxycache
    /// dialect its expiry too ([`insert_expiry`]), so the asking peer caches the miss as
    /// long; the groupcache dialect answers as for any missing key.
    fn no_such_key(&self, absent: &Value) -> Answer {
        let mut response = no_such_key();
        if let (Dialect::Galaxycache, Some(at)) = (self.dialect, absent.expires_at()) {
            insert_expiry(response.headers_mut(), at);
        }
        response
    }

    /// The answer to a request the universe refused, or whose load or write failed.
    fn failed(&self, galaxy: &str, e: &Error) -> Answer {
        let status = match e.kind() {
            ErrorKind::UnknownGalaxy => {
                let body = match self.dialect {
                    Dialect::Galaxycache => e.message().to_owned(),
                    Dialect::Groupcache => format!("no such group: {galaxy}"),
                };
                return galaxy_status(text(StatusCode::NOT_FOUND, body), GALAXY_NOT_FOUND);
            }
            ErrorKind::InvalidRequest => return self.bad_request(e.message()),
            ErrorKind::VersionMismatch => StatusCode::CONFLICT,
            ErrorKind::Unauthenticated => return unauthorized(),
            ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Remote => {
                tracing::debug!(galaxy, error = %e, "peer server: load failed");
                return self.load_failed(e);
            }
            _ => {
                tracing::debug!(galaxy, error = %e, "peer server: request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        text(status, e.to_string())
    }

    /// The `500` of a failed load: the error's own message alone, as groupcache sends it, so
    /// the asking node hands its callers the same error this node's callers get. In the
    /// galaxycache dialect it says the galaxy exists, as galaxycache (Go) does.
    fn load_failed(&self, e: &Error) -> Answer {
        let response = text(StatusCode::INTERNAL_SERVER_ERROR, e.message().to_owned());
        match self.dialect {
            Dialect::Galaxycache => galaxy_status(response, GALAXY_FOUND),
            Dialect::Groupcache => response,
        }
    }

    /// The `200` answer carrying `value`: in the galaxycache dialect its bytes and all its
    /// instants ([`insert_instants`]); in the groupcache dialect a `GetResponse` and its
    /// expiry alone.
    fn value(&self, value: Value) -> Answer {
        let mut headers = HeaderMap::new();
        let (content_type, body) = match self.dialect {
            Dialect::Galaxycache => {
                insert_instants(&mut headers, &value);
                ("application/octet-stream", value.into_bytes())
            }
            Dialect::Groupcache => {
                if let Some(at) = value.expires_at() {
                    insert_expiry(&mut headers, at);
                }
                // Encoding copies the value once into the message; a known cost of this
                // dialect (the galaxycache dialect sends the cached bytes themselves).
                let message = GetResponse {
                    value: Some(value.into_bytes()),
                    minute_qps: None,
                };
                (
                    "application/x-protobuf",
                    Bytes::from(message.encode_to_vec()),
                )
            }
        };
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        let mut response = Response::new(Full::new(body));
        *response.headers_mut() = headers;
        response
    }

    fn bad_request(&self, why: &str) -> Answer {
        let body = match self.dialect {
            Dialect::Galaxycache => why.to_owned(),
            // Go's servers say exactly "bad request"; the detail follows for humans.
            Dialect::Groupcache => format!("bad request: {why}"),
        };
        text(StatusCode::BAD_REQUEST, body)
    }
}

impl<B> tower::Service<Request<B>> for PeerService
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Answer;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let this = self.clone();
        Box::pin(async move { Ok(this.respond(parts, body).await) })
    }
}

/// `limits` with their header bound raised, when lower, to what the longest path of the
/// peer protocol needs: hyper's default of 16 KiB would refuse the long paths of long keys
/// over h2c.
fn for_peer_paths(limits: ServerLimits) -> ServerLimits {
    let h2_header_list = u32::try_from(MAX_PATH_LEN + H2_OTHER_HEADERS).unwrap_or(u32::MAX);
    limits.max_header_list_bytes(limits.max_header_list_bytes.max(h2_header_list))
}

/// `204 No Content`: a write was applied.
fn no_content() -> Answer {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// A `text/plain` response, newline-terminated as Go's `http.Error` writes it.
fn text(status: StatusCode, mut body: String) -> Answer {
    body.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The `404` of a missing key in a galaxy that exists.
fn no_such_key() -> Answer {
    galaxy_status(
        text(StatusCode::NOT_FOUND, "no such key".into()),
        GALAXY_FOUND,
    )
}

fn galaxy_status(mut response: Answer, status: &'static str) -> Answer {
    response
        .headers_mut()
        .insert(GALAXY_STATUS_HEADER, HeaderValue::from_static(status));
    response
}

/// `401`: the request carries neither a verified client certificate nor the token.
fn unauthorized() -> Answer {
    let mut response = text(StatusCode::UNAUTHORIZED, "peer credentials needed".into());
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}
