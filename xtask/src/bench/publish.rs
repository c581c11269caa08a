//! `cargo xtask bench publish`: what publishing video costs, this workspace's Rust client
//! (`livekit-str0m`) against the official LiveKit Python SDK (which bundles libwebrtc).
//!
//! Both publishers get the same raw I420 frames (written once by the Rust example), the same
//! pacing (frame n at start + n/fps; a frame more than one interval late is skipped), and the
//! same VP8 limits (one layer, a maximum bitrate, a maximum frame rate; each client tunes libvpx
//! its own way), and publish one after the other to the local stack's LiveKit server, each into
//! a room of its own. Nobody subscribes.
//!
//! Each publisher runs as the only child of a small measuring process (`cargo xtask bench
//! measure`, hidden) that reaps it and then reads `getrusage(RUSAGE_CHILDREN)`: the kernel's own
//! account of the whole process's CPU time (user + system, every thread) and peak resident set
//! size, with no sampling. Whole process means start-up, connection and teardown included.
//!
//! The results go to stdout as a table and to `target/bench/publish.json`. The access tokens
//! reach the publishers through their environment only, and are redacted from their output.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
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

/// The LiveKit Python SDK version the Rust client is compared with.
const PYTHON_SDK_VERSION: &str = "1.2.1";
/// The virtualenv of the Python SDK, in `.devstack/`.
const PYTHON_VENV: &str = "bench-venv";
/// The Python publisher, relative to the workspace.
const PYTHON_SCRIPT: &str = "xtask/bench/livekit_publish.py";
/// The Rust publisher: an example of this crate.
const RUST_CRATE: &str = "livekit-str0m";
/// The Rust publisher's example name.
const RUST_EXAMPLE: &str = "publish-bench";
/// How many distinct frames the frames file holds (the publishers loop over them).
const FRAME_COUNT: u32 = 60;
/// Bytes in a MiB.
const MIB: f64 = 1024.0 * 1024.0;
/// How long a publisher may take beyond its publishing time (start-up, connection, teardown).
const GRACE: Duration = Duration::from_secs(120);

/// Options of `cargo xtask bench publish`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct PublishOptions {
    /// How long each publisher publishes, in seconds.
    #[arg(long, default_value_t = 30)]
    seconds: u32,
    /// Frame width in pixels (even).
    #[arg(long, default_value_t = 1280)]
    width: u32,
    /// Frame height in pixels (even).
    #[arg(long, default_value_t = 720)]
    height: u32,
    /// Frames per second.
    #[arg(long, default_value_t = 30)]
    fps: u32,
    /// Maximum VP8 bitrate, bit/s.
    #[arg(long, default_value_t = 2_000_000)]
    bitrate: u32,
    /// Run only one of the two publishers (default: both, Rust first).
    #[arg(long, value_enum)]
    only: Option<Publisher>,
    /// Use this file of raw I420 frames instead of generating one with the Rust example.
    #[arg(long)]
    frames: Option<PathBuf>,
    /// Run every publisher this many times, in reversed order every other round, and report
    /// each one's median run (the first run after the stack starts costs more).
    #[arg(long, default_value_t = 1)]
    rounds: u32,
}

impl PublishOptions {
    fn check(&self) -> anyhow::Result<()> {
        if self.width == 0 || self.height == 0 || self.width % 2 == 1 || self.height % 2 == 1 {
            bail!("--width and --height must be positive and even (I420)");
        }
        if self.seconds == 0 || self.fps == 0 || self.bitrate == 0 || self.rounds == 0 {
            bail!("--seconds, --fps, --bitrate and --rounds must be positive");
        }
        Ok(())
    }

    /// Bytes of one I420 frame.
    fn frame_bytes(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height) * 3 / 2
    }

    fn publishers(&self) -> Vec<Publisher> {
        match self.only {
            Some(one) => vec![one],
            None => vec![Publisher::Rust, Publisher::RustE2ee, Publisher::Python],
        }
    }

    /// The publishing arguments both publishers take.
    fn publish_args(&self, frames: &Path) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--frames".into(), frames.into()];
        for (name, value) in [
            ("--width", self.width),
            ("--height", self.height),
            ("--fps", self.fps),
            ("--seconds", self.seconds),
            ("--bitrate", self.bitrate),
        ] {
            args.push(name.into());
            args.push(value.to_string().into());
        }
        args
    }
}

/// One of the two publishers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Publisher {
    /// This workspace's client (`livekit-str0m`).
    Rust,
    /// The same, encrypting every frame as Element Call does (LiveKit's GCM frame format).
    RustE2ee,
    /// The official LiveKit Python SDK.
    Python,
}

