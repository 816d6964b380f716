//! Where a node's peer list comes from: a fixed list (`--peers`), a file re-read when it
//! changes and on SIGHUP (`--peers-file`), or the addresses behind a DNS name
//! (`--peers-dns`). Declared once, here: the same struct is the `serve` flags and the
//! top-level TOML keys of the same names (`peers_file = "/etc/galaxyd/peers"`).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use galaxycache_universe::{
    DEFAULT_DNS_INTERVAL, DEFAULT_FILE_INTERVAL, Discovery, DnsPeers, FilePeers, Reload,
    normalize_peer_url,
};
use serde::Deserialize;

use crate::units::parse_duration;

/// The peer settings as given (flags or file), before they are checked.
#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
#[command(next_help_heading = "Peers (one source: --peers, --peers-file or --peers-dns)")]
pub struct PeerArgs {
    /// The peers' URLs, comma-separated; this node is on its ring whether listed or not
    /// [default: none, a ring of one]
    #[arg(long, value_name = "URL,URL,...", value_delimiter = ',',
          conflicts_with_all = ["peers_file", "peers_dns"])]
    pub peers: Option<Vec<String>>,
    /// A file of peer URLs (one a line or comma-separated; blank lines and # comments
    /// ignored), re-read when it changes and on SIGHUP; replace it atomically (rename)
    #[arg(long, value_name = "PATH", conflicts_with = "peers_dns")]
    pub peers_file: Option<PathBuf>,
    /// How often to look at --peers-file for a change [default: 1s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(deserialize_with = "de::peers_file_interval")]
    pub peers_file_interval: Option<Duration>,
    /// NAME:PORT: the peers are NAME's A/AAAA records (e.g. a Kubernetes headless
    /// service), each at PORT; this node's --self must be its own address and PORT
    #[arg(long, value_name = "NAME:PORT", value_parser = parse_dns_target)]
    #[serde(deserialize_with = "de::peers_dns")]
    pub peers_dns: Option<DnsTarget>,
    /// Scheme of the peer URLs made from --peers-dns: http or https [default: http]
    #[arg(long, value_name = "SCHEME", value_parser = parse_scheme)]
    #[serde(deserialize_with = "de::peers_dns_scheme")]
    pub peers_dns_scheme: Option<String>,
    /// How often to resolve --peers-dns [default: 5s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(deserialize_with = "de::peers_dns_interval")]
    pub peers_dns_interval: Option<Duration>,
}

/// A DNS name and the peer port of the addresses behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsTarget {
    /// The name, e.g. `cache.default.svc.cluster.local`.
    pub name: String,
    /// The port of every peer.
    pub port: u16,
}

/// Where a node's peer list comes from, checked.
#[derive(Clone, Debug, PartialEq)]
pub enum PeerSource {
    /// A fixed list of peer URLs (this node listed or not), normalised.
    Static(Vec<String>),
    /// A file of peer URLs, looked at every `interval` and re-read on SIGHUP.
    File {
        /// The file.
        path: PathBuf,
        /// How often to look at it for a change.
        interval: Duration,
    },
    /// The addresses behind a DNS name, resolved every `interval`.
    Dns {
        /// The name and the peers' port.
        target: DnsTarget,
        /// `http` or `https`.
        scheme: String,
        /// How often to resolve the name.
        interval: Duration,
    },
}

impl Default for PeerSource {
    fn default() -> Self {
        PeerSource::Static(Vec::new())
    }
}

impl PeerArgs {
    fn names_a_source(&self) -> bool {
        self.peers.is_some() || self.peers_file.is_some() || self.peers_dns.is_some()
    }

    /// `self` (from the file) with `flags` applied: a source given by flags replaces the
    /// file's; each other setting given by flags replaces the file's.
    pub(crate) fn overridden_by(self, flags: PeerArgs) -> PeerArgs {
        let base = if flags.names_a_source() {
            PeerArgs {
                peers: None,
                peers_file: None,
                peers_dns: None,
                ..self
            }
        } else {
            self
        };
        PeerArgs {
            peers: flags.peers.or(base.peers),
            peers_file: flags.peers_file.or(base.peers_file),
            peers_file_interval: flags.peers_file_interval.or(base.peers_file_interval),
            peers_dns: flags.peers_dns.or(base.peers_dns),
            peers_dns_scheme: flags.peers_dns_scheme.or(base.peers_dns_scheme),
            peers_dns_interval: flags.peers_dns_interval.or(base.peers_dns_interval),
        }
    }

    /// The one source named, with its defaults; an error for two sources, or for a
    /// setting of a source that is not the one named.
    pub(crate) fn resolve(self) -> Result<PeerSource, String> {
        let named = [
            self.peers.is_some(),
            self.peers_file.is_some(),
            self.peers_dns.is_some(),
        ];
        if named.iter().filter(|n| **n).count() > 1 {
            return Err("peers, peers_file and peers_dns are exclusive: give one".to_owned());
        }
        if self.peers_file.is_none() && self.peers_file_interval.is_some() {
            return Err("peers_file_interval needs peers_file".to_owned());
        }
        if self.peers_dns.is_none()
            && (self.peers_dns_scheme.is_some() || self.peers_dns_interval.is_some())
        {
            return Err("peers_dns_scheme and peers_dns_interval need peers_dns".to_owned());
        }
        if let Some(path) = self.peers_file {
            let interval = self.peers_file_interval.unwrap_or(DEFAULT_FILE_INTERVAL);
            return Ok(PeerSource::File { path, interval });
        }
        if let Some(target) = self.peers_dns {
            return Ok(PeerSource::Dns {
                target,
                scheme: self.peers_dns_scheme.unwrap_or_else(|| "http".to_owned()),
                interval: self.peers_dns_interval.unwrap_or(DEFAULT_DNS_INTERVAL),
            });
        }
        Ok(PeerSource::Static(normalize_peers(
            self.peers.unwrap_or_default(),
        )?))
    }
}

