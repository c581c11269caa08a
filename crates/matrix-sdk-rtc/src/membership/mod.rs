//! Call memberships: every wire dialect parsed into one model at the edge, and one serializer per
//! dialect for sending.
//!
//! | dialect | event | read | send |
//! |---|---|---|---|
//! | [`Dialect::Session`] | state `org.matrix.msc3401.call.member` (or `m.call.member`), one per device | yes | default |
//! | [`Dialect::MembershipsArray`] | the same state type with `{"memberships": [...]}` (2023/2024) | yes | never |
//! | [`Dialect::Sticky`] | sticky `org.matrix.msc4143.rtc.member` (MSC4354) | yes | opt-in |
//!
//! Parsing never fails loudly: content that is not a valid membership is a leave (state events)
//! or ignored (sticky events), with a debug log line, exactly as matrix-js-sdk treats it.

mod memberships_array;
mod session;
mod sticky;

use serde_json::Value;

pub use session::{SessionMembershipContent, session_state_key};
pub use sticky::StickyMembershipContent;

/// The state event type of per-device call memberships (what every client sends).
pub const CALL_MEMBER_EVENT_TYPE: &str = "org.matrix.msc3401.call.member";
/// The stable name of [`CALL_MEMBER_EVENT_TYPE`]; read, never sent by anyone today.
pub const CALL_MEMBER_STABLE_EVENT_TYPE: &str = "m.call.member";
/// The sticky message event type of MatrixRTC members (MSC4143 + MSC4354).
pub const RTC_MEMBER_EVENT_TYPE: &str = "org.matrix.msc4143.rtc.member";
/// The application of calls.
pub const CALL_APPLICATION: &str = "m.call";
/// The slot of the room-wide call.
pub const ROOM_CALL_SLOT: &str = "m.call#ROOM";
/// Default membership lifetime of session memberships (4 h), as matrix-js-sdk and ruma use.
pub const DEFAULT_EXPIRES_MS: u64 = 4 * 60 * 60 * 1000;
/// The longest stickiness MSC4354 allows (1 h).
pub const MAX_STICKY_DURATION_MS: u64 = 60 * 60 * 1000;

/// The wire format a membership came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dialect {
    /// Per-device session state event (Element Call's default "compatibility" and "legacy" modes).
    Session,
    /// The old `{"memberships": [...]}` state content; read only, never connected to.
    MembershipsArray,
    /// Sticky `org.matrix.msc4143.rtc.member` event (Element Call's "matrix_2_0" mode).
    Sticky,
}

/// How a session member chooses the SFU it publishes on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FocusSelection {
    /// Everybody publishes on the SFU of the oldest member.
    OldestMembership,
    /// Everybody publishes on its own SFU and subscribes to the others'.
    MultiSfu,
    /// A selection this library does not know; such a member cannot be subscribed to.
    Other(String),
}

impl FocusSelection {
    fn parse(value: &str) -> Self {
        match value {
            "oldest_membership" => Self::OldestMembership,
            "multi_sfu" => Self::MultiSfu,
            other => Self::Other(other.to_owned()),
        }
    }

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::OldestMembership => "oldest_membership",
            Self::MultiSfu => "multi_sfu",
            Self::Other(other) => other,
        }
    }
}

/// An RTC transport (a "focus"): for LiveKit, the authorization service a member's SFU is
/// reached through. Two transports are the same iff their service URLs are byte-identical, as in
/// Element Call.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Transport {
    /// The transport type, `livekit` for every transport in use today.
    pub kind: String,
    /// The authorization service base URL (`livekit_service_url`).
    pub livekit_service_url: Option<String>,
    /// `livekit_alias` of session memberships (informational: Element Call puts the room id).
    pub livekit_alias: Option<String>,
}

impl Transport {
    /// A LiveKit transport reached through the authorization service at `service_url`.
    pub fn livekit(service_url: impl Into<String>) -> Self {
        Self {
            kind: "livekit".to_owned(),
            livekit_service_url: Some(service_url.into()),
            livekit_alias: None,
        }
    }

    fn parse(value: &Value) -> Option<Self> {
        let object = value.as_object()?;
        let kind = object.get("type")?.as_str()?.to_owned();
        let text = |key: &str| object.get(key).and_then(Value::as_str).map(str::to_owned);
        Some(Self {
            kind,
            livekit_service_url: text("livekit_service_url"),
            livekit_alias: text("livekit_alias"),
        })
    }

