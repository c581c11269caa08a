//! Processes of the stack: free ports, detached start, readiness, and a stop that signals only
//! what it can prove it started.
//!
//! Every service starts as the leader of its own process group. At start a record of its
//! identity goes to `.devstack/processes/<pid>.json`: the boot it started in
//! (`/proc/sys/kernel/random/boot_id`), its start time (`/proc/<pid>/stat` field 22, clock ticks
//! since boot), its executable (`/proc/<pid>/exe`) and a random token put into its environment
//! (inherited by whatever it starts). A process id is only ever signalled while the process
//! that now has it matches its record; then its whole group gets SIGTERM, and SIGKILL after a
//! grace period. A pid that names another process now, or that has no record, is left alone
//! with a message. When the leader has exited but members of its group remain, the group is
//! signalled only if every remaining member carries the token.

use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// The environment variable that carries a service's token to it and its descendants.
const TOKEN_VARIABLE: &str = "XTASK_DEVSTACK_PROCESS_TOKEN";
/// How long the group may take to go after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(5);

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Where the identity records of the stack's processes are kept.
fn records_dir() -> PathBuf {
    super::Layout::new().root.join("processes")
}

/// Starts `command` as the leader of its own process group (so that a Ctrl-C in the terminal
/// does not reach it, and so that stopping it reaches whatever it started), output appended to
/// `log`; records its identity and returns its process id.
pub(crate) fn spawn_detached(command: Command, log: &Path) -> anyhow::Result<u32> {
    spawn_recorded(command, log, &records_dir())
}

fn spawn_recorded(mut command: Command, log: &Path, records: &Path) -> anyhow::Result<u32> {
    let out = File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let token = new_token()?;
    let mut child = command
        .env(TOKEN_VARIABLE, &token)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {:?}", command.get_program()))?;
    let pid = child.id();
    // `spawn` returns after the exec succeeded: /proc already shows the new program. The child
    // is not reaped before this, so its pid cannot have been reused yet.
    let recorded = Identity::read(pid, &token).and_then(|identity| identity.save(records));
    match recorded {
        Ok(()) => {}
        // Exited already: no record, so nothing will ever signal the pid; the caller finds it
        // dead and shows its log.
        Err(_) if child.try_wait().is_ok_and(|status| status.is_some()) => return Ok(pid),
        // Unrecorded, it could never be stopped by `down`: stop it now.
        Err(error) => {
            let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGKILL);
            let _ = child.wait();
            return Err(error.context(format!(
                "recording the identity of {:?} (stopped it)",
                command.get_program()
            )));
        }
    }
    forget_the_gone(records);
    Ok(pid)
}

/// Removes the records of processes that are gone with their whole group (a stack that
/// crashed, or was stopped by other means).
fn forget_the_gone(records: &Path) {
    let Ok(entries) = std::fs::read_dir(records) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_suffix(".json")?.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(identity) = Identity::load(records, pid)
            && identity.check() == Proof::Gone
            && group_members(identity.pgid).is_empty()
        {
            Identity::forget(records, pid);
        }
    }
}

/// 128 random bits, hex.
fn new_token() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What proves that a process id still names the process the stack started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Identity {
    pid: u32,
    /// Its process group; it leads it (`process_group(0)`), so it equals `pid`.
    pgid: u32,
    /// The kernel's id of the boot it started in (start times count from boot).
    boot_id: String,
    /// Clock ticks from boot to its start (`/proc/<pid>/stat` field 22).
    start_ticks: u64,
    /// Its executable when it started.
    exe: PathBuf,
    /// In its environment as [`TOKEN_VARIABLE`], and so in that of whatever it starts.
    token: String,
}

/// How a record compares with the process that has its pid now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Proof {
    /// Alive, and the process the record describes.
    Proven,
    /// No live process has the pid (a zombie counts as none).
    Gone,
    /// A live process has the pid but it is not the recorded one, or cannot be shown to be;
    /// why.
    Other(String),
}

/// The fields of `/proc/<pid>/stat` that matter here.
#[derive(Debug, Clone, Copy)]
struct Stat {
    /// The state letter (field 3).
    state: char,
    /// The process group (field 5).
    pgrp: u32,
    /// Clock ticks from boot to its start (field 22).
    start_ticks: u64,
}

impl Stat {
    fn read(pid: u32) -> Option<Stat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Self::parse(&text)
    }

    fn parse(text: &str) -> Option<Stat> {
        // The command name, in parentheses, may itself hold spaces and parentheses.
        let (_, rest) = text.rsplit_once(')')?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // `fields[0]` is field 3.
        Some(Stat {
            state: fields.first()?.chars().next()?,
            pgrp: fields.get(2)?.parse().ok()?,
            start_ticks: fields.get(19)?.parse().ok()?,
        })
    }

    fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

