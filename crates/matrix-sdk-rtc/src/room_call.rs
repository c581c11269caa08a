//! [`RoomCallObserver`]: a [`CallSession`] kept up to date from a [`matrix_sdk::Room`], as a
//! stream of [`CallState`]s.

use std::borrow::Cow;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use matrix_sdk::event_handler::EventHandlerHandle;
use matrix_sdk::room::MessagesOptions;
use matrix_sdk::ruma::events::{AnySyncMessageLikeEvent, AnySyncStateEvent, StateEventType};
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::{Room, RoomMemberships};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::backoff::Backoff;
use crate::call_session::{CallSession, CallState};
use crate::clock::unix_ms;
use crate::error::RtcError;
use crate::membership::{
    CALL_MEMBER_EVENT_TYPE, CALL_MEMBER_STABLE_EVENT_TYPE, MAX_STICKY_DURATION_MS, MembershipEvent,
    RTC_MEMBER_EVENT_TYPE, is_membership_event_type,
};

/// How many updates wait for the observer's task at most (see [`RoomCallObserver`]).
const QUEUE_CAPACITY: usize = 256;
/// How long reading the sticky memberships back from `/messages` may take.
const STICKY_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long reading the room's joined members may take (a request when they are not synced).
const MEMBERS_TIMEOUT: Duration = Duration::from_secs(30);
/// First and longest wait before a failed re-read of the room is tried again.
const REREAD_RETRY: Duration = Duration::from_secs(1);
const REREAD_RETRY_MAX: Duration = Duration::from_secs(60);

