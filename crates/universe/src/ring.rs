//! The consistent-hash ring that maps keys to peers.

use std::fmt;
use std::sync::Arc;

/// Virtual nodes per peer unless configured otherwise (golang/groupcache's default).
pub const DEFAULT_REPLICAS: usize = 50;

/// A hash function from bytes to a point on the ring.
pub type RingHash = fn(&[u8]) -> u32;

/// CRC-32 (IEEE), the hash golang/groupcache and galaxycache use by default.
pub fn crc32_ieee(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Point {
    hash: u32,
    peer: u32,
}

/// A consistent-hash ring: a sorted vector of points, `replicas` per peer.
///
/// The point of replica `i` of peer `p` is the hash of the decimal `i` followed by the
/// bytes of `p`; a key belongs to the peer of the first point at or after the key's hash,
/// wrapping around. On equal points the lexicographically greatest peer id wins. With the
/// default hash (CRC-32 IEEE) this is exactly golang/groupcache's ring, so Go and Rust nodes
/// given the same peer list agree on every owner.
///
/// Lookups do not allocate.
#[derive(Clone)]
pub struct Ring {
    replicas: usize,
    hash: RingHash,
    peers: Vec<Arc<str>>,
    points: Vec<Point>,
}

impl fmt::Debug for Ring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ring")
            .field("replicas", &self.replicas)
            .field("peers", &self.peers)
            .field("points", &self.points.len())
            .finish()
    }
}

impl Ring {
    /// A ring over `peers` with `replicas` points each, hashed with CRC-32 (IEEE).
    ///
    /// Duplicate peer ids are kept once; the order of `peers` does not matter.
    pub fn new<I, S>(replicas: usize, peers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self::with_hash(replicas, crc32_ieee, peers)
    }

    /// A ring with a hash function of the caller's choosing, so a test can decide owners.
    pub fn with_hash<I, S>(replicas: usize, hash: RingHash, peers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut ids: Vec<Arc<str>> = peers.into_iter().map(|p| Arc::from(p.as_ref())).collect();
        ids.sort();
        ids.dedup();
        let mut points = Vec::with_capacity(ids.len() * replicas);
        let mut buf = Vec::new();
        for (index, id) in ids.iter().enumerate() {
            for replica in 0..replicas {
                buf.clear();
                buf.extend_from_slice(replica.to_string().as_bytes());
                buf.extend_from_slice(id.as_bytes());
                points.push(Point {
                    hash: hash(&buf),
                    peer: index as u32,
                });
            }
        }
        // Peers are sorted, so a greater index is a lexicographically greater id:
        // sorting by (hash, peer) and keeping the last of each run of equal hashes
        // lets the greatest id win a collision.
        points.sort_unstable_by_key(|p| (p.hash, p.peer));
        points.dedup_by(|later, earlier| {
            let same = later.hash == earlier.hash;
            if same {
                *earlier = *later;
            }
            same
        });
        Ring {
            replicas,
            hash,
            peers: ids,
            points,
        }
    }

    /// Index into [`Ring::peers`] of the owner of `key`, or `None` when the ring is empty.
    #[inline]
    pub fn owner_index(&self, key: &[u8]) -> Option<usize> {
        if self.points.is_empty() {
            return None;
        }
        let h = (self.hash)(key);
        let at = self.points.partition_point(|p| p.hash < h);
        let point = self.points.get(at).unwrap_or(&self.points[0]);
        Some(point.peer as usize)
    }

    /// The id of the peer that owns `key`, or `None` when the ring is empty.
    #[inline]
    pub fn owner(&self, key: &[u8]) -> Option<&str> {
        self.owner_index(key).map(|i| &*self.peers[i])
    }

    /// The peers on the ring, sorted and without duplicates.
    pub fn peers(&self) -> &[Arc<str>] {
        &self.peers
    }

    /// Each peer's share of the hash space, indexed like [`peers`](Self::peers): the
    /// fraction of keys it owns. The shares add up to 1 (0 for an empty ring).
    pub fn shares(&self) -> Vec<f64> {
        let mut shares = vec![0.0; self.peers.len()];
        let Some(last) = self.points.last() else {
            return shares;
        };
        let space = f64::from(u32::MAX) + 1.0;
        // The first point also owns the keys above the last one (wrapping around).
        let mut previous = i64::from(last.hash) - (1i64 << 32);
        for point in &self.points {
            let span = i64::from(point.hash) - previous;
            shares[point.peer as usize] += span as f64 / space;
            previous = i64::from(point.hash);
        }
        shares
    }

