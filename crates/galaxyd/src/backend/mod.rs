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

use std::collections::HashMap;
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
    /// SQLite and PostgreSQL: the query that loads many keys at once, so that concurrent
    /// loads go to the database together (at most 256 keys a query). It returns the key and
    /// the value as its first two columns, for the keys it finds; the keys are `?1` as a
    /// JSON array of strings (SQLite) or `$1` as `text[]` (PostgreSQL). `None`: the
    /// default table's batch query when `query` is the default
    /// (`SELECT key, value FROM kv WHERE key IN (SELECT value FROM json_each(?1))`,
    /// PostgreSQL `SELECT key, value FROM kv WHERE key = ANY($1)`), else no batching (a
    /// custom `query` needs a batch query of its own). `Some("")`: no batching.
    pub batch_query: Option<String>,
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
            batch_query: None,
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
        let batch_query = |default| match options.batch_query.as_deref() {
            Some("") => None,
            Some(query) => Some(query),
            None => (options.query == DEFAULT_QUERY).then_some(default),
        };
        if options
            .batch_query
            .as_deref()
            .is_some_and(|q| !q.is_empty())
            && matches!(spec, BackendSpec::Synthetic | BackendSpec::Http(_))
        {
            return Err(format!(
                "a batch query needs a sqlite or postgres backend, not {spec}"
            ));
        }
        let kind = match spec {
            BackendSpec::Synthetic => {
                Kind::Synthetic(SyntheticBackend::new(options.value_size, options.delay))
            }
            BackendSpec::Sqlite(path) => Kind::Sqlite(SqliteBackend::open(
                path,
                &options.query,
                batch_query(sqlite::DEFAULT_BATCH_QUERY),
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
                    batch_query(postgres::DEFAULT_BATCH_QUERY),
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

    /// Whether this backend loads many keys in one query (SQLite and PostgreSQL with a
    /// batch query).
    pub fn batches(&self) -> bool {
        match &self.kind {
            Kind::Sqlite(b) => b.batches(),
            Kind::Postgres(b) => b.batches(),
            Kind::Synthetic(_) | Kind::Http(_) => false,
        }
    }

    /// The values of `keys`, one result per key in their order: one batch query when the
    /// backend [`batches`](Self::batches), else one load per key. A failed query fails
    /// every key.
    pub async fn load_many(&self, keys: &[&str]) -> Vec<Result<Option<Value>, String>> {
        let found = match &self.kind {
            Kind::Sqlite(b) if b.batches() => b.load_many(keys).await,
            Kind::Postgres(b) if b.batches() => b.load_many(keys).await,
            _ => {
                let mut values = Vec::with_capacity(keys.len());
                for key in keys {
                    values.push(self.load(key).await);
                }
                return values;
            }
        };
        match found {
            Ok(found) => keys
                .iter()
                .map(|key| Ok(found.get(*key).cloned().flatten().map(Value::new)))
                .collect(),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
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

/// What a batch query answers: the value of each key it found (`None` for NULL).
pub(crate) type Found = HashMap<String, Option<Bytes>>;

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

    async fn get_many(
        &self,
        keys: &[&str],
    ) -> Vec<Result<Option<Value>, galaxycache_galaxy::Error>> {
        let values = self.load_many(keys).await;
        values
            .into_iter()
            .map(|v| v.map_err(galaxycache_galaxy::Error::backend))
            .collect()
    }

    fn batches(&self) -> bool {
        Backend::batches(self)
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

    #[test]
    fn a_batch_query_is_the_default_tables_or_the_configured_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kv.db");
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB);")
            .unwrap();
        let open = |query: &str, batch_query: Option<&str>| {
            let options = BackendOptions {
                query: query.to_owned(),
                batch_query: batch_query.map(str::to_owned),
                ..BackendOptions::default()
            };
            let spec = BackendSpec::Sqlite(path.clone());
            Backend::open(&spec, &options, &InFlight::unbounded())
        };
        let custom = "SELECT value FROM kv WHERE key = ?1 AND 1";
        assert!(open(DEFAULT_QUERY, None).unwrap().batches());
        assert!(!open(DEFAULT_QUERY, Some("")).unwrap().batches());
        assert!(!open(custom, None).unwrap().batches());
        let batch = "SELECT key, value FROM kv WHERE key IN (SELECT value FROM json_each(?1))";
        assert!(open(custom, Some(batch)).unwrap().batches());
        let options = BackendOptions {
            batch_query: Some(batch.to_owned()),
            ..BackendOptions::default()
        };
        let e = Backend::open(&BackendSpec::Synthetic, &options, &InFlight::unbounded());
        assert!(
            e.unwrap_err()
                .contains("batch query needs a sqlite or postgres")
        );
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
