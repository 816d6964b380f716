//! A node whose peers come from a file: it follows the file's changes, and `galaxyd serve`
//! re-reads the file on SIGHUP.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
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

/// A `galaxyd serve` child process, killed (by its PID) when dropped.
struct Galaxyd(Child);

impl Drop for Galaxyd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Galaxyd {
    /// Start `galaxyd serve` with `args` and ports of its own choosing; its API address,
    /// read from its "node started" log line.
    fn start(args: &[&str]) -> (Galaxyd, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_galaxyd"))
            .args(["serve", "--self", "http://127.0.0.1:0"])
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let child = Galaxyd(child);
        let mut lines = stderr.lines();
        let api = lines
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| api_addr(&line))
            .expect("galaxyd ended before it logged its API address");
        // Keep draining its log, so it never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        (child, api)
    }
}

fn api_addr(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("api_addr=")?;
    Some(rest.split_whitespace().next()?.to_owned())
}

#[tokio::test]
async fn sighup_makes_galaxyd_re_read_its_peer_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("peers");
    replace(&path, "http://127.0.0.1:1\n");
    // Polled hourly: only the SIGHUP can make it re-read the file within the test.
    let (galaxyd, api) = Galaxyd::start(&[
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
        .args(["-HUP", &galaxyd.0.id().to_string()])
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
