//! Key rings: one per participant identity (Element Call's per-participant keys), or one for
//! everybody (a shared passphrase).

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use aws_lc_rs::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use tracing::debug;

use super::frame::IV_LEN;
use super::kdf::{DEFAULT_RATCHET_SALT, KeyDerivation};

/// How a [`KeyProvider`] derives, keeps and recovers keys.
///
/// [`KeyProviderOptions::default`] is what Element Call configures for calls in encrypted
/// rooms: per-participant keys through HKDF, a ring of 256, a ratchet window of 10 and a failure
/// tolerance of 10.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyProviderOptions {
    /// One ring for everybody instead of one per participant.
    pub shared_key: bool,
    /// How key material becomes a frame key (and how the ratchet steps).
    pub key_derivation: KeyDerivation,
    /// The KDF's salt.
    pub ratchet_salt: Vec<u8>,
    /// Key slots per ring, 1 to 256: frames name their key by index.
    pub key_ring_size: u16,
    /// How many ratchet steps a receiver tries when a frame does not decrypt with its key (0:
    /// none); a success keeps the ratcheted key.
    pub ratchet_window_size: u8,
    /// After this many frames in a row fail with one key, that key is dropped until a new one is
    /// set (`None`: never).
    pub failure_tolerance: Option<u32>,
}

impl Default for KeyProviderOptions {
    fn default() -> Self {
        Self::element_call()
    }
}

impl KeyProviderOptions {
    /// Element Call's per-participant keys (encrypted rooms).
    pub fn element_call() -> Self {
        Self {
            shared_key: false,
            key_derivation: KeyDerivation::Hkdf,
            ratchet_salt: DEFAULT_RATCHET_SALT.to_vec(),
            key_ring_size: 256,
            ratchet_window_size: 10,
            failure_tolerance: Some(10),
        }
    }

    /// One passphrase for everybody, as `livekit-client`'s `ExternalE2EEKeyProvider` (and
    /// Element Call's password links): PBKDF2, no ratchet, never give up on the key.
    pub fn shared_passphrase() -> Self {
        Self {
            shared_key: true,
            key_derivation: KeyDerivation::Pbkdf2,
            ratchet_salt: DEFAULT_RATCHET_SALT.to_vec(),
            key_ring_size: 16,
            ratchet_window_size: 0,
            failure_tolerance: None,
        }
    }
}

/// Why a key was not set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The index does not fit the ring.
    #[error("key index {index} is outside the key ring of {size}")]
    IndexOutOfRange {
        /// The index given.
        index: u8,
        /// The ring's size.
        size: u16,
    },
    /// Empty key material.
    #[error("empty key material")]
    EmptyMaterial,
}

/// Why a frame did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenError {
    /// No usable key at that index for that sender.
    MissingKey,
    /// The key did not authenticate the frame (and no ratchet step did).
    Failed,
}

/// A key and the material it came from (the ratchet continues from the material).
struct KeySet {
    material: Vec<u8>,
    key: LessSafeKey,
}

impl KeySet {
    fn new(material: Vec<u8>, options: &KeyProviderOptions) -> Self {
        let raw = options.key_derivation.frame_key(&material, &options.ratchet_salt);
        let key = UnboundKey::new(&AES_128_GCM, &raw).expect("a 16-byte AES-128 key");
        Self { material, key: LessSafeKey::new(key) }
    }
}

/// One participant's keys.
struct KeyRing {
    slots: Vec<Option<KeySet>>,
    /// Failures in a row per slot.
    failures: Vec<u32>,
    /// The slot the participant encrypts with (set last).
    current: u8,
}

impl KeyRing {
    fn new(size: u16) -> Self {
        let size = usize::from(size);
        Self {
            slots: std::iter::repeat_with(|| None).take(size).collect(),
            failures: vec![0; size],
            current: 0,
        }
    }
}

/// Frame keys by participant identity and key index, shared by the connection's frame
/// cryptor and whoever distributes keys (for Element Call: the MatrixRTC key exchange).
///
/// ```
/// use livekit_str0m::e2ee::{KeyProvider, KeyProviderOptions};
///
/// let keys = KeyProvider::new(KeyProviderOptions::element_call());
/// // A member's 16 random bytes, as they arrive over Matrix, bound to its LiveKit identity.
/// keys.set_key("@alice:example.org:DEVICE", 3, &[7; 16]).unwrap();
/// assert_eq!(keys.current_key_index("@alice:example.org:DEVICE"), Some(3));
/// ```
pub struct KeyProvider {
    options: KeyProviderOptions,
    rings: Mutex<HashMap<String, KeyRing>>,
}

impl fmt::Debug for KeyProvider {
    /// Names who has keys, never the keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let identities: Vec<String> = self.lock().keys().cloned().collect();
        f.debug_struct("KeyProvider")
            .field("options", &self.options)
            .field("identities", &identities)
            .finish()
    }
}

