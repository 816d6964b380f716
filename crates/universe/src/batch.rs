//! Implicit batching of peer fetches: concurrent fetches to one peer are gathered into
//! [`RemoteFetcher::fetch_many`] requests, adaptively.
//!
//! A fetch that finds fewer than [`MAX_BATCHES_IN_FLIGHT`] requests on their way to the peer goes
//! at once, alone: no window, no added latency when there is no concurrency. A fetch that
//! finds them all busy waits in a queue, and the next request to end takes the queue with
//! it, up to [`MAX_BATCH`] keys of one galaxy, as one batch (group commit). So batches
//! grow with the load and shrink to one key when it is light.
//!
//! A caller that knows it asks for many keys at once (`Galaxy::get_many`) polls its gets
//! within [`gathered`]: the fetches they start in one poll all queue, and go out together
//! when the poll ends, one request per peer and galaxy for up to [`MAX_BATCH_KEYS`] keys.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::fetch::fetch_each;
use crate::trace::{TraceContext, current_trace, with_trace};
use crate::{BoxFuture, Error, ErrorKind, FetchResult, GalaxyId, RemoteFetcher, WriteOp};

/// Fetch requests (single or batch) a node has on their way to one peer at once; more
/// fetches queue and go together in the next request.
pub const MAX_BATCHES_IN_FLIGHT: usize = 4;
/// Most keys in one batch request, sent or served.
pub const MAX_BATCH_KEYS: usize = 256;

/// A fetcher that gathers concurrent fetches into batches; see the module doc.
pub(crate) struct Batching {
    inner: Arc<dyn RemoteFetcher>,
    me: Weak<Batching>,
    state: Mutex<State>,
    counts: Arc<FetchCounts>,
}

/// What a batching fetcher has sent its peer: requests (single or batch) and keys; and
/// the fetches waiting in its queue now.
#[derive(Debug, Default)]
pub(crate) struct FetchCounts {
    pub(crate) requests: AtomicU64,
    pub(crate) keys: AtomicU64,
    pub(crate) queued: AtomicU64,
}

impl FetchCounts {
    pub(crate) fn sent(&self, requests: usize, keys: usize) {
        self.requests.fetch_add(requests as u64, Ordering::Relaxed);
        self.keys.fetch_add(keys as u64, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct State {
    in_flight: usize,
    queue: VecDeque<Waiting>,
}

/// A fetch waiting for a request to take it.
struct Waiting {
    galaxy: OwnedGalaxy,
    key: Arc<str>,
    deadline: Instant,
    /// The trace context of the get that waits (a batch carries its first key's).
    trace: Option<TraceContext>,
    answer: oneshot::Sender<FetchResult>,
}

#[derive(Clone, PartialEq, Eq)]
struct OwnedGalaxy {
    name: Arc<str>,
    version: u32,
}

impl OwnedGalaxy {
    fn id(&self) -> GalaxyId<'_> {
        GalaxyId::new(&self.name, self.version)
    }
}

impl fmt::Debug for Batching {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Batching")
            .field("peer", &self.inner.url())
            .finish_non_exhaustive()
    }
}

impl Batching {
    pub(crate) fn new(inner: Arc<dyn RemoteFetcher>) -> Arc<Self> {
        Arc::new_cyclic(|me| Batching {
            inner,
            me: me.clone(),
            state: Mutex::new(State::default()),
            counts: Arc::default(),
        })
    }

