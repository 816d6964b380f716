//! A node's configuration: from flags for one galaxy, or from a TOML file for several.
//!
//! ```toml
//! self = "http://10.0.0.1:9001"          # this node's peer URL; the peer listener binds its port
//! peers = ["http://10.0.0.1:9001", "http://10.0.0.2:9001"]
//! # or: peers_file = "/etc/galaxyd/peers"        # re-read on change and on SIGHUP
//! #     peers_file_interval = "1s"               # how often to look at it        [1s]
//! # or: peers_dns = "cache.default.svc.cluster.local:9001"   # A/AAAA records, port
//! #     peers_dns_scheme = "http"                # http | https                 [http]
//! #     peers_dns_interval = "5s"                # how often to resolve           [5s]
//! listen = "0.0.0.0:8080"                # client API
//! protocol = "http"                      # http | grpc | groupcache
//! max_connections = 20000                # per server                       [10000]
//! api_tls_cert = "/etc/galaxyd/api.pem"  # HTTPS client API (and api_tls_key) [none]
//! max_in_flight_bytes = "256MiB"         # values received or sent, uncounted
//! #                                        by caches            [half the budgets]
//! # and header_read_timeout, idle_timeout, max_requests_in_flight,
//! # max_concurrent_streams, max_header_list_size: the serve flags' defaults
//!
//! [[galaxy]]
//! name = "users"
//! cache_bytes = "64MiB"
//! backend = "sqlite:/var/lib/users.db"
//! query = "SELECT body FROM users WHERE id = ?1"
//! batch_query = "SELECT id, body FROM users WHERE id IN (SELECT value FROM json_each(?1))"
//!
//! [[galaxy]]
//! name = "pages"
//! cache_bytes = "16MiB"
//! backend = "synthetic"
//! value_size = "4KiB"
//! backend_delay = "20ms"
//!
//! [[galaxy]]
//! name = "products"
//! backend = "postgres:postgresql://app:secret@db:5432/shop"   # no TLS: plain TCP
//! query = "SELECT body FROM products WHERE sku = $1"          # $1 is the key, as text
//! batch_query = "SELECT sku, body FROM products WHERE sku = ANY($1)"  # many keys: text[]
//! connections = 8                                             # pooled connections
//! backend_timeout = "5s"                                      # to connect or get one
//! notify_channel = "products_changed"                         # LISTEN for invalidations
//! preload_query = "SELECT sku, body FROM products"            # warm start: key, value
//! first_update_fail_ok = true                                 # a failed preload: start cold
//! refresh_after = "80%"                # of the TTL ("30s": after loading)   [none]
//! xfetch = 1.0                         # spread refreshes (XFetch beta)       [off]
//! stale_if_error = "10m"               # serve an expired value if reload fails [0]
//! soft_timeout = "200ms"               # ... or while the reload is slower    [none]
//! not_found_ttl = "30s"                # cache "no such key"                  [none]
//! max_ttl = "1h"                       # longest a value is served            [none]
//! ttl_jitter = "5m"                    # taken off max_ttl at random          [0]
//! hot_ratio = 0.125                    # hotcache's share of cache_bytes      [0.125]
//! peer_timeout = "1s"                  # wait for the owner, then load here   [1s]
//! ```
//!
//! One peer source at most: `peers`, `peers_file` or `peers_dns` (see [`PeerArgs`]); the
//! flags of the same names replace the file's source. Peer URLs are normalised as every
//! node's ring needs them (`galaxycache_universe::normalize_peer_url`).
//!
//! The last keys (defaults in brackets) are the `serve` flags of the same names
//! (`--stale-if-error 10m`), for one galaxy without a file; see [`Tuning`] and
//! [`PreloadConfig`]. With a `preload_query` (SQLite and PostgreSQL), the node streams
//! the query's rows into the galaxy at start-up, keeping those it owns, and `/readyz`
//! answers 503 until every preload has ended; a failed preload stops the node unless
//! `first_update_fail_ok`.
//!
//! With a `batch_query` (SQLite and PostgreSQL), loads that arrive while the database is
//! busy go to it together, one query of up to 256 keys: the keys are `?1` as a JSON array
//! (SQLite) or `$1` as `text[]` (PostgreSQL), and the query returns the key and the value
//! as its first two columns. A galaxy on the default `query` batches on the default table
//! by itself; one with a custom `query` and no `batch_query` loads one key per query
//! (`batch_query = ""` turns batching off).
//!
//! With `notify_channel`, every node LISTENs on that channel (a dedicated connection) and
//! each notification's payload is a key to remove from the galaxy, `*` a flush:
//! `UPDATE products SET ...; NOTIFY products_changed, 'sku-1';` (or `pg_notify`). The name
//! is used as given, quoted; an unquoted `NOTIFY` folds it to lowercase. When the LISTEN
//! connection is lost the node reconnects (backing off up to 30 s) and then flushes the
//! galaxy on every node, since notifications may have been missed. Only postgres backends
//! have one.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use http::Uri;
use serde::Deserialize;

