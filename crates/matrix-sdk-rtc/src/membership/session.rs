//! Per-device session state events (`org.matrix.msc3401.call.member`): Element Call's default.

use serde::Serialize;
use serde_json::Value;

use super::{
    CALL_APPLICATION, DEFAULT_EXPIRES_MS, Dialect, FocusSelection, Membership, MembershipEvent,
    MembershipSlot, Transport, slot_for, str_field,
};

/// The state key of a device's session membership of the room call:
/// `_{user}_{device}_m.call`, without the leading `_` in MSC3757 room versions (owned state keys).
///
/// ```
/// use matrix_sdk_rtc::membership::session_state_key;
/// assert_eq!(session_state_key("@bot:example.org", "DEV", "12"), "_@bot:example.org_DEV_m.call");
/// assert_eq!(session_state_key("@bot:example.org", "DEV", "org.matrix.msc3757.11"), "@bot:example.org_DEV_m.call");
/// ```
pub fn session_state_key(user_id: &str, device_id: &str, room_version: &str) -> String {
    let base = format!("{user_id}_{device_id}_{CALL_APPLICATION}");
    let owned = room_version.strip_prefix("org.matrix.msc").is_some_and(|rest| {
        (rest.starts_with("3757") || rest.starts_with("3779"))
            && !rest[4..].starts_with(|c: char| c.is_ascii_alphanumeric())
    });
    if owned { base } else { format!("_{base}") }
}

pub(super) fn parse(event: &MembershipEvent, slot: &MembershipSlot) -> Option<Membership> {
    let c = &event.content;
    // matrix-js-sdk's checks: application, call_id and device_id strings, focus_active with a
    // string type; optional fields typed when present.
    let application = str_field(c, "application")?;
    let call_id = str_field(c, "call_id")?;
    let device_id = str_field(c, "device_id")?;
    let focus_active = c.get("focus_active")?;
    focus_active.get("type")?.as_str()?;
    if c.get("scope").is_some_and(|s| !s.is_string())
        || c.get("m.call.intent").is_some_and(|s| !s.is_string())
        || c.get("created_ts").is_some_and(|s| !s.is_u64())
        || c.get("expires").is_some_and(|s| !s.is_u64())
    {
        return None;
    }
    let transports = match c.get("foci_preferred") {
        None => Vec::new(),
        Some(Value::Array(items)) => {
            items.iter().map(Transport::parse).collect::<Option<Vec<_>>>()?
        }
        Some(_) => return None,
    };
    let created_ts = c.get("created_ts").and_then(Value::as_u64).unwrap_or(event.origin_server_ts);
    let expires = c.get("expires").and_then(Value::as_u64).unwrap_or(DEFAULT_EXPIRES_MS);
    let member_id = str_field(c, "membershipID")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}:{device_id}", event.sender));
    Some(Membership {
        dialect: Dialect::Session,
        user_id: event.sender.clone(),
        device_id: device_id.to_owned(),
        member_id,
        application: application.to_owned(),
        slot_id: slot_for(application, call_id),
        scope: str_field(c, "scope").map(str::to_owned),
        call_intent: str_field(c, "m.call.intent").map(str::to_owned),
        created_ts,
        expires_at: created_ts.saturating_add(expires),
        focus_selection: str_field(focus_active, "focus_selection").map(FocusSelection::parse),
        transports,
        livekit_identity: matrixrtc_identity::legacy_identity(&event.sender, device_id),
        event_id: event.event_id.clone(),
        slot: slot.clone(),
    })
}

/// The content of our own session membership, in exactly the shape Element Call sends
/// (compatibility mode), with what ruma also requires (`expires`, `scope`, `livekit_alias`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SessionMembershipContent {
    /// `m.call`.
    pub application: String,
    /// `""`: the room call.
    pub call_id: String,
    /// `m.room`.
    pub scope: String,
    /// Our device.
    pub device_id: String,
    /// `{user}:{device}`.
    #[serde(rename = "membershipID")]
    pub membership_id: String,
    /// Lifetime in ms, counted from `created_ts` (or the first event's `origin_server_ts`).
    pub expires: u64,
    /// `m.call.intent`.
    #[serde(rename = "m.call.intent", skip_serializing_if = "Option::is_none")]
    pub call_intent: Option<String>,
    /// `{"type": "livekit", "focus_selection": ...}`.
    pub focus_active: Value,
    /// Our transport, with `livekit_alias` = the room id.
    pub foci_preferred: Vec<Value>,
    /// Only on updates: when the membership started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_ts: Option<u64>,
}

impl SessionMembershipContent {
    /// A first join of `user_id`/`device_id` in `room_id`, publishing on `service_url`
    /// (`multi_sfu`, as Element Call's default mode).
    pub fn new(user_id: &str, device_id: &str, room_id: &str, service_url: &str) -> Self {
        Self {
            application: CALL_APPLICATION.to_owned(),
            call_id: String::new(),
            scope: "m.room".to_owned(),
            device_id: device_id.to_owned(),
            membership_id: format!("{user_id}:{device_id}"),
            expires: DEFAULT_EXPIRES_MS,
            call_intent: None,
            focus_active: serde_json::json!({"type": "livekit", "focus_selection": FocusSelection::MultiSfu.as_str()}),
            foci_preferred: vec![Transport::livekit(service_url).with_alias(room_id).to_json()],
            created_ts: None,
        }
    }

    /// The JSON content.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}
