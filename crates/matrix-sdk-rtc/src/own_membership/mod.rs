//! Our own membership of a room's call: join, a dead-man's switch that leaves no ghost, refresh,
//! and leave.
//!
//! [`OwnMembership::join`] sends the membership state event as Element Call does, with a delayed
//! `{}` leave (MSC4140) that the homeserver sends by itself unless we restart its timer every few
//! seconds. If the process crashes, is killed, or loses the network, the leave reaches the room
//! within the delay (10 s by default). On start it clears a membership and delayed leaves left by
//! an earlier run of the same device.
//!
//! The lifecycle is a sans-IO state machine ([`core::OwnMembershipCore`]); this module is the
//! small tokio task that executes its requests on a [`matrix_sdk::Room`].

pub mod core;

use std::time::{Duration, Instant};

use matrix_sdk::config::RequestConfig;
use matrix_sdk::ruma::api::client::delayed_events::{
    DelayParameters, delayed_state_event, update_delayed_event,
};
use matrix_sdk::ruma::api::client::state::{get_state_event_for_key, send_state_event};
use matrix_sdk::ruma::events::{AnyStateEventContent, StateEventType};
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::{HttpError, Room};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;
use url::Url;

pub use self::core::{MemberIdentity, MembershipStatus, MembershipTimings, SendDialect};
use self::core::{Outcome, OwnMembershipCore, Request};
use crate::clock::unix_ms;
use crate::error::RtcError;
use crate::membership::{
    CALL_MEMBER_EVENT_TYPE, MAX_STICKY_DURATION_MS, RTC_MEMBER_EVENT_TYPE, session_state_key,
};

/// How to join.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct JoinOptions {
    /// The authorization service we publish through (advertised as our transport).
    pub service_url: String,
    /// Timing of the lifecycle.
    pub timings: MembershipTimings,
    /// Send a sticky `org.matrix.msc4143.rtc.member` membership instead of the per-device state
    /// event (opt-in; see [`SendDialect::Sticky`]).
    pub sticky: bool,
    /// The member id of a sticky membership (a fresh UUID when `None`). A LiveKit token from
    /// `/get_token` is bound to it, so whoever asks for one needs it before joining.
    pub member_id: Option<String>,
}

impl JoinOptions {
    /// Defaults for publishing through `service_url`: a state membership, default timings.
    pub fn new(service_url: impl Into<String>) -> Self {
        Self {
            service_url: service_url.into(),
            timings: MembershipTimings::default(),
            sticky: false,
            member_id: None,
        }
    }
}

/// Our scheduled delayed leave (MSC4140): the id that restarts or sends it, and its delay.
///
/// The delay id is a capability (whoever has it can send our leave without a token), so
/// `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct DelayedLeave {
    delay_id: String,
    delay: Duration,
}

impl DelayedLeave {
    /// A delayed leave `delay_id` of `delay`.
    pub fn new(delay_id: impl Into<String>, delay: Duration) -> Self {
        Self { delay_id: delay_id.into(), delay }
    }

    /// The delay id. Never log it.
    pub fn delay_id(&self) -> &str {
        &self.delay_id
    }

    /// The delay.
    pub fn delay(&self) -> Duration {
        self.delay
    }
}

impl std::fmt::Debug for DelayedLeave {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DelayedLeave")
            .field("delay_id", &"[redacted]")
            .field("delay", &self.delay)
            .finish()
    }
}

/// Where our membership lives and what leaving writes there.
#[derive(Debug, Clone)]
struct Target {
    state_key: String,
    sticky: bool,
    leave: Value,
}

#[derive(Debug)]
enum Control {
    Leave,
    Vanished,
}

/// Our membership of a room's call, kept alive by a background task until [`Self::leave`] (or
/// drop, which leaves in the background).
#[derive(Debug)]
pub struct OwnMembership {
    control: mpsc::UnboundedSender<Control>,
    status: watch::Receiver<MembershipStatus>,
    delayed_leave: watch::Receiver<Option<DelayedLeave>>,
    task: Option<tokio::task::JoinHandle<()>>,
    state_key: String,
    member_id: Option<String>,
    leave_timeout: Duration,
}

impl OwnMembership {
    /// Joins the call of `room`, advertising `service_url` (our authorization service) as our
    /// transport. Returns once the join has started; watch [`Self::status`] for progress.
    pub async fn join(
        room: &Room,
        service_url: impl Into<String>,
        timings: MembershipTimings,
    ) -> Result<Self, RtcError> {
        let mut options = JoinOptions::new(service_url);
        options.timings = timings;
        Self::join_with(room, options).await
    }

