//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use livekit_protocol::{
    JoinResponse, LeaveRequest, SignalRequest, SignalResponse, signal_request, signal_response,
};
use matrixrtc_auth::config::{Config, RawConfig};
use prost::Message as _;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use rtc_test_support::{Homeserver, StackInfo, User};
use serde_json::Value;
use tokio_tungstenite::tungstenite;

/// An answer of the authorization service.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn errcode(&self) -> &str {
        self.body["errcode"].as_str().unwrap_or("<none>")
    }
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

/// POSTs a raw body.
pub async fn post(url: &str, body: impl Into<reqwest::Body>) -> Answer {
    let response = http()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the authorization service answers");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Answer { status, headers, body }
}

/// The claims of a JWT, decoded without checking the signature (LiveKit checks it when a test
/// joins with the token).
pub fn jwt_claims(jwt: &str) -> Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).expect("a JWT has a payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("the payload is unpadded base64url");
    serde_json::from_slice(&bytes).expect("the payload is JSON")
}

/// Two users of the stack's homeserver in a call room; alice logged in on device `ALICEDEV`.
pub struct CallRoom {
    pub stack: StackInfo,
    pub hs: Homeserver,
    pub alice: User,
    pub bob: User,
    pub room_id: String,
}

pub async fn call_room() -> CallRoom {
    let stack = StackInfo::require();
    let hs = Homeserver::new(&stack);
    let registered = hs.register_unique("alice").await.expect("register alice");
    let localpart =
        registered.user_id.trim_start_matches('@').split(':').next().unwrap().to_owned();
    let alice = hs.login(&localpart, &localpart, "ALICEDEV").await.expect("alice logs in");
    assert_eq!(alice.device_id, "ALICEDEV");
    let bob = hs.register_unique("bob").await.expect("register bob");
    let room_id = hs.create_call_room(&alice, &[&bob]).await.expect("room");
    hs.join(&bob, &room_id).await.expect("bob joins");
    CallRoom { stack, hs, alice, bob, room_id }
}

/// Why a LiveKit signalling connection did not produce a JoinResponse.
#[derive(Debug)]
pub enum JoinError {
    /// The WebSocket upgrade was refused with this HTTP status.
    Refused(u16, String),
    Other(String),
}

/// Opens a LiveKit signalling connection (`/rtc`, protobuf over WebSocket) with `jwt`, waits for
/// the JoinResponse, then leaves.
pub async fn livekit_join(livekit_url: &str, jwt: &str) -> Result<JoinResponse, JoinError> {
    let url = format!(
        "{}/rtc?access_token={jwt}&auto_subscribe=1&sdk=rust&version=0.1.0&protocol=16",
        livekit_url.trim_end_matches('/')
    );
    let (mut ws, _) = match tokio_tungstenite::connect_async(url).await {
        Ok(ok) => ok,
        Err(tungstenite::Error::Http(response)) => {
            let body = response
                .body()
                .as_ref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default();
            return Err(JoinError::Refused(response.status().as_u16(), body));
        }
        Err(e) => return Err(JoinError::Other(e.to_string())),
    };
    let join = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(message) = ws.next().await {
            match message.map_err(|e| JoinError::Other(e.to_string()))? {
                tungstenite::Message::Binary(bytes) => {
                    let response = SignalResponse::decode(bytes.as_ref())
                        .map_err(|e| JoinError::Other(e.to_string()))?;
                    if let Some(signal_response::Message::Join(join)) = response.message {
                        return Ok(join);
                    }
                }
                tungstenite::Message::Close(frame) => {
                    return Err(JoinError::Other(format!("closed: {frame:?}")));
                }
                _ => {}
            }
        }
        Err(JoinError::Other("signalling connection ended before the JoinResponse".into()))
    })
    .await
    .map_err(|_| JoinError::Other("no JoinResponse within 15 s".into()))??;
    let leave = SignalRequest {
        message: Some(signal_request::Message::Leave(LeaveRequest {
            reason: 1,
            ..Default::default()
        })),
    };
    let _ = ws.send(tungstenite::Message::Binary(leave.encode_to_vec().into())).await;
    let _ = ws.close(None).await;
    Ok(join)
}

/// A raw configuration for an in-process service instance (fill in what the test needs).
pub fn raw_config(livekit_url: &str, key: &str, secret: &str, full_access: &str) -> RawConfig {
    let mut raw = RawConfig::default();
    raw.livekit_url = Some(livekit_url.to_owned());
    raw.livekit_key = Some(key.to_owned());
    raw.livekit_secret = Some(secret.parse().unwrap());
    raw.full_access_homeservers = Some(full_access.to_owned());
    raw.bind = Some("127.0.0.1:0".to_owned());
    raw.outbound_timeout_ms = 10_000;
    raw.max_body_bytes = 64 * 1024;
    // The tests' homeservers listen on loopback.
    raw.outbound_allow = vec!["127.0.0.1".into()];
    raw
}

/// Starts the service in this process; returns its base URL. It stops with the test's runtime.
pub async fn spawn_service(raw: RawConfig) -> String {
    spawn_configured(Config::from_raw(raw).expect("valid config")).await
}

/// Starts the service with `config` in this process; returns its base URL.
pub async fn spawn_configured(config: Config) -> String {
    let listener = tokio::net::TcpListener::bind(config.bind).await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(matrixrtc_auth::serve(listener, config, std::future::pending()));
    format!("http://{address}")
}
