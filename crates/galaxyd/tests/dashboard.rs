//! The Grafana dashboard in deploy/grafana asks only for metrics that galaxyd exports: every
//! metric name in its queries is in the `/metrics` of a 2-node cluster that has served
//! hits, misses, peer fetches and writes.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use galaxyd::{BackendSpec, GalaxyConfig, HttpClient, NodeConfig};
use serde_json::Value;

/// Every metric name (`galaxycache_*`, `process_*`) in the dashboard's queries and
/// template variables, histogram series (`_bucket`, `_sum`, `_count`) by their family's name.
fn dashboard_metrics() -> BTreeSet<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/galaxycache.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queries: Vec<String> = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            queries.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if variable["type"] == "query" {
            queries.push(variable["query"].as_str().unwrap().to_owned());
        }
    }
    assert!(queries.len() >= 10, "{} queries", queries.len());
    let mut names = BTreeSet::new();
    for query in &queries {
        for word in query.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("galaxycache_") || word.starts_with("process_") {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| word.strip_suffix(s))
                    .unwrap_or(word);
                names.insert(family.to_owned());
            }
        }
    }
    names
}

/// The metric families of a `/metrics` text (from its `# TYPE` lines).
fn exported(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_dashboard_asks_for_is_exported() {
    let nodes = common::cluster(2, |local| {
        let mut galaxy = GalaxyConfig::new("g", BackendSpec::Synthetic);
        galaxy.backend_options.value_size = 64;
        NodeConfig {
            galaxies: vec![galaxy],
            ..local
        }
    })
    .await;
    let client = HttpClient::new(4, Duration::from_secs(10));
    let api = |i: usize| format!("http://{}", nodes[i].api_addr());
    // Keys both nodes own: node 0 loads some and fetches the others from node 1, twice
    // each (a miss, then a hit); then a remove and a set.
    for round in 0..2 {
        for k in 0..40 {
            let r = client
                .get(
                    format!("{}/v1/galaxies/g/keys/k{k}", api(0))
                        .parse()
                        .unwrap(),
                )
                .await
                .unwrap();
            assert_eq!(r.status, 200, "round {round}, key {k}");
        }
    }
    let remove = client
        .send(
            http::Method::DELETE,
            format!("{}/v1/galaxies/g/keys/k1", api(0)).parse().unwrap(),
            http::HeaderMap::new(),
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(remove.status, 200);

    let mut families = BTreeSet::new();
    for i in 0..2 {
        let r = client
            .get(format!("{}/metrics", api(i)).parse().unwrap())
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        families.extend(exported(std::str::from_utf8(&r.body).unwrap()));
    }
    let wanted = dashboard_metrics();
    let missing: Vec<&String> = wanted.difference(&families).collect();
    assert!(
        missing.is_empty(),
        "the dashboard asks for metrics galaxyd does not export: {missing:?}\nexported: {families:?}"
    );
}
