//! Building a galaxy: every setting, with its default.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use galaxycache_promoter::{DefaultPromoter, Promoter};
use galaxycache_universe::Universe;

use crate::backend::DynBackend;
use crate::freshness::Policy;
use crate::{BackendGetter, Clock, Error, ErrorKind, Galaxy, Listener, Refresh, SystemClock};

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
    refresh: Option<Refresh>,
    xfetch_beta: Option<f64>,
    stale_if_error: Duration,
    soft_timeout: Option<Duration>,
    not_found_ttl: Option<Duration>,
    seed: Option<u64>,
    pub(crate) handoff_timeout: Duration,
    pub(crate) promoter: Box<dyn Promoter>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// Default of [`GalaxyBuilder::handoff_timeout`]: 250 ms.
pub const DEFAULT_HANDOFF_TIMEOUT: Duration = Duration::from_millis(250);
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
    /// peers); the rest is the maincache's. The hotcache also takes whatever room the
    /// maincache leaves unused, and gives it back as the maincache fills, as groupcache's
    /// does; the two together never hold more than the budget. 0 makes no hotcache.
    /// Default: 1/8. Must be within 0..=1.
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

    /// When a value is reloaded in the background while it is still served: a get past
    /// that point returns the value at once and starts one reload (coalesced like any load:
    /// the owner reloads from the backend, a node with a hot copy asks the owner again).
    /// A value's own refresh instant, from its backend, wins. Default: none (a value is
    /// reloaded only once it has expired).
    pub fn refresh(mut self, refresh: Refresh) -> Self {
        self.refresh = Some(refresh);
        self
    }

    /// Spread refresh points at random before the planned one, as XFetch does (Vattani
    /// et al., VLDB 2015): earlier by `load time × beta × ln(1/u)`, `u` uniform, never
    /// before the load. Keys loaded together then do not refresh together; a larger `beta`
    /// refreshes earlier. Takes effect with [`refresh`](Self::refresh). Default: off;
    /// `1.0` is XFetch's own default.
    pub fn xfetch(mut self, beta: f64) -> Self {
        self.xfetch_beta = Some(beta.max(0.0));
        self
    }

    /// Keep an expired value this much longer, and serve it (marked
    /// [`is_stale`](crate::Value::is_stale)) when its reload fails: a backend error, an
    /// owner that cannot be reached while the local load fails too, a timeout. The failure
    /// is counted (`Stats::stale_served`), not returned. A value's own stale limit, from
    /// its backend, wins. Default: zero (off).
    pub fn stale_if_error(mut self, window: Duration) -> Self {
        self.stale_if_error = window;
        self
    }

    /// With a stale value at hand (see [`stale_if_error`](Self::stale_if_error)), wait
    /// this long at most for its reload: then the caller gets the stale value, and the
    /// reload goes on in the background and stores its value when it is done. Default:
    /// none (wait for the reload).
    pub fn soft_timeout(mut self, timeout: Duration) -> Self {
        self.soft_timeout = Some(timeout);
        self
    }

    /// Remember that the data source has no value for a key this long: gets meanwhile
    /// answer NotFound without asking it, on every node (the owner's answer travels to
    /// peers with its expiry, like a value). A cached miss costs its key's bytes against
    /// the budget; remove and set clear it. Default: none (every get of a missing key
    /// asks the owner's data source).
    pub fn not_found_ttl(mut self, ttl: Duration) -> Self {
        self.not_found_ttl = Some(ttl);
        self
    }

    /// After a ring change, how long a key's new owner waits for the previous owner's
    /// cached copy (a peek, which never loads) before loading the key from the backend;
    /// the warm-up period itself is the universe's
    /// ([`UniverseBuilder::handoff_warmup`](galaxycache_universe::UniverseBuilder::handoff_warmup)).
    /// Default: 250 ms ([`DEFAULT_HANDOFF_TIMEOUT`]).
    pub fn handoff_timeout(mut self, timeout: Duration) -> Self {
        self.handoff_timeout = timeout;
        self
    }

    /// Seed of the random draws of [`xfetch`](Self::xfetch), for reproducible tests.
    /// Default: random.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
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

    /// The freshness settings, as the galaxy keeps them.
    pub(crate) fn policy(&self) -> Policy {
        Policy::new(
            self.refresh,
            self.xfetch_beta,
            self.stale_if_error,
            self.soft_timeout,
            self.not_found_ttl,
            self.seed,
        )
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
            refresh: None,
            xfetch_beta: None,
            stale_if_error: Duration::ZERO,
            soft_timeout: None,
            not_found_ttl: None,
            seed: None,
            handoff_timeout: DEFAULT_HANDOFF_TIMEOUT,
            promoter: Box::new(DefaultPromoter),
            clock: Arc::new(SystemClock),
        }
    }
}