impl Publisher {
    fn label(self) -> String {
        match self {
            Self::Rust => format!("Rust ({RUST_CRATE})"),
            Self::RustE2ee => format!("Rust ({RUST_CRATE}), E2EE"),
            Self::Python => format!("Python (livekit {PYTHON_SDK_VERSION})"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Rust => "rust",
            Self::RustE2ee => "rust-e2ee",
            Self::Python => "python",
        }
    }
}

/// The programs of one benchmark run.
#[derive(Debug)]
struct Programs {
    /// The Rust example, if it was built.
    rust: Option<PathBuf>,
    /// The virtualenv's Python, if a Python run is due.
    python: Option<PathBuf>,
}

/// `cargo xtask bench publish`: prepares both publishers and the frames, starts the stack
/// unless it runs (and stops it again if so), measures each publisher, prints and saves the
/// results.
pub(crate) async fn publish(options: &PublishOptions) -> anyhow::Result<()> {
    options.check()?;
    let layout = Layout::new();
    let out_dir = layout.target().join("bench");
    std::fs::create_dir_all(&out_dir)?;

    devstack::ensure_build_packages()?;
    let programs = prepare_programs(&layout, options)?;
    let frames = match &options.frames {
        Some(frames) => frames.clone(),
        None => {
            let rust = programs.rust.as_deref().context("the Rust example was not built")?;
            generate_frames(rust, options, &out_dir.join("frames.i420"))?
        }
    };
    let frame_count = check_frames(&frames, options)?;

    let was_running = devstack::is_running(&layout).await;
    let stack = devstack::up().await?;
    let results = measure_all(&layout, &stack, &programs, options, &frames).await;
    if !was_running {
        devstack::down()?;
    }
    let results = results?;

    let report = Report::new(options, frame_count, results);
    print_report(&report);
    let path = out_dir.join("publish.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!();
    println!("written to {}", path.display());
    Ok(())
}

/// Installs the Python SDK and builds the Rust example, as far as the run needs them.
fn prepare_programs(layout: &Layout, options: &PublishOptions) -> anyhow::Result<Programs> {
    let publishers = options.publishers();
    let python = if publishers.contains(&Publisher::Python) {
        Some(devstack::ensure_venv(layout, PYTHON_VENV, "livekit", PYTHON_SDK_VERSION)?)
    } else {
        None
    };
    // The Rust example also writes the frames file.
    let rust = if publishers.contains(&Publisher::Rust)
        || publishers.contains(&Publisher::RustE2ee)
        || options.frames.is_none()
    {
        Some(build_rust_publisher(layout)?)
    } else {
        None
    };
    Ok(Programs { rust, python })
}

/// `cargo build --release -p livekit-str0m --example publish-bench`; returns the binary.
fn build_rust_publisher(layout: &Layout) -> anyhow::Result<PathBuf> {
    eprintln!("building the Rust publisher ({RUST_CRATE} example {RUST_EXAMPLE}, release)");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .current_dir(&layout.workspace)
        .args(["build", "--release", "-p", RUST_CRATE, "--example", RUST_EXAMPLE])
        .status()
        .context("cannot run cargo build")?;
    if !status.success() {
        bail!(
            "building the Rust publisher failed ({status}; `cargo build --release -p {RUST_CRATE} \
             --example {RUST_EXAMPLE}`, output above). To measure the Python publisher alone, \
             run `cargo xtask bench publish --only python --frames FILE` with a file of raw I420 \
             frames."
        );
    }
    let binary = layout.target().join("release/examples").join(RUST_EXAMPLE);
    if !binary.is_file() {
        bail!("cargo built the Rust publisher but {} does not exist", binary.display());
    }
    Ok(binary)
}

/// `publish-bench generate`: writes the frames file; returns its path.
fn generate_frames(rust: &Path, options: &PublishOptions, out: &Path) -> anyhow::Result<PathBuf> {
    eprintln!(
        "generating {FRAME_COUNT} frames of {}x{} into {}",
        options.width,
        options.height,
        out.display()
    );
    let status = Command::new(rust)
        .arg("generate")
        .arg("--out")
        .arg(out)
        .args(["--width", &options.width.to_string(), "--height", &options.height.to_string()])
        .args(["--frames", &FRAME_COUNT.to_string()])
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {}", rust.display()))?;
    if !status.success() {
        bail!("`{} generate` failed ({status})", rust.display());
    }
    Ok(out.to_path_buf())
}

/// How many frames `frames` holds; fails unless it is a whole, non-zero number of frames.
fn check_frames(frames: &Path, options: &PublishOptions) -> anyhow::Result<u64> {
    let len = std::fs::metadata(frames)
        .with_context(|| format!("the frames file {}", frames.display()))?
        .len();
    let frame = options.frame_bytes();
    if len == 0 || len % frame != 0 {
        bail!(
            "{} holds {len} bytes, not a whole number of {}x{} I420 frames ({frame} bytes each)",
            frames.display(),
            options.width,
            options.height
        );
    }
    Ok(len / frame)
}

/// Runs and measures each publisher in turn.
async fn measure_all(
    layout: &Layout,
    stack: &StackInfo,
    programs: &Programs,
    options: &PublishOptions,
    frames: &Path,
) -> anyhow::Result<Vec<PublisherResult>> {
    let livekit_url = reqwest::Url::parse(&stack.livekit_url).context("the stack's LiveKit URL")?;
    let secret = Secret::new(stack.livekit_api_secret.clone());
    let rooms = RoomServiceClient::new(
        &livekit_url,
        stack.livekit_api_key.clone(),
        secret.clone(),
        Duration::from_secs(10),
    )?;
    let mut results = Vec::new();
    let rounds = (0..options.rounds).flat_map(|round| {
        let mut order = options.publishers();
        if round % 2 == 1 {
            order.reverse();
        }
        order
    });
    for publisher in rounds {
        let (program, mut args): (&Path, Vec<OsString>) = match publisher {
            Publisher::Rust => {
                let rust = programs.rust.as_deref().context("the Rust example was not built")?;
                (rust, vec!["publish".into()])
            }
            Publisher::RustE2ee => {
                let rust = programs.rust.as_deref().context("the Rust example was not built")?;
                (rust, vec!["publish".into(), "--e2ee".into(), "1".into()])
            }
            Publisher::Python => {
                let python = programs.python.as_deref().context("no Python virtualenv")?;
                let script = layout.workspace.join(PYTHON_SCRIPT);
                (python, vec![script.into()])
            }
        };
        args.extend(options.publish_args(frames));

        // Auto-creation is off on the stack's server: create the room first, as matrixrtc-auth does.
        let room = format!("bench-publish-{}-{}", publisher.name(), unix_millis());
        rooms
            .create_room(&room)
            .await
            .with_context(|| format!("creating the LiveKit room {room}"))?;
        let token = join_token(stack, &secret, &room, publisher, options.seconds);

        eprintln!(
            "publishing with {} for {} s into room {room}",
            publisher.label(),
            options.seconds
        );
        let timeout = Duration::from_secs(options.seconds.into()) + GRACE;
        let run = Run {
            publisher,
            program,
            args: &args,
            livekit_url: &stack.livekit_url,
            token: &token,
            report: layout.target().join("bench").join(format!("usage-{}.json", publisher.name())),
        };
        let (usage, output) = run.measured(timeout)?;
        results.push(PublisherResult::new(publisher, &usage, &output));
    }
    Ok(median_runs(results, &options.publishers()))
}

/// Each publisher's run with the median CPU time.
fn median_runs(mut runs: Vec<PublisherResult>, publishers: &[Publisher]) -> Vec<PublisherResult> {
    runs.sort_by(|a, b| a.cpu_seconds.total_cmp(&b.cpu_seconds));
    publishers
        .iter()
        .filter_map(|p| {
            let mine: Vec<&PublisherResult> = runs.iter().filter(|r| r.publisher == *p).collect();
            mine.get(mine.len() / 2).map(|r| (*r).clone())
        })
        .collect()
}

/// A join token that lets the benchmark identity of `publisher` publish into `room`.
fn join_token(
    stack: &StackInfo,
    secret: &Secret,
    room: &str,
    publisher: Publisher,
    seconds: u32,
) -> Secret {
    let validity = Duration::from_secs(seconds.into()) + GRACE + Duration::from_secs(600);
    let claims = Claims::new(
        stack.livekit_api_key.clone(),
        format!("bench-{}", publisher.name()),
        VideoGrant::participant(room),
        SystemTime::now(),
        validity,
    );
    Secret::new(claims.sign(secret))
}

fn unix_millis() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()
}

/// One publisher process to run and measure.
struct Run<'a> {
    publisher: Publisher,
    program: &'a Path,
    args: &'a [OsString],
    livekit_url: &'a str,
    token: &'a Secret,
    /// Where the measuring process writes its report.
    report: PathBuf,
}

