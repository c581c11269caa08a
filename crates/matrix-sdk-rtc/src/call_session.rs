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
        Self { slot_id: slot_id.into(), memberships: BTreeMap::new(), joined_users: BTreeSet::new() }
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
                if let (MembershipSlot::Sticky { .. }, Some(existing)) = (&slot, self.memberships.get(&slot)) {
                    if existing.first().is_some_and(|e| e.expires_at > list[0].expires_at) {
                        return false;
                    }
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
        if joined { self.joined_users.insert(user_id.to_owned()) } else { self.joined_users.remove(user_id) }
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
            if membership.slot_id != self.slot_id || !self.joined_users.contains(&membership.user_id) {
                continue;
            }
            if membership.is_expired(now_ms) {
                continue;
            }
            next_change_at = Some(next_change_at.map_or(membership.expires_at, |t| t.min(membership.expires_at)));
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
