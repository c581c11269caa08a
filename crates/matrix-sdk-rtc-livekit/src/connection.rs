//! One connection to the call's media: our own LiveKit room (publishing, and subscribed to
//! everybody on our SFU), and a subscribe-only room on every other SFU that members publish on
//! (Element Call's `multi_sfu`).

use std::collections::HashMap;
use std::time::Duration;

use livekit_str0m::{DisconnectCause, RemoteTrack, Room, RoomEvent, RoomEvents, RoomOptions};
use matrix_sdk::Client;
use matrix_sdk_rtc::backoff::Backoff;
use matrix_sdk_rtc::media_keys::MediaKeyExchange;
use matrix_sdk_rtc::{CallState, DelayedLeave, DelegationFuture, LiveKitConnection, RtcError};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument as _;

use crate::credentials::{self, CredentialSource, Credentials, TokenRequest};
use crate::encryption::CallEncryption;
use crate::endpoint;
use crate::error::Error;
use crate::events::{CallEvent, SfuInfo};
use crate::publisher::{Publishers, stopped};
use crate::remote::{RemoteAudio, TrackOrigin, member_of, spawn_decoder};

/// How long tearing a connection down may take in all.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// First wait before reconnecting to another member's SFU; doubles up to the maximum.
const REMOTE_RETRY: Duration = Duration::from_secs(1);
const REMOTE_RETRY_MAX: Duration = Duration::from_secs(30);

/// Sends events to the application without ever waiting for it.
#[derive(Debug, Clone)]
pub(crate) struct EventSink(pub(crate) mpsc::Sender<CallEvent>);

impl EventSink {
    pub(crate) fn send(&self, event: CallEvent) {
        match self.0.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
            Err(mpsc::error::TrySendError::Full(event)) => {
                tracing::warn!(?event, "the application does not read call events; event dropped");
            }
        }
    }

    /// Whether anybody listens.
    pub(crate) fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// What a connection needs from its connector.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    pub(crate) client: Client,
    pub(crate) room_id: String,
    /// Our transport (remote SFUs are every other one).
    pub(crate) service_url: String,
    pub(crate) member_id: Option<String>,
    pub(crate) call: watch::Receiver<CallState>,
    pub(crate) events: EventSink,
    pub(crate) room_options: RoomOptions,
    pub(crate) allow_insecure: bool,
    pub(crate) subscribe_to_other_sfus: bool,
    /// The media key exchange, when the call's media is encrypted.
    pub(crate) keys: Option<Arc<MediaKeyExchange>>,
}

/// A LiveKit room connection and what it shows of itself.
pub(crate) fn sfu_info(credentials: &Credentials, publishing: bool) -> SfuInfo {
    let claims = credentials.token.claims().unwrap_or_default();
    SfuInfo {
        livekit_url: endpoint::display(&credentials.livekit_url),
        identity: claims.identity.unwrap_or_default(),
        room: claims.room.unwrap_or_default(),
        publishing,
    }
}

/// Connects `credentials`' room with `options`.
pub(crate) async fn connect_room(
    credentials: &Credentials,
    options: RoomOptions,
) -> Result<(Room, RoomEvents), Error> {
    Room::connect(credentials.livekit_url.as_str(), credentials.token.expose(), options)
        .await
        .map_err(|source| Error::LiveKit {
            url: endpoint::display(&credentials.livekit_url),
            source,
        })
}

/// The media connection of one stay in the call; the driver owns it.
#[derive(Debug)]
pub struct CallConnection {
    room: Option<Room>,
    publishers: Publishers,
    router: Option<JoinHandle<()>>,
    remotes: Option<(watch::Sender<bool>, JoinHandle<()>)>,
    /// The reason our own room ended by itself.
    lost: Option<oneshot::Receiver<String>>,
    /// Media keys, for as long as the connection lives.
    encryption: Option<CallEncryption>,
    /// Where our credentials came from, to hand our delayed leave to the same service.
    source: CredentialSource,
    context: Context,
}

impl CallConnection {
    pub(crate) fn start(
        room: Room,
        events: RoomEvents,
        publishers: Publishers,
        livekit_url: String,
        (source, context): (CredentialSource, Context),
        encryption: Option<CallEncryption>,
    ) -> Self {
        let (lost_tx, lost) = oneshot::channel();
        let span = tracing::info_span!("sfu", url = %livekit_url, own = true);
        let sink = context_call_sink(&context);
        let router = tokio::spawn(
            async move {
                let cause = route(events, livekit_url, sink).await;
                if let Some(cause) =
                    cause.filter(|c| !matches!(c, DisconnectCause::ClientInitiated))
                {
                    let _ = lost_tx.send(cause.to_string());
                }
            }
            .instrument(span),
        );
        let remotes = context.subscribe_to_other_sfus.then(|| {
            let (stop, stopped) = watch::channel(false);
            let task = tokio::spawn(follow_remote_sfus(context.clone(), stopped));
            (stop, task)
        });
        Self {
            room: Some(room),
            publishers,
            router: Some(router),
            remotes,
            lost: Some(lost),
            encryption,
            source,
            context,
        }
    }

