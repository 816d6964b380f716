//! Bodies that carry values, in both directions: read whole under a bound, and copied out of
//! the read buffers into an allocation of their own.

use std::fmt;

use bytes::{Buf, Bytes};
use galaxycache_universe::{Error, Reservation};
use http_body::Body;
use http_body_util::BodyExt;
use tokio::time::Instant;

pub use galaxycache_h2::BoxError;

/// Why a body could not be read whole by [`read_value`].
#[derive(Debug)]
pub enum ReadError {
    /// Longer than the bound (as claimed by its length, or as it arrived); the message says
    /// by how much.
    TooLarge(String),
    /// The connection failed while the body arrived.
    Failed(BoxError),
    /// The node's bytes in flight stayed at their bound until the deadline.
    Overloaded(Error),
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::TooLarge(why) => f.write_str(why),
            ReadError::Failed(e) => write!(f, "the body could not be read: {e}"),
            ReadError::Overloaded(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for ReadError {}

/// The whole of `body` in one allocation of exactly its length (never a slice of hyper's
/// read buffer, which a cached value would keep alive whole, behind the byte budget's
/// back), unless it is longer than `limit` bytes: refused from its claimed length before
/// reading, or as soon as more than `limit` bytes have arrived.
///
/// Every byte is reserved against `reservation` before it is allocated: a claimed length
/// at once, else the buffer's growth as frames arrive. Waiting for bytes ends at
/// `deadline`. On any error the buffer is freed at once; the reservation is the caller's,
/// released when it drops it.
pub async fn read_value<B>(
    body: B,
    limit: usize,
    reservation: &mut Reservation,
    deadline: Instant,
) -> Result<Bytes, ReadError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let too_large =
        |n: u64| ReadError::TooLarge(format!("body of {n} bytes exceeds the limit of {limit}"));
    let claimed = body.size_hint().lower();
    let claimed = usize::try_from(claimed)
        .ok()
        .filter(|&n| n <= limit)
        .ok_or_else(|| too_large(claimed))?;
    let mut buffer = Buffer::new(reservation, deadline);
    buffer.grow_to(claimed).await?;
    let mut body = std::pin::pin!(body);
    loop {
        // Not `while let`: its scrutinee (which may hold the body's error type, not
        // necessarily `Send`) would live across the awaits below.
        let Some(frame) = body.frame().await else {
            break;
        };
        let frame = frame.map_err(|e| ReadError::Failed(e.into()))?;
        let Ok(mut data) = frame.into_data() else {
            continue; // trailers
        };
        let len = buffer.bytes.len().saturating_add(data.remaining());
        if len > limit {
            return Err(ReadError::TooLarge(format!(
                "body exceeds the limit of {limit} bytes"
            )));
        }
        if len > buffer.bytes.capacity() {
            // Grown like a `Vec` (doubling, so frames are copied a bounded number of
            // times), but never past the limit.
            let doubled = buffer.bytes.capacity().saturating_mul(2);
            buffer.grow_to(len.max(doubled).min(limit)).await?;
        }
        while data.has_remaining() {
            let chunk = data.chunk();
            buffer.bytes.extend_from_slice(chunk);
            let n = chunk.len();
            data.advance(n);
        }
    }
    let mut bytes = buffer.bytes;
    bytes.shrink_to_fit();
    Ok(Bytes::from(bytes))
}

/// A value's buffer and the reservation that pays for its capacity.
struct Buffer<'a> {
    bytes: Vec<u8>,
    reservation: &'a mut Reservation,
    deadline: Instant,
}

impl<'a> Buffer<'a> {
    fn new(reservation: &'a mut Reservation, deadline: Instant) -> Self {
        Buffer {
            bytes: Vec::new(),
            reservation,
            deadline,
        }
    }

    /// Reserve, then allocate, a capacity of `capacity` bytes.
    async fn grow_to(&mut self, capacity: usize) -> Result<(), ReadError> {
        let more = capacity.saturating_sub(self.bytes.capacity());
        if more == 0 {
            return Ok(());
        }
        self.reservation
            .grow(more as u64, self.deadline)
            .await
            .map_err(ReadError::Overloaded)?;
        self.bytes
            .reserve_exact(capacity.saturating_sub(self.bytes.len()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use galaxycache_universe::InFlight;
    use http_body::Frame;
    use http_body_util::Full;

    use super::*;

    /// A body of `n` two-byte frames that claims no length.
    struct Chunks(usize);

    impl Body for Chunks {
        type Data = Bytes;
        type Error = Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
            let more = self.0 > 0;
            self.0 = self.0.saturating_sub(1);
            Poll::Ready(more.then(|| Ok(Frame::data(Bytes::from_static(b"ab")))))
        }
    }

    fn soon() -> Instant {
        Instant::now() + std::time::Duration::from_secs(5)
    }

    async fn read<B>(body: B, limit: usize) -> Result<Bytes, ReadError>
    where
        B: Body,
        B::Error: Into<BoxError>,
    {
        let mut reservation = InFlight::unbounded().empty();
        read_value(body, limit, &mut reservation, soon()).await
    }

    #[tokio::test]
    async fn bodies_are_bounded_by_claim_and_by_count() {
        let full = Full::new(Bytes::from_static(b"hello"));
        assert_eq!(read(full.clone(), 5).await.unwrap(), "hello");
        let e = read(full, 4).await.unwrap_err();
        assert!(
            matches!(&e, ReadError::TooLarge(m) if m.contains("5 bytes")),
            "{e:?}"
        );
        // No claimed length: cut as the bytes arrive.
        assert_eq!(read(Chunks(3), 6).await.unwrap(), "ababab");
        let e = read(Chunks(3), 5).await.unwrap_err();
        assert!(matches!(e, ReadError::TooLarge(_)), "{e:?}");
    }

    #[tokio::test]
    async fn a_value_holds_exactly_its_length() {
        let read = read(Chunks(1000), 1 << 20).await.unwrap();
        assert_eq!(read.len(), 2000);
        // `Bytes` from a `Vec` keeps its allocation; a shrunk one is exactly its length.
        let vec: Vec<u8> = read.into();
        assert_eq!(vec.capacity(), 2000);
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_are_reserved_before_they_are_allocated() {
        let bound = InFlight::new(64 * 1024);
        let mut reservation = bound.empty();
        let value = read_value(Chunks(1000), 1 << 20, &mut reservation, soon())
            .await
            .unwrap();
        assert_eq!(value.len(), 2000);
        assert!(
            reservation.bytes() >= 2000,
            "the buffer's capacity is paid for: {reservation:?}"
        );
        drop(reservation);
        assert_eq!(bound.reserved_bytes(), 0);

        // A claimed length that does not fit beside what is in flight waits, then fails as
        // overloaded; nothing was allocated for it.
        let _held = bound.reserve(60 * 1024, soon()).await.unwrap();
        let mut reservation = bound.empty();
        let claimed = Full::new(Bytes::from(vec![7; 8 * 1024]));
        let e = read_value(claimed, 1 << 20, &mut reservation, soon())
            .await
            .unwrap_err();
        assert!(matches!(e, ReadError::Overloaded(_)), "{e:?}");
        assert_eq!(reservation.bytes(), 0);
    }
}
