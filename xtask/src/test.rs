//! `cargo xtask test`: every test of the workspace against the local stack, then the demo in
//! headless Chromium (`cargo xtask demo --headless`) on the same stack.

use std::process::Command;

use crate::devstack;

/// Starts the stack (unless it runs already), runs `cargo test --workspace`, and stops the stack
/// again if this command started it.
pub(crate) async fn run(cargo_args: &[String]) -> anyhow::Result<()> {
    let layout = devstack::Layout::new();
    devstack::ensure_build_packages()?;
    let was_running = devstack::is_running(&layout).await;
    let stack = devstack::up().await?;
    devstack::print_status(&stack);

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&layout.workspace)
        .args(["test", "--workspace"])
        .args(cargo_args)
        .env(rtc_test_support::STACK_FILE_ENV, layout.stack_file())
        .status();
    let tests = match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(anyhow::anyhow!("cargo test failed ({status})")),
        Err(error) => Err(anyhow::anyhow!("cannot run cargo test: {error}")),
    };
    // The README's first command, as a person would see it, checked by Chromium.
    let demo = match &tests {
        Ok(()) => crate::demo::run(&crate::demo::DemoOptions::headless()).await,
        Err(_) => Ok(()),
    };

    if !was_running {
        devstack::down()?;
    }
    tests?;
    demo.map_err(|e| e.context("the headless demo failed"))
}