    /// Stops publishing, leaves every LiveKit room, and ends every task, within a few seconds.
    pub async fn close(mut self) {
        let teardown = async {
            std::mem::take(&mut self.publishers).stop().await;
            let remotes = async {
                if let Some((stop, task)) = self.remotes.take() {
                    let _ = stop.send(true);
                    let _ = task.await;
                }
            };
            let own = async {
                if let Some(room) = self.room.take() {
                    room.disconnect().await;
                }
            };
            tokio::join!(remotes, own);
            // The key exchange ends with the connection.
            self.encryption = None;
        };
        if tokio::time::timeout(DISCONNECT_TIMEOUT, teardown).await.is_err() {
            tracing::warn!("leaving LiveKit did not finish in time; what is left is dropped");
        }
        if let Some(router) = self.router.take() {
            // The room's events end with the room; a router still waiting is stopped.
            if tokio::time::timeout(Duration::from_millis(500), router).await.is_err() {
                tracing::debug!("event router aborted");
            }
        }
    }
}

impl Drop for CallConnection {
    fn drop(&mut self) {
        if let Some((stop, _)) = &self.remotes {
            let _ = stop.send(true);
        }
        if let Some(router) = &self.router {
            router.abort();
        }
    }
}

impl LiveKitConnection for CallConnection {
    async fn disconnect(self) -> Result<(), RtcError> {
        self.close().await;
        Ok(())
    }

    async fn closed(&mut self) -> RtcError {
        let reason = match self.lost.as_mut() {
            Some(lost) => lost.await.unwrap_or_else(|_| "the event router stopped".into()),
            None => std::future::pending().await,
        };
        self.lost = None;
        RtcError::connector(format!("the LiveKit connection ended: {reason}"))
    }

    fn delegate_delayed_leave(&self, delayed_leave: DelayedLeave) -> DelegationFuture {
        let source = self.source.clone();
        let context = self.context.clone();
        Box::pin(async move {
            let request = TokenRequest {
                client: &context.client,
                room_id: &context.room_id,
                service_url: &context.service_url,
                member_id: context.member_id.as_deref(),
                allow_insecure: context.allow_insecure,
            };
            credentials::delegate_delayed_leave(&source, request, &delayed_leave)
                .await
                .map_err(RtcError::connector)
        })
    }
}

/// The parts of the context the router needs.
#[derive(Clone)]
struct RouteSink {
    call: watch::Receiver<CallState>,
    events: EventSink,
    keys: Option<Arc<MediaKeyExchange>>,
}

fn context_call_sink(context: &Context) -> RouteSink {
    RouteSink {
        call: context.call.clone(),
        events: context.events.clone(),
        keys: context.keys.clone(),
    }
}

/// Turns a room's events into [`CallEvent`]s until it is closed; the cause.
async fn route(
    mut events: RoomEvents,
    livekit_url: String,
    RouteSink { call, events: sink, keys }: RouteSink,
) -> Option<DisconnectCause> {
    while let Some(event) = events.recv().await {
        match event {
            RoomEvent::ParticipantConnected(participant) => {
                let member = member_of(&call.borrow(), &participant.identity).map(Box::new);
                tracing::debug!(identity = %participant.identity, member = member.is_some(), "participant connected");
                if let Some(keys) = &keys {
                    // A (re)connected member may have lost our key with its connection.
                    keys.participant_connected(&participant.identity);
                }
                sink.send(CallEvent::ParticipantConnected {
                    identity: participant.identity,
                    member,
                });
            }
            RoomEvent::ParticipantDisconnected(participant) => {
                sink.send(CallEvent::ParticipantDisconnected { identity: participant.identity });
            }
            RoomEvent::TrackSubscribed(track) => {
                if sink.is_closed() {
                    // Nobody would see the pictures or hear the sound: do not decode them.
                    continue;
                }
                let origin = TrackOrigin {
                    info: track.info().clone(),
                    livekit_url: livekit_url.clone(),
                    call: call.clone(),
                };
                match track {
                    RemoteTrack::Video(track) => {
                        sink.send(CallEvent::VideoSubscribed(spawn_decoder(track, origin)));
                    }
                    RemoteTrack::Audio(track) => {
                        sink.send(CallEvent::AudioSubscribed(RemoteAudio::new(track, origin)));
                    }
                    other => {
                        tracing::debug!(info = ?other.info(), "a track of a kind we do not receive")
                    }
                }
            }
            RoomEvent::TrackUnsubscribed { track_sid } => {
                sink.send(CallEvent::TrackUnsubscribed { track_sid });
            }
            RoomEvent::Disconnected(cause) => {
                sink.send(CallEvent::Disconnected {
                    livekit_url: livekit_url.clone(),
                    reason: cause.to_string(),
                });
                return Some(cause);
            }
            RoomEvent::ConnectionStateChanged(state) => {
                tracing::info!(?state, "LiveKit connection state");
            }
            RoomEvent::Lagged { missed } => {
                // This loop only hands events on; it falls behind only when the machine does.
                tracing::warn!(missed, "LiveKit room events dropped while this connection lagged");
            }
            _ => {}
        }
    }
    None
}

