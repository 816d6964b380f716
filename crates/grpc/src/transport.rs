//! The generated gRPC client's `tower::Service`: the HTTP/2 client both peer protocols
//! share ([`galaxycache_h2::Transport`]), with tonic's bodies in and each call's status out.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};

use bytes::Bytes;
use galaxycache_h2::ResponseBody;
use http::{Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tonic::Status;
use tonic::body::Body;

/// One peer's connection. Cloned for each call.
///
/// A call that could not be made (refused, reset, closed, a failed handshake) is
/// UNAVAILABLE, the transport's error its message.
#[derive(Clone, Debug)]
pub(crate) struct Transport(galaxycache_h2::Transport);

impl Transport {
    /// Calls over `transport`.
    pub(crate) fn new(transport: galaxycache_h2::Transport) -> Self {
        Transport(transport)
    }

    /// Send `request` (a unary call: its body is ready at once) and wait for the response's
    /// head; its body is read as the caller polls it.
    async fn send(self, request: Request<Body>) -> Result<Response<CallBody>, Status> {
        let (head, body) = request.into_parts();
        let chunks = read_ready_body(body).await?;
        let response = self
            .0
            .send(Request::from_parts(head, ()), chunks)
            .await
            .map_err(|e| Status::unavailable(e.message()))?;
        Ok(response.map(CallBody))
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

/// A response's body, its failures as tonic reads them: UNAVAILABLE, the connection
/// failed.
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
            .map_err(|e| Status::unavailable(e.message()))
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
