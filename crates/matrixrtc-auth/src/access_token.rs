//! LiveKit access tokens: HS256 JWTs signed with the LiveKit API secret.
//!
//! Minting is pure: the caller passes the current time, so tokens are reproducible in tests.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::secret::Secret;

/// How long a join token is valid, as lk-jwt-service mints them.
pub const JOIN_TOKEN_VALIDITY: Duration = Duration::from_secs(3600);

/// The LiveKit video grant (the `video` claim). Unset permissions are omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct VideoGrant {
    /// The LiveKit room the grant applies to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// May join `room`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_join: Option<bool>,
    /// May create rooms through the server API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_create: Option<bool>,
    /// May administer `room` through the server API (list and remove participants).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_admin: Option<bool>,
    /// May publish tracks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_publish: Option<bool>,
    /// May subscribe to tracks.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_subscribe: Option<bool>,
    /// May publish data packets.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_publish_data: Option<bool>,
    /// May update its own name, metadata and attributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub can_update_own_metadata: Option<bool>,
}

impl VideoGrant {
    /// The grant given to every MatrixRTC participant: join `room`, publish, subscribe, publish
    /// data and update its own metadata. Never `roomCreate`: rooms are created by the service.
    pub fn participant(room: impl Into<String>) -> Self {
        Self {
            room: Some(room.into()),
            room_join: Some(true),
            can_publish: Some(true),
            can_subscribe: Some(true),
            can_publish_data: Some(true),
            can_update_own_metadata: Some(true),
            ..Self::default()
        }
    }

    /// The grant the service uses for itself to call `RoomService.CreateRoom`.
    pub fn room_admin() -> Self {
        Self { room_create: Some(true), ..Self::default() }
    }

    /// The grant to administer one room through the server API (`ListParticipants`).
    pub fn admin_of(room: impl Into<String>) -> Self {
        Self { room: Some(room.into()), room_admin: Some(true), ..Self::default() }
    }
}

/// The claims of a LiveKit access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Claims {
    /// The API key.
    pub iss: String,
    /// The participant identity (empty for server API tokens).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sub: String,
    /// Not before, seconds since the Unix epoch.
    pub nbf: u64,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// The video grant.
    pub video: VideoGrant,
}

impl Claims {
    /// Claims valid from `now` for `validity`.
    pub fn new(
        api_key: impl Into<String>,
        identity: impl Into<String>,
        grant: VideoGrant,
        now: SystemTime,
        validity: Duration,
    ) -> Self {
        let nbf = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        Self {
            iss: api_key.into(),
            sub: identity.into(),
            nbf,
            exp: nbf + validity.as_secs(),
            video: grant,
        }
    }

    /// Signs the claims with HS256 and the API secret; returns the compact JWT.
    pub fn sign(&self, api_secret: &Secret) -> Result<String, SignError> {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = serde_json::to_vec(self).map_err(|e| SignError(e.to_string()))?;
        let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims));
        let mut mac = Hmac::<Sha256>::new_from_slice(api_secret.expose().as_bytes())
            .expect("HMAC accepts keys of any length");
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        Ok(format!("{signing_input}.{signature}"))
    }
}

/// The claims could not be serialised (never a token with an empty payload).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the token's claims could not be serialised: {0}")]
#[non_exhaustive]
pub struct SignError(String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_a_verifiable_hs256_token() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let claims = Claims::new(
            "devkey",
            "@a:x:DEV",
            VideoGrant::participant("room1"),
            now,
            JOIN_TOKEN_VALIDITY,
        );
        let jwt = claims.sign(&Secret::new("secret")).unwrap();
        // The whole token, computed independently (Python's hmac and base64 over the JSON
        // written out by hand), not the way this code computes it.
        assert_eq!(
            jwt,
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJkZXZrZXkiLCJzdWIiOiJAYTp4OkRFViIsIm5i\
             ZiI6MTcwMDAwMDAwMCwiZXhwIjoxNzAwMDAzNjAwLCJ2aWRlbyI6eyJyb29tIjoicm9vbTEiLCJyb29tSm9pbi\
             I6dHJ1ZSwiY2FuUHVibGlzaCI6dHJ1ZSwiY2FuU3Vic2NyaWJlIjp0cnVlLCJjYW5QdWJsaXNoRGF0YSI6dHJ1\
             ZSwiY2FuVXBkYXRlT3duTWV0YWRhdGEiOnRydWV9fQ.RogBniLNEQxQAMfxuhldse2aDTDg6m-abjbpdPRs_vo"
        );
        let parts: Vec<&str> = jwt.split('.').collect();
        assert_eq!(parts.len(), 3);

        let payload: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(
            payload,
            serde_json::json!({
                "iss": "devkey", "sub": "@a:x:DEV", "nbf": 1_700_000_000u64, "exp": 1_700_003_600u64,
                "video": {"room": "room1", "roomJoin": true, "canPublish": true, "canSubscribe": true,
                          "canPublishData": true, "canUpdateOwnMetadata": true}
            })
        );

        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").unwrap();
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        mac.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).expect("signature verifies");

        let mut wrong = Hmac::<Sha256>::new_from_slice(b"other").unwrap();
        wrong.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert!(wrong.verify_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).is_err());
    }

    #[test]
    fn admin_token_has_no_subject_and_only_room_create() {
        let claims =
            Claims::new("k", "", VideoGrant::room_admin(), UNIX_EPOCH, Duration::from_secs(60));
        let json = serde_json::to_value(&claims).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"iss": "k", "nbf": 0, "exp": 60, "video": {"roomCreate": true}})
        );
    }
}
