//! `cargo xtask chaos`: the program's network path under faults, all on this machine.
//!
//! The kernel here has no netem and no packet filter, so the faults come from user space: the
//! program runs in a network namespace of its own ([`netns`]) where only `lo` is up, and a relay
//! in this process ([`relay`]) binds, inside it, every port of the stack the program uses and
//! forwards to the same ports on the host, applying loss, delay or a cut ([`faults`]) that the
//! run changes as it goes. `--check-relay` checks the relay alone against echo servers of its
//! own ([`check`]).

mod check;
mod faults;
mod netns;
mod relay;

use anyhow::bail;

/// `cargo xtask chaos` options.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ChaosOptions {
    /// Check the faulty network path alone: echo servers on the host, clients in a network
    /// namespace, plain forwarding, 5 % and 20 % loss, 200 ms delay, a cut and its restore
    /// (needs root; starts no stack).
    #[arg(long, required = true)]
    pub(crate) check_relay: bool,
}

/// Runs what the options ask; on Ctrl-C or SIGTERM stops, deleting the namespace.
pub(crate) async fn run(options: &ChaosOptions) -> anyhow::Result<()> {
    if !options.check_relay {
        bail!("nothing to do: pass --check-relay");
    }
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = check::run() => result,
        _ = tokio::signal::ctrl_c() => bail!("interrupted; the network namespace is deleted"),
        _ = terminate.recv() => bail!("terminated; the network namespace is deleted"),
    }
}
