//! A history of cache operations and a checker of the guarantees galaxycache states.
//!
//! A run records every operation twice, when it is invoked and when it completes, with the
//! simulated time and the node it ran on, plus every backend load. Events are appended in
//! the order they happened: the simulation runs on one thread, so the position of an event
//! in the history is a total order consistent with real time ("starts later" means "comes
//! later in the history"), and the simulated time is used only for the bounds.
//!
//! Every written value carries a version: the data source keeps one counter for the whole
//! run, each write takes the next number (a flush gives it to every key), and a get answers
//! the version its value carries. [`check`] then tests the four properties of issue 13
//! against the conditions the fault schedule says held when ([`Conditions`]).

use std::fmt;
use std::time::Duration;

/// A node of the simulated cluster, by index.
pub type Node = usize;

/// What an operation asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `Galaxy::get(key)`.
    Get {
        /// The key asked for.
        key: String,
    },
    /// `Galaxy::set(key, value)`, the value carrying `version`.
    Set {
        /// The key written.
        key: String,
        /// The version the data source holds for the key from now on.
        version: u64,
    },
    /// `Galaxy::remove(key)` after the data source moved the key to `version`.
    Remove {
        /// The key removed.
        key: String,
        /// The version the data source holds for the key from now on.
        version: u64,
    },
    /// `Galaxy::flush()` after the data source moved every key to `version`.
    Flush {
        /// The version the data source holds for every key from now on.
        version: u64,
    },
}

impl Action {
    /// The version a write leaves in the data source for `key`; `None` for a get, or a
    /// write of another key.
    fn writes(&self, key: &str) -> Option<u64> {
        match self {
            Action::Get { .. } => None,
            Action::Set { key: k, version } | Action::Remove { key: k, version } => {
                (k == key).then_some(*version)
            }
            Action::Flush { version } => Some(*version),
        }
    }

    /// The key a get asks for.
    fn get_key(&self) -> Option<&str> {
        match self {
            Action::Get { key } => Some(key),
            _ => None,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A get answered a value of this version.
    Value(u64),
    /// A get answered NotFound.
    NotFound,
    /// The operation failed with this error (its text).
    Failed(String),
    /// A write returned its report; `complete` when every peer applied it.
    Written {
        /// Whether every peer applied the write.
        complete: bool,
    },
}

/// One entry of a [`History`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// An operation was invoked.
    Invoke(Action),
    /// The operation invoked under the same id completed.
    Complete(Outcome),
    /// The node's data source was asked for `key`: it answered `version`, or failed
    /// (`None`).
    Load {
        /// The key loaded.
        key: String,
        /// The version answered; `None` when the load failed.
        version: Option<u64>,
    },
}

/// An event: what happened, where, and when in simulated time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Position in the history: the real-time order.
    pub seq: usize,
    /// Simulated time since the run started.
    pub at: Duration,
    /// The node it happened on.
    pub node: Node,
    /// The operation it belongs to (invocations and completions); 0 for loads.
    pub op: u64,
    /// What happened.
    pub kind: EventKind,
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{:<5} {:>9.3}s n{} ",
            self.seq,
            self.at.as_secs_f64(),
            self.node
        )?;
        match &self.kind {
            EventKind::Invoke(action) => write!(f, "op {} invoke {action:?}", self.op),
            EventKind::Complete(outcome) => write!(f, "op {} complete {outcome:?}", self.op),
            EventKind::Load { key, version } => match version {
                Some(v) => write!(f, "backend load {key:?} -> v{v}"),
                None => write!(f, "backend load {key:?} -> failed"),
            },
        }
    }
}

