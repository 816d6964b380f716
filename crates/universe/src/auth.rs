//! Who may ask a node for what: the shared token of peers, and the rule both protocols'
//! servers apply with it.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use subtle::ConstantTimeEq as _;

use crate::{Error, ErrorKind};

/// The scheme of the `Authorization` value (HTTP header, gRPC metadata) carrying a
/// [`PeerToken`]: `Bearer <token>`.
const BEARER: &str = "Bearer ";

/// A secret shared by the peers of a cluster, sent as `Authorization: Bearer <token>` (HTTP)
/// or the `authorization` metadata entry (gRPC), and compared in constant time.
///
/// Visible ASCII only (it travels in a header), not empty. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerToken(Arc<str>);

impl PeerToken {
    /// The token `text`; an [`ErrorKind::Config`] error when it is empty or holds anything
    /// but visible ASCII.
    pub fn new(text: &str) -> Result<Self, Error> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::new(
                ErrorKind::Config,
                "a peer token is one or more visible ASCII characters",
            ));
        }
        Ok(PeerToken(text.into()))
    }

    /// The token in the file at `path`: its content, trimmed of surrounding whitespace.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("peer token file {}: {e}", path.display()),
            )
        })?;
        Self::new(text.trim())
    }

    /// The value of the `Authorization` header (or metadata entry) that carries it.
    pub fn authorization(&self) -> String {
        format!("{BEARER}{}", self.0)
    }

    /// Whether `authorization` (an `Authorization` value) is `Bearer <this token>`; the
    /// token itself is compared in constant time.
    pub fn admits(&self, authorization: &[u8]) -> bool {
        let Some(given) = strip_bearer(authorization) else {
            return false;
        };
        bool::from(given.ct_eq(self.0.as_bytes()))
    }
}

impl fmt::Debug for PeerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PeerToken(<redacted>)")
    }
}

/// The token after a `Bearer ` scheme (the scheme's case ignored).
fn strip_bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(BEARER.len())?;
    scheme
        .eq_ignore_ascii_case(BEARER.as_bytes())
        .then_some(token)
}

/// What a peer server asks of a request before serving it.
///
/// With nothing configured, every request is served (a trusted network, loopback). Once
/// mTLS or a token is configured, every verb (get, peek, remove, set, flush) needs a
/// connection whose client certificate was verified, or the token.
#[derive(Clone, Debug, Default)]
pub struct PeerAuth {
    token: Option<PeerToken>,
    mtls: bool,
}

impl PeerAuth {
    /// Requests need `token` (or mTLS, when [`mtls`](Self::mtls) is set too).
    pub fn token(mut self, token: Option<PeerToken>) -> Self {
        self.token = token;
        self
    }

    /// Whether the server takes mTLS connections: then credentials are needed.
    pub fn mtls(mut self, on: bool) -> Self {
        self.mtls = on;
        self
    }

    /// Whether any request needs credentials.
    pub fn is_required(&self) -> bool {
        self.mtls || self.token.is_some()
    }

    /// Whether a request may be served: it came over a connection whose client
    /// certificate was verified (`verified`), or carries the token in `authorization`.
    pub fn admits(&self, verified: bool, authorization: Option<&[u8]>) -> bool {
        if !self.is_required() || verified {
            return true;
        }
        match (&self.token, authorization) {
            (Some(token), Some(given)) => token.admits(given),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_whole_and_never_shown() {
        let token = PeerToken::new("s3cret").unwrap();
        assert!(token.admits(b"Bearer s3cret"));
        assert!(token.admits(b"bearer s3cret"));
        for bad in [
            &b""[..],
            b"Bearer",
            b"Bearer s3cre",
            b"Bearer s3crets",
            b"Basic s3cret",
        ] {
            assert!(!token.admits(bad), "{bad:?}");
        }
        assert_eq!(format!("{token:?}"), "PeerToken(<redacted>)");
        assert!(PeerToken::new("").is_err());
        assert!(PeerToken::new("a b").is_err());
    }

    #[test]
    fn credentials_are_needed_once_configured() {
        assert!(PeerAuth::default().admits(false, None));
        let auth = PeerAuth::default().token(PeerToken::new("t").ok());
        assert!(!auth.admits(false, None));
        assert!(!auth.admits(false, Some(b"Bearer x")));
        assert!(auth.admits(false, Some(b"Bearer t")));
        let mtls = PeerAuth::default().mtls(true);
        assert!(!mtls.admits(false, Some(b"Bearer t")));
        assert!(mtls.admits(true, None));
    }
}
