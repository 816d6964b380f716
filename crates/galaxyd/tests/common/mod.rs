//! Nodes over loopback, started as most of these tests start them.

// Each test file uses part of this module.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use axum::Router;
use galaxycache_galaxy::{BackendGetter, Galaxy};
use galaxycache_universe::{InFlight, Ring, Universe, normalize_peer_url};
use galaxyd::{Node, NodeConfig, PeerSource};
use tokio::net::TcpListener;

/// The client API of galaxy `g` over `backend`, without sockets (a universe alone on its
/// ring, nothing in flight bounded), answering 504 after `timeout`.
pub(crate) fn api_over(backend: impl BackendGetter, timeout: Duration) -> Router {
    let universe = Universe::builder("http://127.0.0.1:1").build();
    let galaxy = Galaxy::builder(&universe, "g", 1 << 20, backend)
        .build()
        .unwrap();
    galaxyd::router(
        "http://127.0.0.1:1",
        &[galaxy],
        timeout,
        galaxyd::Readiness::ready(),
        InFlight::unbounded(),
    )
}

async fn loopback() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// One node alone on its ring: `configure` gets its `NodeConfig::local` (no galaxy yet)
/// and returns the configuration to start.
pub(crate) async fn node(configure: impl FnOnce(NodeConfig) -> NodeConfig) -> Node {
    let (peer, api) = (loopback().await, loopback().await);
    let local = NodeConfig::local(
        peer.local_addr().unwrap(),
        api.local_addr().unwrap(),
        Vec::new(),
    );
    Node::start_on(&configure(local), peer, api).await.unwrap()
}

/// `n` nodes, each listing all of them as its peers: `configure` gets each node's
/// `NodeConfig::local` (no galaxy yet, those peers) and returns the configuration to start.
pub(crate) async fn cluster(n: usize, configure: impl Fn(NodeConfig) -> NodeConfig) -> Vec<Node> {
    let mut listeners = Vec::new();
    for _ in 0..n {
        listeners.push(loopback().await);
    }
    let peers: Vec<String> = listeners
        .iter()
        .map(|l| format!("http://{}", l.local_addr().unwrap()))
        .collect();
    let mut nodes = Vec::new();
    for peer in listeners {
        let api = loopback().await;
        let local = NodeConfig {
            peers: PeerSource::Static(peers.clone()),
            ..NodeConfig::local(
                peer.local_addr().unwrap(),
                api.local_addr().unwrap(),
                Vec::new(),
            )
        };
        nodes.push(Node::start_on(&configure(local), peer, api).await.unwrap());
    }
    nodes
}

/// Serve `app` on a loopback port; its URL. It stops with the test's runtime.
pub(crate) async fn serve(app: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, app).into_future());
    url
}

/// A key starting with `prefix` that the ring of `peers` gives to `owner`.
pub(crate) fn key_owned_by(peers: &[String], owner: &str, prefix: &str) -> String {
    let peers: Vec<String> = peers
        .iter()
        .map(|p| normalize_peer_url(p).unwrap())
        .collect();
    let owner = normalize_peer_url(owner).unwrap();
    let ring = Ring::new(50, peers);
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| ring.owner(k.as_bytes()) == Some(owner.as_str()))
        .unwrap()
}

/// A `galaxyd serve` child process, killed (by its PID) when dropped.
pub(crate) struct Galaxyd(Child);

impl Drop for Galaxyd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Galaxyd {
    /// Start `galaxyd serve` with `args` and ports of its own choosing; its API address,
    /// read from its "node started" log line.
    pub(crate) fn start(args: &[&str]) -> (Galaxyd, String) {
        let defaults = ["--self", "http://127.0.0.1:0", "--listen", "127.0.0.1:0"];
        Self::serve(&[&defaults[..], args].concat())
    }

    /// Start `galaxyd serve` with `args` alone (its addresses among them); its API
    /// address, read from its "node started" log line.
    pub(crate) fn serve(args: &[&str]) -> (Galaxyd, String) {
        Self::serve_with_env(&[], args)
    }

    /// [`serve`](Self::serve) with `env` added to its environment (`RUST_LOG` is `info`
    /// unless set there, and must keep galaxyd's info lines: the API address is read from
    /// one).
    pub(crate) fn serve_with_env(env: &[(&str, &str)], args: &[&str]) -> (Galaxyd, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_galaxyd"))
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
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

    /// The child's process ID.
    pub(crate) fn pid(&self) -> u32 {
        self.0.id()
    }

    /// The child's exit status, if it has exited.
    pub(crate) fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.0.try_wait().unwrap()
    }
}

fn api_addr(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("api_addr=")?;
    Some(rest.split_whitespace().next()?.to_owned())
}
