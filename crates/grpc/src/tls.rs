//! gRPC over mTLS: the connections a TLS server hands tonic.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use galaxycache_universe::{TlsAcceptor, has_verified_peer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

/// Handshaken connections waiting for the server to take them.
const ACCEPT_QUEUE: usize = 64;

/// What a connection's handshake said about the peer, in each request's extensions.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerCertificate {
    /// The peer presented a certificate the handshake verified against the CA.
    pub(crate) verified: bool,
}

/// A server connection after its TLS handshake.
#[derive(Debug)]
pub(crate) struct TlsConnection(TlsStream<TcpStream>);

impl Connected for TlsConnection {
    type ConnectInfo = PeerCertificate;

    fn connect_info(&self) -> PeerCertificate {
        PeerCertificate {
            verified: has_verified_peer(&self.0),
        }
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Accept connections on `listener` and complete each one's handshake in a task of its
/// own (a slow peer holds up nobody), sending the handshaken ones to the receiver. A
/// failed handshake drops its connection. Ends when the receiver is dropped; the caller
/// aborts the returned task once it stops serving.
pub(crate) fn accept_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
) -> (mpsc::Receiver<io::Result<TlsConnection>>, JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel(ACCEPT_QUEUE);
    let task = tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                // Out of file descriptors and the like: back off rather than spin.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            if sender.is_closed() {
                return;
            }
            let _ = stream.set_nodelay(true);
            let (acceptor, sender) = (acceptor.clone(), sender.clone());
            tokio::spawn(async move {
                if let Ok(stream) = acceptor.accept(stream).await {
                    let _ = sender.send(Ok(TlsConnection(stream))).await;
                }
            });
        }
    });
    (receiver, task)
}
