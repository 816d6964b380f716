//! The two URL dialects: path prefixes, and how a galaxy name and a key become path segments
//! and back.

use std::borrow::Cow;

/// Longest request path (with query) that `http::Uri` and hyper's server accept; hyper
/// answers a longer one with `414`.
pub(crate) const MAX_PATH_LEN: usize = 65_534;

/// Which HTTP peer protocol a node speaks. Every node of a ring speaks the same one, client
/// and server alike.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// galaxycache's own: `GET {peer}/_galaxycache/{galaxy}/{key}`, segments path-escaped
    /// (as Go's `url.PathEscape`), raw value bytes, the value's instants in headers (each
    /// only when the value has it), and a 404 that says whether the key or the galaxy is
    /// missing:
    ///
    /// | instant | headers |
    /// | --- | --- |
    /// | expiry | [`EXPIRES_MS_HEADER`](crate::EXPIRES_MS_HEADER) and `Expires` |
    /// | refresh | [`REFRESH_MS_HEADER`](crate::REFRESH_MS_HEADER) |
    /// | stale limit | [`STALE_MS_HEADER`](crate::STALE_MS_HEADER) |
    ///
    /// A cached miss (a [`Value::absent`](galaxycache_universe::Value::absent)) is answered
    /// as a missing key, `404` with [`GALAXY_STATUS_HEADER`](crate::GALAXY_STATUS_HEADER)
    /// `Found`, plus its expiry in `X-Galaxycache-Expires-Ms` and `Expires`: the asking node
    /// caches the miss until then. A `404` of a missing key without an expiry (from an older
    /// peer) is a plain miss. A stale answer (a value past its expiry, within its stale
    /// limit) is a `200` like any other, whose expiry has passed.
    ///
    /// It has a peek, as galaxycache (Go) v1.3+: `GET {peer}/_galaxycache_peek/{galaxy}/{key}`
    /// ([`Dialect::peek_prefix`], segments escaped as for a `GET`) answers from the owner's
    /// caches and never loads. Its answers are a `GET`'s: a `200` with the value and its
    /// instants, a cached miss as above, `404` `Found` for a key that is not cached (the
    /// asking node reads it as a miss), `404` `Not Found` for no such galaxy, `409` for
    /// another version. Go's galaxycache (v1.4) writes `Expires` with fractions of a second
    /// (`Mon, 02 Jan 2006 15:04:05.999999999 GMT`, trailing zeros trimmed); clients read
    /// them to the nanosecond when [`EXPIRES_MS_HEADER`](crate::EXPIRES_MS_HEADER) is absent.
    ///
    /// It has the write verbs too, each answered `204 No Content` once applied:
    ///
    /// | request | write |
    /// | --- | --- |
    /// | `DELETE {peer}/_galaxycache/{galaxy}/{key}` | remove the key |
    /// | `PUT {peer}/_galaxycache/{galaxy}/{key}`, the value as the body, its instants in the headers a `200` carries | set the key's value |
    /// | `DELETE {peer}/_galaxycache/{galaxy}` (no key segment) | flush the galaxy |
    ///
    /// Every request of this dialect names the galaxy's version in
    /// [`VERSION_HEADER`](crate::VERSION_HEADER) unless it is 0; a server whose galaxy has
    /// another version answers `409 Conflict`.
    #[default]
    Galaxycache,
    /// golang/groupcache's `HTTPPool`: `GET {peer}/_groupcache/{group}/{key}`, segments
    /// escaped as Go's `url.QueryEscape` (a space becomes `+`), a protobuf `GetResponse`
    /// body. A Rust node speaking it can share a ring with Go groupcache nodes.
    ///
    /// A value's expiry travels in headers as in the galaxycache dialect (Go ignores them);
    /// its refresh and stale instants do not, and a cached miss is answered as any missing
    /// key, without an expiry.
    ///
    /// The quirk this keeps: the server percent-decodes the path without turning `+` back
    /// into a space (that is what Go's HTTP server does to a path), so a key containing a
    /// space reaches the owner with `+` in its place, and keys `"a b"` and `"a+b"` are the
    /// same key there.
    ///
    /// Go's groupcache has no write verbs, no peek and no versions, so neither has this
    /// dialect: its server answers `PUT` and `DELETE` with `405` and has no peek path (a
    /// `404`), its client's [`write`](galaxycache_universe::RemoteFetcher::write) and
    /// [`peek`](galaxycache_universe::RemoteFetcher::peek) are
    /// [`Unsupported`](galaxycache_universe::ErrorKind::Unsupported) without sending, and a
    /// fetch of a galaxy version other than 0 is a
    /// [`Config`](galaxycache_universe::ErrorKind::Config) error.
    Groupcache,
}

