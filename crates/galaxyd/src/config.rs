//! A node's configuration: from flags for one galaxy, or from a TOML file for several.
//!
//! The settings themselves (each a flag and a key) are declared in [`crate::settings`];
//! `docs/galaxyd.md` lists them with their defaults, and `docs/galaxyd.example.toml` is a
//! file with every key, which a test loads. This module holds what they resolve to
//! ([`NodeConfig`], [`GalaxyConfig`]) and the file's layout: the top-level keys, then one
//! `[[galaxy]]` table per galaxy.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use http::Uri;

use crate::backend::{BackendOptions, BackendSpec};
use crate::peers::PeerSource;
use crate::preload::PreloadConfig;
use crate::security::PeerSecurity;
use crate::settings::{self, GalaxySettings, Settings};
use crate::tuning::Tuning;

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
    /// Whether concurrent fetches to one peer travel together as batches.
    pub peer_batching: bool,
    /// Ring points per peer.
    pub replicas: usize,
    /// Longest key accepted, from clients and peers alike; every node should agree.
    pub max_key_len: usize,
    /// How long a client get may take before it is answered 504.
    pub request_timeout: Duration,
    /// Where galaxyd's spans are exported over OTLP/gRPC (an `http://` URL); `None`: no
    /// export. The node itself ignores it: `galaxyd serve` installs the exporter.
    pub otlp_endpoint: Option<String>,
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
            peer_batching: true,
            replicas: galaxycache_universe::DEFAULT_REPLICAS,
            max_key_len: galaxycache_universe::DEFAULT_MAX_KEY_LEN,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            otlp_endpoint: None,
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

/// The TOML file, as written: the top-level settings and the `[[galaxy]]` tables.
pub(crate) struct FileConfig {
    pub(crate) settings: Settings,
    galaxies: Vec<GalaxySettings>,
}

impl FileConfig {
    /// Parse a file's text; a key that no setting declares is an error that names it, and
    /// an error in a `[[galaxy]]` table names the galaxy.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        check_keys(&table)?;
        // From the text, so that errors say where; `galaxy` is not a setting's key.
        let settings = toml::from_str(text).map_err(|e: toml::de::Error| e.to_string())?;
        let galaxies = match table.remove("galaxy") {
            None => Vec::new(),
            Some(toml::Value::Array(tables)) => tables
                .into_iter()
                .map(|g| {
                    let name = g.get("name").and_then(toml::Value::as_str);
                    let at = format!("galaxy {:?}", name.unwrap_or_default());
                    g.try_into()
                        .map_err(|e: toml::de::Error| format!("{at}: {e}"))
                })
                .collect::<Result<_, String>>()?,
            Some(_) => return Err("galaxy must be tables: [[galaxy]]".to_owned()),
        };
        Ok(FileConfig { settings, galaxies })
    }

    pub(crate) fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("config file {}: {e}", path.display()))
    }

    /// The galaxies, checked one by one (the node checks them together).
    pub(crate) fn galaxies(self) -> Result<Vec<GalaxyConfig>, String> {
        self.galaxies.into_iter().map(|g| g.resolve(None)).collect()
    }
}

/// Every key of `file` is one a setting declares (serde's `deny_unknown_fields` does not
/// see through the flattened groups).
fn check_keys(file: &toml::Table) -> Result<(), String> {
    let unknown = |key: &str, known: &[String], at: &str| {
        format!(
            "unknown key {key:?}{at}; the keys are: {}",
            known.join(", ")
        )
    };
    let mut top = settings::keys::<Settings>();
    top.push("galaxy".to_owned());
    if let Some(key) = file.keys().find(|k| !top.contains(k)) {
        return Err(unknown(key, &top, ""));
    }
    let tables = file.get("galaxy").and_then(toml::Value::as_array);
    let known = settings::keys::<GalaxySettings>();
    for table in tables
        .into_iter()
        .flatten()
        .filter_map(toml::Value::as_table)
    {
        if let Some(key) = table.keys().find(|k| !known.contains(k)) {
            let name = table
                .get("name")
                .and_then(toml::Value::as_str)
                .unwrap_or("");
            return Err(unknown(key, &known, &format!(" in [[galaxy]] {name:?}")));
        }
    }
    Ok(())
}

/// Parse `IP:PORT`, naming `what` in the error.
pub(crate) fn parse_addr(text: &str, what: &str) -> Result<SocketAddr, String> {
    text.parse()
        .map_err(|_| format!("invalid {what} {text:?}: expected IP:PORT, e.g. 127.0.0.1:8080"))
}

/// Where to bind the peer listener for peer URL `url`: its IP (all interfaces when the
/// host is a name) and its port.
pub(crate) fn listen_addr_of(url: &str) -> Result<SocketAddr, String> {
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
        let settings = file.settings.clone();
        settings.resolve(file.galaxies()?)
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
        let flags = Settings {
            listen: Some("127.0.0.1:1".parse().unwrap()),
            protocol: Some(Protocol::Http),
            ..Settings::default()
        };
        let c = file
            .settings
            .clone()
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
