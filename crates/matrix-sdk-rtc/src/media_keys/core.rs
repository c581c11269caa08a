//! The media key exchange as a state machine: memberships, received messages and time in; keys
//! to send and keys for the frame cryptor out. No I/O: the shell sends and receives.
//!
//! It follows Element Call (matrix-js-sdk's `RTCEncryptionManager`): our first key (index 0) is
//! used at once; when a member who had our key leaves, or a member joins once our key is older
//! than [`ROTATION_GRACE`], a new key (next index, modulo 256) goes to every member and we
//! encrypt with it [`USE_KEY_DELAY`] after the homeserver took the message (the shell says so
//! with [`MediaKeysCore::key_sent`]); a joiner within the grace period gets the current key. A
//! key whose send failed is not used: it goes to every member again, [`SEND_RETRY`] later and
//! then less and less often. A received key is bound to the LiveKit identity of the membership
//! with the sender's user and device, or held until that membership appears.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::debug;

use super::content::{self, KeyRejection, MediaKey};
use crate::membership::Membership;

/// How long after the homeserver took a new key we start encrypting with it (receivers need it
/// first). Element Call waits this long after its send returns, not after deciding to rotate:
/// the send itself (Olm sessions to claim with new devices) can take longer than the delay.
pub const USE_KEY_DELAY: Duration = Duration::from_secs(1);
/// How long after a failed send our latest key goes to every member again; it doubles after each
/// failure, up to [`SEND_RETRY_MAX`].
pub const SEND_RETRY: Duration = Duration::from_secs(1);
/// The longest wait between two attempts to send a key.
pub const SEND_RETRY_MAX: Duration = Duration::from_secs(30);
/// A joiner within this age of our key gets that key instead of a rotation.
pub const ROTATION_GRACE: Duration = Duration::from_secs(10);
/// Keys held for devices with no membership yet, at most.
const MAX_HELD: usize = 64;
/// How long a held key waits for its membership.
const HELD_FOR: Duration = Duration::from_secs(120);

/// Who we are in the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnMember {
    /// Our user.
    pub user_id: String,
    /// Our device.
    pub device_id: String,
    /// Our membership id (`member.id` of the key messages).
    pub member_id: String,
    /// Our LiveKit identity (what our own key is bound to).
    pub livekit_identity: String,
}

/// A device to send to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Device {
    /// The user.
    pub user_id: String,
    /// The device.
    pub device_id: String,
}

/// What the exchange asks of its shell.
#[derive(Debug, Clone, PartialEq)]
pub enum KeyOutput {
    /// Send this content, Olm-encrypted, as [`content::EVENT_TYPE`] to each device.
    Send {
        /// The recipients.
        devices: Vec<Device>,
        /// The key's index (for logs; the content carries it).
        index: u8,
        /// The content.
        content: Value,
    },
    /// Hand this key to the frame cryptor for this LiveKit identity (ours: we encrypt with it
    /// from now on).
    SetKey {
        /// The LiveKit identity.
        identity: String,
        /// The key index.
        index: u8,
        /// The key.
        key: MediaKey,
    },
}

/// How a [`KeyOutput::Send`] went, for [`MediaKeysCore::key_sent`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendOutcome {
    /// The homeserver took the message for every device we could encrypt for (a device we know
    /// no keys of gets nothing, as with Element Call), or for some of them.
    Sent,
    /// Nothing went out: the homeserver or the crypto store failed.
    Failed,
}

/// A send of our latest key to try again.
#[derive(Debug, Clone, Copy)]
struct Retry {
    at: Instant,
    /// The wait before this attempt (the next one waits twice as long).
    waited: Duration,
}

/// A member as the exchange tracks it: a re-join (new `created_ts`) is a leave and a join.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Member {
    device: Device,
    created_ts: u64,
    /// Its LiveKit identity, which its keys are bound to.
    identity: String,
}

