//! Recently fetched peer-owned keys and their request rates: what the promoter sees.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use quick_cache::UnitWeighter;
use quick_cache::sync::Cache;

/// A rate is measured over at most this long; then its window starts again.
const WINDOW: Duration = Duration::from_secs(60);
/// Rates are per second, over at least one second, so a burst does not look infinite.
const MIN_SPAN: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Candidate {
    window_start_nanos: AtomicU64,
    fetches: AtomicU64,
}

/// Keys tracked by number, not bytes: a bounded, evicting map of key to fetch rate.
pub(crate) struct Candidates {
    keys: Cache<Box<str>, Arc<Candidate>, UnitWeighter>,
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos() as u64
}

impl Candidates {
    pub(crate) fn new(max_keys: usize) -> Self {
        Candidates {
            keys: Cache::with_weighter(max_keys, max_keys as u64, UnitWeighter),
        }
    }

    /// Count a fetch of `key` at `now`; its rate per second and fetches in its window.
    pub(crate) fn record(&self, key: &str, now: SystemTime) -> (f64, u64) {
        let now = nanos(now);
        let c = match self.keys.get(key) {
            Some(c) => c,
            None => {
                let c = Arc::new(Candidate {
                    window_start_nanos: AtomicU64::new(now),
                    fetches: AtomicU64::new(0),
                });
                self.keys.insert(key.into(), Arc::clone(&c));
                c
            }
        };
        let start = c.window_start_nanos.load(Ordering::Relaxed);
        if now.saturating_sub(start) > WINDOW.as_nanos() as u64 {
            c.window_start_nanos.store(now, Ordering::Relaxed);
            c.fetches.store(0, Ordering::Relaxed);
        }
        let fetches = c.fetches.fetch_add(1, Ordering::Relaxed) + 1;
        let span =
            Duration::from_nanos(now.saturating_sub(c.window_start_nanos.load(Ordering::Relaxed)))
                .max(MIN_SPAN);
        (fetches as f64 / span.as_secs_f64(), fetches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_count_fetches_over_the_window() {
        let c = Candidates::new(100);
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        assert_eq!(c.record("k", t0), (1.0, 1));
        assert_eq!(c.record("k", t0), (2.0, 2));
        let (qps, n) = c.record("k", t0 + Duration::from_secs(3));
        assert_eq!(n, 3);
        assert!((qps - 1.0).abs() < 1e-9);
        let (_, n) = c.record("k", t0 + Duration::from_secs(120));
        assert_eq!(n, 1, "a new window starts after {WINDOW:?}");
    }
}
