//! Generations that fence loads against writes.
//!
//! Every key maps to a stripe holding a generation. A load reads its key's generation when
//! it starts and stores its result only if the generation is unchanged; a remove or set
//! advances the generation and changes the caches under the same lock, so no load that
//! started before it can store after it. A flush advances every stripe. Keys that share a
//! stripe fence each other too: a load then loses its store (the value is still returned),
//! which costs a later miss and never a stale value. With 4096 stripes that is rare.

use std::hash::BuildHasher;

use crate::sync::{Mutex, MutexGuard};

#[cfg(not(shuttle))]
const STRIPES: usize = 4096;
/// Few stripes under the model checker: a flush locks each one, a scheduling point apiece.
#[cfg(shuttle)]
const STRIPES: usize = 4;

/// A key's generation as a load saw it when it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Generation(u64);

#[cfg(test)]
impl Generation {
    pub(crate) const ZERO: Generation = Generation(0);

    pub(crate) fn next(self) -> Generation {
        Generation(self.0 + 1)
    }
}

/// Every stripe's generation at one moment.
pub(crate) struct Snapshot(Box<[u64]>);

pub(crate) struct Fence {
    stripes: Box<[Mutex<u64>]>,
    /// A fixed seed, so which keys share a stripe is the same in every run: a write fences
    /// the loads of every key of its stripe (one in 4,096), and a randomly seeded hasher
    /// made that extra load appear in some runs of a seed and not in others.
    hasher: foldhash::fast::FixedState,
}

impl Fence {
    pub(crate) fn new() -> Self {
        Fence {
            stripes: (0..STRIPES).map(|_| Mutex::new(0)).collect(),
            hasher: foldhash::fast::FixedState::with_seed(0x0066_656e_6365),
        }
    }

    fn index(&self, key: &str) -> usize {
        self.hasher.hash_one(key) as usize % STRIPES
    }

    fn stripe(&self, key: &str) -> MutexGuard<'_, u64> {
        self.stripes[self.index(key)]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Every key's generation now: for a long load of many keys (a preload) that must
    /// store none of those written since it started.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot(
            self.stripes
                .iter()
                .map(|s| *s.lock().unwrap_or_else(|e| e.into_inner()))
                .collect(),
        )
    }

    /// `key`'s generation as of `snapshot`.
    pub(crate) fn generation_in(&self, snapshot: &Snapshot, key: &str) -> Generation {
        Generation(snapshot.0[self.index(key)])
    }

    /// `key`'s generation now: what a load records when it starts.
    pub(crate) fn current(&self, key: &str) -> Generation {
        Generation(*self.stripe(key))
    }

    /// Run `store` if `key`'s generation is still `seen`, with no write in between; true
    /// if it ran.
    pub(crate) fn store_if(&self, key: &str, seen: Generation, store: impl FnOnce()) -> bool {
        let generation = self.stripe(key);
        if *generation != seen.0 {
            return false;
        }
        store();
        true
    }

    /// Advance `key`'s generation and run `write` before any load can check it again.
    pub(crate) fn advance<T>(&self, key: &str, write: impl FnOnce() -> T) -> T {
        let mut generation = self.stripe(key);
        *generation += 1;
        write()
    }

    /// Advance every key's generation: every load in flight loses its store.
    pub(crate) fn advance_all(&self) {
        for stripe in self.stripes.iter() {
            *stripe.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        }
    }
}

#[cfg(all(test, shuttle))]
mod shuttle_tests;

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the cluster simulation: with a hasher seeded per fence, which keys shared
    /// a stripe (and so which loads a write fenced) changed from run to run.
    #[test]
    fn keys_share_the_same_stripes_in_every_fence() {
        let (a, b) = (Fence::new(), Fence::new());
        for i in 0..1000 {
            let key = format!("key-{i}");
            assert_eq!(a.index(&key), b.index(&key), "{key}");
        }
    }

    #[test]
    fn a_write_fences_the_loads_that_started_before_it() {
        let fence = Fence::new();
        let before = fence.current("k");
        fence.advance("k", || ());
        assert!(!fence.store_if("k", before, || ()));
        let after = fence.current("k");
        assert!(after > before);
        assert!(fence.store_if("k", after, || ()));
    }

    #[test]
    fn a_flush_fences_every_key() {
        let fence = Fence::new();
        let seen: Vec<_> = (0..10_000)
            .map(|i| fence.current(&format!("k{i}")))
            .collect();
        fence.advance_all();
        for (i, seen) in seen.into_iter().enumerate() {
            assert!(!fence.store_if(&format!("k{i}"), seen, || ()));
        }
    }

    #[test]
    fn a_snapshot_fences_what_was_written_after_it() {
        let fence = Fence::new();
        fence.advance("before", || ());
        let snapshot = fence.snapshot();
        fence.advance("after", || ());
        assert!(fence.store_if("before", fence.generation_in(&snapshot, "before"), || ()));
        assert!(!fence.store_if("after", fence.generation_in(&snapshot, "after"), || ()));
    }

    #[test]
    fn other_stripes_are_not_fenced() {
        let fence = Fence::new();
        let seen: Vec<_> = (0..100).map(|i| fence.current(&format!("k{i}"))).collect();
        fence.advance("k0", || ());
        let stored = (1..100)
            .filter(|&i| fence.store_if(&format!("k{i}"), seen[i], || ()))
            .count();
        assert!(
            stored >= 98,
            "only k0's stripe should be fenced, {stored} of 99 stored"
        );
    }
}
