//! A cached value and its expiry.

use bytes::Bytes;
use std::time::SystemTime;

/// A value as it is cached and as it travels between peers: the bytes and, when the value
/// expires, the wall-clock instant at which it stops being served.
///
/// Cloning is cheap: the bytes are reference-counted, never copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    bytes: Bytes,
    expires_at: Option<SystemTime>,
}

impl Value {
    /// A value that does not expire.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Value {
            bytes: bytes.into(),
            expires_at: None,
        }
    }

    /// A value that is served until `expires_at` and never after.
    pub fn expiring(bytes: impl Into<Bytes>, expires_at: SystemTime) -> Self {
        Value {
            bytes: bytes.into(),
            expires_at: Some(expires_at),
        }
    }

    /// The same bytes with another expiry.
    pub fn with_expiry(self, expires_at: Option<SystemTime>) -> Self {
        Value {
            bytes: self.bytes,
            expires_at,
        }
    }

    /// The bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The bytes, by value.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// When the value stops being served, if ever.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at
    }

    /// True when the value has expired at `now`. A value expiring exactly at `now` has.
    #[inline]
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        matches!(self.expires_at, Some(at) if at <= now)
    }

    /// Length of the bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when the bytes are empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn expiry_is_inclusive_of_the_instant() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let v = Value::expiring("x", t);
        assert!(!v.is_expired_at(t - Duration::from_nanos(1)));
        assert!(v.is_expired_at(t));
        assert!(!Value::new("x").is_expired_at(t));
    }
}
