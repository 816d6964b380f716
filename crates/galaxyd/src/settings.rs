//! galaxyd's settings, declared once: each field below is a `serve` flag (`--max-key-len`)
//! and a TOML key of the same name with `_` (`max_key_len`), so a new setting is one field.
//!
//! [`Settings`] are the top-level keys, [`GalaxySettings`] the keys of a `[[galaxy]]` table
//! (and the flags of the one galaxy `serve` runs without `--config`). Every field is an
//! `Option` (or a struct of them): a flag given replaces the file's value, and the defaults
//! are applied once, in `resolve`, after merging. The groups declared elsewhere the same way
//! ([`PeerArgs`], [`SecurityArgs`], [`LimitArgs`], [`Tuning`], [`PreloadConfig`]) are
//! flattened in.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;

use crate::backend::{BackendSpec, check_preload, notify_feed};
use crate::config::{
    DEFAULT_CACHE_BYTES, DEFAULT_LISTEN, DEFAULT_REQUEST_TIMEOUT, DEFAULT_SELF, GalaxyConfig,
    NodeConfig, Protocol, listen_addr_of, parse_addr,
};
use crate::limits::LimitArgs;
use crate::peers::PeerArgs;
use crate::preload::PreloadConfig;
use crate::security::SecurityArgs;
use crate::tuning::Tuning;
use crate::units::{parse_duration, parse_size};
use galaxycache_universe::normalize_peer_url;

/// A node's top-level settings: the `serve` flags and the top-level TOML keys.
#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
#[command(next_help_heading = "The node (top-level keys of --config)")]
pub struct Settings {
    /// This node's peer URL, as the other peers list it; the peer listener binds its
    /// port [default: http://127.0.0.1:9001]
    #[arg(long = "self", value_name = "URL")]
    #[serde(rename = "self")]
    pub self_url: Option<String>,
    /// Bind the peer listener here instead of at the port of --self [default: the host
    /// and port of --self; all interfaces when its host is a name]
    #[arg(long, value_name = "ADDR", value_parser = addr)]
    #[serde(deserialize_with = "de::peer_listen")]
    pub peer_listen: Option<SocketAddr>,
    /// Address of the client API [default: 127.0.0.1:8080]
    #[arg(long, value_name = "ADDR", value_parser = addr)]
    #[serde(deserialize_with = "de::listen")]
    pub listen: Option<SocketAddr>,
    /// Peer protocol: http, grpc or groupcache (golang/groupcache's HTTP dialect)
    /// [default: http]
    #[arg(long, value_name = "PROTOCOL")]
    #[serde(deserialize_with = "de::protocol")]
    pub protocol: Option<Protocol>,
    /// Whether concurrent fetches to one peer travel together as batches; off, one
    /// request per fetch, as golang/groupcache does [default: true]
    #[arg(long, value_name = "BOOL")]
    pub peer_batching: Option<bool>,
    /// Ring points per peer; every node must agree [default: 50]
    #[arg(long, value_name = "N")]
    pub replicas: Option<usize>,
    /// Longest key accepted from clients and peers; every node should agree
    /// [default: 65536]
    #[arg(long, value_name = "SIZE", value_parser = usize_size)]
    #[serde(deserialize_with = "de::max_key_len")]
    pub max_key_len: Option<usize>,
    /// How long a client get may take before it is answered 504 [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    #[serde(deserialize_with = "de::request_timeout")]
    pub request_timeout: Option<Duration>,
    /// Export spans over OTLP/gRPC to this collector, e.g. http://127.0.0.1:4317; the
    /// spans RUST_LOG enables (galaxycache=debug for the library's); needs galaxyd built
    /// with the `otlp` feature [default: none, no export]
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Where the peer list comes from.
    #[command(flatten)]
    #[serde(flatten)]
    pub peers: PeerArgs,
    /// How peers prove who they are.
    #[command(flatten)]
    #[serde(flatten)]
    pub security: SecurityArgs,
    /// Limits of the client API and the peer server.
    #[command(flatten)]
    #[serde(flatten)]
    pub limits: LimitArgs,
}

