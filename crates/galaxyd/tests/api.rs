//! The client API over loopback: values, the 4xx/5xx paths, stats, metrics, health.

mod common;

use std::time::Duration;

use axum::body::Body;
use galaxycache_galaxy::{Error, Stats, Value};
use galaxycache_http::GALAXY_STATUS_HEADER;
use galaxyd::{BackendSpec, GalaxyConfig, HttpClient, Node, NodeConfig, Response, create_database};
use http_body_util::BodyExt;
use tower::ServiceExt;

const SHA256_A: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

async fn get(client: &HttpClient, base: &str, path: &str) -> Response {
    client
        .get(format!("{base}{path}").parse().unwrap())
        .await
        .unwrap()
}

fn text(r: &Response) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn status_header(r: &Response) -> Option<&str> {
    r.headers
        .get(GALAXY_STATUS_HEADER)
        .map(|v| v.to_str().unwrap())
}

/// One node with a synthetic galaxy and an SQLite galaxy of five rows.
async fn start_node(db: &std::path::Path) -> Node {
    create_database(db, 5, 16).unwrap();
    let mut synthetic = GalaxyConfig::new("synthetic", BackendSpec::Synthetic);
    synthetic.backend_options.value_size = 100;
    let sql = GalaxyConfig::new("sql", BackendSpec::Sqlite(db.to_owned()));
    common::node(|local| NodeConfig {
        max_key_len: 1024,
        galaxies: vec![synthetic, sql],
        ..local
    })
    .await
}

#[tokio::test]
async fn values_missing_keys_bad_keys_stats_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_node(&dir.path().join("kv.db")).await;
    let base = format!("http://{}", node.api_addr());
    let client = HttpClient::new(4, Duration::from_secs(10));

    // 200: the synthetic value, computed here independently.
    let r = get(&client, &base, "/v1/galaxies/synthetic/keys/a").await;
    assert_eq!(r.status, 200);
    assert_eq!(text(&r), format!("{SHA256_A}{}", &SHA256_A[..36]));
    assert_eq!(r.headers["content-type"], "application/octet-stream");
    // A percent-encoded key is decoded, `/` included.
    let r = get(&client, &base, "/v1/galaxies/synthetic/keys/a%2Fb%20c").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, galaxyd::synthetic_value("a/b c", 100));
    let r = get(&client, &base, "/v1/galaxies/sql/keys/key-3").await;
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 16));

    // 404: missing key and missing galaxy, told apart.
    let r = get(&client, &base, "/v1/galaxies/sql/keys/key-99").await;
    assert_eq!(r.status, 404);
    assert_eq!(status_header(&r), Some("Found"));
    assert!(
        text(&r).contains("no value for key \"key-99\""),
        "{}",
        text(&r)
    );
    let r = get(&client, &base, "/v1/galaxies/nope/keys/a").await;
    assert_eq!(r.status, 404);
    assert_eq!(status_header(&r), Some("Not Found"));
    assert!(
        text(&r).contains("no galaxy named \"nope\""),
        "{}",
        text(&r)
    );

    // 400: empty key, oversized key, bad encoding.
    for path in [
        "/v1/galaxies/synthetic/keys/",
        "/v1/galaxies/synthetic/keys",
    ] {
        let r = get(&client, &base, path).await;
        assert_eq!(r.status, 400, "{path}");
        assert!(text(&r).contains("empty key"), "{}", text(&r));
    }
    let long = "x".repeat(1025);
    let r = get(
        &client,
        &base,
        &format!("/v1/galaxies/synthetic/keys/{long}"),
    )
    .await;
    assert_eq!(r.status, 400);
    assert!(text(&r).contains("invalid key"), "{}", text(&r));
    let r = get(&client, &base, "/v1/galaxies/synthetic/keys/%FF%FE").await;
    assert_eq!(r.status, 400, "{}", text(&r));

    // /v1/stats: every stat of the core, per galaxy.
    let r = get(&client, &base, "/v1/stats").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(json["node"], node.universe().self_url());
    let galaxies = json["galaxies"].as_object().unwrap();
    assert_eq!(galaxies.keys().collect::<Vec<_>>(), ["sql", "synthetic"]);
    for (name, _) in Stats::default().fields() {
        assert!(galaxies["synthetic"][name].is_u64(), "stat {name} missing");
    }
    assert_eq!(galaxies["synthetic"]["backend_loads"], 2);
    assert_eq!(galaxies["sql"]["backend_loads"], 2);
    // ... and each galaxy's byte budget: `galaxyd top` shows the bytes held against it.
    let budget = node.galaxies().iter().find(|g| g.name() == "synthetic");
    let budget = budget.unwrap().budget_bytes();
    assert_eq!(galaxies["synthetic"]["budget_bytes"], budget);

    // /metrics: the same stats and the client latency, labelled by galaxy.
    let r = get(&client, &base, "/metrics").await;
    assert_eq!(r.status, 200);
    let m = text(&r);
    assert!(
        m.contains("galaxycache_backend_loads_total{galaxy=\"synthetic\"} 2\n"),
        "{m}"
    );
    assert!(m.contains("galaxycache_client_gets_total{galaxy=\"sql\",outcome=\"not_found\"} 1\n"));
    assert!(m.contains("galaxycache_client_get_duration_seconds_count{galaxy=\"synthetic\"} "));
    // The library's histograms, the build and the process, under the exporter's types.
    assert!(
        m.contains("# TYPE galaxycache_backend_load_duration_seconds histogram\n"),
        "{m}"
    );
    assert!(m.contains("galaxycache_backend_load_duration_seconds_bucket{galaxy=\"synthetic\",outcome=\"ok\",le=\"0.0001\"}"), "{m}");
    assert!(m.contains("# TYPE galaxycache_gets_total counter\n"), "{m}");
    assert!(
        m.contains("galaxycache_gets_total{galaxy=\"sql\",outcome=\"miss\"} "),
        "{m}"
    );
    assert!(m.contains("# TYPE galaxycache_cache_bytes gauge\n"), "{m}");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        m.contains(&format!(
            "galaxycache_build_info{{version=\"{version}\"}} 1\n"
        )),
        "{m}"
    );
    assert!(m.contains("\nprocess_resident_memory_bytes "), "{m}");
    for family in m.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().unwrap();
        assert!(
            name.starts_with("galaxycache_") || name.starts_with("process_"),
            "{name}"
        );
        assert_eq!(
            m.matches(&format!("# TYPE {name} ")).count(),
            1,
            "{name} twice"
        );
    }

    let r = get(&client, &base, "/healthz").await;
    assert_eq!((r.status.as_u16(), text(&r).trim()), (200, "ok"));
    let r = get(&client, &base, "/nowhere").await;
    assert_eq!(r.status, 404);

    node.shutdown().await.unwrap();
    let refused = client.get(format!("{base}/healthz").parse().unwrap()).await;
    assert!(
        refused.is_err(),
        "the client API still answers after shutdown"
    );
}

