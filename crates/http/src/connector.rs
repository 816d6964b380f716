//! Dialing peers over streams other than TCP sockets: see
//! [`HttpProtocolBuilder::connector`](crate::HttpProtocolBuilder::connector).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use galaxycache_h2::{BoxError, Connector, Io};
use galaxycache_universe::BoxFuture;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;

/// A connector of the application's own ([`Connector`], shared with the HTTP/2 client) as
/// hyper's pooled client dials: each connect bounded by the connect timeout.
#[derive(Clone, Debug)]
pub(crate) struct StreamConnector {
    connector: Connector,
    timeout: Duration,
}

impl StreamConnector {
    /// Open streams with `connector`, each within `timeout` (longer is a connect error).
    pub(crate) fn new(connector: Connector, timeout: Duration) -> Self {
        StreamConnector { connector, timeout }
    }
}

impl tower::Service<Uri> for StreamConnector {
    type Response = Stream;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<Stream, BoxError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (connector, timeout) = (self.connector.clone(), self.timeout);
        Box::pin(async move {
            let io = tokio::time::timeout(timeout, connector.connect(uri))
                .await
                .map_err(|_| BoxError::from(format!("connect timed out after {timeout:?}")))??;
            Ok(Stream(TokioIo::new(io)))
        })
    }
}

/// A stream opened by a [`StreamConnector`], as hyper reads and writes it.
pub(crate) struct Stream(TokioIo<Box<dyn Io>>);

impl Connection for Stream {
    fn connected(&self) -> Connected {
        Connected::new()
    }
}

impl Read for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl Write for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
