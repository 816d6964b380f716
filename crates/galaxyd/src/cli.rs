//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::config::{FileConfig, NodeConfig};
use crate::settings::{DEFAULT_GALAXY, GalaxySettings, Settings, usize_size};
use crate::units::parse_duration;
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
    /// A live table of a running cluster, found through one node's client API.
    Top(crate::top::TopArgs),
}

/// Flags of `galaxyd serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file with the node's settings and its `[[galaxy]]` tables (see
    /// docs/galaxyd.md); flags given too override its top-level settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// On SIGTERM or SIGINT, how long the node goes on answering its peers after it has
    /// closed its client API, so their fetches in flight finish and peers that follow a
    /// peer file or DNS drop it from their rings first (a flag only, not a key).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "2s")]
    pub drain: Duration,
    /// The node's settings: each flag is also a top-level key of --config.
    #[command(flatten)]
    pub settings: Settings,
    /// The one galaxy, without --config: each flag is also a key of a `[[galaxy]]` table.
    #[command(flatten)]
    pub galaxy: GalaxySettings,
}

impl ServeArgs {
    /// The node's configuration: the file's (when given) with the flags applied.
    pub fn node_config(&self) -> Result<NodeConfig, String> {
        let flags = self.settings.clone();
        match &self.config {
            Some(path) => {
                let file = FileConfig::read(path)?;
                let settings = file.settings.clone();
                let galaxies = file
                    .galaxies()
                    .map_err(|e| format!("config file {}: {e}", path.display()))?;
                settings.overridden_by(flags).resolve(galaxies)
            }
            None => {
                let galaxy = self.galaxy.clone().resolve(Some(DEFAULT_GALAXY))?;
                flags.resolve(vec![galaxy])
            }
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
    /// Number of distinct keys (`key-0` ...; see --key-format).
    #[arg(long, value_name = "N", default_value_t = crate::bench::DEFAULT_KEYS,
          conflicts_with = "keys_from")]
    pub keys: u64,
    /// The key of number N: `{}` is replaced by N, e.g. `user:{}`.
    #[arg(long, value_name = "PATTERN", default_value = crate::workload::DEFAULT_KEY_FORMAT,
          conflicts_with = "keys_from")]
    pub key_format: String,
    /// Ask for the keys in FILE, one a line (empty lines skipped), instead of numbered
    /// keys; --dist picks among them, the first line being the most asked for with zipf.
    #[arg(long, value_name = "FILE")]
    pub keys_from: Option<PathBuf>,
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
    /// How long reaching each target may take: before any load, bench reads every
    /// target's stats and stops with an error when one cannot be reached or has no such
    /// galaxy.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "3s")]
    pub connect_timeout: Duration,
    /// Exit non-zero when more than this share of the keys asked are answered with an
    /// error or a 404: a percentage (1%) or a fraction (0.01).
    #[arg(long, value_name = "SHARE", value_parser = parse_share, default_value = "1%")]
    pub max_error_share: f64,
    /// Ask N keys a request through the batch endpoint (POST /v1/galaxies/G/batch), and
    /// report keys/s as well as requests/s. Default: one GET per key.
    #[arg(long, value_name = "N", value_parser = batch_size)]
    pub batch: Option<usize>,
}

/// A share from 0 to 1, written as a percentage (`1%`) or a fraction (`0.01`).
fn parse_share(text: &str) -> Result<f64, String> {
    let invalid = || format!("invalid share {text:?}: expected e.g. 1% or 0.01");
    let (number, scale) = match text.trim().strip_suffix('%') {
        Some(percent) => (percent, 100.0),
        None => (text.trim(), 1.0),
    };
    let share = number.trim().parse::<f64>().map_err(|_| invalid())? / scale;
    if (0.0..=1.0).contains(&share) {
        Ok(share)
    } else {
        Err(format!("share {text:?} is outside 0 to 1 (0% to 100%)"))
    }
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
    use crate::backend::BackendSpec;
    use crate::config::Protocol;
    use crate::tuning::Tuning;

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
        assert_eq!((b.key_format.as_str(), b.max_error_share), ("key-{}", 0.01));
        let Command::Bench(b) = parse(&[
            "bench",
            "--targets",
            "http://a:1",
            "--keys-from",
            "keys.txt",
            "--max-error-share",
            "0.5",
        ])
        .unwrap()
        .command
        else {
            panic!("not bench")
        };
        assert_eq!(b.keys_from, Some(PathBuf::from("keys.txt")));
        assert_eq!(b.max_error_share, 0.5);
        assert_eq!(parse_share("2.5%"), Ok(0.025));
        assert!(parse_share("150%").unwrap_err().contains("outside"));
        assert!(parse_share("x").unwrap_err().contains("1% or 0.01"));
        let e = parse(&[
            "bench",
            "--targets",
            "http://a:1",
            "--keys-from",
            "f",
            "--keys",
            "9",
        ])
        .unwrap_err()
        .to_string();
        assert!(e.contains("cannot be used with"), "{e}");
    }
}
