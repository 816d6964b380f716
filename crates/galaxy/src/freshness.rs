//! Freshness policy: when a loaded value is refreshed in the background, how long it may
//! be served stale, and how long a miss is remembered.

use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use galaxycache_universe::saturating_instant;

use crate::{Error, ErrorKind, Value};

/// When a value is reloaded in the background, while it is still served.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Refresh {
    /// This long after it was loaded (a value that does not expire is refreshed too).
    After(Duration),
    /// At this fraction (0..1) of its time to live: 0.8 refreshes a value loaded with a
    /// 10 s TTL 8 s after loading. A value that does not expire is never refreshed.
    AtFraction(f64),
}

/// The galaxy's freshness settings (see the builder's docs for each).
#[derive(Debug)]
pub(crate) struct Policy {
    pub(crate) refresh: Option<Refresh>,
    /// XFetch's beta: refresh points are drawn earlier, at random, so that keys loaded
    /// together do not refresh together. `None`: no spreading.
    pub(crate) xfetch_beta: Option<f64>,
    pub(crate) stale_if_error: Duration,
    pub(crate) soft_timeout: Option<Duration>,
    pub(crate) not_found_ttl: Option<Duration>,
    rng: Mutex<fastrand::Rng>,
}

impl Policy {
    pub(crate) fn new(
        refresh: Option<Refresh>,
        xfetch_beta: Option<f64>,
        stale_if_error: Duration,
        soft_timeout: Option<Duration>,
        not_found_ttl: Option<Duration>,
        seed: Option<u64>,
    ) -> Self {
        let rng = seed.map_or_else(fastrand::Rng::new, fastrand::Rng::with_seed);
        Policy {
            refresh,
            xfetch_beta,
            stale_if_error,
            soft_timeout,
            not_found_ttl,
            rng: Mutex::new(rng),
        }
    }

    /// `value`, loaded at `loaded_at` by a load that took `took`, with its refresh instant
    /// and stale limit set where the value did not bring its own.
    pub(crate) fn stamp(&self, value: Value, loaded_at: SystemTime, took: Duration) -> Value {
        if value.is_absent() {
            return value;
        }
        let refresh_at = value
            .refresh_at()
            .or_else(|| self.refresh_at(&value, loaded_at, took));
        let stale_until = value.stale_until().or_else(|| {
            let expires_at = value.expires_at()?;
            (!self.stale_if_error.is_zero())
                .then(|| saturating_instant(expires_at, self.stale_if_error))
        });
        value
            .with_refresh_at(refresh_at)
            .with_stale_until(stale_until)
    }

    fn refresh_at(
        &self,
        value: &Value,
        loaded_at: SystemTime,
        took: Duration,
    ) -> Option<SystemTime> {
        let expires_at = value.expires_at();
        let planned = match self.refresh? {
            Refresh::After(after) => saturating_instant(loaded_at, after),
            Refresh::AtFraction(fraction) => {
                let ttl = expires_at?.duration_since(loaded_at).ok()?;
                saturating_instant(loaded_at, ttl.mul_f64(fraction.clamp(0.0, 1.0)))
            }
        };
        let planned = expires_at.map_or(planned, |e| planned.min(e));
        Some(match self.xfetch_beta {
            Some(beta) => self.xfetch(planned, loaded_at, took, beta),
            None => planned,
        })
    }

    /// XFetch (Vattani, Chierichetti, Lowenstein, VLDB 2015): move the refresh point
    /// earlier by `took · beta · ln(1/u)`, `u` uniform in (0, 1], never before the load.
    fn xfetch(
        &self,
        planned: SystemTime,
        loaded_at: SystemTime,
        took: Duration,
        beta: f64,
    ) -> SystemTime {
        let u = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            1.0 - rng.f64()
        };
        let early = took.mul_f64((beta * -u.ln()).clamp(0.0, 1e6));
        planned
            .checked_sub(early)
            .map_or(loaded_at, |t| t.max(loaded_at))
    }

    /// The cached miss for a key the data source does not have, if misses are cached.
    pub(crate) fn absent(&self, now: SystemTime, ttl_cap: Option<Duration>) -> Option<Value> {
        let ttl = match (self.not_found_ttl?, ttl_cap) {
            (ttl, Some(cap)) => ttl.min(cap),
            (ttl, None) => ttl,
        };
        Some(Value::absent(saturating_instant(now, ttl)))
    }
}

