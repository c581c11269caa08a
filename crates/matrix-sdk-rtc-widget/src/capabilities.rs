//! Which widget capabilities the host grants: a policy over the capability strings of the widget
//! API, and matrix-sdk's [`CapabilitiesProvider`] on top of it.
//!
//! The widget asks for capabilities as strings (`org.matrix.msc2762.send.state_event:…`,
//! `org.matrix.msc3819.receive.to_device:…`, …). The policy keeps those it allows and refuses the
//! rest; nothing the widget did not ask for is added. matrix-sdk 0.18's driver understands only
//! the strings it parses (room events, state events, to-device, delayed events, `requires_client`,
//! `download_file`); others (`m.always_on_screen`, timelines, sticky events, RTC transports) never
//! reach the policy: the driver logs and drops them, and Element Call works without them.

use std::collections::BTreeSet;

use matrix_sdk::widget::{Capabilities, CapabilitiesProvider};
use tokio::sync::{mpsc, watch};

use crate::host::HostEvent;

/// Capability strings of the widget API (`matrix-widget-api`'s names).
mod name {
    pub(super) const SEND_EVENT: &str = "org.matrix.msc2762.send.event:";
    pub(super) const RECEIVE_EVENT: &str = "org.matrix.msc2762.receive.event:";
    pub(super) const SEND_STATE: &str = "org.matrix.msc2762.send.state_event:";
    pub(super) const RECEIVE_STATE: &str = "org.matrix.msc2762.receive.state_event:";
    pub(super) const SEND_TO_DEVICE: &str = "org.matrix.msc3819.send.to_device:";
    pub(super) const RECEIVE_TO_DEVICE: &str = "org.matrix.msc3819.receive.to_device:";
    pub(super) const REQUIRES_CLIENT: &str = "io.element.requires_client";
    pub(super) const SEND_DELAYED_EVENT: &str = "org.matrix.msc4157.send.delayed_event";
    pub(super) const UPDATE_DELAYED_EVENT: &str = "org.matrix.msc4157.update_delayed_event";
    pub(super) const DOWNLOAD_FILE: &str = "org.matrix.msc4039.download_file";
    pub(super) const RTC_TRANSPORTS: &str = "org.matrix.msc4515.rtc_transports";
}

/// The capability to ask the host for the homeserver's RTC transports (MSC4515), which the
/// host serves itself.
pub(crate) const RTC_TRANSPORTS: &str = name::RTC_TRANSPORTS;

/// The call membership state event of the session dialect.
const CALL_MEMBER: &str = "org.matrix.msc3401.call.member";
/// Element Call's per-participant media keys.
const ENCRYPTION_KEYS: &str = "io.element.call.encryption_keys";

/// The capabilities a host grants, as the widget API's capability strings.
///
/// ```
/// use matrix_sdk_rtc_widget::CapabilityPolicy;
///
/// let policy = CapabilityPolicy::element_call("@bot:example.org", "BOTDEVICE");
/// let grant = policy.grant([
///     "org.matrix.msc2762.send.state_event:org.matrix.msc3401.call.member#_@bot:example.org_BOTDEVICE_m.call",
///     "org.matrix.msc2762.send.state_event:org.matrix.msc3401.call.member#_@alice:example.org_A_m.call",
///     "org.matrix.msc2762.send.event:m.room.message",
/// ]);
/// assert_eq!(grant.approved.len(), 1);
/// assert_eq!(grant.refused.len(), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct CapabilityPolicy {
    allowed: BTreeSet<String>,
}

/// What a [`CapabilityPolicy`] made of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// The capabilities asked for and allowed, in the order asked.
    pub approved: Vec<String>,
    /// The capabilities asked for and refused, in the order asked.
    pub refused: Vec<String>,
}

impl Grant {
    /// Whether the widget may read state events of `event_type` with `state_key`.
    pub(crate) fn reads_state(&self, event_type: &str, state_key: &str) -> bool {
        self.approved.iter().any(|capability| {
            capability.strip_prefix(name::RECEIVE_STATE).is_some_and(|filter| {
                match filter.split_once('#') {
                    Some((kind, key)) => kind == event_type && key == state_key,
                    None => filter == event_type,
                }
            })
        })
    }
}

impl CapabilityPolicy {
    /// A policy that grants nothing.
    pub fn deny_all() -> Self {
        Self::default()
    }