/// The events of one run, in the order they happened.
#[derive(Clone, Debug, Default)]
pub struct History {
    events: Vec<Event>,
    next_op: u64,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        History::default()
    }

    /// Record that `node` invoked `action` at `at`; the returned id names its completion.
    pub fn invoke(&mut self, at: Duration, node: Node, action: Action) -> u64 {
        self.next_op = self.next_op.saturating_add(1);
        let op = self.next_op;
        self.push(at, node, op, EventKind::Invoke(action));
        op
    }

    /// Record that operation `op` completed on `node` at `at` with `outcome`.
    pub fn complete(&mut self, at: Duration, node: Node, op: u64, outcome: Outcome) {
        self.push(at, node, op, EventKind::Complete(outcome));
    }

    /// Record a backend load of `key` on `node` at `at`, answering `version` (`None`:
    /// it failed).
    pub fn load(&mut self, at: Duration, node: Node, key: &str, version: Option<u64>) {
        let key = key.to_owned();
        self.push(at, node, 0, EventKind::Load { key, version });
    }

    fn push(&mut self, at: Duration, node: Node, op: u64, kind: EventKind) {
        let seq = self.events.len();
        self.events.push(Event {
            seq,
            at,
            node,
            op,
            kind,
        });
    }

    /// Every event, in order.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// How many operations were invoked.
    pub fn operations(&self) -> u64 {
        self.next_op
    }

    /// The operations: each invocation with its completion, if any.
    fn ops(&self) -> Vec<Op<'_>> {
        let mut ops: Vec<Op<'_>> = Vec::new();
        let mut index = vec![usize::MAX; usize::try_from(self.next_op).unwrap_or(0) + 1];
        for event in &self.events {
            let slot = usize::try_from(event.op).unwrap_or(usize::MAX);
            match &event.kind {
                EventKind::Invoke(action) => {
                    if let Some(i) = index.get_mut(slot) {
                        *i = ops.len();
                    }
                    ops.push(Op {
                        invoke: event,
                        action,
                        complete: None,
                    });
                }
                EventKind::Complete(outcome) => {
                    if let Some(op) = index.get(slot).and_then(|&i| ops.get_mut(i)) {
                        op.complete = Some((event, outcome));
                    }
                }
                EventKind::Load { .. } => {}
            }
        }
        ops
    }
}

/// An operation as the checker sees it.
struct Op<'a> {
    invoke: &'a Event,
    action: &'a Action,
    complete: Option<(&'a Event, &'a Outcome)>,
}

impl Op<'_> {
    /// The seq its effect may reach: its completion's, or past the end when it never
    /// completed.
    fn end_seq(&self) -> usize {
        self.complete.map_or(usize::MAX, |(e, _)| e.seq)
    }
}

/// A span of simulated time, `start` included, `end` not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// The first instant in it.
    pub start: Duration,
    /// The first instant after it.
    pub end: Duration,
}

impl Window {
    /// The window from `start` to `end`.
    pub fn new(start: Duration, end: Duration) -> Self {
        Window { start, end }
    }

    fn contains(&self, at: Duration) -> bool {
        self.start <= at && at < self.end
    }
}

/// What the fault schedule says held when, and the configured bounds.
#[derive(Clone, Debug, Default)]
pub struct Conditions {
    /// Spans in which every node was up and every node reached every other.
    pub all_reachable: Vec<Window>,
    /// Spans in which, besides, the ring did not change and the backend was neither slow
    /// nor failing: where one load per key per invalidation holds.
    pub stable: Vec<Window>,
    /// Spans in which a node was down (crashed, before its restart).
    pub down: Vec<(Node, Window)>,
    /// When the run ended: an operation still open then may have been cut short.
    pub end: Duration,
    /// A get answers no value older than the last completed write once this much has
    /// passed since that write completed: the longest any copy is kept (hot TTL, fallback
    /// TTL, max TTL) plus the longest a load that started before the write may take.
    pub staleness_bound: Duration,
    /// A loaded value is kept at least this long (its max TTL, less any jitter): two
    /// loads of one key closer than this, with no write between, are one too many.
    pub reload_after: Duration,
    /// Every get completes within this (the peer timeout, the hand-off timeout, a slow
    /// backend's delay, twice, for the owner and the fallback).
    pub get_deadline: Duration,
}

impl Conditions {
    fn reachable_over(&self, from: Duration, to: Duration) -> bool {
        self.all_reachable
            .iter()
            .any(|w| w.contains(from) && w.contains(to))
    }

