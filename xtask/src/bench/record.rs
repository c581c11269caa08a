//! `cargo xtask bench record`: what receiving and recording a call costs, the program
//! (`example-rtc-livekit-join` with `RECORD_DIR`) against the official LiveKit Python SDK, in
//! the same run.
//!
//! One publisher (`publish-bench stream`, `livekit-str0m`, not measured) sends 1280x720 at
//! 30 fps as VP8 (a moving test pattern with sensor-like noise, so the encoder and the decoders
//! work as with a camera; at most `--bitrate`) and a 440 Hz tone as Opus (one 20 ms packet per
//! 20 ms) into a LiveKit room of the local stack for the whole run. Two subscribers join that
//! room one after the other, each recording for `--seconds` from the moment it has both tracks:
//!
//! * ours: the release build of `example-rtc-livekit-join`, with static LiveKit credentials
//!   (`LIVEKIT_SERVICE_URL`, `LIVEKIT_TOKEN` for identity `rust-recorder`), `RECORD_DIR`,
//!   `RECORD_SNAPSHOT_SECS=0`, `V4L2_VIDEO_SOURCE=none`, `CALL_PRESENCE=always`, and a Matrix
//!   account in a call room of the stack's Synapse (login, sync, call membership: the Matrix
//!   side is part of what it costs). It writes the VP8 stream as received into IVF and the Opus
//!   packets as received into Ogg (no re-encoding, no audio decoding), and decodes the video too
//!   (its recorder keeps decoding for status lines and snapshots). It is stopped by SIGTERM and
//!   finishes its files; its frame and packet counts come from its log ("video recording
//!   finished … frames=N", "audio recording finished … packets=N").
//! * Python: `xtask/bench/livekit_record.py` with `livekit` from PyPI (libwebrtc): a
//!   `VideoStream` of I420 frames appended raw to a file, an `AudioStream` (48 kHz mono) of PCM
//!   appended raw to a file; stopped by SIGTERM, it prints its counts as JSON.
//!
//! So the two do different work on the same input: both receive and decode the video, ours
//! writes the encoded stream (a few hundred KB/s) where Python writes every decoded picture
//! (about 41 MB/s); ours writes the Opus packets where Python decodes them to PCM.
//!
//! Each subscriber runs under `cargo xtask bench measure` (see [`super::shared::measure`]): the
//! kernel's account of the whole process's CPU time and peak resident set size, start-up,
//! connection and teardown included. The recordings are checked (sizes, counts) and deleted.
//! With `--rounds N` the order alternates and each subscriber's median run (by CPU time) is
//! reported. Results: a table on stdout and `target/bench/record.json`.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use rtc_test_support::{Homeserver, StackInfo};
use serde::{Deserialize, Serialize};

use super::publish::FRAME_COUNT;
use super::shared::{self, GRACE, LiveKitRooms, Measured, PYTHON_SDK_VERSION};
use crate::devstack::{self, Layout};

/// The Python subscriber, relative to the workspace.
const PYTHON_SCRIPT: &str = "xtask/bench/livekit_record.py";
/// The program's package (and binary).
const PROGRAM: &str = "example-rtc-livekit-join";
const WIDTH: u32 = 1280;
const HEIGHT: u32 = 720;
const FPS: u32 = 30;
/// Opus packets the publisher sends per second.
const AUDIO_PACKETS_PER_SECOND: f64 = 50.0;
/// How long a subscriber may take to have both tracks.
const READY_WITHIN: Duration = Duration::from_secs(90);
/// How long the publisher may take to publish, and to stop.
const PUBLISHER_WITHIN: Duration = Duration::from_secs(60);
/// Below this, a recording file is not believed.
const MIN_VIDEO_FILE: u64 = 100 * 1024;
const MIN_AUDIO_FILE: u64 = 8 * 1024;

/// Options of `cargo xtask bench record`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RecordOptions {
    /// How long each subscriber records, in seconds (from having both tracks).
    #[arg(long, default_value_t = 30)]
    seconds: u32,
    /// Run every subscriber this many times, in reversed order every other round, and report
    /// each one's median run.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Run only one of the two subscribers (default: both, ours first).
    #[arg(long, value_enum)]
    only: Option<Subscriber>,
    /// The publisher's maximum VP8 bitrate, bit/s.
    #[arg(long, default_value_t = 2_000_000)]
    bitrate: u32,
}

