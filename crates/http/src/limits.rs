//! A server loop with limits: the header read timeout, the idle timeout, and bounds on
//! connections, requests in flight and HTTP/2 streams. The peer server runs on it, and so
//! may any hyper or axum service (galaxyd's client API does).

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper::service::{Service as HyperService, service_fn};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use galaxycache_universe::TlsAcceptor;

use crate::body::BoxError;

/// What a connection over [`ServerLimits::max_connections`] is told before it is closed.
const TOO_MANY_CONNECTIONS: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";

/// The limits of a server run by [`serve_with_limits`]. Every field has a default, stated
/// on its `DEFAULT_*` constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerLimits {
    /// How long a request head may take to arrive once a connection waits for one; then
    /// the connection is closed (slowloris). Default: 10 s.
    pub header_read_timeout: Duration,
    /// A connection on which nothing is read or written this long is closed, whatever it
    /// is doing. Default: [`SERVER_IDLE_TIMEOUT`](crate::SERVER_IDLE_TIMEOUT), 30 s.
    pub idle_timeout: Duration,
    /// Connections open at once; one more is answered `503` and closed. Default: 10,000.
    pub max_connections: usize,
    /// Requests handled at once, over all connections; one more is answered `503`.
    /// Default: 4,096.
    pub max_requests_in_flight: usize,
    /// HTTP/2 streams open at once on one connection. Default: 256.
    pub h2_max_concurrent_streams: u32,
    /// Largest HTTP/2 header list (and HTTP/1 head), in bytes. Default: 96 KiB, room for
    /// the peer protocol's longest path.
    pub max_header_list_bytes: u32,
}

/// Default of [`ServerLimits::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`ServerLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// Default of [`ServerLimits::max_requests_in_flight`].
pub const DEFAULT_MAX_REQUESTS_IN_FLIGHT: usize = 4096;
/// Default of [`ServerLimits::h2_max_concurrent_streams`].
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 256;
/// Default of [`ServerLimits::max_header_list_bytes`].
pub const DEFAULT_MAX_HEADER_LIST_BYTES: u32 = 96 * 1024;

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: crate::SERVER_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_requests_in_flight: DEFAULT_MAX_REQUESTS_IN_FLIGHT,
            h2_max_concurrent_streams: DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            max_header_list_bytes: DEFAULT_MAX_HEADER_LIST_BYTES,
        }
    }
}

impl ServerLimits {
    /// Set [`header_read_timeout`](Self::header_read_timeout).
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Set [`idle_timeout`](Self::idle_timeout).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Set [`max_connections`](Self::max_connections) (at least 1).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Set [`max_requests_in_flight`](Self::max_requests_in_flight) (at least 1).
    pub fn max_requests_in_flight(mut self, n: usize) -> Self {
        self.max_requests_in_flight = n.max(1);
        self
    }

    /// Set [`h2_max_concurrent_streams`](Self::h2_max_concurrent_streams) (at least 1).
    pub fn h2_max_concurrent_streams(mut self, n: u32) -> Self {
        self.h2_max_concurrent_streams = n.max(1);
        self
    }

    /// Set [`max_header_list_bytes`](Self::max_header_list_bytes).
    pub fn max_header_list_bytes(mut self, bytes: u32) -> Self {
        self.max_header_list_bytes = bytes;
        self
    }

    pub(crate) fn builder(&self) -> auto::Builder<TokioExecutor> {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .max_buf_size((self.max_header_list_bytes as usize).max(8192));
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.h2_max_concurrent_streams)
            .max_header_list_size(self.max_header_list_bytes);
        builder
    }
}

/// A service the servers here run: a tower service of hyper requests, answering with
/// bodies of type `B`, cloned for each connection. Every such service is one; the trait
/// names the bounds that every serving function here shares.
pub trait HttpService<B>:
    tower::Service<
        Request<Incoming>,
        Response = Response<B>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S, B> HttpService<B> for S where
    S: tower::Service<
            Request<Incoming>,
            Response = Response<B>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// The answer a request over [`ServerLimits::max_requests_in_flight`] gets.
fn overloaded() -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(
        b"too many requests in progress\n",
    )));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Serve `service` on `listener` under `limits` until `shutdown` resolves, then stop
/// accepting, let the requests in progress finish, and return once every connection is
/// closed. Accepts HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same port; sets
/// `TCP_NODELAY`. A malformed request head (HTTP/0.9, garbage) is answered `400` and its
/// connection closed (hyper's own answer).
pub async fn serve_with_limits<S, B>(
    listener: TcpListener,
    service: S,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) where
    S: HttpService<B>,
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    let accept = |stream| std::future::ready(Some((stream, service.clone())));
    serve_accepting(listener, limits, accept, shutdown).await;
}

/// [`serve_with_limits`] over TLS: each accepted connection's handshake is completed with
/// `acceptor` (in the connection's own task, under the connection bound) before HTTP is
/// spoken on it; a connection whose handshake fails is closed. What the acceptor asks of
/// clients is its configuration's: a client certificate
/// ([`TlsConfig::new`](galaxycache_universe::TlsConfig::new)) or none
/// ([`TlsConfig::server_only`](galaxycache_universe::TlsConfig::server_only)).
pub async fn serve_tls_with_limits<S, B>(
    listener: TcpListener,
    service: S,
    limits: ServerLimits,
    acceptor: TlsAcceptor,
    shutdown: impl Future<Output = ()>,
) where
    S: HttpService<B>,
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    let accept = |stream| {
        let (acceptor, service) = (acceptor.clone(), service.clone());
        async move {
            match acceptor.accept(stream).await {
                Ok(stream) => Some((stream, service)),
                Err(e) => {
                    tracing::debug!(error = %e, "server: TLS handshake failed");
                    None
                }
            }
        }
    };
    serve_accepting(listener, limits, accept, shutdown).await;
}