use crate::backend::{BackendOptions, BackendSpec, check_preload, notify_feed};
use crate::limits::LimitArgs;
use crate::peers::{PeerArgs, PeerSource};
use crate::preload::PreloadConfig;
use crate::security::{PeerSecurity, SecurityArgs};
use crate::tuning::Tuning;
use crate::units::{parse_duration, parse_size};
use galaxycache_universe::normalize_peer_url;

/// The peer URL a node has when none is given.
pub(crate) const DEFAULT_SELF: &str = "http://127.0.0.1:9001";
/// The client API address when none is given.
pub(crate) const DEFAULT_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080);
/// A galaxy's byte budget when none is given: 64 MiB.
pub(crate) const DEFAULT_CACHE_BYTES: u64 = 64 << 20;
/// How long a client get may take when not told.
pub(crate) const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The peer protocol of a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP, galaxycache dialect.
    #[default]
    Http,
    /// gRPC.
    Grpc,
    /// HTTP, golang/groupcache's dialect: joins a ring of Go groupcache nodes.
    Groupcache,
}

impl FromStr for Protocol {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "http" => Ok(Protocol::Http),
            "grpc" => Ok(Protocol::Grpc),
            "groupcache" => Ok(Protocol::Groupcache),
            _ => Err(format!(
                "unknown protocol {text:?}: expected http, grpc or groupcache"
            )),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
            Protocol::Groupcache => "groupcache",
        })
    }
}

/// Everything a node needs to start.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    /// This node's peer URL, as the other peers list it.
    pub self_url: String,
    /// Where the peer list comes from: a fixed list (normalised, as `galaxyd owner`
    /// hashes it), a file or DNS. This node may be listed or not: it is always on its own
    /// ring.
    pub peers: PeerSource,
    /// mTLS and the token between peers.
    pub security: PeerSecurity,
    /// Where the peer listener binds (from the port of `self_url` unless told).
    pub peer_listen: SocketAddr,
    /// Where the client API listens.
    pub listen: SocketAddr,
    /// The peer protocol.
    pub protocol: Protocol,
    /// Ring points per peer.
    pub replicas: usize,
    /// Longest key accepted, from clients and peers alike; every node should agree.
    pub max_key_len: usize,
    /// How long a client get may take before it is answered 504.
    pub request_timeout: Duration,
    /// Limits of the client API and the peer server (galaxyd's flags; not in the file).
    pub server_limits: galaxycache_http::ServerLimits,
    /// Value bytes in flight that no cache counts: half for values being received (from
    /// peers and origins), half for values being sent to clients. `None`: see
    /// [`in_flight_bytes`](Self::in_flight_bytes).
    pub max_in_flight_bytes: Option<u64>,
    /// The galaxies, at least one.
    pub galaxies: Vec<GalaxyConfig>,
}

