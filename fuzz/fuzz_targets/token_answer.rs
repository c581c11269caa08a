//! What an authorization service answers to `/sfu/get` and `/get_token`: any bytes give a URL and
//! a token or a reason, never a panic; an accepted token is one line of non-whitespace, and a
//! reason never quotes the answer (it may hold a token).
#![no_main]

use libfuzzer_sys::fuzz_target;
use matrix_sdk_rtc_livekit::credentials::service::parse_answer;

fuzz_target!(|data: &[u8]| {
    match parse_answer(data) {
        Ok((url, token)) => {
            assert!(!url.is_empty());
            let token = token.expose();
            assert!(!token.is_empty() && !token.chars().any(char::is_whitespace));
        }
        Err(reason) => {
            assert!(reason.len() < 100, "a short reason of ours: {reason}");
        }
    }
});
