//! A small keep-alive HTTP/1 client (hyper) shared by the HTTP backend, the load
//! generator and the demo.

// No request may panic the node: outside tests, every unwrap, expect, index and unchecked
// arithmetic is an error; the few that cannot fail are allowed where they are, saying why.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

use std::time::Duration;

use bytes::Bytes;
use galaxycache_http::read_value;
use galaxycache_universe::{InFlight, error_chain};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};
use tokio::time::Instant;

use crate::units::deadline_after;

/// What is percent-encoded in a key (or galaxy name) put into a URL: everything but
/// RFC 3986's unreserved characters, `/` included, so it is always one path segment (or
/// one query value).
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Largest response body read: the peer protocols' bound, so whatever a galaxy can hold
/// can be read back.
const MAX_BODY: usize = galaxycache_universe::DEFAULT_MAX_RESPONSE_BYTES;

/// Largest read-ahead buffer of a connection: 64 KiB.
const READ_BUFFER: usize = 64 * 1024;

/// A response, body read whole.
#[derive(Clone, Debug)]
pub struct Response {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// A pooled HTTP/1 client: connections are kept alive and reused.
#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
    in_flight: InFlight,
}

impl HttpClient {
    /// A client that keeps up to `max_idle` idle connections per host and gives every
    /// request `timeout` to complete, body included.
    pub fn new(max_idle: usize, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let inner = Client::builder(TokioExecutor::new())
            // A connection reads ahead of the body's reader into a buffer of this size
            // (hyper's default grows to ~400 KiB): memory per connection that no bound on
            // bytes in flight sees, since it fills before the reader reserves anything.
            .http1_max_buf_size(READ_BUFFER)
            .pool_max_idle_per_host(max_idle)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        HttpClient {
            inner,
            timeout,
            in_flight: InFlight::unbounded(),
        }
    }

    /// Read response bodies against `in_flight`, a node's bound on bytes in flight: a body
    /// waits for room (until the request's timeout) before it is allocated, and holds it
    /// until [`send`](Self::send) returns. Default: unbounded.
    pub fn in_flight(mut self, in_flight: InFlight) -> Self {
        self.in_flight = in_flight;
        self
    }

    /// GET `uri` and read the whole body (at most 64 MiB).
    pub async fn get(&self, uri: Uri) -> Result<Response, String> {
        self.send(Method::GET, uri, HeaderMap::new(), Bytes::new())
            .await
    }

    /// Send `method` to `uri` with `headers` and `body` (none when empty), and read the
    /// whole answer (at most 64 MiB). The client API's writes: `DELETE` and `PUT` of a
    /// key, `POST` of a flush.
    pub async fn send(
        &self,
        method: Method,
        uri: Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response, String> {
        // Cheap (reference counts): the text is only made when an error needs it.
        let (shown_method, shown_uri) = (method.clone(), uri.clone());
        let shown = || format!("{shown_method} {shown_uri}");
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        let deadline = deadline_after(Instant::now(), self.timeout);
        let exchange = async {
            let response = self
                .inner
                .request(request)
                .await
                .map_err(|e| format!("{}: {}", shown(), error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let mut reservation = self.in_flight.empty();
            let body = read_value(body, MAX_BODY, &mut reservation, deadline)
                .await
                .map_err(|e| format!("{}: reading the body: {e}", shown()))?;
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout_at(deadline, exchange)
            .await
            .map_err(|_| format!("{}: no response within {:?}", shown(), self.timeout))?
    }
}
