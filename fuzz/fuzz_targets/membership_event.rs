//! Membership events from room state and sync (any sender can write them): any JSON in any of the
//! membership event types parses to a join, a leave or nothing, never a panic, and a call session
//! fed with it answers for any time.
#![no_main]

use libfuzzer_sys::fuzz_target;
use matrix_sdk_rtc::CallSession;
use matrix_sdk_rtc::membership::{self, MembershipEvent};

fuzz_target!(|data: &[u8]| {
    let Ok(json) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let mut session = CallSession::new();
    session.set_room_membership("@a:x", true);
    for event_type in ["org.matrix.msc3401.call.member", "org.matrix.msc4143.rtc.member"] {
        let event = serde_json::json!({
            "type": event_type, "state_key": "_@a:x_D_m.call", "sender": "@a:x",
            "origin_server_ts": 1_000, "content": json, "msc4354_sticky": {"duration_ms": 3_600_000},
        });
        if let Some(event) = MembershipEvent::from_json(&event, 2_000) {
            let _ = membership::parse(&event);
            session.handle_event(&event);
        }
    }
    if let Some(event) = MembershipEvent::from_json(&json, 2_000) {
        session.handle_event(&event);
    }
    for now in [0, 1_000, 2_000, u64::MAX] {
        let _ = session.state(now);
    }
});
