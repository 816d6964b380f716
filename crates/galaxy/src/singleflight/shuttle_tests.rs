//! The singleflight under the model checker: one load for concurrent callers, a cancelled
//! leader that strands nobody, a panic that reaches every waiter, and no caller answered by
//! a flight older than the generation it saw.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use shuttle::future::{self, JoinHandle};
use shuttle::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::Semaphore;

use super::{Group, LoadResult, Role};
use crate::fence::Generation;
use crate::sync::explore;
use crate::{ErrorKind, Value};

const G0: Generation = Generation::ZERO;
const CALLERS: usize = 3;

/// Holds every load until all the expected callers have joined their flight, so the callers
/// are concurrent by construction: none can arrive after the load ended.
struct Arrivals {
    arrived: AtomicUsize,
    expected: usize,
    gate: Semaphore,
}

impl Arrivals {
    fn new(expected: usize) -> Arc<Self> {
        Arc::new(Arrivals {
            arrived: AtomicUsize::new(0),
            expected,
            gate: Semaphore::new(0),
        })
    }

    fn arrive(&self) {
        if self.arrived.fetch_add(1, Ordering::SeqCst) + 1 == self.expected {
            self.gate.add_permits(CALLERS);
        }
    }

    async fn all_arrived(&self) {
        let permit = self.gate.acquire().await;
        assert!(permit.is_ok(), "the gate is never closed");
    }
}

/// Polls `F`, and tells `arrivals` once its first poll has returned: a caller of
/// [`Group::run`] has joined (or led) its flight by then.
struct Arriving<F> {
    inner: Pin<Box<F>>,
    arrive: Option<Box<dyn FnOnce() + Send>>,
}

impl<F: Future> Future for Arriving<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let polled = self.inner.as_mut().poll(cx);
        if let Some(arrive) = self.arrive.take() {
            arrive();
        }
        polled
    }
}

/// A caller of `key` at `generation` whose load counts itself in `loads`, waits for
/// `arrivals`, then answers `load N` (N its number) or panics.
fn caller(
    group: &Arc<Group>,
    generation: Generation,
    loads: &Arc<AtomicUsize>,
    arrive: impl FnOnce() + Send + 'static,
    arrivals: &Arc<Arrivals>,
    panics: bool,
) -> JoinHandle<(LoadResult, Role)> {
    let (group, loads, arrivals) = (Arc::clone(group), Arc::clone(loads), Arc::clone(arrivals));
    let run = async move {
        group
            .run("k", generation, move |_| async move {
                let n = loads.fetch_add(1, Ordering::SeqCst) + 1;
                arrivals.all_arrived().await;
                assert!(!panics, "backend exploded");
                Ok(Value::new(format!("load {n}")))
            })
            .await
    };
    future::spawn(Arriving {
        inner: Box::pin(run),
        arrive: Some(Box::new(arrive)),
    })
}

/// A group, its count of loads, and the arrivals its loads wait for.
struct Callers {
    group: Arc<Group>,
    loads: Arc<AtomicUsize>,
    arrivals: Arc<Arrivals>,
}

impl Callers {
    fn new() -> Self {
        Callers {
            group: Group::new(),
            loads: Arc::new(AtomicUsize::new(0)),
            arrivals: Arrivals::new(CALLERS),
        }
    }

    /// `n` callers of `k` at [`G0`], each arriving at its first poll.
    fn spawn(&self, n: usize, panics: bool) -> Vec<JoinHandle<(LoadResult, Role)>> {
        (0..n)
            .map(|_| {
                let arrivals = Arc::clone(&self.arrivals);
                let arrive = move || arrivals.arrive();
                caller(&self.group, G0, &self.loads, arrive, &self.arrivals, panics)
            })
            .collect()
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }
}

fn text(result: &LoadResult) -> Result<&[u8], ErrorKind> {
    result
        .as_ref()
        .map(|v| v.bytes().as_ref())
        .map_err(|e| e.kind())
}

#[test]
fn shuttle_concurrent_callers_share_one_load() {
    explore(|| {
        future::block_on(async {
            let callers = Callers::new();
            let mut leaders = 0;
            for handle in callers.spawn(CALLERS, false) {
                let (result, role) = handle.await.unwrap();
                assert_eq!(text(&result), Ok(&b"load 1"[..]), "every caller gets it");
                leaders += usize::from(role == Role::Leader);
            }
            assert_eq!(callers.loads(), 1, "one load");
            assert_eq!(leaders, 1, "one leader");
            assert_eq!(callers.group.in_flight(), 0, "the flight is gone");
        });
    });
}

#[test]
fn shuttle_a_cancelled_caller_strands_no_waiter() {
    explore(|| {
        future::block_on(async {
            let callers = Callers::new();
            // The cancelled caller arrives once: when its first poll returns, or when it has
            // ended (cancelled before a first poll, it never joins).
            let settled = Arc::new(AtomicBool::new(false));
            let settle = {
                let (settled, arrivals) = (Arc::clone(&settled), Arc::clone(&callers.arrivals));
                move || {
                    if !settled.swap(true, Ordering::SeqCst) {
                        arrivals.arrive();
                    }
                }
            };
            let (group, loads, arrivals) = (&callers.group, &callers.loads, &callers.arrivals);
            let cancelled = caller(group, G0, loads, settle.clone(), arrivals, false);
            let others = callers.spawn(CALLERS - 1, false);
            cancelled.abort();
            if let Ok((result, _)) = cancelled.await {
                assert_eq!(
                    text(&result),
                    Ok(&b"load 1"[..]),
                    "it ended before its cancel"
                );
            }
            settle();
            for handle in others {
                let (result, _) = handle.await.unwrap();
                assert_eq!(text(&result), Ok(&b"load 1"[..]), "a waiter got the value");
            }
            assert_eq!(callers.loads(), 1, "the load was not repeated");
        });
    });
}

#[test]
fn shuttle_a_panicking_load_is_an_error_for_every_caller() {
    explore(|| {
        future::block_on(async {
            let callers = Callers::new();
            for handle in callers.spawn(CALLERS, true) {
                let (result, _) = handle.await.unwrap();
                assert_eq!(text(&result), Err(ErrorKind::Panicked));
            }
            assert_eq!(callers.loads(), 1, "one load");
            assert_eq!(callers.group.in_flight(), 0, "the key is free again");
            let (again, role) = callers
                .group
                .run("k", G0, |_| async { Ok(Value::new("ok")) })
                .await;
            assert_eq!((text(&again), role), (Ok(&b"ok"[..]), Role::Leader));
        });
    });
}

#[test]
fn shuttle_no_caller_is_answered_by_a_flight_older_than_its_generation() {
    explore(|| {
        future::block_on(async {
            let group = Group::new();
            let callers: Vec<_> = [G0, G0.next(), G0, G0.next()]
                .into_iter()
                .map(|generation| {
                    let group = Arc::clone(&group);
                    let run = async move {
                        let (result, _) = group
                            .run("k", generation, move |_| async move {
                                future::yield_now().await;
                                Ok(Value::new(if generation == G0 { "old" } else { "new" }))
                            })
                            .await;
                        (generation, result)
                    };
                    future::spawn(run)
                })
                .collect();
            for handle in callers {
                let (generation, result) = handle.await.unwrap();
                if generation > G0 {
                    assert_eq!(
                        text(&result),
                        Ok(&b"new"[..]),
                        "a newer caller got an old load"
                    );
                } else {
                    assert!(result.is_ok(), "{result:?}");
                }
            }
        });
    });
}
