//! A whole cluster in one process on turmoil's simulated network and clock: every node a
//! [`Universe`] and a [`Galaxy`] answering the HTTP peer protocol over simulated TCP,
//! clients on every node, a versioned backend, and faults on a schedule drawn from the
//! seed. One seed is one run, and the same seed runs the same way.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use galaxycache_galaxy::{BackendGetter, Clock, Error, Galaxy, Value};
use galaxycache_http::{Dialect, HttpProtocol, PeerService};
use galaxycache_universe::{HealthPolicy, Universe};
use http::Uri;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock, watch};

use crate::faults::{Fault, LINK_LATENCY, Schedule};
use crate::history::{Action, Conditions, History, Node, Outcome, Violation, check};

/// The port every node serves its peers on.
const PORT: u16 = 7000;
/// The galaxy every node runs.
const GALAXY: &str = "sim";
/// How long a node waits for a key's owner.
pub const PEER_TIMEOUT: Duration = Duration::from_millis(200);
/// The longest a hot copy is kept.
pub const HOT_TTL: Duration = Duration::from_secs(2);
/// The longest a copy loaded while the owner failed is kept.
pub const FALLBACK_TTL: Duration = Duration::from_millis(500);
/// The longest any loaded value is kept: it bounds what an owner that missed a write
/// serves.
pub const MAX_TTL: Duration = Duration::from_secs(3);
/// How long a new owner waits for the previous owner's copy after a ring change.
const HANDOFF_TIMEOUT: Duration = Duration::from_millis(50);
/// The longest a slow backend takes to answer.
pub const MAX_BACKEND_DELAY: Duration = Duration::from_millis(300);
/// Keys the clients use: few, so operations on one key meet.
const KEYS: usize = 6;
/// Clients per node, each running one operation at a time.
const CLIENTS: usize = 2;
/// The simulated instant the run starts at: fixed, so expiries are the same every run.
const EPOCH_SECS: u64 = 1_735_689_600;

/// What a run does.
#[derive(Clone, Copy, Debug)]
pub struct Settings {
    /// Operations each node's clients issue, together.
    pub ops_per_node: usize,
    /// Whether faults are drawn (else the run is quiet).
    pub faults: bool,
}

impl Settings {
    /// `ops_per_node` operations per node, with faults.
    pub fn faults(ops_per_node: usize) -> Self {
        Settings {
            ops_per_node,
            faults: true,
        }
    }

    /// `ops_per_node` operations per node, without faults.
    pub fn quiet(ops_per_node: usize) -> Self {
        Settings {
            faults: false,
            ..Settings::faults(ops_per_node)
        }
    }
}

/// What one run did and what the checker found.
#[derive(Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// Every operation and backend load.
    pub history: History,
    /// The faults injected, in the order they started.
    pub faults: Vec<Fault>,
    /// The same, each with when it started and ended.
    pub timeline: Vec<String>,
    /// What held when, as the checker was told.
    pub conditions: Conditions,
    /// The violations found.
    pub violations: Vec<Violation>,
    /// Why the run itself failed (a node's software failed, or the run did not end), if
    /// it did.
    pub failure: Option<String>,
}

impl Report {
    /// True when the run ended and the checker found nothing.
    pub fn passed(&self) -> bool {
        self.failure.is_none() && self.violations.is_empty()
    }
}

/// The name of node `i` on the simulated network.
fn host(i: Node) -> String {
    format!("n{i}")
}

/// The peer URL of node `i`.
fn url(i: Node) -> String {
    format!("http://{}:{PORT}", host(i))
}

/// Simulated time since the run started, as the node running now sees it.
fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// What the backend does when asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BackendMode {
    /// Answers at once.
    Normal,
    /// Answers after this long.
    Slow(Duration),
    /// Fails every load.
    Failing,
}

/// State every node shares: the data source, the history, the clients' progress and the
/// ring. One thread runs the whole simulation; the locks are there because the galaxy
/// wants its backend `Send + Sync`.
#[derive(Debug)]
pub(crate) struct World {
    seed: u64,
    nodes: usize,
    state: Mutex<State>,
    /// The nodes on the ring, as every node follows it.
    pub(crate) ring: watch::Sender<Vec<Node>>,
    /// Writes of one key never overlap (a flush overlaps none), so the data source's
    /// order and the cache's agree; see the README.
    writes: Arc<RwLock<()>>,
    key_locks: Vec<Arc<RwLock<()>>>,
}

