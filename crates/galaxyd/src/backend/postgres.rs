//! The PostgreSQL backend: one configurable query over a pool of connections, and the
//! change feed that LISTENs for invalidations on a dedicated connection.
//!
//! Connections are plain TCP (or unix sockets): this build has no TLS (`NoTls`), so a URL
//! that asks for `sslmode=require` is refused when the backend opens.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{Manager, Pool, PoolError, Runtime, TimeoutType};
use galaxycache_galaxy::{Galaxy, Invalidation};
use galaxycache_universe::error_chain;
use tokio::sync::mpsc;
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{FromSql, ToSql, Type};
use tokio_postgres::{AsyncMessage, Config, NoTls, Row, Statement};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use super::{Entry, Found};

/// The query run when none is configured: `$1` is the key, the first column the value.
pub(crate) const DEFAULT_QUERY: &str = "SELECT value FROM kv WHERE key = $1";

/// The batch query run when neither query is configured: `$1` is the keys (`text[]`), the
/// first column the key, the second the value.
pub(crate) const DEFAULT_BATCH_QUERY: &str = "SELECT key, value FROM kv WHERE key = ANY($1)";

/// The notification payload that flushes the whole galaxy.
const FLUSH_PAYLOAD: &str = "*";

/// Invalidations received but not yet applied; past this the LISTEN connection is read
/// no further until the galaxy catches up (PostgreSQL queues the rest).
const FEED_BUFFER: usize = 4096;

/// First wait before reconnecting the LISTEN connection; it doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two attempts to reconnect the LISTEN connection.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The connection parameters of a `postgresql://` (or `postgres://`) URL, with galaxyd's
/// defaults: `timeout` to connect, `application_name` galaxyd.
fn connection_config(url: &str, timeout: Duration) -> Result<Config, String> {
    let shown = redact(url);
    if !(url.starts_with("postgresql://") || url.starts_with("postgres://")) {
        return Err(format!(
            "PostgreSQL backend {shown:?}: expected a URL like \
             postgresql://USER:PASSWORD@HOST:PORT/DATABASE"
        ));
    }
    let mut config: Config = url
        .parse()
        .map_err(|e| format!("PostgreSQL backend {shown:?}: {}", error_chain(&e)))?;
    if config.get_ssl_mode() == SslMode::Require {
        return Err(format!(
            "PostgreSQL backend {shown:?}: sslmode=require is not supported (this build has no \
             TLS); connect over a trusted network or a local TLS proxy"
        ));
    }
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(timeout);
    }
    if config.get_application_name().is_none() {
        config.application_name("galaxyd");
    }
    Ok(config)
}

/// Loads keys with one query over pooled connections; each connection prepares the query
/// once and reuses the statement.
#[derive(Debug)]
pub(crate) struct PostgresBackend {
    pool: Pool,
    query: String,
    batch_query: Option<String>,
    /// The URL without its password, for error messages.
    target: String,
    timeout: Duration,
}

