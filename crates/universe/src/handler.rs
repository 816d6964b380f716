//! The server side of peer fetches: what a protocol server calls to answer a peer.

use std::fmt;

use tokio::time::Instant;

use crate::{BoxFuture, Error, FetchResult, Value, WriteOp};

/// A galaxy as peer servers see it. `galaxycache-galaxy` implements it; protocol crates
/// reach galaxies only through it (via [`Universe::serve_get`](crate::Universe::serve_get)).
pub trait GalaxyHandler: Send + Sync + fmt::Debug {
    /// Answer a peer's fetch of `key`: from the caches, or by loading it from the backend.
    /// Never forwards to another peer.
    ///
    /// `deadline` is when the asking peer stops waiting, when it said.
    fn serve_get<'a>(
        &'a self,
        key: &'a str,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, FetchResult>;

    /// The value of `key` if it is cached here and fresh; never loads.
    fn serve_peek(&self, key: &str) -> Option<Value>;

    /// Apply a peer's write to this node's copy of the galaxy (see [`WriteOp`]).
    fn serve_write(&self, op: WriteOp<'_>) -> Result<(), Error>;

    /// The peer set is about to change: called by [`Universe::set_peers`](crate::Universe::set_peers)
    /// and its kin before the new ring is published. A galaxy marks which keys were
    /// written to before the change, so that it takes over from a key's previous owner
    /// only keys that no write has touched since. Default: nothing.
    fn ring_changing(&self) {}

    /// The version of this galaxy's values; requests for another version are refused.
    fn version(&self) -> u32 {
        0
    }

    /// The galaxy's cache budget in bytes; the universe's default bound on bytes in flight
    /// is half the sum of its galaxies' budgets. Default: 0.
    fn cache_bytes(&self) -> u64 {
        0
    }

    /// Publish the galaxy's metrics through the `metrics` facade, from a snapshot of its
    /// counters and sizes: called by
    /// [`Universe::publish_metrics`](crate::Universe::publish_metrics). Default: nothing.
    fn publish_metrics(&self) {}
}
