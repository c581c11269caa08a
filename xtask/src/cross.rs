//! `cargo xtask cross <aarch64|armv7>`: the program built for 64-bit and 32-bit ARM Linux with
//! Debian's cross compilers and the target architecture's libraries (multiarch), and tested
//! under `qemu-user`.
//!
//! * the build: `example-rtc-livekit-join` with its default features and `v4l2`
//!   (`--release`: the shipped profile, its size printed);
//! * `--unit-tests`: the unit tests of `rtc-media`, `livekit-str0m` and `matrix-sdk-rtc`, run
//!   under qemu;
//! * `--call`: the call test (`tests/element_call.rs`) with the foreign binary, run under qemu,
//!   on the local (x86-64) stack: it publishes red and Element Call in Chromium sees red;
//! * `--bench FILTER`: `rtc-media`'s criterion benches matching FILTER, under qemu (ratios
//!   only: every instruction is emulated);
//! * `--publish-cpu SECONDS`: the binary under qemu publishing 640x480 at 30 fps on the local
//!   stack, its CPU (a sanity figure, not a benchmark).
//!
//! The environment a cross build needs (linker, C and C++ compilers, pkg-config's search path,
//! bindgen's sysroot, the qemu runner) is set here for the one cargo command; nothing is
//! written to the user's cargo configuration.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::devstack;

/// An ARM target we build for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Arch {
    /// 64-bit ARM: Raspberry Pi 3/4/5 and Jetson with a 64-bit OS.
    Aarch64,
    /// 32-bit ARM with hardware floating point: Raspberry Pi 2/3/4 with a 32-bit OS.
    Armv7,
}

impl Arch {
    pub(crate) fn triple(self) -> &'static str {
        match self {
            Self::Aarch64 => "aarch64-unknown-linux-gnu",
            Self::Armv7 => "armv7-unknown-linux-gnueabihf",
        }
    }

    /// Debian's name of the architecture (`dpkg --add-architecture`).
    fn debian(self) -> &'static str {
        match self {
            Self::Aarch64 => "arm64",
            Self::Armv7 => "armhf",
        }
    }

    /// The GNU triple of Debian's cross toolchain and multiarch directories.
    fn gnu(self) -> &'static str {
        match self {
            Self::Aarch64 => "aarch64-linux-gnu",
            Self::Armv7 => "arm-linux-gnueabihf",
        }
    }

    fn qemu(self) -> &'static str {
        match self {
            Self::Aarch64 => "qemu-aarch64",
            Self::Armv7 => "qemu-arm",
        }
    }

    /// How to run one of its programs here, as a command line (cargo's runner, the tests'
    /// program command): qemu and [`QEMU_ARGS`].
    pub(crate) fn runner(self) -> String {
        format!("{} {}", self.qemu(), QEMU_ARGS.join(" "))
    }

    /// `binary` run under qemu with [`QEMU_ARGS`].
    fn command(self, binary: &std::path::Path) -> Command {
        let mut command = Command::new(self.qemu());
        command.args(QEMU_ARGS).arg(binary);
        command
    }

    /// The Debian packages a cross build needs: the cross compilers, qemu, and the target
    /// architecture's libc, libstdc++ (openh264), libvpx and libopus, which the build links and
    /// qemu loads (the host's libclang serves bindgen for every target).
    fn packages(self) -> Vec<String> {
        let gnu = self.gnu();
        let arch = self.debian();
        vec![
            format!("gcc-{gnu}"),
            format!("g++-{gnu}"),
            "qemu-user".to_owned(),
            "libclang-dev".to_owned(),
            "pkg-config".to_owned(),
            format!("libc6:{arch}"),
            format!("libstdc++6:{arch}"),
            format!("libvpx-dev:{arch}"),
            format!("libopus-dev:{arch}"),
        ]
    }
}

/// qemu's arguments before the program: the target's own loader and libraries from the
/// multiarch packages (`/lib/ld-linux-….so`, `/lib/<gnu>/`). Not the cross toolchain's copy of
/// libc under `/usr/<gnu>`: its loader is another build of glibc than the multiarch libc it would
/// load, and the first thread a program starts hangs.
const QEMU_ARGS: [&str; 2] = ["-L", "/"];

