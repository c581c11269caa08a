//! LiveKit's AES-GCM frame cryptor, byte-compatible with `livekit-client` and the native SDKs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::FrameCodec;
use super::frame::{self, IV_LEN};
use super::key_provider::{KeyProvider, OpenError};
use super::{FrameContext, FrameCryptError, FrameCryptor};

/// Encrypts and decrypts frames as LiveKit's clients do (`encryption: GCM`), with keys from a
/// [`KeyProvider`]: a sender's frames with its identity's current key, a received frame with
/// the key its trailer names.
///
/// ```
/// use std::sync::Arc;
/// use livekit_str0m::e2ee::{GcmFrameCryptor, KeyProvider, KeyProviderOptions};
/// use livekit_str0m::RoomOptions;
///
/// let keys = Arc::new(KeyProvider::new(KeyProviderOptions::element_call()));
/// let options = RoomOptions {
///     frame_cryptor: Some(Arc::new(GcmFrameCryptor::new(keys.clone()))),
///     ..Default::default()
/// };
/// // Then: keys.set_key(identity, index, material) for every member, ourselves included.
/// # let _ = options;
/// ```
#[derive(Debug)]
pub struct GcmFrameCryptor {
    keys: Arc<KeyProvider>,
    /// Frames sent per SSRC, from a random start (part of the IV).
    send_counts: Mutex<HashMap<u32, u32>>,
}

impl GcmFrameCryptor {
    /// A cryptor using `keys`.
    pub fn new(keys: Arc<KeyProvider>) -> Self {
        Self { keys, send_counts: Mutex::new(HashMap::new()) }
    }

    /// The key provider.
    pub fn keys(&self) -> &Arc<KeyProvider> {
        &self.keys
    }

    fn next_iv(&self, ssrc: u32, rtp_timestamp: u32) -> [u8; IV_LEN] {
        let mut counts = self.send_counts.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(ssrc).or_insert_with(|| fastrand::u32(..));
        let iv = frame::make_iv(ssrc, rtp_timestamp, *count);
        *count = count.wrapping_add(1);
        iv
    }
}

impl FrameCryptor for GcmFrameCryptor {
    fn encrypt(
        &self,
        context: &FrameContext<'_>,
        data: &mut Vec<u8>,
    ) -> Result<(), FrameCryptError> {
        if data.is_empty() {
            return Ok(());
        }
        let clear = frame::clear_len(context.codec, data);
        let iv = self.next_iv(context.ssrc, context.rtp_timestamp);
        let mut sealed = data[clear..].to_vec();
        let key_index = self
            .keys
            .seal(context.participant_identity, iv, &data[..clear], &mut sealed)
            .ok_or(FrameCryptError::MissingKey)?;
        sealed.extend_from_slice(&iv);
        sealed.extend_from_slice(&[IV_LEN as u8, key_index]);
        if context.codec == FrameCodec::H264 {
            sealed = frame::write_rbsp(&sealed);
        }
        data.truncate(clear);
        data.extend_from_slice(&sealed);
        Ok(())
    }

    fn encryption_key_index(&self, participant_identity: &str) -> Option<u8> {
        self.keys.current_key_index(participant_identity)
    }

    fn decrypt(
        &self,
        context: &FrameContext<'_>,
        data: &mut Vec<u8>,
    ) -> Result<(), FrameCryptError> {
        if data.is_empty() {
            return Ok(());
        }
        let clear = frame::clear_len(context.codec, data);
        let unescaped;
        let whole: &[u8] = if context.codec == FrameCodec::H264 {
            unescaped = [&data[..clear], &frame::parse_rbsp(&data[clear..])].concat();
            &unescaped
        } else {
            data
        };
        let sealed = frame::split(whole, clear).ok_or(FrameCryptError::Malformed)?;
        let plain = self
            .keys
            .open(
                context.participant_identity,
                sealed.key_index,
                sealed.iv,
                sealed.header,
                sealed.ciphertext,
            )
            .map_err(|error| match error {
                OpenError::MissingKey => FrameCryptError::MissingKey,
                OpenError::Failed => FrameCryptError::DecryptFailed,
            })?;
        data.truncate(clear);
        data.extend_from_slice(&plain);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2ee::KeyProviderOptions;
    use crate::e2ee::hex;

    fn context(identity: &str, codec: FrameCodec) -> FrameContext<'_> {
        FrameContext {
            participant_identity: identity,
            track_sid: "TR_x",
            codec,
            keyframe: false,
            rtp_timestamp: 90000,
            ssrc: 0x11223344,
        }
    }

