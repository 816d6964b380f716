//! The data sources a galaxyd galaxy can sit in front of.

// No request may panic the node: outside tests, every unwrap, expect, index and unchecked
// arithmetic is an error; the few that cannot fail are allowed where they are, saying why.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

mod http;
mod postgres;
mod sqlite;
mod synthetic;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use bytes::Bytes;
use galaxycache_universe::{InFlight, Value};
use tokio::sync::mpsc;

use self::http::HttpBackend;
use self::postgres::PostgresBackend;
use self::sqlite::SqliteBackend;
use self::synthetic::SyntheticBackend;

pub(crate) use self::http::origin_value;
pub(crate) use self::postgres::NotifyFeed;
pub(crate) use self::sqlite::DEFAULT_QUERY;
pub(crate) use self::synthetic::is_synthetic_value;
pub use self::synthetic::synthetic_value;

/// Which backend, as written on the command line: `synthetic`, `sqlite:PATH`,
/// `http:URL_TEMPLATE` or `postgres:URL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendSpec {
    /// Every key exists; its value is derived from the key.
    Synthetic,
    /// Rows of an SQLite database file.
    Sqlite(PathBuf),
    /// An origin server; `{key}` in the template is replaced by the encoded key. Values
    /// are fresh, refreshed and kept stale as the origin's `Cache-Control` and `Expires`
    /// say; `no-store` and `no-cache` values are served once and not kept.
    Http(String),
    /// A PostgreSQL database: a `postgresql://` (or `postgres://`) connection URL. No TLS:
    /// the connection is plain TCP or a unix socket.
    Postgres(String),
}

impl FromStr for BackendSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = "expected synthetic, sqlite:PATH, http:URL (e.g. \
                        http:http://origin:8080/items/{key}) or postgres:URL (e.g. \
                        postgres:postgresql://app@db:5432/app)";
        match text.split_once(':') {
            None if text == "synthetic" => Ok(BackendSpec::Synthetic),
            Some(("sqlite", "")) => Err(format!("backend {text:?} names no database file")),
            Some(("sqlite", path)) => Ok(BackendSpec::Sqlite(PathBuf::from(path))),
            Some(("http", "")) => Err(format!("backend {text:?} names no URL")),
            Some(("http", url)) => Ok(BackendSpec::Http(url.to_owned())),
            Some(("postgres", "")) => Err(format!("backend {text:?} names no URL")),
            Some(("postgres", url))
                if url.starts_with("postgresql://") || url.starts_with("postgres://") =>
            {
                Ok(BackendSpec::Postgres(url.to_owned()))
            }
            Some(("postgres", _)) => Err(format!(
                "backend {text:?}: expected a postgresql:// URL, e.g. \
                 postgres:postgresql://app@db:5432/app"
            )),
            _ => Err(format!("unknown backend {text:?}: {expected}")),
        }
    }
}

impl fmt::Display for BackendSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendSpec::Synthetic => f.write_str("synthetic"),
            BackendSpec::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            BackendSpec::Http(url) => write!(f, "http:{url}"),
            // Shown in logs and errors: never the password.
            BackendSpec::Postgres(url) => write!(f, "postgres:{}", postgres::redact(url)),
        }
    }
}

/// Settings of the backends; each uses the ones that concern it.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendOptions {
    /// Synthetic: bytes per value. Default 1024.
    pub value_size: usize,
    /// Synthetic: simulated latency of each load. Default zero.
    pub delay: Duration,
    /// SQLite and PostgreSQL: the query; the key is `?1` (SQLite) or `$1` (PostgreSQL, as
    /// text), the first column of the first row is the value. Default
    /// `SELECT value FROM kv WHERE key = ?1`, which PostgreSQL runs with `$1`.
    pub query: String,
    /// SQLite and PostgreSQL: connections (each serves one query at a time). Default 4.
    pub connections: usize,
    /// HTTP: how long a request to the origin may take; PostgreSQL: how long connecting or
    /// waiting for a pooled connection may take. Default 10 s.
    pub timeout: Duration,
}

impl Default for BackendOptions {
    fn default() -> Self {
        BackendOptions {
            value_size: 1024,
            delay: Duration::ZERO,
            query: DEFAULT_QUERY.to_owned(),
            connections: 4,
            timeout: Duration::from_secs(10),
        }
    }
}

/// An opened backend.
#[derive(Debug)]
pub struct Backend {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Synthetic(SyntheticBackend),
    Sqlite(SqliteBackend),
    /// Boxed: a pooled hyper client is large.
    Http(Box<HttpBackend>),
    Postgres(PostgresBackend),
}

impl Backend {
    /// Open the backend `spec` says: open the database and check the query, or check the
    /// URL template. Errors say what is wrong with the configuration.
    ///
    /// An HTTP backend reads origins' bodies against `in_flight`, the node's bound on bytes
    /// in flight.
    pub fn open(
        spec: &BackendSpec,
        options: &BackendOptions,
        in_flight: &InFlight,
    ) -> Result<Self, String> {
        let kind = match spec {
            BackendSpec::Synthetic => {
                Kind::Synthetic(SyntheticBackend::new(options.value_size, options.delay))
            }
            BackendSpec::Sqlite(path) => Kind::Sqlite(SqliteBackend::open(
                path,
                &options.query,
                options.connections,
            )?),
            BackendSpec::Http(url) => {
                Kind::Http(Box::new(HttpBackend::new(url, options.timeout, in_flight)?))
            }
            BackendSpec::Postgres(url) => {
                // The default query, written for SQLite, in PostgreSQL's placeholder.
                let query = match options.query.as_str() {
                    DEFAULT_QUERY => postgres::DEFAULT_QUERY,
                    query => query,
                };
                Kind::Postgres(PostgresBackend::open(
                    url,
                    query,
                    options.connections,
                    options.timeout,
                )?)
            }
        };
        Ok(Backend { kind })
    }

