//! Faults on real galaxyd processes (issue 13): a cluster of `galaxyd serve` processes,
//! each in a network namespace of its own (see `netns_bed`), in front of a versioned
//! origin; clients issue gets, sets, removes and flushes through the client APIs while a
//! schedule drawn from a seed cuts links, kills and restarts nodes, stops and resumes
//! them, and delays or drops their peer traffic. The history is checked by the
//! simulation's checker (`galaxycache_sim::history`) against the conditions the schedule
//! says held.
//!
//! ```sh
//! cargo test -p galaxyd --test netns -- --nocapture              # the short schedule
//! NETNS_SECS=600 NETNS_SEED=7 cargo test -p galaxyd --test netns -- --nocapture
//! ```
//!
//! Needs root and iproute2 (and nftables on a kernel without netem); without them the
//! tests fail, saying why.

mod netns_bed;

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::routing::get;
use bytes::Bytes;
use galaxycache_sim::history::{Action, Conditions, History, Node, Outcome, Window, check};
use galaxyd::HttpClient;
use http::{HeaderMap, Method};
use netns_bed::{Bed, GALAXY, Impair, ORIGIN_PORT};
use rustix::process::Signal;
use tokio::sync::{RwLock, watch};

/// How long a node waits for a key's owner.
const PEER_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest any node keeps a value (hot copies and fallback copies included).
const MAX_TTL: Duration = Duration::from_secs(3);
/// Keys the clients use: few, so operations on one key meet.
const KEYS: usize = 6;
/// Clients per node, each running one operation at a time.
const CLIENTS: usize = 2;
/// How long the short schedule runs (`NETNS_SECS` sets another).
const DEFAULT_SECS: u64 = 70;
/// How long the cluster may take to settle after a fault (every node ready, every
/// circuit closed, no write retry pending) before the run counts as stuck.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// galaxyd's flags besides its addresses, peers and backend.
fn node_flags() -> Vec<String> {
    let secs = |d: Duration| format!("{}ms", d.as_millis());
    vec![
        "--peer-timeout".into(),
        secs(PEER_TIMEOUT),
        "--max-ttl".into(),
        secs(MAX_TTL),
        "--request-timeout".into(),
        "5s".into(),
    ]
}

/// What the checker is told: the bounds follow from galaxyd's settings above.
fn conditions(calm: Vec<Window>, down: Vec<(Node, Window)>, end: Duration) -> Conditions {
    Conditions {
        stable: calm.clone(),
        all_reachable: calm,
        down,
        end,
        // Every copy lives at most the max TTL; a load that started before the write may
        // still land (the peer timeout), and the origin and two busy cores add their part.
        staleness_bound: MAX_TTL + PEER_TIMEOUT + Duration::from_secs(1),
        reload_after: MAX_TTL,
        // The hand-off timeout (250 ms), the peer timeout, the origin twice (owner and
        // fallback), and room for a machine shared with builds.
        get_deadline: Duration::from_secs(3),
    }
}

fn key(k: usize) -> String {
    format!("k{k}")
}

/// The version a value's bytes carry (`k3@17`).
fn version_of(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    text.rsplit_once('@')?.1.parse().ok()
}

/// The data source, the history, and the clients' switches, shared by the origin, the
/// clients and the schedule.
struct Shared {
    start: Instant,
    state: Mutex<Recorded>,
    /// Whether each node is up: its clients wait while it is not.
    up: Vec<watch::Sender<bool>>,
    stopping: AtomicBool,
    /// Writes of one key never overlap (a flush overlaps none), so the data source's
    /// order and the cache's agree, as in the simulation.
    writes: Arc<RwLock<()>>,
    key_locks: Vec<Arc<RwLock<()>>>,
}

struct Recorded {
    history: History,
    /// Each key's version at the origin (0 until written).
    versions: BTreeMap<String, u64>,
    last_version: u64,
}