    /// livekit-client's "decrypts frame with correct key": `key1` (PBKDF2) at index 1, a frame
    /// with a 10-byte clear header. (Its first byte is not a real VP8 keyframe tag, which is why
    /// the parts are handed to the key provider directly.)
    #[test]
    fn decrypts_the_livekit_client_frame() {
        let keys = KeyProvider::new(KeyProviderOptions::shared_passphrase());
        keys.set_shared_key(1, b"key1").unwrap();
        let frame = [
            1u8, 2, 3, 4, 5, 6, 7, 8, 9, 10, 254, 96, 91, 111, 187, 132, 31, 12, 207, 136, 17, 221,
            233, 116, 174, 6, 50, 37, 214, 71, 119, 196, 255, 255, 255, 255, 0, 0, 0, 0, 255, 255,
            199, 51, 12, 1,
        ];
        let sealed = frame::split(&frame, 10).unwrap();
        assert_eq!(sealed.key_index, 1);
        let plain = keys.open("anyone", 1, sealed.iv, sealed.header, sealed.ciphertext).unwrap();
        assert_eq!([sealed.header, &plain].concat(), (1..=16).collect::<Vec<u8>>());
    }

    /// The self-generated vector of the protocol notes: HKDF key from 00..0f, a VP8 delta frame,
    /// SSRC 0x11223344, timestamp 90000, send count 7, key index 5.
    #[test]
    fn encrypts_a_vp8_delta_frame_byte_for_byte() {
        let keys = Arc::new(KeyProvider::new(KeyProviderOptions::element_call()));
        keys.set_key("alice", 5, &(0..16).collect::<Vec<u8>>()).unwrap();
        let cryptor = GcmFrameCryptor::new(keys);
        cryptor.send_counts.lock().unwrap().insert(0x11223344, 7);
        let mut frame = [&[0x31u8, 0x02, 0x00][..], &(0x40..0x50).collect::<Vec<u8>>()].concat();
        cryptor.encrypt(&context("alice", FrameCodec::Vp8), &mut frame).unwrap();
        assert_eq!(
            hex(&frame),
            "31020040c3c30cb84182f820422ca9b2aaf9b85f28c275c10bbdfa616e3e5e2e25d6cc\
             1122334400015f9000015f890c05"
        );
        cryptor.decrypt(&context("alice", FrameCodec::Vp8), &mut frame).unwrap();
        assert_eq!(frame, [&[0x31u8, 0x02, 0x00][..], &(0x40..0x50).collect::<Vec<u8>>()].concat());
    }

    #[test]
    fn an_opus_packet_keeps_its_toc_byte_clear_and_round_trips() {
        let keys = Arc::new(KeyProvider::new(KeyProviderOptions::element_call()));
        keys.set_key("alice", 0, &[0x42; 16]).unwrap();
        let cryptor = GcmFrameCryptor::new(keys);
        let packet = vec![0x78, 0x0b, 0xe4, 0xc1, 0x36, 0xec, 0xc5, 0x80];
        let mut sealed = packet.clone();
        cryptor.encrypt(&context("alice", FrameCodec::Opus), &mut sealed).unwrap();
        assert_eq!(sealed[0], 0x78, "the TOC byte stays readable for the server");
        assert_ne!(&sealed[1..packet.len()], &packet[1..]);
        assert_eq!(sealed.len(), packet.len() + 16 + 12 + 2, "tag, IV and trailer");
        cryptor.decrypt(&context("alice", FrameCodec::Opus), &mut sealed).unwrap();
        assert_eq!(sealed, packet);
    }

    fn h264_frame(payload: &[u8]) -> Vec<u8> {
        let mut frame =
            vec![0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80];
        frame.extend([0, 0, 0, 1, 0x65, 0x88]);
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn h264_round_trips_with_its_header_clear_and_no_start_code_in_the_ciphertext() {
        let keys = Arc::new(KeyProvider::new(KeyProviderOptions::element_call()));
        keys.set_key("alice", 0, &[9; 16]).unwrap();
        let cryptor = GcmFrameCryptor::new(keys);
        // Zero runs in the payload, and key index 0: the trailer ends in a zero byte.
        for payload in [vec![0u8; 64], (0..=255).collect(), vec![0, 0, 1, 0, 0, 0, 3]] {
            let original = h264_frame(&payload);
            let mut frame = original.clone();
            cryptor.encrypt(&context("alice", FrameCodec::H264), &mut frame).unwrap();
            let clear = 16 + 4 + 2;
            assert_eq!(frame[..clear], original[..clear], "SPS, PPS and the slice's first bytes");
            assert!(
                !frame[clear..].windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2),
                "a start code in the ciphertext"
            );
            cryptor.decrypt(&context("alice", FrameCodec::H264), &mut frame).unwrap();
            assert_eq!(frame, original);
        }
    }

