//! What the client API counts, and its Prometheus text exposition (format 0.0.4).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use galaxycache_universe::{CircuitState, PeerStatus};

use crate::histogram::{HistogramSnapshot, LATENCY_BUCKETS, LatencyHistogram};

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
    const ALL: [Outcome; 5] = [
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
    const ALL: [WriteVerb; 3] = [WriteVerb::Remove, WriteVerb::Set, WriteVerb::Flush];

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
    const ALL: [WriteOutcome; 4] = [
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

/// Client-API counters of one galaxy: gets by outcome and their latency, writes by verb
/// and outcome.
#[derive(Debug, Default)]
pub(crate) struct ClientMetrics {
    outcomes: [AtomicU64; Outcome::ALL.len()],
    latency: LatencyHistogram,
    writes: [[AtomicU64; WriteOutcome::ALL.len()]; WriteVerb::ALL.len()],
}

impl ClientMetrics {
    /// Count one get.
    pub(crate) fn record(&self, outcome: Outcome, latency: Duration) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
        self.latency.record(latency);
    }

    /// Gets so far by outcome label.
    pub(crate) fn outcomes(&self) -> Vec<(&'static str, u64)> {
        Outcome::ALL
            .iter()
            .map(|o| {
                (
                    o.label(),
                    self.outcomes[*o as usize].load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// The latency histogram so far.
    pub(crate) fn latency(&self) -> HistogramSnapshot {
        self.latency.snapshot()
    }

    /// Count one write.
    pub(crate) fn record_write(&self, verb: WriteVerb, outcome: WriteOutcome) {
        self.writes[verb as usize][outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Writes so far by verb label and outcome label.
    pub(crate) fn writes(&self) -> Vec<(&'static str, &'static str, u64)> {
        WriteVerb::ALL
            .iter()
            .flat_map(|v| {
                WriteOutcome::ALL.iter().map(move |o| {
                    let n = self.writes[*v as usize][*o as usize].load(Ordering::Relaxed);
                    (v.label(), o.label(), n)
                })
            })
            .collect()
    }
}

/// Everything `/metrics` shows about one galaxy.
#[derive(Clone, Debug)]
pub(crate) struct GalaxyReport {
    /// The galaxy's name (the `galaxy` label).
    pub(crate) name: String,
    /// The core's stats, as `Stats::fields()` lists them.
    pub(crate) stats: Vec<(&'static str, u64)>,
    /// Client gets by outcome label.
    pub(crate) outcomes: Vec<(&'static str, u64)>,
    /// Latency of client gets.
    pub(crate) latency: HistogramSnapshot,
    /// Client writes by verb label and outcome label.
    pub(crate) writes: Vec<(&'static str, &'static str, u64)>,
}

/// Whether a core stat is a level (gauge) rather than a running count (counter).
fn is_gauge(stat: &str) -> bool {
    stat.ends_with("_bytes") || stat.ends_with("_entries") || stat == "pending_retries"
}

fn help(stat: &str) -> String {
    let text = match stat {
        "gets" => "Gets by this node's callers",
        "misses" => "Gets that found no fresh value in either cache",
        "not_found" => "Loads that ended in NotFound, from the backend or the owner",
        "promotions" => "Keys copied into the hotcache",
        "main_hits" => "Gets answered from the maincache",
        "hot_hits" => "Gets answered from the hotcache",
        "peer_loads" => "Keys fetched from their owner peer",
        "peer_errors" => "Fetches from a peer that failed",
        "backend_loads" => "Keys loaded from the backend",
        "backend_errors" => "Backend loads that failed",
        "coalesced_waits" => "Gets that waited on a load already in flight",
        "server_requests" => "Requests served to peers",
        "local_fallbacks" => "Keys loaded locally because their owner failed",
        "removes" => "Removes applied on this node, from any origin",
        "sets" => "Sets stored on this node as the key's owner",
        "flushes" => "Flushes applied on this node",
        "fenced_stores" => "Loads not stored because a write came in while in flight",
        "broadcast_failures" => "Writes that a peer did not apply",
        "broadcast_retries" => "Background retries of writes a peer did not apply",
        "retries_dropped" => "Failed writes not retried because too many were waiting",
        "pending_retries" => "Retries of writes waiting now",
        "main_bytes" => "Bytes held by the maincache",
        "main_entries" => "Entries held by the maincache",
        "hot_bytes" => "Bytes held by the hotcache",
        "hot_entries" => "Entries held by the hotcache",
        "main_evictions" => "Entries evicted from the maincache",
        "hot_evictions" => "Entries evicted from the hotcache",
        "refreshes" => "Background reloads of values past their refresh point",
        "stale_served" => "Gets answered with a stale value because its reload failed or was slow",
        "soft_timeouts" => "Stale answers because the reload outlasted the soft timeout",
        "not_found_hits" => "Gets answered NotFound from a cached miss",
        "preloaded" => "Entries stored by the start-up preload",
        "not_kept" => "Values served once and not kept, expired on arrival",
        "handoff_hits" => "Keys taken over from their previous owner after a ring change",
        "handoff_misses" => "Previous owners asked after a ring change that did not have the key",
        "too_large" => "Values served but not cached: larger than the largest cacheable entry",
        "backend_batches" => "Batch calls to the backend, each loading one key or more",
        other => return format!("Galaxy stat {other}"),
    };
    text.to_owned()
}

/// Render this node's view of its peers: each one's circuit (1 while open or probing) and
/// share of the ring, labelled by peer URL.
pub(crate) fn render_peers(peers: &[PeerStatus]) -> String {
    let mut out = String::new();
    type Family = (&'static str, &'static str, fn(&PeerStatus) -> f64);
    let families: [Family; 2] = [
        (
            "galaxycache_peer_circuit_open",
            "Whether this node has stopped asking the peer (circuit open or probing): 1, or 0",
            |p| f64::from(u8::from(p.state != CircuitState::Up)),
        ),
        (
            "galaxycache_peer_ring_share",
            "Share of the keys the peer owns on this node's ring",
            |p| p.share,
        ),
    ];
    for (name, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}.");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for peer in peers {
            let _ = writeln!(
                out,
                "{name}{{peer=\"{}\"}} {}",
                label(&peer.url),
                value(peer)
            );
        }
    }
    out
}

/// Escape a label value: backslash, double quote and newline.
fn label(value: &str) -> String {
    value
        .replace('\\', r"\\")
        .replace('"', r#"\""#)
        .replace('\n', r"\n")
}

/// Render `galaxies` in the Prometheus text format: one family per core stat
/// (`galaxycache_<stat>_total` counters, `galaxycache_<stat>` gauges), client gets by
/// outcome and a latency histogram, client writes by verb and outcome, every sample
/// labelled by galaxy.
pub(crate) fn render_prometheus(galaxies: &[GalaxyReport]) -> String {
    let mut out = String::new();
    let Some(first) = galaxies.first() else {
        return out;
    };
    for (stat, _) in &first.stats {
        let (name, kind) = if is_gauge(stat) {
            (format!("galaxycache_{stat}"), "gauge")
        } else {
            (format!("galaxycache_{stat}_total"), "counter")
        };
        let _ = writeln!(out, "# HELP {name} {}.", help(stat));
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for g in galaxies {
            if let Some((_, v)) = g.stats.iter().find(|(s, _)| s == stat) {
                let _ = writeln!(out, "{name}{{galaxy=\"{}\"}} {v}", label(&g.name));
            }
        }
    }
    let name = "galaxyd_client_gets_total";
    let _ = writeln!(out, "# HELP {name} Client API gets by outcome.");
    let _ = writeln!(out, "# TYPE {name} counter");
    for g in galaxies {
        for (outcome, v) in &g.outcomes {
            let galaxy = label(&g.name);
            let _ = writeln!(
                out,
                "{name}{{galaxy=\"{galaxy}\",outcome=\"{outcome}\"}} {v}"
            );
        }
    }
    let name = "galaxyd_client_writes_total";
    let _ = writeln!(
        out,
        "# HELP {name} Client API writes (remove, set, flush) by op and outcome."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for g in galaxies {
        let galaxy = label(&g.name);
        for (op, outcome, v) in &g.writes {
            let _ = writeln!(
                out,
                "{name}{{galaxy=\"{galaxy}\",op=\"{op}\",outcome=\"{outcome}\"}} {v}"
            );
        }
    }
    let name = "galaxyd_client_get_duration_seconds";
    let _ = writeln!(out, "# HELP {name} Latency of client API gets.");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for g in galaxies {
        let galaxy = label(&g.name);
        let h = &g.latency;
        for (le, count) in LATENCY_BUCKETS.iter().zip(&h.cumulative) {
            let _ = writeln!(
                out,
                "{name}_bucket{{galaxy=\"{galaxy}\",le=\"{le}\"}} {count}"
            );
        }
        let count = h.count();
        let _ = writeln!(
            out,
            "{name}_bucket{{galaxy=\"{galaxy}\",le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(out, "{name}_sum{{galaxy=\"{galaxy}\"}} {}", h.sum_seconds);
        let _ = writeln!(out, "{name}_count{{galaxy=\"{galaxy}\"}} {count}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(name: &str, gets: u64) -> GalaxyReport {
        let m = ClientMetrics::default();
        m.record(Outcome::Ok, Duration::from_millis(2));
        m.record(Outcome::NotFound, Duration::from_millis(20));
        m.record_write(WriteVerb::Set, WriteOutcome::Incomplete);
        m.record_write(WriteVerb::Set, WriteOutcome::Incomplete);
        GalaxyReport {
            name: name.to_owned(),
            stats: vec![("gets", gets), ("main_bytes", 4096)],
            outcomes: m.outcomes(),
            latency: m.latency(),
            writes: m.writes(),
        }
    }

    #[test]
    fn families_have_help_and_type_once_and_samples_are_labelled() {
        let text = render_prometheus(&[report("users", 7), report("a\"b", 1)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..4],
            [
                "# HELP galaxycache_gets_total Gets by this node's callers.",
                "# TYPE galaxycache_gets_total counter",
                "galaxycache_gets_total{galaxy=\"users\"} 7",
                "galaxycache_gets_total{galaxy=\"a\\\"b\"} 1",
            ]
        );
        assert!(text.contains("# TYPE galaxycache_main_bytes gauge\n"));
        let text_pending = render_prometheus(&[GalaxyReport {
            stats: vec![("pending_retries", 3)],
            ..report("g", 0)
        }]);
        assert!(text_pending.contains("# TYPE galaxycache_pending_retries gauge\n"));
        assert!(text.contains("galaxycache_main_bytes{galaxy=\"users\"} 4096\n"));
        assert!(
            text.contains("galaxyd_client_gets_total{galaxy=\"users\",outcome=\"not_found\"} 1\n")
        );
        assert!(text.contains(
            "galaxyd_client_writes_total{galaxy=\"users\",op=\"set\",outcome=\"incomplete\"} 2\n"
        ));
        assert!(text.contains(
            "galaxyd_client_writes_total{galaxy=\"users\",op=\"flush\",outcome=\"complete\"} 0\n"
        ));
        for family in [
            "galaxycache_gets_total",
            "galaxyd_client_writes_total",
            "galaxyd_client_get_duration_seconds",
        ] {
            let n = text.matches(&format!("# TYPE {family} ")).count();
            assert_eq!(n, 1, "{family}");
        }
    }

    #[test]
    fn histogram_is_cumulative_and_ends_with_inf_sum_count() {
        let text = render_prometheus(&[report("g", 0)]);
        let h = "galaxyd_client_get_duration_seconds";
        assert!(text.contains(&format!("# TYPE {h} histogram\n")));
        assert!(text.contains(&format!("{h}_bucket{{galaxy=\"g\",le=\"0.001\"}} 0\n")));
        assert!(text.contains(&format!("{h}_bucket{{galaxy=\"g\",le=\"0.0025\"}} 1\n")));
        assert!(text.contains(&format!("{h}_bucket{{galaxy=\"g\",le=\"0.025\"}} 2\n")));
        assert!(text.contains(&format!("{h}_bucket{{galaxy=\"g\",le=\"+Inf\"}} 2\n")));
        assert!(text.contains(&format!("{h}_sum{{galaxy=\"g\"}} 0.022\n")));
        assert!(text.contains(&format!("{h}_count{{galaxy=\"g\"}} 2\n")));
        // Every sample line is `name{labels} number`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn nothing_to_render_is_empty() {
        assert_eq!(render_prometheus(&[]), "");
    }
}
