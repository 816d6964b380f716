//! Backend loads gathered into batch calls, as a database gathers commits (group commit).
//!
//! A load that arrives while no batch call runs goes at once, as a call of its one key: no
//! added latency when the backend is idle. Loads that arrive while calls run wait in a
//! queue, and go together in the next call: a call that ends takes the queue (up to
//! [`MAX_BATCH`] keys) into its next call. A queue that holds a full batch starts a call
//! of its own at once, up to [`MAX_CALLS`] calls at a time. So under load the calls grow to
//! what the backend can take, and no key waits for more than the calls ahead of it.
//!
//! The batcher sits below the backend singleflight: every key it gets is one flight's, so
//! a key is in a call at most once at a time (save a flight that a write replaced: both
//! loads then share one key in one call, which is as fresh as either asked for).
//! A backend that does not batch ([`BackendGetter::batches`](crate::BackendGetter::batches)
//! false) is called once per key, as if there were no batcher.

use std::collections::VecDeque;
use std::collections::hash_map::{Entry, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use crate::backend::{DynBackend, LoadContext, LoadReason};
use crate::unwind::CatchUnwind;
use crate::{Error, ErrorKind, Value};

/// Most keys in one [`get_many`](crate::BackendGetter::get_many) call: large enough that a
/// call's fixed cost (a round trip, a query plan) is spread thin, small enough for every
/// SQL database's bound on the parameters of one statement and for one quick answer.
pub const MAX_BATCH: usize = 256;

/// Most batch calls running at once. One would make a lone key that arrives during a
/// long call wait for all of it, and leave a backend with several connections idle but
/// one; many would give up the gathering that makes batches. Four matches galaxyd's
/// default pool of four database connections: each call holds one.
pub(crate) const MAX_CALLS: usize = 4;

/// What a backend answers for one key.
type Loaded = Result<Option<Value>, Error>;

/// The backend of a galaxy, and its loads waiting for a batch call.
pub(crate) struct Batcher {
    backend: Box<dyn DynBackend>,
    /// Read once: a backend says whether it batches when it is built.
    batches: bool,
    state: Mutex<State>,
    /// Batch calls made so far.
    made: AtomicU64,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Waiting>,
    /// Batch calls running.
    calls: usize,
    /// Of those, calls spawned that have not yet taken their first batch.
    pending: usize,
}

/// A load waiting for a batch call.
struct Waiting {
    key: Arc<str>,
    reply: oneshot::Sender<Loaded>,
    deadline: Option<tokio::time::Instant>,
    reason: LoadReason,
}

impl Batcher {
    pub(crate) fn new(backend: Box<dyn DynBackend>) -> Arc<Self> {
        Arc::new(Batcher {
            batches: backend.batches(),
            backend,
            state: Mutex::default(),
            made: AtomicU64::new(0),
        })
    }

    /// Batch calls made so far (zero for a backend that does not batch).
    pub(crate) fn calls_made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Load `key` from the backend: alone, or within a batch call when it batches.
    pub(crate) async fn load(self: &Arc<Self>, key: &str, cx: &LoadContext) -> Loaded {
        if !self.batches {
            return self.backend.load(key, cx).await;
        }
        let (reply, answer) = oneshot::channel();
        let key = Arc::from(key);
        let start = {
            let mut state = self.state();
            state.queue.push_back(Waiting {
                key,
                reply,
                deadline: cx.deadline(),
                reason: cx.reason(),
            });
            state.start_call()
        };
        if start {
            tokio::spawn(Arc::clone(self).run());
        }
        answer.await.unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Abandoned,
                "the batch call was dropped before it finished (runtime shutting down?)",
            ))
        })
    }

    /// Call the backend with what waits in the queue, again and again, until it is empty.
    /// The first batch is taken when the task first runs, not when it is spawned: the
    /// loads that queue meanwhile (the rest of a `get_many`, other callers' loads in the
    /// same tick) go with it.
    async fn run(self: Arc<Self>) {
        let mut running = Running {
            batcher: &self,
            ended: false,
        };
        let mut first = true;
        loop {
            let batch = {
                let mut state = self.state();
                if first {
                    state.pending = state.pending.saturating_sub(1);
                    first = false;
                }
                if state.queue.is_empty() {
                    // Under the lock: a load that queues from now on finds no call and
                    // starts one.
                    state.calls = state.calls.saturating_sub(1);
                    running.ended = true;
                    return;
                }
                state.take()
            };
            self.call(batch).await;
        }
    }

    /// One `get_many` call for `batch`, each key asked once, answering every waiter; a
    /// panic is a [`ErrorKind::Panicked`] error for all of them.
    async fn call(&self, batch: Vec<Waiting>) {
        self.made.fetch_add(1, Ordering::Relaxed);
        let (slots, asked, loaded) = {
            let (keys, slots) = distinct_keys(&batch);
            let cx = batch_context(&batch);
            // Called within the future, so a panic before it returns one is caught too.
            let call = async { self.backend.load_many(&keys, &cx).await };
            (slots, keys.len(), CatchUnwind(Box::pin(call)).await)
        };
        let answered = loaded.as_ref().map_or(0, Vec::len);
        for (waiting, slot) in batch.into_iter().zip(slots) {
            let answer = match &loaded {
                Err(panicked) => Err(panicked.clone()),
                Ok(values) => values.get(slot).cloned().unwrap_or_else(|| {
                    Err(Error::backend(format!(
                        "the backend answered {answered} of {asked} keys"
                    )))
                }),
            };
            let _ = waiting.reply.send(answer);
        }
    }
}

