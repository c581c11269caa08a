//! Any bytes as an encrypted frame of either codec, from a sender whose key we hold (Element
//! Call's settings, ratchet window included) and from one we do not: an error or a frame, never
//! a panic, and never a frame longer than what arrived.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use livekit_str0m::e2ee::{GcmFrameCryptor, KeyProvider, KeyProviderOptions};
use livekit_str0m::{FrameContext, FrameCryptor, VideoCodec};

fn cryptor() -> &'static GcmFrameCryptor {
    static CRYPTOR: OnceLock<GcmFrameCryptor> = OnceLock::new();
    CRYPTOR.get_or_init(|| {
        let keys = Arc::new(KeyProvider::new(KeyProviderOptions::element_call()));
        for index in [0, 1, 5, 255] {
            keys.set_key("alice", index, &[index; 16]).expect("a key");
        }
        GcmFrameCryptor::new(keys)
    })
}

fuzz_target!(|data: &[u8]| {
    for codec in [VideoCodec::Vp8, VideoCodec::H264] {
        for identity in ["alice", "bob"] {
            let mut frame = data.to_vec();
            if cryptor().decrypt(&FrameContext::new(identity, codec), &mut frame).is_ok() {
                assert!(frame.len() <= data.len());
            }
        }
    }
});