impl Run<'_> {
    /// Runs the publisher under `cargo xtask bench measure`; returns its resource usage and its
    /// JSON line. Its stderr (and any other stdout line) is shown with the token redacted.
    fn measured(&self, timeout: Duration) -> anyhow::Result<(Usage, PublisherOutput)> {
        let report = &self.report;
        let _ = std::fs::remove_file(report);
        let xtask = std::env::current_exe().context("cannot find the xtask binary")?;
        let mut child = Command::new(xtask)
            .args(["bench", "measure", "--report"])
            .arg(report)
            .arg("--timeout-seconds")
            .arg(timeout.as_secs().to_string())
            .arg("--")
            .arg(self.program)
            .args(self.args)
            .env("LIVEKIT_URL", self.livekit_url)
            .env("LIVEKIT_TOKEN", self.token.expose())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot start the measuring process")?;

        let prefix = format!("  [{}] ", self.publisher.name());
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let (token, stderr_prefix) = (self.token.clone(), prefix.clone());
        let forward = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{stderr_prefix}{}", redact(&line, &token));
            }
        });
        let mut stdout = String::new();
        child.stdout.take().context("no stdout pipe")?.read_to_string(&mut stdout)?;
        let status = child.wait()?;
        let _ = forward.join();

        let output = self.parse_stdout(&stdout, &prefix);
        let usage = read_usage(report, status)?;
        let _ = std::fs::remove_file(report);
        if usage.timed_out {
            bail!("{} did not finish within {timeout:?} and was killed", self.publisher.label());
        }
        if !usage.success {
            bail!("{} failed ({}); its output is above", self.publisher.label(), usage.exit);
        }
        let output = output.with_context(|| {
            format!(
                "{} printed no result line (JSON with frames_sent, late, seconds)",
                self.publisher.label()
            )
        })?;
        Ok((usage, output))
    }

    /// The last JSON result line of the publisher's stdout; shows the other lines.
    fn parse_stdout(&self, stdout: &str, prefix: &str) -> Option<PublisherOutput> {
        let mut result = None;
        for line in stdout.lines() {
            match serde_json::from_str::<PublisherOutput>(line.trim()) {
                Ok(output) => result = Some(output),
                Err(_) => eprintln!("{prefix}{}", redact(line, self.token)),
            }
        }
        result
    }
}

