//! Faults on a schedule drawn from the seed, applied to the simulated cluster between steps,
//! and what the schedule tells the checker.

use std::time::Duration;

use crate::history::{Conditions, Node, Window};
use crate::sim::{
    BackendMode, FALLBACK_TTL, HOT_TTL, MAX_BACKEND_DELAY, MAX_TTL, PEER_TIMEOUT, World,
};

/// One fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// One node cut off from every other.
    Isolate(Node),
    /// The cluster cut in two: these nodes on one side, the rest on the other.
    Halves(Vec<Node>),
    /// Every message to and from the node takes up to this long.
    Delay(Node, Duration),
    /// The node's links drop messages (turmoil cuts a link at random and heals it at
    /// random).
    Loss(Node),
    /// The node crashes (its process and caches are gone) and restarts at the fault's end.
    Crash(Node),
    /// The node is taken off every node's ring, and put back at the fault's end.
    RingOut(Node),
    /// The backend answers after this long.
    SlowBackend(Duration),
    /// Every backend load fails.
    FailingBackend,
}

impl Fault {
    /// The fault's kind, for counting.
    pub fn kind(&self) -> &'static str {
        match self {
            Fault::Isolate(_) => "isolate",
            Fault::Halves(_) => "halves",
            Fault::Delay(..) => "delay",
            Fault::Loss(_) => "loss",
            Fault::Crash(_) => "crash",
            Fault::RingOut(_) => "ring",
            Fault::SlowBackend(_) => "slow-backend",
            Fault::FailingBackend => "failing-backend",
        }
    }

    /// Whether some node may miss a write while it lasts. A slow or failing backend
    /// does not: every node is still reachable, and writes go to peers whose circuits
    /// opened on slow answers.
    fn cuts_reach(&self) -> bool {
        !matches!(self, Fault::SlowBackend(_) | Fault::FailingBackend)
    }
}

/// Every kind, as a schedule draws them.
pub const KINDS: [&str; 8] = [
    "isolate",
    "halves",
    "delay",
    "loss",
    "crash",
    "ring",
    "slow-backend",
    "failing-backend",
];

/// A fault and when it lasts.
#[derive(Clone, Debug)]
struct Planned {
    start: Duration,
    end: Duration,
    fault: Fault,
}

/// The faults of one run, one after the other (they never overlap, so each is undone
/// exactly).
#[derive(Clone, Debug, Default)]
pub struct Schedule {
    planned: Vec<Planned>,
}

/// How long after a fault ends the cluster counts as settled again: circuits opened by the
/// fault have been probed (backoff at most 400 ms) and requests it delayed have ended.
const SETTLE: Duration = Duration::from_secs(1);

impl Schedule {
    /// Draw 1 to 3 faults for a cluster of `nodes`, in the first second or so of the run,
    /// where the clients are busy.
    pub fn draw(rng: &mut fastrand::Rng, nodes: usize) -> Self {
        let mut planned = Vec::new();
        let mut at = Duration::from_millis(rng.u64(20..200));
        for _ in 0..rng.usize(1..=3) {
            let length = Duration::from_millis(rng.u64(100..600));
            let node = rng.usize(0..nodes);
            let fault = match rng.usize(0..KINDS.len()) {
                0 => Fault::Isolate(node),
                1 => {
                    let mut side: Vec<Node> = (0..nodes).filter(|_| rng.bool()).collect();
                    if side.is_empty() || side.len() == nodes {
                        side = vec![node];
                    }
                    Fault::Halves(side)
                }
                2 => Fault::Delay(node, Duration::from_millis(rng.u64(20..400))),
                3 => Fault::Loss(node),
                4 => Fault::Crash(node),
                5 => Fault::RingOut(node),
                6 => Fault::SlowBackend(Duration::from_millis(
                    rng.u64(10..=MAX_BACKEND_DELAY.as_millis() as u64),
                )),
                _ => Fault::FailingBackend,
            };
            let end = at.saturating_add(length);
            planned.push(Planned {
                start: at,
                end,
                fault,
            });
            at = end.saturating_add(Duration::from_millis(rng.u64(0..300)));
        }
        Schedule { planned }
    }

    /// The faults, in order.
    pub fn faults(&self) -> Vec<Fault> {
        self.planned.iter().map(|p| p.fault.clone()).collect()
    }

    /// The faults with when each lasts, for a report: `RingOut(0) 0.020s..0.540s`.
    pub fn timeline(&self) -> Vec<String> {
        self.planned
            .iter()
            .map(|p| {
                format!(
                    "{:?} {:.3}s..{:.3}s",
                    p.fault,
                    p.start.as_secs_f64(),
                    p.end.as_secs_f64()
                )
            })
            .collect()
    }