impl Dialect {
    /// The path prefix this dialect's fetches and writes start with: `/_galaxycache/` or
    /// `/_groupcache/`.
    pub fn path_prefix(self) -> &'static str {
        match self {
            Dialect::Galaxycache => "/_galaxycache/",
            Dialect::Groupcache => "/_groupcache/",
        }
    }

    /// The path prefix this dialect's peeks start with: `/_galaxycache_peek/` (galaxycache's
    /// since its Go v1.3), or `None` in the groupcache dialect, which has no peek.
    pub fn peek_prefix(self) -> Option<&'static str> {
        match self {
            Dialect::Galaxycache => Some("/_galaxycache_peek/"),
            Dialect::Groupcache => None,
        }
    }

    /// The path prefix of this dialect's batch fetches: `/_galaxycache_batch/`, or `None`
    /// in the groupcache dialect, which has none.
    pub(crate) fn batch_prefix(self) -> Option<&'static str> {
        match self {
            Dialect::Galaxycache => Some(crate::batch::BATCH_PREFIX),
            Dialect::Groupcache => None,
        }
    }

    /// Which of this dialect's routes `path` is under, and the rest of it after the route's
    /// prefix; `None` outside them all.
    pub(crate) fn route(self, path: &str) -> Option<(Route, &str)> {
        if let Some(rest) = path.strip_prefix(self.path_prefix()) {
            return Some((Route::Main, rest));
        }
        if let Some(rest) = self.batch_prefix().and_then(|p| path.strip_prefix(p)) {
            return Some((Route::Batch, rest));
        }
        let rest = path.strip_prefix(self.peek_prefix()?)?;
        Some((Route::Peek, rest))
    }

    /// Append `segment`, escaped as this dialect wants, to `out`.
    pub(crate) fn encode_into(self, segment: &str, out: &mut String) {
        match self {
            Dialect::Galaxycache => escape(segment, out, is_path_segment_safe, false),
            Dialect::Groupcache => escape(segment, out, is_unreserved, true),
        }
    }

    /// The galaxy name and, when the path has a key segment, the key of the path that
    /// follows [`Dialect::path_prefix`]: `{galaxy}/{key}`, or `{galaxy}` alone (a flush).
    /// `{galaxy}/` has a key segment, an empty one.
    pub(crate) fn decode_target(self, rest: &str) -> Result<Target<'_>, &'static str> {
        match self {
            // Split first, so a `/` in either segment (sent as %2F) survives.
            Dialect::Galaxycache => match rest.split_once('/') {
                Some((galaxy, key)) => Ok((percent_decode(galaxy)?, Some(percent_decode(key)?))),
                None => Ok((percent_decode(rest)?, None)),
            },
            // Go's server decodes the whole path, then splits at the first `/`.
            Dialect::Groupcache => match percent_decode(rest)? {
                Cow::Borrowed(s) => match s.split_once('/') {
                    Some((g, k)) => Ok((Cow::Borrowed(g), Some(Cow::Borrowed(k)))),
                    None => Ok((Cow::Borrowed(s), None)),
                },
                Cow::Owned(galaxy) => match galaxy.split_once('/') {
                    Some((g, k)) => Ok((Cow::Owned(g.to_owned()), Some(Cow::Owned(k.to_owned())))),
                    None => Ok((Cow::Owned(galaxy), None)),
                },
            },
        }
    }
}

/// The paths of a dialect, by prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// Under [`Dialect::path_prefix`]: fetches and writes.
    Main,
    /// Under [`Dialect::peek_prefix`]: peeks.
    Peek,
    /// Under [`Dialect::batch_prefix`]: batch fetches.
    Batch,
}

/// What a request path names: a galaxy, and a key unless the path has no key segment.
pub(crate) type Target<'a> = (Cow<'a, str>, Option<Cow<'a, str>>);

/// Why a path that needs a key segment is refused.
pub(crate) const MISSING_KEY: &str = "the path must be {prefix}{galaxy}/{key}";

/// RFC 3986 unreserved characters: what Go's `url.QueryEscape` leaves alone.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
}

/// What Go's `url.PathEscape` leaves alone.
fn is_path_segment_safe(b: u8) -> bool {
    is_unreserved(b) || matches!(b, b'$' | b'&' | b'+' | b':' | b'=' | b'@')
}

/// The uppercase hex digit of `nibble` (below 16).
fn hex_digit(nibble: u8) -> char {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    // A nibble is below 16, the table's length: the index cannot be out of bounds.
    #[allow(clippy::indexing_slicing)]
    char::from(HEX[usize::from(nibble & 0xf)])
}

fn escape(segment: &str, out: &mut String, safe: fn(u8) -> bool, space_as_plus: bool) {
    out.reserve(segment.len());
    for &b in segment.as_bytes() {
        if safe(b) {
            out.push(char::from(b));
        } else if space_as_plus && b == b' ' {
            out.push('+');
        } else {
            out.push('%');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0xf));
        }
    }
}

