//! Peer health: a circuit breaker per peer, so a sick peer is not asked again on every
//! get.
//!
//! Consecutive failures (or one timeout) open a peer's circuit: requests to it then fail at
//! once with [`ErrorKind::Unavailable`], and the asking galaxy loads the key itself. After a
//! backoff (exponential, jittered, capped) one request is let through as a probe; its
//! success closes the circuit, its failure opens it again for twice as long. The peer stays
//! on the ring: nodes must agree on owners, and a circuit is one node's view.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use crate::batch::{Batching, FetchCounts};
use crate::sync::{Mutex, MutexGuard};
use crate::{BoxFuture, Error, ErrorKind, FetchResult, GalaxyId, RemoteFetcher, WriteOp};

/// When a peer's circuit opens, and how it is probed. Every node of a cluster may use its
/// own.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HealthPolicy {
    failures_to_open: u32,
    timeouts_to_open: u32,
    backoff: Duration,
    max_backoff: Duration,
}

impl Default for HealthPolicy {
    /// 3 consecutive failures or 1 timeout open a circuit; the first probe is let through
    /// after about 1 s (jittered down to half), each failed probe doubles that, up to 30 s.
    fn default() -> Self {
        HealthPolicy {
            failures_to_open: 3,
            timeouts_to_open: 1,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
        }
    }
}

impl HealthPolicy {
    /// Consecutive failed requests (refused, reset, overloaded, garbled) that open the
    /// circuit. Default: 3. At least 1.
    pub fn failures_to_open(mut self, n: u32) -> Self {
        self.failures_to_open = n.max(1);
        self
    }

    /// Consecutive timeouts that open the circuit: a hung peer costs a whole peer timeout
    /// per request, so the default is 1. At least 1.
    pub fn timeouts_to_open(mut self, n: u32) -> Self {
        self.timeouts_to_open = n.max(1);
        self
    }

    /// The first backoff before a probe (default 1 s) and the cap of its doubling
    /// (default 30 s). Each wait is jittered down to as little as half.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.backoff = first;
        self.max_backoff = max.max(first);
        self
    }
}

/// A peer's circuit, as this node sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CircuitState {
    /// Requests go to the peer.
    Up,
    /// The peer failed: requests fail at once until the backoff ends.
    Open,
    /// One request is testing the peer; the others fail at once meanwhile.
    Probing,
}

impl CircuitState {
    /// `up`, `open` or `probing`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Up => "up",
            CircuitState::Open => "open",
            CircuitState::Probing => "probing",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a request may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admission {
    Pass,
    /// The probe numbered so (see `State::probe`).
    Probe(u64),
    Refuse,
}

/// How a request to the peer ended, as far as its health goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    /// The peer answered (a value, NotFound, or an answer that its load failed).
    Answered,
    Failed,
    TimedOut,
}

impl Outcome {
    fn of<T>(result: &Result<T, Error>) -> Outcome {
        match result {
            Ok(_) => Outcome::Answered,
            Err(e) => match e.kind() {
                ErrorKind::Timeout => Outcome::TimedOut,
                ErrorKind::Unavailable
                | ErrorKind::Overloaded
                | ErrorKind::Protocol
                | ErrorKind::Unauthenticated => Outcome::Failed,
                _ => Outcome::Answered,
            },
        }
    }
}

#[derive(Debug)]
struct State {
    circuit: CircuitState,
    failures: u32,
    timeouts: u32,
    backoff: Duration,
    probe_at: Instant,
    /// The number of the latest probe let through. Only that probe, while the circuit is
    /// probing, decides it: an older one still in flight is an ordinary request.
    probe: u64,
}

/// One peer's circuit breaker.
#[derive(Debug)]
pub(crate) struct Circuit {
    url: Arc<str>,
    policy: HealthPolicy,
    state: Mutex<State>,
}