/// Follows the call of a room: loads the current memberships and room members, then applies every
/// membership and room-member event that sync delivers, and re-evaluates when a membership
/// expires. Dropping it stops everything.
///
/// # A slow reader
///
/// Only membership events and `m.room.member` events are queued (every other event is dropped
/// in the event handler, before it is queued), reduced to what the call needs (no update is
/// larger than its event), and the queue holds at most 256 of them. When more arrive before the observer's task has taken them (a
/// busy room, a starved runtime), the queue is emptied and replaced by one mark: "re-read the
/// room". The task then loads the call afresh, as at the start (membership state and joined
/// members from the client's store, which sync has already updated, and the sticky memberships
/// from `/messages`), and applies what arrives after. However many events come, memory stays
/// bounded and the state ends up as the room holds it. The [`CallState`] watch channel itself
/// keeps only the latest state: a subscriber that reads late sees the newest one, not every
/// step.
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
        let inbox = Arc::new(Inbox::default());
        let state_inbox = inbox.clone();
        let state_handler = room.add_event_handler(move |event: Raw<AnySyncStateEvent>| {
            let inbox = state_inbox.clone();
            async move { inbox.receive(event.json().get()) }
        });
        let message_inbox = inbox.clone();
        let message_handler = room.add_event_handler(move |event: Raw<AnySyncMessageLikeEvent>| {
            let inbox = message_inbox.clone();
            async move { inbox.receive(event.json().get()) }
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
        let reread_room = room.clone();
        let reread = move || {
            let room = reread_room.clone();
            async move { load(&room).await }
        };
        let task = tokio::spawn(follow(session, inbox, state_tx, reread).instrument(span));
        Ok(Self { state, task, room: room.clone(), handlers })
    }

    /// An observer whose call is whatever `state` says (no event handlers, no task): for tests
    /// of what follows the call.
    #[cfg(test)]
    pub(crate) fn from_state(room: &Room, state: watch::Receiver<CallState>) -> Self {
        Self { state, task: tokio::spawn(async {}), room: room.clone(), handlers: Vec::new() }
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
    match tokio::time::timeout(STICKY_READ_TIMEOUT, recent_sticky_memberships(room, now)).await {
        Ok(Ok(events)) => {
            for event in events.iter().filter_map(|e| MembershipEvent::from_json(e, now)) {
                session.handle_event(&event);
            }
        }
        Ok(Err(error)) => tracing::debug!(%error, "cannot read recent sticky memberships"),
        Err(_) => tracing::debug!(
            timeout = ?STICKY_READ_TIMEOUT,
            "reading recent sticky memberships took too long"
        ),
    }
    let members = tokio::time::timeout(MEMBERS_TIMEOUT, room.members(RoomMemberships::JOIN))
        .await
        .map_err(|_| RtcError::Timeout("reading the room's members"))??;
    for member in members {
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

/// What the call needs of one event, taken from it in the event handler.
#[derive(Debug, Clone)]
enum Update {
    /// `m.room.member`: whether the user is joined.
    RoomMember { user_id: String, joined: bool },
    /// A membership event, parsed when it arrived (sticky durations count from then).
    Membership(MembershipEvent),
}

impl Update {
    /// The update an event carries, `None` for every event type the call does not follow
    /// (checked on the type alone, before the rest of the event is parsed).
    fn from_event(json: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(borrow, rename = "type")]
            event_type: Cow<'a, str>,
        }
        #[derive(Deserialize)]
        struct RoomMember {
            state_key: String,
            content: RoomMemberContent,
        }
        #[derive(Deserialize)]
        struct RoomMemberContent {
            membership: String,
        }
        let head: Head<'_> = serde_json::from_str(json).ok()?;
        if head.event_type == "m.room.member" {
            let member: RoomMember = serde_json::from_str(json).ok()?;
            Some(Self::RoomMember {
                user_id: member.state_key,
                joined: member.content.membership == "join",
            })
        } else if is_membership_event_type(&head.event_type) {
            let value: Value = serde_json::from_str(json).ok()?;
            MembershipEvent::from_json(&value, unix_ms()).map(Self::Membership)
        } else {
            None
        }
    }

    fn apply(&self, session: &mut CallSession) {
        match self {
            Self::RoomMember { user_id, joined } => {
                session.set_room_membership(user_id, *joined);
            }
            Self::Membership(event) => {
                session.handle_event(event);
            }
        }
    }
}

/// The bounded queue between the event handlers and the observer's task: at most
/// [`QUEUE_CAPACITY`] updates, then one "re-read the room" mark instead (see
/// [`RoomCallObserver`]); a wakeup that coalesces.
#[derive(Debug, Default)]
struct Inbox {
    queued: Mutex<Queued>,
    wake: Notify,
}

#[derive(Debug, Default)]
struct Queued {
    updates: Vec<Update>,
    reread: bool,
}

/// What the task takes from the [`Inbox`].
#[derive(Debug)]
enum Taken {
    /// These updates, oldest first.
    Updates(Vec<Update>),
    /// Updates were dropped: load the call afresh.
    Reread,
}

impl Inbox {
    /// Queues what the event `json` says about the call, if anything.
    fn receive(&self, json: &str) {
        if let Some(update) = Update::from_event(json) {
            self.push(update);
        }
    }

    fn push(&self, update: Update) {
        {
            let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
            if queued.reread {
                // The re-read will see this event's effect.
            } else if queued.updates.len() >= QUEUE_CAPACITY {
                tracing::debug!(
                    capacity = QUEUE_CAPACITY,
                    "call updates arrive faster than they are applied: re-reading the room"
                );
                queued.updates = Vec::new();
                queued.reread = true;
            } else {
                queued.updates.push(update);
            }
        }
        self.wake.notify_one();
    }

    fn take(&self) -> Taken {
        let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
        if std::mem::take(&mut queued.reread) {
            Taken::Reread
        } else {
            Taken::Updates(std::mem::take(&mut queued.updates))
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.queued.lock().unwrap_or_else(PoisonError::into_inner).updates.len()
    }
}

/// Keeps `state` up to date: applies what the inbox holds, re-reads the room (`reread`) when it
/// overflowed, and wakes when a membership expires.
async fn follow<R, F>(
    mut session: CallSession,
    inbox: Arc<Inbox>,
    state: watch::Sender<CallState>,
    mut reread: R,
) where
    R: FnMut() -> F,
    F: Future<Output = Result<CallSession, RtcError>>,
{
    let mut backoff = Backoff::new(REREAD_RETRY, REREAD_RETRY_MAX);
    // When the room must be read afresh (now, or again after a failed attempt).
    let mut reread_at: Option<Instant> = None;
    loop {
        if reread_at.is_some_and(|at| at <= Instant::now()) {
            match reread().await {
                Ok(fresh) => {
                    session = fresh;
                    reread_at = None;
                    backoff.reset();
                }
                Err(error) => {
                    let retry_in = backoff.next_delay();
                    tracing::warn!(%error, ?retry_in, "cannot re-read the room's call");
                    reread_at = Some(Instant::now() + retry_in);
                }
            }
        }
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
        let expiry = async {
            match wake {
                Some(at) => {
                    tokio::time::sleep(Duration::from_millis(at.saturating_sub(unix_ms()))).await
                }
                None => std::future::pending().await,
            }
        };
        let retry = async {
            match reread_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = inbox.wake.notified() => {}
            () = expiry => {}
            () = retry => {}
        }
        match inbox.take() {
            // In arrival order; everything already queued is applied before publishing.
            Taken::Updates(updates) => {
                for update in &updates {
                    update.apply(&mut session);
                }
            }
            // A re-read already scheduled after a failure keeps its backoff.
            Taken::Reread => reread_at = reread_at.or(Some(Instant::now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;

    const ALICE: &str = "@alice:example.org";
    const BOB: &str = "@bob:example.org";

    /// A session membership event of `user`'s `device` (a join), or its leave (`{}`).
    fn membership(user: &str, device: &str, joined: bool) -> String {
        let content = if joined {
            json!({"application": "m.call", "call_id": "", "scope": "m.room", "device_id": device,
                   "expires": 14_400_000,
                   "focus_active": {"type": "livekit", "focus_selection": "multi_sfu"},
                   "foci_preferred": [{"type": "livekit", "livekit_service_url": "https://a.example",
                                       "livekit_alias": "!r:example.org"}]})
        } else {
            json!({})
        };
        json!({"type": CALL_MEMBER_EVENT_TYPE, "state_key": format!("_{user}_{device}_m.call"),
               "sender": user, "origin_server_ts": unix_ms(), "event_id": "$e", "content": content})
        .to_string()
    }

    fn room_member(user: &str, membership: &str) -> String {
        json!({"type": "m.room.member", "state_key": user, "sender": user, "event_id": "$m",
               "origin_server_ts": 1, "content": {"membership": membership}})
        .to_string()
    }

    fn devices(state: &CallState) -> Vec<(&str, &str)> {
        state.members.iter().map(|m| (m.user_id(), m.device_id())).collect()
    }

    /// Runs `follow` from an empty session; `reread` answers what the room holds.
    fn spawn_follow<R, F>(inbox: &Arc<Inbox>, reread: R) -> watch::Receiver<CallState>
    where
        R: FnMut() -> F + Send + 'static,
        F: Future<Output = Result<CallSession, RtcError>> + Send + 'static,
    {
        let (state_tx, state) = watch::channel(CallState::default());
        tokio::spawn(follow(CallSession::new(), inbox.clone(), state_tx, reread));
        state
    }

    async fn wait_for(
        state: &mut watch::Receiver<CallState>,
        condition: impl FnMut(&CallState) -> bool,
    ) -> CallState {
        tokio::time::timeout(Duration::from_secs(10), state.wait_for(condition))
            .await
            .expect("the state changes in time")
            .expect("follow runs")
            .clone()
    }

    #[test]
    fn only_membership_and_room_member_events_are_queued() {
        let inbox = Inbox::default();
        let message = json!({"type": "m.room.message", "sender": ALICE, "event_id": "$x",
                             "origin_server_ts": 1, "content": {"body": "x".repeat(10_000)}})
        .to_string();
        let topic = json!({"type": "m.room.topic", "state_key": "", "sender": ALICE,
                           "event_id": "$t", "origin_server_ts": 1, "content": {"topic": "t"}})
        .to_string();
        for _ in 0..10 * QUEUE_CAPACITY {
            inbox.receive(&message);
            inbox.receive(&topic);
            inbox.receive("not json");
        }
        assert!(matches!(inbox.take(), Taken::Updates(u) if u.is_empty()));

        inbox.receive(&room_member(ALICE, "leave"));
        inbox.receive(&membership(ALICE, "PHONE", true));
        let Taken::Updates(updates) = inbox.take() else { panic!("no re-read expected") };
        match updates.as_slice() {
            [Update::RoomMember { user_id, joined: false }, Update::Membership(event)] => {
                assert_eq!(user_id, ALICE);
                assert_eq!(event.state_key.as_deref(), Some("_@alice:example.org_PHONE_m.call"));
                assert_eq!(event.sender, ALICE);
            }
            other => panic!("unexpected updates {other:?}"),
        }
    }

    #[tokio::test]
    async fn queued_updates_are_applied_in_order_without_a_reread() {
        let inbox = Arc::new(Inbox::default());
        for event in [
            room_member(ALICE, "join"),
            room_member(BOB, "join"),
            membership(ALICE, "PHONE", true),
            membership(BOB, "LAPTOP", true),
            membership(ALICE, "PHONE", false),
            membership(ALICE, "DESK", true),
        ] {
            inbox.receive(&event);
        }
        let rereads = Arc::new(AtomicUsize::new(0));
        let counter = rereads.clone();
        let mut state = spawn_follow(&inbox, move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { Err(RtcError::Stopped) }
        });
        let state = wait_for(&mut state, CallState::is_active).await;
        let mut seen = devices(&state);
        seen.sort_unstable();
        assert_eq!(seen, [(ALICE, "DESK"), (BOB, "LAPTOP")]);
        assert_eq!(rereads.load(Ordering::SeqCst), 0);
    }

    /// Many events while nobody reads: the queue never holds more than its capacity, the
    /// overflow becomes one re-read, and what comes after it is applied on top.
    #[tokio::test]
    async fn a_slow_reader_keeps_the_queue_bounded_and_ends_with_the_rooms_state() {
        let inbox = Arc::new(Inbox::default());
        inbox.receive(&room_member(ALICE, "join"));
        const EVENTS: usize = 8 * QUEUE_CAPACITY;
        let mut longest = 0;
        for i in 0..EVENTS {
            inbox.receive(&membership(ALICE, &format!("DEV{i}"), true));
            longest = longest.max(inbox.len());
        }
        assert_eq!(longest, QUEUE_CAPACITY, "the queue filled up to its capacity, no further");
        assert_eq!(inbox.len(), 0, "the overflow dropped the queue for one re-read mark");

        // What the room holds after those events (the client's store has applied them all).
        let room_now = || {
            let mut session = CallSession::new();
            session.set_room_membership(ALICE, true);
            for i in 0..EVENTS {
                let event: Value =
                    serde_json::from_str(&membership(ALICE, &format!("DEV{i}"), true)).unwrap();
                session.handle_event(&MembershipEvent::from_json(&event, unix_ms()).unwrap());
            }
            session
        };
        let rereads = Arc::new(AtomicUsize::new(0));
        let counter = rereads.clone();
        let mut state = spawn_follow(&inbox, move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let session = room_now();
            async move { Ok(session) }
        });
        let state_now = wait_for(&mut state, |s| s.members.len() == EVENTS).await;
        let last = format!("DEV{}", EVENTS - 1);
        assert!(state_now.member(ALICE, &last).is_some());
        assert_eq!(rereads.load(Ordering::SeqCst), 1, "one re-read for the whole overflow");

        // Later events apply on top of the re-read state, without another re-read.
        inbox.receive(&membership(ALICE, &last, false));
        let state_now = wait_for(&mut state, |s| s.members.len() == EVENTS - 1).await;
        assert!(state_now.member(ALICE, &last).is_none());
        assert_eq!(rereads.load(Ordering::SeqCst), 1);
    }

    /// A re-read that fails is tried again after a backoff, until it works.
    #[tokio::test(start_paused = true)]
    async fn a_failed_reread_is_retried() {
        let inbox = Arc::new(Inbox::default());
        for i in 0..=QUEUE_CAPACITY {
            inbox.receive(&room_member(&format!("@u{i}:example.org"), "join"));
        }
        let rereads = Arc::new(AtomicUsize::new(0));
        let counter = rereads.clone();
        let started = Instant::now();
        let mut state = spawn_follow(&inbox, move || {
            let attempt = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                if attempt < 2 {
                    return Err(RtcError::Http("the homeserver is away".into()));
                }
                let mut session = CallSession::new();
                session.set_room_membership(ALICE, true);
                let event: Value = serde_json::from_str(&membership(ALICE, "PHONE", true)).unwrap();
                session.handle_event(&MembershipEvent::from_json(&event, unix_ms()).unwrap());
                Ok(session)
            }
        });
        let state_now = wait_for(&mut state, CallState::is_active).await;
        assert_eq!(devices(&state_now), [(ALICE, "PHONE")]);
        assert_eq!(rereads.load(Ordering::SeqCst), 3);
        // Two waits of the backoff: about 1 s, then about 2 s (up to 10 % more each).
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(3) && waited <= Duration::from_millis(3300),
            "{waited:?}"
        );
    }
}
