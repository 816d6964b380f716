//! The command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::backend::{BackendOptions, BackendSpec, DEFAULT_QUERY};
use crate::config::{
    DEFAULT_CACHE_BYTES, FileConfig, GalaxyConfig, NodeConfig, Protocol, TopLevel, parse_addr,
};
use crate::limits::LimitArgs;
use crate::peers::PeerArgs;
use crate::preload::PreloadConfig;
use crate::security::SecurityArgs;
use crate::tuning::Tuning;
use crate::units::{parse_duration, parse_size};
use crate::workload::Dist;

/// galaxyd: a galaxycache node, and tools to look at a cluster of them.
#[derive(Debug, Parser)]
#[command(name = "galaxyd", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one node: a peer listener and a client API.
    Serve(Box<ServeArgs>),
    /// Print `KEY<TAB>OWNER` for each key (keys from stdin when none are given).
    Owner(OwnerArgs),
    /// Start a 3-node cluster in this process in front of SQLite and drive a skewed
    /// workload through it.
    Demo(DemoArgs),
    /// Generate load against the client APIs of running nodes.
    Bench(BenchArgs),
}

fn usize_size(text: &str) -> Result<usize, String> {
    let bytes = parse_size(text)?;
    usize::try_from(bytes).map_err(|_| format!("size {text:?} is too large"))
}

fn addr(text: &str) -> Result<SocketAddr, String> {
    parse_addr(text, "address")
}

/// Flags of `galaxyd serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file with the node's settings and its `[[galaxy]]` tables; flags given too
    /// override its top-level settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// This node's peer URL, as the other peers list it; the peer listener binds its
    /// port [default: http://127.0.0.1:9001].
    #[arg(long = "self", value_name = "URL")]
    pub self_url: Option<String>,
    /// Where the peer list comes from.
    #[command(flatten)]
    pub peers: PeerArgs,
    /// How peers prove who they are.
    #[command(flatten)]
    pub security: SecurityArgs,
    /// Bind the peer listener here instead of at the port of --self.
    #[arg(long, value_name = "ADDR", value_parser = addr)]
    pub peer_listen: Option<SocketAddr>,
    /// Address of the client API [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR", value_parser = addr)]
    pub listen: Option<SocketAddr>,
    /// Peer protocol: http, grpc or groupcache [default: http].
    #[arg(long, value_name = "PROTOCOL")]
    pub protocol: Option<Protocol>,
    /// Ring points per peer [default: 50].
    #[arg(long, value_name = "N")]
    pub replicas: Option<usize>,
    /// Longest key accepted from clients and peers; every node should agree
    /// [default: 65536].
    #[arg(long, value_name = "SIZE", value_parser = usize_size)]
    pub max_key_len: Option<usize>,
    /// How long a client get may take before it is answered 504 [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub request_timeout: Option<Duration>,
    /// On SIGTERM or SIGINT, how long the node goes on answering its peers after it has
    /// closed its client API, so their fetches in flight finish and peers that follow a
    /// peer file or DNS drop it from their rings first.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2s")]
    pub drain: Duration,
    /// Limits of the client API and the peer server.
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Name of the galaxy (without --config).
    #[arg(
        long,
        value_name = "NAME",
        default_value = "default",
        conflicts_with = "config"
    )]
    pub galaxy: String,
    /// Byte budget of the galaxy's caches, e.g. 64MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value_t = DEFAULT_CACHE_BYTES,
          conflicts_with = "config")]
    pub cache_bytes: u64,
    /// Data source: synthetic, sqlite:PATH, http:URL_TEMPLATE ({key} is replaced by the
    /// percent-encoded key) or postgres:URL (a postgresql:// connection URL, e.g.
    /// postgres:postgresql://app:secret@db:5432/app; no TLS: plain TCP or a unix socket).
    #[arg(
        long,
        value_name = "SPEC",
        default_value = "synthetic",
        conflicts_with = "config"
    )]
    pub backend: BackendSpec,
    /// Synthetic backend: bytes per value.
    #[arg(long, value_name = "SIZE", value_parser = usize_size, default_value = "1KiB",
          conflicts_with = "config")]
    pub value_size: usize,
    /// Synthetic backend: simulated latency of each load, e.g. 50ms.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0",
          conflicts_with = "config")]
    pub backend_delay: Duration,
    /// SQLite and PostgreSQL backends: the query; the key is ?1 (SQLite) or $1 (PostgreSQL,
    /// as text), the first column of the first row is the value (PostgreSQL: text or bytea),
    /// no row is no such key. PostgreSQL's default is the same query with $1.
    #[arg(long, value_name = "SQL", default_value = DEFAULT_QUERY, conflicts_with = "config")]
    pub query: String,
    /// SQLite and PostgreSQL backends: the query that loads many keys at once (concurrent
    /// loads go to the database together, at most 256 keys a query): the keys are ?1 as a
    /// JSON array (SQLite: WHERE key IN (SELECT value FROM json_each(?1))) or $1 as text[]
    /// (PostgreSQL: WHERE key = ANY($1)); the first column is the key, the second the value.
    /// Default: such a query on the default table when --query is the default; none (one
    /// query per key) with a custom --query. An empty string turns batching off.
    #[arg(long, value_name = "SQL", conflicts_with = "config")]
    pub batch_query: Option<String>,
    /// PostgreSQL backend: LISTEN on this channel (a dedicated connection); each
    /// notification's payload is a key to remove from the galaxy on every node, `*` flushes
    /// it (e.g. `NOTIFY chan, 'key-1'` after an UPDATE). After a lost connection the node
    /// reconnects and flushes the galaxy, since notifications may have been missed.
    #[arg(long, value_name = "NAME", conflicts_with = "config")]
    pub notify_channel: Option<String>,
    /// How the galaxy caches (without --config).
    #[command(flatten)]
    pub tuning: Tuning,
    /// What the galaxy loads at start-up (without --config).
    #[command(flatten)]
    pub preload: PreloadConfig,
}

