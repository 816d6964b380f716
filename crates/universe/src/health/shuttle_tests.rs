//! The peer circuit under the model checker: requests that pass, probe, succeed, fail, time
//! out or are dropped, from several tasks at once while time moves on, against a model of
//! what the circuit must do.

use std::time::Duration;

use shuttle::future;
use shuttle::rand::{Rng, thread_rng};
use shuttle::scheduler::ReplayScheduler;
use shuttle::sync::Arc;
use shuttle::{Config, Runner};

use super::{Admission, Circuit, CircuitState, HealthPolicy, Outcome, Pending};
use crate::explore;
use crate::sync::Mutex;

const FAILURES_TO_OPEN: u32 = 2;
const BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// Longer than any backoff: a probe is due after one step, whatever the jitter.
const STEP: Duration = Duration::from_secs(10);
const TASKS: usize = 3;
const REQUESTS: usize = 3;

/// What the circuit must have counted, kept beside it.
#[derive(Debug, Default)]
struct Model {
    /// The request whose outcome decides a probing circuit: let through as its probe, not
    /// yet ended, and the circuit not closed by another's answer since.
    probe: Option<usize>,
    /// Failures and timeouts since the last answer.
    failures: u32,
    timeouts: u32,
}

/// A circuit whose every operation runs under the model's lock, so each transition is seen
/// with the state before and after it. The circuit takes its own lock once per operation,
/// so this hides no interleaving of the circuit's own.
struct Harness {
    circuit: Circuit,
    model: Mutex<Model>,
}

impl Harness {
    fn admit(&self, request: usize) -> Admission {
        let mut model = self.model.lock().unwrap();
        let before = self.circuit.state();
        let admission = self.circuit.admit();
        match admission {
            Admission::Pass => assert_eq!(before, CircuitState::Up, "passed a closed circuit"),
            Admission::Refuse => assert_ne!(before, CircuitState::Up, "refused by an up circuit"),
            Admission::Probe(_) => {
                assert_eq!(
                    before,
                    CircuitState::Open,
                    "probed a circuit that was not open"
                );
                assert_eq!(model.probe, None, "two probes in flight");
                model.probe = Some(request);
            }
        }
        self.check(&model);
        admission
    }

    /// Ends a request with `outcome`, or drops it unsettled when `None`.
    fn end(&self, request: usize, pending: Pending<'_>, outcome: Option<Outcome>) {
        let mut model = self.model.lock().unwrap();
        let dropped_fails = pending.dropped_fails;
        let before = self.circuit.state();
        let probe = model.probe == Some(request);
        if probe {
            model.probe = None;
        }
        match outcome {
            Some(outcome) => pending.settle(outcome),
            None => drop(pending),
        }
        let after = self.circuit.state();
        let counted = outcome.or(dropped_fails.then_some(Outcome::TimedOut));
        match counted {
            Some(Outcome::Answered) => {
                (model.failures, model.timeouts) = (0, 0);
                assert_eq!(after, CircuitState::Up, "an answer closes the circuit");
            }
            Some(Outcome::Failed) => model.failures += 1,
            Some(Outcome::TimedOut) => model.timeouts += 1,
            None => {}
        }
        if before != CircuitState::Up && after == CircuitState::Up {
            assert_eq!(counted, Some(Outcome::Answered), "closed without an answer");
            model.probe = None;
        }
        if before == CircuitState::Probing && !probe && counted != Some(Outcome::Answered) {
            assert_eq!(
                after, before,
                "only its probe or an answer moves a probing circuit"
            );
        }
        if probe && counted.is_some_and(|o| o != Outcome::Answered) {
            assert_eq!(
                after,
                CircuitState::Open,
                "a failed probe reopens the circuit"
            );
        }
        self.check(&model);
    }

    /// What holds between any two operations.
    fn check(&self, model: &Model) {
        let s = self.circuit.lock();
        assert_eq!(
            (s.failures, s.timeouts),
            (model.failures, model.timeouts),
            "the circuit's counts"
        );
        assert!(
            (BACKOFF..=MAX_BACKOFF).contains(&s.backoff),
            "backoff {:?} out of bounds",
            s.backoff
        );
        if s.circuit == CircuitState::Up {
            assert!(
                s.failures < FAILURES_TO_OPEN && s.timeouts == 0,
                "up though tripped: {s:?}"
            );
            assert_eq!(s.backoff, BACKOFF, "an up circuit's backoff starts over");
        }
        assert_eq!(
            s.circuit == CircuitState::Probing,
            model.probe.is_some(),
            "probing exactly while its probe is in flight: {s:?}, {model:?}"
        );
    }
}

/// One task's requests: each a fetch (a drop counts as a timeout) or a peek (a drop says
/// nothing), ending in an answer, a failure, a timeout or a drop, as the scheduler's
/// random source picks.
async fn requests(harness: Arc<Harness>, task: usize) {
    for request in (0..REQUESTS).map(|r| task * REQUESTS + r) {
        let probe = match harness.admit(request) {
            Admission::Refuse => continue,
            Admission::Pass => None,
            Admission::Probe(probe) => Some(probe),
        };
        let (dropped_fails, end) = {
            let mut rng = thread_rng();
            (rng.gen_bool(0.5), rng.gen_range(0..4))
        };
        let pending = Pending {
            circuit: &harness.circuit,
            probe,
            dropped_fails,
            settled: false,
        };
        // The request is in flight: anything may happen meanwhile.
        future::yield_now().await;
        let outcome = [Outcome::Answered, Outcome::Failed, Outcome::TimedOut]
            .get(end)
            .copied();
        harness.end(request, pending, outcome);
    }
}

/// Three tasks of requests while the clock moves on twice.
fn requests_while_time_passes() {
    // The circuit reads tokio's clock: a paused one, moved on by a task of the test.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    let _clock = runtime.enter();
    let policy = HealthPolicy::default()
        .failures_to_open(FAILURES_TO_OPEN)
        .timeouts_to_open(1)
        .backoff(BACKOFF, MAX_BACKOFF);
    let harness = Arc::new(Harness {
        circuit: Circuit::new("http://peer", policy),
        model: Mutex::new(Model::default()),
    });
    future::block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| future::spawn(requests(Arc::clone(&harness), task)))
            .collect();
        for _ in 0..2 {
            future::yield_now().await;
            tokio::time::advance(STEP).await;
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
    let model = harness.model.lock().unwrap();
    assert_eq!(model.probe, None, "every probe ended");
    harness.check(&model);
}

#[test]
fn shuttle_the_circuit_keeps_its_invariants() {
    explore(requests_while_time_passes);
}

/// Found by PCT among 30,000 schedules: a probe still in flight after another request's
/// answer had closed the circuit and new failures had opened it again was still taken for
/// the probe, so the next window let a second probe through (and a stale probe's end could
/// reopen or release the circuit its successor was probing).
#[test]
fn shuttle_regression_a_stale_probe_does_not_decide_a_later_window() {
    // The schedule ends where the failure was: with the fix the run goes on past it.
    let mut scheduler = ReplayScheduler::new_from_encoded(
        "91028d01e0838aa2afacfdf758802449920e9224497ed8b66d7b499224499224499324499224\
         018b24c96ddbb66ddbb6ed972449922401b424699224490000000000",
    );
    scheduler.set_allow_incomplete();
    Runner::new(scheduler, Config::default()).run(requests_while_time_passes);
}