impl NodeConfig {
    /// A node alone on its ring: peer URL `http://{peer_listen}`, listed as its only
    /// peer, the HTTP protocol, and `serve`'s defaults for the rest.
    pub fn local(peer_listen: SocketAddr, listen: SocketAddr, galaxies: Vec<GalaxyConfig>) -> Self {
        let self_url = format!("http://{peer_listen}");
        NodeConfig {
            peers: PeerSource::Static(vec![self_url.clone()]),
            self_url,
            security: PeerSecurity::default(),
            peer_listen,
            listen,
            protocol: Protocol::default(),
            replicas: galaxycache_universe::DEFAULT_REPLICAS,
            max_key_len: galaxycache_universe::DEFAULT_MAX_KEY_LEN,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            server_limits: galaxycache_http::ServerLimits::default(),
            max_in_flight_bytes: None,
            galaxies,
        }
    }

    /// The node's bytes in flight: as set, else half the galaxies' cache budgets, at
    /// least twice [`MIN_IN_FLIGHT_BYTES`](galaxycache_universe::MIN_IN_FLIGHT_BYTES).
    pub fn in_flight_bytes(&self) -> u64 {
        self.max_in_flight_bytes.unwrap_or_else(|| {
            let budgets = self.galaxies.iter().map(|g| g.cache_bytes);
            (budgets.fold(0, u64::saturating_add) / 2)
                .max(2 * galaxycache_universe::MIN_IN_FLIGHT_BYTES)
        })
    }
}

/// One galaxy of a node.
#[derive(Clone, Debug, PartialEq)]
pub struct GalaxyConfig {
    /// The name peers and clients use.
    pub name: String,
    /// The byte budget of its caches.
    pub cache_bytes: u64,
    /// Its data source.
    pub backend: BackendSpec,
    /// Settings of the data source.
    pub backend_options: BackendOptions,
    /// How it caches: freshness, TTL bounds, the hotcache's share, the peer timeout.
    pub tuning: Tuning,
    /// What it loads at start-up, before the node is ready.
    pub preload: PreloadConfig,
    /// PostgreSQL backends only: LISTEN on this channel and treat each notification's
    /// payload as a key to remove (`*`: flush the galaxy). None by default.
    pub notify_channel: Option<String>,
}

impl GalaxyConfig {
    /// A galaxy named `name` over `backend` with default settings.
    pub fn new(name: impl Into<String>, backend: BackendSpec) -> Self {
        GalaxyConfig {
            name: name.into(),
            cache_bytes: DEFAULT_CACHE_BYTES,
            backend,
            backend_options: BackendOptions::default(),
            tuning: Tuning::default(),
            preload: PreloadConfig::default(),
            notify_channel: None,
        }
    }
}

/// A size written as a number of bytes or as text like "64MiB".
#[derive(Deserialize)]
#[serde(untagged)]
enum SizeField {
    Bytes(u64),
    Text(String),
}

impl SizeField {
    fn bytes(&self, field: &str) -> Result<u64, String> {
        match self {
            SizeField::Bytes(n) => Ok(*n),
            SizeField::Text(t) => parse_size(t).map_err(|e| format!("{field}: {e}")),
        }
    }
}

fn duration_field(text: &Option<String>, field: &str) -> Result<Option<Duration>, String> {
    text.as_deref()
        .map(|t| parse_duration(t).map_err(|e| format!("{field}: {e}")))
        .transpose()
}