    /// What Element Call needs to be in a call as `user_id` on `device_id`, and no more (the
    /// set Element X grants):
    ///
    /// - reading the room's creation, name, members, encryption and call memberships;
    /// - sending its own call membership (every state key Element Call uses for this user and
    ///   device, and no other user's or device's);
    /// - sending and receiving Element Call's media keys (to-device, which the driver
    ///   Olm-encrypts in encrypted rooms, and the older room-event form), reactions and their
    ///   redactions, rageshake requests, call declines; sending call notifications;
    /// - delayed events (its leave, sent by the homeserver if the program dies), the
    ///   `requires_client` flag and file downloads;
    /// - the homeserver's RTC transports (MSC4515), which the host answers itself.
    ///
    /// Refused: anything else Element Call asks for, e.g. the legacy 1:1 call signalling
    /// (`m.call.invite`, … over to-device) and sticky `org.matrix.msc4143.rtc.member` room
    /// events (only Element Call's `matrix_2_0` mode sends those).
    pub fn element_call(user_id: &str, device_id: &str) -> Self {
        let mut policy = Self::default();
        for state in
            ["m.room.create", "m.room.name", "m.room.member", "m.room.encryption", CALL_MEMBER]
        {
            policy.allow(format!("{}{state}", name::RECEIVE_STATE));
        }
        let keys = [
            user_id.to_owned(),
            format!("{user_id}_{device_id}"),
            format!("{user_id}_{device_id}_m.call"),
            format!("_{user_id}_{device_id}"),
            format!("_{user_id}_{device_id}_m.call"),
        ];
        for key in keys {
            policy.allow(format!("{}{CALL_MEMBER}#{key}", name::SEND_STATE));
        }
        for event in ["org.matrix.msc4075.rtc.notification", "org.matrix.msc4075.call.notify"] {
            policy.allow(format!("{}{event}", name::SEND_EVENT));
        }
        for event in [
            "org.matrix.rageshake_request",
            ENCRYPTION_KEYS,
            "io.element.call.reaction",
            "m.reaction",
            "m.room.redaction",
            "org.matrix.msc4310.rtc.decline",
        ] {
            policy.allow(format!("{}{event}", name::SEND_EVENT));
            policy.allow(format!("{}{event}", name::RECEIVE_EVENT));
        }
        policy.allow(format!("{}{ENCRYPTION_KEYS}", name::SEND_TO_DEVICE));
        policy.allow(format!("{}{ENCRYPTION_KEYS}", name::RECEIVE_TO_DEVICE));
        policy.allow(name::RTC_TRANSPORTS);
        for flag in [
            name::REQUIRES_CLIENT,
            name::SEND_DELAYED_EVENT,
            name::UPDATE_DELAYED_EVENT,
            name::DOWNLOAD_FILE,
        ] {
            policy.allow(flag);
        }
        policy
    }

    /// Allows one more capability string.
    pub fn allow(&mut self, capability: impl Into<String>) -> &mut Self {
        self.allowed.insert(capability.into());
        self
    }

    /// Whether `capability` is allowed.
    pub fn allows(&self, capability: &str) -> bool {
        self.allowed.contains(capability)
    }

    /// Splits `requested` into what is granted and what is refused.
    pub fn grant<'a>(&self, requested: impl IntoIterator<Item = &'a str>) -> Grant {
        let mut grant = Grant::default();
        let mut seen = BTreeSet::new();
        for capability in requested {
            if !seen.insert(capability) {
                continue;
            }
            if self.allows(capability) {
                grant.approved.push(capability.to_owned());
            } else {
                grant.refused.push(capability.to_owned());
            }
        }
        grant
    }
}

/// matrix-sdk's capability provider over a [`CapabilityPolicy`]; says what it granted as a
/// [`HostEvent::Capabilities`], and to the session.
#[derive(Debug)]
pub(crate) struct PolicyProvider {
    pub(crate) policy: CapabilityPolicy,
    pub(crate) events: mpsc::Sender<HostEvent>,
    pub(crate) granted: watch::Sender<Option<Grant>>,
}

impl CapabilitiesProvider for PolicyProvider {
    async fn acquire_capabilities(&self, requested: Capabilities) -> Capabilities {
        let grant = match serde_json::to_value(&requested) {
            Ok(serde_json::Value::Array(list)) => {
                let strings: Vec<&str> = list.iter().filter_map(|v| v.as_str()).collect();
                self.policy.grant(strings)
            }
            _ => {
                tracing::warn!("the widget's capabilities could not be read; granting none");
                Grant::default()
            }
        };
        if !grant.refused.is_empty() {
            tracing::info!(refused = ?grant.refused, "widget capabilities refused by the policy");
        }
        tracing::debug!(approved = ?grant.approved, "widget capabilities granted");
        let approved = to_capabilities(&grant.approved);
        self.granted.send_replace(Some(grant.clone()));
        crate::host::report(&self.events, HostEvent::Capabilities(grant));
        approved
    }
}

