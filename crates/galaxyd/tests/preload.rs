//! Start-up preload from SQLite over loopback: `/readyz` is 503 until the rows are in,
//! then gets cost no backend query; a failing preload stops the node (in process and as
//! the `galaxyd` binary) unless `first_update_fail_ok`. Prints the preload rate, never
//! asserts on it.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use galaxyd::{BackendSpec, GalaxyConfig, HttpClient, Node, NodeConfig, create_database};

/// Bytes per value in the test databases.
const VALUE_SIZE: usize = 32;

/// A one-node cluster with galaxy `kv` over the SQLite database at `db`, preloading
/// with `query`.
async fn node(db: &Path, query: &str, fail_ok: bool) -> Node {
    let mut kv = GalaxyConfig::new("kv", BackendSpec::Sqlite(db.to_owned()));
    kv.cache_bytes = 256 << 20;
    kv.preload.preload_query = Some(query.to_owned());
    kv.preload.first_update_fail_ok = fail_ok;
    common::node(|local| NodeConfig {
        galaxies: vec![kv],
        ..local
    })
    .await
}

async fn get(client: &HttpClient, node: &Node, path: &str) -> galaxyd::Response {
    let url = format!("http://{}{path}", node.api_addr());
    client.get(url.parse().unwrap()).await.unwrap()
}

/// Poll `/readyz` every 5 ms until it is 200, up to 60 s; panics past that.
async fn until_ready(client: &HttpClient, node: &Node) {
    for _ in 0..12_000 {
        let r = get(client, node, "/readyz").await;
        if r.status == 200 {
            assert_eq!(String::from_utf8_lossy(&r.body).trim(), "ready");
            return;
        }
        assert_eq!(r.status, 503, "{r:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the node never became ready");
}

/// A stat of galaxy `kv`, as `/v1/stats` says.
async fn stat(client: &HttpClient, node: &Node, name: &str) -> u64 {
    let r = get(client, node, "/v1/stats").await;
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    json["galaxies"]["kv"][name].as_u64().unwrap()
}

/// On one thread, the preload runs only while this test awaits: the node cannot be
/// ready before the first `/readyz` has been answered.
#[tokio::test]
async fn preloaded_keys_cost_no_backend_query_and_readyz_waits_for_them() {
    const ROWS: u64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    create_database(&db, ROWS, VALUE_SIZE).unwrap();
    let client = HttpClient::new(4, Duration::from_secs(10));

    let start = Instant::now();
    let node = node(&db, "SELECT key, value FROM kv", false).await;
    assert!(!node.is_ready());
    let r = get(&client, &node, "/readyz").await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(String::from_utf8_lossy(&r.body).trim(), "preloading");
    let r = get(&client, &node, "/healthz").await;
    assert_eq!(r.status, 200, "alive while preloading");
    until_ready(&client, &node).await;
    let took = start.elapsed();
    assert!(node.is_ready());

    assert_eq!(stat(&client, &node, "preloaded").await, ROWS);
    for i in [0, 1, 4_242, ROWS - 1] {
        let key = format!("key-{i}");
        let r = get(&client, &node, &format!("/v1/galaxies/kv/keys/{key}")).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body, galaxyd::synthetic_value(&key, VALUE_SIZE));
    }
    assert_eq!(stat(&client, &node, "backend_loads").await, 0);
    let r = get(&client, &node, "/v1/galaxies/kv/keys/key-absent").await;
    assert_eq!(r.status, 404, "a key not in the table is still asked for");
    assert_eq!(stat(&client, &node, "backend_loads").await, 1);
    println!(
        "preload: {ROWS} rows of {VALUE_SIZE} B from SQLite in {took:.2?} (start to ready, \
         one thread) = {:.0} rows/s",
        ROWS as f64 / took.as_secs_f64()
    );
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_failing_preload_stops_the_node_unless_first_update_fail_ok() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    create_database(&db, 10, VALUE_SIZE).unwrap();
    let client = HttpClient::new(4, Duration::from_secs(10));
    let broken = "SELECT key, value FROM missing_table";

    let mut stopped = node(&db, broken, false).await;
    let e = tokio::time::timeout(Duration::from_secs(30), stopped.wait())
        .await
        .expect("the failed preload did not end the node");
    let e = format!("{e:#}");
    assert!(
        e.contains("start-up preload failed")
            && e.contains("galaxy \"kv\": preload failed")
            && e.contains("no such table: missing_table"),
        "{e}"
    );
    assert!(!stopped.is_ready());
    assert_eq!(get(&client, &stopped, "/readyz").await.status, 503);
    stopped.shutdown().await.unwrap();

    let cold = node(&db, broken, true).await;
    until_ready(&client, &cold).await;
    let r = get(&client, &cold, "/v1/galaxies/kv/keys/key-3").await;
    assert_eq!(r.status, 200);
    assert_eq!(stat(&client, &cold, "preloaded").await, 0);
    assert_eq!(
        stat(&client, &cold, "backend_loads").await,
        1,
        "started cold"
    );
    cold.shutdown().await.unwrap();
}

/// `galaxyd serve` itself: a failed preload is a clear error and a non-zero exit.
#[test]
fn the_binary_exits_non_zero_on_a_failed_preload() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    create_database(&db, 10, VALUE_SIZE).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_galaxyd"))
        .args([
            "serve",
            "--self",
            "http://127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--backend")
        .arg(format!("sqlite:{}", db.display()))
        .args(["--preload-query", "SELECT key, value FROM missing_table"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("galaxyd did not exit after its preload failed");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("galaxyd: the start-up preload failed")
            && stderr.contains("no such table: missing_table"),
        "{stderr}"
    );
}
