//! mTLS and the peer token over gRPC, on real loopback sockets: what is served, what is
//! refused at the handshake, and that nothing refused is applied.

mod common;

use galaxycache_universe::InFlight;
use std::net::SocketAddr;

use common::pki::{Pki, https, server_certificate, without_client_certificate};
use common::{Node, Written, later};
use galaxycache_grpc::{GrpcProtocol, GrpcServer};
use galaxycache_universe::{ErrorKind, FetchProtocol, PeerToken, TlsConfig, WriteOp};

async fn tls_node(pki: &Pki) -> (Node, common::pki::Issued) {
    let issued = pki.issue("server");
    let acceptor = pki.tls(&issued).acceptor().unwrap();
    let node = Node::start_configured(|b| b, |server: GrpcServer| server.tls(acceptor)).await;
    (node, issued)
}

fn addr(node: &Node) -> SocketAddr {
    node.url.trim_start_matches("http://").parse().unwrap()
}

fn tls_protocol(tls: &TlsConfig) -> GrpcProtocol {
    GrpcProtocol::new().tls(tls).unwrap()
}

#[tokio::test]
async fn mtls_serves_fetches_and_writes() {
    let pki = Pki::new("cluster");
    let (node, _) = tls_node(&pki).await;
    let protocol = tls_protocol(&pki.tls(&pki.issue("client")));
    let peer = protocol
        .connect(&https(&node.url), &InFlight::unbounded())
        .unwrap();
    let value = peer.fetch("g".into(), "k", later()).await.unwrap().unwrap();
    assert_eq!(value.bytes().as_ref(), b"v:k");
    peer.write("g".into(), WriteOp::Remove("k"), later())
        .await
        .unwrap();
    assert_eq!(node.fake.writes(), [Written::Remove("k".into())]);
    node.stop().await.unwrap();
}

#[tokio::test]
async fn certificates_of_another_ca_or_expired_or_none_are_refused() {
    let pki = Pki::new("cluster");
    let (node, _) = tls_node(&pki).await;
    let other = Pki::new("other");
    let stranger = other.issue("stranger");
    let strangers = [
        TlsConfig::new(&pki.ca, &stranger.cert, &stranger.key),
        pki.tls(&pki.issue_expired("expired")),
    ];
    for tls in &strangers {
        let peer = tls_protocol(tls)
            .connect(&https(&node.url), &InFlight::unbounded())
            .unwrap();
        let e = peer.fetch("g".into(), "k", later()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        let e = peer
            .write("g".into(), WriteOp::Flush, later())
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    }
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let refused = without_client_certificate(addr(&node), &pki.ca, preface).await;
    assert!(
        refused.is_err(),
        "served without a certificate: {refused:?}"
    );
    // A plain-text client of the TLS port gets no answer either.
    let plain = GrpcProtocol::new()
        .connect(&node.url, &InFlight::unbounded())
        .unwrap();
    assert!(plain.fetch("g".into(), "k", later()).await.is_err());
    assert!(node.fake.writes().is_empty());
    node.stop().await.unwrap();
}

#[tokio::test]
async fn new_connections_see_a_replaced_certificate() {
    let pki = Pki::new("cluster");
    let (node, first) = tls_node(&pki).await;
    let client = pki.tls(&pki.issue("client"));
    assert_eq!(server_certificate(addr(&node), &client).await, first.der);
    let second = pki.issue("server");
    assert_eq!(server_certificate(addr(&node), &client).await, second.der);
    let peer = tls_protocol(&client)
        .connect(&https(&node.url), &InFlight::unbounded())
        .unwrap();
    assert!(
        peer.fetch("g".into(), "k", later())
            .await
            .unwrap()
            .is_some()
    );
    node.stop().await.unwrap();
}

#[tokio::test]
async fn the_token_is_needed_for_writes_and_reads() {
    let token = PeerToken::new("s3cret").unwrap();
    let server_token = token.clone();
    let node = Node::start_configured(|b| b, |s: GrpcServer| s.token(server_token)).await;
    for protocol in [
        GrpcProtocol::new(),
        GrpcProtocol::new().token(PeerToken::new("wrong").unwrap()),
    ] {
        let peer = protocol.connect(&node.url, &InFlight::unbounded()).unwrap();
        for op in [WriteOp::Remove("k"), WriteOp::Flush] {
            let e = peer.write("g".into(), op, later()).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
        }
        let e = peer.fetch("g".into(), "k", later()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
        let e = peer.peek("g".into(), "k", later()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    }
    assert!(node.fake.writes().is_empty());
    let peer = GrpcProtocol::new()
        .token(token)
        .connect(&node.url, &InFlight::unbounded())
        .unwrap();
    peer.write("g".into(), WriteOp::Remove("k"), later())
        .await
        .unwrap();
    assert_eq!(node.fake.writes(), [Written::Remove("k".into())]);
    let value = peer.fetch("g".into(), "k", later()).await.unwrap().unwrap();
    assert_eq!(value.bytes().as_ref(), b"v:k");
    node.stop().await.unwrap();
}
