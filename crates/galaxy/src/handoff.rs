//! Warm hand-off: after a ring change, a key's new owner asks its previous owner for it
//! before loading it from the backend.

use galaxycache_universe::GalaxyId;
use tokio::time::Instant;

use crate::Value;
use crate::fence::Generation;
use crate::galaxy::Inner;
use crate::listener::{StoreReason, Tier};
use crate::stats::Counter;

impl Inner {
    /// The value of `key` from its previous owner's cache, if the ring changed lately (see
    /// `Universe::previous_owner`) and that peer has it fresh; stored here as if loaded.
    /// A peek never loads, and waits at most the hand-off timeout: a miss costs little.
    pub(crate) async fn take_over(&self, key: &str, generation: Generation) -> Option<Value> {
        let previous = self.universe.previous_owner(key)?;
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