fn boot_id() -> anyhow::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .context("reading the boot id")?
        .trim()
        .to_owned())
}

/// The executable of `pid`, without the " (deleted)" the kernel adds once the file is replaced
/// (a rebuilt or upgraded binary is still the same program).
fn exe(pid: u32) -> Option<PathBuf> {
    let link = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let text = link.to_string_lossy();
    Some(PathBuf::from(text.strip_suffix(" (deleted)").unwrap_or(&text)))
}

/// Whether `pid`'s environment holds `token` as [`TOKEN_VARIABLE`].
fn carries_token(pid: u32, token: &str) -> bool {
    let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let wanted = format!("{TOKEN_VARIABLE}={token}");
    environ.split(|b| *b == 0).any(|entry| entry == wanted.as_bytes())
}

impl Identity {
    /// The identity of the live process `pid`, with the token it was given.
    fn read(pid: u32, token: &str) -> anyhow::Result<Identity> {
        let stat = Stat::read(pid).with_context(|| format!("no /proc/{pid}/stat"))?;
        let exe = exe(pid).with_context(|| format!("no /proc/{pid}/exe"))?;
        Ok(Identity {
            pid,
            pgid: stat.pgrp,
            boot_id: boot_id()?,
            start_ticks: stat.start_ticks,
            exe,
            token: token.to_owned(),
        })
    }

    fn path(records: &Path, pid: u32) -> PathBuf {
        records.join(format!("{pid}.json"))
    }

    fn save(&self, records: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(records)
            .with_context(|| format!("creating {}", records.display()))?;
        let path = Self::path(records, self.pid);
        std::fs::write(&path, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The record of `pid`, if there is a readable one.
    fn load(records: &Path, pid: u32) -> Option<Identity> {
        let text = std::fs::read_to_string(Self::path(records, pid)).ok()?;
        serde_json::from_str::<Identity>(&text).ok().filter(|identity| identity.pid == pid)
    }

    fn forget(records: &Path, pid: u32) {
        let _ = std::fs::remove_file(Self::path(records, pid));
    }

    /// Whether the process that has the recorded pid now is the recorded one.
    fn check(&self) -> Proof {
        let Some(stat) = Stat::read(self.pid) else {
            return Proof::Gone;
        };
        if !stat.is_live() {
            return Proof::Gone;
        }
        let pid = self.pid;
        match boot_id() {
            Ok(boot) if boot == self.boot_id => {}
            Ok(_) => return Proof::Other(format!("pid {pid} was recorded before the last boot")),
            Err(error) => return Proof::Other(format!("{error:#}")),
        }
        if stat.start_ticks != self.start_ticks {
            return Proof::Other(format!(
                "pid {pid} is now a process that started at tick {} after boot, not at tick {} \
                 as the recorded one did",
                stat.start_ticks, self.start_ticks
            ));
        }
        match exe(pid) {
            Some(exe) if exe == self.exe => {}
            Some(exe) => {
                return Proof::Other(format!(
                    "pid {pid} runs {}, not {} as recorded",
                    exe.display(),
                    self.exe.display()
                ));
            }
            None => return Proof::Other(format!("the executable of pid {pid} cannot be read")),
        }
        if stat.pgrp != self.pgid {
            return Proof::Other(format!(
                "pid {pid} is now in process group {}, not in its own group {}",
                stat.pgrp, self.pgid
            ));
        }
        Proof::Proven
    }
}

/// The live (not zombie) processes of process group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| Stat::read(*pid).is_some_and(|s| s.pgrp == pgid && s.is_live()))
        .collect()
}

/// Reaps `pid` if it is our child and has exited (no-op otherwise).
fn reap(pid: u32) {
    let _ = waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG));
}

/// Whether `pid` is alive and still the process the stack started as it (see [`Identity`]); a
/// pid without a record is not.
pub(crate) fn is_alive(pid: u32) -> bool {
    reap(pid);
    Identity::load(&records_dir(), pid).is_some_and(|identity| identity.check() == Proof::Proven)
}

/// Stops the process group that `pid` leads, if `pid` is still the process the stack started
/// (or, when it has exited, if every process left in its group carries its token): SIGTERM to
/// the group, then SIGKILL after `grace`. Anything it cannot prove is its own is left alone,
/// with a message. Returns whether it signalled anything.
pub(crate) fn stop(pid: u32, grace: Duration) -> anyhow::Result<bool> {
    stop_recorded(pid, Some(grace), &records_dir())
}

/// Kills the process group that `pid` leads at once (SIGKILL, no SIGTERM first: a crash), if
/// `pid` is provably the process the stack started, and waits until it is gone. Returns
/// whether it signalled anything.
pub(crate) fn kill_now(pid: u32) -> anyhow::Result<bool> {
    stop_recorded(pid, None, &records_dir())
}

