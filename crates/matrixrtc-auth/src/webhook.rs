//! LiveKit webhooks: the signed notifications a LiveKit server posts when participants join and
//! leave, which tell the service whether a member's media connection lives.
//!
//! LiveKit signs every webhook with an HS256 JWT in the `Authorization` header (no `Bearer`
//! prefix). The token's issuer is the API key named in LiveKit's `webhook.api_key`, it expires a
//! few minutes after sending, and its `sha256` claim is the standard base64 of the SHA-256 of the
//! body. The body is `protojson` of `livekit.WebhookEvent`: lowerCamelCase names, enums as names,
//! 64-bit integers as strings, default values left out.
//!
//! [`verify`] checks the signature, the time window and the body hash; [`parse`] reads the
//! participant events this service acts on. Both are pure: the caller passes the time.
//!
//! ```
//! use matrixrtc_auth::webhook::{ParticipantChange, parse};
//!
//! let body = br#"{"event":"participant_left","room":{"name":"R"},
//!     "participant":{"sid":"PA_1","identity":"@a:x:DEV","disconnectReason":"CLIENT_INITIATED"}}"#;
//! let event = parse(body).unwrap().unwrap();
//! assert_eq!((event.room.as_str(), event.identity.as_str()), ("R", "@a:x:DEV"));
//! assert!(matches!(event.change, ParticipantChange::Left { client_initiated: true }));
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

use crate::secret::Secret;

/// How far the token's `exp` and `nbf` may be off (clock skew), as LiveKit's own verifier allows.
pub const LEEWAY: Duration = Duration::from_secs(60);

/// Why a webhook was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WebhookError {
    /// There is no `Authorization` header.
    #[error("the webhook has no Authorization header")]
    MissingToken,
    /// The token is not a well-formed HS256 JWT.
    #[error("the webhook's token is malformed: {0}")]
    MalformedToken(&'static str),
    /// The token was issued for another API key.
    #[error("the webhook's token was issued by another API key")]
    UnknownIssuer,
    /// The signature does not match the API secret.
    #[error("the webhook's signature is invalid")]
    BadSignature,
    /// The token has expired or is not valid yet.
    #[error("the webhook's token is outside its validity window")]
    Expired,
    /// The body is not the one the token was signed for.
    #[error("the webhook's body does not match its signed hash")]
    BodyMismatch,
    /// The body is not a webhook event.
    #[error("the webhook's body is not a LiveKit webhook event")]
    InvalidBody,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

#[derive(Deserialize)]
struct WebhookClaims {
    #[serde(default)]
    iss: String,
    exp: Option<i64>,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    sha256: String,
}

/// Checks that `authorization` (the header's value) is a token of `api_key` signed with
/// `api_secret`, valid at `now`, for exactly `body`.
pub fn verify(
    authorization: Option<&str>,
    body: &[u8],
    api_key: &str,
    api_secret: &Secret,
    now: SystemTime,
) -> Result<(), WebhookError> {
    let token = authorization.map(str::trim).filter(|t| !t.is_empty());
    let token = token.ok_or(WebhookError::MissingToken)?;
    // LiveKit sends the bare token; accept a `Bearer ` prefix as other signers add one.
    let token = token.strip_prefix("Bearer ").unwrap_or(token);
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(WebhookError::MalformedToken("not three parts"));
    };
    let header: Header = decode_part(header)?;
    if header.alg != "HS256" {
        return Err(WebhookError::MalformedToken("not HS256"));
    }
    let signature =
        URL_SAFE_NO_PAD.decode(signature).map_err(|_| WebhookError::MalformedToken("signature"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(api_secret.expose().as_bytes())
        .map_err(|_| WebhookError::BadSignature)?;
    mac.update(&token.as_bytes()[..token.len() - signature_len(token)]);
    mac.verify_slice(&signature).map_err(|_| WebhookError::BadSignature)?;

    let claims: WebhookClaims = decode_part(claims)?;
    if claims.iss != api_key {
        return Err(WebhookError::UnknownIssuer);
    }
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    let leeway = LEEWAY.as_secs() as i64;
    let exp = claims.exp.ok_or(WebhookError::Expired)?;
    if now > exp.saturating_add(leeway) || claims.nbf.is_some_and(|nbf| now < nbf - leeway) {
        return Err(WebhookError::Expired);
    }
    let expected = STANDARD.encode(Sha256::digest(body));
    if !constant_time_eq(claims.sha256.as_bytes(), expected.as_bytes()) {
        return Err(WebhookError::BodyMismatch);
    }
    Ok(())
}

/// The length of the `.signature` suffix of a three-part token.
fn signature_len(token: &str) -> usize {
    token.rfind('.').map_or(0, |dot| token.len() - dot)
}

fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Result<T, WebhookError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| WebhookError::MalformedToken("base64"))?;
    serde_json::from_slice(&bytes).map_err(|_| WebhookError::MalformedToken("JSON"))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What happened to a participant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParticipantChange {
    /// The participant's connection became active (`participant_joined`).
    Joined,
    /// The participant is gone (`participant_left`, `participant_connection_aborted`).
    Left {
        /// It hung up itself (`CLIENT_INITIATED`), rather than being timed out, replaced by a
        /// newer connection of the same identity, removed, or lost with the server.
        client_initiated: bool,
    },
}

/// A participant event from a LiveKit webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParticipantEvent {
    /// The LiveKit room name.
    pub room: String,
    /// The participant's identity.
    pub identity: String,
    /// The participant's session id (`PA_…`), empty when LiveKit left it out.
    pub sid: String,
    /// What happened.
    pub change: ParticipantChange,
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(default)]
    event: String,
    #[serde(default)]
    room: Option<WireRoom>,
    #[serde(default)]
    participant: Option<WireParticipant>,
}

