//! Counters cheap enough for the hit path, and the snapshot users read.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use thread_local::ThreadLocal;

/// Which counter a path bumps.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    MainHit,
    HotHit,
    Miss,
    PeerLoad,
    PeerError,
    BackendLoad,
    BackendError,
    NotFound,
    CoalescedWait,
    ServerRequest,
    LocalFallback,
    Promotion,
    Remove,
    Set,
    Flush,
    FencedStore,
    BroadcastFailure,
    BroadcastRetry,
    RetryDropped,
    Refresh,
    StaleServed,
    SoftTimeout,
    NotFoundHit,
    Preloaded,
    NotKept,
    HandoffHit,
    HandoffMiss,
    TooLarge,
}

const COUNTERS: usize = 28;

/// One thread's counters of one galaxy, alone on their cache lines so that two cores never
/// write the same line: a shared atomic would make every hit bounce a line between cores.
/// Only that thread writes them, so a count is a plain load and store, not a locked
/// read-modify-write (which on a front hit was a twentieth of its time).
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Stripe([AtomicU64; COUNTERS]);

impl Stripe {
    /// Count one `c`. Only from the thread the stripe is [`Counters::mine`] of.
    #[inline]
    pub(crate) fn incr(&self, c: Counter) {
        let count = &self.0[c as usize];
        // Nobody else writes this stripe, so no increment is lost between the two.
        count.store(
            count.load(Ordering::Relaxed).wrapping_add(1),
            Ordering::Relaxed,
        );
    }
}

/// A galaxy's counters: a stripe per thread that counts. Readers sum the stripes; a stripe
/// outlives its thread and passes, counts and all, to the next thread given the same id.
pub(crate) struct Counters {
    stripes: ThreadLocal<Arc<Stripe>>,
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            stripes: ThreadLocal::new(),
        }
    }

    /// This thread's stripe: shared with this thread's front, which counts its hits there
    /// without looking the stripe up again.
    #[inline]
    pub(crate) fn mine(&self) -> &Arc<Stripe> {
        self.stripes.get_or_default()
    }

    #[inline]
    pub(crate) fn incr(&self, c: Counter) {
        self.mine().incr(c);
    }

    pub(crate) fn get(&self, c: Counter) -> u64 {
        self.stripes
            .iter()
            .map(|s| s.0[c as usize].load(Ordering::Relaxed))
            .sum()
    }
}

/// A snapshot of a galaxy's counters and cache sizes. Fields may be added.
///
/// `gets` is every [`Galaxy::get`](crate::Galaxy::get); each one is a main hit, a hot hit,
/// a cached miss (`not_found_hits`) or a miss. A miss is then a coalesced wait, or a load from the owner (a peer load) or
/// from the backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Gets by callers of this node.
    pub gets: u64,
    /// Gets answered by the maincache.
    pub main_hits: u64,
    /// Gets answered by the hotcache.
    pub hot_hits: u64,
    /// Gets that found no fresh value in either cache.
    pub misses: u64,
    /// Values fetched from the peer that owns them.
    pub peer_loads: u64,
    /// Fetches from owners that failed (timeout, refused, server error).
    pub peer_errors: u64,
    /// Loads from this node's backend (for its own keys, for peers, and as fallback).
    pub backend_loads: u64,
    /// Backend loads that failed (not counting NotFound).
    pub backend_errors: u64,
    /// Loads that ended in NotFound, from the backend or the owner.
    pub not_found: u64,
    /// Gets that waited on a load another caller had started, instead of loading.
    pub coalesced_waits: u64,
    /// Requests from peers served by this node.
    pub server_requests: u64,
    /// Owner failed, so this node loaded the key from its own backend.
    pub local_fallbacks: u64,
    /// Keys copied into the hotcache.
    pub promotions: u64,
    /// Removes applied on this node (this node's own, peers', a change feed's, and the
    /// removes that a set on another node sends), whether or not a copy was held.
    pub removes: u64,
    /// Sets stored on this node as the key's owner.
    pub sets: u64,
    /// Flushes applied on this node.
    pub flushes: u64,
    /// Loads whose result was not stored because a remove, set or flush of the key came in
    /// while they were in flight (their callers still got the value).
    pub fenced_stores: u64,
    /// Writes that a peer did not apply (unreachable, timed out); each is retried.
    pub broadcast_failures: u64,
    /// Background retries of such writes.
    pub broadcast_retries: u64,
    /// Failed writes not retried because too many retries were waiting already.
    pub retries_dropped: u64,
    /// Retries waiting now (a gauge).
    pub pending_retries: u64,
    /// Background reloads started because a value passed its refresh point.
    pub refreshes: u64,
    /// Gets answered with a stale value because reloading it failed or was slow.
    pub stale_served: u64,
    /// Of those, the gets whose reload was slower than the soft timeout.
    pub soft_timeouts: u64,
    /// Gets answered NotFound from a cached miss, without asking anyone.
    pub not_found_hits: u64,
    /// Entries stored by [`Galaxy::preload`](crate::Galaxy::preload).
    pub preloaded: u64,
    /// Values served to the callers of their load and not kept, because they were expired
    /// when they arrived (an HTTP origin's `no-store`, say).
    pub not_kept: u64,
    /// Keys this node took over from their previous owner's cache after a ring change,
    /// instead of loading them.
    pub handoff_hits: u64,
    /// Previous owners asked after a ring change that did not have the key (or did not
    /// answer in time): those keys were loaded from the backend.
    pub handoff_misses: u64,
    /// Values served but not cached because they are larger than the largest entry the
    /// cache holds ([`Galaxy::max_entry_bytes`](crate::Galaxy::max_entry_bytes)).
    pub too_large: u64,
    /// Batch calls to the backend ([`get_many`](crate::BackendGetter::get_many)), each
    /// loading one key or more; zero for a backend that does not batch (each of its loads
    /// is a `backend_loads` of its own).
    pub backend_batches: u64,
    /// Bytes held by the maincache (keys, values, per-entry overhead).
    pub main_bytes: u64,
    /// Entries in the maincache.
    pub main_entries: u64,
    /// Bytes held by the hotcache.
    pub hot_bytes: u64,
    /// Entries in the hotcache.
    pub hot_entries: u64,
    /// Entries the maincache evicted to stay within its budget.
    pub main_evictions: u64,
    /// Entries the hotcache evicted to stay within its budget.
    pub hot_evictions: u64,
}