impl Circuit {
    pub(crate) fn new(url: &str, policy: HealthPolicy) -> Self {
        Circuit {
            url: Arc::from(url),
            policy,
            state: Mutex::new(State {
                circuit: CircuitState::Up,
                failures: 0,
                timeouts: 0,
                backoff: policy.backoff,
                probe_at: Instant::now(),
                probe: 0,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.lock().circuit
    }

    fn admit(&self) -> Admission {
        let mut s = self.lock();
        match s.circuit {
            CircuitState::Up => Admission::Pass,
            CircuitState::Open if Instant::now() >= s.probe_at => {
                s.circuit = CircuitState::Probing;
                s.probe += 1;
                Admission::Probe(s.probe)
            }
            CircuitState::Open | CircuitState::Probing => Admission::Refuse,
        }
    }

    fn record(&self, outcome: Outcome, probe: Option<u64>) {
        let mut s = self.lock();
        let probe = s.is_probing(probe);
        if outcome == Outcome::Answered {
            if s.circuit != CircuitState::Up {
                tracing::warn!(peer = %self.url, "peer answered again: circuit closed");
            }
            s.circuit = CircuitState::Up;
            (s.failures, s.timeouts, s.backoff) = (0, 0, self.policy.backoff);
            return;
        }
        match outcome {
            Outcome::TimedOut => s.timeouts += 1,
            _ => s.failures += 1,
        }
        let tripped = s.failures >= self.policy.failures_to_open
            || s.timeouts >= self.policy.timeouts_to_open;
        if probe || (s.circuit == CircuitState::Up && tripped) {
            self.open(&mut s, outcome);
        }
    }

    /// A probe that ended without an outcome: the next request may probe.
    fn release_probe(&self, probe: u64) {
        let mut s = self.lock();
        if s.is_probing(Some(probe)) {
            s.circuit = CircuitState::Open;
            s.probe_at = Instant::now();
        }
    }

    fn open(&self, s: &mut State, outcome: Outcome) {
        let wait = s.backoff.mul_f64(0.5 + fastrand::f64() / 2.0);
        tracing::warn!(peer = %self.url, ?outcome, retry_in = ?wait, "peer failing: circuit opened");
        s.circuit = CircuitState::Open;
        s.probe_at = Instant::now() + wait;
        s.backoff = (s.backoff * 2).min(self.policy.max_backoff);
    }
}

impl State {
    /// Whether `probe` is the probe this circuit is waiting for.
    fn is_probing(&self, probe: Option<u64>) -> bool {
        self.circuit == CircuitState::Probing && probe == Some(self.probe)
    }
}

/// Records a failure if the request is dropped before it ends (its caller timed out), or,
/// for a request whose drop says nothing (a peek), hands the probe to the next request.
struct Pending<'a> {
    circuit: &'a Circuit,
    probe: Option<u64>,
    dropped_fails: bool,
    settled: bool,
}

impl Pending<'_> {
    fn settle(mut self, outcome: Outcome) {
        self.settled = true;
        self.circuit.record(outcome, self.probe);
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        if self.dropped_fails {
            self.circuit.record(Outcome::TimedOut, self.probe);
        } else if let Some(probe) = self.probe {
            self.circuit.release_probe(probe);
        }
    }
}

/// A peer's fetcher behind its circuit breaker: what the peer set hands out.
#[derive(Debug)]
pub(crate) struct Guarded {
    inner: Arc<dyn RemoteFetcher>,
    circuit: Circuit,
    /// What was sent to the peer: counted by the batching fetcher inside when there is
    /// one, else here, one request per fetch.
    counts: Arc<FetchCounts>,
    batching: bool,
}

impl Guarded {
    pub(crate) fn new(inner: Arc<dyn RemoteFetcher>, policy: HealthPolicy) -> Self {
        let circuit = Circuit::new(inner.url(), policy);
        Guarded {
            inner,
            circuit,
            counts: Arc::default(),
            batching: false,
        }
    }

    /// `inner` gathering concurrent fetches into batches ([`Batching`]), behind a circuit.
    pub(crate) fn batching(inner: Arc<dyn RemoteFetcher>, policy: HealthPolicy) -> Self {
        let batching = Batching::new(inner);
        let counts = batching.counts();
        Guarded {
            counts,
            batching: true,
            ..Guarded::new(batching, policy)
        }
    }

