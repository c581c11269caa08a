//! Project automation. Run `cargo xtask --help`.
//!
//! * `cargo xtask devstack up | down | status`: the local MatrixRTC stack (Synapse, the LiveKit
//!   server, matrixrtc-auth) on 127.0.0.1, installed into `.devstack/`.
//! * `cargo xtask demo [--headless]`: the stack, a Rust bot in a call, and the URL to watch it
//!   in Element Call (`--headless`: Chromium opens it and checks the bot's tile).
//! * `cargo xtask test`: the gates below, then every test of the workspace, against a stack it
//!   starts and stops.
//! * `cargo xtask gates`: `cargo fmt --all --check`, clippy with `-D warnings` (the workspace,
//!   and the program with its optional features), and `cargo xtask licences`.
//! * `cargo xtask licences`: every package of the dependency graph has a licence that
//!   `allowed-licences.txt` allows.
//! * `cargo xtask bench publish`: CPU time and peak memory of publishing video, our Rust client
//!   against the official LiveKit Python SDK, on the local stack.
//! * `cargo xtask bench record`: CPU time and peak memory of receiving and recording a 720p call
//!   (video and audio), the program against the official LiveKit Python SDK.
//! * `cargo xtask bench join`: from starting the program to its first frame in Element Call.
//! * `cargo xtask soak --minutes N`: the program in a call for N minutes; fails when its
//!   memory, file descriptors or threads grow, or its media stops.
//! * `cargo xtask fuzz [--runs N] [--jobs-nice] [TARGET...]`: every fuzz target for N inputs
//!   (10,000,000 by default), a table of the runs in `test-artifacts/fuzz.md`.
//! * `cargo xtask chaos [--short] [--only …]`: the program and Element Call in a call under
//!   faults, recovery measured, nothing left behind; a table in `test-artifacts/chaos.md`.
//! * `cargo xtask cross <aarch64|armv7> [--release] [--unit-tests] [--call] [--bench F]`: the
//!   program built for ARM with Debian's cross compilers, tested under qemu-user.
//! * `cargo xtask bench connect`: from `connect` to the first video sent, and memory and threads
//!   per connected room (1, 10, 50 rooms in one process), our Rust client against the official
//!   LiveKit Python SDK.

mod bench;
mod cargo;
mod chaos;
mod cross;
mod demo;
mod devstack;
mod fuzz;
mod gates;
mod licences;
mod serve_static;
mod soak;
mod test;

use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Project automation for matrix-rtc-rs")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install, start, stop or inspect the local MatrixRTC stack.
    Devstack {
        #[command(subcommand)]
        action: DevstackAction,
    },
    /// Start the local stack and a Rust bot in a call, and print the URL to watch it in
    /// Element Call.
    Demo(demo::DemoOptions),
    /// Serve a single-page app from a folder on 127.0.0.1 (used by the stack for Element Call).
    #[command(hide = true)]
    ServeStatic {
        /// The folder.
        #[arg(long)]
        root: std::path::PathBuf,
        /// The port.
        #[arg(long)]
        port: u16,
    },
    /// Run the gates, then all tests against the local stack (starts it if needed, stops what
    /// it started).
    Test {
        /// Extra arguments for `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_args: Vec<String>,
    },
    /// The quick checks `test` starts with: `cargo fmt --all --check`, clippy with
    /// `-D warnings` (the workspace, and the program with its optional features), and the
    /// licences of the dependency graph.
    Gates,
    /// Check that every package of the dependency graph (every platform, every feature, dev and
    /// build dependencies too) has a licence that `allowed-licences.txt` allows.
    Licences,
    /// The program in a call with another for N minutes, its memory, file descriptors, threads
    /// and CPU sampled; fails on growth or when media stops (starts the stack if needed).
    Soak(soak::SoakOptions),
    /// The program and Element Call in a call while faults come one after another (services
    /// of the stack killed, loss, delay, a cut, the program stopped), its network path through
    /// a relay into a network namespace (needs root); `--check-relay` checks the relay alone.
    Chaos(chaos::ChaosOptions),
    /// Every fuzz target (or those named) for N inputs each, one after the other; a table of
    /// the runs in `test-artifacts/fuzz.md` (needs nightly and cargo-fuzz).
    Fuzz(fuzz::FuzzOptions),
    /// Build the program for 64-bit or 32-bit ARM Linux (Debian's cross compilers and the
    /// target's libraries), and run its unit tests, the call test or the benches under qemu.
    Cross(cross::CrossOptions),
    /// Benchmarks against the local stack (starts it if needed, stops what it started).
    Bench {
        #[command(subcommand)]
        action: BenchAction,
    },
}