/// The router's answer to `GET path`, without sockets.
async fn oneshot(router: &axum::Router, path: &str) -> (http::StatusCode, String) {
    let request = http::Request::get(path).body(Body::empty()).unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A failing backend is 503; a load slower than the request timeout is 504. On a paused
/// clock: the 1 s timeout passes only once nothing else can run.
#[tokio::test(start_paused = true)]
async fn failed_and_slow_loads() {
    let backend = |key: String| async move {
        match key.as_str() {
            "fail" => Err(Error::backend("database on fire")),
            "hang" => std::future::pending().await,
            _ => Ok(Some(Value::new(key))),
        }
    };
    let router = common::api_over(backend, Duration::from_secs(1));

    let (status, body) = oneshot(&router, "/v1/galaxies/g/keys/fail").await;
    assert_eq!(status, 503);
    assert!(body.contains("database on fire"), "{body}");
    let (status, body) = oneshot(&router, "/v1/galaxies/g/keys/hang").await;
    assert_eq!(status, 504, "{body}");
    let (_, m) = oneshot(&router, "/metrics").await;
    assert!(
        m.contains("galaxycache_client_gets_total{galaxy=\"g\",outcome=\"error\"} 1\n"),
        "{m}"
    );
    assert!(
        m.contains("galaxycache_client_gets_total{galaxy=\"g\",outcome=\"timeout\"} 1\n"),
        "{m}"
    );
}

/// A router, once dropped, leaves no task of its own running: the fuzz target builds one
/// per input, and a task that outlived its router kept the router's metrics alive, ~16 KB
/// an input, until the fuzzer ran out of memory.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_dropped_router_leaves_no_task_behind() {
    let runtime = tokio::runtime::Handle::current();
    let before = runtime.metrics().num_alive_tasks();
    for _ in 0..10 {
        let router = common::api_over(|_key: String| async { Ok(None) }, Duration::from_secs(1));
        drop(router);
    }
    // An aborted task is reaped the next time the runtime gets to it.
    tokio::task::yield_now().await;
    assert_eq!(runtime.metrics().num_alive_tasks(), before);
}
