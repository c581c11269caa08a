//! [`CallSession`]: who is in a room's call, as Element Call computes it. Sans-IO: membership
//! events, room membership changes and the current time go in; [`CallState`] comes out.

use std::collections::{BTreeMap, BTreeSet};

use crate::membership::{
    self, Dialect, Membership, MembershipEvent, MembershipSlot, MembershipUpdate, ROOM_CALL_SLOT,
    Transport,
};

/// One device in the call.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallMember {
    /// The membership, as parsed.
    pub membership: Membership,
    /// The transport this member publishes on (its own, or the oldest member's for
    /// `oldest_membership`); `None` when it cannot be subscribed to.
    pub transport: Option<Transport>,
}

impl CallMember {
    /// The user.
    pub fn user_id(&self) -> &str {
        &self.membership.user_id
    }

    /// The device.
    pub fn device_id(&self) -> &str {
        &self.membership.device_id
    }

    /// The member's identity on LiveKit.
    pub fn livekit_identity(&self) -> &str {
        &self.membership.livekit_identity
    }
}

/// The call of a room at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallState {
    /// The members, oldest first.
    pub members: Vec<CallMember>,
    /// The distinct LiveKit service URLs that members publish on (`multi_sfu`: one connection
    /// each), in order of the oldest member publishing there.
    pub service_urls: Vec<String>,
    /// When the state changes next without any event (a membership expires), Unix ms.
    pub next_change_at: Option<u64>,
}

impl CallState {
    /// Whether a call is going on.
    pub fn is_active(&self) -> bool {
        !self.members.is_empty()
    }

    /// The oldest member (whose transport `oldest_membership` members publish on).
    pub fn oldest(&self) -> Option<&CallMember> {
        self.members.first()
    }

    /// The membership of `user_id`'s `device_id`, if it is in the call.
    pub fn member(&self, user_id: &str, device_id: &str) -> Option<&CallMember> {
        self.members.iter().find(|m| m.user_id() == user_id && m.device_id() == device_id)
    }

    /// The transport of the oldest member (`oldest_membership` focus selection).
    pub fn oldest_membership_transport(&self) -> Option<&Transport> {
        self.oldest().and_then(|m| m.transport.as_ref())
    }
}

/// The memberships of one call slot of a room; feed it events and ask for [`CallState`].
///
/// ```
/// use matrix_sdk_rtc::CallSession;
/// use matrix_sdk_rtc::membership::MembershipEvent;
/// let mut session = CallSession::new();
/// session.set_room_membership("@a:example.org", true);
/// let event = serde_json::json!({
///     "type": "org.matrix.msc3401.call.member", "state_key": "_@a:example.org_DEV_m.call",
///     "sender": "@a:example.org", "origin_server_ts": 1_000,
///     "content": {"application": "m.call", "call_id": "", "scope": "m.room", "device_id": "DEV",
///                 "expires": 14_400_000, "focus_active": {"type": "livekit", "focus_selection": "multi_sfu"},
///                 "foci_preferred": [{"type": "livekit", "livekit_service_url": "https://rtc.example.org",
///                                     "livekit_alias": "!r:example.org"}]}
/// });
/// session.handle_event(&MembershipEvent::from_json(&event, 1_000).unwrap());
/// let state = session.state(2_000);
/// assert!(state.is_active());
/// assert_eq!(state.members[0].livekit_identity(), "@a:example.org:DEV");
/// assert_eq!(state.service_urls, ["https://rtc.example.org"]);
/// ```
#[derive(Debug, Clone)]
pub struct CallSession {
    slot_id: String,
    memberships: BTreeMap<MembershipSlot, Vec<Membership>>,
    joined_users: BTreeSet<String>,
}

impl Default for CallSession {
    fn default() -> Self {
        Self::new()
    }
}

