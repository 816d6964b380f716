//! The write path: remove, set and flush, applied here and broadcast to every peer.
//!
//! Order is what keeps a write from being undone (see `DESIGN.md`, "Coherence"): this
//! node drops its copy, then the key's owner applies the write, then every other peer
//! drops its copy, then this node drops again whatever it fetched from the owner in the
//! meantime. A failed remove or flush is retried in the background; a hot copy on a peer
//! that no retry reaches lives at most the hot TTL.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use galaxycache_universe::{self as universe, GalaxyId, Owner, RemoteFetcher, WriteOp};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::Value;
use crate::galaxy::Inner;
use crate::listener::{Origin, StoreReason, Tier};
use crate::stats::Counter;

/// Retries of one peer's failed remove or flush that may wait at once per galaxy; past
/// that a failure is only counted (the hot TTL still bounds what that peer serves).
pub(crate) const MAX_PENDING_RETRIES: usize = 10_000;

/// What a cluster-wide write reached. This node is not listed: its part never fails.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Report {
    /// Peers that applied the write; the key's owner first when it is another peer.
    pub applied: Vec<String>,
    /// Peers that answered but cannot apply it: no such verb (a golang/groupcache or
    /// older galaxycache node), or another version of the galaxy.
    pub refused: Vec<(String, universe::Error)>,
    /// Peers that did not answer in time or could not be reached. Removes and flushes are
    /// retried in the background ([`GalaxyBuilder::broadcast_retries`](crate::GalaxyBuilder::broadcast_retries)).
    pub failed: Vec<(String, universe::Error)>,
}

impl Report {
    /// True when every peer applied the write.
    pub fn is_complete(&self) -> bool {
        self.refused.is_empty() && self.failed.is_empty()
    }

    /// How many peers were asked.
    pub fn peers(&self) -> usize {
        self.applied.len() + self.refused.len() + self.failed.len()
    }

    fn record(&mut self, peer: &str, result: Result<(), universe::Error>) {
        match result {
            Ok(()) => self.applied.push(peer.to_owned()),
            Err(e) if is_refusal(&e) => self.refused.push((peer.to_owned(), e)),
            Err(e) => self.failed.push((peer.to_owned(), e)),
        }
    }
}

/// A peer that answered and cannot apply the write: retrying would not help.
fn is_refusal(e: &universe::Error) -> bool {
    matches!(
        e.kind(),
        universe::ErrorKind::Unsupported
            | universe::ErrorKind::VersionMismatch
            | universe::ErrorKind::UnknownGalaxy
            | universe::ErrorKind::InvalidRequest
    )
}

/// A write with owned parts, so it can travel to tasks and be retried.
#[derive(Clone, Debug)]
pub(crate) enum Write {
    Remove(Arc<str>),
    Set(Arc<str>, Value),
    Flush,
}

impl Write {
    fn as_op(&self) -> WriteOp<'_> {
        match self {
            Write::Remove(key) => WriteOp::Remove(key),
            Write::Set(key, value) => WriteOp::Set(key, value),
            Write::Flush => WriteOp::Flush,
        }
    }

    /// What the peers that do not own the key get: they only drop their copies.
    fn for_others(&self) -> Write {
        match self {
            Write::Set(key, _) => Write::Remove(Arc::clone(key)),
            other => other.clone(),
        }
    }
}

impl Inner {
    /// Drop this node's copy of `key` and fence the loads of it in flight; true if a copy
    /// was held.
    pub(crate) fn drop_local(&self, key: &str, origin: Origin) -> bool {
        let held = self.fence.advance(key, || self.remove_copies(key));
        self.counters.incr(Counter::Remove);
        if held {
            self.events.tell(|l| l.on_remove(key, origin));
        }
        held
    }

    /// Drop both caches' copies of `key` (the caller advances its fence); true if one was
    /// held.
    fn remove_copies(&self, key: &str) -> bool {
        let main = self.main.remove(key);
        let hot = self.hot.remove(key);
        main || hot
    }