/// Strict percent-decoding: every `%` must start a two-hex-digit escape, the result must be
/// UTF-8, and `+` stays `+`. Borrows when there is nothing to decode.
pub(crate) fn percent_decode(s: &str) -> Result<Cow<'_, str>, &'static str> {
    if !s.contains('%') {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hi = bytes.next().and_then(hex_value);
        let lo = bytes.next().and_then(hex_value);
        let (Some(hi), Some(lo)) = (hi, lo) else {
            return Err("malformed percent-encoding");
        };
        out.push(hi << 4 | lo);
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| "percent-decoded path is not UTF-8")
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(d: Dialect, s: &str) -> String {
        let mut out = String::new();
        d.encode_into(s, &mut out);
        out
    }

    #[test]
    fn galaxycache_escapes_as_go_path_escape() {
        // Expected strings are what Go's url.PathEscape returns for these inputs.
        assert_eq!(enc(Dialect::Galaxycache, "a b/c"), "a%20b%2Fc");
        assert_eq!(enc(Dialect::Galaxycache, "$&+:=@-_.~"), "$&+:=@-_.~");
        assert_eq!(enc(Dialect::Galaxycache, "?#%;,"), "%3F%23%25%3B%2C");
        assert_eq!(enc(Dialect::Galaxycache, "é"), "%C3%A9");
    }

    #[test]
    fn groupcache_escapes_as_go_query_escape() {
        // Expected strings are what Go's url.QueryEscape returns for these inputs.
        assert_eq!(enc(Dialect::Groupcache, "a b+c/d"), "a+b%2Bc%2Fd");
        assert_eq!(enc(Dialect::Groupcache, "$&:=@-_.~"), "%24%26%3A%3D%40-_.~");
        assert_eq!(enc(Dialect::Groupcache, "é"), "%C3%A9");
    }

    #[test]
    fn decoding_is_strict_and_keeps_plus() {
        assert_eq!(percent_decode("a+b%20c%2F").unwrap(), "a+b c/");
        assert!(matches!(
            percent_decode("plain").unwrap(),
            Cow::Borrowed("plain")
        ));
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%4").is_err());
        assert!(percent_decode("%").is_err());
        assert!(
            percent_decode("%ff").is_err(),
            "invalid UTF-8 must be refused"
        );
    }

    #[test]
    fn paths_split_per_dialect() {
        let (g, k) = Dialect::Galaxycache.decode_target("g%2Fx/a%2Fb/c").unwrap();
        assert_eq!((&*g, k.as_deref()), ("g/x", Some("a/b/c")));
        let (g, k) = Dialect::Groupcache.decode_target("g/a%2Fb+c").unwrap();
        assert_eq!((&*g, k.as_deref()), ("g", Some("a/b+c")));
        // As Go: a `/` in a group name would split there.
        let (g, k) = Dialect::Groupcache.decode_target("g%2Fx/k").unwrap();
        assert_eq!((&*g, k.as_deref()), ("g", Some("x/k")));
    }

    #[test]
    fn a_path_without_a_key_segment_names_the_galaxy_alone() {
        for d in [Dialect::Galaxycache, Dialect::Groupcache] {
            let (g, k) = d.decode_target("only-galaxy").unwrap();
            assert_eq!((&*g, k), ("only-galaxy", None), "{d:?}");
            let (g, k) = d.decode_target("g%20x").unwrap();
            assert_eq!((&*g, k), ("g x", None), "{d:?}");
            let (g, k) = d.decode_target("g/").unwrap();
            assert_eq!((&*g, k.as_deref()), ("g", Some("")), "{d:?}: an empty key");
            assert!(d.decode_target("%zz").is_err(), "{d:?}");
        }
        let (g, k) = Dialect::Galaxycache.decode_target("g%2Fx").unwrap();
        assert_eq!(
            (&*g, k),
            ("g/x", None),
            "an escaped `/` is part of the name"
        );
    }

    #[test]
    fn paths_are_routed_by_prefix() {
        let gc = Dialect::Galaxycache;
        assert_eq!(gc.route("/_galaxycache/g/k"), Some((Route::Main, "g/k")));
        assert_eq!(
            gc.route("/_galaxycache_peek/g/k"),
            Some((Route::Peek, "g/k"))
        );
        assert_eq!(gc.route("/_galaxycache_peek"), None);
        assert_eq!(gc.route("/_groupcache/g/k"), None);
        let go = Dialect::Groupcache;
        assert_eq!(go.route("/_groupcache/g/k"), Some((Route::Main, "g/k")));
        assert_eq!(go.route("/_galaxycache_peek/g/k"), None, "no peek");
    }

    #[test]
    fn every_byte_round_trips() {
        let all: String = (1..=0x7f_u8).map(char::from).chain("üñ✓".chars()).collect();
        for d in [Dialect::Galaxycache, Dialect::Groupcache] {
            let encoded = enc(d, &all);
            assert!(encoded.bytes().all(|b| b.is_ascii_graphic()));
            let decoded = percent_decode(&encoded).unwrap();
            let expected = match d {
                Dialect::Galaxycache => all.clone(),
                Dialect::Groupcache => all.replace(' ', "+"),
            };
            assert_eq!(decoded, expected);
        }
    }
}