    /// The same transport with `livekit_alias` (what a session membership's `foci_preferred`
    /// carries: Element Call puts the room id).
    pub fn with_alias(mut self, alias: impl Into<String>) -> Self {
        self.livekit_alias = Some(alias.into());
        self
    }

    /// The transport as memberships and the widget API write it: `type`, then
    /// `livekit_service_url` and `livekit_alias` when set.
    ///
    /// ```
    /// use matrix_sdk_rtc::membership::Transport;
    ///
    /// let json = Transport::livekit("https://sfu.example.org").to_json();
    /// assert_eq!(json, serde_json::json!({"type": "livekit", "livekit_service_url": "https://sfu.example.org"}));
    /// ```
    pub fn to_json(&self) -> Value {
        let mut json = serde_json::json!({ "type": self.kind });
        if let Some(url) = &self.livekit_service_url {
            json["livekit_service_url"] = url.as_str().into();
        }
        if let Some(alias) = &self.livekit_alias {
            json["livekit_alias"] = alias.as_str().into();
        }
        json
    }

    /// The service URL, if this is a LiveKit transport.
    pub fn livekit_service_url(&self) -> Option<&str> {
        (self.kind == "livekit").then_some(self.livekit_service_url.as_deref()).flatten()
    }
}

/// Where a membership lives in the room, which decides what replaces or removes it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MembershipSlot {
    /// A state event: the state key (any later state event with this key replaces it).
    State(String),
    /// A sticky event: sender and sticky key.
    Sticky {
        /// The sender.
        sender: String,
        /// `msc4354_sticky_key` of the content.
        sticky_key: String,
    },
}

/// One device's membership of a MatrixRTC session, whatever dialect it came in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Membership {
    /// The dialect it was parsed from.
    pub dialect: Dialect,
    /// The Matrix user (the event sender).
    pub user_id: String,
    /// The device.
    pub device_id: String,
    /// The membership id: `membershipID` of session events (default `user:device`), `member.id`
    /// of sticky events.
    pub member_id: String,
    /// The application, `m.call` for calls.
    pub application: String,
    /// The slot, `{application}#{id}`; session events with `call_id: ""` are the `m.call#ROOM`
    /// slot.
    pub slot_id: String,
    /// `scope` of session events (`m.room` or `m.user`).
    pub scope: Option<String>,
    /// `m.call.intent` (`audio`, `video`, ...), if given.
    pub call_intent: Option<String>,
    /// When the membership started, Unix ms: `created_ts`, else `origin_server_ts`.
    pub created_ts: u64,
    /// When it stops counting, Unix ms: `created_ts + expires` for session events,
    /// the end of stickiness for sticky events.
    pub expires_at: u64,
    /// `focus_active.focus_selection` of session events; sticky members always publish on their
    /// own transport.
    pub focus_selection: Option<FocusSelection>,
    /// The member's own transports (`foci_preferred`, or the sticky `transports.published`).
    pub transports: Vec<Transport>,
    /// The identity this member has on LiveKit: `user:device` for session events, the MSC4195
    /// hash for sticky events.
    pub livekit_identity: String,
    /// The event it came from.
    pub event_id: Option<String>,
    /// Where it lives in the room.
    pub slot: MembershipSlot,
}

impl Membership {
    /// Whether the membership has expired at `now_ms` (Unix ms).
    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.expires_at
    }

    /// The transport this member publishes on, given the oldest membership of the call
    /// (matrix-js-sdk's `getTransport(oldest)`): its own first transport for `multi_sfu` and
    /// sticky members; the oldest member's transport for `oldest_membership`.
    pub fn publishing_transport<'a>(&'a self, oldest: &'a Membership) -> Option<&'a Transport> {
        match (&self.dialect, &self.focus_selection) {
            (Dialect::Sticky, _) | (Dialect::Session, Some(FocusSelection::MultiSfu)) => {
                self.transports.first()
            }
            (Dialect::Session, Some(FocusSelection::OldestMembership)) => {
                if std::ptr::eq(self, oldest) || self.slot == oldest.slot {
                    self.transports.first()
                } else if oldest.focus_selection == Some(FocusSelection::OldestMembership) {
                    oldest.transports.first()
                } else {
                    oldest.publishing_transport(oldest)
                }
            }
            _ => None,
        }
    }
}