#[derive(Debug)]
struct OwnKey {
    index: u8,
    key: MediaKey,
    created: Instant,
}

#[derive(Debug)]
struct HeldKey {
    device: Device,
    index: u8,
    key: MediaKey,
    received: Instant,
}

/// The exchange for one call.
pub struct MediaKeysCore {
    own: OwnMember,
    room_id: String,
    /// Our newest key (sent, maybe not yet used).
    latest: Option<OwnKey>,
    /// A rotated key whose send has not finished yet (its index): its use waits for that.
    awaiting_send: Option<u8>,
    /// When we start encrypting with `latest`.
    use_at: Option<Instant>,
    /// Our latest key's send failed: when it goes to every member again.
    retry: Option<Retry>,
    /// The members who have `latest`.
    holders: Vec<Member>,
    /// Current members (not us).
    members: Vec<Member>,
    held: Vec<HeldKey>,
    /// Every how long our key goes to every member again, if at all.
    resend_every: Option<Duration>,
    next_resend: Option<Instant>,
    outputs: VecDeque<KeyOutput>,
    new_key: Box<dyn FnMut() -> Option<MediaKey> + Send>,
    unix_ms: Box<dyn Fn() -> u64 + Send>,
}

impl std::fmt::Debug for MediaKeysCore {
    /// Who and how many, never a key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaKeysCore")
            .field("own", &self.own)
            .field("room_id", &self.room_id)
            .field("index", &self.latest.as_ref().map(|k| k.index))
            .field("members", &self.members.len())
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl MediaKeysCore {
    /// An exchange for `own` in `room_id`, with random keys and the system clock.
    pub fn new(own: OwnMember, room_id: impl Into<String>) -> Self {
        Self::with_sources(own, room_id, || MediaKey::random().ok(), crate::clock::unix_ms)
    }

    /// The same with given sources of keys and of Unix time (ms) for `sent_ts`.
    pub(crate) fn with_sources(
        own: OwnMember,
        room_id: impl Into<String>,
        new_key: impl FnMut() -> Option<MediaKey> + Send + 'static,
        unix_ms: impl Fn() -> u64 + Send + 'static,
    ) -> Self {
        Self {
            own,
            room_id: room_id.into(),
            latest: None,
            awaiting_send: None,
            use_at: None,
            retry: None,
            holders: Vec::new(),
            members: Vec::new(),
            held: Vec::new(),
            resend_every: None,
            next_resend: None,
            outputs: VecDeque::new(),
            new_key: Box::new(new_key),
            unix_ms: Box::new(unix_ms),
        }
    }

    /// Sends our current key to every member again every `interval` (for receivers that lost
    /// it; Element Call does not need it). `None` or zero: never.
    pub fn with_resend_interval(mut self, interval: Option<Duration>) -> Self {
        self.resend_every = interval.filter(|i| !i.is_zero());
        self
    }

    /// The call's memberships changed (all of them, ours included, as the room shows them).
    pub fn members_changed(&mut self, now: Instant, memberships: &[Membership]) {
        self.members = memberships
            .iter()
            .filter(|m| !(m.user_id == self.own.user_id && m.device_id == self.own.device_id))
            .map(|m| Member {
                device: Device { user_id: m.user_id.clone(), device_id: m.device_id.clone() },
                created_ts: m.created_ts,
                identity: m.livekit_identity.clone(),
            })
            .collect();
        self.bind_held(now);

        let Some(latest) = &self.latest else {
            // Our first key: used at once, sent to whoever is there.
            if let Some(key) = self.create_key(now, 0) {
                self.outputs.push_back(KeyOutput::SetKey {
                    identity: self.own.livekit_identity.clone(),
                    index: 0,
                    key,
                });
                self.distribute(self.members.clone());
            }
            return;
        };
        let left = self.holders.iter().any(|h| !self.members.contains(h));
        let joined: Vec<Member> =
            self.members.iter().filter(|m| !self.holders.contains(m)).cloned().collect();
        if left || (!joined.is_empty() && now.duration_since(latest.created) >= ROTATION_GRACE) {
            let index = latest.index.wrapping_add(1);
            debug!(index, left, joined = joined.len(), "rotating our media key");
            if self.create_key(now, index).is_some() {
                self.holders.clear();
                self.retry = None;
                if self.members.is_empty() {
                    // Nobody to send it to, nobody to wait for.
                    self.awaiting_send = None;
                    self.use_at = Some(now);
                } else {
                    self.awaiting_send = Some(index);
                    self.use_at = None;
                    self.distribute(self.members.clone());
                }
            }
        } else if !joined.is_empty() {
            self.distribute(joined);
        }
    }

    /// A key message arrived from `sender` (the user the homeserver and Olm vouch for);
    /// `sender_device` is the Olm-verified device when known; `encrypted` whether it came
    /// Olm-encrypted.
    pub fn key_received(
        &mut self,
        now: Instant,
        sender: &str,
        sender_device: Option<&str>,
        encrypted: bool,
        message: &Value,
    ) -> Result<(), KeyRejection> {
        if !encrypted {
            return Err(KeyRejection::NotEncrypted);
        }
        let inbound = content::parse(message, &self.room_id)?;
        if sender_device.is_some_and(|d| d != inbound.device_id) {
            return Err(KeyRejection::DeviceMismatch);
        }
        if sender == self.own.user_id && inbound.device_id == self.own.device_id {
            return Err(KeyRejection::Own);
        }
        let device = Device { user_id: sender.to_owned(), device_id: inbound.device_id };
        match self.identity_of(&device) {
            Some(identity) => {
                debug!(user = %device.user_id, device = %device.device_id, index = inbound.index, "a member's media key");
                self.outputs.push_back(KeyOutput::SetKey {
                    identity,
                    index: inbound.index,
                    key: inbound.key,
                });
            }
            None => {
                debug!(user = %device.user_id, device = %device.device_id, "a media key before its membership; held");
                if self.held.len() >= MAX_HELD {
                    self.held.remove(0);
                }
                self.held.push(HeldKey {
                    device,
                    index: inbound.index,
                    key: inbound.key,
                    received: now,
                });
            }
        }
        Ok(())
    }

    /// A [`KeyOutput::Send`] of the key with `index` finished: a rotated key is used
    /// [`USE_KEY_DELAY`] after its send went out; our latest key goes out again after a failure.
    pub fn key_sent(&mut self, now: Instant, index: u8, outcome: SendOutcome) {
        let Some(latest) = &self.latest else { return };
        if latest.index != index {
            // A key that was replaced while it was being sent.
            return;
        }
        match outcome {
            SendOutcome::Sent => {
                self.retry = None;
                if self.awaiting_send == Some(index) {
                    self.awaiting_send = None;
                    self.use_at = Some(now + USE_KEY_DELAY);
                }
            }
            SendOutcome::Failed => {
                let waited = match self.retry {
                    Some(retry) => (retry.waited * 2).min(SEND_RETRY_MAX),
                    None => SEND_RETRY,
                };
                debug!(index, retry_in = ?waited, "our media key did not go out; it will be sent again");
                self.retry = Some(Retry { at: now + waited, waited });
            }
        }
    }

    /// A member's LiveKit participant (re)connected: it gets our current key again.
    pub fn participant_connected(&mut self, identity: &str) {
        let Some(latest) = &self.latest else { return };
        let devices: Vec<Device> = self
            .members
            .iter()
            .filter(|m| m.identity == identity)
            .map(|m| m.device.clone())
            .collect();
        if !devices.is_empty() {
            let content = self.content(latest.index, &latest.key);
            self.outputs.push_back(KeyOutput::Send { devices, index: latest.index, content });
        }
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.use_at.is_some_and(|at| at <= now) {
            self.use_at = None;
            if let Some(latest) = &self.latest {
                debug!(index = latest.index, "encrypting with our new media key");
                self.outputs.push_back(KeyOutput::SetKey {
                    identity: self.own.livekit_identity.clone(),
                    index: latest.index,
                    key: latest.key.clone(),
                });
            }
        }
        if self.retry.is_some_and(|r| r.at <= now)
            && let Some(latest) = &self.latest
        {
            // Due again; a success or a newer key ends the retries.
            let devices: Vec<Device> = self.members.iter().map(|m| m.device.clone()).collect();
            if let Some(retry) = &mut self.retry {
                retry.at = now + SEND_RETRY_MAX;
            }
            if devices.is_empty() {
                // Nobody left to wait for.
                self.retry = None;
                if self.awaiting_send.take().is_some() {
                    self.use_at = Some(now);
                }
            } else {
                let content = self.content(latest.index, &latest.key);
                self.outputs.push_back(KeyOutput::Send { devices, index: latest.index, content });
            }
        }
        self.held.retain(|h| now.duration_since(h.received) < HELD_FOR);
        if let Some(every) = self.resend_every {
            let due = self.next_resend.get_or_insert(now + every);
            if *due <= now {
                *due = now + every;
                if let Some(latest) = &self.latest {
                    let devices: Vec<Device> =
                        self.members.iter().map(|m| m.device.clone()).collect();
                    if !devices.is_empty() {
                        let content = self.content(latest.index, &latest.key);
                        self.outputs.push_back(KeyOutput::Send {
                            devices,
                            index: latest.index,
                            content,
                        });
                    }
                }
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is due next.
    pub fn next_timeout(&self) -> Option<Instant> {
        let held = self.held.iter().map(|h| h.received + HELD_FOR).min();
        // The resend timer starts at the first timeout handled after the first key.
        let resend = match (self.resend_every, self.next_resend, &self.latest) {
            (Some(_), Some(at), _) => Some(at),
            (Some(_), None, Some(latest)) => Some(latest.created),
            _ => None,
        };
        [self.use_at, held, resend, self.retry.map(|r| r.at)].into_iter().flatten().min()
    }

    /// The next thing to do.
    pub fn poll_output(&mut self) -> Option<KeyOutput> {
        self.outputs.pop_front()
    }

    fn create_key(&mut self, now: Instant, index: u8) -> Option<MediaKey> {
        let Some(key) = (self.new_key)() else {
            tracing::warn!("no random bytes for a media key; the key stays as it is");
            return None;
        };
        self.latest = Some(OwnKey { index, key: key.clone(), created: now });
        Some(key)
    }

    fn distribute(&mut self, to: Vec<Member>) {
        let Some(latest) = &self.latest else { return };
        if to.is_empty() {
            return;
        }
        let content = self.content(latest.index, &latest.key);
        let index = latest.index;
        let devices = to.iter().map(|m| m.device.clone()).collect();
        self.holders.extend(to);
        self.outputs.push_back(KeyOutput::Send { devices, index, content });
    }

    fn content(&self, index: u8, key: &MediaKey) -> Value {
        content::outbound(
            &self.room_id,
            &self.own.member_id,
            &self.own.device_id,
            index,
            key,
            (self.unix_ms)(),
        )
    }

    /// The LiveKit identity of the current member on `device`.
    fn identity_of(&self, device: &Device) -> Option<String> {
        self.members.iter().find(|m| &m.device == device).map(|m| m.identity.clone())
    }

    fn bind_held(&mut self, now: Instant) {
        let mut still_held = Vec::new();
        for held in std::mem::take(&mut self.held) {
            match self.identity_of(&held.device) {
                Some(identity) => self.outputs.push_back(KeyOutput::SetKey {
                    identity,
                    index: held.index,
                    key: held.key,
                }),
                None if now.duration_since(held.received) < HELD_FOR => still_held.push(held),
                None => {}
            }
        }
        self.held = still_held;
    }
}