    /// What this fetcher has sent, counted as it goes.
    pub(crate) fn counts(&self) -> Arc<FetchCounts> {
        Arc::clone(&self.counts)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn fetch_one(&self, galaxy: GalaxyId<'_>, key: &str, deadline: Instant) -> FetchResult {
        let gathering = self.join_gathering();
        let waiting = {
            let mut state = self.state();
            if !gathering && state.in_flight < MAX_BATCHES_IN_FLIGHT {
                state.in_flight += 1;
                None
            } else {
                let (answer, answered) = oneshot::channel();
                self.counts.queued.fetch_add(1, Ordering::Relaxed);
                state.queue.push_back(Waiting {
                    galaxy: OwnedGalaxy {
                        name: Arc::from(galaxy.name),
                        version: galaxy.version,
                    },
                    key: Arc::from(key),
                    deadline,
                    trace: current_trace(),
                    answer,
                });
                Some(answered)
            }
        };
        match waiting {
            None => {
                let _slot = Slot(self);
                self.counts.sent(1, 1);
                self.inner.fetch(galaxy, key, deadline).await
            }
            // A batch that ends without answering (its task was dropped with the runtime)
            // is no answer from the peer.
            Some(answered) => answered.await.unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Unavailable,
                    format!(
                        "{}: the batch carrying this key was dropped",
                        self.inner.url()
                    ),
                ))
            }),
        }
    }

    /// Whether this thread is within a [`gathered`] poll; if so, this fetcher's queue is
    /// sent when the poll ends.
    fn join_gathering(&self) -> bool {
        GATHERING
            .try_with(|gathering| match &mut *gathering.borrow_mut() {
                Some(fetchers) => {
                    if !fetchers.iter().any(|f| std::ptr::eq(f.as_ref(), self)) {
                        fetchers.extend(self.me.upgrade());
                    }
                    true
                }
                None => false,
            })
            .unwrap_or(false)
    }

    /// Sends what waits in the queue, as batches, in the slots that are free.
    fn send_queued(&self) {
        loop {
            let batch = {
                let mut state = self.state();
                if state.in_flight >= MAX_BATCHES_IN_FLIGHT {
                    return;
                }
                let batch = take_batch(&mut state.queue);
                if batch.is_empty() {
                    return;
                }
                state.in_flight += 1;
                self.counts
                    .queued
                    .fetch_sub(batch.len() as u64, Ordering::Relaxed);
                batch
            };
            self.spawn_send(batch);
        }
    }

    /// Sends `batch` from a task of its own, in a slot already taken for it.
    fn spawn_send(&self, batch: Vec<Waiting>) {
        match (self.me.upgrade(), tokio::runtime::Handle::try_current()) {
            (Some(me), Ok(runtime)) => {
                runtime.spawn(async move { me.send(batch).await });
            }
            // The fetcher, or the runtime, is going away: nobody can send the batch, and
            // its fetches learn so as their senders drop.
            _ => self.state().in_flight -= 1,
        }
    }

    /// A request ended: its slot goes to the queue's next batch, if any, sent from a task
    /// of its own (the fetch that ended returns to its caller now).
    fn request_ended(&self) {
        let batch = {
            let mut state = self.state();
            let batch = take_batch(&mut state.queue);
            if batch.is_empty() {
                state.in_flight -= 1;
            }
            self.counts
                .queued
                .fetch_sub(batch.len() as u64, Ordering::Relaxed);
            batch
        };
        if !batch.is_empty() {
            self.spawn_send(batch);
        }
    }

    /// Send `batch` (one galaxy's keys) in the trace context of its first key, answer
    /// every key, then pass the slot on.
    async fn send(self: Arc<Self>, batch: Vec<Waiting>) {
        let trace = batch.first().and_then(|w| w.trace);
        with_trace(trace, self.send_traced(batch)).await;
    }

    async fn send_traced(self: Arc<Self>, batch: Vec<Waiting>) {
        let _slot = Slot(&self);
        let galaxy = batch[0].galaxy.clone();
        let deadline = batch
            .iter()
            .map(|w| w.deadline)
            .max()
            .unwrap_or_else(Instant::now);
        let keys: Vec<Arc<str>> = batch.iter().map(|w| Arc::clone(&w.key)).collect();
        let results = match &keys[..] {
            [key] => {
                self.counts.sent(1, 1);
                Ok(vec![self.inner.fetch(galaxy.id(), key, deadline).await])
            }
            keys => self.fetch_many(galaxy.id(), keys, deadline).await,
        };
        match results {
            Ok(results) => {
                for (waiting, result) in batch.into_iter().zip(results) {
                    let _ = waiting.answer.send(result);
                }
            }
            Err(e) => {
                for waiting in batch {
                    let _ = waiting.answer.send(Err(e.clone()));
                }
            }
        }
    }

    /// One batch request; when the peer cannot take batches (an older build, a Go node,
    /// a batch over its bounds), the keys one by one, at once.
    async fn fetch_many(
        &self,
        galaxy: GalaxyId<'_>,
        keys: &[Arc<str>],
        deadline: Instant,
    ) -> Result<Vec<FetchResult>, Error> {
        self.counts.sent(1, keys.len());
        match self.inner.fetch_many(galaxy, keys, deadline).await {
            Ok(results) if results.len() == keys.len() => Ok(results),
            Ok(results) => Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "{}: {} answers to a batch of {} keys",
                    self.inner.url(),
                    results.len(),
                    keys.len()
                ),
            )),
            Err(e) if matches!(e.kind(), ErrorKind::Unsupported | ErrorKind::TooLarge) => {
                self.counts.sent(keys.len(), 0);
                Ok(fetch_each(&*self.inner, galaxy, keys, deadline).await)
            }
            Err(e) => Err(e),
        }
    }
}

