//! The galaxy: a named cache with a maincache, a hotcache and singleflight.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use galaxycache_promoter::{self as promoter, HotcacheStats, Promoter};
use galaxycache_universe::{
    self as universe, BoxFuture, FetchResult, GalaxyHandler, GalaxyId, Owner, RemoteFetcher,
    Universe, WriteOp, saturating_instant,
};
use tokio::time::Instant;
use tracing::Instrument;

use crate::backend::{LoadContext, LoadReason};
use crate::batch::Batcher;
use crate::cache::{ByteCache, ENTRY_OVERHEAD, Inserted, Lookup, entry_weight};
use crate::candidates::Candidates;
use crate::fence::{Fence, Generation};
use crate::freshness::{Policy, stale_may_answer};
use crate::front::Front;
use crate::handoff::RingChange;
use crate::listener::{Events, Origin, StoreReason, Tier};
use crate::metrics;
use crate::singleflight::{Group, Role};
use crate::stats::{Counter, Counters};
use crate::write::Write;
use crate::{Clock, Codec, Error, ErrorKind, GalaxyBuilder, Report, Stats, Value};

/// A galaxy shares its budget out between its caches each time 1/`SHARE_STEPS` of it has
/// been stored.
const SHARE_STEPS: u64 = 64;

/// Keys whose fetch rates are tracked for promotion.
const CANDIDATE_KEYS: usize = 16 * 1024;

/// A named, peer-sharded, read-through cache.
///
/// `get` answers from this node's caches, or loads the key: from the backend when this
/// node owns it, otherwise from its owner. Cheap to clone; clones share one galaxy.
///
/// # Coalescing
///
/// However many callers of one node get a missing key at once, the node makes one backend
/// load or one peer fetch for it; with a stable peer list, the cluster makes one backend
/// load per key. Every waiting caller gets the same value or the same error. The load does
/// not belong to the caller that started it: dropping that caller neither cancels the load
/// nor strands the others. A backend that panics is an [`ErrorKind::Panicked`] error for
/// every waiter, and the next get loads again.
///
/// # Batched loads
///
/// A backend that [batches](crate::BackendGetter::batches) gets its loads gathered into
/// [`get_many`](crate::BackendGetter::get_many) calls: a load that finds the backend idle
/// goes at once, in a call with the loads that arrive in the same scheduler tick (all the
/// keys of a [`get_many`](Self::get_many) that miss); loads that arrive while calls run go
/// together in the next call, at most [`MAX_BATCH`](crate::MAX_BATCH) keys each, and at most four calls
/// run at once (a full batch need not wait for a call to end). Each key keeps every
/// guarantee above: one load per key, fencing by writes, expiry, and a panicking call is
/// an [`ErrorKind::Panicked`] error for every key in it. A backend that does not batch is
/// called once per key.
///
/// # Writes
///
/// [`remove`](Self::remove), [`set`](Self::set) and [`flush`](Self::flush) reach every
/// node: the key's owner first, then every other peer, each of which drops its copy. A
/// write is never undone by a load: a load (from the backend or from the owner) that was
/// in flight when a write of its key reached a node does not store its result there, and
/// a get that starts after the write does not join it but loads anew. The callers that
/// were already waiting on such a load still get its result: they asked before the write,
/// and the value was current when they asked. A peer that a write did not reach (down,
/// partitioned) is retried in the background, and serves its hot copy at most the hot TTL
/// ([`GalaxyBuilder::hot_ttl`]).
///
/// ```
/// use galaxycache::{Galaxy, Value, Error};
/// use galaxycache::universe::Universe;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let universe = Universe::builder("http://127.0.0.1:8080").build();
/// let backend = |key: String| async move { Ok(Some(Value::new(key.to_uppercase()))) };
/// let galaxy = Galaxy::builder(&universe, "shout", 64 << 20, backend).build()?;
/// assert_eq!(galaxy.get("hello").await?.bytes().as_ref(), b"HELLO");
/// assert_eq!(galaxy.stats().backend_loads, 1);
/// galaxy.get("hello").await?;
/// assert_eq!(galaxy.stats().main_hits, 1);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Galaxy {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    me: Weak<Inner>,
    pub(crate) name: Arc<str>,
    pub(crate) version: u32,
    pub(crate) universe: Universe,
    /// The backend, behind the batcher that gathers its loads when it batches.
    backend: Arc<Batcher>,
    pub(crate) main: ByteCache,
    pub(crate) hot: ByteCache,
    /// What the two caches may hold together.
    budget: u64,
    /// The hotcache's share of the budget, which it keeps whatever the maincache holds;
    /// it may take more while the maincache leaves room (see [`Inner::share_budget`]).
    hot_floor: u64,
    /// Bytes stored in either cache since the budget was last shared out.
    stored_since_share: AtomicU64,
    /// Per-thread copies of the hottest keys (see `front.rs`).
    front: Arc<Front>,
    candidates: Candidates,
    /// Gets by this node's callers of keys another node owns.
    client_loads: Arc<Group>,
    /// Backend loads, whoever asked: this node's callers, peers, or a fallback.
    backend_loads: Arc<Group>,
    /// Generations that keep loads from storing over writes.
    pub(crate) fence: Fence,
    pub(crate) events: Arc<Events>,
    pub(crate) counters: Counters,
    promoter: Box<dyn Promoter>,
    pub(crate) clock: Arc<dyn Clock>,
    max_ttl: Option<Duration>,
    ttl_jitter: Duration,
    pub(crate) peer_timeout: Duration,
    fallback_ttl: Duration,
    hot_ttl: Duration,
    pub(crate) broadcast_retries: u32,
    pub(crate) pending_retries: AtomicUsize,
    pub(crate) policy: Policy,
    pub(crate) handoff_timeout: Duration,
    pub(crate) ring_change: RingChange,
    /// Whether a value too large to cache has been logged (once per galaxy).
    too_large_warned: AtomicBool,
    /// When a peer's flush was last heard here (a cluster flush comes twice).
    pub(crate) peer_flush_heard: std::sync::Mutex<Option<Instant>>,
}