    #[test]
    fn tampered_frames_and_unknown_key_indices_are_rejected() {
        let keys = Arc::new(KeyProvider::new(KeyProviderOptions {
            ratchet_window_size: 0,
            ..KeyProviderOptions::element_call()
        }));
        keys.set_key("alice", 2, &[5; 16]).unwrap();
        let cryptor = GcmFrameCryptor::new(keys);
        let original =
            [&[0x10u8, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01][..], &[0xab; 40]]
                .concat();
        let mut sealed = original.clone();
        cryptor.encrypt(&context("alice", FrameCodec::Vp8), &mut sealed).unwrap();
        let ctx = context("alice", FrameCodec::Vp8);
        for at in [0, 5, 12, sealed.len() - 20, sealed.len() - 3] {
            let mut tampered = sealed.clone();
            tampered[at] ^= 0x01;
            assert_eq!(
                cryptor.decrypt(&ctx, &mut tampered),
                Err(FrameCryptError::DecryptFailed),
                "byte {at}"
            );
        }
        let mut wrong_index = sealed.clone();
        *wrong_index.last_mut().unwrap() = 3;
        assert_eq!(cryptor.decrypt(&ctx, &mut wrong_index), Err(FrameCryptError::MissingKey));
        let mut other_sender = sealed.clone();
        assert_eq!(
            cryptor.decrypt(&context("mallory", FrameCodec::Vp8), &mut other_sender),
            Err(FrameCryptError::MissingKey)
        );
        let mut cut = sealed[..sealed.len() - 15].to_vec();
        assert_eq!(cryptor.decrypt(&ctx, &mut cut), Err(FrameCryptError::Malformed));
        let mut frame = sealed.clone();
        cryptor.decrypt(&ctx, &mut frame).unwrap();
        assert_eq!(frame, original);
    }

    #[test]
    fn ivs_differ_for_every_frame() {
        let keys = Arc::new(KeyProvider::new(KeyProviderOptions::element_call()));
        keys.set_key("alice", 0, &[1; 16]).unwrap();
        let cryptor = GcmFrameCryptor::new(keys);
        let ctx = context("alice", FrameCodec::Vp8);
        let ivs: std::collections::HashSet<Vec<u8>> = (0..100)
            .map(|_| {
                let mut frame = vec![0x31, 0x02, 0x00, 1, 2, 3];
                cryptor.encrypt(&ctx, &mut frame).unwrap();
                frame[frame.len() - 14..frame.len() - 2].to_vec()
            })
            .collect();
        assert_eq!(ivs.len(), 100, "same timestamp, yet a new IV each time");
    }

    #[test]
    fn empty_frames_pass_through_and_a_sender_without_a_key_sends_nothing() {
        let keys = Arc::new(KeyProvider::new(KeyProviderOptions::element_call()));
        let cryptor = GcmFrameCryptor::new(keys);
        let mut empty = Vec::new();
        cryptor.encrypt(&context("alice", FrameCodec::Vp8), &mut empty).unwrap();
        assert!(empty.is_empty());
        let mut frame = vec![0x31, 0x02, 0x00, 1, 2, 3];
        assert_eq!(
            cryptor.encrypt(&context("alice", FrameCodec::Vp8), &mut frame),
            Err(FrameCryptError::MissingKey)
        );
    }

    proptest::proptest! {
        /// Whatever arrives, decryption returns an error or a frame, for both codecs, with and
        /// without the sender's key, and with the ratchet window in play.
        #[test]
        fn no_input_panics_the_decryptor(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300),
            h264 in proptest::prelude::any::<bool>(),
        ) {
            let keys = Arc::new(KeyProvider::new(KeyProviderOptions::element_call()));
            keys.set_key("alice", data.last().copied().unwrap_or(0), &[3; 16]).unwrap();
            let cryptor = GcmFrameCryptor::new(keys);
            let codec = if h264 { FrameCodec::H264 } else { FrameCodec::Vp8 };
            for identity in ["alice", "bob"] {
                let mut frame = data.clone();
                if cryptor.decrypt(&context(identity, codec), &mut frame).is_err() {
                    continue;
                }
                proptest::prop_assert!(frame.len() <= data.len());
            }
        }
    }
}