/// [`stop`] with a grace period, or [`kill_now`] without.
fn stop_recorded(pid: u32, grace: Option<Duration>, records: &Path) -> anyhow::Result<bool> {
    reap(pid);
    let Some(identity) = Identity::load(records, pid) else {
        eprintln!(
            "pid {pid}: nothing records it as a process of the stack (started by an older \
             version of this tool?), so it is left alone; if it is one, stop its group with \
             `kill -TERM -- -{pid}`"
        );
        return Ok(false);
    };
    let pgid = identity.pgid;
    match identity.check() {
        Proof::Proven => {}
        Proof::Other(why) => {
            eprintln!("{why}: it is no longer the process the stack started, so it is left alone");
            Identity::forget(records, pid);
            return Ok(false);
        }
        Proof::Gone => {
            // A pid is not handed out again while a process group of that id has members, so
            // the members are of the group that pid led; still, signal them only if every one
            // carries the token of the recorded service.
            let members = group_members(pgid);
            if members.is_empty() {
                Identity::forget(records, pid);
                return Ok(false);
            }
            let strangers: Vec<u32> =
                members.iter().copied().filter(|m| !carries_token(*m, &identity.token)).collect();
            if !strangers.is_empty() {
                eprintln!(
                    "pid {pid} has exited; of the processes left in its group {pgid}, {strangers:?} \
                     cannot be shown to be the stack's, so the group is left alone"
                );
                Identity::forget(records, pid);
                return Ok(false);
            }
            eprintln!("pid {pid} has exited; stopping what is left of its group: {members:?}");
        }
    }
    stop_group(pid, pgid, grace)?;
    Identity::forget(records, pid);
    Ok(true)
}

