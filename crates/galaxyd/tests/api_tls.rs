//! The client API over TLS (`--api-tls-cert`, `--api-tls-key`): HTTPS with a certificate
//! clients check, no client certificate asked for; plain HTTP on that port is no request.

mod common;

#[path = "../../../tests/support/pki.rs"]
mod pki;

use std::sync::Arc;

use galaxycache_universe::rustls::pki_types::pem::PemObject as _;
use galaxycache_universe::rustls::pki_types::{CertificateDer, ServerName};
use galaxycache_universe::rustls::{ClientConfig, RootCertStore};
use galaxyd::{BackendSpec, GalaxyConfig, NodeConfig, PeerSecurity};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GET `path` over a TLS connection that trusts `ca` only and shows no certificate; the
/// whole answer.
async fn https_get(addr: std::net::SocketAddr, ca: &std::path::Path, path: &str) -> String {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await.ok();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn the_client_api_speaks_https_when_given_a_certificate() {
    let pki = pki::Pki::new("api");
    let issued = pki.issue("api");
    let node = common::node(|local| NodeConfig {
        security: PeerSecurity {
            api_tls: Some([issued.cert.clone(), issued.key.clone()]),
            ..PeerSecurity::default()
        },
        galaxies: vec![GalaxyConfig::new("g", BackendSpec::Synthetic)],
        ..local
    })
    .await;
    let answer = https_get(node.api_addr(), &pki.ca, "/v1/galaxies/g/keys/k").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // Plain HTTP on the HTTPS port: the handshake fails, and nothing is answered.
    let mut plain = TcpStream::connect(node.api_addr()).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    plain.read_to_end(&mut answer).await.ok();
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");
    node.shutdown().await.unwrap();
}
