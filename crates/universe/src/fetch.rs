//! The client side of peer fetches: how a node asks a key's owner for its value.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::time::Instant;

use crate::{Error, Value};

/// A boxed, sendable future: what the object-safe traits of this crate return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a fetch from a peer produced: the value, or `None` when the owner has no such key.
///
/// A `None` is an answer, not a failure: the asking node returns NotFound and does not load
/// the key itself. Failures (timeout, refused, server error) are `Err`.
pub type FetchResult = Result<Option<Value>, Error>;

/// Largest response a protocol client buffers unless configured otherwise: 64 MiB. One
/// default for every protocol, so a value that crosses one crosses all.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 << 20;

/// A connection (pooled, lazy or otherwise) to one peer.
pub trait RemoteFetcher: Send + Sync + fmt::Debug {
    /// Fetch `key` of `galaxy` from this peer.
    ///
    /// `deadline` is when the caller stops waiting; protocols send the remaining time to
    /// the peer so it can stop working on a request that nobody waits for. The caller
    /// (the galaxy) enforces the deadline itself, so an implementation does not add a
    /// timer of its own.
    ///
    /// The returned bytes must hold no more memory than their length: caches count a
    /// value by its length, so a value that is a slice of a larger receive buffer would
    /// keep the whole buffer alive behind the byte budget's back. Copy out of read buffers.
    fn fetch<'a>(
        &'a self,
        galaxy: &'a str,
        key: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, FetchResult>;

    /// Ask the peer for `key` only if it already has it cached, without loading it.
    ///
    /// Protocols that cannot do this return [`ErrorKind::Unsupported`](crate::ErrorKind).
    fn peek<'a>(
        &'a self,
        galaxy: &'a str,
        key: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, FetchResult> {
        let _ = (galaxy, key, deadline);
        Box::pin(async {
            Err(Error::new(
                crate::ErrorKind::Unsupported,
                "this protocol cannot peek",
            ))
        })
    }

    /// The peer's URL, as given to [`FetchProtocol::connect`].
    fn url(&self) -> &str;
}

/// A way of reaching peers: HTTP, gRPC, or the in-process protocol of tests.
pub trait FetchProtocol: Send + Sync + fmt::Debug {
    /// A fetcher for the peer at `url`. Connecting may be lazy; an unusable URL is an
    /// [`ErrorKind::Config`](crate::ErrorKind) error.
    fn connect(&self, url: &str) -> Result<Arc<dyn RemoteFetcher>, Error>;

    /// Longest key this protocol can carry (a URI, say, is bounded). A universe never
    /// accepts keys longer than its protocol's bound. Default: no bound of its own.
    fn max_key_len(&self) -> usize {
        usize::MAX
    }
}

/// The protocol of a universe that was given none: every remote peer is a configuration
/// error.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct NoProtocol;

impl FetchProtocol for NoProtocol {
    fn connect(&self, url: &str) -> Result<Arc<dyn RemoteFetcher>, Error> {
        Err(Error::new(
            crate::ErrorKind::Config,
            format!(
                "cannot reach peer {url}: no fetch protocol configured (UniverseBuilder::protocol)"
            ),
        ))
    }
}
