//! The Rust half of `cargo xtask bench publish`: publishes raw I420 frames from a file as VP8,
//! paced in real time, so CPU time and memory can be compared with the official SDK publishing
//! the same frames.
//!
//! ```text
//! publish-bench generate --out FILE --width W --height H --frames N
//! LIVEKIT_URL=… LIVEKIT_TOKEN=… publish-bench publish --frames FILE --width W --height H \
//!     --fps F --seconds S --bitrate BPS [--e2ee 1]
//!
//! With `--e2ee 1` the frames are encrypted as Element Call's are (LiveKit's GCM frame format,
//! HKDF key), to measure what encryption costs.
//! ```
//! `publish` prints one JSON line: `{"frames_sent": N, "late": K, "seconds": S}`.
//!
//! `cargo xtask bench record` uses it as the call's one publisher:
//!
//! ```text
//! LIVEKIT_URL=… LIVEKIT_TOKEN=… publish-bench stream --frames FILE --width W --height H \
//!     --fps F --bitrate BPS
//! ```
//! publishes the frames as VP8 (looped, paced the same way) and a 440 Hz Opus tone (one packet
//! per 20 ms, with its level) until its stdin closes; prints `{"streaming": true}` once both
//! tracks are published, and at the end `{"frames_sent": N, "late": K, "audio_packets": A,
//! "seconds": S}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_str0m::e2ee::{GcmFrameCryptor, KeyProvider, KeyProviderOptions};
use livekit_str0m::{
    AudioTrackOptions, EncodedAudioFrame, EncodedVideoFrame, LocalAudioTrack, Room, RoomOptions,
    TrackError, VideoCodec, VideoTrackOptions,
};
use rtc_media::audio::{AudioLevel, OpusEncoder, OpusEncoderConfig, ToneSource};
use rtc_media::codec::{VideoEncoder as _, Vp8Encoder, Vp8EncoderConfig};
use rtc_media::frame::I420Frame;

#[path = "bench_support/mod.rs"]
mod bench_support;

use bench_support::{Error, command_and_flags, generate, read_frames};

fn main() -> Result<(), Error> {
    let (command, flags) =
        command_and_flags("usage: publish-bench generate|publish --flag value ...")?;
    let number = |name: &str, default: Option<u32>| flags.number(name, default);
    let (width, height) = (number("width", Some(1280))?, number("height", Some(720))?);
    match command.as_str() {
        "generate" => {
            let out = flags.get("out").ok_or("--out is required")?;
            generate(out, width, height, number("frames", Some(60))?)
        }
        "publish" | "stream" => {
            let file = flags.get("frames").ok_or("--frames is required")?;
            let frames = read_frames(file, width, height)?;
            let publishing = command == "publish";
            let settings = Settings {
                width,
                height,
                fps: number("fps", Some(30))?,
                seconds: if publishing { number("seconds", Some(30))? } else { 0 },
                bitrate: number("bitrate", Some(2_000_000))?,
                e2ee: publishing && number("e2ee", Some(0))? != 0,
            };
            let url = std::env::var("LIVEKIT_URL").map_err(|_| "LIVEKIT_URL is required")?;
            let token = std::env::var("LIVEKIT_TOKEN").map_err(|_| "LIVEKIT_TOKEN is required")?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            if publishing {
                runtime.block_on(publish(&url, &token, &frames, settings))
            } else {
                runtime.block_on(stream(&url, &token, &frames, settings))
            }
        }
        other => Err(format!("unknown command {other}").into()),
    }
}

#[derive(Clone, Copy)]
struct Settings {
    width: u32,
    height: u32,
    fps: u32,
    seconds: u32,
    bitrate: u32,
    e2ee: bool,
}

