//! The client side of peer fetches: how a node asks a key's owner for its value.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::time::Instant;

use crate::{Error, InFlight, Value};

/// A boxed, sendable future: what the object-safe traits of this crate return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a fetch from a peer produced: the value, or `None` when the owner has no such key.
///
/// A `None` is an answer, not a failure: the asking node returns NotFound and does not load
/// the key itself. Failures (timeout, refused, server error) are `Err`.
pub type FetchResult = Result<Option<Value>, Error>;

/// How a fetch or a serve ended, as spans and metrics label it (`outcome`): `ok`,
/// `not_found` (no such key, or a cached miss), `timeout`, or `error`.
pub fn fetch_outcome(result: &FetchResult) -> &'static str {
    match result {
        Ok(Some(value)) if !value.is_absent() => "ok",
        Ok(_) => "not_found",
        Err(e) if e.kind() == crate::ErrorKind::Timeout => "timeout",
        Err(_) => "error",
    }
}

/// Largest response a protocol client buffers unless configured otherwise: 64 MiB. One
/// default for every protocol, so a value that crosses one crosses all.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 << 20;

/// Which galaxy a peer request is for: its name and the version of its values.
///
/// Nodes never exchange values, or writes, across versions: a server answers a request for
/// another version of a galaxy with [`ErrorKind::VersionMismatch`](crate::ErrorKind), and
/// the asking node loads the key itself. Version 0 is the default, and what a peer that
/// sends no version (a Go node) speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GalaxyId<'a> {
    /// The galaxy's name.
    pub name: &'a str,
    /// The version of the galaxy's values.
    pub version: u32,
}

impl<'a> GalaxyId<'a> {
    /// Galaxy `name` at `version`.
    pub fn new(name: &'a str, version: u32) -> Self {
        GalaxyId { name, version }
    }
}

impl<'a> From<&'a str> for GalaxyId<'a> {
    /// Galaxy `name` at version 0.
    fn from(name: &'a str) -> Self {
        GalaxyId { name, version: 0 }
    }
}

/// A change to a galaxy that one node sends to another: the verbs of the write path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriteOp<'a> {
    /// Drop the copy of this key (maincache, hotcache or fallback copy) and fence the loads
    /// of it that are in flight.
    Remove(&'a str),
    /// Store this value as the key's value. Sent to the key's owner only; a node that does
    /// not own the key by its own ring drops its copy instead.
    Set(&'a str, &'a Value),
    /// Drop every entry of the galaxy and fence every load in flight.
    Flush,
}

impl<'a> WriteOp<'a> {
    /// The key this write is about; `None` for a flush.
    pub fn key(&self) -> Option<&'a str> {
        match *self {
            WriteOp::Remove(key) | WriteOp::Set(key, _) => Some(key),
            WriteOp::Flush => None,
        }
    }

    /// The verb's name, for logs and reports: `remove`, `set` or `flush`.
    pub fn verb(&self) -> &'static str {
        match self {
            WriteOp::Remove(_) => "remove",
            WriteOp::Set(..) => "set",
            WriteOp::Flush => "flush",
        }
    }
}

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
        galaxy: GalaxyId<'a>,
        key: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, FetchResult>;

    /// Fetch `keys` of `galaxy` from this peer at once: one result per key, in order, as
    /// [`fetch`](Self::fetch) would give it. The error of the whole is for the request
    /// (the peer is unreachable, the galaxy unknown, the batch refused); a key's own
    /// failure is its result's.
    ///
    /// Protocols that can carry a batch send it in one request; the default fetches the
    /// keys one by one, all at once.
    fn fetch_many<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        keys: &'a [Arc<str>],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Vec<FetchResult>, Error>> {
        Box::pin(async move { Ok(fetch_each(self, galaxy, keys, deadline).await) })
    }

    /// Ask the peer for `key` only if it already has it cached, without loading it.
    ///
    /// Protocols that cannot do this return [`ErrorKind::Unsupported`](crate::ErrorKind).
    fn peek<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
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

    /// Apply `op` to the peer's copy of `galaxy`: `Ok(())` once the peer has applied it.
    ///
    /// A peer that does not know the verb (a Go node, an older build) answers
    /// [`ErrorKind::Unsupported`](crate::ErrorKind): it was reached but cannot invalidate.
    /// The caller enforces `deadline`, as for [`fetch`](Self::fetch).
    fn write<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        op: WriteOp<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let _ = (galaxy, op, deadline);
        Box::pin(async {
            Err(Error::new(
                crate::ErrorKind::Unsupported,
                "this protocol has no write verbs",
            ))
        })
    }

    /// The peer's URL, as given to [`FetchProtocol::connect`].
    fn url(&self) -> &str;
}

/// `keys` fetched from `peer` one by one, all at once: what a batch is without a protocol
/// that carries one.
pub(crate) async fn fetch_each<F: RemoteFetcher + ?Sized>(
    peer: &F,
    galaxy: GalaxyId<'_>,
    keys: &[Arc<str>],
    deadline: Instant,
) -> Vec<FetchResult> {
    let fetches = keys.iter().map(|key| peer.fetch(galaxy, key, deadline));
    futures_util::future::join_all(fetches).await
}

/// A way of reaching peers: HTTP, gRPC, or the in-process protocol of tests.
pub trait FetchProtocol: Send + Sync + fmt::Debug {
    /// A fetcher for the peer at `url`. Connecting may be lazy; an unusable URL is an
    /// [`ErrorKind::Config`](crate::ErrorKind) error.
    ///
    /// `in_flight` is the node's bound on bytes in flight: a fetcher reserves the bytes of
    /// an answer against it before (or as) it reads them, and holds them until the value
    /// is returned.
    fn connect(&self, url: &str, in_flight: &InFlight) -> Result<Arc<dyn RemoteFetcher>, Error>;

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
    fn connect(&self, url: &str, _: &InFlight) -> Result<Arc<dyn RemoteFetcher>, Error> {
        Err(Error::new(
            crate::ErrorKind::Config,
            format!(
                "cannot reach peer {url}: no fetch protocol configured (UniverseBuilder::protocol)"
            ),
        ))
    }
}
