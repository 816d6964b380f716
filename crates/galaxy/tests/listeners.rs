//! Lifecycle listeners hear every store, expiry, eviction, remove and flush with the right
//! reason, and a panicking listener never breaks a get.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Cluster, Loads, value_of};
use galaxycache_galaxy::{Error, Event, Galaxy, ManualClock, Origin, StoreReason, Tier, Value};
use galaxycache_promoter::AlwaysPromote;
use galaxycache_universe::{Fault, Universe};

/// Events as owned strings, per node.
#[derive(Clone, Default)]
struct Heard(Arc<Mutex<Vec<String>>>);

impl Heard {
    fn listener(&self) -> impl Fn(Event<'_>) + Send + Sync + 'static {
        let heard = self.clone();
        move |event: Event<'_>| heard.0.lock().unwrap().push(format!("{event:?}"))
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

fn stored(key: &str, tier: Tier, reason: StoreReason) -> String {
    format!("{:?}", Event::Stored { key, tier, reason })
}

#[tokio::test(start_paused = true)]
async fn every_event_is_heard_with_its_reason() {
    let heard: Vec<Heard> = (0..2).map(|_| Heard::default()).collect();
    let clock = Arc::new(ManualClock::new());
    let c = {
        let (heard, clock) = (heard.clone(), Arc::clone(&clock));
        let next = Arc::new(Mutex::new(0usize));
        Cluster::new(2, Duration::ZERO, move |b| {
            let mut i = next.lock().unwrap();
            let b = b
                .promoter(AlwaysPromote)
                .clock(clock.clone())
                .max_ttl(Duration::from_secs(30))
                .listener(heard[*i].listener());
            *i += 1;
            b
        })
    };
    let (a, b) = (&c.nodes[0].galaxy, &c.nodes[1].galaxy);
    let mine = c.key_owned_by(0, "mine");
    let theirs = c.key_owned_by(1, "theirs");

    a.get(&mine).await.unwrap();
    a.get(&theirs).await.unwrap();
    assert_eq!(
        heard[0].take(),
        [
            stored(&mine, Tier::Main, StoreReason::Load),
            stored(&theirs, Tier::Hot, StoreReason::Promotion)
        ]
    );
    assert_eq!(
        heard[1].take(),
        [stored(&theirs, Tier::Main, StoreReason::Load)]
    );

    // A remove from node 1: node 1 drops (local), node 0 drops (peer).
    b.remove(&theirs).await.unwrap();
    assert_eq!(
        heard[1].take(),
        [format!(
            "{:?}",
            Event::Removed {
                key: &theirs,
                origin: Origin::Local
            }
        )]
    );
    assert_eq!(
        heard[0].take(),
        [format!(
            "{:?}",
            Event::Removed {
                key: &theirs,
                origin: Origin::Peer
            }
        )]
    );

    // A set from node 1 of a key node 0 owns: stored at node 0 for that reason.
    b.set(&mine, Value::new("set")).await.unwrap();
    assert_eq!(
        heard[0].take(),
        [stored(&mine, Tier::Main, StoreReason::Set)]
    );

    // Expiry, seen by a get.
    clock.advance(Duration::from_secs(30));
    a.get(&mine).await.unwrap();
    let events = heard[0].take();
    assert_eq!(
        events[0],
        format!(
            "{:?}",
            Event::Expired {
                key: &mine,
                tier: Tier::Main
            }
        )
    );

    // A fallback: node 1 fails, node 0 loads its key itself.
    c.net.set_fault(&c.nodes[1].url, Some(Fault::Fail));
    let other = c.key_owned_by(1, "other");
    a.get(&other).await.unwrap();
    assert_eq!(
        heard[0].take(),
        [stored(&other, Tier::Main, StoreReason::Fallback)]
    );
    c.net.set_fault(&c.nodes[1].url, None);

    // A flush, heard once per node with its origin.
    a.flush().await;
    assert_eq!(
        heard[0].take(),
        [format!(
            "{:?}",
            Event::Flushed {
                origin: Origin::Local
            }
        )]
    );
    assert_eq!(
        heard[1].take(),
        [format!(
            "{:?}",
            Event::Flushed {
                origin: Origin::Peer
            }
        )]
    );
}

#[tokio::test]
async fn evictions_are_heard() {
    let heard = Heard::default();
    let universe = Universe::builder("http://me").build();
    let g = Galaxy::builder(&universe, "g", 64 * 1024, |_key: String| async move {
        Ok::<_, Error>(Some(Value::new(vec![b'x'; 1024])))
    })
    .hot_ratio(0.0)
    .listener(heard.listener())
    .build()
    .unwrap();
    for i in 0..200 {
        g.get(&format!("k{i}")).await.unwrap();
    }
    let events = heard.take();
    let evicted = events.iter().filter(|e| e.starts_with("Evicted")).count() as u64;
    assert!(evicted > 0);
    assert_eq!(evicted, g.stats().main_evictions, "one event per eviction");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_listener_does_not_break_gets_or_writes() {
    let c = Cluster::with_backend(
        2,
        |key: String| async move { Ok::<_, Error>(Some(value_of(&key))) },
        |b| b.listener(|_: Event<'_>| panic!("listener bug")),
        Loads::default(),
    );
    let g = &c.nodes[0].galaxy;
    for i in 0..10 {
        let key = format!("k{i}");
        assert_eq!(g.get(&key).await.unwrap().bytes(), value_of(&key).bytes());
    }
    assert!(g.stats().main_entries > 0, "values were still stored");
    let report = g.remove("k1").await.unwrap();
    assert!(report.is_complete());
    g.flush().await;
    assert_eq!(g.get("k1").await.unwrap().bytes(), value_of("k1").bytes());
}