    /// What held when, for a run that ended at `end`.
    pub fn conditions(&self, end: Duration) -> Conditions {
        let gaps = |cut: &dyn Fn(&Fault) -> bool| {
            let mut windows = Vec::new();
            let mut from = Duration::ZERO;
            for p in self.planned.iter().filter(|p| cut(&p.fault)) {
                if p.start > from {
                    windows.push(Window::new(from, p.start));
                }
                from = from.max(p.end.saturating_add(SETTLE));
            }
            if end.saturating_add(Duration::from_millis(1)) > from {
                windows.push(Window::new(
                    from,
                    end.saturating_add(Duration::from_millis(1)),
                ));
            }
            windows
        };
        let down = self
            .planned
            .iter()
            .filter_map(|p| match p.fault {
                Fault::Crash(n) => Some((n, Window::new(p.start, p.end))),
                _ => None,
            })
            .collect();
        Conditions {
            all_reachable: gaps(&Fault::cuts_reach),
            stable: gaps(&|_| true),
            down,
            end,
            staleness_bound: HOT_TTL
                .max(FALLBACK_TTL)
                .max(MAX_TTL)
                .saturating_add(PEER_TIMEOUT)
                .saturating_add(MAX_BACKEND_DELAY)
                .saturating_add(Duration::from_millis(100)),
            reload_after: MAX_TTL,
            get_deadline: HANDOFF_AND_PEER
                .saturating_add(MAX_BACKEND_DELAY.saturating_mul(2))
                .saturating_add(Duration::from_millis(100)),
        }
    }

    /// The schedule's start and end events, to apply as the run goes.
    pub(crate) fn start(&self, _world: &World) -> Applier {
        let mut events: Vec<(Duration, bool, Fault)> = Vec::new();
        for p in &self.planned {
            events.push((p.start, true, p.fault.clone()));
            events.push((p.end, false, p.fault.clone()));
        }
        events.sort_by_key(|(at, start, _)| (*at, *start));
        Applier { events, next: 0 }
    }
}

/// The peer timeout and a ring change's hand-off wait: the most a get waits on peers.
const HANDOFF_AND_PEER: Duration = Duration::from_millis(250);

/// Applies a schedule's events as simulated time reaches them.
#[derive(Debug)]
pub(crate) struct Applier {
    events: Vec<(Duration, bool, Fault)>,
    next: usize,
}

/// The normal latency bound of every link.
pub(crate) const LINK_LATENCY: Duration = Duration::from_millis(3);

impl Applier {
    /// Start or end every fault due at `now`.
    pub(crate) fn apply_due(&mut self, sim: &mut turmoil::Sim<'_>, world: &World, now: Duration) {
        while let Some((at, start, fault)) = self.events.get(self.next) {
            if *at > now {
                return;
            }
            apply(sim, world, fault, *start);
            self.next = self.next.saturating_add(1);
        }
    }
}

fn host(n: Node) -> String {
    format!("n{n}")
}

/// Every pair of nodes `a`, `b` with `a` in `side` and `b` not, over `nodes`.
fn across(side: &[Node], nodes: usize) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for &a in side {
        for b in (0..nodes).filter(|b| !side.contains(b)) {
            pairs.push((host(a), host(b)));
        }
    }
    pairs
}

fn apply(sim: &mut turmoil::Sim<'_>, world: &World, fault: &Fault, start: bool) {
    let nodes = world.nodes();
    match fault {
        Fault::Isolate(n) => cut(sim, &across(&[*n], nodes), start),
        Fault::Halves(side) => cut(sim, &across(side, nodes), start),
        Fault::Delay(n, d) => {
            for (a, b) in across(&[*n], nodes) {
                let bound = if start { *d } else { LINK_LATENCY };
                sim.set_link_max_message_latency(a.as_str(), b.as_str(), bound);
            }
        }
        Fault::Loss(n) => {
            for (a, b) in across(&[*n], nodes) {
                sim.set_link_fail_rate(a.as_str(), b.as_str(), if start { 0.05 } else { 0.0 });
                if !start {
                    sim.repair(a.as_str(), b.as_str());
                }
            }
        }
        Fault::Crash(n) if start => {
            sim.crash(host(*n));
            world.crashed(*n);
        }
        Fault::Crash(n) => sim.bounce(host(*n)),
        Fault::RingOut(n) => {
            let ring: Vec<Node> = (0..nodes).filter(|m| !start || m != n).collect();
            world.ring.send_replace(ring);
        }
        Fault::SlowBackend(d) if start => world.set_backend(BackendMode::Slow(*d)),
        Fault::FailingBackend if start => world.set_backend(BackendMode::Failing),
        Fault::SlowBackend(_) | Fault::FailingBackend => world.set_backend(BackendMode::Normal),
    }
}

/// Cut (or heal) the links between every pair.
fn cut(sim: &mut turmoil::Sim<'_>, pairs: &[(String, String)], start: bool) {
    for (a, b) in pairs {
        if start {
            sim.partition(a.as_str(), b.as_str());
        } else {
            sim.repair(a.as_str(), b.as_str());
        }
    }
}
