//! The MatrixRTC authorization service's token endpoints (lk-jwt-service and compatible):
//! `POST /sfu/get` for a state membership (LiveKit identity `@user:server:DEVICE`) and `POST
//! /get_token` for a sticky membership (the MSC4195 hashed identity), each with a fresh OpenID
//! token; the answer is `{"url": …, "jwt": …}`.
//!
//! Building the request bodies and reading the answer are pure functions; [`request_token`] is
//! the HTTP exchange around them.

use std::time::Duration;

use serde_json::{Value, json};
use url::Url;

use matrix_sdk_rtc::DelayedLeave;

use super::jwt::Jwt;
use crate::endpoint;
use crate::error::Error;

/// The slot of the room-wide call, the only one Element Call uses.
pub const ROOM_CALL_SLOT: &str = "m.call#ROOM";
/// How long a token request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read (an answer is a URL and a JWT, well under 4 KiB).
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// An OpenID token as the homeserver issued it; the service verifies it with the homeserver.
#[derive(Clone)]
pub struct OpenIdToken {
    /// The token. Never logged.
    pub access_token: String,
    /// The homeserver's server name.
    pub matrix_server_name: String,
    /// Seconds until it expires.
    pub expires_in: u64,
}

impl std::fmt::Debug for OpenIdToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenIdToken")
            .field("matrix_server_name", &self.matrix_server_name)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

impl OpenIdToken {
    fn to_json(&self) -> Value {
        json!({
            "access_token": self.access_token,
            "token_type": "Bearer",
            "matrix_server_name": self.matrix_server_name,
            "expires_in": self.expires_in,
        })
    }
}

/// Which token endpoint, with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenEndpoint {
    /// `POST /sfu/get`: the identity is `{user}:{device_id}`.
    SfuGet {
        /// Our device.
        device_id: String,
    },
    /// `POST /get_token`: the identity is the hash of `[user, device, member_id]`.
    GetToken {
        /// Our user (the service checks it against the OpenID token).
        user_id: String,
        /// Our device.
        device_id: String,
        /// The sticky membership's id.
        member_id: String,
    },
}

impl TokenEndpoint {
    /// The path below the service's base URL.
    pub fn path(&self) -> &'static str {
        match self {
            Self::SfuGet { .. } => "sfu/get",
            Self::GetToken { .. } => "get_token",
        }
    }

    /// The request body, with exactly the fields the service accepts (lk-jwt-service refuses
    /// unknown ones); with `delayed_leave`, the service is asked to take it over (MSC4195
    /// delegation: `delay_id` and `delay_timeout` in milliseconds).
    pub fn body(
        &self,
        room_id: &str,
        openid: &OpenIdToken,
        delayed_leave: Option<&DelayedLeave>,
    ) -> Value {
        let mut body = match self {
            Self::SfuGet { device_id } => json!({
                "room": room_id,
                "openid_token": openid.to_json(),
                "device_id": device_id,
            }),
            Self::GetToken { user_id, device_id, member_id } => json!({
                "room_id": room_id,
                "slot_id": ROOM_CALL_SLOT,
                "openid_token": openid.to_json(),
                "member": {
                    "id": member_id,
                    "claimed_user_id": user_id,
                    "claimed_device_id": device_id,
                },
            }),
        };
        if let (Some(delayed_leave), Some(fields)) = (delayed_leave, body.as_object_mut()) {
            fields.insert("delay_id".into(), delayed_leave.delay_id().into());
            let delay_ms = u64::try_from(delayed_leave.delay().as_millis()).unwrap_or(u64::MAX);
            fields.insert("delay_timeout".into(), delay_ms.into());
        }
        body
    }
}

