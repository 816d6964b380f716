//! The universe: this node's identity, its peers and ring, and its galaxies by name.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument;

use crate::fetch::{NoProtocol, fetch_outcome};
use crate::health::Guarded;
use crate::peer_url::{normalize_peer_url, peer_list, same_node};
use crate::{
    CircuitState, DEFAULT_REPLICAS, Error, ErrorKind, FetchProtocol, FetchResult, GalaxyHandler,
    GalaxyId, HealthPolicy, InFlight, MAX_BATCH_KEYS, MIN_IN_FLIGHT_BYTES, RemoteFetcher, Ring,
    Value, WriteOp,
};

/// Longest key a server accepts unless configured otherwise: 64 KiB.
pub const DEFAULT_MAX_KEY_LEN: usize = 64 * 1024;
/// Peer requests served at once unless configured otherwise.
pub const DEFAULT_MAX_CONCURRENT_SERVES: usize = 4096;
/// How long after a ring change a new owner asks a key's previous owner before loading
/// it, unless configured otherwise: 30 s.
pub const DEFAULT_HANDOFF_WARMUP: Duration = Duration::from_secs(30);

/// Who owns a key.
#[derive(Clone, Debug)]
pub enum Owner {
    /// This node: load the key from the backend.
    Local,
    /// Another peer: fetch the key from it.
    Remote(Arc<dyn RemoteFetcher>),
}

struct PeerState {
    ring: Ring,
    /// Indexed like `ring.peers()`; `None` for this node. Each behind its circuit breaker.
    fetchers: Vec<Option<Arc<Guarded>>>,
    /// The ring before the last change, and when the change happened: where a new owner
    /// looks for a key it has not loaded yet.
    previous: Option<Arc<PeerState>>,
    changed_at: Instant,
}

impl PeerState {
    /// The fetcher of `key`'s owner; `None` when this node owns it.
    fn owner(&self, key: &str) -> Option<&Arc<Guarded>> {
        let i = self.ring.owner_index(key.as_bytes())?;
        self.fetchers[i].as_ref()
    }
}

/// A peer as this node sees it: for status pages and metrics.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PeerStatus {
    /// The peer's URL (normalised).
    pub url: String,
    /// Whether this node asks it: its circuit. This node itself is always up.
    pub state: CircuitState,
    /// Its share of the keys (of the ring's hash space), 0..=1.
    pub share: f64,
    /// True for this node.
    pub is_self: bool,
    /// Fetch requests this node has sent the peer (a batch counts once).
    pub fetch_requests: u64,
    /// Keys those requests carried: over `fetch_requests`, the average batch.
    pub fetched_keys: u64,
    /// Fetches waiting now for a request to the peer to carry them (every one of this
    /// node's slots to it is busy).
    pub queued_fetches: u64,
}

pub(crate) struct Inner {
    self_url: Arc<str>,
    replicas: usize,
    protocol: Arc<dyn FetchProtocol>,
    peers: ArcSwap<PeerState>,
    /// Serializes peer-list writers; readers never take it.
    peers_write: Mutex<()>,
    galaxies: RwLock<HashMap<Arc<str>, Weak<dyn GalaxyHandler>>>,
    max_key_len: usize,
    serve_permits: Semaphore,
    health: HealthPolicy,
    batch_fetches: bool,
    handoff_warmup: Duration,
    in_flight: InFlight,
    /// The sum of the registered galaxies' budgets, when the in-flight bound follows it
    /// (none when it was set).
    budgets: Option<AtomicU64>,
}

/// This node's view of the cluster: who it is, who its peers are, which peer owns which
/// key, and its galaxies by name.
///
/// Cheap to clone (all clones share one universe). There is no global state: a process
/// may hold any number of universes, which is how tests run whole clusters in one process.
///
/// ```
/// use galaxycache::universe::{Universe, InProcessNetwork};
///
/// let net = InProcessNetwork::new();
/// let universe = Universe::builder("http://10.0.0.1:8080")
///     .protocol(net.protocol())
///     .build();
/// universe.set_peers(["http://10.0.0.1:8080", "http://10.0.0.2:8080"]).unwrap();
/// assert_eq!(universe.peers().len(), 2);
/// ```
#[derive(Clone)]
pub struct Universe {
    inner: Arc<Inner>,
}

