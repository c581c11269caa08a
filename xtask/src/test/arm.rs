//! The ARM step of `cargo xtask test`: the aarch64 program and unit tests, and the armv7 program,
//! built in the background at the lowest CPU priority while the tests on the stack run (they wait
//! on browsers and timers much of the time; the builds take what they leave), then the aarch64
//! unit tests and call under qemu once the tests on the stack are done.
//!
//! The builds have a target directory of their own (`target/cross`): cargo locks the one it
//! builds in, and a build in the workspace's would hold up every `cargo test` meanwhile.

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::cross::{Arch, CrossOptions};
use crate::devstack::Layout;

/// The targets, and whether the unit tests and the call run for it.
const TARGETS: [(Arch, bool); 2] = [(Arch::Aarch64, true), (Arch::Armv7, false)];

/// [`ArmBuilds::running`] once the builds are stopped: no other is started.
const STOPPED: i32 = -1;

/// The builds running in the background.
pub(super) struct ArmBuilds {
    task: Option<tokio::task::JoinHandle<anyhow::Result<Duration>>>,
    /// The process group of the build running now: 0 when none, [`STOPPED`] once dropped.
    running: Arc<AtomicI32>,
    log: PathBuf,
    target_dir: PathBuf,
}

impl ArmBuilds {
    /// Installs what the builds need (Debian packages, the targets' standard libraries), then
    /// starts them: `cargo xtask cross <arch> --build-only`, one target after the other, under
    /// `nice -n 19`, their output in `.devstack/arm-builds.log`.
    pub(super) fn start(layout: &Layout) -> anyhow::Result<Self> {
        for (arch, _) in TARGETS {
            crate::cross::prepare(arch, &layout.workspace)?;
        }
        let target_dir = layout.target().join("cross");
        std::fs::create_dir_all(&layout.root)?;
        let log = layout.root.join("arm-builds.log");
        let file = std::fs::File::create(&log).with_context(|| log.display().to_string())?;
        let xtask = std::env::current_exe().context("where is this xtask")?;
        let running = Arc::new(AtomicI32::new(0));
        let (dir, group) = (target_dir.clone(), running.clone());
        // The builds have a process group of their own, which a Ctrl-C at the terminal does not
        // reach: stop them here, then end as the signal would have.
        let on_interrupt = running.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let group = on_interrupt.swap(STOPPED, Ordering::SeqCst);
                if group > 0 {
                    stop(group);
                }
                std::process::exit(130);
            }
        });
        eprintln!("ARM builds: started in the background, their output in {}", log.display());
        let task = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            for (arch, tested) in TARGETS {
                let options = CrossOptions::ci(arch, tested, true, dir.clone());
                if group.load(Ordering::SeqCst) == STOPPED {
                    bail!("the ARM builds were stopped");
                }
                let mut child = Command::new("nice")
                    .args(["-n", "19"])
                    .arg(&xtask)
                    .args(options.to_args())
                    // No incremental caches, as in the rest of the run: the same build then.
                    .env("CARGO_INCREMENTAL", "0")
                    .stdin(Stdio::null())
                    .stdout(file.try_clone()?)
                    .stderr(file.try_clone()?)
                    .process_group(0)
                    .spawn()
                    .context("cannot start nice")?;
                let pid = child.id() as i32;
                if group.compare_exchange(0, pid, Ordering::SeqCst, Ordering::SeqCst).is_err() {
                    stop(pid);
                }
                let status = child.wait()?;
                let _ = group.compare_exchange(pid, 0, Ordering::SeqCst, Ordering::SeqCst);
                if !status.success() {
                    bail!("the {} build failed ({status})", arch.triple());
                }
            }
            Ok(started.elapsed())
        });
        Ok(Self { task: Some(task), running, log, target_dir })
    }

    /// Waits for the builds, then runs the aarch64 unit tests and call under qemu and checks
    /// the armv7 program starts (cargo finds both builds done). Returns how long the builds took.
    pub(super) async fn finish(mut self) -> anyhow::Result<Duration> {
        let task = self.task.take().context("the ARM builds were already waited for")?;
        let waited = Instant::now();
        let built = task.await.context("the ARM builds' task")?;
        let built = match built {
            Ok(took) => took,
            Err(error) => {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                eprintln!("{}", lines[lines.len().saturating_sub(200)..].join("\n"));
                return Err(error.context(format!(
                    "the ARM builds (the end of their output above, all of it in {})",
                    self.log.display()
                )));
            }
        };
        // What the builds said of themselves: their commands, times and sizes.
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        for line in log.lines().filter(|l| l.starts_with("built ") || l.contains(": done in ")) {
            eprintln!("ARM builds: {line}");
        }
        eprintln!(
            "ARM builds: done in {:.0} s; this step waited {:.0} s for them",
            built.as_secs_f64(),
            waited.elapsed().as_secs_f64()
        );
        for (arch, tested) in TARGETS {
            let options = CrossOptions::ci(arch, tested, false, self.target_dir.clone());
            crate::cross::run(&options).await.map_err(|e| e.context(format!("cross {arch:?}")))?;
            // CI machines have little disk, and each foreign target's build takes gigabytes;
            // nothing after its own step uses it.
            remove_build_dir(&self.target_dir.join(arch.triple()))?;
        }
        remove_build_dir(&self.target_dir)?;
        Ok(built)
    }
}

impl Drop for ArmBuilds {
    /// A run that fails before the ARM step stops the builds: nothing would wait for them.
    fn drop(&mut self) {
        let group = self.running.swap(STOPPED, Ordering::SeqCst);
        if group > 0 {
            stop(group);
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Stops a build's process group (xtask, cargo, the compilers).
fn stop(group: i32) {
    let group = nix::unistd::Pid::from_raw(group);
    let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGTERM);
}

/// Removes a build directory, saying how much room that made.
fn remove_build_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let size = dir_size(dir);
    match std::fs::remove_dir_all(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => anyhow::bail!("cannot remove {}: {e}", dir.display()),
    }
    eprintln!("removed {} ({:.1} GB)", dir.display(), size as f64 / 1e9);
    Ok(())
}

/// The bytes of the files under `dir` (0 for what cannot be read).
fn dir_size(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => dir_size(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}