impl RecordOptions {
    fn subscribers(&self) -> Vec<Subscriber> {
        match self.only {
            Some(one) => vec![one],
            None => vec![Subscriber::Ours, Subscriber::Python],
        }
    }

    /// How long the publisher must last, at most.
    fn validity(&self) -> Duration {
        let runs = self.rounds * self.subscribers().len() as u32;
        (Duration::from_secs(self.seconds.into()) + GRACE + READY_WITHIN) * runs
            + Duration::from_secs(600)
    }
}

/// One of the two subscribers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Subscriber {
    /// The program (`example-rtc-livekit-join` with `RECORD_DIR`).
    Ours,
    /// The official LiveKit Python SDK.
    Python,
}

impl Subscriber {
    fn label(self) -> String {
        match self {
            Self::Ours => format!("ours ({PROGRAM})"),
            Self::Python => format!("Python (livekit {PYTHON_SDK_VERSION})"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Python => "python",
        }
    }

    fn identity(self) -> &'static str {
        match self {
            Self::Ours => "rust-recorder",
            Self::Python => "python-recorder",
        }
    }
}

/// `cargo xtask bench record`: builds and installs what it needs, starts the stack unless it
/// runs (and stops it again if so), measures each subscriber, prints and saves the results.
pub(crate) async fn record(options: &RecordOptions) -> anyhow::Result<()> {
    if options.seconds == 0 || options.rounds == 0 || options.bitrate == 0 {
        bail!("--seconds, --rounds and --bitrate must be positive");
    }
    let layout = Layout::new();
    let out_dir = layout.target().join("bench");
    std::fs::create_dir_all(&out_dir)?;

    devstack::ensure_build_packages()?;
    let publisher = shared::build_rust_publisher(&layout)?;
    let subscribers = options.subscribers();
    let programs = Programs {
        publisher: publisher.clone(),
        ours: if subscribers.contains(&Subscriber::Ours) {
            eprintln!("building {PROGRAM} (release)");
            Some(super::join::build_release(&layout)?)
        } else {
            None
        },
        python: if subscribers.contains(&Subscriber::Python) {
            Some(shared::python_sdk(&layout)?)
        } else {
            None
        },
    };
    let frames = out_dir.join("record-frames.i420");
    shared::generate_frames(&publisher, (WIDTH, HEIGHT), FRAME_COUNT, &frames)?;

    let was_running = devstack::is_running(&layout).await;
    let stack = devstack::up().await?;
    let results = run_all(&layout, &stack, &programs, options, &frames).await;
    if !was_running {
        devstack::down()?;
    }
    let (runs, publisher) = results?;

    let report = Report::new(options, publisher, runs);
    print_report(&report);
    let path = out_dir.join("record.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!();
    println!("written to {}", path.display());
    Ok(())
}

/// The programs of one run.
struct Programs {
    /// `publish-bench`.
    publisher: PathBuf,
    /// The program, if it runs.
    ours: Option<PathBuf>,
    /// The virtualenv's Python, if it runs.
    python: Option<PathBuf>,
}

/// The program's Matrix side: an account in a call room.
struct Matrix {
    homeserver_url: String,
    /// Its user name, also its password.
    username: String,
    room_id: String,
    /// Its store, kept across rounds (the first run logs in, the later ones restore the
    /// session).
    store: PathBuf,
}

impl Matrix {
    async fn new(layout: &Layout, stack: &StackInfo) -> anyhow::Result<Self> {
        let hs = Homeserver::new(stack);
        let owner = hs.register_unique("recordowner").await?;
        let bot = hs.register_unique("recorder").await?;
        let room_id = hs.create_call_room(&owner, &[&bot]).await?;
        let username =
            bot.user_id.trim_start_matches('@').split(':').next().unwrap_or_default().to_owned();
        let store = layout.root.join("bench-record-store");
        let _ = std::fs::remove_dir_all(&store);
        Ok(Self { homeserver_url: stack.homeserver_url.clone(), username, room_id, store })
    }
}

/// Starts the publisher, runs every subscriber in turn, stops the publisher.
async fn run_all(
    layout: &Layout,
    stack: &StackInfo,
    programs: &Programs,
    options: &RecordOptions,
    frames: &Path,
) -> anyhow::Result<(Vec<SubscriberResult>, PublisherOutput)> {
    let rooms = LiveKitRooms::new(stack)?;
    let room = format!("bench-record-{}", shared::unix_millis());
    rooms.create(&room).await?;
    let matrix = match programs.ours {
        Some(_) => Some(Matrix::new(layout, stack).await?),
        None => None,
    };

    let token = rooms.token(&room, "bench-publisher", options.validity());
    let mut publisher = Publisher::start(&programs.publisher, frames, stack, &token, options)?;
    eprintln!("publishing {WIDTH}x{HEIGHT} at {FPS} fps (VP8) and a 440 Hz tone into room {room}");

    let mut results = Vec::new();
    let order = (0..options.rounds).flat_map(|round| {
        let mut order = options.subscribers();
        if round % 2 == 1 {
            order.reverse();
        }
        order
    });
    for subscriber in order {
        let run = SubscriberRun {
            layout,
            stack,
            rooms: &rooms,
            room: &room,
            matrix: matrix.as_ref(),
            programs,
            options,
        };
        results.push(run.measure(subscriber).await?);
    }
    let published = publisher.stop()?;
    if let Some(matrix) = &matrix {
        let _ = std::fs::remove_dir_all(&matrix.store);
    }
    Ok((results, published))
}

/// What one subscriber run needs.
struct SubscriberRun<'a> {
    layout: &'a Layout,
    stack: &'a StackInfo,
    rooms: &'a LiveKitRooms<'a>,
    room: &'a str,
    matrix: Option<&'a Matrix>,
    programs: &'a Programs,
    options: &'a RecordOptions,
}

