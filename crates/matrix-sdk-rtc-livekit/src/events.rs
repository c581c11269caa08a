//! What the application hears about the media side of the call.

use std::time::Duration;

use livekit_str0m::VideoCodec;
use matrix_sdk_rtc::CallMember;
use tokio::sync::mpsc;

use crate::remote::{RemoteAudio, RemoteVideo};

/// Events of the connections a [`crate::LiveKitStr0mConnector`] makes, across reconnects.
#[derive(Debug)]
#[non_exhaustive]
pub enum CallEvent {
    /// Credentials are issued; connecting to this LiveKit server.
    Connecting(SfuInfo),
    /// Connected to a LiveKit server (ours, or a subscribe-only one).
    Connected(SfuInfo),
    /// A LiveKit connection closed (we left, or it was lost for good).
    Disconnected {
        /// The server.
        livekit_url: String,
        /// Why.
        reason: String,
    },
    /// Our video is going out: the first frames are on the connection.
    Publishing(PublishInfo),
    /// Our audio is going out: the first packets are on the connection.
    AudioPublishing {
        /// The track sid.
        track_sid: String,
    },
    /// Our video over the last interval.
    PublishStats(PublishStats),
    /// Our video or audio stopped before the connection did (the source ended or failed).
    PublisherStopped {
        /// What went wrong.
        error: Option<String>,
    },
    /// A participant is in a LiveKit room we are connected to.
    ParticipantConnected {
        /// The participant's LiveKit identity.
        identity: String,
        /// The call member behind it, if its membership is known yet.
        member: Option<Box<CallMember>>,
    },
    /// A participant left a LiveKit room we are connected to.
    ParticipantDisconnected {
        /// The participant's LiveKit identity.
        identity: String,
    },
    /// A participant's video arrives: read decoded pictures from it.
    VideoSubscribed(RemoteVideo),
    /// A participant's audio arrives: read Opus packets from it, or decode it into PCM.
    AudioSubscribed(RemoteAudio),
    /// A participant's video or audio stopped (the [`RemoteVideo`] or [`RemoteAudio`] ends
    /// too).
    TrackUnsubscribed {
        /// The track sid.
        track_sid: String,
    },
}

/// A LiveKit connection: where, as whom, in which room.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SfuInfo {
    /// The LiveKit server (without credentials).
    pub livekit_url: String,
    /// Our identity there (from the token).
    pub identity: String,
    /// The LiveKit room (from the token).
    pub room: String,
    /// Whether we publish on it (our own SFU) or only subscribe (another member's).
    pub publishing: bool,
}

/// Our published video.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishInfo {
    /// The track sid.
    pub track_sid: String,
    /// The codec.
    pub codec: VideoCodec,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second, as a fraction.
    pub frame_rate: (u32, u32),
    /// The highest bitrate.
    pub max_bitrate: u32,
}

/// Our video over one interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishStats {
    /// The interval.
    pub interval: Duration,
    /// Frames encoded.
    pub frames: u64,
    /// Keyframes sent.
    pub keyframes: u64,
    /// Bytes of encoded video sent.
    pub bytes: u64,
    /// Frames dropped because the connection was busy.
    pub dropped: u64,
    /// The encoder's bitrate at the end of the interval.
    pub target_bitrate: u32,
}

impl PublishStats {
    /// Frames per second over the interval.
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.interval.as_secs_f64().max(1e-3)
    }

    /// Bits per second over the interval.
    pub fn bits_per_second(&self) -> f64 {
        self.bytes as f64 * 8.0 / self.interval.as_secs_f64().max(1e-3)
    }
}

/// The stream of [`CallEvent`]s. Keep reading it, or drop it: events that find it full are
/// dropped (with a log line), and remote video is decoded only while somebody can receive it.
#[derive(Debug)]
pub struct CallEvents(pub(crate) mpsc::Receiver<CallEvent>);

impl CallEvents {
    /// The next event; `None` once the connector and its connections are gone.
    pub async fn recv(&mut self) -> Option<CallEvent> {
        self.0.recv().await
    }
}
