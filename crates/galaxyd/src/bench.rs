//! `galaxyd bench`: a load generator against the client APIs of running nodes.
//!
//! Before sending load it reads every target's `/v1/stats`, within the connect timeout:
//! a target that cannot be reached, or that has no such galaxy, stops the run at once.
//! The cluster's nodes come from the first target's `/v1/peers`; the stats of every node
//! whose client API is known (the targets, and peers whose entry gives an `api` URL) are
//! read before and after the measurement, for the backend loads of the whole cluster and
//! the hit ratio by level.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::time::Instant;

use crate::cli::BenchArgs;
use crate::client::HttpClient;
use crate::load::{self, Budget, LoadSpec, Percentiles};
use crate::workload::{Dist, KeyNames, KeySampler};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Client API base URLs, e.g. `http://127.0.0.1:8080`.
    pub targets: Vec<String>,
    /// The galaxy to read.
    pub galaxy: String,
    /// Distinct keys (indexes `0..keys`); unused with `keys_from`, whose lines are the keys.
    pub keys: u64,
    /// The key of each index: `{}` is replaced by it, e.g. `user:{}`.
    pub key_format: String,
    /// A file of keys, one a line, instead of `key_format`.
    pub keys_from: Option<PathBuf>,
    /// Which keys are asked for.
    pub dist: Dist,
    /// Requests in flight at once, one keep-alive connection each.
    pub concurrency: usize,
    /// How long to measure.
    pub duration: Duration,
    /// How long to send load before measuring.
    pub warmup: Duration,
    /// Check each value against the synthetic backend's value of its key.
    pub value_check: bool,
    /// How long one request may take.
    pub timeout: Duration,
    /// How long reaching a target (the stats read before the run) may take.
    pub connect_timeout: Duration,
    /// Largest share of keys answered with an error or 404 that still passes.
    pub max_error_share: f64,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Keys per request, through the batch endpoint; `None`: one `GET` per key.
    pub batch: Option<usize>,
}

impl BenchConfig {
    /// A run of one second against `targets`, reading `galaxy`, with the flags' defaults.
    pub fn new(targets: Vec<String>, galaxy: impl Into<String>) -> Self {
        BenchConfig {
            targets,
            galaxy: galaxy.into(),
            keys: DEFAULT_KEYS,
            key_format: crate::workload::DEFAULT_KEY_FORMAT.to_owned(),
            keys_from: None,
            dist: Dist::Zipf(1.1),
            concurrency: 16,
            duration: Duration::from_secs(1),
            warmup: Duration::ZERO,
            value_check: false,
            timeout: Duration::from_secs(10),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_error_share: DEFAULT_MAX_ERROR_SHARE,
            progress: false,
            batch: None,
        }
    }
}

/// `--keys` when not given.
pub(crate) const DEFAULT_KEYS: u64 = 100_000;
/// `--connect-timeout` when not given.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// `--max-error-share` when not given: 1%.
pub(crate) const DEFAULT_MAX_ERROR_SHARE: f64 = 0.01;

impl From<&BenchArgs> for BenchConfig {
    fn from(a: &BenchArgs) -> Self {
        BenchConfig {
            targets: a
                .targets
                .iter()
                .map(|t| t.trim_end_matches('/').to_owned())
                .collect(),
            galaxy: a.galaxy.clone(),
            keys: a.keys,
            key_format: a.key_format.clone(),
            keys_from: a.keys_from.clone(),
            dist: a.dist,
            concurrency: a.concurrency,
            duration: a.duration,
            warmup: a.warmup,
            value_check: a.value_check,
            timeout: a.timeout,
            connect_timeout: a.connect_timeout,
            max_error_share: a.max_error_share,
            progress: !a.json,
            batch: a.batch,
        }
    }
}

