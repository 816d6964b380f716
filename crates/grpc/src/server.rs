//! The server side: the `GalaxyCache` service over a [`Universe`], and a server that runs
//! it alone on a listener.

use std::future::Future;

use galaxycache_universe::{Error, ErrorKind, Universe};
use tokio::net::TcpListener;
use tokio::time::Instant;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use crate::pb::galaxy_cache_server::{GalaxyCache, GalaxyCacheServer};
use crate::pb::{GetRequest, GetResponse, PeekRequest, PeekResponse};
use crate::status::{not_found, status_from_error};
use crate::wire::{expiry_to_wire, key_str, request_timeout};

/// Room in a request message for the galaxy name and the framing, beyond the longest key.
const REQUEST_OVERHEAD: usize = 4096;

/// The tonic service answering peers from `universe`'s galaxies, to add to an
/// application's own tonic router:
///
/// ```no_run
/// # async fn run(universe: galaxycache_universe::Universe) -> Result<(), Box<dyn std::error::Error>> {
/// use galaxycache_grpc::tonic::transport::Server;
///
/// Server::builder()
///     .add_service(galaxycache_grpc::service(universe))
///     .serve("127.0.0.1:7001".parse()?)
///     .await?;
/// # Ok(()) }
/// ```
///
/// Request messages larger than the universe's key bound plus a little room for the galaxy
/// name are refused before they are decoded.
pub fn service(universe: Universe) -> GalaxyCacheServer<GalaxyCacheService> {
    let max_request = universe.max_key_len().saturating_add(REQUEST_OVERHEAD);
    GalaxyCacheServer::new(GalaxyCacheService::new(universe)).max_decoding_message_size(max_request)
}

/// The `galaxycachepb.GalaxyCache` service: answers each call with
/// [`Universe::serve_get`] or [`Universe::serve_peek`].
///
/// | outcome | status |
/// | --- | --- |
/// | a value | OK, with the value's expiry; `minute_qps` is always 0 (not tracked) |
/// | no such key (or, for a peek, not cached) | NOT_FOUND |
/// | unknown galaxy | INVALID_ARGUMENT, with metadata `galaxycache-galaxy-status: not-found` |
/// | empty, oversized or non-UTF-8 key | INVALID_ARGUMENT, with metadata `galaxycache-galaxy-status: found` |
/// | the universe's bound of concurrent work reached | RESOURCE_EXHAUSTED |
/// | the load outlived the caller's `grpc-timeout` | DEADLINE_EXCEEDED or CANCELLED |
/// | the load failed | INTERNAL, with the load error's own message |
///
/// The caller's `grpc-timeout` becomes the deadline given to
/// [`Universe::serve_get`], which enforces it.
#[derive(Clone, Debug)]
pub struct GalaxyCacheService {
    universe: Universe,
}

impl GalaxyCacheService {
    /// The service over `universe`; [`service`] makes it, with its request size bound.
    fn new(universe: Universe) -> Self {
        GalaxyCacheService { universe }
    }
}

fn deadline_of<T>(request: &Request<T>) -> Option<Instant> {
    request_timeout(request.metadata()).and_then(|t| Instant::now().checked_add(t))
}

#[tonic::async_trait]
impl GalaxyCache for GalaxyCacheService {
    async fn get_from_peer(
        &self,
        request: Request<GetRequest>,
    ) -> Result<Response<GetResponse>, Status> {
        let deadline = deadline_of(&request);
        let request = request.into_inner();
        let key = key_str(&request.key).map_err(|e| status_from_error(&e))?;
        match self
            .universe
            .serve_get(request.galaxy.as_str().into(), key, deadline)
            .await
        {
            Ok(Some(value)) => Ok(Response::new(GetResponse {
                expiry: expiry_to_wire(&value),
                value: value.into_bytes(),
                minute_qps: 0.0,
            })),
            Ok(None) => Err(not_found()),
            Err(e) => Err(status_from_error(&e)),
        }
    }

    async fn peek_peer(
        &self,
        request: Request<PeekRequest>,
    ) -> Result<Response<PeekResponse>, Status> {
        let request = request.into_inner();
        let key = key_str(&request.key).map_err(|e| status_from_error(&e))?;
        match self
            .universe
            .serve_peek(request.galaxy.as_str().into(), key)
        {
            Ok(Some(value)) => Ok(Response::new(PeekResponse {
                expiry: expiry_to_wire(&value),
                value: value.into_bytes(),
            })),
            Ok(None) => Err(not_found()),
            Err(e) => Err(status_from_error(&e)),
        }
    }
}

/// Runs the [`service`] of a universe alone on a listener.
///
/// ```no_run
/// # async fn run(universe: galaxycache_universe::Universe) -> Result<(), galaxycache_universe::Error> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:7001").await.unwrap();
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let server = tokio::spawn(
///     galaxycache_grpc::GrpcServer::new(universe).serve(listener, async {
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
}

impl GrpcServer {
    /// A server for `universe`'s galaxies. Requests on one connection are not bounded
    /// here: the universe's
    /// [`max_concurrent_serves`](galaxycache_universe::UniverseBuilder::max_concurrent_serves)
    /// refuses work beyond its bound across all connections.
    pub fn new(universe: Universe) -> Self {
        GrpcServer { universe }
    }

    /// Serve HTTP/2 gRPC on `listener` until `shutdown` completes, then stop accepting,
    /// let the requests in progress finish, and return.
    ///
    /// A connection that speaks something else, or sends malformed frames or messages,
    /// gets an error on that connection or that call; the server goes on serving others.
    pub async fn serve<F>(self, listener: TcpListener, shutdown: F) -> Result<(), Error>
    where
        F: Future<Output = ()> + Send,
    {
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        Server::builder()
            .add_service(service(self.universe))
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("gRPC server failed: {e}")))
    }
}