    fn stable_window(&self, at: Duration) -> Option<usize> {
        self.stable.iter().position(|w| w.contains(at))
    }

    fn crashed_within(&self, node: Node, from: Duration, to: Duration) -> bool {
        self.down
            .iter()
            .any(|(n, w)| *n == node && w.start >= from && w.start <= to)
    }
}

/// The properties checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Property {
    /// 1. After a write completes while every peer is reachable, no get that starts later
    ///    returns an older version.
    NoStaleAfterWrite,
    /// 2. No get returns a version older than the last completed write by more than the
    ///    staleness bound.
    BoundedStaleness,
    /// 3. While the ring is stable and no node is down, at most one backend load per key
    ///    per invalidation.
    OneLoadPerKey,
    /// 4. Every get completes within the configured deadlines.
    GetCompletes,
}

/// A broken property, with the slice of history that shows it.
#[derive(Clone, Debug)]
pub struct Violation {
    /// Which property.
    pub property: Property,
    /// What went wrong, in a sentence.
    pub message: String,
    /// The events that show it: the operations concerned and the events of their key
    /// between them.
    pub slice: Vec<Event>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:?}: {}", self.property, self.message)?;
        for event in &self.slice {
            writeln!(f, "  {event}")?;
        }
        Ok(())
    }
}

/// The most events a violation's slice shows between its two ends.
const MAX_SLICE: usize = 40;

/// Check `history` against every property under `conditions`; every violation found, at
/// most one per operation that shows it.
pub fn check(history: &History, conditions: &Conditions) -> Vec<Violation> {
    let ops = history.ops();
    let mut violations = Vec::new();
    fresh_after_write(history, &ops, conditions, &mut violations);
    one_load_per_key(history, &ops, conditions, &mut violations);
    gets_complete(&ops, conditions, &mut violations);
    violations
}

/// Properties 1 and 2: a get's version against every write of its key that completed
/// before the get started.
fn fresh_after_write(
    history: &History,
    ops: &[Op<'_>],
    conditions: &Conditions,
    out: &mut Vec<Violation>,
) {
    let writes: Vec<&Op<'_>> = ops
        .iter()
        .filter(|op| !matches!(op.action, Action::Get { .. }) && op.complete.is_some())
        .collect();
    for get in ops {
        let (Some(key), Some((_, Outcome::Value(got)))) = (get.action.get_key(), get.complete)
        else {
            continue;
        };
        let stale = writes.iter().filter_map(|w| {
            let (done, _) = w.complete?;
            let version = w.action.writes(key)?;
            (done.seq < get.invoke.seq && version > *got).then_some((w, done, version))
        });
        for (write, done, version) in stale {
            let reachable = conditions.reachable_over(write.invoke.at, done.at);
            let late = get.invoke.at.saturating_sub(done.at) > conditions.staleness_bound;
            let (property, why) = if reachable {
                (
                    Property::NoStaleAfterWrite,
                    "after a write that completed while every peer was reachable",
                )
            } else if late {
                (
                    Property::BoundedStaleness,
                    "longer than the staleness bound after a write",
                )
            } else {
                continue;
            };
            out.push(Violation {
                property,
                message: format!(
                    "get of {key:?} (op {}) answered v{got} {why} (op {}, v{version}) \
                     completed {:.3}s before it started (bound {:.3}s)",
                    get.invoke.op,
                    write.invoke.op,
                    get.invoke.at.saturating_sub(done.at).as_secs_f64(),
                    conditions.staleness_bound.as_secs_f64(),
                ),
                slice: slice(history, write.invoke.seq, get.end_seq(), key),
            });
            break;
        }
    }
}

/// Property 3: two successful loads of one key within one stable window, closer than the
/// value's lifetime, with no write of the key running or invoked between them.
fn one_load_per_key(
    history: &History,
    ops: &[Op<'_>],
    conditions: &Conditions,
    out: &mut Vec<Violation>,
) {
    let loads: Vec<(&Event, &str, bool)> = history
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Load { key, version } => Some((e, key.as_str(), version.is_some())),
            _ => None,
        })
        .collect();
    for (i, &(first, key, ok)) in loads.iter().enumerate() {
        let Some(window) = conditions.stable_window(first.at).filter(|_| ok) else {
            continue;
        };
        let next = loads
            .iter()
            .skip(i.saturating_add(1))
            .find(|(_, k, _)| *k == key);
        let Some(&(second, _, _)) = next else {
            continue;
        };
        let same_window = conditions.stable_window(second.at) == Some(window);
        let soon = second.at.saturating_sub(first.at) < conditions.reload_after;
        // A load serves the gets of its key running when it happened, and is fenced by a
        // write that ended after the first of them started (it took its generation then).
        let since = ops
            .iter()
            .filter(|g| g.action.get_key() == Some(key))
            .filter(|g| g.invoke.seq < first.seq && g.end_seq() > first.seq)
            .map(|g| g.invoke.seq)
            .fold(first.seq, usize::min);
        let invalidated = ops.iter().any(|w| {
            w.action.writes(key).is_some() && w.invoke.seq < second.seq && w.end_seq() > since
        });
        if same_window && soon && !invalidated {
            out.push(Violation {
                property: Property::OneLoadPerKey,
                message: format!(
                    "{key:?} loaded again {:.3}s after a successful load (n{} then n{}), \
                     with no write of it between, in a stable window",
                    second.at.saturating_sub(first.at).as_secs_f64(),
                    first.node,
                    second.node
                ),
                slice: slice(history, first.seq, second.seq, key),
            });
        }
    }
}