/// One target's part of a run.
#[derive(Clone, Debug, Serialize)]
pub struct TargetReport {
    /// The target's base URL.
    pub url: String,
    /// Requests sent to it while measuring.
    pub requests: u64,
    /// Its galaxy's backend loads while measuring, from `/v1/stats`; `None` when the
    /// stats could not be read.
    pub backend_loads: Option<u64>,
}

/// How the gets of the counted nodes were answered while measuring, as shares of them
/// (from the nodes' stats; the four shares add up to 1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct HitRatio {
    /// Client gets on the counted nodes.
    pub gets: u64,
    /// Answered by the maincache (keys the node owns).
    pub main: f64,
    /// Answered by the hotcache (copies of hot keys other nodes own).
    pub hot: f64,
    /// Answered from a cached "no such key".
    pub not_found: f64,
    /// Not in a cache: fetched from the owner, loaded, or joined a load in flight.
    pub miss: f64,
}

/// What a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The galaxy read.
    pub galaxy: String,
    /// The key distribution, e.g. `zipf:1.1`.
    pub dist: String,
    /// Distinct keys.
    pub keys: u64,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// How long the measurement ran, in seconds.
    pub seconds: f64,
    /// Keys per request through the batch endpoint; `None`: one `GET` per key.
    pub batch: Option<usize>,
    /// Requests sent while measuring.
    pub requests: u64,
    /// Keys asked for while measuring (the requests, without `--batch`).
    pub keys_asked: u64,
    /// Keys answered 200.
    pub ok: u64,
    /// Keys answered 404.
    pub not_found: u64,
    /// Keys that failed: other statuses, timeouts, connection errors (a failed batch
    /// request counts each of its keys).
    pub errors: u64,
    /// 200s whose value failed `--value-check`.
    pub value_mismatches: u64,
    /// Share of the keys asked answered with an error or a 404.
    pub error_share: f64,
    /// The largest share that passes (`--max-error-share`).
    pub max_error_share: f64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Keys per second (requests per second, without `--batch`).
    pub keys_per_second: f64,
    /// Latency in milliseconds.
    pub latency_ms: Percentiles,
    /// Backend loads of every counted node while measuring; `None` when a node's stats
    /// could not be read.
    pub backend_loads: Option<u64>,
    /// The hit ratio by level on the counted nodes; `None` when a node's stats could not
    /// be read.
    pub hit_ratio: Option<HitRatio>,
    /// Nodes on the first target's ring.
    pub cluster_nodes: usize,
    /// Client API URLs of the nodes whose stats are counted: the targets, and the peers
    /// whose client API the ring gives.
    pub counted: Vec<String>,
    /// Peer URLs on the ring whose client API is unknown: their loads are not counted.
    pub not_counted: Vec<String>,
    /// Per target.
    pub targets: Vec<TargetReport>,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