/// The TOML file, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileConfig {
    #[serde(rename = "self")]
    pub(crate) self_url: Option<String>,
    #[serde(flatten)]
    pub(crate) peers: PeerArgs,
    #[serde(flatten)]
    pub(crate) security: SecurityArgs,
    pub(crate) peer_listen: Option<String>,
    pub(crate) listen: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) replicas: Option<usize>,
    pub(crate) max_key_len: Option<usize>,
    pub(crate) request_timeout: Option<String>,
    #[serde(flatten)]
    pub(crate) limits: LimitArgs,
    #[serde(default, rename = "galaxy")]
    galaxies: Vec<FileGalaxy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileGalaxy {
    name: String,
    cache_bytes: Option<SizeField>,
    backend: Option<String>,
    value_size: Option<SizeField>,
    backend_delay: Option<String>,
    query: Option<String>,
    batch_query: Option<String>,
    connections: Option<usize>,
    backend_timeout: Option<String>,
    notify_channel: Option<String>,
    #[serde(flatten)]
    tuning: Tuning,
    #[serde(flatten)]
    preload: PreloadConfig,
}

impl FileGalaxy {
    fn resolve(self) -> Result<GalaxyConfig, String> {
        let at = format!("galaxy {:?}", self.name);
        let backend = match &self.backend {
            Some(spec) => spec.parse().map_err(|e| format!("{at}: {e}"))?,
            None => BackendSpec::Synthetic,
        };
        let mut galaxy = GalaxyConfig::new(self.name, backend);
        if let Some(size) = &self.cache_bytes {
            galaxy.cache_bytes = size.bytes(&format!("{at}: cache_bytes"))?;
        }
        let options = &mut galaxy.backend_options;
        if let Some(size) = &self.value_size {
            let bytes = size.bytes(&format!("{at}: value_size"))?;
            options.value_size = usize::try_from(bytes).map_err(|e| format!("{at}: {e}"))?;
        }
        if let Some(d) = duration_field(&self.backend_delay, &format!("{at}: backend_delay"))? {
            options.delay = d;
        }
        if let Some(query) = self.query {
            options.query = query;
        }
        options.batch_query = self.batch_query;
        if let Some(n) = self.connections {
            options.connections = n;
        }
        if let Some(d) = duration_field(&self.backend_timeout, &format!("{at}: backend_timeout"))? {
            options.timeout = d;
        }
        galaxy.notify_channel = self.notify_channel;
        galaxy.tuning = self.tuning;
        galaxy.preload = self.preload;
        Ok(galaxy)
    }
}

impl FileConfig {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    pub(crate) fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("config file {}: {e}", path.display()))
    }

    pub(crate) fn galaxies(self) -> Result<Vec<GalaxyConfig>, String> {
        self.galaxies.into_iter().map(FileGalaxy::resolve).collect()
    }
}

/// The top-level settings before defaults, from a file, flags, or both (flags win).
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct TopLevel {
    pub(crate) self_url: Option<String>,
    pub(crate) peers: PeerArgs,
    pub(crate) security: SecurityArgs,
    pub(crate) peer_listen: Option<SocketAddr>,
    pub(crate) listen: Option<SocketAddr>,
    pub(crate) protocol: Option<Protocol>,
    pub(crate) replicas: Option<usize>,
    pub(crate) max_key_len: Option<usize>,
    pub(crate) request_timeout: Option<Duration>,
    pub(crate) limits: LimitArgs,
}

impl TopLevel {
    pub(crate) fn from_file(file: &FileConfig) -> Result<Self, String> {
        let addr = |text: &Option<String>, what: &str| {
            text.as_deref().map(|t| parse_addr(t, what)).transpose()
        };
        Ok(TopLevel {
            self_url: file.self_url.clone(),
            peers: file.peers.clone(),
            security: file.security.clone(),
            peer_listen: addr(&file.peer_listen, "peer_listen")?,
            listen: addr(&file.listen, "listen")?,
            protocol: file.protocol.as_deref().map(str::parse).transpose()?,
            replicas: file.replicas,
            max_key_len: file.max_key_len,
            request_timeout: duration_field(&file.request_timeout, "request_timeout")?,
            limits: file.limits.clone(),
        })
    }

