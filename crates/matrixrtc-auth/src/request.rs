//! The request bodies of `/sfu/get`, `/get_token` and `/delegate_delayed_leave`, parsed and validated as lk-jwt-service does:
//! unknown fields and wrong types are `M_NOT_JSON`, missing or empty required fields are
//! `M_BAD_JSON`.
//!
//! Parsing is pure (bytes in, request or [`ApiError`] out) so that it can be unit-tested and
//! fuzzed without a server.

use serde::Deserialize;

use crate::error::ApiError;
use crate::secret::Secret;

/// The OpenID token object, verbatim from `POST /_matrix/client/v3/user/{userId}/openid/request_token`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct OpenIdToken {
    /// The token itself. Never logged.
    #[serde(default = "empty_secret")]
    pub access_token: Secret,
    /// Usually `Bearer`; not checked (lk-jwt-service does not check it either).
    #[serde(default)]
    pub token_type: String,
    /// The server name of the homeserver that issued the token.
    #[serde(default)]
    pub matrix_server_name: String,
    /// Seconds until the token expires; informational.
    #[serde(default)]
    pub expires_in: i64,
}

fn empty_secret() -> Secret {
    Secret::new("")
}

impl OpenIdToken {
    /// A token object, as a client would send it.
    pub fn new(access_token: Secret, matrix_server_name: impl Into<String>) -> Self {
        Self {
            access_token,
            token_type: "Bearer".to_owned(),
            matrix_server_name: matrix_server_name.into(),
            expires_in: 3600,
        }
    }

    fn is_complete(&self) -> bool {
        !self.access_token.expose().is_empty() && !self.matrix_server_name.is_empty()
    }
}

/// The MatrixRTC member a `/get_token` request is for.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct Member {
    /// The membership id (the sticky `member.id`).
    #[serde(default)]
    pub id: String,
    /// The user the client claims to be; must match the verified OpenID user.
    #[serde(default)]
    pub claimed_user_id: String,
    /// The device the client claims to be.
    #[serde(default)]
    pub claimed_device_id: String,
}

/// Delegated delayed-leave parameters (MSC4140 via the authorization service): the service is
/// asked to keep the member's delayed leave alive while its media connection lives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DelayedLeave {
    /// The delay id of the scheduled leave event: whoever has it can send or restart the event,
    /// so it is as secret as a token.
    pub delay_id: Secret,
    /// The delay, in milliseconds.
    pub delay_timeout_ms: u64,
}

/// `POST /sfu/get`: the legacy token request (identity `@user:server:DEVICE`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LegacySfuRequest {
    /// The Matrix room id.
    pub room: String,
    /// The OpenID token proving the user.
    pub openid_token: OpenIdToken,
    /// The device the LiveKit identity is built from.
    pub device_id: String,
    /// Delegated delayed leave, when requested.
    pub delayed_leave: Option<DelayedLeave>,
}

/// `POST /get_token`: the MSC4195 token request (hashed identity and room name).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SfuRequest {
    /// The Matrix room id.
    pub room_id: String,
    /// The MatrixRTC slot, `m.call#ROOM` for the room call.
    pub slot_id: String,
    /// The OpenID token proving the user.
    pub openid_token: OpenIdToken,
    /// The member the token is for.
    pub member: Member,
    /// Delegated delayed leave, when requested.
    pub delayed_leave: Option<DelayedLeave>,
}

/// `POST /delegate_delayed_leave`: a member hands its delayed leave to the service, without
/// asking for a token (MSC4195). Every field is required but `delay_cs_api_url`, which is
/// ignored: the service finds the homeserver's client-server API itself.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DelegateDelayedLeaveRequest {
    /// The Matrix room id.
    pub room_id: String,
    /// The MatrixRTC slot, `m.call#ROOM` for the room call.
    pub slot_id: String,
    /// The OpenID token proving the user.
    pub openid_token: OpenIdToken,
    /// The member whose leave it is.
    pub member: Member,
    /// The delayed leave.
    pub delayed_leave: DelayedLeave,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacySfuWire {
    #[serde(default)]
    room: String,
    #[serde(default = "missing_token")]
    openid_token: OpenIdToken,
    #[serde(default)]
    device_id: String,
    #[serde(default)]
    delay_id: String,
    #[serde(default)]
    delay_timeout: i64,
    #[serde(default, rename = "delay_cs_api_url")]
    _delay_cs_api_url: String,
}

/// The body of `/get_token` and `/delegate_delayed_leave`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SfuWire {
    #[serde(default)]
    room_id: String,
    #[serde(default)]
    slot_id: String,
    #[serde(default = "missing_token")]
    openid_token: OpenIdToken,
    #[serde(default)]
    member: Member,
    #[serde(default)]
    delay_id: String,
    #[serde(default)]
    delay_timeout: i64,
    #[serde(default, rename = "delay_cs_api_url")]
    _delay_cs_api_url: String,
}

