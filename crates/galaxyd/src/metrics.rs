//! `/metrics`: the node's metrics in the Prometheus text format, through the `metrics`
//! facade and `metrics-exporter-prometheus`.
//!
//! Each router has a recorder of its own, which holds what is per node: the client API's
//! gets and writes, the library's counters and gauges (published from their snapshot just
//! before rendering, see `Universe::publish_metrics`), `galaxycache_build_info` and the
//! process metrics. The library's latency histograms are recorded as loads and fetches
//! end, through the process-wide recorder that galaxyd installs once; `/metrics` renders
//! both. A process normally runs one node; tests that run several in one process see
//! every node's histograms in each node's `/metrics`.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use galaxycache_universe::Universe;
use metrics::{
    Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
};
use metrics_exporter_prometheus::{
    Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder,
};

/// How a client get ended, as counted by `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 200 with the value.
    Ok,
    /// 404: the backend has no such key.
    NotFound,
    /// 4xx: the request was malformed.
    BadRequest,
    /// 503: the load failed.
    Error,
    /// 504: the load did not finish in time.
    Timeout,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 5] = [
        Outcome::Ok,
        Outcome::NotFound,
        Outcome::BadRequest,
        Outcome::Error,
        Outcome::Timeout,
    ];

    /// The `outcome` label.
    fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::NotFound => "not_found",
            Outcome::BadRequest => "bad_request",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
        }
    }
}

/// A client write verb, as counted by `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteVerb {
    /// `DELETE` of a key.
    Remove,
    /// `PUT` of a key.
    Set,
    /// `POST` of a flush.
    Flush,
}

impl WriteVerb {
    pub(crate) const ALL: [WriteVerb; 3] = [WriteVerb::Remove, WriteVerb::Set, WriteVerb::Flush];

    /// The `op` label, and the `op` of the write's JSON answer.
    pub(crate) fn label(self) -> &'static str {
        match self {
            WriteVerb::Remove => "remove",
            WriteVerb::Set => "set",
            WriteVerb::Flush => "flush",
        }
    }
}

/// How a client write ended, as counted by `/metrics`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WriteOutcome {
    /// 200, and every peer applied it.
    Complete,
    /// 200, applied here, but some peer refused it or could not be reached.
    Incomplete,
    /// 4xx: the request was malformed or its body too large; nothing was written.
    BadRequest,
    /// 500: the write task failed.
    Error,
}

impl WriteOutcome {
    pub(crate) const ALL: [WriteOutcome; 4] = [
        WriteOutcome::Complete,
        WriteOutcome::Incomplete,
        WriteOutcome::BadRequest,
        WriteOutcome::Error,
    ];

    /// The `outcome` label.
    fn label(self) -> &'static str {
        match self {
            WriteOutcome::Complete => "complete",
            WriteOutcome::Incomplete => "incomplete",
            WriteOutcome::BadRequest => "bad_request",
            WriteOutcome::Error => "error",
        }
    }
}

/// Upper bounds of the latency histograms' buckets, in seconds (Prometheus `le` labels).
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// How often a recorder's histograms are folded in when nobody scrapes.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// A Prometheus recorder whose `_seconds` histograms have [`LATENCY_BUCKETS`].
fn prometheus_recorder() -> PrometheusRecorder {
    let suffix = Matcher::Suffix("_seconds".to_owned());
    // Fails only for empty buckets.
    PrometheusBuilder::new()
        .set_buckets_for_metric(suffix, &LATENCY_BUCKETS)
        .unwrap_or_else(|_| PrometheusBuilder::new())
        .build_recorder()
}

/// The process-wide recorder (the library's latency histograms), installed at the first
/// call; `None` when something else installed one first.
fn global() -> Option<&'static PrometheusHandle> {
    static GLOBAL: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    GLOBAL
        .get_or_init(|| {
            let recorder = prometheus_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    let upkeep = handle.clone();
                    let spawned = std::thread::Builder::new()
                        .name("metrics-upkeep".to_owned())
                        .spawn(move || {
                            loop {
                                std::thread::sleep(UPKEEP_INTERVAL);
                                upkeep.run_upkeep();
                            }
                        });
                    if let Err(e) = spawned {
                        tracing::warn!(error = %e, "no metrics upkeep thread; histograms fold in at each scrape");
                    }
                    Some(handle)
                }
                Err(_) => {
                    tracing::warn!(
                        "a metrics recorder was installed already: /metrics shows no latency \
                         histograms of loads and peer fetches"
                    );
                    None
                }
            }
        })
        .as_ref()
}