impl PostgresBackend {
    /// A pool of up to `connections` connections to `url`, opened on demand (so the node
    /// starts while the database is down; loads fail until it is up). `timeout` bounds
    /// connecting and waiting for a free connection.
    pub(crate) fn open(
        url: &str,
        query: &str,
        batch_query: Option<&str>,
        connections: usize,
        timeout: Duration,
    ) -> Result<Self, String> {
        let config = connection_config(url, timeout)?;
        if !query.contains("$1") {
            return Err(format!(
                "PostgreSQL query {query:?} must take the key as $1 and return the value as its \
                 first column"
            ));
        }
        if let Some(batch) = batch_query.filter(|q| !q.contains("$1")) {
            return Err(format!(
                "PostgreSQL batch query {batch:?} must take the keys as $1 (text[], e.g. WHERE \
                 key = ANY($1)) and return the key and the value as its first two columns"
            ));
        }
        let pool = Pool::builder(Manager::new(config, NoTls))
            .max_size(connections.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(timeout))
            .wait_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| format!("PostgreSQL connection pool: {e}"))?;
        Ok(PostgresBackend {
            pool,
            query: query.to_owned(),
            batch_query: batch_query.map(str::to_owned),
            target: redact(url),
            timeout,
        })
    }

    /// The value of `key`: the first column of the first row, `text` or `bytea`. No row,
    /// or a NULL value, is no such key.
    pub(crate) async fn load(&self, key: &str) -> Result<Option<Bytes>, String> {
        let client = self.pool.get().await.map_err(|e| self.pool_error(&e))?;
        let statement = client
            .prepare_typed_cached(&self.query, &[Type::TEXT])
            .await
            .map_err(|e| self.query_error(&e))?;
        check_value_column(&statement, 0, &self.query)?;
        let rows = client
            .query_raw(&statement, [&key as &(dyn ToSql + Sync)])
            .await
            .map_err(|e| self.query_error(&e))?;
        // Only the first row counts; dropping the stream discards the rest.
        let mut rows = pin!(rows);
        match rows.next().await {
            None => Ok(None),
            Some(row) => column_bytes(&row.map_err(|e| self.query_error(&e))?, 0),
        }
    }

    /// Whether this backend has a batch query.
    pub(crate) fn batches(&self) -> bool {
        self.batch_query.is_some()
    }

    /// The values of `keys` found by one run of the batch query (keys it did not return
    /// have no value; a NULL value is none; the first row of a key counts). An error
    /// without a batch query.
    pub(crate) async fn load_many(&self, keys: &[&str]) -> Result<Found, String> {
        let query = self
            .batch_query
            .as_deref()
            .ok_or("PostgreSQL: no batch query configured")?;
        let failed = |e: &tokio_postgres::Error| {
            format!(
                "PostgreSQL batch query {query:?} failed at {}: {}",
                self.target,
                error_chain(e)
            )
        };
        let client = self.pool.get().await.map_err(|e| self.pool_error(&e))?;
        let statement = client
            .prepare_typed_cached(query, &[Type::TEXT_ARRAY])
            .await
            .map_err(|e| failed(&e))?;
        check_key_column(&statement, query)?;
        check_value_column(&statement, 1, query)?;
        let rows = client
            .query_raw(&statement, [&keys as &(dyn ToSql + Sync)])
            .await
            .map_err(|e| failed(&e))?;
        let mut rows = pin!(rows);
        let mut found = Found::new();
        while let Some(row) = rows.next().await {
            let row = row.map_err(|e| failed(&e))?;
            let key = match row.try_get::<_, Option<&str>>(0) {
                Ok(Some(key)) => key.to_owned(),
                Ok(None) => continue,
                Err(e) => return Err(format!("PostgreSQL batch key: {}", error_chain(&e))),
            };
            let value = column_bytes(&row, 1)?;
            found.entry(key).or_insert(value);
        }
        Ok(found)
    }

    fn pool_error(&self, e: &PoolError) -> String {
        let target = &self.target;
        match e {
            PoolError::Backend(e) => {
                format!(
                    "cannot connect to PostgreSQL at {target}: {}",
                    error_chain(e)
                )
            }
            PoolError::Timeout(TimeoutType::Create) => format!(
                "cannot connect to PostgreSQL at {target}: no connection within {:?}",
                self.timeout
            ),
            PoolError::Timeout(TimeoutType::Wait) => format!(
                "PostgreSQL at {target}: no pooled connection free within {:?} (all {} busy)",
                self.timeout,
                self.pool.status().max_size
            ),
            other => format!("PostgreSQL at {target}: connection pool: {other}"),
        }
    }

    fn query_error(&self, e: &tokio_postgres::Error) -> String {
        format!(
            "PostgreSQL query {:?} failed at {}: {}",
            self.query,
            self.target,
            error_chain(e)
        )
    }
}

/// Ordinal names of the columns galaxyd reads, for messages.
const ORDINALS: [&str; 2] = ["first", "second"];

/// Column `index` of the query is a value galaxyd can read: `text` or `bytea`.
fn check_value_column(statement: &Statement, index: usize, query: &str) -> Result<(), String> {
    let ordinal = ORDINALS.get(index).copied().unwrap_or("last");
    let Some(column) = statement.columns().get(index) else {
        return Err(format!(
            "PostgreSQL query {query:?} returns no {ordinal} column: it must be the value"
        ));
    };
    let ty = column.type_();
    if *ty == Type::BYTEA || <&str as FromSql>::accepts(ty) {
        return Ok(());
    }
    Err(format!(
        "PostgreSQL query {query:?}: its {ordinal} column {:?} is of type {ty}; cast it to \
         text or bytea",
        column.name()
    ))
}