/// One galaxy's settings: a `[[galaxy]]` table's keys, and the `serve` flags of the one
/// galaxy a node runs without `--config` (`--galaxy` is the table's `name`).
#[derive(Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(default)]
#[command(next_help_heading = "The galaxy (without --config; [[galaxy]] keys with _)")]
pub struct GalaxySettings {
    /// Name of the galaxy, as peers and clients use it; the `name` key of a `[[galaxy]]`
    /// table, which every table needs [default: default]
    #[arg(long = "galaxy", value_name = "NAME", conflicts_with = "config")]
    pub name: Option<String>,
    /// Byte budget of the galaxy's caches (maincache and hotcache), e.g. 64MiB
    /// [default: 64MiB]
    #[arg(long, value_name = "SIZE", value_parser = parse_size, conflicts_with = "config")]
    #[serde(deserialize_with = "de::cache_bytes")]
    pub cache_bytes: Option<u64>,
    /// Data source: synthetic, sqlite:PATH, http:URL_TEMPLATE ({key} is replaced by the
    /// percent-encoded key) or postgres:URL (a postgresql:// connection URL, e.g.
    /// postgres:postgresql://app:secret@db:5432/app; no TLS: plain TCP or a unix socket)
    /// [default: synthetic]
    #[arg(long, value_name = "SPEC", conflicts_with = "config")]
    #[serde(deserialize_with = "de::backend")]
    pub backend: Option<BackendSpec>,
    /// Synthetic backend: bytes per value [default: 1KiB]
    #[arg(long, value_name = "SIZE", value_parser = usize_size, conflicts_with = "config")]
    #[serde(deserialize_with = "de::value_size")]
    pub value_size: Option<usize>,
    /// Synthetic backend: simulated latency of each load, e.g. 50ms [default: 0]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "config")]
    #[serde(deserialize_with = "de::backend_delay")]
    pub backend_delay: Option<Duration>,
    /// SQLite and PostgreSQL backends: the query; the key is ?1 (SQLite) or $1 (PostgreSQL,
    /// as text), the first column of the first row is the value (PostgreSQL: text or
    /// bytea), no row is no such key [default: SELECT value FROM kv WHERE key = ?1, with $1
    /// on PostgreSQL]
    #[arg(long, value_name = "SQL", conflicts_with = "config")]
    pub query: Option<String>,
    /// SQLite and PostgreSQL backends: the query that loads many keys at once (concurrent
    /// loads go to the database together, at most 256 keys a query): the keys are ?1 as a
    /// JSON array (SQLite: WHERE key IN (SELECT value FROM json_each(?1))) or $1 as text[]
    /// (PostgreSQL: WHERE key = ANY($1)); the first column is the key, the second the
    /// value. An empty string turns batching off [default: such a query on the default
    /// table when the query is the default; none (one query per key) with a custom query]
    #[arg(long, value_name = "SQL", conflicts_with = "config")]
    pub batch_query: Option<String>,
    /// SQLite and PostgreSQL backends: connections, each serving one query at a time
    /// [default: 4]
    #[arg(long, value_name = "N", conflicts_with = "config")]
    pub connections: Option<usize>,
    /// HTTP backend: how long a request to the origin may take; PostgreSQL: how long
    /// connecting or waiting for a pooled connection may take [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, conflicts_with = "config")]
    #[serde(deserialize_with = "de::backend_timeout")]
    pub backend_timeout: Option<Duration>,
    /// PostgreSQL backend: LISTEN on this channel (a dedicated connection); each
    /// notification's payload is a key to remove from the galaxy on every node, `*` flushes
    /// it (e.g. `NOTIFY chan, 'key-1'` after an UPDATE). After a lost connection the node
    /// reconnects and flushes the galaxy, since notifications may have been missed
    /// [default: none]
    #[arg(long, value_name = "NAME", conflicts_with = "config")]
    pub notify_channel: Option<String>,
    /// How the galaxy caches.
    #[command(flatten)]
    #[serde(flatten)]
    pub tuning: Tuning,
    /// What the galaxy loads at start-up.
    #[command(flatten)]
    #[serde(flatten)]
    pub preload: PreloadConfig,
}

/// The name of the galaxy `serve` runs without `--config` and without `--galaxy`.
pub(crate) const DEFAULT_GALAXY: &str = "default";

/// The TOML keys `S` declares: its flags' long names, `-` written `_`. `--galaxy` is the
/// `name` key of a `[[galaxy]]` table.
pub fn keys<S: Args>() -> Vec<String> {
    let command = S::augment_args(clap::Command::new("keys"));
    command
        .get_arguments()
        .filter_map(clap::Arg::get_long)
        .map(|long| match long {
            "galaxy" => "name".to_owned(),
            _ => long.replace('-', "_"),
        })
        .collect()
}

