//! The error type of the universe and of every fetch protocol.

use std::fmt;
use std::sync::Arc;

/// What went wrong, for callers that react differently to each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The peer did not answer before the deadline.
    Timeout,
    /// The peer could not be reached (refused, reset, closed).
    Unavailable,
    /// The peer answered with something this protocol does not understand.
    Protocol,
    /// The peer answered that loading the value failed (its backend failed). This is an
    /// answer, not a peer failure: the asking node returns the error instead of loading the
    /// key itself, so a failing data source is not hit once per node.
    Remote,
    /// No galaxy of that name is registered.
    UnknownGalaxy,
    /// The request is malformed: empty or oversized key, bad encoding.
    InvalidRequest,
    /// A response exceeded the configured size bound.
    TooLarge,
    /// The server is at its bound of concurrent work.
    Overloaded,
    /// The universe or a protocol was configured wrongly.
    Config,
    /// The operation is not supported by this protocol, or by the peer.
    Unsupported,
    /// The peer's galaxy has another version than the request's: values and writes never
    /// cross versions, so the asking node loads the key itself.
    VersionMismatch,
    /// The peer refused this node's credentials (no token or a wrong one; a certificate
    /// it does not accept), or a peer asked this node without them. A peer failure: the
    /// asking node loads the key itself.
    Unauthenticated,
}

impl ErrorKind {
    fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timed out",
            ErrorKind::Unavailable => "peer unavailable",
            ErrorKind::Protocol => "protocol error",
            ErrorKind::Remote => "remote load failed",
            ErrorKind::UnknownGalaxy => "unknown galaxy",
            ErrorKind::InvalidRequest => "invalid request",
            ErrorKind::TooLarge => "too large",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Config => "configuration error",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::VersionMismatch => "version mismatch",
            ErrorKind::Unauthenticated => "unauthenticated",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error from the universe or a peer fetch.
///
/// Cheap to clone: one failed fetch is handed to every caller that waited on it.
#[derive(Clone, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    message: Arc<str>,
}

impl Error {
    /// An error of `kind` with a human-readable `message`.
    pub fn new(kind: ErrorKind, message: impl Into<Arc<str>>) -> Self {
        Error {
            kind,
            message: message.into(),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The detail, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?}, {:?})", self.kind, self.message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            write!(f, "{}", self.kind)
        } else {
            write!(f, "{}: {}", self.kind, self.message)
        }
    }
}

impl std::error::Error for Error {}

/// `error` and each of its sources, joined by `: `, on one line (a line break in a
/// message becomes `; `): e.g. `error trying to connect: tcp connect error: Connection
/// refused (os error 111)`, where the top-level message alone says little. The one
/// formatter of error chains in the workspace.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(error);
    while let Some(e) = next {
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&e.to_string().replace('\n', "; "));
        next = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_kind_and_message() {
        let e = Error::new(ErrorKind::UnknownGalaxy, "no galaxy \"x\"");
        assert_eq!(e.to_string(), "unknown galaxy: no galaxy \"x\"");
        assert_eq!(Error::new(ErrorKind::Timeout, "").to_string(), "timed out");
        assert_eq!(e.clone(), e);
    }

    #[test]
    fn an_error_chain_is_one_line_with_every_source() {
        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl fmt::Display for Outer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("cannot connect")
            }
        }
        impl std::error::Error for Outer {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let inner = std::io::Error::other("refused\nby peer");
        assert_eq!(
            error_chain(&Outer(inner)),
            "cannot connect: refused; by peer"
        );
        assert_eq!(
            error_chain(&Error::new(ErrorKind::Timeout, "")),
            "timed out"
        );
    }
}