/// [`serve_with_limits`], with a step of its own per connection: `accept` turns each
/// accepted stream into the IO to speak HTTP on and the service for that connection (a TLS
/// handshake, say, whose verified peer the service carries), or into `None` to close it.
/// The step runs in the connection's own task, under the connection bound, and a graceful
/// shutdown waits for it.
pub(crate) async fn serve_accepting<A, F, I, S, B>(
    listener: TcpListener,
    limits: ServerLimits,
    accept: A,
    shutdown: impl Future<Output = ()>,
) where
    A: Fn(TcpStream) -> F,
    F: Future<Output = Option<(I, S)>> + Send + 'static,
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    let builder = Arc::new(limits.builder());
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let requests = Arc::new(Semaphore::new(limits.max_requests_in_flight));
    let graceful = GracefulShutdown::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let stream = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "server: accept failed");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_millis(10)) => continue,
                    }
                }
            },
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            refuse(stream);
            continue;
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "server: cannot set TCP_NODELAY");
        }
        let accepting = accept(stream);
        let builder = Arc::clone(&builder);
        let requests = Arc::clone(&requests);
        let watcher = graceful.watcher();
        let idle = limits.idle_timeout;
        tokio::spawn(async move {
            let _permit = permit;
            let Some((io, service)) = accepting.await else {
                return;
            };
            serve_connection(&builder, io, service, requests, idle, Some(watcher)).await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Speak HTTP on one connection, `io`, with `service` behind the bound of `requests` in
/// flight, until the peer closes it, it has been idle for `idle`, or (with a `watcher`) the
/// server shuts down gracefully.
pub(crate) async fn serve_connection<I, S, B>(
    builder: &auto::Builder<TokioExecutor>,
    io: I,
    service: S,
    requests: Arc<Semaphore>,
    idle: Duration,
    watcher: Option<Watcher>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    S: HttpService<B>,
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    let io = Watched::new(TokioIo::new(io));
    let activity = Arc::clone(&io.last);
    let connection = builder
        .serve_connection(io, limited(service, requests))
        .into_owned();
    let served = async move {
        match watcher {
            Some(watcher) => watcher.watch(connection).await,
            None => connection.await,
        }
    };
    tokio::select! {
        ended = served => if let Err(e) = ended {
            tracing::debug!(error = %e, "server: connection ended with an error");
        },
        () = idle_for(&activity, idle) => {
            tracing::debug!(?idle, "server: idle connection closed");
        }
    }
}

/// Tell a connection over the bound so, if its socket takes it at once, and close it.
fn refuse(stream: TcpStream) {
    tracing::debug!("server: at its connection bound; refusing a connection");
    let _ = stream.try_write(TOO_MANY_CONNECTIONS);
}

/// A response of a service behind [`limited`]: its own, or the `503` of the bound.
type Limited<B> = Response<Either<B, Full<Bytes>>>;

/// `service` behind the bound of requests in flight: a request over it is answered `503`.
fn limited<S, B>(
    service: S,
    requests: Arc<Semaphore>,
) -> impl HyperService<
    Request<Incoming>,
    Response = Limited<B>,
    Error = BoxError,
    Future = impl Future<Output = Result<Limited<B>, BoxError>> + Send,
> + Clone
+ Send
+ 'static
where
    S: HttpService<B>,
    B: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static,
{
    let service = TowerToHyperService::new(service);
    service_fn(move |request: Request<Incoming>| {
        let permit = Arc::clone(&requests).try_acquire_owned();
        let call = permit.is_ok().then(|| service.call(request));
        async move {
            let Some(call) = call else {
                return Ok(overloaded().map(Either::Right));
            };
            let response = call.await.map_err(Into::into)?;
            drop(permit);
            Ok(response.map(Either::Left))
        }
    })
}

/// Resolves once nothing has been read or written for `idle` (never for a zero `idle`).
async fn idle_for(last: &AtomicU64, idle: Duration) {
    if idle.is_zero() {
        return std::future::pending().await;
    }
    let start = epoch();
    loop {
        let since = Duration::from_millis(last.load(Ordering::Relaxed));
        // Saturating: an idle timeout past the clock's range means never.
        let Some(deadline) = start.checked_add(since).and_then(|t| t.checked_add(idle)) else {
            return std::future::pending().await;
        };
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// The instant activity times are counted from: the process's first use of it.
fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// An IO that notes when it last read or wrote (ms since [`epoch`]).
struct Watched<T> {
    io: T,
    last: Arc<AtomicU64>,
}

impl<T> Watched<T> {
    fn new(io: T) -> Self {
        let watched = Watched {
            io,
            last: Arc::default(),
        };
        watched.touch();
        watched
    }

    fn touch(&self) {
        let ms = u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }
}

impl<T: Read + Unpin> Read for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if polled.is_ready() {
            self.touch();
        }
        polled
    }
}

impl<T: Write + Unpin> Write for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if polled.is_ready() {
            self.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if polled.is_ready() {
            self.touch();
        }
        polled
    }
}
