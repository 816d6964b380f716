//! Promoters decide which peer-owned keys a galaxycache node copies into its hotcache.
//!
//! A node that keeps fetching the same key from its owner pays a network round trip each
//! time; promoting the key into the local hotcache makes later gets local hits, at the cost
//! of a copy that lives until it is evicted or expires with its owner's expiry. The
//! [`Promoter`] makes that call from the key's request rate and the hotcache's state.
//!
//! Any `Fn(&str, &Stats) -> bool` is a promoter:
//!
//! ```
//! use galaxycache::promoter::{Promoter, Stats};
//!
//! let only_user_keys = |key: &str, stats: &Stats| key.starts_with("user:") && stats.key_qps > 1.0;
//! fn takes(_: impl Promoter) {}
//! takes(only_user_keys);
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// What a promoter sees of a key and of the hotcache. Fields may be added.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Peer fetches of this key per second, over its recent window on this node.
    pub key_qps: f64,
    /// Peer fetches of this key in that window, this one included.
    pub key_fetches: u64,
    /// The hotcache's state.
    pub hotcache: HotcacheStats,
}

impl Stats {
    /// Stats for a key fetched `key_fetches` times at `key_qps`.
    pub fn new(key_qps: f64, key_fetches: u64, hotcache: HotcacheStats) -> Self {
        Stats {
            key_qps,
            key_fetches,
            hotcache,
        }
    }
}

/// The hotcache's state, as a promoter sees it. Fields may be added.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct HotcacheStats {
    /// Bytes held (keys, values and per-entry overhead).
    pub bytes: u64,
    /// The most bytes it may hold.
    pub capacity_bytes: u64,
    /// Entries held.
    pub entries: u64,
    /// The request rate of the entries the hotcache evicted lately: the rate a key must
    /// beat to be worth a place once the hotcache is full. Zero until it first evicts.
    pub coldest_qps: f64,
}

impl HotcacheStats {
    /// Hotcache stats from their parts.
    pub fn new(bytes: u64, capacity_bytes: u64, entries: u64, coldest_qps: f64) -> Self {
        HotcacheStats {
            bytes,
            capacity_bytes,
            entries,
            coldest_qps,
        }
    }
}

/// Decides whether a key just fetched from its owner is copied into the hotcache.
///
/// Called once per successful peer fetch, on the fetching node, so it should be cheap.
pub trait Promoter: Send + Sync + 'static {
    /// True to keep a copy of `key` in the hotcache.
    fn should_promote(&self, key: &str, stats: &Stats) -> bool;
}

impl<F> Promoter for F
where
    F: Fn(&str, &Stats) -> bool + Send + Sync + 'static,
{
    fn should_promote(&self, key: &str, stats: &Stats) -> bool {
        self(key, stats)
    }
}

/// The default: promote a key fetched at least twice in its window whose rate beats the
/// rate of the entries the hotcache has lately evicted (any such key while it has not
/// evicted yet). A key seen once is never promoted, so a scan does not flush the hotcache.
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultPromoter;

impl Promoter for DefaultPromoter {
    fn should_promote(&self, _key: &str, stats: &Stats) -> bool {
        stats.key_fetches >= 2 && stats.key_qps >= stats.hotcache.coldest_qps
    }
}

/// Promotes one fetch in `n`, at random (cheaply: a counter mixed by a hash), whatever the
/// key. Hot keys are fetched often, so they are promoted soon; cold ones rarely.
pub struct ProbabilisticPromoter {
    one_in: u64,
    state: AtomicU64,
}

impl ProbabilisticPromoter {
    /// Promote about one fetch in `n` (`n` of 0 or 1 promotes every fetch).
    pub fn new(n: u64) -> Self {
        ProbabilisticPromoter {
            one_in: n.max(1),
            state: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
        }
    }
}

impl fmt::Debug for ProbabilisticPromoter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbabilisticPromoter")
            .field("one_in", &self.one_in)
            .finish()
    }
}

impl Promoter for ProbabilisticPromoter {
    fn should_promote(&self, _key: &str, _stats: &Stats) -> bool {
        // splitmix64 over a shared counter: uniform enough, lock-free, no dependency.
        let mut z = self
            .state
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)).is_multiple_of(self.one_in)
    }
}

/// Promotes every fetched key.
#[derive(Clone, Copy, Debug, Default)]
pub struct AlwaysPromote;

impl Promoter for AlwaysPromote {
    fn should_promote(&self, _key: &str, _stats: &Stats) -> bool {
        true
    }
}

/// Never promotes: every get of a peer-owned key goes to its owner.
#[derive(Clone, Copy, Debug, Default)]
pub struct NeverPromote;

impl Promoter for NeverPromote {
    fn should_promote(&self, _key: &str, _stats: &Stats) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(qps: f64, fetches: u64, coldest: f64) -> Stats {
        Stats::new(qps, fetches, HotcacheStats::new(0, 100, 0, coldest))
    }

    #[test]
    fn default_needs_two_fetches_and_a_rate_beating_the_coldest() {
        let p = DefaultPromoter;
        assert!(!p.should_promote("k", &stats(100.0, 1, 0.0)), "seen once");
        assert!(p.should_promote("k", &stats(2.0, 2, 0.0)), "room left");
        assert!(
            !p.should_promote("k", &stats(2.0, 5, 3.0)),
            "colder than evicted"
        );
        assert!(
            p.should_promote("k", &stats(4.0, 5, 3.0)),
            "hotter than evicted"
        );
    }

    #[test]
    fn probabilistic_promotes_about_one_in_n() {
        let p = ProbabilisticPromoter::new(10);
        let hits = (0..100_000)
            .filter(|_| p.should_promote("k", &Stats::default()))
            .count();
        assert!((8_000..12_000).contains(&hits), "{hits} of 100000");
        let every = ProbabilisticPromoter::new(0);
        assert!((0..100).all(|_| every.should_promote("k", &Stats::default())));
    }

    #[test]
    fn closures_always_and_never() {
        let by_prefix = |key: &str, _: &Stats| key.starts_with("hot:");
        assert!(by_prefix.should_promote("hot:1", &Stats::default()));
        assert!(!by_prefix.should_promote("cold:1", &Stats::default()));
        assert!(AlwaysPromote.should_promote("k", &Stats::default()));
        assert!(!NeverPromote.should_promote("k", &Stats::default()));
    }
}
