//! The SQLite backend: one configurable query, run on the blocking pool over a few
//! read-only connections; and a batch query that loads many keys at once.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::mpsc;

use super::{Entry, Found};

/// The query run when none is configured: `?1` is the key, the first column the value.
pub(crate) const DEFAULT_QUERY: &str = "SELECT value FROM kv WHERE key = ?1";

/// The batch query run when neither query is configured: `?1` is the keys as a JSON array
/// of strings, the first column the key, the second the value.
pub(crate) const DEFAULT_BATCH_QUERY: &str =
    "SELECT key, value FROM kv WHERE key IN (SELECT value FROM json_each(?1))";

/// Connections, each behind its own mutex, handed out round-robin.
#[derive(Debug)]
pub(crate) struct SqliteBackend {
    connections: Arc<[Mutex<Connection>]>,
    next: AtomicUsize,
    query: Arc<str>,
    batch_query: Option<Arc<str>>,
}

/// A read-only connection to the database at `path`.
fn open_read_only(path: &Path) -> Result<Connection, String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    Connection::open_with_flags(path, flags)
        .map_err(|e| format!("cannot open SQLite database {}: {e}", path.display()))
}

impl SqliteBackend {
    /// Open `connections` read-only connections to `path` and check that `query` prepares
    /// and takes exactly one parameter (the key), and that `batch_query`, if any, takes
    /// one (the keys, a JSON array) and returns two columns (the key, the value).
    pub(crate) fn open(
        path: &Path,
        query: &str,
        batch_query: Option<&str>,
        connections: usize,
    ) -> Result<Self, String> {
        let mut pool = Vec::new();
        for _ in 0..connections.max(1) {
            let conn = open_read_only(path)?;
            if let Some(batch) = batch_query {
                check_batch_query(&conn, batch)?;
            }
            // Cached: the check prepares the statement every load then runs.
            let stmt = conn
                .prepare_cached(query)
                .map_err(|e| format!("invalid SQLite query {query:?}: {e}"))?;
            if stmt.parameter_count() != 1 || stmt.column_count() == 0 {
                return Err(format!(
                    "SQLite query {query:?} must take one parameter (?1, the key) and return \
                     the value as its first column"
                ));
            }
            drop(stmt);
            pool.push(Mutex::new(conn));
        }
        Ok(SqliteBackend {
            connections: pool.into(),
            next: AtomicUsize::new(0),
            query: Arc::from(query),
            batch_query: batch_query.map(Arc::from),
        })
    }

    /// Whether this backend has a batch query.
    pub(crate) fn batches(&self) -> bool {
        self.batch_query.is_some()
    }

    /// The value of `key`: the first column of the first row. No row, or a NULL value,
    /// is no such key.
    pub(crate) async fn load(&self, key: &str) -> Result<Option<Bytes>, String> {
        let query = Arc::clone(&self.query);
        let key = key.to_owned();
        self.on_connection(move |conn| query_value(conn, &query, &key))
            .await
    }

    /// The values of `keys` found by one run of the batch query (keys it did not return
    /// have no value). An error without a batch query.
    pub(crate) async fn load_many(&self, keys: &[&str]) -> Result<Found, String> {
        let query = self
            .batch_query
            .clone()
            .ok_or("SQLite: no batch query configured")?;
        let keys = serde_json::to_string(keys).map_err(|e| format!("SQLite batch keys: {e}"))?;
        self.on_connection(move |conn| query_values(conn, &query, &keys))
            .await
    }

    /// Run `query` on the next connection, on the blocking pool.
    async fn on_connection<T, Q>(&self, query: Q) -> Result<T, String>
    where
        T: Send + 'static,
        Q: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        // `open` makes at least one connection; none would be an error, not a panic.
        let index = turn.checked_rem(self.connections.len()).unwrap_or(0);
        let connections = Arc::clone(&self.connections);
        tokio::task::spawn_blocking(move || {
            let slot = connections.get(index).ok_or("SQLite: no connection")?;
            let conn = slot.lock().unwrap_or_else(|e| e.into_inner());
            query(&conn).map_err(|e| format!("SQLite query failed: {e}"))
        })
        .await
        .map_err(|e| format!("SQLite query task failed: {e}"))?
    }
}