    /// Joins the call of `room` as `options` say.
    pub async fn join_with(room: &Room, options: JoinOptions) -> Result<Self, RtcError> {
        let JoinOptions { service_url, timings, sticky, member_id } = options;
        let client = room.client();
        let user_id = client.user_id().ok_or(RtcError::NotLoggedIn)?.to_string();
        let device_id = client.device_id().ok_or(RtcError::NotLoggedIn)?.to_string();
        let room_version = room.version().map(|v| v.to_string()).unwrap_or_default();
        let state_key = session_state_key(&user_id, &device_id, &room_version);
        let delayed_events = supports_delayed_events(room).await;
        let dialect = if sticky {
            let features =
                client.unstable_features().await.map_err(|e| RtcError::Http(e.to_string()))?;
            if !features.iter().any(|f| f.as_str() == "org.matrix.msc4354") {
                return Err(RtcError::Unsupported(
                    "sticky events (MSC4354, org.matrix.msc4354 in /versions)",
                ));
            }
            SendDialect::Sticky {
                member_id: member_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            }
        } else {
            clear_stale(room, &user_id, &device_id, &state_key).await;
            SendDialect::Session
        };

        let me = MemberIdentity {
            user_id,
            device_id,
            room_id: room.room_id().to_string(),
            service_url,
            dialect,
        };
        let leave_timeout = timings.request_timeout * 2 + Duration::from_secs(1);
        let delay = timings.delayed_leave_delay;
        let member_id = match &me.dialect {
            SendDialect::Sticky { member_id } => Some(member_id.clone()),
            _ => None,
        };
        let mut core = OwnMembershipCore::new(me, timings, delayed_events);
        let target = Target { state_key: state_key.clone(), sticky, leave: core.leave_content() };
        core.join(Instant::now());
        let (control, control_rx) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(core.status());
        let (delayed_leave_tx, delayed_leave) = watch::channel(None);

        // Notice when our membership disappears from the room while we are in the call.
        let vanished = control.clone();
        let watched_key = state_key.clone();
        let handler = room.add_event_handler(
            move |event: Raw<matrix_sdk::ruma::events::AnySyncStateEvent>| {
                let vanished = vanished.clone();
                let watched_key = watched_key.clone();
                async move {
                    let Ok(value) = serde_json::from_str::<Value>(event.json().get()) else {
                        return;
                    };
                    let ours = value.get("type").and_then(Value::as_str)
                        == Some(CALL_MEMBER_EVENT_TYPE)
                        && value.get("state_key").and_then(Value::as_str)
                            == Some(watched_key.as_str());
                    if ours && value.get("content").and_then(|c| c.get("application")).is_none() {
                        let _ = vanished.send(Control::Vanished);
                    }
                }
            },
        );

        let span =
            tracing::info_span!("own_membership", room = %room.room_id(), state_key = %state_key);
        let room = room.clone();
        let task = tokio::spawn(
            async move {
                let watches = Watches { status: status_tx, delayed_leave: delayed_leave_tx, delay };
                run(room.clone(), target, core, control_rx, watches).await;
                room.client().remove_event_handler(handler);
            }
            .instrument(span),
        );
        Ok(Self {
            control,
            status,
            delayed_leave,
            task: Some(task),
            state_key,
            member_id,
            leave_timeout,
        })
    }

    /// The status, as a watch channel.
    pub fn status(&self) -> watch::Receiver<MembershipStatus> {
        self.status.clone()
    }

    /// Our delayed leave as it changes (a new one after the homeserver lost the old, `None`
    /// before the first and without delayed events), for handing it to the authorization
    /// service (see [`crate::LiveKitConnection::delegate_delayed_leave`]).
    pub fn delayed_leave(&self) -> watch::Receiver<Option<DelayedLeave>> {
        self.delayed_leave.clone()
    }

    /// The state key of our membership event.
    pub fn state_key(&self) -> &str {
        &self.state_key
    }

    /// The member id of a sticky membership (`None` for a state membership).
    pub fn member_id(&self) -> Option<&str> {
        self.member_id.as_deref()
    }

    /// Waits until the membership is in the room (status `Joined`), up to `timeout`.
    pub async fn wait_joined(&self, timeout: Duration) -> Result<(), RtcError> {
        let mut status = self.status.clone();
        tokio::time::timeout(timeout, status.wait_for(|s| *s == MembershipStatus::Joined))
            .await
            .map_err(|_| RtcError::Timeout("joining the call"))?
            .map_err(|_| RtcError::Stopped)?;
        Ok(())
    }

