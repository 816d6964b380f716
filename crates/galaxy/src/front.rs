//! A small per-thread front for a galaxy's hottest keys.
//!
//! A hit in the maincache or hotcache takes its shard's read lock and bumps the value's
//! reference count: two atomic writes to lines that every core hitting the same key shares,
//! so one hot key does not get faster with a second core. The front keeps, for each
//! thread, a handful of keys that thread hits again and again, each with a value of its own
//! reference count (the same bytes, held through a per-thread handle). A front hit takes no
//! lock and writes nothing another core reads.
//!
//! What the front serves is what the caches would: every write to a cache that could make
//! a front copy wrong (a removal, a replaced value, a flush, an expired entry dropped) moves
//! the galaxy's [`Front::changes`] on, and a copy taken before that is never served again.
//! A get reads the count before it looks in the caches, so a copy made from a lookup that
//! raced a write carries the older count. Expiry is checked on every front hit, as on a
//! cache hit; a value due for refresh or expired is left to the caches. A copy whose entry
//! was evicted (and perhaps loaded anew without a write) is checked against the caches
//! every [`RECHECK_EVERY`] front hits.
//!
//! Memory: at most [`SLOTS`] values of at most [`MAX_VALUE_BYTES`] each per thread, shared
//! with the caches while their entries live; a copy outliving its entry keeps those bytes
//! until the thread next gets a key of that galaxy whose slot it is, or a newer key takes
//! the slot.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use bytes::Bytes;

use crate::stats::{Counter, Counters, Stripe};
use crate::{Clock, Tier, Value};

/// Keys a thread's front holds, over all galaxies.
pub(crate) const SLOTS: usize = 16;
/// Largest value the front holds.
pub(crate) const MAX_VALUE_BYTES: usize = 16 << 10;
/// Front hits before a copy is checked against the caches again.
pub(crate) const RECHECK_EVERY: u32 = 256;
/// Keys whose recent cache hits a thread counts, to pick the ones worth a slot.
const CANDIDATES: usize = 64;
/// Cache hits in a row on a candidate's counter that earn a key a slot (and one
/// allocation, for its handle).
const ADMIT_AFTER: u8 = 8;

/// A galaxy's side of the fronts: its identity and how often its caches changed.
#[derive(Debug)]
pub(crate) struct Front {
    /// Unique per galaxy for the life of the process (an address could be reused).
    galaxy: u64,
    changes: AtomicU64,
    hasher: foldhash::fast::FixedState,
}

impl Default for Front {
    fn default() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Front {
            galaxy: NEXT.fetch_add(1, Ordering::Relaxed),
            changes: AtomicU64::new(0),
            hasher: foldhash::fast::FixedState::with_seed(0x6761_6c61_7879),
        }
    }
}

/// What a get saw before it looked anywhere: the key's hash and the change count.
#[derive(Clone, Copy)]
pub(crate) struct Seen {
    hash: u64,
    changes: u64,
}

impl Front {
    /// The caches changed in a way that may make a front copy wrong. Call after the change.
    pub(crate) fn changed(&self) {
        self.changes.fetch_add(1, Ordering::Release);
    }

    #[inline]
    pub(crate) fn seen(&self, key: &str) -> Seen {
        Seen {
            hash: self.hasher.hash_one(key),
            changes: self.changes.load(Ordering::Acquire),
        }
    }

    /// This thread's copy of `key`'s value, if it has a fresh one; the hit is counted.
    #[inline]
    pub(crate) fn get(&self, key: &str, seen: Seen, clock: &dyn Clock) -> Option<Value> {
        with_front(|front| {
            let slot = front.slots[slot_index(seen.hash)].as_mut()?;
            if slot.galaxy != self.galaxy
                || slot.hash != seen.hash
                || slot.changes != seen.changes
                || slot.uses == 0
                || *slot.key != *key
            {
                return None;
            }
            if slot.local.has_instants() && !servable(&slot.local, clock.now()) {
                return None;
            }
            slot.uses -= 1;
            slot.counts.incr(slot.hit);
            Some(slot.local.clone())
        })
        .flatten()
    }

