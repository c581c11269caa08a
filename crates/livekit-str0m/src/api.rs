//! What the room handle and the connection task say to each other, and what the application
//! hears: commands in, events and state out. Both sides import this module; it imports neither.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

use crate::e2ee::FrameCryptor;
use crate::engine::{ParticipantSummary, Speaker};
use crate::error::{DisconnectCause, PublishError};
use crate::track::{LocalTrackOptions, LocalTrackShared, RemoteTrack, RemoteTrackInfo};

/// How to connect.
#[derive(Clone)]
pub struct RoomOptions {
    /// Subscribe to every track automatically (default). When off, use
    /// [`Room::set_subscribed`].
    pub auto_subscribe: bool,
    /// Encrypts and decrypts frames of encrypted tracks.
    pub frame_cryptor: Option<Arc<dyn FrameCryptor>>,
    /// How long to keep trying to rejoin after the connection was lost.
    pub reconnect_timeout: Duration,
    /// Publish and subscribe on one peer connection (`/rtc/v1`, default), as current LiveKit
    /// clients do; a server without that endpoint is joined with two (`/rtc`) automatically.
    /// `false` always uses two.
    pub single_peer_connection: bool,
}

impl Default for RoomOptions {
    fn default() -> Self {
        Self {
            auto_subscribe: true,
            frame_cryptor: None,
            reconnect_timeout: Duration::from_secs(60),
            single_peer_connection: true,
        }
    }
}

impl std::fmt::Debug for RoomOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomOptions")
            .field("auto_subscribe", &self.auto_subscribe)
            .field("frame_cryptor", &self.frame_cryptor.is_some())
            .field("reconnect_timeout", &self.reconnect_timeout)
            .field("single_peer_connection", &self.single_peer_connection)
            .finish()
    }
}

/// The state of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Signalling and the media connection are up.
    Connected,
    /// The connection was lost; rejoining.
    Reconnecting,
    /// Closed for good.
    Disconnected,
}

/// What happens in the room.
#[derive(Debug)]
#[non_exhaustive]
pub enum RoomEvent {
    /// A participant joined (or was in the room when we joined).
    ParticipantConnected(ParticipantSummary),
    /// A participant left.
    ParticipantDisconnected(ParticipantSummary),
    /// A remote participant published a track.
    TrackPublished(RemoteTrackInfo),
    /// A remote participant unpublished a track.
    TrackUnpublished(RemoteTrackInfo),
    /// A remote track was muted or unmuted.
    TrackMuted(RemoteTrackInfo),
    /// Speaking levels changed (only those that changed; our own sid may be among them).
    ActiveSpeakersChanged(Vec<Speaker>),
    /// Media of a remote track is arriving: read frames (video) or packets (audio) from it.
    TrackSubscribed(RemoteTrack),
    /// A remote track's media stopped (its `recv` returns `None`).
    TrackUnsubscribed {
        /// The track sid.
        track_sid: String,
    },
    /// The connection state changed.
    ConnectionStateChanged(ConnectionState),
    /// The application read events too slowly and `missed` of them were dropped (speaker
    /// updates are merged, never dropped, while there is room for one). Delivered before the
    /// next event that was kept.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
    /// The room is closed; no more events follow.
    Disconnected(DisconnectCause),
}

/// What the room handle asks of the connection task (track handles have their own channel:
/// [`crate::track::TrackRequest`]).
#[derive(Debug)]
pub(crate) enum Command {
    Publish {
        cid: String,
        options: LocalTrackOptions,
        shared: Arc<LocalTrackShared>,
        reply: oneshot::Sender<Result<String, PublishError>>,
    },
    SetSubscribed {
        track_sid: String,
        subscribe: bool,
    },
    Disconnect {
        reply: oneshot::Sender<()>,
    },
}

/// What the connection task shares with the room handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) state: watch::Sender<ConnectionState>,
    /// Our participant sid and identity in the current session.
    pub(crate) local: std::sync::Mutex<(String, String)>,
}
