//! Any bytes as what a receiver does with an Opus track: packets pushed into the jitter buffer
//! (RTP timestamps that step, go back, wrap and jump, arrival times from a fake clock, payloads
//! that are garbage for libopus) and frames popped on its clock or the caller's, and the same
//! packets recorded into an Ogg Opus file (jumps of over a second shortened to one on the
//! recording's timeline, at most 1000 packets). Never a panic or a crash in libopus; every frame
//! is 20 ms on the configured channels; the recording reads back with every packet and filler.
//!
//! Layout: four bytes of configuration (channels, minimum delay in ms, maximum delay in 4 ms,
//! concealment in ms), then operations of one byte each followed by their arguments:
//!
//! * `op & 7` in 0..=2: push; `i16` timestamp step (LE; × 120 samples, or × 1 when `op & 8`),
//!   arrival advance in ms, payload length, payload;
//! * 3: the RTP timestamp becomes the next `u32` (LE);
//! * 4, 5: `pop` after an advance of the next byte in ms;
//! * 6: `pop_due` until nothing is due, after an advance of the next byte in ms;
//! * 7: the buffer's figures read, the recording flushed.
#![no_main]

use std::cell::RefCell;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use rtc_media::audio::toc::packet_samples;
use rtc_media::audio::{FRAME_SAMPLES, JitterBuffer, JitterBufferConfig, TimestampExtender};
use rtc_media::sink::{OggOpusReader, OggOpusWriter};

/// Operations taken from one input.
const MAX_OPS: usize = 128;
/// Frames taken from one `pop_due`.
const MAX_DUE: usize = 16;
/// Packets (fillers included) recorded at most: several Ogg pages and filled gaps, while the
/// recording (written, then read back) stays a small part of each input's cost.
const MAX_RECORDED: u64 = 1_000;
/// The longest gap the recording fills (1 s); the writer fills a gap with up to 400 packets a
/// second, so that longer jumps, up to the 10 minutes it would fill, are shortened to this on
/// its timeline (throughput matters more than the hundredth long gap).
const MAX_RECORDED_GAP: u64 = 48_000;
/// The jump the writer does not fill (10 minutes).
const WRITER_MAX_FILL: u64 = 10 * 60 * 48_000;

thread_local! {
    /// A buffer per channel count, restarted for each input: as new, without making a libopus
    /// decoder each time (libopus probes the CPU for each, which is slow in a virtual machine).
    static BUFFERS: RefCell<[Option<JitterBuffer>; 2]> = const { RefCell::new([None, None]) };
}

/// A buffer with `config`, as new.
fn buffer(config: JitterBufferConfig) -> JitterBuffer {
    let slot = usize::from(config.channels == 2);
    let kept = BUFFERS.with_borrow_mut(|buffers| buffers[slot].take());
    match kept {
        Some(buffer) => buffer.restarted(config),
        None => JitterBuffer::new(config),
    }
    .expect("a jitter buffer")
}

/// Keeps `buffer` for the next input.
fn keep(buffer: JitterBuffer, channels: u16) {
    BUFFERS.with_borrow_mut(|buffers| buffers[usize::from(channels == 2)] = Some(buffer));
}

struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        let (&first, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        first
    }

    fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (taken, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        taken
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }

    fn millis(&mut self) -> Duration {
        Duration::from_millis(u64::from(self.byte()))
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let channels = 1 + u16::from(input.byte() & 1);
    let mut config = JitterBufferConfig::new(channels);
    config.min_delay = input.millis();
    config.max_delay = input.millis() * 4;
    config.max_concealment = input.millis();
    let mut buffer = buffer(config);
    let mut writer = OggOpusWriter::new(Vec::new(), channels as u8, &[]).expect("a writer");
    let frame_len = FRAME_SAMPLES * usize::from(channels);

    let start = Instant::now();
    let mut now = start;
    let mut rtp = 0u32;
    let mut extender = TimestampExtender::new();
    // The recording's timeline: the end of the last packet taken, and the time cut from jumps.
    let mut recorded_until = None;
    let mut shortened = 0u64;
    for _ in 0..MAX_OPS {
        if input.0.is_empty() {
            break;
        }
        let op = input.byte();
        match op & 7 {
            0..=2 => {
                let step = i32::from(input.u16() as i16) * if op & 8 != 0 { 1 } else { 120 };
                rtp = rtp.wrapping_add_signed(step);
                now += input.millis();
                let len = usize::from(input.byte());
                let payload = input.bytes(len);
                let timestamp = extender.extend(rtp);
                buffer.push(timestamp, payload, now);
                if writer.packets() + writer.filled() < MAX_RECORDED {
                    let mut at = timestamp.saturating_sub(shortened);
                    if let Some(next) = recorded_until {
                        let gap = at.saturating_sub(next);
                        if gap > MAX_RECORDED_GAP && gap <= WRITER_MAX_FILL {
                            shortened += gap - MAX_RECORDED_GAP;
                            at = next + MAX_RECORDED_GAP;
                        }
                    }
                    let before = writer.packets();
                    let _ = writer.write_packet(at, payload);
                    if writer.packets() > before {
                        let samples = packet_samples(payload).expect("a packet the writer took");
                        recorded_until = Some(at + u64::from(samples));
                    }
                }
            }
            3 => rtp = input.u32(),
            4 | 5 => {
                now += input.millis();
                let frame = buffer.pop(now);
                assert_eq!(frame.channels, channels);
                assert_eq!(frame.samples.len(), frame_len);
            }
            6 => {
                now += input.millis();
                for _ in 0..MAX_DUE {
                    let Some(frame) = buffer.pop_due(now) else { break };
                    assert_eq!(frame.channels, channels);
                    assert_eq!(frame.samples.len(), frame_len);
                }
            }
            _ => {
                let _ = (buffer.buffered(), buffer.target_delay(), buffer.stats());
                writer.flush().expect("flushing into memory");
            }
        }
    }

    keep(buffer, channels);

    let written = writer.packets() + writer.filled();
    let duration = writer.duration();
    let file = writer.finish().expect("finishing into memory");
    let reader = OggOpusReader::parse(&file).expect("the recording reads back");
    assert_eq!(reader.packets().len() as u64, written);
    assert_eq!(reader.duration(), duration);
    assert!(reader.is_finished());
    assert_eq!(u16::from(reader.head().channels), channels);
});