    /// Leaves the call: sends the delayed leave now (or `{}` when that fails) and stops the task.
    /// Bounded in time.
    pub async fn leave(mut self) -> Result<(), RtcError> {
        let _ = self.control.send(Control::Leave);
        let Some(task) = self.task.take() else { return Ok(()) };
        match tokio::time::timeout(self.leave_timeout, task).await {
            Ok(_) => Ok(()),
            Err(_) => Err(RtcError::Timeout("leaving the call")),
        }
    }
}

impl Drop for OwnMembership {
    fn drop(&mut self) {
        // The task leaves by itself; without a runtime the delayed leave does it.
        let _ = self.control.send(Control::Leave);
    }
}

/// What the task tells the [`OwnMembership`] handle.
struct Watches {
    status: watch::Sender<MembershipStatus>,
    delayed_leave: watch::Sender<Option<DelayedLeave>>,
    /// The delay of every delayed leave.
    delay: Duration,
}

impl Watches {
    fn update(&self, core: &OwnMembershipCore) {
        self.status.send_if_modified(|s| std::mem::replace(s, core.status()) != core.status());
        let current = core.delay_id().map(|id| DelayedLeave::new(id, self.delay));
        self.delayed_leave.send_if_modified(|d| {
            let changed = *d != current;
            *d = current;
            changed
        });
    }
}

