//! The LiveKit join token: a secret that is only ever handed to the LiveKit client, and whose
//! claims (identity, room, expiry) may be shown.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// A LiveKit join token (a JWT). Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwt(String);

impl Jwt {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the LiveKit client only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// What the token claims, read without checking its signature (the LiveKit server checks
    /// it); `None` when it is not a JWT.
    pub fn claims(&self) -> Option<JwtClaims> {
        let payload = self.0.split('.').nth(1)?;
        let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
        let claims: Value = serde_json::from_slice(&bytes).ok()?;
        let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
        Some(JwtClaims {
            identity: text(claims.get("sub")),
            room: text(claims.get("video").and_then(|v| v.get("room"))),
            expires_at: claims.get("exp").and_then(Value::as_u64),
        })
    }
}

impl std::fmt::Debug for Jwt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Jwt([redacted])")
    }
}

/// The claims of a LiveKit join token that say who and where.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct JwtClaims {
    /// `sub`: the participant identity.
    pub identity: Option<String>,
    /// `video.room`: the LiveKit room.
    pub room: Option<String>,
    /// `exp`: Unix seconds.
    pub expires_at: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_read_and_the_token_never_shown() {
        let payload = URL_SAFE_NO_PAD
            .encode(br#"{"sub":"@bot:example.org:BOT","video":{"room":"abc","roomJoin":true},"exp":1700000000}"#);
        let jwt = Jwt::new(format!("eyJhbGciOiJIUzI1NiJ9.{payload}.c2lnbmF0dXJl"));
        let claims = jwt.claims().unwrap();
        assert_eq!(claims.identity.as_deref(), Some("@bot:example.org:BOT"));
        assert_eq!(claims.room.as_deref(), Some("abc"));
        assert_eq!(claims.expires_at, Some(1_700_000_000));
        assert_eq!(format!("{jwt:?}"), "Jwt([redacted])");
        assert_eq!(Jwt::new("not a jwt").claims(), None);
        assert_eq!(Jwt::new("a.%%%.c").claims(), None);
    }
}