impl BenchReport {
    /// Whether the run passes: no wrong value, some answer, and at most
    /// `max_error_share` of the keys answered with an error or a 404.
    pub fn check(&self) -> anyhow::Result<()> {
        let first_error = self.first_error.as_deref().unwrap_or("none recorded");
        anyhow::ensure!(
            self.value_mismatches == 0,
            "{} values were not their key's synthetic value (first: {first_error})",
            self.value_mismatches
        );
        anyhow::ensure!(
            self.ok + self.not_found > 0,
            "no request succeeded: {}",
            self.first_error.as_deref().unwrap_or("no request was sent")
        );
        anyhow::ensure!(
            self.error_share <= self.max_error_share,
            "{:.2}% of the keys asked were answered with an error ({}) or 404 ({}), more \
             than --max-error-share {:.2}% (first error: {first_error})",
            self.error_share * 100.0,
            self.errors,
            self.not_found,
            self.max_error_share * 100.0
        );
        Ok(())
    }
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.latency_ms;
        writeln!(
            f,
            "galaxy {:?}, {} keys ({}), concurrency {}, {:.1}s",
            self.galaxy, self.keys, self.dist, self.concurrency, self.seconds
        )?;
        writeln!(
            f,
            "  requests   {} ({:.0} req/s): {} ok, {} not found, {} errors, {} wrong values",
            self.requests,
            self.requests_per_second,
            self.ok,
            self.not_found,
            self.errors,
            self.value_mismatches
        )?;
        if let Some(n) = self.batch {
            writeln!(
                f,
                "  keys       {} ({:.0} keys/s), {n} a request",
                self.keys_asked, self.keys_per_second
            )?;
        }
        writeln!(
            f,
            "  latency    p50 {:.3} ms  p90 {:.3} ms  p99 {:.3} ms  p99.9 {:.3} ms  max {:.3} ms",
            l.p50, l.p90, l.p99, l.p999, l.max
        )?;
        if let Some(h) = &self.hit_ratio {
            let pct = |share: f64| share * 100.0;
            writeln!(
                f,
                "  hits       main {:.1}%  hot {:.1}%  not found {:.1}%  miss {:.1}% of {} gets",
                pct(h.main),
                pct(h.hot),
                pct(h.not_found),
                pct(h.miss),
                h.gets
            )?;
        }
        let loads = |n: Option<u64>| n.map_or("?".to_owned(), |n| n.to_string());
        write!(
            f,
            "  backend    {} loads on {} of {} nodes",
            loads(self.backend_loads),
            self.counted.len(),
            self.cluster_nodes.max(self.counted.len())
        )?;
        if !self.not_counted.is_empty() {
            write!(
                f,
                " (not counted, client API unknown: {}; add them to --targets)",
                self.not_counted.join(", ")
            )?;
        }
        writeln!(f)?;
        for t in &self.targets {
            writeln!(
                f,
                "  {:<28} {} requests, {} backend loads",
                t.url,
                t.requests,
                loads(t.backend_loads)
            )?;
        }
        if let Some(e) = &self.first_error {
            writeln!(f, "  first error: {e}")?;
        }
        Ok(())
    }
}

/// The counters of one galaxy on one node that a run compares before and after.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Counts {
    gets: u64,
    main_hits: u64,
    hot_hits: u64,
    not_found_hits: u64,
    backend_loads: u64,
}

impl Counts {
    /// `galaxy`'s counters in a `/v1/stats` body.
    fn in_stats(stats: &serde_json::Value, galaxy: &str) -> Result<Counts, String> {
        let g = &stats["galaxies"][galaxy];
        let field = |name: &str| {
            g[name]
                .as_u64()
                .ok_or_else(|| format!("stats have no galaxies.{galaxy}.{name}"))
        };
        Ok(Counts {
            gets: field("gets")?,
            main_hits: field("main_hits")?,
            hot_hits: field("hot_hits")?,
            not_found_hits: field("not_found_hits")?,
            backend_loads: field("backend_loads")?,
        })
    }

    /// What happened between `self` and `after`.
    fn until(self, after: Counts) -> Counts {
        Counts {
            gets: after.gets.saturating_sub(self.gets),
            main_hits: after.main_hits.saturating_sub(self.main_hits),
            hot_hits: after.hot_hits.saturating_sub(self.hot_hits),
            not_found_hits: after.not_found_hits.saturating_sub(self.not_found_hits),
            backend_loads: after.backend_loads.saturating_sub(self.backend_loads),
        }
    }

    fn plus(self, other: Counts) -> Counts {
        Counts {
            gets: self.gets + other.gets,
            main_hits: self.main_hits + other.main_hits,
            hot_hits: self.hot_hits + other.hot_hits,
            not_found_hits: self.not_found_hits + other.not_found_hits,
            backend_loads: self.backend_loads + other.backend_loads,
        }
    }

    fn hit_ratio(self) -> HitRatio {
        let share = |n: u64| n as f64 / self.gets.max(1) as f64;
        let hits = self.main_hits + self.hot_hits + self.not_found_hits;
        HitRatio {
            gets: self.gets,
            main: share(self.main_hits),
            hot: share(self.hot_hits),
            not_found: share(self.not_found_hits),
            miss: share(self.gets.saturating_sub(hits)),
        }
    }
}

