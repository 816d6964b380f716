//! How a node's peers prove who they are: mTLS (`--tls-cert`, `--tls-key`, `--tls-ca`) and
//! a shared token (`--peer-token-file`). Declared once, here: the same struct is the
//! `serve` flags and the top-level TOML keys of the same names (`tls_cert = "node.pem"`).
//!
//! With TLS, the peer protocol (client and server) runs over mTLS and peer URLs are
//! `https://`; the client API stays plain HTTP (put it behind a TLS proxy, or keep it on
//! loopback). With a token, peers send it and require it. With either, every peer request
//! (reads as well as writes) needs credentials; with neither, every one is served, and the
//! node warns at start-up when its peer port is not on loopback.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use galaxycache_universe::{PeerToken, TlsConfig};
use serde::Deserialize;

/// The security settings as given (flags or file), before they are checked.
#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
#[command(next_help_heading = "Peer security (mTLS: all three --tls-* files; a token)")]
pub struct SecurityArgs {
    /// This node's certificate chain (PEM), presented to peers both ways; re-read when it
    /// changes (checked at most every 5 s) [default: none, plain HTTP between peers]
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM)
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// The CA bundle (PEM) a peer's certificate must be signed by
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// A file holding the token peers send and require (its content, trimmed); with it
    /// (or TLS) every peer request needs credentials [default: none]
    #[arg(long, value_name = "FILE")]
    pub peer_token_file: Option<PathBuf>,
    /// The client API's certificate chain (PEM): with --api-tls-key, the client API speaks
    /// HTTPS only (clients need no certificate); re-read when it changes [default: none,
    /// plain HTTP]
    #[arg(long, value_name = "FILE")]
    pub api_tls_cert: Option<PathBuf>,
    /// The private key of --api-tls-cert (PEM)
    #[arg(long, value_name = "FILE")]
    pub api_tls_key: Option<PathBuf>,
}

/// The security of a node, checked.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PeerSecurity {
    /// mTLS between peers: CA bundle, certificate chain, key.
    pub tls: Option<[PathBuf; 3]>,
    /// The file of the peers' token.
    pub token_file: Option<PathBuf>,
    /// TLS on the client API: certificate chain, key.
    pub api_tls: Option<[PathBuf; 2]>,
}

impl SecurityArgs {
    /// `self` with every field that `flags` sets replaced.
    pub(crate) fn overridden_by(self, flags: SecurityArgs) -> SecurityArgs {
        SecurityArgs {
            tls_cert: flags.tls_cert.or(self.tls_cert),
            tls_key: flags.tls_key.or(self.tls_key),
            tls_ca: flags.tls_ca.or(self.tls_ca),
            peer_token_file: flags.peer_token_file.or(self.peer_token_file),
            api_tls_cert: flags.api_tls_cert.or(self.api_tls_cert),
            api_tls_key: flags.api_tls_key.or(self.api_tls_key),
        }
    }

    /// Check that TLS is given whole or not at all.
    pub(crate) fn resolve(self) -> Result<PeerSecurity, String> {
        let tls = match (self.tls_ca, self.tls_cert, self.tls_key) {
            (Some(ca), Some(cert), Some(key)) => Some([ca, cert, key]),
            (None, None, None) => None,
            _ => return Err("TLS needs all three of tls_cert, tls_key and tls_ca".to_owned()),
        };
        let api_tls = match (self.api_tls_cert, self.api_tls_key) {
            (Some(cert), Some(key)) => Some([cert, key]),
            (None, None) => None,
            _ => return Err("client API TLS needs both api_tls_cert and api_tls_key".to_owned()),
        };
        Ok(PeerSecurity {
            tls,
            token_file: self.peer_token_file,
            api_tls,
        })
    }
}

impl PeerSecurity {
    /// The TLS configuration, when TLS is on.
    pub fn tls_config(&self) -> Option<TlsConfig> {
        self.tls
            .as_ref()
            .map(|[ca, cert, key]| TlsConfig::new(ca, cert, key))
    }

    /// The client API's TLS configuration, when it speaks HTTPS.
    pub fn api_tls_config(&self) -> Option<TlsConfig> {
        self.api_tls
            .as_ref()
            .map(|[cert, key]| TlsConfig::server_only(cert, key))
    }

    /// The token, read from its file, when one is configured.
    pub fn token(&self) -> Result<Option<PeerToken>, galaxycache_universe::Error> {
        self.token_file
            .as_deref()
            .map(PeerToken::from_file)
            .transpose()
    }

    /// Log at WARN what a peer listener on `addr` leaves open: no TLS off loopback, and
    /// peer requests (writes included) served to anyone without credentials.
    pub fn warn_if_open(&self, addr: SocketAddr) {
        if self.tls.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the peer listener is not on loopback and has no TLS (--tls-cert, --tls-key, --tls-ca)");
        }
        if self.tls.is_none() && self.token_file.is_none() {
            tracing::warn!(%addr, "peer requests, writes included, need no credentials (--tls-* or --peer-token-file)");
        }
    }

    /// Log at WARN a client API on `addr` off loopback without TLS.
    pub fn warn_if_api_open(&self, addr: SocketAddr) {
        if self.api_tls.is_none() && !addr.ip().is_loopback() {
            tracing::warn!(%addr, "the client API is not on loopback and has no TLS (--api-tls-cert, --api-tls-key)");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_is_all_three_files_or_none() {
        let file = |name: &str| Some(PathBuf::from(name));
        let all = SecurityArgs {
            tls_cert: file("c"),
            tls_key: file("k"),
            tls_ca: file("ca"),
            peer_token_file: file("t"),
            api_tls_cert: file("ac"),
            api_tls_key: file("ak"),
        };
        let resolved = all.clone().resolve().unwrap();
        assert_eq!(resolved.tls, Some(["ca", "c", "k"].map(PathBuf::from)));
        assert_eq!(resolved.token_file, file("t"));
        assert_eq!(resolved.api_tls, Some(["ac", "ak"].map(PathBuf::from)));
        let half = SecurityArgs {
            api_tls_key: None,
            ..all.clone()
        };
        assert!(half.resolve().unwrap_err().contains("both"));
        let partial = SecurityArgs {
            tls_key: None,
            ..all.clone()
        };
        assert!(partial.resolve().unwrap_err().contains("all three"));
        assert_eq!(
            SecurityArgs::default().resolve().unwrap(),
            PeerSecurity::default()
        );
        let flags = SecurityArgs {
            tls_cert: file("other"),
            ..SecurityArgs::default()
        };
        assert_eq!(all.overridden_by(flags).tls_cert, file("other"));
    }
}
