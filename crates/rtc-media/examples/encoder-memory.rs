//! What one live VP8 encoder costs in resident memory.
//!
//! ```text
//! cargo run --release -p rtc-media --example encoder-memory          # the standard cases
//! cargo run --release -p rtc-media --example encoder-memory -- 320x180 20 \
//!     [--frames F] [--threads T] [--noise-sensitivity S] [--bitrate BPS] [--fps F] [--clean]
//! ```
//!
//! Without a size it measures 50 encoders at 160x120, then one at 640x360 and one at 1280x720,
//! each case in a fresh child process (so that memory one case frees cannot serve the next).
//! A case creates, uses and drops one 32x32 encoder first (libvpx's one-time tables), reads
//! `VmRSS` from `/proc/self/status`, then creates `N` encoders with the defaults of
//! [`Vp8EncoderConfig`] (the flags change them), encodes a few frames of the moving test
//! pattern with sensor-like noise on luma with each (as `cargo xtask bench connect` sends;
//! `--clean` leaves the noise out), keeps them all alive and reads `VmRSS` again: it prints
//! (after − before) / N.
//!
//! To compare another libvpx build of the same ABI, run the binary with `LD_LIBRARY_PATH`
//! pointing at it.

use std::process::Command;
use std::time::Duration;

use rtc_media::codec::{VideoEncoder, Vp8Encoder, Vp8EncoderConfig};
use rtc_media::frame::I420Frame;
use rtc_media::pattern::TestPattern;

struct Case {
    width: u32,
    height: u32,
    count: usize,
    frames: u64,
    noise: bool,
    config: Vp8EncoderConfig,
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line")
}

/// Frame `index` of the moving pattern, with noise on luma when `noise` is set.
fn picture(case: &Case, index: u64) -> I420Frame {
    let mut frame = TestPattern::Moving
        .render(case.width, case.height, index)
        .with_timestamp(Duration::from_secs(index) / case.config.fps);
    if case.noise {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64 ^ index;
        let (y, _, _) = frame.planes_mut();
        for pixel in y.iter_mut() {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            *pixel = pixel.saturating_add_signed((seed % 13) as i8 - 6);
        }
    }
    frame
}

fn encoder(case: &Case, pictures: &[I420Frame]) -> Vp8Encoder {
    let mut encoder = Vp8Encoder::new(case.config.clone()).expect("a VP8 encoder");
    for picture in pictures {
        let packets = encoder.encode(picture).expect("encoding");
        assert_eq!(packets.len(), 1, "one packet per frame");
    }
    encoder
}

/// Measures one case in this process; prints one line.
fn measure(case: &Case) {
    let pictures: Vec<_> = (0..case.frames).map(|index| picture(case, index)).collect();
    // libvpx's one-time set-up, with a small picture: memory freed here and kept by the
    // allocator would serve the encoders measured.
    let small = Case {
        width: 32,
        height: 32,
        count: 1,
        frames: 2,
        noise: true,
        config: Vp8EncoderConfig::new(32, 32),
    };
    drop(encoder(&small, &[picture(&small, 0), picture(&small, 1)]));
    let before = rss_kib();
    let encoders: Vec<_> = (0..case.count).map(|_| encoder(case, &pictures)).collect();
    let after = rss_kib();
    println!(
        "{:>9} x{:<3} {} frames, {} thread(s), noise sensitivity {}: {:>6.0} KiB RSS per encoder",
        format!("{}x{}", case.width, case.height),
        case.count,
        case.frames,
        encoders[0].threads(),
        case.config.noise_sensitivity,
        after.saturating_sub(before) as f64 / case.count as f64,
    );
}

fn parse_size(text: &str) -> Option<(u32, u32)> {
    let (w, h) = text.split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

fn parse_case(args: &[String]) -> Case {
    let (width, height) = parse_size(&args[0]).expect("a size such as 160x120");
    let mut case = Case {
        width,
        height,
        count: 1,
        frames: 5,
        noise: true,
        config: Vp8EncoderConfig::new(width, height),
    };
    let mut rest = args[1..].iter();
    while let Some(arg) = rest.next() {
        let mut value = || rest.next().expect("a value after a flag").parse::<i64>().unwrap();
        match arg.as_str() {
            "--frames" => case.frames = value() as u64,
            "--threads" => case.config.threads = value() as u32,
            "--noise-sensitivity" => case.config.noise_sensitivity = value() as i32,
            "--bitrate" => case.config.bitrate = value() as u32,
            "--fps" => case.config.fps = value() as u32,
            "--clean" => case.noise = false,
            count => case.count = count.parse().expect("a number of encoders"),
        }
    }
    assert!(case.frames > 0 && case.count > 0, "at least one frame and one encoder");
    case
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| !a.starts_with("--")) {
        measure(&parse_case(&args));
        return;
    }
    let me = std::env::current_exe().expect("this program's path");
    for (size, count) in [("160x120", "50"), ("640x360", "1"), ("1280x720", "1")] {
        let status =
            Command::new(&me).args([size, count]).args(&args).status().expect("a child process");
        assert!(status.success(), "the {size} case failed");
    }
}