impl CallSession {
    /// The room-wide call (`m.call#ROOM`), which is the call Element Call joins.
    pub fn new() -> Self {
        Self::for_slot(ROOM_CALL_SLOT)
    }

    /// A session of another slot (`{application}#{id}`).
    pub fn for_slot(slot_id: impl Into<String>) -> Self {
        Self {
            slot_id: slot_id.into(),
            memberships: BTreeMap::new(),
            joined_users: BTreeSet::new(),
        }
    }

    /// The slot this session follows.
    pub fn slot_id(&self) -> &str {
        &self.slot_id
    }

    /// Applies a membership event (the current state event of its state key, or a sticky event).
    /// Returns whether anything changed.
    pub fn handle_event(&mut self, event: &MembershipEvent) -> bool {
        match membership::parse(event) {
            MembershipUpdate::Joined(list) => {
                let slot = list[0].slot.clone();
                // Sticky map: the latest expiry wins for one (sender, sticky key).
                if let (MembershipSlot::Sticky { .. }, Some(existing)) =
                    (&slot, self.memberships.get(&slot))
                    && existing.first().is_some_and(|e| e.expires_at > list[0].expires_at)
                {
                    return false;
                }
                let changed = self.memberships.get(&slot) != Some(&list);
                self.memberships.insert(slot, list);
                changed
            }
            MembershipUpdate::Left(slot) => {
                tracing::debug!(?slot, "membership left");
                self.memberships.remove(&slot).is_some()
            }
            MembershipUpdate::Ignored => false,
        }
    }

    /// Records whether `user_id` is joined to the room; members who are not are not in the call.
    pub fn set_room_membership(&mut self, user_id: &str, joined: bool) -> bool {
        if joined {
            self.joined_users.insert(user_id.to_owned())
        } else {
            self.joined_users.remove(user_id)
        }
    }

    /// Forgets every membership and room member (before loading a fresh room state).
    pub fn clear(&mut self) {
        self.memberships.clear();
        self.joined_users.clear();
    }

