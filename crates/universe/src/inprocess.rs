//! A fetch protocol between universes of one process, with faults a test can inject.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::time::Instant;

use crate::universe::Inner;
use crate::{
    BoxFuture, Error, ErrorKind, FetchProtocol, FetchResult, GalaxyId, InFlight, RemoteFetcher,
    Universe, WriteOp,
};

/// A fault that a peer on an [`InProcessNetwork`] shows to every fetch it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Fail every fetch as a broken node does (a 503 from its proxy, a reset
    /// connection): an [`ErrorKind::Unavailable`] error, after which the asking node loads
    /// the key itself.
    Fail,
    /// Never answer, as a peer that accepted the connection and hung.
    Hang,
    /// Answer every fetch with NotFound.
    NotFound,
    /// Apply every write (remove, set, flush) this long after it arrives, as a peer whose
    /// answer is slow to come; fetches are answered at once. What opens the window between
    /// a write reaching a node and reaching the key's owner.
    SlowWrites(std::time::Duration),
}

#[derive(Debug, Default)]
struct Node {
    universe: Option<Weak<Inner>>,
    fault: Option<Fault>,
    received: Arc<AtomicU64>,
}

/// Universes of one process reach each other through this network: no sockets, no
/// copies, and any peer can be made to fail, hang or answer NotFound.
///
/// ```
/// use galaxycache::universe::{InProcessNetwork, Universe};
///
/// let net = InProcessNetwork::new();
/// let a = Universe::builder("a").protocol(net.protocol()).build();
/// let b = Universe::builder("b").protocol(net.protocol()).build();
/// net.attach(&a);
/// net.attach(&b);
/// a.set_peers(["a", "b"]).unwrap();
/// b.set_peers(["a", "b"]).unwrap();
/// ```
#[derive(Clone, Debug, Default)]
pub struct InProcessNetwork {
    nodes: Arc<Mutex<HashMap<String, Node>>>,
}

impl InProcessNetwork {
    /// An empty network.
    pub fn new() -> Self {
        Self::default()
    }

    /// The protocol to give each universe of this network.
    pub fn protocol(&self) -> Arc<dyn FetchProtocol> {
        Arc::new(InProcessProtocol { net: self.clone() })
    }

    /// Make `universe` reachable at its own URL. The network holds it weakly.
    pub fn attach(&self, universe: &Universe) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let node = nodes.entry(universe.self_url().to_owned()).or_default();
        node.universe = Some(universe.downgrade());
    }

    /// Make the peer at `url` unreachable, as a process that died.
    pub fn detach(&self, url: &str) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(node) = nodes.get_mut(url) {
            node.universe = None;
        }
    }

    /// Make the peer at `url` show `fault` to every fetch, or behave again with `None`.
    pub fn set_fault(&self, url: &str, fault: Option<Fault>) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes.entry(url.to_owned()).or_default().fault = fault;
    }

    /// How many fetches the peer at `url` has received, faulty ones included.
    pub fn received(&self, url: &str) -> u64 {
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        nodes
            .get(url)
            .map_or(0, |n| n.received.load(Ordering::Relaxed))
    }

    fn route(&self, url: &str) -> (Option<Universe>, Option<Fault>) {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let node = nodes.entry(url.to_owned()).or_default();
        node.received.fetch_add(1, Ordering::Relaxed);
        let universe = node
            .universe
            .as_ref()
            .and_then(Weak::upgrade)
            .map(Universe::from_inner);
        (universe, node.fault)
    }
}

#[derive(Debug)]
struct InProcessProtocol {
    net: InProcessNetwork,
}

/// The in-process network moves no bytes (values are handed over as they are), so it
/// reserves none.
impl FetchProtocol for InProcessProtocol {
    fn connect(&self, url: &str, _: &InFlight) -> Result<Arc<dyn RemoteFetcher>, Error> {
        Ok(Arc::new(InProcessFetcher {
            net: self.net.clone(),
            url: url.to_owned(),
        }))
    }
}

#[derive(Debug)]
struct InProcessFetcher {
    net: InProcessNetwork,
    url: String,
}

impl InProcessFetcher {
    /// The peer's universe, once the injected fault (if any) has had its say.
    async fn reach(&self, write: bool) -> Result<Option<Universe>, Error> {
        let (universe, fault) = self.net.route(&self.url);
        match fault {
            Some(Fault::SlowWrites(delay)) if write => tokio::time::sleep(delay).await,
            Some(Fault::SlowWrites(_)) => {}
            Some(Fault::Fail) => {
                return Err(Error::new(ErrorKind::Unavailable, "injected failure"));
            }
            Some(Fault::Hang) => std::future::pending::<()>().await,
            Some(Fault::NotFound) => return Ok(None),
            None => {}
        }
        match universe {
            Some(universe) => Ok(Some(universe)),
            None => Err(Error::new(
                ErrorKind::Unavailable,
                format!("no peer listens at {}", self.url),
            )),
        }
    }
}

