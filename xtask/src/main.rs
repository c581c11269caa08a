//! Project automation. Run `cargo xtask --help`.
//!
//! * `cargo xtask devstack up | down | status`: the local MatrixRTC stack (Synapse, the LiveKit
//!   server, matrixrtc-auth) on 127.0.0.1, installed into `.devstack/`.
//! * `cargo xtask demo`: the stack plus a smoke check that prints what runs and where.
//! * `cargo xtask test`: every test of the workspace, against a stack it starts and stops.

mod demo;
mod devstack;
mod serve_static;
mod test;

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
    /// Start the local stack and show it working.
    Demo,
    /// Run all tests against the local stack (starts it if needed, stops what it started).
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
    Test {
        /// Extra arguments for `cargo test`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        cargo_args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum DevstackAction {
    /// Install what is missing, start every service, wait until each answers.
    Up,
    /// Stop every service of the stack by its process id.
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
            Command::Demo => demo::run().await,
            Command::Test { cargo_args } => test::run(&cargo_args).await,
            Command::ServeStatic { root, port } => serve_static::run(root, port).await,
        }
    })
}
