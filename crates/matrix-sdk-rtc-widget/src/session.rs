//! One page load: the page's WebSocket, a widget driver of its own, and the relay between them.
//!
//! A session ends when Element Call closes (after its hang-up), when the page goes away, when
//! the host stops, or when the driver stops. Whatever the end, delayed events Element Call
//! scheduled and did not send or cancel (its leave) are sent then: no ghost stays in the call.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use matrix_sdk::Room;
use matrix_sdk::event_handler::EventHandlerDropGuard;
use matrix_sdk::ruma::api::client::delayed_events::update_delayed_event::unstable::{
    Request as UpdateDelayedEvent, UpdateAction,
};
use matrix_sdk::ruma::events::AnySyncStateEvent;
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::widget::{WidgetDriver, WidgetSettings};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::Instrument as _;

use crate::capabilities::{Grant, PolicyProvider, RTC_TRANSPORTS};
use crate::host::{HostEvent, SessionEnd, Shared, report};
use crate::relay::{Output, Relay, WidgetAction};
use matrix_sdk_rtc::discover_transports;
use matrix_sdk_rtc::membership::Transport;

/// How long the driver may take to answer Element Call's last requests once it closed.
const CLOSE_GRACE: Duration = Duration::from_secs(3);
/// How long a message to the page may wait for the page to read (a frozen page ends its
/// session rather than the host's).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// State changes waiting to be forwarded.
const STATE_QUEUE: usize = 256;
/// How long sending one leftover delayed event may take.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);

/// What the host asks of the running session.
#[derive(Debug)]
pub(crate) enum Control {
    /// Ask Element Call to leave the call; the session ends when it closes.
    HangUp,
    /// End the session now.
    Stop,
}

pub(crate) async fn run<S>(
    socket: WebSocketStream<S>,
    shared: Arc<Shared>,
    permit: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let span = tracing::info_span!("widget_session", widget = %shared.widget_url.widget_id);
    async move {
        let (control_tx, control) = mpsc::channel(4);
        if let Ok(mut slot) = shared.control.lock() {
            *slot = Some(control_tx);
        }
        let (end, sent) = relay(socket, &shared, control).await;
        if let Ok(mut slot) = shared.control.lock() {
            *slot = None;
        }
        tracing::info!(?end, delayed_events_sent = sent, "the page's session ended");
        report(&shared.events, HostEvent::PageDisconnected { end, delayed_events_sent: sent });
        drop(permit);
    }
    .instrument(span)
    .await;
}