/// Reads a token answer: the LiveKit URL and the JWT. lk-jwt-service answers `url` and `jwt`;
/// the other names are accepted as the prototype accepted them (`service_url`,
/// `livekit_service_url`, `livekit_url`, `sfu_url`, `sfu_base_url`; `token`, `access_token`).
/// The reason of an error never quotes the answer (it may hold a token).
pub fn parse_answer(body: &[u8]) -> Result<(String, Jwt), String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON ({})", e.classify_name()))?;
    let object = value.as_object().ok_or("not a JSON object")?;
    let first = |keys: &[&str]| {
        keys.iter().find_map(|k| object.get(*k).and_then(Value::as_str)).map(str::trim)
    };
    let url = first(&[
        "url",
        "service_url",
        "livekit_service_url",
        "livekit_url",
        "sfu_url",
        "sfu_base_url",
    ])
    .filter(|u| !u.is_empty())
    .ok_or("no LiveKit URL (`url`)")?;
    let jwt = first(&["jwt", "token", "access_token"])
        .filter(|t| !t.is_empty())
        .ok_or("no token (`jwt`)")?;
    if jwt.len() > 16 * 1024 || jwt.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the token is not a JWT".into());
    }
    Ok((url.to_owned(), Jwt::new(jwt)))
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected data",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// The `errcode` and `error` of a Matrix-style error answer, shortened; `secret` removed.
fn error_details(body: &[u8], secret: &str) -> (String, String) {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or_default().to_owned();
    let (errcode, mut message) = (text("errcode"), text("error"));
    if message.is_empty() && errcode.is_empty() {
        message = String::from_utf8_lossy(body).into_owned();
    }
    if !secret.is_empty() {
        message = message.replace(secret, "[redacted]");
    }
    let message: String =
        message.chars().filter(|c| !c.is_control()).take(200).collect::<String>().trim().to_owned();
    (errcode, message)
}

/// Asks the token endpoint at `url` (the service's base URL joined with
/// [`TokenEndpoint::path`]) for a LiveKit URL and join token for `room_id`, handing it
/// `delayed_leave` when given.
pub async fn request_token(
    http: &reqwest::Client,
    url: &Url,
    endpoint: &TokenEndpoint,
    room_id: &str,
    openid: &OpenIdToken,
    delayed_leave: Option<&DelayedLeave>,
) -> Result<(String, Jwt), Error> {
    let shown = endpoint::display(url);
    let response = http
        .post(url.clone())
        .timeout(REQUEST_TIMEOUT)
        .json(&endpoint.body(room_id, openid, delayed_leave))
        .send()
        .await
        .map_err(|error| transport_error(&shown, &error))?;
    let status = response.status();
    let body = read_limited(response, MAX_ANSWER_BYTES)
        .await
        .map_err(|error| transport_error(&shown, &error))?;
    let Some(body) = body else {
        return Err(Error::BadServiceAnswer {
            endpoint: shown,
            reason: format!("the answer is larger than {MAX_ANSWER_BYTES} bytes"),
        });
    };
    if !status.is_success() {
        let (errcode, message) = error_details(&body, &openid.access_token);
        return Err(Error::ServiceRefused {
            endpoint: shown,
            status: status.as_u16(),
            errcode,
            message,
        });
    }
    parse_answer(&body).map_err(|reason| Error::BadServiceAnswer { endpoint: shown, reason })
}

