//! What a backend is told of a load: why it runs (a caller, a peer, a refresh, a preload)
//! and by when it is needed; and `get_with`'s own deadline.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Cluster, Loads, value_of};
use galaxycache_galaxy::{
    BackendGetter, Error, ErrorKind, GetOptions, LoadContext, LoadReason, ManualClock, Refresh,
    Value,
};
use tokio::time::Instant;

/// A load's key, reason and deadline, as the backend saw them.
type Seen = (String, LoadReason, Option<Instant>);

/// Records every load; answers after `delay`.
#[derive(Clone, Default)]
struct Recording {
    seen: Arc<Mutex<Vec<Seen>>>,
    delay: Duration,
}

impl Recording {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl BackendGetter for Recording {
    async fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        self.load(key, &LoadContext::new(LoadReason::Client)).await
    }

    async fn load(&self, key: &str, cx: &LoadContext) -> Result<Option<Value>, Error> {
        self.seen
            .lock()
            .unwrap()
            .push((key.to_owned(), cx.reason(), cx.deadline()));
        tokio::time::sleep(self.delay).await;
        Ok(Some(value_of(key)))
    }
}

fn cluster(n: usize, backend: &Recording) -> Cluster {
    Cluster::with_backend(n, backend.clone(), |b| b, Loads::default())
}

#[tokio::test(start_paused = true)]
async fn a_callers_load_says_so_with_its_deadline() {
    let backend = Recording::default();
    let c = cluster(1, &backend);
    let galaxy = &c.nodes[0].galaxy;
    galaxy.get("plain").await.unwrap();
    let due = Instant::now() + Duration::from_secs(5);
    let options = GetOptions::new().deadline(due);
    galaxy.get_with("timed", &options).await.unwrap();
    let warm = GetOptions::new().reason(LoadReason::Preload);
    galaxy.get_with("warm", &warm).await.unwrap();
    assert_eq!(
        backend.seen(),
        [
            ("plain".to_owned(), LoadReason::Client, None),
            ("timed".to_owned(), LoadReason::Client, Some(due)),
            ("warm".to_owned(), LoadReason::Preload, None),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn an_owner_is_told_a_peer_asked_and_by_when() {
    let backend = Recording::default();
    let c = cluster(2, &backend);
    let key = c.key_owned_by(1, "remote");
    let asked_at = Instant::now();
    c.nodes[0].galaxy.get(&key).await.unwrap();
    let seen = backend.seen();
    assert_eq!(seen.len(), 1);
    let (loaded, reason, deadline) = &seen[0];
    assert_eq!((loaded.as_str(), *reason), (key.as_str(), LoadReason::Peer));
    let deadline = deadline.expect("the asking peer's deadline travels");
    assert!(deadline > asked_at, "{deadline:?}");
}

#[tokio::test(start_paused = true)]
async fn a_background_reload_is_a_refresh() {
    let backend = Recording::default();
    let clock = Arc::new(ManualClock::new());
    let tuned = Arc::clone(&clock);
    let c = Cluster::with_backend(
        1,
        backend.clone(),
        move |b| {
            b.clock(tuned.clone())
                .refresh(Refresh::After(Duration::from_secs(50)))
        },
        Loads::default(),
    );
    let galaxy = &c.nodes[0].galaxy;
    galaxy.get("k").await.unwrap();
    clock.advance(Duration::from_secs(60));
    galaxy.get("k").await.unwrap();
    for _ in 0..100 {
        if backend.seen().len() == 2 {
            break;
        }
        tokio::task::yield_now().await;
    }
    let reasons: Vec<LoadReason> = backend.seen().into_iter().map(|(_, r, _)| r).collect();
    assert_eq!(reasons, [LoadReason::Client, LoadReason::Refresh]);
}

#[tokio::test(start_paused = true)]
async fn a_get_stops_waiting_at_its_deadline_and_the_load_goes_on() {
    let backend = Recording {
        delay: Duration::from_secs(10),
        ..Recording::default()
    };
    let c = cluster(1, &backend);
    let galaxy = &c.nodes[0].galaxy;
    let started = Instant::now();
    let options = GetOptions::new().timeout(Duration::from_secs(1));
    let e = galaxy.get_with("slow", &options).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert_eq!(started.elapsed(), Duration::from_secs(1));
    // A caller without a deadline joins the same load, which the timeout did not cancel.
    assert_eq!(galaxy.get("slow").await.unwrap(), value_of("slow"));
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert_eq!(backend.seen().len(), 1, "one load");
}