/// Relays until the session ends; then sends the leftover delayed events and closes the page.
async fn relay<S>(
    socket: WebSocketStream<S>,
    shared: &Shared,
    mut control: mpsc::Receiver<Control>,
) -> (SessionEnd, usize)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let widget_id = shared.widget_url.widget_id.clone();
    let settings =
        match WidgetSettings::new(widget_id.clone(), true, shared.widget_url.element_call.as_str())
        {
            Ok(settings) => settings,
            Err(error) => {
                tracing::error!(%error, "no widget settings");
                return (SessionEnd::DriverStopped, 0);
            }
        };
    let (driver, handle) = WidgetDriver::new(settings);
    let (granted_tx, granted) = watch::channel(None);
    let provider = PolicyProvider {
        policy: shared.policy.clone(),
        events: shared.events.clone(),
        granted: granted_tx,
    };
    let (mut state_changes, _state_guard) = state_changes(&shared.room);
    let room = shared.room.clone();
    let driver = tokio::spawn(
        async move {
            let _ = driver.run(room, provider).await;
        }
        .in_current_span(),
    );
    report(&shared.events, HostEvent::PageConnected);
    tracing::info!("a page opened the host; Element Call is loading");

    let (mut to_page, mut from_page) = socket.split();
    let mut relay = Relay::new(widget_id, shared.policy.allows(RTC_TRANSPORTS));
    let (answers_tx, mut answers) = mpsc::channel::<Output>(4);
    let mut closing: Option<tokio::time::Instant> = None;
    let end = 'session: loop {
        if closing.is_some() && relay.driver_idle() {
            break SessionEnd::Closed;
        }
        let outputs = tokio::select! {
            message = from_page.next() => match message {
                Some(Ok(Message::Text(text))) => match relay.page_message(&text) {
                    Ok(outputs) => outputs,
                    Err(refusal) => {
                        tracing::warn!(%refusal, "a message from the page was not relayed");
                        report(&shared.events, HostEvent::MessageRefused(refusal.to_string()));
                        continue;
                    }
                },
                Some(Ok(Message::Close(_))) | None => break SessionEnd::PageGone,
                Some(Err(error)) => {
                    tracing::info!(%error, "the page's WebSocket failed");
                    break SessionEnd::PageGone;
                }
                Some(Ok(_)) => continue,
            },
            message = handle.recv() => match message {
                Some(text) => vec![relay.driver_message(text)],
                None => break SessionEnd::DriverStopped,
            },
            Some(answer) = answers.recv() => vec![answer],
            Some(event) = state_changes.recv() => {
                match state_update(&mut relay, &granted, event, shared.room.room_id().as_str()) {
                    Some(output) => vec![output],
                    None => continue,
                }
            }
            command = control.recv() => match command {
                Some(Control::HangUp) => vec![relay.hang_up()],
                Some(Control::Stop) | None => break SessionEnd::Stopped,
            },
            () = sleep_until(closing) => {
                tracing::warn!("the driver did not answer Element Call's last requests in time");
                break SessionEnd::Closed;
            }
        };
        for output in outputs {
            match output {
                Output::ToPage(text) => {
                    trace_message("to the page", &text);
                    let sent =
                        tokio::time::timeout(SEND_TIMEOUT, to_page.send(Message::text(text)));
                    if !matches!(sent.await, Ok(Ok(()))) {
                        tracing::info!("the page stopped reading");
                        break 'session SessionEnd::PageGone;
                    }
                }
                Output::ToDriver(text) => {
                    trace_message("to the driver", &text);
                    if !handle.send(text).await {
                        break 'session SessionEnd::DriverStopped;
                    }
                }
                Output::AskTransports(request) => {
                    let client = shared.room.client();
                    let answers = answers_tx.clone();
                    tokio::spawn(
                        async move {
                            let response = rtc_transports(&client).await;
                            let _ = answers.send(Relay::answer(&request, response)).await;
                        }
                        .in_current_span(),
                    );
                }
                Output::Event(action) => {
                    if action == WidgetAction::Closed {
                        closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                    }
                    report(&shared.events, action.into());
                }
            }
        }
    };
    driver.abort();

    let sent = send_delayed_events(shared, relay.scheduled_delayed_events()).await;
    let (code, reason) = match end {
        SessionEnd::Closed => (CloseCode::Normal, "You left the call."),
        SessionEnd::Stopped => (CloseCode::Away, "The program hosting the call stopped."),
        SessionEnd::DriverStopped => (CloseCode::Error, "The host could not go on with the call."),
        SessionEnd::PageGone => return (end, sent),
    };
    let frame = CloseFrame { code, reason: reason.into() };
    let _ = tokio::time::timeout(Duration::from_secs(1), to_page.send(Message::Close(Some(frame))))
        .await;
    (end, sent)
}