impl Galaxy {
    /// The galaxy of a checked builder, registered in its universe.
    pub(crate) fn assemble(b: GalaxyBuilder) -> Result<Galaxy, Error> {
        let hot_bytes = (b.budget as f64 * b.hot_ratio) as u64;
        let universe = b.universe.clone();
        let name: Arc<str> = Arc::from(b.name.as_str());
        let policy = b.policy();
        let fence = Fence::new();
        let ring_change = RingChange::new(&fence);
        let events = Arc::new(Events::new(b.listener));
        let front = Arc::new(Front::default());
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            name: Arc::clone(&name),
            version: b.version,
            universe: b.universe,
            backend: Batcher::new(b.backend),
            main: ByteCache::new(
                b.budget - hot_bytes,
                Tier::Main,
                Arc::clone(&events),
                Arc::clone(&front),
            ),
            hot: ByteCache::new(
                hot_bytes,
                Tier::Hot,
                Arc::clone(&events),
                Arc::clone(&front),
            ),
            front,
            budget: b.budget,
            hot_floor: hot_bytes,
            stored_since_share: AtomicU64::new(0),
            candidates: Candidates::new(CANDIDATE_KEYS),
            client_loads: Group::new(),
            backend_loads: Group::new(),
            fence,
            events,
            counters: Counters::new(),
            promoter: b.promoter,
            clock: b.clock,
            max_ttl: b.max_ttl,
            ttl_jitter: b.ttl_jitter.min(b.max_ttl.unwrap_or_default()),
            peer_timeout: b.peer_timeout,
            fallback_ttl: b.fallback_ttl,
            hot_ttl: b.hot_ttl,
            broadcast_retries: b.broadcast_retries,
            pending_retries: AtomicUsize::new(0),
            policy,
            handoff_timeout: b.handoff_timeout,
            ring_change,
            too_large_warned: AtomicBool::new(false),
            peer_flush_heard: std::sync::Mutex::new(None),
        });
        let handler: Arc<dyn GalaxyHandler> = inner.clone();
        universe.register(&name, Arc::downgrade(&handler))?;
        Ok(Galaxy { inner })
    }

    /// The galaxy's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The value of `key`: from this node's caches, or loaded (see the type's docs).
    ///
    /// Errors: [`ErrorKind::NotFound`] when the data source has no such key (said by this
    /// node's backend or by the owner); [`ErrorKind::InvalidKey`] for an empty key or one
    /// longer than the universe allows; otherwise the backend's error.
    ///
    /// A value past its refresh point is returned at once and reloaded in the background.
    /// An expired value within its stale limit is returned (marked
    /// [`is_stale`](Value::is_stale)) when the reload fails, or takes longer than the soft
    /// timeout; see the builder's freshness settings.
    pub async fn get(&self, key: &str) -> Result<Value, Error> {
        self.get_with(key, &GetOptions::DEFAULT).await
    }

    /// [`get`](Self::get), with a deadline or a reason of this call's (see
    /// [`GetOptions`]). A hit is answered as by `get`; a get that must wait for a load
    /// fails with [`ErrorKind::Timeout`] at its deadline, while the load goes on for its
    /// other callers and the cache. The load this get starts tells the backend both
    /// ([`LoadContext`]).
    pub async fn get_with(&self, key: &str, options: &GetOptions) -> Result<Value, Error> {
        let inner = &self.inner;
        let seen = inner.front.seen(key);
        if let Some(v) = inner.front.get(key, seen, &*inner.clock) {
            return Ok(v);
        }
        let (found, hit) = match inner.main.get(key, &*inner.clock) {
            Lookup::Fresh(v) => {
                inner.counters.incr(Counter::MainHit);
                inner
                    .front
                    .offer(key, seen, &v, Tier::Main, &inner.counters);
                return Ok(v);
            }
            Lookup::Miss => match inner.hot.get(key, &*inner.clock) {
                Lookup::Fresh(v) => {
                    inner.counters.incr(Counter::HotHit);
                    inner.front.offer(key, seen, &v, Tier::Hot, &inner.counters);
                    return Ok(v);
                }
                found => (found, Counter::HotHit),
            },
            found => (found, Counter::MainHit),
        };
        // Out of line and boxed, so the future of a hit stays small.
        Box::pin(self.get_uncommon(key, found, hit, options)).await
    }

    async fn get_uncommon(
        &self,
        key: &str,
        found: Lookup,
        hit: Counter,
        options: &GetOptions,
    ) -> Result<Value, Error> {
        let inner = &self.inner;
        match found {
            Lookup::Fresh(v) => Ok(v),
            Lookup::Due(v) => {
                inner.counters.incr(hit);
                inner.refresh_in_background(key);
                Ok(v)
            }
            Lookup::Absent(_) => {
                inner.counters.incr(Counter::NotFoundHit);
                Err(Error::not_found(key))
            }
            Lookup::Stale(stale) => self.get_missing(key, Some(stale), options).await,
            Lookup::Miss => self.get_missing(key, None, options).await,
        }
    }

    /// A get that missed here: in a span of its own, timed.
    async fn get_missing(
        &self,
        key: &str,
        stale: Option<Value>,
        options: &GetOptions,
    ) -> Result<Value, Error> {
        let inner = &self.inner;
        inner.counters.incr(Counter::Miss);
        inner.universe.check_key(key)?;
        let span = event_span("galaxycache.get", &inner.name, key, None);
        let started = Instant::now();
        let load = in_time(inner.load_coalesced(key, *options), options.deadline);
        let result = match stale {
            Some(stale) => {
                inner
                    .answer_or_stale(load, stale)
                    .instrument(span.clone())
                    .await
            }
            None => load.instrument(span.clone()).await,
        };
        let outcome = outcome_of(&result);
        span.record("outcome", outcome);
        metrics::miss(&inner.name, outcome, started.elapsed());
        result
    }

    /// The values of `keys`, in their order: each exactly what [`get`](Self::get) of that
    /// key answers (a key's error does not fail the others), every key keeping each of
    /// `get`'s guarantees (one load per key however many callers ask, fencing by writes,
    /// expiry). The gets run at once: the keys that miss here and one peer owns travel
    /// to it together, one request per [`MAX_BATCH_KEYS`](galaxycache_universe::MAX_BATCH_KEYS)
    /// keys, and the keys this node owns reach a batching backend in one call.
    pub async fn get_many<K: AsRef<str>>(&self, keys: &[K]) -> Vec<Result<Value, Error>> {
        self.get_many_with(keys, &GetOptions::DEFAULT).await
    }

    /// [`get_many`](Self::get_many), each key's get as [`get_with`](Self::get_with)
    /// `options` makes it.
    pub async fn get_many_with<K: AsRef<str>>(
        &self,
        keys: &[K],
        options: &GetOptions,
    ) -> Vec<Result<Value, Error>> {
        let gets = keys.iter().map(|key| self.get_with(key.as_ref(), options));
        galaxycache_universe::gathered(futures_util::future::join_all(gets)).await
    }

    /// The value of `key` decoded as `T`; see [`get`](Self::get).
    pub async fn get_as<T: Codec>(&self, key: &str) -> Result<T, Error> {
        T::decode(self.get(key).await?.into_bytes())
    }

    /// Remove `key` from the whole cluster: this node drops its copy, then the key's owner
    /// drops its own, then every other peer drops its hot or fallback copy. Loads of the
    /// key in flight anywhere the remove reached do not store their results (see
    /// "Writes" above); the next get loads it anew.
    ///
    /// The report says which peers applied it; this node's part never fails. Errors only
    /// for an invalid key.
    pub async fn remove(&self, key: &str) -> Result<Report, Error> {
        self.inner.universe.check_key(key)?;
        Ok(self
            .inner
            .write_cluster(Write::Remove(key.into()), Origin::Local)
            .await)
    }

    /// Drop this node's copy of `key` only (maincache and hotcache), fencing its loads in
    /// flight here; other nodes keep theirs. True if a copy was held.
    pub fn remove_local(&self, key: &str) -> bool {
        self.inner.drop_local(key, Origin::Local)
    }

    /// Write `value` as the value of `key` (write-through): it is stored at the key's
    /// owner, with its expiry (capped like a loaded value's), and every other node drops
    /// its copy. A node that does not own the key keeps no copy of its own, since it could
    /// not be told to drop it. If the owner cannot be reached the value is not stored
    /// anywhere (the report says so) and the owner is told to drop its old value later.
    ///
    /// Errors only for an invalid key.
    pub async fn set(&self, key: &str, value: Value) -> Result<Report, Error> {
        let inner = &self.inner;
        inner.universe.check_key(key)?;
        let value = inner.cap_expiry(value, None);
        let write = if value.is_expired_at(inner.clock.now()) {
            Write::Remove(key.into())
        } else {
            Write::Set(key.into(), value)
        };
        Ok(inner.write_cluster(write, Origin::Local).await)
    }

    /// Drop every entry of this galaxy on every node, fencing every load in flight.
    ///
    /// A flush has no one owner to reach first (every node owns some keys), so it goes to
    /// every peer twice: a node that flushed before a key's owner did may have fetched the
    /// owner's old value meanwhile, and the second round, sent once every peer has applied
    /// the first, drops it. Listeners and stats count a flush once per node.
    pub async fn flush(&self) -> Report {
        self.inner.write_cluster(Write::Flush, Origin::Local).await
    }

    /// Drop every entry of this galaxy on this node only.
    pub fn flush_local(&self) {
        self.inner.flush_local(Origin::Local);
    }

    /// The version of this galaxy's values (see [`GalaxyBuilder::version`]).
    pub fn version(&self) -> u32 {
        self.inner.version
    }

    /// A snapshot of the counters and cache sizes.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Publish this galaxy's counters and gauges through the `metrics` facade, to the
    /// recorder in force, from a snapshot of its [`Stats`] (label `galaxy`):
    /// `galaxycache_gets_total` by `outcome` (`main_hit`, `hot_hit`, `not_found_hit`,
    /// `miss`), `galaxycache_cache_bytes`, `galaxycache_cache_entries` and
    /// `galaxycache_evictions_total` by `tier` (`main`, `hot`), `galaxycache_budget_bytes`,
    /// and a `galaxycache_<stat>_total` counter for every other counter of [`Stats`].
    ///
    /// [`Universe::publish_metrics`] does this for every galaxy of a universe, and for its
    /// peers: call that before an exporter renders, or on a timer. The latency histograms
    /// (backend loads, peer fetches, gets that missed) are recorded as they happen, so an
    /// exporter sees them without a call. Hits are counted by the galaxy's own per-thread
    /// counters and reach the facade only here, so a hit costs the same with or without a
    /// recorder.
    ///
    /// ```
    /// use galaxycache::{Galaxy, Value};
    /// use galaxycache::universe::Universe;
    /// use metrics_util::debugging::DebuggingRecorder;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), galaxycache::Error> {
    /// let universe = Universe::builder("http://127.0.0.1:8080").build();
    /// let backend = |key: String| async move { Ok(Some(Value::new(key))) };
    /// let galaxy = Galaxy::builder(&universe, "words", 1 << 20, backend).build()?;
    /// galaxy.get("hello").await?;
    ///
    /// let recorder = DebuggingRecorder::new();
    /// let snapshotter = recorder.snapshotter();
    /// metrics::with_local_recorder(&recorder, || galaxy.publish_metrics());
    /// let names: Vec<String> = snapshotter
    ///     .snapshot()
    ///     .into_vec()
    ///     .into_iter()
    ///     .map(|(key, ..)| key.key().name().to_owned())
    ///     .collect();
    /// assert!(names.iter().any(|n| n == "galaxycache_backend_loads_total"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn publish_metrics(&self) {
        self.inner.publish_metrics();
    }

    /// The byte budget of maincache and hotcache together.
    pub fn budget_bytes(&self) -> u64 {
        self.inner.budget
    }
}

