//! [`RoomCallObserver`]: a [`CallSession`] kept up to date from a [`matrix_sdk::Room`], as a
//! stream of [`CallState`]s.

use std::time::Duration;

use matrix_sdk::event_handler::EventHandlerHandle;
use matrix_sdk::room::MessagesOptions;
use matrix_sdk::ruma::events::{AnySyncMessageLikeEvent, AnySyncStateEvent, StateEventType};
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::{Room, RoomMemberships};
use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;

use crate::call_session::{CallSession, CallState};
use crate::clock::unix_ms;
use crate::error::RtcError;
use crate::membership::{
    CALL_MEMBER_EVENT_TYPE, CALL_MEMBER_STABLE_EVENT_TYPE, MAX_STICKY_DURATION_MS, MembershipEvent,
    RTC_MEMBER_EVENT_TYPE, is_membership_event_type,
};

/// Follows the call of a room: loads the current memberships and room members, then applies every
/// membership and room-member event that sync delivers, and re-evaluates when a membership
/// expires. Dropping it stops everything.
#[derive(Debug)]
pub struct RoomCallObserver {
    state: watch::Receiver<CallState>,
    task: tokio::task::JoinHandle<()>,
    room: Room,
    handlers: Vec<EventHandlerHandle>,
}

impl RoomCallObserver {
    /// Starts following the room-wide call of `room`: its membership state, the sticky
    /// memberships of the last hour (they are timeline events, not state), its joined members,
    /// and from then on every event that sync delivers.
    pub async fn new(room: &Room) -> Result<Self, RtcError> {
        // Listen first, so that nothing sent while the current state loads is missed; what
        // arrives meanwhile is applied after it.
        let (events_tx, events_rx) = mpsc::unbounded_channel::<Value>();
        let state_tx = events_tx.clone();
        let state_handler = room.add_event_handler(move |event: Raw<AnySyncStateEvent>| {
            let tx = state_tx.clone();
            async move {
                if let Ok(value) = serde_json::from_str::<Value>(event.json().get()) {
                    let _ = tx.send(value);
                }
            }
        });
        let message_tx = events_tx;
        let message_handler = room.add_event_handler(move |event: Raw<AnySyncMessageLikeEvent>| {
            let tx = message_tx.clone();
            async move {
                if let Ok(value) = serde_json::from_str::<Value>(event.json().get()) {
                    let _ = tx.send(value);
                }
            }
        });
        let handlers = vec![state_handler, message_handler];
        let session = match load(room).await {
            Ok(session) => session,
            Err(error) => {
                for handle in handlers {
                    room.client().remove_event_handler(handle);
                }
                return Err(error);
            }
        };

        let (state_tx, state) = watch::channel(session.state(unix_ms()));
        let span = tracing::info_span!("call_session", room = %room.room_id());
        let task = tokio::spawn(follow(session, events_rx, state_tx).instrument(span));
        Ok(Self { state, task, room: room.clone(), handlers })
    }

    /// The call now.
    pub fn state(&self) -> CallState {
        self.state.borrow().clone()
    }

    /// Every change of the call, as a watch channel (the current value first).
    pub fn subscribe(&self) -> watch::Receiver<CallState> {
        self.state.clone()
    }

    /// Waits until `condition` holds, up to `timeout`; returns the state that satisfied it.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&CallState) -> bool,
    ) -> Result<CallState, RtcError> {
        let mut state = self.state.clone();
        let result = tokio::time::timeout(timeout, state.wait_for(|s| condition(s)))
            .await
            .map_err(|_| RtcError::Timeout("waiting for the call state"))?
            .map_err(|_| RtcError::Stopped)?;
        Ok(result.clone())
    }
}

impl Drop for RoomCallObserver {
    fn drop(&mut self) {
        self.task.abort();
        for handle in self.handlers.drain(..) {
            self.room.client().remove_event_handler(handle);
        }
    }
}

