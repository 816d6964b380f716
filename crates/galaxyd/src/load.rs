//! The request loop shared by `bench` and `demo`: workers that each keep one keep-alive
//! connection busy, spread over the targets, and tally what came back.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine as _;
use base64::prelude::BASE64_STANDARD;
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderMap, Method, StatusCode, Uri};
use indicatif::ProgressBar;
use percent_encoding::utf8_percent_encode;
use serde::Serialize;
use tokio::time::Instant;

use crate::backend::is_synthetic_value;
use crate::client::{HttpClient, SEGMENT};
use crate::workload::{KeyNames, KeySampler};

/// When the workers stop.
#[derive(Clone, Debug)]
pub(crate) enum Budget {
    /// After this many requests in all.
    Requests(u64),
    /// At this instant (a request in flight then is finished and counted).
    Until(Instant),
}

/// What the workers do; one spec serves several runs (bench's warmup and measurement).
#[derive(Debug)]
pub(crate) struct LoadSpec {
    /// Client API base URLs, e.g. `http://127.0.0.1:8080`.
    pub(crate) targets: Vec<String>,
    pub(crate) galaxy: String,
    pub(crate) sampler: KeySampler,
    /// The key each sampled index names.
    pub(crate) names: KeyNames,
    /// Check each value against the synthetic backend's value of its key, and its length
    /// when given.
    pub(crate) check: Option<Option<usize>>,
    /// Remember which keys were asked for (the demo compares them with backend loads).
    pub(crate) track_keys: bool,
    /// Keys per request through the batch endpoint; 0: one `GET` per key.
    pub(crate) batch: usize,
}

/// What came back.
#[derive(Debug)]
pub(crate) struct Tally {
    pub(crate) requests: u64,
    /// Keys asked for: one a `GET`, a batch's keys a batch request.
    pub(crate) keys_asked: u64,
    pub(crate) ok: u64,
    pub(crate) not_found: u64,
    pub(crate) errors: u64,
    pub(crate) mismatches: u64,
    /// Latency of every request, in microseconds.
    pub(crate) latency: Histogram<u64>,
    /// Requests per target, indexed like the spec's targets.
    pub(crate) per_target: Vec<u64>,
    pub(crate) keys: HashSet<u64>,
    pub(crate) first_error: Option<String>,
}

impl Tally {
    fn new(targets: usize) -> Self {
        Tally {
            requests: 0,
            keys_asked: 0,
            ok: 0,
            not_found: 0,
            errors: 0,
            mismatches: 0,
            latency: new_histogram(),
            per_target: vec![0; targets],
            keys: HashSet::new(),
            first_error: None,
        }
    }

    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.keys_asked += other.keys_asked;
        self.ok += other.ok;
        self.not_found += other.not_found;
        self.errors += other.errors;
        self.mismatches += other.mismatches;
        // Same bounds on both sides: adding cannot fail.
        let _ = self.latency.add(&other.latency);
        for (mine, theirs) in self.per_target.iter_mut().zip(other.per_target) {
            *mine += theirs;
        }
        self.keys.extend(other.keys);
        self.first_error = self.first_error.take().or(other.first_error);
    }

    fn error(&mut self, message: String) {
        self.errors += 1;
        self.first_error.get_or_insert(message);
    }
}

/// A histogram of microseconds from 1 µs to 10 minutes, 3 significant digits.
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant, valid histogram bounds")
}

/// Latency percentiles, in milliseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Slowest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// From a histogram of microseconds; all zero when it is empty.
    pub(crate) fn of(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        let ms = |micros: u64| micros as f64 / 1000.0;
        Percentiles {
            p50: ms(histogram.value_at_quantile(0.5)),
            p90: ms(histogram.value_at_quantile(0.9)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        }
    }
}

/// The client API URL of `key` in `galaxy` at `base`.
pub(crate) fn key_url(base: &str, galaxy: &str, key: &str) -> String {
    format!(
        "{}/v1/galaxies/{}/keys/{}",
        base.trim_end_matches('/'),
        utf8_percent_encode(galaxy, SEGMENT),
        utf8_percent_encode(key, SEGMENT)
    )
}

/// The client API URL of a batch get in `galaxy` at `base`.
pub(crate) fn batch_url(base: &str, galaxy: &str) -> String {
    format!(
        "{}/v1/galaxies/{}/batch",
        base.trim_end_matches('/'),
        utf8_percent_encode(galaxy, SEGMENT)
    )
}