/// Whether a stale value may stand in for this error: a failed or slow reload, yes; an
/// answer (no such key) or a caller's mistake, no.
pub(crate) fn stale_may_answer(e: &Error) -> bool {
    !matches!(
        e.kind(),
        ErrorKind::NotFound | ErrorKind::InvalidKey | ErrorKind::Codec | ErrorKind::Config
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)
    }

    fn policy(refresh: Option<Refresh>, beta: Option<f64>) -> Policy {
        Policy::new(refresh, beta, 30 * S, None, Some(5 * S), Some(7))
    }

    #[test]
    fn refresh_points_and_stale_limits() {
        let v = Value::expiring("v", t0() + 10 * S);
        let p = policy(Some(Refresh::AtFraction(0.8)), None);
        let stamped = p.stamp(v.clone(), t0(), Duration::ZERO);
        assert_eq!(stamped.refresh_at(), Some(t0() + 8 * S));
        assert_eq!(stamped.stale_until(), Some(t0() + 40 * S));
        let p = policy(Some(Refresh::After(20 * S)), None);
        let stamped = p.stamp(v, t0(), Duration::ZERO);
        assert_eq!(
            stamped.refresh_at(),
            Some(t0() + 10 * S),
            "never after the expiry"
        );
        let forever = p.stamp(Value::new("v"), t0(), Duration::ZERO);
        assert_eq!(forever.refresh_at(), Some(t0() + 20 * S));
        assert_eq!(
            forever.stale_until(),
            None,
            "what never expires is never stale"
        );
        let own = Value::expiring("v", t0() + 10 * S).with_refresh_at(Some(t0() + S));
        assert_eq!(
            p.stamp(own, t0(), Duration::ZERO).refresh_at(),
            Some(t0() + S)
        );
    }

    #[test]
    fn xfetch_spreads_refresh_points_before_the_planned_one() {
        let p = policy(Some(Refresh::AtFraction(0.9)), Some(1.0));
        let planned = t0() + 9 * S;
        let points: Vec<SystemTime> = (0..1000)
            .map(|_| {
                let v = p.stamp(Value::expiring("v", t0() + 10 * S), t0(), S);
                v.refresh_at().unwrap()
            })
            .collect();
        assert!(points.iter().all(|&t| t0() <= t && t <= planned));
        let distinct: std::collections::HashSet<_> = points.iter().collect();
        assert!(distinct.len() > 990, "{} distinct points", distinct.len());
        let mean_early: f64 = points
            .iter()
            .map(|t| planned.duration_since(*t).unwrap().as_secs_f64())
            .sum::<f64>()
            / 1000.0;
        assert!(
            (0.8..1.2).contains(&mean_early),
            "mean {mean_early} s early, expected ~1 s"
        );
    }

    #[test]
    fn huge_settings_saturate_instead_of_panicking() {
        let max = Duration::MAX;
        let p = Policy::new(Some(Refresh::After(max)), None, max, None, Some(max), None);
        let v = p.stamp(Value::expiring("v", t0() + S), t0(), Duration::ZERO);
        assert_eq!(v.refresh_at(), Some(t0() + S), "never after the expiry");
        assert!(v.stale_until().unwrap() > t0() + S);
        assert!(p.absent(t0(), None).unwrap().expires_at().unwrap() > t0());
    }

    #[test]
    fn cached_misses_take_the_shorter_ttl() {
        let p = policy(None, None);
        assert_eq!(
            p.absent(t0(), None).unwrap().expires_at(),
            Some(t0() + 5 * S)
        );
        assert_eq!(
            p.absent(t0(), Some(S)).unwrap().expires_at(),
            Some(t0() + S)
        );
        let off = Policy::new(None, None, Duration::ZERO, None, None, None);
        assert!(off.absent(t0(), None).is_none());
    }
}
