//! The fence under the model checker: loads racing a writer's sets, removes and flushes
//! never leave the cache holding an older version than the backend's.

use std::collections::HashMap;
use std::sync::Arc;

use shuttle::thread;

use super::Fence;
use crate::sync::{Mutex, explore};

const KEYS: [&str; 2] = ["a", "b"];

/// A backend whose every write bumps the key's version, and a cache of versions, fenced
/// as the galaxy fences its caches.
struct World {
    fence: Fence,
    backend: Mutex<HashMap<&'static str, u64>>,
    cache: Mutex<HashMap<&'static str, u64>>,
}

impl World {
    fn new() -> Arc<Self> {
        Arc::new(World {
            fence: Fence::new(),
            backend: Mutex::new(KEYS.iter().map(|&k| (k, 0)).collect()),
            cache: Mutex::new(HashMap::new()),
        })
    }

    fn version(&self, key: &'static str) -> u64 {
        self.backend.lock().unwrap()[key]
    }

    fn cached(&self, key: &'static str) -> Option<u64> {
        self.cache.lock().unwrap().get(key).copied()
    }

    fn bump(&self, key: &'static str) -> u64 {
        let mut backend = self.backend.lock().unwrap();
        let version = backend.entry(key).or_default();
        *version += 1;
        *version
    }

    /// A read-through load: the generation first, then the backend, then a fenced store.
    fn load(&self, key: &'static str) {
        let seen = self.fence.current(key);
        let version = self.version(key);
        self.fence.store_if(key, seen, || {
            self.cache.lock().unwrap().insert(key, version);
        });
    }

    /// A preload: one snapshot of the generations, then a fenced store per key.
    fn preload(&self) {
        let snapshot = self.fence.snapshot();
        for key in KEYS {
            let version = self.version(key);
            let seen = self.fence.generation_in(&snapshot, key);
            self.fence.store_if(key, seen, || {
                self.cache.lock().unwrap().insert(key, version);
            });
        }
    }

    /// What no load may undo: the cache holds nothing for `key` or the backend's version.
    fn assert_fresh(&self, key: &'static str, after: &str) {
        let (cached, version) = (self.cached(key), self.version(key));
        assert!(
            cached.is_none_or(|c| c == version),
            "after {after}: the cache holds version {cached:?} of {key}, the backend {version}"
        );
    }
}

/// The writer's history: sets, removes and a flush, one after the other as a caller
/// issues them, each checked as soon as it completes.
fn write_history(world: &World) {
    for (step, key) in [(0, "a"), (1, "b"), (2, "a"), (0, "b"), (1, "a")] {
        let version = world.bump(key);
        match step {
            0 => {
                world.fence.advance(key, || {
                    world.cache.lock().unwrap().insert(key, version);
                });
                assert_eq!(world.cached(key), Some(version), "a set of {key} wins");
            }
            1 => {
                world
                    .fence
                    .advance(key, || world.cache.lock().unwrap().remove(key));
                world.assert_fresh(key, "a remove");
            }
            _ => {
                world.fence.advance_all();
                world.cache.lock().unwrap().clear();
                for key in KEYS {
                    world.assert_fresh(key, "a flush");
                }
            }
        }
    }
}

#[test]
fn shuttle_no_load_stores_a_version_older_than_a_completed_write() {
    explore(|| {
        let world = World::new();
        let loaders: Vec<_> = [KEYS, ["b", "a"]]
            .into_iter()
            .map(|keys| {
                let world = Arc::clone(&world);
                thread::spawn(move || {
                    for key in keys.into_iter().chain(keys) {
                        world.load(key);
                    }
                })
            })
            .collect();
        let preloader = {
            let world = Arc::clone(&world);
            thread::spawn(move || world.preload())
        };
        write_history(&world);
        for handle in loaders.into_iter().chain([preloader]) {
            handle.join().unwrap();
        }
        for key in KEYS {
            world.assert_fresh(key, "every load ended");
        }
    });
}