    /// `self` with every field that `flags` sets replaced.
    pub(crate) fn overridden_by(self, flags: TopLevel) -> Self {
        TopLevel {
            self_url: flags.self_url.or(self.self_url),
            peers: self.peers.overridden_by(flags.peers),
            security: self.security.overridden_by(flags.security),
            peer_listen: flags.peer_listen.or(self.peer_listen),
            listen: flags.listen.or(self.listen),
            protocol: flags.protocol.or(self.protocol),
            replicas: flags.replicas.or(self.replicas),
            max_key_len: flags.max_key_len.or(self.max_key_len),
            request_timeout: flags.request_timeout.or(self.request_timeout),
            limits: self.limits.overridden_by(flags.limits),
        }
    }

    /// Apply defaults and check everything.
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
        if galaxies.is_empty() {
            return Err("no galaxy configured (add a [[galaxy]] table)".to_owned());
        }
        let mut names: Vec<&str> = galaxies.iter().map(|g| g.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("galaxy {:?} is configured twice", w[0]));
        }
        if let Some(g) = galaxies.iter().find(|g| g.name.is_empty()) {
            return Err(format!("a galaxy has an empty name ({})", g.backend));
        }
        for g in &galaxies {
            let at = |e: String| format!("galaxy {:?}: {e}", g.name);
            if let Some(channel) = &g.notify_channel {
                notify_feed(&g.backend, channel, &g.backend_options).map_err(at)?;
            }
            if g.preload.preload_query.is_some() {
                check_preload(&g.backend).map_err(at)?;
            }
        }
        Ok(NodeConfig {
            self_url,
            peers,
            security,
            peer_listen,
            listen: self.listen.unwrap_or(DEFAULT_LISTEN),
            protocol: self.protocol.unwrap_or_default(),
            replicas,
            max_key_len: self
                .max_key_len
                .unwrap_or(galaxycache_universe::DEFAULT_MAX_KEY_LEN),
            request_timeout: self.request_timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT),
            server_limits: self.limits.server_limits(),
            max_in_flight_bytes: self.limits.max_in_flight_bytes,
            galaxies,
        })
    }
}

/// Parse `IP:PORT`, naming `what` in the error.
pub(crate) fn parse_addr(text: &str, what: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("invalid {what} {text:?}: expected IP:PORT, e.g. 127.0.0.1:8080"))
}

