//! The client API's writes (remove, set, flush) on clusters over loopback: what every node
//! serves afterwards, the backend loads they cost, the JSON answer, bad input, and the
//! figures for the record (printed, never asserted).

mod common;

use std::path::Path;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use galaxyd::{
    BackendSpec, BenchConfig, GalaxyConfig, HttpClient, Node, NodeConfig, Protocol, Response,
    create_database, run_bench,
};
use http::{HeaderMap, HeaderValue, Method, header};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Rows in the test database: `key-0` .. `key-19`, 16-byte values.
const ROWS: u64 = 20;

/// `nodes` nodes speaking `protocol` to each other, each with galaxy `sql` over the SQLite
/// database at `db` and galaxy `synthetic`.
async fn cluster(protocol: Protocol, nodes: usize, db: &Path) -> Vec<Node> {
    common::cluster(nodes, |local| {
        let mut sql = GalaxyConfig::new("sql", BackendSpec::Sqlite(db.to_owned()));
        sql.tuning.peer_timeout = Some(Duration::from_secs(10));
        let mut synthetic = GalaxyConfig::new("synthetic", BackendSpec::Synthetic);
        synthetic.backend_options.value_size = 64;
        synthetic.tuning.peer_timeout = Some(Duration::from_secs(10));
        NodeConfig {
            protocol,
            max_key_len: 1024,
            galaxies: vec![sql, synthetic],
            ..local
        }
    })
    .await
}

async fn stop(nodes: Vec<Node>) {
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

fn base(node: &Node) -> String {
    format!("http://{}", node.api_addr())
}

async fn send(
    client: &HttpClient,
    method: Method,
    url: &str,
    headers: &[(header::HeaderName, &str)],
    body: &[u8],
) -> Response {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(name.clone(), HeaderValue::from_str(value).unwrap());
    }
    client
        .send(
            method,
            url.parse().unwrap(),
            map,
            Bytes::copy_from_slice(body),
        )
        .await
        .unwrap()
}

async fn get(client: &HttpClient, node: &Node, galaxy: &str, key: &str) -> Response {
    let url = format!("{}/v1/galaxies/{galaxy}/keys/{key}", base(node));
    send(client, Method::GET, &url, &[], b"").await
}

fn json(r: &Response) -> serde_json::Value {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["content-type"], "application/json");
    serde_json::from_slice(&r.body).unwrap()
}

/// One galaxy's stat summed over the cluster, as each node's `/v1/stats` says.
async fn cluster_stat(client: &HttpClient, nodes: &[Node], galaxy: &str, stat: &str) -> u64 {
    let mut total = 0;
    for node in nodes {
        let r = send(
            client,
            Method::GET,
            &format!("{}/v1/stats", base(node)),
            &[],
            b"",
        )
        .await;
        let stats: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        total += stats["galaxies"][galaxy][stat].as_u64().unwrap();
    }
    total
}

fn set_row(db: &Path, key: &str, value: &[u8]) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let n = conn
        .execute("UPDATE kv SET value = ?2 WHERE key = ?1", (key, value))
        .unwrap();
    assert_eq!(n, 1, "no row {key}");
}

fn row(db: &Path, key: &str) -> Vec<u8> {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT value FROM kv WHERE key = ?1", [key], |r| r.get(0))
        .unwrap()
}

/// Get every key from every node, `rounds` times (so hot keys get copied around).
async fn read_all(client: &HttpClient, nodes: &[Node], keys: &[String], rounds: usize) {
    for _ in 0..rounds {
        for key in keys {
            for node in nodes {
                assert_eq!(get(client, node, "sql", key).await.status, 200, "{key}");
            }
        }
    }
}