impl RemoteFetcher for InProcessFetcher {
    fn fetch<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        key: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, FetchResult> {
        Box::pin(async move {
            match self.reach(false).await? {
                Some(universe) => universe.serve_get(galaxy, key, Some(deadline)).await,
                None => Ok(None),
            }
        })
    }

    fn peek<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        key: &'a str,
        _deadline: Instant,
    ) -> BoxFuture<'a, FetchResult> {
        Box::pin(async move {
            match self.reach(false).await? {
                Some(universe) => universe.serve_peek(galaxy, key),
                None => Ok(None),
            }
        })
    }

    fn write<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        op: WriteOp<'a>,
        _deadline: Instant,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            match self.reach(true).await? {
                Some(universe) => universe.serve_write(galaxy, op),
                None => Ok(()),
            }
        })
    }

    fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{GalaxyHandler, Value};
    use std::time::Duration;

    #[derive(Debug)]
    struct Echo;
    impl GalaxyHandler for Echo {
        fn serve_get<'a>(&'a self, key: &'a str, _: Option<Instant>) -> BoxFuture<'a, FetchResult> {
            Box::pin(async move { Ok((key != "missing").then(|| Value::new(key.to_owned()))) })
        }
        fn serve_peek(&self, key: &str) -> Option<Value> {
            Some(Value::new(format!("peek:{key}")))
        }
        fn serve_write(&self, op: WriteOp<'_>) -> Result<(), Error> {
            match op {
                WriteOp::Remove("refuse") => Err(Error::new(ErrorKind::Unsupported, "no")),
                _ => Ok(()),
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fetches_reach_the_peer_and_faults_apply() {
        let net = InProcessNetwork::new();
        let b = Universe::builder("b").build();
        let echo: Arc<dyn GalaxyHandler> = Arc::new(Echo);
        b.register("g", Arc::downgrade(&echo)).unwrap();
        net.attach(&b);
        let fetcher = net.protocol().connect("b", &InFlight::unbounded()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(1);

        let v = fetcher
            .fetch("g".into(), "k", deadline)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.bytes().as_ref(), b"k");
        assert_eq!(
            fetcher
                .fetch("g".into(), "missing", deadline)
                .await
                .unwrap(),
            None
        );
        let v = fetcher
            .peek("g".into(), "k", deadline)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(v.bytes().as_ref(), b"peek:k");
        let e = fetcher
            .fetch("nope".into(), "k", deadline)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownGalaxy);

        assert_eq!(
            fetcher.write("g".into(), WriteOp::Flush, deadline).await,
            Ok(())
        );
        let e = fetcher
            .write("g".into(), WriteOp::Remove("refuse"), deadline)
            .await;
        assert_eq!(e.unwrap_err().kind(), ErrorKind::Unsupported);
        net.set_fault("b", Some(Fault::Fail));
        assert_eq!(
            fetcher
                .fetch("g".into(), "k", deadline)
                .await
                .unwrap_err()
                .kind(),
            ErrorKind::Unavailable
        );
        net.set_fault("b", Some(Fault::NotFound));
        assert_eq!(
            fetcher.fetch("g".into(), "k", deadline).await.unwrap(),
            None
        );
        net.set_fault("b", Some(Fault::Hang));
        let hung = tokio::time::timeout(
            Duration::from_secs(5),
            fetcher.fetch("g".into(), "k", deadline),
        );
        assert!(hung.await.is_err());
        net.set_fault("b", None);
        net.detach("b");
        let e = fetcher.fetch("g".into(), "k", deadline).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(net.received("b"), 10);
    }

    #[tokio::test]
    async fn a_dropped_galaxy_is_unknown() {
        let u = Universe::builder("a").build();
        let echo: Arc<dyn GalaxyHandler> = Arc::new(Echo);
        u.register("g", Arc::downgrade(&echo)).unwrap();
        assert!(u.register("g", Arc::downgrade(&echo)).is_err());
        assert_eq!(u.galaxy_names(), ["g"]);
        drop(echo);
        assert!(u.galaxy_names().is_empty());
        let e = u.serve_get("g".into(), "k", None).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownGalaxy);
    }
}
