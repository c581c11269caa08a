//! `cargo xtask bench connect`: how fast a connection gets its first video out, and what each
//! connected, publishing room costs in memory and threads, this workspace's Rust client
//! (`livekit-str0m`) against the official LiveKit Python SDK, in the same run.
//!
//! Each client is one process (the example `connect-bench run` of `livekit-str0m`, and
//! `xtask/bench/livekit_connect.py` with `livekit` from PyPI) that joins `max(--rooms)` rooms of
//! the local stack one after the other, one room per connection, each room its own. In each it
//! publishes one small video track (160x120 by default, the moving test pattern of `rtc-media`
//! with sensor-like noise, at 15 fps, at most 100 kbit/s, one layer; VP8 by default, H.264 with
//! `--codec h264`; encoded in software on both sides); nobody subscribes.
//!
//! **Time to first media**, per connection, from the call of `Room::connect` (Python:
//! `Room.connect`) to the first video frame sent on the media connection: the Rust track's
//! `frames_sent()` becomes 1 (frames written before the track's media connection is up are
//! dropped, the first sent one is a keyframe), Python's outbound RTP statistics show a packet
//! sent (`get_rtc_stats`, `outbound_rtp.sent.packets_sent`). Until then each client writes a
//! frame every 10 ms and checks every 5 ms (Python's statistics answer on their own time), so
//! the figure is late by a few ms at most, alike for both. Also: until `connect` returns, and
//! until the server confirmed the track (`publish_video` / `publish_track` return). Reported:
//! the first connection of the process (it pays for whatever the client sets up once), and the
//! median of the connections up to each `--rooms` step (made while the earlier rooms publish).
//! Before either client, one unmeasured connection warms the server up (its first join after
//! start takes a few hundred ms more).
//!
//! **Memory and threads**: whenever the number of rooms reaches a `--rooms` step, the process
//! waits `--settle` seconds with every room publishing, then reads its `VmRSS` and `Threads`
//! from `/proc/self/status` (and once before the first connection). Per extra room:
//! (RSS(n) − RSS(first step)) / (n − first step), e.g. (RSS(50) − RSS(1)) / 49. Where it goes:
//! each connection also reads `VmRSS` before connecting and after each step; their averages
//! over the extra rooms split the cost into connect, publish, until first media, and the rest
//! (the growth while publishing). Peak RSS and CPU time of the whole process come from the
//! measuring process (see [`super::shared::measure`]).
//!
//! Results: a table on stdout and `target/bench/connect.json`, with the ratios Rust / Python and
//! the targets (connect ≥ 2× faster, memory per extra connection ≤ 0.3× Python's). The tokens
//! reach the clients through their environment only (`LIVEKIT_TOKENS`); neither client prints
//! them, and the first is redacted from their output as in the other benchmarks.

use std::ffi::OsString;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use matrixrtc_auth::secret::Secret;
use rtc_test_support::StackInfo;
use serde::{Deserialize, Serialize};

use super::shared::{self, GRACE, LiveKitRooms, MIB, Measured, PYTHON_SDK_VERSION, RUST_CRATE};
use crate::devstack::{self, Layout};

/// The Python client, relative to the workspace.
const PYTHON_SCRIPT: &str = "xtask/bench/livekit_connect.py";
/// The Rust client: an example of `livekit-str0m`.
const RUST_EXAMPLE: &str = "connect-bench";
/// Distinct frames in the frames file (one second at 15 fps, looped).
const FRAME_COUNT: u32 = 15;
/// How long one connection may take, at most, for the measuring timeout.
const PER_CONNECTION: Duration = Duration::from_secs(10);
/// Targets of the issue: Python's time to first media over ours at least this…
const TARGET_SPEEDUP: f64 = 2.0;
/// …and our memory per extra connection over Python's at most this.
const TARGET_MEMORY_RATIO: f64 = 0.3;