/// The metrics of one node's client API, and the renderer of its `/metrics`.
pub(crate) struct NodeMetrics {
    recorder: PrometheusRecorder,
    handle: PrometheusHandle,
    process: metrics_process::Collector,
    /// Per galaxy, its client gets' counters (by outcome) and latency histogram, made once:
    /// looking them up by name and labels on every get cost a third of a hit's time.
    gets: HashMap<String, ClientGets>,
    /// The task folding the histograms in every [`UPKEEP_INTERVAL`], ended with the metrics:
    /// it holds the recorder, so a forgotten task would keep every dropped node's metrics.
    upkeep: Option<tokio::task::AbortHandle>,
}

impl Drop for NodeMetrics {
    fn drop(&mut self) {
        if let Some(upkeep) = &self.upkeep {
            upkeep.abort();
        }
    }
}

/// One galaxy's client get metrics, bound to the node's recorder.
struct ClientGets {
    by_outcome: [metrics::Counter; Outcome::ALL.len()],
    latency: metrics::Histogram,
}

impl std::fmt::Debug for NodeMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeMetrics").finish_non_exhaustive()
    }
}

impl NodeMetrics {
    /// The metrics of a node serving `galaxies`: every client counter at 0, the build info,
    /// the process metrics described. Installs the process-wide recorder if none is.
    pub(crate) fn new<'a>(galaxies: impl IntoIterator<Item = &'a str>) -> Self {
        let _ = global();
        let recorder = prometheus_recorder();
        let handle = recorder.handle();
        let process = metrics_process::Collector::default();
        let mut gets = HashMap::new();
        metrics::with_local_recorder(&recorder, || {
            describe();
            process.describe();
            gauge!("galaxycache_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
            for galaxy in galaxies {
                let by_outcome = Outcome::ALL.map(|outcome| client_gets(galaxy, outcome));
                for counter in &by_outcome {
                    counter.increment(0);
                }
                let latency = histogram!(
                    "galaxycache_client_get_duration_seconds",
                    "galaxy" => galaxy.to_owned()
                );
                gets.insert(
                    galaxy.to_owned(),
                    ClientGets {
                        by_outcome,
                        latency,
                    },
                );
                for verb in WriteVerb::ALL {
                    for outcome in WriteOutcome::ALL {
                        client_writes(galaxy, verb, outcome).increment(0);
                    }
                }
            }
        });
        let upkeep = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let handle = handle.clone();
            let task = runtime.spawn(async move {
                let mut every = tokio::time::interval(UPKEEP_INTERVAL);
                loop {
                    every.tick().await;
                    handle.run_upkeep();
                }
            });
            task.abort_handle()
        });
        NodeMetrics {
            recorder,
            handle,
            process,
            gets,
            upkeep,
        }
    }

    /// Count one client get of `galaxy`.
    pub(crate) fn record_get(&self, galaxy: &str, outcome: Outcome, latency: Duration) {
        if let Some(gets) = self.gets.get(galaxy) {
            if let Some(counter) = gets.by_outcome.get(outcome as usize) {
                counter.increment(1);
            }
            gets.latency.record(latency);
        }
    }

    /// Count one client write of `galaxy`.
    pub(crate) fn record_write(&self, galaxy: &str, verb: WriteVerb, outcome: WriteOutcome) {
        metrics::with_local_recorder(&self.recorder, || {
            client_writes(galaxy, verb, outcome).increment(1);
        });
    }

    /// The text of `/metrics`: this node's metrics, `universe`'s published now, and the
    /// process-wide latency histograms.
    pub(crate) fn render(&self, universe: Option<&Universe>) -> String {
        metrics::with_local_recorder(&self.recorder, || {
            if let Some(universe) = universe {
                universe.publish_metrics();
            }
            self.process.collect();
        });
        let mut text = self.handle.render();
        if let Some(global) = global() {
            text.push_str(&global.render());
        }
        text
    }
}

fn client_gets(galaxy: &str, outcome: Outcome) -> metrics::Counter {
    counter!(
        "galaxycache_client_gets_total",
        "galaxy" => galaxy.to_owned(),
        "outcome" => outcome.label()
    )
}

fn client_writes(galaxy: &str, verb: WriteVerb, outcome: WriteOutcome) -> metrics::Counter {
    counter!(
        "galaxycache_client_writes_total",
        "galaxy" => galaxy.to_owned(),
        "op" => verb.label(),
        "outcome" => outcome.label()
    )
}

/// The help text of galaxyd's own metrics.
fn describe() {
    describe_counter!(
        "galaxycache_client_gets_total",
        "Client API gets by outcome."
    );
    describe_counter!(
        "galaxycache_client_writes_total",
        "Client API writes (remove, set, flush) by op and outcome."
    );
    describe_histogram!(
        "galaxycache_client_get_duration_seconds",
        Unit::Seconds,
        "Latency of client API gets."
    );
    describe_gauge!(
        "galaxycache_build_info",
        "The galaxyd version running: 1, labelled by version."
    );
}