impl Settings {
    /// `self` (from the file) with every setting that `flags` gives replaced.
    pub(crate) fn overridden_by(self, flags: Settings) -> Settings {
        Settings {
            self_url: flags.self_url.or(self.self_url),
            peers: self.peers.overridden_by(flags.peers),
            security: self.security.overridden_by(flags.security),
            peer_listen: flags.peer_listen.or(self.peer_listen),
            listen: flags.listen.or(self.listen),
            protocol: flags.protocol.or(self.protocol),
            peer_batching: flags.peer_batching.or(self.peer_batching),
            replicas: flags.replicas.or(self.replicas),
            max_key_len: flags.max_key_len.or(self.max_key_len),
            request_timeout: flags.request_timeout.or(self.request_timeout),
            otlp_endpoint: flags.otlp_endpoint.or(self.otlp_endpoint),
            limits: self.limits.overridden_by(flags.limits),
        }
    }

    /// Apply the defaults and check everything, the galaxies too.
    pub(crate) fn resolve(self, galaxies: Vec<GalaxyConfig>) -> Result<NodeConfig, String> {
        let self_url = self.self_url.as_deref().unwrap_or(DEFAULT_SELF).trim();
        let self_url = normalize_peer_url(self_url).map_err(|e| e.message().to_owned())?;
        let peer_listen = match self.peer_listen {
            Some(addr) => addr,
            None => listen_addr_of(&self_url)?,
        };
        let peers = self.peers.resolve()?;
        let security = self.security.resolve()?;
        let replicas = self
            .replicas
            .unwrap_or(galaxycache_universe::DEFAULT_REPLICAS);
        if replicas == 0 {
            return Err("replicas must be at least 1".to_owned());
        }
        check_galaxies(&galaxies)?;
        let otlp_endpoint = self
            .otlp_endpoint
            .as_deref()
            .map(otlp_endpoint)
            .transpose()?;
        Ok(NodeConfig {
            self_url,
            peers,
            security,
            peer_listen,
            listen: self.listen.unwrap_or(DEFAULT_LISTEN),
            protocol: self.protocol.unwrap_or_default(),
            peer_batching: self.peer_batching.unwrap_or(true),
            replicas,
            max_key_len: self
                .max_key_len
                .unwrap_or(galaxycache_universe::DEFAULT_MAX_KEY_LEN),
            request_timeout: self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            otlp_endpoint,
            server_limits: self.limits.server_limits(),
            max_in_flight_bytes: self.limits.max_in_flight_bytes,
            galaxies,
        })
    }
}

/// At least one galaxy, names unique and not empty, and each galaxy's feed and preload
/// possible with its backend.
fn check_galaxies(galaxies: &[GalaxyConfig]) -> Result<(), String> {
    if galaxies.is_empty() {
        return Err("no galaxy configured (add a [[galaxy]] table)".to_owned());
    }
    let mut names: Vec<&str> = galaxies.iter().map(|g| g.name.as_str()).collect();
    names.sort_unstable();
    if let Some([twice, _]) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(format!("galaxy {twice:?} is configured twice"));
    }
    if let Some(g) = galaxies.iter().find(|g| g.name.is_empty()) {
        return Err(format!("a galaxy has an empty name ({})", g.backend));
    }
    for g in galaxies {
        let at = |e: String| format!("galaxy {:?}: {e}", g.name);
        if let Some(channel) = &g.notify_channel {
            notify_feed(&g.backend, channel, &g.backend_options).map_err(at)?;
        }
        if g.preload.preload_query.is_some() {
            check_preload(&g.backend).map_err(at)?;
        }
    }
    Ok(())
}

impl GalaxySettings {
    /// The galaxy these settings describe, the defaults applied; `default_name` when they
    /// name none (the flags' galaxy), else an error (a `[[galaxy]]` table without `name`).
    pub(crate) fn resolve(self, default_name: Option<&str>) -> Result<GalaxyConfig, String> {
        let name = match (self.name, default_name) {
            (Some(name), _) => name,
            (None, Some(name)) => name.to_owned(),
            (None, None) => return Err("a [[galaxy]] table has no name".to_owned()),
        };
        let mut galaxy = GalaxyConfig::new(name, self.backend.unwrap_or(BackendSpec::Synthetic));
        galaxy.cache_bytes = self.cache_bytes.unwrap_or(DEFAULT_CACHE_BYTES);
        let options = &mut galaxy.backend_options;
        if let Some(bytes) = self.value_size {
            options.value_size = bytes;
        }
        if let Some(delay) = self.backend_delay {
            options.delay = delay;
        }
        if let Some(query) = self.query {
            options.query = query;
        }
        options.batch_query = self.batch_query;
        if let Some(n) = self.connections {
            options.connections = n;
        }
        if let Some(timeout) = self.backend_timeout {
            options.timeout = timeout;
        }
        galaxy.notify_channel = self.notify_channel;
        galaxy.tuning = self.tuning;
        galaxy.preload = self.preload;
        Ok(galaxy)
    }
}

