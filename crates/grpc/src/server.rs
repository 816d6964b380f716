//! The server side: the `GalaxyCache` service over a [`Universe`], and a server that runs
//! it alone on a listener.

use std::future::Future;

use galaxycache_universe::{
    DEFAULT_MAX_RESPONSE_BYTES, Error, ErrorKind, FetchResult, GalaxyId, PeerAuth, PeerToken,
    TRACEPARENT, TlsAcceptor, TraceContext, Universe, Value, WriteOp, with_trace,
};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// The metadata entry carrying `Bearer <token>`.
pub(crate) const AUTHORIZATION: &str = "authorization";

use crate::pb::galaxy_cache_server::{GalaxyCache, GalaxyCacheServer};
use crate::pb::key_answer::Answer;
use crate::pb::{
    FlushRequest, FlushResponse, GetManyRequest, GetManyResponse, GetRequest, GetResponse,
    KeyAnswer, KeyError, NotFound, PeekRequest, PeekResponse, RemoveRequest, RemoveResponse,
    SetRequest, SetResponse,
};
use crate::status::{not_found, status_from_error};
use crate::tls::{PeerCertificate, accept_tls};
use crate::wire::{WireInstants, key_str, request_timeout, set_value_from_wire};

/// Default of [`GrpcServer::max_concurrent_streams`]: 256.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 256;
/// Default of [`GrpcServer::max_header_list_bytes`]: 96 KiB.
pub const DEFAULT_MAX_HEADER_LIST_BYTES: u32 = 96 * 1024;
/// Default of [`GrpcServer::concurrency_limit_per_connection`].
const DEFAULT_CONCURRENCY_PER_CONNECTION: usize = 256;

/// Room in a request message for the galaxy name, the version, an expiry and the field
/// tags, beyond the longest key and the largest value.
const REQUEST_OVERHEAD: usize = 4096;

/// The tonic service answering peers from `universe`'s galaxies, with the default bounds of
/// [`GrpcServer`], to add to an application's own tonic router:
///
/// ```no_run
/// # async fn run(universe: galaxycache::universe::Universe) -> Result<(), Box<dyn std::error::Error>> {
/// use galaxycache::grpc::tonic::transport::Server;
///
/// Server::builder()
///     .add_service(galaxycache::grpc::service(universe))
///     .serve("127.0.0.1:7001".parse()?)
///     .await?;
/// # Ok(()) }
/// ```
///
/// Other bounds: `GrpcServer::new(universe).max_value_bytes(n).service()`.
pub fn service(universe: Universe) -> GalaxyCacheServer<GalaxyCacheService> {
    GrpcServer::new(universe).service()
}

/// The `galaxycachepb.GalaxyCache` service: answers `GetFromPeer` with
/// [`Universe::serve_get`], `PeekPeer` with [`Universe::serve_peek`], and `Remove`, `Set`
/// and `Flush` with [`Universe::serve_write`], each at the request's galaxy version.
///
/// | outcome | status |
/// | --- | --- |
/// | a value | OK, with the value's expiry, refresh and stale limit (`expiry`, `refresh`, `stale_until`; an expiry may have passed: a stale answer); `minute_qps` is always 0 (not tracked) |
/// | a write applied | OK, with an empty message |
/// | no such key (or, for a peek, not cached) | NOT_FOUND (never for a write) |
/// | a cached miss ([`Value::absent`]) | NOT_FOUND, with metadata `galaxycache-expires-ms: <unix ms>`, its expiry |
/// | unknown galaxy | INVALID_ARGUMENT, with metadata `galaxycache-galaxy-status: not-found` |
/// | empty, oversized or non-UTF-8 key; a set's expiry, refresh or stale limit outside `Timestamp`'s range | INVALID_ARGUMENT, with metadata `galaxycache-galaxy-status: found` |
/// | the galaxy is at another version than the request's | FAILED_PRECONDITION, the message naming both |
/// | a request message over the bound (see [`GrpcServer::max_value_bytes`]) | OUT_OF_RANGE, from tonic's decoder, before the message is read |
/// | the galaxy cannot apply the write | UNIMPLEMENTED |
/// | the universe's bound of concurrent work reached | RESOURCE_EXHAUSTED |
/// | the load outlived the caller's `grpc-timeout` | DEADLINE_EXCEEDED or CANCELLED |
/// | the load failed | INTERNAL, with the load error's own message |
/// | credentials configured ([`GrpcServer::token`], [`GrpcServer::tls`]) and the call has neither the token nor a verified client certificate | UNAUTHENTICATED, nothing applied |
///
/// The caller's `grpc-timeout` becomes the deadline given to
/// [`Universe::serve_get`], which enforces it.
#[derive(Clone, Debug)]
pub struct GalaxyCacheService {
    universe: Universe,
    auth: PeerAuth,
}

