//! The HTTP/2 client that galaxycache's peer protocols share: the HTTP protocol when it
//! speaks HTTP/2 (`galaxycache-http`, h2c or h2 over TLS) and the gRPC protocol
//! (`galaxycache-grpc`). Not for applications: its API follows what those two need.
//!
//! It drives the `h2` crate's client from the calling task. Neither hyper's pooled client
//! nor tonic's `Channel` does: each moves a request through tasks of its own (hyper's
//! dispatch task, a task spawned per request to await the response and another to send
//! the request body; the channel's buffer worker), and each hop is a wake-up that on a
//! busy machine costs more than the rest of a loopback fetch. Here the caller queues a
//! request's headers and its whole body at once, so they leave in one write, and reads the
//! response itself; the connection's own task is the only other one. See [`Transport`].
//!
//! A crate of its own because both protocol crates need it and neither should depend on
//! the other: a gRPC node has no use for hyper's client, the HTTP dialects or rustls'
//! hyper connector, and an HTTP node none for tonic. `galaxycache-universe`, which both
//! depend on, defines what a protocol is and carries no transport.
//!
//! What a response is read against: [`ResponseBody`] gives back each chunk's flow-control
//! window as it hands the chunk out, and, [when asked](ResponseBody::reserving), first holds
//! its bytes against the node's bound on bytes in flight
//! ([`InFlight`](galaxycache_universe::InFlight)), as gRPC's decoder needs: it buffers a
//! message whole where no bound sees it. The HTTP protocol reads its bodies with its own
//! bounded reader instead, which reserves the value's buffer as it grows.

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

mod body;
mod connector;
mod transport;

pub use body::ResponseBody;
pub use connector::{BoxError, Connector, Io, MakeStream};
pub use transport::Transport;
