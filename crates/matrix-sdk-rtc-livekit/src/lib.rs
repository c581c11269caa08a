//! MatrixRTC calls with media through LiveKit, in pure Rust: the glue between
//! [`matrix_sdk_rtc`] (memberships, the driver that joins and leaves calls) and
//! [`livekit_str0m`] (the LiveKit client), with [`rtc_media`] for pictures and codecs.
//!
//! * [`credentials`]: a LiveKit server and join token from the MatrixRTC authorization service
//!   (`/sfu/get`, `/get_token`), an explicit `/sfu/get` URL, or a static token; fresh for
//!   every connection, never logged;
//! * [`LiveKitStr0mConnector`]: the connector `matrix-sdk-rtc`'s driver calls: our LiveKit
//!   room, a [`VideoFeed`] and an [`AudioFeed`] published into it (sources of `rtc-media`, or
//!   pictures and PCM the application pushes through a [`FrameSender`] and a [`PcmSender`]),
//!   everybody's video decoded ([`RemoteVideo`]) and audio as Opus packets or paced PCM
//!   ([`RemoteAudio`]), and a subscribe-only connection to every other SFU members publish on;
//! * [`MediaEncryption`]: in encrypted rooms, media encrypted as Element Call does it
//!   (per-participant keys over Matrix, LiveKit's frame encryption);
//! * [`CallEvent`]s: connections, our publishing, remote participants and their media;
//! * [`tls`]: one TLS stack for the WebSocket and the HTTP clients (`native-tls` or
//!   `rustls-tls`).
//!
//! See [`LiveKitStr0mConnector`] for a whole bot in a few lines.

mod connection;
mod connector;
pub mod credentials;
mod encryption;
pub mod endpoint;
mod error;
mod events;
mod publisher;
mod remote;
pub mod tls;

pub use connection::CallConnection;
pub use connector::{ConnectorOptions, LiveKitStr0mConnector};
pub use credentials::{CredentialSource, Credentials, Jwt};
pub use encryption::MediaEncryption;
pub use error::{Error, ErrorKind, error_chain};
pub use events::{CallEvent, CallEvents, PublishInfo, PublishStats, SfuInfo};
pub use publisher::{AudioFeed, FrameSender, PcmSender, VideoFeed};
pub use remote::{DecodedAudio, RemoteAudio, RemoteAudioStats, RemoteVideo, RemoteVideoStats};
pub use {livekit_str0m, matrix_sdk_rtc, rtc_media};