impl GalaxyCacheService {
    /// The service over `universe`; [`service`] makes it, with its request size bound.
    fn new(universe: Universe, auth: PeerAuth) -> Self {
        GalaxyCacheService { universe, auth }
    }

    /// UNAUTHENTICATED unless `request` came over a connection whose client certificate
    /// was verified, or carries the token, when credentials are configured.
    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        let verified = request
            .extensions()
            .get::<PeerCertificate>()
            .is_some_and(|peer| peer.verified);
        let authorization = request.metadata().get(AUTHORIZATION).map(|v| v.as_bytes());
        if self.auth.admits(verified, authorization) {
            Ok(())
        } else {
            Err(Status::unauthenticated("peer credentials needed"))
        }
    }

    /// Apply a peer's write to galaxy `galaxy` at `version`; `answer` once applied.
    fn write<T>(
        &self,
        galaxy: &str,
        version: u32,
        op: WriteOp<'_>,
        answer: T,
    ) -> Result<Response<T>, Status> {
        self.universe
            .serve_write(GalaxyId::new(galaxy, version), op)
            .map(|()| Response::new(answer))
            .map_err(|e| status_from_error(&e))
    }
}

fn deadline_of<T>(request: &Request<T>) -> Option<Instant> {
    request_timeout(request.metadata()).and_then(|t| Instant::now().checked_add(t))
}

/// The trace context a request's `traceparent` metadata carries; none when it is
/// missing or malformed.
fn trace_of<T>(request: &Request<T>) -> Option<TraceContext> {
    let value = request.metadata().get(TRACEPARENT)?;
    value.to_str().ok()?.parse().ok()
}

/// The answer to a get or a peek: the `message` of a value; NOT_FOUND for a missing key,
/// and for a cached miss with the instant it holds until.
fn answer<T>(result: FetchResult, message: impl FnOnce(Value) -> T) -> Result<Response<T>, Status> {
    match result {
        Ok(Some(value)) if value.is_absent() => Err(not_found(value.expires_at())),
        Ok(Some(value)) => Ok(Response::new(message(value))),
        Ok(None) => Err(not_found(None)),
        Err(e) => Err(status_from_error(&e)),
    }
}

/// The `GetResponse` carrying `value` and its instants.
fn get_response(value: Value) -> GetResponse {
    let WireInstants {
        expiry,
        refresh,
        stale_until,
    } = WireInstants::of(&value);
    GetResponse {
        value: value.into_bytes(),
        minute_qps: 0.0,
        expiry,
        refresh,
        stale_until,
    }
}

/// One key's answer in a `GetMany`: what `GetFromPeer` would have answered for it.
fn key_answer(result: FetchResult) -> KeyAnswer {
    let answer = match result {
        Ok(Some(value)) if value.is_absent() => Answer::NotFound(NotFound {
            expiry: WireInstants::of(&value).expiry,
        }),
        Ok(Some(value)) => Answer::Value(get_response(value)),
        Ok(None) => Answer::NotFound(NotFound { expiry: None }),
        Err(e) => {
            let status = status_from_error(&e);
            Answer::Error(KeyError {
                code: status.code() as i32,
                message: status.message().to_owned(),
            })
        }
    };
    KeyAnswer {
        answer: Some(answer),
    }
}

/// A request's key, or the INVALID_ARGUMENT status a key that is not UTF-8 gets.
fn request_key(key: &[u8]) -> Result<&str, Status> {
    key_str(key).map_err(|e| status_from_error(&e))
}

#[tonic::async_trait]
impl GalaxyCache for GalaxyCacheService {
    async fn get_from_peer(
        &self,
        request: Request<GetRequest>,
    ) -> Result<Response<GetResponse>, Status> {
        self.authorize(&request)?;
        let deadline = deadline_of(&request);
        let trace = trace_of(&request);
        let request = request.into_inner();
        let key = request_key(&request.key)?;
        let galaxy = GalaxyId::new(&request.galaxy, request.version);
        let serve = self.universe.serve_get(galaxy, key, deadline);
        let result = with_trace(trace, serve).await;
        answer(result, get_response)
    }