impl Inner {
    /// See [`Galaxy::stats`].
    fn stats(&self) -> Stats {
        let inner = self;
        Stats {
            main_bytes: inner.main.bytes(),
            main_entries: inner.main.entries(),
            hot_bytes: inner.hot.bytes(),
            hot_entries: inner.hot.entries(),
            main_evictions: inner.main.evictions(),
            hot_evictions: inner.hot.evictions(),
            pending_retries: inner.pending_retries.load(Ordering::Relaxed) as u64,
            backend_batches: inner.backend.calls_made(),
            ..Stats::from_counters(&inner.counters)
        }
    }
}

impl Galaxy {
    /// The largest value (with a key of `key_len` bytes) that the maincache keeps:
    /// one entry may take 97% of one shard of the cache, and a shard holds at least
    /// [`MIN_SHARD_BYTES`](crate::MIN_SHARD_BYTES) (or the whole maincache, when it is
    /// smaller). A larger value is served to its callers but not cached, counted in
    /// [`Stats::too_large`] and logged once at WARN. For a 64 MiB budget (56 MiB of
    /// maincache) it is about 27 MiB.
    pub fn max_entry_bytes(&self, key_len: usize) -> u64 {
        self.inner
            .main
            .max_entry_weight()
            .saturating_sub(ENTRY_OVERHEAD + key_len as u64)
    }

