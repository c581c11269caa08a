//! What arrives at `/sfu_webhook`: any `Authorization` value and body are verified and read
//! without a panic; a participant event always names its room and participant. On one input in
//! sixteen (the round trip costs four hashes of the body), the body signed with the key
//! verifies, and is refused once changed or once the token has expired.
//!
//! Layout: the header's value, a newline, the body.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use matrixrtc_auth::secret::Secret;
use matrixrtc_auth::webhook::{self, WebhookError};

const KEY: &str = "devkey";

fuzz_target!(|data: &[u8]| {
    let secret = Secret::new("a-secret-of-32-characters-or-more");
    let now = UNIX_EPOCH + Duration::from_secs(1_780_000_000);
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    let header = String::from_utf8_lossy(header);
    let _ = webhook::verify(Some(&header), body, KEY, &secret, now);

    if data.iter().fold(0u8, |acc, b| acc.wrapping_add(*b)) % 16 != 0 {
        if let Ok(Some(event)) = webhook::parse(body) {
            assert!(!event.room.is_empty() && !event.identity.is_empty());
        }
        return;
    }
    // What LiveKit signs verifies, for this body only.
    let token = webhook::sign(body, KEY, &secret, now);
    assert_eq!(webhook::verify(Some(&token), body, KEY, &secret, now), Ok(()));
    let mut changed = body.to_vec();
    changed.push(b' ');
    assert_eq!(
        webhook::verify(Some(&token), &changed, KEY, &secret, now),
        Err(WebhookError::BodyMismatch)
    );
    let late = now + Duration::from_secs(3600);
    assert_eq!(webhook::verify(Some(&token), body, KEY, &secret, late), Err(WebhookError::Expired));

    if let Ok(Some(event)) = webhook::parse(body) {
        assert!(!event.room.is_empty() && !event.identity.is_empty());
    }
});
