//! The galaxycache dialect's batch fetch: `POST /_galaxycache_batch/{galaxy}`, the keys in
//! the body, one framed answer per key in the response, in order.
//!
//! Every integer is big-endian. The request body is the keys, each a `u32` length and its
//! UTF-8 bytes. The response body (`200`) is one answer per key:
//!
//! | tag `u8` | then |
//! |---|---|
//! | `0`: a value | expiry, refresh and stale instants (each a `u64` of Unix milliseconds, `0` for none), a `u32` length and the bytes |
//! | `1`: no such key | its expiry as a cached miss (`u64` Unix milliseconds, `0` for none) |
//! | `2`: an error | the error's kind (`u8`, see [`kind_code`]), a `u16` length and its message (UTF-8, [sanitized](galaxycache_universe::sanitize_message)) |
//!
//! A failure of the whole batch (unknown galaxy, another version, too many keys, a body
//! that does not parse) is an error status, as a single fetch's.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Buf, BufMut, Bytes};
use galaxycache_universe::{Error, ErrorKind, FetchResult, Value, sanitize_message};

/// The batch path prefix.
pub(crate) const BATCH_PREFIX: &str = "/_galaxycache_batch/";
/// The batch bodies' content type.
pub(crate) const CONTENT_TYPE: &str = "application/x-galaxycache-batch";

const VALUE: u8 = 0;
const NOT_FOUND: u8 = 1;
const FAILED: u8 = 2;

/// `keys` as a request body.
pub(crate) fn encode_keys<K: AsRef<str>>(keys: &[K]) -> Bytes {
    let len = keys.iter().map(|k| 4usize.saturating_add(k.as_ref().len()));
    let mut out = Vec::with_capacity(len.fold(0, usize::saturating_add));
    for key in keys {
        let key = key.as_ref().as_bytes();
        out.put_u32(u32::try_from(key.len()).unwrap_or(u32::MAX));
        out.put_slice(key);
    }
    Bytes::from(out)
}

/// The keys of a request body, at most `max_keys` of them.
pub(crate) fn decode_keys(mut body: &[u8], max_keys: usize) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    while body.has_remaining() {
        if keys.len() >= max_keys {
            return Err(format!("more than {max_keys} keys in one batch"));
        }
        let len = body
            .try_get_u32()
            .map_err(|_| "a truncated key length".to_owned())?;
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        let (key, rest) = body
            .split_at_checked(len)
            .ok_or_else(|| format!("a key of {len} bytes, truncated"))?;
        let key = std::str::from_utf8(key).map_err(|_| "a key that is not UTF-8".to_owned())?;
        keys.push(key.to_owned());
        body = rest;
    }
    Ok(keys)
}

/// The response body answering `results`.
pub(crate) fn encode_results(results: &[FetchResult]) -> Bytes {
    let mut out = Vec::new();
    for result in results {
        match result {
            Ok(Some(value)) if value.is_absent() => {
                out.put_u8(NOT_FOUND);
                out.put_u64(unix_ms(value.expires_at()));
            }
            Ok(Some(value)) => {
                out.put_u8(VALUE);
                out.put_u64(unix_ms(value.expires_at()));
                out.put_u64(unix_ms(value.refresh_at()));
                out.put_u64(unix_ms(value.stale_until()));
                let bytes = value.bytes();
                out.put_u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
                out.put_slice(bytes);
            }
            Ok(None) => {
                out.put_u8(NOT_FOUND);
                out.put_u64(0);
            }
            Err(e) => {
                out.put_u8(FAILED);
                out.put_u8(kind_code(e.kind()));
                let message = sanitize_message(e.message());
                out.put_u16(u16::try_from(message.len()).unwrap_or(u16::MAX));
                out.put_slice(message.as_bytes());
            }
        }
    }
    Bytes::from(out)
}

/// The answers of a response body to a batch of `keys` keys: exactly that many. Each
/// value's bytes are copied out of `body`, to an allocation of their own.
pub(crate) fn decode_results(mut body: &[u8], keys: usize) -> Result<Vec<FetchResult>, String> {
    let truncated = |what: &str| format!("a batch answer truncated in {what}");
    let mut results = Vec::with_capacity(keys);
    while results.len() < keys {
        let tag = body.try_get_u8().map_err(|_| truncated("a tag"))?;
        let result = match tag {
            VALUE => {
                let mut instants = [None; 3];
                for instant in &mut instants {
                    *instant = at_unix_ms(body.try_get_u64().map_err(|_| truncated("an instant"))?);
                }
                let len = body.try_get_u32().map_err(|_| truncated("a length"))?;
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                let (bytes, rest) = body
                    .split_at_checked(len)
                    .ok_or_else(|| truncated("a value"))?;
                body = rest;
                let [expires_at, refresh_at, stale_until] = instants;
                let value = Value::new(Bytes::copy_from_slice(bytes))
                    .with_expiry(expires_at)
                    .with_refresh_at(refresh_at)
                    .with_stale_until(stale_until);
                Ok(Some(value))
            }
            NOT_FOUND => {
                let expires = body.try_get_u64().map_err(|_| truncated("an expiry"))?;
                Ok(at_unix_ms(expires).map(Value::absent))
            }
            FAILED => {
                let kind = kind_of(body.try_get_u8().map_err(|_| truncated("an error"))?);
                let len = usize::from(body.try_get_u16().map_err(|_| truncated("an error"))?);
                let (message, rest) = body
                    .split_at_checked(len)
                    .ok_or_else(|| truncated("an error"))?;
                body = rest;
                let message = sanitize_message(&String::from_utf8_lossy(message));
                Err(Error::new(kind, message))
            }
            other => return Err(format!("a batch answer with an unknown tag {other}")),
        };
        results.push(result);
    }
    if body.has_remaining() {
        return Err(format!("{} bytes after the last answer", body.remaining()));
    }
    Ok(results)
}