/// GET `{base}{path}` as JSON.
async fn get_json(
    client: &HttpClient,
    base: &str,
    path: &str,
) -> Result<serde_json::Value, String> {
    let url = format!("{base}{path}");
    let uri = url
        .parse()
        .map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let response = client.get(uri).await?;
    if !response.status.is_success() {
        return Err(format!("GET {url}: {}", response.status));
    }
    serde_json::from_slice(&response.body).map_err(|e| format!("GET {url}: not JSON: {e}"))
}

/// Read each target's stats before any load: an error, at once, for a target that cannot
/// be reached or has no such galaxy. Each target's node (peer) URL.
async fn reach_targets(client: &HttpClient, config: &BenchConfig) -> anyhow::Result<Vec<String>> {
    let mut nodes = Vec::new();
    for target in &config.targets {
        let stats = get_json(client, target, "/v1/stats")
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach target {target}: {e}"))?;
        let galaxies = stats["galaxies"].as_object();
        if !galaxies.is_some_and(|g| g.contains_key(&config.galaxy)) {
            let names: Vec<&str> = galaxies
                .into_iter()
                .flat_map(|g| g.keys().map(String::as_str))
                .collect();
            anyhow::bail!(
                "target {target} has no galaxy {:?} (its galaxies: {}); check --galaxy",
                config.galaxy,
                names.join(", ")
            );
        }
        nodes.push(stats["node"].as_str().unwrap_or_default().to_owned());
    }
    Ok(nodes)
}

/// The client APIs whose stats a run counts (the targets, then the peers on the first
/// target's ring whose `/v1/peers` entry gives an `api` URL), the peer URLs it cannot
/// count, and the ring's size.
async fn cluster(
    client: &HttpClient,
    config: &BenchConfig,
    nodes: &[String],
) -> (Vec<String>, Vec<String>, usize) {
    let mut counted = config.targets.clone();
    let mut not_counted = Vec::new();
    let Some(first) = config.targets.first() else {
        return (counted, not_counted, 0);
    };
    let ring = match get_json(client, first, "/v1/peers").await {
        Ok(ring) => ring,
        Err(e) => {
            tracing::warn!(target = %first, error = %e, "cannot read the ring");
            return (counted, not_counted, nodes.len());
        }
    };
    let peers = ring["peers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    for peer in peers {
        let url = peer["url"].as_str().unwrap_or_default();
        if nodes.iter().any(|n| n == url) {
            continue;
        }
        match peer["api"].as_str() {
            Some(api) if !counted.iter().any(|c| c == api) => counted.push(api.to_owned()),
            Some(_) => {}
            None => not_counted.push(url.to_owned()),
        }
    }
    (counted, not_counted, peers.len())
}

/// `galaxy`'s counters on each node, by client API URL; `None` where they could not be read.
async fn snapshot(
    client: &HttpClient,
    apis: &[String],
    galaxy: &str,
) -> BTreeMap<String, Option<Counts>> {
    let mut counts = BTreeMap::new();
    for api in apis {
        let read = get_json(client, api, "/v1/stats")
            .await
            .and_then(|stats| Counts::in_stats(&stats, galaxy));
        let read = read
            .inspect_err(|e| tracing::warn!(node = %api, error = %e, "cannot read the stats"))
            .ok();
        counts.insert(api.clone(), read);
    }
    counts
}

/// What changed on each node between two snapshots.
fn changes(
    before: &BTreeMap<String, Option<Counts>>,
    after: &BTreeMap<String, Option<Counts>>,
) -> BTreeMap<String, Option<Counts>> {
    before
        .iter()
        .map(|(api, b)| {
            let a = after.get(api).copied().flatten();
            (api.clone(), b.zip(a).map(|(b, a)| b.until(a)))
        })
        .collect()
}

