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
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use matrixrtc_auth::secret::Secret;
use rtc_test_support::StackInfo;
use serde::{Deserialize, Serialize};

use super::shared::{
    self, GRACE, LiveKitRooms, MIB, Measured, PYTHON_SDK_VERSION, RUST_CRATE, Usage, redact,
    unix_millis,
};
use crate::devstack::{self, Layout};

/// The Python publisher, relative to the workspace.
const PYTHON_SCRIPT: &str = "xtask/bench/livekit_publish.py";
/// How many distinct frames the frames file holds (the publishers loop over them).
pub(crate) const FRAME_COUNT: u32 = 60;

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
            let size = (options.width, options.height);
            shared::generate_frames(rust, size, FRAME_COUNT, &out_dir.join("frames.i420"))?
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
        Some(shared::python_sdk(layout)?)
    } else {
        None
    };
    // The Rust example also writes the frames file.
    let rust = if publishers.contains(&Publisher::Rust)
        || publishers.contains(&Publisher::RustE2ee)
        || options.frames.is_none()
    {
        Some(shared::build_rust_publisher(layout)?)
    } else {
        None
    };
    Ok(Programs { rust, python })
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
    let rooms = LiveKitRooms::new(stack)?;
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

        let room = format!("bench-publish-{}-{}", publisher.name(), unix_millis());
        rooms.create(&room).await?;
        let timeout = Duration::from_secs(options.seconds.into()) + GRACE;
        let validity = timeout + Duration::from_secs(600);
        let token = rooms.token(&room, &format!("bench-{}", publisher.name()), validity);

        eprintln!(
            "publishing with {} for {} s into room {room}",
            publisher.label(),
            options.seconds
        );
        let finished = Measured {
            label: publisher.label(),
            name: publisher.name(),
            program,
            args: &args,
            env: vec![
                ("LIVEKIT_URL", stack.livekit_url.clone().into()),
                ("LIVEKIT_TOKEN", token.expose().into()),
            ],
            clear_env: false,
            token: &token,
            report: layout.target().join("bench").join(format!("usage-{}.json", publisher.name())),
            timeout,
            echo_stderr: true,
            stoppable: false,
        }
        .run()?;
        let prefix = format!("  [{}] ", publisher.name());
        let output = parse_stdout(&finished.stdout, &prefix, &token).with_context(|| {
            format!(
                "{} printed no result line (JSON with frames_sent, late, seconds)",
                publisher.label()
            )
        })?;
        results.push(PublisherResult::new(publisher, &finished.usage, &output));
    }
    Ok(shared::median_runs(results, &options.publishers(), |r| r.publisher, |r| r.cpu_seconds))
}

/// The last JSON result line of a publisher's stdout; shows the other lines.
fn parse_stdout(stdout: &str, prefix: &str, token: &Secret) -> Option<PublisherOutput> {
    let mut result = None;
    for line in stdout.lines() {
        match serde_json::from_str::<PublisherOutput>(line.trim()) {
            Ok(output) => result = Some(output),
            Err(_) => eprintln!("{prefix}{}", redact(line, token)),
        }
    }
    result
}

/// What a publisher prints on its last line.
#[derive(Debug, Clone, Deserialize)]
struct PublisherOutput {
    frames_sent: u64,
    late: u64,
    seconds: f64,
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
        Self {
            publisher,
            cpu_seconds: usage.cpu_seconds(),
            user_seconds: usage.user_seconds,
            system_seconds: usage.system_seconds,
            wall_seconds: usage.wall_seconds,
            cpu_percent: usage.cpu_percent(),
            peak_rss_mib: usage.peak_rss_mib(),
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
