//! The cargo that runs xtask, for the cargo commands xtask runs in turn.

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by `cargo xtask test` (see [`for_test_run`]).
static TEST_RUN: AtomicBool = AtomicBool::new(false);

/// A `cargo` command: the cargo running xtask (`$CARGO`) when there is one.
pub(crate) fn command() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    if TEST_RUN.load(Ordering::Relaxed) {
        command.env("CARGO_INCREMENTAL", "0");
    }
    command
}

/// The cargo command that builds `package`'s programs into `target/debug/`: `cargo build -p
/// <package>`, or in a test run the build of every test of the workspace (see [`for_test_run`]).
pub(crate) fn build_programs(package: &str) -> Command {
    let mut command = command();
    if TEST_RUN.load(Ordering::Relaxed) {
        command.args(WORKSPACE_TESTS_BUILD);
    } else {
        command.args(["build", "--quiet", "-p", package]);
    }
    command
}

/// Builds every test of the workspace, and the programs its integration tests run.
pub(crate) const WORKSPACE_TESTS_BUILD: [&str; 4] = ["test", "--workspace", "--no-run", "--quiet"];

/// From now on, this process's cargo commands are those of a run that builds everything once
/// and runs every test (`cargo xtask test`):
///
/// * no incremental caches: they make the first build slower, take gigabytes (14 GB for the
///   workspace's tests), and nothing is built a second time;
/// * programs come from the build of the workspace's tests ([`build_programs`]). It has built
///   them already, with the dependency graph of every test of the workspace; `cargo build -p`
///   of one package would compile hundreds of crates again with other features (tokio's
///   `test-util`, for one, comes from a test). Cargo finds them built and puts them in place.
pub(crate) fn for_test_run() {
    TEST_RUN.store(true, Ordering::Relaxed);
}
