//! galaxyd: galaxycache as a standalone node, and the tools around it.
//!
//! - `galaxyd serve`: one node — a peer listener (HTTP, gRPC or groupcache's HTTP
//!   dialect) and a client API (`GET /v1/galaxies/{galaxy}/keys/{key}`, `/v1/stats`,
//!   `/metrics`, `/healthz`, `/readyz`), in front of a synthetic, SQLite, HTTP or
//!   PostgreSQL backend (optionally following a LISTEN/NOTIFY channel for invalidations,
//!   and preloading its shard at start-up).
//! - `galaxyd owner`: which peer owns each key.
//! - `galaxyd demo`: a 3-node cluster in this process, in front of SQLite, under a
//!   skewed workload.
//! - `galaxyd bench`: a load generator against the client APIs of running nodes.
//! - `galaxyd top`: a terminal dashboard of a running cluster, given one node's client
//!   API.
//!
//! The library exists so the binary's parts can be tested; its API follows the binary.

mod api;
mod backend;
mod bench;
mod cli;
mod client;
mod config;
mod demo;
#[doc(hidden)]
pub mod fuzzing;
mod limits;
mod load;
mod metrics;
mod node;
mod owner;
mod peers;
mod preload;
mod readiness;
mod security;
mod settings;
mod top;
mod tuning;
mod units;
mod workload;

pub use api::router;
pub use backend::{Backend, BackendOptions, BackendSpec, synthetic_value};
pub use bench::{BenchConfig, BenchReport, HitRatio, TargetReport, run_bench};
pub use cli::{BenchArgs, Cli, Command, DemoArgs, OwnerArgs, ServeArgs};
pub use client::{HttpClient, Response};
pub use config::{GalaxyConfig, NodeConfig, Protocol};
pub use demo::{DemoConfig, DemoSummary, NodeSummary, create_database, run_demo};
pub use limits::LimitArgs;
pub use load::Percentiles;
pub use node::Node;
pub use owner::run as run_owner;
pub use peers::{DnsTarget, PeerArgs, PeerSource};
pub use preload::PreloadConfig;
pub use readiness::Readiness;
pub use security::{PeerSecurity, SecurityArgs};
pub use settings::{GalaxySettings, Settings, keys as setting_keys};
pub use top::{
    Levels, NodeRates, NodeSample, NodeState, NodeView, Poller, TopArgs, rates, run_top,
};
pub use tuning::Tuning;
pub use workload::{Dist, KeyNames};