impl Shared {
    fn new(nodes: usize) -> Arc<Shared> {
        Arc::new(Shared {
            start: Instant::now(),
            state: Mutex::new(Recorded {
                history: History::new(),
                versions: (0..KEYS).map(|k| (key(k), 0)).collect(),
                last_version: 0,
            }),
            up: (0..nodes).map(|_| watch::Sender::new(true)).collect(),
            stopping: AtomicBool::new(false),
            writes: Arc::default(),
            key_locks: (0..KEYS).map(|_| Arc::default()).collect(),
        })
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// The recorded state. Each event's time is read under this lock, so the history's
    /// order is the order of the times.
    fn state(&self) -> MutexGuard<'_, Recorded> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether node `node` is up; read under the state's lock, which [`Shared::set_up`]
    /// takes too: an operation invoked while the lock says up was invoked before the node
    /// was stopped or killed, so before its down window starts.
    fn is_up(&self, _state: &Recorded, node: Node) -> bool {
        *self.up[node].borrow()
    }

    fn complete(&self, node: Node, op: u64, outcome: Outcome) {
        let mut state = self.state();
        let at = self.now();
        state.history.complete(at, node, op, outcome);
    }

    fn set_up(&self, node: Node, up: bool) {
        let _state = self.state();
        self.up[node].send_replace(up);
    }
}

/// `GET /k/{key}` on the origin: the key's current version as `key@version`, the load
/// recorded for the node it came from (by its address).
async fn origin_get(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(from): ConnectInfo<SocketAddr>,
    Path(k): Path<String>,
) -> String {
    let node = Bed::node_of(from.ip()).unwrap_or(usize::MAX);
    let mut state = shared.state();
    let version = state.versions.get(&k).copied().unwrap_or(0);
    let at = shared.now();
    state.history.load(at, node, &k, Some(version));
    format!("{k}@{version}")
}

/// Serve the origin on the hub's port for it, until the runtime ends.
async fn serve_origin(shared: Arc<Shared>) {
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", ORIGIN_PORT))
        .await
        .unwrap();
    let app = Router::new()
        .route("/k/{key}", get(origin_get))
        .with_state(shared);
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(axum::serve(listener, service).into_future());
}

/// A get of `k` through node `node`'s client API, recorded.
async fn client_get(shared: &Shared, http: &HttpClient, api: &str, node: Node, k: &str) -> Outcome {
    let op = {
        let mut state = shared.state();
        if !shared.is_up(&state, node) {
            return Outcome::Failed("the node is down: not sent".into());
        }
        let at = shared.now();
        state
            .history
            .invoke(at, node, Action::Get { key: k.into() })
    };
    let url = format!("{api}/v1/galaxies/{GALAXY}/keys/{k}");
    let outcome = match http.get(url.parse().unwrap()).await {
        Ok(r) if r.status == 200 => match version_of(&r.body) {
            Some(v) => Outcome::Value(v),
            None => Outcome::Failed(format!("a value without a version: {:?}", r.body)),
        },
        Ok(r) if r.status == 404 => Outcome::NotFound,
        Ok(r) => Outcome::Failed(format!(
            "{}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )),
        Err(e) => Outcome::Failed(e),
    };
    shared.complete(node, op, outcome.clone());
    outcome
}

/// A set (`set`) or remove of `k`, or a flush (`k` is `None`), through node `node`'s
/// client API, recorded: the origin moves to a new version first, then the cache is told.
async fn client_write(
    shared: &Shared,
    http: &HttpClient,
    api: &str,
    node: Node,
    k: Option<usize>,
    set: bool,
) {
    let all = Arc::clone(&shared.writes);
    let _guards = match k {
        Some(i) => (
            Some(all.read_owned().await),
            Some(Arc::clone(&shared.key_locks[i]).write_owned().await),
            None,
        ),
        None => (None, None, Some(all.write_owned().await)),
    };
    let (op, version) = {
        let mut state = shared.state();
        if !shared.is_up(&state, node) {
            return;
        }
        state.last_version += 1;
        let version = state.last_version;
        let action = match k {
            Some(i) if set => Action::Set {
                key: key(i),
                version,
            },
            Some(i) => Action::Remove {
                key: key(i),
                version,
            },
            None => Action::Flush { version },
        };
        match k {
            Some(i) => {
                state.versions.insert(key(i), version);
            }
            None => state.versions.values_mut().for_each(|v| *v = version),
        }
        let at = shared.now();
        (state.history.invoke(at, node, action), version)
    };
    let (method, url, body) = match k {
        Some(i) if set => (
            Method::PUT,
            format!("{api}/v1/galaxies/{GALAXY}/keys/{}", key(i)),
            format!("{}@{version}", key(i)),
        ),
        Some(i) => (
            Method::DELETE,
            format!("{api}/v1/galaxies/{GALAXY}/keys/{}", key(i)),
            String::new(),
        ),
        None => (
            Method::POST,
            format!("{api}/v1/galaxies/{GALAXY}/flush"),
            String::new(),
        ),
    };
    let answer = http
        .send(
            method,
            url.parse().unwrap(),
            HeaderMap::new(),
            Bytes::from(body),
        )
        .await;
    let outcome = match answer {
        Ok(r) if r.status == 200 => {
            let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            match json["complete"].as_bool() {
                Some(complete) => Outcome::Written { complete },
                None => Outcome::Failed(format!("no report: {:?}", r.body)),
            }
        }
        Ok(r) => Outcome::Failed(format!(
            "{}: {}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )),
        Err(e) => Outcome::Failed(e),
    };
    shared.complete(node, op, outcome);
}

/// One client of node `node`: gets (80%), sets, removes and flushes, with pauses of up to
/// 20 ms, while the node is up, until the run stops.
async fn client(shared: Arc<Shared>, api: String, node: Node, seed: u64) {
    let http = HttpClient::new(4, Duration::from_secs(10));
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut up = shared.up[node].subscribe();
    while !shared.stopping.load(Ordering::SeqCst) {
        if up.wait_for(|up| *up).await.is_err() {
            return;
        }
        // The workload's own clock: a client's think time.
        tokio::time::sleep(Duration::from_millis(rng.u64(0..20))).await;
        let k = rng.usize(0..KEYS);
        match rng.u32(0..100) {
            0..80 => drop(client_get(&shared, &http, &api, node, &key(k)).await),
            80..89 => client_write(&shared, &http, &api, node, Some(k), true).await,
            89..98 => client_write(&shared, &http, &api, node, Some(k), false).await,
            _ => client_write(&shared, &http, &api, node, None, false).await,
        }
    }
}

/// A fault of the schedule.
#[derive(Clone, Debug)]
enum Fault {
    /// Every link of one node down.
    Isolate(Node),
    /// Every link between these nodes and the others down (with 3 nodes, one against two).
    Halves(Vec<Node>),
    /// The link between two nodes down: each still reaches the others.
    Cut(Node, Node),
    /// SIGKILL, then a restart (its caches gone).
    Kill(Node),
    /// SIGSTOP, then SIGCONT.
    Stop(Node),
    /// The node's peer traffic delayed.
    Delay(Node),
    /// A share of the node's peer packets dropped.
    Loss(Node),
}

impl Fault {
    fn draw(rng: &mut fastrand::Rng, nodes: usize) -> Fault {
        let n = rng.usize(0..nodes);
        match rng.u32(0..7) {
            0 => Fault::Isolate(n),
            1 => {
                let mut all: Vec<Node> = (0..nodes).collect();
                rng.shuffle(&mut all);
                all.truncate(nodes / 2);
                all.sort_unstable();
                Fault::Halves(all)
            }
            2 => Fault::Cut(n, (n + rng.usize(1..nodes)) % nodes),
            3 => Fault::Kill(n),
            4 => Fault::Stop(n),
            5 => Fault::Delay(n),
            _ => Fault::Loss(n),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Fault::Isolate(_) => "isolate",
            Fault::Halves(_) => "halves",
            Fault::Cut(..) => "cut link",
            Fault::Kill(_) => "kill+restart",
            Fault::Stop(_) => "stop+cont",
            Fault::Delay(_) => "delay",
            Fault::Loss(_) => "loss",
        }
    }

    /// The links a partition puts down.
    fn links(&self, nodes: usize) -> Vec<(Node, Node)> {
        let across = |side: &[Node]| {
            let mut links = Vec::new();
            for &a in side {
                links.extend((0..nodes).filter(|b| !side.contains(b)).map(|b| (a, b)));
            }
            links
        };
        match self {
            Fault::Isolate(n) => across(&[*n]),
            Fault::Halves(side) => across(side),
            Fault::Cut(a, b) => vec![(*a, *b)],
            _ => Vec::new(),
        }
    }
}

/// Block the runtime's thread on `f` (a command of the bed) without starving the others.
fn blocking<R>(f: impl FnOnce() -> R) -> R {
    tokio::task::block_in_place(f)
}

/// Whether every node is ready, sees every peer's circuit closed, and has no write retry
/// pending; else what is not.
async fn settled(bed: &Bed, http: &HttpClient) -> Result<(), String> {
    for i in 0..bed.nodes() {
        let api = bed.api(i);
        let ready = http.get(format!("{api}/readyz").parse().unwrap()).await;
        match ready {
            Ok(r) if r.status == 200 => {}
            other => return Err(format!("node {i} not ready: {other:?}")),
        }
        let peers = http.get(format!("{api}/v1/peers").parse().unwrap()).await?;
        let peers: serde_json::Value = serde_json::from_slice(&peers.body).unwrap_or_default();
        let states = peers["peers"].as_array().cloned().unwrap_or_default();
        if states.len() != bed.nodes() || states.iter().any(|p| p["state"] != "up") {
            return Err(format!("node {i}'s circuits: {states:?}"));
        }
        let stats = http.get(format!("{api}/v1/stats").parse().unwrap()).await?;
        let stats: serde_json::Value = serde_json::from_slice(&stats.body).unwrap_or_default();
        let pending = &stats["galaxies"][GALAXY]["pending_retries"];
        if pending.as_u64() != Some(0) {
            return Err(format!("node {i}: {pending} write retries pending"));
        }
    }
    Ok(())
}

/// Wait until [`settled`], up to `limit`.
async fn settle(bed: &Bed, http: &HttpClient, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let why = match settled(bed, http).await {
            Ok(()) => return,
            Err(why) => why,
        };
        assert!(
            Instant::now() < deadline,
            "the cluster did not settle within {limit:?}: {why}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What a run did.
struct Run {
    history: History,
    faults: Vec<(Fault, Window)>,
    conditions: Conditions,
    took: Duration,
}

/// Start every node, run clients and the schedule drawn from `seed` for about `run_for`,
/// and return the history with the conditions the schedule says held.
fn run_schedule(bed: &Bed, seed: u64, run_for: Duration) -> Run {
    let flags = node_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    for i in 0..bed.nodes() {
        bed.start(i, &flags);
    }
    bed.in_hub(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(schedule(bed, seed, run_for, &flags))
    })
}

async fn schedule(bed: &Bed, seed: u64, run_for: Duration, flags: &[&str]) -> Run {
    let nodes = bed.nodes();
    let shared = Shared::new(nodes);
    serve_origin(Arc::clone(&shared)).await;
    let probe = HttpClient::new(8, Duration::from_secs(2));
    settle(bed, &probe, SETTLE_LIMIT).await;
    let mut rng = fastrand::Rng::with_seed(seed);
    let clients: Vec<_> = (0..nodes)
        .flat_map(|n| (0..CLIENTS).map(move |c| (n, c)))
        .map(|(n, c)| {
            let seed = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((n as u64) << 8 | c as u64);
            tokio::spawn(client(Arc::clone(&shared), bed.api(n), n, seed))
        })
        .collect();
    let (mut calm, mut down, mut faults) = (Vec::new(), Vec::new(), Vec::new());
    let mut calm_since = shared.now();
    loop {
        let gap = Duration::from_millis(rng.u64(1_500..3_000));
        let lasts = Duration::from_millis(rng.u64(1_000..4_000));
        if shared.now() + gap + lasts > run_for {
            tokio::time::sleep(run_for.saturating_sub(shared.now())).await;
            break;
        }
        // The schedule's own clock: the quiet time between faults, and each fault's span.
        tokio::time::sleep(gap).await;
        let fault = Fault::draw(&mut rng, nodes);
        let start = shared.now();
        calm.push(Window::new(calm_since, start));
        eprintln!(
            "{:>8.3}s fault: {fault:?} for {lasts:?}",
            start.as_secs_f64()
        );
        let links = fault.links(nodes);
        blocking(|| match &fault {
            Fault::Kill(n) => {
                shared.set_up(*n, false);
                bed.kill(*n);
            }
            Fault::Stop(n) => {
                shared.set_up(*n, false);
                bed.signal(*n, Signal::STOP);
            }
            Fault::Delay(n) => bed.impair(*n, Impair::Delay, true),
            Fault::Loss(n) => bed.impair(*n, Impair::Loss, true),
            _ => links.iter().for_each(|&(a, b)| bed.link(a, b, false)),
        });
        // The node is down from when the signal was sent: an operation invoked before
        // then (its clients saw it up) may be cut short.
        let down_from = shared.now();
        tokio::time::sleep(lasts).await;
        blocking(|| match &fault {
            Fault::Kill(n) => bed.start(*n, flags),
            Fault::Stop(n) => bed.signal(*n, Signal::CONT),
            Fault::Delay(n) => bed.impair(*n, Impair::Delay, false),
            Fault::Loss(n) => bed.impair(*n, Impair::Loss, false),
            _ => links.iter().for_each(|&(a, b)| bed.link(a, b, true)),
        });
        let healed = shared.now();
        if let Fault::Kill(n) | Fault::Stop(n) = &fault {
            if let Fault::Kill(_) = &fault {
                wait_ready(&probe, &bed.api(*n)).await;
            }
            down.push((*n, Window::new(down_from, shared.now())));
            shared.set_up(*n, true);
        }
        faults.push((fault, Window::new(start, healed)));
        settle(bed, &probe, SETTLE_LIMIT).await;
        calm_since = shared.now();
        eprintln!(
            "{:>8.3}s healed; settled after {:.3}s",
            healed.as_secs_f64(),
            (calm_since - healed).as_secs_f64()
        );
    }
    shared.stopping.store(true, Ordering::SeqCst);
    for c in clients {
        tokio::time::timeout(Duration::from_secs(30), c)
            .await
            .expect("a client did not stop within 30 s")
            .unwrap();
    }
    let end = shared.now();
    calm.push(Window::new(calm_since, end));
    let history = std::mem::take(&mut shared.state().history);
    Run {
        history,
        faults,
        conditions: conditions(calm, down, end),
        took: end,
    }
}

/// Wait until the client API at `api` says ready, up to 30 s.
async fn wait_ready(http: &HttpClient, api: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = http.get(format!("{api}/readyz").parse().unwrap()).await;
        if matches!(&r, Ok(r) if r.status == 200) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{api} not ready within 30 s: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|e| panic!("{name}={value:?}: {e}")),
    )
}

/// The figures of a run: operations, faults by kind, availability under faults, and the
/// gets' median latency under each kind of fault (the faults do slow things down).
fn report(run: &Run) -> String {
    use galaxycache_sim::history::EventKind;
    // Each get: when it started, how long it took, whether it was answered.
    let mut gets: BTreeMap<u64, (Duration, Option<Duration>, bool)> = BTreeMap::new();
    for e in run.history.events() {
        match &e.kind {
            EventKind::Invoke(Action::Get { .. }) => {
                gets.insert(e.op, (e.at, None, false));
            }
            EventKind::Complete(outcome) => {
                if let Some(get) = gets.get_mut(&e.op) {
                    get.1 = Some(e.at - get.0);
                    get.2 = matches!(outcome, Outcome::Value(_) | Outcome::NotFound);
                }
            }
            _ => {}
        }
    }
    let fault_at = |at: Duration| {
        run.faults
            .iter()
            .find(|(_, w)| w.start <= at && at < w.end)
            .map(|(f, _)| f.kind())
    };
    let (mut under_fault, mut answered_under_fault, mut answered) = (0u64, 0u64, 0u64);
    let mut latency: BTreeMap<&str, Vec<Duration>> = BTreeMap::new();
    for (at, took, ok) in gets.values() {
        answered += u64::from(*ok);
        let kind = fault_at(*at);
        if kind.is_some() {
            under_fault += 1;
            answered_under_fault += u64::from(*ok);
        }
        if let Some(took) = took {
            latency
                .entry(kind.unwrap_or("none"))
                .or_default()
                .push(*took);
        }
    }
    let medians: Vec<String> = latency
        .iter_mut()
        .map(|(kind, took)| {
            took.sort_unstable();
            let max = took.last().copied().unwrap_or_default();
            format!(
                "{kind} {:.1}/{:.0}ms",
                took[took.len() / 2].as_secs_f64() * 1e3,
                max.as_secs_f64() * 1e3
            )
        })
        .collect();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for (fault, _) in &run.faults {
        *kinds.entry(fault.kind()).or_default() += 1;
    }
    let loads = run
        .history
        .events()
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Load { .. }))
        .count();
    let share = |a: u64, b: u64| 100.0 * a as f64 / b.max(1) as f64;
    let n_gets = gets.len() as u64;
    format!(
        "{} operations ({n_gets} gets, {} writes), {loads} origin loads in {:.1}s\n\
         netns: faults {kinds:?}\n\
         netns: gets answered: {:.1}% overall, {:.1}% of the {under_fault} invoked while a \
         fault was active\n\
         netns: get latency median/max by the fault active when it started: {}",
        run.history.operations(),
        run.history.operations() - n_gets,
        run.took.as_secs_f64(),
        share(answered, n_gets),
        share(answered_under_fault, under_fault),
        medians.join(", "),
    )
}

#[test]
fn faults_on_real_processes_break_no_guarantee() {
    let seed = env_u64("NETNS_SEED").unwrap_or_else(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        now.map_or(1, |d| d.as_nanos() as u64 % 1_000_000)
    });
    let secs = env_u64("NETNS_SECS").unwrap_or(DEFAULT_SECS);
    let nodes = env_u64("NETNS_NODES").map_or(3, |n| n as usize);
    let bed = Bed::new(nodes);
    eprintln!(
        "netns: seed {seed}, {nodes} nodes, {secs} s; delay and loss: {}",
        bed.impairment.describe()
    );
    let run = run_schedule(&bed, seed, Duration::from_secs(secs));
    let violations = check(&run.history, &run.conditions);
    eprintln!("netns: {}", report(&run));
    if !violations.is_empty() {
        for (fault, w) in &run.faults {
            eprintln!(
                "fault {:>8.3}s..{:>8.3}s {fault:?}",
                w.start.as_secs_f64(),
                w.end.as_secs_f64()
            );
        }
        for v in &violations {
            eprintln!("{v}");
        }
        for i in 0..nodes {
            eprintln!("node {i}'s log (end):\n{}", bed.log_tail(i, 20));
        }
        panic!(
            "{} violations (rerun: NETNS_SEED={seed} NETNS_SECS={secs} cargo test -p galaxyd \
             --test netns -- --nocapture)",
            violations.len()
        );
    }
}

/// The bed can fail: a link it puts down does block traffic between the namespaces, and
/// a history from the real nodes where a write reached the origin but no node is caught.
#[test]
fn a_cut_link_blocks_traffic_and_a_lost_write_is_caught() {
    let bed = Bed::new(3);
    let flags = node_flags();
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    for i in 0..3 {
        bed.start(i, &flags);
    }
    let peer = |i: usize| -> SocketAddr {
        let url = Bed::peer_url(i);
        url.trim_start_matches("http://").parse().unwrap()
    };
    let connect = |to: usize| TcpStream::connect_timeout(&peer(to), Duration::from_secs(1));
    bed.in_hub(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let probe = HttpClient::new(8, Duration::from_secs(2));
        rt.block_on(async {
            for i in 0..3 {
                wait_ready(&probe, &bed.api(i)).await;
            }
        });
    });
    assert!(
        bed.in_node(0, || connect(1)).is_ok(),
        "node 0 reaches node 1"
    );
    bed.link(0, 1, false);
    let cut = bed.in_node(0, || connect(1));
    assert!(cut.is_err(), "a link down still carries traffic: {cut:?}");
    let cut = bed.in_node(1, || connect(0));
    assert!(cut.is_err(), "a link down still carries traffic: {cut:?}");
    assert!(
        bed.in_node(0, || connect(2)).is_ok(),
        "node 0 still reaches node 2"
    );
    bed.link(0, 1, true);
    assert!(bed.in_node(0, || connect(1)).is_ok(), "the link is back");