/// The batch query prepares on `conn`, takes one parameter and returns two columns.
fn check_batch_query(conn: &Connection, query: &str) -> Result<(), String> {
    let stmt = conn
        .prepare_cached(query)
        .map_err(|e| format!("invalid SQLite batch query {query:?}: {e}"))?;
    if stmt.parameter_count() != 1 || stmt.column_count() < 2 {
        return Err(format!(
            "SQLite batch query {query:?} must take one parameter (?1, the keys as a JSON \
             array, e.g. WHERE key IN (SELECT value FROM json_each(?1))) and return the key \
             and the value as its first two columns"
        ));
    }
    Ok(())
}

/// One run of the batch query for `keys` (a JSON array): the value of each key returned,
/// the first row of a key counting.
fn query_values(conn: &Connection, query: &str, keys: &str) -> rusqlite::Result<Found> {
    let mut stmt = conn.prepare_cached(query)?;
    let mut rows = stmt.query([keys])?;
    let mut found = Found::new();
    while let Some(row) = rows.next()? {
        let key = key_text(row.get_ref(0)?).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        })?;
        let value = value_bytes(row.get_ref(1)?);
        found.entry(key).or_insert(value);
    }
    Ok(found)
}

/// One query per load, its statement prepared once per connection and cached there.
fn query_value(conn: &Connection, query: &str, key: &str) -> rusqlite::Result<Option<Bytes>> {
    let mut stmt = conn.prepare_cached(query)?;
    let value = stmt
        .query_row([key], |row| Ok(value_bytes(row.get_ref(0)?)))
        .optional()?;
    Ok(value.flatten())
}

/// A column as a value's bytes: text and blobs as they are, numbers as text; NULL is none.
fn value_bytes(column: ValueRef<'_>) -> Option<Bytes> {
    match column {
        ValueRef::Null => None,
        ValueRef::Blob(b) | ValueRef::Text(b) => Some(Bytes::copy_from_slice(b)),
        ValueRef::Integer(i) => Some(Bytes::from(i.to_string())),
        ValueRef::Real(f) => Some(Bytes::from(f.to_string())),
    }
}

/// A column as a key: text (or a blob of UTF-8, or an integer written out).
fn key_text(column: ValueRef<'_>) -> Result<String, String> {
    match column {
        ValueRef::Text(b) | ValueRef::Blob(b) => std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| format!("a key is not UTF-8: {:?}", String::from_utf8_lossy(b))),
        ValueRef::Integer(i) => Ok(i.to_string()),
        ValueRef::Null => Err("a key is NULL".to_owned()),
        ValueRef::Real(f) => Err(format!("a key is a number with a fraction ({f})")),
    }
}

/// Read the rows of the preload `query` from the database at `path` on a blocking thread
/// and send them into `tx` as they come: the first column is the key, the second the
/// value (a NULL value is skipped, as a load takes it for no such key). A failure is sent
/// last; a receiver that goes away stops the reading.
pub(crate) fn send_rows(path: &Path, query: &str, tx: mpsc::Sender<Result<Entry, String>>) {
    let (path, query) = (path.to_owned(), query.to_owned());
    tokio::task::spawn_blocking(move || {
        if let Err(e) = read_rows(&path, &query, &tx) {
            let _ = tx.blocking_send(Err(e));
        }
    });
}

