//! Dialing peers over streams other than TCP sockets: a connector of the application's
//! own (an in-memory pipe, a Unix socket, a simulated network), made object-safe so that
//! nothing that holds one is generic over it.

use std::fmt;
use std::future::poll_fn;
use std::sync::Arc;

use galaxycache_universe::BoxFuture;
use http::Uri;
use tokio::io::{AsyncRead, AsyncWrite};

/// A boxed error: what a connector or a body fails with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A byte stream to a peer, whatever carries it.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// A [`tower::Service`] that opens a byte stream to the peer at a URI: what an application
/// gives a protocol to carry its peer connections. Every such service is one; the trait
/// names the bounds that [`Connector::new`] and the protocols' `connector` options share.
pub trait MakeStream:
    tower::Service<Uri, Response: Io + 'static, Error: Into<BoxError>, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<C> MakeStream for C where
    C: tower::Service<Uri, Response: Io + 'static, Error: Into<BoxError>, Future: Send + 'static>
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// What opens a stream to a peer's URI.
type Dial = dyn Fn(Uri) -> BoxFuture<'static, Result<Box<dyn Io>, BoxError>> + Send + Sync;

/// A [`tower::Service`] that answers a byte stream to the peer at a URI, boxed. Cheap to
/// clone: every clone dials with the same service.
#[derive(Clone)]
pub struct Connector {
    dial: Arc<Dial>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector").finish_non_exhaustive()
    }
}

impl Connector {
    /// Open streams with `service`, a clone of it per stream.
    pub fn new(service: impl MakeStream) -> Self {
        let dial = move |uri: Uri| -> BoxFuture<'static, Result<Box<dyn Io>, BoxError>> {
            let mut service = service.clone();
            Box::pin(async move {
                poll_fn(|cx| service.poll_ready(cx))
                    .await
                    .map_err(Into::into)?;
                let io = service.call(uri).await.map_err(Into::into)?;
                Ok(Box::new(io) as Box<dyn Io>)
            })
        };
        Connector {
            dial: Arc::new(dial),
        }
    }

    /// A stream to the peer at `uri`. Unbounded in time: the caller bounds it.
    pub async fn connect(&self, uri: Uri) -> Result<Box<dyn Io>, BoxError> {
        (self.dial)(uri).await
    }
}