/// Options of `cargo xtask bench connect`.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ConnectOptions {
    /// Numbers of rooms at which memory and threads are read, comma-separated, ascending; the
    /// last is how many rooms each client joins.
    #[arg(long, value_delimiter = ',', default_value = "1,10,50")]
    rooms: Vec<usize>,
    /// Seconds with every room publishing before each reading.
    #[arg(long, default_value_t = 5)]
    settle: u32,
    /// Frame width in pixels (even).
    #[arg(long, default_value_t = 160)]
    width: u32,
    /// Frame height in pixels (even).
    #[arg(long, default_value_t = 120)]
    height: u32,
    /// Frames per second once a room's first frame is out.
    #[arg(long, default_value_t = 15)]
    fps: u32,
    /// Maximum video bitrate, bit/s.
    #[arg(long, default_value_t = 100_000)]
    bitrate: u32,
    /// The video codec both clients publish (and encode in software).
    #[arg(long, value_enum, default_value_t = Codec::Vp8)]
    codec: Codec,
    /// Run only one of the two clients (default: both, Rust first).
    #[arg(long, value_enum)]
    only: Option<Client>,
}

impl ConnectOptions {
    fn check(&self) -> anyhow::Result<()> {
        if self.width == 0 || self.height == 0 || self.width % 2 == 1 || self.height % 2 == 1 {
            bail!("--width and --height must be positive and even (I420)");
        }
        if self.fps == 0 || self.bitrate == 0 {
            bail!("--fps and --bitrate must be positive");
        }
        if self.rooms.is_empty()
            || self.rooms[0] == 0
            || self.rooms.windows(2).any(|pair| pair[0] >= pair[1])
        {
            bail!("--rooms must be positive counts in ascending order, e.g. 1,10,50");
        }
        Ok(())
    }

    fn clients(&self) -> Vec<Client> {
        match self.only {
            Some(one) => vec![one],
            None => vec![Client::Rust, Client::Python],
        }
    }

    fn max_rooms(&self) -> usize {
        self.rooms.last().copied().unwrap_or(1)
    }

    /// The arguments both clients take.
    fn args(&self, frames: &Path) -> Vec<OsString> {
        let rooms: Vec<String> = self.rooms.iter().map(usize::to_string).collect();
        let mut args: Vec<OsString> = vec!["--frames".into(), frames.into()];
        for (name, value) in [
            ("--width", self.width.to_string()),
            ("--height", self.height.to_string()),
            ("--fps", self.fps.to_string()),
            ("--bitrate", self.bitrate.to_string()),
            ("--settle", self.settle.to_string()),
            ("--rooms", rooms.join(",")),
            ("--codec", self.codec.flag().to_owned()),
        ] {
            args.push(name.into());
            args.push(value.into());
        }
        args
    }
}

/// The codec of the published track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Codec {
    /// VP8 (libvpx on our side).
    Vp8,
    /// H.264 (OpenH264 on our side).
    H264,
}

impl Codec {
    fn flag(self) -> &'static str {
        match self {
            Self::Vp8 => "vp8",
            Self::H264 => "h264",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Vp8 => "VP8",
            Self::H264 => "H.264",
        }
    }
}

/// One of the two clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Client {
    /// This workspace's client (`livekit-str0m`).
    Rust,
    /// The official LiveKit Python SDK.
    Python,
}

impl Client {
    fn label(self) -> String {
        match self {
            Self::Rust => format!("Rust ({RUST_CRATE})"),
            Self::Python => format!("Python (livekit {PYTHON_SDK_VERSION})"),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Rust => "rust",
            Self::Python => "python",
        }
    }
}

