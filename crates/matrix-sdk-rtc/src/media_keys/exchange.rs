//! The shell around [`MediaKeysCore`]: it follows the call's memberships, receives
//! `io.element.call.encryption_keys` to-device messages, sends ours Olm-encrypted, and hands
//! keys to a [`MediaKeySink`] (the LiveKit frame cryptor's key provider).

use std::sync::Arc;
use std::time::Instant;

use matrix_sdk::deserialized_responses::EncryptionInfo;
use matrix_sdk::event_handler::EventHandlerHandle;
use matrix_sdk::ruma::events::{AnyToDeviceEvent, AnyToDeviceEventContent};
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{OwnedDeviceId, OwnedUserId};
use matrix_sdk::{Client, Room};
use matrix_sdk_base::crypto::CollectStrategy;
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use super::content::{EVENT_TYPE, MediaKey};
use super::core::{Device, KeyOutput, MediaKeysCore, OwnMember, SendOutcome};
use crate::call_session::CallState;
use crate::membership::Membership;

/// Where media keys go: ours (we encrypt with the latest one set for our identity) and every
/// member's (to decrypt its frames). For LiveKit, a key provider's `set_key`.
pub trait MediaKeySink: Send + Sync + 'static {
    /// Sets `key` for the LiveKit participant `identity` at `index`.
    fn set_key(&self, identity: &str, index: u8, key: &MediaKey);
}

/// A received key message.
struct Inbound {
    sender: String,
    sender_device: Option<String>,
    encrypted: bool,
    content: Value,
}

enum Input {
    Key(Inbound),
    ParticipantConnected(String),
}

/// Runs the media key exchange of one call for as long as it lives.
///
/// ```no_run
/// # async fn example(room: matrix_sdk::Room, observer: matrix_sdk_rtc::RoomCallObserver,
/// #     sink: std::sync::Arc<dyn matrix_sdk_rtc::media_keys::MediaKeySink>) {
/// use matrix_sdk_rtc::media_keys::{MediaKeyExchange, OwnMember};
///
/// let own = OwnMember {
///     user_id: "@bot:example.org".into(),
///     device_id: "BOTDEVICE".into(),
///     member_id: "@bot:example.org:BOTDEVICE".into(),
///     livekit_identity: "@bot:example.org:BOTDEVICE".into(),
/// };
/// let exchange = MediaKeyExchange::start(&room, own, observer.subscribe(), sink);
/// // Whenever a LiveKit participant (re)connects:
/// exchange.participant_connected("@alice:example.org:ALICEDEVICE");
/// # }
/// ```
#[derive(Debug)]
pub struct MediaKeyExchange {
    inputs: mpsc::UnboundedSender<Input>,
    task: JoinHandle<()>,
    handler: EventHandlerHandle,
    client: Client,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key(k) => write!(f, "Key(from {})", k.sender),
            Self::ParticipantConnected(id) => write!(f, "ParticipantConnected({id})"),
        }
    }
}

impl MediaKeyExchange {
    /// Starts exchanging keys as `own` in `room`'s call, following `call` (the room's call
    /// state, from a [`RoomCallObserver`](crate::RoomCallObserver)).
    pub fn start(
        room: &Room,
        own: OwnMember,
        call: watch::Receiver<CallState>,
        sink: Arc<dyn MediaKeySink>,
    ) -> Self {
        Self::start_with_resend(room, own, call, sink, None)
    }

    /// [`start`](Self::start), also sending our key to every member every `resend` interval.
    pub fn start_with_resend(
        room: &Room,
        own: OwnMember,
        call: watch::Receiver<CallState>,
        sink: Arc<dyn MediaKeySink>,
        resend: Option<std::time::Duration>,
    ) -> Self {
        let client = room.client();
        let (inputs, received) = mpsc::unbounded_channel();
        let to_task = inputs.clone();
        let handler = client.add_event_handler(
            move |event: Raw<AnyToDeviceEvent>, encryption: Option<EncryptionInfo>| {
                let to_task = to_task.clone();
                async move {
                    let Ok(event) = event.deserialize_as::<Value>() else { return };
                    if event.get("type").and_then(Value::as_str) != Some(EVENT_TYPE) {
                        return;
                    }
                    let inbound = Inbound {
                        sender: event
                            .get("sender")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                        sender_device: encryption
                            .as_ref()
                            .and_then(|e| e.sender_device.as_ref())
                            .map(|d| d.to_string()),
                        encrypted: encryption.is_some(),
                        content: event.get("content").cloned().unwrap_or(Value::Null),
                    };
                    let _ = to_task.send(Input::Key(inbound));
                }
            },
        );
        let span = info_span!("media_keys", room = %room.room_id());
        let core = MediaKeysCore::new(own, room.room_id().as_str()).with_resend_interval(resend);
        let task = tokio::spawn(run(client.clone(), core, call, received, sink).instrument(span));
        Self { inputs, task, handler, client }
    }