    async fn get_many(
        &self,
        request: Request<GetManyRequest>,
    ) -> Result<Response<GetManyResponse>, Status> {
        self.authorize(&request)?;
        let deadline = deadline_of(&request);
        let trace = trace_of(&request);
        let request = request.into_inner();
        let keys = request
            .keys
            .iter()
            .map(|key| request_key(key))
            .collect::<Result<Vec<_>, _>>()?;
        let galaxy = GalaxyId::new(&request.galaxy, request.version);
        let serve = self.universe.serve_get_many(galaxy, &keys, deadline);
        let results = with_trace(trace, serve)
            .await
            .map_err(|e| status_from_error(&e))?;
        let answers = results.into_iter().map(key_answer).collect();
        Ok(Response::new(GetManyResponse { answers }))
    }

    async fn peek_peer(
        &self,
        request: Request<PeekRequest>,
    ) -> Result<Response<PeekResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        let key = request_key(&request.key)?;
        let galaxy = GalaxyId::new(&request.galaxy, request.version);
        answer(self.universe.serve_peek(galaxy, key), |value| {
            let WireInstants {
                expiry,
                refresh,
                stale_until,
            } = WireInstants::of(&value);
            PeekResponse {
                value: value.into_bytes(),
                expiry,
                refresh,
                stale_until,
            }
        })
    }

    async fn remove(
        &self,
        request: Request<RemoveRequest>,
    ) -> Result<Response<RemoveResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        let op = WriteOp::Remove(request_key(&request.key)?);
        self.write(&request.galaxy, request.version, op, RemoveResponse {})
    }

    async fn set(&self, request: Request<SetRequest>) -> Result<Response<SetResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        let key = request_key(&request.key)?;
        let instants = WireInstants {
            expiry: request.expiry,
            refresh: request.refresh,
            stale_until: request.stale_until,
        };
        let value =
            set_value_from_wire(&request.value, instants).map_err(|e| status_from_error(&e))?;
        let op = WriteOp::Set(key, &value);
        self.write(&request.galaxy, request.version, op, SetResponse {})
    }

    async fn flush(
        &self,
        request: Request<FlushRequest>,
    ) -> Result<Response<FlushResponse>, Status> {
        self.authorize(&request)?;
        let request = request.into_inner();
        self.write(
            &request.galaxy,
            request.version,
            WriteOp::Flush,
            FlushResponse {},
        )
    }
}

