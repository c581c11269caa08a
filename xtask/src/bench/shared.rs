//! What the benchmarks that compare processes share: the measuring process (`cargo xtask bench
//! measure`) and the measured child seen from the benchmark, the Python SDK's virtualenv, the
//! Rust publishing example, LiveKit rooms and tokens, medians.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use matrixrtc_auth::access_token::{Claims, VideoGrant};
use matrixrtc_auth::room_service::RoomServiceClient;
use matrixrtc_auth::secret::Secret;
use nix::sys::resource::{UsageWho, getrusage};
use nix::sys::time::TimeValLike as _;
use rtc_test_support::StackInfo;
use serde::{Deserialize, Serialize};

use crate::devstack::{self, Layout};

/// The LiveKit Python SDK version our programs are compared with.
pub(crate) const PYTHON_SDK_VERSION: &str = "1.2.1";
/// The virtualenv of the Python SDK, in `.devstack/`.
const PYTHON_VENV: &str = "bench-venv";
/// The Rust publisher: an example of this crate.
pub(crate) const RUST_CRATE: &str = "livekit-str0m";
/// The Rust publisher's example name.
pub(crate) const RUST_EXAMPLE: &str = "publish-bench";
/// Bytes in a MiB.
pub(crate) const MIB: f64 = 1024.0 * 1024.0;
/// How long a measured process may take beyond its working time (start-up, connection,
/// teardown).
pub(crate) const GRACE: Duration = Duration::from_secs(120);

/// The virtualenv's Python with the LiveKit SDK, installed if missing.
pub(crate) fn python_sdk(layout: &Layout) -> anyhow::Result<PathBuf> {
    devstack::ensure_venv(layout, PYTHON_VENV, "livekit", PYTHON_SDK_VERSION)
}

/// `cargo build --release -p livekit-str0m --example publish-bench`; returns the binary.
pub(crate) fn build_rust_publisher(layout: &Layout) -> anyhow::Result<PathBuf> {
    build_rust_example(
        layout,
        "the Rust publisher",
        RUST_EXAMPLE,
        "To measure the Python publisher alone, run `cargo xtask bench publish --only python \
         --frames FILE` with a file of raw I420 frames.",
    )
}

/// `cargo build --release -p livekit-str0m --example <example>`; returns the binary. `what`
/// names it in messages; `hint` ends the error when the build fails.
pub(crate) fn build_rust_example(
    layout: &Layout,
    what: &str,
    example: &str,
    hint: &str,
) -> anyhow::Result<PathBuf> {
    eprintln!("building {what} ({RUST_CRATE} example {example}, release)");
    let status = crate::cargo::command()
        .current_dir(&layout.workspace)
        .args(["build", "--release", "-p", RUST_CRATE, "--example", example])
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!(
            "building {what} failed ({status}; `cargo build --release -p {RUST_CRATE} \
             --example {example}`, output above). {hint}"
        );
    }
    let binary = layout.target().join("release/examples").join(example);
    if !binary.is_file() {
        bail!("cargo built {what} but {} does not exist", binary.display());
    }
    Ok(binary)
}

/// `publish-bench generate` (or `connect-bench generate`, which takes the same flags): writes
/// `count` frames of a moving test pattern with sensor-like noise to `out`; returns its path.
pub(crate) fn generate_frames(
    rust: &Path,
    (width, height): (u32, u32),
    count: u32,
    out: &Path,
) -> anyhow::Result<PathBuf> {
    eprintln!("generating {count} frames of {width}x{height} into {}", out.display());
    let status = Command::new(rust)
        .arg("generate")
        .arg("--out")
        .arg(out)
        .args(["--width", &width.to_string(), "--height", &height.to_string()])
        .args(["--frames", &count.to_string()])
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", rust.display()))?;
    if !status.success() {
        bail!("`{} generate` failed ({status})", rust.display());
    }
    Ok(out.to_path_buf())
}

/// The stack's LiveKit server, to create rooms on and mint tokens for.
pub(crate) struct LiveKitRooms<'a> {
    stack: &'a StackInfo,
    secret: Secret,
    client: RoomServiceClient,
}

impl<'a> LiveKitRooms<'a> {
    pub(crate) fn new(stack: &'a StackInfo) -> anyhow::Result<Self> {
        let url = reqwest::Url::parse(&stack.livekit_url).context("the stack's LiveKit URL")?;
        let secret = Secret::new(stack.livekit_api_secret.clone());
        let client = RoomServiceClient::new(
            &url,
            stack.livekit_api_key.clone(),
            secret.clone(),
            Duration::from_secs(10),
        )?;
        Ok(Self { stack, secret, client })
    }

    /// Creates `room` (auto-creation is off on the stack's server, as matrixrtc-auth expects).
    pub(crate) async fn create(&self, room: &str) -> anyhow::Result<()> {
        self.client
            .create_room(room)
            .await
            .with_context(|| format!("creating the LiveKit room {room}"))?;
        Ok(())
    }