/// A bar counting the requests of a run of `length`, with their rate; hidden when not
/// `shown`. The caller finishes it.
fn timed_progress(label: &'static str, length: Duration, shown: bool) -> ProgressBar {
    if !shown || length.is_zero() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::no_length();
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix} [{elapsed_precise} of {msg}] {spinner} {human_pos} requests ({per_sec})",
    ) {
        bar.set_style(style);
    }
    bar.set_prefix(label);
    bar.set_message(format!("{length:?}"));
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

/// Reach the targets, warm up, then measure for the configured duration.
pub async fn run_bench(config: &BenchConfig) -> anyhow::Result<BenchReport> {
    anyhow::ensure!(
        !config.targets.is_empty(),
        "--targets needs at least one URL"
    );
    for t in &config.targets {
        let uri: http::Uri = t
            .parse()
            .map_err(|e| anyhow::anyhow!("invalid target URL {t:?}: {e}"))?;
        anyhow::ensure!(
            uri.scheme_str() == Some("http") && uri.host().is_some(),
            "invalid target URL {t:?}: expected http://HOST:PORT"
        );
    }
    let (names, keys) = match &config.keys_from {
        Some(path) => {
            let names = KeyNames::from_file(path).map_err(anyhow::Error::msg)?;
            let keys = names.count().unwrap_or(config.keys);
            (names, keys)
        }
        None => (
            KeyNames::format(&config.key_format).map_err(anyhow::Error::msg)?,
            config.keys,
        ),
    };
    let probe = HttpClient::new(1, config.connect_timeout);
    let nodes = reach_targets(&probe, config).await?;
    let (counted, not_counted, cluster_nodes) = cluster(&probe, config, &nodes).await;
    // One spec, so the Zipf table is built once for warmup and measurement.
    let spec = Arc::new(LoadSpec {
        targets: config.targets.clone(),
        galaxy: config.galaxy.clone(),
        sampler: KeySampler::new(config.dist, keys).map_err(anyhow::Error::msg)?,
        names,
        check: config.value_check.then_some(None),
        track_keys: false,
        batch: config.batch.unwrap_or(0),
    });
    let client = HttpClient::new(config.concurrency, config.timeout);
    if !config.warmup.is_zero() {
        let bar = timed_progress("warmup ", config.warmup, config.progress);
        let end = Budget::Until(Instant::now() + config.warmup);
        let spec = Arc::clone(&spec);
        load::run(spec, end, client.clone(), config.concurrency, bar.clone()).await;
        bar.finish_and_clear();
    }
    let before = snapshot(&probe, &counted, &config.galaxy).await;
    let bar = timed_progress("measure", config.duration, config.progress);
    let start = Instant::now();
    let end = Budget::Until(start + config.duration);
    let tally = load::run(spec, end, client.clone(), config.concurrency, bar.clone()).await;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let after = snapshot(&probe, &counted, &config.galaxy).await;
    let changed = changes(&before, &after);
    let targets: Vec<TargetReport> = config
        .targets
        .iter()
        .zip(&tally.per_target)
        .map(|(url, &requests)| TargetReport {
            url: url.clone(),
            requests,
            backend_loads: changed.get(url).copied().flatten().map(|c| c.backend_loads),
        })
        .collect();
    let total: Option<Counts> = changed
        .values()
        .try_fold(Counts::default(), |sum, c| c.map(|c| sum.plus(c)));
    let failed = tally.errors + tally.not_found;
    Ok(BenchReport {
        galaxy: config.galaxy.clone(),
        dist: config.dist.to_string(),
        keys,
        concurrency: config.concurrency,
        seconds,
        batch: config.batch,
        requests: tally.requests,
        keys_asked: tally.keys_asked,
        ok: tally.ok,
        not_found: tally.not_found,
        errors: tally.errors,
        value_mismatches: tally.mismatches,
        error_share: failed as f64 / tally.keys_asked.max(1) as f64,
        max_error_share: config.max_error_share,
        requests_per_second: tally.requests as f64 / seconds.max(1e-9),
        keys_per_second: tally.keys_asked as f64 / seconds.max(1e-9),
        latency_ms: Percentiles::of(&tally.latency),
        backend_loads: total.map(|t| t.backend_loads),
        hit_ratio: total.map(Counts::hit_ratio),
        cluster_nodes,
        counted,
        not_counted,
        targets,
        first_error: tally.first_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_come_from_the_stats_json_and_make_a_hit_ratio() {
        let stats = |gets: u64, main: u64, loads: u64| {
            serde_json::json!({"node": "http://a", "galaxies": {"g": {
                "gets": gets, "main_hits": main, "hot_hits": 10, "not_found_hits": 0,
                "backend_loads": loads, "misses": 1}}})
        };
        let before = Counts::in_stats(&stats(100, 50, 7), "g").unwrap();
        let after = Counts::in_stats(&stats(300, 200, 17), "g").unwrap();
        let change = before.until(after);
        assert_eq!((change.gets, change.backend_loads), (200, 10));
        let h = change.plus(Counts::default()).hit_ratio();
        assert_eq!((h.gets, h.main, h.hot, h.miss), (200, 0.75, 0.0, 0.25));
        let e = Counts::in_stats(&stats(1, 1, 1), "other").unwrap_err();
        assert!(e.contains("galaxies.other.gets"), "{e}");
        assert_eq!(Counts::default().hit_ratio().miss, 0.0, "no gets, no NaN");
    }

    #[test]
    fn report_renders_percentiles_and_json() {
        let report = BenchReport {
            galaxy: "g".into(),
            dist: "zipf:1.1".into(),
            keys: 10,
            concurrency: 2,
            seconds: 2.0,
            batch: Some(4),
            requests: 100,
            keys_asked: 400,
            ok: 99,
            not_found: 0,
            errors: 1,
            value_mismatches: 0,
            error_share: 0.0025,
            max_error_share: 0.01,
            requests_per_second: 50.0,
            keys_per_second: 200.0,
            latency_ms: Percentiles {
                p50: 1.0,
                p90: 2.0,
                p99: 3.0,
                p999: 4.0,
                max: 5.0,
                mean: 1.2,
            },
            backend_loads: Some(10),
            hit_ratio: Some(HitRatio {
                gets: 400,
                main: 0.5,
                hot: 0.25,
                not_found: 0.0,
                miss: 0.25,
            }),
            cluster_nodes: 2,
            counted: vec!["http://a".into()],
            not_counted: vec!["http://b:9001".into()],
            targets: vec![TargetReport {
                url: "http://a".into(),
                requests: 100,
                backend_loads: Some(10),
            }],
            first_error: Some("GET x: 503".into()),
        };
        let text = report.to_string();
        assert!(
            text.contains("p50 1.000 ms  p90 2.000 ms  p99 3.000 ms  p99.9 4.000 ms"),
            "{text}"
        );
        assert!(
            text.contains("100 (50 req/s): 99 ok, 0 not found, 1 errors"),
            "{text}"
        );
        assert!(
            text.contains("keys       400 (200 keys/s), 4 a request"),
            "{text}"
        );
        assert!(
            text.contains("main 50.0%  hot 25.0%  not found 0.0%  miss 25.0% of 400 gets"),
            "{text}"
        );
        assert!(
            text.contains(
                "10 loads on 1 of 2 nodes (not counted, client API unknown: http://b:9001"
            ),
            "{text}"
        );
        assert!(report.check().is_ok());
        let failing = BenchReport {
            errors: 5,
            error_share: 0.0125,
            ..report.clone()
        };
        let e = failing.check().unwrap_err().to_string();
        assert!(
            e.contains("1.25% of the keys") && e.contains("--max-error-share 1.00%"),
            "{e}"
        );
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["keys_per_second"], 200.0);
        assert_eq!(json["latency_ms"]["p999"], 4.0);
        assert_eq!(json["backend_loads"], 10);
        assert_eq!(json["targets"][0]["requests"], 100);
    }
}
