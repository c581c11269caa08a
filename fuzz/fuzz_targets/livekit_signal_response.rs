//! Whatever a LiveKit server (or anything posing as one) sends on the signalling WebSocket:
//! any bytes decoded as a `SignalResponse` and handled in a session never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| livekit_str0m::fuzzing::signal_response(data));
