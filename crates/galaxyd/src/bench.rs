//! `galaxyd bench`: a load generator against the client APIs of running nodes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use tokio::time::Instant;

use crate::cli::BenchArgs;
use crate::client::HttpClient;
use crate::load::{self, Budget, LoadSpec, Percentiles};
use crate::workload::{Dist, KeySampler};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// Client API base URLs, e.g. `http://127.0.0.1:8080`.
    pub targets: Vec<String>,
    /// The galaxy to read.
    pub galaxy: String,
    /// Distinct keys: `key-0` ...
    pub keys: u64,
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
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Keys per request, through the batch endpoint; `None`: one `GET` per key.
    pub batch: Option<usize>,
}

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
            dist: a.dist,
            concurrency: a.concurrency,
            duration: a.duration,
            warmup: a.warmup,
            value_check: a.value_check,
            timeout: a.timeout,
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
    /// Requests per second.
    pub requests_per_second: f64,
    /// Keys per second (requests per second, without `--batch`).
    pub keys_per_second: f64,
    /// Latency in milliseconds.
    pub latency_ms: Percentiles,
    /// Backend loads of all targets while measuring; `None` when a target's stats could
    /// not be read.
    pub backend_loads: Option<u64>,
    /// Per target.
    pub targets: Vec<TargetReport>,
    /// The first failure, if any.
    pub first_error: Option<String>,
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
        let loads = |n: Option<u64>| n.map_or("?".to_owned(), |n| n.to_string());
        writeln!(f, "  backend    {} loads", loads(self.backend_loads))?;
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

/// The galaxy's `backend_loads` in a `/v1/stats` body.
pub(crate) fn backend_loads_in(stats: &[u8], galaxy: &str) -> Result<u64, String> {
    let json: serde_json::Value =
        serde_json::from_slice(stats).map_err(|e| format!("stats are not JSON: {e}"))?;
    json["galaxies"][galaxy]["backend_loads"]
        .as_u64()
        .ok_or_else(|| format!("stats have no galaxies.{galaxy}.backend_loads"))
}

async fn backend_loads(client: &HttpClient, target: &str, galaxy: &str) -> Option<u64> {
    let url = format!("{target}/v1/stats");
    let result = match url.parse() {
        Ok(uri) => client
            .get(uri)
            .await
            .and_then(|r| backend_loads_in(&r.body, galaxy)),
        Err(e) => Err(format!("invalid target URL {target:?}: {e}")),
    };
    result
        .inspect_err(|e| tracing::warn!(target, error = %e, "cannot read backend loads"))
        .ok()
}

async fn all_backend_loads(client: &HttpClient, config: &BenchConfig) -> Vec<Option<u64>> {
    let mut loads = Vec::new();
    for target in &config.targets {
        loads.push(backend_loads(client, target, &config.galaxy).await);
    }
    loads
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

/// Warm up, then measure for the configured duration.
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
    // One spec, so the Zipf table is built once for warmup and measurement.
    let spec = Arc::new(LoadSpec {
        targets: config.targets.clone(),
        galaxy: config.galaxy.clone(),
        sampler: KeySampler::new(config.dist, config.keys).map_err(anyhow::Error::msg)?,
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
    let before = all_backend_loads(&client, config).await;
    let bar = timed_progress("measure", config.duration, config.progress);
    let start = Instant::now();
    let end = Budget::Until(start + config.duration);
    let tally = load::run(spec, end, client.clone(), config.concurrency, bar.clone()).await;
    bar.finish_and_clear();
    let seconds = start.elapsed().as_secs_f64();
    let after = all_backend_loads(&client, config).await;
    let targets: Vec<TargetReport> = config
        .targets
        .iter()
        .zip(&tally.per_target)
        .zip(before.iter().zip(&after))
        .map(|((url, &requests), (b, a))| TargetReport {
            url: url.clone(),
            requests,
            backend_loads: b.zip(*a).map(|(b, a)| a.saturating_sub(b)),
        })
        .collect();
    Ok(BenchReport {
        galaxy: config.galaxy.clone(),
        dist: config.dist.to_string(),
        keys: config.keys,
        concurrency: config.concurrency,
        seconds,
        batch: config.batch,
        requests: tally.requests,
        keys_asked: tally.keys_asked,
        ok: tally.ok,
        not_found: tally.not_found,
        errors: tally.errors,
        value_mismatches: tally.mismatches,
        requests_per_second: tally.requests as f64 / seconds.max(1e-9),
        keys_per_second: tally.keys_asked as f64 / seconds.max(1e-9),
        latency_ms: Percentiles::of(&tally.latency),
        backend_loads: targets.iter().map(|t| t.backend_loads).sum(),
        targets,
        first_error: tally.first_error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_loads_come_from_the_stats_json() {
        let body = br#"{"node":"http://a","galaxies":{"g":{"backend_loads":17,"gets":40}}}"#;
        assert_eq!(backend_loads_in(body, "g"), Ok(17));
        assert!(
            backend_loads_in(body, "other")
                .unwrap_err()
                .contains("galaxies.other")
        );
        assert!(
            backend_loads_in(b"<html>", "g")
                .unwrap_err()
                .contains("not JSON")
        );
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
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["keys_per_second"], 200.0);
        assert_eq!(json["latency_ms"]["p999"], 4.0);
        assert_eq!(json["backend_loads"], 10);
        assert_eq!(json["targets"][0]["requests"], 100);
    }
}