    /// Fetch requests sent to the peer, keys they carried, and fetches waiting to be
    /// sent.
    pub(crate) fn sent(&self) -> (u64, u64, u64) {
        let c = &self.counts;
        (
            c.requests.load(Ordering::Relaxed),
            c.keys.load(Ordering::Relaxed),
            c.queued.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn state(&self) -> CircuitState {
        self.circuit.state()
    }

    /// Run `request` if the circuit lets it through, and record how it ended. A request
    /// dropped before it ends counts as a timeout when `dropped_fails`.
    async fn call<T>(
        &self,
        request: impl Future<Output = Result<T, Error>>,
        dropped_fails: bool,
    ) -> Result<T, Error> {
        let probe = match self.circuit.admit() {
            Admission::Pass => None,
            Admission::Probe(probe) => Some(probe),
            Admission::Refuse => {
                return Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("{}: circuit open, not asking", self.inner.url()),
                ));
            }
        };
        self.watch(request, probe, dropped_fails).await
    }

    /// Run `request`, admitted (as the numbered probe when `probe`), and record how it
    /// ended.
    async fn watch<T>(
        &self,
        request: impl Future<Output = Result<T, Error>>,
        probe: Option<u64>,
        dropped_fails: bool,
    ) -> Result<T, Error> {
        let pending = Pending {
            circuit: &self.circuit,
            probe,
            dropped_fails,
            settled: false,
        };
        let result = request.await;
        pending.settle(Outcome::of(&result));
        result
    }
}

impl RemoteFetcher for Guarded {
    fn fetch<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        key: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, FetchResult> {
        // Polled only when the circuit lets it through.
        let request = async move {
            if !self.batching {
                self.counts.sent(1, 1);
            }
            self.inner.fetch(galaxy, key, deadline).await
        };
        Box::pin(self.call(request, true))
    }

    fn peek<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        key: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, FetchResult> {
        // A peek is best effort, with a short deadline of its own: given up on, it says
        // nothing about the peer's health.
        Box::pin(self.call(self.inner.peek(galaxy, key, deadline), false))
    }

    /// Writes go to the peer even when its circuit is open: the circuit opens on slow
    /// answers too (an owner whose backend outlasts the peer timeout), and a write skipped
    /// would leave a peer that may well be reachable serving the old value until the
    /// background retry. A write to a peer that really is down costs its deadline, once
    /// per write; one sent past the open circuit says nothing of the peer's health.
    fn write<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        op: WriteOp<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), Error>> {
        let request = self.inner.write(galaxy, op, deadline);
        Box::pin(async move {
            match self.circuit.admit() {
                Admission::Refuse => request.await,
                Admission::Pass => self.watch(request, None, true).await,
                Admission::Probe(probe) => self.watch(request, Some(probe), true).await,
            }
        })
    }

    fn url(&self) -> &str {
        self.inner.url()
    }
}

