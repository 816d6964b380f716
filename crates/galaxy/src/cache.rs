//! A byte-budgeted cache of values (the maincache and the hotcache are two of these).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use quick_cache::sync::Cache;
use quick_cache::{DefaultHashBuilder, Lifecycle, OptionsBuilder, Weighter};

use crate::front::Front;
use crate::listener::Events;
use crate::{Clock, Tier, Value};

/// Bytes an entry costs beyond its key and value: the entry, its key and value headers
/// and the cache's own bookkeeping, rounded up.
pub const ENTRY_OVERHEAD: u64 = 96;

/// Smallest capacity of one shard of a cache, when its budget allows: quick_cache admits no
/// entry heavier than `HOT_ALLOCATION` (97%) of its shard's capacity, so the shard count decides
/// the largest value a cache can hold. With 8 shards of a 56 MiB maincache (the default
/// shard count on 2 cores, for a 64 MiB galaxy) that was 6.8 MiB; shards of at least
/// 16 MiB hold values up to 15.5 MiB on any machine.
pub const MIN_SHARD_BYTES: u64 = 16 << 20;

/// The share of a shard's capacity that one entry may take (quick_cache's hot section).
const HOT_ALLOCATION: f64 = 0.97;

/// The weight of an entry against the budget.
pub(crate) fn entry_weight(key_len: usize, value_len: usize) -> u64 {
    key_len as u64 + value_len as u64 + ENTRY_OVERHEAD
}

#[derive(Clone)]
pub(crate) struct Entry {
    value: Value,
    /// The key's request rate when it was stored (the hotcache's promotion bar).
    qps: f32,
}

#[derive(Clone, Copy)]
struct ByWeight;

impl Weighter<Box<str>, Entry> for ByWeight {
    #[inline]
    fn weight(&self, key: &Box<str>, entry: &Entry) -> u64 {
        entry_weight(key.len(), entry.value.len())
    }
}

#[derive(Default)]
struct EvictionState {
    count: AtomicU64,
    /// f64 bits: a moving average of the evicted entries' rates.
    coldest_qps: AtomicU64,
}

impl EvictionState {
    fn record(&self, qps: f32) {
        self.count.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .coldest_qps
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                let old = f64::from_bits(bits);
                Some((old * 0.75 + f64::from(qps) * 0.25).to_bits())
            });
    }
}

/// Collects what one insert pushed out, so the insert can tell evictions (other keys)
/// from the replaced value of its own key, which quick_cache reports the same way.
#[derive(Clone, Copy, Default)]
struct OnEvict;

impl Lifecycle<Box<str>, Entry> for OnEvict {
    /// Keys and rates of the entries one insert pushed out.
    type RequestState = Vec<(Box<str>, f32)>;

    fn on_evict(&self, evicted: &mut Vec<(Box<str>, f32)>, key: Box<str>, entry: Entry) {
        evicted.push((key, entry.qps));
    }
}

type Inner = Cache<Box<str>, Entry, ByWeight, DefaultHashBuilder, OnEvict>;

/// What a cache holds for a key, as of now.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// A value to serve.
    Fresh(Value),
    /// A value to serve that is due for a background reload.
    Due(Value),
    /// An expired value that may be served only if reloading it fails or is slow.
    Stale(Value),
    /// A cached miss: the key does not exist (the value says until when).
    Absent(Value),
    /// Nothing usable.
    Miss,
}

/// Never holds more than its capacity in [`entry_weight`] terms; never returns an
/// expired value.
pub(crate) struct ByteCache {
    cache: Option<Inner>,
    evictions: Arc<EvictionState>,
    /// What the cache may hold now (see [`ByteCache::resize`]).
    capacity: AtomicU64,
    /// The heaviest entry (in [`entry_weight`] terms) the cache admits at that capacity.
    max_entry: AtomicU64,
    tier: Tier,
    events: Arc<Events>,
    /// Told of every change that may make a per-thread copy wrong.
    front: Arc<Front>,
}

