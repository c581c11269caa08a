//! Any datagram arriving on a peer connection's socket (STUN responses included).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| livekit_str0m::fuzzing::datagram(data));
