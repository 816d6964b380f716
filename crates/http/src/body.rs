//! Bodies that carry values, in both directions: read whole under a bound, and copied out of
//! the read buffers into an allocation of their own.

use bytes::{Buf, BufMut, Bytes};
use http_body::Body;
use http_body_util::{BodyExt, Collected, LengthLimitError, Limited};

/// A boxed error of a body that failed to arrive.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a body could not be read whole.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// Longer than the bound (as claimed by its length, or as it arrived); the message says
    /// by how much.
    TooLarge(String),
    /// The connection failed while the body arrived.
    Failed(BoxError),
}

/// The whole of `body`, unless it is longer than `limit` bytes: refused from its claimed
/// length before reading, or as soon as more than `limit` bytes have arrived.
pub(crate) async fn read_limited<B>(body: B, limit: usize) -> Result<Collected<B::Data>, ReadError>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let claimed = body.size_hint().lower();
    if claimed > limit as u64 {
        return Err(ReadError::TooLarge(format!(
            "body of {claimed} bytes exceeds the limit of {limit}"
        )));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected),
        Err(e) if e.is::<LengthLimitError>() => Err(ReadError::TooLarge(format!(
            "body exceeds the limit of {limit} bytes"
        ))),
        Err(e) => Err(ReadError::Failed(e)),
    }
}

/// The body's bytes in one allocation of exactly their length, never a slice of hyper's
/// read buffer (which a cached value would keep alive whole, behind the byte budget's back).
pub(crate) fn copy_out<D: Buf>(body: Collected<D>) -> Bytes {
    let body = body.aggregate();
    let mut out = Vec::with_capacity(body.remaining());
    out.put(body);
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::pin::Pin;
    use std::task::{Context, Poll};

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

    #[tokio::test]
    async fn bodies_are_bounded_by_claim_and_by_count() {
        let full = Full::new(Bytes::from_static(b"hello"));
        let read = read_limited(full.clone(), 5).await.unwrap();
        assert_eq!(copy_out(read), "hello");
        let e = read_limited(full, 4).await.unwrap_err();
        assert!(
            matches!(&e, ReadError::TooLarge(m) if m.contains("5 bytes")),
            "{e:?}"
        );
        // No claimed length: cut as the bytes arrive.
        assert_eq!(
            copy_out(read_limited(Chunks(3), 6).await.unwrap()),
            "ababab"
        );
        let e = read_limited(Chunks(3), 5).await.unwrap_err();
        assert!(matches!(e, ReadError::TooLarge(_)), "{e:?}");
    }
}