/// SIGTERM to group `pgid`, SIGKILL once `grace` has passed (at once without one), until no
/// member is alive.
fn stop_group(leader: u32, pgid: u32, grace: Option<Duration>) -> anyhow::Result<()> {
    let group = Pid::from_raw(-(pgid as i32));
    let gone = || {
        reap(leader);
        group_members(pgid).is_empty()
    };
    let wait = |within: Duration| {
        let deadline = Instant::now() + within;
        loop {
            if gone() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    if let Some(grace) = grace {
        match kill(group, Signal::SIGTERM) {
            Ok(()) => {}
            Err(nix::errno::Errno::ESRCH) => return Ok(()),
            Err(error) => return Err(error).with_context(|| format!("SIGTERM to group {pgid}")),
        }
        if wait(grace) {
            return Ok(());
        }
        eprintln!("process group {pgid} is still there {grace:?} after SIGTERM; sending SIGKILL");
    }
    match kill(group, Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(error) => return Err(error).with_context(|| format!("SIGKILL to group {pgid}")),
    }
    if wait(KILL_WAIT) {
        return Ok(());
    }
    bail!("process group {pgid} survived SIGKILL: {:?}", group_members(pgid))
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    /// A folder of its own for each test's records and logs.
    fn scratch() -> PathBuf {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("xtask-process-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch folder");
        dir
    }

    /// Starts `program` with `args` as the stack starts a service; returns its pid.
    fn start(program: &str, args: &[&str], dir: &Path) -> u32 {
        let mut command = Command::new(program);
        command.args(args);
        spawn_recorded(command, &dir.join("log"), dir).expect("start")
    }

    /// Starts `sh -c script` as the stack starts a service; returns its pid.
    fn start_sh(script: &str, dir: &Path) -> u32 {
        start("sh", &["-c", script], dir)
    }

    /// Waits until `check` holds (at most 5 s).
    fn eventually(check: impl Fn() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if check() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        check()
    }

    fn kill_group(pgid: u32) {
        let _ = kill(Pid::from_raw(-(pgid as i32)), Signal::SIGKILL);
    }

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let line = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    987654 1000 10 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
        let stat = Stat::parse(line).expect("parses");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.pgrp, 4242);
        assert_eq!(stat.start_ticks, 987_654);
        assert!(Stat::parse("4242 (no closing parenthesis S 1").is_none());
    }

    #[test]
    fn a_recorded_process_proves_and_a_wrong_record_does_not() {
        let dir = scratch();
        let pid = start("sleep", &["30"], &dir);
        let identity = Identity::load(&dir, pid).expect("recorded");
        assert_eq!(identity.pgid, pid, "it leads its own process group");
        assert!(identity.exe.ends_with("sleep"), "{:?}", identity.exe);
        // The kernel shows the new environment a moment after the exec (and after `spawn`
        // returned).
        assert!(eventually(|| carries_token(pid, &identity.token)));
        assert_eq!(identity.check(), Proof::Proven);

        let later = Identity { start_ticks: identity.start_ticks + 1, ..identity.clone() };
        assert!(matches!(later.check(), Proof::Other(_)), "{:?}", later.check());
        let other_boot = Identity { boot_id: "another boot".into(), ..identity.clone() };
        assert!(matches!(other_boot.check(), Proof::Other(_)));
        let other_program = Identity { exe: "/nonexistent/program".into(), ..identity.clone() };
        assert!(matches!(other_program.check(), Proof::Other(_)));
        // Our own pid is a live process, but not the recorded one.
        let us = Identity { pid: std::process::id(), ..identity.clone() };
        assert!(matches!(us.check(), Proof::Other(_)));

        kill_group(pid);
        assert!(eventually(|| {
            reap(pid);
            identity.check() == Proof::Gone
        }));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn stop_ends_the_whole_group() {
        let dir = scratch();
        // A leader and a child of it, which ignores SIGTERM (so SIGKILL has to follow).
        let pid = start_sh("sh -c 'trap \"\" TERM; sleep 30' & sleep 30; wait", &dir);
        assert!(eventually(|| group_members(pid).len() >= 3), "{:?}", group_members(pid));
        assert!(stop_recorded(pid, Some(Duration::from_millis(300)), &dir).expect("stops"));
        assert!(group_members(pid).is_empty(), "{:?}", group_members(pid));
        assert!(Identity::load(&dir, pid).is_none(), "the record is removed");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn kill_now_sends_no_sigterm_first() {
        let dir = scratch();
        // A shell that would leave a mark on SIGTERM; it gets SIGKILL only.
        let mark = dir.join("got-sigterm");
        let pid = start_sh(&format!("trap 'touch {}' TERM; sleep 30 & wait", mark.display()), &dir);
        assert!(eventually(|| group_members(pid).len() >= 2), "{:?}", group_members(pid));
        let started = Instant::now();
        assert!(stop_recorded(pid, None, &dir).expect("kills"));
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(group_members(pid).is_empty(), "{:?}", group_members(pid));
        assert!(!mark.exists(), "no SIGTERM came before the SIGKILL");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn records_of_processes_gone_with_their_group_are_dropped_at_the_next_start() {
        let dir = scratch();
        let gone = start("sleep", &["0.1"], &dir);
        assert!(eventually(|| {
            reap(gone);
            Identity::load(&dir, gone).is_some_and(|i| i.check() == Proof::Gone)
        }));
        let live = start("sleep", &["30"], &dir);
        assert!(Identity::load(&dir, gone).is_none());
        assert!(Identity::load(&dir, live).is_some());
        kill_group(live);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_pid_that_names_another_process_is_left_alone() {
        let dir = scratch();
        let pid = start("sleep", &["30"], &dir);
        let identity = Identity::load(&dir, pid).expect("recorded");
        // As if the recorded process had exited and its pid gone to this one.
        Identity { start_ticks: identity.start_ticks.saturating_sub(1), ..identity }
            .save(&dir)
            .expect("saves");
        assert!(!stop_recorded(pid, Some(Duration::from_secs(1)), &dir).expect("no error"));
        reap(pid);
        assert_eq!(Stat::read(pid).map(|s| s.is_live()), Some(true), "not signalled");
        assert!(Identity::load(&dir, pid).is_none(), "the stale record is dropped");

        // And a pid with no record at all.
        assert!(!stop_recorded(pid, Some(Duration::from_secs(1)), &dir).expect("no error"));
        reap(pid);
        assert_eq!(Stat::read(pid).map(|s| s.is_live()), Some(true), "not signalled");
        kill_group(pid);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn what_is_left_of_a_group_is_stopped_only_if_it_carries_the_token() {
        let dir = scratch();
        // The leader exits soon; its child stays in the group, with the token.
        let pid = start_sh("sleep 30 & sleep 0.2", &dir);
        assert!(eventually(|| {
            reap(pid);
            Identity::load(&dir, pid).is_some_and(|i| i.check() == Proof::Gone)
                && group_members(pid).len() == 1
        }));
        assert!(stop_recorded(pid, Some(Duration::from_secs(2)), &dir).expect("stops"));
        assert!(group_members(pid).is_empty());

        // The same, but the child has an environment of its own: not provably ours.
        let pid = start_sh("env -i sleep 30 & sleep 0.2", &dir);
        assert!(eventually(|| {
            reap(pid);
            Identity::load(&dir, pid).is_some_and(|i| i.check() == Proof::Gone)
                && group_members(pid).len() == 1
        }));
        assert!(!stop_recorded(pid, Some(Duration::from_secs(1)), &dir).expect("no error"));
        assert_eq!(group_members(pid).len(), 1, "left alone");
        kill_group(pid);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