/// Run `concurrency` workers until `budget` is spent; `progress` is advanced by one per
/// finished request.
pub(crate) async fn run(
    spec: Arc<LoadSpec>,
    budget: Budget,
    client: HttpClient,
    concurrency: usize,
    progress: ProgressBar,
) -> Tally {
    let issued = Arc::new(AtomicU64::new(0));
    // Each target's URL up to the key, built once: a request only appends its key.
    let prefixes: Arc<[String]> = spec
        .targets
        .iter()
        .map(|t| match spec.batch {
            0 => key_url(t, &spec.galaxy, ""),
            _ => batch_url(t, &spec.galaxy),
        })
        .collect();
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|id| {
            let worker = Worker {
                spec: Arc::clone(&spec),
                budget: budget.clone(),
                prefixes: Arc::clone(&prefixes),
                client: client.clone(),
                issued: Arc::clone(&issued),
                progress: progress.clone(),
                rng: fastrand::Rng::with_seed(0x9e37_79b9_7f4a_7c15 ^ id as u64),
                next_target: id,
            };
            tokio::spawn(worker.run())
        })
        .collect();
    let mut total = Tally::new(spec.targets.len());
    for worker in workers {
        match worker.await {
            Ok(tally) => total.merge(tally),
            Err(e) => total.error(format!("load worker failed: {e}")),
        }
    }
    total
}

struct Worker {
    spec: Arc<LoadSpec>,
    budget: Budget,
    /// `key_url(target, galaxy, "")` of each target.
    prefixes: Arc<[String]>,
    client: HttpClient,
    issued: Arc<AtomicU64>,
    progress: ProgressBar,
    rng: fastrand::Rng,
    next_target: usize,
}

impl Worker {
    fn may_send(&self) -> bool {
        match self.budget {
            Budget::Requests(n) => self.issued.fetch_add(1, Ordering::Relaxed) < n,
            Budget::Until(end) => Instant::now() < end,
        }
    }

    async fn run(mut self) -> Tally {
        let mut tally = Tally::new(self.spec.targets.len());
        let (mut url, mut key) = (String::new(), String::new());
        while self.may_send() {
            let target = self.next_target % self.spec.targets.len();
            self.next_target += 1;
            if self.spec.batch > 0 {
                self.ask_batch(target, &mut tally).await;
                self.progress.inc(1);
                continue;
            }
            tally.keys_asked += 1;
            let index = self.spec.sampler.sample(&mut self.rng);
            if self.spec.track_keys {
                tally.keys.insert(index);
            }
            key.clear();
            self.spec.names.push(&mut key, index);
            url.clear();
            url.push_str(&self.prefixes[target]);
            url.extend(utf8_percent_encode(&key, SEGMENT));
            let key = key.as_str();
            let start = Instant::now();
            let result = match Uri::try_from(url.as_str()) {
                Ok(uri) => self.client.get(uri).await,
                Err(e) => Err(format!("invalid URL {url}: {e}")),
            };
            let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
            tally.latency.saturating_record(micros.max(1));
            tally.requests += 1;
            tally.per_target[target] += 1;
            match result {
                Ok(r) if r.status == StatusCode::OK => {
                    tally.ok += 1;
                    if let Some(size) = self.spec.check {
                        let right_size = size.is_none_or(|n| n == r.body.len());
                        if !right_size || !is_synthetic_value(key, &r.body) {
                            tally.mismatches += 1;
                            tally.first_error.get_or_insert(format!(
                                "GET {url}: value of {} bytes is not the value of {key}",
                                r.body.len()
                            ));
                        }
                    }
                }
                Ok(r) if r.status == StatusCode::NOT_FOUND => {
                    tally.not_found += 1;
                    if self.spec.check.is_some() {
                        // Checked values are synthetic ones: every key exists.
                        tally
                            .first_error
                            .get_or_insert(format!("GET {url}: 404, but every key exists"));
                    }
                }
                Ok(r) => {
                    let body = String::from_utf8_lossy(&r.body).trim().to_owned();
                    tally.error(format!("GET {url}: {} {body}", r.status));
                }
                Err(e) => tally.error(e),
            }
            self.progress.inc(1);
        }
        tally
    }

