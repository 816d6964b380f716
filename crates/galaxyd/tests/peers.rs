//! `GET /v1/peers` and the peer metrics: a dead peer's circuit opens after a few failed
//! fetches, and the node says so.

mod common;

use std::time::Duration;

use galaxycache_universe::{InProcessNetwork, Universe};
use galaxyd::{BackendSpec, GalaxyConfig, HttpClient, NodeConfig, PeerSource};

#[tokio::test]
async fn a_dead_peer_shows_open_in_v1_peers_and_in_metrics() {
    let mut dead = String::new();
    let node = common::node(|local| {
        // A port that was free a moment ago (after the node's own were bound): nothing
        // listens there.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        dead = format!("http://{}", l.local_addr().unwrap());
        NodeConfig {
            peers: PeerSource::Static(vec![local.self_url.clone(), dead.clone()]),
            galaxies: vec![GalaxyConfig::new("g", BackendSpec::Synthetic)],
            ..local
        }
    })
    .await;
    let self_url = format!("http://{}", node.peer_addr());
    let base = format!("http://{}", node.api_addr());
    let client = HttpClient::new(4, Duration::from_secs(10));
    let json = |body: &[u8]| serde_json::from_slice::<serde_json::Value>(body).unwrap();

    let r = client
        .get(format!("{base}/v1/peers").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let before = json(&r.body);
    assert_eq!(before["self"], self_url.as_str());
    let peers = before["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 2);
    assert!(peers.iter().all(|p| p["state"] == "up"));
    let total: f64 = peers.iter().map(|p| p["share"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 0.001, "shares add up to 1: {total}");

    // Keys the dead peer owns, as the node's own ring says.
    let ring = Universe::builder(&self_url)
        .protocol(InProcessNetwork::new().protocol())
        .build();
    ring.set_peers([&self_url, &dead]).unwrap();
    let theirs: Vec<String> = (0..)
        .map(|i| format!("k{i}"))
        .filter(|k| ring.owner_url(k) == dead)
        .take(5)
        .collect();
    for key in &theirs {
        let r = client
            .get(format!("{base}/v1/galaxies/g/keys/{key}").parse().unwrap())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "loaded locally: the owner is dead");
    }

    let r = client
        .get(format!("{base}/v1/peers").parse().unwrap())
        .await
        .unwrap();
    let after = json(&r.body);
    let state_of = |url: &str| {
        let peers = after["peers"].as_array().unwrap();
        peers.iter().find(|p| p["url"] == url).unwrap()["state"].clone()
    };
    assert_eq!(state_of(&dead), "open");
    assert_eq!(state_of(&self_url), "up");
    // What was sent to each: requests (a batch counts once) and the keys they carried.
    let sent = |url: &str, field: &str| {
        let peers = after["peers"].as_array().unwrap();
        peers.iter().find(|p| p["url"] == url).unwrap()[field]
            .as_u64()
            .unwrap()
    };
    let requests = sent(&dead, "fetch_requests");
    assert!(
        (1..5).contains(&requests),
        "{requests}: until the circuit opened"
    );
    assert_eq!(sent(&dead, "fetched_keys"), requests, "one key a request");
    assert_eq!(sent(&self_url, "fetch_requests"), 0);

    let r = client
        .get(format!("{base}/metrics").parse().unwrap())
        .await
        .unwrap();
    let metrics = String::from_utf8_lossy(&r.body).into_owned();
    assert!(metrics.contains("# TYPE galaxycache_peer_circuit_open gauge"));
    assert!(
        metrics.contains(&format!(
            "galaxycache_peer_circuit_open{{peer=\"{dead}\"}} 1"
        )),
        "{metrics}"
    );
    assert!(metrics.contains(&format!(
        "galaxycache_peer_circuit_open{{peer=\"{self_url}\"}} 0"
    )));
    node.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_leaving_node_closes_its_client_api_and_goes_on_answering_peers() {
    let node = common::node(|local| NodeConfig {
        galaxies: vec![GalaxyConfig::new("g", BackendSpec::Synthetic)],
        ..local
    })
    .await;
    let self_url = format!("http://{}", node.peer_addr());
    let (api_addr, client) = (node.api_addr(), HttpClient::new(4, Duration::from_secs(10)));
    let leaving = tokio::spawn(node.leave(Duration::from_secs(3600)));

    // The client API closes (bounded wait: a connection attempt per millisecond or so).
    let mut closed = false;
    for _ in 0..5_000 {
        if tokio::net::TcpStream::connect(api_addr).await.is_err() {
            closed = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(closed, "the client API still accepts connections");
    // Peers are still answered while the node drains.
    let r = client
        .get(format!("{self_url}/_galaxycache/g/k").parse().unwrap())
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(!leaving.is_finished());
    leaving.abort();
}
