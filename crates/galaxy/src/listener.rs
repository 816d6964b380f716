//! Lifecycle listeners: what a galaxy tells the application about its entries.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// Which of a galaxy's caches an entry is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    /// The maincache: keys this node owns, and fallback copies of keys whose owner failed.
    Main,
    /// The hotcache: copies of hot keys owned by other peers.
    Hot,
}

/// Why a value was stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StoreReason {
    /// Loaded from this node's backend, for a key this node owns.
    Load,
    /// Loaded from this node's backend because the key's owner failed; kept for the
    /// fallback TTL only.
    Fallback,
    /// Fetched from the key's owner and promoted into the hotcache.
    Promotion,
    /// Written by [`Galaxy::set`](crate::Galaxy::set), here or on another node.
    Set,
    /// Read by [`Galaxy::preload`](crate::Galaxy::preload).
    Preload,
    /// Taken over from the key's previous owner after a ring change.
    Handoff,
}

/// Where a remove or a flush came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Origin {
    /// A call on this node: [`Galaxy::remove`](crate::Galaxy::remove) and its kin.
    Local,
    /// Another node's broadcast.
    Peer,
    /// A change feed this node follows ([`Galaxy::follow`](crate::Galaxy::follow)).
    Feed,
}

/// One thing that happened to a galaxy's entries, as a closure [`Listener`] sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event<'a> {
    /// A value was stored.
    Stored {
        /// The key.
        key: &'a str,
        /// The cache it went into.
        tier: Tier,
        /// Why.
        reason: StoreReason,
    },
    /// A get found the value expired and dropped it.
    Expired {
        /// The key.
        key: &'a str,
        /// The cache it was in.
        tier: Tier,
    },
    /// The value was evicted to keep the cache within its byte budget.
    Evicted {
        /// The key.
        key: &'a str,
        /// The cache it was in.
        tier: Tier,
    },
    /// A copy of the key was dropped by a remove, or by a set that another node owns.
    Removed {
        /// The key.
        key: &'a str,
        /// Who asked.
        origin: Origin,
    },
    /// Every entry of the galaxy was dropped.
    Flushed {
        /// Who asked.
        origin: Origin,
    },
}

/// Told of every change to a galaxy's entries: store, expire, evict, remove, flush.
///
/// Every method has a no-op default, so a listener implements only what it needs; a
/// closure over [`Event`] is a listener too. A listener is called on the thread that made
/// the change, after the change, never on a cache hit: keep it quick (hand slow work to a
/// channel). A listener that panics is caught and logged; the get, load or write that
/// called it goes on unharmed.
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use galaxycache::{Event, Galaxy, Value};
/// use galaxycache::universe::Universe;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), galaxycache::Error> {
/// let seen = Arc::new(Mutex::new(Vec::new()));
/// let log = Arc::clone(&seen);
/// let universe = Universe::builder("http://127.0.0.1:8080").build();
/// let galaxy = Galaxy::builder(&universe, "g", 1 << 20, |key: String| async move {
///     Ok(Some(Value::new(key)))
/// })
/// .listener(move |event: Event<'_>| log.lock().unwrap().push(format!("{event:?}")))
/// .build()?;
/// galaxy.get("k").await?;
/// galaxy.remove("k").await?;
/// assert_eq!(seen.lock().unwrap().len(), 2); // stored, then removed
/// # Ok(())
/// # }
/// ```
pub trait Listener: Send + Sync + 'static {
    /// A value was stored in `tier` for `reason`.
    fn on_store(&self, key: &str, tier: Tier, reason: StoreReason) {
        let _ = (key, tier, reason);
    }

    /// A get found the value of `key` expired and dropped it.
    fn on_expire(&self, key: &str, tier: Tier) {
        let _ = (key, tier);
    }

    /// The value of `key` was evicted from `tier` to stay within the budget.
    fn on_evict(&self, key: &str, tier: Tier) {
        let _ = (key, tier);
    }

    /// This node's copy of `key` was dropped by a write from `origin`.
    fn on_remove(&self, key: &str, origin: Origin) {
        let _ = (key, origin);
    }

    /// Every entry was dropped by a flush from `origin`.
    fn on_flush(&self, origin: Origin) {
        let _ = origin;
    }
}

impl<F> Listener for F
where
    F: Fn(Event<'_>) + Send + Sync + 'static,
{
    fn on_store(&self, key: &str, tier: Tier, reason: StoreReason) {
        self(Event::Stored { key, tier, reason });
    }

    fn on_expire(&self, key: &str, tier: Tier) {
        self(Event::Expired { key, tier });
    }

    fn on_evict(&self, key: &str, tier: Tier) {
        self(Event::Evicted { key, tier });
    }

    fn on_remove(&self, key: &str, origin: Origin) {
        self(Event::Removed { key, origin });
    }

    fn on_flush(&self, origin: Origin) {
        self(Event::Flushed { origin });
    }
}

/// A galaxy's listener, if it has one, called so that a panic in it harms nothing.
#[derive(Default)]
pub(crate) struct Events(Option<Box<dyn Listener>>);

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Events(listener)"
        } else {
            "Events(none)"
        })
    }
}

impl Events {
    pub(crate) fn new(listener: Option<Box<dyn Listener>>) -> Self {
        Events(listener)
    }

    #[inline]
    pub(crate) fn tell(&self, event: impl FnOnce(&dyn Listener)) {
        if let Some(listener) = &self.0
            && catch_unwind(AssertUnwindSafe(|| event(&**listener))).is_err()
        {
            tracing::warn!("a galaxy listener panicked; the event was dropped");
        }
    }
}
