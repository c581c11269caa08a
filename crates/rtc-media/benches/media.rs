//! Hot paths at 1280x720: conversion to I420 (with a plain copy of the same bytes as the ceiling,
//! measured in the same run) and VP8 encoding of the moving pattern on one core; and audio, per
//! 20 ms frame: Opus encoding (mono, FEC and DTX on), the jitter buffer with decoding, resampling
//! 44.1 → 48 kHz, writing Ogg Opus.
//!
//! `cargo bench -p rtc-media --bench media`; frames/s = 1 / time per iteration.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rtc_media::audio::{
    FRAME_SAMPLES, JitterBuffer, JitterBufferConfig, OpusEncoder, OpusEncoderConfig, Resampler,
};
use rtc_media::codec::{
    H264Encoder, H264EncoderConfig, VideoEncoder, Vp8Encoder, Vp8EncoderConfig,
};
use rtc_media::convert::{PixelFormat, Plane, RawPicture, convert_into};
use rtc_media::frame::I420Frame;
use rtc_media::pattern::TestPattern;
use rtc_media::sink::OggOpusWriter;

const W: u32 = 1280;
const H: u32 = 720;

fn conversion(c: &mut Criterion) {
    let mut group = c.benchmark_group("convert_1280x720");
    let nv12: Vec<u8> = (0..(W * H * 3 / 2)).map(|i| (i % 251) as u8).collect();
    let yuyv: Vec<u8> = (0..(W * H * 2)).map(|i| (i % 253) as u8).collect();
    let mut frame = I420Frame::black(W, H);

    group.throughput(Throughput::Bytes(nv12.len() as u64));
    let mut target = vec![0u8; nv12.len()];
    group.bench_function("copy_nv12_sized_ceiling", |b| {
        b.iter(|| target.copy_from_slice(black_box(&nv12)));
    });
    group.bench_function("nv12_to_i420", |b| {
        let (y, uv) = nv12.split_at((W * H) as usize);
        let planes =
            [Plane { data: y, stride: W as usize }, Plane { data: uv, stride: W as usize }];
        let picture =
            RawPicture { format: PixelFormat::Nv12, width: W, height: H, planes: &planes };
        b.iter(|| convert_into(black_box(&picture), &mut frame).unwrap());
    });

    group.throughput(Throughput::Bytes(yuyv.len() as u64));
    let mut target = vec![0u8; yuyv.len()];
    group.bench_function("copy_yuyv_sized_ceiling", |b| {
        b.iter(|| target.copy_from_slice(black_box(&yuyv)));
    });
    group.bench_function("yuyv_to_i420", |b| {
        let planes = [Plane { data: &yuyv, stride: (W * 2) as usize }];
        let picture =
            RawPicture { format: PixelFormat::Yuyv, width: W, height: H, planes: &planes };
        b.iter(|| convert_into(black_box(&picture), &mut frame).unwrap());
    });
    group.finish();
}

fn encoding(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_1280x720_one_core");
    group.sample_size(30).measurement_time(Duration::from_secs(15));
    let mut frames: Vec<I420Frame> = (0..64u64)
        .map(|i| TestPattern::Moving.render(W, H, i).with_timestamp(Duration::from_millis(i * 33)))
        .collect();
    let mut config = Vp8EncoderConfig::new(W, H);
    config.threads = 1;
    let mut encoder = Vp8Encoder::new(config).unwrap();
    let mut n = 0u64;
    group.bench_function("vp8_moving_pattern", |b| {
        b.iter(|| {
            let frame = &mut frames[(n % 64) as usize];
            frame.timestamp = Duration::from_millis(n * 33);
            n += 1;
            black_box(encoder.encode(frame).unwrap())
        });
    });
    let mut config = H264EncoderConfig::new(W, H);
    config.threads = 1;
    let mut encoder = H264Encoder::new(config).unwrap();
    let mut n = 0u64;
    group.bench_function("h264_moving_pattern", |b| {
        b.iter(|| {
            let frame = &mut frames[(n % 64) as usize];
            frame.timestamp = Duration::from_millis(n * 33);
            n += 1;
            black_box(encoder.encode(frame).unwrap())
        });
    });
    group.finish();
}

/// One second of 440 Hz with a syllable-like envelope, in 20 ms frames.
fn voice_like_frames() -> Vec<Vec<i16>> {
    (0..50)
        .map(|k| {
            (0..FRAME_SAMPLES)
                .map(|i| {
                    let t = (k * FRAME_SAMPLES + i) as f64 / 48_000.0;
                    let envelope = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
                    (12_000.0 * envelope * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
                })
                .collect()
        })
        .collect()
}

fn audio(c: &mut Criterion) {
    let mut group = c.benchmark_group("audio_per_20ms");
    let frames = voice_like_frames();
    let mut encoder = OpusEncoder::with_config(&OpusEncoderConfig::default()).unwrap();
    let mut n = 0usize;
    group.bench_function("opus_encode_mono_32k_fec_dtx", |b| {
        b.iter(|| {
            n += 1;
            black_box(encoder.encode(&frames[n % frames.len()]).unwrap())
        });
    });

    let packets: Vec<Vec<u8>> =
        frames.iter().map(|f| encoder.encode(f).unwrap().into_packet().unwrap()).collect();
    let mut buffer = JitterBuffer::new(JitterBufferConfig::default()).unwrap();
    let start = Instant::now();
    let mut n = 0u64;
    group.bench_function("jitter_buffer_push_pop_decode", |b| {
        b.iter(|| {
            let arrival = start + Duration::from_millis(20 * n);
            buffer.push(n * 960, &packets[(n % 50) as usize], arrival);
            n += 1;
            black_box(buffer.pop(arrival + Duration::from_millis(40)))
        });
    });

    let input: Vec<i16> = (0..882).map(|i| ((i * 37) % 2000) as i16 - 1000).collect();
    let mut resampler = Resampler::to_48k(44_100, 1).unwrap();
    let mut output = Vec::with_capacity(2000);
    group.bench_function("resample_44k1_to_48k_mono", |b| {
        b.iter(|| {
            output.clear();
            resampler.process_i16(black_box(&input), &mut output);
            black_box(output.len())
        });
    });

    let mut writer =
        OggOpusWriter::with_serial(std::io::sink(), 1, &[("TITLE", "bench")], 1).unwrap();
    let mut n = 0u64;
    group.bench_function("ogg_opus_write_packet", |b| {
        b.iter(|| {
            writer.write_packet(n * 960, black_box(&packets[(n % 50) as usize])).unwrap();
            n += 1;
        });
    });
    group.finish();
}

criterion_group!(benches, conversion, encoding, audio);
criterion_main!(benches);