impl ServeArgs {
    /// The node's configuration: the file's (when given) with the flags applied.
    pub fn node_config(&self) -> Result<NodeConfig, String> {
        let flags = TopLevel {
            self_url: self.self_url.clone(),
            peers: self.peers.clone(),
            security: self.security.clone(),
            peer_listen: self.peer_listen,
            listen: self.listen,
            protocol: self.protocol,
            replicas: self.replicas,
            max_key_len: self.max_key_len,
            request_timeout: self.request_timeout,
            limits: self.limits.clone(),
        };
        match &self.config {
            Some(path) => {
                let file = FileConfig::read(path)?;
                let top = TopLevel::from_file(&file)
                    .map_err(|e| format!("config file {}: {e}", path.display()))?;
                let galaxies = file
                    .galaxies()
                    .map_err(|e| format!("config file {}: {e}", path.display()))?;
                top.overridden_by(flags).resolve(galaxies)
            }
            None => flags.resolve(vec![self.galaxy_config()]),
        }
    }

    fn galaxy_config(&self) -> GalaxyConfig {
        GalaxyConfig {
            name: self.galaxy.clone(),
            cache_bytes: self.cache_bytes,
            backend: self.backend.clone(),
            backend_options: BackendOptions {
                value_size: self.value_size,
                delay: self.backend_delay,
                query: self.query.clone(),
                batch_query: self.batch_query.clone(),
                ..BackendOptions::default()
            },
            tuning: self.tuning.clone(),
            preload: self.preload.clone(),
            notify_channel: self.notify_channel.clone(),
        }
    }
}

/// Flags of `galaxyd owner`.
#[derive(Debug, Args)]
pub struct OwnerArgs {
    /// Every peer's URL, comma-separated, as the nodes are given them (normalised as
    /// `serve` normalises them: spaces around, a trailing `/`, a default port ignored).
    #[arg(
        long,
        value_name = "URL,URL,...",
        value_delimiter = ',',
        required = true
    )]
    pub peers: Vec<String>,
    /// Ring points per peer.
    #[arg(long, value_name = "N", default_value_t = galaxycache_universe::DEFAULT_REPLICAS)]
    pub replicas: usize,
    /// Keys to look up; read from stdin, one a line, when none are given.
    #[arg(value_name = "KEY")]
    pub keys: Vec<String>,
}

/// Flags of `galaxyd demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Rows in the demo database (keys `key-0` ...).
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub keys: u64,
    /// Requests to send, spread over the three nodes.
    #[arg(long, value_name = "N", default_value_t = 40_000)]
    pub requests: u64,
    /// Requests in flight at once.
    #[arg(long, value_name = "N", default_value_t = 32)]
    pub concurrency: usize,
    /// Key distribution: uniform or zipf:S.
    #[arg(long, value_name = "DIST", default_value = "zipf:1.1")]
    pub dist: Dist,
    /// Bytes per value.
    #[arg(long, value_name = "SIZE", value_parser = usize_size, default_value = "256")]
    pub value_size: usize,
}

