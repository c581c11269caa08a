//! The cargo that runs xtask, for the cargo commands xtask runs in turn.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by `cargo xtask test` (see [`without_incremental`]).
static WITHOUT_INCREMENTAL: AtomicBool = AtomicBool::new(false);

/// A `cargo` command: the cargo running xtask (`$CARGO`) when there is one.
pub(crate) fn command() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    if WITHOUT_INCREMENTAL.load(Ordering::Relaxed) {
        command.env("CARGO_INCREMENTAL", "0");
    }
    command
}

/// From now on, the cargo commands of [`command`] keep no incremental caches. A run that builds
/// everything once, as `cargo xtask test` does on a fresh machine, only pays for them: they make
/// the first build slower and take gigabytes (14 GB for the workspace's tests).
pub(crate) fn without_incremental() {
    WITHOUT_INCREMENTAL.store(true, Ordering::Relaxed);
}
