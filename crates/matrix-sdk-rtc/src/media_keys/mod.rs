//! Per-participant media keys, exchanged as Element Call does: every member sends its own 16
//! random bytes, Olm-encrypted to each other member's device (to-device
//! `io.element.call.encryption_keys`), rotates them when a member leaves, and binds what it
//! receives to the sender's LiveKit identity. The keys feed LiveKit's frame encryption (HKDF,
//! key ring 256).
//!
//! [`MediaKeysCore`] is the protocol without I/O; [`MediaKeyExchange`] runs it for a room:
//! it receives and sends the messages and hands keys to a [`MediaKeySink`].

mod content;
mod core;
mod exchange;
#[cfg(test)]
mod tests;

pub use content::{EVENT_TYPE, KEY_LEN, KeyRejection, MediaKey};
pub use core::{
    Device, KeyOutput, MediaKeysCore, OwnMember, ROTATION_GRACE, SEND_RETRY, SEND_RETRY_MAX,
    SendOutcome, USE_KEY_DELAY,
};
pub use exchange::{MediaKeyExchange, MediaKeySink};
