//! A node whose peers come from a file: it follows the file's changes, and `galaxyd serve`
//! re-reads the file on SIGHUP.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use galaxyd::{BackendSpec, GalaxyConfig, HttpClient, NodeConfig, PeerSource};

/// The peers on the ring of the node whose client API is at `api`, from `/v1/stats`.
async fn ring(client: &HttpClient, api: &str) -> Vec<String> {
    let r = client
        .get(format!("http://{api}/v1/stats").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    serde_json::from_value(json["peers"].clone()).unwrap()
}

/// Poll `/v1/stats` (bounded: 10 s) until the ring is `peers` (in any order).
async fn ring_becomes(client: &HttpClient, api: &str, peers: &[&str]) {
    let mut peers: Vec<&str> = peers.to_vec();
    peers.sort_unstable();
    for _ in 0..1000 {
        if ring(client, api).await == peers {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(ring(client, api).await, peers);
}

/// Replace the file at `path` as an operator should: write another, rename it over.
fn replace(path: &Path, text: &str) {
    let next = path.with_extension("next");
    std::fs::write(&next, text).unwrap();
    std::fs::rename(&next, path).unwrap();
}

#[tokio::test]
async fn a_node_follows_its_peer_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers");
    replace(&path, "http://127.0.0.1:1\n");
    let node = common::node(|local| NodeConfig {
        peers: PeerSource::File {
            path: path.clone(),
            interval: Duration::from_millis(20),
        },
        galaxies: vec![GalaxyConfig::new("g", BackendSpec::Synthetic)],
        ..local
    })
    .await;
    let self_url = format!("http://{}", node.peer_addr());
    let api = node.api_addr().to_string();
    let client = HttpClient::new(1, Duration::from_secs(10));
    ring_becomes(&client, &api, &["http://127.0.0.1:1", &self_url]).await;
    // Listed itself, with a trailing `/`: normalised, one node.
    replace(&path, &format!("http://127.0.0.1:2\n{self_url}/\n"));
    ring_becomes(&client, &api, &["http://127.0.0.1:2", &self_url]).await;
    replace(
        &path,
        "# two peers\nhttp://127.0.0.1:2, http://127.0.0.1:3\n",
    );
    ring_becomes(
        &client,
        &api,
        &["http://127.0.0.1:2", "http://127.0.0.1:3", &self_url],
    )
    .await;
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn sighup_makes_galaxyd_re_read_its_peer_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers");
    replace(&path, "http://127.0.0.1:1\n");
    // Polled hourly: only the SIGHUP can make it re-read the file within the test.
    let (galaxyd, api) = common::Galaxyd::start(&[
        "--peers-file",
        path.to_str().unwrap(),
        "--peers-file-interval",
        "1h",
    ]);
    let client = HttpClient::new(1, Duration::from_secs(10));
    let me = "http://127.0.0.1:0";
    ring_becomes(&client, &api, &["http://127.0.0.1:1", me]).await;
    replace(&path, "http://127.0.0.1:1\nhttp://127.0.0.1:2\n");
    let hup = Command::new("kill")
        .args(["-HUP", &galaxyd.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    ring_becomes(
        &client,
        &api,
        &["http://127.0.0.1:1", "http://127.0.0.1:2", me],
    )
    .await;
    drop(galaxyd);
}