/// The answer of a complete write from node `from` of a cluster of `nodes`.
fn assert_complete(answer: &serde_json::Value, op: &str, key: Option<&str>, nodes: &[Node]) {
    assert_eq!(answer["galaxy"], "sql", "{answer}");
    assert_eq!(answer["op"], op, "{answer}");
    match key {
        Some(key) => assert_eq!(answer["key"], key, "{answer}"),
        None => assert!(answer.get("key").is_none(), "{answer}"),
    }
    assert_eq!(answer["complete"], true, "{answer}");
    assert_eq!(answer["refused"], serde_json::json!([]), "{answer}");
    assert_eq!(answer["failed"], serde_json::json!([]), "{answer}");
    let mut applied: Vec<&str> = answer["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    applied.sort();
    let from = answer_node(nodes, answer);
    let mut others: Vec<&str> = nodes
        .iter()
        .map(|n| n.universe().self_url())
        .filter(|u| *u != from)
        .collect();
    others.sort();
    assert_eq!(applied, others, "{answer}");
}

/// The node whose URL the answer does not list (the one that was asked).
fn answer_node<'a>(nodes: &'a [Node], answer: &serde_json::Value) -> &'a str {
    let applied = answer["applied"].as_array().unwrap();
    nodes
        .iter()
        .map(|n| n.universe().self_url())
        .find(|u| !applied.iter().any(|a| a == u))
        .unwrap()
}

