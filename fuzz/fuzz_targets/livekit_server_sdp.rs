//! Any text as the SDP of the server's subscriber offer or publisher answer (the length picks).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sdp) = std::str::from_utf8(data) {
        livekit_str0m::fuzzing::server_sdp(sdp);
    }
});