    /// A cache hit: `value` is `key`'s in `tier` as of `seen`. Renews this thread's copy
    /// if it is of the same value, or gives the key a slot once it has been hit often. The
    /// slot's hits are counted in `counters`.
    #[inline]
    pub(crate) fn offer(
        &self,
        key: &str,
        seen: Seen,
        value: &Value,
        tier: Tier,
        counters: &Counters,
    ) {
        if value.len() > MAX_VALUE_BYTES || value.is_absent() {
            return;
        }
        with_front(|front| {
            let index = slot_index(seen.hash);
            if let Some(slot) = &mut front.slots[index]
                && slot.galaxy == self.galaxy
                && slot.hash == seen.hash
                && *slot.key == *key
                && same_value(&slot.source, value)
            {
                slot.changes = seen.changes;
                slot.uses = RECHECK_EVERY;
                slot.hit = hit_counter(tier);
                return;
            }
            if !front.hit_again(self.galaxy ^ seen.hash) {
                return;
            }
            // The handle is the one allocation; the bytes are shared with the cache.
            let local = Value::new(Bytes::from_owner(value.bytes().clone()))
                .with_expiry(value.expires_at())
                .with_refresh_at(value.refresh_at())
                .with_stale_until(value.stale_until());
            front.slots[index] = Some(Slot {
                galaxy: self.galaxy,
                hash: seen.hash,
                changes: seen.changes,
                uses: RECHECK_EVERY,
                hit: hit_counter(tier),
                counts: Arc::clone(counters.mine()),
                key: key.into(),
                source: value.clone(),
                local,
            });
        });
    }
}

/// A value the caches would answer as fresh at `now`.
fn servable(value: &Value, now: SystemTime) -> bool {
    !value.is_expired_at(now) && !value.is_due_at(now)
}

/// The same bytes (one allocation, not equal contents) and the same instants.
fn same_value(a: &Value, b: &Value) -> bool {
    a.bytes().as_ptr() == b.bytes().as_ptr()
        && a.len() == b.len()
        && a.expires_at() == b.expires_at()
        && a.refresh_at() == b.refresh_at()
        && a.stale_until() == b.stale_until()
}

fn hit_counter(tier: Tier) -> Counter {
    match tier {
        Tier::Main => Counter::MainHit,
        Tier::Hot => Counter::HotHit,
    }
}

fn slot_index(hash: u64) -> usize {
    // The top bits: the low ones also pick the candidate counter.
    (hash >> 60) as usize % SLOTS
}

struct Slot {
    galaxy: u64,
    hash: u64,
    changes: u64,
    /// Front hits left before the copy is checked against the caches.
    uses: u32,
    /// What a front hit counts as: a hit of the tier the copy came from.
    hit: Counter,
    /// This thread's counters of the galaxy.
    counts: Arc<Stripe>,
    key: Box<str>,
    /// The cache's value, to tell a renewed entry from a replaced one.
    source: Value,
    /// The same value through this thread's handle: what front hits return.
    local: Value,
}

struct ThreadFront {
    slots: [Option<Slot>; SLOTS],
    /// Per candidate: its tag (galaxy and key hash) and cache hits in a row.
    candidates: [(u64, u8); CANDIDATES],
}

impl ThreadFront {
    /// Counts a cache hit of the key tagged `tag`; true once it has earned a slot.
    fn hit_again(&mut self, tag: u64) -> bool {
        let candidate = &mut self.candidates[tag as usize % CANDIDATES];
        if candidate.0 == tag {
            candidate.1 = candidate.1.saturating_add(1);
        } else {
            *candidate = (tag, 1);
        }
        candidate.1 >= ADMIT_AFTER
    }
}

thread_local! {
    static FRONT: RefCell<ThreadFront> = const {
        RefCell::new(ThreadFront {
            slots: [const { None }; SLOTS],
            candidates: [(0, 0); CANDIDATES],
        })
    };
}

