//! The peers' metrics, published through the `metrics` facade from a snapshot (see
//! [`Universe::publish_metrics`](crate::Universe::publish_metrics)).

use metrics::{counter, gauge};

use crate::{CircuitState, PeerStatus};

/// Set the gauges and counters of every peer on the ring (this node too, always up, with
/// no fetches), labelled `peer` (its URL):
/// `galaxycache_peer_up`, `galaxycache_peer_circuit_open`, `galaxycache_peer_ring_share`,
/// `galaxycache_peer_queued_fetches`, `galaxycache_peer_fetch_requests_total` and
/// `galaxycache_peer_fetched_keys_total`.
pub(crate) fn publish_peers(peers: &[PeerStatus]) {
    for p in peers {
        let peer = p.url.clone();
        let up = p.state == CircuitState::Up;
        gauge!("galaxycache_peer_up", "peer" => peer.clone()).set(f64::from(u8::from(up)));
        gauge!("galaxycache_peer_circuit_open", "peer" => peer.clone())
            .set(f64::from(u8::from(!up)));
        gauge!("galaxycache_peer_ring_share", "peer" => peer.clone()).set(p.share);
        gauge!("galaxycache_peer_queued_fetches", "peer" => peer.clone())
            .set(p.queued_fetches as f64);
        counter!("galaxycache_peer_fetch_requests_total", "peer" => peer.clone())
            .absolute(p.fetch_requests);
        counter!("galaxycache_peer_fetched_keys_total", "peer" => peer).absolute(p.fetched_keys);
    }
}