/// Remove, set and flush from one node each; afterwards every node serves the new value,
/// and a changed key costs one backend load across the cluster.
async fn remove_set_flush(protocol: Protocol) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    create_database(&db, ROWS, 16).unwrap();
    let nodes = cluster(protocol, 3, &db).await;
    let client = HttpClient::new(4, Duration::from_secs(10));
    let keys: Vec<String> = (0..8).map(|i| format!("key-{i}")).collect();
    read_all(&client, &nodes, &keys, 3).await;
    let loads = cluster_stat(&client, &nodes, "sql", "backend_loads").await;
    assert_eq!(loads, keys.len() as u64, "{protocol}: warm-up loads");

    // Remove: change the rows, remove through node 0, read from every node.
    for key in &keys {
        set_row(&db, key, format!("{key} v2").as_bytes());
        let url = format!("{}/v1/galaxies/sql/keys/{key}", base(&nodes[0]));
        let answer = json(&send(&client, Method::DELETE, &url, &[], b"").await);
        assert_complete(&answer, "remove", Some(key), &nodes);
    }
    for key in &keys {
        for node in &nodes {
            let r = get(&client, node, "sql", key).await;
            assert_eq!(
                r.body,
                format!("{key} v2"),
                "{protocol}: {key} after remove"
            );
        }
    }
    let after = cluster_stat(&client, &nodes, "sql", "backend_loads").await;
    assert_eq!(
        after - loads,
        keys.len() as u64,
        "{protocol}: one load per removed key"
    );

    // Set through node 1 with max-age: every node serves it, with its expiry; the backend
    // is not asked (write-through to the owner).
    let now = SystemTime::now();
    for key in &keys {
        let url = format!("{}/v1/galaxies/sql/keys/{key}", base(&nodes[1]));
        let max_age = [(header::CACHE_CONTROL, "public, max-age=3600")];
        let body = format!("{key} set");
        let answer = json(&send(&client, Method::PUT, &url, &max_age, body.as_bytes()).await);
        assert_complete(&answer, "set", Some(key), &nodes);
    }
    for key in &keys {
        for node in &nodes {
            let r = get(&client, node, "sql", key).await;
            assert_eq!(r.body, format!("{key} set"), "{protocol}: {key} after set");
            let expires = r.headers.get(header::EXPIRES).expect("an Expires header");
            let expires = httpdate::parse_http_date(expires.to_str().unwrap()).unwrap();
            let ttl = expires.duration_since(now).unwrap();
            assert!(
                (Duration::from_secs(3590)..=Duration::from_secs(3610)).contains(&ttl),
                "{protocol}: {key} expires in {ttl:?}"
            );
        }
    }
    let after_set = cluster_stat(&client, &nodes, "sql", "backend_loads").await;
    assert_eq!(after_set, after, "{protocol}: a set made a backend load");

    // Set with Expires: the date travels as it was given.
    let date = httpdate::fmt_http_date(now + Duration::from_secs(7200));
    let url = format!("{}/v1/galaxies/sql/keys/key-0", base(&nodes[2]));
    let answer = json(
        &send(
            &client,
            Method::PUT,
            &url,
            &[(header::EXPIRES, &date)],
            b"e",
        )
        .await,
    );
    assert_complete(&answer, "set", Some("key-0"), &nodes);
    for node in &nodes {
        let r = get(&client, node, "sql", "key-0").await;
        assert_eq!(
            (r.body.as_ref(), r.headers.get(header::EXPIRES)),
            (&b"e"[..], Some(&HeaderValue::from_str(&date).unwrap()))
        );
    }

    // Flush through node 2: every node reloads the rows (the database's values, not the
    // sets'), once per key across the cluster.
    let url = format!("{}/v1/galaxies/sql/flush", base(&nodes[2]));
    let answer = json(&send(&client, Method::POST, &url, &[], b"").await);
    assert_complete(&answer, "flush", None, &nodes);
    for key in &keys {
        for node in &nodes {
            let r = get(&client, node, "sql", key).await;
            assert_eq!(r.body, row(&db, key), "{protocol}: {key} after flush");
            assert!(
                r.headers.get(header::EXPIRES).is_none(),
                "{protocol}: {key}"
            );
        }
    }
    let after_flush = cluster_stat(&client, &nodes, "sql", "backend_loads").await;
    assert_eq!(
        after_flush - after_set,
        keys.len() as u64,
        "{protocol}: one load per key after flush"
    );
    // The other galaxy was not touched by any of it.
    assert_eq!(
        cluster_stat(&client, &nodes, "synthetic", "flushes").await,
        0
    );

    // The writes are counted, by op and outcome, on the node that was asked.
    let m = send(
        &client,
        Method::GET,
        &format!("{}/metrics", base(&nodes[1])),
        &[],
        b"",
    )
    .await;
    let m = String::from_utf8_lossy(&m.body);
    let line = format!(
        "galaxycache_client_writes_total{{galaxy=\"sql\",op=\"set\",outcome=\"complete\"}} {}\n",
        keys.len()
    );
    assert!(m.contains(&line), "{m}");
    stop(nodes).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_set_flush_over_http() {
    remove_set_flush(Protocol::Http).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_set_flush_over_grpc() {
    remove_set_flush(Protocol::Grpc).await;
}

/// groupcache's dialect has no write verbs: the peer is listed as refused, the write is
/// not complete, and this node's own copy is gone all the same.
#[tokio::test]
async fn a_peer_without_write_verbs_is_reported_as_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    create_database(&db, ROWS, 16).unwrap();
    let nodes = cluster(Protocol::Groupcache, 2, &db).await;
    let client = HttpClient::new(2, Duration::from_secs(10));
    let url = format!("{}/v1/galaxies/sql/keys/key-1", base(&nodes[0]));
    let answer = json(&send(&client, Method::DELETE, &url, &[], b"").await);
    assert_eq!(answer["complete"], false, "{answer}");
    assert_eq!(answer["applied"], serde_json::json!([]), "{answer}");
    let refused = answer["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 1, "{answer}");
    assert_eq!(
        refused[0]["peer"],
        nodes[1].universe().self_url(),
        "{answer}"
    );
    assert!(
        !refused[0]["error"].as_str().unwrap().is_empty(),
        "{answer}"
    );
    let m = send(
        &client,
        Method::GET,
        &format!("{}/metrics", base(&nodes[0])),
        &[],
        b"",
    )
    .await;
    let m = String::from_utf8_lossy(&m.body);
    assert!(
        m.contains(
            "galaxycache_client_writes_total{galaxy=\"sql\",op=\"remove\",outcome=\"incomplete\"} 1\n"
        ),
        "{m}"
    );
    stop(nodes).await;
}

/// Send `head` (a request line and headers, and maybe some body) on a new connection,
/// then `body_chunks` chunks of 1 MiB in chunked encoding, and return the status line
/// the server answers (it may answer before reading everything).
async fn raw_request(addr: std::net::SocketAddr, head: String, body_chunks: usize) -> String {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..body_chunks {
            write
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            write.write_all(&chunk).await?;
            write.write_all(b"\r\n").await?;
        }
        if body_chunks > 0 {
            write.write_all(b"0\r\n\r\n").await?;
        }
        std::io::Result::Ok(())
    });
    let mut answer = Vec::new();
    let mut buf = [0; 4096];
    // Until the status line is in: bounded by the bytes a status line can take.
    while !answer.contains(&b'\n') && answer.len() < 4096 {
        match read.read(&mut buf).await.unwrap() {
            0 => break,
            n => answer.extend_from_slice(&buf[..n]),
        }
    }
    // The server may answer (and stop reading) while the writer is still sending.
    writer.abort();
    let text = String::from_utf8_lossy(&answer);
    text.lines().next().unwrap_or_default().to_owned()
}