/// Decodes `body` as `T`, requiring JSON objects where `T` has structs (serde would also accept
/// arrays for structs; Go's decoder, and so lk-jwt-service, does not).
fn decode<T: serde::de::DeserializeOwned>(
    body: &[u8],
    nested_objects: &[&str],
) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|_| ApiError::not_json())?;
    let object = value.as_object().ok_or_else(ApiError::not_json)?;
    for key in nested_objects {
        if object.get(*key).is_some_and(|v| !v.is_object()) {
            return Err(ApiError::not_json());
        }
    }
    serde_json::from_value(value).map_err(|_| ApiError::not_json())
}

fn missing_token() -> OpenIdToken {
    OpenIdToken::new(empty_secret(), "")
}

const MISSING_DELAY: &str = "The request body is missing `delay_id` or `delay_timeout`";

fn delayed_leave(delay_id: String, delay_timeout: i64) -> Result<Option<DelayedLeave>, ApiError> {
    match (delay_id.is_empty(), delay_timeout > 0) {
        (true, false) => Ok(None),
        (false, true) => Ok(Some(DelayedLeave {
            delay_id: Secret::new(delay_id),
            delay_timeout_ms: delay_timeout.unsigned_abs(),
        })),
        _ => Err(ApiError::bad_json(MISSING_DELAY)),
    }
}

impl DelegateDelayedLeaveRequest {
    /// Parses and validates a `/delegate_delayed_leave` body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let wire: SfuWire = decode(body, &["openid_token", "member"])?;
        let (room_id, slot_id, openid_token, member) =
            required_member_fields(wire.room_id, wire.slot_id, wire.openid_token, wire.member)?;
        let delayed_leave = delayed_leave(wire.delay_id, wire.delay_timeout)?
            .ok_or_else(|| ApiError::bad_json(MISSING_DELAY))?;
        Ok(Self { room_id, slot_id, openid_token, member, delayed_leave })
    }
}

/// Checks the fields `/get_token` and `/delegate_delayed_leave` share.
fn required_member_fields(
    room_id: String,
    slot_id: String,
    openid_token: OpenIdToken,
    member: Member,
) -> Result<(String, String, OpenIdToken, Member), ApiError> {
    if room_id.is_empty() || slot_id.is_empty() {
        return Err(ApiError::bad_json("The request body is missing `room_id` or `slot_id`"));
    }
    let m = &member;
    if m.id.is_empty() || m.claimed_user_id.is_empty() || m.claimed_device_id.is_empty() {
        return Err(ApiError::bad_json(
            "The request body `member` is missing a `id`, `claimed_user_id` or `claimed_device_id`",
        ));
    }
    if !openid_token.is_complete() {
        return Err(ApiError::bad_json(
            "The request body `openid_token` is missing a `access_token` or `matrix_server_name`",
        ));
    }
    Ok((room_id, slot_id, openid_token, member))
}

impl LegacySfuRequest {
    /// Parses and validates a `/sfu/get` body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let wire: LegacySfuWire = decode(body, &["openid_token"])?;
        if wire.room.is_empty() {
            return Err(ApiError::bad_json("Missing room parameter"));
        }
        if !wire.openid_token.is_complete() {
            return Err(ApiError::bad_json("Missing OpenID token parameters"));
        }
        // lk-jwt-service accepts an empty device id and mints the identity "@user:server:";
        // no client can ever match that identity to a membership, so it is refused here.
        if wire.device_id.is_empty() {
            return Err(ApiError::bad_json("Missing device_id parameter"));
        }
        Ok(Self {
            room: wire.room,
            openid_token: wire.openid_token,
            device_id: wire.device_id,
            delayed_leave: delayed_leave(wire.delay_id, wire.delay_timeout)?,
        })
    }
}