/// The wire code of an error kind. A key's own failures are the owner's load error, a
/// timeout, an overload or a refused key; other kinds travel as a protocol error.
pub(crate) fn kind_code(kind: ErrorKind) -> u8 {
    match kind {
        ErrorKind::Remote => 1,
        ErrorKind::Timeout => 2,
        ErrorKind::Overloaded => 3,
        ErrorKind::InvalidRequest => 4,
        ErrorKind::TooLarge => 5,
        ErrorKind::Unavailable => 6,
        _ => 0,
    }
}

fn kind_of(code: u8) -> ErrorKind {
    match code {
        1 => ErrorKind::Remote,
        2 => ErrorKind::Timeout,
        3 => ErrorKind::Overloaded,
        4 => ErrorKind::InvalidRequest,
        5 => ErrorKind::TooLarge,
        6 => ErrorKind::Unavailable,
        _ => ErrorKind::Protocol,
    }
}

fn unix_ms(at: Option<SystemTime>) -> u64 {
    at.and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
        })
}

fn at_unix_ms(ms: u64) -> Option<SystemTime> {
    (ms != 0).then(|| {
        UNIX_EPOCH
            .checked_add(Duration::from_millis(ms))
            .unwrap_or_else(galaxycache_universe::latest_instant)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_are_bounded() {
        let keys = ["a", "", "ключ", "with/slash"];
        let body = encode_keys(&keys);
        assert_eq!(decode_keys(&body, 4).unwrap(), keys);
        assert!(decode_keys(&body, 3).unwrap_err().contains("more than 3"));
        assert!(
            decode_keys(&body[..body.len() - 1], 4)
                .unwrap_err()
                .contains("truncated")
        );
        assert!(decode_keys(&[0, 0], 4).unwrap_err().contains("truncated"));
        assert!(
            decode_keys(&[0, 0, 0, 1, 0xff], 4)
                .unwrap_err()
                .contains("UTF-8")
        );
    }

    #[test]
    fn answers_round_trip_each_with_its_kind() {
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        let results: Vec<FetchResult> = vec![
            Ok(Some(
                Value::new("v")
                    .with_expiry(Some(at(100)))
                    .with_refresh_at(Some(at(50)))
                    .with_stale_until(Some(at(200))),
            )),
            Ok(Some(Value::new(""))),
            Ok(None),
            Ok(Some(Value::absent(at(300)))),
            Err(Error::new(ErrorKind::Remote, "db down\u{1b}[31m")),
            Err(Error::new(ErrorKind::Timeout, "late")),
        ];
        let body = encode_results(&results);
        let back = decode_results(&body, results.len()).unwrap();
        assert_eq!(
            back[0].as_ref().unwrap().as_ref().unwrap().bytes().as_ref(),
            b"v"
        );
        assert_eq!(
            back[0].as_ref().unwrap().as_ref().unwrap().expires_at(),
            Some(at(100))
        );
        assert_eq!(
            back[0].as_ref().unwrap().as_ref().unwrap().refresh_at(),
            Some(at(50))
        );
        assert_eq!(
            back[0].as_ref().unwrap().as_ref().unwrap().stale_until(),
            Some(at(200))
        );
        assert!(
            back[1]
                .as_ref()
                .unwrap()
                .as_ref()
                .unwrap()
                .bytes()
                .is_empty()
        );
        assert!(back[2].as_ref().unwrap().is_none());
        let absent = back[3].as_ref().unwrap().as_ref().unwrap();
        assert!(absent.is_absent() && absent.expires_at() == Some(at(300)));
        let e = back[4].as_ref().unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Remote);
        assert!(!e.message().chars().any(char::is_control), "{e}");
        assert_eq!(back[5].as_ref().unwrap_err().kind(), ErrorKind::Timeout);

        assert!(
            decode_results(&body, results.len() + 1)
                .unwrap_err()
                .contains("truncated")
        );
        assert!(
            decode_results(&body, 1)
                .unwrap_err()
                .contains("after the last")
        );
        assert!(decode_results(&[9], 1).unwrap_err().contains("unknown tag"));
    }
}
