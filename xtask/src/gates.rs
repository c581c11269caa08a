//! `cargo xtask gates`: the quick checks, which `cargo xtask test` runs first, before the stack:
//! formatting, clippy (the workspace, and the program with the optional features the workspace
//! build leaves off), and the dependency graph's licences. The first that fails stops the run.

use anyhow::Context as _;

use crate::devstack;

/// The program's features that `cargo clippy --workspace` does not turn on. Of the two TLS
/// stacks, which exclude each other, the workspace build has rustls and this one `native-tls`;
/// `cargo xtask test` then checks the program with this same dependency graph (without
/// `e2ee-per-participant`), so that check finds it built.
pub(crate) const PROGRAM_FEATURES: &str =
    "experimental-widgets,e2ee-per-participant,v4l2,alsa,matrix-sdk-rtc-livekit/native-tls";

/// Runs every gate; fails at the first that fails.
pub(crate) fn run() -> anyhow::Result<()> {
    let workspace = devstack::Layout::new().workspace;
    let gate = |arguments: &[&str]| {
        let what = format!("cargo {}", arguments.join(" "));
        eprintln!("==> {what}");
        crate::cross::status(crate::cargo::command().current_dir(&workspace).args(arguments), &what)
    };

    gate(&["fmt", "--all", "--check"])
        .context("the code is not formatted: run `cargo fmt --all`")?;

    devstack::ensure_build_packages()?;
    gate(&["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"])?;
    // v4l2 needs libclang, alsa ALSA's headers.
    devstack::ensure_feature_packages()?;
    gate(&[
        "clippy",
        "-p",
        "example-rtc-livekit-join",
        "--all-targets",
        "--features",
        PROGRAM_FEATURES,
        "--",
        "-D",
        "warnings",
    ])?;

    eprintln!("==> cargo xtask licences (against {})", crate::licences::ALLOW_LIST);
    crate::licences::run()
}