/// Whether an insert kept its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inserted {
    /// Stored (or the cache has no capacity at all).
    Kept,
    /// Heavier than [`ByteCache::max_entry_weight`]: not stored, and an older value of the
    /// key is gone too.
    TooLarge,
}

/// Shards for a cache of `capacity` bytes: as many as quick_cache would use for the
/// machine's cores, but few enough that each holds at least [`MIN_SHARD_BYTES`].
fn shard_count(capacity: u64) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let by_budget = (capacity / MIN_SHARD_BYTES).max(1);
    let by_budget = 1usize << by_budget.ilog2().min(usize::BITS - 1);
    (cores * 4).next_power_of_two().min(by_budget)
}

/// The quick_cache under a cache of `capacity` bytes (more than 0), in [`shard_count`]
/// shards.
fn quick_cache_of(capacity: u64) -> Inner {
    let estimated_items = (capacity / (ENTRY_OVERHEAD + 1024)).clamp(64, 1 << 24) as usize;
    let options = OptionsBuilder::new()
        .estimated_items_capacity(estimated_items)
        .weight_capacity(capacity)
        .shards(shard_count(capacity))
        .hot_allocation(HOT_ALLOCATION)
        .build()
        .expect("estimated items and weight capacity are set");
    Cache::with_options(options, ByWeight, DefaultHashBuilder::default(), OnEvict)
}

impl ByteCache {
    pub(crate) fn new(capacity: u64, tier: Tier, events: Arc<Events>, front: Arc<Front>) -> Self {
        let bytes = ByteCache {
            cache: (capacity > 0).then(|| quick_cache_of(capacity)),
            evictions: Arc::default(),
            capacity: AtomicU64::new(0),
            max_entry: AtomicU64::new(0),
            tier,
            events,
            front,
        };
        bytes.resize(capacity);
        bytes
    }

    /// Hold at most `capacity` bytes from now on, evicting what no longer fits (counted in
    /// [`evictions`](Self::evictions), though listeners hear of no key: quick_cache
    /// does not say which). The shards keep their number, so the heaviest entry admitted
    /// grows and shrinks with the capacity. No-op for a cache made without capacity.
    pub(crate) fn resize(&self, capacity: u64) {
        let Some(cache) = &self.cache else {
            return;
        };
        // Shards round their share of the capacity up; take the rounding back so the sum
        // of the shards' capacities is within ours.
        let shards = cache.num_shards() as u64;
        let entries = cache.len();
        cache.set_capacity(capacity);
        if cache.shard_capacity() * shards > capacity {
            cache.set_capacity(capacity.saturating_sub(shards - 1));
        }
        let dropped = entries.saturating_sub(cache.len()) as u64;
        self.evictions.count.fetch_add(dropped, Ordering::Relaxed);
        // A little under quick_cache's own bar, which rounding may lower by a byte or two.
        let max_entry = (cache.shard_capacity() as f64 * (HOT_ALLOCATION - 0.001)) as u64;
        self.max_entry.store(max_entry, Ordering::Relaxed);
        self.capacity.store(capacity, Ordering::Relaxed);
    }

    /// What the cache holds for `key` as of now. A value past its stale limit (or expired,
    /// without one) is removed.
    #[inline(always)]
    pub(crate) fn get(&self, key: &str, clock: &dyn Clock) -> Lookup {
        let Some(entry) = self.cache.as_ref().and_then(|c| c.get(key)) else {
            return Lookup::Miss;
        };
        let value = entry.value;
        if !value.has_instants() {
            return Lookup::Fresh(value);
        }
        let now = clock.now();
        if value.is_expired_at(now) {
            return self.expired(key, value, now);
        }
        if value.is_absent() {
            Lookup::Absent(value)
        } else if value.is_due_at(now) {
            Lookup::Due(value)
        } else {
            Lookup::Fresh(value)
        }
    }