/// State events of the room as the client's sync brings them, timeline included (bounded: a
/// burst beyond it is dropped, with a debug line).
///
/// matrix-sdk 0.18's driver forwards only the state its sync reports apart from the timeline.
/// It asks the homeserver for `use_state_after` (MSC4222) under the stable name, which Synapse
/// (1.163) does not know yet: Synapse then reports state changes only in the timeline, the
/// driver forwards none, and Element Call never learns who joined the call. The host forwards
/// them itself, as `update_state`; the same state twice is harmless.
fn state_changes(room: &Room) -> (mpsc::Receiver<Raw<AnySyncStateEvent>>, EventHandlerDropGuard) {
    let (tx, rx) = mpsc::channel(STATE_QUEUE);
    let handle = room.add_event_handler(move |event: Raw<AnySyncStateEvent>| {
        if tx.try_send(event).is_err() {
            tracing::debug!("a state change was not forwarded to the widget: too many at once");
        }
        async {}
    });
    (rx, room.client().event_handler_drop_guard(handle))
}

/// The host's `update_state` for `event` if the widget may read it (once it has its
/// capabilities).
fn state_update(
    relay: &mut Relay,
    granted: &watch::Receiver<Option<Grant>>,
    event: Raw<AnySyncStateEvent>,
    room_id: &str,
) -> Option<Output> {
    let mut value: serde_json::Value = event.deserialize_as_unchecked().ok()?;
    let kind = value.get("type")?.as_str()?;
    let key = value.get("state_key")?.as_str()?;
    if !granted.borrow().as_ref().is_some_and(|grant| grant.reads_state(kind, key)) {
        return None;
    }
    value["room_id"] = room_id.into();
    Some(relay.update_state(vec![value]))
}

/// The answer to `get_rtc_transports` (MSC4515): the homeserver's transports as it advertises
/// them (`rtc/transports`, then `.well-known`), or an error (Element Call then uses its own
/// configuration).
async fn rtc_transports(client: &matrix_sdk::Client) -> serde_json::Value {
    let discovered =
        tokio::time::timeout(Duration::from_secs(10), discover_transports(client, None)).await;
    match discovered {
        Ok(Ok(found)) => {
            let transports: Vec<serde_json::Value> =
                found.transports.iter().map(Transport::to_json).collect();
            tracing::debug!(count = transports.len(), "RTC transports for Element Call");
            serde_json::json!({ "rtc_transports": transports })
        }
        Ok(Err(error)) => {
            tracing::info!(%error, "no RTC transports for Element Call");
            serde_json::json!({ "error": { "message": error.to_string() } })
        }
        Err(_) => {
            serde_json::json!({ "error": { "message": "discovering the transports timed out" } })
        }
    }
}

/// Logs a message's direction and action (never its content: it may hold keys or tokens).
fn trace_message(to: &str, text: &str) {
    if !tracing::enabled!(tracing::Level::DEBUG) {
        return;
    }
    let message: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
    tracing::debug!(
        api = message["api"].as_str().unwrap_or("?"),
        action = message["action"].as_str().unwrap_or("?"),
        answer = message.get("response").is_some(),
        error = message["response"].get("error").is_some(),
        "widget message {to}"
    );
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Sends Element Call's delayed events now (its leave, when it is gone without leaving); how
/// many the homeserver took.
async fn send_delayed_events<'a>(shared: &Shared, ids: impl Iterator<Item = &'a str>) -> usize {
    let client = shared.room.client();
    let sends = ids.map(|id| {
        let client = client.clone();
        async move {
            let request = UpdateDelayedEvent::new(id.to_owned(), UpdateAction::Send);
            match tokio::time::timeout(LEAVE_TIMEOUT, client.send(request)).await {
                Ok(Ok(_)) => true,
                Ok(Err(error)) => {
                    // Gone already: the homeserver sent it, or Element Call cancelled it.
                    tracing::info!(%error, "Element Call's delayed event could not be sent");
                    false
                }
                Err(_) => {
                    tracing::warn!("sending Element Call's delayed event timed out");
                    false
                }
            }
        }
    });
    let sent = futures_util::future::join_all(sends).await.into_iter().filter(|s| *s).count();
    if sent > 0 {
        tracing::info!(sent, "sent the delayed events Element Call left behind (its leave)");
    }
    sent
}
