//! Any bytes as an Opus packet: its TOC byte, frame count and duration are a value or an error,
//! never a panic, and agree with each other (RFC 6716 §3.1, §3.2).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtc_media::audio::toc::{
    MAX_PACKET_SAMPLES, OpusMode, Toc, TocError, frame_count, packet_samples,
};

fuzz_target!(|data: &[u8]| {
    let toc = Toc::of(data);
    let count = frame_count(data);
    let samples = packet_samples(data);
    let Ok(toc) = toc else {
        assert!(data.is_empty());
        assert_eq!(count, Err(TocError::Empty));
        assert_eq!(samples, Err(TocError::Empty));
        return;
    };
    assert_eq!(toc.0, data[0]);
    assert_eq!(Toc::from_parts(toc.config(), toc.stereo(), toc.code()), toc);
    let frame = toc.frame_samples();
    assert!([120, 240, 480, 960, 1920, 2880].contains(&frame));
    match toc.mode() {
        OpusMode::Silk => assert!(toc.config() < 12 && frame >= 480),
        OpusMode::Hybrid => assert!((12..16).contains(&toc.config()) && frame <= 960),
        OpusMode::Celt => assert!(toc.config() >= 16 && frame <= 960),
    }
    match (count, samples) {
        (Ok(count), Ok(samples)) => {
            assert!((1..=63).contains(&count));
            assert_eq!(samples, frame * u32::from(count));
            assert!(samples <= MAX_PACKET_SAMPLES && samples % 120 == 0);
        }
        (Ok(count), Err(TocError::TooLong(samples))) => {
            assert_eq!(samples, frame * u32::from(count));
            assert!(samples > MAX_PACKET_SAMPLES);
        }
        (Err(error), Err(same)) => {
            assert_eq!(error, same);
            assert_eq!(toc.code(), 3);
            assert!(matches!(error, TocError::MissingFrameCount | TocError::ZeroFrames));
        }
        other => panic!("frame count and duration disagree: {other:?}"),
    }
});
