//! The to-device message that carries a member's media key, as Element Call sends it:
//!
//! ```json
//! {"keys": {"index": 0, "key": "<base64 of 16 bytes>"}, "room_id": "!room:example.org",
//!  "member": {"id": "<member id>", "claimed_device_id": "DEVICE"},
//!  "session": {"call_id": "", "application": "m.call", "scope": "m.room"}, "sent_ts": 1755000000000}
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use serde_json::{Value, json};

/// The to-device event type (sent Olm-encrypted).
pub const EVENT_TYPE: &str = "io.element.call.encryption_keys";

/// Length of a media key.
pub const KEY_LEN: usize = 16;

/// A media key: 16 bytes that never appear in a log line.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaKey(pub(crate) [u8; KEY_LEN]);

impl MediaKey {
    /// 16 bytes from the system's random number generator.
    pub(crate) fn random() -> Result<Self, getrandom::Error> {
        let mut key = [0; KEY_LEN];
        getrandom::fill(&mut key)?;
        Ok(Self(key))
    }

    /// The bytes, for the frame cryptor.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for MediaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaKey([redacted])")
    }
}

/// A key message that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InboundKey {
    pub(crate) device_id: String,
    pub(crate) member_id: Option<String>,
    pub(crate) index: u8,
    pub(crate) key: MediaKey,
}

/// Why a key message was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRejection {
    /// It arrived in clear: media keys must come Olm-encrypted.
    #[error("sent unencrypted")]
    NotEncrypted,
    /// It is for another room.
    #[error("for another room")]
    OtherRoom,
    /// A field is missing or has the wrong type or size.
    #[error("malformed: {0}")]
    Malformed(&'static str),
    /// The Olm-verified sending device differs from the device the message claims.
    #[error("the sending device is not the one it claims")]
    DeviceMismatch,
    /// Our own key, echoed back.
    #[error("our own key")]
    Own,
}

/// Base64 as js-sdk may send it: padded or not, standard or URL-safe alphabet.
fn decode_lenient(text: &str) -> Option<Vec<u8>> {
    let lenient =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&base64::alphabet::STANDARD, lenient);
    let url_safe = GeneralPurpose::new(&base64::alphabet::URL_SAFE, lenient);
    standard.decode(text).or_else(|_| url_safe.decode(text)).ok()
}

/// Checks a received message's content for `room_id`.
pub(crate) fn parse(content: &Value, room_id: &str) -> Result<InboundKey, KeyRejection> {
    let room = content.get("room_id").and_then(Value::as_str);
    match room {
        None => return Err(KeyRejection::Malformed("room_id")),
        Some(room) if room != room_id => return Err(KeyRejection::OtherRoom),
        Some(_) => {}
    }
    let keys = content.get("keys").ok_or(KeyRejection::Malformed("keys"))?;
    let index = keys
        .get("index")
        .and_then(Value::as_u64)
        .and_then(|i| u8::try_from(i).ok())
        .ok_or(KeyRejection::Malformed("keys.index"))?;
    let key = keys
        .get("key")
        .and_then(Value::as_str)
        .and_then(decode_lenient)
        .and_then(|bytes| <[u8; KEY_LEN]>::try_from(bytes).ok())
        .ok_or(KeyRejection::Malformed("keys.key"))?;
    let member = content.get("member").ok_or(KeyRejection::Malformed("member"))?;
    let device_id = member
        .get("claimed_device_id")
        .and_then(Value::as_str)
        .filter(|d| !d.is_empty())
        .ok_or(KeyRejection::Malformed("member.claimed_device_id"))?;
    let member_id = member.get("id").and_then(Value::as_str).map(str::to_owned);
    Ok(InboundKey { device_id: device_id.to_owned(), member_id, index, key: MediaKey(key) })
}