thread_local! {
    /// While a [`gathered`] future is polled on this thread: the fetchers its fetches
    /// queued in.
    static GATHERING: RefCell<Option<Vec<Arc<Batching>>>> = const { RefCell::new(None) };
}

/// Polls `future` so that the peer fetches it starts within one poll go out together:
/// they queue instead of going at once, and when the poll ends each peer's queue is sent
/// as batches of up to [`MAX_BATCH_KEYS`] keys, in the free request slots. For a caller
/// that asks for many keys at once; a lone get needs nothing of this (it goes at once).
pub async fn gathered<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    std::future::poll_fn(|cx| {
        let outer = GATHERING
            .try_with(|g| {
                let mut g = g.borrow_mut();
                let outer = g.is_none();
                if outer {
                    *g = Some(Vec::new());
                }
                outer
            })
            .unwrap_or(false);
        let poll = future.as_mut().poll(cx);
        if outer {
            let fetchers = GATHERING
                .try_with(|g| g.borrow_mut().take())
                .ok()
                .flatten()
                .unwrap_or_default();
            for fetcher in fetchers {
                fetcher.send_queued();
            }
        }
        poll
    })
    .await
}

/// A request's place among the [`MAX_BATCHES_IN_FLIGHT`]: passed on when the request ends, or is
/// dropped before it does (its caller gave up).
struct Slot<'a>(&'a Batching);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The first waiting fetch's galaxy's keys, in order, up to [`MAX_BATCH`]; the others stay.
fn take_batch(queue: &mut VecDeque<Waiting>) -> Vec<Waiting> {
    let Some(first) = queue.front() else {
        return Vec::new();
    };
    let galaxy = first.galaxy.clone();
    let mut batch = Vec::new();
    let mut rest = VecDeque::with_capacity(queue.len());
    for waiting in queue.drain(..) {
        if batch.len() < MAX_BATCH_KEYS && waiting.galaxy == galaxy {
            batch.push(waiting);
        } else {
            rest.push_back(waiting);
        }
    }
    *queue = rest;
    batch
}

impl RemoteFetcher for Batching {
    fn fetch<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        key: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, FetchResult> {
        Box::pin(self.fetch_one(galaxy, key, deadline))
    }

