//! `/sfu/get`, `/get_token` and `/delegate_delayed_leave` bodies: any bytes give a request or a Matrix error, never a panic,
//! and an accepted request always has its required fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use matrixrtc_auth::request::{DelegateDelayedLeaveRequest, LegacySfuRequest, SfuRequest};

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = LegacySfuRequest::parse(data) {
        assert!(!request.room.is_empty() && !request.device_id.is_empty());
        assert!(!request.openid_token.matrix_server_name.is_empty());
    }
    if let Ok(request) = SfuRequest::parse(data) {
        assert!(!request.room_id.is_empty() && !request.slot_id.is_empty());
        assert!(!request.member.id.is_empty() && !request.member.claimed_user_id.is_empty());
    }
    if let Ok(request) = DelegateDelayedLeaveRequest::parse(data) {
        assert!(!request.room_id.is_empty() && !request.member.claimed_device_id.is_empty());
        let delayed_leave = &request.delayed_leave;
        assert!(!delayed_leave.delay_id.expose().is_empty() && delayed_leave.delay_timeout_ms > 0);
    }
});