/// What `cargo xtask cross` does.
#[derive(Debug, clap::Args)]
pub(crate) struct CrossOptions {
    /// The target.
    #[arg(value_enum)]
    pub(crate) arch: Arch,
    /// Build the shipped profile (`release`) and print the binary's size.
    #[arg(long)]
    pub(crate) release: bool,
    /// Run the unit tests of rtc-media, livekit-str0m and matrix-sdk-rtc under qemu.
    #[arg(long)]
    pub(crate) unit_tests: bool,
    /// Run the call test with the foreign binary under qemu, on the local stack (starts it if
    /// needed, stops what it started).
    #[arg(long)]
    pub(crate) call: bool,
    /// Run rtc-media's criterion benches matching this filter under qemu.
    #[arg(long, value_name = "FILTER")]
    pub(crate) bench: Option<String>,
    /// The program under qemu publishing a 640x480 pattern at 30 fps on the local stack: its
    /// CPU over this many seconds (a sanity figure: every instruction is emulated).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) publish_cpu: Option<u64>,
    /// Build without debug info (no line tables in backtraces): a faster build, as CI does.
    #[arg(long)]
    pub(crate) no_debuginfo: bool,
    /// Only build (with `--unit-tests`, the unit tests too); run nothing.
    #[arg(long)]
    pub(crate) build_only: bool,
    /// Cargo's target directory for the foreign build (default: the workspace's). The call test
    /// itself is built for this machine in the workspace's.
    #[arg(long, value_name = "DIR")]
    pub(crate) target_dir: Option<PathBuf>,
}

impl CrossOptions {
    /// A debug build for `arch` without debug info in `target_dir`, the unit tests too when
    /// `tested`: what CI builds (and runs, unless `build_only`).
    pub(crate) fn ci(arch: Arch, tested: bool, build_only: bool, target_dir: PathBuf) -> Self {
        Self {
            arch,
            release: false,
            unit_tests: tested,
            call: tested,
            bench: None,
            publish_cpu: None,
            no_debuginfo: true,
            build_only,
            target_dir: Some(target_dir),
        }
    }

    /// The subcommand's arguments for these options (another xtask process runs them).
    pub(crate) fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = vec!["cross".into()];
        if let Some(arch) = clap::ValueEnum::to_possible_value(&self.arch) {
            args.push(arch.get_name().into());
        }
        let flags = [
            (self.release, "--release"),
            (self.unit_tests, "--unit-tests"),
            (self.call, "--call"),
            (self.no_debuginfo, "--no-debuginfo"),
            (self.build_only, "--build-only"),
        ];
        args.extend(flags.iter().filter(|(on, _)| *on).map(|(_, flag)| (*flag).into()));
        if let Some(filter) = &self.bench {
            args.extend(["--bench".into(), filter.into()]);
        }
        if let Some(seconds) = self.publish_cpu {
            args.extend(["--publish-cpu".into(), seconds.to_string().into()]);
        }
        if let Some(dir) = &self.target_dir {
            args.extend(["--target-dir".into(), dir.into()]);
        }
        args
    }
}

/// The program's features on every target: the defaults and the camera.
const FEATURES: &str = "v4l2";
/// The crates whose unit tests run under qemu.
const UNIT_TESTED: &[&str] = &["rtc-media", "livekit-str0m", "matrix-sdk-rtc"];