/// Where to bind the peer listener for peer URL `url`: its IP (all interfaces when the
/// host is a name) and its port.
fn listen_addr_of(url: &str) -> Result<SocketAddr, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("invalid self URL {url:?}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!(
            "invalid self URL {url:?}: expected http://HOST:PORT"
        ));
    }
    let host = uri.host().unwrap_or_default();
    let ip = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    Ok(SocketAddr::new(ip, uri.port_u16().unwrap_or(80)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use galaxycache_galaxy::Refresh;

    const EXAMPLE: &str = r#"
        self = "http://10.0.0.1:9001"
        peers = ["http://10.0.0.1:9001", "http://10.0.0.2:9001/"]
        listen = "0.0.0.0:8080"
        protocol = "grpc"

        [[galaxy]]
        name = "users"
        cache_bytes = "64MiB"
        backend = "sqlite:/var/lib/users.db"
        query = "SELECT body FROM users WHERE id = ?1"
        peer_timeout = "250ms"

        [[galaxy]]
        name = "pages"
        cache_bytes = 1048576
        value_size = "4KiB"
        backend_delay = "20ms"
        hot_ratio = 0.25

        [[galaxy]]
        name = "products"
        backend = "postgres:postgresql://app:secret@db:5432/shop"
        query = "SELECT body FROM products WHERE sku = $1"
        batch_query = "SELECT sku, body FROM products WHERE sku = ANY($1)"
        connections = 8
        backend_timeout = "5s"
        notify_channel = "products_changed"
    "#;

    fn resolve(text: &str) -> Result<NodeConfig, String> {
        let file = FileConfig::parse(text)?;
        let top = TopLevel::from_file(&file)?;
        top.resolve(file.galaxies()?)
    }

    #[test]
    fn parses_the_documented_example() {
        let c = resolve(EXAMPLE).unwrap();
        assert_eq!(c.self_url, "http://10.0.0.1:9001");
        assert_eq!(
            c.peers,
            PeerSource::Static(vec![
                "http://10.0.0.1:9001".into(),
                "http://10.0.0.2:9001".into()
            ])
        );
        assert_eq!(c.peer_listen, "10.0.0.1:9001".parse().unwrap());
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.replicas, 50);
        let [users, pages, products] = &c.galaxies[..] else {
            panic!("three galaxies expected: {:?}", c.galaxies)
        };
        assert_eq!(users.cache_bytes, 64 << 20);
        assert_eq!(
            users.backend,
            BackendSpec::Sqlite("/var/lib/users.db".into())
        );
        assert_eq!(
            users.backend_options.query,
            "SELECT body FROM users WHERE id = ?1"
        );
        assert_eq!(users.backend_options.batch_query, None);
        assert_eq!(users.tuning.peer_timeout, Some(Duration::from_millis(250)));
        assert_eq!(pages.cache_bytes, 1 << 20);
        assert_eq!(pages.backend, BackendSpec::Synthetic);
        assert_eq!(pages.backend_options.value_size, 4096);
        assert_eq!(pages.backend_options.delay, Duration::from_millis(20));
        assert_eq!(pages.tuning.hot_ratio, Some(0.25));
        assert_eq!(pages.notify_channel, None);
        assert_eq!(
            products.backend,
            BackendSpec::Postgres("postgresql://app:secret@db:5432/shop".into())
        );
        let options = &products.backend_options;
        assert_eq!(options.query, "SELECT body FROM products WHERE sku = $1");
        assert_eq!(
            options.batch_query.as_deref(),
            Some("SELECT sku, body FROM products WHERE sku = ANY($1)")
        );
        assert_eq!(options.connections, 8);
        assert_eq!(options.timeout, Duration::from_secs(5));
        assert_eq!(products.notify_channel.as_deref(), Some("products_changed"));
    }

    #[test]
    fn freshness_and_preload_keys_take_effect() {
        let c = resolve(
            r#"
            [[galaxy]]
            name = "kv"
            backend = "sqlite:/var/lib/kv.db"
            refresh_after = "80%"
            xfetch = 1.5
            stale_if_error = "10m"
            soft_timeout = "200ms"
            not_found_ttl = "30s"
            max_ttl = "1h"
            ttl_jitter = "5m"
            hot_ratio = 0.25
            peer_timeout = "2s"
            preload_query = "SELECT key, value FROM kv"
            first_update_fail_ok = true

            [[galaxy]]
            name = "plain"
            refresh_after = "30s"
            "#,
        )
        .unwrap();
        let [kv, plain] = &c.galaxies[..] else {
            panic!("two galaxies expected: {:?}", c.galaxies)
        };
        let s = Duration::from_secs;
        assert_eq!(
            kv.tuning,
            Tuning {
                refresh_after: Some(Refresh::AtFraction(0.8)),
                xfetch: Some(1.5),
                stale_if_error: Some(s(600)),
                soft_timeout: Some(Duration::from_millis(200)),
                not_found_ttl: Some(s(30)),
                max_ttl: Some(s(3600)),
                ttl_jitter: Some(s(300)),
                hot_ratio: Some(0.25),
                peer_timeout: Some(s(2)),
            }
        );
        assert_eq!(
            kv.preload.preload_query.as_deref(),
            Some("SELECT key, value FROM kv")
        );
        assert!(kv.preload.first_update_fail_ok);
        assert_eq!(
            plain.tuning,
            Tuning {
                refresh_after: Some(Refresh::After(s(30))),
                ..Tuning::default()
            }
        );
        assert_eq!(plain.preload, PreloadConfig::default());
        // Taking effect: the builder gets them (the rest is the core's to test).
        let universe = galaxycache_universe::Universe::builder("http://127.0.0.1:1").build();
        let builder = kv.tuning.apply(galaxycache_galaxy::Galaxy::builder(
            &universe,
            "kv",
            1024,
            |_: String| async { Ok(None) },
        ));
        let shown = format!("{builder:?}");
        for part in [
            "hot_ratio: 0.25",
            "max_ttl: Some(3600s)",
            "ttl_jitter: 300s",
        ] {
            assert!(shown.contains(part), "{part} not in {shown}");
        }
    }

    #[test]
    fn bad_freshness_and_preload_keys_say_why() {
        let galaxy =
            |key: &str| resolve(&format!("[[galaxy]]\nname = \"g\"\n{key}\n")).unwrap_err();
        let e = galaxy("stale_if_error = \"5\"");
        assert!(e.contains("stale_if_error") && e.contains("no unit"), "{e}");
        let e = galaxy("refresh_after = \"120%\"");
        assert!(e.contains("refresh_after") && e.contains("outside"), "{e}");
        let e = galaxy("hot_ratio = 2.0");
        assert!(e.contains("hot_ratio") && e.contains("0..=1"), "{e}");
        let e = galaxy("xfetch = -1.0");
        assert!(e.contains("xfetch"), "{e}");
        let e = galaxy("preload_query = \"SELECT 1, 2\"");
        assert!(
            e.contains("galaxy \"g\"") && e.contains("needs a sqlite or postgres backend"),
            "{e}"
        );
        let e = galaxy("stale_if_eror = \"5s\"");
        assert!(e.contains("stale_if_eror"), "{e}");
    }

    #[test]
    fn flags_override_the_file() {
        let file = FileConfig::parse(EXAMPLE).unwrap();
        let flags = TopLevel {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            protocol: Some(Protocol::Http),
            ..TopLevel::default()
        };
        let c = TopLevel::from_file(&file)
            .unwrap()
            .overridden_by(flags)
            .resolve(file.galaxies().unwrap())
            .unwrap();
        assert_eq!(c.listen, "127.0.0.1:1".parse().unwrap());
        assert_eq!(c.protocol, Protocol::Http);
        assert_eq!(c.self_url, "http://10.0.0.1:9001");
    }

    #[test]
    fn limits_from_the_file_and_the_in_flight_default() {
        // The example's budgets: 64 MiB, 1 MiB and the default 64 MiB; half of them.
        let c = resolve(EXAMPLE).unwrap();
        assert_eq!(c.in_flight_bytes(), (129 << 20) / 2);
        assert_eq!(c.server_limits, galaxycache_http::ServerLimits::default());
        let with_limits =
            format!("max_connections = 50\nmax_in_flight_bytes = \"8MiB\"\n{EXAMPLE}");
        let c = resolve(&with_limits).unwrap();
        assert_eq!(c.in_flight_bytes(), 8 << 20);
        assert_eq!(c.server_limits.max_connections, 50);
    }

    #[test]
    fn errors_name_the_field() {
        let e = resolve("[[galaxy]]\nname = \"g\"\ncache_bytes = \"12 parsecs\"\n").unwrap_err();
        assert!(
            e.contains("galaxy \"g\": cache_bytes") && e.contains("suffix"),
            "{e}"
        );
        let e = resolve("[[galaxy]]\nname = \"g\"\nbackend = \"redis:x\"\n").unwrap_err();
        assert!(
            e.contains("galaxy \"g\"") && e.contains("unknown backend"),
            "{e}"
        );
        let e = resolve("[[galaxy]]\nname = \"g\"\nbackend_delay = \"5\"\n").unwrap_err();
        assert!(e.contains("backend_delay") && e.contains("no unit"), "{e}");
        let e = resolve("[[galaxy]]\nname = \"g\"\ncolour = 1\n").unwrap_err();
        assert!(e.contains("colour"), "{e}");
        let e = resolve("protocol = \"smtp\"\n[[galaxy]]\nname = \"g\"\n").unwrap_err();
        assert!(e.contains("unknown protocol"), "{e}");
        let e = resolve("self = \"https://x:1\"\n[[galaxy]]\nname = \"g\"\n").unwrap_err();
        assert!(e.contains("self URL"), "{e}");
        assert!(resolve("").unwrap_err().contains("no galaxy"));
        let e = resolve("[[galaxy]]\nname = \"g\"\nnotify_channel = \"c\"\n").unwrap_err();
        assert!(
            e.contains("galaxy \"g\"") && e.contains("needs a postgres backend"),
            "{e}"
        );
        let e = resolve(
            "[[galaxy]]\nname = \"g\"\nbackend = \"postgres:postgres://db/x\"\nnotify_channel = \"\"\n",
        )
        .unwrap_err();
        assert!(e.contains("notify channel"), "{e}");
        let twice = "[[galaxy]]\nname = \"g\"\n[[galaxy]]\nname = \"g\"\n";
        assert!(resolve(twice).unwrap_err().contains("configured twice"));
    }

    #[test]
    fn peer_security_from_the_file() {
        let g = "[[galaxy]]\nname = \"g\"\n";
        let tls = "tls_cert = \"n.pem\"\ntls_key = \"n.key\"\ntls_ca = \"ca.pem\"\n";
        let c = resolve(&format!("{tls}peer_token_file = \"t\"\n{g}")).unwrap();
        let expected = ["ca.pem", "n.pem", "n.key"].map(std::path::PathBuf::from);
        assert_eq!(c.security.tls, Some(expected));
        assert_eq!(c.security.token_file, Some("t".into()));
        let e = resolve(&format!("tls_cert = \"n.pem\"\n{g}")).unwrap_err();
        assert!(e.contains("all three"), "{e}");
    }

    #[test]
    fn peer_sources_from_the_file() {
        let g = "[[galaxy]]\nname = \"g\"\n";
        let c = resolve(&format!(
            "peers_dns = \"cache.svc:9001\"\npeers_dns_interval = \"10s\"\n{g}"
        ))
        .unwrap();
        let PeerSource::Dns {
            target, interval, ..
        } = c.peers
        else {
            panic!("not DNS: {:?}", c.peers)
        };
        assert_eq!((target.name.as_str(), target.port), ("cache.svc", 9001));
        assert_eq!(interval, Duration::from_secs(10));
        let c = resolve(&format!("peers_file = \"/etc/peers\"\n{g}")).unwrap();
        assert!(matches!(c.peers, PeerSource::File { .. }), "{:?}", c.peers);
        let e = resolve(&format!("peers = [\"http://a\"]\npeers_file = \"/p\"\n{g}"));
        assert!(e.unwrap_err().contains("exclusive"));
        let e = resolve(&format!("peers_dns = \"cache\"\n{g}")).unwrap_err();
        assert!(e.contains("peers_dns") && e.contains("NAME:PORT"), "{e}");
        let e = resolve(&format!("peers_dns_scheme = \"ftp\"\n{g}")).unwrap_err();
        assert!(e.contains("peers_dns_scheme"), "{e}");
        let e = resolve(&format!("peers = [\"http://a:1\", \"http://[x]\"]\n{g}"));
        assert!(e.unwrap_err().contains("http://[x]"));
    }

    #[test]
    fn defaults_and_normalized_peers() {
        let c = resolve("peers = [\" HTTP://b:9001/\", \"\"]\n[[galaxy]]\nname = \"g\"\n").unwrap();
        assert_eq!(c.self_url, DEFAULT_SELF);
        assert_eq!(c.peers, PeerSource::Static(vec!["http://b:9001".into()]));
        assert_eq!(c.peer_listen, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(c.galaxies[0].cache_bytes, DEFAULT_CACHE_BYTES);
        assert_eq!(
            listen_addr_of("http://cache-1.internal:7000"),
            Ok("0.0.0.0:7000".parse().unwrap())
        );
    }
}
