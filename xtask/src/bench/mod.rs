//! Benchmarks against the local stack.
//!
//! * [`publish`]: CPU time and peak memory of publishing video, `livekit-str0m` against the
//!   official LiveKit Python SDK;
//! * [`record`]: CPU time and peak memory of receiving and recording a call's video and audio,
//!   the program (`example-rtc-livekit-join`) against the official LiveKit Python SDK;
//! * [`connect`]: from `connect` to the first video sent, and memory and threads per connected
//!   room with many rooms in one process, `livekit-str0m` against the official LiveKit Python
//!   SDK;
//! * [`join`]: from starting the program to Element Call showing its video, and Element Call's
//!   own join for comparison.
//!
//! [`shared`] holds what the process comparisons share: the measuring process (`cargo xtask
//! bench measure`), the Python SDK's virtualenv, the Rust publishing example, rooms and tokens.

mod connect;
mod join;
mod publish;
mod record;
mod shared;

pub(crate) use connect::{ConnectOptions, connect};
pub(crate) use join::{JoinOptions, join};
pub(crate) use publish::{PublishOptions, publish};
pub(crate) use record::{RecordOptions, record};
pub(crate) use shared::measure;