/// The body, or `None` when it is longer than `limit`.
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > limit {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// A request that got no answer: unreachable, timed out, or TLS trouble (told apart by the
/// error's causes, which reqwest does not classify).
fn transport_error(endpoint: &str, error: &reqwest::Error) -> Error {
    let reason = crate::error::error_chain(error);
    let tls = reason.to_ascii_lowercase().contains("certificate")
        || reason.contains("tls")
        || reason.contains("TLS")
        || reason.contains("handshake")
        || reason.contains("InvalidContentType")
        || reason.contains("CorruptMessage");
    if tls {
        Error::ServiceTls { endpoint: endpoint.to_owned(), reason }
    } else if error.is_timeout() {
        Error::ServiceUnreachable {
            endpoint: endpoint.to_owned(),
            reason: format!("no answer within {REQUEST_TIMEOUT:?}"),
        }
    } else {
        Error::ServiceUnreachable { endpoint: endpoint.to_owned(), reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openid() -> OpenIdToken {
        OpenIdToken {
            access_token: "openid-secret".into(),
            matrix_server_name: "example.org".into(),
            expires_in: 3600,
        }
    }

    #[test]
    fn request_bodies_have_exactly_the_services_fields() {
        let sfu_get = TokenEndpoint::SfuGet { device_id: "BOT".into() };
        assert_eq!(sfu_get.path(), "sfu/get");
        assert_eq!(
            sfu_get.body("!r:example.org", &openid(), None),
            json!({"room": "!r:example.org", "device_id": "BOT",
                   "openid_token": {"access_token": "openid-secret", "token_type": "Bearer",
                                    "matrix_server_name": "example.org", "expires_in": 3600}})
        );
        let get_token = TokenEndpoint::GetToken {
            user_id: "@bot:example.org".into(),
            device_id: "BOT".into(),
            member_id: "m1".into(),
        };
        assert_eq!(get_token.path(), "get_token");
        let body = get_token.body("!r:example.org", &openid(), None);
        assert_eq!(body["slot_id"], "m.call#ROOM");
        assert_eq!(body["room_id"], "!r:example.org");
        assert_eq!(
            body["member"],
            json!({"id": "m1", "claimed_user_id": "@bot:example.org", "claimed_device_id": "BOT"})
        );
        assert_eq!(body.as_object().unwrap().len(), 4);
        assert!(!format!("{:?}", openid()).contains("openid-secret"));

        // Handing the delayed leave over adds its id and delay in milliseconds.
        let delayed_leave = DelayedLeave::new("syd_abc", Duration::from_secs(10));
        let body = get_token.body("!r:example.org", &openid(), Some(&delayed_leave));
        assert_eq!(
            (&body["delay_id"], &body["delay_timeout"]),
            (&json!("syd_abc"), &json!(10_000))
        );
        assert_eq!(body.as_object().unwrap().len(), 6);
        let body = sfu_get.body("!r:example.org", &openid(), Some(&delayed_leave));
        assert_eq!(body.as_object().unwrap().len(), 5);
        assert!(!format!("{delayed_leave:?}").contains("syd_abc"));
    }

    #[test]
    fn answers_of_every_known_shape_are_read() {
        let (url, jwt) =
            parse_answer(br#"{"url": "wss://sfu.example.org", "jwt": "a.b.c"}"#).unwrap();
        assert_eq!((url.as_str(), jwt.expose()), ("wss://sfu.example.org", "a.b.c"));
        let (url, jwt) =
            parse_answer(br#"{"livekit_service_url": " wss://x ", "token": "t.t.t"}"#).unwrap();
        assert_eq!((url.as_str(), jwt.expose()), ("wss://x", "t.t.t"));
        for bad in [
            &b"not json"[..],
            b"[]",
            br#"{"url": "wss://x"}"#,
            br#"{"jwt": "a.b.c"}"#,
            br#"{"url": "", "jwt": "a.b.c"}"#,
            br#"{"url": "wss://x", "jwt": "has space"}"#,
            br#"{"url": 5, "jwt": "a.b.c"}"#,
        ] {
            let error = parse_answer(bad).unwrap_err();
            assert!(!error.contains("a.b.c"), "{error}");
        }
    }

    #[test]
    fn error_answers_are_shortened_and_never_quote_the_openid_token() {
        let (errcode, message) = error_details(
            br#"{"errcode": "M_UNAUTHORIZED", "error": "bad token openid-secret"}"#,
            "openid-secret",
        );
        assert_eq!(errcode, "M_UNAUTHORIZED");
        assert_eq!(message, "bad token [redacted]");
        let (errcode, message) = error_details(&[b'x'; 1000], "");
        assert_eq!((errcode.as_str(), message.len()), ("", 200));
    }

    proptest::proptest! {
        #[test]
        fn no_answer_panics_the_parser(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = parse_answer(&body);
            let _ = error_details(&body, "s");
        }
    }
}
