//! mTLS between peers: the files a node's TLS comes from, the client configuration both
//! protocols connect with, and a server side that re-reads the files when they change.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::{Error, ErrorKind};

/// Default of [`TlsConfig::reload_interval`]: 5 s.
pub const DEFAULT_TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// How long a TLS handshake on a peer port may take before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a node's TLS comes from: a CA bundle, and this node's certificate chain and key,
/// each a PEM file.
///
/// A node presents its certificate to the peers it connects to and to the peers that
/// connect to it, and accepts a peer only when the peer's certificate is signed by the CA
/// (both ways: a server requires a client certificate). Peer URLs are `https://`; a peer's
/// certificate must name the host of its URL (a DNS name or an IP address).
///
/// Uses rustls with the ring provider, TLS 1.3.
#[derive(Clone, Debug)]
pub struct TlsConfig {
    /// None: a server that asks for no client certificate (see [`TlsConfig::server_only`]).
    ca: Option<PathBuf>,
    cert: PathBuf,
    key: PathBuf,
    reload_interval: Duration,
}

/// The three PEM files, read.
#[derive(PartialEq, Eq)]
struct Pem {
    ca: Vec<u8>,
    cert: Vec<u8>,
    key: Vec<u8>,
}

impl TlsConfig {
    /// TLS from the CA bundle at `ca` and this node's certificate chain at `cert` and
    /// private key at `key` (PEM files).
    pub fn new(ca: impl Into<PathBuf>, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsConfig {
            ca: Some(ca.into()),
            cert: cert.into(),
            key: key.into(),
            reload_interval: DEFAULT_TLS_RELOAD_INTERVAL,
        }
    }

    /// TLS for a server that asks its clients for no certificate (galaxyd's client API,
    /// say): this node's certificate chain at `cert` and key at `key`, re-read as
    /// [`new`](Self::new)'s are. It has no [`client_config`](Self::client_config).
    pub fn server_only(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsConfig {
            ca: None,
            cert: cert.into(),
            key: key.into(),
            reload_interval: DEFAULT_TLS_RELOAD_INTERVAL,
        }
    }

    /// How often, at most, a server re-reads the three files (on a new connection) to see
    /// whether they changed. Default: [`DEFAULT_TLS_RELOAD_INTERVAL`] (5 s); zero re-reads
    /// them on every connection.
    pub fn reload_interval(mut self, interval: Duration) -> Self {
        self.reload_interval = interval;
        self
    }

    /// The client side: trusts the CA, presents this node's certificate, offers `alpn`.
    /// An [`ErrorKind::Config`] error when a file cannot be read or parsed.
    ///
    /// The certificate and key are re-read as the server side's are (at most once per
    /// [`reload_interval`](Self::reload_interval), on a new connection), so a rotated
    /// certificate reaches new outgoing connections too. The CA is read once.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Result<ClientConfig, Error> {
        let Some(ca) = &self.ca else {
            return Err(self.error("a server-only TLS configuration has no client side"));
        };
        let pem = self.read()?;
        let roots = roots(&pem.ca, ca)?;
        let resolver = ClientCert {
            config: self.clone(),
            state: Mutex::new(LoadedKey {
                certified: self.certified_key(&pem)?,
                pem,
                checked: Instant::now(),
            }),
        };
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.error(e))?
            .with_root_certificates(roots)
            .with_client_cert_resolver(Arc::new(resolver));
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Ok(config)
    }

    /// This node's certificate chain and key, checked to match.
    fn certified_key(&self, pem: &Pem) -> Result<Arc<CertifiedKey>, Error> {
        let certs = certs(&pem.cert, &self.cert)?;
        let key = key(&pem.key, &self.key)?;
        CertifiedKey::from_der(certs, key, &provider())
            .map(Arc::new)
            .map_err(|e| self.error(e))
    }

    /// The server side, loaded now and re-read when the files change. An
    /// [`ErrorKind::Config`] error when a file cannot be read or parsed.
    pub fn acceptor(&self) -> Result<TlsAcceptor, Error> {
        let pem = self.read()?;
        let server = self.server_config(&pem)?;
        Ok(TlsAcceptor {
            config: self.clone(),
            state: Arc::new(Mutex::new(Loaded {
                pem,
                server,
                checked: Instant::now(),
            })),
        })
    }

    fn read(&self) -> Result<Pem, Error> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("TLS file {}: {e}", path.display()),
                )
            })
        };
        Ok(Pem {
            ca: self
                .ca
                .as_deref()
                .map(read)
                .transpose()?
                .unwrap_or_default(),
            cert: read(&self.cert)?,
            key: read(&self.key)?,
        })
    }

    /// A server configuration that requires a client certificate signed by the CA (when
    /// there is one) and offers HTTP/2 and HTTP/1.1.
    fn server_config(&self, pem: &Pem) -> Result<Arc<ServerConfig>, Error> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.error(e))?;
        let builder = match &self.ca {
            Some(ca) => {
                let roots = Arc::new(roots(&pem.ca, ca)?);
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .build()
                    .map_err(|e| self.error(e))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs(&pem.cert, &self.cert)?, key(&pem.key, &self.key)?)
            .map_err(|e| self.error(e))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    fn error(&self, e: impl std::fmt::Display) -> Error {
        Error::new(
            ErrorKind::Config,
            format!("TLS with certificate {}: {e}", self.cert.display()),
        )
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no certificate"));
    }
    Ok(certs)
}

