//! Embed galaxycache in an axum service. Every replica runs this same program, is told its
//! own URL and its peers' URLs, and loads missing keys from SQLite with a `BackendGetter`.
//! Peers reach each other on the service's own port, under `/_galaxycache/`.
//!
//! Three replicas on one machine, sharing one database file:
//!
//! ```text
//! PEERS=http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083
//! for port in 8081 8082 8083; do
//!   cargo run --example axum_sqlite -- --db /tmp/kv.db --peers $PEERS \
//!     --self http://127.0.0.1:$port &
//! done
//! curl http://127.0.0.1:8082/kv/hello   # "world", loaded once by the key's owner
//! ```

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::{Router, http::StatusCode, routing::get};
use bytes::Bytes;
use clap::Parser;
use galaxycache::http::{Dialect, HttpProtocol, PeerService};
use galaxycache::{BackendGetter, Error, ErrorKind, Galaxy, Universe, Value};
use rusqlite::{Connection, OptionalExtension};

#[derive(Parser)]
struct Args {
    /// This replica's URL, as its peers list it; the service listens there.
    #[arg(long = "self")]
    self_url: String,
    /// Every replica's URL, this one's included, comma-separated.
    #[arg(long, value_delimiter = ',')]
    peers: Vec<String>,
    /// The SQLite database; a table `kv(key, value)` is created if missing.
    #[arg(long)]
    db: std::path::PathBuf,
}

/// The data source: one SQLite connection, queried off the async threads.
struct Sqlite(Arc<Mutex<Connection>>);
const QUERY: &str = "SELECT CAST(value AS BLOB) FROM kv WHERE key = ?1";

impl BackendGetter for Sqlite {
    async fn get(&self, key: &str) -> Result<Option<Value>, Error> {
        let (conn, key) = (Arc::clone(&self.0), key.to_owned());
        let row = tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|e| e.into_inner());
            conn.query_row(QUERY, [key], |r| r.get(0)).optional()
        });
        let value: Option<Vec<u8>> = row.await.map_err(Error::backend)?.map_err(Error::backend)?;
        Ok(value.map(Value::new))
    }
}

async fn get_key(State(galaxy): State<Galaxy>, Path(key): Path<String>) -> (StatusCode, Bytes) {
    let e = match galaxy.get(&key).await {
        Ok(value) => return (StatusCode::OK, value.into_bytes()),
        Err(e) => e,
    };
    let status = match e.kind() {
        ErrorKind::NotFound => return (StatusCode::NOT_FOUND, Bytes::new()),
        ErrorKind::InvalidKey => StatusCode::BAD_REQUEST, // empty, or longer than allowed
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::SERVICE_UNAVAILABLE, // the load failed
    };
    (status, Bytes::from(e.to_string()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let conn = Connection::open(&args.db)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB);
         INSERT OR IGNORE INTO kv VALUES ('hello', 'world');",
    )?;
    // 1. The universe: who this replica is, who its peers are, how to reach them.
    let protocol = HttpProtocol::builder().build(); // galaxycache's own dialect
    let universe = Universe::builder(&args.self_url)
        .protocol(Arc::new(protocol))
        .build();
    universe.set_peers(&args.peers)?;
    // 2. A galaxy: a name, a byte budget and the backend.
    let backend = Sqlite(Arc::new(Mutex::new(conn)));
    let galaxy = Galaxy::builder(&universe, "kv", 64 << 20, backend).build()?;
    // 3. One router: the app's routes, and the peer protocol under /_galaxycache/.
    let peers = PeerService::new(universe.clone(), Dialect::Galaxycache);
    let app = Router::new()
        .route("/kv/{key}", get(get_key))
        .with_state(galaxy)
        .route_service("/_galaxycache/{*rest}", peers);
    let addr = args.self_url.trim_start_matches("http://");
    let listener = tokio::net::TcpListener::bind(addr.trim_end_matches('/')).await?;
    axum::serve(listener, app).await?;
    Ok(())
}