fn read_usage(report: &Path, status: ExitStatus) -> anyhow::Result<Usage> {
    let text = std::fs::read_to_string(report).with_context(|| {
        format!("the measuring process ({status}) wrote no report to {}", report.display())
    })?;
    serde_json::from_str(&text).context("the measuring process's report")
}

fn redact(line: &str, token: &Secret) -> String {
    line.replace(token.expose(), "[redacted]")
}

/// What a publisher prints on its last line.
#[derive(Debug, Clone, Deserialize)]
struct PublisherOutput {
    frames_sent: u64,
    late: u64,
    seconds: f64,
}

/// The resource usage of one measured process, as `cargo xtask bench measure` reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Usage {
    /// How the process ended.
    exit: String,
    success: bool,
    timed_out: bool,
    /// From start to reaping.
    wall_seconds: f64,
    user_seconds: f64,
    system_seconds: f64,
    /// Peak resident set size, KiB.
    max_rss_kib: i64,
}

/// `cargo xtask bench measure`: runs `command`, reaps it, and writes its resource usage
/// (`getrusage(RUSAGE_CHILDREN)`, which then covers exactly this one child and whatever
/// descendants it reaped) as JSON to `report`. Kills it after `timeout`.
pub(crate) fn measure(
    report: &Path,
    timeout: Duration,
    command: &[OsString],
) -> anyhow::Result<()> {
    let (program, args) = command.split_first().context("no command to measure")?;
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .spawn()
        .with_context(|| format!("cannot start {}", Path::new(program).display()))?;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() > timeout {
            child.kill()?;
            child.wait()?;
            break None;
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

/// The figures of one publisher.
#[derive(Debug, Clone, Serialize)]
struct PublisherResult {
    publisher: Publisher,
    /// User + system CPU time of the whole process.
    cpu_seconds: f64,
    user_seconds: f64,
    system_seconds: f64,
    /// From start to exit.
    wall_seconds: f64,
    /// CPU time over wall time, in % of one core.
    cpu_percent: f64,
    peak_rss_mib: f64,
    frames_sent: u64,
    late: u64,
    /// How long the publisher published (its own measure).
    publish_seconds: f64,
}

impl PublisherResult {
    fn new(publisher: Publisher, usage: &Usage, output: &PublisherOutput) -> Self {
        let cpu_seconds = usage.user_seconds + usage.system_seconds;
        Self {
            publisher,
            cpu_seconds,
            user_seconds: usage.user_seconds,
            system_seconds: usage.system_seconds,
            wall_seconds: usage.wall_seconds,
            cpu_percent: 100.0 * cpu_seconds / usage.wall_seconds.max(f64::EPSILON),
            peak_rss_mib: usage.max_rss_kib as f64 * 1024.0 / MIB,
            frames_sent: output.frames_sent,
            late: output.late,
            publish_seconds: output.seconds,
        }
    }
}

/// Rust over Python, for each figure.
#[derive(Debug, Clone, Serialize)]
struct Ratios {
    cpu_seconds: f64,
    cpu_percent: f64,
    peak_rss: f64,
    frames_sent: f64,
}

/// What `target/bench/publish.json` holds.
#[derive(Debug, Clone, Serialize)]
struct Report {
    width: u32,
    height: u32,
    fps: u32,
    seconds: u32,
    bitrate: u32,
    codec: &'static str,
    /// Distinct frames in the frames file (looped over).
    distinct_frames: u64,
    /// Runs per publisher; each one's median run is reported.
    rounds: u32,
    /// The size of the frames file, which each publisher holds in memory.
    frames_mib: f64,
    livekit_server: &'static str,
    python_sdk: String,
    /// Seconds since the Unix epoch.
    timestamp: u64,
    results: Vec<PublisherResult>,
    /// Rust / Python, when both ran.
    ratios_rust_over_python: Option<Ratios>,
    /// CPU time of the encrypting Rust run over the clear one, when both ran.
    e2ee_cpu_over_clear: Option<f64>,
}

impl Report {
    fn new(options: &PublishOptions, distinct_frames: u64, results: Vec<PublisherResult>) -> Self {
        let find = |p| results.iter().find(|r| r.publisher == p);
        let ratios = find(Publisher::Rust).zip(find(Publisher::Python)).map(|(r, p)| Ratios {
            cpu_seconds: r.cpu_seconds / p.cpu_seconds,
            cpu_percent: r.cpu_percent / p.cpu_percent,
            peak_rss: r.peak_rss_mib / p.peak_rss_mib,
            frames_sent: r.frames_sent as f64 / p.frames_sent as f64,
        });
        let e2ee = find(Publisher::RustE2ee)
            .zip(find(Publisher::Rust))
            .map(|(e, r)| e.cpu_seconds / r.cpu_seconds);
        Self {
            width: options.width,
            height: options.height,
            fps: options.fps,
            seconds: options.seconds,
            bitrate: options.bitrate,
            codec: "VP8",
            distinct_frames,
            rounds: options.rounds,
            frames_mib: (distinct_frames * options.frame_bytes()) as f64 / MIB,
            livekit_server: devstack::LIVEKIT_VERSION,
            python_sdk: format!("livekit=={PYTHON_SDK_VERSION}"),
            timestamp: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
            results,
            ratios_rust_over_python: ratios,
            e2ee_cpu_over_clear: e2ee,
        }
    }
}

fn print_report(report: &Report) {
    println!();
    println!(
        "publishing {}x{} at {} fps, {} at most {} kbit/s, {} s, to LiveKit {} on 127.0.0.1",
        report.width,
        report.height,
        report.fps,
        report.codec,
        report.bitrate / 1000,
        report.seconds,
        report.livekit_server,
    );
    println!(
        "frames: {} distinct, looped; each publisher holds them in memory ({:.1} MiB); \
         median of {} run(s) each",
        report.distinct_frames, report.frames_mib, report.rounds
    );
    println!();
    println!(
        "{:<28} {:>8} {:>16} {:>13} {:>12} {:>6}",
        "", "CPU s", "CPU % of 1 core", "peak RSS MiB", "frames sent", "late"
    );
    for r in &report.results {
        println!(
            "{:<28} {:>8.2} {:>16.1} {:>13.1} {:>12} {:>6}",
            r.publisher.label(),
            r.cpu_seconds,
            r.cpu_percent,
            r.peak_rss_mib,
            r.frames_sent,
            r.late
        );
    }
    if let Some(ratios) = &report.ratios_rust_over_python {
        println!(
            "{:<28} {:>8.2} {:>16.2} {:>13.2} {:>12.2}",
            "Rust / Python",
            ratios.cpu_seconds,
            ratios.cpu_percent,
            ratios.peak_rss,
            ratios.frames_sent
        );
    }
    if let Some(ratio) = report.e2ee_cpu_over_clear {
        println!("E2EE / clear (Rust), CPU time: {ratio:.3}");
    }
    let expected = u64::from(report.seconds) * u64::from(report.fps);
    for r in report.results.iter().filter(|r| r.frames_sent != expected) {
        println!("note: {} sent {} frames, not {expected}", r.publisher.label(), r.frames_sent);
    }
}