async fn publish(url: &str, token: &str, frames: &[I420Frame], s: Settings) -> Result<(), Error> {
    let mut room_options = RoomOptions::default();
    if s.e2ee {
        // One key for the publisher, as a member's 16 random bytes (the benchmark has nobody
        // else, so a shared ring saves knowing our identity).
        let mut key_options = KeyProviderOptions::element_call();
        key_options.shared_key = true;
        let keys = Arc::new(KeyProvider::new(key_options));
        keys.set_shared_key(0, &[0x5a; 16])?;
        room_options.frame_cryptor = Some(Arc::new(GcmFrameCryptor::new(keys)));
    }
    let (room, _events) = Room::connect(url, token, room_options).await?;
    let options = VideoTrackOptions {
        name: "bench".into(),
        codec: VideoCodec::Vp8,
        width: s.width,
        height: s.height,
        max_bitrate: s.bitrate,
        encrypted: s.e2ee,
        ..Default::default()
    };
    let track = room.publish_video(options).await?;
    let mut config = Vp8EncoderConfig::new(s.width, s.height);
    config.bitrate = s.bitrate;
    config.fps = s.fps;
    let mut encoder = Vp8Encoder::new(config)?;
    let interval = Duration::from_secs(1) / s.fps;
    let start = Instant::now();
    let (mut sent, mut late, mut bytes) = (0u64, 0u64, 0u64);
    let mut encoding = Duration::ZERO;
    for index in 0..u64::from(s.fps * s.seconds) {
        let timestamp = interval * index as u32;
        let deadline = start + timestamp;
        tokio::time::sleep_until(deadline.into()).await;
        if deadline.elapsed() > interval {
            // As a real-time source does: a frame whose time has passed is skipped.
            late += 1;
            continue;
        }
        if track.take_keyframe_request() {
            encoder.request_keyframe();
        }
        // The encoder does not need the frame's own timestamp: the track gets `timestamp`.
        let picture = &frames[index as usize % frames.len()];
        let encode_started = Instant::now();
        let encoded_frames = encoder.encode(picture)?;
        encoding += encode_started.elapsed();
        for encoded in encoded_frames {
            let size = encoded.data.len() as u64;
            let frame = EncodedVideoFrame { timestamp, ..encoded.into() };
            if track.write(frame).is_ok() {
                sent += 1;
                bytes += size;
            }
        }
    }
    room.disconnect().await;
    let result = serde_json::json!({
        "frames_sent": sent,
        "late": late,
        "seconds": start.elapsed().as_secs_f64(),
        "encoded_bytes": bytes,
        "encode_seconds": encoding.as_secs_f64(),
    });
    eprintln!(
        "encoder: libvpx {}x{}, {sent} frames sent, {:.1} s encoding, {bytes} bytes",
        s.width,
        s.height,
        encoding.as_secs_f64()
    );
    println!("{result}");
    Ok(())
}

/// `stream`: video and a tone until stdin closes.
async fn stream(url: &str, token: &str, frames: &[I420Frame], s: Settings) -> Result<(), Error> {
    let (room, _events) = Room::connect(url, token, RoomOptions::default()).await?;
    let options = VideoTrackOptions {
        name: "bench".into(),
        codec: VideoCodec::Vp8,
        width: s.width,
        height: s.height,
        max_bitrate: s.bitrate,
        ..Default::default()
    };
    let video = room.publish_video(options).await?;
    let audio = room.publish_audio(AudioTrackOptions::default()).await?;
    let (closed_tx, mut stdin_closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        let _ = closed_tx.send(());
    });
    let tone = tokio::spawn(write_tone(audio));
    println!("{}", serde_json::json!({ "streaming": true }));

    let mut config = Vp8EncoderConfig::new(s.width, s.height);
    config.bitrate = s.bitrate;
    config.fps = s.fps;
    let mut encoder = Vp8Encoder::new(config)?;
    let interval = Duration::from_secs(1) / s.fps;
    let start = Instant::now();
    let (mut sent, mut late) = (0u64, 0u64);
    for index in 0u64.. {
        let timestamp = interval * index as u32;
        let deadline = start + timestamp;
        tokio::select! {
            _ = &mut stdin_closed => break,
            () = tokio::time::sleep_until(deadline.into()) => {}
        }
        if deadline.elapsed() > interval {
            late += 1;
            continue;
        }
        if video.take_keyframe_request() {
            encoder.request_keyframe();
        }
        for encoded in encoder.encode(&frames[index as usize % frames.len()])? {
            if video.write(EncodedVideoFrame { timestamp, ..encoded.into() }).is_ok() {
                sent += 1;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    room.disconnect().await;
    let audio_packets = tone.await?;
    println!(
        "{}",
        serde_json::json!({
            "frames_sent": sent,
            "late": late,
            "audio_packets": audio_packets,
            "seconds": seconds,
        })
    );
    Ok(())
}

/// Writes a 440 Hz tone into `track`, one Opus packet per 20 ms with its level, until the track
/// closes; returns how many packets it wrote.
async fn write_tone(track: LocalAudioTrack) -> u64 {
    let mut tone = ToneSource::new(440.0, 0.5, 1);
    let Ok(mut encoder) = OpusEncoder::with_config(&OpusEncoderConfig::default()) else {
        eprintln!("no Opus encoder: streaming without audio");
        return 0;
    };
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    let mut written = 0u64;
    for n in 0u32.. {
        ticker.tick().await;
        let pcm = tone.next_samples();
        let Ok(encoded) = encoder.encode(&pcm) else { continue };
        let level = AudioLevel::measure(&pcm, encoded.is_speech());
        let Some(data) = encoded.into_packet() else { continue };
        let frame = EncodedAudioFrame {
            data,
            timestamp: Duration::from_millis(20) * n,
            level: Some(level.into()),
        };
        match track.write(frame) {
            Ok(()) => written += 1,
            Err(TrackError::Closed) => break,
            Err(_) => {}
        }
    }
    written
}