    /// The universe this galaxy lives in.
    pub fn universe(&self) -> &Universe {
        &self.inner.universe
    }
}

impl fmt::Debug for Galaxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.inner, f)
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Galaxy")
            .field("name", &self.name)
            .field("universe", &self.universe.self_url())
            .field("main_capacity", &self.main.capacity())
            .field("hot_capacity", &self.hot.capacity())
            .finish_non_exhaustive()
    }
}

impl Inner {
    /// Join the load of `key` in `group`, or start it with `load`; count a coalesced wait.
    async fn coalesce<F, Fut>(
        self: &Arc<Self>,
        group: &Arc<Group>,
        key: &str,
        generation: Generation,
        load: F,
    ) -> Result<Value, Error>
    where
        F: FnOnce(Arc<Self>, Arc<str>) -> Fut,
        Fut: Future<Output = Result<Value, Error>> + Send + 'static,
    {
        let this = Arc::clone(self);
        let (result, role) = group.run(key, generation, move |key| load(this, key)).await;
        if role == Role::Waiter {
            self.counters.incr(Counter::CoalescedWait);
        }
        result
    }

    /// What the caches hold for `key`, without counting a hit.
    fn cached(&self, key: &str) -> Lookup {
        match self.main.get(key, &*self.clock) {
            Lookup::Miss => self.hot.get(key, &*self.clock),
            found => found,
        }
    }

    /// Load `key` once however many callers ask: from the backend through the backend
    /// singleflight when this node owns it (the one its peers' loads of the key share), or
    /// from the owner through the client singleflight. A refresh skips the caches, whose
    /// value is due.
    async fn load_coalesced(
        self: &Arc<Self>,
        key: &str,
        cause: GetOptions,
    ) -> Result<Value, Error> {
        let generation = self.fence.current(key);
        if let Owner::Local = self.universe.owner(key) {
            // A client flight around the backend one would be one flight more per miss.
            return Arc::clone(self)
                .load_locally(key, None, generation, cause)
                .await;
        }
        let trace = universe::current_trace();
        let load = move |this: Arc<Self>, key: Arc<str>| async move {
            keeping_trace(trace, this.load_for_client(&key, generation, cause)).await
        };
        self.coalesce(&self.client_loads, key, generation, load)
            .await
    }

