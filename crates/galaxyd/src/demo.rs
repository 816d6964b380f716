//! `galaxyd demo`: a 3-node cluster in this process, over real loopback sockets, in front
//! of an SQLite database it creates, under a skewed workload.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use galaxycache_galaxy::Stats;
use indicatif::{ProgressBar, ProgressStyle};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::backend::{BackendSpec, synthetic_value};
use crate::client::HttpClient;
use crate::config::{GalaxyConfig, NodeConfig, Protocol};
use crate::load::{self, Budget, LoadSpec, Percentiles};
use crate::node::Node;
use crate::units::human_size;
use crate::workload::{Dist, KeySampler, key_name};

/// The galaxy the demo serves.
const DEMO_GALAXY: &str = "demo";
const NODES: usize = 3;

/// What the demo does (`galaxyd demo`'s flags; tests shorten it).
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Rows in the database: `key-0` .. `key-{keys-1}`.
    pub keys: u64,
    /// Requests, spread round-robin over the three nodes.
    pub requests: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Which keys are asked for.
    pub dist: Dist,
    /// Bytes per value.
    pub value_size: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

/// One node's part of a demo run.
#[derive(Clone, Debug)]
pub struct NodeSummary {
    /// The node's peer URL.
    pub peer_url: String,
    /// Requests the workload sent to this node's client API.
    pub requests: u64,
    /// The node's galaxy stats at the end.
    pub stats: Stats,
}

/// What a demo run saw.
#[derive(Clone, Debug)]
pub struct DemoSummary {
    /// Requests sent.
    pub requests: u64,
    /// Requests answered 200 with the right value.
    pub ok: u64,
    /// Requests that failed (non-200 or transport error).
    pub errors: u64,
    /// 200s whose value was not the key's value.
    pub mismatches: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// Distinct keys requested.
    pub distinct_keys: u64,
    /// Rows in the database.
    pub rows: u64,
    /// Client latency.
    pub latency: Percentiles,
    /// How long the workload ran.
    pub elapsed: Duration,
    /// Per node, in peer-URL order.
    pub nodes: Vec<NodeSummary>,
}

impl DemoSummary {
    fn total(&self, stat: impl Fn(&Stats) -> u64) -> u64 {
        self.nodes.iter().map(|n| stat(&n.stats)).sum()
    }

    /// Backend loads of all nodes together.
    pub fn backend_loads(&self) -> u64 {
        self.total(|s| s.backend_loads)
    }

    /// Check what a healthy cluster guarantees: no errors, no wrong value, every node
    /// served requests, and at most one backend load per distinct key.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(e) = &self.first_error {
            anyhow::bail!(
                "{} errors and {} wrong values; first: {e}",
                self.errors,
                self.mismatches
            );
        }
        anyhow::ensure!(self.errors == 0 && self.mismatches == 0, "requests failed");
        if let Some(idle) = self
            .nodes
            .iter()
            .find(|n| n.requests == 0 || n.stats.gets == 0)
        {
            anyhow::bail!("node {} served no request", idle.peer_url);
        }
        anyhow::ensure!(
            self.backend_loads() <= self.distinct_keys,
            "{} backend loads for {} distinct keys: a key was loaded twice",
            self.backend_loads(),
            self.distinct_keys
        );
        Ok(())
    }
}

impl fmt::Display for DemoSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let pct = |n: u64| 100.0 * n as f64 / self.requests.max(1) as f64;
        let (main, hot, peer) = (
            self.total(|s| s.main_hits),
            self.total(|s| s.hot_hits),
            self.total(|s| s.peer_loads),
        );
        writeln!(
            f,
            "galaxyd demo: 3 nodes, HTTP peers on loopback, SQLite backend"
        )?;
        writeln!(
            f,
            "  requests        {} in {:.2}s ({:.0} req/s), {} errors, {} wrong values",
            self.requests,
            secs,
            self.requests as f64 / secs,
            self.errors,
            self.mismatches
        )?;
        writeln!(
            f,
            "  hits            main {main} ({:.1}%), hot {hot} ({:.1}%)",
            pct(main),
            pct(hot)
        )?;
        writeln!(f, "  from owner peer {peer} ({:.1}%)", pct(peer))?;
        writeln!(
            f,
            "  backend loads   {} for {} distinct keys requested (of {} rows)",
            self.backend_loads(),
            self.distinct_keys,
            self.rows
        )?;
        writeln!(
            f,
            "  latency         p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms",
            self.latency.p50, self.latency.p99, self.latency.max
        )?;
        for n in &self.nodes {
            let s = &n.stats;
            writeln!(
                f,
                "  {:<24} {} requests: main {} hot {} peer {} backend {} (cached {})",
                n.peer_url,
                n.requests,
                s.main_hits,
                s.hot_hits,
                s.peer_loads,
                s.backend_loads,
                human_size(s.main_bytes + s.hot_bytes)
            )?;
        }
        Ok(())
    }
}

