//! A galaxy is a named, peer-sharded, read-through cache: the heart of galaxycache.
//!
//! Build one with [`Galaxy::builder`] from a [`Universe`](galaxycache_universe::Universe), a
//! byte budget and a [`BackendGetter`]; then [`Galaxy::get`] keys. The maincache holds the
//! keys this node owns, the hotcache copies of hot keys owned by others, and one
//! singleflight per node makes sure a missing key is loaded once however many callers ask.
//! [`Galaxy::remove`], [`Galaxy::set`] and [`Galaxy::flush`] change the data on every
//! node, and generations keep loads in flight from undoing them.

#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod batch;
mod builder;
mod cache;
mod candidates;
mod clock;
mod codec;
mod error;
mod feed;
mod fence;
mod freshness;
mod front;
mod galaxy;
mod handoff;
mod listener;
mod metrics;
mod preload;
mod singleflight;
mod stats;
mod sync;
mod unwind;
mod write;

pub use backend::{BackendGetter, LoadContext, LoadReason};
pub use batch::MAX_BATCH;
pub use builder::{
    DEFAULT_BROADCAST_RETRIES, DEFAULT_HANDOFF_TIMEOUT, DEFAULT_HOT_TTL, GalaxyBuilder,
};
pub use cache::{ENTRY_OVERHEAD, MIN_SHARD_BYTES};
pub use clock::{Clock, ManualClock, SystemClock};
pub use codec::Codec;
#[cfg(feature = "json")]
pub use codec::Json;
#[cfg(feature = "protobuf")]
pub use codec::Proto;
pub use error::{Error, ErrorKind};
pub use feed::Invalidation;
pub use freshness::Refresh;
pub use galaxy::{Galaxy, GetOptions};
pub use galaxycache_universe::Value;
pub use listener::{Event, Listener, Origin, StoreReason, Tier};
pub use preload::Preload;
pub use stats::Stats;
pub use write::Report;