    /// `load`'s value; or, when it fails or outlasts the soft timeout, `stale` (the load
    /// goes on in the background and stores its value when it is done).
    async fn answer_or_stale(
        &self,
        load: impl Future<Output = Result<Value, Error>>,
        stale: Value,
    ) -> Result<Value, Error> {
        let result = match self.policy.soft_timeout {
            Some(soft) => match tokio::time::timeout(soft, load).await {
                Ok(result) => result,
                Err(_) => {
                    self.counters.incr(Counter::SoftTimeout);
                    Err(Error::new(
                        ErrorKind::Timeout,
                        "slower than the soft timeout",
                    ))
                }
            },
            None => load.await,
        };
        match result {
            Err(e) if stale_may_answer(&e) => {
                self.counters.incr(Counter::StaleServed);
                tracing::debug!(galaxy = %self.name, error = %e, "serving a stale value");
                Ok(stale.into_stale())
            }
            result => result,
        }
    }

    /// Reload `key` in the background, once, while its due value is still served.
    pub(crate) fn refresh_in_background(self: &Arc<Self>, key: &str) {
        if self.client_loads.is_in_flight(key) || self.backend_loads.is_in_flight(key) {
            return;
        }
        self.counters.incr(Counter::Refresh);
        let (this, key) = (Arc::clone(self), Arc::<str>::from(key));
        tokio::spawn(async move {
            let _ = this.load_coalesced(&key, GetOptions::REFRESH).await;
        });
    }

    async fn load_for_client(
        self: Arc<Self>,
        key: &str,
        generation: Generation,
        cause: GetOptions,
    ) -> Result<Value, Error> {
        if !cause.is_refresh()
            && let Some(answer) = answer_from(self.cached(key), key)
        {
            return answer;
        }
        match self.universe.owner(key) {
            Owner::Local => self.load_locally(key, None, generation, cause).await,
            Owner::Remote(peer) => self.load_from_peer(key, &*peer, generation, cause).await,
        }
    }

