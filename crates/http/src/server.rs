//! The server side: answers peers' fetches for a [`Universe`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use galaxycache_universe::{BoxFuture, ErrorKind, FetchResult, Universe, Value};
use http::header::{ALLOW, CONTENT_TYPE, EXPIRES};
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use prost::Message as _;
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::dialect::MAX_PATH_LEN;
use crate::headers::{
    EXPIRES_MS_HEADER, GALAXY_FOUND, GALAXY_NOT_FOUND, GALAXY_STATUS_HEADER, TIMEOUT_HEADER,
    fmt_expires, fmt_expires_ms, parse_timeout,
};
use crate::pb::GetResponse;
use crate::{Dialect, SERVER_IDLE_TIMEOUT};

/// Room for a request's headers other than its path, in the HTTP/2 header list bound.
const H2_OTHER_HEADERS: usize = 16 * 1024;

/// Answers peers' fetches for a [`Universe`], in one [`Dialect`].
///
/// It is a [`tower::Service`] for requests with any body (the body is never read),
/// answering with a `Response<Full<Bytes>>`, so an application can mount it in its own
/// hyper or axum server, on one port with its other routes: route every path under the
/// dialect's [`Dialect::path_prefix`] to it. Or it runs on a listener of its own with
/// [`PeerService::serve`], which drives the same service.
///
/// Cheap to clone. Answers: `200` with the value; `404` for a missing key or galaxy (see
/// [`GALAXY_STATUS_HEADER`](crate::GALAXY_STATUS_HEADER)) or a path outside the prefix;
/// `400` for a malformed path, key or header, or a key longer than the universe's
/// [`max_key_len`](Universe::max_key_len); `405` for a method other than GET; `503` when the
/// universe is at its bound of concurrent serves; `504` when the asking peer's deadline
/// passed (the universe enforces it); `500` with the error's text when loading failed.
/// (hyper itself answers `414` to a path over 65,534 bytes.)
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
}

impl PeerService {
    /// A service answering for the galaxies of `universe`.
    pub fn new(universe: Universe, dialect: Dialect) -> Self {
        PeerService { universe, dialect }
    }

    /// Serve peers on `listener` until `shutdown` resolves, then stop accepting, let the
    /// requests in progress finish, and return once every connection is closed. Accepts
    /// HTTP/1.1 and HTTP/2 with prior knowledge (h2c) on the same port; sets `TCP_NODELAY`.
    /// A connection on which no request head arrives for
    /// [`SERVER_IDLE_TIMEOUT`](crate::SERVER_IDLE_TIMEOUT) is closed.
    ///
    /// A request in progress ends at the asking peer's deadline when it sent one; wrap this
    /// future in a timeout to bound the wait for the others.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(SERVER_IDLE_TIMEOUT);
        // hyper's default of 16 KiB would refuse the long paths of long keys over h2c.
        let h2_header_list = u32::try_from(MAX_PATH_LEN + H2_OTHER_HEADERS).unwrap_or(u32::MAX);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(h2_header_list);
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
                        tracing::warn!(error = %e, "peer server: accept failed");
                        tokio::select! {
                            () = &mut shutdown => break,
                            () = tokio::time::sleep(Duration::from_millis(10)) => continue,
                        }
                    }
                },
            };
            if let Err(e) = stream.set_nodelay(true) {
                tracing::debug!(error = %e, "peer server: cannot set TCP_NODELAY");
            }
            let connection = builder
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(self.clone()))
                .into_owned();
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "peer server: connection ended with an error");
                }
            });
        }
        drop(listener);
        graceful.shutdown().await;
    }

    /// Answer one request. Never fails and never panics: bad input is an error status.
    async fn respond(&self, parts: Parts) -> Response<Full<Bytes>> {
        let Some(rest) = parts.uri.path().strip_prefix(self.dialect.path_prefix()) else {
            return text(StatusCode::NOT_FOUND, "not found".into());
        };
        if parts.method != Method::GET {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed".into());
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET"));
            return response;
        }
        let (galaxy, key) = match self.dialect.decode_path(rest) {
            Ok(segments) => segments,
            Err(why) => return self.bad_request(why),
        };
        let deadline = match parts.headers.get(TIMEOUT_HEADER) {
            None => None,
            Some(v) => match parse_timeout(v, Instant::now()) {
                Ok(deadline) => deadline,
                Err(()) => return self.bad_request("malformed X-Galaxycache-Timeout-Ms header"),
            },
        };
        // The universe checks the key and answers Timeout once the deadline passes.
        let result = self
            .universe
            .serve_get((&*galaxy).into(), &key, deadline)
            .await;
        self.answer(&galaxy, result)
    }

    fn answer(&self, galaxy: &str, result: FetchResult) -> Response<Full<Bytes>> {
        match result {
            Ok(Some(value)) => self.value(value),
            Ok(None) => galaxy_status(
                text(StatusCode::NOT_FOUND, "no such key".into()),
                GALAXY_FOUND,
            ),
            Err(e) => match e.kind() {
                ErrorKind::UnknownGalaxy => {
                    let body = match self.dialect {
                        Dialect::Galaxycache => e.message().to_owned(),
                        Dialect::Groupcache => format!("no such group: {galaxy}"),
                    };
                    galaxy_status(text(StatusCode::NOT_FOUND, body), GALAXY_NOT_FOUND)
                }
                ErrorKind::InvalidRequest => self.bad_request(e.message()),
                ErrorKind::Overloaded => text(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
                ErrorKind::Timeout => text(StatusCode::GATEWAY_TIMEOUT, e.to_string()),
                kind => {
                    tracing::debug!(galaxy, error = %e, "peer server: load failed");
                    // A load error's own message alone, as groupcache sends it: the asking
                    // node hands its callers the same error this node's callers get.
                    let body = if kind == ErrorKind::Remote {
                        e.message().to_owned()
                    } else {
                        e.to_string()
                    };
                    text(StatusCode::INTERNAL_SERVER_ERROR, body)
                }
            },
        }
    }

    fn value(&self, value: Value) -> Response<Full<Bytes>> {
        let expires_at = value.expires_at();
        let (content_type, body) = match self.dialect {
            Dialect::Galaxycache => ("application/octet-stream", value.into_bytes()),
            Dialect::Groupcache => {
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
        let mut response = Response::new(Full::new(body));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Some(at) = expires_at {
            headers.insert(EXPIRES_MS_HEADER, fmt_expires_ms(at));
            headers.insert(EXPIRES, fmt_expires(at));
        }
        response
    }

    fn bad_request(&self, why: &str) -> Response<Full<Bytes>> {
        let body = match self.dialect {
            Dialect::Galaxycache => why.to_owned(),
            // Go's servers say exactly "bad request"; the detail follows for humans.
            Dialect::Groupcache => format!("bad request: {why}"),
        };
        text(StatusCode::BAD_REQUEST, body)
    }
}

impl<B> tower::Service<Request<B>> for PeerService {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (parts, _) = request.into_parts();
        let this = self.clone();
        Box::pin(async move { Ok(this.respond(parts).await) })
    }
}

/// A `text/plain` response, newline-terminated as Go's `http.Error` writes it.
fn text(status: StatusCode, mut body: String) -> Response<Full<Bytes>> {
    body.push('\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn galaxy_status(
    mut response: Response<Full<Bytes>>,
    status: &'static str,
) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(GALAXY_STATUS_HEADER, HeaderValue::from_static(status));
    response
}