#[derive(Debug)]
struct State {
    history: History,
    /// The data source: each key's version (0 until written).
    versions: BTreeMap<String, u64>,
    last_version: u64,
    pub(crate) backend: BackendMode,
    /// Operations each node's clients have still to issue.
    remaining: Vec<usize>,
    /// Operations running on each node.
    running: Vec<usize>,
    /// How many times each node has started.
    starts: Vec<u64>,
}

impl World {
    fn new(seed: u64, nodes: usize, ops_per_node: usize) -> Self {
        let (ring, _) = watch::channel((0..nodes).collect());
        World {
            seed,
            nodes,
            state: Mutex::new(State {
                history: History::new(),
                versions: (0..KEYS).map(|k| (key(k), 0)).collect(),
                last_version: 0,
                backend: BackendMode::Normal,
                remaining: vec![ops_per_node; nodes],
                running: vec![0; nodes],
                starts: vec![0; nodes],
            }),
            ring,
            writes: Arc::default(),
            key_locks: (0..KEYS).map(|_| Arc::default()).collect(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn nodes(&self) -> usize {
        self.nodes
    }

    pub(crate) fn set_backend(&self, mode: BackendMode) {
        self.state().backend = mode;
    }

    /// A node crashed: its running operations will never complete.
    pub(crate) fn crashed(&self, node: Node) {
        if let Some(running) = self.state().running.get_mut(node) {
            *running = 0;
        }
    }

    /// Whether every client has issued its operations and seen them complete.
    fn done(&self) -> bool {
        let state = self.state();
        state.remaining.iter().all(|&r| r == 0) && state.running.iter().all(|&r| r == 0)
    }
}

fn key(k: usize) -> String {
    format!("k{k}")
}

/// A value of `key` at `version`: its version travels in its bytes.
fn value_bytes(key: &str, version: u64) -> String {
    format!("{key}@{version}")
}

/// The version a value's bytes carry.
fn version_of(value: &Value) -> Option<u64> {
    let text = std::str::from_utf8(value.bytes()).ok()?;
    text.rsplit_once('@')?.1.parse().ok()
}

/// Node `node`'s view of the data source: answers each key's current version, records
/// the load.
#[derive(Debug)]
struct Backend {
    world: Arc<World>,
    node: Node,
}

impl BackendGetter for Backend {
    async fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        // The load is recorded when it starts, with the version it reads then (a query's
        // snapshot): what a write that lands while it runs must fence.
        let (mode, version) = {
            let mut state = self.world.state();
            let mode = state.backend;
            let version = state.versions.get(key).copied().unwrap_or(0);
            let answer = (mode != BackendMode::Failing).then_some(version);
            state.history.load(now(), self.node, key, answer);
            (mode, version)
        };
        if let BackendMode::Slow(delay) = mode {
            tokio::time::sleep(delay).await;
        }
        if mode == BackendMode::Failing {
            return Err(Error::backend("the simulated backend is failing"));
        }
        Ok(Some(Value::new(value_bytes(key, version))))
    }
}

/// The galaxy's clock: the simulation's.
#[derive(Debug)]
struct SimClock;

impl Clock for SimClock {
    fn now(&self) -> SystemTime {
        let since_epoch = turmoil::since_epoch().unwrap_or(Duration::from_secs(EPOCH_SECS));
        SystemTime::UNIX_EPOCH + since_epoch
    }
}

/// Dials peers over the simulated network.
#[derive(Clone, Copy, Debug)]
struct SimConnector;

impl tower::Service<Uri> for SimConnector {
    type Response = turmoil::net::TcpStream;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let host = uri.host().unwrap_or_default().to_owned();
        let port = uri.port_u16().unwrap_or(PORT);
        Box::pin(async move { turmoil::net::TcpStream::connect((host.as_str(), port)).await })
    }
}

/// The software of node `node`: its universe and galaxy, its peer server, its ring
/// follower, and its clients. Runs again from the start after a crash.
async fn node_software(world: Arc<World>, node: Node) -> turmoil::Result {
    let start = {
        let mut state = world.state();
        let starts = state.starts.get_mut(node).ok_or("no such node")?;
        *starts = starts.saturating_add(1);
        *starts
    };
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?;
    let protocol = HttpProtocol::builder()
        .connect_timeout(PEER_TIMEOUT)
        .connector(SimConnector)
        .build();
    let universe = Universe::builder(url(node))
        .protocol(Arc::new(protocol))
        .health(
            HealthPolicy::default().backoff(Duration::from_millis(100), Duration::from_millis(400)),
        )
        .build();
    let mut ring = world.ring.subscribe();
    let peers: Vec<String> = ring.borrow_and_update().iter().map(|&n| url(n)).collect();
    universe.set_peers(peers)?;
    let backend = Backend {
        world: Arc::clone(&world),
        node,
    };
    let galaxy = Galaxy::builder(&universe, GALAXY, 1 << 20, backend)
        .peer_timeout(PEER_TIMEOUT)
        .hot_ttl(HOT_TTL)
        .fallback_ttl(FALLBACK_TTL)
        .max_ttl(MAX_TTL)
        .handoff_timeout(HANDOFF_TIMEOUT)
        .clock(Arc::new(SimClock))
        .build()?;
    let follower = universe.clone();
    tokio::spawn(async move {
        while ring.changed().await.is_ok() {
            let peers: Vec<String> = ring.borrow_and_update().iter().map(|&n| url(n)).collect();
            if let Err(e) = follower.set_peers(peers) {
                tracing::warn!(error = %e, "sim: ring change refused");
            }
        }
    });
    let service = PeerService::new(universe.clone(), Dialect::Galaxycache);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(service.clone().serve_connection(stream));
        }
    });
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let seed = world
                .seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add((node as u64) << 32 | start << 8 | c as u64);
            tokio::spawn(client(Arc::clone(&world), galaxy.clone(), node, seed))
        })
        .collect();
    for c in clients {
        c.await?;
    }
    // Keep serving peers until the run ends.
    std::future::pending::<()>().await;
    Ok(())
}

