//! The HTTP/2 client under the generated gRPC client: the `h2` crate's, driven by the
//! fetching task itself.
//!
//! Neither tonic's `Channel` nor hyper's client: each moves a call through tasks of its
//! own (the channel's buffer worker; hyper's dispatch task, a task spawned per request to
//! await the response and another to send the request body), and each hop is a wake-up that
//! on a busy machine can cost more than the rest of a loopback call. Here the calling task
//! queues the request's headers and its whole (unary) body at once, so they leave in one
//! write, and reads the response itself; the connection's own task is the only other one.

use std::error::Error as StdError;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use galaxycache_universe::error_chain;
use galaxycache_universe::rustls::ClientConfig;
use galaxycache_universe::rustls::pki_types::ServerName;
use h2::client::SendRequest;
use h2::{RecvStream, SendStream};
use http::{Request, Response, Uri};
use http_body::{Body as HttpBody, Frame};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;
use tonic::Status;
use tonic::body::Body;

/// HTTP/2 windows and header bound: hyper's client defaults, which tonic's channel used.
const STREAM_WINDOW: u32 = 2 << 20;
const CONNECTION_WINDOW: u32 = 5 << 20;
const MAX_HEADER_LIST_BYTES: u32 = 16 << 10;

/// One peer's HTTP/2 connection, opened by the first call on the runtime that makes it and
/// opened again when it has failed or that runtime has ended. Cloned for each call.
///
/// A call that could not be made (refused, reset, closed, a failed handshake) is
/// UNAVAILABLE, the transport's error its message.
#[derive(Clone, Debug)]
pub(crate) struct Transport {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// `host:port` to connect to.
    address: String,
    /// The TLS of an `https://` peer and the name its certificate must have.
    tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
    connect_timeout: Duration,
    connection: ArcSwapOption<SendRequest<Bytes>>,
    /// Held while connecting, so concurrent calls share one new connection.
    connecting: Mutex<()>,
}

impl Transport {
    /// A transport to the peer at `origin` (its scheme and authority), over TLS with `tls`;
    /// opening a connection (TCP, TLS and the HTTP/2 preface) is bounded by
    /// `connect_timeout`. Connects nothing yet.
    pub(crate) fn new(
        origin: &Uri,
        tls: Option<ClientConfig>,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        let host = origin.host().ok_or("no host")?;
        let port = origin
            .port_u16()
            .unwrap_or(if tls.is_some() { 443 } else { 80 });
        // `[::1]` in a URL, `::1` to connect to and in a certificate.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let tls = match tls {
            None => None,
            Some(mut config) => {
                config.alpn_protocols = vec![b"h2".to_vec()];
                let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
                Some((Arc::new(config), name))
            }
        };
        Ok(Transport {
            shared: Arc::new(Shared {
                address: format!("{host}:{port}"),
                tls,
                connect_timeout,
                connection: ArcSwapOption::empty(),
                connecting: Mutex::new(()),
            }),
        })
    }

    /// Send `request` (a unary call: its body is ready at once) and wait for the response's
    /// head; its body is read as the caller polls it.
    async fn send(self, request: Request<Body>) -> Result<Response<ResponseBody>, Status> {
        let (head, body) = request.into_parts();
        let chunks = read_ready_body(body).await?;
        let mut sender = self.sender().await?;
        let (response, body) = sender
            .send_request(Request::from_parts(head, ()), chunks.is_empty())
            .map_err(unavailable)?;
        send_body(body, chunks)?;
        let response = response.await.map_err(unavailable)?;
        Ok(response.map(ResponseBody))
    }

    /// A connection that takes a new stream: the current one, or a new one when there is
    /// none or it has closed.
    async fn sender(&self) -> Result<SendRequest<Bytes>, Status> {
        if let Some(ready) = self.current().await {
            return Ok(ready);
        }
        let _connecting = self.shared.connecting.lock().await;
        if let Some(ready) = self.current().await {
            return Ok(ready);
        }
        let connect = tokio::time::timeout(self.shared.connect_timeout, self.connect());
        let sender = match connect.await {
            Ok(connected) => connected.map_err(|e| {
                Status::unavailable(format!("cannot connect to {}: {e}", self.shared.address))
            })?,
            Err(_) => {
                return Err(Status::unavailable(format!(
                    "cannot connect to {} within {:?}",
                    self.shared.address, self.shared.connect_timeout
                )));
            }
        };
        self.shared.connection.store(Some(Arc::new(sender.clone())));
        sender.ready().await.map_err(unavailable)
    }

    /// The current connection once it takes a new stream; `None` when there is none, or it
    /// has closed (its peer went away, or the runtime running it ended).
    async fn current(&self) -> Option<SendRequest<Bytes>> {
        let current = self.shared.connection.load_full()?;
        SendRequest::clone(&current).ready().await.ok()
    }

    /// Open a connection: TCP with `TCP_NODELAY`, TLS when configured, the HTTP/2
    /// handshake; its task spawned on the current runtime.
    async fn connect(&self) -> Result<SendRequest<Bytes>, Box<dyn StdError + Send + Sync>> {
        let tcp = TcpStream::connect(&self.shared.address).await?;
        tcp.set_nodelay(true)?;
        match &self.shared.tls {
            None => handshake(tcp).await,
            Some((config, name)) => {
                let connector = TlsConnector::from(Arc::clone(config));
                handshake(connector.connect(name.clone(), tcp).await?).await
            }
        }
    }
}

async fn handshake<T>(io: T) -> Result<SendRequest<Bytes>, Box<dyn StdError + Send + Sync>>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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

/// The chunks of a request body that is complete when first polled, as a unary call's is.
async fn read_ready_body(body: Body) -> Result<Vec<Bytes>, Status> {
    let mut body = pin!(body);
    let mut chunks = Vec::new();
    while let Some(frame) = poll_fn(|cx| body.as_mut().poll_frame(cx)).await {
        if let Ok(data) = frame?.into_data() {
            chunks.push(data);
        }
    }
    Ok(chunks)
}

/// Queue `chunks` on the stream, the last ending it. The stream buffers them until the
/// peer's window takes them, as much as a set's value is: that value is in memory already.
fn send_body(mut stream: SendStream<Bytes>, chunks: Vec<Bytes>) -> Result<(), Status> {
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.into_iter().enumerate() {
        stream.send_data(chunk, i == last).map_err(unavailable)?;
    }
    Ok(())
}

fn unavailable(e: h2::Error) -> Status {
    Status::unavailable(error_chain(&e))
}

/// A response's body: its data, each chunk's flow-control window given back as it is
/// read, then its trailers (where gRPC puts the call's status).
#[derive(Debug)]
pub(crate) struct ResponseBody(RecvStream);

impl HttpBody for ResponseBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let stream = &mut self.0;
        if !stream.is_end_stream() {
            match stream.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    let _ = stream.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(unavailable(e)))),
                Poll::Ready(None) => {}
            }
        }
        match stream.poll_trailers(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(trailers))) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Poll::Ready(Ok(None)) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(unavailable(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}

impl tower::Service<Request<Body>> for Transport {
    type Response = Response<ResponseBody>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Status>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        Box::pin(self.clone().send(request))
    }
}