/// `cargo xtask bench connect`: prepares both clients and the frames, starts the stack unless
/// it runs (and stops it again if so), runs each client, prints and saves the results.
pub(crate) async fn connect(options: &ConnectOptions) -> anyhow::Result<()> {
    options.check()?;
    let layout = Layout::new();
    let out_dir = layout.target().join("bench");
    std::fs::create_dir_all(&out_dir)?;

    devstack::ensure_build_packages()?;
    let clients = options.clients();
    let python =
        if clients.contains(&Client::Python) { Some(shared::python_sdk(&layout)?) } else { None };
    // The Rust example also writes the frames file.
    let rust = shared::build_rust_example(
        &layout,
        "the Rust client",
        RUST_EXAMPLE,
        "It also writes the frames both clients publish.",
    )?;
    let size = (options.width, options.height);
    let frames = out_dir.join(format!("connect-{}x{}.i420", options.width, options.height));
    let frames = shared::generate_frames(&rust, size, FRAME_COUNT, &frames)?;

    let was_running = devstack::is_running(&layout).await;
    let stack = devstack::up().await?;
    let results = run_all(&layout, &stack, options, &rust, python.as_deref(), &frames).await;
    if !was_running {
        devstack::down()?;
    }
    let results = results?;

    let report = Report::new(options, results);
    print_report(&report);
    let path = out_dir.join("connect.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!();
    println!("written to {}", path.display());
    Ok(())
}

/// Runs each client in turn.
async fn run_all(
    layout: &Layout,
    stack: &StackInfo,
    options: &ConnectOptions,
    rust: &Path,
    python: Option<&Path>,
    frames: &Path,
) -> anyhow::Result<Vec<ClientResult>> {
    let rooms = LiveKitRooms::new(stack)?;
    let count = options.max_rooms();
    let steps = u32::try_from(options.rooms.len())?;
    let timeout = GRACE
        + PER_CONNECTION * u32::try_from(count)?
        + Duration::from_secs(options.settle.into()) * steps;
    warm_up(layout, stack, &rooms, rust, frames, options).await?;
    let mut results = Vec::new();
    for client in options.clients() {
        let (program, mut args): (&Path, Vec<OsString>) = match client {
            Client::Rust => (rust, vec!["run".into()]),
            Client::Python => {
                let python = python.context("no Python virtualenv")?;
                (python, vec![layout.workspace.join(PYTHON_SCRIPT).into()])
            }
        };
        args.extend(options.args(frames));

        eprintln!("creating {count} rooms for {}", client.label());
        let stamp = shared::unix_millis();
        let validity = timeout + Duration::from_secs(600);
        let mut tokens = Vec::with_capacity(count);
        for index in 0..count {
            let room = format!("bench-connect-{}-{stamp}-{index}", client.name());
            rooms.create(&room).await?;
            tokens.push(rooms.token(&room, &format!("bench-connect-{index}"), validity));
        }
        let all_tokens = Secret::new(
            tokens.iter().map(|t| t.expose().to_owned()).collect::<Vec<_>>().join("\n"),
        );
        let first = tokens.first().context("no rooms")?;

        eprintln!("connecting {count} rooms with {}", client.label());
        let finished = Measured {
            label: client.label(),
            name: client.name(),
            program,
            args: &args,
            env: vec![
                ("LIVEKIT_URL", stack.livekit_url.clone().into()),
                ("LIVEKIT_TOKEN", first.expose().into()),
                ("LIVEKIT_TOKENS", all_tokens.expose().into()),
            ],
            clear_env: false,
            token: first,
            report: layout
                .target()
                .join("bench")
                .join(format!("usage-connect-{}.json", client.name())),
            timeout,
            echo_stderr: true,
            stoppable: false,
        }
        .run()?;
        let output = parse_stdout(&finished.stdout).with_context(|| {
            format!("{} printed no result line (JSON with connections and samples)", client.label())
        })?;
        if output.connections.len() != count {
            bail!(
                "{} reported {} connections, not {count}",
                client.label(),
                output.connections.len()
            );
        }
        results.push(ClientResult::new(client, options, &finished.usage, output));
    }
    Ok(results)
}

/// One unmeasured connection with the Rust client, so that the server's first join after its
/// start (slower by a few hundred ms) is charged to neither client.
async fn warm_up(
    layout: &Layout,
    stack: &StackInfo,
    rooms: &LiveKitRooms<'_>,
    rust: &Path,
    frames: &Path,
    options: &ConnectOptions,
) -> anyhow::Result<()> {
    let room = format!("bench-connect-warm-up-{}", shared::unix_millis());
    rooms.create(&room).await?;
    let token = rooms.token(&room, "bench-connect-warm-up", GRACE + Duration::from_secs(600));
    let one = ConnectOptions { rooms: vec![1], settle: 0, ..options.clone() };
    let mut args: Vec<OsString> = vec!["run".into()];
    args.extend(one.args(frames));
    eprintln!("warming the server up with one connection (not measured)");
    Measured {
        label: "the warm-up connection".to_owned(),
        name: "warm-up",
        program: rust,
        args: &args,
        env: vec![
            ("LIVEKIT_URL", stack.livekit_url.clone().into()),
            ("LIVEKIT_TOKENS", token.expose().into()),
        ],
        clear_env: false,
        token: &token,
        report: layout.target().join("bench").join("usage-connect-warm-up.json"),
        timeout: GRACE,
        echo_stderr: false,
        stoppable: false,
    }
    .run()?;
    Ok(())
}

/// The last JSON result line of a client's stdout.
fn parse_stdout(stdout: &str) -> Option<ClientOutput> {
    stdout.lines().rev().find_map(|line| serde_json::from_str(line.trim()).ok())
}

/// What a client prints on its last line.
#[derive(Debug, Clone, Deserialize)]
struct ClientOutput {
    connections: Vec<ConnectionOutput>,
    samples: Vec<Sample>,
    frames_sent: u64,
    frames_dropped: Option<u64>,
    disconnected: u64,
}

/// One connection, as a client reports it.
#[derive(Debug, Clone, Deserialize)]
struct ConnectionOutput {
    connect_ms: f64,
    publish_ms: f64,
    first_media_ms: f64,
    /// VmRSS before `connect`, and once connected, published, first media out.
    rss_kib: [u64; 4],
    /// VmRSS once the encoder has encoded its first frame (Rust only: Python's encoder is
    /// inside libwebrtc).
    #[serde(default)]
    rss_encoder_kib: Option<u64>,
}

/// A reading of `/proc/self/status` with `rooms` rooms publishing.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Sample {
    rooms: usize,
    rss_kib: u64,
    threads: u64,
}

