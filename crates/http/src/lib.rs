//! The HTTP peer protocol of galaxycache (hyper 1.x), in two dialects: galaxycache's own
//! (`/_galaxycache/`, raw bytes, expiry in `Expires`) and golang/groupcache's
//! (`/_groupcache/`, protobuf bodies), so a Rust node can join a ring of Go groupcache
//! nodes. See [`Dialect`].
//!
//! A node uses both halves, in the same dialect: an [`HttpProtocol`] in its
//! [`Universe`](galaxycache_universe::Universe) to fetch keys from their owners, and a
//! [`PeerService`] to answer its peers, either mounted in the application's own server or
//! on a listener of its own.
//!
//! ```
//! use std::sync::Arc;
//! use galaxycache_http::{Dialect, HttpProtocol, PeerService};
//! use galaxycache_universe::Universe;
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

mod client;
mod dialect;
mod headers;
mod pb;
mod server;

pub use client::{
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_POOL_MAX_IDLE_PER_HOST, HttpProtocol, HttpProtocolBuilder,
};
pub use dialect::Dialect;
pub use headers::{GALAXY_STATUS_HEADER, TIMEOUT_HEADER};
pub use server::{PeerService, ResponseBody};
