//! `io.element.call.encryption_keys` to-device contents (any member, or anybody, can send
//! them): any JSON is taken or refused with a reason, never a panic, and what is taken is a
//! 16-byte key bound to a member.
#![no_main]

use std::time::Instant;

use libfuzzer_sys::fuzz_target;
use matrix_sdk_rtc::media_keys::{KeyOutput, MediaKeysCore, OwnMember};

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let own = OwnMember {
        user_id: "@bot:x".into(),
        device_id: "BOT".into(),
        member_id: "bot".into(),
        livekit_identity: "@bot:x:BOT".into(),
    };
    let mut core = MediaKeysCore::new(own, "!room:x");
    let now = Instant::now();
    core.members_changed(now, &[]);
    while core.poll_output().is_some() {}
    for (sender, device) in [("@a:x", Some("A")), ("@a:x", None), ("@bot:x", Some("BOT"))] {
        let _ = core.key_received(now, sender, device, true, &json);
    }
    core.handle_timeout(now);
    while let Some(output) = core.poll_output() {
        if let KeyOutput::SetKey { key, .. } = output {
            assert_eq!(key.expose().len(), 16);
        }
    }
});
