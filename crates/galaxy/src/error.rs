//! The error type of galaxies.

use std::fmt;
use std::sync::Arc;

use galaxycache_universe as universe;

/// What went wrong with a get, for callers that react differently to each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The data source has no value for the key (said by this node's backend or the owner's).
    NotFound,
    /// The backend failed to load the value.
    Backend,
    /// The load did not finish before the caller's deadline.
    Timeout,
    /// The backend panicked while loading; every caller that waited on that load sees this.
    Panicked,
    /// The load was abandoned before it finished (its runtime shut down).
    Abandoned,
    /// The key is empty or longer than the universe allows.
    InvalidKey,
    /// A value could not be encoded or decoded by a [`Codec`](crate::Codec).
    Codec,
    /// The galaxy was configured wrongly.
    Config,
    /// A peer failed in a way that could not be recovered from locally.
    Peer,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Backend => "backend error",
            ErrorKind::Timeout => "timed out",
            ErrorKind::Panicked => "backend panicked",
            ErrorKind::Abandoned => "load abandoned",
            ErrorKind::InvalidKey => "invalid key",
            ErrorKind::Codec => "codec error",
            ErrorKind::Config => "configuration error",
            ErrorKind::Peer => "peer error",
        })
    }
}

/// An error from a galaxy.
///
/// Cheap to clone: one coalesced load hands the same error to every caller that waited on it.
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

    /// A backend failure, described by `cause`. What a [`BackendGetter`](crate::BackendGetter)
    /// returns when its data source fails.
    pub fn backend(cause: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Backend, cause.to_string())
    }

    /// No such key.
    pub fn not_found(key: &str) -> Self {
        Error::new(ErrorKind::NotFound, format!("no value for key {key:?}"))
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The detail, without the kind.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True for [`ErrorKind::NotFound`].
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
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

/// A kind that has a counterpart on the other side keeps only the message: both kinds
/// print the same prefix, which `Display` adds once.
impl From<universe::Error> for Error {
    fn from(e: universe::Error) -> Self {
        match e.kind() {
            universe::ErrorKind::InvalidRequest => Error::new(ErrorKind::InvalidKey, e.message()),
            universe::ErrorKind::Timeout => Error::new(ErrorKind::Timeout, e.message()),
            universe::ErrorKind::Config => Error::new(ErrorKind::Config, e.message()),
            _ => Error::new(ErrorKind::Peer, e.to_string()),
        }
    }
}

impl Error {
    /// This error as a peer server reports it; NotFound is not an error on the wire.
    /// A backend error travels as its message alone, so the asking node can hand its
    /// callers the same error the owner's callers get.
    pub(crate) fn to_wire(&self) -> universe::Error {
        match self.kind {
            ErrorKind::Timeout => {
                universe::Error::new(universe::ErrorKind::Timeout, self.message())
            }
            ErrorKind::InvalidKey => {
                universe::Error::new(universe::ErrorKind::InvalidRequest, self.to_string())
            }
            ErrorKind::Backend => universe::Error::new(universe::ErrorKind::Remote, self.message()),
            _ => universe::Error::new(universe::ErrorKind::Remote, self.to_string()),
        }
    }

    /// The owner's answer that its load failed, as this node's callers see it.
    pub(crate) fn from_owner(e: &universe::Error) -> Self {
        Error::new(ErrorKind::Backend, e.message())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_converted_error_says_its_kind_once() {
        let config = universe::Error::new(universe::ErrorKind::Config, "replicas must be 1+");
        let e = Error::from(config);
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(e.to_string(), "configuration error: replicas must be 1+");
        let timeout = Error::from(universe::Error::new(
            universe::ErrorKind::Timeout,
            "after 1s",
        ));
        assert_eq!(timeout.to_string(), "timed out: after 1s");
        let wire = Error::new(ErrorKind::Timeout, "after 1s").to_wire();
        assert_eq!(wire.to_string(), "timed out: after 1s");
        let back = Error::from(wire);
        assert_eq!(back.to_string().matches("timed out").count(), 1, "{back}");
    }
}
