//! `galaxyd demo`: a 3-node cluster in this process, over real loopback sockets, in front
//! of an SQLite database it creates, under a skewed workload; then it changes rows in the
//! database, removes their keys through one node's client API, and checks that every
//! node serves the new values.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use galaxycache_galaxy::Stats;
use http::{HeaderMap, Method, StatusCode, Uri};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::backend::{BackendSpec, synthetic_value};
use crate::client::HttpClient;
use crate::config::{GalaxyConfig, NodeConfig};
use crate::load::{self, Budget, LoadSpec, Percentiles, new_histogram};
use crate::node::Node;
use crate::peers::PeerSource;
use crate::units::human_size;
use crate::workload::{Dist, KeyNames, KeySampler, key_name};

/// The galaxy the demo serves.
const DEMO_GALAXY: &str = "demo";
const NODES: usize = 3;
/// Rows the update step changes (all of them when there are fewer): the hottest keys,
/// `key-0` ..., which every node holds after the workload.
const UPDATED_ROWS: u64 = 100;

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
    /// Per node, in peer-URL order, at the end of the read workload.
    pub nodes: Vec<NodeSummary>,
    /// The update step, after the read workload.
    pub update: UpdateSummary,
}

/// What the update step saw: rows changed in the database, their keys removed through
/// one node's client API, then each read back from every node.
#[derive(Clone, Debug, Default)]
pub struct UpdateSummary {
    /// Rows changed (`key-0` ...), each to a new value of the same size.
    pub rows: u64,
    /// Removes answered 200 whose report says every peer applied them.
    pub removes_complete: u64,
    /// Gets (one per changed key per node) that answered the new value.
    pub fresh: u64,
    /// Gets that answered anything else: the old value, another status, no answer.
    pub stale: u64,
    /// The first failure (remove or get), if any.
    pub first_error: Option<String>,
    /// Backend loads of all nodes from the first remove to the last get.
    pub backend_loads: u64,
    /// Latency of the removes (client side, one at a time).
    pub remove_latency: Percentiles,
}

