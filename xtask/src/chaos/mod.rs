//! `cargo xtask chaos`: the program's network path under faults, all on this machine.
//!
//! The kernel here has no netem and no packet filter, so the faults come from user space: the
//! program runs in a network namespace of its own ([`netns`]) where only `lo` is up, and a relay
//! in this process ([`relay`]) binds, inside it, every port of the stack the program uses and
//! forwards to the same ports on the host, applying loss, delay or a cut ([`faults`]) that the
//! run changes as it goes. The suite ([`suite`]) puts the program and Element Call in a call and
//! injects one fault after another: services of the stack killed, loss, delay, a cut, the
//! program stopped. `--check-relay` checks the relay alone against echo servers of its own
//! ([`check`]).

mod check;
mod faults;
mod netns;
mod relay;
mod suite;

use anyhow::bail;

use crate::demo::build_program;
use crate::devstack::{self, Layout};

/// `cargo xtask chaos` options.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ChaosOptions {
    /// Check the faulty network path alone: echo servers on the host, clients in a network
    /// namespace, plain forwarding, 5 % and 20 % loss, 200 ms delay, a cut and its restore
    /// (needs root; starts no stack).
    #[arg(long)]
    pub(crate) check_relay: bool,
    /// The short version (CI): loss phases of 15 s instead of 60 s.
    #[arg(long)]
    pub(crate) short: bool,
    /// Only these scenarios (synapse, livekit, auth, loss5, loss20, cut, sigstop).
    #[arg(long = "only", value_delimiter = ',')]
    pub(crate) only: Vec<String>,
}

/// Runs what the options ask (starting the stack if needed, stopping what it started); on
/// Ctrl-C or SIGTERM stops, deleting the namespace.
pub(crate) async fn run(options: &ChaosOptions) -> anyhow::Result<()> {
    let known: Vec<&str> = suite::scenarios(false).iter().map(|(name, _)| *name).collect();
    if let Some(unknown) = options.only.iter().find(|o| !known.contains(&o.as_str())) {
        bail!("no scenario {unknown:?}: there are {}", known.join(", "));
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let work = async {
        if options.check_relay {
            return check::run().await;
        }
        let layout = Layout::new();
        let was_running = devstack::is_running(&layout).await;
        let mut stack = devstack::up().await?;
        let program = build_program(&layout)?;
        let result =
            suite::run_all(&layout, &mut stack, &program, options.short, &options.only).await;
        if !was_running {
            devstack::down()?;
        }
        result
    };
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; the network namespace is deleted"),
        _ = terminate.recv() => bail!("terminated; the network namespace is deleted"),
    }
}
