//! One load per key, however many callers ask at once.
//!
//! The first caller of a key (the leader) starts the load; later callers wait for its
//! result. A flight carries the generation its key had when it started: a caller that saw
//! a newer generation (a write came in since) does not join it, but starts a new flight in
//! its place, so no get that starts after a write is answered by a load from before it. The load does not belong to the leader: if the leader's caller is dropped
//! mid-load, the load moves to a task of its own and finishes for the others. A load that
//! panics ends as an error for every waiter, and the key can be loaded again.

use std::collections::HashMap;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use quick_cache::DefaultHashBuilder;

use crate::fence::Generation;
use crate::sync::{Mutex, Notify, OnceLock, spawn_detached};
use crate::unwind::CatchUnwind;
use crate::{Error, ErrorKind, Value};

type LoadResult = Result<Value, Error>;
type BoxedLoad = Pin<Box<dyn Future<Output = ()> + Send>>;

const SHARDS: usize = 16;

/// One shard of the in-flight loads.
type Flights = Mutex<HashMap<Arc<str>, Arc<Flight>>>;

struct Flight {
    generation: Generation,
    result: OnceLock<LoadResult>,
    done: Notify,
}

impl Flight {
    async fn wait(&self) -> LoadResult {
        loop {
            let notified = self.done.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = self.result.get() {
                return result.clone();
            }
            notified.await;
        }
    }
}

/// In-flight loads by key.
pub(crate) struct Group {
    shards: Box<[Flights]>,
    hasher: DefaultHashBuilder,
}

enum Joined {
    /// The flight's key, shared by the map, the load and its `Finish`.
    Leader(Arc<str>, Arc<Flight>),
    Waiter(Arc<Flight>),
}

/// How a caller got its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// This caller started the load.
    Leader,
    /// This caller waited on a load another caller had started.
    Waiter,
}

impl Group {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Group {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: DefaultHashBuilder::default(),
        })
    }

    fn shard(&self, key: &str) -> &Flights {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// Run `load` for `key` unless a load of `key` that started at `generation` or later is
    /// in flight; either way, its result.
    ///
    /// `load` is called only by the leader, with the flight's own copy of the key; the
    /// future it returns may outlive the caller (hence `'static`).
    pub(crate) async fn run<F, Fut>(
        self: &Arc<Self>,
        key: &str,
        generation: Generation,
        load: F,
    ) -> (LoadResult, Role)
    where
        F: FnOnce(Arc<str>) -> Fut,
        Fut: Future<Output = LoadResult> + Send + 'static,
    {
        let (key, flight) = match self.join(key, generation) {
            Joined::Waiter(flight) => return (flight.wait().await, Role::Waiter),
            Joined::Leader(key, flight) => (key, flight),
        };
        // The guard first: should even `load` itself panic, the waiters are released.
        let finish = Finish {
            group: Arc::clone(self),
            key: Arc::clone(&key),
            flight: Arc::clone(&flight),
            finished: false,
        };
        let load = CatchUnwind(Box::pin(load(key)));
        let task: BoxedLoad = Box::pin(async move {
            let mut finish = finish;
            let result = load.await.and_then(|loaded| loaded);
            finish.finish(result);
        });
        Detached(Some(task)).await;
        let result = flight
            .result
            .get()
            .cloned()
            .unwrap_or_else(|| Err(abandoned()));
        (result, Role::Leader)
    }

    /// Join the flight of `key` if it is at least as new as `generation`; otherwise start a
    /// new one in its place (the old one finishes for its own waiters).
    fn join(&self, key: &str, generation: Generation) -> Joined {
        let mut flights = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flight) = flights.get(key).filter(|f| f.generation >= generation) {
            return Joined::Waiter(Arc::clone(flight));
        }
        let flight = Arc::new(Flight {
            generation,
            result: OnceLock::new(),
            done: Notify::new(),
        });
        let key: Arc<str> = Arc::from(key);
        flights.insert(Arc::clone(&key), Arc::clone(&flight));
        Joined::Leader(key, flight)
    }

    /// Whether a load of `key` is in flight.
    pub(crate) fn is_in_flight(&self, key: &str) -> bool {
        let flights = self.shard(key).lock().unwrap_or_else(|e| e.into_inner());
        flights.contains_key(key)
    }

    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }
}

fn abandoned() -> Error {
    Error::new(
        ErrorKind::Abandoned,
        "the load was dropped before it finished (runtime shutting down?)",
    )
}

/// Publishes a flight's result, removes the flight and wakes its waiters; on drop without
/// a result (the load future was dropped), publishes [`ErrorKind::Abandoned`].
struct Finish {
    group: Arc<Group>,
    key: Arc<str>,
    flight: Arc<Flight>,
    finished: bool,
}

impl Finish {
    fn finish(&mut self, result: LoadResult) {
        self.finished = true;
        let _ = self.flight.result.set(result);
        {
            let mut flights = self
                .group
                .shard(&self.key)
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if flights
                .get(&self.key)
                .is_some_and(|f| Arc::ptr_eq(f, &self.flight))
            {
                flights.remove(&self.key);
            }
        }
        self.flight.done.notify_waiters();
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        if !self.finished {
            self.finish(Err(abandoned()));
        }
    }
}

/// Drives a load in the leader's task; if the leader is dropped first, the rest of the load
/// moves to a task of its own so the waiters still get their value.
struct Detached(Option<BoxedLoad>);