impl Stats {
    pub(crate) fn from_counters(c: &Counters) -> Self {
        let main_hits = c.get(Counter::MainHit);
        let hot_hits = c.get(Counter::HotHit);
        let misses = c.get(Counter::Miss);
        Stats {
            gets: main_hits + hot_hits + misses + c.get(Counter::NotFoundHit),
            main_hits,
            hot_hits,
            misses,
            peer_loads: c.get(Counter::PeerLoad),
            peer_errors: c.get(Counter::PeerError),
            backend_loads: c.get(Counter::BackendLoad),
            backend_errors: c.get(Counter::BackendError),
            not_found: c.get(Counter::NotFound),
            coalesced_waits: c.get(Counter::CoalescedWait),
            server_requests: c.get(Counter::ServerRequest),
            local_fallbacks: c.get(Counter::LocalFallback),
            promotions: c.get(Counter::Promotion),
            removes: c.get(Counter::Remove),
            sets: c.get(Counter::Set),
            flushes: c.get(Counter::Flush),
            fenced_stores: c.get(Counter::FencedStore),
            broadcast_failures: c.get(Counter::BroadcastFailure),
            broadcast_retries: c.get(Counter::BroadcastRetry),
            retries_dropped: c.get(Counter::RetryDropped),
            refreshes: c.get(Counter::Refresh),
            stale_served: c.get(Counter::StaleServed),
            soft_timeouts: c.get(Counter::SoftTimeout),
            not_found_hits: c.get(Counter::NotFoundHit),
            preloaded: c.get(Counter::Preloaded),
            not_kept: c.get(Counter::NotKept),
            handoff_hits: c.get(Counter::HandoffHit),
            handoff_misses: c.get(Counter::HandoffMiss),
            too_large: c.get(Counter::TooLarge),
            ..Stats::default()
        }
    }

    /// Every stat by name, counters first, then cache sizes: for exporters.
    pub fn fields(&self) -> impl Iterator<Item = (&'static str, u64)> {
        [
            ("gets", self.gets),
            ("main_hits", self.main_hits),
            ("hot_hits", self.hot_hits),
            ("misses", self.misses),
            ("peer_loads", self.peer_loads),
            ("peer_errors", self.peer_errors),
            ("backend_loads", self.backend_loads),
            ("backend_errors", self.backend_errors),
            ("not_found", self.not_found),
            ("coalesced_waits", self.coalesced_waits),
            ("server_requests", self.server_requests),
            ("local_fallbacks", self.local_fallbacks),
            ("promotions", self.promotions),
            ("removes", self.removes),
            ("sets", self.sets),
            ("flushes", self.flushes),
            ("fenced_stores", self.fenced_stores),
            ("broadcast_failures", self.broadcast_failures),
            ("broadcast_retries", self.broadcast_retries),
            ("retries_dropped", self.retries_dropped),
            ("refreshes", self.refreshes),
            ("stale_served", self.stale_served),
            ("soft_timeouts", self.soft_timeouts),
            ("not_found_hits", self.not_found_hits),
            ("preloaded", self.preloaded),
            ("not_kept", self.not_kept),
            ("handoff_hits", self.handoff_hits),
            ("handoff_misses", self.handoff_misses),
            ("too_large", self.too_large),
            ("backend_batches", self.backend_batches),
            ("main_evictions", self.main_evictions),
            ("hot_evictions", self.hot_evictions),
            ("main_bytes", self.main_bytes),
            ("main_entries", self.main_entries),
            ("hot_bytes", self.hot_bytes),
            ("hot_entries", self.hot_entries),
            ("pending_retries", self.pending_retries),
        ]
        .into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_from_many_threads_add_up() {
        let c = Counters::new();
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        c.incr(Counter::MainHit);
                    }
                    c.incr(Counter::Miss);
                });
            }
        });
        let stats = Stats::from_counters(&c);
        assert_eq!(stats.main_hits, 40_000);
        assert_eq!(stats.gets, 40_004);
        assert_eq!(stats.fields().count(), 37);
    }
}
