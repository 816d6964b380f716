//! Nodes over loopback, started as most of these tests start them.

// Each test file uses part of this module.
#![allow(dead_code)]

use galaxyd::{Node, NodeConfig, PeerSource};
use tokio::net::TcpListener;

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