/// Flags of `galaxyd bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Client API base URLs of the nodes, comma-separated, e.g. http://127.0.0.1:8080.
    #[arg(
        long,
        value_name = "URL,URL,...",
        value_delimiter = ',',
        required = true
    )]
    pub targets: Vec<String>,
    /// The galaxy to read.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub galaxy: String,
    /// Number of distinct keys (`key-0` ...).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub keys: u64,
    /// Key distribution: uniform or zipf:S.
    #[arg(long, value_name = "DIST", default_value = "zipf:1.1")]
    pub dist: Dist,
    /// Requests in flight at once (one keep-alive connection each).
    #[arg(long, value_name = "N", default_value_t = 16)]
    pub concurrency: usize,
    /// How long to measure.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub duration: Duration,
    /// How long to send load before measuring.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0")]
    pub warmup: Duration,
    /// Check that every value is the synthetic backend's value of its key.
    #[arg(long)]
    pub value_check: bool,
    /// Print the report as JSON, without a progress bar.
    #[arg(long)]
    pub json: bool,
    /// How long one request may take before it counts as an error.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub timeout: Duration,
    /// Ask N keys a request through the batch endpoint (POST /v1/galaxies/G/batch), and
    /// report keys/s as well as requests/s. Default: one GET per key.
    #[arg(long, value_name = "N", value_parser = batch_size)]
    pub batch: Option<usize>,
}

/// A `--batch`: 1 to 1,000 keys, what the batch endpoint takes.
const MAX_BATCH_KEYS: usize = crate::api::MAX_BATCH_KEYS;

