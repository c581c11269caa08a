//! The public face: connect to a room, publish tracks, hear what happens.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::api::{Command, ConnectionState, RoomOptions, Shared};
use crate::connection::{Connection, ConnectionParts};
use crate::error::{ConnectError, PublishError};
use crate::events::{EVENT_QUEUE_CAPACITY, EventSender, RoomEvents};
use crate::track::{
    AudioTrackOptions, LocalAudioTrack, LocalTrackHandle, LocalTrackOptions, LocalTrackShared,
    LocalVideoTrack, TrackRequest, VideoTrackOptions,
};

/// Room commands queued toward the connection task.
const COMMAND_QUEUE: usize = 64;
/// Track requests (frames included) queued toward the connection task before writers see
/// `Busy`.
const TRACK_REQUEST_QUEUE: usize = 64;
/// How long `disconnect` waits for the connection task.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(3);

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
    track_requests: mpsc::Sender<TrackRequest>,
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
        let (commands_tx, commands_rx) = mpsc::channel(COMMAND_QUEUE);
        let (requests_tx, requests_rx) = mpsc::channel(TRACK_REQUEST_QUEUE);
        let (events, events_rx) = EventSender::new(EVENT_QUEUE_CAPACITY);
        let (state_tx, state_rx) = watch::channel(ConnectionState::Connected);
        let shared = Arc::new(Shared { state: state_tx, local: Default::default() });
        let (connected_tx, connected_rx) = oneshot::channel();
        let parts = ConnectionParts {
            token: token.to_owned(),
            options,
            events,
            shared: shared.clone(),
            track_requests: requests_tx.downgrade(),
            connected: connected_tx,
        };
        let core = Connection::new(parts, Instant::now());
        let handle = tokio::spawn(crate::task::run(url.to_owned(), core, commands_rx, requests_rx));
        match connected_rx.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                let _ = handle.await;
                return Err(error);
            }
            Err(_) => return Err(ConnectError::Protocol("the connection task ended".into())),
        }
        let room = Room {
            commands: commands_tx,
            track_requests: requests_tx,
            shared,
            state: state_rx,
            task: Some(handle),
        };
        Ok((room, events_rx))
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
            Ok(Ok(_sid)) => {
                Ok(LocalTrackHandle { cid, requests: self.track_requests.clone(), shared })
            }
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
        // Without an await: ask the task to leave, and abort it when it cannot even be asked.
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