    /// The value of `key`, `None` when the source has no such key.
    pub async fn load(&self, key: &str) -> Result<Option<Value>, String> {
        match &self.kind {
            Kind::Synthetic(b) => Ok(Some(Value::new(b.load(key).await))),
            Kind::Sqlite(b) => Ok(b.load(key).await?.map(Value::new)),
            Kind::Http(b) => b.load(key).await,
            Kind::Postgres(b) => Ok(b.load(key).await?.map(Value::new)),
        }
    }
}

/// The change feed of a galaxy whose backend is `spec`: LISTEN on `channel` (PostgreSQL
/// only). Errors say why the configuration cannot have one.
pub(crate) fn notify_feed(
    spec: &BackendSpec,
    channel: &str,
    options: &BackendOptions,
) -> Result<NotifyFeed, String> {
    match spec {
        BackendSpec::Postgres(url) => NotifyFeed::new(url, channel, options.timeout),
        other => Err(format!(
            "notify channel {channel:?} needs a postgres backend (LISTEN/NOTIFY), not {other}"
        )),
    }
}

/// A row of a preload query: the key and the value's bytes.
pub(crate) type Entry = (String, Bytes);

/// Rows of a preload query in flight between the database and the galaxy: past this,
/// reading waits for the galaxy to catch up.
const PRELOAD_BUFFER: usize = 1024;

/// Whether a galaxy over `spec` can be preloaded (SQLite and PostgreSQL can).
pub(crate) fn check_preload(spec: &BackendSpec) -> Result<(), String> {
    match spec {
        BackendSpec::Sqlite(_) | BackendSpec::Postgres(_) => Ok(()),
        other => Err(format!(
            "a preload query needs a sqlite or postgres backend, not {other}"
        )),
    }
}

/// The rows of the preload `query` on the database `spec` names, read as they come into
/// a bounded channel (the table is never held whole); a failure is the channel's last
/// item. Must be called within a tokio runtime.
pub(crate) fn preload_rows(
    spec: &BackendSpec,
    options: &BackendOptions,
    query: &str,
) -> Result<mpsc::Receiver<Result<Entry, String>>, String> {
    check_preload(spec)?;
    let (tx, rx) = mpsc::channel(PRELOAD_BUFFER);
    match spec {
        BackendSpec::Sqlite(path) => sqlite::send_rows(path, query, tx),
        BackendSpec::Postgres(url) => postgres::send_rows(url, query, options.timeout, tx)?,
        // Refused by the check above.
        BackendSpec::Synthetic | BackendSpec::Http(_) => {}
    }
    Ok(rx)
}

impl galaxycache_galaxy::BackendGetter for Backend {
    async fn get(&self, key: &str) -> Result<Option<Value>, galaxycache_galaxy::Error> {
        self.load(key)
            .await
            .map_err(galaxycache_galaxy::Error::backend)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_backend_specs() {
        assert_eq!("synthetic".parse(), Ok(BackendSpec::Synthetic));
        assert_eq!(
            "sqlite:/var/db/kv.db".parse(),
            Ok(BackendSpec::Sqlite("/var/db/kv.db".into()))
        );
        assert_eq!(
            "http:http://origin:8080/items/{key}".parse(),
            Ok(BackendSpec::Http("http://origin:8080/items/{key}".into()))
        );
        assert_eq!(
            "postgres:postgresql://app@db/app".parse(),
            Ok(BackendSpec::Postgres("postgresql://app@db/app".into()))
        );
        for spec in [
            "synthetic",
            "sqlite:kv.db",
            "http:http://o/{key}",
            "postgres:postgres://db:5432/app",
        ] {
            assert_eq!(spec.parse::<BackendSpec>().unwrap().to_string(), spec);
        }
    }

    #[test]
    fn bad_backend_specs_say_why() {
        let e = "redis:localhost".parse::<BackendSpec>().unwrap_err();
        assert!(
            e.contains("unknown backend") && e.contains("sqlite:PATH"),
            "{e}"
        );
        assert!(
            "sqlite:"
                .parse::<BackendSpec>()
                .unwrap_err()
                .contains("no database file")
        );
        assert!(
            "http:"
                .parse::<BackendSpec>()
                .unwrap_err()
                .contains("no URL")
        );
        assert!("synthetic:x".parse::<BackendSpec>().is_err());
        let e = "postgres:db:5432".parse::<BackendSpec>().unwrap_err();
        assert!(e.contains("expected a postgresql:// URL"), "{e}");
        assert!(
            "postgres:"
                .parse::<BackendSpec>()
                .unwrap_err()
                .contains("no URL")
        );
        let spec: BackendSpec = "postgres:postgresql://app:s3cret@db/app".parse().unwrap();
        assert_eq!(spec.to_string(), "postgres:postgresql://app:***@db/app");
    }

    #[tokio::test]
    async fn synthetic_backend_has_every_key() {
        let options = BackendOptions {
            value_size: 3,
            ..BackendOptions::default()
        };
        let b = Backend::open(&BackendSpec::Synthetic, &options, &InFlight::unbounded()).unwrap();
        let v = b.load("a").await.unwrap().unwrap();
        assert_eq!(v.bytes().as_ref(), b"ca9");
        assert_eq!(v.expires_at(), None);
    }
}
