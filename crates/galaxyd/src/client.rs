//! A small keep-alive HTTP/1 client (hyper) shared by the HTTP backend, the load
//! generator and the demo.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Largest response body read unless told otherwise: 64 MiB.
pub(crate) const DEFAULT_MAX_BODY: usize = 64 << 20;

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
    inner: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
    max_body: usize,
}

impl HttpClient {
    /// A client that keeps up to `max_idle` idle connections per host and gives every
    /// request `timeout` to complete, body included.
    pub fn new(max_idle: usize, timeout: Duration) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        let inner = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(max_idle)
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        HttpClient {
            inner,
            timeout,
            max_body: DEFAULT_MAX_BODY,
        }
    }

    /// GET `uri` and read the whole body (at most the client's body limit).
    pub async fn get(&self, uri: Uri) -> Result<Response, String> {
        let shown = uri.to_string();
        let exchange = async {
            let response = self
                .inner
                .get(uri)
                .await
                .map_err(|e| format!("GET {shown}: {}", error_chain(&e)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, self.max_body)
                .collect()
                .await
                .map_err(|e| format!("GET {shown}: reading the body: {e}"))?
                .to_bytes();
            Ok(Response {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("GET {shown}: no response within {:?}", self.timeout))?
    }
}

/// An error and its sources, joined: hyper's top-level messages alone say little.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}
