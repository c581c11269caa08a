//! A LiveKit client in pure Rust: signalling with the official `livekit-protocol` types, the two
//! WebRTC peer connections on [`str0m`], encoded video and Opus audio in and out. No libwebrtc,
//! no C++.
//!
//! ```text
//!  Room (handle) ──commands──▶ task (tokio: WebSocket, UDP sockets, timers)
//!                                 │  bytes + time ▲ outputs
//!                                 ▼               │
//!                              Engine (sans-IO): signalling state, publisher and subscriber
//!                              str0m::Rtc, participants, tracks, frame-crypto hook
//! ```
//!
//! Start with [`Room::connect`]; publish with [`Room::publish_video`] and write
//! [`EncodedVideoFrame`]s, or with [`Room::publish_audio`] and write [`EncodedAudioFrame`]s;
//! receive [`RoomEvent::TrackSubscribed`] and read [`RemoteVideoFrame`]s or
//! [`RemoteAudioFrame`]s. Frame encryption plugs in through [`FrameCryptor`].

pub mod e2ee;
mod engine;
mod error;
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

pub use e2ee::{FrameCodec, FrameContext, FrameCryptError, FrameCryptor};
pub use engine::{ParticipantSummary, Speaker};
pub use error::{ConnectError, DisconnectCause, PublishError, TrackError};
pub use livekit_protocol::DisconnectReason;
pub use room::{ConnectionState, Room, RoomEvent, RoomEvents, RoomOptions};
pub use track::{
    AudioLevel, AudioTrackOptions, EncodedAudioFrame, EncodedVideoFrame, LocalAudioTrack,
    LocalVideoTrack, RemoteAudioFrame, RemoteAudioTrack, RemoteTrack, RemoteTrackInfo,
    RemoteVideoFrame, RemoteVideoTrack, TrackKind, TrackSource, VideoCodec, VideoTrackOptions,
};
