//! A cluster of galaxies in one process, over the in-process protocol.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use galaxycache_galaxy::{Error, Galaxy, GalaxyBuilder, Value};
use galaxycache_universe::{InProcessNetwork, Universe};

/// Counts backend loads per key, across every node that shares it.
#[derive(Clone, Default)]
pub struct Loads(Arc<Mutex<HashMap<String, usize>>>);

impl Loads {
    pub fn record(&self, key: &str) {
        *self.0.lock().unwrap().entry(key.to_owned()).or_default() += 1;
    }
    pub fn of(&self, key: &str) -> usize {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }
    pub fn total(&self) -> usize {
        self.0.lock().unwrap().values().sum()
    }
    pub fn per_key(&self) -> HashMap<String, usize> {
        self.0.lock().unwrap().clone()
    }
}

/// The value every backend of the tests computes for a key.
pub fn value_of(key: &str) -> Value {
    Value::new(format!("value-of-{key}"))
}

pub struct Node {
    pub url: String,
    pub universe: Universe,
    pub galaxy: Galaxy,
}

pub struct Cluster {
    pub net: InProcessNetwork,
    pub nodes: Vec<Node>,
    pub loads: Loads,
}

pub const GALAXY: &str = "test";

impl Cluster {
    /// `n` nodes whose backends answer `value_of(key)` after `delay`, configured by `tune`.
    pub fn new(n: usize, delay: Duration, tune: impl Fn(GalaxyBuilder) -> GalaxyBuilder) -> Self {
        let loads = Loads::default();
        let l = loads.clone();
        Self::with_backend(
            n,
            move |key: String| {
                let l = l.clone();
                async move {
                    l.record(&key);
                    if !delay.is_zero() {
                        tokio::time::sleep(delay).await;
                    }
                    Ok::<_, Error>(Some(value_of(&key)))
                }
            },
            tune,
            loads,
        )
    }

    pub fn with_backend<B>(
        n: usize,
        backend: B,
        tune: impl Fn(GalaxyBuilder) -> GalaxyBuilder,
        loads: Loads,
    ) -> Self
    where
        B: galaxycache_galaxy::BackendGetter + Clone,
    {
        Self::with_budget(n, 64 << 20, backend, tune, loads)
    }

    pub fn with_budget<B>(
        n: usize,
        budget: u64,
        backend: B,
        tune: impl Fn(GalaxyBuilder) -> GalaxyBuilder,
        loads: Loads,
    ) -> Self
    where
        B: galaxycache_galaxy::BackendGetter + Clone,
    {
        let net = InProcessNetwork::new();
        let urls: Vec<String> = (0..n).map(|i| format!("inproc://node-{i}")).collect();
        let nodes = urls
            .iter()
            .map(|url| {
                let universe = Universe::builder(url.clone())
                    .protocol(net.protocol())
                    .build();
                net.attach(&universe);
                universe.set_peers(&urls).unwrap();
                let galaxy = tune(Galaxy::builder(&universe, GALAXY, budget, backend.clone()))
                    .build()
                    .unwrap();
                Node {
                    url: url.clone(),
                    universe,
                    galaxy,
                }
            })
            .collect();
        Cluster { net, nodes, loads }
    }

    /// A key owned by node `owner`.
    pub fn key_owned_by(&self, owner: usize, prefix: &str) -> String {
        let url = &self.nodes[owner].url;
        (0..)
            .map(|i| format!("{prefix}-{i}"))
            .find(|k| &self.nodes[0].universe.owner_url(k) == url)
            .unwrap()
    }
}

/// Counts calls; for backends built by hand in a test.
#[derive(Clone, Default)]
pub struct Calls(pub Arc<AtomicUsize>);

impl Calls {
    pub fn bump(&self) -> usize {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

/// A database whose every write bumps the key's version; values read from it say
/// `key@version`, so a test can tell how old a value is.
#[derive(Clone, Default)]
pub struct VersionedDb(Arc<Mutex<HashMap<String, u64>>>);

impl VersionedDb {
    pub fn read(&self, key: &str) -> u64 {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }
    /// Write `key`: its new version.
    pub fn write(&self, key: &str) -> u64 {
        let mut db = self.0.lock().unwrap();
        let v = db.entry(key.to_owned()).or_default();
        *v += 1;
        *v
    }
    pub fn value(key: &str, version: u64) -> Value {
        Value::new(format!("{key}@{version}"))
    }
    /// The version a value says it has.
    pub fn version_of(value: &Value) -> u64 {
        let s = std::str::from_utf8(value.bytes()).unwrap();
        s.rsplit_once('@').unwrap().1.parse().unwrap()
    }
}

/// Let every task that can run, run (a bounded number of rounds).
pub async fn settle() {
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
}