/// Milliseconds from the call of `connect` to each milestone.
#[derive(Debug, Clone, Copy, Serialize)]
struct Timings {
    connect_ms: f64,
    publish_ms: f64,
    first_media_ms: f64,
}

impl Timings {
    fn of(c: &ConnectionOutput) -> Self {
        Self {
            connect_ms: c.connect_ms,
            publish_ms: c.publish_ms,
            first_media_ms: c.first_media_ms,
        }
    }

    /// The median of each figure over `connections`.
    fn median(connections: &[ConnectionOutput]) -> Option<Self> {
        let median = |f: fn(&ConnectionOutput) -> f64| {
            let mut values: Vec<f64> = connections.iter().map(f).collect();
            values.sort_by(f64::total_cmp);
            let n = values.len();
            match n {
                0 => None,
                _ if n % 2 == 1 => Some(values[n / 2]),
                _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
            }
        };
        Some(Self {
            connect_ms: median(|c| c.connect_ms)?,
            publish_ms: median(|c| c.publish_ms)?,
            first_media_ms: median(|c| c.first_media_ms)?,
        })
    }
}

/// The median timings of the connections `from..=to`.
#[derive(Debug, Clone, Serialize)]
struct Window {
    /// Connections `from..=to` (1-based).
    from: usize,
    to: usize,
    median: Timings,
}

/// What one extra room costs between two readings.
#[derive(Debug, Clone, Serialize)]
struct PerExtraRoom {
    from_rooms: usize,
    to_rooms: usize,
    rss_kib: f64,
    threads: f64,
}

/// Where VmRSS grew per extra room, averaged over the connections after the first reading.
#[derive(Debug, Clone, Serialize)]
struct RssByStep {
    connect_kib: f64,
    publish_kib: f64,
    /// Creating the encoder and encoding the first frame, where the client does it itself
    /// (then not in `until_first_media_kib`).
    encoder_kib: Option<f64>,
    until_first_media_kib: f64,
    /// The rest of the growth per extra room: while the rooms publish.
    later_kib: f64,
}

/// The figures of one client.
#[derive(Debug, Clone, Serialize)]
struct ClientResult {
    client: Client,
    first_connection: Timings,
    windows: Vec<Window>,
    samples: Vec<Sample>,
    per_extra_room: Vec<PerExtraRoom>,
    rss_by_step: Option<RssByStep>,
    /// Of the whole process (start-up and teardown included).
    peak_rss_mib: f64,
    cpu_seconds: f64,
    wall_seconds: f64,
    frames_sent: u64,
    frames_dropped: Option<u64>,
    disconnected: u64,
    /// Every connection, in order.
    connections: Vec<Timings>,
}

