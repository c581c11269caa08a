//! Frame encryption throughput: a 1,200-byte frame (a delta frame of a small video, about one
//! packet) and a 100 KB one (a keyframe of 720p), encrypted and decrypted as LiveKit's clients
//! do, with Element Call's key settings.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use livekit_str0m::e2ee::{GcmFrameCryptor, KeyProvider, KeyProviderOptions};
use livekit_str0m::{FrameContext, FrameCryptor, VideoCodec};

fn frame(codec: VideoCodec, len: usize) -> Vec<u8> {
    let mut frame: Vec<u8> = (0..len).map(|i| (i * 7 + 1) as u8).collect();
    match codec {
        // A VP8 delta frame tag.
        VideoCodec::Vp8 => frame[..3].copy_from_slice(&[0x31, 0x02, 0x00]),
        // An Annex B non-IDR slice.
        _ => frame[..5].copy_from_slice(&[0, 0, 0, 1, 0x41]),
    }
    frame
}

fn cryptor() -> GcmFrameCryptor {
    let keys = Arc::new(KeyProvider::new(KeyProviderOptions::element_call()));
    keys.set_key("alice", 1, &[0x42; 16]).expect("a key");
    GcmFrameCryptor::new(keys)
}

fn bench(c: &mut Criterion) {
    let cryptor = cryptor();
    for codec in [VideoCodec::Vp8, VideoCodec::H264] {
        let context = FrameContext::new("alice", codec).with_rtp(90_000, 0x1234_5678);
        let mut group = c.benchmark_group(format!("e2ee_{codec:?}"));
        for len in [1_200, 100_000] {
            let plain = frame(codec, len);
            let mut sealed = plain.clone();
            cryptor.encrypt(&context, &mut sealed).expect("encrypts");
            group.throughput(Throughput::Bytes(len as u64));
            group.bench_with_input(BenchmarkId::new("encrypt", len), &plain, |b, plain| {
                b.iter(|| {
                    let mut data = plain.clone();
                    cryptor.encrypt(&context, &mut data).expect("encrypts");
                    black_box(data)
                })
            });
            group.bench_with_input(BenchmarkId::new("decrypt", len), &sealed, |b, sealed| {
                b.iter(|| {
                    let mut data = sealed.clone();
                    cryptor.decrypt(&context, &mut data).expect("decrypts");
                    black_box(data)
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
