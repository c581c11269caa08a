//! Processes of the stack: free ports, detached start, readiness, stop by process id.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Starts `command` in its own process group (so that a Ctrl-C in the terminal does not reach
/// it), output appended to `log`; returns its process id.
pub(crate) fn spawn_detached(mut command: Command, log: &Path) -> anyhow::Result<u32> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    Ok(child.id())
}

/// Reaps `pid` if it is our child and has exited (no-op otherwise).
fn reap(pid: u32) {
    let _ = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
}

/// Whether `pid` is a live process (zombies count as dead).
pub(crate) fn is_alive(pid: u32) -> bool {
    reap(pid);
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Stops `pid` with SIGTERM, then SIGKILL after `grace`. Returns whether it was running.
pub(crate) fn stop(pid: u32, grace: Duration) -> anyhow::Result<bool> {
    if !is_alive(pid) {
        return Ok(false);
    }
    let target = Pid::from_raw(pid as i32);
    kill(target, Signal::SIGTERM).with_context(|| format!("SIGTERM to {pid}"))?;
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !is_alive(pid) {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    kill(target, Signal::SIGKILL).with_context(|| format!("SIGKILL to {pid}"))?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !is_alive(pid) {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("process {pid} survived SIGKILL")
}

/// The last `lines` lines of a log file, for error messages.
pub(crate) fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `url` until it answers 2xx; fails early when `pid` dies, and after `deadline`.
pub(crate) async fn wait_until_ready(
    http: &reqwest::Client,
    name: &str,
    url: &str,
    pid: u32,
    deadline: Duration,
    log: &Path,
) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        if http.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            eprintln!("{name} is ready ({:.1} s)", started.elapsed().as_secs_f64());
            return Ok(());
        }
        if !is_alive(pid) {
            bail!(
                "{name} exited during start-up; the end of {}:\n{}",
                log.display(),
                log_tail(log, 40)
            );
        }
        if started.elapsed() > deadline {
            bail!(
                "{name} did not answer {url} within {deadline:?}; the end of {}:\n{}",
                log.display(),
                log_tail(log, 40)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
