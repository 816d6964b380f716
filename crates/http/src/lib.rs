//! The HTTP peer protocol of galaxycache (hyper 1.x), in two dialects: galaxycache's own
//! (`/_galaxycache/`, raw bytes, a value's instants in headers) and golang/groupcache's
//! (`/_groupcache/`, protobuf bodies), so a Rust node can join a ring of Go groupcache
//! nodes. See [`Dialect`].
//!
//! A node uses both halves, in the same dialect: an [`HttpProtocol`] in its
//! [`Universe`](galaxycache_universe::Universe) to fetch keys from their owners, and a
//! [`PeerService`] to answer its peers, either mounted in the application's own server or
//! on a listener of its own.
//!
//! The galaxycache dialect carries peeks too (a `GET` under `/_galaxycache_peek/` that
//! answers from the owner's caches and never loads, as galaxycache (Go) v1.3+ and
//! [`RemoteFetcher::peek`](galaxycache_universe::RemoteFetcher::peek) do), writes (remove,
//! set and flush, as [`RemoteFetcher::write`](galaxycache_universe::RemoteFetcher::write)
//! sends them) as `DELETE` and `PUT`, and galaxy versions in [`VERSION_HEADER`]: a peer
//! whose galaxy has another version refuses with `409`, which the asking node reads as
//! [`VersionMismatch`](galaxycache_universe::ErrorKind::VersionMismatch). The groupcache
//! dialect has none of them, as Go's groupcache; see [`Dialect`] for both.
//!
//! ```
//! use std::sync::Arc;
//! use galaxycache::http::{Dialect, HttpProtocol, PeerService};
//! use galaxycache::universe::Universe;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! let me = format!("http://{}", listener.local_addr()?);
//! let protocol = HttpProtocol::builder().dialect(Dialect::Galaxycache).build();
//! let universe = Universe::builder(&me).protocol(Arc::new(protocol)).build();
//! universe.set_peers([me.as_str(), "http://10.0.0.2:8080"]).unwrap();
//!
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! let server = PeerService::new(universe.clone(), Dialect::Galaxycache);
//! let serving = tokio::spawn(server.serve(listener, async { stopped.await.ok(); }));
//! // ... build galaxies on `universe` and serve traffic ...
//! stop.send(()).ok();
//! serving.await.unwrap();
//! # Ok(())
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

mod batch;
mod body;
mod client;
mod connector;
mod dialect;
#[doc(hidden)]
pub mod fuzzing;
mod headers;
mod limits;
mod pb;
mod server;

use std::time::Duration;

pub use body::{BoxError, ReadError, read_value};
pub use client::{HttpProtocol, HttpProtocolBuilder};
pub use dialect::Dialect;
pub use headers::{
    EXPIRES_MS_HEADER, GALAXY_FOUND, GALAXY_NOT_FOUND, GALAXY_STATUS_HEADER, REFRESH_MS_HEADER,
    STALE_MS_HEADER, TIMEOUT_HEADER, VERSION_HEADER,
};
pub use limits::{
    DEFAULT_H2_MAX_CONCURRENT_STREAMS, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_HEADER_LIST_BYTES, DEFAULT_MAX_REQUESTS_IN_FLIGHT, HttpService, ServerLimits,
    serve_tls_with_limits, serve_with_limits,
};
pub use server::PeerService;

/// How long [`PeerService::serve`] keeps a connection on which nothing is read or written
/// (an idle keep-alive connection, say) before it closes it: 30 s, the default of
/// [`ServerLimits::idle_timeout`].
///
/// One of a pair with [`DEFAULT_POOL_IDLE_TIMEOUT`], which must stay below it: a client
/// that sends a request on a pooled connection the server is closing sees that request
/// fail. A server of the application's own that mounts a [`PeerService`] should keep idle
/// connections at least this long too.
pub const SERVER_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Default of [`HttpProtocolBuilder::pool_idle_timeout`]: 20 s, below
/// [`SERVER_IDLE_TIMEOUT`], so the client drops an idle pooled connection before the
/// server closes it under a request.
pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(20);