impl UpdateSummary {
    /// Check what a remove promises: every remove reached every peer, every node serves
    /// every new value, and each changed key was loaded from the database at most once.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(e) = &self.first_error {
            anyhow::bail!(
                "update step: {} stale answers, {} of {} removes complete; first: {e}",
                self.stale,
                self.removes_complete,
                self.rows
            );
        }
        anyhow::ensure!(
            self.stale == 0 && self.removes_complete == self.rows,
            "update step failed"
        );
        anyhow::ensure!(
            self.fresh == self.rows * NODES as u64,
            "update step: {} fresh answers for {} rows on {NODES} nodes",
            self.fresh,
            self.rows
        );
        anyhow::ensure!(
            self.backend_loads <= self.rows,
            "update step: {} backend loads for {} changed keys: a key was loaded twice",
            self.backend_loads,
            self.rows
        );
        Ok(())
    }
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
        self.update.check()
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
        let u = &self.update;
        let served = if u.stale == 0 && u.fresh == u.rows * NODES as u64 {
            format!("all {NODES} nodes serve the new values")
        } else {
            format!("{} stale answers", u.stale)
        };
        writeln!(
            f,
            "  update          updated {} rows; {served} (remove p50 {:.3} ms, p99 {:.3} ms; {} backend loads)",
            u.rows, u.remove_latency.p50, u.remove_latency.p99, u.backend_loads
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

/// The value of `key` after the update step: another synthetic value of the same size.
fn updated_value(key: &str, size: usize) -> Bytes {
    synthetic_value(&format!("{key}, updated"), size)
}

/// Set the value of `key-0` .. `key-{rows-1}` in the demo database at `path` to its
/// [`updated_value`], in one transaction.
fn update_database(path: &Path, rows: u64, value_size: usize) -> anyhow::Result<()> {
    let mut conn = rusqlite::Connection::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // The nodes only read, and none is reading now; wait for one that is anyway.
    conn.busy_timeout(Duration::from_secs(5))?;
    let tx = conn.transaction()?;
    {
        let mut update = tx.prepare("UPDATE kv SET value = ?2 WHERE key = ?1")?;
        for i in 0..rows {
            let key = key_name(i);
            let changed = update.execute((&key, updated_value(&key, value_size).as_ref()))?;
            anyhow::ensure!(changed == 1, "no row {key:?} to update");
        }
    }
    tx.commit()?;
    Ok(())
}

/// `base` + `path` as a URI, the key percent-encoded.
fn key_uri(base: &str, key: &str) -> anyhow::Result<Uri> {
    let key = percent_encoding::utf8_percent_encode(key, crate::client::SEGMENT);
    let uri = format!("{base}/v1/galaxies/{DEMO_GALAXY}/keys/{key}");
    uri.parse().with_context(|| format!("invalid URI {uri:?}"))
}

/// The update step: change the hottest rows in the database, remove their keys through
/// the first node's client API (one at a time, timed), then get each from every node.
async fn update_step(
    db: &Path,
    nodes: &[Node],
    client: &HttpClient,
    keys: u64,
    value_size: usize,
) -> anyhow::Result<UpdateSummary> {
    let rows = UPDATED_ROWS.min(keys);
    let update = {
        let db = db.to_owned();
        tokio::task::spawn_blocking(move || update_database(&db, rows, value_size))
    };
    update.await.context("updating the database")??;
    let bases: Vec<String> = nodes
        .iter()
        .map(|n| format!("http://{}", n.api_addr()))
        .collect();
    let loads_before = cluster_backend_loads(nodes);
    let mut summary = UpdateSummary {
        rows,
        ..UpdateSummary::default()
    };
    let mut latency = new_histogram();
    for i in 0..rows {
        let key = key_name(i);
        let uri = key_uri(&bases[0], &key)?;
        let start = Instant::now();
        let answer = client
            .send(Method::DELETE, uri, HeaderMap::new(), Bytes::new())
            .await;
        latency.saturating_record(start.elapsed().as_micros() as u64);
        match answer.and_then(|r| remove_was_complete(&key, &r)) {
            Ok(()) => summary.removes_complete += 1,
            Err(e) => {
                summary.first_error.get_or_insert(e);
            }
        }
    }
    summary.remove_latency = Percentiles::of(&latency);
    for i in 0..rows {
        let key = key_name(i);
        let expected = updated_value(&key, value_size);
        for base in &bases {
            let answer = client.get(key_uri(base, &key)?).await;
            match answer {
                Ok(r) if r.status == StatusCode::OK && r.body == expected => summary.fresh += 1,
                Ok(r) => {
                    summary.stale += 1;
                    let what = if r.status == StatusCode::OK {
                        "a stale value".to_owned()
                    } else {
                        format!("status {}", r.status)
                    };
                    summary
                        .first_error
                        .get_or_insert_with(|| format!("{base}: {key}: {what} after the remove"));
                }
                Err(e) => {
                    summary.stale += 1;
                    summary.first_error.get_or_insert(e);
                }
            }
        }
    }
    summary.backend_loads = cluster_backend_loads(nodes).saturating_sub(loads_before);
    Ok(summary)
}

/// Whether the answer to the remove of `key` is a 200 whose report is complete.
fn remove_was_complete(key: &str, r: &crate::client::Response) -> Result<(), String> {
    let body = String::from_utf8_lossy(&r.body);
    if r.status != StatusCode::OK {
        return Err(format!(
            "remove of {key}: status {}: {}",
            r.status,
            body.trim()
        ));
    }
    let json: serde_json::Value = serde_json::from_slice(&r.body)
        .map_err(|e| format!("remove of {key}: answer is not JSON: {e}"))?;
    match json["complete"].as_bool() {
        Some(true) => Ok(()),
        _ => Err(format!("remove of {key} did not reach every peer: {body}")),
    }
}

fn cluster_backend_loads(nodes: &[Node]) -> u64 {
    nodes
        .iter()
        .map(|n| n.galaxies()[0].stats().backend_loads)
        .sum()
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
    galaxy.tuning.peer_timeout = Some(Duration::from_secs(10));
    // Should the database fail, serve what was loaded for 30 s more (SQLite values do
    // not expire by themselves, so this shows only with a max TTL).
    galaxy.tuning.stale_if_error = Some(Duration::from_secs(30));
    let loopback = ([127, 0, 0, 1], 0).into();
    NodeConfig {
        self_url: self_url.to_owned(),
        peers: PeerSource::Static(peers.to_vec()),
        request_timeout: Duration::from_secs(30),
        ..NodeConfig::local(loopback, loopback, vec![galaxy])
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
/// nodes, drive the workload through all three client APIs, change rows and remove their
/// keys through one node (the update step), stop the nodes, and say what happened.
/// Errors only when the cluster or the database could not be set up or changed; check
/// the summary with [`DemoSummary::check`].
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
        names: KeyNames::default(),
        check: Some(Some(value_size)),
        track_keys: true,
        batch: 0,
    });
    let client = HttpClient::new(config.concurrency.max(1), Duration::from_secs(30));
    let bar = progress_bar(config);
    let start = Instant::now();
    let budget = Budget::Requests(config.requests);
    let tally = load::run(
        spec,
        budget,
        client.clone(),
        config.concurrency,
        bar.clone(),
    )
    .await;
    let elapsed = start.elapsed();
    bar.finish_and_clear();
    let node_summaries = nodes
        .iter()
        .zip(&tally.per_target)
        .map(|(n, &requests)| NodeSummary {
            peer_url: n.universe().self_url().to_owned(),
            requests,
            stats: n.galaxies()[0].stats(),
        })
        .collect();
    let update = update_step(&db, &nodes, &client, keys, value_size).await;
    stop_cluster(nodes).await;
    Ok(DemoSummary {
        requests: tally.requests,
        ok: tally.ok - tally.mismatches,
        errors: tally.errors + tally.not_found,
        mismatches: tally.mismatches,
        first_error: tally.first_error,
        distinct_keys: tally.keys.len() as u64,
        rows: keys,
        latency: Percentiles::of(&tally.latency),
        elapsed,
        nodes: node_summaries,
        update: update?,
    })
}