#[derive(Deserialize)]
struct WireRoom {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct WireParticipant {
    #[serde(default)]
    sid: String,
    #[serde(default)]
    identity: String,
    #[serde(default, rename = "disconnectReason", alias = "disconnect_reason")]
    disconnect_reason: Option<serde_json::Value>,
}

/// `CLIENT_INITIATED` in `livekit.DisconnectReason`.
const CLIENT_INITIATED: i64 = 1;

/// Reads a webhook body: `Ok(Some(_))` for a participant event, `Ok(None)` for the events this
/// service does not act on (rooms, tracks, egress, …), an error for a body that is not a webhook
/// event or a participant event without a room or an identity.
pub fn parse(body: &[u8]) -> Result<Option<ParticipantEvent>, WebhookError> {
    let wire: WireEvent = serde_json::from_slice(body).map_err(|_| WebhookError::InvalidBody)?;
    let left = match wire.event.as_str() {
        "participant_joined" => false,
        "participant_left" | "participant_connection_aborted" => true,
        "" => return Err(WebhookError::InvalidBody),
        _ => return Ok(None),
    };
    let room = wire.room.map(|r| r.name).filter(|n| !n.is_empty());
    let participant = wire.participant.filter(|p| !p.identity.is_empty());
    let (Some(room), Some(participant)) = (room, participant) else {
        return Err(WebhookError::InvalidBody);
    };
    let change = if left {
        let client_initiated = match &participant.disconnect_reason {
            Some(serde_json::Value::String(name)) => name == "CLIENT_INITIATED",
            Some(serde_json::Value::Number(number)) => number.as_i64() == Some(CLIENT_INITIATED),
            _ => false,
        };
        ParticipantChange::Left { client_initiated }
    } else {
        ParticipantChange::Joined
    };
    Ok(Some(ParticipantEvent {
        room,
        identity: participant.identity,
        sid: participant.sid,
        change,
    }))
}

/// Signs `body` as a LiveKit server does (for tests and tools that play LiveKit).
pub fn sign(body: &[u8], api_key: &str, api_secret: &Secret, now: SystemTime) -> String {
    let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "iss": api_key,
        "nbf": now,
        "iat": now,
        "exp": now + 300,
        "sha256": STANDARD.encode(Sha256::digest(body)),
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    let input = format!("{header}.{claims}");
    let signature = match Hmac::<Sha256>::new_from_slice(api_secret.expose().as_bytes()) {
        Ok(mut mac) => {
            mac.update(input.as_bytes());
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length.
        Err(_) => String::new(),
    };
    format!("{input}.{signature}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "devkey";

    fn secret() -> Secret {
        Secret::new("a-secret-of-32-characters-or-more")
    }

    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_780_000_000)
    }

    /// A body as LiveKit 1.13 writes it (protojson: int64 as strings, enums as names).
    const LEFT: &[u8] = br#"{"event":"participant_left","room":{"sid":"RM_x","name":"Zm9v","emptyTimeout":300,"departureTimeout":20,"creationTime":"1780000000","turnPassword":"t","enabledCodecs":[{"mime":"audio/opus"}]},"participant":{"sid":"PA_abc","identity":"@bot:localhost:BOT","state":"DISCONNECTED","joinedAt":"1780000000","version":7,"permission":{"canSubscribe":true},"disconnectReason":"SIGNAL_CLOSE"},"id":"EV_x","createdAt":"1780000100"}"#;

    #[test]
    fn accepts_what_livekit_signs() {
        let token = sign(LEFT, KEY, &secret(), now());
        assert_eq!(verify(Some(&token), LEFT, KEY, &secret(), now()), Ok(()));
        let bearer = format!("Bearer {token}");
        assert_eq!(verify(Some(&bearer), LEFT, KEY, &secret(), now()), Ok(()));
        // Within the leeway either side of the window.
        let later = now() + Duration::from_secs(300 + 59);
        assert_eq!(verify(Some(&token), LEFT, KEY, &secret(), later), Ok(()));
        let earlier = now() - Duration::from_secs(59);
        assert_eq!(verify(Some(&token), LEFT, KEY, &secret(), earlier), Ok(()));
    }

    #[test]
    fn refuses_forgeries() {
        let token = sign(LEFT, KEY, &secret(), now());
        let check = |auth: Option<&str>, body: &[u8]| verify(auth, body, KEY, &secret(), now());
        assert_eq!(check(None, LEFT), Err(WebhookError::MissingToken));
        assert_eq!(check(Some(" "), LEFT), Err(WebhookError::MissingToken));
        assert_eq!(check(Some(&token), b"{}"), Err(WebhookError::BodyMismatch));
        let other = sign(LEFT, KEY, &Secret::new("another secret"), now());
        assert_eq!(check(Some(&other), LEFT), Err(WebhookError::BadSignature));
        let foreign = sign(LEFT, "otherkey", &secret(), now());
        assert_eq!(check(Some(&foreign), LEFT), Err(WebhookError::UnknownIssuer));
        let late = now() + Duration::from_secs(300 + 61);
        assert_eq!(verify(Some(&token), LEFT, KEY, &secret(), late), Err(WebhookError::Expired));
        let early = now() - Duration::from_secs(61);
        assert_eq!(verify(Some(&token), LEFT, KEY, &secret(), early), Err(WebhookError::Expired));
        assert!(matches!(check(Some("a.b"), LEFT), Err(WebhookError::MalformedToken(_))));
        assert!(matches!(check(Some("a.b.c.d"), LEFT), Err(WebhookError::MalformedToken(_))));

        // `alg: none` with the claims of a valid token and no signature.
        let claims = token.split('.').nth(1).unwrap();
        let none = format!("{}.{claims}.", URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#));
        assert_eq!(check(Some(&none), LEFT), Err(WebhookError::MalformedToken("not HS256")));

        // A valid signature over claims without `exp`.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256"}"#);
        let body_hash = STANDARD.encode(Sha256::digest(LEFT));
        let claims = URL_SAFE_NO_PAD.encode(format!(r#"{{"iss":"{KEY}","sha256":"{body_hash}"}}"#));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret().expose().as_bytes()).unwrap();
        mac.update(format!("{header}.{claims}").as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        let no_exp = format!("{header}.{claims}.{signature}");
        assert_eq!(check(Some(&no_exp), LEFT), Err(WebhookError::Expired));
    }

    #[test]
    fn reads_participant_events() {
        let event = parse(LEFT).unwrap().unwrap();
        assert_eq!(event.room, "Zm9v");
        assert_eq!(event.identity, "@bot:localhost:BOT");
        assert_eq!(event.sid, "PA_abc");
        assert_eq!(event.change, ParticipantChange::Left { client_initiated: false });

        let joined =
            br#"{"event":"participant_joined","room":{"name":"R"},"participant":{"identity":"i"}}"#;
        let event = parse(joined).unwrap().unwrap();
        assert_eq!((event.change, event.sid.as_str()), (ParticipantChange::Joined, ""));

        // Proto names and enum numbers, as other encoders write them.
        let aborted = br#"{"event":"participant_connection_aborted","room":{"name":"R"},"participant":{"identity":"i","disconnect_reason":1}}"#;
        let event = parse(aborted).unwrap().unwrap();
        assert_eq!(event.change, ParticipantChange::Left { client_initiated: true });

        for other in [
            &br#"{"event":"room_finished","room":{"name":"R"}}"#[..],
            br#"{"event":"track_published","room":{"name":"R"},"participant":{"identity":"i"}}"#,
        ] {
            assert_eq!(parse(other), Ok(None));
        }
        for bad in [
            &b""[..],
            b"[]",
            br#"{"event":5}"#,
            br#"{"room":{"name":"R"}}"#,
            br#"{"event":"participant_left","participant":{"identity":"i"}}"#,
            br#"{"event":"participant_left","room":{"name":"R"},"participant":{"identity":""}}"#,
        ] {
            assert_eq!(
                parse(bad),
                Err(WebhookError::InvalidBody),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
