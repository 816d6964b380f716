//! The per-thread front for hot keys: a write anywhere in the cluster retires every
//! thread's copy, on the thread that wrote and on the others, and a hit allocates nothing.

mod common;

use std::future::Future;
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};

use common::{Cluster, Loads, VersionedDb};
use galaxycache_galaxy::{Error, Galaxy, Value};
use galaxycache_promoter::AlwaysPromote;

/// A get that is a hit completes on its first poll; polls it once with a waker that
/// does nothing (no runtime, so nothing else allocates on this thread).
fn hit(galaxy: &Galaxy, key: &str) -> Value {
    let mut get = std::pin::pin!(galaxy.get(key));
    match get.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v.expect("a hit"),
        Poll::Pending => panic!("{key} was not a hit"),
    }
}

/// Two in-process nodes in front of one versioned database; node 0 promotes every key it
/// fetches into its hotcache.
fn cluster(db: &VersionedDb) -> Cluster {
    let db = db.clone();
    let backend = move |key: String| {
        let db = db.clone();
        async move { Ok::<_, Error>(Some(VersionedDb::value(&key, db.read(&key)))) }
    };
    Cluster::with_backend(2, backend, |b| b.promoter(AlwaysPromote), Loads::default())
}

fn version(galaxy: &Galaxy, key: &str) -> u64 {
    VersionedDb::version_of(&hit(galaxy, key))
}

#[tokio::test]
async fn a_write_on_another_node_retires_this_threads_copies() {
    let db = VersionedDb::default();
    let c = cluster(&db);
    let (near, owner) = (&c.nodes[0].galaxy, &c.nodes[1].galaxy);
    let key = c.key_owned_by(1, "hot");
    near.get(&key).await.unwrap();
    // Enough hits for a front copy on this thread, in node 0's hotcache and node 1's maincache.
    for _ in 0..32 {
        assert_eq!(version(near, &key), 0);
        assert_eq!(version(owner, &key), 0);
    }
    let hot_hits = near.stats().hot_hits;

    db.write(&key);
    owner.remove(&key).await.unwrap();
    assert_eq!(near.get(&key).await.unwrap(), VersionedDb::value(&key, 1));
    assert_eq!(owner.get(&key).await.unwrap(), VersionedDb::value(&key, 1));

    owner.set(&key, VersionedDb::value(&key, 7)).await.unwrap();
    for galaxy in [near, owner] {
        assert_eq!(VersionedDb::version_of(&galaxy.get(&key).await.unwrap()), 7);
    }
    for _ in 0..32 {
        assert_eq!(version(owner, &key), 7);
    }

    db.write(&key);
    owner.flush().await;
    assert_eq!(VersionedDb::version_of(&owner.get(&key).await.unwrap()), 2);
    assert!(hot_hits >= 32, "front hits count as hot hits: {hot_hits}");
}

#[test]
fn a_write_retires_the_copies_of_other_threads() {
    let db = VersionedDb::default();
    let c = cluster(&db);
    let galaxy = c.nodes[1].galaxy.clone();
    let key = c.key_owned_by(1, "shared");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(galaxy.get(&key)).unwrap();

    let (to_reader, reader_rx) = mpsc::channel::<()>();
    let (to_writer, writer_rx) = mpsc::channel::<u64>();
    let reader = {
        let (galaxy, key) = (galaxy.clone(), key.clone());
        std::thread::spawn(move || {
            for _ in 0..32 {
                assert_eq!(version(&galaxy, &key), 0);
            }
            to_writer.send(version(&galaxy, &key)).unwrap();
            reader_rx.recv().unwrap();
            // Written since: this thread's copy must not answer.
            to_writer
                .send(VersionedDb::version_of(&rt_get(&galaxy, &key)))
                .unwrap();
        })
    };
    assert_eq!(
        writer_rx.recv().unwrap(),
        0,
        "the reader holds a copy of version 0"
    );
    db.write(&key);
    rt.block_on(galaxy.remove(&key)).unwrap();
    to_reader.send(()).unwrap();
    assert_eq!(writer_rx.recv().unwrap(), 1, "the reader saw the write");
    reader.join().unwrap();
}

/// A get on a runtime of its own (the key may have to be loaded).
fn rt_get(galaxy: &Galaxy, key: &str) -> Value {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(galaxy.get(key))
        .unwrap()
}

#[test]
fn hits_do_not_allocate() {
    let db = VersionedDb::default();
    let c = cluster(&db);
    let galaxy = &c.nodes[0].galaxy;
    let keys: Vec<String> = (0..64)
        .map(|i| c.key_owned_by(0, &format!("k{i}")))
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    for key in &keys {
        rt.block_on(galaxy.get(key)).unwrap();
    }
    // Cache hits (each key once: no front copies), then front hits on one key.
    let cache_hits = allocation_counter::measure(|| {
        for key in &keys {
            drop(hit(galaxy, key));
        }
    });
    assert_eq!(cache_hits.count_total, 0, "maincache hits allocated");
    for _ in 0..32 {
        drop(hit(galaxy, &keys[0]));
    }
    let front_hits = allocation_counter::measure(|| {
        for _ in 0..1000 {
            drop(hit(galaxy, &keys[0]));
        }
    });
    assert_eq!(front_hits.count_total, 0, "front hits allocated");
    assert!(galaxy.stats().main_hits >= 1000 + 32 + 64);
}