    async fn load_from_peer(
        self: Arc<Self>,
        key: &str,
        peer: &dyn RemoteFetcher,
        generation: Generation,
        cause: GetOptions,
    ) -> Result<Value, Error> {
        let started = Instant::now();
        let deadline = started + self.peer_timeout;
        let id = GalaxyId::new(&self.name, self.version);
        // The peer continues this trace, from a span of this node's.
        let trace = universe::current_trace().map(|c| c.child());
        let span = event_span("galaxycache.fetch", &self.name, key, trace);
        span.record("peer", peer.url());
        let fetch = tokio::time::timeout_at(deadline, peer.fetch(id, key, deadline));
        let fetched = universe::with_trace(trace, fetch)
            .instrument(span.clone())
            .await;
        let outcome = fetched.as_ref().map_or("timeout", universe::fetch_outcome);
        span.record("outcome", outcome);
        metrics::peer_fetch(&self.name, peer.url(), outcome, started.elapsed());
        let now = self.clock.now();
        let failure = match fetched {
            Ok(Ok(Some(value))) if value.is_absent() => {
                self.counters.incr(Counter::PeerLoad);
                self.counters.incr(Counter::NotFound);
                self.keep_hot(key, value, generation);
                return Err(Error::not_found(key));
            }
            Ok(Ok(Some(value))) if !value.is_expired_at(now) => {
                self.counters.incr(Counter::PeerLoad);
                if cause.is_refresh() {
                    self.keep_hot(key, value.clone(), generation);
                } else {
                    self.consider_promotion(key, &value, generation);
                }
                return Ok(value);
            }
            // The owner's reload failed and it answered with its stale value.
            Ok(Ok(Some(value))) if value.is_servable_stale_at(now) => {
                self.counters.incr(Counter::PeerLoad);
                return Ok(value.into_stale());
            }
            // Expired on arrival: the owner's backend said not to keep it. Served, not kept.
            Ok(Ok(Some(value))) => {
                self.counters.incr(Counter::PeerLoad);
                self.counters.incr(Counter::NotKept);
                return Ok(value);
            }
            Ok(Ok(None)) => {
                self.counters.incr(Counter::PeerLoad);
                self.counters.incr(Counter::NotFound);
                return Err(Error::not_found(key));
            }
            Ok(Err(e)) if e.kind() == universe::ErrorKind::Remote => {
                self.counters.incr(Counter::PeerLoad);
                return Err(Error::from_owner(&e));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", self.peer_timeout),
        };
        self.counters.incr(Counter::PeerError);
        self.counters.incr(Counter::LocalFallback);
        tracing::debug!(galaxy = %self.name, key, peer = peer.url(), %failure, "owner failed; loading locally");
        let fallback_ttl = self.fallback_ttl;
        self.load_locally(key, Some(fallback_ttl), generation, cause)
            .await
    }

    /// Load `key` from the backend through the backend singleflight, storing it in the
    /// maincache (unless a write since `generation` fences it), expiring no later than
    /// `ttl_cap` from now when given.
    async fn load_locally(
        self: Arc<Self>,
        key: &str,
        ttl_cap: Option<Duration>,
        generation: Generation,
        cause: GetOptions,
    ) -> Result<Value, Error> {
        let trace = universe::current_trace();
        self.coalesce(
            &self.backend_loads,
            key,
            generation,
            move |this, key| async move {
                let load = this.load_from_backend(&key, ttl_cap, generation, cause);
                keeping_trace(trace, load).await
            },
        )
        .await
    }

    async fn load_from_backend(
        &self,
        key: &str,
        ttl_cap: Option<Duration>,
        generation: Generation,
        cause: GetOptions,
    ) -> Result<Value, Error> {
        if !cause.is_refresh()
            && let Some(answer) = answer_from(self.main.get(key, &*self.clock), key)
        {
            return answer;
        }
        if ttl_cap.is_none()
            && !cause.is_refresh()
            && let Some(value) = self.take_over(key, generation).await
        {
            return Ok(value);
        }
        let reason = match ttl_cap {
            Some(_) => StoreReason::Fallback,
            None => StoreReason::Load,
        };
        self.counters.incr(Counter::BackendLoad);
        let started = Instant::now();
        let span = event_span(
            "galaxycache.load",
            &self.name,
            key,
            universe::current_trace(),
        );
        let cx = LoadContext::new(cause.reason)
            .with_deadline(cause.deadline)
            .with_span(span.clone());
        let loaded = self.backend.load(key, &cx).instrument(span.clone()).await;
        let took = started.elapsed();
        let outcome = match &loaded {
            Ok(Some(_)) => "ok",
            Ok(None) => "not_found",
            Err(e) => error_outcome(e),
        };
        span.record("outcome", outcome);
        metrics::backend_load(&self.name, outcome, took);
        let loaded = match loaded {
            Ok(Some(v)) => v,
            Ok(None) => {
                self.counters.incr(Counter::NotFound);
                if let Some(absent) = self.policy.absent(self.clock.now(), ttl_cap) {
                    self.store(Tier::Main, key, &absent, 0.0, generation, reason);
                }
                return Err(Error::not_found(key));
            }
            Err(e) => {
                self.counters.incr(Counter::BackendError);
                return Err(e);
            }
        };
        let now = self.clock.now();
        let value = self.cap_expiry_at(loaded, ttl_cap, now);
        if value.is_expired_at(now) {
            // Expired on arrival (an origin's `no-store`, say): for this load's callers only.
            self.counters.incr(Counter::NotKept);
            return Ok(value);
        }
        let value = self.policy.stamp(value, now, took);
        self.store(Tier::Main, key, &value, 0.0, generation, reason);
        Ok(value)
    }

    /// Store `value` in `tier` unless a write of `key` came in since `generation`.
    pub(crate) fn store(
        &self,
        tier: Tier,
        key: &str,
        value: &Value,
        qps: f32,
        generation: Generation,
        reason: StoreReason,
    ) -> bool {
        let mut kept = false;
        let stored = self.fence.store_if(key, generation, || {
            kept = self.insert(tier, key, value, qps);
        });
        if !stored {
            self.counters.incr(Counter::FencedStore);
        } else if kept {
            self.events.tell(|l| l.on_store(key, tier, reason));
        }
        stored && kept
    }

    /// Bytes stored between two shares of the budget, and the headroom a share leaves.
    fn share_step(&self) -> u64 {
        (self.budget / SHARE_STEPS).max(1)
    }

    /// Give the hotcache the room the maincache leaves unused, as groupcache's hotcache
    /// may take, or take it back as the maincache fills; never below its own share. What
    /// the maincache holds plus what the hotcache may hold stays within the budget: a share
    /// leaves the maincache one [`share_step`](Self::share_step) of headroom, and the next
    /// share comes before it can have stored more than that.
    fn share_budget(&self) {
        if self.hot_floor == 0 {
            return; // no hotcache
        }
        let step = self.share_step();
        let main = self.main.bytes();
        let hot = self.hot.capacity();
        let room = self
            .budget
            .saturating_sub(main.saturating_add(step))
            .max(self.hot_floor);
        // Shrink as soon as the maincache's headroom is gone; grow only by two steps or
        // more, so that a maincache hovering at one size does not resize the hotcache on
        // every share.
        if room < hot || room >= hot.saturating_add(2 * step) {
            self.hot.resize(room);
        }
    }

    fn cache(&self, tier: Tier) -> &ByteCache {
        match tier {
            Tier::Main => &self.main,
            Tier::Hot => &self.hot,
        }
    }

    /// Insert `value` into `tier` now (the caller holds the key's fence); false when it is
    /// too large to keep, which is counted and said once at WARN.
    pub(crate) fn insert(&self, tier: Tier, key: &str, value: &Value, qps: f32) -> bool {
        let cache = self.cache(tier);
        if cache.insert(key, value.clone(), qps) == Inserted::Kept {
            let weight = entry_weight(key.len(), value.len());
            let stored = self.stored_since_share.fetch_add(weight, Ordering::Relaxed);
            if stored.saturating_add(weight) >= self.share_step() {
                self.stored_since_share.store(0, Ordering::Relaxed);
                self.share_budget();
            }
            return true;
        }
        self.counters.incr(Counter::TooLarge);
        if !self.too_large_warned.swap(true, Ordering::Relaxed) {
            let limit = cache.max_entry_weight().saturating_sub(ENTRY_OVERHEAD);
            tracing::warn!(
                galaxy = %self.name, key, bytes = value.len(), limit, ?tier,
                "a value larger than the largest cacheable entry is served but not cached \
                 (logged once; see Stats::too_large)"
            );
        }
        false
    }

    /// `value` with its expiry capped by the max TTL (with jitter) and by `ttl_cap` from
    /// now.
    pub(crate) fn cap_expiry(&self, value: Value, ttl_cap: Option<Duration>) -> Value {
        self.cap_expiry_at(value, ttl_cap, self.clock.now())
    }

    /// [`cap_expiry`](Self::cap_expiry) as of `now`.
    fn cap_expiry_at(&self, value: Value, ttl_cap: Option<Duration>, now: SystemTime) -> Value {
        let jittered = self.max_ttl.map(|ttl| {
            let jitter = if self.ttl_jitter.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_nanos(fastrand::u64(0..self.ttl_jitter.as_nanos() as u64))
            };
            saturating_instant(now, ttl.saturating_sub(jitter))
        });
        let cap = [jittered, ttl_cap.map(|t| saturating_instant(now, t))]
            .into_iter()
            .flatten()
            .min();
        let expires_at = match (value.expires_at(), cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        value.with_expiry(expires_at)
    }

    fn consider_promotion(&self, key: &str, value: &Value, generation: Generation) {
        if self.hot.capacity() == 0 {
            return;
        }
        let (qps, fetches) = self.candidates.record(key, self.clock.now());
        let hotcache = HotcacheStats::new(
            self.hot.bytes(),
            self.hot.capacity(),
            self.hot.entries(),
            self.hot.coldest_qps(),
        );
        if self
            .promoter
            .should_promote(key, &promoter::Stats::new(qps, fetches, hotcache))
        {
            let copy = self.hot_copy(value.clone());
            if self.store(
                Tier::Hot,
                key,
                &copy,
                qps as f32,
                generation,
                StoreReason::Promotion,
            ) {
                self.counters.incr(Counter::Promotion);
            }
        }
    }

    /// Keep an owner's answer in the hotcache without asking the promoter: a refreshed
    /// hot copy, or a cached miss.
    fn keep_hot(&self, key: &str, value: Value, generation: Generation) {
        let copy = self.hot_copy(value);
        self.store(
            Tier::Hot,
            key,
            &copy,
            0.0,
            generation,
            StoreReason::Promotion,
        );
    }

    /// A copy of an owner's value for the hotcache: served at most the hot TTL, and, if
    /// the owner is itself refreshing it, asked for again a peer timeout from now.
    fn hot_copy(&self, value: Value) -> Value {
        let now = self.clock.now();
        let value = match value.refresh_at() {
            Some(at) if at <= now => {
                value.with_refresh_at(Some(saturating_instant(now, self.peer_timeout)))
            }
            _ => value,
        };
        self.cap_expiry(value, Some(self.hot_ttl))
    }

    /// Answer a peer from the caches or the backend; the asking peer's deadline is
    /// enforced around this by `Universe::serve_get`. A cached miss travels as such, so
    /// the peer caches it too; a value whose reload fails is answered stale if it may be.
    async fn serve(&self, key: &str, deadline: Option<Instant>) -> FetchResult {
        self.counters.incr(Counter::ServerRequest);
        let this = self.me.upgrade().ok_or_else(|| {
            universe::Error::new(
                universe::ErrorKind::UnknownGalaxy,
                format!("galaxy {:?} is shutting down", self.name),
            )
        })?;
        let stale = match self.cached(key) {
            Lookup::Fresh(v) | Lookup::Absent(v) => return Ok(Some(v)),
            Lookup::Due(v) => {
                this.refresh_in_background(key);
                return Ok(Some(v));
            }
            Lookup::Stale(v) => Some(v),
            Lookup::Miss => None,
        };
        let generation = self.fence.current(key);
        match this
            .load_locally(
                key,
                self.serve_ttl_cap(key),
                generation,
                GetOptions::peer(deadline),
            )
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => match self.main.get(key, &*self.clock) {
                Lookup::Absent(absent) => Ok(Some(absent)),
                _ => Ok(None),
            },
            Err(e) => match stale {
                Some(stale) if stale_may_answer(&e) => {
                    self.counters.incr(Counter::StaleServed);
                    Ok(Some(stale))
                }
                _ => Err(e.to_wire()),
            },
        }
    }
}

