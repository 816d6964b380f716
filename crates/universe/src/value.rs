//! A cached value, its instants, and the cached answer that a key does not exist.

use bytes::Bytes;
use std::time::{Duration, SystemTime};

/// A value as it is cached and as it travels between peers: the bytes and up to three
/// instants, all optional and all wall-clock:
///
/// - **refresh**: from here on the value is still served, and reloaded in the background;
/// - **expiry**: from here on the value is not served as fresh;
/// - **stale limit**: until here an expired value may still be served, but only when
///   reloading it fails or is slower than the galaxy's soft timeout.
///
/// A value may also be a *cached miss* ([`Value::absent`]): the data source said the key
/// does not exist, and that answer is kept until the expiry like any value.
///
/// Cloning is cheap: the bytes are reference-counted, never copied.
#[derive(Clone, PartialEq, Eq)]
pub struct Value {
    bytes: Bytes,
    // Instants as nanoseconds since the Unix epoch, 0 for none: a value is cloned on every
    // hit, and three `Option<SystemTime>`s would make it nearly twice as large.
    expires_at: Nanos,
    refresh_at: Nanos,
    stale_until: Nanos,
    flags: u32,
}

/// An optional wall-clock instant in nanoseconds since the Unix epoch; 0 is none. Instants
/// before the epoch become 1 ns after it; past the year 2554, `u64::MAX`.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
struct Nanos(u64);

impl Nanos {
    const NONE: Nanos = Nanos(0);

    fn from(t: Option<SystemTime>) -> Nanos {
        match t {
            None => Nanos::NONE,
            Some(t) => {
                let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
                Nanos(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX).max(1))
            }
        }
    }

    fn get(self) -> Option<SystemTime> {
        (self.0 != 0).then(|| SystemTime::UNIX_EPOCH + Duration::from_nanos(self.0))
    }

    fn is_some(self) -> bool {
        self.0 != 0
    }

    /// True when this instant is set and at or before `now`.
    #[inline]
    fn reached(self, now: SystemTime) -> bool {
        self.is_some() && self <= Nanos::from(Some(now))
    }
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Value")
            .field("bytes", &self.bytes)
            .field("expires_at", &self.expires_at())
            .field("refresh_at", &self.refresh_at())
            .field("stale_until", &self.stale_until())
            .field("absent", &self.is_absent())
            .field("stale", &self.is_stale())
            .finish()
    }
}

/// The key does not exist in the data source (a cached miss).
const ABSENT: u32 = 1;
/// This copy is served past its expiry.
const STALE: u32 = 2;

impl Value {
    /// A value that does not expire.
    pub fn new(bytes: impl Into<Bytes>) -> Self {
        Value {
            bytes: bytes.into(),
            expires_at: Nanos::NONE,
            refresh_at: Nanos::NONE,
            stale_until: Nanos::NONE,
            flags: 0,
        }
    }

    /// A value that is served until `expires_at` and never after.
    pub fn expiring(bytes: impl Into<Bytes>, expires_at: SystemTime) -> Self {
        Value::new(bytes).with_expiry(Some(expires_at))
    }

    /// The answer that the key does not exist, to be kept until `expires_at`: a cached
    /// miss. It has no bytes.
    pub fn absent(expires_at: SystemTime) -> Self {
        Value {
            flags: ABSENT,
            ..Value::expiring(Bytes::new(), expires_at)
        }
    }

    /// The same value with another expiry.
    pub fn with_expiry(mut self, expires_at: Option<SystemTime>) -> Self {
        self.expires_at = Nanos::from(expires_at);
        self
    }

    /// The same value with another refresh instant.
    pub fn with_refresh_at(mut self, refresh_at: Option<SystemTime>) -> Self {
        self.refresh_at = Nanos::from(refresh_at);
        self
    }

    /// The same value with another stale limit.
    pub fn with_stale_until(mut self, stale_until: Option<SystemTime>) -> Self {
        self.stale_until = Nanos::from(stale_until);
        self
    }

    /// The same value, marked as served past its expiry (see [`is_stale`](Self::is_stale)).
    pub fn into_stale(mut self) -> Self {
        self.flags |= STALE;
        self
    }

    /// The bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The bytes, by value.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// When the value stops being served as fresh, if ever.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.expires_at.get()
    }

    /// When the value should be reloaded in the background, if ever.
    pub fn refresh_at(&self) -> Option<SystemTime> {
        self.refresh_at.get()
    }

    /// Until when the value may be served past its expiry, should reloading fail.
    pub fn stale_until(&self) -> Option<SystemTime> {
        self.stale_until.get()
    }

    /// True for a cached miss ([`Value::absent`]).
    pub fn is_absent(&self) -> bool {
        self.flags & ABSENT != 0
    }

    /// True when this copy is served past its expiry, because reloading it failed or was
    /// slower than the soft timeout.
    pub fn is_stale(&self) -> bool {
        self.flags & STALE != 0
    }

    /// True when the value has expired at `now`. A value expiring exactly at `now` has.
    #[inline]
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.expires_at.reached(now)
    }

    /// True when the value is due for a background reload at `now`.
    #[inline]
    pub fn is_due_at(&self, now: SystemTime) -> bool {
        self.refresh_at.reached(now)
    }

    /// True when the value may still be served stale at `now` (expired, within its stale
    /// limit).
    pub fn is_servable_stale_at(&self, now: SystemTime) -> bool {
        self.stale_until.is_some() && !self.stale_until.reached(now)
    }

    /// True when the value has a refresh instant or an expiry: a cache that holds it need
    /// look at the clock only then.
    #[inline]
    pub fn has_instants(&self) -> bool {
        (self.expires_at.0 | self.refresh_at.0) != 0
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

    #[test]
    fn instants_saturate_and_keep_nanoseconds() {
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(Value::expiring("x", t).expires_at(), Some(t));
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::MAX / 2);
        let v = Value::expiring("x", far);
        assert!(v.expires_at().unwrap() < far, "saturated, not wrapped");
        assert!(!v.is_expired_at(t));
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert!(Value::expiring("x", before).is_expired_at(t));
        assert_eq!(std::mem::size_of::<Value>(), 64);
    }

    #[test]
    fn expiry_is_inclusive_of_the_instant() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let v = Value::expiring("x", t);
        assert!(!v.is_expired_at(t - Duration::from_nanos(1)));
        assert!(v.is_expired_at(t));
        assert!(!Value::new("x").is_expired_at(t));
    }

    #[test]
    fn instants_and_flags() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let s = Duration::from_secs(1);
        let v = Value::expiring("x", t)
            .with_refresh_at(Some(t - s))
            .with_stale_until(Some(t + s));
        assert!(v.has_instants() && !Value::new("x").has_instants());
        assert_eq!(v.refresh_at(), Some(t - s));
        assert!(!v.is_due_at(t - s - s) && v.is_due_at(t - s));
        assert!(v.is_servable_stale_at(t) && !v.is_servable_stale_at(t + s));
        assert!(!v.is_stale() && v.clone().into_stale().is_stale());
        let absent = Value::absent(t);
        assert!(absent.is_absent() && absent.is_empty() && !v.is_absent());
        assert_eq!(absent.expires_at(), Some(t));
    }
}
