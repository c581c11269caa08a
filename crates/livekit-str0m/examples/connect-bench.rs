//! The Rust half of `cargo xtask bench connect`: how long a connection takes to get its first
//! video frame out, and what each connected, publishing room costs in memory and threads, with
//! many rooms in one process.
//!
//! ```text
//! connect-bench generate --out FILE --width W --height H --frames N
//! LIVEKIT_URL=… LIVEKIT_TOKENS="<token 1>\n<token 2>…" connect-bench run --frames FILE \
//!     --width W --height H --fps F --bitrate BPS --rooms 1,10,50 --settle S
//! ```
//!
//! `run` joins one room per token, one after the other (each token names its own room), and in
//! each publishes a VP8 video track of the frames in FILE (raw I420, looped), nobody
//! subscribing. Per connection it times, from the call of [`Room::connect`]:
//!
//! * `connect_ms`: until `Room::connect` returns (signalling joined, media connection up);
//! * `publish_ms`: until [`Room::publish_video`] returns (the server confirmed the track);
//! * `first_media_ms`: until the track's first frame went out on the media connection
//!   ([`LocalVideoTrack::frames_sent`] is 1: frames written before the connection carries the
//!   track are dropped). Until then a frame is written every 10 ms and the count checked every
//!   5 ms, so this is late by 5 ms at most; afterwards the room gets `F` frames per second.
//!
//! Whenever the number of rooms reaches one of `--rooms`, it waits `S` seconds with every room
//! publishing, then reads its resident set size (`VmRSS`) and thread count (`Threads`) from
//! `/proc/self/status`; it reads them once before the first connection too. Each connection
//! also notes the resident set size before `connect`, after each of the three steps, and once
//! its encoder has encoded its first frame (libvpx allocates at the first frame).
//!
//! Stdout gets one JSON line: `{"connections": [{"connect_ms", "publish_ms", "first_media_ms",
//! "rss_kib": [before, connected, published, first media], "rss_encoder_kib"}…], "samples":
//! [{"rooms", "rss_kib", "threads"}…], "frames_sent", "frames_dropped", "disconnected"}`.
//! Progress goes to stderr.

use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_str0m::{
    EncodedVideoFrame, LocalVideoTrack, Room, RoomEvent, RoomEvents, RoomOptions, VideoCodec,
    VideoTrackOptions,
};
use rtc_media::codec::{
    H264Encoder, H264EncoderConfig, VideoEncoder, Vp8Encoder, Vp8EncoderConfig,
};
use rtc_media::frame::I420Frame;
use tokio::sync::watch;

#[path = "bench_support/mod.rs"]
mod bench_support;

use bench_support::{Error, command_and_flags, generate, read_frames};

/// How often a frame is written until the first one goes out.
const STARTUP_WRITE_INTERVAL: Duration = Duration::from_millis(10);
/// How often the sent count is checked until then.
const STARTUP_POLL_INTERVAL: Duration = Duration::from_millis(5);
/// How long a connection may take to get its first frame out.
const FIRST_MEDIA_WITHIN: Duration = Duration::from_secs(30);

fn main() -> Result<(), Error> {
    let (command, flags) = command_and_flags("usage: connect-bench generate|run --flag value ...")?;
    let number = |name: &str, default: u32| flags.number(name, Some(default));
    let (width, height) = (number("width", 160)?, number("height", 120)?);
    match command.as_str() {
        "generate" => {
            let out = flags.get("out").ok_or("--out is required")?;
            generate(out, width, height, number("frames", 15)?)
        }
        "run" => {
            let file = flags.get("frames").ok_or("--frames is required")?;
            let frames = Arc::new(read_frames(file, width, height)?);
            let steps = flags
                .get("rooms")
                .map_or("1,10,50", String::as_str)
                .split(',')
                .map(|n| n.trim().parse::<usize>())
                .collect::<Result<Vec<_>, _>>()?;
            let settings = Settings {
                width,
                height,
                fps: number("fps", 15)?,
                bitrate: number("bitrate", 100_000)?,
                settle: Duration::from_secs(number("settle", 5)?.into()),
                steps,
                codec: match flags.get("codec").map_or("vp8", String::as_str) {
                    "vp8" => VideoCodec::Vp8,
                    "h264" => VideoCodec::H264,
                    other => return Err(format!("--codec {other}: vp8 or h264").into()),
                },
            };
            let url = std::env::var("LIVEKIT_URL").map_err(|_| "LIVEKIT_URL is required")?;
            let tokens: Vec<String> = std::env::var("LIVEKIT_TOKENS")
                .map_err(|_| "LIVEKIT_TOKENS is required")?
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            let result = runtime.block_on(run(&url, &tokens, frames, &settings))?;
            println!("{result}");
            Ok(())
        }
        other => Err(format!("unknown command {other}").into()),
    }
}