/// Runs the [`service`] of a universe alone on a listener.
///
/// ```no_run
/// # async fn run(universe: galaxycache::universe::Universe) -> Result<(), galaxycache::universe::Error> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:7001").await.unwrap();
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let server = tokio::spawn(
///     galaxycache::grpc::GrpcServer::new(universe).serve(listener, async {
///         stopped.await.ok();
///     }),
/// );
/// // ... later:
/// stop.send(()).ok();
/// server.await.unwrap()
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct GrpcServer {
    universe: Universe,
    max_value_bytes: usize,
    max_concurrent_streams: u32,
    max_header_list_bytes: u32,
    concurrency_per_connection: usize,
    auth: PeerAuth,
    tls: Option<TlsAcceptor>,
}

impl GrpcServer {
    /// A server for `universe`'s galaxies. Requests on one connection are not bounded
    /// here: the universe's
    /// [`max_concurrent_serves`](galaxycache_universe::UniverseBuilder::max_concurrent_serves)
    /// refuses work beyond its bound across all connections.
    pub fn new(universe: Universe) -> Self {
        GrpcServer {
            universe,
            max_value_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            max_header_list_bytes: DEFAULT_MAX_HEADER_LIST_BYTES,
            concurrency_per_connection: DEFAULT_CONCURRENCY_PER_CONNECTION,
            auth: PeerAuth::default(),
            tls: None,
        }
    }

    /// HTTP/2 streams (calls) open at once on one connection; a client opening more waits
    /// for one to end. Default: 256 ([`DEFAULT_MAX_CONCURRENT_STREAMS`]).
    pub fn max_concurrent_streams(mut self, n: u32) -> Self {
        self.max_concurrent_streams = n.max(1);
        self
    }

    /// Largest HTTP/2 header list of a call. Default: 96 KiB
    /// ([`DEFAULT_MAX_HEADER_LIST_BYTES`]).
    pub fn max_header_list_bytes(mut self, bytes: u32) -> Self {
        self.max_header_list_bytes = bytes;
        self
    }

    /// Calls handled at once per connection. Default: 256.
    pub fn concurrency_limit_per_connection(mut self, n: usize) -> Self {
        self.concurrency_per_connection = n.max(1);
        self
    }

    /// Serve over mTLS: [`serve`](Self::serve) completes a TLS handshake on every
    /// connection with `acceptor`, which requires a client certificate signed by the CA
    /// (and re-reads its files when they change). From then on every call needs
    /// credentials: the [`service`](Self::service) mounted in an application's own router
    /// answers only calls with the [`token`](Self::token). Default: none, plain HTTP/2.
    pub fn tls(mut self, acceptor: TlsAcceptor) -> Self {
        self.tls = Some(acceptor);
        self.auth = self.auth.mtls(true);
        self
    }

    /// Accept calls whose `authorization` metadata is `Bearer <token>`; once set, every
    /// call (get, peek, remove, set, flush) needs it, or a connection whose client
    /// certificate was verified ([`tls`](Self::tls)). Others are answered UNAUTHENTICATED
    /// and change nothing. Default: none; with neither a token nor TLS every call is served.
    pub fn token(mut self, token: PeerToken) -> Self {
        self.auth = self.auth.token(Some(token));
        self
    }

    /// Largest value a peer may `Set`. Default: 64 MiB
    /// ([`DEFAULT_MAX_RESPONSE_BYTES`], the one value bound of every protocol, so a value
    /// that a client accepts can be set too).
    ///
    /// The bound is on whole request messages, as tonic's decoder enforces it: the
    /// universe's [`max_key_len`](Universe::max_key_len) plus this plus 4 KiB for the galaxy
    /// name, the expiry and the field tags. A set of the longest key and a value of this
    /// size always fits; a larger message is refused (OUT_OF_RANGE) from its length prefix,
    /// before it is read. One bound serves all RPCs, since tonic bounds a service, not a
    /// method (a get that large is decoded, then refused by the key check); a set needs it
    /// anyway, so a per-method bound would not lower what a peer can make this node buffer.
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }

    /// The largest request message this server decodes.
    fn max_request_bytes(&self) -> usize {
        self.universe
            .max_key_len()
            .saturating_add(self.max_value_bytes)
            .saturating_add(REQUEST_OVERHEAD)
    }

    /// The tonic service of this server, with its request bound, to add to an
    /// application's own router (as [`service`], with this server's bounds).
    pub fn service(&self) -> GalaxyCacheServer<GalaxyCacheService> {
        let service = GalaxyCacheService::new(self.universe.clone(), self.auth.clone());
        GalaxyCacheServer::new(service).max_decoding_message_size(self.max_request_bytes())
    }

    /// Serve HTTP/2 gRPC on `listener` until `shutdown` completes, then stop accepting,
    /// let the requests in progress finish, and return. With [`tls`](Self::tls), every
    /// connection starts with a TLS handshake requiring a client certificate signed by the
    /// CA; a connection whose handshake fails is closed before any call.
    ///
    /// A connection that speaks something else, or sends malformed frames or messages,
    /// gets an error on that connection or that call; the server goes on serving others.
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> Result<(), Error>
    where
        F: Future<Output = ()> + Send,
    {
        let router = Server::builder()
            .max_concurrent_streams(Some(self.max_concurrent_streams))
            .http2_max_header_list_size(Some(self.max_header_list_bytes))
            .concurrency_limit_per_connection(self.concurrency_per_connection)
            .add_service(self.service());
        let served = match self.tls {
            None => {
                let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                router
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await
            }
            Some(acceptor) => {
                let (connections, accepting) = accept_tls(listener, acceptor);
                let incoming = ReceiverStream::new(connections);
                let served = router
                    .serve_with_incoming_shutdown(incoming, shutdown)
                    .await;
                accepting.abort();
                served
            }
        };
        served.map_err(|e| Error::new(ErrorKind::Unavailable, format!("gRPC server failed: {e}")))
    }
}