/// Column `index` of `row` as bytes, `None` when NULL.
fn column_bytes(row: &Row, index: usize) -> Result<Option<Bytes>, String> {
    let value = if row.columns().get(index).map(|c| c.type_()) == Some(&Type::BYTEA) {
        row.try_get::<_, Option<&[u8]>>(index)
            .map(|v| v.map(Bytes::copy_from_slice))
    } else {
        row.try_get::<_, Option<&str>>(index)
            .map(|v| v.map(|s| Bytes::copy_from_slice(s.as_bytes())))
    };
    value.map_err(|e| format!("PostgreSQL value: {}", error_chain(&e)))
}

/// Run the preload `query` (no parameters; the key as text, then the value as text or
/// bytea) on a dedicated connection to `url`, and send its rows into `tx` as the row
/// stream yields them (a NULL value is skipped, as a load takes it for no such key). A
/// failure is sent last; a receiver that goes away stops the reading. Errors at once only
/// for a URL that cannot be used.
pub(crate) fn send_rows(
    url: &str,
    query: &str,
    timeout: Duration,
    tx: mpsc::Sender<Result<Entry, String>>,
) -> Result<(), String> {
    let mut config = connection_config(url, timeout)?;
    config.application_name("galaxyd preload");
    let (query, target) = (query.to_owned(), redact(url));
    tokio::spawn(async move {
        if let Err(e) = stream_rows(&config, &query, &tx).await {
            let _ = tx.send(Err(format!("PostgreSQL at {target}: {e}"))).await;
        }
    });
    Ok(())
}

async fn stream_rows(
    config: &Config,
    query: &str,
    tx: &mpsc::Sender<Result<Entry, String>>,
) -> Result<(), String> {
    let failed =
        |e: tokio_postgres::Error| format!("preload query {query:?} failed: {}", error_chain(&e));
    let (client, connection) = config
        .connect(NoTls)
        .await
        .map_err(|e| format!("cannot connect: {}", error_chain(&e)))?;
    // Driven in the background; it ends by itself once the client is dropped.
    tokio::spawn(connection);
    let statement = client.prepare(query).await.map_err(failed)?;
    check_key_column(&statement, query)?;
    check_value_column(&statement, 1, query)?;
    let rows = client
        .query_raw(&statement, std::iter::empty::<&(dyn ToSql + Sync)>())
        .await
        .map_err(failed)?;
    let mut rows = pin!(rows);
    while let Some(row) = rows.next().await {
        let row = row.map_err(failed)?;
        let key = match row.try_get::<_, Option<&str>>(0) {
            Ok(Some(key)) => key.to_owned(),
            Ok(None) => return Err(format!("preload query {query:?}: a key is NULL")),
            Err(e) => return Err(format!("preload key: {}", error_chain(&e))),
        };
        let Some(value) = column_bytes(&row, 1)? else {
            continue;
        };
        if tx.send(Ok((key, value))).await.is_err() {
            break;
        }
    }
    Ok(())
}

/// The first column of a preload or batch query is a key galaxyd can read: text.
fn check_key_column(statement: &Statement, query: &str) -> Result<(), String> {
    match statement.columns().first() {
        Some(column) if <&str as FromSql>::accepts(column.type_()) => Ok(()),
        Some(column) => Err(format!(
            "PostgreSQL query {query:?}: its first column {:?} (the key) is of type {}; cast it \
             to text",
            column.name(),
            column.type_()
        )),
        None => Err(format!("PostgreSQL query {query:?} returns no column")),
    }
}

/// `url` with its password (in the user info or a `password=` parameter) replaced by `***`.
pub(crate) fn redact(url: &str) -> String {
    let mut shown = url.to_owned();
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some(at) = rest[..rest.find(['/', '?']).unwrap_or(rest.len())].rfind('@')
        && let Some((user, _)) = rest[..at].split_once(':')
    {
        shown = format!("{scheme}://{user}:***{}", &rest[at..]);
    }
    if let Some(start) = shown.find("password=") {
        let value = start.saturating_add("password=".len());
        let end = shown[value..]
            .find('&')
            .map_or(shown.len(), |i| value.saturating_add(i));
        shown.replace_range(value..end, "***");
    }
    shown
}

