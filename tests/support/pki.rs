//! A certificate authority made in the test (rcgen), and certificates it signs, written to
//! PEM files in a temporary directory: what the mTLS tests of both protocols use.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::time::Duration;

use galaxycache_universe::TlsConfig;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};

/// A CA and the directory its files go to.
pub struct Pki {
    pub dir: tempfile::TempDir,
    issuer: Issuer<'static, KeyPair>,
    /// The CA bundle (PEM).
    pub ca: PathBuf,
}

/// A certificate chain and its key, as files.
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The certificate (DER), to compare with what a handshake shows.
    pub der: Vec<u8>,
}

impl Pki {
    /// A new CA, named `name`.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca = dir.path().join(format!("{name}-ca.pem"));
        std::fs::write(&ca, cert.pem()).unwrap();
        Pki {
            dir,
            issuer: Issuer::new(params, key),
            ca,
        }
    }

    /// A certificate for 127.0.0.1 and localhost, valid now, in files named after `name`.
    pub fn issue(&self, name: &str) -> Issued {
        self.issue_with(name, |_| {})
    }

    /// A certificate that expired in 2001.
    pub fn issue_expired(&self, name: &str) -> Issued {
        self.issue_with(name, |params| {
            params.not_before = date_time_ymd(2000, 1, 1);
            params.not_after = date_time_ymd(2001, 1, 1);
        })
    }

    fn issue_with(&self, name: &str, adjust: impl FnOnce(&mut CertificateParams)) -> Issued {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        adjust(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let issued = Issued {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}.key")),
            der: cert.der().to_vec(),
        };
        std::fs::write(&issued.cert, cert.pem()).unwrap();
        std::fs::write(&issued.key, key.serialize_pem()).unwrap();
        issued
    }

    /// TLS from this CA and `issued`, re-read on every new connection.
    pub fn tls(&self, issued: &Issued) -> TlsConfig {
        TlsConfig::new(&self.ca, &issued.cert, &issued.key).reload_interval(Duration::ZERO)
    }
}

/// `url` (`http://…`) as an `https://` URL.
pub fn https(url: &str) -> String {
    url.replacen("http://", "https://", 1)
}

/// Handshake with the server at `addr` as a client of `tls`: the certificate the server
/// showed (DER).
pub async fn server_certificate(addr: std::net::SocketAddr, tls: &TlsConfig) -> Vec<u8> {
    use galaxycache_universe::rustls::pki_types::ServerName;
    let config = tls.client_config(&[]).unwrap();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let stream = connector
        .connect(ServerName::from(addr.ip()), tcp)
        .await
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

/// Handshake with the server at `addr` trusting `ca` but presenting no certificate, send
/// `request` and read the answer: the server's refusal (TLS 1.3 reports it after the
/// client's side of the handshake, on the first read), or what it answered.
pub async fn without_client_certificate(
    addr: std::net::SocketAddr,
    ca: &std::path::Path,
    request: &[u8],
) -> std::io::Result<Vec<u8>> {
    use galaxycache_universe::rustls::pki_types::pem::PemObject as _;
    use galaxycache_universe::rustls::pki_types::{CertificateDer, ServerName};
    use galaxycache_universe::rustls::{ClientConfig, RootCertStore, crypto};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(crypto::ring::default_provider().into())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut stream = connector.connect(ServerName::from(addr.ip()), tcp).await?;
    stream.write_all(request).await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    Ok(answer)
}
