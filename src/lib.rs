#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

// Everything a galaxy's user names (the codecs with their features), and the universe's
// most used types; the rest of the universe is in `universe`.
pub use galaxycache_galaxy::*;
pub use galaxycache_universe::{InProcessNetwork, Ring, Universe, UniverseBuilder};

/// Peers, the ring, and the traits a peer protocol implements.
pub mod universe {
    pub use galaxycache_universe::*;
}

/// Promoters: which peer-owned keys are copied into the hotcache.
pub mod promoter {
    pub use galaxycache_promoter::*;
}

/// The HTTP peer protocol (galaxycache and groupcache dialects).
#[cfg(feature = "http")]
#[cfg_attr(docsrs, doc(cfg(feature = "http")))]
pub mod http {
    pub use galaxycache_http::*;
}

/// The gRPC peer protocol.
#[cfg(feature = "grpc")]
#[cfg_attr(docsrs, doc(cfg(feature = "grpc")))]
pub mod grpc {
    pub use galaxycache_grpc::*;
}