    /// One batch request of `spec.batch` sampled keys to `target`; every key is tallied
    /// as ok, not found or an error (all of them, when the request fails).
    async fn ask_batch(&mut self, target: usize, tally: &mut Tally) {
        let url = &self.prefixes[target];
        let mut keys = Vec::with_capacity(self.spec.batch);
        for _ in 0..self.spec.batch {
            let index = self.spec.sampler.sample(&mut self.rng);
            if self.spec.track_keys {
                tally.keys.insert(index);
            }
            let mut key = String::new();
            self.spec.names.push(&mut key, index);
            keys.push(key);
        }
        let body = Bytes::from(serde_json::Value::from(keys.clone()).to_string());
        let start = Instant::now();
        let result = match Uri::try_from(url.as_str()) {
            Ok(uri) => {
                self.client
                    .send(Method::POST, uri, HeaderMap::new(), body)
                    .await
            }
            Err(e) => Err(format!("invalid URL {url}: {e}")),
        };
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        tally.latency.saturating_record(micros.max(1));
        tally.requests += 1;
        tally.keys_asked += keys.len() as u64;
        tally.per_target[target] += 1;
        let answers = match result {
            Ok(r) if r.status == StatusCode::OK => serde_json::from_slice(&r.body)
                .map_err(|e| format!("POST {url}: the answer is not JSON: {e}")),
            Ok(r) => {
                let body = String::from_utf8_lossy(&r.body).trim().to_owned();
                Err(format!("POST {url}: {} {body}", r.status))
            }
            Err(e) => Err(e),
        };
        let answers: serde_json::Value = match answers {
            Ok(answers) => answers,
            Err(e) => {
                keys.iter().for_each(|_| tally.error(e.clone()));
                return;
            }
        };
        for key in &keys {
            let answer = &answers[key.as_str()];
            match answer["status"].as_u64() {
                Some(200) => {
                    tally.ok += 1;
                    let value = answer["value"]
                        .as_str()
                        .and_then(|v| BASE64_STANDARD.decode(v).ok());
                    let right = |v: &[u8]| {
                        let size = self.spec.check.flatten();
                        size.is_none_or(|n| n == v.len()) && is_synthetic_value(key, v)
                    };
                    if self.spec.check.is_some() && !value.as_deref().is_some_and(right) {
                        tally.mismatches += 1;
                        tally.first_error.get_or_insert(format!(
                            "POST {url}: the value of {key} is not the value of {key}"
                        ));
                    }
                }
                Some(404) => tally.not_found += 1,
                _ => tally.error(format!("POST {url}: {key}: {answer}")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = new_histogram();
        for micros in 1..=10_000u64 {
            h.record(micros).unwrap();
        }
        let p = Percentiles::of(&h);
        let near = |got: f64, want: f64| (got - want).abs() <= want * 0.002;
        assert!(near(p.p50, 5.0), "p50 {}", p.p50);
        assert!(near(p.p90, 9.0), "p90 {}", p.p90);
        assert!(near(p.p99, 9.9), "p99 {}", p.p99);
        assert!(near(p.p999, 9.99), "p99.9 {}", p.p999);
        assert!(near(p.max, 10.0), "max {}", p.max);
        assert!(near(p.mean, 5.0005), "mean {}", p.mean);
        assert_eq!(Percentiles::of(&new_histogram()), Percentiles::default());
    }

    #[test]
    fn merged_tallies_add_up() {
        let mut a = Tally::new(2);
        a.requests = 3;
        a.per_target = vec![2, 1];
        a.latency.record(100).unwrap();
        a.keys.insert(1);
        let mut b = Tally::new(2);
        b.requests = 2;
        b.per_target = vec![0, 2];
        b.latency.record(300).unwrap();
        b.keys.extend([1, 2]);
        b.error("boom".into());
        a.merge(b);
        assert_eq!((a.requests, a.errors), (5, 1));
        assert_eq!(a.per_target, [2, 3]);
        assert_eq!(a.latency.len(), 2);
        assert_eq!(a.keys.len(), 2);
        assert_eq!(a.first_error.as_deref(), Some("boom"));
    }

    #[test]
    fn key_urls_escape_their_segments() {
        assert_eq!(
            key_url("http://127.0.0.1:8080/", "g", "key-1"),
            "http://127.0.0.1:8080/v1/galaxies/g/keys/key-1"
        );
        assert_eq!(
            key_url("http://h", "a b", "x/y?"),
            "http://h/v1/galaxies/a%20b/keys/x%2Fy%3F"
        );
    }
}
