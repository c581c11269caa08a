//! Any bytes as a WAV file: the header parser and the source built on it give a header or an
//! error, never a panic; an accepted header lies inside the file, and the source hands out whole
//! 20 ms frames, never more audio than the bytes could hold, reading (and allocating) about
//! 20 ms at a time.
#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use rtc_media::audio::{AudioSource, FRAME_SAMPLES, WavSource, parse_wav};

/// Frames pulled at most from one input (60 ms, past the resampler's delay of at most 32 samples
/// at the lower rate: every path of the source, its end included for shorter inputs, is met;
/// more frames only cost resampling time, most of an input's cost).
const MAX_FRAMES: usize = 3;
/// Frames pulled at most from the same input played in a loop (a file shorter than 20 ms wraps
/// in the first).
const MAX_LOOPED_FRAMES: usize = 2;

fuzz_target!(|data: &[u8]| {
    let parsed = parse_wav(data);
    if let Ok(header) = &parsed {
        let block = header.format.block_align() as u64;
        assert!(header.data_len > 0 && header.data_len % block == 0);
        assert!(header.data_offset + header.data_len <= data.len() as u64);
        assert!((1..=32).contains(&header.format.channels));
    }
    let Ok(mut source) = WavSource::new(Cursor::new(data), false) else {
        return;
    };
    let header = parsed.as_ref().expect("the source accepted what the parser refused");
    assert_eq!(source.header(), header);
    let channels = source.channels();
    assert!(channels == 1 || channels == 2);
    let mut frames = 0;
    while frames < MAX_FRAMES {
        match source.next_frame() {
            Ok(Some(frame)) => {
                assert_eq!(frame.channels, channels);
                assert_eq!(frame.samples.len(), FRAME_SAMPLES * usize::from(channels));
                frames += 1;
            }
            Ok(None) | Err(_) => break,
        }
    }
    // Never more audio than the bytes could hold (one frame per byte at 1 kHz is 48×).
    assert!(
        frames <= data.len() * 48 / FRAME_SAMPLES + 2,
        "{frames} frames from {} bytes",
        data.len()
    );

    // Looping starts over at the end, without a gap, and without running away.
    let mut looped =
        WavSource::new(Cursor::new(data), true).expect("accepted once, accepted twice");
    for _ in 0..MAX_LOOPED_FRAMES {
        match looped.next_frame() {
            Ok(Some(frame)) => {
                assert_eq!(frame.samples.len(), FRAME_SAMPLES * usize::from(channels))
            }
            Ok(None) => panic!("a looping source ended"),
            Err(_) => break,
        }
    }
});
