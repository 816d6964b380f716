//! A response's body, read by the task that sent the request.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use galaxycache_universe::{BoxFuture, Error, Reservation};
use h2::RecvStream;
use http::Response;
use http::header::CONTENT_LENGTH;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

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
    reserve: Option<Reserve>,
}

/// Every chunk held against the node's bound on bytes in flight before it is handed out.
struct Reserve {
    deadline: Instant,
    /// What the chunks handed out so far hold: `None` while it grows for the next one, and
    /// once a grow has failed (which released it, and ended the body).
    held: Option<Reservation>,
    /// The reservation growing by a chunk's length, then the chunk to hand out.
    growing: Option<BoxFuture<'static, (Reservation, Result<Bytes, Error>)>>,
}

impl ResponseBody {
    /// The response with its body read from `stream`.
    pub(crate) fn of(response: Response<RecvStream>) -> Response<ResponseBody> {
        let remaining = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        response.map(|stream| ResponseBody {
            stream,
            remaining,
            reserve: None,
        })
    }

    /// The same body, each chunk held against `reservation` before it is handed out (and
    /// before its window is given back, so a peer sends no more than a window's worth
    /// while the chunk waits), waiting for room until `deadline`. For a reader that keeps
    /// what it reads out of a bound's sight until the end, as gRPC's decoder buffers a
    /// message whole: what it buffers is then what is held. The bytes are released when the
    /// body is dropped; no room by the deadline is the reservation's
    /// [`Overloaded`](galaxycache_universe::ErrorKind::Overloaded) error, which releases them
    /// at once and ends the body.
    pub fn reserving(mut self, reservation: Reservation, deadline: Instant) -> Self {
        self.reserve = Some(Reserve {
            deadline,
            held: Some(reservation),
            growing: None,
        });
        self
    }
}

impl Reserve {
    /// Grow the reservation by `chunk`'s length, then hand `chunk` out.
    fn grow_for(&mut self, chunk: Bytes) {
        let Some(mut reservation) = self.held.take() else {
            return;
        };
        let deadline = self.deadline;
        self.growing = Some(Box::pin(async move {
            let grown = reservation.grow(chunk.len() as u64, deadline).await;
            (reservation, grown.map(|()| chunk))
        }));
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
        let ResponseBody {
            stream,
            remaining,
            reserve,
        } = self.get_mut();
        loop {
            if let Some(r) = reserve.as_mut() {
                if let Some(growing) = &mut r.growing {
                    let (reservation, grown) = ready!(growing.as_mut().poll(cx));
                    r.growing = None;
                    return Poll::Ready(Some(grown.map(|chunk| {
                        r.held = Some(reservation);
                        hand_out(stream, remaining, chunk)
                    })));
                }
                if r.held.is_none() {
                    return Poll::Ready(None);
                }
            }
            if stream.is_end_stream() {
                break;
            }
            match ready!(stream.poll_data(cx)) {
                Some(Ok(chunk)) => match reserve.as_mut() {
                    None => return Poll::Ready(Some(Ok(hand_out(stream, remaining, chunk)))),
                    Some(r) => r.grow_for(chunk),
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(unavailable(&e)))),
                None => break,
            }
        }
        match ready!(stream.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(unavailable(&e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        let growing = self.reserve.as_ref().is_some_and(|r| r.growing.is_some());
        !growing && self.stream.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.remaining
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

impl fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = self.reserve.as_ref().and_then(|r| r.held.as_ref());
        f.debug_struct("ResponseBody")
            .field("remaining", &self.remaining)
            .field("held", &held)
            .finish_non_exhaustive()
    }
}