/// A channel name as an SQL identifier, quoted: used exactly as given, as `pg_notify` sees
/// it (an unquoted `NOTIFY Name` folds it to lowercase).
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// What a notification payload asks for: `*` flushes the galaxy, anything else is a key to
/// remove. An empty payload asks for nothing.
fn invalidation(payload: &str) -> Option<Invalidation> {
    match payload {
        "" => None,
        FLUSH_PAYLOAD => Some(Invalidation::Flush),
        key => Some(Invalidation::Remove(key.to_owned())),
    }
}

/// Waits between reconnection attempts: doubling from [`FIRST_BACKOFF`] up to
/// [`MAX_BACKOFF`], each drawn between half and all of the current step.
#[derive(Debug)]
struct Backoff {
    step: Duration,
}

impl Backoff {
    fn new() -> Self {
        Backoff {
            step: FIRST_BACKOFF,
        }
    }

    fn next(&mut self) -> Duration {
        let delay = self.step.mul_f64(0.5 + fastrand::f64() / 2.0);
        self.step = self.step.saturating_mul(2).min(MAX_BACKOFF);
        delay
    }

    fn reset(&mut self) {
        self.step = FIRST_BACKOFF;
    }
}

/// A galaxy's change feed: LISTEN on a channel over a dedicated connection; each
/// notification's payload is a key to remove from the galaxy, `*` a flush.
#[derive(Debug)]
pub(crate) struct NotifyFeed {
    config: Config,
    channel: String,
    target: String,
}