    /// Store `value` as the value of `key`, which this node owns, fencing older loads.
    pub(crate) fn store_set(&self, key: &str, value: Value) {
        let value = self.policy.stamp(value, self.clock.now(), Duration::ZERO);
        let kept = self.fence.advance(key, || {
            self.hot.remove(key);
            self.insert(Tier::Main, key, &value, 0.0)
        });
        self.counters.incr(Counter::Set);
        if kept {
            self.events
                .tell(|l| l.on_store(key, Tier::Main, StoreReason::Set));
        }
    }

    /// Drop every entry and fence every load in flight.
    pub(crate) fn flush_local(&self, origin: Origin) {
        self.clear_all();
        self.counters.incr(Counter::Flush);
        self.events.tell(|l| l.on_flush(origin));
    }

    fn clear_all(&self) {
        // Fence first: a load that checked its generation before this stored before the
        // caches are cleared below; one that checks after is fenced.
        self.fence.advance_all();
        self.main.clear();
        self.hot.clear();
    }

    /// A peer's write, applied here.
    pub(crate) fn apply_from_peer(&self, op: WriteOp<'_>) {
        match op {
            WriteOp::Remove(key) => {
                self.drop_local(key, Origin::Peer);
            }
            WriteOp::Set(key, value) => match self.universe.owner(key) {
                Owner::Local => self.store_set(key, self.cap_expiry(value.clone(), None)),
                // Rings disagree: this node cannot keep a copy it may not be told to drop.
                Owner::Remote(_) => {
                    self.drop_local(key, Origin::Peer);
                }
            },
            // A cluster flush reaches each peer twice (see `write_cluster`): both clear,
            // the second within two peer timeouts is not told or counted again.
            WriteOp::Flush if self.second_round_of_flush() => self.clear_all(),
            WriteOp::Flush => self.flush_local(Origin::Peer),
        }
    }

    /// Whether a peer's flush arriving now is the second round of one heard just before.
    fn second_round_of_flush(&self) -> bool {
        let now = Instant::now();
        let mut heard = self
            .peer_flush_heard
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let second = heard.is_some_and(|at| now.duration_since(at) <= self.peer_timeout * 2);
        *heard = if second { None } else { Some(now) };
        second
    }

    /// Apply `write` here and on every peer, in the order that keeps it from being undone.
    pub(crate) async fn write_cluster(self: &Arc<Self>, write: Write, origin: Origin) -> Report {
        let owner = match &write {
            Write::Remove(key) | Write::Set(key, _) => self.universe.owner(key),
            Write::Flush => Owner::Local,
        };
        let owned_here = matches!(owner, Owner::Local);
        match (&write, owned_here) {
            (Write::Set(key, value), true) => self.store_set(key, value.clone()),
            (Write::Set(key, _) | Write::Remove(key), _) => {
                self.drop_local(key, origin);
            }
            (Write::Flush, _) => self.flush_local(origin),
        }
        let mut report = Report::default();
        if let Owner::Remote(owner) = &owner {
            let result = self.send(owner, &write).await;
            self.after_send(owner, &write, &result);
            report.record(owner.url(), result);
        }
        let others = write.for_others();
        let peers: Vec<_> = self
            .universe
            .remote_peers()
            .into_iter()
            .filter(|peer| !matches!(&owner, Owner::Remote(o) if o.url() == peer.url()))
            .collect();
        let mut reached = Vec::new();
        for (peer, result) in self.broadcast(peers, &others).await {
            if result.is_ok() {
                reached.push(Arc::clone(&peer));
            }
            report.record(peer.url(), result);
        }
        // A flush has no one owner to go first: every node owns some keys. A node that
        // flushed before an owner did may have fetched an old value from it meanwhile;
        // once every peer has flushed, a second round drops whatever was loaded between.
        if matches!(write, Write::Flush) {
            self.broadcast(reached, &others).await;
        }
        // Whatever this node fetched from the owner before the owner applied the write
        // is old: drop it again. (The owner itself keeps what it just stored.)
        match (&write, owned_here) {
            (Write::Set(_, _), true) => {}
            (Write::Set(key, _) | Write::Remove(key), _) => {
                self.fence.advance(key, || self.remove_copies(key));
            }
            (Write::Flush, _) => self.clear_all(),
        }
        report
    }

