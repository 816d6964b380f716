//! Where the peer list comes from: a [`Discovery`] source, and [`Universe::follow`], which
//! applies each list it yields.
//!
//! Built in: [`StaticPeers`] (a fixed list), [`FilePeers`] (a file, re-read when it
//! changes or when asked) and, with the `dns` feature (on by default), `DnsPeers` (the
//! addresses of a DNS name, e.g. a Kubernetes headless service). Any other source
//! implements [`Discovery`].

#[cfg(feature = "dns")]
mod dns;
mod file;
mod static_peers;

#[cfg(feature = "dns")]
pub use dns::{DEFAULT_DNS_INTERVAL, DnsPeers};
pub use file::{DEFAULT_FILE_INTERVAL, FilePeers, Reload};
pub use static_peers::StaticPeers;

use crate::{BoxFuture, Error, Universe};

/// A source of peer-list updates, e.g. a file or DNS.
///
/// Each item is a whole peer list (this node may be listed or not), in any spelling that
/// [`normalize_peer_url`](crate::normalize_peer_url) accepts, or the error that kept the
/// source from telling one. A source need not yield a list that did not change, and
/// [`Universe::follow`] is fine if it does.
pub trait Discovery: Send {
    /// The next peer list, once there is one; `None` when the source has ended and will
    /// yield nothing more.
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Vec<String>, Error>>>;
}

impl<D: Discovery + ?Sized> Discovery for Box<D> {
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Vec<String>, Error>>> {
        (**self).next()
    }
}

impl Universe {
    /// Apply every peer list `discovery` yields with [`set_peers`](Self::set_peers), until
    /// the source ends; run it in a task of its own.
    ///
    /// A list that fails (the source's error, or one `set_peers` refuses: an invalid URL,
    /// this node twice) is logged at WARN and the ring stays as it was; each change is
    /// logged at INFO with the peers added and removed.
    ///
    /// ```
    /// use galaxycache::universe::{InProcessNetwork, StaticPeers, Universe};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let net = InProcessNetwork::new();
    /// let universe = Universe::builder("http://10.0.0.1:8080").protocol(net.protocol()).build();
    /// universe.follow(StaticPeers::new(["http://10.0.0.2:8080"])).await;
    /// assert_eq!(universe.peers(), ["http://10.0.0.1:8080", "http://10.0.0.2:8080"]);
    /// # });
    /// ```
    pub async fn follow<D: Discovery>(&self, mut discovery: D) {
        while let Some(update) = discovery.next().await {
            self.apply_discovered(update);
        }
        tracing::debug!(self_url = %self.self_url(), "peer discovery ended");
    }

    fn apply_discovered(&self, update: Result<Vec<String>, Error>) {
        let before = self.peers();
        if let Err(error) = update.and_then(|urls| self.set_peers(urls)) {
            tracing::warn!(
                self_url = %self.self_url(),
                %error,
                "peer discovery: keeping the last good peer list"
            );
            return;
        }
        let after = self.peers();
        let added: Vec<&String> = after.iter().filter(|p| !before.contains(p)).collect();
        let removed: Vec<&String> = before.iter().filter(|p| !after.contains(p)).collect();
        if !added.is_empty() || !removed.is_empty() {
            tracing::info!(
                self_url = %self.self_url(),
                ?added,
                ?removed,
                peers = after.len(),
                "peer list changed"
            );
        }
    }
}

#[cfg(test)]
pub(crate) mod test_log;
