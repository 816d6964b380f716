//! What the batch tests of every protocol check: a batch answers each key as a single
//! fetch of it does.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use galaxycache_universe::{ErrorKind, FetchResult, MAX_BATCH_KEYS, RemoteFetcher};
use tokio::time::Instant;

/// Fetch `keys` from `peer` in one batch and one by one: key for key, the batch's answer
/// is the single fetch's (a value's bytes and instants, a miss and its expiry, an error's
/// kind and message). Keys the test galaxies of both protocols answer alike are checked
/// for their kind of answer too, so each kind is known to be in the batch: `missing` (no
/// such key), `fail` (the owner's load failed), `all-instants` (a value with a refresh
/// instant), `absent` (a cached miss) and the empty key (refused on its own while the
/// others are served). The batch's answers, for the caller's own checks.
pub async fn batch_answers_as_singles(
    peer: &dyn RemoteFetcher,
    keys: &[&str],
    deadline: Instant,
) -> Vec<FetchResult> {
    let asked: Vec<Arc<str>> = keys.iter().map(|&k| Arc::from(k)).collect();
    let batch = peer.fetch_many("g".into(), &asked, deadline).await.unwrap();
    assert_eq!(batch.len(), keys.len());
    for (key, batched) in keys.iter().zip(&batch) {
        let single = peer.fetch("g".into(), key, deadline).await;
        match (batched, &single) {
            (Ok(Some(b)), Ok(Some(s))) if b.is_absent() => {
                // A single fetch's miss carries its expiry in whole milliseconds (gRPC
                // metadata); a batch's may be finer.
                assert!(s.is_absent(), "{key:?}");
                let ms = |v: &galaxycache_universe::Value| {
                    v.expires_at()
                        .map(|at| at.duration_since(UNIX_EPOCH).unwrap().as_millis())
                };
                assert_eq!(ms(b), ms(s), "{key:?}");
            }
            (Ok(Some(b)), Ok(Some(s))) => {
                assert_eq!(b.bytes(), s.bytes(), "{key:?}");
                assert!(!s.is_absent(), "{key:?}");
                let instants = |v: &galaxycache_universe::Value| {
                    (v.expires_at(), v.refresh_at(), v.stale_until())
                };
                assert_eq!(instants(b), instants(s), "{key:?}");
            }
            (Ok(None), Ok(None)) => {}
            // The owner's load error travels as the owner's callers see it; other errors
            // say where they came from in words of their own.
            (Err(b), Err(s)) if b.kind() == ErrorKind::Remote => {
                assert_eq!((b.kind(), b.message()), (s.kind(), s.message()), "{key:?}");
            }
            (Err(b), Err(s)) => assert_eq!(b.kind(), s.kind(), "{key:?}"),
            other => panic!("{key:?}: batched and single answers differ: {other:?}"),
        }
        match *key {
            "missing" => assert!(batched.as_ref().unwrap().is_none()),
            "fail" => assert_eq!(batched.as_ref().unwrap_err().kind(), ErrorKind::Remote),
            "all-instants" => {
                let value = batched.as_ref().unwrap().as_ref().unwrap();
                assert!(value.refresh_at().is_some());
            }
            "absent" => assert!(batched.as_ref().unwrap().as_ref().unwrap().is_absent()),
            "" => assert_eq!(
                batched.as_ref().unwrap_err().kind(),
                ErrorKind::InvalidRequest
            ),
            _ => {}
        }
    }
    batch
}

/// A batch for a galaxy `peer` does not have, and one of more keys than a server takes:
/// each fails whole, with its own kind.
pub async fn batches_refused_whole(peer: &dyn RemoteFetcher, deadline: Instant) {
    let one: Vec<Arc<str>> = vec![Arc::from("a")];
    let e = peer
        .fetch_many("nope".into(), &one, deadline)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownGalaxy, "{e}");
    let many: Vec<Arc<str>> = (0..=MAX_BATCH_KEYS)
        .map(|i| Arc::from(format!("k{i}")))
        .collect();
    let e = peer
        .fetch_many("g".into(), &many, deadline)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidRequest, "{e}");
}
