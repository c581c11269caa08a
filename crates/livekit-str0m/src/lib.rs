//! A LiveKit client in pure Rust: signalling with the official `livekit-protocol` types, the two
//! WebRTC peer connections on [`str0m`], encoded video and Opus audio in and out. No libwebrtc,
//! no C++.
//!
//! ```text
//!  Room, track handles ──commands, track requests──▶ task (tokio: WebSocket, UDP, timer)
//!  RoomEvents (bounded) ◀──events──┐                   │ inputs + time ▲ actions
//!                                  │                   ▼               │
//!                              Connection (sans-IO): join, resume, rejoin, backoff, deadlines,
//!                              event and media delivery to the application
//!                                  │ ▲
//!                                  ▼ │
//!                              Engine (sans-IO): one session's signalling, publisher and
//!                              subscriber str0m::Rtc, participants, tracks, frame-crypto hook
//! ```
//!
//! Start with [`Room::connect`]; publish with [`Room::publish_video`] and write
//! [`EncodedVideoFrame`]s, or with [`Room::publish_audio`] and write [`EncodedAudioFrame`]s;
//! receive [`RoomEvent::TrackSubscribed`] and read [`RemoteVideoFrame`]s or
//! [`RemoteAudioFrame`]s. Frame encryption plugs in through [`FrameCryptor`].

mod api;
mod connection;
pub mod e2ee;
mod engine;
mod error;
mod events;
#[doc(hidden)]
pub mod fuzzing;
#[cfg(feature = "rtc-media")]
pub mod media;
mod net;
mod room;
mod signal;
pub mod stun;
mod task;
mod track;

pub use api::{ConnectionState, RoomEvent, RoomOptions};
pub use e2ee::{FrameCodec, FrameContext, FrameCryptError, FrameCryptor};
pub use engine::{ParticipantSummary, Speaker};
pub use error::{ConnectError, DisconnectCause, PublishError, TrackError};
pub use events::RoomEvents;
pub use livekit_protocol::DisconnectReason;
pub use room::Room;
pub use track::{
    AudioLevel, AudioTrackOptions, EncodedAudioFrame, EncodedVideoFrame, LocalAudioTrack,
    LocalVideoTrack, RemoteAudioFrame, RemoteAudioTrack, RemoteTrack, RemoteTrackInfo,
    RemoteVideoFrame, RemoteVideoTrack, TrackKind, TrackSource, VideoCodec, VideoTrackOptions,
};