impl ClientResult {
    fn new(
        client: Client,
        options: &ConnectOptions,
        usage: &shared::Usage,
        output: ClientOutput,
    ) -> Self {
        let c = &output.connections;
        // Windows between steps: 2..=10, 11..=50 for steps 1, 10, 50.
        let mut windows = Vec::new();
        let mut from = 2;
        for &to in options.rooms.iter().filter(|&&to| to >= 2) {
            if let Some(median) = Timings::median(&c[from - 1..to.min(c.len())]) {
                windows.push(Window { from, to, median });
            }
            from = to + 1;
        }
        let sample = |rooms: usize| output.samples.iter().find(|s| s.rooms == rooms);
        let base = options.rooms[0];
        let per_extra_room = options.rooms[1..]
            .iter()
            .filter_map(|&to| {
                let (a, b) = (sample(base)?, sample(to)?);
                let extra = (to - base) as f64;
                Some(PerExtraRoom {
                    from_rooms: base,
                    to_rooms: to,
                    rss_kib: (b.rss_kib as f64 - a.rss_kib as f64) / extra,
                    threads: (b.threads as f64 - a.threads as f64) / extra,
                })
            })
            .collect::<Vec<_>>();
        let extra = &c[base.min(c.len())..];
        let rss_by_step = per_extra_room.last().filter(|_| !extra.is_empty()).map(|total| {
            let average = |step: fn(&ConnectionOutput) -> f64| {
                extra.iter().map(step).sum::<f64>() / extra.len() as f64
            };
            let connect = average(|c| c.rss_kib[1] as f64 - c.rss_kib[0] as f64);
            let publish = average(|c| c.rss_kib[2] as f64 - c.rss_kib[1] as f64);
            let media = average(|c| c.rss_kib[3] as f64 - c.rss_kib[2] as f64);
            let encoder = extra.iter().all(|c| c.rss_encoder_kib.is_some()).then(|| {
                average(|c| c.rss_encoder_kib.unwrap_or_default() as f64 - c.rss_kib[2] as f64)
            });
            RssByStep {
                connect_kib: connect,
                publish_kib: publish,
                encoder_kib: encoder,
                until_first_media_kib: media - encoder.unwrap_or(0.0),
                later_kib: total.rss_kib - connect - publish - media,
            }
        });
        Self {
            client,
            first_connection: Timings::of(&c[0]),
            windows,
            samples: output.samples,
            per_extra_room,
            rss_by_step,
            peak_rss_mib: usage.peak_rss_mib(),
            cpu_seconds: usage.cpu_seconds(),
            wall_seconds: usage.wall_seconds,
            frames_sent: output.frames_sent,
            frames_dropped: output.frames_dropped,
            disconnected: output.disconnected,
            connections: c.iter().map(Timings::of).collect(),
        }
    }
}

/// Python / Rust for times (how many times faster ours is), Rust / Python for costs.
#[derive(Debug, Clone, Serialize)]
struct Comparison {
    /// Python's time to first media over ours: the first connection.
    first_connection_speedup: f64,
    /// The same for the median of each window.
    window_speedups: Vec<f64>,
    /// Our memory per extra room over Python's, for each pair of readings.
    per_extra_room_rss: Vec<f64>,
    /// Our threads per extra room, and Python's.
    per_extra_room_threads: Vec<(f64, f64)>,
    /// Whether every speed-up is at least [`TARGET_SPEEDUP`].
    connect_target_met: bool,
    /// Whether every memory ratio is at most [`TARGET_MEMORY_RATIO`].
    memory_target_met: bool,
}

/// What `target/bench/connect.json` holds.
#[derive(Debug, Clone, Serialize)]
struct Report {
    rooms: Vec<usize>,
    settle_seconds: u32,
    width: u32,
    height: u32,
    fps: u32,
    bitrate: u32,
    codec: &'static str,
    livekit_server: &'static str,
    python_sdk: String,
    /// What "first media" means for each client.
    first_media: &'static str,
    /// Seconds since the Unix epoch.
    timestamp: u64,
    results: Vec<ClientResult>,
    rust_vs_python: Option<Comparison>,
    targets: serde_json::Value,
}

