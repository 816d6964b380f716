//! mTLS between peers and the peer token, over real loopback sockets: what is served,
//! what is refused at the handshake, and that nothing refused is applied.

mod common;

use common::pki::{Pki, https, server_certificate, without_client_certificate};
use common::{Node, Written, exchange, fetcher, soon, status};
use galaxycache_http::{Dialect, HttpProtocol, PeerService, ServerLimits};
use galaxycache_universe::{ErrorKind, PeerToken, TlsConfig, Universe, WriteOp};

/// A galaxycache-dialect node serving over mTLS with `pki`'s certificate `server`.
async fn tls_node(pki: &Pki) -> Node {
    let tls = pki.tls(&pki.issue("server"));
    let acceptor = tls.acceptor().unwrap();
    Node::start_configured(
        Dialect::Galaxycache,
        Universe::builder("https://self"),
        |service| service.tls(acceptor),
    )
    .await
}

fn tls_client(tls: &TlsConfig) -> HttpProtocol {
    HttpProtocol::builder().tls(tls).unwrap().build()
}

#[tokio::test]
async fn mtls_serves_fetches_and_writes() {
    let pki = Pki::new("cluster");
    let node = tls_node(&pki).await;
    let peer = fetcher(
        tls_client(&pki.tls(&pki.issue("client"))),
        &https(&node.url),
    );
    let value = peer.fetch("g".into(), "k", soon()).await.unwrap().unwrap();
    assert_eq!(value.bytes().as_ref(), b"k");
    peer.write("g".into(), WriteOp::Remove("k"), soon())
        .await
        .unwrap();
    assert_eq!(node.fake.writes(), [Written::Remove("k".into())]);
    node.stop().await;
}

#[tokio::test]
async fn http2_over_mtls_serves_too() {
    let pki = Pki::new("cluster");
    let node = tls_node(&pki).await;
    let tls = pki.tls(&pki.issue("client"));
    let protocol = HttpProtocol::builder()
        .http2(true)
        .tls(&tls)
        .unwrap()
        .build();
    let peer = fetcher(protocol, &https(&node.url));
    let value = peer.fetch("g".into(), "k2", soon()).await.unwrap().unwrap();
    assert_eq!(value.bytes().as_ref(), b"k2");
    node.stop().await;
}

