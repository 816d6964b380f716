//! Warm hand-off: after a ring change, a key's new owner asks its previous owner for it
//! before loading it from the backend.

use std::sync::Mutex;

use galaxycache_universe::GalaxyId;
use tokio::time::Instant;

use crate::Value;
use crate::fence::{Fence, Generation, Snapshot};
use crate::galaxy::Inner;
use crate::listener::{StoreReason, Tier};
use crate::stats::Counter;

/// The generations as of the last ring change: a key written to since (its generation
/// moved) is not taken over, since its previous owner may not have heard of the write yet.
pub(crate) struct RingChange(Mutex<Snapshot>);

impl RingChange {
    pub(crate) fn new(fence: &Fence) -> Self {
        RingChange(Mutex::new(fence.snapshot()))
    }

    /// Note the generations now: the ring is about to change.
    pub(crate) fn mark(&self, fence: &Fence) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = fence.snapshot();
    }

    /// Whether a load of `key` that started at `generation` saw no write since the change.
    fn untouched(&self, fence: &Fence, key: &str, generation: Generation) -> bool {
        let snapshot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        fence.generation_in(&snapshot, key) == generation
    }
}

impl Inner {
    /// The value of `key` from its previous owner's cache, if the ring changed lately (see
    /// `Universe::previous_owner`), no write of the key came in since, and that peer has
    /// it fresh; stored here as if loaded. A peek never loads, and waits at most the
    /// hand-off timeout: a miss costs little.
    pub(crate) async fn take_over(&self, key: &str, generation: Generation) -> Option<Value> {
        let previous = self.universe.previous_owner(key)?;
        if !self.ring_change.untouched(&self.fence, key, generation) {
            return None;
        }
        let deadline = Instant::now() + self.handoff_timeout;
        let id = GalaxyId::new(&self.name, self.version);
        let peeked = tokio::time::timeout_at(deadline, previous.peek(id, key, deadline)).await;
        match peeked {
            Ok(Ok(Some(value))) if !value.is_absent() && !value.is_expired_at(self.clock.now()) => {
                self.counters.incr(Counter::HandoffHit);
                self.store(
                    Tier::Main,
                    key,
                    &value,
                    0.0,
                    generation,
                    StoreReason::Handoff,
                );
                Some(value)
            }
            _ => {
                self.counters.incr(Counter::HandoffMiss);
                None
            }
        }
    }
}
