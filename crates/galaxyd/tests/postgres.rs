//! The PostgreSQL backend and its LISTEN/NOTIFY change feed: three nodes over loopback in
//! front of one table of a real PostgreSQL that the test starts (`postgres_server`).

mod common;

mod postgres_server;

use std::time::{Duration, Instant};

use galaxycache_universe::InFlight;
use galaxyd::{Backend, BackendOptions, BackendSpec, GalaxyConfig, HttpClient, Node, NodeConfig};
use postgres_server::PgServer;
use tokio::net::TcpListener;

const CHANNEL: &str = "kv_changed";
/// How long a change may take to reach every node before the test fails.
const PATIENCE: Duration = Duration::from_secs(15);

/// Three nodes with the galaxies `kv` (text values, following CHANNEL), `bin` (the same
/// rows as bytea) and `broken` (a query on a table that does not exist).
async fn cluster(url: &str) -> Vec<Node> {
    let galaxy = |name: &str, query: &str| {
        let mut g = GalaxyConfig::new(name, BackendSpec::Postgres(url.to_owned()));
        g.backend_options.query = query.to_owned();
        g.backend_options.timeout = Duration::from_secs(5);
        g
    };
    common::cluster(3, |local| {
        let mut kv = galaxy("kv", "SELECT value FROM kv WHERE key = $1");
        kv.notify_channel = Some(CHANNEL.to_owned());
        NodeConfig {
            galaxies: vec![
                kv,
                galaxy(
                    "bin",
                    "SELECT convert_to(value, 'UTF8') FROM kv WHERE key = $1",
                ),
                galaxy("broken", "SELECT value FROM missing_table WHERE key = $1"),
            ],
            ..local
        }
    })
    .await
}

/// `GET` a key from a node's client API: the status and the body as text.
async fn get(client: &HttpClient, node: &Node, galaxy: &str, key: &str) -> (u16, String) {
    let url = format!("http://{}/v1/galaxies/{galaxy}/keys/{key}", node.api_addr());
    let r = client.get(url.parse().unwrap()).await.unwrap();
    (
        r.status.as_u16(),
        String::from_utf8_lossy(&r.body).into_owned(),
    )
}

/// True when every node answers `value` for `key` in galaxy `kv`.
async fn all_serve(client: &HttpClient, nodes: &[Node], key: &str, value: &str) -> bool {
    for node in nodes {
        if get(client, node, "kv", key).await != (200, value.to_owned()) {
            return false;
        }
    }
    true
}

/// Poll `check` until it holds; fail after PATIENCE. Returns how long it took.
async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    start.elapsed()
}

