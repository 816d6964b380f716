//! Two nodes per peer protocol, over loopback: keys owned by one node are served through
//! the other's client API, and each key is loaded from the backend once.

mod common;

use std::time::Duration;

use galaxyd::{BackendSpec, GalaxyConfig, HttpClient, Node, NodeConfig, Protocol};

async fn cluster(protocol: Protocol) -> Vec<Node> {
    common::cluster(2, |local| {
        let mut galaxy = GalaxyConfig::new("g", BackendSpec::Synthetic);
        galaxy.backend_options.value_size = 32;
        galaxy.tuning.peer_timeout = Some(Duration::from_secs(10));
        NodeConfig {
            protocol,
            galaxies: vec![galaxy],
            ..local
        }
    })
    .await
}

async fn check(protocol: Protocol) {
    let nodes = cluster(protocol).await;
    let client = HttpClient::new(2, Duration::from_secs(10));
    // No spaces: groupcache's dialect delivers a space as `+` to the owner (Go's quirk),
    // which makes it another key there.
    let keys: Vec<String> = (0..20).map(|i| format!("key-{i}/x")).collect();
    for key in &keys {
        for node in &nodes {
            let url = format!(
                "http://{}/v1/galaxies/g/keys/{}",
                node.api_addr(),
                key.replace('/', "%2F")
            );
            let r = client.get(url.parse().unwrap()).await.unwrap();
            assert_eq!(r.status, 200, "{protocol} {key}: {:?}", r.body);
            assert_eq!(
                r.body,
                galaxyd::synthetic_value(key, 32),
                "{protocol} {key}"
            );
        }
    }
    let stats: Vec<_> = nodes.iter().map(|n| n.galaxies()[0].stats()).collect();
    let loads: u64 = stats.iter().map(|s| s.backend_loads).sum();
    let peer_loads: u64 = stats.iter().map(|s| s.peer_loads).sum();
    assert_eq!(loads, keys.len() as u64, "{protocol}: {stats:?}");
    assert!(peer_loads > 0, "{protocol}: no key crossed the network");
    assert_eq!(
        stats.iter().map(|s| s.peer_errors).sum::<u64>(),
        0,
        "{protocol}"
    );
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn http_peers() {
    check(Protocol::Http).await;
}

#[tokio::test]
async fn grpc_peers() {
    check(Protocol::Grpc).await;
}

#[tokio::test]
async fn groupcache_peers() {
    check(Protocol::Groupcache).await;
}