/// The content we send: our key at `index`, as Element Call reads it.
pub(crate) fn outbound(
    room_id: &str,
    member_id: &str,
    device_id: &str,
    index: u8,
    key: &MediaKey,
    sent_ts: u64,
) -> Value {
    json!({
        "keys": {"index": index, "key": general_purpose::STANDARD.encode(key.0)},
        "room_id": room_id,
        "member": {"id": member_id, "claimed_device_id": device_id},
        "session": {"call_id": "", "application": "m.call", "scope": "m.room"},
        "sent_ts": sent_ts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOM: &str = "!room:example.org";

    fn element_call(key: &str, index: Value) -> Value {
        json!({
            "keys": {"index": index, "key": key},
            "member": {"id": "3f1c2a9e-7a55-4c1b-9a55-0d3f1e0b6c11", "claimed_device_id": "ECDEVICE"},
            "room_id": ROOM,
            "session": {"application": "m.call", "call_id": "", "scope": "m.room"},
            "sent_ts": 1755000000000u64,
        })
    }

    #[test]
    fn element_calls_message_is_read() {
        let key = parse(&element_call("q83vEjRWeJq8zd7vEjRWeA==", json!(3)), ROOM).unwrap();
        assert_eq!(key.device_id, "ECDEVICE");
        assert_eq!(key.index, 3);
        assert_eq!(key.member_id.as_deref(), Some("3f1c2a9e-7a55-4c1b-9a55-0d3f1e0b6c11"));
        assert_eq!(key.key.0[..4], [0xab, 0xcd, 0xef, 0x12]);
        // Unpadded and URL-safe forms of the same bytes.
        for text in ["q83vEjRWeJq8zd7vEjRWeA", "q83vEjRWeJq8zd7vEjRWeA=="] {
            assert_eq!(parse(&element_call(text, json!(3)), ROOM).unwrap().key, key.key);
        }
        let url_safe = parse(&element_call("_-_vEjRWeJq8zd7vEjRWeA", json!(0)), ROOM).unwrap();
        assert_eq!(url_safe.key.0[..2], [0xff, 0xef]);
    }

    #[test]
    fn what_we_send_is_what_we_read() {
        let key = MediaKey([7; KEY_LEN]);
        let content = outbound(ROOM, "member-1", "BOTDEVICE", 255, &key, 1);
        let read = parse(&content, ROOM).unwrap();
        assert_eq!((read.device_id.as_str(), read.index, &read.key), ("BOTDEVICE", 255, &key));
        assert_eq!(content["keys"]["key"], "BwcHBwcHBwcHBwcHBwcHBw==", "padded, as js-sdk sends");
        assert_eq!(content["session"]["application"], "m.call");
    }

    #[test]
    fn bad_messages_are_refused_with_a_reason() {
        let good = element_call("q83vEjRWeJq8zd7vEjRWeA==", json!(1));
        assert_eq!(parse(&good, "!other:example.org"), Err(KeyRejection::OtherRoom));
        let cases: [(&str, Value); 8] = [
            ("keys.key", element_call("q83vEjRWeJq8zd7vEjRW", json!(1))),
            ("keys.key", element_call("not base64!", json!(1))),
            ("keys.index", element_call("q83vEjRWeJq8zd7vEjRWeA==", json!(256))),
            ("keys.index", element_call("q83vEjRWeJq8zd7vEjRWeA==", json!("1"))),
            ("keys.index", element_call("q83vEjRWeJq8zd7vEjRWeA==", json!(-1))),
            ("room_id", json!({"keys": {"index": 0, "key": "q83vEjRWeJq8zd7vEjRWeA=="}})),
            ("keys", json!({"room_id": ROOM})),
            ("member.claimed_device_id", {
                let mut v = good.clone();
                v["member"]["claimed_device_id"] = json!("");
                v
            }),
        ];
        for (field, content) in cases {
            assert_eq!(parse(&content, ROOM), Err(KeyRejection::Malformed(field)), "{content}");
        }
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let key = MediaKey([0x41; KEY_LEN]);
        assert_eq!(format!("{key:?}"), "MediaKey([redacted])");
    }
}