/// What a batch call is told: the latest deadline of its loads (none if one has none),
/// the first load's reason, a span of its own.
fn batch_context(batch: &[Waiting]) -> LoadContext {
    let deadline = batch
        .iter()
        .map(|w| w.deadline)
        .try_fold(None, |latest: Option<tokio::time::Instant>, d| {
            d.map(|d| Some(latest.map_or(d, |l| l.max(d))))
        })
        .flatten();
    let reason = batch.first().map_or(LoadReason::Client, |w| w.reason);
    LoadContext::new(reason)
        .with_deadline(deadline)
        .with_span(tracing::debug_span!(
            "galaxycache.load_many",
            keys = batch.len()
        ))
}

/// The keys of `batch`, each once, and for each waiting load the index of its key.
fn distinct_keys(batch: &[Waiting]) -> (Vec<&str>, Vec<usize>) {
    let mut keys = Vec::with_capacity(batch.len());
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(batch.len());
    let slots = batch
        .iter()
        .map(|w| match index.entry(&*w.key) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => {
                keys.push(*e.key());
                *e.insert(keys.len() - 1)
            }
        })
        .collect();
    (keys, slots)
}

impl State {
    /// Whether a call starts now (and is counted): when no call runs, or when a full
    /// batch waits and fewer than [`MAX_CALLS`] run.
    fn start_call(&mut self) -> bool {
        let idle = self.calls == 0;
        // A full batch for every call that has yet to take one, and one more.
        let full = self.calls < MAX_CALLS && self.queue.len() >= MAX_BATCH * (self.pending + 1);
        if idle || full {
            self.calls += 1;
            self.pending += 1;
        }
        idle || full
    }

    /// The next batch: the first [`MAX_BATCH`] waiting loads.
    fn take(&mut self) -> Vec<Waiting> {
        let n = self.queue.len().min(MAX_BATCH);
        self.queue.drain(..n).collect()
    }
}

/// A running batch call; if its task is dropped before the queue is empty (the runtime
/// shuts down), the call no longer counts, so the next load starts one.
struct Running<'a> {
    batcher: &'a Batcher,
    ended: bool,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        if !self.ended {
            let mut state = self.batcher.state();
            state.calls = state.calls.saturating_sub(1);
        }
    }
}
