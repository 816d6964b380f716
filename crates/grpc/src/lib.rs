//! The gRPC peer protocol of galaxycache, on tonic and prost, wire-compatible with
//! galaxycache (Go): `package galaxycachepb`, service `GalaxyCache`, RPCs `GetFromPeer` and
//! `PeekPeer` (see `proto/galaxycache.proto`); and our own write RPCs `Remove`, `Set` and
//! `Flush`, which a Go peer answers UNIMPLEMENTED.
//!
//! - Client: [`GrpcProtocol`], the [`FetchProtocol`](galaxycache_universe::FetchProtocol) a
//!   universe uses to reach its peers.
//! - Server: [`service`] to add to an application's own tonic router, or [`GrpcServer`] to
//!   serve alone on a listener with graceful shutdown.
//!
//! # Versions
//!
//! Every request carries the version of the galaxy's values
//! ([`GalaxyId::version`](galaxycache_universe::GalaxyId)): field 100 of `GetRequest` and
//! `PeekRequest`, a field of its own in each write message. A request without it (from a Go
//! node) means version 0, the default.
//!
//! # Freshness
//!
//! A value travels with all its instants: `expiry` (which may have passed: a stale answer,
//! served because reloading failed), `refresh` and `stale_until`, fields 3, 101 and 102 of
//! `GetResponse`, 2, 101 and 102 of `PeekResponse`, and 4, 6 and 7 of `SetRequest`, each
//! absent when the value has none, each to the nanosecond. A Go peer ignores the new fields.
//!
//! # Errors on the wire
//!
//! A missing key is NOT_FOUND (an answer, not a failure; never the answer to a write, which
//! is OK once applied). A cached miss
//! ([`Value::absent`](galaxycache_universe::Value::absent)) is NOT_FOUND too, so a Go peer
//! sees a miss, with the metadata entry `galaxycache-expires-ms: <unix milliseconds>` (its
//! expiry, truncated): the client reads it as `Ok(Some(Value::absent(expiry)))`, and a
//! NOT_FOUND without the entry (from galaxycache in Go, or an older server) as `Ok(None)`;
//! a malformed entry is [`Protocol`](galaxycache_universe::ErrorKind::Protocol). An unknown
//! galaxy and a bad key (empty, too long, not UTF-8) are
//! INVALID_ARGUMENT, told apart by the metadata entry `galaxycache-galaxy-status`:
//! `not-found` for an unknown galaxy, `found` otherwise; a set whose expiry, refresh or
//! stale limit lies outside `google.protobuf.Timestamp`'s range is INVALID_ARGUMENT
//! (`found`) too, and applies nothing. Only with a peer
//! that sends no such entry (galaxycache in Go) does a client take an INVALID_ARGUMENT whose
//! message names a galaxy as an unknown galaxy. A galaxy at another version than the
//! request's answers FAILED_PRECONDITION, its message naming both versions; the client reads
//! it as [`VersionMismatch`](galaxycache_universe::ErrorKind::VersionMismatch), and the
//! asking node loads the key itself. A peer without the verb (galaxycache in Go, for the
//! write RPCs) answers UNIMPLEMENTED, read as
//! [`Unsupported`](galaxycache_universe::ErrorKind::Unsupported). A request message larger
//! than the server's bound (the longest key, the largest value a set may carry:
//! [`GrpcServer::max_value_bytes`], and 4 KiB) is OUT_OF_RANGE, refused by tonic's decoder
//! from its length prefix, and read as
//! [`TooLarge`](galaxycache_universe::ErrorKind::TooLarge). A failed load (or write) is
//! INTERNAL with the error's own message, which the asking node hands to its callers
//! unchanged; a load that outlives the caller's `grpc-timeout` ends as DEADLINE_EXCEEDED or
//! CANCELLED; a server at its bound of concurrent work answers RESOURCE_EXHAUSTED. Bad
//! input never changes anything on the server.
//!
//! # Round trip
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use galaxycache::grpc::{GrpcProtocol, GrpcServer};
//! use galaxycache::universe::{ErrorKind, FetchProtocol, InFlight, Universe};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let url = format!("http://{}", listener.local_addr().unwrap());
//! let universe = Universe::builder(url.clone()).build();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(GrpcServer::new(universe).serve(listener, async {
//!     stopped.await.ok();
//! }));
//!
//! let peer = GrpcProtocol::new().connect(&url, &InFlight::unbounded()).unwrap();
//! let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
//! let err = peer.fetch("no-such-galaxy".into(), "key", deadline).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::UnknownGalaxy);
//!
//! stop.send(()).unwrap();
//! server.await.unwrap().unwrap();
//! # }
//! ```

// No input may panic a node: outside tests, every unwrap, expect, index and unchecked
// arithmetic is an error; the few that cannot fail are allowed where they are, saying why.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::arithmetic_side_effects
    )
)]

mod client;
#[doc(hidden)]
pub mod fuzzing;
mod server;
mod status;
mod tls;
mod transport;
mod wire;

mod generated {
    #![allow(missing_docs, unreachable_pub, missing_debug_implementations)]
    tonic::include_proto!("galaxycachepb");
}

/// The messages, client and server generated from `proto/galaxycache.proto`.
pub mod pb {
    pub use crate::generated::*;
}

pub use client::{DEFAULT_CONNECT_TIMEOUT, GrpcProtocol};
pub use server::{
    DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_HEADER_LIST_BYTES, GalaxyCacheService, GrpcServer,
    service,
};
/// The tonic this crate is built on, so applications name the same version's types
/// (`Server`, `Status`, ...) when adding [`service`] to their own router.
pub use tonic;