    let (history, conditions) = bed.in_hub(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let shared = Shared::new(3);
            serve_origin(Arc::clone(&shared)).await;
            let http = HttpClient::new(8, Duration::from_secs(5));
            for i in 0..3 {
                let got = client_get(&shared, &http, &bed.api(i), i, "k0").await;
                assert_eq!(got, Outcome::Value(0));
            }
            // A write that reaches the origin and no node: the cluster keeps v0.
            let op = {
                let mut state = shared.state();
                state.versions.insert("k0".into(), 1);
                let at = shared.now();
                state.history.invoke(
                    at,
                    0,
                    Action::Set {
                        key: "k0".into(),
                        version: 1,
                    },
                )
            };
            shared.complete(0, op, Outcome::Written { complete: true });
            for i in 0..3 {
                let got = client_get(&shared, &http, &bed.api(i), i, "k0").await;
                assert_eq!(got, Outcome::Value(0), "node {i} within the max TTL");
            }
            let end = shared.now();
            let history = std::mem::take(&mut shared.state().history);
            let calm = vec![Window::new(Duration::ZERO, end)];
            (history, conditions(calm, Vec::new(), end))
        })
    });
    let violations = check(&history, &conditions);
    assert_eq!(violations.len(), 3, "one per stale get: {violations:#?}");
    assert!(
        violations
            .iter()
            .all(|v| v.property == galaxycache_sim::history::Property::NoStaleAfterWrite),
        "{violations:#?}"
    );
}