impl fmt::Debug for Universe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Universe")
            .field("self_url", &self.inner.self_url)
            .field("peers", &self.inner.peers.load().ring.peers())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Universe`].
#[derive(Debug)]
pub struct UniverseBuilder {
    self_url: String,
    replicas: usize,
    protocol: Option<Arc<dyn FetchProtocol>>,
    max_key_len: usize,
    max_concurrent_serves: usize,
    health: HealthPolicy,
    batch_fetches: bool,
    handoff_warmup: Duration,
    max_in_flight_bytes: Option<u64>,
}

impl UniverseBuilder {
    /// Bytes in flight this node allows: value bytes being received from peers (and, in
    /// galaxyd, from origins) that no cache counts yet; see [`InFlight`]. Readers past it
    /// wait, then fail as overloaded. Default: half the sum of the registered galaxies'
    /// cache budgets, at least [`MIN_IN_FLIGHT_BYTES`].
    pub fn max_in_flight_bytes(mut self, bytes: u64) -> Self {
        self.max_in_flight_bytes = Some(bytes);
        self
    }

    /// Whether concurrent fetches to one peer travel together as batches (see
    /// [`MAX_BATCHES_IN_FLIGHT`](crate::MAX_BATCHES_IN_FLIGHT)). Default: true. Off, every
    /// fetch is a request of its own, as in golang/groupcache: for peers that cannot take
    /// batches and for measuring what batching gives.
    pub fn batch_fetches(mut self, on: bool) -> Self {
        self.batch_fetches = on;
        self
    }

    /// When a peer's circuit opens and how it is probed (see [`HealthPolicy`]'s default).
    pub fn health(mut self, policy: HealthPolicy) -> Self {
        self.health = policy;
        self
    }

    /// How long after a ring change a key's new owner asks its previous owner for it
    /// ([`Universe::previous_owner`]) before loading it from the backend. Default: 30 s
    /// ([`DEFAULT_HANDOFF_WARMUP`]); zero turns the hand-off off.
    pub fn handoff_warmup(mut self, warmup: Duration) -> Self {
        self.handoff_warmup = warmup;
        self
    }

    /// Virtual nodes per peer on the ring. Default: 50, as golang/groupcache. Every node of
    /// a cluster must use the same number.
    pub fn replicas(mut self, replicas: usize) -> Self {
        self.replicas = replicas.max(1);
        self
    }

    /// How this node reaches its peers. Default: none, so only a single-node universe works.
    pub fn protocol(mut self, protocol: Arc<dyn FetchProtocol>) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// Longest key accepted from a peer or sent to one. Default: 64 KiB, capped at the
    /// protocol's own bound ([`FetchProtocol::max_key_len`]) so that every valid key can
    /// reach its owner. Every node of a cluster must agree.
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.max_key_len = bytes;
        self
    }

    /// Peer requests this node serves at once; more are refused as overloaded, and the
    /// asking peer falls back to its own backend. Default: 4096.
    pub fn max_concurrent_serves(mut self, n: usize) -> Self {
        self.max_concurrent_serves = n.max(1);
        self
    }

    /// The universe, with this node as its only peer until [`Universe::set_peers`].
    pub fn build(self) -> Universe {
        let self_url: Arc<str> = Arc::from(self.self_url.as_str());
        let ring = Ring::new(self.replicas, [&*self_url]);
        let protocol = self.protocol.unwrap_or_else(|| Arc::new(NoProtocol));
        let max_key_len = self.max_key_len.min(protocol.max_key_len());
        let in_flight = InFlight::new(self.max_in_flight_bytes.unwrap_or(MIN_IN_FLIGHT_BYTES));
        Universe {
            inner: Arc::new(Inner {
                self_url,
                replicas: self.replicas,
                protocol,
                peers: ArcSwap::from_pointee(PeerState {
                    ring,
                    fetchers: vec![None],
                    previous: None,
                    changed_at: Instant::now(),
                }),
                peers_write: Mutex::new(()),
                galaxies: RwLock::new(HashMap::new()),
                max_key_len,
                serve_permits: Semaphore::new(self.max_concurrent_serves),
                health: self.health,
                batch_fetches: self.batch_fetches,
                handoff_warmup: self.handoff_warmup,
                in_flight,
                budgets: self
                    .max_in_flight_bytes
                    .is_none()
                    .then(|| AtomicU64::new(0)),
            }),
        }
    }
}

impl Universe {
    pub(crate) fn downgrade(&self) -> Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Universe { inner }
    }

    /// Start building the universe of the node whose peer URL is `self_url`, normalised
    /// by [`normalize_peer_url`]. A URL that is not a valid peer URL is kept as given and
    /// [`set_peers`](Self::set_peers) then fails, naming it.
    pub fn builder(self_url: impl Into<String>) -> UniverseBuilder {
        let self_url = self_url.into();
        UniverseBuilder {
            self_url: normalize_peer_url(&self_url).unwrap_or(self_url),
            replicas: DEFAULT_REPLICAS,
            protocol: None,
            max_key_len: DEFAULT_MAX_KEY_LEN,
            max_concurrent_serves: DEFAULT_MAX_CONCURRENT_SERVES,
            health: HealthPolicy::default(),
            batch_fetches: true,
            handoff_warmup: DEFAULT_HANDOFF_WARMUP,
            max_in_flight_bytes: None,
        }
    }

    /// This node's peer URL.
    pub fn self_url(&self) -> &str {
        &self.inner.self_url
    }

    /// Longest key this universe accepts.
    pub fn max_key_len(&self) -> usize {
        self.inner.max_key_len
    }

    /// This node's bound on bytes in flight (see [`UniverseBuilder::max_in_flight_bytes`]):
    /// its fetchers read peers' answers against it, and a backend may read against it too.
    pub fn in_flight(&self) -> &InFlight {
        &self.inner.in_flight
    }

    /// Replace the whole peer list. This node is always on the ring, listed or not.
    ///
    /// Every URL is normalised first ([`normalize_peer_url`]); a peer listed twice, in
    /// one spelling or in two that normalise alike, is kept once (a discovery source may
    /// list a peer twice). An [`ErrorKind::Config`] error, with the ring unchanged, for an
    /// invalid URL, for a list that names this node twice or in another spelling than its
    /// own, and for one node in two spellings (the loopback names `localhost`,
    /// `127.0.0.1` and `[::1]` for one port are one host; no DNS lookups are made): each
    /// would put one node on the ring twice.
    ///
    /// Fetchers of peers that stay are kept (their pooled connections too). Gets running
    /// meanwhile see the old list or the new one, never a mix.
    pub fn set_peers<I, S>(&self, urls: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let urls = peer_list(&self.inner.self_url, urls)?;
        let _writer = self
            .inner
            .peers_write
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.install(urls)
    }

    /// Add one peer, normalised as [`set_peers`](Self::set_peers) does; adding a peer on
    /// the ring already changes nothing, and adding this node is an error.
    pub fn add_peer(&self, url: &str) -> Result<(), Error> {
        let _writer = self
            .inner
            .peers_write
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut urls = self.peers();
        urls.push(url.to_owned());
        self.install(peer_list(&self.inner.self_url, urls)?)
    }

    /// Remove one peer, in any spelling that names it; its keys move to the others.
    /// Removing this node is an error.
    pub fn remove_peer(&self, url: &str) -> Result<(), Error> {
        let url = normalize_peer_url(url)?;
        if same_node(&url, &self.inner.self_url) {
            return Err(Error::new(
                ErrorKind::Config,
                "a node cannot remove itself from its own ring",
            ));
        }
        let _writer = self
            .inner
            .peers_write
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let urls = self.peers().into_iter().filter(|u| !same_node(u, &url));
        self.install(peer_list(&self.inner.self_url, urls)?)
    }

    /// Build and publish a new ring from `urls`, a [`peer_list`] (valid and normalised);
    /// caller holds `peers_write`.
    fn install(&self, urls: Vec<String>) -> Result<(), Error> {
        let old = self.inner.peers.load();
        let ring = Ring::new(self.inner.replicas, &urls);
        let mut fetchers = Vec::with_capacity(ring.peers().len());
        for url in ring.peers() {
            if **url == *self.inner.self_url {
                fetchers.push(None);
                continue;
            }
            let kept = old
                .ring
                .peers()
                .iter()
                .position(|p| p == url)
                .and_then(|i| old.fetchers[i].clone());
            fetchers.push(Some(match kept {
                Some(f) => f,
                None => {
                    let fetcher = self.inner.protocol.connect(url, &self.inner.in_flight)?;
                    Arc::new(if self.inner.batch_fetches {
                        Guarded::batching(fetcher, self.inner.health)
                    } else {
                        Guarded::new(fetcher, self.inner.health)
                    })
                }
            }));
        }
        if old.ring.peers() == ring.peers() {
            return Ok(());
        }
        let previous = if old.fetchers.iter().all(Option::is_none) {
            // This node is joining: the keys it now owns were owned by the others.
            self.without_self(&ring, &fetchers)
        } else {
            // One ring back, not a chain of them.
            PeerState {
                ring: old.ring.clone(),
                fetchers: old.fetchers.clone(),
                previous: None,
                changed_at: old.changed_at,
            }
        };
        for galaxy in self.live_galaxies() {
            galaxy.ring_changing();
        }
        self.inner.peers.store(Arc::new(PeerState {
            ring,
            fetchers,
            previous: Some(Arc::new(previous)),
            changed_at: Instant::now(),
        }));
        Ok(())
    }

    fn live_galaxies(&self) -> Vec<Arc<dyn GalaxyHandler>> {
        let galaxies = self
            .inner
            .galaxies
            .read()
            .unwrap_or_else(|e| e.into_inner());
        galaxies.values().filter_map(Weak::upgrade).collect()
    }

    /// `ring` without this node, and its peers' fetchers.
    fn without_self(&self, ring: &Ring, fetchers: &[Option<Arc<Guarded>>]) -> PeerState {
        let others: Vec<usize> = (0..fetchers.len())
            .filter(|&i| fetchers[i].is_some())
            .collect();
        let ring = Ring::new(
            self.inner.replicas,
            others.iter().map(|&i| &ring.peers()[i]),
        );
        let fetchers = others.iter().map(|&i| fetchers[i].clone()).collect();
        PeerState {
            ring,
            fetchers,
            previous: None,
            changed_at: Instant::now(),
        }
    }

    /// Every peer on the ring, this node included, sorted.
    pub fn peers(&self) -> Vec<String> {
        self.inner
            .peers
            .load()
            .ring
            .peers()
            .iter()
            .map(|p| p.to_string())
            .collect()
    }

    /// Who owns `key`. Does not allocate.
    #[inline]
    pub fn owner(&self, key: &str) -> Owner {
        match self.inner.peers.load().owner(key) {
            Some(f) => Owner::Remote(Arc::clone(f) as Arc<dyn RemoteFetcher>),
            None => Owner::Local,
        }
    }

    /// Who owned `key` before the last ring change, if that was less than the hand-off
    /// warm-up ago and it was another peer than this node and than the key's owner now:
    /// the peer a new owner asks ([`RemoteFetcher::peek`]) before loading the key, so that
    /// a ring change does not send every moved key to the backend again.
    pub fn previous_owner(&self, key: &str) -> Option<Arc<dyn RemoteFetcher>> {
        let state = self.inner.peers.load();
        if state.changed_at.elapsed() >= self.inner.handoff_warmup {
            return None;
        }
        let previous = state.previous.as_ref()?.owner(key)?;
        let now = state.owner(key);
        if now.is_some_and(|now| now.url() == previous.url()) {
            return None;
        }
        Some(Arc::clone(previous) as Arc<dyn RemoteFetcher>)
    }

    /// Every peer on the ring, this node included, in ring order: its circuit and share.
    pub fn peer_status(&self) -> Vec<PeerStatus> {
        let state = self.inner.peers.load();
        let shares = state.ring.shares();
        state
            .ring
            .peers()
            .iter()
            .zip(&state.fetchers)
            .zip(shares)
            .map(|((url, fetcher), share)| {
                let (fetch_requests, fetched_keys, queued_fetches) =
                    fetcher.as_ref().map_or((0, 0, 0), |f| f.sent());
                PeerStatus {
                    url: url.to_string(),
                    state: fetcher.as_ref().map_or(CircuitState::Up, |f| f.state()),
                    share,
                    is_self: fetcher.is_none(),
                    fetch_requests,
                    fetched_keys,
                    queued_fetches,
                }
            })
            .collect()
    }

    /// Publish this node's metrics through the `metrics` facade, to the recorder in force
    /// (the global one, or one set with `metrics::with_local_recorder`): every live
    /// galaxy's counters and gauges (see `Galaxy::publish_metrics`) and every peer's
    /// circuit, ring share and fetch counts (label `peer`).
    ///
    /// Counters are set to their absolute values (`Counter::absolute`) and gauges to their
    /// current levels, read from counters that the hit path keeps anyway: a hit records
    /// nothing through the facade, so it costs the same with or without a recorder. Call
    /// this just before an exporter renders (galaxyd does, in its `/metrics` handler), or on
    /// a timer for an exporter that pushes. Latency histograms need no call: they are
    /// recorded as loads and fetches end. The metrics are listed in docs/ARCHITECTURE.md.
    pub fn publish_metrics(&self) {
        for galaxy in self.live_galaxies() {
            galaxy.publish_metrics();
        }
        crate::metrics::publish_peers(&self.peer_status());
    }

    /// A fetcher for every peer but this node, in ring order: whom a write is broadcast to.
    pub fn remote_peers(&self) -> Vec<Arc<dyn RemoteFetcher>> {
        let state = self.inner.peers.load();
        let fetchers = state.fetchers.iter().flatten();
        fetchers
            .map(|f| Arc::clone(f) as Arc<dyn RemoteFetcher>)
            .collect()
    }

    /// The URL of the peer that owns `key`.
    pub fn owner_url(&self, key: &str) -> String {
        let state = self.inner.peers.load();
        state
            .ring
            .owner(key.as_bytes())
            .unwrap_or(&self.inner.self_url)
            .to_owned()
    }

    /// Register a galaxy so peers can fetch from it. The universe holds it weakly: when the
    /// last handle of a galaxy is dropped, peers are told it is unknown.
    ///
    /// Fails when a live galaxy of that name is registered already.
    pub fn register(&self, name: &str, galaxy: Weak<dyn GalaxyHandler>) -> Result<(), Error> {
        let mut galaxies = self
            .inner
            .galaxies
            .write()
            .unwrap_or_else(|e| e.into_inner());
        if galaxies.get(name).is_some_and(|g| g.strong_count() > 0) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("a galaxy named {name:?} exists already in this universe"),
            ));
        }
        if let (Some(budgets), Some(handler)) = (&self.inner.budgets, galaxy.upgrade()) {
            let bytes = handler.cache_bytes();
            let sum = budgets
                .fetch_add(bytes, Ordering::Relaxed)
                .saturating_add(bytes);
            self.inner
                .in_flight
                .raise_to((sum / 2).max(MIN_IN_FLIGHT_BYTES));
        }
        galaxies.insert(Arc::from(name), galaxy);
        Ok(())
    }

    /// The registered galaxy `name`, if it is alive.
    pub fn galaxy(&self, name: &str) -> Option<Arc<dyn GalaxyHandler>> {
        let galaxies = self
            .inner
            .galaxies
            .read()
            .unwrap_or_else(|e| e.into_inner());
        galaxies.get(name).and_then(Weak::upgrade)
    }

    /// Names of the live galaxies, sorted.
    pub fn galaxy_names(&self) -> Vec<String> {
        let galaxies = self
            .inner
            .galaxies
            .read()
            .unwrap_or_else(|e| e.into_inner());
        let mut names: Vec<String> = galaxies
            .iter()
            .filter(|(_, g)| g.strong_count() > 0)
            .map(|(n, _)| n.to_string())
            .collect();
        names.sort();
        names
    }

    /// Whether `key` may be fetched or served here: not empty, and no longer than
    /// [`max_key_len`](Self::max_key_len). An [`ErrorKind::InvalidRequest`] error otherwise.
    pub fn check_key(&self, key: &str) -> Result<(), Error> {
        if key.is_empty() {
            return Err(Error::new(ErrorKind::InvalidRequest, "empty key"));
        }
        if key.len() > self.inner.max_key_len {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "key of {} bytes exceeds the limit of {} bytes",
                    key.len(),
                    self.inner.max_key_len
                ),
            ));
        }
        Ok(())
    }

    /// The galaxy a peer asked for, if it is registered and at the asked version.
    fn handler(&self, galaxy: GalaxyId<'_>) -> Result<Arc<dyn GalaxyHandler>, Error> {
        let handler = self.galaxy(galaxy.name).ok_or_else(|| {
            Error::new(
                ErrorKind::UnknownGalaxy,
                format!("no galaxy named {:?}", galaxy.name),
            )
        })?;
        let ours = handler.version();
        if ours != galaxy.version {
            return Err(Error::new(
                ErrorKind::VersionMismatch,
                format!(
                    "galaxy {:?} is at version {ours} here, not {}",
                    galaxy.name, galaxy.version
                ),
            ));
        }
        Ok(handler)
    }

    /// Answer a peer's fetch: what protocol servers call for every request.
    ///
    /// Validates the key, finds the galaxy, bounds concurrent work, and asks the galaxy,
    /// which answers from its caches or its backend and never forwards. When the asking
    /// peer said how long it waits, the answer is an [`ErrorKind::Timeout`] once that
    /// `deadline` passes (a load in progress goes on for whoever else waits on it); this
    /// is the one place a server enforces it, whatever the protocol.
    pub async fn serve_get(
        &self,
        galaxy: GalaxyId<'_>,
        key: &str,
        deadline: Option<Instant>,
    ) -> FetchResult {
        let span = tracing::debug_span!(
            "galaxycache.serve",
            galaxy = galaxy.name,
            key_len = key.len(),
            outcome = tracing::field::Empty,
            trace_id = tracing::field::Empty,
        );
        if let Some(context) = crate::current_trace() {
            span.record("trace_id", context.trace_id_hex());
        }
        let result = self
            .serve_in_time(galaxy, key, deadline)
            .instrument(span.clone())
            .await;
        span.record("outcome", fetch_outcome(&result));
        result
    }

    /// [`serve_get`](Self::serve_get) without its span.
    async fn serve_in_time(
        &self,
        galaxy: GalaxyId<'_>,
        key: &str,
        deadline: Option<Instant>,
    ) -> FetchResult {
        self.check_key(key)?;
        let handler = self.handler(galaxy)?;
        let _permit =
            self.inner.serve_permits.try_acquire().map_err(|_| {
                Error::new(ErrorKind::Overloaded, "too many peer requests in progress")
            })?;
        let serve = handler.serve_get(key, deadline);
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, serve)
                .await
                .unwrap_or_else(|_| {
                    Err(Error::new(
                        ErrorKind::Timeout,
                        "the asking peer's deadline passed",
                    ))
                }),
            None => serve.await,
        }
    }

    /// Answer a peer's batch fetch: each key as [`serve_get`](Self::serve_get) answers it,
    /// in order, all at once. The whole fails for an unknown galaxy, another version, or
    /// more than [`MAX_BATCH_KEYS`] keys ([`ErrorKind::InvalidRequest`]); a key's own
    /// failure (an invalid key, a failed load) is its result's.
    pub async fn serve_get_many<K: AsRef<str>>(
        &self,
        galaxy: GalaxyId<'_>,
        keys: &[K],
        deadline: Option<Instant>,
    ) -> Result<Vec<FetchResult>, Error> {
        self.handler(galaxy)?;
        if keys.len() > MAX_BATCH_KEYS {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "a batch of {} keys is over the bound of {MAX_BATCH_KEYS}",
                    keys.len()
                ),
            ));
        }
        let gets = keys
            .iter()
            .map(|key| self.serve_get(galaxy, key.as_ref(), deadline));
        Ok(futures_util::future::join_all(gets).await)
    }

    /// Answer a peer's peek: the cached value, if any; never loads.
    pub fn serve_peek(&self, galaxy: GalaxyId<'_>, key: &str) -> Result<Option<Value>, Error> {
        self.check_key(key)?;
        Ok(self.handler(galaxy)?.serve_peek(key))
    }

    /// Apply a peer's write (remove, set or flush): what protocol servers call for every
    /// write verb. Validates the key, finds the galaxy at the asked version, and applies
    /// the write at once; an invalid request changes nothing.
    pub fn serve_write(&self, galaxy: GalaxyId<'_>, op: WriteOp<'_>) -> Result<(), Error> {
        if let Some(key) = op.key() {
            self.check_key(key)?;
        }
        self.handler(galaxy)?.serve_write(op)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InProcessNetwork;

    #[test]
    fn self_is_always_on_the_ring() {
        let u = Universe::builder("http://me").build();
        assert_eq!(u.peers(), ["http://me"]);
        assert!(matches!(u.owner("anything"), Owner::Local));
        let net = InProcessNetwork::new();
        let u = Universe::builder("http://me")
            .protocol(net.protocol())
            .build();
        u.set_peers(["http://other"]).unwrap();
        assert_eq!(u.peers(), ["http://me", "http://other"]);
    }

    #[test]
    fn without_a_protocol_remote_peers_are_a_config_error() {
        let u = Universe::builder("http://me").build();
        let err = u.set_peers(["http://me", "http://other"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Config);
        assert_eq!(
            u.peers(),
            ["http://me"],
            "a failed change must leave the ring as it was"
        );
    }

    #[test]
    fn add_and_remove_peers() {
        let net = InProcessNetwork::new();
        let u = Universe::builder("http://a")
            .protocol(net.protocol())
            .build();
        u.add_peer("http://b").unwrap();
        u.add_peer("http://c").unwrap();
        assert_eq!(u.peers(), ["http://a", "http://b", "http://c"]);
        u.remove_peer("http://b").unwrap();
        assert_eq!(u.peers(), ["http://a", "http://c"]);
        assert_eq!(
            u.remove_peer("http://a").unwrap_err().kind(),
            ErrorKind::Config
        );
        assert_eq!(u.add_peer("bad url").unwrap_err().kind(), ErrorKind::Config);
    }

    #[test]
    fn fetchers_of_kept_peers_are_reused() {
        let net = InProcessNetwork::new();
        let u = Universe::builder("http://a")
            .protocol(net.protocol())
            .build();
        u.set_peers(["http://a", "http://b"]).unwrap();
        let key = (0..)
            .map(|i| format!("k{i}"))
            .find(|k| matches!(u.owner(k), Owner::Remote(_)))
            .unwrap();
        let Owner::Remote(before) = u.owner(&key) else {
            unreachable!()
        };
        u.add_peer("http://c").unwrap();
        u.remove_peer("http://c").unwrap();
        let Owner::Remote(after) = u.owner(&key) else {
            unreachable!()
        };
        assert!(Arc::ptr_eq(&before, &after));
    }

    #[test]
    fn owners_change_while_readers_read() {
        let net = InProcessNetwork::new();
        let u = Universe::builder("http://a")
            .protocol(net.protocol())
            .build();
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut remote = 0;
                for i in 0..200_000 {
                    if let Owner::Remote(f) = u.owner(&format!("k{i}")) {
                        assert!(f.url() == "http://b" || f.url() == "http://c");
                        remote += 1;
                    }
                }
                remote
            });
            for _ in 0..200 {
                u.set_peers(["http://b"]).unwrap();
                u.set_peers(["http://b", "http://c"]).unwrap();
            }
            assert!(reader.join().unwrap() > 0);
        });
    }

    #[derive(Debug)]
    struct ShortKeys;
    impl FetchProtocol for ShortKeys {
        fn connect(
            &self,
            url: &str,
            in_flight: &InFlight,
        ) -> Result<Arc<dyn RemoteFetcher>, Error> {
            NoProtocol.connect(url, in_flight)
        }
        fn max_key_len(&self) -> usize {
            100
        }
    }

    #[test]
    fn the_key_bound_is_capped_at_the_protocols() {
        let u = Universe::builder("a").protocol(Arc::new(ShortKeys)).build();
        assert_eq!(u.max_key_len(), 100);
        assert!(u.check_key(&"k".repeat(100)).is_ok());
        assert_eq!(
            u.check_key(&"k".repeat(101)).unwrap_err().kind(),
            ErrorKind::InvalidRequest
        );
        let u = Universe::builder("a")
            .protocol(Arc::new(ShortKeys))
            .max_key_len(10)
            .build();
        assert_eq!(u.max_key_len(), 10);
    }

    #[derive(Debug)]
    struct Slow;
    impl GalaxyHandler for Slow {
        fn serve_get<'a>(
            &'a self,
            _: &'a str,
            _: Option<Instant>,
        ) -> crate::BoxFuture<'a, FetchResult> {
            Box::pin(async {
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
                Ok(None)
            })
        }
        fn serve_peek(&self, _: &str) -> Option<Value> {
            None
        }
        fn serve_write(&self, _: WriteOp<'_>) -> Result<(), Error> {
            Ok(())
        }
        fn version(&self) -> u32 {
            7
        }
    }

    #[tokio::test]
    async fn requests_for_another_version_are_refused() {
        let u = Universe::builder("a").build();
        let slow: Arc<dyn GalaxyHandler> = Arc::new(Slow);
        u.register("g", Arc::downgrade(&slow)).unwrap();
        let v6 = GalaxyId::new("g", 6);
        let e = u.serve_get(v6, "k", None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::VersionMismatch);
        assert_eq!(
            u.serve_peek(v6, "k").unwrap_err().kind(),
            ErrorKind::VersionMismatch
        );
        let e = u.serve_write(v6, WriteOp::Remove("k")).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::VersionMismatch);
        assert_eq!(u.serve_write(GalaxyId::new("g", 7), WriteOp::Flush), Ok(()));
        let e = u
            .serve_write(GalaxyId::new("g", 7), WriteOp::Remove(""))
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
    }

    #[tokio::test(start_paused = true)]
    async fn serve_get_answers_timeout_at_the_asking_peers_deadline() {
        let u = Universe::builder("a").build();
        let slow: Arc<dyn GalaxyHandler> = Arc::new(Slow);
        u.register("g", Arc::downgrade(&slow)).unwrap();
        let start = Instant::now();
        let deadline = start + std::time::Duration::from_millis(250);
        let e = u
            .serve_get(GalaxyId::new("g", 7), "k", Some(deadline))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert_eq!(start.elapsed(), std::time::Duration::from_millis(250));
    }

    #[tokio::test]
    async fn serve_get_rejects_bad_keys_and_unknown_galaxies() {
        let u = Universe::builder("http://a").max_key_len(8).build();
        let e = u.serve_get("g".into(), "", None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        let e = u
            .serve_get("g".into(), "123456789", None)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        let e = u.serve_get("g".into(), "k", None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownGalaxy);
        assert_eq!(
            u.serve_peek("g".into(), "k").unwrap_err().kind(),
            ErrorKind::UnknownGalaxy
        );
    }
}
