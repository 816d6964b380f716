//! A fixed-bucket latency histogram updated with atomics, for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (Prometheus `le` labels); a last, unbounded
/// bucket catches the rest.
pub(crate) const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Latencies counted into [`LATENCY_BUCKETS`]; recording is lock-free.
#[derive(Debug, Default)]
pub(crate) struct LatencyHistogram {
    /// Per-bucket (not cumulative) counts; the last is the `+Inf` bucket.
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// A consistent-enough copy of a [`LatencyHistogram`] for rendering.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct HistogramSnapshot {
    /// Cumulative counts, one per entry of [`LATENCY_BUCKETS`], then the total.
    pub(crate) cumulative: Vec<u64>,
    /// Sum of all recorded latencies, in seconds.
    pub(crate) sum_seconds: f64,
}

impl LatencyHistogram {
    /// Count one latency.
    pub(crate) fn record(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS.partition_point(|&le| le < seconds);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The counts so far.
    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                total += c.load(Ordering::Relaxed);
                total
            })
            .collect();
        HistogramSnapshot {
            cumulative,
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl HistogramSnapshot {
    /// How many latencies were recorded.
    pub(crate) fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_buckets() {
        let h = LatencyHistogram::default();
        h.record(Duration::from_micros(50)); // <= 0.1ms
        h.record(Duration::from_micros(100)); // == 0.1ms: le is inclusive
        h.record(Duration::from_millis(3)); // <= 5ms
        h.record(Duration::from_secs(60)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.cumulative.len(), LATENCY_BUCKETS.len() + 1);
        assert_eq!(s.cumulative[0], 2);
        assert_eq!(s.cumulative[4], 2); // le 2.5ms
        assert_eq!(s.cumulative[5], 3); // le 5ms
        assert_eq!(s.cumulative[LATENCY_BUCKETS.len() - 1], 3);
        assert_eq!(s.count(), 4);
        assert!((s.sum_seconds - 60.00315).abs() < 1e-9, "{}", s.sum_seconds);
    }
}