/// Keeps a subscribe-only connection to every SFU that members of the call publish on, other
/// than ours, until told to stop.
async fn follow_remote_sfus(context: Context, mut stop: watch::Receiver<bool>) {
    let own = normalise(&context.service_url);
    let mut call = context.call.clone();
    let mut running: HashMap<String, (watch::Sender<bool>, JoinHandle<()>)> = HashMap::new();
    loop {
        let wanted: Vec<String> = call
            .borrow_and_update()
            .service_urls
            .iter()
            .filter(|url| normalise(url) != own)
            .cloned()
            .collect();
        running.retain(|url, (stop, _)| {
            let keep = wanted.contains(url);
            if !keep {
                tracing::info!(service = %endpoint::display_str(url), "no member publishes there any more: leaving that SFU");
                let _ = stop.send(true);
            }
            keep
        });
        for url in wanted {
            if let std::collections::hash_map::Entry::Vacant(entry) = running.entry(url) {
                let url = entry.key().clone();
                tracing::info!(service = %endpoint::display_str(&url), "a member publishes on another SFU: subscribing there");
                let (stop_tx, stop_rx) = watch::channel(false);
                let span =
                    tracing::info_span!("remote_sfu", service = %endpoint::display_str(&url));
                let task = tokio::spawn(remote_sfu(context.clone(), url, stop_rx).instrument(span));
                entry.insert((stop_tx, task));
            }
        }
        tokio::select! {
            changed = call.changed() => if changed.is_err() { break },
            () = stopped(&mut stop) => break,
        }
    }
    let tasks: Vec<JoinHandle<()>> = running
        .into_values()
        .map(|(stop, task)| {
            let _ = stop.send(true);
            task
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
}

/// One subscribe-only connection, reconnected (with fresh credentials) until told to stop.
async fn remote_sfu(context: Context, service_url: String, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff::new(REMOTE_RETRY, REMOTE_RETRY_MAX);
    loop {
        let attempt = async {
            let request = TokenRequest {
                client: &context.client,
                room_id: &context.room_id,
                service_url: &service_url,
                member_id: context.member_id.as_deref(),
                allow_insecure: context.allow_insecure,
            };
            let credentials = credentials::fetch_for_subscribing(request).await?;
            let info = sfu_info(&credentials, false);
            context.events.send(CallEvent::Connecting(info.clone()));
            let (room, events) = connect_room(&credentials, context.room_options.clone()).await?;
            Ok::<_, Error>((room, events, info))
        };
        let result = tokio::select! {
            result = attempt => result,
            () = stopped(&mut stop) => return,
        };
        let delay = match result {
            Ok((room, events, info)) => {
                tracing::info!(livekit = %info.livekit_url, room = %info.room, "subscribed on another member's SFU");
                backoff.reset();
                context.events.send(CallEvent::Connected(info.clone()));
                let routed = route(events, info.livekit_url.clone(), context_call_sink(&context));
                let cause = tokio::select! {
                    cause = routed => cause,
                    () = stopped(&mut stop) => {
                        room.disconnect().await;
                        return;
                    }
                };
                tracing::warn!(cause = ?cause.map(|c| c.to_string()), "the subscribe-only connection ended");
                drop(room);
                backoff.next_delay()
            }
            Err(error) => {
                let delay = backoff.next_delay();
                tracing::warn!(%error, retry_in = ?delay, "cannot subscribe on another member's SFU");
                delay
            }
        };
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = stopped(&mut stop) => return,
        }
    }
}

/// Service URLs compare as strings, as Element Call compares them, but without a trailing slash.
fn normalise(url: &str) -> &str {
    url.trim().trim_end_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_urls_compare_without_trailing_slashes() {
        assert_eq!(normalise("https://a.example/jwt/"), normalise("https://a.example/jwt"));
        assert_ne!(normalise("https://a.example/jwt"), normalise("https://b.example/jwt"));
    }

    #[tokio::test]
    async fn a_full_event_queue_drops_events_instead_of_waiting() {
        let (tx, mut rx) = mpsc::channel(1);
        let sink = EventSink(tx);
        sink.send(CallEvent::ParticipantDisconnected { identity: "a".into() });
        sink.send(CallEvent::ParticipantDisconnected { identity: "b".into() });
        assert!(
            matches!(rx.recv().await, Some(CallEvent::ParticipantDisconnected { identity }) if identity == "a")
        );
        assert!(rx.try_recv().is_err(), "the second event was dropped");
        drop(rx);
        assert!(sink.is_closed());
        sink.send(CallEvent::ParticipantDisconnected { identity: "c".into() });
    }
}