    /// An expired value: still servable stale, or gone.
    #[cold]
    fn expired(&self, key: &str, value: Value, now: SystemTime) -> Lookup {
        if value.is_servable_stale_at(now) && !value.is_absent() {
            return Lookup::Stale(value);
        }
        let Some(cache) = &self.cache else {
            return Lookup::Miss;
        };
        let gone = |e: &Entry| e.value.is_expired_at(now) && !e.value.is_servable_stale_at(now);
        if cache.remove_if(key, gone).is_some() {
            self.front.changed();
            self.events.tell(|l| l.on_expire(key, self.tier));
        }
        Lookup::Miss
    }

    /// Store `value` as `key`'s, unless it is heavier than the cache admits: then an older
    /// value of the key is removed, and nothing stored.
    pub(crate) fn insert(&self, key: &str, value: Value, qps: f32) -> Inserted {
        let Some(cache) = &self.cache else {
            return Inserted::Kept;
        };
        if entry_weight(key.len(), value.len()) > self.max_entry.load(Ordering::Relaxed) {
            if cache.remove(key).is_some() {
                self.front.changed();
            }
            return Inserted::TooLarge;
        }
        let mut pushed_out = Vec::new();
        cache.insert_with_lifecycle(key.into(), Entry { value, qps }, &mut pushed_out);
        // The shard is unlocked now. An entry of the inserted key itself is the value it
        // replaced (or the value, too large to admit): not an eviction.
        let mut replaced = false;
        for (evicted, qps) in pushed_out {
            if *evicted == *key {
                replaced = true;
                continue;
            }
            self.evictions.record(qps);
            self.events.tell(|l| l.on_evict(&evicted, self.tier));
        }
        if replaced {
            self.front.changed();
        }
        Inserted::Kept
    }

    /// The heaviest entry, in [`entry_weight`] terms (key, value and
    /// [`ENTRY_OVERHEAD`]), that the cache stores; 0 without capacity.
    pub(crate) fn max_entry_weight(&self) -> u64 {
        self.max_entry.load(Ordering::Relaxed)
    }

    pub(crate) fn remove(&self, key: &str) -> bool {
        let removed = self.cache.as_ref().is_some_and(|c| c.remove(key).is_some());
        if removed {
            self.front.changed();
        }
        removed
    }

