//! The HTTP peer protocol's path parser, in both dialects: routing by prefix (the
//! galaxycache dialect's peek prefix included), splitting into galaxy and key, strict
//! percent-decoding (the groupcache dialect keeps `+`), and the client's escaping.
//!
//! Input: the first byte picks the dialect (even: galaxycache, odd: groupcache); the rest,
//! when UTF-8, is a request path (as the server sees it) and, in turn, a segment for the
//! client to escape.
//!
//! Must hold: no panic; what the server decodes, the client encodes back into a path
//! that the server routes to the same route and decodes to the same galaxy and key (in
//! the groupcache dialect, a space comes back as `+`, the quirk it keeps); escaping
//! writes printable ASCII only, and decoding undoes it.
#![no_main]

use galaxycache_http::Dialect;
use galaxycache_http::fuzzing::{decode_target, encode_segment, percent_decode, route};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let dialect = if first % 2 == 0 {
        Dialect::Galaxycache
    } else {
        Dialect::Groupcache
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    server_path_round_trips(dialect, text);
    client_segment_round_trips(dialect, text);
});

/// `path` as the server routes and decodes it; when it names a galaxy (and a key), the
/// client's encoding of them decodes to the same.
fn server_path_round_trips(dialect: Dialect, path: &str) {
    // The text as it follows a prefix, and as a whole path.
    check_target(dialect, path, false);
    let Some((peek, rest)) = route(dialect, path) else {
        assert!(
            !path.starts_with(dialect.path_prefix()),
            "{dialect:?}: {path:?} has the prefix but was not routed"
        );
        return;
    };
    assert!(peek || path.starts_with(dialect.path_prefix()));
    assert!(!peek || dialect.peek_prefix().is_some_and(|p| path.starts_with(p)));
    check_target(dialect, rest, peek);
}

fn check_target(dialect: Dialect, rest: &str, peek: bool) {
    let Ok((galaxy, key)) = decode_target(dialect, rest) else {
        return;
    };
    // The client builds `{prefix}{galaxy}/{key}` (or `{prefix}{galaxy}` for a flush).
    let prefix = match (peek, dialect.peek_prefix()) {
        (true, Some(p)) => p,
        _ => dialect.path_prefix(),
    };
    let mut path = String::from(prefix);
    path.push_str(&encode_segment(dialect, &galaxy));
    if let Some(key) = &key {
        path.push('/');
        path.push_str(&encode_segment(dialect, key));
    }
    let (peek_again, rest_again) =
        route(dialect, &path).unwrap_or_else(|| panic!("{dialect:?}: {path:?} not routed"));
    assert_eq!(peek_again, peek, "{dialect:?}: {path:?}");
    let (galaxy_again, key_again) = decode_target(dialect, rest_again)
        .unwrap_or_else(|e| panic!("{dialect:?}: {path:?} does not decode: {e}"));
    let quirk = |s: &str| match dialect {
        Dialect::Groupcache => s.replace(' ', "+"),
        _ => s.to_owned(),
    };
    assert_eq!(
        galaxy_again,
        quirk(&galaxy),
        "{dialect:?}: {rest:?} -> {path:?}"
    );
    assert_eq!(
        key_again.as_deref().map(str::to_owned),
        key.as_deref().map(quirk),
        "{dialect:?}: {rest:?} -> {path:?}"
    );
}

/// Any string the client escapes is printable ASCII and decodes back to itself (a space
/// as `+` in the groupcache dialect).
fn client_segment_round_trips(dialect: Dialect, segment: &str) {
    let encoded = encode_segment(dialect, segment);
    assert!(
        encoded.bytes().all(|b| b.is_ascii_graphic()),
        "{dialect:?}: {segment:?} -> {encoded:?}"
    );
    assert!(!encoded.contains('/'), "{dialect:?}: {encoded:?} splits");
    let decoded = percent_decode(&encoded)
        .unwrap_or_else(|e| panic!("{dialect:?}: {encoded:?} does not decode: {e}"));
    let want = match dialect {
        Dialect::Groupcache => segment.replace(' ', "+"),
        _ => segment.to_owned(),
    };
    assert_eq!(decoded, want, "{dialect:?}: {segment:?} -> {encoded:?}");
}