impl SubscriberRun<'_> {
    /// Runs `subscriber` until it has recorded for the time asked, measures it, checks and
    /// deletes its recordings.
    async fn measure(&self, subscriber: Subscriber) -> anyhow::Result<SubscriberResult> {
        let bench = self.layout.target().join("bench");
        let dir = bench.join(format!("record-{}-{}", subscriber.name(), shared::unix_millis()));
        std::fs::create_dir_all(&dir)?;
        let seconds = Duration::from_secs(self.options.seconds.into());
        let token = self.rooms.token(self.room, subscriber.identity(), self.options.validity());
        let url: OsString = self.stack.livekit_url.clone().into();
        let (program, args, env): (&Path, Vec<OsString>, Vec<(&'static str, OsString)>) =
            match subscriber {
                Subscriber::Ours => {
                    let program = self.programs.ours.as_deref().context("no program")?;
                    let matrix = self.matrix.context("no Matrix account")?;
                    let env = vec![
                        ("HOMESERVER_URL", matrix.homeserver_url.clone().into()),
                        ("MATRIX_USERNAME", matrix.username.clone().into()),
                        ("MATRIX_PASSWORD", matrix.username.clone().into()),
                        ("ROOM_ID", matrix.room_id.clone().into()),
                        ("MATRIX_STORE_DIR", matrix.store.clone().into()),
                        ("LIVEKIT_SERVICE_URL", url),
                        ("LIVEKIT_TOKEN", token.expose().into()),
                        ("RECORD_DIR", dir.clone().into()),
                        ("RECORD_SNAPSHOT_SECS", "0".into()),
                        ("V4L2_VIDEO_SOURCE", "none".into()),
                        ("AUDIO_SOURCE", "none".into()),
                        ("CALL_PRESENCE", "always".into()),
                        ("RUST_LOG", "info".into()),
                    ];
                    (program, Vec::new(), env)
                }
                Subscriber::Python => {
                    let python = self.programs.python.as_deref().context("no Python")?;
                    let script = self.layout.workspace.join(PYTHON_SCRIPT);
                    let args = vec![script.into(), "--out-dir".into(), dir.clone().into()];
                    let env = vec![("LIVEKIT_URL", url), ("LIVEKIT_TOKEN", token.expose().into())];
                    (python, args, env)
                }
            };
        eprintln!("recording with {} for {} s", subscriber.label(), self.options.seconds);
        let mut running = Measured {
            label: subscriber.label(),
            name: subscriber.name(),
            program,
            args: &args,
            env,
            clear_env: subscriber == Subscriber::Ours,
            token: &token,
            report: bench.join(format!("usage-record-{}.json", subscriber.name())),
            timeout: seconds + READY_WITHIN + GRACE,
            echo_stderr: false,
            stoppable: true,
        }
        .spawn()?;
        // Both programs log these two as each track arrives.
        running.wait_for_lines(&["recording video", "recording audio"], READY_WITHIN)?;
        let started = Instant::now();
        tokio::time::sleep(seconds).await;
        running.stop();
        let recorded_seconds = started.elapsed().as_secs_f64();
        let finished = running.finish()?;

        let written = match subscriber {
            Subscriber::Ours => ours_written(&finished.stderr, &dir),
            Subscriber::Python => python_written(&finished.stdout, &dir),
        }
        .with_context(|| format!("{}: {}", subscriber.label(), dir.display()));
        let _ = std::fs::remove_dir_all(&dir);
        let written = written?;
        let usage = &finished.usage;
        eprintln!(
            "  {} frames of video, {:.1} s of audio written; {:.2} CPU s, {:.1} MiB peak RSS",
            written.video_frames,
            written.audio_seconds,
            usage.cpu_seconds(),
            usage.peak_rss_mib()
        );
        Ok(SubscriberResult {
            subscriber,
            cpu_seconds: usage.cpu_seconds(),
            user_seconds: usage.user_seconds,
            system_seconds: usage.system_seconds,
            wall_seconds: usage.wall_seconds,
            cpu_percent: usage.cpu_percent(),
            peak_rss_mib: usage.peak_rss_mib(),
            recorded_seconds,
            written,
        })
    }
}

/// What a subscriber wrote.
#[derive(Debug, Clone, Serialize)]
struct Written {
    video_frames: u64,
    /// Ours: Opus packets; Python: PCM frames (as the SDK hands them).
    audio_units: u64,
    audio_unit: &'static str,
    /// The audio's length.
    audio_seconds: f64,
    video_file_bytes: u64,
    audio_file_bytes: u64,
}

/// The program's counts (from its log) and files (IVF, Ogg; no snapshots).
fn ours_written(log: &[String], dir: &Path) -> anyhow::Result<Written> {
    let count = |message: &str, field: &str| -> anyhow::Result<u64> {
        let line = log
            .iter()
            .rev()
            .find(|l| l.contains(message))
            .with_context(|| format!("the program did not log \"{message}\""))?;
        line.split(&format!("{field}="))
            .nth(1)
            .and_then(|rest| {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                digits.parse().ok()
            })
            .with_context(|| format!("no {field}= in \"{line}\""))
    };
    let video_frames = count("video recording finished", "frames")?;
    let packets = count("audio recording finished", "packets")?;
    let written = Written {
        video_frames,
        audio_units: packets,
        audio_unit: "Opus packets",
        audio_seconds: packets as f64 / AUDIO_PACKETS_PER_SECOND,
        video_file_bytes: check_files(dir, "ivf", MIN_VIDEO_FILE)?,
        audio_file_bytes: check_files(dir, "ogg", MIN_AUDIO_FILE)?,
    };
    if files(dir, "png")?.next().is_some() {
        bail!("snapshots were written despite RECORD_SNAPSHOT_SECS=0");
    }
    Ok(written)
}

/// What the Python script prints.
#[derive(Debug, Deserialize)]
struct PythonOutput {
    video_frames: u64,
    video_bytes: u64,
    width: u32,
    height: u32,
    audio_frames: u64,
    audio_samples: u64,
    audio_bytes: u64,
}

/// The Python script's counts (its JSON line) and files (raw I420, raw PCM).
fn python_written(stdout: &str, dir: &Path) -> anyhow::Result<Written> {
    let output: PythonOutput = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l.trim()).ok())
        .context("the script printed no result line")?;
    let video_file_bytes = check_files(dir, "i420", MIN_VIDEO_FILE)?;
    let audio_file_bytes = check_files(dir, "pcm", MIN_AUDIO_FILE)?;
    if video_file_bytes != output.video_bytes || audio_file_bytes != output.audio_bytes {
        bail!(
            "the files hold {video_file_bytes} + {audio_file_bytes} bytes, the script counted \
             {} + {}",
            output.video_bytes,
            output.audio_bytes
        );
    }
    if (output.width, output.height) != (WIDTH, HEIGHT) {
        eprintln!("  note: the last picture was {}x{}", output.width, output.height);
    }
    Ok(Written {
        video_frames: output.video_frames,
        audio_units: output.audio_frames,
        audio_unit: "PCM frames",
        audio_seconds: output.audio_samples as f64 / 48_000.0,
        video_file_bytes,
        audio_file_bytes,
    })
}

