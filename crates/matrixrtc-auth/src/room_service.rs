//! A minimal client of LiveKit's server API (Twirp over HTTP, JSON encoding):
//! `RoomService.CreateRoom`, which is idempotent, `RoomService.ListParticipants` and
//! `RoomService.GetParticipant`.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::access_token::{Claims, VideoGrant};
use crate::secret::Secret;

/// How long an empty room created by the service is kept before anyone joins (lk-jwt-service).
pub const EMPTY_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// How long a room is kept after the last participant left (lk-jwt-service).
pub const DEPARTURE_TIMEOUT: Duration = Duration::from_secs(20);

/// Why a LiveKit server API call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RoomServiceError {
    /// The LiveKit server could not be reached or did not answer in time.
    #[error("LiveKit server API request failed: {0}")]
    Transport(String),
    /// The LiveKit server answered with an error status.
    #[error("LiveKit server API answered HTTP {status}: {message}")]
    Status {
        /// The HTTP status.
        status: u16,
        /// The Twirp error message, if any.
        message: String,
    },
    /// The answer could not be decoded.
    #[error("LiveKit server API answer could not be decoded")]
    InvalidResponse,
}

/// A room as returned by the server API (the fields this service uses).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Room {
    /// The server-assigned room id.
    #[serde(default)]
    pub sid: String,
    /// The room name.
    #[serde(default)]
    pub name: String,
}

/// A participant as returned by the server API (the fields this crate reads).
#[derive(Debug, Clone, Deserialize)]
#[non_exhaustive]
pub struct Participant {
    /// The server-assigned participant id.
    #[serde(default)]
    pub sid: String,
    /// The identity from the participant's token.
    #[serde(default)]
    pub identity: String,
    /// Its published tracks.
    #[serde(default)]
    pub tracks: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct ListParticipantsResponse {
    #[serde(default)]
    participants: Vec<Participant>,
}

#[derive(Serialize)]
struct CreateRoomRequest<'a> {
    name: &'a str,
    empty_timeout: u64,
    departure_timeout: u64,
    max_participants: u32,
}

/// A client of the LiveKit server API.
#[derive(Debug, Clone)]
pub struct RoomServiceClient {
    http: reqwest::Client,
    base: Url,
    api_key: String,
    api_secret: Secret,
}

impl RoomServiceClient {
    /// A client for the LiveKit server at `livekit_url` (`ws(s)://` or `http(s)://`).
    pub fn new(
        livekit_url: &Url,
        api_key: String,
        api_secret: Secret,
        timeout: Duration,
    ) -> Result<Self, RoomServiceError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|e| RoomServiceError::Transport(e.to_string()))?;
        Ok(Self { http, base: http_base(livekit_url), api_key, api_secret })
    }

    /// Creates the room `name`, or returns it if it exists already.
    pub async fn create_room(&self, name: &str) -> Result<Room, RoomServiceError> {
        let body = CreateRoomRequest {
            name,
            empty_timeout: EMPTY_TIMEOUT.as_secs(),
            departure_timeout: DEPARTURE_TIMEOUT.as_secs(),
            max_participants: 0,
        };
        self.call("CreateRoom", VideoGrant::room_admin(), &body).await
    }

    /// The participants in room `name` (an error when the room does not exist).
    pub async fn list_participants(
        &self,
        name: &str,
    ) -> Result<Vec<Participant>, RoomServiceError> {
        let answer: ListParticipantsResponse = self
            .call(
                "ListParticipants",
                VideoGrant::admin_of(name),
                &serde_json::json!({"room": name}),
            )
            .await?;
        Ok(answer.participants)
    }

    /// The participant `identity` in room `name`: `None` when the server does not know it (or
    /// the room).
    pub async fn get_participant(
        &self,
        name: &str,
        identity: &str,
    ) -> Result<Option<Participant>, RoomServiceError> {
        let answer = self
            .call(
                "GetParticipant",
                VideoGrant::admin_of(name),
                &serde_json::json!({"room": name, "identity": identity}),
            )
            .await;
        match answer {
            Ok(participant) => Ok(Some(participant)),
            // Twirp's `not_found`.
            Err(RoomServiceError::Status { status: 404, .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// `RoomService.{method}` with a short-lived token carrying `grant`.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        grant: VideoGrant,
        body: &impl Serialize,
    ) -> Result<T, RoomServiceError> {
        let url = method_url(&self.base, method)?;
        let token = Claims::new(
            self.api_key.clone(),
            "",
            grant,
            SystemTime::now(),
            Duration::from_secs(600),
        )
        .sign(&self.api_secret)
        .map_err(|e| RoomServiceError::Transport(e.to_string()))?;
        let response = self
            .http
            .post(url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .map_err(|e| RoomServiceError::Transport(e.without_url().to_string()))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| RoomServiceError::Transport(e.without_url().to_string()))?;
        if !status.is_success() {
            #[derive(Deserialize)]
            struct TwirpError {
                #[serde(default)]
                msg: String,
            }
            let message =
                serde_json::from_slice::<TwirpError>(&bytes).map(|e| e.msg).unwrap_or_default();
            return Err(RoomServiceError::Status { status: status.as_u16(), message });
        }
        serde_json::from_slice(&bytes).map_err(|_| RoomServiceError::InvalidResponse)
    }
}

/// The HTTP base URL of a LiveKit server, from its WebSocket URL (`ws`→`http`, `wss`→`https`),
/// with a trailing slash so that relative paths append to any path prefix.
pub fn http_base(livekit_url: &Url) -> Url {
    let mut base = livekit_url.clone();
    let scheme = match base.scheme() {
        "ws" => Some("http"),
        "wss" => Some("https"),
        _ => None,
    };
    if let Some(scheme) = scheme {
        // Switching between these special schemes always succeeds.
        let _ = base.set_scheme(scheme);
    }
    base.set_query(None);
    base.set_fragment(None);
    if let Ok(mut segments) = base.path_segments_mut() {
        segments.pop_if_empty().push("");
    }
    base
}

/// `{base}twirp/livekit.RoomService/{method}`.
fn method_url(base: &Url, method: &str) -> Result<Url, RoomServiceError> {
    let mut url = base.clone();
    url.path_segments_mut()
        .map_err(|()| RoomServiceError::Transport("the LiveKit URL cannot have a path".into()))?
        .pop_if_empty()
        .extend(["twirp", "livekit.RoomService", method]);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_base_keeps_host_port_and_prefix() {
        let cases = [
            ("ws://127.0.0.1:7880", "http://127.0.0.1:7880/"),
            ("wss://sfu.example.org/livekit/sfu", "https://sfu.example.org/livekit/sfu/"),
            ("https://sfu.example.org/", "https://sfu.example.org/"),
            ("ws://h:1/p/?access_token=x", "http://h:1/p/"),
        ];
        for (input, expected) in cases {
            assert_eq!(http_base(&Url::parse(input).unwrap()).as_str(), expected);
        }
        let base = http_base(&Url::parse("wss://sfu.example.org/livekit/sfu").unwrap());
        assert_eq!(
            method_url(&base, "CreateRoom").unwrap().as_str(),
            "https://sfu.example.org/livekit/sfu/twirp/livekit.RoomService/CreateRoom"
        );
    }
}