/// One client of node `node`: takes operations from the node's budget until none is left.
async fn client(world: Arc<World>, galaxy: Galaxy, node: Node, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    loop {
        {
            let mut state = world.state();
            let Some(remaining) = state.remaining.get_mut(node).filter(|r| **r > 0) else {
                return;
            };
            *remaining -= 1;
        }
        tokio::time::sleep(Duration::from_millis(rng.u64(0..20))).await;
        let k = key(rng.usize(0..KEYS));
        match rng.u32(0..100) {
            0..80 => get(&world, &galaxy, node, &k).await,
            80..89 => write(&world, &galaxy, node, Some(&k), true).await,
            89..98 => write(&world, &galaxy, node, Some(&k), false).await,
            _ => write(&world, &galaxy, node, None, false).await,
        }
    }
}

/// A get, recorded.
async fn get(world: &World, galaxy: &Galaxy, node: Node, key: &str) {
    let op = {
        let mut state = world.state();
        let op = state
            .history
            .invoke(now(), node, Action::Get { key: key.into() });
        bump(&mut state.running, node, true);
        op
    };
    let outcome = match galaxy.get(key).await {
        Ok(value) => match version_of(&value) {
            Some(version) => Outcome::Value(version),
            None => Outcome::Failed(format!("a value without a version: {:?}", value.bytes())),
        },
        Err(e) if e.kind() == galaxycache_galaxy::ErrorKind::NotFound => Outcome::NotFound,
        Err(e) => Outcome::Failed(e.to_string()),
    };
    finish(world, node, op, outcome);
}

/// Whichever locks keep writes from overlapping: every write shares the flush lock, and
/// holds its key's.
#[allow(dead_code, reason = "held for their drop")]
enum WriteGuard {
    Key(OwnedRwLockReadGuard<()>, OwnedRwLockWriteGuard<()>),
    Flush(OwnedRwLockWriteGuard<()>),
}