impl Report {
    fn new(options: &ConnectOptions, results: Vec<ClientResult>) -> Self {
        let find = |client| results.iter().find(|r| r.client == client);
        let comparison = find(Client::Rust).zip(find(Client::Python)).map(|(r, p)| {
            let first_connection_speedup =
                p.first_connection.first_media_ms / r.first_connection.first_media_ms;
            let window_speedups: Vec<f64> = r
                .windows
                .iter()
                .zip(&p.windows)
                .map(|(r, p)| p.median.first_media_ms / r.median.first_media_ms)
                .collect();
            let per_extra_room_rss: Vec<f64> = r
                .per_extra_room
                .iter()
                .zip(&p.per_extra_room)
                .map(|(r, p)| r.rss_kib / p.rss_kib)
                .collect();
            let per_extra_room_threads =
                r.per_extra_room.iter().zip(&p.per_extra_room).map(|(r, p)| (r.threads, p.threads));
            Comparison {
                connect_target_met: first_connection_speedup >= TARGET_SPEEDUP
                    && window_speedups.iter().all(|s| *s >= TARGET_SPEEDUP),
                memory_target_met: per_extra_room_rss.iter().all(|m| *m <= TARGET_MEMORY_RATIO),
                first_connection_speedup,
                window_speedups,
                per_extra_room_rss,
                per_extra_room_threads: per_extra_room_threads.collect(),
            }
        });
        Self {
            rooms: options.rooms.clone(),
            settle_seconds: options.settle,
            width: options.width,
            height: options.height,
            fps: options.fps,
            bitrate: options.bitrate,
            codec: options.codec.name(),
            livekit_server: devstack::LIVEKIT_VERSION,
            python_sdk: format!("livekit=={PYTHON_SDK_VERSION}"),
            first_media: "from the call of connect to the first video frame sent on the media \
                          connection: Rust LocalVideoTrack::frames_sent() = 1, Python \
                          outbound_rtp.sent.packets_sent > 0 (get_rtc_stats)",
            timestamp: SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
            results,
            rust_vs_python: comparison,
            targets: serde_json::json!({
                "connect_speedup_at_least": TARGET_SPEEDUP,
                "memory_per_extra_room_ratio_at_most": TARGET_MEMORY_RATIO,
            }),
        }
    }
}

