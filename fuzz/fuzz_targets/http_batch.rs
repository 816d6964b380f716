//! The HTTP batch fetch's bodies (`POST /_galaxycache_batch/{galaxy}`): the keys a server
//! reads from a request, and the answers a client reads from a response.
//!
//! Input: the first byte is how many answers the client expects (0 to 255); the rest is
//! read both as a request body and as a response body.
//!
//! Must hold: no panic; keys that parse are at most the bound and write back to the same
//! bytes; answers that parse are exactly as many as expected, and write and read back to
//! as many answers of the same kinds.
#![no_main]

use galaxycache_http::fuzzing as h;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&expected, body)) = data.split_first() else {
        return;
    };
    if let Ok(keys) = h::decode_batch_keys(body, 256) {
        assert!(keys.len() <= 256);
        assert_eq!(h::encode_batch_keys(&keys).as_ref(), body);
    }
    let expected = usize::from(expected);
    if let Ok(results) = h::decode_batch_results(body, expected) {
        assert_eq!(results.len(), expected);
        let again = h::decode_batch_results(&h::encode_batch_results(&results), expected)
            .expect("what was read writes back readably");
        for (a, b) in results.iter().zip(&again) {
            match (a, b) {
                (Ok(Some(a)), Ok(Some(b))) => {
                    assert_eq!(a.bytes(), b.bytes());
                    assert_eq!(a.is_absent(), b.is_absent());
                }
                (Ok(None), Ok(None)) => {}
                (Err(a), Err(b)) => assert_eq!(a.kind(), b.kind()),
                other => panic!("kinds differ after a round trip: {other:?}"),
            }
        }
    }
});