/// A size that fits in a `usize`.
pub(crate) fn usize_size(text: &str) -> Result<usize, String> {
    let bytes = parse_size(text)?;
    usize::try_from(bytes).map_err(|_| format!("size {text:?} is too large"))
}

/// An OTLP/gRPC endpoint: an `http://` URL with a host (TLS is not built in: a
/// collector beside the node forwards over TLS).
fn otlp_endpoint(text: &str) -> Result<String, String> {
    let text = text.trim();
    let invalid = |why: &str| format!("otlp_endpoint {text:?}: {why}");
    let uri: http::Uri = text.parse().map_err(|e| invalid(&format!("{e}")))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(host)) if !host.is_empty() => Ok(text.to_owned()),
        (Some("https"), _) => Err(invalid(
            "https is not supported; send to a collector beside the node (http://) that forwards over TLS",
        )),
        _ => Err(invalid("expected a URL such as http://127.0.0.1:4317")),
    }
}

fn addr(text: &str) -> Result<SocketAddr, String> {
    parse_addr(text, "address")
}

/// A size in a TOML file: a number of bytes, or text such as "64MiB".
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeField {
    Bytes(u64),
    Text(String),
}

impl SizeField {
    fn bytes(self) -> Result<u64, String> {
        match self {
            SizeField::Bytes(n) => Ok(n),
            SizeField::Text(text) => parse_size(&text),
        }
    }

    fn usize(self) -> Result<usize, String> {
        let bytes = self.bytes()?;
        usize::try_from(bytes).map_err(|_| format!("size {bytes} is too large"))
    }
}

/// The TOML side of the fields above that are not plain numbers or strings: errors name
/// the key.
mod de {
    use std::net::SocketAddr;
    use std::time::Duration;

    use super::{SizeField, parse_addr, parse_duration};
    use crate::backend::BackendSpec;
    use crate::config::Protocol;

    crate::tuning::de::fields! {
        peer_listen: SocketAddr = |text: String| parse_addr(&text, "address");
        listen: SocketAddr = |text: String| parse_addr(&text, "address");
        protocol: Protocol = |text: String| text.parse();
        max_key_len: usize = SizeField::usize;
        request_timeout: Duration = |text: String| parse_duration(&text);
        cache_bytes: u64 = SizeField::bytes;
        backend: BackendSpec = |text: String| text.parse();
        value_size: usize = SizeField::usize;
        backend_delay: Duration = |text: String| parse_duration(&text);
        backend_timeout: Duration = |text: String| parse_duration(&text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_a_key_once() {
        let mut top = keys::<Settings>();
        let galaxy = keys::<GalaxySettings>();
        for key in [
            "self",
            "peers_dns",
            "tls_ca",
            "max_connections",
            "request_timeout",
        ] {
            assert!(top.contains(&key.to_owned()), "{key} not in {top:?}");
        }
        for key in [
            "name",
            "cache_bytes",
            "connections",
            "hot_ratio",
            "preload_query",
        ] {
            assert!(galaxy.contains(&key.to_owned()), "{key} not in {galaxy:?}");
        }
        let count = top.len();
        top.sort_unstable();
        top.dedup();
        assert_eq!(top.len(), count, "a key declared twice");
    }

    #[test]
    fn a_galaxy_table_needs_a_name_and_flags_have_one() {
        let unnamed = GalaxySettings::default();
        let e = unnamed.clone().resolve(None).unwrap_err();
        assert!(e.contains("no name"), "{e}");
        let g = unnamed.resolve(Some(DEFAULT_GALAXY)).unwrap();
        assert_eq!(g, GalaxyConfig::new(DEFAULT_GALAXY, BackendSpec::Synthetic));
    }

    #[test]
    fn sizes_are_numbers_or_text() {
        let g: GalaxySettings =
            toml::from_str("cache_bytes = 1024\nvalue_size = \"2KiB\"").unwrap();
        assert_eq!((g.cache_bytes, g.value_size), (Some(1024), Some(2048)));
        let s: Settings = toml::from_str("max_key_len = \"1KiB\"").unwrap();
        assert_eq!(s.max_key_len, Some(1024));
        let e = toml::from_str::<Settings>("listen = \"nowhere\"").unwrap_err();
        assert!(e.to_string().contains("listen"), "{e}");
    }

    #[test]
    fn an_otlp_endpoint_is_an_http_url() {
        assert_eq!(
            otlp_endpoint(" http://collector:4317 ").as_deref(),
            Ok("http://collector:4317")
        );
        for bad in [
            "collector:4317",
            "https://collector:4317",
            "http://",
            "4317",
        ] {
            let e = otlp_endpoint(bad).unwrap_err();
            assert!(e.contains("otlp_endpoint"), "{e}");
        }
    }
}
