//! A named network namespace of our own, `mrtc-chaos-<pid>-<n>`, with only `lo` up: a program
//! started in it (`ip netns exec`) reaches nothing but what a relay binds inside it.
//!
//! Created and deleted with `ip netns` (which bind-mounts it at `/run/netns/<name>`); sockets are
//! made inside it by a thread of its own that enters it with `setns(2)` and ends afterwards (a
//! socket stays in the namespace it was made in, whichever thread uses it later). The namespace
//! is deleted when the value is dropped; namespaces of this prefix whose process is gone
//! (a run that crashed or was killed) are deleted when the next one is created.

use std::ffi::OsStr;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context as _, bail};
use nix::sched::{CloneFlags, setns};

/// The prefix of our namespaces' names; the rest is `<pid>-<n>`.
pub(crate) const PREFIX: &str = "mrtc-chaos-";
/// Where `ip netns` keeps named namespaces.
const NETNS_DIR: &str = "/run/netns";

/// A network namespace of ours; deleted on drop.
#[derive(Debug)]
pub(crate) struct Namespace {
    name: String,
}

impl Namespace {
    /// Deletes the namespaces of crashed runs, then creates a new namespace with `lo` up.
    pub(crate) fn create() -> anyhow::Result<Namespace> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        remove_stale();
        let name =
            format!("{PREFIX}{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        // Only an earlier process with our pid can have left this name behind.
        if Path::new(NETNS_DIR).join(&name).exists() {
            delete(&name)?;
        }
        ip(["netns", "add", &name]).context("creating a network namespace (this needs root)")?;
        let namespace = Namespace { name };
        ip(["-n", &namespace.name, "link", "set", "lo", "up"])?;
        Ok(namespace)
    }

    /// Its name, for `ip netns exec`.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn path(&self) -> PathBuf {
        Path::new(NETNS_DIR).join(&self.name)
    }

    /// Runs `work` on a new thread inside the namespace (sockets it makes belong to the
    /// namespace) and returns its result; the thread ends with it.
    pub(crate) async fn inside<T, F>(&self, work: F) -> anyhow::Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> anyhow::Result<T> + Send + 'static,
    {
        let path = self.path();
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("chaos-netns".into())
            .spawn(move || {
                let entered = File::open(&path)
                    .with_context(|| format!("opening {}", path.display()))
                    .and_then(|file| {
                        setns(&file, CloneFlags::CLONE_NEWNET)
                            .with_context(|| format!("entering {}", path.display()))
                    });
                let _ = tx.send(entered.and_then(|()| work()));
            })
            .context("starting a thread for the network namespace")?;
        rx.await.context("the network namespace's thread panicked")?
    }

    /// `ip netns exec <name> <program>`: the program runs inside the namespace, as the process
    /// the command starts (`ip` execs it).
    pub(crate) fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.name]).arg(program);
        command
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        if let Err(error) = delete(&self.name) {
            eprintln!("chaos: {error:#}");
        }
    }
}

/// Runs `ip` with `args`; fails with its error output.
fn ip<const N: usize>(args: [&str; N]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running `ip` (iproute2)")?;
    if !output.status.success() {
        bail!("`ip {}`: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

fn delete(name: &str) -> anyhow::Result<()> {
    ip(["netns", "delete", name]).with_context(|| format!("deleting network namespace {name}"))
}

/// Deletes our namespaces whose process is no longer an xtask (crashed, killed, or its pid now
/// names another program); leaves those of other live runs alone.
fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return;
    };
    let ours = std::process::id();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let Some(pid) = owner(name) else {
            continue;
        };
        if pid == ours || is_xtask(pid) {
            continue;
        }
        match delete(name) {
            Ok(()) => {
                eprintln!("chaos: deleted network namespace {name}, left by a run that is gone")
            }
            Err(error) => eprintln!("chaos: {error:#}"),
        }
    }
}

/// The pid in a name of ours (`mrtc-chaos-<pid>-<n>`).
fn owner(name: &str) -> Option<u32> {
    let (pid, n) = name.strip_prefix(PREFIX)?.split_once('-')?;
    n.parse::<u32>().ok()?;
    pid.parse().ok()
}

/// Whether `pid` runs a program with our executable's file name.
fn is_xtask(pid: u32) -> bool {
    let name = |path: &Path| {
        let text = path.file_name()?.to_string_lossy().into_owned();
        Some(text.strip_suffix(" (deleted)").map(str::to_owned).unwrap_or(text))
    };
    let theirs = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
    let ours = std::env::current_exe().ok();
    match (theirs.as_deref().and_then(name), ours.as_deref().and_then(name)) {
        (Some(theirs), Some(ours)) => theirs == ours,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_names_have_an_owner() {
        assert_eq!(owner("mrtc-chaos-1234-0"), Some(1234));
        assert_eq!(owner("mrtc-chaos-1234-17"), Some(1234));
        assert_eq!(owner("mrtc-chaos-1234"), None);
        assert_eq!(owner("mrtc-chaos-x-0"), None);
        assert_eq!(owner("other-1234-0"), None);
    }

    #[test]
    fn this_process_is_an_xtask_and_init_is_not() {
        assert!(is_xtask(std::process::id()));
        // Unit tests run as `xtask-<hash>`; pid 1 is never that.
        assert!(!is_xtask(1));
    }
}