async fn run(
    room: Room,
    target: Target,
    mut core: OwnMembershipCore,
    mut control: mpsc::UnboundedReceiver<Control>,
    watches: Watches,
) {
    let mut control_open = true;
    loop {
        while let Some(command) = core.poll_command(Instant::now(), unix_ms()) {
            tracing::debug!(request = request_name(&command.request), "membership request");
            let outcome = match tokio::time::timeout(
                command.timeout,
                execute(&room, &target, &command.request, command.timeout),
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(_) => Outcome::TimedOut,
            };
            tracing::debug!(
                request = request_name(&command.request),
                ?outcome,
                "membership request done"
            );
            core.handle_outcome(command.id, outcome, Instant::now(), unix_ms());
            watches.update(&core);
        }
        if core.status() == MembershipStatus::Left {
            tracing::info!("left the call");
            return;
        }
        let wake = core.poll_timeout();
        tokio::select! {
            message = control.recv(), if control_open => match message {
                Some(Control::Leave) | None => {
                    control_open = message.is_some();
                    core.leave(Instant::now());
                }
                Some(Control::Vanished) => core.membership_vanished(Instant::now()),
            },
            () = sleep_until(wake) => {}
        }
        watches.update(&core);
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

fn request_name(request: &Request) -> &'static str {
    match request {
        Request::ScheduleDelayedLeave { .. } => "schedule delayed leave",
        Request::SendMembership { .. } => "send membership",
        Request::RestartDelayedLeave { .. } => "restart delayed leave",
        Request::SendDelayedLeaveNow { .. } => "send delayed leave now",
        Request::SendLeave => "send leave",
    }
}

fn config(timeout: Duration) -> RequestConfig {
    RequestConfig::new().timeout(timeout).disable_retry()
}

fn classify(error: &HttpError) -> Outcome {
    match error.as_client_api_error() {
        Some(api) if api.status_code.as_u16() == 404 => Outcome::NotFound,
        Some(api) => Outcome::Failed(format!("HTTP {}: {:?}", api.status_code, api.error_kind())),
        None => Outcome::Failed(error.to_string()),
    }
}

/// `{}`: the content of a leave.
fn leave_content() -> Raw<AnyStateEventContent> {
    Raw::from_json(serde_json::value::RawValue::from_string("{}".to_owned()).expect("{} is JSON"))
}

/// A membership's content as matrix-sdk sends it; content that does not serialise is an error,
/// never replaced by `{}` (which would be a leave).
fn membership_content(
    content: &serde_json::Value,
) -> Result<Raw<AnyStateEventContent>, serde_json::Error> {
    serde_json::value::to_raw_value(content).map(Raw::from_json)
}

async fn execute(room: &Room, target: &Target, request: &Request, timeout: Duration) -> Outcome {
    if target.sticky {
        return execute_sticky(room, target, request, timeout).await;
    }
    let state_key = target.state_key.as_str();
    let client = room.client();
    let event_type = StateEventType::from(CALL_MEMBER_EVENT_TYPE);
    match request {
        Request::ScheduleDelayedLeave { delay } => {
            let request = delayed_state_event::unstable::Request::new_raw(
                room.room_id().to_owned(),
                state_key.to_owned(),
                event_type,
                DelayParameters::Timeout { timeout: *delay },
                leave_content(),
            );
            match client.send(request).with_request_config(config(timeout)).await {
                Ok(response) => Outcome::DelayId(response.delay_id),
                Err(error) if error.as_client_api_error().is_some() => classify(&error),
                // A server without MSC4140 ignores the delay, sends `{}` at once and answers
                // with an event id: the answer does not parse.
                Err(HttpError::Api(_)) => Outcome::Unsupported,
                Err(error) => classify(&error),
            }
        }
        Request::SendMembership { content } => {
            let content = match membership_content(content) {
                Ok(content) => content,
                Err(error) => return Outcome::Failed(format!("membership content: {error}")),
            };
            let request = send_state_event::v3::Request::new_raw(
                room.room_id().to_owned(),
                event_type,
                state_key.to_owned(),
                content,
            );
            match client.send(request).with_request_config(config(timeout)).await {
                Ok(_) => Outcome::Ok,
                Err(error) => classify(&error),
            }
        }
        Request::RestartDelayedLeave { delay_id } | Request::SendDelayedLeaveNow { delay_id } => {
            let action = if matches!(request, Request::RestartDelayedLeave { .. }) {
                update_delayed_event::unstable::UpdateAction::Restart
            } else {
                update_delayed_event::unstable::UpdateAction::Send
            };
            let request = update_delayed_event::unstable::Request::new(delay_id.clone(), action);
            match client.send(request).with_request_config(config(timeout)).await {
                Ok(_) => Outcome::Ok,
                Err(error) => classify(&error),
            }
        }
        Request::SendLeave => {
            let request = send_state_event::v3::Request::new_raw(
                room.room_id().to_owned(),
                event_type,
                state_key.to_owned(),
                leave_content(),
            );
            match client.send(request).with_request_config(config(timeout)).await {
                Ok(_) => Outcome::Ok,
                Err(error) => classify(&error),
            }
        }
    }
}

/// Sticky events: `PUT …/send/org.matrix.msc4143.rtc.member/{txn}` with the stickiness (and the
/// delay) as query parameters, which ruma's request types do not carry.
async fn execute_sticky(
    room: &Room,
    target: &Target,
    request: &Request,
    timeout: Duration,
) -> Outcome {
    let client = room.client();
    let homeserver = client.homeserver();
    let send_url = |delay: Option<Duration>| {
        let transaction = matrix_sdk::ruma::TransactionId::new();
        sticky_send_url(&homeserver, room.room_id().as_str(), transaction.as_str(), delay)
    };
    let put = |url: Result<Url, RtcError>, body: Value| async move {
        let url = url.map_err(|error| Outcome::Failed(error.to_string()))?;
        match crate::http::put_json(&client, url, &body, timeout).await {
            Ok(answer) => Ok(answer),
            Err(RtcError::Status(404)) => Err(Outcome::NotFound),
            Err(error) => Err(Outcome::Failed(error.to_string())),
        }
    };
    match request {
        Request::ScheduleDelayedLeave { delay } => {
            match put(send_url(Some(*delay)), target.leave.clone()).await {
                Ok(answer) => match answer.get("delay_id").and_then(Value::as_str) {
                    Some(id) => Outcome::DelayId(id.to_owned()),
                    None => Outcome::Unsupported,
                },
                Err(outcome) => outcome,
            }
        }
        Request::SendMembership { content } => {
            put(send_url(None), content.clone()).await.map_or_else(|o| o, |_| Outcome::Ok)
        }
        Request::SendLeave => {
            put(send_url(None), target.leave.clone()).await.map_or_else(|o| o, |_| Outcome::Ok)
        }
        Request::RestartDelayedLeave { .. } | Request::SendDelayedLeaveNow { .. } => {
            let session = Target { sticky: false, ..target.clone() };
            Box::pin(execute(room, &session, request, timeout)).await
        }
    }
}

/// `PUT /_matrix/client/v3/rooms/{room_id}/send/org.matrix.msc4143.rtc.member/{transaction}`
/// with the stickiness (MSC4354) and, for a delayed leave, the delay (MSC4140) as query
/// parameters.
fn sticky_send_url(
    homeserver: &Url,
    room_id: &str,
    transaction: &str,
    delay: Option<Duration>,
) -> Result<Url, RtcError> {
    let sticky = MAX_STICKY_DURATION_MS.to_string();
    let delay = delay.map(|d| d.as_millis().to_string());
    let mut query = vec![("org.matrix.msc4354.sticky_duration_ms", sticky.as_str())];
    if let Some(delay) = &delay {
        query.push(("org.matrix.msc4140.delay", delay.as_str()));
    }
    crate::http::endpoint(
        homeserver,
        &["_matrix", "client", "v3", "rooms", room_id, "send", RTC_MEMBER_EVENT_TYPE, transaction],
        &query,
    )
}

/// Whether the homeserver advertises delayed events (`org.matrix.msc4140` in `/versions`).
async fn supports_delayed_events(room: &Room) -> bool {
    match room.client().unstable_features().await {
        Ok(features) => {
            let supported = features.iter().any(|f| f.as_str() == "org.matrix.msc4140");
            if !supported {
                tracing::warn!(
                    "the homeserver does not advertise delayed events (MSC4140, `max_event_delay_duration` in Synapse): \
                     a crash would leave a ghost membership until it expires"
                );
            }
            supported
        }
        Err(error) => {
            tracing::warn!(%error, "cannot read the homeserver's features; trying delayed events anyway");
            true
        }
    }
}

/// Clears what an earlier run of this device left: a membership in our state key (or the older
/// keys without the `_m.call` suffix), and delayed events aimed at them, which would otherwise
/// fire in the middle of our new call.
async fn clear_stale(room: &Room, user_id: &str, device_id: &str, state_key: &str) {
    let client = room.client();
    let mut keys = vec![state_key.to_owned()];
    for legacy in [format!("_{user_id}_{device_id}"), format!("{user_id}_{device_id}")] {
        if !keys.contains(&legacy) {
            keys.push(legacy);
        }
    }
    if let Err(error) = cancel_stale_delayed_events(room, &keys).await {
        tracing::debug!(%error, "cannot list delayed events");
    }
    for key in keys {
        let request = get_state_event_for_key::v3::Request::new(
            room.room_id().to_owned(),
            StateEventType::from(CALL_MEMBER_EVENT_TYPE),
            key.clone(),
        );
        let Ok(response) =
            client.send(request).with_request_config(config(Duration::from_secs(10))).await
        else {
            continue;
        };
        let content: Value =
            serde_json::from_str(response.event_or_content.get()).unwrap_or(Value::Null);
        let content = content.get("content").cloned().unwrap_or(content);
        if content.get("application").is_none() {
            continue;
        }
        tracing::info!(state_key = %key, "clearing a membership left by an earlier run of this device");
        let request = send_state_event::v3::Request::new_raw(
            room.room_id().to_owned(),
            StateEventType::from(CALL_MEMBER_EVENT_TYPE),
            key,
            leave_content(),
        );
        if let Err(error) =
            client.send(request).with_request_config(config(Duration::from_secs(10))).await
        {
            tracing::warn!(%error, "cannot clear the stale membership");
        }
    }
}

async fn cancel_stale_delayed_events(room: &Room, keys: &[String]) -> Result<(), RtcError> {
    let listing = crate::http::get_json(
        &room.client(),
        &["_matrix", "client", "unstable", "org.matrix.msc4140", "delayed_events"],
    )
    .await?;
    let events =
        listing.get("delayed_events").and_then(Value::as_array).cloned().unwrap_or_default();
    for event in events {
        let room_matches =
            event.get("room_id").and_then(Value::as_str) == Some(room.room_id().as_str());
        let type_matches =
            event.get("type").and_then(Value::as_str) == Some(CALL_MEMBER_EVENT_TYPE);
        let key_matches = event
            .get("state_key")
            .and_then(Value::as_str)
            .is_some_and(|k| keys.iter().any(|key| key == k));
        let Some(delay_id) = event.get("delay_id").and_then(Value::as_str) else { continue };
        if room_matches && type_matches && key_matches {
            tracing::info!("cancelling a delayed leave left by an earlier run of this device");
            let request = update_delayed_event::unstable::Request::new(
                delay_id.to_owned(),
                update_delayed_event::unstable::UpdateAction::Cancel,
            );
            let _ = room
                .client()
                .send(request)
                .with_request_config(config(Duration::from_secs(10)))
                .await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sticky_send_url_escapes_the_room_id_and_carries_the_query() {
        let homeserver = Url::parse("https://hs.example.org/prefix/").unwrap();
        let url = sticky_send_url(
            &homeserver,
            "!we ird/room?#%:example.org",
            "txn1",
            Some(Duration::from_secs(10)),
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "https://hs.example.org/prefix/_matrix/client/v3/rooms/!we%20ird%2Froom%3F%23%25:example.org\
             /send/org.matrix.msc4143.rtc.member/txn1\
             ?org.matrix.msc4354.sticky_duration_ms=3600000&org.matrix.msc4140.delay=10000"
        );
        let url = sticky_send_url(&homeserver, "!r:example.org", "txn2", None).unwrap();
        assert_eq!(url.query(), Some("org.matrix.msc4354.sticky_duration_ms=3600000"));
    }
}