/// A set (`set`) or remove of `key`, or a flush (`key` is `None`), recorded: the data
/// source moves to a new version first, then the cache is told.
async fn write(world: &World, galaxy: &Galaxy, node: Node, key: Option<&str>, set: bool) {
    let _guard = match key.and_then(|k| k.strip_prefix('k')?.parse::<usize>().ok()) {
        Some(i) => {
            let all = Arc::clone(&world.writes).read_owned().await;
            let Some(lock) = world.key_locks.get(i) else {
                return;
            };
            WriteGuard::Key(all, Arc::clone(lock).write_owned().await)
        }
        None => WriteGuard::Flush(Arc::clone(&world.writes).write_owned().await),
    };
    let (op, version) = {
        let mut state = world.state();
        state.last_version = state.last_version.saturating_add(1);
        let version = state.last_version;
        let action = match key {
            Some(k) if set => Action::Set {
                key: k.into(),
                version,
            },
            Some(k) => Action::Remove {
                key: k.into(),
                version,
            },
            None => Action::Flush { version },
        };
        let op = state.history.invoke(now(), node, action);
        match key {
            Some(k) => {
                state.versions.insert(k.to_owned(), version);
            }
            None => state.versions.values_mut().for_each(|v| *v = version),
        }
        bump(&mut state.running, node, true);
        (op, version)
    };
    let report = match key {
        Some(k) if set => galaxy.set(k, Value::new(value_bytes(k, version))).await,
        Some(k) => galaxy.remove(k).await,
        None => Ok(galaxy.flush().await),
    };
    let outcome = match report {
        Ok(report) => Outcome::Written {
            complete: report.is_complete(),
        },
        Err(e) => Outcome::Failed(e.to_string()),
    };
    finish(world, node, op, outcome);
}

fn finish(world: &World, node: Node, op: u64, outcome: Outcome) {
    let mut state = world.state();
    state.history.complete(now(), node, op, outcome);
    bump(&mut state.running, node, false);
}

fn bump(running: &mut [usize], node: Node, up: bool) {
    if let Some(r) = running.get_mut(node) {
        *r = if up {
            r.saturating_add(1)
        } else {
            r.saturating_sub(1)
        };
    }
}

/// The longest a run may take in simulated time before it counts as stuck.
const RUN_LIMIT: Duration = Duration::from_secs(120);

/// Run the cluster of seed `seed` and check its history.
pub fn run(seed: u64, settings: Settings) -> Report {
    // The library's own random draws (circuit backoff jitter) come from this thread's
    // generator: seeded, they repeat with the seed.
    fastrand::seed(seed);
    let mut draw = fastrand::Rng::with_seed(seed);
    let nodes = draw.usize(3..=5);
    let schedule = if settings.faults {
        Schedule::draw(&mut draw, nodes)
    } else {
        Schedule::default()
    };
    let world = Arc::new(World::new(seed, nodes, settings.ops_per_node));
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .epoch(SystemTime::UNIX_EPOCH + Duration::from_secs(EPOCH_SECS))
        .tick_duration(Duration::from_millis(1))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(LINK_LATENCY)
        .simulation_duration(RUN_LIMIT + Duration::from_secs(1))
        .build();
    for node in 0..nodes {
        let world = Arc::clone(&world);
        sim.host(host(node), move || node_software(Arc::clone(&world), node));
    }
    let mut applied = schedule.start(&world);
    let failure = loop {
        let elapsed = sim.elapsed();
        applied.apply_due(&mut sim, &world, elapsed);
        if world.done() {
            break None;
        }
        if sim.elapsed() > RUN_LIMIT {
            break Some(format!("the run did not end within {RUN_LIMIT:?}"));
        }
        if let Err(e) = sim.step() {
            break Some(format!("a node's software failed: {e}"));
        }
    };
    let end = sim.elapsed();
    drop(sim);
    let history = std::mem::take(&mut world.state().history);
    let conditions = schedule.conditions(end);
    let violations = check(&history, &conditions);
    Report {
        seed,
        nodes,
        history,
        faults: schedule.faults(),
        timeline: schedule.timeline(),
        conditions,
        violations,
        failure,
    }
}
