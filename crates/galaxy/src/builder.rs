//! Building a galaxy: every setting, with its default.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use galaxycache_promoter::{DefaultPromoter, Promoter};
use galaxycache_universe::Universe;

use crate::backend::DynBackend;
use crate::{BackendGetter, Clock, Error, ErrorKind, Galaxy, Listener, SystemClock};

/// Builds a [`Galaxy`]; see [`Galaxy::builder`].
pub struct GalaxyBuilder {
    pub(crate) universe: Universe,
    pub(crate) name: String,
    pub(crate) budget: u64,
    pub(crate) backend: Box<dyn DynBackend>,
    pub(crate) hot_ratio: f64,
    pub(crate) max_ttl: Option<Duration>,
    pub(crate) ttl_jitter: Duration,
    pub(crate) peer_timeout: Duration,
    pub(crate) fallback_ttl: Duration,
    pub(crate) hot_ttl: Duration,
    pub(crate) version: u32,
    pub(crate) broadcast_retries: u32,
    pub(crate) listener: Option<Box<dyn Listener>>,
    pub(crate) promoter: Box<dyn Promoter>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// Default of [`GalaxyBuilder::hot_ttl`]: 60 s.
pub const DEFAULT_HOT_TTL: Duration = Duration::from_secs(60);
/// Default of [`GalaxyBuilder::broadcast_retries`]: 5 (after 1, 2, 4, 8 and 16 s).
pub const DEFAULT_BROADCAST_RETRIES: u32 = 5;

impl fmt::Debug for GalaxyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GalaxyBuilder")
            .field("name", &self.name)
            .field("budget", &self.budget)
            .field("hot_ratio", &self.hot_ratio)
            .field("max_ttl", &self.max_ttl)
            .field("ttl_jitter", &self.ttl_jitter)
            .field("peer_timeout", &self.peer_timeout)
            .field("fallback_ttl", &self.fallback_ttl)
            .field("hot_ttl", &self.hot_ttl)
            .field("version", &self.version)
            .field("broadcast_retries", &self.broadcast_retries)
            .finish_non_exhaustive()
    }
}

impl GalaxyBuilder {
    /// Share of the byte budget kept for the hotcache (copies of hot keys owned by other
    /// peers); the rest is the maincache. Default: 1/8. Must be within 0..=1.
    pub fn hot_ratio(mut self, ratio: f64) -> Self {
        self.hot_ratio = ratio;
        self
    }

    /// Longest a value is served after it is loaded, whatever its backend said. Default:
    /// none (a value without expiry lives until evicted, as in groupcache).
    pub fn max_ttl(mut self, ttl: Duration) -> Self {
        self.max_ttl = Some(ttl);
        self
    }

    /// Up to this much is taken off [`max_ttl`](Self::max_ttl), at random per value, so
    /// keys loaded together do not all expire together. Default: zero. Capped at max_ttl.
    pub fn ttl_jitter(mut self, jitter: Duration) -> Self {
        self.ttl_jitter = jitter;
        self
    }

    /// How long to wait for a key's owner before loading the key locally. Default: 1 s.
    pub fn peer_timeout(mut self, timeout: Duration) -> Self {
        self.peer_timeout = timeout;
        self
    }

    /// When the owner failed and the key was loaded locally, the local copy is kept this
    /// long at most: long enough that a dead owner does not cause a backend stampede, short
    /// enough that no long-lived duplicate outlives the owner's recovery. Default: 1 s.
    pub fn fallback_ttl(mut self, ttl: Duration) -> Self {
        self.fallback_ttl = ttl;
        self
    }

    /// Longest a hot copy (of a key another peer owns) is served, whatever the value's own
    /// expiry. This bounds staleness when a remove or set does not reach this node (it was
    /// down or cut off, and the retries failed too): its copy is gone this long after it
    /// was fetched. Default: 60 s ([`DEFAULT_HOT_TTL`]).
    pub fn hot_ttl(mut self, ttl: Duration) -> Self {
        self.hot_ttl = ttl;
        self
    }

    /// The version of this galaxy's values. Nodes never exchange values or writes across
    /// versions: bump it when the format of the values changes, and during the rolling
    /// deploy a node whose key's owner runs the other version loads the key itself (kept
    /// for the fallback TTL) instead of taking a value it cannot read. Default: 0, what a
    /// golang/groupcache or Go galaxycache peer speaks.
    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    /// How many times a remove or flush that did not reach a peer is retried in the
    /// background (after 1 s, then doubling up to 30 s). 0 turns retries off. Default: 5
    /// ([`DEFAULT_BROADCAST_RETRIES`]).
    pub fn broadcast_retries(mut self, retries: u32) -> Self {
        self.broadcast_retries = retries;
        self
    }

    /// Told of every store, expiry, eviction, remove and flush; see [`Listener`]. Default:
    /// none.
    pub fn listener(mut self, listener: impl Listener) -> Self {
        self.listener = Some(Box::new(listener));
        self
    }

    /// Decides which peer-owned keys are copied into the hotcache. Default:
    /// [`DefaultPromoter`].
    pub fn promoter(mut self, promoter: impl Promoter) -> Self {
        self.promoter = Box::new(promoter);
        self
    }

    /// The clock for expiry and request rates. Default: [`SystemClock`].
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The galaxy, registered in its universe so peers can fetch from it.
    ///
    /// Fails with [`ErrorKind::Config`] when the name is empty or taken in this universe,
    /// or the hot ratio is outside 0..=1.
    pub fn build(self) -> Result<Galaxy, Error> {
        if self.name.is_empty() {
            return Err(Error::new(ErrorKind::Config, "a galaxy needs a name"));
        }
        if !(0.0..=1.0).contains(&self.hot_ratio) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("hot_ratio {} is outside 0..=1", self.hot_ratio),
            ));
        }
        Galaxy::assemble(self)
    }
}

impl Galaxy {
    /// Start building a galaxy called `name` in `universe`, holding at most `budget_bytes`
    /// (maincache and hotcache together; each entry counts its key, its value and a fixed
    /// overhead), loading missing keys from `backend`.
    pub fn builder(
        universe: &Universe,
        name: impl Into<String>,
        budget_bytes: u64,
        backend: impl BackendGetter,
    ) -> GalaxyBuilder {
        GalaxyBuilder {
            universe: universe.clone(),
            name: name.into(),
            budget: budget_bytes,
            backend: Box::new(backend),
            hot_ratio: 1.0 / 8.0,
            max_ttl: None,
            ttl_jitter: Duration::ZERO,
            peer_timeout: Duration::from_secs(1),
            fallback_ttl: Duration::from_secs(1),
            hot_ttl: DEFAULT_HOT_TTL,
            version: 0,
            broadcast_retries: DEFAULT_BROADCAST_RETRIES,
            listener: None,
            promoter: Box::new(DefaultPromoter),
            clock: Arc::new(SystemClock),
        }
    }
}