    /// A join token for `identity` into `room` (publish and subscribe), valid for `validity`.
    pub(crate) fn token(&self, room: &str, identity: &str, validity: Duration) -> Secret {
        let claims = Claims::new(
            self.stack.livekit_api_key.clone(),
            identity.to_owned(),
            VideoGrant::participant(room),
            SystemTime::now(),
            validity,
        );
        Secret::new(claims.sign(&self.secret).expect("bench claims serialise"))
    }
}

pub(crate) fn unix_millis() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

/// For each key, the run with the median CPU time among the runs of that key, in `keys`' order.
pub(crate) fn median_runs<T: Clone, K: PartialEq>(
    mut runs: Vec<T>,
    keys: &[K],
    key: impl Fn(&T) -> K,
    cpu_seconds: impl Fn(&T) -> f64,
) -> Vec<T> {
    runs.sort_by(|a, b| cpu_seconds(a).total_cmp(&cpu_seconds(b)));
    keys.iter()
        .filter_map(|k| {
            let mine: Vec<&T> = runs.iter().filter(|r| key(r) == *k).collect();
            mine.get(mine.len() / 2).map(|r| (*r).clone())
        })
        .collect()
}

pub(crate) fn redact(line: &str, token: &Secret) -> String {
    line.replace(token.expose(), "[redacted]")
}

/// The resource usage of one measured process, as `cargo xtask bench measure` reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Usage {
    /// How the process ended.
    pub(crate) exit: String,
    pub(crate) success: bool,
    pub(crate) timed_out: bool,
    /// From start to reaping.
    pub(crate) wall_seconds: f64,
    pub(crate) user_seconds: f64,
    pub(crate) system_seconds: f64,
    /// Peak resident set size, KiB.
    pub(crate) max_rss_kib: i64,
}

impl Usage {
    /// User + system.
    pub(crate) fn cpu_seconds(&self) -> f64 {
        self.user_seconds + self.system_seconds
    }

    /// CPU time over wall time, in % of one core.
    pub(crate) fn cpu_percent(&self) -> f64 {
        100.0 * self.cpu_seconds() / self.wall_seconds.max(f64::EPSILON)
    }

    pub(crate) fn peak_rss_mib(&self) -> f64 {
        self.max_rss_kib as f64 * 1024.0 / MIB
    }
}

/// `cargo xtask bench measure`: runs `command`, reaps it, and writes its resource usage
/// (`getrusage(RUSAGE_CHILDREN)`, which then covers exactly this one child and whatever
/// descendants it reaped) as JSON to `report`. Kills it after `timeout`.
///
/// With `term_on_stdin_eof`, the command gets no stdin; when this process's stdin closes, the
/// command gets a SIGTERM (and is still waited for): the benchmark stops a program that runs
/// until told so, the way a service manager would.
pub(crate) fn measure(
    report: &Path,
    timeout: Duration,
    term_on_stdin_eof: bool,
    command: &[OsString],
) -> anyhow::Result<()> {
    let (program, args) = command.split_first().context("no command to measure")?;
    let started = Instant::now();
    let mut spawn = Command::new(program);
    spawn.args(args);
    if term_on_stdin_eof {
        spawn.stdin(Stdio::null());
    }
    let mut child =
        spawn.spawn().with_context(|| format!("cannot start {}", Path::new(program).display()))?;
    let stdin_closed = Arc::new(AtomicBool::new(false));
    if term_on_stdin_eof {
        let closed = stdin_closed.clone();
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            closed.store(true, Ordering::SeqCst);
        });
    }
    let mut terminated = false;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > timeout {
            child.kill()?;
            child.wait()?;
            break None;
        }
        if !terminated && stdin_closed.load(Ordering::SeqCst) {
            terminated = true;
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
            nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM)
                .context("cannot send SIGTERM to the measured command")?;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let wall_seconds = started.elapsed().as_secs_f64();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).context("getrusage")?;
    let seconds = |t: nix::sys::time::TimeVal| t.num_microseconds() as f64 / 1e6;
    let usage = Usage {
        exit: status.map_or_else(|| "killed after the timeout".to_owned(), |s| s.to_string()),
        success: status.is_some_and(|s| s.success()),
        timed_out: status.is_none(),
        wall_seconds,
        user_seconds: seconds(usage.user_time()),
        system_seconds: seconds(usage.system_time()),
        max_rss_kib: usage.max_rss(),
    };
    std::fs::write(report, serde_json::to_vec(&usage)?)
        .with_context(|| format!("writing {}", report.display()))?;
    Ok(())
}

/// A process to run under `cargo xtask bench measure`.
pub(crate) struct Measured<'a> {
    /// For messages ("Rust (livekit-str0m)").
    pub(crate) label: String,
    /// Prefixes the lines shown from its output ("rust").
    pub(crate) name: &'a str,
    pub(crate) program: &'a Path,
    pub(crate) args: &'a [OsString],
    /// Its environment, on top of ours (or of just `PATH`, `HOME` and `TMPDIR` with
    /// `clear_env`, so that none of ours leaks into a program configured by its environment).
    pub(crate) env: Vec<(&'static str, OsString)>,
    pub(crate) clear_env: bool,
    /// Redacted from whatever of its output is shown.
    pub(crate) token: &'a Secret,
    /// Where the measuring process writes its report.
    pub(crate) report: PathBuf,
    pub(crate) timeout: Duration,
    /// Whether its stderr is shown as it comes (else only when it fails).
    pub(crate) echo_stderr: bool,
    /// Whether [`Running::stop`] may end it (with a SIGTERM).
    pub(crate) stoppable: bool,
}