impl KeyProvider {
    /// An empty provider; a ring size outside 1..=256 is brought into it.
    pub fn new(mut options: KeyProviderOptions) -> Self {
        options.key_ring_size = options.key_ring_size.clamp(1, 256);
        Self { options, rings: Mutex::new(HashMap::new()) }
    }

    /// The options.
    pub fn options(&self) -> &KeyProviderOptions {
        &self.options
    }

    /// Sets the key material of `identity` at `index`, which becomes the index it encrypts
    /// with. With a shared key, the identity is ignored.
    pub fn set_key(&self, identity: &str, index: u8, material: &[u8]) -> Result<(), KeyError> {
        if u16::from(index) >= self.options.key_ring_size {
            return Err(KeyError::IndexOutOfRange { index, size: self.options.key_ring_size });
        }
        if material.is_empty() {
            return Err(KeyError::EmptyMaterial);
        }
        let key = KeySet::new(material.to_vec(), &self.options);
        let mut rings = self.lock();
        let ring = rings
            .entry(self.ring_name(identity).to_owned())
            .or_insert_with(|| KeyRing::new(self.options.key_ring_size));
        let slot = usize::from(index);
        ring.slots[slot] = Some(key);
        ring.failures[slot] = 0;
        ring.current = index;
        Ok(())
    }

    /// Sets the shared key (for providers with `shared_key`).
    pub fn set_shared_key(&self, index: u8, material: &[u8]) -> Result<(), KeyError> {
        self.set_key("", index, material)
    }

    /// The index `identity` encrypts with, if it has a key.
    pub fn current_key_index(&self, identity: &str) -> Option<u8> {
        let rings = self.lock();
        let ring = rings.get(self.ring_name(identity))?;
        ring.slots[usize::from(ring.current)].as_ref().map(|_| ring.current)
    }

    /// Forgets every key of `identity` (a member left the call).
    pub fn remove(&self, identity: &str) {
        self.lock().remove(self.ring_name(identity));
    }