impl SfuRequest {
    /// Parses and validates a `/get_token` body.
    pub fn parse(body: &[u8]) -> Result<Self, ApiError> {
        let wire: SfuWire = decode(body, &["openid_token", "member"])?;
        let delayed_leave = delayed_leave(wire.delay_id, wire.delay_timeout)?;
        let (room_id, slot_id, openid_token, member) =
            required_member_fields(wire.room_id, wire.slot_id, wire.openid_token, wire.member)?;
        Ok(Self { room_id, slot_id, openid_token, member, delayed_leave })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = r#"{"access_token":"tok","token_type":"Bearer","matrix_server_name":"example.org","expires_in":3600}"#;

    fn legacy(body: &str) -> Result<LegacySfuRequest, ApiError> {
        LegacySfuRequest::parse(body.as_bytes())
    }

    fn get_token(body: &str) -> Result<SfuRequest, ApiError> {
        SfuRequest::parse(body.as_bytes())
    }

    #[test]
    fn parses_what_element_call_sends() {
        let r = legacy(&format!(
            r#"{{"room":"!r:example.org","openid_token":{TOKEN},"device_id":"DEV"}}"#
        ))
        .unwrap();
        assert_eq!((r.room.as_str(), r.device_id.as_str()), ("!r:example.org", "DEV"));
        assert_eq!(r.openid_token.access_token.expose(), "tok");
        assert_eq!(r.delayed_leave, None);

        let r = get_token(&format!(
            r#"{{"room_id":"!r:example.org","slot_id":"m.call#ROOM","openid_token":{TOKEN},
                "member":{{"id":"m1","claimed_user_id":"@a:example.org","claimed_device_id":"DEV"}},
                "delay_id":"syd_x","delay_timeout":10000,"delay_cs_api_url":"https://example.org"}}"#
        ))
        .unwrap();
        assert_eq!(r.member.id, "m1");
        assert_eq!(
            r.delayed_leave,
            Some(DelayedLeave { delay_id: Secret::new("syd_x"), delay_timeout_ms: 10000 })
        );
    }

    #[test]
    fn malformed_unknown_and_mistyped_are_not_json() {
        for body in [
            "",
            "{",
            "[]",
            "null",
            r#"{"room":"!r:x","openid_token":{},"device_id":"D","extra":1}"#,
            r#"{"room":5}"#,
            r#"{"room":"!r","openid_token":{"access_token":"t","matrix_server_name":"x","nope":1}}"#,
            r#"{"room":"!r","delay_timeout":"10000"}"#,
            r#"{"room":"!r","openid_token":["t","x"],"device_id":"D"}"#,
            r#"{"room":"!r:x","device_id":"D"} trailing"#,
        ] {
            assert_eq!(legacy(body).unwrap_err(), ApiError::not_json(), "{body}");
        }
        assert_eq!(
            get_token(r#"{"member":{"id":"x","bad":true}}"#).unwrap_err(),
            ApiError::not_json()
        );
        assert_eq!(get_token(r#"{"member":["x","@a:x","D"]}"#).unwrap_err(), ApiError::not_json());
    }

    #[test]
    fn missing_fields_are_bad_json() {
        let cases = [
            format!(r#"{{"openid_token":{TOKEN},"device_id":"D"}}"#),
            r#"{"room":"!r:x","device_id":"D"}"#.to_owned(),
            r#"{"room":"!r:x","openid_token":{"access_token":"t"},"device_id":"D"}"#.to_owned(),
            format!(r#"{{"room":"!r:x","openid_token":{TOKEN}}}"#),
            format!(r#"{{"room":"!r:x","openid_token":{TOKEN},"device_id":"D","delay_id":"x"}}"#),
            format!(
                r#"{{"room":"!r:x","openid_token":{TOKEN},"device_id":"D","delay_timeout":5}}"#
            ),
        ];
        for body in &cases {
            assert_eq!(legacy(body).unwrap_err().errcode, "M_BAD_JSON", "{body}");
        }
        let member = r#"{"id":"m","claimed_user_id":"@a:x","claimed_device_id":"D"}"#;
        let cases = [
            format!(r#"{{"slot_id":"s","openid_token":{TOKEN},"member":{member}}}"#),
            format!(r#"{{"room_id":"!r","openid_token":{TOKEN},"member":{member}}}"#),
            format!(r#"{{"room_id":"!r","slot_id":"s","openid_token":{TOKEN}}}"#),
            format!(r#"{{"room_id":"!r","slot_id":"s","member":{member}}}"#),
        ];
        for body in &cases {
            assert_eq!(get_token(body).unwrap_err().errcode, "M_BAD_JSON", "{body}");
        }
    }

    #[test]
    fn delegation_requires_every_field_but_the_homeserver_url() {
        let member = r#"{"id":"m","claimed_user_id":"@a:x","claimed_device_id":"D"}"#;
        let delegate = |rest: &str| {
            DelegateDelayedLeaveRequest::parse(
                format!(
                    r#"{{"room_id":"!r:x","slot_id":"m.call#ROOM","openid_token":{TOKEN},"member":{member}{rest}}}"#
                )
                .as_bytes(),
            )
        };
        let r = delegate(r#","delay_id":"syd_a","delay_timeout":3600000"#).unwrap();
        assert_eq!(r.delayed_leave.delay_id.expose(), "syd_a");
        assert_eq!(r.delayed_leave.delay_timeout_ms, 3_600_000);
        assert_eq!(r.member.claimed_device_id, "D");
        assert!(!format!("{r:?}").contains("syd_a"), "the delay id is a secret");
        for rest in [
            "",
            r#","delay_id":"syd_a""#,
            r#","delay_timeout":1000"#,
            r#","delay_id":"","delay_timeout":1000"#,
            r#","delay_id":"syd_a","delay_timeout":0"#,
            r#","delay_id":"syd_a","delay_timeout":-5"#,
        ] {
            assert_eq!(delegate(rest).unwrap_err().errcode, "M_BAD_JSON", "{rest}");
        }
        assert_eq!(
            delegate(r#","delay_id":"syd_a","delay_timeout":1000,"delay_cs_api_url":5"#)
                .unwrap_err(),
            ApiError::not_json()
        );
        // The empty body Element Call probes the route with.
        assert_eq!(DelegateDelayedLeaveRequest::parse(b"").unwrap_err(), ApiError::not_json());
    }

    #[test]
    fn debug_output_hides_the_token() {
        let r = legacy(&format!(r#"{{"room":"!r:x","openid_token":{TOKEN},"device_id":"D"}}"#))
            .unwrap();
        let printed = format!("{r:?}");
        assert!(!printed.contains("\"tok\""), "{printed}");
        assert!(printed.contains("[redacted]"));
    }
}