    fn fetch_many<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        keys: &'a [Arc<str>],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Vec<FetchResult>, Error>> {
        self.inner.fetch_many(galaxy, keys, deadline)
    }

    fn peek<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        key: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, FetchResult> {
        self.inner.peek(galaxy, key, deadline)
    }

    fn write<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        op: WriteOp<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), Error>> {
        self.inner.write(galaxy, op, deadline)
    }

    fn url(&self) -> &str {
        self.inner.url()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::*;
    use crate::Value;

    /// A peer whose requests each wait for a permit of `gate`, and that records them: the
    /// keys of every single fetch and the size of every batch.
    #[derive(Debug)]
    struct Gated {
        gate: Semaphore,
        singles: AtomicUsize,
        batches: Mutex<Vec<usize>>,
    }

    impl Gated {
        fn new(open: bool) -> Arc<Self> {
            Arc::new(Gated {
                gate: Semaphore::new(if open { Semaphore::MAX_PERMITS } else { 0 }),
                singles: AtomicUsize::new(0),
                batches: Mutex::new(Vec::new()),
            })
        }

        fn answer(key: &str) -> FetchResult {
            match key {
                "missing" => Ok(None),
                _ => Ok(Some(Value::new(key.to_owned()))),
            }
        }
    }

    impl RemoteFetcher for Gated {
        fn fetch<'a>(
            &'a self,
            _: GalaxyId<'a>,
            key: &'a str,
            _: Instant,
        ) -> BoxFuture<'a, FetchResult> {
            Box::pin(async move {
                self.singles.fetch_add(1, Ordering::SeqCst);
                self.gate.acquire().await.unwrap().forget();
                Self::answer(key)
            })
        }

        fn fetch_many<'a>(
            &'a self,
            _: GalaxyId<'a>,
            keys: &'a [Arc<str>],
            _: Instant,
        ) -> BoxFuture<'a, Result<Vec<FetchResult>, Error>> {
            Box::pin(async move {
                self.batches.lock().unwrap().push(keys.len());
                self.gate.acquire().await.unwrap().forget();
                Ok(keys.iter().map(|k| Self::answer(k)).collect())
            })
        }

        fn url(&self) -> &str {
            "http://peer"
        }
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_fetch_goes_at_once_and_alone() {
        let peer = Gated::new(true);
        let batching = Batching::new(peer.clone());
        let value = batching.fetch("g".into(), "k", soon()).await.unwrap();
        assert_eq!(value.unwrap().bytes().as_ref(), b"k");
        assert_eq!(
            batching.fetch("g".into(), "missing", soon()).await.unwrap(),
            None
        );
        assert_eq!(peer.singles.load(Ordering::SeqCst), 2);
        assert!(peer.batches.lock().unwrap().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn fetches_that_find_every_slot_busy_go_together() {
        let peer = Gated::new(false);
        let batching = Batching::new(peer.clone());
        let mut fetches = tokio::task::JoinSet::new();
        for i in 0..(MAX_BATCHES_IN_FLIGHT + 600) {
            let batching = Arc::clone(&batching);
            fetches.spawn(async move {
                let key = format!("k{i}");
                let value = batching.fetch("g".into(), &key, soon()).await.unwrap();
                assert_eq!(value.unwrap().bytes().as_ref(), key.as_bytes());
            });
        }
        // Every fetch has run up to its request or its place in the queue.
        while batching.state().queue.len() < 600 {
            tokio::task::yield_now().await;
        }
        assert_eq!(peer.singles.load(Ordering::SeqCst), MAX_BATCHES_IN_FLIGHT);
        peer.gate.add_permits(Semaphore::MAX_PERMITS / 2);
        while fetches.join_next().await.transpose().unwrap().is_some() {}

        let batches = peer.batches.lock().unwrap().clone();
        assert_eq!(batches.iter().sum::<usize>(), 600, "{batches:?}");
        assert!(batches.iter().all(|&n| n <= MAX_BATCH_KEYS), "{batches:?}");
        assert!(batches.len() < 600 / 2, "batched: {batches:?}");
        assert_eq!(batching.state().in_flight, 0, "every slot given back");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fetch_given_up_on_frees_its_slot() {
        let peer = Gated::new(false);
        let batching = Batching::new(peer.clone());
        let mut hung = Vec::new();
        for i in 0..MAX_BATCHES_IN_FLIGHT {
            let batching = Arc::clone(&batching);
            hung.push(tokio::spawn(async move {
                batching.fetch("g".into(), &format!("h{i}"), soon()).await
            }));
        }
        while peer.singles.load(Ordering::SeqCst) < MAX_BATCHES_IN_FLIGHT {
            tokio::task::yield_now().await;
        }
        for task in hung {
            task.abort();
            assert!(task.await.unwrap_err().is_cancelled());
        }
        assert_eq!(batching.state().in_flight, 0);
        peer.gate.add_permits(1);
        let value = batching.fetch("g".into(), "k", soon()).await.unwrap();
        assert!(value.is_some(), "went alone, at once");
        assert!(peer.batches.lock().unwrap().is_empty());
    }
}