    fn ring_name<'a>(&self, identity: &'a str) -> &'a str {
        if self.options.shared_key { "" } else { identity }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, KeyRing>> {
        // A panic elsewhere while holding the lock leaves consistent maps behind.
        self.rings.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Encrypts `in_out` in place with `identity`'s current key and appends the tag; the key
    /// index used.
    pub(crate) fn seal(
        &self,
        identity: &str,
        iv: [u8; IV_LEN],
        aad: &[u8],
        in_out: &mut Vec<u8>,
    ) -> Option<u8> {
        let rings = self.lock();
        let ring = rings.get(self.ring_name(identity))?;
        let key = ring.slots[usize::from(ring.current)].as_ref()?;
        key.key
            .seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::from(aad), in_out)
            .ok()?;
        Some(ring.current)
    }

    /// Decrypts `ciphertext` (with its tag) from `identity` with the key at `index`, trying the
    /// ratchet window when it fails; the plaintext.
    pub(crate) fn open(
        &self,
        identity: &str,
        index: u8,
        iv: [u8; IV_LEN],
        aad: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>, OpenError> {
        let options = &self.options;
        let mut rings = self.lock();
        let ring = rings.get_mut(self.ring_name(identity)).ok_or(OpenError::MissingKey)?;
        let slot = usize::from(index);
        let Some(Some(key)) = ring.slots.get(slot) else { return Err(OpenError::MissingKey) };
        let try_open = |key: &LessSafeKey| {
            let mut buffer = ciphertext.to_vec();
            let len = key
                .open_in_place(Nonce::assume_unique_for_key(iv), Aad::from(aad), &mut buffer)
                .ok()?
                .len();
            buffer.truncate(len);
            Some(buffer)
        };
        if let Some(plain) = try_open(&key.key) {
            ring.failures[slot] = 0;
            return Ok(plain);
        }
        let mut material = key.material.clone();
        for step in 1..=options.ratchet_window_size {
            material = options.key_derivation.ratchet(&material, &options.ratchet_salt);
            let ratcheted = KeySet::new(material.clone(), options);
            if let Some(plain) = try_open(&ratcheted.key) {
                debug!(index, step, "a sender's key ratcheted");
                ring.slots[slot] = Some(ratcheted);
                ring.failures[slot] = 0;
                return Ok(plain);
            }
        }
        ring.failures[slot] += 1;
        if options.failure_tolerance.is_some_and(|t| ring.failures[slot] > t) {
            debug!(index, "too many frames failed with one key; it is dropped until a new one");
            ring.slots[slot] = None;
            ring.failures[slot] = 0;
        }
        Err(OpenError::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2ee::hex;

    /// livekit-client's snapshot "ratchets keys predictably": PBKDF2 material `password`,
    /// encrypt bytes 0..17 with a zero IV, ratchet, ten times.
    #[test]
    fn ratcheting_matches_the_livekit_client_snapshot() {
        let options = KeyProviderOptions {
            ratchet_window_size: 10,
            ..KeyProviderOptions::shared_passphrase()
        };
        let kdf = options.key_derivation;
        let mut material = b"password".to_vec();
        let mut ciphertexts = Vec::new();
        for _ in 0..10 {
            let keys = KeyProvider::new(options.clone());
            keys.set_shared_key(0, &material).unwrap();
            let mut data: Vec<u8> = (0..17).collect();
            keys.seal("anyone", [0; IV_LEN], &[], &mut data).unwrap();
            ciphertexts.push(data);
            material = kdf.ratchet(&material, &options.ratchet_salt);
        }
        assert_eq!(
            hex(&ciphertexts[0]),
            "2ae25e3198124f0137befa508f1386dac837576675d982300b423f667390755ce8"
        );
        assert_eq!(
            ciphertexts[9],
            [
                58, 99, 16, 151, 148, 131, 138, 94, 230, 95, 38, 81, 137, 162, 78, 61, 243, 207,
                255, 109, 48, 248, 217, 135, 133, 248, 56, 74, 41, 113, 153, 108, 202
            ]
        );

        // A receiver holding the first key opens the fourth one's frame through its window.
        let receiver = KeyProvider::new(options.clone());
        receiver.set_shared_key(0, b"password").unwrap();
        let plain = receiver.open("anyone", 0, [0; IV_LEN], &[], &ciphertexts[3]).unwrap();
        assert_eq!(plain, (0..17).collect::<Vec<u8>>());
        let again = receiver.open("anyone", 0, [0; IV_LEN], &[], &ciphertexts[3]);
        assert!(again.is_ok(), "the ratcheted key is kept");
    }

    #[test]
    fn keys_are_per_participant_unless_shared() {
        let keys = KeyProvider::new(KeyProviderOptions::element_call());
        keys.set_key("alice", 1, &[1; 16]).unwrap();
        let mut data = b"frame".to_vec();
        assert_eq!(keys.seal("alice", [0; IV_LEN], b"h", &mut data), Some(1));
        assert!(keys.seal("bob", [0; IV_LEN], b"h", &mut b"x".to_vec()).is_none());
        assert_eq!(keys.open("alice", 1, [0; IV_LEN], b"h", &data).unwrap(), b"frame");
        assert_eq!(keys.open("bob", 1, [0; IV_LEN], b"h", &data), Err(OpenError::MissingKey));
        assert_eq!(keys.open("alice", 0, [0; IV_LEN], b"h", &data), Err(OpenError::MissingKey));
        assert_eq!(keys.open("alice", 1, [0; IV_LEN], b"H", &data), Err(OpenError::Failed));

        let shared = KeyProvider::new(KeyProviderOptions::shared_passphrase());
        shared.set_shared_key(0, b"secret").unwrap();
        let mut data = b"frame".to_vec();
        assert_eq!(shared.seal("alice", [1; IV_LEN], &[], &mut data), Some(0));
        assert_eq!(shared.open("bob", 0, [1; IV_LEN], &[], &data).unwrap(), b"frame");
    }

    #[test]
    fn keys_must_fit_the_ring_and_have_material() {
        let keys = KeyProvider::new(KeyProviderOptions {
            key_ring_size: 16,
            ..KeyProviderOptions::element_call()
        });
        assert_eq!(
            keys.set_key("a", 16, &[1; 16]),
            Err(KeyError::IndexOutOfRange { index: 16, size: 16 })
        );
        assert_eq!(keys.set_key("a", 0, &[]), Err(KeyError::EmptyMaterial));
        let keys = KeyProvider::new(KeyProviderOptions::element_call());
        assert!(keys.set_key("a", 255, &[1; 16]).is_ok(), "Element Call's ring holds 256");
    }

    #[test]
    fn a_key_that_keeps_failing_is_dropped_until_a_new_one_arrives() {
        let options = KeyProviderOptions {
            ratchet_window_size: 2,
            failure_tolerance: Some(3),
            ..KeyProviderOptions::element_call()
        };
        let keys = KeyProvider::new(options);
        keys.set_key("alice", 0, &[1; 16]).unwrap();
        let other = KeyProvider::new(KeyProviderOptions::element_call());
        other.set_key("alice", 0, &[2; 16]).unwrap();
        let mut foreign = b"frame".to_vec();
        other.seal("alice", [0; IV_LEN], &[], &mut foreign).unwrap();
        for _ in 0..4 {
            assert_eq!(keys.open("alice", 0, [0; IV_LEN], &[], &foreign), Err(OpenError::Failed));
        }
        assert_eq!(keys.open("alice", 0, [0; IV_LEN], &[], &foreign), Err(OpenError::MissingKey));
        keys.set_key("alice", 0, &[2; 16]).unwrap();
        assert_eq!(keys.open("alice", 0, [0; IV_LEN], &[], &foreign).unwrap(), b"frame");
    }

    #[test]
    fn debug_output_names_no_key() {
        let keys = KeyProvider::new(KeyProviderOptions::element_call());
        keys.set_key("alice", 0, b"0123456789abcdef").unwrap();
        let shown = format!("{keys:?}");
        assert!(shown.contains("alice") && !shown.contains("0123456789abcdef"), "{shown}");
    }
}
