//! A response's body, read by the task that sent the request.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use galaxycache_universe::Error;
use h2::RecvStream;
use http::Response;
use http::header::CONTENT_LENGTH;
use http_body::{Body, Frame, SizeHint};

use crate::transport::unavailable;

/// A response's body: its data, each chunk's flow-control window given back to the peer as
/// the chunk is handed out, then its trailers (where gRPC puts a call's status).
///
/// Its size hint is what is left of the length the head claims (`content-length`), so a
/// reader can refuse a body too long before reading it. A failure of the connection is an
/// [`Unavailable`](galaxycache_universe::ErrorKind::Unavailable) error.
pub struct ResponseBody {
    stream: RecvStream,
    /// What is left of the length the head claims, when it claims one.
    remaining: Option<u64>,
}

impl ResponseBody {
    /// The response with its body read from `stream`.
    pub(crate) fn of(response: Response<RecvStream>) -> Response<ResponseBody> {
        let remaining = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        response.map(|stream| ResponseBody { stream, remaining })
    }
}

/// Give `chunk`'s window back to the peer and count it off what is left.
fn hand_out(stream: &mut RecvStream, remaining: &mut Option<u64>, chunk: Bytes) -> Frame<Bytes> {
    let len = chunk.len();
    let _ = stream.flow_control().release_capacity(len);
    if let Some(left) = remaining {
        *left = left.saturating_sub(len as u64);
    }
    Frame::data(chunk)
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let ResponseBody { stream, remaining } = self.get_mut();
        if !stream.is_end_stream() {
            match ready!(stream.poll_data(cx)) {
                Some(Ok(chunk)) => {
                    return Poll::Ready(Some(Ok(hand_out(stream, remaining, chunk))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(unavailable(&e)))),
                None => {}
            }
        }
        match ready!(stream.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(unavailable(&e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.stream.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("remaining", &self.remaining)
            .finish_non_exhaustive()
    }
}