/// LISTEN connections of galaxyd feeds that have run their LISTEN.
async fn listeners(db: &tokio_postgres::Client) -> i64 {
    db.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'galaxyd notify' \
         AND query LIKE 'LISTEN%' AND state = 'idle'",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

fn flushes(nodes: &[Node]) -> u64 {
    nodes.iter().map(|n| n.galaxies()[0].stats().flushes).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_invalidates_every_node_and_a_lost_listen_connection_flushes() {
    let Some(mut pg) = PgServer::start() else {
        return;
    };
    let db = pg.connect().await;
    db.batch_execute(
        "CREATE TABLE kv (key text PRIMARY KEY, value text);
         INSERT INTO kv SELECT 'key-' || i, 'v1-' || i FROM generate_series(0, 9) i;
         INSERT INTO kv VALUES ('null', NULL);",
    )
    .await
    .unwrap();
    let nodes = cluster(&pg.url()).await;
    let client = HttpClient::new(8, Duration::from_secs(10));
    // Listening, and past the first LISTEN's flush of what was cached before it.
    wait_for("every node to LISTEN", async || {
        listeners(&db).await == 3 && flushes(&nodes) >= 3
    })
    .await;

    // Reads: rows as text and as bytea, one load per key in the cluster.
    for node in &nodes {
        for i in 0..10 {
            let key = format!("key-{i}");
            let value = format!("v1-{i}");
            assert_eq!(get(&client, node, "kv", &key).await, (200, value.clone()));
            assert_eq!(get(&client, node, "bin", &key).await, (200, value));
        }
    }
    let loads: u64 = nodes
        .iter()
        .map(|n| n.galaxies()[0].stats().backend_loads)
        .sum();
    assert_eq!(loads, 10, "one load per key in the cluster");
    // No row and a NULL value are 404; a bad query is 503 with PostgreSQL's reason.
    for node in &nodes {
        assert_eq!(get(&client, node, "kv", "absent").await.0, 404);
        assert_eq!(get(&client, node, "kv", "null").await.0, 404);
        let (status, body) = get(&client, node, "broken", "key-1").await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains("relation \"missing_table\" does not exist"),
            "{body}"
        );
    }

    // An UPDATE alone is not seen (the value is cached); its NOTIFY reaches every node.
    db.batch_execute("UPDATE kv SET value = 'v2-3' WHERE key = 'key-3'")
        .await
        .unwrap();
    assert!(all_serve(&client, &nodes, "key-3", "v1-3").await);
    db.batch_execute(&format!("NOTIFY {CHANNEL}, 'key-3'"))
        .await
        .unwrap();
    let took = wait_for("every node to serve key-3's new value", async || {
        all_serve(&client, &nodes, "key-3", "v2-3").await
    })
    .await;
    eprintln!("NOTIFY -> last of 3 nodes serving the new value: {took:?}");
    // In one transaction, as an application would write it.
    let start = Instant::now();
    db.batch_execute(&format!(
        "BEGIN; UPDATE kv SET value = 'v3-3' WHERE key = 'key-3'; NOTIFY {CHANNEL}, 'key-3'; COMMIT;"
    ))
    .await
    .unwrap();
    wait_for("every node to serve key-3's newer value", async || {
        all_serve(&client, &nodes, "key-3", "v3-3").await
    })
    .await;
    eprintln!(
        "UPDATE+NOTIFY commit -> last of 3 nodes serving the new value: {:?}",
        start.elapsed()
    );

    // `*` flushes: every changed row is served anew.
    db.batch_execute("UPDATE kv SET value = 'f-' || key")
        .await
        .unwrap();
    assert!(all_serve(&client, &nodes, "key-0", "v1-0").await);
    let before = flushes(&nodes);
    db.batch_execute(&format!("NOTIFY {CHANNEL}, '*'"))
        .await
        .unwrap();
    // Every node flushes itself, and the node that owns the galaxy's name tells the
    // others again (so a value one of them refetched from a not-yet-flushed owner goes
    // too): 1 + 2 × 2 flushes in all. Wait for all of them before the next step.
    wait_for("every node to serve the flushed rows anew", async || {
        if flushes(&nodes) < before + 5 {
            return false;
        }
        for i in 0..10 {
            let key = format!("key-{i}");
            if !all_serve(&client, &nodes, &key, &format!("f-{key}")).await {
                return false;
            }
        }
        true
    })
    .await;
    assert_eq!(flushes(&nodes), before + 5);

    // The LISTEN connections are killed: each node reconnects, LISTENs again, and flushes
    // the galaxy, so a row changed without a NOTIFY is served anew.
    db.batch_execute("UPDATE kv SET value = 'unannounced' WHERE key = 'key-5'")
        .await
        .unwrap();
    assert!(all_serve(&client, &nodes, "key-5", "f-key-5").await);
    let before = flushes(&nodes);
    let killed = db
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE application_name = 'galaxyd notify'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(killed.len(), 3);
    wait_for("the nodes to reconnect and flush", async || {
        listeners(&db).await == 3
            && flushes(&nodes) >= before + 3
            && all_serve(&client, &nodes, "key-5", "unannounced").await
    })
    .await;
    // ... and keep following the channel.
    db.batch_execute(&format!(
        "UPDATE kv SET value = 'after' WHERE key = 'key-6'; NOTIFY {CHANNEL}, 'key-6'"
    ))
    .await
    .unwrap();
    wait_for("the reconnected feeds to apply a NOTIFY", async || {
        all_serve(&client, &nodes, "key-6", "after").await
    })
    .await;

    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

/// A database nobody listens at: loads are 503 with the reason, the feed keeps retrying
/// in the background, and the node stops cleanly. Needs no PostgreSQL.
#[tokio::test]
async fn an_unreachable_database_is_a_503_not_a_panic() {
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("postgresql://nobody@127.0.0.1:{port}/nothing");
    let mut galaxy = GalaxyConfig::new("kv", BackendSpec::Postgres(url));
    galaxy.backend_options.query = "SELECT value FROM kv WHERE key = $1".to_owned();
    galaxy.backend_options.timeout = Duration::from_secs(2);
    galaxy.notify_channel = Some(CHANNEL.to_owned());
    let node = common::node(|local| NodeConfig {
        galaxies: vec![galaxy],
        ..local
    })
    .await;
    let client = HttpClient::new(2, Duration::from_secs(10));
    for _ in 0..2 {
        let (status, body) = get(&client, &node, "kv", "key-1").await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body.contains(&format!(
                "cannot connect to PostgreSQL at postgresql://nobody@127.0.0.1:{port}/nothing"
            )),
            "{body}"
        );
        assert!(body.contains("Connection refused"), "{body}");
    }
    let (status, _) = get(&client, &node, "kv", "").await;
    assert_eq!(status, 400, "the node still answers the rest");
    node.shutdown().await.unwrap();
}

/// Preload from PostgreSQL through its row stream: while a transaction holds the table
/// locked the preload cannot read, so `/readyz` is 503 for certain; once it commits the
/// node becomes ready, and its preloaded keys (text and bytea) cost no query.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preload_streams_rows_and_readyz_waits_for_them() {
    let Some(mut pg) = PgServer::start() else {
        return;
    };
    let db = pg.connect().await;
    db.batch_execute(
        "CREATE TABLE kv (key text PRIMARY KEY, value text);
         INSERT INTO kv SELECT 'key-' || i, 'v-' || i FROM generate_series(0, 999) i;",
    )
    .await
    .unwrap();
    let locker = pg.connect().await;
    locker
        .batch_execute("BEGIN; LOCK TABLE kv IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let galaxy = |name: &str, preload: &str| {
        let mut g = GalaxyConfig::new(name, BackendSpec::Postgres(pg.url()));
        g.backend_options.query = "SELECT value FROM kv WHERE key = $1".to_owned();
        g.preload.preload_query = Some(preload.to_owned());
        g
    };
    let node = common::node(|local| NodeConfig {
        galaxies: vec![
            galaxy("kv", "SELECT key, value FROM kv"),
            galaxy("bin", "SELECT key, convert_to(value, 'UTF8') FROM kv"),
        ],
        ..local
    })
    .await;
    let client = HttpClient::new(2, Duration::from_secs(10));
    let status = async |path: &str| {
        let url = format!("http://{}{path}", node.api_addr());
        client
            .get(url.parse().unwrap())
            .await
            .unwrap()
            .status
            .as_u16()
    };
    assert_eq!(status("/readyz").await, 503);
    assert_eq!(status("/healthz").await, 200);
    locker.batch_execute("COMMIT").await.unwrap();
    wait_for("the node to be ready", async || {
        status("/readyz").await == 200
    })
    .await;
    for galaxy in ["kv", "bin"] {
        assert_eq!(
            get(&client, &node, galaxy, "key-7").await,
            (200, "v-7".to_owned())
        );
    }
    for g in node.galaxies() {
        let stats = g.stats();
        assert_eq!(
            (stats.preloaded, stats.backend_loads),
            (1000, 0),
            "{}",
            g.name()
        );
    }
    node.shutdown().await.unwrap();
}

