//! The SQLite backend: one configurable query, run on the blocking pool over a few
//! read-only connections.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

/// The query run when none is configured: `?1` is the key, the first column the value.
pub(crate) const DEFAULT_QUERY: &str = "SELECT value FROM kv WHERE key = ?1";

/// Connections, each behind its own mutex, handed out round-robin.
#[derive(Debug)]
pub(crate) struct SqliteBackend {
    connections: Arc<[Mutex<Connection>]>,
    next: AtomicUsize,
    query: Arc<str>,
}

impl SqliteBackend {
    /// Open `connections` read-only connections to `path` and check that `query` prepares
    /// and takes exactly one parameter (the key).
    pub(crate) fn open(path: &Path, query: &str, connections: usize) -> Result<Self, String> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut pool = Vec::new();
        for _ in 0..connections.max(1) {
            let conn = Connection::open_with_flags(path, flags)
                .map_err(|e| format!("cannot open SQLite database {}: {e}", path.display()))?;
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
        })
    }

    /// The value of `key`: the first column of the first row. No row, or a NULL value,
    /// is no such key.
    pub(crate) async fn load(&self, key: &str) -> Result<Option<Bytes>, String> {
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.connections.len();
        let connections = Arc::clone(&self.connections);
        let query = Arc::clone(&self.query);
        let key = key.to_owned();
        tokio::task::spawn_blocking(move || {
            let conn = connections[index].lock().unwrap_or_else(|e| e.into_inner());
            query_value(&conn, &query, &key).map_err(|e| format!("SQLite query failed: {e}"))
        })
        .await
        .map_err(|e| format!("SQLite query task failed: {e}"))?
    }
}

/// One query per load, its statement prepared once per connection and cached there.
fn query_value(conn: &Connection, query: &str, key: &str) -> rusqlite::Result<Option<Bytes>> {
    let mut stmt = conn.prepare_cached(query)?;
    let value = stmt
        .query_row([key], |row| {
            Ok(match row.get_ref(0)? {
                ValueRef::Null => None,
                ValueRef::Blob(b) | ValueRef::Text(b) => Some(Bytes::copy_from_slice(b)),
                ValueRef::Integer(i) => Some(Bytes::from(i.to_string())),
                ValueRef::Real(f) => Some(Bytes::from(f.to_string())),
            })
        })
        .optional()?;
    Ok(value.flatten())
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
        let backend = SqliteBackend::open(&database(dir.path()), DEFAULT_QUERY, 2).unwrap();
        assert_eq!(backend.load("a").await.unwrap().unwrap(), &[0u8, 0xff][..]);
        assert_eq!(backend.load("t").await.unwrap().unwrap(), "text");
        assert_eq!(backend.load("i").await.unwrap().unwrap(), "42");
        assert_eq!(backend.load("n").await.unwrap(), None);
        assert_eq!(backend.load("missing").await.unwrap(), None);
    }

    #[test]
    fn bad_configuration_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = database(dir.path());
        let e = SqliteBackend::open(&path, "SELECT value FROM nope WHERE key = ?1", 1);
        assert!(e.unwrap_err().contains("invalid SQLite query"));
        let e = SqliteBackend::open(&path, "SELECT value FROM kv", 1).unwrap_err();
        assert!(e.contains("one parameter"), "{e}");
        let e = SqliteBackend::open(&dir.path().join("absent.db"), DEFAULT_QUERY, 1);
        assert!(e.unwrap_err().contains("cannot open SQLite database"));
    }
}
