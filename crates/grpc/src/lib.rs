//! The gRPC peer protocol of galaxycache, on tonic and prost, wire-compatible with
//! galaxycache (Go): `package galaxycachepb`, service `GalaxyCache`, RPCs `GetFromPeer` and
//! `PeekPeer` (see `proto/galaxycache.proto`).
//!
//! - Client: [`GrpcProtocol`], the [`FetchProtocol`](galaxycache_universe::FetchProtocol) a
//!   universe uses to reach its peers.
//! - Server: [`service`] to add to an application's own tonic router, or [`GrpcServer`] to
//!   serve alone on a listener with graceful shutdown.
//!
//! # Errors on the wire
//!
//! A missing key is NOT_FOUND (an answer, not a failure). An unknown galaxy and a bad key
//! (empty, too long, not UTF-8) are INVALID_ARGUMENT, told apart by the metadata entry
//! `galaxycache-galaxy-status`: `not-found` for an unknown galaxy, `found` otherwise. Only
//! with a peer that sends no such entry (galaxycache in Go) does a client take an
//! INVALID_ARGUMENT whose message names a galaxy as an unknown galaxy. A failed load is
//! INTERNAL with the load error's own message, which the asking node hands to its callers
//! unchanged; a load that outlives the caller's `grpc-timeout` ends as DEADLINE_EXCEEDED or
//! CANCELLED; a server at its bound of concurrent work answers RESOURCE_EXHAUSTED.
//!
//! # Round trip
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use galaxycache_grpc::{GrpcProtocol, GrpcServer};
//! use galaxycache_universe::{ErrorKind, FetchProtocol, Universe};
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let url = format!("http://{}", listener.local_addr().unwrap());
//! let universe = Universe::builder(url.clone()).build();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = tokio::spawn(GrpcServer::new(universe).serve(listener, async {
//!     stopped.await.ok();
//! }));
//!
//! let peer = GrpcProtocol::new().connect(&url).unwrap();
//! let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
//! let err = peer.fetch("no-such-galaxy".into(), "key", deadline).await.unwrap_err();
//! assert_eq!(err.kind(), ErrorKind::UnknownGalaxy);
//!
//! stop.send(()).unwrap();
//! server.await.unwrap().unwrap();
//! # }
//! ```

mod client;
mod server;
mod status;
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
pub use server::{GalaxyCacheService, GrpcServer, service};
/// The tonic this crate is built on, so applications name the same version's types
/// (`Server`, `Status`, ...) when adding [`service`] to their own router.
pub use tonic;