    /// The call at `now_ms` (Unix ms).
    pub fn state(&self, now_ms: u64) -> CallState {
        let mut next_change_at: Option<u64> = None;
        let mut live: Vec<&Membership> = Vec::new();
        for membership in self.memberships.values().flatten() {
            if membership.slot_id != self.slot_id
                || !self.joined_users.contains(&membership.user_id)
            {
                continue;
            }
            if membership.is_expired(now_ms) {
                continue;
            }
            next_change_at = Some(
                next_change_at.map_or(membership.expires_at, |t| t.min(membership.expires_at)),
            );
            live.push(membership);
        }
        // A device that appears in several dialects at once counts once: the newest wins.
        live.sort_by(|a, b| (a.created_ts, &a.slot).cmp(&(b.created_ts, &b.slot)));
        let mut seen = BTreeSet::new();
        let mut unique: Vec<&Membership> = Vec::new();
        for membership in live.iter().rev() {
            if seen.insert((membership.user_id.as_str(), membership.device_id.as_str())) {
                unique.push(membership);
            }
        }
        unique.reverse();

        let Some(oldest) = unique.first().copied() else {
            return CallState { members: Vec::new(), service_urls: Vec::new(), next_change_at };
        };
        let members: Vec<CallMember> = unique
            .iter()
            .map(|m| CallMember {
                membership: (*m).clone(),
                transport: match m.dialect {
                    Dialect::MembershipsArray => None,
                    _ => m.publishing_transport(oldest).cloned(),
                },
            })
            .collect();
        let mut service_urls: Vec<String> = Vec::new();
        for url in members.iter().filter_map(|m| m.transport.as_ref()?.livekit_service_url()) {
            if !service_urls.iter().any(|u| u == url) {
                service_urls.push(url.to_owned());
            }
        }
        CallState { members, service_urls, next_change_at }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const HOUR: u64 = 3_600_000;

    fn session_event(
        user: &str,
        device: &str,
        ts: u64,
        selection: &str,
        url: &str,
        extra: serde_json::Value,
    ) -> MembershipEvent {
        let mut content = json!({
            "application": "m.call", "call_id": "", "scope": "m.room", "device_id": device,
            "expires": 4 * HOUR, "focus_active": {"type": "livekit", "focus_selection": selection},
            "foci_preferred": [{"type": "livekit", "livekit_service_url": url, "livekit_alias": "!r"}],
        });
        for (k, v) in extra.as_object().unwrap() {
            content[k] = v.clone();
        }
        MembershipEvent::from_json(
            &json!({"type": "org.matrix.msc3401.call.member", "state_key": format!("_{user}_{device}_m.call"),
                    "sender": user, "origin_server_ts": ts, "content": content}),
            ts,
        )
        .unwrap()
    }

    fn leave(user: &str, device: &str) -> MembershipEvent {
        MembershipEvent::from_json(
            &json!({"type": "org.matrix.msc3401.call.member", "state_key": format!("_{user}_{device}_m.call"),
                    "sender": user, "origin_server_ts": 0, "content": {}}),
            0,
        )
        .unwrap()
    }

    fn session(users: &[&str]) -> CallSession {
        let mut s = CallSession::new();
        for u in users {
            s.set_room_membership(u, true);
        }
        s
    }

    #[test]
    fn join_then_leave() {
        let mut s = session(&["@a:x"]);
        assert!(!s.state(0).is_active());
        assert!(s.handle_event(&session_event(
            "@a:x",
            "A",
            1000,
            "multi_sfu",
            "https://a",
            json!({})
        )));
        assert!(s.state(2000).is_active());
        assert!(s.handle_event(&leave("@a:x", "A")));
        assert!(!s.state(2000).is_active());
        assert!(!s.handle_event(&leave("@a:x", "A")), "a second leave changes nothing");
    }

    #[test]
    fn expiry_on_injected_time_takes_no_time() {
        let mut s = session(&["@a:x"]);
        s.handle_event(&session_event("@a:x", "A", 1000, "multi_sfu", "https://a", json!({})));
        let state = s.state(1000);
        assert_eq!(state.next_change_at, Some(1000 + 4 * HOUR));
        assert!(s.state(1000 + 4 * HOUR - 1).is_active());
        assert!(!s.state(1000 + 4 * HOUR).is_active(), "expired after exactly 4 h");
        // created_ts of an update counts instead of origin_server_ts.
        s.handle_event(&session_event(
            "@a:x",
            "A",
            5 * HOUR,
            "multi_sfu",
            "https://a",
            json!({"created_ts": 1000, "expires": 8 * HOUR}),
        ));
        assert!(s.state(7 * HOUR).is_active());
        assert!(!s.state(1000 + 8 * HOUR).is_active());
    }

    #[test]
    fn members_not_joined_to_the_room_are_not_in_the_call() {
        let mut s = session(&["@a:x"]);
        s.handle_event(&session_event("@b:x", "B", 1000, "multi_sfu", "https://b", json!({})));
        assert!(!s.state(2000).is_active());
        s.set_room_membership("@b:x", true);
        assert!(s.state(2000).is_active());
        s.set_room_membership("@b:x", false);
        assert!(!s.state(2000).is_active());
    }

    #[test]
    fn multi_sfu_lists_each_distinct_focus_oldest_first() {
        let mut s = session(&["@a:x", "@b:y", "@c:y"]);
        s.handle_event(&session_event("@b:y", "B", 2000, "multi_sfu", "https://y", json!({})));
        s.handle_event(&session_event("@a:x", "A", 1000, "multi_sfu", "https://x", json!({})));
        s.handle_event(&session_event("@c:y", "C", 3000, "multi_sfu", "https://y", json!({})));
        let state = s.state(4000);
        assert_eq!(state.oldest().unwrap().user_id(), "@a:x");
        assert_eq!(state.service_urls, ["https://x", "https://y"]);
        assert_eq!(state.member("@c:y", "C").unwrap().livekit_identity(), "@c:y:C");
    }

    #[test]
    fn oldest_membership_publishes_on_the_oldest_members_focus() {
        let mut s = session(&["@a:x", "@b:y"]);
        s.handle_event(&session_event(
            "@a:x",
            "A",
            1000,
            "oldest_membership",
            "https://x",
            json!({}),
        ));
        s.handle_event(&session_event(
            "@b:y",
            "B",
            2000,
            "oldest_membership",
            "https://y",
            json!({}),
        ));
        let state = s.state(3000);
        assert_eq!(
            state.oldest_membership_transport().unwrap().livekit_service_url(),
            Some("https://x")
        );
        assert_eq!(
            state.member("@b:y", "B").unwrap().transport.as_ref().unwrap().livekit_service_url(),
            Some("https://x")
        );
        assert_eq!(state.service_urls, ["https://x"]);
        // The oldest leaves: b is the oldest now and publishes on its own focus.
        s.handle_event(&leave("@a:x", "A"));
        assert_eq!(s.state(3000).service_urls, ["https://y"]);
    }

    #[test]
    fn unknown_focus_selection_cannot_be_subscribed() {
        let mut s = session(&["@a:x"]);
        s.handle_event(&session_event("@a:x", "A", 1000, "round_robin", "https://x", json!({})));
        let state = s.state(2000);
        assert!(state.is_active());
        assert_eq!(state.members[0].transport, None);
        assert!(state.service_urls.is_empty());
    }

    #[test]
    fn other_slots_are_not_this_call() {
        let mut s = session(&["@a:x"]);
        s.handle_event(&session_event(
            "@a:x",
            "A",
            1000,
            "multi_sfu",
            "https://x",
            json!({"call_id": "other"}),
        ));
        assert!(!s.state(2000).is_active());
        let mut other = CallSession::for_slot("m.call#other");
        other.set_room_membership("@a:x", true);
        other.handle_event(&session_event(
            "@a:x",
            "A",
            1000,
            "multi_sfu",
            "https://x",
            json!({"call_id": "other"}),
        ));
        assert!(other.state(2000).is_active());
    }

    #[test]
    fn sticky_members_expire_with_their_stickiness_and_count_once_per_device() {
        let sticky = |ts: u64, duration: u64| {
            MembershipEvent::from_json(
                &json!({"type": "org.matrix.msc4143.rtc.member", "sender": "@a:x", "origin_server_ts": ts,
                        "msc4354_sticky": {"duration_ms": duration},
                        "content": {"slot_id": "m.call#ROOM", "application": {"type": "m.call"},
                                    "member": {"user_id": "@a:x", "device_id": "A", "id": "uuid-1"},
                                    "transports": {"published": [{"type": "livekit", "livekit_service_url": "https://x"}],
                                                   "can_subscribe": ["livekit"]},
                                    "versions": [], "msc4354_sticky_key": "uuid-1"}}),
                ts,
            )
            .unwrap()
        };
        let mut s = session(&["@a:x"]);
        s.handle_event(&sticky(1000, 10 * HOUR));
        assert_eq!(s.state(1000).next_change_at, Some(1000 + HOUR), "stickiness is capped at 1 h");
        assert!(!s.state(1000 + HOUR).is_active());
        // The same device also with a state membership: one member, the newer membership.
        s.handle_event(&session_event("@a:x", "A", 2000, "multi_sfu", "https://state", json!({})));
        let state = s.state(2500);
        assert_eq!(state.members.len(), 1);
        assert_eq!(state.members[0].membership.dialect, Dialect::Session);
        // An older copy of the sticky event does not replace a newer one.
        s.handle_event(&sticky(900_000, HOUR));
        assert!(!s.handle_event(&sticky(1000, HOUR)));
    }
}
