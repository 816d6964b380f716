//! Dialing peers over streams other than TCP sockets: see
//! [`HttpProtocolBuilder::connector`](crate::HttpProtocolBuilder::connector).

use std::fmt;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use galaxycache_universe::BoxFuture;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::body::BoxError;

/// A byte stream to a peer, whatever carries it.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// What opens a stream to a peer's URI within a timeout.
type Connect = dyn Fn(Uri, Duration) -> BoxFuture<'static, Result<Stream, BoxError>> + Send + Sync;

/// A connector of the application's own, made object-safe and bounded by the connect
/// timeout, so [`HttpProtocol`](crate::HttpProtocol) is not generic over it.
#[derive(Clone)]
pub(crate) struct StreamConnector {
    connect: Arc<Connect>,
    timeout: Duration,
}

impl fmt::Debug for StreamConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamConnector").finish_non_exhaustive()
    }
}

impl StreamConnector {
    /// Open streams with `service`, each within the [timeout](Self::timeout) (longer is a
    /// connect error).
    pub(crate) fn new<C, S>(service: C) -> Self
    where
        C: tower::Service<Uri, Response = S> + Clone + Send + Sync + 'static,
        C::Future: Send + 'static,
        C::Error: Into<BoxError>,
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        let connect =
            move |uri: Uri, timeout: Duration| -> BoxFuture<'static, Result<Stream, BoxError>> {
                let mut service = service.clone();
                Box::pin(async move {
                    let connecting = async {
                        poll_fn(|cx| service.poll_ready(cx))
                            .await
                            .map_err(Into::into)?;
                        service.call(uri).await.map_err(Into::into)
                    };
                    let io = tokio::time::timeout(timeout, connecting)
                        .await
                        .map_err(|_| {
                            BoxError::from(format!("connect timed out after {timeout:?}"))
                        })??;
                    Ok(Stream(TokioIo::new(Box::new(io))))
                })
            };
        StreamConnector {
            connect: Arc::new(connect),
            timeout: Duration::MAX,
        }
    }

    /// The same connector, each connect bounded by `timeout`.
    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
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
        (self.connect)(uri, self.timeout)
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