/// Property 4: every get completes within the deadline, unless its node crashed or the
/// run ended before the deadline passed.
fn gets_complete(ops: &[Op<'_>], conditions: &Conditions, out: &mut Vec<Violation>) {
    for get in ops {
        let Some(key) = get.action.get_key() else {
            continue;
        };
        let start = get.invoke.at;
        let deadline = start.saturating_add(conditions.get_deadline);
        let took = match get.complete {
            Some((done, _)) => done.at.saturating_sub(start),
            None if deadline > conditions.end
                || conditions.crashed_within(get.invoke.node, start, deadline) =>
            {
                continue;
            }
            None => Duration::MAX,
        };
        if took <= conditions.get_deadline
            || (took != Duration::MAX
                && conditions.crashed_within(get.invoke.node, start, deadline))
        {
            continue;
        }
        let message = if took == Duration::MAX {
            format!("get of {key:?} (op {}) never completed", get.invoke.op)
        } else {
            format!(
                "get of {key:?} (op {}) took {:.3}s, over the deadline of {:.3}s",
                get.invoke.op,
                took.as_secs_f64(),
                conditions.get_deadline.as_secs_f64()
            )
        };
        let mut slice = vec![get.invoke.clone()];
        slice.extend(get.complete.map(|(e, _)| e.clone()));
        out.push(Violation {
            property: Property::GetCompletes,
            message,
            slice,
        });
    }
}

/// The events from `from` to `to` (both included) that concern `key`: its gets, its
/// writes, flushes and its loads; at most [`MAX_SLICE`] of those between the ends.
fn slice(history: &History, from: usize, to: usize, key: &str) -> Vec<Event> {
    let to = to.min(history.events.len().saturating_sub(1));
    let ops = history.ops();
    let of_key = |op: u64| {
        ops.iter()
            .find(|o| o.invoke.op == op)
            .is_some_and(|o| o.action.get_key() == Some(key) || o.action.writes(key).is_some())
    };
    let concerns = |e: &Event| match &e.kind {
        EventKind::Load { key: k, .. } => k == key,
        EventKind::Invoke(_) | EventKind::Complete(_) => of_key(e.op),
    };
    let between: Vec<&Event> = history
        .events
        .iter()
        .skip(from)
        .take(to.saturating_sub(from).saturating_add(1))
        .filter(|e| concerns(e))
        .collect();
    let mut out: Vec<Event> = Vec::new();
    if between.len() > MAX_SLICE {
        // The first half and the last half: the write and the get are at the ends.
        let half = MAX_SLICE / 2;
        out.extend(between.iter().take(half).map(|e| (*e).clone()));
        out.extend(
            between
                .iter()
                .skip(between.len() - half)
                .map(|e| (*e).clone()),
        );
    } else {
        out.extend(between.into_iter().cloned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Conditions of a quiet run of 10 s: everything reachable and stable.
    fn quiet() -> Conditions {
        Conditions {
            all_reachable: vec![Window::new(ms(0), ms(10_000))],
            stable: vec![Window::new(ms(0), ms(10_000))],
            down: Vec::new(),
            end: ms(10_000),
            staleness_bound: ms(3_000),
            reload_after: ms(2_000),
            get_deadline: ms(500),
        }
    }

    fn get(key: &str) -> Action {
        Action::Get { key: key.into() }
    }

    fn remove(key: &str, version: u64) -> Action {
        Action::Remove {
            key: key.into(),
            version,
        }
    }

    fn written() -> Outcome {
        Outcome::Written { complete: true }
    }

    fn properties(v: &[Violation]) -> Vec<Property> {
        v.iter().map(|v| v.property).collect()
    }

    /// A history where node 0 loads k (v0), gets it, node 1 removes it (v1), and a get
    /// afterwards answers `answer`, `after` past the remove.
    fn write_then_get(answer: u64, after: Duration) -> History {
        let mut h = History::new();
        let g = h.invoke(ms(10), 0, get("k"));
        h.load(ms(11), 0, "k", Some(0));
        h.complete(ms(12), 0, g, Outcome::Value(0));
        let w = h.invoke(ms(100), 1, remove("k", 1));
        h.complete(ms(110), 1, w, written());
        let g = h.invoke(ms(110) + after, 2, get("k"));
        h.complete(ms(111) + after, 2, g, Outcome::Value(answer));
        h
    }

    #[test]
    fn a_fresh_history_passes() {
        let h = write_then_get(1, ms(5));
        assert!(check(&h, &quiet()).is_empty());
    }

    #[test]
    fn stale_get_after_a_reachable_write_is_caught() {
        let h = write_then_get(0, ms(5));
        let v = check(&h, &quiet());
        assert_eq!(properties(&v), [Property::NoStaleAfterWrite]);
        // The slice runs from the write to the stale get, and names both.
        let slice = &v[0].slice;
        assert_eq!(slice.first().map(|e| e.op), Some(2));
        assert_eq!(slice.last().map(|e| e.op), Some(3));
        let text = v[0].to_string();
        assert!(text.contains("invoke Remove"), "{text}");
        assert!(text.contains("complete Value(0)"), "{text}");
    }

    #[test]
    fn a_get_that_started_before_the_write_completed_may_be_old() {
        let mut h = History::new();
        let w = h.invoke(ms(100), 1, remove("k", 1));
        let g = h.invoke(ms(101), 2, get("k"));
        h.complete(ms(110), 1, w, written());
        h.complete(ms(111), 2, g, Outcome::Value(0));
        assert!(check(&h, &quiet()).is_empty());
    }

    #[test]
    fn a_flush_is_a_write_of_every_key() {
        let mut h = History::new();
        let w = h.invoke(ms(100), 1, Action::Flush { version: 4 });
        h.complete(ms(110), 1, w, written());
        let g = h.invoke(ms(120), 0, get("other"));
        h.complete(ms(121), 0, g, Outcome::Value(3));
        assert_eq!(
            properties(&check(&h, &quiet())),
            [Property::NoStaleAfterWrite]
        );
    }

    /// Conditions where nothing was reachable: only the staleness bound applies.
    fn partitioned() -> Conditions {
        Conditions {
            all_reachable: Vec::new(),
            stable: Vec::new(),
            ..quiet()
        }
    }

    #[test]
    fn staleness_within_the_bound_passes_when_a_broadcast_may_be_lost() {
        let h = write_then_get(0, ms(2_900));
        assert!(check(&h, &partitioned()).is_empty());
    }

    #[test]
    fn staleness_past_the_bound_is_caught() {
        let h = write_then_get(0, ms(3_100));
        let v = check(&h, &partitioned());
        assert_eq!(properties(&v), [Property::BoundedStaleness]);
        assert!(v[0].message.contains("bound 3.000s"), "{}", v[0].message);
    }

    #[test]
    fn one_load_per_invalidation_passes() {
        let mut h = History::new();
        h.load(ms(10), 0, "k", Some(0));
        let w = h.invoke(ms(100), 1, remove("k", 1));
        h.complete(ms(110), 1, w, written());
        h.load(ms(120), 0, "k", Some(1));
        // Another key, and a reload once the value expired.
        h.load(ms(130), 2, "j", Some(0));
        h.load(ms(2_200), 0, "k", Some(1));
        // A failed load does not count: the next one is the first that stores.
        h.load(ms(3_000), 2, "f", None);
        h.load(ms(3_001), 2, "f", Some(0));
        assert!(check(&h, &quiet()).is_empty());
    }

    #[test]
    fn a_second_load_without_an_invalidation_is_caught() {
        let mut h = History::new();
        h.load(ms(10), 0, "k", Some(0));
        let g = h.invoke(ms(20), 1, get("k"));
        h.load(ms(21), 1, "k", Some(0));
        h.complete(ms(22), 1, g, Outcome::Value(0));
        let v = check(&h, &quiet());
        assert_eq!(properties(&v), [Property::OneLoadPerKey]);
        assert_eq!(v[0].slice.len(), 3, "{}", v[0]);
    }

    #[test]
    fn a_second_load_outside_a_stable_window_passes() {
        let mut h = History::new();
        h.load(ms(10), 0, "k", Some(0));
        h.load(ms(21), 1, "k", Some(0));
        let conditions = Conditions {
            stable: vec![Window::new(ms(0), ms(15)), Window::new(ms(20), ms(10_000))],
            ..quiet()
        };
        assert!(check(&h, &conditions).is_empty());
    }

    #[test]
    fn a_write_in_flight_across_the_first_load_allows_a_second() {
        let mut h = History::new();
        let w = h.invoke(ms(5), 1, remove("k", 1));
        h.load(ms(10), 0, "k", Some(0));
        h.complete(ms(15), 1, w, written());
        h.load(ms(21), 0, "k", Some(1));
        assert!(check(&h, &quiet()).is_empty());
    }

    #[test]
    fn a_load_for_a_get_that_started_before_a_write_ended_may_be_fenced() {
        let mut h = History::new();
        let w = h.invoke(ms(1), 0, Action::Flush { version: 1 });
        let g = h.invoke(ms(3), 1, get("k"));
        h.complete(ms(5), 0, w, written());
        h.load(ms(7), 1, "k", Some(1));
        h.complete(ms(7), 1, g, Outcome::Value(1));
        h.load(ms(20), 1, "k", Some(1));
        assert!(check(&h, &quiet()).is_empty());
    }

    #[test]
    fn gets_within_the_deadline_pass() {
        let mut h = History::new();
        let g = h.invoke(ms(10), 0, get("k"));
        h.complete(ms(500), 0, g, Outcome::Failed("timed out".into()));
        // Open when the run ended, before its deadline.
        h.invoke(ms(9_800), 1, get("k"));
        // Open when its node crashed.
        h.invoke(ms(1_000), 2, get("k"));
        let conditions = Conditions {
            down: vec![(2, Window::new(ms(1_200), ms(2_000)))],
            ..quiet()
        };
        assert!(check(&h, &conditions).is_empty());
    }

    #[test]
    fn a_slow_get_and_a_hung_get_are_caught() {
        let mut h = History::new();
        let g = h.invoke(ms(10), 0, get("k"));
        h.complete(ms(511), 0, g, Outcome::NotFound);
        h.invoke(ms(1_000), 1, get("j"));
        let v = check(&h, &quiet());
        assert_eq!(
            properties(&v),
            [Property::GetCompletes, Property::GetCompletes]
        );
        assert!(v[0].message.contains("took 0.501s"), "{}", v[0].message);
        assert!(v[1].message.contains("never completed"), "{}", v[1].message);
    }
}