pub(crate) async fn run(options: &CrossOptions) -> anyhow::Result<()> {
    let arch = options.arch;
    let layout = devstack::Layout::new();
    prepare(arch, &layout.workspace)?;
    let target = options.target_dir.clone().unwrap_or_else(|| layout.target());
    let profile = if options.release { "release" } else { "debug" };
    let started = std::time::Instant::now();
    let mut build = cargo(arch, &layout.workspace, &target, options.no_debuginfo);
    if options.unit_tests && !options.release {
        // One build for the program and the unit tests. The tests' dev-dependencies turn on
        // features (tokio's `test-util`) that a build of the program alone leaves off, so two
        // builds would compile most of the tree twice. The program comes with an integration
        // test of its (`element_call`, not run here): cargo builds the program for those.
        build.args(["test", "--no-run", "--lib", "--test", "element_call"]);
        select_unit_tested(&mut build);
    } else {
        build.args(["build", "-p", "example-rtc-livekit-join", "--features", FEATURES]);
        if options.release {
            build.arg("--release");
        }
    }
    status(&mut build, &format!("the {} build", arch.triple()))?;
    let binary = target.join(arch.triple()).join(profile).join("example-rtc-livekit-join");
    let size = std::fs::metadata(&binary).with_context(|| binary.display().to_string())?.len();
    eprintln!(
        "built {} ({:.1} MB, {profile}) in {:.0} s",
        binary.display(),
        size as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    // The binary starts on the emulated CPU (its libraries load, clap answers).
    let version = arch
        .command(&binary)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", arch.qemu()))?;
    if !version.status.success() {
        bail!(
            "the {} binary does not start under {}:\n{}",
            arch.triple(),
            arch.qemu(),
            String::from_utf8_lossy(&version.stderr)
        );
    }
    eprintln!("under {}: {}", arch.qemu(), String::from_utf8_lossy(&version.stdout).trim());
    if options.build_only {
        return Ok(());
    }

    if options.unit_tests {
        let mut tests = cargo(arch, &layout.workspace, &target, options.no_debuginfo);
        tests.args(["test", "--lib"]);
        // The packages and features of the build above: nothing is compiled again.
        select_unit_tested(&mut tests);
        status(&mut tests, &format!("the unit tests under {}", arch.qemu()))?;
    }
    if let Some(filter) = &options.bench {
        let mut bench = cargo(arch, &layout.workspace, &target, options.no_debuginfo);
        bench.args(["bench", "-p", "rtc-media", "--bench", "media", "--", filter]);
        // Criterion's history per architecture: an emulated run is not a change of the native one.
        bench.env("CRITERION_HOME", target.join(arch.triple()).join("criterion"));
        status(&mut bench, &format!("the benches under {}", arch.qemu()))?;
    }
    if options.call {
        with_stack(&layout, async { call_test(arch, &layout, &binary) }).await?;
    }
    if let Some(seconds) = options.publish_cpu {
        with_stack(&layout, publish_cpu(arch, &layout, &binary, seconds)).await?;
    }
    Ok(())
}

/// Selects the crates whose unit tests run under qemu, and the program with [`FEATURES`] (it has
/// no unit tests of its own in a library; it is selected for its features).
fn select_unit_tested(command: &mut Command) {
    for package in UNIT_TESTED {
        command.args(["-p", package]);
    }
    command.args(["-p", "example-rtc-livekit-join", "--features"]);
    command.arg(format!("example-rtc-livekit-join/{FEATURES}"));
}

/// Runs `work` with the stack up; stops the stack again if it started it.
async fn with_stack(
    layout: &devstack::Layout,
    work: impl Future<Output = anyhow::Result<()>>,
) -> anyhow::Result<()> {
    let was_running = devstack::is_running(layout).await;
    let stack = devstack::up().await?;
    devstack::print_status(&stack);
    let outcome = work.await;
    if !was_running {
        devstack::down()?;
    }
    outcome
}

/// The program under qemu, alone in a call, publishing a 640x480 test pattern at 30 fps (VP8):
/// the CPU of the qemu process over `seconds`, after the first frame and a short warm-up.
async fn publish_cpu(
    arch: Arch,
    layout: &devstack::Layout,
    binary: &std::path::Path,
    seconds: u64,
) -> anyhow::Result<()> {
    use std::time::{Duration, Instant};

    let stack = devstack::up().await?;
    let hs = rtc_test_support::Homeserver::new(&stack);
    let user = hs.register_unique("armcpu").await?;
    let room_id = hs.create_call_room(&user, &[]).await?;
    let dir = layout.root.join("cross-cpu");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let mut qemu = arch.command(binary);
    let mut program = crate::demo::program_in_room(&mut qemu, &stack, &user, &room_id)
        .env("V4L2_VIDEO_SOURCE", "pattern")
        .env("V4L2_WIDTH", "640")
        .env("V4L2_HEIGHT", "480")
        .env("VIDEO_FPS", "30")
        .env("CALL_PRESENCE", "always")
        .env("STATUS_INTERVAL_SECS", "5")
        .env("MATRIX_STORE_DIR", dir.join("store"))
        .spawn()
        .with_context(|| format!("starting {} under {}", binary.display(), arch.qemu()))?;
    let result = async {
        let log = crate::demo::forward_log(&mut program, &dir.join("program.log"), false)?;
        crate::demo::wait_for_line(&log, "milestone=\"first_frame\"", Duration::from_secs(120))
            .await
            .context("the program never published; its log is in .devstack/cross-cpu/")?;
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (start, ticks) = (Instant::now(), crate::soak::cpu_ticks(program.id())?);
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let used = crate::soak::cpu_ticks(program.id())?.saturating_sub(ticks);
        let share =
            used as f64 / crate::soak::TICKS_PER_SECOND / start.elapsed().as_secs_f64() * 100.0;
        let sent = log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .rev()
            .find(|l| l.contains("video sent"))
            .cloned()
            .unwrap_or_default();
        println!(
            "{} binary under {}, publishing 640x480 at 30 fps for {seconds} s: {share:.0} % of one \
             core; its last status: {}",
            arch.triple(),
            arch.qemu(),
            sent.split("video sent").nth(1).unwrap_or("none").trim()
        );
        anyhow::Ok(())
    }
    .await;
    crate::demo::stop(&mut program);
    result
}

/// The call test, with the program run as `qemu … binary`.
fn call_test(
    arch: Arch,
    layout: &devstack::Layout,
    binary: &std::path::Path,
) -> anyhow::Result<()> {
    status(
        crate::cargo::command()
            .current_dir(&layout.workspace)
            // The workspace's dependency graph, as `cargo test --workspace` builds it: nothing
            // is compiled again after a run of every test.
            .args(["test", "--workspace", "--test", "element_call"])
            // What the foreign program did, in CI's output too.
            .args(["--", "--nocapture"])
            .env(rtc_test_support::STACK_FILE_ENV, layout.stack_file())
            .env(PROGRAM_COMMAND_ENV, format!("{} {}", arch.runner(), binary.display())),
        &format!("the call test with the {} binary under {}", arch.triple(), arch.qemu()),
    )
}

/// The variable the program's tests read to run another build of it (`tests/common`).
const PROGRAM_COMMAND_ENV: &str = "RTC_JOIN_PROGRAM_COMMAND";

/// `cargo … --target <triple>` with the cross environment, building in `target_dir`; without
/// debug info when `no_debuginfo` (the `dev` profile's, which `test` inherits; the shipped
/// profile has none).
fn cargo(
    arch: Arch,
    workspace: &std::path::Path,
    target_dir: &std::path::Path,
    no_debuginfo: bool,
) -> Command {
    let triple = arch.triple();
    let under = triple.replace('-', "_");
    let upper = under.to_ascii_uppercase();
    let gnu = arch.gnu();
    let mut command = crate::cargo::command();
    command
        .current_dir(workspace)
        .env(format!("CARGO_TARGET_{upper}_LINKER"), format!("{gnu}-gcc"))
        .env(format!("CARGO_TARGET_{upper}_RUNNER"), arch.runner())
        .env(format!("CC_{under}"), format!("{gnu}-gcc"))
        .env(format!("CXX_{under}"), format!("{gnu}-g++"))
        .env(format!("AR_{under}"), format!("{gnu}-ar"))
        // pkg-config finds the target's libvpx and libopus, never the host's.
        .env("PKG_CONFIG_ALLOW_CROSS", "1")
        .env(
            format!("PKG_CONFIG_LIBDIR_{under}"),
            format!("/usr/lib/{gnu}/pkgconfig:/usr/share/pkgconfig"),
        )
        // bindgen (the v4l crate's V4L2 headers) parses the target's headers.
        .env(
            format!("BINDGEN_EXTRA_CLANG_ARGS_{under}"),
            format!("--sysroot=/usr/{gnu} -I/usr/include/{gnu}"),
        )
        .env("CARGO_BUILD_TARGET", triple)
        .env("CARGO_TARGET_DIR", target_dir);
    if no_debuginfo {
        command.env("CARGO_PROFILE_DEV_DEBUG", "false");
    }
    command
}

/// Runs `command` (printed first, as `what`), and fails unless it exits with success.
pub(crate) fn status(command: &mut Command, what: &str) -> anyhow::Result<()> {
    eprintln!("{what}: {command:?}");
    let started = std::time::Instant::now();
    let status = command.status().with_context(|| format!("{what}: cannot start cargo"))?;
    let took = started.elapsed().as_secs_f64();
    if !status.success() {
        bail!("{what} failed ({status}) after {took:.0} s");
    }
    eprintln!("{what}: done in {took:.0} s");
    Ok(())
}

/// What a build for `arch` needs on this machine: the Debian packages (installed as root) and
/// the target's standard library.
pub(crate) fn prepare(arch: Arch, workspace: &std::path::Path) -> anyhow::Result<()> {
    ensure_packages(arch)?;
    ensure_rust_target(arch, workspace)
}

/// Adds the target's standard library to the workspace's toolchain (`rust-toolchain.toml`) with
/// rustup when it is missing: a fresh machine has only the host's.
fn ensure_rust_target(arch: Arch, workspace: &std::path::Path) -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(workspace)
        .output()
        .context("rustup is needed to add the ARM standard library (rustup target add)")?;
    if String::from_utf8_lossy(&installed.stdout).lines().any(|t| t.trim() == arch.triple()) {
        return Ok(());
    }
    status(
        Command::new("rustup").args(["target", "add", arch.triple()]).current_dir(workspace),
        &format!("rustup target add {}", arch.triple()),
    )
}

