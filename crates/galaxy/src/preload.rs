//! Warm start: load a node's shard in bulk before it serves.

use std::future::poll_fn;
use std::pin::pin;

use futures_core::Stream;
use galaxycache_universe::Owner;

use crate::listener::{StoreReason, Tier};
use crate::stats::Counter;
use crate::{Error, Galaxy, Value};

/// How far a [`Galaxy::preload`] has come.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Preload {
    /// Entries read from the stream.
    pub seen: u64,
    /// Entries this node owns, stored.
    pub stored: u64,
    /// Entries another node owns, dropped (that node preloads them), and entries that
    /// were expired already or written to since the preload started.
    pub skipped: u64,
}

/// How often [`Galaxy::preload`] reports progress: every this many entries.
const PROGRESS_EVERY: u64 = 1000;

impl Galaxy {
    /// Store the entries of `entries` that this node owns, and drop the rest: a full load
    /// of the node's shard before it serves (userver's "full update"), so that its first
    /// gets do not all go to the data source. `progress` is told every 1,000 entries and
    /// at the end.
    ///
    /// Values are capped and stamped like loaded ones (max TTL, refresh point, stale
    /// limit). A key removed, set or flushed while the preload runs is not stored: the
    /// stream may have read it before the write. A stream error ends the preload with
    /// that error; what was stored stays.
    ///
    /// ```
    /// use galaxycache::{Galaxy, Value};
    /// use galaxycache::universe::Universe;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), galaxycache::Error> {
    /// let universe = Universe::builder("http://127.0.0.1:8080").build();
    /// let galaxy = Galaxy::builder(&universe, "g", 1 << 20, |_: String| async { Ok(None) })
    ///     .build()?;
    /// let rows = (0..3).map(|i| Ok((format!("k{i}"), Value::new(format!("row {i}")))));
    /// let done = galaxy
    ///     .preload(tokio_stream::iter(rows), |p| println!("{} rows", p.seen))
    ///     .await?;
    /// assert_eq!(done.stored, 3);
    /// assert_eq!(galaxy.get("k1").await?.bytes().as_ref(), b"row 1");
    /// # Ok(())
    /// # }
    /// ```
    pub async fn preload<S>(
        &self,
        entries: S,
        mut progress: impl FnMut(&Preload),
    ) -> Result<Preload, Error>
    where
        S: Stream<Item = Result<(String, Value), Error>>,
    {
        let inner = &self.inner;
        let snapshot = inner.fence.snapshot();
        let mut done = Preload::default();
        let mut entries = pin!(entries);
        while let Some(entry) = poll_fn(|cx| entries.as_mut().poll_next(cx)).await {
            let (key, value) = entry?;
            done.seen += 1;
            let stored = inner.universe.check_key(&key).is_ok()
                && matches!(inner.universe.owner(&key), Owner::Local)
                && inner.preload_one(&key, value, inner.fence.generation_in(&snapshot, &key));
            if stored {
                done.stored += 1;
            } else {
                done.skipped += 1;
            }
            if done.seen % PROGRESS_EVERY == 0 {
                progress(&done);
            }
        }
        progress(&done);
        Ok(done)
    }
}

impl crate::galaxy::Inner {
    fn preload_one(&self, key: &str, value: Value, generation: crate::fence::Generation) -> bool {
        let now = self.clock.now();
        let value = self.cap_expiry(value, None);
        if value.is_expired_at(now) {
            return false;
        }
        let value = self.policy.stamp(value, now, std::time::Duration::ZERO);
        let stored = self.store(
            Tier::Main,
            key,
            &value,
            0.0,
            generation,
            StoreReason::Preload,
        );
        if stored {
            self.counters.incr(Counter::Preloaded);
        }
        stored
    }
}