/// A bad write: method, URL, headers, the status it gets, and text its answer contains.
type BadWrite = (
    Method,
    String,
    Vec<(header::HeaderName, &'static str)>,
    u16,
    &'static str,
);

/// Bad writes are refused with the right status, and nothing changes: every node serves
/// on, with the same entries and no write applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_writes_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    create_database(&db, ROWS, 16).unwrap();
    let nodes = cluster(Protocol::Http, 2, &db).await;
    let client = HttpClient::new(2, Duration::from_secs(30));
    let keys: Vec<String> = (0..6).map(|i| format!("key-{i}")).collect();
    read_all(&client, &nodes, &keys, 2).await;
    let stats = [
        "main_entries",
        "hot_entries",
        "removes",
        "sets",
        "flushes",
        "backend_loads",
    ];
    let mut before = Vec::new();
    for stat in stats {
        before.push(cluster_stat(&client, &nodes, "sql", stat).await);
    }
    let b = base(&nodes[0]);
    let cases: Vec<BadWrite> = vec![
        (
            Method::DELETE,
            format!("{b}/v1/galaxies/nope/keys/key-1"),
            vec![],
            404,
            "no galaxy named \"nope\"",
        ),
        (
            Method::PUT,
            format!("{b}/v1/galaxies/nope/keys/key-1"),
            vec![],
            404,
            "no galaxy named \"nope\"",
        ),
        (
            Method::POST,
            format!("{b}/v1/galaxies/nope/flush"),
            vec![],
            404,
            "no galaxy named \"nope\"",
        ),
        (
            Method::DELETE,
            format!("{b}/v1/galaxies/sql/keys/"),
            vec![],
            400,
            "empty key",
        ),
        (
            Method::DELETE,
            format!("{b}/v1/galaxies/sql/keys"),
            vec![],
            400,
            "empty key",
        ),
        (
            Method::PUT,
            format!("{b}/v1/galaxies/sql/keys/"),
            vec![],
            400,
            "empty key",
        ),
        (
            Method::PUT,
            format!("{b}/v1/galaxies/sql/keys/{}", "k".repeat(1025)),
            vec![],
            400,
            "exceeds the limit",
        ),
        (
            Method::DELETE,
            format!("{b}/v1/galaxies/sql/keys/{}", "k".repeat(1025)),
            vec![],
            400,
            "exceeds the limit",
        ),
        (
            Method::PUT,
            format!("{b}/v1/galaxies/sql/keys/%FF%FE"),
            vec![],
            400,
            "",
        ),
        (
            Method::DELETE,
            format!("{b}/v1/galaxies/sql/keys/%FF%FE"),
            vec![],
            400,
            "",
        ),
        (
            Method::PUT,
            format!("{b}/v1/galaxies/sql/keys/key-1"),
            vec![(header::CACHE_CONTROL, "max-age=soon")],
            400,
            "Cache-Control",
        ),
        (
            Method::PUT,
            format!("{b}/v1/galaxies/sql/keys/key-1"),
            vec![(header::CACHE_CONTROL, "max-age=")],
            400,
            "Cache-Control",
        ),
        (
            Method::PUT,
            format!("{b}/v1/galaxies/sql/keys/key-1"),
            vec![(header::CACHE_CONTROL, "max-age=-5")],
            400,
            "Cache-Control",
        ),
        (
            Method::PUT,
            format!("{b}/v1/galaxies/sql/keys/key-1"),
            vec![(header::CACHE_CONTROL, "max-age")],
            400,
            "Cache-Control",
        ),
        (
            Method::PUT,
            format!("{b}/v1/galaxies/sql/keys/key-1"),
            vec![(header::CACHE_CONTROL, "max-age=5, max-age=6")],
            400,
            "twice",
        ),
        (
            Method::PUT,
            format!("{b}/v1/galaxies/sql/keys/key-1"),
            vec![(header::EXPIRES, "tomorrow")],
            400,
            "Expires",
        ),
        // A good max-age does not excuse a bad Expires.
        (
            Method::PUT,
            format!("{b}/v1/galaxies/sql/keys/key-1"),
            vec![(header::CACHE_CONTROL, "max-age=5"), (header::EXPIRES, "0")],
            400,
            "Expires",
        ),
        (
            Method::POST,
            format!("{b}/v1/galaxies/sql/keys/key-1"),
            vec![],
            405,
            "",
        ),
        (
            Method::PATCH,
            format!("{b}/v1/galaxies/sql/keys/key-1"),
            vec![],
            405,
            "",
        ),
        (
            Method::GET,
            format!("{b}/v1/galaxies/sql/flush"),
            vec![],
            405,
            "",
        ),
        (
            Method::DELETE,
            format!("{b}/v1/galaxies/sql/flush"),
            vec![],
            405,
            "",
        ),
        (Method::PUT, format!("{b}/v1/stats"), vec![], 405, ""),
    ];
    for (method, url, headers, status, message) in &cases {
        let r = send(&client, method.clone(), url, headers, b"new").await;
        let body = String::from_utf8_lossy(&r.body);
        assert_eq!(r.status, *status, "{method} {url} {headers:?}: {body}");
        assert!(body.contains(message), "{method} {url}: {body}");
    }

    // Over the bound: told by Content-Length (refused before any body is read), or found
    // while reading a chunked body.
    let addr = nodes[0].api_addr();
    let too_long = galaxycache_universe::DEFAULT_MAX_RESPONSE_BYTES + 1;
    let head = format!(
        "PUT /v1/galaxies/sql/keys/key-1 HTTP/1.1\r\nHost: x\r\nContent-Length: {too_long}\r\n\r\n"
    );
    assert_eq!(
        raw_request(addr, head, 0).await,
        "HTTP/1.1 413 Payload Too Large"
    );
    let head =
        "PUT /v1/galaxies/sql/keys/key-1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_owned();
    let chunks = (too_long >> 20) + 1;
    assert_eq!(
        raw_request(addr, head, chunks).await,
        "HTTP/1.1 413 Payload Too Large"
    );

    // Nothing changed, and every node still serves the old values from its caches.
    let mut after = Vec::new();
    for stat in stats {
        after.push(cluster_stat(&client, &nodes, "sql", stat).await);
    }
    assert_eq!(after, before, "{stats:?}");
    for key in &keys {
        for node in &nodes {
            let r = get(&client, node, "sql", key).await;
            assert_eq!(r.body, row(&db, key), "{key}");
        }
    }
    assert_eq!(
        cluster_stat(&client, &nodes, "sql", "backend_loads").await,
        before[5]
    );
    let m = send(&client, Method::GET, &format!("{b}/metrics"), &[], b"").await;
    let m = String::from_utf8_lossy(&m.body);
    // 2 bad keys, 7 bad headers and 2 bodies over the bound; the bad encodings are
    // refused before the handler, and an unknown galaxy has no counters.
    assert!(
        m.contains(
            "galaxycache_client_writes_total{galaxy=\"sql\",op=\"set\",outcome=\"bad_request\"} 11\n"
        ),
        "{m}"
    );
    assert!(
        m.contains(
            "galaxycache_client_writes_total{galaxy=\"sql\",op=\"remove\",outcome=\"bad_request\"} 3\n"
        ),
        "{m}"
    );
    stop(nodes).await;
}