/// The call as the room holds it now.
async fn load(room: &Room) -> Result<CallSession, RtcError> {
    let mut session = CallSession::new();
    let now = unix_ms();
    for event_type in [CALL_MEMBER_EVENT_TYPE, CALL_MEMBER_STABLE_EVENT_TYPE] {
        for raw in room.get_state_events(StateEventType::from(event_type)).await? {
            let json = match &raw {
                matrix_sdk::deserialized_responses::RawAnySyncOrStrippedState::Sync(raw) => {
                    raw.json().get()
                }
                matrix_sdk::deserialized_responses::RawAnySyncOrStrippedState::Stripped(_) => {
                    continue;
                }
            };
            if let Some(event) = serde_json::from_str(json)
                .ok()
                .and_then(|v: Value| MembershipEvent::from_json(&v, now))
            {
                session.handle_event(&event);
            }
        }
    }
    match recent_sticky_memberships(room, now).await {
        Ok(events) => {
            for event in events.iter().filter_map(|e| MembershipEvent::from_json(e, now)) {
                session.handle_event(&event);
            }
        }
        Err(error) => tracing::debug!(%error, "cannot read recent sticky memberships"),
    }
    for member in room.members(RoomMemberships::JOIN).await? {
        session.set_room_membership(member.user_id().as_str(), true);
    }
    Ok(session)
}

/// Pages of sticky memberships read back from the newest, at most this many.
const STICKY_PAGES: usize = 5;

/// The sticky `rtc.member` events of the last hour (no sticky event lasts longer), oldest
/// first: `/messages` backwards, filtered to the type.
async fn recent_sticky_memberships(room: &Room, now_ms: u64) -> Result<Vec<Value>, RtcError> {
    let oldest = now_ms.saturating_sub(MAX_STICKY_DURATION_MS);
    let mut events = Vec::new();
    let mut from = None;
    for _ in 0..STICKY_PAGES {
        let mut options = MessagesOptions::backward();
        options.limit = 100u32.into();
        options.filter.types = Some(vec![RTC_MEMBER_EVENT_TYPE.to_owned()]);
        options.from = from.take();
        let page = room.messages(options).await?;
        let mut reached_older = page.chunk.is_empty();
        for event in &page.chunk {
            let Ok(value) = serde_json::from_str::<Value>(event.raw().json().get()) else {
                continue;
            };
            let ts = value.get("origin_server_ts").and_then(Value::as_u64).unwrap_or(0);
            if ts < oldest {
                reached_older = true;
                continue;
            }
            events.push(value);
        }
        match page.end {
            Some(end) if !reached_older => from = Some(end),
            _ => break,
        }
    }
    events.reverse();
    Ok(events)
}

async fn follow(
    mut session: CallSession,
    mut events: mpsc::UnboundedReceiver<Value>,
    state: watch::Sender<CallState>,
) {
    loop {
        let current = session.state(unix_ms());
        let wake = current.next_change_at;
        state.send_if_modified(|s| {
            let changed = *s != current;
            if changed {
                tracing::debug!(members = current.members.len(), "call changed");
                *s = current;
            }
            changed
        });
        let sleep = async {
            match wake {
                Some(at) => {
                    tokio::time::sleep(Duration::from_millis(at.saturating_sub(unix_ms()))).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            event = events.recv() => {
                let Some(event) = event else { return };
                apply(&mut session, &event);
                // Apply everything already queued before publishing.
                while let Ok(event) = events.try_recv() {
                    apply(&mut session, &event);
                }
            }
            () = sleep => {}
        }
    }
}

fn apply(session: &mut CallSession, event: &Value) {
    let event_type = event.get("type").and_then(Value::as_str).unwrap_or_default();
    if event_type == "m.room.member" {
        let (Some(user), Some(membership)) = (
            event.get("state_key").and_then(Value::as_str),
            event.get("content").and_then(|c| c.get("membership")).and_then(Value::as_str),
        ) else {
            return;
        };
        session.set_room_membership(user, membership == "join");
    } else if is_membership_event_type(event_type)
        && let Some(event) = MembershipEvent::from_json(event, unix_ms())
    {
        session.handle_event(&event);
    }
}