impl Inner {
    /// How long a value loaded for a peer may be kept here: for as long as its expiry says
    /// when this node owns the key; at most the fallback TTL when this node's ring says
    /// another peer does (the rings disagree, or someone who is not a peer asked), so that a
    /// copy planted on a non-owner cannot outlive the fallback TTL.
    fn serve_ttl_cap(&self, key: &str) -> Option<Duration> {
        match self.universe.owner(key) {
            Owner::Local => None,
            Owner::Remote(_) => Some(self.fallback_ttl),
        }
    }
}

/// The answer a cache lookup gives a load that re-checks the caches: a servable value,
/// or a cached miss; `None` when the load must go on.
fn answer_from(found: Lookup, key: &str) -> Option<Result<Value, Error>> {
    match found {
        Lookup::Fresh(v) | Lookup::Due(v) => Some(Ok(v)),
        Lookup::Absent(_) => Some(Err(Error::not_found(key))),
        Lookup::Stale(_) | Lookup::Miss => None,
    }
}

impl GalaxyHandler for Inner {
    fn serve_get<'a>(
        &'a self,
        key: &'a str,
        deadline: Option<Instant>,
    ) -> BoxFuture<'a, FetchResult> {
        Box::pin(self.serve(key, deadline))
    }

    /// The maincache's copy only: a peek is how a new owner takes a key over, and a hot
    /// copy is no owner's word (it may have missed a write).
    fn serve_peek(&self, key: &str) -> Option<Value> {
        match self.main.get(key, &*self.clock) {
            Lookup::Fresh(v) | Lookup::Due(v) | Lookup::Absent(v) => Some(v),
            Lookup::Stale(_) | Lookup::Miss => None,
        }
    }

    fn ring_changing(&self) {
        self.ring_change.mark(&self.fence);
    }

    fn serve_write(&self, op: WriteOp<'_>) -> Result<(), universe::Error> {
        self.apply_from_peer(op);
        Ok(())
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn cache_bytes(&self) -> u64 {
        self.main.capacity() + self.hot.capacity()
    }

    fn publish_metrics(&self) {
        metrics::publish(&self.name, &self.stats(), self.cache_bytes());
    }
}

