//! `cargo xtask test`: the gates first (`cargo xtask gates`: formatting, clippy, licences); the
//! ARM builds started in the background (see [`arm`]); every test of the workspace against the
//! local stack; the builds with the program's other features; a 3-minute soak; the short chaos
//! suite (`cargo xtask chaos --short`); the aarch64 unit tests and call under qemu and the armv7
//! program; then the demo in headless Chromium (`cargo xtask demo --headless`) on the same stack.
//! At the end, how long each step took.

use self::arm::ArmBuilds;
use self::steps::Steps;
use crate::devstack;

mod arm;
mod steps;

/// Runs the gates; starts the stack (unless it runs already), runs every test against it, and
/// stops the stack again if this command started it. Prints how long each step took, also when
/// one fails.
pub(crate) async fn run(cargo_args: &[String]) -> anyhow::Result<()> {
    // Everything here is built once: incremental caches would only cost time and disk.
    crate::cargo::for_test_run();
    let mut steps = Steps::new();
    let outcome = run_steps(&mut steps, cargo_args).await;
    steps.print();
    outcome
}

async fn run_steps(steps: &mut Steps, cargo_args: &[String]) -> anyhow::Result<()> {
    // Formatting, clippy and licences fail in minutes, before the half hour of the stack.
    steps.time("gates", async { crate::gates::run() }).await?;
    let layout = devstack::Layout::new();
    devstack::ensure_build_packages()?;
    let was_running = devstack::is_running(&layout).await;
    // Cross-compiling takes the CPU the tests on the stack leave idle.
    let arm = steps.time("ARM builds started", async { ArmBuilds::start(&layout) }).await?;
    // Every test, and the programs the stack, soak, chaos and demo run (see `cargo.rs`).
    steps
        .time("workspace tests build", async {
            let what = crate::cargo::WORKSPACE_TESTS_BUILD.join(" ");
            crate::cross::status(
                crate::cargo::command()
                    .current_dir(&layout.workspace)
                    .args(crate::cargo::WORKSPACE_TESTS_BUILD),
                &format!("cargo {what}"),
            )
        })
        .await?;
    let stack = steps.time("stack up", devstack::up()).await?;
    devstack::print_status(&stack);

    let tests = stack_steps(steps, &layout, cargo_args, arm).await;
    // The README's first command, as a person would see it, checked by Chromium.
    let demo = match &tests {
        Ok(()) => steps.time("demo", crate::demo::run(&crate::demo::DemoOptions::headless())).await,
        Err(_) => Ok(()),
    };
    if !was_running {
        devstack::down()?;
    }
    tests?;
    demo.map_err(|e| e.context("the headless demo failed"))
}

/// Every step on the running stack; the first that fails stops the others.
async fn stack_steps(
    steps: &mut Steps,
    layout: &devstack::Layout,
    cargo_args: &[String],
    arm: ArmBuilds,
) -> anyhow::Result<()> {
    steps
        .time("workspace tests", async { cargo_test(layout, &["--workspace"], cargo_args, None) })
        .await?;
    // The encrypted Element Call tests and the hosted Element Call need the program's
    // `e2ee-per-participant` and `experimental-widgets` features, which `cargo test --workspace`
    // does not turn on. With the workspace's dependency graph, only the program is compiled
    // again. One at a time: two browsers and three programs at once on two cores starve the
    // video they measure.
    let encrypted_call = [
        "--workspace",
        "--features",
        "example-rtc-livekit-join/e2ee-per-participant,example-rtc-livekit-join/experimental-widgets",
        "--test",
        "element_call_e2ee",
        "--test",
        "element_call_widget",
    ];
    steps
        .time("encrypted call tests", async {
            cargo_test(layout, &encrypted_call, cargo_args, Some(1))
        })
        .await?;
    steps.time("feature builds", async { feature_builds(layout) }).await?;
    // Three minutes of the soak: no leak of memory, descriptors or threads, media flowing.
    steps
        .time("soak", async {
            crate::soak::run(&crate::soak::SoakOptions { minutes: 3.0 })
                .await
                .map_err(|e| e.context("the 3-minute soak failed"))
        })
        .await?;
    // Every fault once, shorter: recovered, nothing left behind.
    steps
        .time("chaos", async {
            let options =
                crate::chaos::ChaosOptions { short: true, ..crate::chaos::ChaosOptions::default() };
            crate::chaos::run(&options).await.map_err(|e| e.context("the short chaos suite failed"))
        })
        .await?;
    // ARM, last, when its builds had the most time: the aarch64 unit tests and call under qemu,
    // the armv7 program started under qemu.
    let built = steps.time("ARM", arm.finish()).await?;
    steps.record("ARM builds (beside)", built, true);
    Ok(())
}

/// `cargo test` with `which` and the caller's arguments, against the stack; `test_threads`
/// limits how many tests of one binary run at once.
fn cargo_test(
    layout: &devstack::Layout,
    which: &[&str],
    cargo_args: &[String],
    test_threads: Option<usize>,
) -> anyhow::Result<()> {
    let mut command = crate::cargo::command();
    command
        .current_dir(&layout.workspace)
        .arg("test")
        .args(which)
        .args(cargo_args)
        .env(rtc_test_support::STACK_FILE_ENV, layout.stack_file());
    if let Some(threads) = test_threads {
        command.env("RUST_TEST_THREADS", threads.to_string());
    }
    let status = command.status();
    match status {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => Err(anyhow::anyhow!("cargo test {} failed ({status})", which.join(" "))),
        Err(error) => Err(anyhow::anyhow!("cannot run cargo test: {error}")),
    }
}

/// The program builds with each of its features as its README shows them, and refuses both TLS
/// stacks at once.
fn feature_builds(layout: &devstack::Layout) -> anyhow::Result<()> {
    devstack::ensure_feature_packages()?;
    let check = |features: &[&str]| {
        let output = crate::cargo::command()
            .current_dir(&layout.workspace)
            .args(["check", "--quiet", "-p", "example-rtc-livekit-join"])
            .args(features)
            .output()
            .map_err(|e| anyhow::anyhow!("cannot run cargo check: {e}"))?;
        anyhow::Ok((output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned()))
    };
    for features in [
        &["--features", "v4l2,alsa,experimental-widgets,matrix-sdk-rtc-livekit/native-tls"][..],
        &["--no-default-features", "--features", "matrix-sdk-rtc-livekit/rustls-tls"][..],
    ] {
        eprintln!("checking example-rtc-livekit-join {}", features.join(" "));
        let (ok, stderr) = check(features)?;
        if !ok || stderr.contains("warning") {
            anyhow::bail!(
                "example-rtc-livekit-join {} does not build cleanly:\n{stderr}",
                features.join(" ")
            );
        }
    }
    let both =
        ["--features", "matrix-sdk-rtc-livekit/native-tls,matrix-sdk-rtc-livekit/rustls-tls"];
    let (ok, stderr) = check(&both)?;
    if ok || !stderr.contains("exclude each other") {
        anyhow::bail!("both TLS features at once must be a clear compile error:\n{stderr}");
    }
    Ok(())
}