/// matrix-sdk's [`Capabilities`] from capability strings it understands.
fn to_capabilities(strings: &[String]) -> Capabilities {
    serde_json::from_value(serde_json::Value::from(strings.to_vec())).unwrap_or_else(|error| {
        tracing::warn!(%error, "granted capabilities not understood by the driver; granting none");
        Capabilities::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: &str = "@bot:example.org";

    fn policy() -> CapabilityPolicy {
        CapabilityPolicy::element_call(ME, "DEV")
    }

    #[test]
    fn element_call_may_send_only_its_own_memberships() {
        let p = policy();
        let send = |key: &str| format!("{}{CALL_MEMBER}#{key}", name::SEND_STATE);
        for key in
            ["@bot:example.org", "_@bot:example.org_DEV_m.call", "@bot:example.org_DEV_m.call"]
        {
            assert!(p.allows(&send(key)), "{key}");
        }
        for key in [
            "_@bot:example.org_OTHER_m.call",
            "_@eve:example.org_DEV_m.call",
            "",
            "@bot:example.org_DEV_m.call.x",
        ] {
            assert!(!p.allows(&send(key)), "{key}");
        }
        // No state key in the filter would mean any state key.
        assert!(!p.allows(&format!("{}{CALL_MEMBER}", name::SEND_STATE)));
    }

    #[test]
    fn what_element_call_0_26_asks_for_is_split_as_element_x_does() {
        let asked = [
            "org.matrix.msc2762.receive.state_event:m.room.encryption",
            "org.matrix.msc2762.receive.state_event:org.matrix.msc3401.call.member",
            "org.matrix.msc3819.send.to_device:io.element.call.encryption_keys",
            "org.matrix.msc3819.receive.to_device:io.element.call.encryption_keys",
            "org.matrix.msc3819.send.to_device:m.call.invite",
            "org.matrix.msc2762.send.event:org.matrix.msc4143.rtc.member",
            "org.matrix.msc4157.send.delayed_event",
            "org.matrix.msc4157.update_delayed_event",
            "org.matrix.msc2762.send.event:m.room.message",
            "org.matrix.msc2762.send.event:m.room.message",
        ];
        let grant = policy().grant(asked);
        assert_eq!(
            grant.approved,
            asked[..4].iter().chain(&asked[6..8]).copied().collect::<Vec<_>>()
        );
        assert_eq!(
            grant.refused,
            [
                "org.matrix.msc3819.send.to_device:m.call.invite",
                "org.matrix.msc2762.send.event:org.matrix.msc4143.rtc.member",
                "org.matrix.msc2762.send.event:m.room.message",
            ]
        );
    }

    #[test]
    fn a_grant_says_which_state_may_be_read() {
        let grant = policy().grant([
            "org.matrix.msc2762.receive.state_event:org.matrix.msc3401.call.member",
            "org.matrix.msc2762.receive.state_event:m.room.name",
        ]);
        assert!(grant.reads_state(CALL_MEMBER, "_@a:b_D_m.call"));
        assert!(grant.reads_state("m.room.name", ""));
        assert!(!grant.reads_state("m.room.member", "@a:b"), "asked for, not granted");
        assert!(!grant.reads_state("m.room.topic", ""));
        let mut keyed = CapabilityPolicy::deny_all();
        keyed.allow("org.matrix.msc2762.receive.state_event:m.room.member#@a:b");
        let grant = keyed.grant(["org.matrix.msc2762.receive.state_event:m.room.member#@a:b"]);
        assert!(grant.reads_state("m.room.member", "@a:b"));
        assert!(!grant.reads_state("m.room.member", "@c:d"));
    }

    #[test]
    fn deny_all_refuses_everything() {
        let grant = CapabilityPolicy::deny_all().grant(["io.element.requires_client"]);
        assert!(grant.approved.is_empty());
        assert_eq!(grant.refused, ["io.element.requires_client"]);
    }

    #[test]
    fn granted_strings_become_the_drivers_capabilities_and_back() {
        let p = policy();
        let strings: Vec<String> =
            p.allowed.iter().filter(|c| *c != RTC_TRANSPORTS).cloned().collect();
        let capabilities = to_capabilities(&strings);
        assert!(capabilities.send_delayed_event && capabilities.update_delayed_event);
        assert!(capabilities.requires_client && capabilities.download_file);
        let back = serde_json::to_value(&capabilities).unwrap();
        let mut back: Vec<String> =
            back.as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect();
        back.sort();
        assert_eq!(back, strings, "every allowed string is one the driver understands");
    }
}
