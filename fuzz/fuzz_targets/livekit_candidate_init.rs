//! Any text as a trickled `candidateInit` JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(json) = std::str::from_utf8(data) {
        livekit_str0m::fuzzing::candidate_init(json);
    }
});
