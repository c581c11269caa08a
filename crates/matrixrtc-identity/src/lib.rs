//! LiveKit room names and participant identities of MatrixRTC members, derived from Matrix
//! identifiers (MSC4195).
//!
//! These derivations must be byte-for-byte identical to what element-hq/lk-jwt-service and
//! matrix-js-sdk compute, or Element Call cannot match LiveKit participants to call members:
//!
//! * room name ("alias"): `unpadded_base64(sha256(json([room_id, slot_id])))`;
//! * hashed identity (`/get_token`): `unpadded_base64(sha256(json([user_id, device_id, member_id])))`;
//! * legacy identity (`/sfu/get`): `"{user_id}:{device_id}"`.
//!
//! The JSON is a compact array encoded as Go's `encoding/json` does it, which also escapes
//! `<`, `>`, `&`, U+2028 and U+2029. For valid Matrix identifiers this is the same as Matrix
//! canonical JSON.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use sha2::{Digest, Sha256};

/// The MatrixRTC slot of the room-wide call, used by `/sfu/get` and sent by Element Call.
pub const ROOM_CALL_SLOT: &str = "m.call#ROOM";

/// The LiveKit room name for a MatrixRTC slot of a Matrix room.
///
/// ```
/// use matrixrtc_identity::livekit_room_alias;
/// assert_eq!(
///     livekit_room_alias("!roomid:example.com", "m.call#ROOM"),
///     "F4oOprKFBq6JHqy2qYpq6UQQmR7hCvxkQQoUrd0+SbI",
/// );
/// ```
pub fn livekit_room_alias(room_id: &str, slot_id: &str) -> String {
    hash_strings(&[room_id, slot_id])
}

/// The hashed LiveKit identity used by `/get_token` (MSC4195) and by sticky memberships.
///
/// ```
/// use matrixrtc_identity::hashed_identity;
/// assert_eq!(
///     hashed_identity("@alice:example.com", "DEVICE123", "memberABC"),
///     "J+T45tGruxc+HrUOqJJlyQSV33m728Cme4+vt8/SWrU",
/// );
/// ```
pub fn hashed_identity(user_id: &str, device_id: &str, member_id: &str) -> String {
    hash_strings(&[user_id, device_id, member_id])
}

/// The LiveKit identity used by `/sfu/get` and by per-device state memberships:
/// `"{user_id}:{device_id}"`.
pub fn legacy_identity(user_id: &str, device_id: &str) -> String {
    format!("{user_id}:{device_id}")
}

fn hash_strings(parts: &[&str]) -> String {
    let digest = Sha256::digest(go_json_string_array(parts).as_bytes());
    STANDARD_NO_PAD.encode(digest)
}

/// Encodes a list of strings as a compact JSON array exactly as Go's `json.Marshal` does.
fn go_json_string_array(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len() + 3).sum::<usize>() + 2);
    out.push('[');
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        push_go_json_string(&mut out, part);
    }
    out.push(']');
    out
}

fn push_go_json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}') => {
                let v = c as u32;
                out.push_str("\\u");
                for shift in [12, 8, 4, 0] {
                    out.push(HEX[((v >> shift) & 0xf) as usize] as char);
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectors of the MatrixRTC protocol notes, Appendix A (MSC4195 and the room call).
    #[test]
    fn appendix_a_vectors() {
        assert_eq!(
            livekit_room_alias("!roomid:example.com", "slot1234"),
            "O8437W3+jmzMVjoIP3tNwbm+XxHQk2iKpOA7aqw3qSc"
        );
        assert_eq!(
            livekit_room_alias("!roomid:example.com", ROOM_CALL_SLOT),
            "F4oOprKFBq6JHqy2qYpq6UQQmR7hCvxkQQoUrd0+SbI"
        );
        assert_eq!(
            hashed_identity("@alice:example.com", "DEVICE123", "memberABC"),
            "J+T45tGruxc+HrUOqJJlyQSV33m728Cme4+vt8/SWrU"
        );
    }

    #[test]
    fn sha256_input_is_compact_json() {
        assert_eq!(
            go_json_string_array(&["!roomid:example.com", "m.call#ROOM"]),
            r#"["!roomid:example.com","m.call#ROOM"]"#
        );
        let hex: String = Sha256::digest(b"[\"!roomid:example.com\",\"m.call#ROOM\"]")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, "178a0ea6b28506ae891eacb6a98a6ae94410991ee10afc64410a14addd3e49b2");
    }

    #[test]
    fn escapes_like_go_encoding_json() {
        assert_eq!(
            go_json_string_array(&[
                "a<b>&c",
                "q\"\\",
                "\u{1}\u{8}\u{c}\n\r\t",
                "\u{2028}\u{2029}é"
            ]),
            r#"["a\u003cb\u003e\u0026c","q\"\\","\u0001\b\f\n\r\t","\u2028\u2029é"]"#
        );
    }

    #[test]
    fn legacy_identity_is_user_colon_device() {
        assert_eq!(legacy_identity("@bot:example.org", "BOTDEVICE"), "@bot:example.org:BOTDEVICE");
    }
}
