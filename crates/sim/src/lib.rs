//! Proving galaxycache's guarantees: a deterministic simulation of a whole cluster on
//! turmoil's simulated network and clock ([`sim`]), with faults drawn from the seed
//! ([`faults`]), and a checker of the histories it records ([`history`]). See the crate's
//! README.

// Neither the checker nor the simulation may panic on what a run produces: indexing and
// unwraps are errors outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod faults;
pub mod history;
pub mod sim;