impl Future for Detached {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(task) = self.0.as_mut() else {
            return Poll::Ready(());
        };
        let polled = task.as_mut().poll(cx);
        if polled.is_ready() {
            self.0 = None;
        }
        polled
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            spawn_detached(task);
        }
        // Without a runtime the task is dropped here, and its `Finish` reports Abandoned.
    }
}

#[cfg(all(test, shuttle))]
mod shuttle_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    const G0: Generation = Generation::ZERO;

    /// A flight at `generation` that answers `answer` once `gate` is notified.
    fn gated(
        group: &Arc<Group>,
        generation: Generation,
        gate: &Arc<Notify>,
        answer: &'static str,
    ) -> tokio::task::JoinHandle<(LoadResult, Role)> {
        let (group, gate) = (Arc::clone(group), Arc::clone(gate));
        tokio::spawn(async move {
            group
                .run("k", generation, move |_| async move {
                    gate.notified().await;
                    Ok(Value::new(answer))
                })
                .await
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_caller_that_saw_a_newer_generation_does_not_join_an_older_flight() {
        let group = Group::new();
        let (old_gate, new_gate) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let old = gated(&group, G0, &old_gate, "old");
        tokio::task::yield_now().await;
        let g1 = G0.next();
        let new = gated(&group, g1, &new_gate, "new");
        tokio::task::yield_now().await;
        // A caller that saw the old generation joins the newer flight.
        let late = gated(&group, G0, &Arc::new(Notify::new()), "never loaded");
        tokio::task::yield_now().await;

        old_gate.notify_one();
        let (old, role) = old.await.unwrap();
        assert_eq!(
            (old.unwrap().bytes().as_ref(), role),
            (&b"old"[..], Role::Leader)
        );
        assert_eq!(
            group.in_flight(),
            1,
            "the old flight left the new one in place"
        );

        new_gate.notify_one();
        let (new, role) = new.await.unwrap();
        assert_eq!(
            (new.unwrap().bytes().as_ref(), role),
            (&b"new"[..], Role::Leader)
        );
        let (late, role) = late.await.unwrap();
        assert_eq!(
            (late.unwrap().bytes().as_ref(), role),
            (&b"new"[..], Role::Waiter)
        );
        assert_eq!(group.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_load() {
        let group = Group::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let (group, calls) = (Arc::clone(&group), Arc::clone(&calls));
            tasks.push(tokio::spawn(async move {
                group
                    .run("k", G0, |key| async move {
                        assert_eq!(&*key, "k", "the load gets the flight's key");
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(Value::new("v"))
                    })
                    .await
            }));
        }
        let mut leaders = 0;
        for t in tasks {
            let (result, role) = t.await.unwrap();
            assert_eq!(result.unwrap().bytes().as_ref(), b"v");
            leaders += usize::from(role == Role::Leader);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert_eq!(group.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_leader_does_not_strand_the_waiters() {
        let group = Group::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let load = |calls: Arc<AtomicUsize>| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(Value::new("v"))
        };
        let leader = {
            let (group, calls) = (Arc::clone(&group), Arc::clone(&calls));
            tokio::spawn(async move { group.run("k", G0, |_| load(calls)).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(group.in_flight(), 1, "the leader has started");
        let waiter = {
            let (group, calls) = (Arc::clone(&group), Arc::clone(&calls));
            tokio::spawn(async move { group.run("k", G0, |_| load(calls)).await })
        };
        tokio::task::yield_now().await;
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        let (result, role) = waiter.await.unwrap();
        assert_eq!(role, Role::Waiter);
        assert_eq!(result.unwrap().bytes().as_ref(), b"v");
        assert_eq!(calls.load(Ordering::SeqCst), 1, "the load was not repeated");
        assert_eq!(group.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_panicking_load_is_an_error_for_everyone_and_the_key_loads_again() {
        let group = Group::new();
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let group = Arc::clone(&group);
            tasks.push(tokio::spawn(async move {
                group
                    .run("k", G0, |_| async {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        panic!("backend exploded");
                    })
                    .await
                    .0
            }));
        }
        for t in tasks {
            let err = t.await.unwrap().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Panicked);
            assert!(err.message().contains("backend exploded"));
        }
        let (again, _) = group.run("k", G0, |_| async { Ok(Value::new("ok")) }).await;
        assert_eq!(again.unwrap().bytes().as_ref(), b"ok");
    }

    #[tokio::test(start_paused = true)]
    async fn a_load_that_panics_before_its_future_exists_releases_the_key() {
        let group = Group::new();
        let g = Arc::clone(&group);
        let panicked = tokio::spawn(async move {
            g.run("k", G0, |_| -> std::future::Ready<LoadResult> {
                panic!("no future")
            })
            .await
        });
        assert!(panicked.await.unwrap_err().is_panic());
        assert_eq!(group.in_flight(), 0, "the flight was finished by its guard");
        let (again, role) = group.run("k", G0, |_| async { Ok(Value::new("ok")) }).await;
        assert_eq!(
            (again.unwrap().bytes().as_ref(), role),
            (&b"ok"[..], Role::Leader)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_shared() {
        let group = Group::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (group, calls) = (Arc::clone(&group), Arc::clone(&calls));
            tasks.push(tokio::spawn(async move {
                group
                    .run("k", G0, |_| async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        Err(Error::backend("db down"))
                    })
                    .await
                    .0
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap_err(), Error::backend("db down"));
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
