//! Hot paths at 1280x720: conversion to I420 (with a plain copy of the same bytes as the ceiling,
//! measured in the same run) and VP8 encoding of the moving pattern on one core.
//!
//! `cargo bench -p rtc-media --bench media`; frames/s = 1 / time per iteration.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rtc_media::codec::{
    H264Encoder, H264EncoderConfig, VideoEncoder, Vp8Encoder, Vp8EncoderConfig,
};
use rtc_media::convert::{PixelFormat, Plane, RawPicture, convert_into};
use rtc_media::frame::I420Frame;
use rtc_media::pattern::TestPattern;

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

criterion_group!(benches, conversion, encoding);
criterion_main!(benches);
