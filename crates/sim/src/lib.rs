//! Proving galaxycache's guarantees: a [history checker](history) of cache operations.
//! See the crate's README.

// The checker must not panic on any history: indexing and unwraps are errors outside tests.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

pub mod history;