    /// Send `write` to every one of `peers` at once (a failed send is retried later);
    /// each peer's result.
    async fn broadcast(
        self: &Arc<Self>,
        peers: Vec<Arc<dyn RemoteFetcher>>,
        write: &Write,
    ) -> Vec<(Arc<dyn RemoteFetcher>, Result<(), universe::Error>)> {
        let mut sends = JoinSet::new();
        for peer in peers {
            let (this, write) = (Arc::clone(self), write.clone());
            sends.spawn(async move {
                let result = this.send(&peer, &write).await;
                this.after_send(&peer, &write, &result);
                (peer, result)
            });
        }
        let mut results = Vec::new();
        while let Some(joined) = sends.join_next().await {
            results.extend(joined.ok());
        }
        results
    }

    /// Send `write` to `peer`, bounded by the peer timeout.
    async fn send(
        &self,
        peer: &Arc<dyn RemoteFetcher>,
        write: &Write,
    ) -> Result<(), universe::Error> {
        let deadline = Instant::now() + self.peer_timeout;
        let id = GalaxyId::new(&self.name, self.version);
        match tokio::time::timeout_at(deadline, peer.write(id, write.as_op(), deadline)).await {
            Ok(result) => result,
            Err(_) => Err(universe::Error::new(
                universe::ErrorKind::Timeout,
                format!("no answer within {:?}", self.peer_timeout),
            )),
        }
    }

    /// Count a failed send and schedule its retry. A set the owner did not take is
    /// retried as a remove: the owner must at least drop its old value, and a late set
    /// could overwrite a newer one.
    fn after_send(
        self: &Arc<Self>,
        peer: &Arc<dyn RemoteFetcher>,
        write: &Write,
        result: &Result<(), universe::Error>,
    ) {
        let Err(e) = result else { return };
        if is_refusal(e) {
            return;
        }
        self.counters.incr(Counter::BroadcastFailure);
        tracing::debug!(galaxy = %self.name, peer = peer.url(), verb = write.as_op().verb(), error = %e, "write not applied by peer; will retry");
        self.retry_later(Arc::clone(peer), write.for_others());
    }

    fn retry_later(self: &Arc<Self>, peer: Arc<dyn RemoteFetcher>, write: Write) {
        if self.broadcast_retries == 0 {
            return;
        }
        if self.pending_retries.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING_RETRIES {
            self.pending_retries.fetch_sub(1, Ordering::Relaxed);
            self.counters.incr(Counter::RetryDropped);
            return;
        }
        let galaxy = Arc::downgrade(self);
        let attempts = self.broadcast_retries;
        tokio::spawn(async move {
            retry(galaxy, peer, write, attempts).await;
        });
    }
}

/// Delay before retry `attempt` (0-based): 1 s, doubling, at most 30 s.
pub(crate) fn retry_delay(attempt: u32) -> Duration {
    Duration::from_secs(1u64 << attempt.min(5)).min(Duration::from_secs(30))
}

async fn retry(galaxy: Weak<Inner>, peer: Arc<dyn RemoteFetcher>, write: Write, attempts: u32) {
    for attempt in 0..attempts {
        tokio::time::sleep(retry_delay(attempt)).await;
        let Some(this) = galaxy.upgrade() else { return };
        this.counters.incr(Counter::BroadcastRetry);
        match this.send(&peer, &write).await {
            Err(e) if !is_refusal(&e) && attempt + 1 < attempts => continue,
            Err(e) if !is_refusal(&e) => {
                tracing::warn!(galaxy = %this.name, peer = peer.url(), verb = write.as_op().verb(), error = %e,
                    "gave up telling a peer of a write; its copy lives at most the hot TTL");
            }
            _ => {}
        }
        this.pending_retries.fetch_sub(1, Ordering::Relaxed);
        return;
    }
}
