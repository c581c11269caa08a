//! Benchmarks against the local stack.
//!
//! * [`publish`]: CPU time and peak memory of publishing video, `livekit-str0m` against the
//!   official LiveKit Python SDK;
//! * [`join`]: from starting the program to Element Call showing its video, and Element Call's
//!   own join for comparison.

mod join;
mod publish;

pub(crate) use join::{JoinOptions, join};
pub(crate) use publish::{PublishOptions, measure, publish};
