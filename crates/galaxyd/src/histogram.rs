//! A fixed-bucket latency histogram updated with atomics, for `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (Prometheus `le` labels); a last, unbounded
/// bucket catches the rest.
pub const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Latencies counted into [`LATENCY_BUCKETS`]; recording is lock-free.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Per-bucket (not cumulative) counts; the last is the `+Inf` bucket.
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

/// A consistent-enough copy of a [`LatencyHistogram`] for rendering.
#[derive(Clone, Debug, PartialEq)]
pub struct HistogramSnapshot {
    /// Cumulative counts, one per entry of [`LATENCY_BUCKETS`], then the total.
    pub cumulative: Vec<u64>,
    /// Sum of all recorded latencies, in seconds.
    pub sum_seconds: f64,
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Count one latency.
    pub fn record(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS.partition_point(|&le| le < seconds);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
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
    pub fn count(&self) -> u64 {
        self.cumulative.last().copied().unwrap_or(0)
    }

    /// Estimate the `q` quantile (0..=1) in seconds, interpolating linearly inside the
    /// bucket that holds it, as Prometheus' `histogram_quantile` does. `None` when empty;
    /// a quantile in the unbounded bucket is reported as the largest bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * total as f64;
        let bucket = self.cumulative.partition_point(|&c| (c as f64) < rank);
        let Some(&upper) = LATENCY_BUCKETS.get(bucket) else {
            return Some(LATENCY_BUCKETS[LATENCY_BUCKETS.len() - 1]);
        };
        let lower = if bucket == 0 {
            0.0
        } else {
            LATENCY_BUCKETS[bucket - 1]
        };
        let below = if bucket == 0 {
            0
        } else {
            self.cumulative[bucket - 1]
        };
        let inside = self.cumulative[bucket] - below;
        if inside == 0 {
            return Some(upper);
        }
        Some(lower + (upper - lower) * (rank - below as f64) / inside as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_land_in_their_buckets() {
        let h = LatencyHistogram::new();
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

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let h = LatencyHistogram::new();
        assert_eq!(h.snapshot().quantile(0.5), None);
        // 90 fast (in (1ms, 2.5ms]) and 10 slow (in (50ms, 100ms]).
        for _ in 0..90 {
            h.record(Duration::from_millis(2));
        }
        for _ in 0..10 {
            h.record(Duration::from_millis(80));
        }
        let s = h.snapshot();
        let p50 = s.quantile(0.5).unwrap();
        assert!(p50 > 0.001 && p50 <= 0.0025, "p50 {p50}");
        // rank 50 of 90 in (1ms, 2.5ms]: 1ms + 1.5ms * 50/90.
        assert!((p50 - (0.001 + 0.0015 * 50.0 / 90.0)).abs() < 1e-12);
        let p99 = s.quantile(0.99).unwrap();
        assert!(p99 > 0.05 && p99 <= 0.1, "p99 {p99}");
        assert_eq!(s.quantile(1.0), Some(0.1));
        h.record(Duration::from_secs(100));
        assert_eq!(h.snapshot().quantile(1.0), Some(10.0));
    }
}