fn read_rows(
    path: &Path,
    query: &str,
    tx: &mpsc::Sender<Result<Entry, String>>,
) -> Result<(), String> {
    let failed = |e: rusqlite::Error| format!("SQLite preload query {query:?} failed: {e}");
    let conn = open_read_only(path)?;
    let mut stmt = conn.prepare(query).map_err(failed)?;
    if stmt.parameter_count() != 0 || stmt.column_count() < 2 {
        return Err(format!(
            "SQLite preload query {query:?} must take no parameter and return the key and \
             the value as its first two columns"
        ));
    }
    let mut rows = stmt.query([]).map_err(failed)?;
    while let Some(row) = rows.next().map_err(failed)? {
        let key = key_text(row.get_ref(0).map_err(failed)?)?;
        let Some(value) = value_bytes(row.get_ref(1).map_err(failed)?) else {
            continue;
        };
        if tx.blocking_send(Ok((key, value))).is_err() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("kv.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB);
             INSERT INTO kv VALUES ('a', x'00ff'), ('t', 'text'), ('n', NULL), ('i', 42);",
        )
        .unwrap();
        path
    }

    #[tokio::test]
    async fn loads_rows_and_missing_keys() {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(&database(dir.path()), DEFAULT_QUERY, None, 2).unwrap();
        assert_eq!(backend.load("a").await.unwrap().unwrap(), &[0u8, 0xff][..]);
        assert_eq!(backend.load("t").await.unwrap().unwrap(), "text");
        assert_eq!(backend.load("i").await.unwrap().unwrap(), "42");
        assert_eq!(backend.load("n").await.unwrap(), None);
        assert_eq!(backend.load("missing").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_batch_is_one_query_answering_each_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(dir.path());
        let backend = SqliteBackend::open(&path, DEFAULT_QUERY, Some(DEFAULT_BATCH_QUERY), 1);
        let backend = backend.unwrap();
        assert!(backend.batches());
        let keys = ["a", "t", "n", "i", "missing", "quote\"'", "a"];
        let found = backend.load_many(&keys).await.unwrap();
        assert_eq!(found.len(), 4, "{found:?}");
        assert_eq!(found["a"].as_deref(), Some(&[0u8, 0xff][..]));
        assert_eq!(found["t"].as_deref(), Some(&b"text"[..]));
        assert_eq!(found["i"].as_deref(), Some(&b"42"[..]));
        assert_eq!(found["n"], None, "NULL is no value");
        assert!(!found.contains_key("missing"));
        let plain = SqliteBackend::open(&path, DEFAULT_QUERY, None, 1).unwrap();
        assert!(!plain.batches());
        assert!(plain.load_many(&["a"]).await.is_err());
    }

    #[tokio::test]
    async fn preload_rows_stream_in_order_and_end_with_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(dir.path());
        let (tx, mut rx) = mpsc::channel(1);
        send_rows(&path, "SELECT key, value FROM kv ORDER BY key", tx);
        let mut rows = Vec::new();
        while let Some(row) = rx.recv().await {
            rows.push(row.unwrap());
        }
        let keys: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "i", "t"], "the NULL value is skipped");
        assert_eq!(rows[1].1, "42");
        for (query, expected) in [
            ("SELECT key, value FROM nope", "no such table"),
            ("SELECT key FROM kv", "first two columns"),
            ("SELECT NULL, 1", "NULL"),
        ] {
            let (tx, mut rx) = mpsc::channel(1);
            send_rows(&path, query, tx);
            let e = rx.recv().await.unwrap().unwrap_err();
            assert!(e.contains(expected), "{query}: {e}");
            assert!(rx.recv().await.is_none());
        }
    }

    #[test]
    fn bad_configuration_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(dir.path());
        let e = SqliteBackend::open(&path, "SELECT value FROM nope WHERE key = ?1", None, 1);
        assert!(e.unwrap_err().contains("invalid SQLite query"));
        let e = SqliteBackend::open(&path, "SELECT value FROM kv", None, 1).unwrap_err();
        assert!(e.contains("one parameter"), "{e}");
        let e = SqliteBackend::open(&dir.path().join("absent.db"), DEFAULT_QUERY, None, 1);
        assert!(e.unwrap_err().contains("cannot open SQLite database"));
        let batch = |q| SqliteBackend::open(&path, DEFAULT_QUERY, Some(q), 1).unwrap_err();
        let e = batch("SELECT key, value FROM nope WHERE key IN (SELECT value FROM json_each(?1))");
        assert!(e.contains("invalid SQLite batch query"), "{e}");
        let e = batch("SELECT value FROM kv WHERE key IN (SELECT value FROM json_each(?1))");
        assert!(e.contains("first two columns"), "{e}");
        let e = batch("SELECT key, value FROM kv");
        assert!(e.contains("one parameter"), "{e}");
    }
}
