//! The generated gRPC client's `tower::Service`: the HTTP/2 client both peer protocols
//! share ([`galaxycache_h2::Transport`]), with tonic's bodies in and each call's status out.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use bytes::Bytes;
use galaxycache_h2::ResponseBody;
use galaxycache_universe::{ErrorKind, InFlight};
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;
use tonic::Status;
use tonic::body::Body;

/// Until when a call's answer may wait for room under the node's bound on bytes in
/// flight: the call's deadline, which the fetcher puts in each request's extensions. A
/// request without it waits for no room.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Deadline(pub(crate) Instant);

/// One peer's connection, its answers read against the node's bound on bytes in flight.
/// Cloned for each call.
///
/// A call that could not be made (refused, reset, closed, a failed handshake) is
/// UNAVAILABLE, the transport's error its message.
#[derive(Clone, Debug)]
pub(crate) struct Transport {
    transport: galaxycache_h2::Transport,
    in_flight: InFlight,
}

impl Transport {
    /// Calls over `transport`, answers read against `in_flight`.
    pub(crate) fn new(transport: galaxycache_h2::Transport, in_flight: &InFlight) -> Self {
        Transport {
            transport,
            in_flight: in_flight.clone(),
        }
    }

    /// Send `request` (a unary call: its body is ready at once) and wait for the response's
    /// head; its body is read as the caller polls it, each chunk held against the bound
    /// until tonic has decoded the message.
    async fn send(self, request: Request<Body>) -> Result<Response<CallBody>, Status> {
        let (head, body) = request.into_parts();
        let deadline = head
            .extensions
            .get::<Deadline>()
            .map_or_else(Instant::now, |d| d.0);
        let chunks = read_ready_body(body).await?;
        let response = self
            .transport
            .send(Request::from_parts(head, ()), chunks)
            .await
            .map_err(|e| Status::unavailable(e.message()))?;
        let reservation = self.in_flight.empty();
        Ok(response.map(|body| CallBody(body.reserving(reservation, deadline))))
    }
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

/// A response's body, its failures as tonic reads them: RESOURCE_EXHAUSTED when the node's
/// bound on bytes in flight had no room for it by the deadline, UNAVAILABLE when the
/// connection failed.
#[derive(Debug)]
pub(crate) struct CallBody(ResponseBody);

impl HttpBody for CallBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.0)
            .poll_frame(cx)
            .map_err(|e| match e.kind() {
                ErrorKind::Overloaded => Status::resource_exhausted(e.message()),
                _ => Status::unavailable(e.message()),
            })
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.0.size_hint()
    }
}

impl tower::Service<Request<Body>> for Transport {
    type Response = Response<CallBody>;
    type Error = Status;
    type Future = Pin<Box<dyn Future<Output = Result<Response<CallBody>, Status>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        Box::pin(self.clone().send(request))
    }
}