/// `load`'s result, or a timeout error at `deadline`.
async fn in_time(
    load: impl Future<Output = Result<Value, Error>>,
    deadline: Option<Instant>,
) -> Result<Value, Error> {
    match deadline {
        None => load.await,
        Some(deadline) => tokio::time::timeout_at(deadline, load)
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Timeout,
                    "the get's deadline passed before its load ended",
                ))
            }),
    }
}

/// How one [`Galaxy::get_with`] behaves beyond [`Galaxy::get`]. Inside the galaxy, the
/// same two facts travel with every load: why it runs and by when its starter needs it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetOptions {
    deadline: Option<Instant>,
    reason: LoadReason,
}

impl GetOptions {
    /// What [`Galaxy::get`] does: no deadline, [`LoadReason::Client`].
    pub const DEFAULT: GetOptions = GetOptions {
        deadline: None,
        reason: LoadReason::Client,
    };

    /// A background reload of a due value.
    const REFRESH: GetOptions = GetOptions {
        deadline: None,
        reason: LoadReason::Refresh,
    };

    /// A load for a peer that asked, until `deadline`.
    fn peer(deadline: Option<Instant>) -> GetOptions {
        GetOptions {
            deadline,
            reason: LoadReason::Peer,
        }
    }

    fn is_refresh(self) -> bool {
        self.reason == LoadReason::Refresh
    }

    /// The defaults ([`DEFAULT`](Self::DEFAULT)).
    pub fn new() -> Self {
        Self::DEFAULT
    }

    /// Stop waiting at `deadline` (tokio's clock): the get fails with
    /// [`ErrorKind::Timeout`]; the backend sees the deadline in its [`LoadContext`].
    pub fn deadline(mut self, deadline: Instant) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// Stop waiting `timeout` from now; see [`deadline`](Self::deadline).
    pub fn timeout(self, timeout: Duration) -> Self {
        self.deadline(Instant::now() + timeout)
    }

    /// Why this get may load (default [`LoadReason::Client`]); e.g. [`LoadReason::Preload`]
    /// for gets that warm the cache, so the backend can tell them apart.
    pub fn reason(mut self, reason: LoadReason) -> Self {
        self.reason = reason;
        self
    }
}

/// `load` (a singleflight's), in `trace` even once it has moved to a task of its own: a
/// load outlives a leader that is dropped (see `singleflight`). With no trace there is
/// nothing to keep, since a task of its own starts with none, and no scope is entered:
/// a task-local scope on every miss cost more than the trace lookups it serves.
async fn keeping_trace<F: Future>(trace: Option<universe::TraceContext>, load: F) -> F::Output {
    match trace {
        Some(_) => universe::with_trace(trace, load).await,
        None => load.await,
    }
}

/// A span of the miss path (`galaxycache.get`, `.fetch`, `.load`) for a key of galaxy
/// `galaxy`: its length, never the key; the trace id of `trace` (the task's context when
/// `None`); `outcome` and `peer` to be recorded.
fn event_span(
    name: &'static str,
    galaxy: &str,
    key: &str,
    trace: Option<universe::TraceContext>,
) -> tracing::Span {
    // One call site per name (tracing's span names are static); `peer` is recorded by a
    // fetch only.
    macro_rules! span {
        ($name:literal) => {
            tracing::debug_span!(
                $name,
                galaxy,
                key_len = key.len(),
                peer = tracing::field::Empty,
                outcome = tracing::field::Empty,
                trace_id = tracing::field::Empty,
            )
        };
    }
    let span = match name {
        "galaxycache.fetch" => span!("galaxycache.fetch"),
        "galaxycache.load" => span!("galaxycache.load"),
        _ => span!("galaxycache.get"),
    };
    if !span.is_disabled()
        && let Some(context) = trace.or_else(universe::current_trace)
    {
        span.record("trace_id", context.trace_id_hex());
    }
    span
}

/// How a get or load ended, as spans and metrics label it (`outcome`): `ok`,
/// `not_found`, `timeout` or `error`.
fn outcome_of<T>(result: &Result<T, Error>) -> &'static str {
    result.as_ref().map_or_else(error_outcome, |_| "ok")
}

fn error_outcome(e: &Error) -> &'static str {
    match e.kind() {
        ErrorKind::NotFound => "not_found",
        ErrorKind::Timeout => "timeout",
        _ => "error",
    }
}
