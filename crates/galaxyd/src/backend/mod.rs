//! The data sources a galaxyd galaxy can sit in front of.

mod http;
mod sqlite;
mod synthetic;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use galaxycache_universe::Value;

use self::http::HttpBackend;
use self::sqlite::SqliteBackend;
use self::synthetic::SyntheticBackend;

pub(crate) use self::sqlite::DEFAULT_QUERY;
pub(crate) use self::synthetic::is_synthetic_value;
pub use self::synthetic::synthetic_value;

/// Which backend, as written on the command line: `synthetic`, `sqlite:PATH` or
/// `http:URL_TEMPLATE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendSpec {
    /// Every key exists; its value is derived from the key.
    Synthetic,
    /// Rows of an SQLite database file.
    Sqlite(PathBuf),
    /// An origin server; `{key}` in the template is replaced by the encoded key. Values
    /// expire as the origin's `Cache-Control` max-age or `Expires` say (`no-store` and
    /// `no-cache` are not honoured: galaxyd is there to cache the origin).
    Http(String),
}

impl FromStr for BackendSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let expected = "expected synthetic, sqlite:PATH or http:URL (e.g. \
                        http:http://origin:8080/items/{key})";
        match text.split_once(':') {
            None if text == "synthetic" => Ok(BackendSpec::Synthetic),
            Some(("sqlite", "")) => Err(format!("backend {text:?} names no database file")),
            Some(("sqlite", path)) => Ok(BackendSpec::Sqlite(PathBuf::from(path))),
            Some(("http", "")) => Err(format!("backend {text:?} names no URL")),
            Some(("http", url)) => Ok(BackendSpec::Http(url.to_owned())),
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
    /// SQLite: the query; `?1` is the key, the first column the value. Default
    /// `SELECT value FROM kv WHERE key = ?1`.
    pub query: String,
    /// SQLite: connections (each serves one query at a time). Default 4.
    pub connections: usize,
    /// HTTP: how long a request to the origin may take. Default 10 s.
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
}

impl Backend {
    /// Open the backend `spec` says: open the database and check the query, or check the
    /// URL template. Errors say what is wrong with the configuration.
    pub fn open(spec: &BackendSpec, options: &BackendOptions) -> Result<Self, String> {
        let kind = match spec {
            BackendSpec::Synthetic => {
                Kind::Synthetic(SyntheticBackend::new(options.value_size, options.delay))
            }
            BackendSpec::Sqlite(path) => Kind::Sqlite(SqliteBackend::open(
                path,
                &options.query,
                options.connections,
            )?),
            BackendSpec::Http(url) => Kind::Http(Box::new(HttpBackend::new(url, options.timeout)?)),
        };
        Ok(Backend { kind })
    }

    /// The value of `key`, `None` when the source has no such key.
    pub async fn load(&self, key: &str) -> Result<Option<Value>, String> {
        match &self.kind {
            Kind::Synthetic(b) => Ok(Some(Value::new(b.load(key).await))),
            Kind::Sqlite(b) => Ok(b.load(key).await?.map(Value::new)),
            Kind::Http(b) => Ok(b
                .load(key)
                .await?
                .map(|(bytes, expiry)| Value::new(bytes).with_expiry(expiry))),
        }
    }
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
        for spec in ["synthetic", "sqlite:kv.db", "http:http://o/{key}"] {
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
    }

    #[tokio::test]
    async fn synthetic_backend_has_every_key() {
        let options = BackendOptions {
            value_size: 3,
            ..BackendOptions::default()
        };
        let b = Backend::open(&BackendSpec::Synthetic, &options).unwrap();
        let v = b.load("a").await.unwrap().unwrap();
        assert_eq!(v.bytes().as_ref(), b"ca9");
        assert_eq!(v.expires_at(), None);
    }
}