impl NotifyFeed {
    /// A feed of `channel` on the database at `url` (not connected yet).
    pub(crate) fn new(url: &str, channel: &str, timeout: Duration) -> Result<Self, String> {
        check_channel(channel)?;
        let mut config = connection_config(url, timeout)?;
        config.application_name("galaxyd notify");
        // A LISTEN connection is idle: find out within about a minute that its peer is gone.
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);
        Ok(NotifyFeed {
            config,
            channel: channel.to_owned(),
            target: redact(url),
        })
    }

    /// Follow the channel into `galaxy` until `stop` resolves: connect and LISTEN, hand
    /// every notification to [`Galaxy::follow`], and on a lost connection reconnect with a
    /// capped, jittered exponential backoff. Once LISTENing again the galaxy is flushed on
    /// every node, since notifications may have been missed meanwhile. The first LISTEN
    /// drops only this node's entries (loaded before it listened); if the first attempt to
    /// connect failed, it is a reconnection.
    pub(crate) async fn run(self, galaxy: Galaxy, stop: impl Future<Output = ()>) {
        let (tx, rx) = mpsc::channel(FEED_BUFFER);
        let follower = tokio::spawn({
            let galaxy = galaxy.clone();
            async move { galaxy.follow(ReceiverStream::new(rx)).await }
        });
        tokio::select! {
            () = stop => {}
            () = self.listen_forever(&galaxy, &tx) => {}
        }
        // Invalidations still queued are moot: the node is stopping.
        follower.abort();
    }

    async fn listen_forever(&self, galaxy: &Galaxy, tx: &mpsc::Sender<Invalidation>) {
        let mut backoff = Backoff::new();
        let mut missed = false;
        loop {
            let failure = self.session(galaxy, tx, &mut missed, &mut backoff).await;
            if tx.is_closed() {
                return;
            }
            missed = true;
            let delay = backoff.next();
            tracing::warn!(
                galaxy = %galaxy.name(),
                channel = %self.channel,
                database = %self.target,
                error = %failure,
                retry_in = ?delay,
                "change feed: LISTEN connection lost; reconnecting"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// One connection: LISTEN, then forward notifications until it fails (the error).
    async fn session(
        &self,
        galaxy: &Galaxy,
        tx: &mpsc::Sender<Invalidation>,
        missed: &mut bool,
        backoff: &mut Backoff,
    ) -> String {
        let (client, mut connection) = match self.config.connect(NoTls).await {
            Ok(pair) => pair,
            Err(e) => return format!("cannot connect: {}", error_chain(&e)),
        };
        let sql = format!("LISTEN {}", quote_ident(&self.channel));
        let mut listen = pin!(client.batch_execute(&sql));
        let mut listening = false;
        loop {
            // The connection is driven here alone: it runs the LISTEN and yields
            // notifications. Dropping `poll_fn` between turns loses nothing.
            tokio::select! {
                result = &mut listen, if !listening => {
                    if let Err(e) = result {
                        return format!("LISTEN failed: {}", error_chain(&e));
                    }
                    listening = true;
                    backoff.reset();
                    self.on_listening(galaxy, *missed).await;
                }
                message = poll_fn(|cx| connection.poll_message(cx)) => match message {
                    Some(Ok(AsyncMessage::Notification(n))) => {
                        let Some(invalidation) = invalidation(n.payload()) else {
                            tracing::warn!(galaxy = %galaxy.name(), channel = %self.channel,
                                "change feed: empty payload ignored (send a key, or * to flush)");
                            continue;
                        };
                        if tx.send(invalidation).await.is_err() {
                            return "the galaxy stopped following".to_owned();
                        }
                    }
                    Some(Ok(AsyncMessage::Notice(notice))) => {
                        tracing::debug!(galaxy = %galaxy.name(), notice = %notice, "change feed: notice");
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return error_chain(&e),
                    None => return "connection closed".to_owned(),
                }
            }
        }
    }

    async fn on_listening(&self, galaxy: &Galaxy, missed: bool) {
        if !missed {
            galaxy.flush_local();
            tracing::info!(
                galaxy = %galaxy.name(),
                channel = %self.channel,
                database = %self.target,
                "change feed: listening"
            );
            return;
        }
        let report = galaxy.flush().await;
        tracing::info!(
            galaxy = %galaxy.name(),
            channel = %self.channel,
            database = %self.target,
            peers_applied = report.applied.len(),
            peers_failed = report.failed.len().saturating_add(report.refused.len()),
            "change feed: listening again; flushed the galaxy on every node, since \
             notifications may have been missed"
        );
    }
}

/// A channel name PostgreSQL accepts: 1 to 63 bytes, no NUL.
fn check_channel(channel: &str) -> Result<(), String> {
    if channel.is_empty() || channel.len() > 63 || channel.contains('\0') {
        return Err(format!(
            "notify channel {channel:?}: expected a name of 1 to 63 bytes"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgresql://app:s3cret@db:5432/cache"),
            "postgresql://app:***@db:5432/cache"
        );
        assert_eq!(
            redact("postgres://db/cache?user=app&password=s3cret&x=1"),
            "postgres://db/cache?user=app&password=***&x=1"
        );
        assert_eq!(redact("postgres://app@db/c"), "postgres://app@db/c");
    }

    #[test]
    fn bad_configuration_is_a_clear_error() {
        let open = |url: &str, query: &str| {
            PostgresBackend::open(url, query, None, 1, Duration::from_secs(1)).unwrap_err()
        };
        let e = open("mysql://db/x", DEFAULT_QUERY);
        assert!(e.contains("expected a URL like postgresql://"), "{e}");
        let e = open("postgresql://db:notaport/x", DEFAULT_QUERY);
        assert!(e.contains("invalid connection string"), "{e}");
        let e = open("postgresql://db/x?sslmode=require", DEFAULT_QUERY);
        assert!(e.contains("no TLS"), "{e}");
        let e = open("postgresql://u:pw@db/x", "SELECT value FROM kv");
        assert!(e.contains("$1"), "{e}");
        let batch = Some("SELECT key, value FROM kv");
        let e = PostgresBackend::open("postgresql://db/x", DEFAULT_QUERY, batch, 1, Duration::ZERO);
        assert!(e.unwrap_err().contains("batch query"));
        let e = NotifyFeed::new("postgresql://db/x", "", Duration::from_secs(1)).unwrap_err();
        assert!(e.contains("notify channel"), "{e}");
        let e = NotifyFeed::new("postgresql://db/x", &"c".repeat(64), Duration::from_secs(1));
        assert!(e.unwrap_err().contains("1 to 63 bytes"));
    }

    #[test]
    fn payloads_and_channel_names() {
        assert_eq!(invalidation("*"), Some(Invalidation::Flush));
        assert_eq!(
            invalidation("user:42"),
            Some(Invalidation::Remove("user:42".into()))
        );
        assert_eq!(invalidation(""), None);
        assert_eq!(quote_ident("kv"), "\"kv\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_a_cap() {
        let mut b = Backoff::new();
        let mut step = FIRST_BACKOFF;
        for _ in 0..20 {
            let d = b.next();
            assert!(d >= step / 2 && d <= step, "{d:?} for step {step:?}");
            step = (step * 2).min(MAX_BACKOFF);
        }
        assert_eq!(b.step, MAX_BACKOFF);
        b.reset();
        assert!(b.next() <= FIRST_BACKOFF);
    }
}
