//! A MatrixRTC authorization service compatible with
//! [element-hq/lk-jwt-service](https://github.com/element-hq/lk-jwt-service).
//!
//! Matrix clients (Element Call, and this project's own crates) exchange an OpenID token of
//! their homeserver for a LiveKit URL and access token:
//!
//! * `POST /sfu/get` (legacy): LiveKit identity `@user:server:DEVICE`;
//! * `POST /get_token` (MSC4195): hashed identity;
//! * `POST /delegate_delayed_leave` (MSC4195): a member hands its delayed leave over, which the
//!   service keeps alive while the member's LiveKit connection lives ([`delegation`]); the token
//!   routes take the same `delay_id` and `delay_timeout`;
//! * `POST /sfu_webhook`: LiveKit's signed webhooks ([`webhook`]), which say when participants
//!   join and leave;
//! * `GET /healthz`.
//!
//! Both token routes put every member of a Matrix room call into the same LiveKit room, named
//! `unpadded_base64(sha256(["!room", "m.call#ROOM"]))` (see [`identity`]). Users of full-access
//! homeservers get the room created on the SFU first (`RoomService.CreateRoom`).
//!
//! The library exposes the service as an [`axum::Router`] so that it can be embedded and tested;
//! the `matrixrtc-auth` binary configures it from the environment.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use matrixrtc_auth::config::{Config, RawConfig};
//!
//! let mut raw = RawConfig::default();
//! raw.livekit_url = Some("ws://127.0.0.1:7880".into());
//! raw.livekit_key = Some("devkey".into());
//! raw.livekit_secret = Some("a-secret-of-32-characters-or-more".parse()?);
//! raw.full_access_homeservers = Some("localhost".into());
//! raw.bind = Some("127.0.0.1:8090".into());
//! raw.federation_overrides = vec!["localhost=http://127.0.0.1:8008".into()];
//! // The homeserver is on loopback, which the outbound policy refuses unless allowed.
//! raw.outbound_allow = vec!["127.0.0.1".into()];
//! raw.outbound_timeout_ms = 10_000;
//! raw.max_body_bytes = 65_536;
//! let config = Config::from_raw(raw)?;
//! let listener = tokio::net::TcpListener::bind(config.bind).await?;
//! matrixrtc_auth::serve(listener, config, std::future::pending()).await?;
//! # Ok(()) }
//! ```

pub mod access_token;
pub mod config;
pub mod delegation;
pub mod error;
mod http;
pub mod limits;
pub mod openid;
pub mod outbound;
pub mod request;
pub mod room_service;
pub mod secret;
pub mod server_name;
pub mod service;
pub mod webhook;

use std::future::Future;

/// LiveKit room names and identities (re-exported from `matrixrtc-identity`).
pub use matrixrtc_identity as identity;

pub use config::Config;
pub use error::ApiError;
pub use service::router;

/// Serves the authorization service on `listener` until `shutdown` completes, then finishes the
/// requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(config).map_err(std::io::Error::other)?;
    // The peer address feeds the per-client rate limit.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}