fn batch_size(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n @ 1..=MAX_BATCH_KEYS) => Ok(n),
        _ => Err(format!(
            "expected 1 to {MAX_BATCH_KEYS} keys a request, not {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("galaxyd").chain(args.iter().copied()))
    }

    fn serve(args: &[&str]) -> ServeArgs {
        let mut full = vec!["serve"];
        full.extend_from_slice(args);
        match parse(&full).unwrap().command {
            Command::Serve(s) => *s,
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn bench_batch_is_1_to_1000_keys() {
        let bench = |n: &str| parse(&["bench", "--targets", "http://127.0.0.1:1", "--batch", n]);
        match bench("10").unwrap().command {
            Command::Bench(b) => assert_eq!(b.batch, Some(10)),
            other => panic!("parsed as {other:?}"),
        }
        for bad in ["0", "1001", "x"] {
            let e = bench(bad).unwrap_err().to_string();
            assert!(e.contains("expected 1 to 1000 keys"), "{bad}: {e}");
        }
    }

    #[test]
    fn serve_flags_for_one_galaxy() {
        let s = serve(&[
            "--self",
            "http://127.0.0.1:9002",
            "--peers",
            "http://127.0.0.1:9001,http://127.0.0.1:9002",
            "--listen",
            "127.0.0.1:8082",
            "--protocol",
            "groupcache",
            "--galaxy",
            "users",
            "--cache-bytes",
            "32MiB",
            "--backend",
            "synthetic",
            "--value-size",
            "2KiB",
            "--backend-delay",
            "50ms",
        ]);
        let c = s.node_config().unwrap();
        assert_eq!(c.self_url, "http://127.0.0.1:9002");
        assert_eq!(
            c.peers,
            crate::PeerSource::Static(vec![
                "http://127.0.0.1:9001".into(),
                "http://127.0.0.1:9002".into()
            ])
        );
        assert_eq!(c.peer_listen, "127.0.0.1:9002".parse().unwrap());
        assert_eq!(c.listen, "127.0.0.1:8082".parse().unwrap());
        assert_eq!(c.protocol, Protocol::Groupcache);
        let g = &c.galaxies[0];
        assert_eq!((g.name.as_str(), g.cache_bytes), ("users", 32 << 20));
        assert_eq!(g.backend_options.value_size, 2048);
        assert_eq!(g.backend_options.delay, Duration::from_millis(50));
    }

    #[test]
    fn serve_flags_for_a_postgres_galaxy() {
        let s = serve(&[
            "--backend",
            "postgres:postgresql://app@127.0.0.1:5432/app",
            "--query",
            "SELECT body FROM items WHERE id = $1",
            "--batch-query",
            "SELECT id, body FROM items WHERE id = ANY($1)",
            "--notify-channel",
            "items_changed",
        ]);
        let g = &s.node_config().unwrap().galaxies[0];
        assert_eq!(
            g.backend,
            BackendSpec::Postgres("postgresql://app@127.0.0.1:5432/app".into())
        );
        assert_eq!(
            g.backend_options.query,
            "SELECT body FROM items WHERE id = $1"
        );
        assert_eq!(
            g.backend_options.batch_query.as_deref(),
            Some("SELECT id, body FROM items WHERE id = ANY($1)")
        );
        assert_eq!(g.notify_channel.as_deref(), Some("items_changed"));
    }

    #[test]
    fn serve_flags_for_freshness_and_preload() {
        let s = serve(&[
            "--backend",
            "sqlite:kv.db",
            "--refresh-after",
            "80%",
            "--xfetch",
            "--stale-if-error",
            "30s",
            "--soft-timeout",
            "100ms",
            "--not-found-ttl",
            "5s",
            "--max-ttl",
            "1h",
            "--ttl-jitter",
            "1m",
            "--hot-ratio",
            "0.25",
            "--peer-timeout",
            "2s",
            "--preload-query",
            "SELECT key, value FROM kv",
            "--first-update-fail-ok",
        ]);
        let g = &s.node_config().unwrap().galaxies[0];
        let t = &g.tuning;
        assert_eq!(
            t.refresh_after,
            Some(galaxycache_galaxy::Refresh::AtFraction(0.8))
        );
        assert_eq!(t.xfetch, Some(1.0), "--xfetch alone is XFetch's beta 1");
        assert_eq!(t.stale_if_error, Some(Duration::from_secs(30)));
        assert_eq!(t.soft_timeout, Some(Duration::from_millis(100)));
        assert_eq!(t.not_found_ttl, Some(Duration::from_secs(5)));
        assert_eq!(t.max_ttl, Some(Duration::from_secs(3600)));
        assert_eq!(t.ttl_jitter, Some(Duration::from_secs(60)));
        assert_eq!(t.hot_ratio, Some(0.25));
        assert_eq!(t.peer_timeout, Some(Duration::from_secs(2)));
        assert_eq!(
            g.preload.preload_query.as_deref(),
            Some("SELECT key, value FROM kv")
        );
        assert!(g.preload.first_update_fail_ok);
        let s = serve(&["--refresh-after", "30s", "--xfetch", "2"]);
        let t = &s.node_config().unwrap().galaxies[0].tuning;
        assert_eq!(
            t.refresh_after,
            Some(galaxycache_galaxy::Refresh::After(Duration::from_secs(30)))
        );
        assert_eq!(t.xfetch, Some(2.0));
        assert_eq!(
            serve(&[]).node_config().unwrap().galaxies[0].tuning,
            Tuning::default()
        );
    }

    #[test]
    fn serve_defaults() {
        let c = serve(&[]).node_config().unwrap();
        assert_eq!(c.galaxies[0].name, "default");
        assert_eq!(c.galaxies[0].backend, BackendSpec::Synthetic);
        assert_eq!(c.galaxies[0].backend_options.value_size, 1024);
        assert_eq!(c.protocol, Protocol::Http);
        assert_eq!(c.peers, crate::PeerSource::Static(Vec::new()));
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        let message = |args: &[&str]| parse(args).unwrap_err().to_string();
        let e = message(&["serve", "--cache-bytes", "64XB"]);
        assert!(
            e.contains("--cache-bytes") && e.contains("unknown size suffix"),
            "{e}"
        );
        let e = message(&["serve", "--backend-delay", "50"]);
        assert!(e.contains("no unit"), "{e}");
        let e = message(&["serve", "--backend", "mysql:db"]);
        assert!(
            e.contains("unknown backend") && e.contains("sqlite:PATH"),
            "{e}"
        );
        let e = message(&["serve", "--protocol", "smtp"]);
        assert!(e.contains("expected http, grpc or groupcache"), "{e}");
        let e = message(&["serve", "--config", "x.toml", "--galaxy", "g"]);
        assert!(e.contains("cannot be used with"), "{e}");
        let e = message(&["serve", "--config", "x.toml", "--max-ttl", "1s"]);
        assert!(e.contains("cannot be used with"), "{e}");
        let e = message(&["serve", "--refresh-after", "0%"]);
        assert!(
            e.contains("--refresh-after") && e.contains("outside"),
            "{e}"
        );
        let e = message(&["serve", "--hot-ratio", "2"]);
        assert!(e.contains("--hot-ratio"), "{e}");
        let e = serve(&["--preload-query", "SELECT 1, 2"])
            .node_config()
            .unwrap_err();
        assert!(e.contains("needs a sqlite or postgres backend"), "{e}");
        let e = message(&["bench", "--targets", "http://a", "--dist", "zipf:x"]);
        assert!(e.contains("zipf exponent"), "{e}");
        let e = message(&["owner"]);
        assert!(e.contains("--peers"), "{e}");
        let e = serve(&["--notify-channel", "kv"])
            .node_config()
            .unwrap_err();
        assert!(e.contains("needs a postgres backend"), "{e}");
        let e = serve(&["--config", "/nonexistent/galaxyd.toml"]).node_config();
        assert!(e.unwrap_err().contains("cannot read config file"));
    }

    #[test]
    fn one_peer_source_from_flags() {
        let c = serve(&[
            "--peers-dns",
            "cache.default.svc:9001",
            "--peers-dns-scheme",
            "https",
            "--peers-dns-interval",
            "2s",
        ])
        .node_config()
        .unwrap();
        let target = crate::DnsTarget {
            name: "cache.default.svc".into(),
            port: 9001,
        };
        let dns = crate::PeerSource::Dns {
            target,
            scheme: "https".into(),
            interval: Duration::from_secs(2),
        };
        assert_eq!(c.peers, dns);
        let c = serve(&["--peers-file", "/etc/peers"])
            .node_config()
            .unwrap();
        let file = crate::PeerSource::File {
            path: "/etc/peers".into(),
            interval: galaxycache_universe::DEFAULT_FILE_INTERVAL,
        };
        assert_eq!(c.peers, file);
        let message = |args: &[&str]| parse(args).unwrap_err().to_string();
        let e = message(&["serve", "--peers", "http://a", "--peers-file", "p"]);
        assert!(e.contains("cannot be used with"), "{e}");
        let e = message(&["serve", "--peers-file", "p", "--peers-dns", "svc:1"]);
        assert!(e.contains("cannot be used with"), "{e}");
        let e = message(&["serve", "--peers-dns", "svc"]);
        assert!(e.contains("NAME:PORT"), "{e}");
        let e = message(&[
            "serve",
            "--peers-dns",
            "svc:1",
            "--peers-dns-scheme",
            "grpc",
        ]);
        assert!(e.contains("http or https"), "{e}");
        let e = serve(&["--peers-dns-interval", "1s"])
            .node_config()
            .unwrap_err();
        assert!(e.contains("need peers_dns"), "{e}");
        let e = serve(&["--peers", "http://a b"]).node_config().unwrap_err();
        assert!(e.contains("http://a b"), "{e}");
    }

    #[test]
    fn owner_and_bench_flags() {
        let Command::Owner(o) = parse(&["owner", "--peers", "a,b", "--replicas", "3", "k1", "k2"])
            .unwrap()
            .command
        else {
            panic!("not owner")
        };
        assert_eq!(
            (o.peers, o.replicas, o.keys),
            (
                vec!["a".into(), "b".into()],
                3,
                vec!["k1".into(), "k2".into()]
            )
        );
        let Command::Bench(b) = parse(&[
            "bench",
            "--targets",
            "http://a:1,http://b:2",
            "--galaxy",
            "g",
            "--keys",
            "1000",
            "--dist",
            "uniform",
            "--concurrency",
            "4",
            "--duration",
            "2s",
            "--warmup",
            "500ms",
            "--value-check",
            "--json",
        ])
        .unwrap()
        .command
        else {
            panic!("not bench")
        };
        assert_eq!(b.targets.len(), 2);
        assert_eq!((b.keys, b.dist, b.concurrency), (1000, Dist::Uniform, 4));
        assert_eq!(
            (b.duration, b.warmup),
            (Duration::from_secs(2), Duration::from_millis(500))
        );
        assert!(b.value_check && b.json);
    }
}