/// Writes `count` frames of the moving test pattern with sensor-like noise on luma (a clean
/// synthetic picture compresses to almost nothing, which no camera does).
struct Settings {
    width: u32,
    height: u32,
    fps: u32,
    bitrate: u32,
    settle: Duration,
    steps: Vec<usize>,
    codec: VideoCodec,
}

impl Settings {
    /// An encoder of the chosen codec for one room.
    fn encoder(&self) -> Result<Box<dyn VideoEncoder>, Error> {
        Ok(match self.codec {
            VideoCodec::H264 => {
                let mut config = H264EncoderConfig::new(self.width, self.height);
                config.bitrate = self.bitrate;
                config.fps = self.fps;
                Box::new(H264Encoder::new(config)?)
            }
            _ => {
                let mut config = Vp8EncoderConfig::new(self.width, self.height);
                config.bitrate = self.bitrate;
                config.fps = self.fps;
                Box::new(Vp8Encoder::new(config)?)
            }
        })
    }
}

/// `VmRSS` (KiB) and `Threads` of this process.
fn process_status() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|value| value.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("Threads:"))
}

/// What one room's streaming task reports at the end.
struct Streamed {
    frames_sent: u64,
    frames_dropped: u64,
    disconnected: bool,
}

async fn run(
    url: &str,
    tokens: &[String],
    frames: Arc<Vec<I420Frame>>,
    s: &Settings,
) -> Result<serde_json::Value, Error> {
    let rooms = s.steps.iter().copied().max().ok_or("--rooms is empty")?;
    if tokens.len() < rooms {
        return Err(format!("{rooms} rooms need as many tokens, got {}", tokens.len()).into());
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut samples = Vec::new();
    let (rss, threads) = process_status();
    samples.push(serde_json::json!({ "rooms": 0, "rss_kib": rss, "threads": threads }));
    let mut connections = Vec::new();
    let mut streams = Vec::new();
    for (index, token) in tokens.iter().take(rooms).enumerate() {
        let rss_before = process_status().0;
        let started = Instant::now();
        let options = RoomOptions { auto_subscribe: false, ..RoomOptions::default() };
        let (room, events) = Room::connect(url, token, options).await?;
        let connected = started.elapsed();
        let rss_connected = process_status().0;
        let track = room
            .publish_video(VideoTrackOptions {
                name: "bench".into(),
                codec: s.codec,
                width: s.width,
                height: s.height,
                max_bitrate: s.bitrate,
                ..VideoTrackOptions::default()
            })
            .await?;
        let published = started.elapsed();
        let rss_published = process_status().0;
        let mut encoder = s.encoder()?;
        // The encoder sets itself up at the first frame.
        write_frame(&track, &mut encoder, &frames[0], started)?;
        let mut written = 1u64;
        let mut next_write = Instant::now() + STARTUP_WRITE_INTERVAL;
        let rss_encoder = process_status().0;
        while track.frames_sent() == 0 {
            if started.elapsed() > FIRST_MEDIA_WITHIN {
                return Err(format!(
                    "room {}: no frame went out within {FIRST_MEDIA_WITHIN:?}",
                    index + 1
                )
                .into());
            }
            if Instant::now() >= next_write {
                write_frame(
                    &track,
                    &mut encoder,
                    &frames[written as usize % frames.len()],
                    started,
                )?;
                written += 1;
                next_write += STARTUP_WRITE_INTERVAL;
            }
            tokio::time::sleep(STARTUP_POLL_INTERVAL).await;
        }
        let first_media = started.elapsed();
        let rss_first_media = process_status().0;
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        eprintln!(
            "room {:>2}: connected {:>6.1} ms, published {:>6.1} ms, first frame out {:>6.1} ms",
            index + 1,
            ms(connected),
            ms(published),
            ms(first_media)
        );
        connections.push(serde_json::json!({
            "connect_ms": ms(connected),
            "publish_ms": ms(published),
            "first_media_ms": ms(first_media),
            "rss_kib": [rss_before, rss_connected, rss_published, rss_first_media],
            "rss_encoder_kib": rss_encoder,
        }));
        let stream = Stream { room, events, track, encoder, frames: frames.clone(), started };
        streams.push(tokio::spawn(stream.run(s.fps, written, stop_rx.clone())));

        let count = index + 1;
        if s.steps.contains(&count) {
            tokio::time::sleep(s.settle).await;
            let (rss, threads) = process_status();
            eprintln!("{count} room(s): VmRSS {rss} KiB, {threads} threads");
            samples.push(serde_json::json!({ "rooms": count, "rss_kib": rss, "threads": threads }));
        }
    }
    let _ = stop_tx.send(true);
    let (mut frames_sent, mut frames_dropped, mut disconnected) = (0u64, 0u64, 0u64);
    for stream in streams {
        let streamed = stream.await?;
        frames_sent += streamed.frames_sent;
        frames_dropped += streamed.frames_dropped;
        disconnected += u64::from(streamed.disconnected);
    }
    Ok(serde_json::json!({
        "connections": connections,
        "samples": samples,
        "frames_sent": frames_sent,
        "frames_dropped": frames_dropped,
        "disconnected": disconnected,
    }))
}

/// Encodes `picture` (a keyframe when the track asked for one) and writes it, stamped with the
/// time since `started`. A frame the connection is too busy for is dropped, as the track says.
fn write_frame(
    track: &LocalVideoTrack,
    encoder: &mut Box<dyn VideoEncoder>,
    picture: &I420Frame,
    started: Instant,
) -> Result<(), Error> {
    if track.take_keyframe_request() {
        encoder.request_keyframe();
    }
    let timestamp = started.elapsed();
    for encoded in encoder.encode(picture)? {
        let _ = track.write(EncodedVideoFrame { timestamp, ..encoded.into() });
    }
    Ok(())
}

/// One connected room publishing at its frame rate until told to stop.
struct Stream {
    room: Room,
    events: RoomEvents,
    track: LocalVideoTrack,
    encoder: Box<dyn VideoEncoder>,
    frames: Arc<Vec<I420Frame>>,
    started: Instant,
}

impl Stream {
    async fn run(mut self, fps: u32, mut index: u64, mut stop: watch::Receiver<bool>) -> Streamed {
        let mut ticker = tokio::time::interval(Duration::from_secs(1) / fps);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut disconnected = false;
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                event = self.events.recv() => match event {
                    Some(RoomEvent::Disconnected(cause)) => {
                        eprintln!("a room was disconnected: {cause:?}");
                        disconnected = true;
                        break;
                    }
                    Some(_) => {}
                    None => {
                        disconnected = true;
                        break;
                    }
                },
                _ = ticker.tick() => {
                    let picture = &self.frames[index as usize % self.frames.len()];
                    if let Err(error) =
                        write_frame(&self.track, &mut self.encoder, picture, self.started)
                    {
                        eprintln!("encoding failed: {error}");
                        break;
                    }
                    index += 1;
                }
            }
        }
        let streamed = Streamed {
            frames_sent: self.track.frames_sent(),
            frames_dropped: self.track.frames_dropped(),
            disconnected,
        };
        self.room.disconnect().await;
        streamed
    }
}
