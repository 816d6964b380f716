//! [`DnsPeers`] against a real DNS server that each test starts on loopback: hickory's
//! own, serving an in-memory zone `test.` that the test edits.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, AAAA, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use tokio::net::UdpSocket;
use tokio::time::Instant;

use super::*;
use crate::{FetchResult, GalaxyHandler, InProcessNetwork, Owner, Universe, Value, WriteOp};

type Zone = InMemoryZoneHandler<TokioRuntimeProvider>;

/// A DNS server on 127.0.0.1 (UDP) answering for the zone `test.`.
struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Zone>,
    serial: u32,
    _server: Server<Catalog>,
}

impl DnsServer {
    async fn start() -> Self {
        let origin = Name::from_ascii("test.").unwrap();
        let mut zone = Zone::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            Name::from_ascii("ns.test.").unwrap(),
            Name::from_ascii("admin.test.").unwrap(),
            1,
            60,
            60,
            60,
            0,
        );
        assert!(zone.upsert_mut(Record::from_rdata(origin.clone(), 0, RData::SOA(soa)), 1));
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        let handler: Arc<dyn ZoneHandler> = zone.clone();
        catalog.upsert(LowerName::new(&origin), vec![handler]);
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let mut server = Server::new(catalog);
        server.register_socket(socket);
        DnsServer {
            addr,
            zone,
            serial: 1,
            _server: server,
        }
    }

    /// Make `ips` the A and AAAA records of `name` (with a TTL of 0).
    async fn set(&mut self, name: &str, ips: &[IpAddr]) {
        let name = Name::from_ascii(name).unwrap();
        let owner = LowerName::new(&name);
        self.zone.records_mut().await.retain(|key, _| {
            key.name != owner || !matches!(key.record_type, RecordType::A | RecordType::AAAA)
        });
        self.serial += 1;
        for ip in ips {
            let rdata = match ip {
                IpAddr::V4(ip) => RData::A(A(*ip)),
                IpAddr::V6(ip) => RData::AAAA(AAAA(*ip)),
            };
            let record = Record::from_rdata(name.clone(), 0, rdata);
            assert!(self.zone.upsert(record, self.serial).await);
        }
    }
}

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, last))
}

const FAST: Duration = Duration::from_millis(20);

#[tokio::test]
async fn resolves_sorted_urls_and_yields_only_changes() {
    let mut dns = DnsServer::start().await;
    let ips = [v4(2), IpAddr::V6(Ipv6Addr::LOCALHOST), v4(1)];
    dns.set("peers.test.", &ips).await;
    let mut source = DnsPeers::new("peers.test.", 9001, Some(dns.addr))
        .unwrap()
        .interval(FAST)
        .scheme("https");
    let first = source.next().await.unwrap().unwrap();
    assert_eq!(
        first,
        [
            "https://127.0.1.1:9001",
            "https://127.0.1.2:9001",
            "https://[::1]:9001"
        ]
    );
    // Several lookups later, nothing changed: nothing is yielded.
    let unchanged = tokio::time::timeout(FAST * 10, source.next()).await;
    assert!(unchanged.is_err(), "yielded {unchanged:?}");
    dns.set("peers.test.", &[v4(3)]).await;
    let changed = tokio::time::timeout(Duration::from_secs(10), source.next()).await;
    assert_eq!(
        changed.unwrap().unwrap().unwrap(),
        ["https://127.0.1.3:9001"]
    );
}

#[tokio::test]
async fn a_name_without_addresses_is_an_error_item() {
    let dns = DnsServer::start().await;
    let mut source = DnsPeers::new("nobody.test.", 9001, Some(dns.addr)).unwrap();
    let e = source.next().await.unwrap().unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable);
    assert!(e.message().contains("nobody.test."), "{e}");
}

/// Answers every key with the key itself.
#[derive(Debug)]
struct Echo;

impl GalaxyHandler for Echo {
    fn serve_get<'a>(&'a self, key: &'a str, _: Option<Instant>) -> BoxFuture<'a, FetchResult> {
        Box::pin(async move { Ok(Some(Value::new(key.to_owned()))) })
    }
    fn serve_peek(&self, _: &str) -> Option<Value> {
        None
    }
    fn serve_write(&self, _: WriteOp<'_>) -> Result<(), Error> {
        Ok(())
    }
}

/// A get as a galaxy makes it: from this node's handler, or from the key's owner.
async fn get(universe: &Universe, key: &str) -> FetchResult {
    match universe.owner(key) {
        Owner::Local => universe.serve_get("g".into(), key, None).await,
        Owner::Remote(peer) => {
            let deadline = Instant::now() + Duration::from_secs(5);
            peer.fetch("g".into(), key, deadline).await
        }
    }
}

/// Gets of many keys on every node until `stop`; the number of gets and of failures.
async fn get_until(nodes: Vec<Universe>, stop: Arc<AtomicBool>, failed: Arc<AtomicU64>) -> u64 {
    let mut gets = 0;
    while !stop.load(Ordering::Relaxed) {
        for (n, node) in nodes.iter().enumerate() {
            let key = format!("key-{}", gets % 500);
            let ok = matches!(get(node, &key).await, Ok(Some(v)) if v.bytes() == key.as_bytes());
            if !ok {
                eprintln!("get of {key} on node {n} failed");
                failed.fetch_add(1, Ordering::Relaxed);
            }
            gets += 1;
        }
        tokio::task::yield_now().await;
    }
    gets
}

/// Poll (bounded) until every node's ring is `peers`.
async fn rings_become(nodes: &[Universe], peers: &[String]) {
    for _ in 0..500 {
        if nodes.iter().all(|n| n.peers() == peers) {
            return;
        }
        tokio::time::sleep(FAST).await;
    }
    for node in nodes {
        assert_eq!(node.peers(), peers, "ring of {}", node.self_url());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_follows_its_records_without_a_failed_get() {
    let mut dns = DnsServer::start().await;
    dns.set("peers.test.", &[v4(1), v4(2)]).await;
    let net = InProcessNetwork::new();
    let echo: Arc<dyn GalaxyHandler> = Arc::new(Echo);
    let urls: Vec<String> = (1..=3).map(|i| format!("http://{}:9001", v4(i))).collect();
    let nodes: Vec<Universe> = urls
        .iter()
        .map(|url| {
            let node = Universe::builder(url).protocol(net.protocol()).build();
            node.register("g", Arc::downgrade(&echo)).unwrap();
            net.attach(&node);
            let source = DnsPeers::new("peers.test.", 9001, Some(dns.addr))
                .unwrap()
                .interval(FAST);
            let follower = node.clone();
            tokio::spawn(async move { follower.follow(source).await });
            node
        })
        .collect();
    // Nodes 1 and 2 are the records; node 3, not yet listed, has them and itself.
    rings_become(&nodes[..2], &urls[..2]).await;
    rings_become(&nodes[2..], &urls).await;

    let (stop, failed) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU64::new(0)),
    );
    let getter = tokio::spawn(get_until(nodes.clone(), stop.clone(), failed.clone()));
    dns.set("peers.test.", &[v4(1), v4(2), v4(3)]).await;
    rings_become(&nodes, &urls).await;
    stop.store(true, Ordering::Relaxed);
    let gets = getter.await.unwrap();
    assert!(gets > 0);
    assert_eq!(failed.load(Ordering::Relaxed), 0, "of {gets} gets");
}
