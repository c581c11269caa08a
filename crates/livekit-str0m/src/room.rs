//! The public face: connect to a room, publish tracks, hear what happens.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::e2ee::FrameCryptor;
use crate::engine::{ParticipantSummary, Speaker};
use crate::error::{ConnectError, DisconnectCause, PublishError};
use crate::task::{Command, Shared, Task, open_connection};
use crate::track::{
    AudioTrackOptions, LocalAudioTrack, LocalTrackHandle, LocalTrackOptions, LocalTrackShared,
    LocalVideoTrack, RemoteTrack, RemoteTrackInfo, VideoTrackOptions,
};

/// Commands queued toward the connection task (frames included) before writers see `Busy`.
const COMMAND_QUEUE: usize = 64;
/// How long `disconnect` waits for the connection task.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(3);

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
}

impl Default for RoomOptions {
    fn default() -> Self {
        Self {
            auto_subscribe: true,
            frame_cryptor: None,
            reconnect_timeout: Duration::from_secs(60),
        }
    }
}

impl std::fmt::Debug for RoomOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoomOptions")
            .field("auto_subscribe", &self.auto_subscribe)
            .field("frame_cryptor", &self.frame_cryptor.is_some())
            .field("reconnect_timeout", &self.reconnect_timeout)
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
    /// The room is closed; no more events follow.
    Disconnected(DisconnectCause),
}

/// The stream of [`RoomEvent`]s.
#[derive(Debug)]
pub struct RoomEvents(mpsc::UnboundedReceiver<RoomEvent>);

impl RoomEvents {
    /// The next event; `None` after the room is gone.
    pub async fn recv(&mut self) -> Option<RoomEvent> {
        self.0.recv().await
    }
}

/// A connection to a LiveKit room.
///
/// ```no_run
/// # async fn example() -> Result<(), Box<dyn std::error::Error>> {
/// use livekit_str0m::{RemoteTrack, Room, RoomEvent, RoomOptions, VideoTrackOptions};
///
/// let (room, mut events) =
///     Room::connect("wss://sfu.example.org", "<jwt>", RoomOptions::default()).await?;
/// let track = room.publish_video(VideoTrackOptions::default()).await?;
/// // track.write(EncodedVideoFrame { .. }) for every encoded frame
/// while let Some(event) = events.recv().await {
///     if let RoomEvent::TrackSubscribed(RemoteTrack::Video(mut remote)) = event {
///         while let Some(frame) = remote.recv().await { /* decode */ }
///     }
/// }
/// room.disconnect().await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Room {
    commands: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    state: watch::Receiver<ConnectionState>,
    task: Option<JoinHandle<()>>,
}

static NEXT_CID: AtomicU64 = AtomicU64::new(1);

impl Room {
    /// Joins the room the token names and waits until media can flow.
    ///
    /// `url` is the LiveKit server (`wss://…`, `https://…` and the plain forms); the token is
    /// sent both as `access_token` and as a bearer header, and never logged.
    pub async fn connect(
        url: &str,
        token: &str,
        options: RoomOptions,
    ) -> Result<(Room, RoomEvents), ConnectError> {
        let connection = open_connection(url, token, &options).await?;
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connected);
        let shared = Arc::new(Shared { state: state_tx, local: Default::default() });
        let task = Task::new(
            url.to_owned(),
            token.to_owned(),
            options,
            commands_rx,
            commands_tx.downgrade(),
            events_tx,
            shared.clone(),
        );
        let (connected_tx, connected_rx) = oneshot::channel();
        let handle = tokio::spawn(task.run(connection, connected_tx));
        match connected_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let _ = handle.await;
                return Err(error);
            }
            Err(_) => return Err(ConnectError::Protocol("the connection task ended".into())),
        }
        let room = Room { commands: commands_tx, shared, state: state_rx, task: Some(handle) };
        Ok((room, RoomEvents(events_rx)))
    }

    /// Our participant sid and identity in the current session.
    pub fn local_participant(&self) -> (String, String) {
        self.shared.local.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The connection state now.
    pub fn connection_state(&self) -> ConnectionState {
        *self.state.borrow()
    }

    /// Publishes a video track and waits for the server to confirm it. Write frames into the
    /// returned track; it is announced again after a reconnect.
    pub async fn publish_video(
        &self,
        options: VideoTrackOptions,
    ) -> Result<LocalVideoTrack, PublishError> {
        let handle = self.publish(LocalTrackOptions::Video(options.clone())).await?;
        Ok(LocalVideoTrack { handle, options })
    }

    /// Publishes an Opus audio track and waits for the server to confirm it. Write one packet
    /// per 20 ms into the returned track, with its level (LiveKit names active speakers from
    /// it); it is announced again after a reconnect.
    pub async fn publish_audio(
        &self,
        options: AudioTrackOptions,
    ) -> Result<LocalAudioTrack, PublishError> {
        let handle = self.publish(LocalTrackOptions::Audio(options.clone())).await?;
        Ok(LocalAudioTrack { handle, options })
    }

    async fn publish(&self, options: LocalTrackOptions) -> Result<LocalTrackHandle, PublishError> {
        let cid = format!("TR_RS{:08}", NEXT_CID.fetch_add(1, Ordering::Relaxed));
        let shared = Arc::new(LocalTrackShared::default());
        let (reply, answer) = oneshot::channel();
        let command = Command::Publish { cid: cid.clone(), options, shared: shared.clone(), reply };
        self.commands.send(command).await.map_err(|_| PublishError::Disconnected)?;
        match answer.await {
            Ok(Ok(_sid)) => Ok(LocalTrackHandle { cid, commands: self.commands.clone(), shared }),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(PublishError::Disconnected),
        }
    }

    /// Subscribes to or unsubscribes from a remote track (with `auto_subscribe: false`).
    pub async fn set_subscribed(&self, track_sid: &str, subscribe: bool) {
        let _ = self
            .commands
            .send(Command::SetSubscribed { track_sid: track_sid.to_owned(), subscribe })
            .await;
    }

    /// Leaves the room: tells the server, closes the WebSocket, every socket and the task.
    /// Returns within a few seconds even when the server does not answer.
    pub async fn disconnect(mut self) {
        let (reply, done) = oneshot::channel();
        if self.commands.send(Command::Disconnect { reply }).await.is_ok() {
            let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, done).await;
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(DISCONNECT_TIMEOUT, &mut task).await.is_err()
        {
            tracing::warn!("connection task did not end in time; aborted");
            task.abort();
        }
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        // Without an await the task notices the closed command channel (once every track
        // handle is gone too) and leaves; abort makes sure sockets close now regardless.
        if let Some(task) = self.task.take() {
            let commands = self.commands.clone();
            let (reply, _) = oneshot::channel();
            if commands.try_send(Command::Disconnect { reply }).is_err() {
                task.abort();
            } else {
                tokio::spawn(async move {
                    if tokio::time::timeout(DISCONNECT_TIMEOUT, task).await.is_err() {
                        tracing::warn!("connection task did not end in time after drop");
                    }
                });
            }
        }
    }
}
