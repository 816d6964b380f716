//! Implicit batching over real loopback sockets (HTTP, galaxycache dialect): gets that
//! arrive one at a time each make one peer request, with nothing added; gets that arrive
//! together travel to their owner in fewer requests than keys, each key still loaded once.
#![cfg(feature = "http")]

#[path = "support/loopback.rs"]
mod loopback;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use galaxycache::http::{Dialect, HttpProtocol, PeerService};
use galaxycache::universe::PeerStatus;
use galaxycache::{Error, Galaxy, Universe, Value};
use tokio::sync::Semaphore;

/// Two nodes: the asker (node 0) and the owner of the keys asked (node 1), whose backend
/// loads wait for permits of `gate` and are counted in `loads`.
struct Pair {
    asker: Galaxy,
    owner_url: String,
    gate: Arc<Semaphore>,
    loads: Arc<Mutex<HashMap<String, u32>>>,
}

async fn pair(open: bool) -> Pair {
    pair_batching(open, true).await
}

async fn pair_batching(open: bool, batching: bool) -> Pair {
    let gate = Arc::new(Semaphore::new(if open {
        Semaphore::MAX_PERMITS
    } else {
        0
    }));
    let loads = Arc::new(Mutex::new(HashMap::new()));
    let (listeners, urls) = loopback::listeners(2).await;
    let mut galaxies = Vec::new();
    for (listener, url) in listeners.into_iter().zip(&urls) {
        let universe = Universe::builder(url)
            .protocol(Arc::new(HttpProtocol::builder().build()))
            .batch_fetches(batching)
            .build();
        universe.set_peers(&urls).unwrap();
        let (gate, loads) = (Arc::clone(&gate), Arc::clone(&loads));
        let backend = move |key: String| {
            let (gate, loads) = (Arc::clone(&gate), Arc::clone(&loads));
            async move {
                gate.acquire().await.unwrap().forget();
                *loads.lock().unwrap().entry(key.clone()).or_insert(0) += 1;
                Ok::<_, Error>(Some(Value::new(format!("value of {key}"))))
            }
        };
        let galaxy = Galaxy::builder(&universe, "g", 64 << 20, backend)
            .peer_timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let service = PeerService::new(universe, Dialect::Galaxycache);
        tokio::spawn(service.serve(listener, std::future::pending()));
        galaxies.push(galaxy);
    }
    let asker = galaxies.swap_remove(0);
    Pair {
        asker,
        owner_url: urls[1].clone(),
        gate,
        loads,
    }
}

impl Pair {
    /// `n` keys the owner owns, by the asker's ring.
    fn owned_keys(&self, n: usize) -> Vec<String> {
        let universe = self.asker.universe();
        (0..)
            .map(|i| format!("key-{i}"))
            .filter(|k| universe.owner_url(k) == self.owner_url)
            .take(n)
            .collect()
    }

    /// The asker's requests to the owner, and the keys they carried.
    fn sent(&self) -> (u64, u64) {
        let owner = self.owner_status();
        (owner.fetch_requests, owner.fetched_keys)
    }

    fn owner_status(&self) -> PeerStatus {
        let status = self.asker.universe().peer_status();
        status
            .into_iter()
            .find(|p| p.url == self.owner_url)
            .unwrap()
    }

    /// Wait until `n` fetches have been sent to the owner or wait for a slot to it.
    async fn until_asked(&self, n: u64) {
        loop {
            let owner = self.owner_status();
            if owner.fetched_keys + owner.queued_fetches >= n {
                return;
            }
            tokio::task::yield_now().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gets_one_at_a_time_make_one_request_each() {
    let pair = pair(true).await;
    let keys = pair.owned_keys(50);
    for key in &keys {
        let value = pair.asker.get(key).await.unwrap();
        assert_eq!(value.bytes(), format!("value of {key}").as_bytes());
    }
    assert_eq!(pair.sent(), (50, 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_travel_together_and_load_once_each() {
    let pair = pair(false).await;
    let keys = pair.owned_keys(300);
    let mut gets = tokio::task::JoinSet::new();
    // Every key asked twice: the singleflight keeps one fetch per key.
    for key in keys.iter().chain(&keys) {
        let (asker, key) = (pair.asker.clone(), key.clone());
        gets.spawn(async move {
            let value = asker.get(&key).await.unwrap();
            assert_eq!(value.bytes(), format!("value of {key}").as_bytes());
        });
    }
    // The first requests hold the owner's backend until every key is on its way.
    pair.until_asked(300).await;
    pair.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    while gets.join_next().await.transpose().unwrap().is_some() {}

    let (requests, keys_sent) = pair.sent();
    assert_eq!(keys_sent, 300, "one fetch per key");
    // 4 single requests, then the queue in batches of up to 256: 6 when every slot is
    // busy throughout; a bound with room for slots that free up while it drains.
    assert!(requests <= 30, "{requests} requests for 300 keys");
    let loads = pair.loads.lock().unwrap();
    assert_eq!(loads.len(), 300);
    assert!(loads.values().all(|&n| n == 1), "each key loaded once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_batching_every_fetch_is_a_request() {
    let pair = pair_batching(false, false).await;
    let keys = pair.owned_keys(40);
    let batch = tokio::spawn({
        let (asker, keys) = (pair.asker.clone(), keys.clone());
        async move { asker.get_many(&keys).await }
    });
    pair.until_asked(40).await;
    pair.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    assert!(batch.await.unwrap().iter().all(Result::is_ok));
    assert_eq!(pair.sent(), (40, 40), "one request per key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_many_groups_an_owners_keys() {
    let pair = pair(false).await;
    let mut keys = pair.owned_keys(100);
    keys.push(String::new()); // refused on its own
    let asker = pair.asker.clone();
    let batch = tokio::spawn({
        let keys = keys.clone();
        async move { asker.get_many(&keys).await }
    });
    // The first requests hold the owner's backend until every key is on its way.
    pair.until_asked(100).await;
    pair.gate.add_permits(Semaphore::MAX_PERMITS / 2);
    let results = batch.await.unwrap();
    for (key, result) in keys.iter().zip(&results) {
        match key.as_str() {
            "" => assert!(result.is_err()),
            key => assert_eq!(
                result.as_ref().unwrap().bytes(),
                format!("value of {key}").as_bytes()
            ),
        }
    }
    let (requests, keys_sent) = pair.sent();
    assert_eq!(keys_sent, 100);
    assert_eq!(requests, 1, "one request carries an owner's 100 keys");
}
