//! `galaxyd bench --batch N`: every request asks N keys through the batch endpoint, and the
//! report counts keys as well as requests.

mod common;

use std::time::Duration;

use galaxyd::{BackendSpec, BenchConfig, Dist, GalaxyConfig, NodeConfig, run_bench};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_bench_asks_n_keys_a_request_and_checks_every_value() {
    let mut synthetic = GalaxyConfig::new("synthetic", BackendSpec::Synthetic);
    synthetic.backend_options.value_size = 64;
    let node = common::node(|local| NodeConfig {
        galaxies: vec![synthetic],
        ..local
    })
    .await;
    let config = BenchConfig {
        keys: 1000,
        dist: Dist::Uniform,
        concurrency: 2,
        duration: Duration::from_millis(300),
        value_check: true,
        batch: Some(10),
        ..BenchConfig::new(vec![format!("http://{}", node.api_addr())], "synthetic")
    };
    let report = run_bench(&config).await.unwrap();
    assert!(report.requests > 0, "{report}");
    assert_eq!(report.keys_asked, report.requests * 10, "{report}");
    assert_eq!(report.ok, report.keys_asked, "{report}");
    assert_eq!(
        (report.errors, report.not_found, report.value_mismatches),
        (0, 0, 0),
        "{report}"
    );
    assert!(report.keys_per_second > report.requests_per_second);
    assert!(
        report.to_string().contains("keys/s), 10 a request"),
        "{report}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["batch"], 10);
    node.shutdown().await.unwrap();
}