    /// A LiveKit participant (re)connected: if it is a member, it gets our key again.
    pub fn participant_connected(&self, identity: &str) {
        let _ = self.inputs.send(Input::ParticipantConnected(identity.to_owned()));
    }
}

impl Drop for MediaKeyExchange {
    fn drop(&mut self) {
        self.task.abort();
        self.client.remove_event_handler(self.handler.clone());
    }
}

fn memberships(state: &CallState) -> Vec<Membership> {
    state.members.iter().map(|m| m.membership.clone()).collect()
}

async fn run(
    client: Client,
    mut core: MediaKeysCore,
    mut call: watch::Receiver<CallState>,
    mut inputs: mpsc::UnboundedReceiver<Input>,
    sink: Arc<dyn MediaKeySink>,
) {
    core.members_changed(Instant::now(), &memberships(&call.borrow_and_update()));
    loop {
        while let Some(output) = core.poll_output() {
            match output {
                KeyOutput::SetKey { identity, index, key } => sink.set_key(&identity, index, &key),
                KeyOutput::Send { devices, index, content } => {
                    let outcome = send(&client, &devices, index, content).await;
                    core.key_sent(Instant::now(), index, outcome);
                }
            }
        }
        let timeout = core.next_timeout();
        tokio::select! {
            changed = call.changed() => {
                if changed.is_err() {
                    debug!("the call is no longer observed; the key exchange ends");
                    return;
                }
                core.members_changed(Instant::now(), &memberships(&call.borrow_and_update()));
            }
            input = inputs.recv() => match input {
                None => return,
                Some(Input::Key(key)) => {
                    let result = core.key_received(
                        Instant::now(),
                        &key.sender,
                        key.sender_device.as_deref(),
                        key.encrypted,
                        &key.content,
                    );
                    if let Err(reason) = result {
                        debug!(sender = %key.sender, %reason, "a media key message was ignored");
                    }
                }
                Some(Input::ParticipantConnected(identity)) => core.participant_connected(&identity),
            },
            () = sleep_until(timeout) => core.handle_timeout(Instant::now()),
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Sends our key, Olm-encrypted, to each device we know keys for.
async fn send(client: &Client, devices: &[Device], index: u8, content: Value) -> SendOutcome {
    let encryption = client.encryption();
    let mut targets = Vec::new();
    for device in devices {
        let (Ok(user_id), device_id) = (
            OwnedUserId::try_from(device.user_id.as_str()),
            OwnedDeviceId::from(device.device_id.as_str()),
        ) else {
            continue;
        };
        match encryption.get_device(&user_id, &device_id).await {
            Ok(Some(found)) => targets.push(found),
            Ok(None) => {
                debug!(user = %user_id, device = %device_id, "no keys for this device; it gets no media key")
            }
            Err(error) => {
                warn!(%error, "the crypto store failed; a media key is not sent");
                return SendOutcome::Failed;
            }
        }
    }
    if targets.is_empty() {
        return SendOutcome::Sent;
    }
    let Ok(raw) = Raw::<AnyToDeviceEventContent>::from_json_string(content.to_string()) else {
        warn!(index, "a media key message did not serialise; it is not sent");
        return SendOutcome::Failed;
    };
    let count = targets.len();
    match encryption
        .encrypt_and_send_raw_to_device(
            targets.iter().collect(),
            EVENT_TYPE,
            raw,
            CollectStrategy::AllDevices,
        )
        .await
    {
        Ok(failed) if failed.is_empty() => {
            info!(index, devices = count, "media key sent");
            SendOutcome::Sent
        }
        Ok(failed) if failed.len() < count => {
            warn!(
                index,
                failed = failed.len(),
                devices = count,
                "media key not sent to every device"
            );
            SendOutcome::Sent
        }
        Ok(_) => {
            warn!(index, devices = count, "media key sent to no device");
            SendOutcome::Failed
        }
        Err(error) => {
            warn!(index, %error, "media key not sent");
            SendOutcome::Failed
        }
    }
}