/// `n` timed writes of distinct keys from node 0, in milliseconds: p50 and p99.
async fn time_writes(client: &HttpClient, node: &Node, method: Method, n: usize) -> (f64, f64) {
    let mut ms = Vec::new();
    for i in 0..n {
        let url = format!("{}/v1/galaxies/synthetic/keys/w-{i}", base(node));
        let start = Instant::now();
        let r = send(client, method.clone(), &url, &[], b"value").await;
        ms.push(start.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(json(&r)["complete"], true);
    }
    ms.sort_by(f64::total_cmp);
    (ms[n / 2], ms[n * 99 / 100])
}

fn bench_config(nodes: &[Node]) -> BenchConfig {
    BenchConfig {
        keys: 10_000,
        concurrency: 8,
        warmup: Duration::from_millis(200),
        value_check: true,
        ..BenchConfig::new(nodes.iter().map(base).collect(), "synthetic")
    }
}

/// About 1,000 removes a second of `{prefix}0` .. `{prefix}99` for 1.3 s (a bench's
/// warmup and measurement), through every target in turn: one started every millisecond,
/// at most 64 in flight. Removes answered 200, removes sent, and the rate of the former.
async fn removes_for(
    client: HttpClient,
    targets: Vec<String>,
    prefix: &'static str,
) -> (u64, u64, f64) {
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut in_flight = tokio::task::JoinSet::new();
    let (start, mut sent, mut done) = (Instant::now(), 0u64, 0u64);
    while start.elapsed() < Duration::from_millis(1300) {
        tick.tick().await;
        while in_flight.len() >= 64 {
            done += u64::from(in_flight.join_next().await.unwrap().unwrap());
        }
        let target = &targets[sent as usize % targets.len()];
        let uri = format!("{target}/v1/galaxies/synthetic/keys/{prefix}{}", sent % 100);
        let client = client.clone();
        in_flight.spawn(async move {
            let r = client
                .send(
                    Method::DELETE,
                    uri.parse().unwrap(),
                    HeaderMap::new(),
                    Bytes::new(),
                )
                .await;
            r.is_ok_and(|r| r.status == 200)
        });
        sent += 1;
    }
    while let Some(ok) = in_flight.join_next().await {
        done += u64::from(ok.unwrap());
    }
    (done, sent, done as f64 / start.elapsed().as_secs_f64())
}

/// Figures for the record, printed (`--nocapture`), never asserted: write latency on a
/// 3-node loopback cluster, and get throughput with and without ~1,000 removes a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_for_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kv.db");
    create_database(&db, ROWS, 16).unwrap();
    let nodes = cluster(Protocol::Http, 3, &db).await;
    let client = HttpClient::new(16, Duration::from_secs(10));
    let (remove_p50, remove_p99) = time_writes(&client, &nodes[0], Method::DELETE, 300).await;
    let (set_p50, set_p99) = time_writes(&client, &nodes[0], Method::PUT, 300).await;
    println!("remove: p50 {remove_p50:.3} ms, p99 {remove_p99:.3} ms (3 nodes, HTTP peers)");
    println!("set:    p50 {set_p50:.3} ms, p99 {set_p99:.3} ms (3 nodes, HTTP peers)");

    let quiet = run_bench(&bench_config(&nodes)).await.unwrap();
    println!(
        "gets alone:                      {:.0}/s, p99 {:.3} ms",
        quiet.requests_per_second, quiet.latency_ms.p99
    );
    // The hottest keys (every removed key is reloaded) and keys nobody reads (the cost of
    // the broadcast alone).
    for (what, prefix) in [("hot keys", "key-"), ("cold keys", "cold-")] {
        let removes = tokio::spawn(removes_for(
            client.clone(),
            bench_config(&nodes).targets,
            prefix,
        ));
        let busy = run_bench(&bench_config(&nodes)).await.unwrap();
        let (removed, sent, removes_per_sec) = removes.await.unwrap();
        println!(
            "gets with {removes_per_sec:.0} removes/s of {what:<9}: {:.0}/s, p99 {:.3} ms",
            busy.requests_per_second, busy.latency_ms.p99
        );
        // What can fail without timing: values stay right while keys are removed under
        // load, and every remove is answered 200.
        assert_eq!((busy.errors, busy.value_mismatches), (0, 0), "{busy}");
        assert_eq!(removed, sent, "removes not answered 200");
    }
    stop(nodes).await;
}