/// A measured process, running.
pub(crate) struct Running {
    label: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<()>>,
    lines: Arc<Mutex<Vec<String>>>,
    echo_stderr: bool,
    report: PathBuf,
    timeout: Duration,
}

/// A measured process that ended well.
pub(crate) struct Finished {
    pub(crate) usage: Usage,
    pub(crate) stdout: String,
    /// Its stderr, redacted.
    pub(crate) stderr: Vec<String>,
}

impl Measured<'_> {
    /// Starts it under the measuring process.
    pub(crate) fn spawn(self) -> anyhow::Result<Running> {
        let _ = std::fs::remove_file(&self.report);
        let xtask = std::env::current_exe().context("cannot find the xtask binary")?;
        let mut command = Command::new(xtask);
        command
            .args(["bench", "measure", "--report"])
            .arg(&self.report)
            .arg("--timeout-seconds")
            .arg(self.timeout.as_secs().to_string());
        if self.stoppable {
            command.arg("--term-on-stdin-eof");
        }
        if self.clear_env {
            command.env_clear();
            for name in ["PATH", "HOME", "TMPDIR"] {
                if let Some(value) = std::env::var_os(name) {
                    command.env(name, value);
                }
            }
        }
        let mut child = command
            .arg("--")
            .arg(self.program)
            .args(self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if self.stoppable { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start the measuring process")?;

        let prefix = format!("  [{}] ", self.name);
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (token, collected, echo) = (self.token.clone(), lines.clone(), self.echo_stderr);
        let stderr = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = redact(&line, &token);
                if echo {
                    eprintln!("{prefix}{line}");
                }
                collected.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let mut stdout_pipe = child.stdout.take().context("no stdout pipe")?;
        let stdout = std::thread::spawn(move || {
            let mut stdout = String::new();
            let _ = stdout_pipe.read_to_string(&mut stdout);
            stdout
        });
        Ok(Running {
            label: self.label,
            stdin: child.stdin.take(),
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
            lines,
            echo_stderr: self.echo_stderr,
            report: self.report,
            timeout: self.timeout,
        })
    }

    /// Runs it to its end.
    pub(crate) fn run(self) -> anyhow::Result<Finished> {
        self.spawn()?.finish()
    }
}

impl Running {
    /// Waits until its stderr has had a line containing each of `needles`; fails if it ends
    /// first or `within` passes.
    pub(crate) fn wait_for_lines(
        &mut self,
        needles: &[&str],
        within: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        loop {
            let seen = {
                let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
                needles.iter().all(|n| lines.iter().any(|l| l.contains(n)))
            };
            if seen {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} ended ({status}) before logging {needles:?}{}",
                    self.label,
                    self.log_tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not log {needles:?} within {within:?}{}",
                    self.label,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Tells it to stop (a SIGTERM from the measuring process); see [`Measured::stoppable`].
    pub(crate) fn stop(&mut self) {
        self.stdin = None;
    }

    /// Waits for it to end; its usage, stdout and stderr, or why it failed.
    pub(crate) fn finish(mut self) -> anyhow::Result<Finished> {
        let status: ExitStatus = self.child.wait()?;
        let stdout = self.stdout.take().map(|t| t.join().unwrap_or_default()).unwrap_or_default();
        if let Some(stderr) = self.stderr.take() {
            let _ = stderr.join();
        }
        let usage = read_usage(&self.report, status)?;
        let _ = std::fs::remove_file(&self.report);
        if usage.timed_out {
            bail!(
                "{} did not finish within {:?} and was killed{}",
                self.label,
                self.timeout,
                self.log_tail()
            );
        }
        if !usage.success {
            bail!("{} failed ({}){}", self.label, usage.exit, self.log_tail());
        }
        let stderr = std::mem::take(&mut *self.lines.lock().unwrap_or_else(|e| e.into_inner()));
        Ok(Finished { usage, stdout, stderr })
    }

    /// Its last lines of stderr, for an error message (unless they were shown already).
    fn log_tail(&self) -> String {
        if self.echo_stderr {
            return "; its output is above".to_owned();
        }
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let tail = lines.iter().skip(lines.len().saturating_sub(40));
        let tail: Vec<&str> = tail.map(String::as_str).collect();
        format!("; the end of its log:\n{}", tail.join("\n"))
    }
}

fn read_usage(report: &Path, status: ExitStatus) -> anyhow::Result<Usage> {
    let text = std::fs::read_to_string(report).with_context(|| {
        format!("the measuring process ({status}) wrote no report to {}", report.display())
    })?;
    serde_json::from_str(&text).context("the measuring process's report")
}