    /// Points per peer.
    pub fn replicas(&self) -> usize {
        self.replicas
    }

    /// True when the ring has no peers.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn shares_add_up_and_match_the_owners_of_many_keys() {
        let ring = Ring::new(50, ["a", "b", "c"]);
        let shares = ring.shares();
        assert!((shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let mut owned = [0usize; 3];
        for i in 0..100_000 {
            owned[ring.owner_index(format!("key-{i}").as_bytes()).unwrap()] += 1;
        }
        for (share, owned) in shares.iter().zip(owned) {
            let observed = owned as f64 / 100_000.0;
            assert!(
                (share - observed).abs() < 0.02,
                "share {share} vs {observed}"
            );
        }
        assert!(Ring::new(50, Vec::<String>::new()).shares().is_empty());
    }

    #[test]
    fn matches_golang_groupcache_vectors() {
        let text = include_str!("../tests/data/groupcache-ring.json");
        let cases: Vec<serde_json::Value> = serde_json::from_str(text).unwrap();
        assert!(cases.len() >= 10, "vector file lost its cases");
        let mut checked = 0;
        for case in cases {
            let replicas = case["replicas"].as_u64().unwrap() as usize;
            let peers: Vec<&str> = case["peers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap())
                .collect();
            let ring = Ring::new(replicas, &peers);
            for (key, owner) in case["owners"].as_object().unwrap() {
                assert_eq!(
                    ring.owner(key.as_bytes()),
                    Some(owner.as_str().unwrap()),
                    "key {key:?}, replicas {replicas}, peers {peers:?}"
                );
                checked += 1;
            }
        }
        assert!(checked > 4000, "only {checked} owners checked");
    }

    #[test]
    fn empty_ring_has_no_owner() {
        let ring = Ring::new(50, Vec::<String>::new());
        assert!(ring.is_empty());
        assert_eq!(ring.owner(b"k"), None);
    }

    #[test]
    fn three_peers_are_balanced() {
        let ring = Ring::new(DEFAULT_REPLICAS, ["http://a:1", "http://b:1", "http://c:1"]);
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for i in 0..100_000 {
            *counts
                .entry(ring.owner(format!("key-{i}").as_bytes()).unwrap())
                .or_default() += 1;
        }
        assert_eq!(counts.len(), 3);
        for (peer, n) in counts {
            assert!(n < 40_000, "{peer} owns {n} of 100000 keys");
        }
    }

    #[test]
    fn collisions_go_to_the_greatest_peer_id() {
        // Every point collides: the greatest id must own every key.
        let ring = Ring::with_hash(3, |_| 7, ["b", "c", "a"]);
        assert_eq!(ring.owner(b"x"), Some("c"));
        assert_eq!(ring.points.len(), 1);
    }

    #[test]
    fn order_and_duplicates_of_peers_do_not_matter() {
        let a = Ring::new(50, ["p1", "p2", "p3"]);
        let b = Ring::new(50, ["p3", "p1", "p2", "p1"]);
        for i in 0..1000 {
            let key = format!("{i}");
            assert_eq!(a.owner(key.as_bytes()), b.owner(key.as_bytes()));
        }
    }

    proptest! {
        #[test]
        fn removing_a_peer_moves_only_its_keys(
            peers in proptest::collection::btree_set("[a-z]{1,8}", 2..8),
            keys in proptest::collection::vec(".{0,16}", 1..200),
            victim in any::<prop::sample::Index>(),
        ) {
            let peers: Vec<String> = peers.into_iter().collect();
            let gone = &peers[victim.index(peers.len())];
            let before = Ring::new(20, &peers);
            let after = Ring::new(20, peers.iter().filter(|p| *p != gone));
            for key in &keys {
                let old = before.owner(key.as_bytes()).unwrap();
                let new = after.owner(key.as_bytes()).unwrap();
                if old != gone {
                    prop_assert_eq!(old, new);
                } else {
                    prop_assert_ne!(new, gone.as_str());
                }
            }
        }
    }
}