fn key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| pem_error(path, e))
}

fn roots(pem: &[u8], path: &Path) -> Result<RootCertStore, Error> {
    let mut roots = RootCertStore::empty();
    for cert in certs(pem, path)? {
        roots.add(cert).map_err(|e| pem_error(path, e))?;
    }
    Ok(roots)
}

fn pem_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("TLS file {}: {e}", path.display()),
    )
}

/// The server side of a [`TlsConfig`]: completes handshakes on accepted connections with
/// the files' current content.
///
/// On a new connection, at most once per
/// [`reload_interval`](TlsConfig::reload_interval), it re-reads the three files; when they
/// changed, and make a valid configuration, new connections use it (connections already
/// open keep theirs). Files that do not load (half written, say) are logged at WARN and the
/// previous configuration stays. Cheap to clone: clones share what is loaded.
#[derive(Clone, Debug)]
pub struct TlsAcceptor {
    config: TlsConfig,
    state: Arc<Mutex<Loaded>>,
}

struct Loaded {
    pem: Pem,
    server: Arc<ServerConfig>,
    checked: Instant,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("checked", &self.checked)
            .finish_non_exhaustive()
    }
}

impl TlsAcceptor {
    /// Complete the server side of the handshake on `stream`: the peer must present a
    /// certificate signed by the CA. Fails (and the connection is to be dropped) otherwise,
    /// or when the handshake takes longer than 10 s.
    pub async fn accept(&self, stream: TcpStream) -> io::Result<TlsStream<TcpStream>> {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.current());
        tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timed out"))?
    }

    /// The configuration for a new connection, re-read first when the interval has passed.
    pub fn current(&self) -> Arc<ServerConfig> {
        let mut loaded = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.checked.elapsed() >= self.config.reload_interval {
            loaded.checked = Instant::now();
            self.reload(&mut loaded);
        }
        Arc::clone(&loaded.server)
    }

    fn reload(&self, loaded: &mut Loaded) {
        let fresh = match self.config.read() {
            Ok(pem) if pem == loaded.pem => return,
            Ok(pem) => pem,
            Err(e) => return tracing::warn!(error = %e, "TLS: keeping the loaded certificates"),
        };
        match self.config.server_config(&fresh) {
            Ok(server) => {
                tracing::info!(cert = %self.config.cert.display(), "TLS: certificates reloaded");
                loaded.server = server;
                loaded.pem = fresh;
            }
            Err(e) => tracing::warn!(error = %e, "TLS: keeping the loaded certificates"),
        }
    }
}

/// The client side's certificate: re-read, like the server side's, at most once per
/// reload interval when a handshake asks for it.
#[derive(Debug)]
struct ClientCert {
    config: TlsConfig,
    state: Mutex<LoadedKey>,
}

struct LoadedKey {
    pem: Pem,
    certified: Arc<CertifiedKey>,
    checked: Instant,
}

impl std::fmt::Debug for LoadedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedKey")
            .field("checked", &self.checked)
            .finish_non_exhaustive()
    }
}

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        let mut loaded = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if loaded.checked.elapsed() >= self.config.reload_interval {
            loaded.checked = Instant::now();
            let fresh = self
                .config
                .read()
                .and_then(|pem| Ok((self.config.certified_key(&pem)?, pem)));
            match fresh {
                Ok((_, pem)) if pem == loaded.pem => {}
                Ok((certified, pem)) => {
                    tracing::info!(
                        cert = %self.config.cert.display(),
                        "TLS: client certificate reloaded"
                    );
                    *loaded = LoadedKey {
                        pem,
                        certified,
                        checked: loaded.checked,
                    };
                }
                Err(e) => tracing::warn!(error = %e, "TLS: keeping the loaded client certificate"),
            }
        }
        Some(Arc::clone(&loaded.certified))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Whether the peer on `stream` presented a certificate that the handshake verified.
pub fn has_verified_peer(stream: &TlsStream<TcpStream>) -> bool {
    stream.get_ref().1.peer_certificates().is_some()
}