#[derive(Debug, Subcommand)]
enum BenchAction {
    /// Publish the same video with our Rust client and the LiveKit Python SDK, one after the
    /// other; compare the processes' CPU time and peak memory.
    Publish(bench::PublishOptions),
    /// Receive and record one publisher's 720p video and Opus audio with the program
    /// (example-rtc-livekit-join, RECORD_DIR) and with the LiveKit Python SDK (raw frames and
    /// PCM), one after the other; compare the processes' CPU time and peak memory.
    Record(bench::RecordOptions),
    /// From starting the program to its first frame in Element Call, by parts; and Element
    /// Call's own join on the same stack.
    Join(bench::JoinOptions),
    /// Join 1, 10, 50 rooms in one process, each publishing a small video, with our Rust client
    /// and with the LiveKit Python SDK, one after the other; compare the time from connect to
    /// the first video sent, and memory and threads per connected room.
    Connect(bench::ConnectOptions),
    /// Run a command, then write its CPU time and peak memory as JSON (used by `publish` and
    /// `record`).
    #[command(hide = true)]
    Measure {
        /// Where to write the JSON.
        #[arg(long)]
        report: std::path::PathBuf,
        /// Kill the command after this many seconds.
        #[arg(long)]
        timeout_seconds: u64,
        /// Give the command no stdin, and send it a SIGTERM when our stdin closes.
        #[arg(long)]
        term_on_stdin_eof: bool,
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, required = true)]
        command: Vec<std::ffi::OsString>,
    },
}

#[derive(Debug, Subcommand)]
enum DevstackAction {
    /// Install what is missing, start every service, wait until each answers
    /// (`DEVSTACK_LIVEKIT_LOG=debug` raises LiveKit's log level).
    Up,
    /// Stop every service of the stack (its whole process group), while its pid is provably ours.
    Down,
    /// Print what runs and where.
    Status,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Devstack { action: DevstackAction::Up } => {
                let stack = devstack::up().await?;
                devstack::print_status(&stack);
                Ok(())
            }
            Command::Devstack { action: DevstackAction::Down } => devstack::down(),
            Command::Devstack { action: DevstackAction::Status } => devstack::status().await,
            Command::Demo(options) => demo::run(&options).await,
            Command::Test { cargo_args } => test::run(&cargo_args).await,
            Command::Gates => gates::run(),
            Command::Licences => licences::run(),
            Command::Soak(options) => soak::run(&options).await,
            Command::Chaos(options) => chaos::run(&options).await,
            Command::Fuzz(options) => fuzz::run(&options),
            Command::Cross(options) => cross::run(&options).await,
            Command::ServeStatic { root, port } => serve_static::run(root, port).await,
            Command::Bench { action: BenchAction::Publish(options) } => {
                bench::publish(&options).await
            }
            Command::Bench { action: BenchAction::Record(options) } => {
                bench::record(&options).await
            }
            Command::Bench { action: BenchAction::Join(options) } => bench::join(&options).await,
            Command::Bench { action: BenchAction::Connect(options) } => {
                bench::connect(&options).await
            }
            Command::Bench {
                action: BenchAction::Measure { report, timeout_seconds, term_on_stdin_eof, command },
            } => bench::measure(
                &report,
                Duration::from_secs(timeout_seconds),
                term_on_stdin_eof,
                &command,
            ),
        }
    })
}
