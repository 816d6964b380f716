//! One peer's HTTP/2 connection, and the requests its callers send on it themselves.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use galaxycache_universe::rustls::ClientConfig;
use galaxycache_universe::rustls::pki_types::ServerName;
use galaxycache_universe::{Error, ErrorKind, error_chain};
use h2::client::SendRequest;
use http::{Request, Response, Uri};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;

use crate::body::ResponseBody;
use crate::connector::{BoxError, Connector, Io};

/// HTTP/2 windows and header bound: hyper's client defaults, which both protocols used
/// before this client.
const STREAM_WINDOW: u32 = 2 << 20;
const CONNECTION_WINDOW: u32 = 5 << 20;
const MAX_HEADER_LIST_BYTES: u32 = 16 << 10;

/// One peer's HTTP/2 connection, opened by the first request on the runtime that makes
/// it, and opened again when it has failed or that runtime has ended. Cheap to clone: the
/// clones share the connection.
///
/// A request is sent by the task that calls [`send`](Self::send): the headers and the
/// whole body are queued at once, and the response is read as that task polls it. The
/// connection's own task (spawned on the runtime that opened it) is the only other one.
///
/// Every failure to get an answer (refused, reset, closed, a failed TLS or HTTP/2
/// handshake, a connect slower than the timeout) is [`ErrorKind::Unavailable`], the
/// transport's error its message.
#[derive(Clone, Debug)]
pub struct Transport {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// `scheme://authority/`: what a connector is asked for.
    origin: Uri,
    /// The host to connect to, without the brackets of an IPv6 literal.
    host: String,
    port: u16,
    /// The TLS of an `https://` peer and the name its certificate must have.
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    /// Streams of the application's own instead of TCP sockets.
    connector: Option<Connector>,
    connect_timeout: Duration,
    connection: ArcSwapOption<SendRequest<Bytes>>,
    /// Held while connecting, so concurrent requests share one new connection.
    connecting: Mutex<()>,
}

impl Transport {
    /// A transport to the peer at `origin` (its scheme and authority; a path is ignored):
    /// over TLS with `tls` (which is then told to offer ALPN `h2` alone), over the streams
    /// of `connector` or else TCP sockets (with `TCP_NODELAY`). Opening a connection
    /// (stream, TLS and the HTTP/2 preface) is bounded by `connect_timeout`. Connects
    /// nothing yet; refuses an origin without a host, or whose host cannot be a
    /// certificate's name.
    pub fn new(
        origin: &Uri,
        tls: Option<ClientConfig>,
        connector: Option<Connector>,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        let authority = origin.authority().ok_or("no host")?;
        let port = authority
            .port_u16()
            .unwrap_or(if tls.is_some() { 443 } else { 80 });
        // `[::1]` in a URL, `::1` to connect to and in a certificate.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let tls = match tls {
            None => None,
            Some(mut config) => {
                config.alpn_protocols = vec![b"h2".to_vec()];
                let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
                Some((Arc::new(config), name))
            }
        };
        let mut parts = http::uri::Parts::default();
        parts.scheme = origin.scheme().cloned();
        parts.authority = Some(authority.clone());
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
        let origin = Uri::from_parts(parts).map_err(|e| e.to_string())?;
        Ok(Transport {
            shared: Arc::new(Shared {
                origin,
                host: host.to_owned(),
                port,
                tls,
                connector,
                connect_timeout,
                connection: ArcSwapOption::empty(),
                connecting: Mutex::new(()),
            }),
        })
    }

    /// Send `request` with `body` (its chunks, sent in order; none for an empty body) and
    /// wait for the response's head; its body is read as the caller polls it. The request's
    /// URI must carry the scheme and authority (HTTP/2 sends them as pseudo-headers).
    ///
    /// The chunks are queued on the stream at once, as much as the peer's window does not
    /// take yet too: they are in memory already.
    pub async fn send<B>(
        &self,
        request: Request<()>,
        body: B,
    ) -> Result<Response<ResponseBody>, Error>
    where
        B: IntoIterator<Item = Bytes>,
    {
        let mut sender = self.sender().await?;
        let response = {
            let mut chunks = body.into_iter().peekable();
            let (response, mut stream) = sender
                .send_request(request, chunks.peek().is_none())
                .map_err(|e| unavailable(&e))?;
            while let Some(chunk) = chunks.next() {
                let last = chunks.peek().is_none();
                stream.send_data(chunk, last).map_err(|e| unavailable(&e))?;
            }
            response
        };
        let response = response.await.map_err(|e| unavailable(&e))?;
        Ok(ResponseBody::of(response))
    }

    /// A connection that takes a new stream: the current one, or a new one when there is
    /// none or it has closed.
    async fn sender(&self) -> Result<SendRequest<Bytes>, Error> {
        if let Some(ready) = self.current().await {
            return Ok(ready);
        }
        let _connecting = self.shared.connecting.lock().await;
        if let Some(ready) = self.current().await {
            return Ok(ready);
        }
        let shared = &self.shared;
        let connect = tokio::time::timeout(shared.connect_timeout, self.connect());
        let sender = match connect.await {
            Ok(Ok(sender)) => sender,
            Ok(Err(e)) => return Err(self.cannot_connect(&error_chain(&*e))),
            Err(_) => {
                let within = format!("within {:?}", shared.connect_timeout);
                return Err(self.cannot_connect(&within));
            }
        };
        shared.connection.store(Some(Arc::new(sender.clone())));
        sender.ready().await.map_err(|e| unavailable(&e))
    }

    /// The current connection once it takes a new stream; `None` when there is none, or it
    /// has closed (its peer went away, or the runtime running it ended).
    async fn current(&self) -> Option<SendRequest<Bytes>> {
        let current = self.shared.connection.load_full()?;
        SendRequest::clone(&current).ready().await.ok()
    }

    /// Open a connection: a stream (the connector's, or TCP), TLS when configured, the
    /// HTTP/2 handshake; its task spawned on the current runtime.
    async fn connect(&self) -> Result<SendRequest<Bytes>, BoxError> {
        let shared = &self.shared;
        match &shared.connector {
            Some(connector) => {
                let io = connector.connect(shared.origin.clone()).await?;
                self.secure(io).await
            }
            None => {
                let tcp = TcpStream::connect((shared.host.as_str(), shared.port)).await?;
                tcp.set_nodelay(true)?;
                self.secure(tcp).await
            }
        }
    }

    /// TLS over `io` when configured, then the HTTP/2 handshake.
    async fn secure(&self, io: impl Io + 'static) -> Result<SendRequest<Bytes>, BoxError> {
        match &self.shared.tls {
            None => handshake(io).await,
            Some((config, name)) => {
                let tls = TlsConnector::from(Arc::clone(config));
                handshake(tls.connect(name.clone(), io).await?).await
            }
        }
    }

    fn cannot_connect(&self, why: &str) -> Error {
        let Shared { host, port, .. } = &*self.shared;
        let message = format!("cannot connect to {host}:{port}: {why}");
        Error::new(ErrorKind::Unavailable, message)
    }
}

async fn handshake(io: impl Io + 'static) -> Result<SendRequest<Bytes>, BoxError> {
    let (sender, connection) = h2::client::Builder::new()
        .enable_push(false)
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST_BYTES)
        .handshake(io)
        .await?;
    // Ends when the connection does: closed by the peer, failed, or all senders dropped.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// A failure on an open connection: an unavailable peer.
pub(crate) fn unavailable(e: &(dyn StdError + 'static)) -> Error {
    Error::new(ErrorKind::Unavailable, error_chain(e))
}
