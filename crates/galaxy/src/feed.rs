//! Change feeds: invalidations from outside (a database's notifications, a message bus)
//! applied to a galaxy.

use std::future::poll_fn;
use std::pin::pin;

use futures_core::Stream;
use galaxycache_universe::Owner;

use crate::Galaxy;
use crate::listener::Origin;
use crate::write::Write;

/// One change that a feed announces.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation {
    /// The value of this key changed or is gone.
    Remove(String),
    /// Anything may have changed: drop every entry.
    Flush,
}

impl Galaxy {
    /// Apply every invalidation of `feed` until it ends.
    ///
    /// Meant for a feed that **every node follows** (each one LISTENs to the database,
    /// subscribes to the topic): each node drops its own copy, and the key's owner, once
    /// it has dropped its own, tells every peer again, so a peer that refetched the old
    /// value from the owner before the owner heard of the change drops it too. A flush is
    /// applied the same way, with the peer that owns the galaxy's name in the owner's
    /// role. For a feed that only one node consumes, call [`remove`](Self::remove) and
    /// [`flush`](Self::flush) instead, which reach every peer from one node.
    ///
    /// Invalid keys are logged and skipped. Invalidations are applied one at a time, in
    /// the feed's order.
    ///
    /// ```
    /// use galaxycache::{Galaxy, Invalidation, Value};
    /// use galaxycache::universe::Universe;
    /// use tokio_stream::wrappers::UnboundedReceiverStream;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), galaxycache::Error> {
    /// let universe = Universe::builder("http://127.0.0.1:8080").build();
    /// let galaxy = Galaxy::builder(&universe, "users", 1 << 20, |id: String| async move {
    ///     Ok(Some(Value::new(format!("user {id}"))))
    /// })
    /// .build()?;
    /// galaxy.get("42").await?;
    /// let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    /// let following = tokio::spawn({
    ///     let galaxy = galaxy.clone();
    ///     async move { galaxy.follow(UnboundedReceiverStream::new(rx)).await }
    /// });
    /// tx.send(Invalidation::Remove("42".into())).unwrap();
    /// drop(tx); // the feed ends, and so does `follow`
    /// following.await.unwrap();
    /// assert_eq!(galaxy.stats().main_entries, 0);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn follow<S>(&self, feed: S)
    where
        S: Stream<Item = Invalidation>,
    {
        let mut feed = pin!(feed);
        while let Some(invalidation) = poll_fn(|cx| feed.as_mut().poll_next(cx)).await {
            self.apply_from_feed(invalidation).await;
        }
    }

    async fn apply_from_feed(&self, invalidation: Invalidation) {
        let inner = &self.inner;
        match invalidation {
            Invalidation::Remove(key) => {
                if let Err(e) = inner.universe.check_key(&key) {
                    tracing::warn!(galaxy = %inner.name, error = %e, "change feed: invalid key skipped");
                    return;
                }
                match inner.universe.owner(&key) {
                    Owner::Local => {
                        let report = inner
                            .write_cluster(Write::Remove(key.into()), Origin::Feed)
                            .await;
                        log_incomplete(&inner.name, "remove", &report);
                    }
                    Owner::Remote(_) => {
                        inner.drop_local(&key, Origin::Feed);
                    }
                }
            }
            Invalidation::Flush => match inner.universe.owner(&inner.name) {
                Owner::Local => {
                    let report = inner.write_cluster(Write::Flush, Origin::Feed).await;
                    log_incomplete(&inner.name, "flush", &report);
                }
                Owner::Remote(_) => inner.flush_local(Origin::Feed),
            },
        }
    }
}

fn log_incomplete(galaxy: &str, verb: &str, report: &crate::Report) {
    if !report.is_complete() {
        tracing::debug!(
            galaxy,
            verb,
            failed = report.failed.len(),
            refused = report.refused.len(),
            "change feed: not every peer applied the write"
        );
    }
}
