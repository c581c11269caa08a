//! The old `{"memberships": [...]}` content (one state event per user, 2023/2024): read only.

use serde_json::Value;

use super::{
    CALL_APPLICATION, DEFAULT_EXPIRES_MS, Dialect, FocusSelection, Membership, MembershipEvent,
    MembershipSlot, Transport, slot_for, str_field,
};

pub(super) fn parse(event: &MembershipEvent, slot: &MembershipSlot) -> Option<Vec<Membership>> {
    let entries = event.content.get("memberships")?.as_array()?;
    Some(entries.iter().filter_map(|entry| parse_entry(event, slot, entry)).collect())
}

fn parse_entry(
    event: &MembershipEvent,
    slot: &MembershipSlot,
    entry: &Value,
) -> Option<Membership> {
    let application = str_field(entry, "application")?;
    let device_id = str_field(entry, "device_id")?;
    let call_id = str_field(entry, "call_id").unwrap_or("");
    let created_ts =
        entry.get("created_ts").and_then(Value::as_u64).unwrap_or(event.origin_server_ts);
    let expires_at = match entry.get("expires_ts").and_then(Value::as_u64) {
        Some(absolute) => absolute,
        None => created_ts.saturating_add(
            entry.get("expires").and_then(Value::as_u64).unwrap_or(DEFAULT_EXPIRES_MS),
        ),
    };
    let transports = entry
        .get("foci_active")
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(Transport::parse).collect())
        .unwrap_or_default();
    Some(Membership {
        dialect: Dialect::MembershipsArray,
        user_id: event.sender.clone(),
        device_id: device_id.to_owned(),
        member_id: str_field(entry, "membershipID")
            .map_or_else(|| format!("{}:{device_id}", event.sender), str::to_owned),
        application: application.to_owned(),
        slot_id: slot_for(application, call_id),
        scope: str_field(entry, "scope").map(str::to_owned),
        call_intent: None,
        created_ts,
        expires_at,
        focus_selection: (application == CALL_APPLICATION)
            .then_some(FocusSelection::OldestMembership),
        transports,
        livekit_identity: matrixrtc_identity::legacy_identity(&event.sender, device_id),
        event_id: event.event_id.clone(),
        slot: slot.clone(),
    })
}
