//! From key material to an AES key, and the ratchet, as LiveKit's clients derive them.
//!
//! Both functions take the same inputs: the material as the "password" or input key, the
//! ratchet salt, and for HKDF an `info` of 128 zero bytes. A frame key is the first 16 bytes of
//! the output; a ratchet step makes 32 bytes of new material.

use std::num::NonZeroU32;

use aws_lc_rs::{hkdf, pbkdf2};

/// The salt LiveKit's clients and Element Call use unless configured otherwise.
pub const DEFAULT_RATCHET_SALT: &[u8] = b"LKFrameEncryptionKey";

/// PBKDF2 iterations (LiveKit's clients, JavaScript and native).
const PBKDF2_ITERATIONS: NonZeroU32 = match NonZeroU32::new(100_000) {
    Some(n) => n,
    None => unreachable!(),
};

/// HKDF's `info`: 128 zero bytes, as in `livekit-client` and webrtc-sdk.
const HKDF_INFO: [u8; 128] = [0; 128];

/// Length of an AES-128 frame key.
pub(crate) const KEY_LEN: usize = 16;
/// Length of the material a ratchet step produces.
const RATCHETED_LEN: usize = 32;

/// How raw key material becomes a frame key.
///
/// The choice must match the other clients': Element Call imports every per-participant key as
/// HKDF material, and a shared passphrase (a call link with a password) as PBKDF2 material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyDerivation {
    /// HKDF-SHA-256 (Element Call's per-participant keys).
    #[default]
    Hkdf,
    /// PBKDF2-HMAC-SHA-256 with 100,000 iterations (shared passphrases; LiveKit's defaults).
    Pbkdf2,
}

/// An AES-128 frame key.
pub(crate) type FrameKey = [u8; KEY_LEN];

impl KeyDerivation {
    /// The frame key for `material`.
    pub(crate) fn frame_key(self, material: &[u8], salt: &[u8]) -> FrameKey {
        let mut key = [0; KEY_LEN];
        self.derive(material, salt, &mut key);
        key
    }

    /// The next material in the ratchet chain.
    pub(crate) fn ratchet(self, material: &[u8], salt: &[u8]) -> Vec<u8> {
        let mut next = vec![0; RATCHETED_LEN];
        self.derive(material, salt, &mut next);
        next
    }

    fn derive(self, material: &[u8], salt: &[u8], out: &mut [u8]) {
        match self {
            Self::Hkdf => {
                let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(material);
                // Lengths of 16 and 32 are far below HKDF's limit of 255 blocks.
                let okm = prk
                    .expand(&[&HKDF_INFO], OutputLen(out.len()))
                    .expect("HKDF output of at most 32 bytes");
                okm.fill(out).expect("HKDF output of at most 32 bytes");
            }
            Self::Pbkdf2 => {
                pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, PBKDF2_ITERATIONS, salt, material, out)
            }
        }
    }
}

/// An HKDF output length.
struct OutputLen(usize);

impl hkdf::KeyType for OutputLen {
    fn len(&self) -> usize {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2ee::hex;

    #[test]
    fn hkdf_matches_the_reference_vector() {
        let raw: Vec<u8> = (0..16).collect();
        let kdf = KeyDerivation::Hkdf;
        assert_eq!(
            hex(&kdf.frame_key(&raw, DEFAULT_RATCHET_SALT)),
            "4086b4641064e1ae8b63d4eb83ad3e7e"
        );
        assert_eq!(
            hex(&kdf.ratchet(&raw, DEFAULT_RATCHET_SALT)),
            "4086b4641064e1ae8b63d4eb83ad3e7e878c21ab850a1f6b36c5954be5919e3a"
        );
    }

    /// webrtc-sdk's `TEST(FrameCryptor, KeyProvider)`.
    #[test]
    fn pbkdf2_matches_the_native_vector() {
        let material: Vec<u8> = (0..16).collect();
        let salt: Vec<u8> = (0..8).collect();
        assert_eq!(
            hex(&KeyDerivation::Pbkdf2.frame_key(&material, &salt)),
            "a658cd52efbacadfecdfe0a0dc574ec3"
        );
    }

    #[test]
    fn a_frame_key_is_the_start_of_a_ratchet_step() {
        for kdf in [KeyDerivation::Hkdf, KeyDerivation::Pbkdf2] {
            let next = kdf.ratchet(b"material", DEFAULT_RATCHET_SALT);
            assert_eq!(&next[..KEY_LEN], kdf.frame_key(b"material", DEFAULT_RATCHET_SALT));
        }
    }
}
