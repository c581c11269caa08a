//! Sticky `org.matrix.msc4143.rtc.member` events (MSC4143 + MSC4354), as Element Call 0.26.1
//! sends them in "matrix_2_0" mode.
//!
//! Element Call 0.26.1 sends `transports: {published: [...], can_subscribe: [...]}`; older
//! matrix-js-sdk builds sent `rtc_transports: [...]`. Both are read; the serializer writes the
//! 0.26.1 shape.

use serde_json::{Value, json};

use super::{
    Dialect, MAX_STICKY_DURATION_MS, Membership, MembershipEvent, MembershipSlot, MembershipUpdate,
    Transport, str_field,
};

fn sticky_key(content: &Value) -> Option<&str> {
    str_field(content, "msc4354_sticky_key").or_else(|| str_field(content, "sticky_key"))
}

pub(super) fn parse(event: &MembershipEvent) -> MembershipUpdate {
    let c = &event.content;
    let Some(key) = sticky_key(c) else {
        return MembershipUpdate::Ignored;
    };
    if let (Some(a), Some(b)) = (str_field(c, "msc4354_sticky_key"), str_field(c, "sticky_key"))
        && a != b
    {
        return MembershipUpdate::Ignored;
    }
    let slot = MembershipSlot::Sticky { sender: event.sender.clone(), sticky_key: key.to_owned() };
    match parse_join(event, &slot) {
        Some(membership) => MembershipUpdate::Joined(vec![membership]),
        None => MembershipUpdate::Left(slot),
    }
}

fn parse_join(event: &MembershipEvent, slot: &MembershipSlot) -> Option<Membership> {
    let c = &event.content;
    let slot_id = str_field(c, "slot_id")?;
    let application = c.get("application")?;
    let application_type = str_field(application, "type")?;
    if application_type.contains('#')
        || !slot_id.starts_with(&format!("{application_type}#"))
        || slot_id.matches('#').count() != 1
    {
        return None;
    }
    let member = c.get("member")?;
    let user_id = str_field(member, "user_id")?;
    let device_id = str_field(member, "device_id")?;
    let member_id = str_field(member, "id")?;
    // matrix-js-sdk: member.user_id must be the sender.
    if user_id != event.sender {
        return None;
    }
    let transports = if let Some(published) = c.get("transports") {
        published
            .get("published")?
            .as_array()?
            .iter()
            .map(Transport::parse)
            .collect::<Option<Vec<_>>>()?
    } else {
        c.get("rtc_transports")?
            .as_array()?
            .iter()
            .map(Transport::parse)
            .collect::<Option<Vec<_>>>()?
    };
    if !c.get("versions")?.as_array()?.iter().all(Value::is_string) {
        return None;
    }
    let duration =
        event.sticky_duration_ms.unwrap_or(MAX_STICKY_DURATION_MS).min(MAX_STICKY_DURATION_MS);
    let expires_at = match event.sticky_ttl {
        Some((ttl, read_at)) => read_at.saturating_add(ttl.min(duration)),
        None => event.origin_server_ts.saturating_add(duration),
    };
    Some(Membership {
        dialect: Dialect::Sticky,
        user_id: user_id.to_owned(),
        device_id: device_id.to_owned(),
        member_id: member_id.to_owned(),
        application: application_type.to_owned(),
        slot_id: slot_id.to_owned(),
        scope: None,
        call_intent: str_field(application, "m.call.intent").map(str::to_owned),
        created_ts: event.origin_server_ts,
        expires_at,
        focus_selection: None,
        transports,
        livekit_identity: matrixrtc_identity::hashed_identity(user_id, device_id, member_id),
        event_id: event.event_id.clone(),
        slot: slot.clone(),
    })
}

/// The content of our own sticky membership (opt-in dialect), in Element Call 0.26.1's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StickyMembershipContent {
    /// Our user.
    pub user_id: String,
    /// Our device.
    pub device_id: String,
    /// The member id, also the sticky key (a fresh UUID per join in Element Call).
    pub member_id: String,
    /// The authorization service we publish through.
    pub service_url: String,
    /// `m.call.intent`.
    pub call_intent: Option<String>,
}

impl StickyMembershipContent {
    /// The membership of `user_id`'s `device_id` with the member id (and sticky key)
    /// `member_id`, publishing through `service_url`.
    pub fn new(user_id: &str, device_id: &str, member_id: &str, service_url: &str) -> Self {
        Self {
            user_id: user_id.to_owned(),
            device_id: device_id.to_owned(),
            member_id: member_id.to_owned(),
            service_url: service_url.to_owned(),
            call_intent: None,
        }
    }

    /// The join / refresh content.
    pub fn to_json(&self) -> Value {
        let mut application = json!({"type": super::CALL_APPLICATION});
        if let Some(intent) = &self.call_intent {
            application["m.call.intent"] = json!(intent);
        }
        json!({
            "slot_id": super::ROOM_CALL_SLOT,
            "application": application,
            "member": {"user_id": self.user_id, "device_id": self.device_id, "id": self.member_id},
            "transports": {
                "published": [Transport::livekit(self.service_url.as_str()).to_json()],
                "can_subscribe": ["livekit"],
            },
            "versions": [],
            "msc4354_sticky_key": self.member_id,
        })
    }

    /// The leave content: only the sticky key.
    pub fn leave_json(&self) -> Value {
        json!({"msc4354_sticky_key": self.member_id})
    }
}