fn print_report(report: &Report) {
    let max = report.rooms.last().copied().unwrap_or(1);
    println!();
    println!(
        "{max} rooms joined one after the other, each publishing {}x{} {} at {} fps (at most {} \
         kbit/s), to LiveKit {} on 127.0.0.1; nobody subscribes",
        report.width,
        report.height,
        report.codec,
        report.fps,
        report.bitrate / 1000,
        report.livekit_server,
    );
    println!();
    println!("from the call of connect, ms (first media: the first video frame sent)");
    println!("{:<42} {:>9} {:>9} {:>12}", "", "connected", "published", "first media");
    for r in &report.results {
        let row = |what: String, t: &Timings| {
            println!(
                "{:<42} {:>9.1} {:>9.1} {:>12.1}",
                what, t.connect_ms, t.publish_ms, t.first_media_ms
            );
        };
        row(format!("{}, room 1", r.client.label()), &r.first_connection);
        for w in &r.windows {
            row(format!("{}, rooms {}-{} median", r.client.label(), w.from, w.to), &w.median);
        }
    }
    if let Some(c) = &report.rust_vs_python {
        let windows: Vec<String> = c.window_speedups.iter().map(|s| format!("{s:.2}")).collect();
        println!(
            "Python / Rust, first media: room 1 {:.2}x, medians {} (target >= {TARGET_SPEEDUP}x: {})",
            c.first_connection_speedup,
            windows.join(", "),
            if c.connect_target_met { "met" } else { "NOT met" }
        );
    }

    println!();
    println!(
        "VmRSS MiB and threads with every room publishing ({} s after the last join)",
        report.settle_seconds
    );
    let mut header = format!("{:<28} {:>10}", "", "0 rooms");
    for rooms in &report.rooms {
        header.push_str(&format!(
            " {:>10}",
            format!("{rooms} room{}", if *rooms == 1 { "" } else { "s" })
        ));
    }
    println!("{header}");
    for r in &report.results {
        let mut rss = format!("{:<28}", format!("{} RSS", r.client.name()));
        let mut threads = format!("{:<28}", format!("{} threads", r.client.name()));
        for s in &r.samples {
            rss.push_str(&format!(" {:>10.1}", s.rss_kib as f64 * 1024.0 / MIB));
            threads.push_str(&format!(" {:>10}", s.threads));
        }
        println!("{rss}");
        println!("{threads}");
    }
    println!();
    println!("per extra room");
    println!("{:<42} {:>10} {:>9}", "", "RSS KiB", "threads");
    for r in &report.results {
        for e in &r.per_extra_room {
            println!(
                "{:<42} {:>10.0} {:>9.2}",
                format!("{}, rooms {} -> {}", r.client.label(), e.from_rooms, e.to_rooms),
                e.rss_kib,
                e.threads
            );
        }
    }
    if let Some(c) = &report.rust_vs_python {
        let ratios: Vec<String> = c.per_extra_room_rss.iter().map(|m| format!("{m:.3}")).collect();
        println!(
            "Rust / Python, RSS per extra room: {} (target <= {TARGET_MEMORY_RATIO}: {})",
            ratios.join(", "),
            if c.memory_target_met { "met" } else { "NOT met" }
        );
    }
    println!();
    println!(
        "where RSS grew per extra room, KiB (averages over the rooms after the first reading)"
    );
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>13} {:>9}",
        "", "connect", "publish", "encoder", "first media", "later"
    );
    for r in &report.results {
        if let Some(s) = &r.rss_by_step {
            let encoder = s.encoder_kib.map_or_else(|| "-".to_owned(), |e| format!("{e:.0}"));
            println!(
                "{:<28} {:>9.0} {:>9.0} {:>9} {:>13.0} {:>9.0}",
                r.client.name(),
                s.connect_kib,
                s.publish_kib,
                encoder,
                s.until_first_media_kib,
                s.later_kib
            );
        }
    }
    println!();
    println!("whole process");
    println!(
        "{:<28} {:>13} {:>8} {:>8} {:>12} {:>12}",
        "", "peak RSS MiB", "CPU s", "wall s", "frames sent", "disconnects"
    );
    for r in &report.results {
        println!(
            "{:<28} {:>13.1} {:>8.2} {:>8.1} {:>12} {:>12}",
            r.client.name(),
            r.peak_rss_mib,
            r.cpu_seconds,
            r.wall_seconds,
            r.frames_sent,
            r.disconnected
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connection(first_media_ms: f64, rss: [u64; 4]) -> ConnectionOutput {
        ConnectionOutput {
            connect_ms: 1.0,
            publish_ms: 2.0,
            first_media_ms,
            rss_kib: rss,
            rss_encoder_kib: Some(rss[2] + 20),
        }
    }

    #[test]
    fn per_extra_room_divides_by_the_extra_rooms() {
        let options = ConnectOptions {
            rooms: vec![1, 3],
            settle: 0,
            width: 160,
            height: 120,
            fps: 15,
            bitrate: 100_000,
            codec: Codec::Vp8,
            only: None,
        };
        let output = ClientOutput {
            connections: vec![
                connection(10.0, [0, 0, 0, 0]),
                connection(30.0, [1000, 1100, 1150, 1200]),
                connection(20.0, [1300, 1400, 1450, 1500]),
            ],
            samples: vec![
                Sample { rooms: 0, rss_kib: 900, threads: 3 },
                Sample { rooms: 1, rss_kib: 1000, threads: 4 },
                Sample { rooms: 3, rss_kib: 1600, threads: 6 },
            ],
            frames_sent: 0,
            frames_dropped: None,
            disconnected: 0,
        };
        let usage = shared::Usage {
            exit: "exit status: 0".into(),
            success: true,
            timed_out: false,
            wall_seconds: 1.0,
            user_seconds: 0.5,
            system_seconds: 0.5,
            max_rss_kib: 2000,
        };
        let result = ClientResult::new(Client::Rust, &options, &usage, output);
        assert_eq!(result.first_connection.first_media_ms, 10.0);
        assert_eq!(result.windows.len(), 1);
        assert_eq!((result.windows[0].from, result.windows[0].to), (2, 3));
        assert_eq!(result.windows[0].median.first_media_ms, 25.0);
        assert_eq!(result.per_extra_room.len(), 1);
        assert_eq!(result.per_extra_room[0].rss_kib, 300.0);
        assert_eq!(result.per_extra_room[0].threads, 1.0);
        let steps = result.rss_by_step.expect("split");
        assert_eq!(steps.connect_kib, 100.0);
        assert_eq!(steps.publish_kib, 50.0);
        assert_eq!(steps.encoder_kib, Some(20.0));
        assert_eq!(steps.until_first_media_kib, 30.0);
        assert_eq!(steps.later_kib, 100.0);
    }
}