/// Certificates the server refuses at the handshake: the fetch and the write fail as an
/// unavailable peer (the galaxy falls back), and the galaxy saw neither.
#[tokio::test]
async fn certificates_of_another_ca_or_expired_are_refused() {
    let pki = Pki::new("cluster");
    let node = tls_node(&pki).await;
    let other = Pki::new("other");
    let strangers = [
        // Another CA's certificate, trusting this cluster's CA to check the server.
        TlsConfig::new(
            &pki.ca,
            other.issue("stranger").cert,
            other.issue("stranger").key,
        ),
        pki.tls(&pki.issue_expired("expired")),
    ];
    for tls in &strangers {
        let peer = fetcher(tls_client(tls), &https(&node.url));
        let e = peer.fetch("g".into(), "k", soon()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        let e = peer
            .write("g".into(), WriteOp::Flush, soon())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    }
    let request = b"DELETE /_galaxycache/g/k HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n";
    let refused = without_client_certificate(node.addr, &pki.ca, request).await;
    assert!(
        refused.is_err(),
        "served without a certificate: {refused:?}"
    );
    // Plain HTTP on the TLS port is no request either.
    let plain = exchange(node.addr, request).await;
    assert!(!String::from_utf8_lossy(&plain).starts_with("HTTP/"));
    assert!(node.fake.seen.lock().unwrap().is_empty());
    assert!(node.fake.writes().is_empty());
    node.stop().await;
}

#[tokio::test]
async fn new_connections_see_a_replaced_certificate() {
    let pki = Pki::new("cluster");
    let first = pki.issue("server");
    let acceptor = pki.tls(&first).acceptor().unwrap();
    let node = Node::start_configured(
        Dialect::Galaxycache,
        Universe::builder("https://self"),
        |service| service.tls(acceptor),
    )
    .await;
    let client = pki.tls(&pki.issue("client"));
    assert_eq!(server_certificate(node.addr, &client).await, first.der);
    // The same files, new content: what an operator's certificate rotation does.
    let second = pki.issue("server");
    assert_ne!(second.der, first.der);
    assert_eq!(server_certificate(node.addr, &client).await, second.der);
    let peer = fetcher(tls_client(&client), &https(&node.url));
    assert!(peer.fetch("g".into(), "k", soon()).await.unwrap().is_some());
    node.stop().await;
}

/// A client whose certificate expired is refused; once the same files hold a valid
/// one (a rotation), its next connection is served, without a new protocol.
#[tokio::test]
async fn a_rotated_client_certificate_reaches_new_connections() {
    let pki = Pki::new("cluster");
    let node = tls_node(&pki).await;
    let client = pki.tls(&pki.issue_expired("client"));
    let peer = fetcher(tls_client(&client), &https(&node.url));
    let e = peer.fetch("g".into(), "k", soon()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    pki.issue("client");
    let value = peer.fetch("g".into(), "k", soon()).await.unwrap().unwrap();
    assert_eq!(value.bytes().as_ref(), b"k");
    node.stop().await;
}

async fn token_node() -> Node {
    let token = PeerToken::new("s3cret").unwrap();
    Node::start_configured(
        Dialect::Galaxycache,
        Universe::builder("http://self"),
        |service: PeerService| service.token(token),
    )
    .await
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_401_and_applies_nothing() {
    let node = token_node().await;
    for headers in [
        "",
        "Authorization: Bearer wrong\r\n",
        "Authorization: s3cret\r\n",
    ] {
        for (method, path) in [
            ("DELETE", "/_galaxycache/g/k"),
            ("DELETE", "/_galaxycache/g"),
            ("PUT", "/_galaxycache/g/k"),
            ("GET", "/_galaxycache/g/k"),
            ("GET", "/_galaxycache_peek/g/k"),
        ] {
            let answer = common::send(node.addr, method, path, headers, b"").await;
            assert_eq!(
                status(&answer),
                "401",
                "{method} {path} {headers:?}: {answer}"
            );
        }
    }
    for token in [None, Some("wrong")] {
        let mut builder = HttpProtocol::builder();
        if let Some(token) = token {
            builder = builder.token(PeerToken::new(token).unwrap());
        }
        let peer = fetcher(builder.build(), &node.url);
        let e = peer
            .write("g".into(), WriteOp::Remove("k"), soon())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
        let e = peer.fetch("g".into(), "k", soon()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
        let e = peer.peek("g".into(), "k", soon()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    }
    assert!(node.fake.writes().is_empty());
    assert!(node.fake.seen.lock().unwrap().is_empty());
    assert!(node.fake.peeked.lock().unwrap().is_empty());
    node.stop().await;
}

#[tokio::test]
async fn the_right_token_is_served_and_applied() {
    let node = token_node().await;
    let token = PeerToken::new("s3cret").unwrap();
    let peer = fetcher(HttpProtocol::builder().token(token).build(), &node.url);
    peer.write("g".into(), WriteOp::Remove("k"), soon())
        .await
        .unwrap();
    assert_eq!(node.fake.writes(), [Written::Remove("k".into())]);
    let value = peer.fetch("g".into(), "k", soon()).await.unwrap().unwrap();
    assert_eq!(value.bytes().as_ref(), b"k");
    assert!(peer.peek("g".into(), "k", soon()).await.unwrap().is_some());
    node.stop().await;
}

/// The server's limits hold on a TLS port too: a connection counts against the connection
/// bound from its handshake on, and one over the bound is refused before any handshake.
#[tokio::test]
async fn tls_connections_count_against_the_connection_bound() {
    let pki = Pki::new("cluster");
    let acceptor = pki.tls(&pki.issue("server")).acceptor().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let universe = Universe::builder("https://self").build();
    let service = PeerService::new(universe, Dialect::Galaxycache).tls(acceptor);
    let limits = ServerLimits::default().max_connections(1);
    tokio::spawn(service.serve_limited(listener, limits, std::future::pending()));
    // Holds the one place, its handshake waiting for a ClientHello.
    let _first = tokio::net::TcpStream::connect(addr).await.unwrap();
    let refused = exchange(addr, b"").await;
    let refused = String::from_utf8_lossy(&refused);
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused:?}");
}