/// The files of `dir` ending in `.ext`.
fn files(dir: &Path, ext: &'static str) -> anyhow::Result<impl Iterator<Item = PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    Ok(entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(move |p| p.extension().is_some_and(|e| e == ext)))
}

/// The total size of the `.ext` files of `dir`; fails unless there is one and it holds at
/// least `min` bytes.
fn check_files(dir: &Path, ext: &'static str, min: u64) -> anyhow::Result<u64> {
    let sizes: Vec<u64> =
        files(dir, ext)?.map(|p| std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0)).collect();
    let total = sizes.iter().sum();
    if sizes.is_empty() || total < min {
        bail!("expected a .{ext} file of at least {min} bytes, found {sizes:?}");
    }
    Ok(total)
}

/// The publisher, running (not measured).
struct Publisher {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: mpsc::Receiver<String>,
}

/// What the publisher prints when it stops.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PublisherOutput {
    frames_sent: u64,
    late: u64,
    audio_packets: u64,
    seconds: f64,
}

impl Publisher {
    /// Starts `publish-bench stream`; returns once both its tracks are published.
    fn start(
        program: &Path,
        frames: &Path,
        stack: &StackInfo,
        token: &matrixrtc_auth::secret::Secret,
        options: &RecordOptions,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(program)
            .arg("stream")
            .arg("--frames")
            .arg(frames)
            .args(["--width", &WIDTH.to_string(), "--height", &HEIGHT.to_string()])
            .args(["--fps", &FPS.to_string(), "--bitrate", &options.bitrate.to_string()])
            .env("LIVEKIT_URL", &stack.livekit_url)
            .env("LIVEKIT_TOKEN", token.expose())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let secret = token.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  [publisher] {}", shared::redact(&line, &secret));
            }
        });
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let (lines, stdout_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let publisher = Self { stdin: child.stdin.take(), child, stdout: stdout_lines };
        let deadline = Instant::now() + PUBLISHER_WITHIN;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match publisher.stdout.recv_timeout(left) {
                Ok(line) if line.contains("\"streaming\"") => return Ok(publisher),
                Ok(_) => {}
                Err(_) => bail!("the publisher did not publish within {PUBLISHER_WITHIN:?}"),
            }
        }
    }

    /// Closes its stdin, which ends it; returns its counts.
    fn stop(&mut self) -> anyhow::Result<PublisherOutput> {
        self.stdin = None;
        let deadline = Instant::now() + PUBLISHER_WITHIN;
        while self.child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                bail!("the publisher did not stop within {PUBLISHER_WITHIN:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.stdout
            .try_iter()
            .filter_map(|l| serde_json::from_str(&l).ok())
            .last()
            .context("the publisher printed no result line")
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The figures of one subscriber.
#[derive(Debug, Clone, Serialize)]
struct SubscriberResult {
    subscriber: Subscriber,
    /// User + system CPU time of the whole process.
    cpu_seconds: f64,
    user_seconds: f64,
    system_seconds: f64,
    /// From start to exit.
    wall_seconds: f64,
    /// CPU time over wall time, in % of one core.
    cpu_percent: f64,
    peak_rss_mib: f64,
    /// From having both tracks to the stop signal.
    recorded_seconds: f64,
    written: Written,
}

/// Ours over Python.
#[derive(Debug, Clone, Serialize)]
struct Ratios {
    cpu_seconds: f64,
    cpu_percent: f64,
    peak_rss: f64,
}

/// What `target/bench/record.json` holds.
#[derive(Debug, Clone, Serialize)]
struct Report {
    width: u32,
    height: u32,
    fps: u32,
    video_codec: &'static str,
    video_max_bitrate: u32,
    audio: &'static str,
    /// How long each subscriber recorded.
    seconds: u32,
    /// Runs per subscriber; each one's median run is reported.
    rounds: u32,
    livekit_server: &'static str,
    python_sdk: String,
    /// Seconds since the Unix epoch.
    timestamp: u64,
    publisher: PublisherOutput,
    /// Each subscriber's median run.
    results: Vec<SubscriberResult>,
    /// Every run, in order.
    runs: Vec<SubscriberResult>,
    /// When both ran.
    ratios_ours_over_python: Option<Ratios>,
    notes: Vec<&'static str>,
}

const NOTES: [&str; 4] = [
    "video: both receive and decode the VP8 stream; ours writes the encoded frames as received \
     (IVF), Python writes every decoded picture raw (I420, about 41 MB/s)",
    "audio: ours writes the Opus packets as received (Ogg Opus) without decoding; Python's SDK \
     decodes them and the script writes 48 kHz mono PCM",
    "ours also logs in to Matrix, syncs and keeps a call membership (the first run logs in with \
     a password, later rounds restore the session); Python only joins the LiveKit room",
    "figures are whole processes (start-up, connection and teardown included), CPU % over \
     their wall time",
];

impl Report {
    fn new(
        options: &RecordOptions,
        publisher: PublisherOutput,
        runs: Vec<SubscriberResult>,
    ) -> Self {
        let subscribers = options.subscribers();
        let results =
            shared::median_runs(runs.clone(), &subscribers, |r| r.subscriber, |r| r.cpu_seconds);
        let find = |s| results.iter().find(|r| r.subscriber == s);
        let ratios = find(Subscriber::Ours).zip(find(Subscriber::Python)).map(|(o, p)| Ratios {
            cpu_seconds: o.cpu_seconds / p.cpu_seconds,
            cpu_percent: o.cpu_percent / p.cpu_percent,
            peak_rss: o.peak_rss_mib / p.peak_rss_mib,
        });
        Self {
            width: WIDTH,
            height: HEIGHT,
            fps: FPS,
            video_codec: "VP8",
            video_max_bitrate: options.bitrate,
            audio: "Opus, 48 kHz mono, 20 ms packets, 440 Hz tone",
            seconds: options.seconds,
            rounds: options.rounds,
            livekit_server: devstack::LIVEKIT_VERSION,
            python_sdk: format!("livekit=={PYTHON_SDK_VERSION}"),
            timestamp: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
            publisher,
            results,
            runs,
            ratios_ours_over_python: ratios,
            notes: NOTES.to_vec(),
        }
    }
}

fn print_report(report: &Report) {
    println!();
    println!(
        "recording {}x{} at {} fps ({}, at most {} kbit/s) and {}, {} s per subscriber, from \
         LiveKit {} on 127.0.0.1; median of {} run(s) each",
        report.width,
        report.height,
        report.fps,
        report.video_codec,
        report.video_max_bitrate / 1000,
        report.audio,
        report.seconds,
        report.livekit_server,
        report.rounds,
    );
    println!();
    println!(
        "{:<34} {:>6} {:>6} {:>8} {:>8} {:>7} {:>7} {:>20} {:>7}",
        "", "CPU s", "sys s", "CPU % ¹", "RSS MiB", "rec. s", "frames", "audio", "MB"
    );
    for r in &report.results {
        let w = &r.written;
        let audio =
            format!("{} {} ({:.1} s)", w.audio_units, short_unit(w.audio_unit), w.audio_seconds);
        println!(
            "{:<34} {:>6.2} {:>6.2} {:>8.1} {:>8.1} {:>7.1} {:>7} {:>20} {:>7.1}",
            r.subscriber.label(),
            r.cpu_seconds,
            r.system_seconds,
            r.cpu_percent,
            r.peak_rss_mib,
            r.recorded_seconds,
            w.video_frames,
            audio,
            (w.video_file_bytes + w.audio_file_bytes) as f64 / 1e6,
        );
    }
    if let Some(ratios) = &report.ratios_ours_over_python {
        println!(
            "{:<34} {:>6.2} {:>6} {:>8.2} {:>8.2}",
            "ours / Python", ratios.cpu_seconds, "", ratios.cpu_percent, ratios.peak_rss
        );
    }
    println!();
    println!(
        "publisher: {} video frames ({} late), {} audio packets in {:.1} s",
        report.publisher.frames_sent,
        report.publisher.late,
        report.publisher.audio_packets,
        report.publisher.seconds
    );
    println!(
        "¹ CPU time (user + system) over the process's wall time, in % of one core; rec. s: \
         from having both tracks to the stop signal; MB: the files written"
    );
    for note in &report.notes {
        println!("- {note}");
    }
    let expected = f64::from(report.seconds * report.fps);
    for r in &report.results {
        if (r.written.video_frames as f64) < 0.9 * expected {
            println!(
                "note: {} wrote {} frames in {:.1} s of recording, fewer than {:.0} expected",
                r.subscriber.label(),
                r.written.video_frames,
                r.recorded_seconds,
                0.9 * expected
            );
        }
    }
}

fn short_unit(unit: &str) -> &'static str {
    if unit.starts_with("Opus") { "pkts" } else { "frames" }
}
