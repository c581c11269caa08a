//! Test support for the local MatrixRTC stack started by `cargo xtask devstack up`.
//!
//! * [`StackInfo`]: the stack description file that the stack writes and tests read. A test that
//!   needs the stack calls [`StackInfo::require`], which fails loudly, naming the command to run,
//!   when the stack is not running.
//! * [`Homeserver`]: register users with the shared-secret registration API, log in with a chosen
//!   device id, create rooms whose power levels let members send call memberships (as Element Web
//!   creates them), join rooms, request OpenID tokens;
//! * [`ElementCall`]: Element Call in headless Chromium, joined to a call, its events as they
//!   come;
//! * [`LossyLiveKit`]: a LiveKit server behind a lossy path for one client: a signalling proxy
//!   that rewrites ICE candidates so that the client's media go through a UDP relay, which drops
//!   datagrams with a probability the test sets (10 % loss without kernel netem) and counts them.
//!
//! ```no_run
//! # async fn run() -> Result<(), rtc_test_support::Error> {
//! use rtc_test_support::{Homeserver, StackInfo};
//!
//! let stack = StackInfo::require();
//! let hs = Homeserver::new(&stack);
//! let alice = hs.register_unique("alice").await?;
//! let bob = hs.register_unique("bob").await?;
//! let room_id = hs.create_call_room(&alice, &[&bob]).await?;
//! hs.join(&bob, &room_id).await?;
//! # Ok(()) }
//! ```

pub mod element_call;
mod homeserver;
mod lossy_path;
mod random;
mod stack;

pub use element_call::{ElementCall, Login};
pub use homeserver::{Homeserver, User, encode_path_segment, unique_name};
pub use lossy_path::{CandidateStats, LossyLiveKit, LossyStats, PathStats};
pub use random::XorShift64;
pub use stack::{STACK_FILE_ENV, SecondSfu, StackInfo, default_stack_file};

/// Errors of the test-support helpers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The stack description file could not be read or parsed.
    #[error("cannot read the stack description {path}: {reason}")]
    StackFile {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// An HTTP request failed before an answer arrived.
    #[error("request to {what} failed: {reason}")]
    Transport {
        /// The operation.
        what: &'static str,
        /// What went wrong (URLs removed: they may carry tokens).
        reason: String,
    },
    /// A local socket or the address of a server could not be set up.
    #[error("{what} failed: {reason}")]
    Io {
        /// The operation.
        what: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// The homeserver answered with an error.
    #[error("{what} failed: HTTP {status}: {body}")]
    Status {
        /// The operation.
        what: &'static str,
        /// The HTTP status.
        status: u16,
        /// The response body.
        body: String,
    },
}
