//! W3C trace context (`traceparent`): the trace a get belongs to, carried from a node's
//! caller to the peer that answers it.
//!
//! A context is set for a future with [`with_trace`] (a protocol server does so for the
//! request it serves, a client API for a request that carries `traceparent`) and read
//! with [`current_trace`]; a peer fetch sends it, with a parent id of its own, as the
//! `traceparent` HTTP header or gRPC metadata entry.

use std::fmt;
use std::future::Future;
use std::str::FromStr;

use crate::{Error, ErrorKind};

/// The name of the header (HTTP) and metadata entry (gRPC) carrying a trace context.
pub const TRACEPARENT: &str = "traceparent";

/// Length of a version-00 `traceparent`: `00-` 32 hex `-` 16 hex `-` 2 hex.
const LEN: usize = 55;

/// A W3C trace context (version `00`): the trace's id, the id of the span that sent it
/// (the parent of the receiver's), and the trace flags (bit 0: sampled).
///
/// Parsed from and formatted as `traceparent`:
/// `00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01`.
///
/// ```
/// use galaxycache::universe::TraceContext;
///
/// let header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
/// let context: TraceContext = header.parse().unwrap();
/// assert_eq!(context.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
/// assert!(context.sampled());
/// assert_eq!(context.to_string(), header);
/// assert!("00-00000000000000000000000000000000-00f067aa0ba902b7-01".parse::<TraceContext>().is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: [u8; 16],
    parent_id: [u8; 8],
    flags: u8,
}

impl TraceContext {
    /// A context of `trace_id` sent by span `parent_id` with `flags`; `None` when either id
    /// is all zeros (which W3C says is invalid).
    pub fn new(trace_id: [u8; 16], parent_id: [u8; 8], flags: u8) -> Option<Self> {
        (trace_id != [0; 16] && parent_id != [0; 8]).then_some(TraceContext {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// A new trace, sampled, with random ids: for a request that came with none.
    pub fn random() -> Self {
        TraceContext {
            trace_id: nonzero_random(),
            parent_id: nonzero_random(),
            flags: 1,
        }
    }

    /// The same trace sent on by a new span: a random parent id, the same flags. What a
    /// node sends its peer for a fetch.
    pub fn child(&self) -> Self {
        TraceContext {
            parent_id: nonzero_random(),
            ..*self
        }
    }

    /// The trace id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The trace id as 32 lowercase hex digits, as spans record it (`trace_id`).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The id of the span that sent this context.
    pub fn parent_id(&self) -> [u8; 8] {
        self.parent_id
    }

    /// The trace flags.
    pub fn flags(&self) -> u8 {
        self.flags
    }

    /// Whether the sender recorded (sampled) the trace: flag bit 0.
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl FromStr for TraceContext {
    type Err = Error;

    /// Parse a version-00 `traceparent`: exactly 55 characters, lowercase hex, ids not all
    /// zeros. A malformed header is an [`ErrorKind::InvalidRequest`] error that says why;
    /// the receiver then starts no trace from it.
    fn from_str(header: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            Error::new(
                ErrorKind::InvalidRequest,
                format!("malformed traceparent: {why}"),
            )
        };
        if header.len() != LEN {
            return Err(bad("not 55 characters long"));
        }
        let mut parts = header.split('-');
        let (Some(version), Some(trace), Some(parent), Some(flags), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(bad("not four fields separated by '-'"));
        };
        if version != "00" {
            return Err(bad("version is not 00"));
        }
        let trace_id = unhex::<16>(trace).ok_or_else(|| bad("trace id is not 32 hex digits"))?;
        let parent_id = unhex::<8>(parent).ok_or_else(|| bad("parent id is not 16 hex digits"))?;
        let [flags] = unhex::<1>(flags).ok_or_else(|| bad("flags are not 2 hex digits"))?;
        TraceContext::new(trace_id, parent_id, flags).ok_or_else(|| bad("an id is all zeros"))
    }
}

impl fmt::Display for TraceContext {
    /// The `traceparent` header value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

fn nonzero_random<const N: usize>() -> [u8; N] {
    loop {
        let mut bytes = [0u8; N];
        fastrand::fill(&mut bytes);
        if bytes != [0; N] {
            return bytes;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// `N` bytes from exactly `2 * N` lowercase hex digits (W3C allows no uppercase).
fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *byte = (digit(*hi)? << 4) | digit(*lo)?;
    }
    Some(out)
}

fn digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

tokio::task_local! {
    static CURRENT: Option<TraceContext>;
}

/// Run `future` with `context` as its trace context ([`current_trace`]); `None` runs it
/// with none (hiding an outer one).
///
/// The gets and peer fetches `future` makes carry `context`: their spans record its
/// trace id, and each peer fetch sends it on as `traceparent`, so that the serving peer's
/// span continues the same trace. Protocol servers call this for a request that brought a
/// valid `traceparent`; an application calls it for its own requests (galaxyd does, for a
/// client request that carries one).
///
/// ```
/// use galaxycache::universe::{TraceContext, current_trace, with_trace};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let context = TraceContext::random();
/// let seen = with_trace(Some(context), async { current_trace() }).await;
/// assert_eq!(seen, Some(context));
/// assert_eq!(current_trace(), None);
/// # }
/// ```
pub async fn with_trace<F: Future>(context: Option<TraceContext>, future: F) -> F::Output {
    CURRENT.scope(context, future).await
}

/// The trace context of the running task, as set by [`with_trace`]; `None` outside one.
pub fn current_trace() -> Option<TraceContext> {
    CURRENT.try_with(|c| *c).ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_round_trips() {
        let c: TraceContext = GOOD.parse().unwrap();
        assert_eq!(c.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(c.parent_id(), [0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        assert_eq!(c.flags(), 1);
        assert_eq!(c.to_string(), GOOD);
        let unsampled: TraceContext = GOOD.replace("-01", "-00").parse().unwrap();
        assert!(!unsampled.sampled());
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473600-f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1é",
        ] {
            let e = bad.parse::<TraceContext>().unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{bad:?}");
            assert!(e.to_string().contains("malformed traceparent"), "{e}");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_changes_the_parent() {
        let c: TraceContext = GOOD.parse().unwrap();
        let child = c.child();
        assert_eq!(child.trace_id(), c.trace_id());
        assert_eq!(child.flags(), c.flags());
        assert_ne!(child.parent_id(), c.parent_id());
        assert_eq!(child.to_string().parse::<TraceContext>().unwrap(), child);
        let r = TraceContext::random();
        assert_eq!(r.to_string().parse::<TraceContext>().unwrap(), r);
    }

    #[tokio::test]
    async fn the_context_is_scoped_to_its_future() {
        let c: TraceContext = GOOD.parse().unwrap();
        assert_eq!(current_trace(), None);
        let (inside, hidden) = with_trace(Some(c), async {
            (
                current_trace(),
                with_trace(None, async { current_trace() }).await,
            )
        })
        .await;
        assert_eq!((inside, hidden), (Some(c), None));
        assert_eq!(current_trace(), None);
    }
}