    /// Drop every entry; not counted as evictions.
    pub(crate) fn clear(&self) {
        if let Some(cache) = &self.cache {
            cache.clear();
            self.front.changed();
        }
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.weight())
    }

    pub(crate) fn entries(&self) -> u64 {
        self.cache.as_ref().map_or(0, |c| c.len() as u64)
    }

    pub(crate) fn capacity(&self) -> u64 {
        self.capacity.load(Ordering::Relaxed)
    }

    pub(crate) fn evictions(&self) -> u64 {
        self.evictions.count.load(Ordering::Relaxed)
    }

    pub(crate) fn coldest_qps(&self) -> f64 {
        f64::from_bits(self.evictions.coldest_qps.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use proptest::prelude::*;
    use std::time::Duration;

    #[test]
    fn expired_values_are_never_returned() {
        let clock = ManualClock::new();
        let cache = ByteCache::new(1 << 20, Tier::Main, Arc::default(), Arc::default());
        let at = clock.now() + Duration::from_secs(10);
        cache.insert("k", Value::expiring("v", at), 0.0);
        assert!(matches!(cache.get("k", &clock), Lookup::Fresh(_)));
        clock.advance(Duration::from_secs(10));
        assert!(matches!(cache.get("k", &clock), Lookup::Miss));
        assert_eq!(cache.entries(), 0, "an expired entry is removed when seen");
    }

    #[test]
    fn values_go_due_then_stale_then_away() {
        let clock = ManualClock::new();
        let cache = ByteCache::new(1 << 20, Tier::Main, Arc::default(), Arc::default());
        let s = Duration::from_secs(1);
        let now = clock.now();
        let v = Value::expiring("v", now + 10 * s)
            .with_refresh_at(Some(now + 5 * s))
            .with_stale_until(Some(now + 20 * s));
        cache.insert("k", v, 0.0);
        let at = |secs| {
            clock.advance(Duration::from_secs(secs));
            cache.get("k", &clock)
        };
        assert!(matches!(at(4), Lookup::Fresh(_)));
        assert!(matches!(at(1), Lookup::Due(_)));
        assert!(matches!(at(5), Lookup::Stale(_)));
        assert_eq!(cache.entries(), 1, "kept while it may be served stale");
        assert!(matches!(at(10), Lookup::Miss));
        assert_eq!(cache.entries(), 0);
        cache.insert("gone", Value::absent(clock.now() + s), 0.0);
        assert!(matches!(cache.get("gone", &clock), Lookup::Absent(_)));
        clock.advance(s);
        assert!(matches!(cache.get("gone", &clock), Lookup::Miss));
    }

    #[test]
    fn a_zero_budget_holds_nothing() {
        let cache = ByteCache::new(0, Tier::Main, Arc::default(), Arc::default());
        cache.insert("k", Value::new("v"), 0.0);
        assert!(matches!(cache.get("k", &ManualClock::new()), Lookup::Miss));
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn evictions_are_counted() {
        let cache = ByteCache::new(64 * 1024, Tier::Main, Arc::default(), Arc::default());
        for i in 0..1000 {
            cache.insert(&format!("k{i}"), Value::new(vec![0u8; 512]), 1.0);
        }
        assert!(cache.evictions() > 0);
        assert!(cache.bytes() <= 64 * 1024);
        assert!(cache.coldest_qps() > 0.0);
    }

    #[test]
    fn replacing_a_value_is_not_an_eviction() {
        let cache = ByteCache::new(1 << 20, Tier::Main, Arc::default(), Arc::default());
        for i in 0..100 {
            cache.insert("k", Value::new(vec![0u8; i]), 0.0);
        }
        assert_eq!(cache.evictions(), 0);
        assert_eq!(cache.entries(), 1);
    }

    #[test]
    fn values_up_to_the_largest_entry_are_kept() {
        // The maincache of a 64 MiB galaxy: values of 7 MiB and more used to be dropped.
        let cache = ByteCache::new(56 << 20, Tier::Main, Arc::default(), Arc::default());
        let max = cache.max_entry_weight();
        assert!(max >= 15 << 20, "largest entry {max}");
        let len = (max - ENTRY_OVERHEAD - 1) as usize;
        assert_eq!(
            cache.insert("k", Value::new(vec![0u8; len]), 0.0),
            Inserted::Kept
        );
        assert!(matches!(
            cache.get("k", &ManualClock::new()),
            Lookup::Fresh(_)
        ));
        let big = Value::new(vec![0u8; len + 1]);
        assert_eq!(cache.insert("k", big, 0.0), Inserted::TooLarge);
        assert!(
            matches!(cache.get("k", &ManualClock::new()), Lookup::Miss),
            "a value too large to keep removes the older one"
        );
        let small = ByteCache::new(1 << 20, Tier::Main, Arc::default(), Arc::default());
        assert!(
            small.max_entry_weight() >= 1_000_000,
            "{}",
            small.max_entry_weight()
        );
    }

    proptest! {
        #[test]
        fn never_exceeds_its_budget(
            capacity in 1u64..200_000,
            ops in proptest::collection::vec((0u16..500, 0usize..20_000), 1..400),
        ) {
            let cache = ByteCache::new(capacity, Tier::Main, Arc::default(), Arc::default());
            for (key, len) in ops {
                cache.insert(&format!("key-{key}"), Value::new(vec![7u8; len]), 0.0);
                prop_assert!(cache.bytes() <= capacity, "{} > {}", cache.bytes(), capacity);
            }
        }
    }
}