/// A Matrix event that may carry memberships, as the edge receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct MembershipEvent {
    /// The event type.
    pub event_type: String,
    /// The state key, for state events.
    pub state_key: Option<String>,
    /// The sender.
    pub sender: String,
    /// The event id.
    pub event_id: Option<String>,
    /// `origin_server_ts`, Unix ms.
    pub origin_server_ts: u64,
    /// The content.
    pub content: Value,
    /// For sticky events: the stickiness duration (`msc4354_sticky.duration_ms`).
    pub sticky_duration_ms: Option<u64>,
    /// For sticky events: the time left as the server counted it
    /// (`unsigned.msc4354_sticky_duration_ttl_ms`), and when that was read (Unix ms).
    pub sticky_ttl: Option<(u64, u64)>,
}

impl MembershipEvent {
    /// Reads the fields of a client-format event (sync, `/messages`, `/state`). `None` when the
    /// JSON is not an event of a membership type.
    pub fn from_json(event: &Value, received_at_ms: u64) -> Option<Self> {
        let object = event.as_object()?;
        let event_type = object.get("type")?.as_str()?;
        if !is_membership_event_type(event_type) {
            return None;
        }
        let sticky_duration_ms =
            object.get("msc4354_sticky").and_then(|s| s.get("duration_ms")).and_then(Value::as_u64);
        let sticky_ttl = object
            .get("unsigned")
            .and_then(|u| u.get("msc4354_sticky_duration_ttl_ms"))
            .and_then(Value::as_u64)
            .map(|ttl| (ttl, received_at_ms));
        Some(Self {
            event_type: event_type.to_owned(),
            state_key: object.get("state_key").and_then(Value::as_str).map(str::to_owned),
            sender: object.get("sender")?.as_str()?.to_owned(),
            event_id: object.get("event_id").and_then(Value::as_str).map(str::to_owned),
            origin_server_ts: object.get("origin_server_ts").and_then(Value::as_u64).unwrap_or(0),
            content: object.get("content").cloned().unwrap_or(Value::Null),
            sticky_duration_ms,
            sticky_ttl,
        })
    }
}

/// Whether `event_type` is one of the membership event types.
pub fn is_membership_event_type(event_type: &str) -> bool {
    matches!(
        event_type,
        CALL_MEMBER_EVENT_TYPE | CALL_MEMBER_STABLE_EVENT_TYPE | RTC_MEMBER_EVENT_TYPE
    )
}

/// What one event says about the memberships in its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipUpdate {
    /// The slot now holds these memberships (one for session and sticky events, several for the
    /// memberships array).
    Joined(Vec<Membership>),
    /// The slot is empty: a leave, or content that is not a valid membership.
    Left(MembershipSlot),
    /// The event is not about memberships (a sticky event without a sticky key, a non-state
    /// call member event).
    Ignored,
}

/// Parses a membership event of any dialect.
pub fn parse(event: &MembershipEvent) -> MembershipUpdate {
    match event.event_type.as_str() {
        CALL_MEMBER_EVENT_TYPE | CALL_MEMBER_STABLE_EVENT_TYPE => {
            let Some(state_key) = &event.state_key else {
                return MembershipUpdate::Ignored;
            };
            let slot = MembershipSlot::State(state_key.clone());
            let parsed = if event.content.get("memberships").is_some() {
                memberships_array::parse(event, &slot)
            } else {
                session::parse(event, &slot).map(|m| vec![m])
            };
            match parsed {
                Some(memberships) if !memberships.is_empty() => {
                    MembershipUpdate::Joined(memberships)
                }
                _ => MembershipUpdate::Left(slot),
            }
        }
        RTC_MEMBER_EVENT_TYPE => sticky::parse(event),
        _ => MembershipUpdate::Ignored,
    }
}

/// Maps a session `call_id` to its slot: `""` is the room call `m.call#ROOM`.
fn slot_for(application: &str, call_id: &str) -> String {
    let id = if call_id.is_empty() && application == CALL_APPLICATION { "ROOM" } else { call_id };
    format!("{application}#{id}")
}

fn str_field<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value.get(key).and_then(Value::as_str)
}
