//! The universe of a galaxycache node: the consistent-hash [`Ring`], the peer set, the
//! galaxies by name, and the two traits every peer protocol implements:
//! [`FetchProtocol`]/[`RemoteFetcher`] on the client side and [`GalaxyHandler`] (reached
//! through [`Universe::serve_get`]) on the server side.
//!
//! The peer list comes from a [`Discovery`] source that [`Universe::follow`] applies:
//! [`StaticPeers`], [`FilePeers`], [`DnsPeers`] or the user's own. Every peer URL is
//! normalised by [`normalize_peer_url`] before it reaches the ring.
//!
//! The [`InProcessNetwork`] connects universes of one process, so a whole cluster runs in
//! one test, with faults injected at will.

mod auth;
mod batch;
mod discovery;
mod error;
mod expiry;
mod fetch;
mod handler;
mod health;
mod inflight;
mod inprocess;
mod metrics;
mod peer_url;
mod ring;
mod sanitize;
mod sync;
#[cfg(feature = "tls")]
mod tls;
mod trace;
mod universe;
mod value;

pub use auth::{PeerAuth, PeerToken};
pub use batch::{MAX_BATCH_KEYS, MAX_BATCHES_IN_FLIGHT, gathered};
#[cfg(feature = "dns")]
pub use discovery::{DEFAULT_DNS_INTERVAL, DnsPeers};
pub use discovery::{DEFAULT_FILE_INTERVAL, Discovery, FilePeers, Reload, StaticPeers};
pub use error::{Error, ErrorKind, error_chain};
pub use expiry::{fmt_http_date, latest_instant, saturating_instant};
pub use fetch::{
    BoxFuture, DEFAULT_MAX_RESPONSE_BYTES, FetchProtocol, FetchResult, GalaxyId, RemoteFetcher,
    WriteOp, fetch_outcome,
};
pub use handler::GalaxyHandler;
pub use health::{CircuitState, HealthPolicy};
pub use inflight::{InFlight, MIN_IN_FLIGHT_BYTES, Reservation};
pub use inprocess::{Fault, InProcessNetwork};
pub use peer_url::normalize_peer_url;
pub use ring::{DEFAULT_REPLICAS, Ring, RingHash, crc32_ieee};
/// The rustls this crate's TLS is built on.
#[cfg(feature = "tls")]
pub use rustls;
pub use sanitize::{MAX_MESSAGE_LEN, sanitize_message};
#[cfg(shuttle)]
#[doc(hidden)]
pub use sync::explore;
#[cfg(feature = "tls")]
pub use tls::{DEFAULT_TLS_RELOAD_INTERVAL, TlsAcceptor, TlsConfig, has_verified_peer};
pub use trace::{TRACEPARENT, TraceContext, current_trace, with_trace};
pub use universe::{
    DEFAULT_HANDOFF_WARMUP, DEFAULT_MAX_CONCURRENT_SERVES, DEFAULT_MAX_KEY_LEN, Owner, PeerStatus,
    Universe, UniverseBuilder,
};
pub use value::Value;