/// A batch of keys (some missing, one NULL, one asked twice) is one query, each key
/// answered on its own: the counting batch query bumps a sequence once per run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_keys_is_one_query_answering_each_key() {
    let Some(mut pg) = PgServer::start() else {
        return;
    };
    let db = pg.connect().await;
    db.batch_execute(
        "CREATE TABLE kv (key text PRIMARY KEY, value text);
         INSERT INTO kv SELECT 'key-' || i, 'v-' || i FROM generate_series(0, 9) i;
         INSERT INTO kv VALUES ('null', NULL);
         CREATE SEQUENCE runs;",
    )
    .await
    .unwrap();
    let open = |batch_query: Option<&str>| {
        let options = BackendOptions {
            batch_query: batch_query.map(str::to_owned),
            timeout: Duration::from_secs(5),
            ..BackendOptions::default()
        };
        let spec = BackendSpec::Postgres(pg.url());
        Backend::open(&spec, &options, &InFlight::unbounded()).unwrap()
    };
    let keys = ["key-1", "missing", "null", "key-7", "key-1", "it's"];
    let expected = [Some("v-1"), None, None, Some("v-7"), Some("v-1"), None];
    let counting = "WITH run AS (SELECT nextval('runs')) \
                    SELECT key, value FROM kv, run WHERE key = ANY($1)";
    // The default query's galaxy batches on the default table; so does a counting one.
    for backend in [open(None), open(Some(counting))] {
        assert!(backend.batches());
        let values = backend.load_many(&keys).await;
        let values: Vec<Option<String>> = values
            .into_iter()
            .map(|v| {
                v.unwrap()
                    .map(|v| String::from_utf8_lossy(v.bytes()).into_owned())
            })
            .collect();
        assert_eq!(values, expected.map(|v| v.map(str::to_owned)));
    }
    let runs: i64 = db
        .query_one("SELECT last_value FROM runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 1, "one query for the whole batch");
    // A failed batch query fails every key, with PostgreSQL's reason.
    let broken = open(Some("SELECT key, value FROM nope WHERE key = ANY($1)"));
    for value in broken.load_many(&keys).await {
        let e = value.unwrap_err();
        assert!(e.contains("relation \"nope\" does not exist"), "{e}");
    }
}