/// Peer URLs as every node hashes them: entries trimmed, empty ones dropped, each
/// normalised by `normalize_peer_url` (as `serve` and `owner` both need).
pub(crate) fn normalize_peers<I, S>(peers: I) -> Result<Vec<String>, String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    peers
        .into_iter()
        .map(|p| p.as_ref().trim().to_owned())
        .filter(|p| !p.is_empty())
        .map(|p| normalize_peer_url(&p).map_err(|e| e.message().to_owned()))
        .collect()
}

/// A source to follow, and the handle that re-reads it when it is a peer file.
pub(crate) type Following = (Box<dyn Discovery>, Option<Reload>);

/// A running node's peer discovery: the source to follow, and the handle that re-reads
/// a peer file (on SIGHUP). `None` for a fixed list, which is set once.
pub(crate) fn discovery(source: &PeerSource) -> anyhow::Result<Option<Following>> {
    Ok(match source {
        PeerSource::Static(_) => None,
        PeerSource::File { path, interval } => {
            let file = FilePeers::new(path).interval(*interval);
            let reload = file.reload_handle();
            Some((Box::new(file), Some(reload)))
        }
        PeerSource::Dns {
            target,
            scheme,
            interval,
        } => {
            let dns = DnsPeers::new(&target.name, target.port, None)?
                .scheme(scheme)
                .interval(*interval);
            Some((Box::new(dns), None))
        }
    })
}

/// Parse `NAME:PORT`.
pub(crate) fn parse_dns_target(text: &str) -> Result<DnsTarget, String> {
    let invalid = || format!("invalid DNS peers {text:?}: expected NAME:PORT, e.g. cache.svc:9001");
    let (name, port) = text.trim().rsplit_once(':').ok_or_else(invalid)?;
    let port = port.parse().map_err(|_| invalid())?;
    if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == ':') {
        return Err(invalid());
    }
    Ok(DnsTarget {
        name: name.to_owned(),
        port,
    })
}

/// Parse a peer URL scheme: `http` or `https`.
fn parse_scheme(text: &str) -> Result<String, String> {
    match text.trim() {
        "http" | "https" => Ok(text.trim().to_owned()),
        _ => Err(format!("unknown scheme {text:?}: expected http or https")),
    }
}

/// The TOML side, through the helpers `tuning` uses: errors name the key.
mod de {
    use std::time::Duration;

    use super::{DnsTarget, parse_dns_target, parse_duration, parse_scheme};

    crate::tuning::de::fields! {
        peers_file_interval: Duration = |text: String| parse_duration(&text);
        peers_dns: DnsTarget = |text: String| parse_dns_target(&text);
        peers_dns_scheme: String = |text: String| parse_scheme(&text);
        peers_dns_interval: Duration = |text: String| parse_duration(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_targets_and_schemes() {
        let t = parse_dns_target("cache.default.svc.cluster.local:9001").unwrap();
        assert_eq!(
            (t.name.as_str(), t.port),
            ("cache.default.svc.cluster.local", 9001)
        );
        for bad in ["cache", "cache:", ":9001", "cache:99999", "a b:1", "::1:80"] {
            assert!(
                parse_dns_target(bad).unwrap_err().contains("NAME:PORT"),
                "{bad}"
            );
        }
        assert_eq!(parse_scheme("https"), Ok("https".to_owned()));
        assert!(parse_scheme("grpc").unwrap_err().contains("http or https"));
    }

    #[test]
    fn one_source_with_its_defaults() {
        let file = PeerArgs {
            peers_file: Some("/etc/peers".into()),
            ..PeerArgs::default()
        };
        assert_eq!(
            file.resolve(),
            Ok(PeerSource::File {
                path: "/etc/peers".into(),
                interval: DEFAULT_FILE_INTERVAL
            })
        );
        let dns = PeerArgs {
            peers_dns: Some(parse_dns_target("svc:1").unwrap()),
            ..PeerArgs::default()
        };
        let PeerSource::Dns {
            scheme, interval, ..
        } = dns.resolve().unwrap()
        else {
            panic!("not dns")
        };
        assert_eq!((scheme.as_str(), interval), ("http", DEFAULT_DNS_INTERVAL));
        let both = PeerArgs {
            peers: Some(vec!["http://a".into()]),
            peers_file: Some("/etc/peers".into()),
            ..PeerArgs::default()
        };
        assert!(both.resolve().unwrap_err().contains("exclusive"));
        let stray = PeerArgs {
            peers_dns_interval: Some(Duration::from_secs(1)),
            ..PeerArgs::default()
        };
        assert!(stray.resolve().unwrap_err().contains("need peers_dns"));
    }

    #[test]
    fn a_source_from_flags_replaces_the_files() {
        let file = PeerArgs {
            peers: Some(vec!["http://a:1".into()]),
            ..PeerArgs::default()
        };
        let flags = PeerArgs {
            peers_file: Some("/etc/peers".into()),
            ..PeerArgs::default()
        };
        let merged = file.clone().overridden_by(flags).resolve().unwrap();
        assert!(matches!(merged, PeerSource::File { .. }), "{merged:?}");
        let merged = file.overridden_by(PeerArgs::default()).resolve().unwrap();
        assert_eq!(merged, PeerSource::Static(vec!["http://a:1".into()]));
    }
}