#[cfg(all(test, shuttle))]
mod shuttle_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A peer that answers as the test says: `Ok` or an error of a kind, or never.
    #[derive(Debug, Default)]
    struct Scripted {
        answer: Mutex<Option<ErrorKind>>,
        hang: std::sync::atomic::AtomicBool,
        received: AtomicU32,
        writes: AtomicU32,
    }

    impl RemoteFetcher for Scripted {
        fn fetch<'a>(
            &'a self,
            _: GalaxyId<'a>,
            _: &'a str,
            _: Instant,
        ) -> BoxFuture<'a, FetchResult> {
            Box::pin(async move {
                self.received.fetch_add(1, Ordering::SeqCst);
                if self.hang.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                match *self.answer.lock().unwrap() {
                    None => Ok(None),
                    Some(kind) => Err(Error::new(kind, "scripted")),
                }
            })
        }
        fn write<'a>(
            &'a self,
            _: GalaxyId<'a>,
            _: WriteOp<'a>,
            _: Instant,
        ) -> BoxFuture<'a, Result<(), Error>> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(()) })
        }
        fn url(&self) -> &str {
            "http://peer"
        }
    }

    fn guarded() -> (Arc<Scripted>, Guarded) {
        let peer = Arc::new(Scripted::default());
        let policy =
            HealthPolicy::default().backoff(Duration::from_secs(1), Duration::from_secs(4));
        (Arc::clone(&peer), Guarded::new(peer, policy))
    }

    async fn ask(g: &Guarded) -> FetchResult {
        let deadline = Instant::now() + Duration::from_secs(1);
        tokio::time::timeout_at(deadline, g.fetch("g".into(), "k", deadline))
            .await
            .unwrap_or_else(|_| Err(Error::new(ErrorKind::Timeout, "caller gave up")))
    }

    #[tokio::test(start_paused = true)]
    async fn consecutive_failures_open_and_a_probe_closes() {
        let (peer, g) = guarded();
        *peer.answer.lock().unwrap() = Some(ErrorKind::Unavailable);
        for _ in 0..3 {
            assert_eq!(ask(&g).await.unwrap_err().kind(), ErrorKind::Unavailable);
        }
        assert_eq!(g.state(), CircuitState::Open);
        assert_eq!(peer.received.load(Ordering::SeqCst), 3);
        let e = ask(&g).await.unwrap_err();
        assert!(e.message().contains("circuit open"), "{e}");
        assert_eq!(
            peer.received.load(Ordering::SeqCst),
            3,
            "refused without asking"
        );

        *peer.answer.lock().unwrap() = None;
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(ask(&g).await, Ok(None), "the probe went through");
        assert_eq!(g.state(), CircuitState::Up);
        assert_eq!(peer.received.load(Ordering::SeqCst), 4);
    }

    /// Found by the cluster simulation (seed 1): an owner whose backend outlasted the peer
    /// timeout opened its askers' circuits, and a remove then skipped it although it was
    /// reachable, so it served the old value until the background retry.
    #[tokio::test(start_paused = true)]
    async fn writes_reach_a_peer_whose_circuit_is_open() {
        let (peer, g) = guarded();
        *peer.answer.lock().unwrap() = Some(ErrorKind::Timeout);
        for _ in 0..3 {
            ask(&g).await.unwrap_err();
        }
        assert_eq!(g.state(), CircuitState::Open);
        let deadline = Instant::now() + Duration::from_secs(1);
        g.write("g".into(), WriteOp::Remove("k"), deadline)
            .await
            .unwrap();
        assert_eq!(peer.writes.load(Ordering::SeqCst), 1, "the write was sent");
        assert_eq!(g.state(), CircuitState::Open, "and proved nothing");
        assert!(
            ask(&g)
                .await
                .unwrap_err()
                .message()
                .contains("circuit open")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn answers_that_a_load_failed_are_not_peer_failures() {
        let (peer, g) = guarded();
        for kind in [
            ErrorKind::Remote,
            ErrorKind::UnknownGalaxy,
            ErrorKind::VersionMismatch,
        ] {
            *peer.answer.lock().unwrap() = Some(kind);
            for _ in 0..5 {
                ask(&g).await.unwrap_err();
            }
        }
        assert_eq!(g.state(), CircuitState::Up);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_peer_costs_one_timeout_per_backoff_window() {
        let (peer, g) = guarded();
        let g = Arc::new(g);
        peer.hang.store(true, Ordering::SeqCst);
        let started = Instant::now();
        assert_eq!(ask(&g).await.unwrap_err().kind(), ErrorKind::Timeout);
        assert_eq!(
            started.elapsed(),
            Duration::from_secs(1),
            "the first get waits"
        );
        assert_eq!(g.state(), CircuitState::Open);
        let refused_at = Instant::now();
        for _ in 0..100 {
            ask(&g).await.unwrap_err();
        }
        assert_eq!(
            refused_at.elapsed(),
            Duration::ZERO,
            "later gets fail at once"
        );

        // Past the backoff one probe goes through (and hangs); the others fail at once.
        tokio::time::advance(Duration::from_secs(1)).await;
        let probe = tokio::spawn({
            let g = Arc::clone(&g);
            async move { ask(&g).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(g.state(), CircuitState::Probing);
        let e = ask(&g).await.unwrap_err();
        assert!(e.message().contains("circuit open"), "{e}");
        assert_eq!(probe.await.unwrap().unwrap_err().kind(), ErrorKind::Timeout);
        assert_eq!(g.state(), CircuitState::Open);
        assert_eq!(
            peer.received.load(Ordering::SeqCst),
            2,
            "one request per window"
        );

        // The next window is twice as long (jittered down to half: at least 1 s).
        tokio::time::advance(Duration::from_millis(900)).await;
        ask(&g).await.unwrap_err();
        assert_eq!(peer.received.load(Ordering::SeqCst), 2);
        peer.hang.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_millis(1100)).await;
        assert_eq!(ask(&g).await, Ok(None));
        assert_eq!(g.state(), CircuitState::Up);
    }
}