/// Create the demo database at `path`: table `kv(key, value)` with `rows` rows, the value
/// of `key-i` being its synthetic value of `value_size` bytes.
pub fn create_database(path: &Path, rows: u64, value_size: usize) -> anyhow::Result<()> {
    let mut conn = rusqlite::Connection::open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    conn.execute_batch("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")?;
    let tx = conn.transaction()?;
    {
        let mut insert = tx.prepare("INSERT INTO kv (key, value) VALUES (?1, ?2)")?;
        for i in 0..rows {
            let key = key_name(i);
            insert.execute((&key, synthetic_value(&key, value_size).as_ref()))?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn node_config(self_url: &str, peers: &[String], db: &Path) -> NodeConfig {
    let mut galaxy = GalaxyConfig::new(DEMO_GALAXY, BackendSpec::Sqlite(db.to_owned()));
    // Generous, so a busy machine does not make a node load a peer's key itself.
    galaxy.peer_timeout = Some(Duration::from_secs(10));
    NodeConfig {
        self_url: self_url.to_owned(),
        peers: peers.to_vec(),
        peer_listen: ([127, 0, 0, 1], 0).into(),
        listen: ([127, 0, 0, 1], 0).into(),
        protocol: Protocol::Http,
        replicas: galaxycache_universe::DEFAULT_REPLICAS,
        max_key_len: galaxycache_universe::DEFAULT_MAX_KEY_LEN,
        request_timeout: Duration::from_secs(30),
        galaxies: vec![galaxy],
    }
}

async fn start_cluster(db: &Path) -> anyhow::Result<Vec<Node>> {
    let mut peer_listeners = Vec::new();
    let mut peers = Vec::new();
    for _ in 0..NODES {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        peers.push(format!("http://{}", listener.local_addr()?));
        peer_listeners.push(listener);
    }
    let mut nodes = Vec::new();
    for (listener, url) in peer_listeners.into_iter().zip(&peers) {
        let api = TcpListener::bind("127.0.0.1:0").await?;
        let config = node_config(url, &peers, db);
        match Node::start_on(&config, listener, api).await {
            Ok(node) => nodes.push(node),
            Err(e) => {
                stop_cluster(nodes).await;
                return Err(e);
            }
        }
    }
    Ok(nodes)
}

async fn stop_cluster(nodes: Vec<Node>) {
    for node in nodes {
        if let Err(e) = node.shutdown().await {
            tracing::warn!(error = %e, "demo node did not stop cleanly");
        }
    }
}

fn progress_bar(config: &DemoConfig) -> ProgressBar {
    if !config.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(config.requests);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} requests ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Run the demo: create and fill the database in a temporary directory, start three
/// nodes, drive the workload through all three client APIs, stop the nodes, and say what
/// happened. Errors only when the cluster could not be set up; check the summary with
/// [`DemoSummary::check`].
pub async fn run_demo(config: &DemoConfig) -> anyhow::Result<DemoSummary> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let db = dir.path().join("demo.db");
    let (keys, value_size) = (config.keys.max(1), config.value_size.max(1));
    let fill = {
        let db = db.clone();
        tokio::task::spawn_blocking(move || create_database(&db, keys, value_size))
    };
    fill.await.context("filling the database")??;
    let nodes = start_cluster(&db).await?;
    let spec = Arc::new(LoadSpec {
        targets: nodes
            .iter()
            .map(|n| format!("http://{}", n.api_addr()))
            .collect(),
        galaxy: DEMO_GALAXY.to_owned(),
        sampler: KeySampler::new(config.dist, keys).map_err(anyhow::Error::msg)?,
        check: Some(Some(value_size)),
        track_keys: true,
    });
    let client = HttpClient::new(config.concurrency, Duration::from_secs(30));
    let bar = progress_bar(config);
    let start = Instant::now();
    let budget = Budget::Requests(config.requests);
    let tally = load::run(spec, budget, client, config.concurrency, bar.clone()).await;
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let summary = DemoSummary {
        requests: tally.requests,
        ok: tally.ok - tally.mismatches,
        errors: tally.errors + tally.not_found,
        mismatches: tally.mismatches,
        first_error: tally.first_error,
        distinct_keys: tally.keys.len() as u64,
        rows: keys,
        latency: Percentiles::of(&tally.latency),
        elapsed,
        nodes: nodes
            .iter()
            .zip(&tally.per_target)
            .map(|(n, &requests)| NodeSummary {
                peer_url: n.universe().self_url().to_owned(),
                requests,
                stats: n.galaxies()[0].stats(),
            })
            .collect(),
    };
    stop_cluster(nodes).await;
    Ok(summary)
}