/// Runs `f` on this thread's front; `None` while the thread is ending, or when a value
/// dropped inside `f` runs code that gets from a galaxy (the front is then skipped).
#[inline]
fn with_front<R>(f: impl FnOnce(&mut ThreadFront) -> R) -> Option<R> {
    FRONT
        .try_with(|front| front.try_borrow_mut().ok().map(|mut front| f(&mut front)))
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ManualClock;
    use std::time::Duration;

    fn hit(front: &Front, key: &str, clock: &ManualClock) -> Option<Value> {
        front.get(key, front.seen(key), clock)
    }

    /// A cache hit of `value` offered to the front.
    fn offer(front: &Front, key: &str, seen: Seen, value: &Value) {
        front.offer(key, seen, value, Tier::Main, &Counters::new());
    }

    /// Offers `value` until the key earns a slot.
    fn admit(front: &Front, key: &str, value: &Value) {
        for _ in 0..ADMIT_AFTER {
            offer(front, key, front.seen(key), value);
        }
    }

    #[test]
    fn a_key_hit_often_is_served_from_its_own_handle() {
        let (front, clock) = (Front::default(), ManualClock::new());
        let value = Value::new(vec![1u8; 100]);
        offer(&front, "k", front.seen("k"), &value);
        assert!(hit(&front, "k", &clock).is_none(), "one hit earns no slot");
        admit(&front, "k", &value);
        let local = hit(&front, "k", &clock).expect("a front hit");
        assert_eq!(local, value);
        assert_eq!(
            local.bytes().as_ptr(),
            value.bytes().as_ptr(),
            "bytes shared"
        );
        assert!(hit(&front, "other", &clock).is_none());
        assert!(
            Front::default().get("k", front.seen("k"), &clock).is_none(),
            "another galaxy's slot"
        );
    }

    #[test]
    fn front_hits_count_as_hits_of_the_tier_their_copy_came_from() {
        let (front, clock, counters) = (Front::default(), ManualClock::new(), Counters::new());
        let value = Value::new("v");
        for _ in 0..ADMIT_AFTER {
            front.offer("k", front.seen("k"), &value, Tier::Hot, &counters);
        }
        for _ in 0..3 {
            assert!(hit(&front, "k", &clock).is_some());
        }
        assert_eq!(counters.get(Counter::HotHit), 3);
        assert_eq!(counters.get(Counter::MainHit), 0);
    }

    #[test]
    fn a_change_retires_every_copy_taken_before_it() {
        let (front, clock) = (Front::default(), ManualClock::new());
        let value = Value::new("v");
        let before = front.seen("k");
        front.changed();
        // A lookup that raced the change offers under the count it read first.
        for _ in 0..ADMIT_AFTER {
            offer(&front, "k", before, &value);
        }
        assert!(hit(&front, "k", &clock).is_none());
        admit(&front, "k", &value);
        assert!(hit(&front, "k", &clock).is_some());
        front.changed();
        assert!(hit(&front, "k", &clock).is_none());
    }

    #[test]
    fn copies_are_checked_against_the_caches_every_so_often() {
        let (front, clock) = (Front::default(), ManualClock::new());
        let value = Value::new(b"v".to_vec());
        admit(&front, "k", &value);
        for _ in 0..RECHECK_EVERY {
            assert!(hit(&front, "k", &clock).is_some());
        }
        assert!(hit(&front, "k", &clock).is_none(), "due for a check");
        // The cache still holds the same value: renewed without a new handle.
        offer(&front, "k", front.seen("k"), &value);
        assert!(hit(&front, "k", &clock).is_some());
        // A value loaded anew (same contents, new bytes) replaces the copy.
        let reloaded = Value::new(b"v".to_vec());
        for _ in 0..RECHECK_EVERY {
            hit(&front, "k", &clock);
        }
        offer(&front, "k", front.seen("k"), &reloaded);
        let served = hit(&front, "k", &clock).expect("the new value's copy");
        assert_eq!(served.bytes().as_ptr(), reloaded.bytes().as_ptr());
    }

    #[test]
    fn expiry_and_refresh_are_left_to_the_caches() {
        let (front, clock) = (Front::default(), ManualClock::new());
        let s = Duration::from_secs(1);
        let value =
            Value::expiring("v", clock.now() + 10 * s).with_refresh_at(Some(clock.now() + 5 * s));
        admit(&front, "k", &value);
        assert!(hit(&front, "k", &clock).is_some());
        clock.advance(5 * s);
        assert!(
            hit(&front, "k", &clock).is_none(),
            "due: the caches refresh it"
        );
        let absent = Value::absent(clock.now() + s);
        admit(&front, "gone", &absent);
        assert!(
            hit(&front, "gone", &clock).is_none(),
            "cached misses stay in the caches"
        );
    }

    #[test]
    fn large_values_are_not_copied() {
        let (front, clock) = (Front::default(), ManualClock::new());
        admit(&front, "k", &Value::new(vec![0u8; MAX_VALUE_BYTES + 1]));
        assert!(hit(&front, "k", &clock).is_none());
    }
}