/// Adds the target's Debian architecture and installs what is missing.
fn ensure_packages(arch: Arch) -> anyhow::Result<()> {
    let packages = arch.packages();
    let wanted: Vec<&str> = packages.iter().map(String::as_str).collect();
    let missing = devstack::missing_debian_packages(&wanted);
    if missing.is_empty() {
        return Ok(());
    }
    if !nix::unistd::Uid::effective().is_root() {
        bail!(
            "missing Debian packages; install them with: sudo dpkg --add-architecture {} && sudo apt-get update && \
             sudo apt-get install -y --no-install-recommends {}",
            arch.debian(),
            missing.join(" ")
        );
    }
    let foreign = Command::new("dpkg").arg("--print-foreign-architectures").output()?;
    if !String::from_utf8_lossy(&foreign.stdout).lines().any(|a| a.trim() == arch.debian()) {
        status(
            Command::new("dpkg").args(["--add-architecture", arch.debian()]),
            "dpkg --add-architecture",
        )?;
    }
    devstack::apt_install(&missing)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Subcommand,
    }

    #[derive(clap::Subcommand)]
    enum Subcommand {
        Cross(CrossOptions),
    }

    fn round_trip(options: &CrossOptions) -> CrossOptions {
        let args = std::iter::once("xtask".into()).chain(options.to_args());
        let Subcommand::Cross(parsed) = Cli::try_parse_from(args).expect("parses").command;
        parsed
    }

    #[test]
    fn options_pass_to_another_xtask_unchanged() {
        let every = CrossOptions {
            arch: Arch::Armv7,
            release: true,
            unit_tests: true,
            call: true,
            bench: Some("convert/nv12".to_owned()),
            publish_cpu: Some(30),
            no_debuginfo: true,
            build_only: true,
            target_dir: Some(PathBuf::from("/tmp/a dir/cross")),
        };
        let none = CrossOptions::ci(Arch::Aarch64, false, false, PathBuf::from("t"));
        let none = CrossOptions { no_debuginfo: false, target_dir: None, ..none };
        for options in [every, none, CrossOptions::ci(Arch::Aarch64, true, true, "x".into())] {
            assert_eq!(format!("{:?}", round_trip(&options)), format!("{options:?}"));
        }
    }
}
