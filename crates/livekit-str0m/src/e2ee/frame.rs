//! LiveKit's encrypted frame layout:
//!
//! ```text
//! | clear header | AES-128-GCM(rest, AAD = header) + 16-byte tag | IV (12) | 12 | key index |
//! ```
//!
//! The clear header keeps what the server and the depacketiser need: VP8's frame tag (10 bytes on
//! keyframes, with the start code and size; 3 otherwise), and for H.264 everything up to the
//! first slice plus two bytes. For H.264 everything after the header is then escaped as RBSP,
//! so that no start code can appear in ciphertext.

use super::FrameCodec;

/// Length of the IV, as the trailer announces it.
pub(crate) const IV_LEN: usize = 12;
/// Length of the GCM tag.
pub(crate) const TAG_LEN: usize = 16;
/// IV length byte and key index byte.
pub(crate) const TRAILER_LEN: usize = 2;

/// VP8: clear bytes of a keyframe (frame tag, start code, dimensions) and of a delta frame.
const VP8_KEYFRAME_CLEAR: usize = 10;
const VP8_DELTA_CLEAR: usize = 3;

/// H.264 NAL unit types of coded slices.
const NAL_SLICE_NON_IDR: u8 = 1;
const NAL_SLICE_IDR: u8 = 5;

/// Whether a VP8 frame is a keyframe (bit 0 of the frame tag is 0), as the receiver can tell
/// from the clear header.
pub(crate) fn vp8_is_keyframe(frame: &[u8]) -> bool {
    frame.first().is_some_and(|b| b & 0x01 == 0)
}

/// How many leading bytes stay clear. Never more than the frame holds.
pub(crate) fn clear_len(codec: FrameCodec, frame: &[u8]) -> usize {
    let vp8 = || if vp8_is_keyframe(frame) { VP8_KEYFRAME_CLEAR } else { VP8_DELTA_CLEAR };
    let len = match codec {
        FrameCodec::Vp8 => vp8(),
        // As livekit-client: one byte of every audio frame.
        FrameCodec::Opus => 1,
        // As livekit-client: without a slice, the VP8 rule.
        FrameCodec::H264 => h264_first_slice(frame).map_or_else(vp8, |at| at + 2),
    };
    len.min(frame.len())
}

/// The offset of the first coded slice's NAL header in an Annex B stream.
fn h264_first_slice(frame: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i + 3 <= frame.len() {
        if frame[i] == 0 && frame[i + 1] == 0 && frame[i + 2] == 1 {
            let header = i + 3;
            let kind = frame.get(header)? & 0x1f;
            if kind == NAL_SLICE_NON_IDR || kind == NAL_SLICE_IDR {
                return Some(header);
            }
            i = header;
        } else {
            i += 1;
        }
    }
    None
}

/// Escapes `data` as RBSP: `03` after two zero bytes when the next byte is at most 3.
pub(crate) fn write_rbsp(data: &[u8]) -> Vec<u8> {
    rbsp_walk(data, data.len() + data.len() / 64 + 4, |byte, zeros, out| {
        let zeros = if zeros >= 2 && byte <= 3 {
            out.push(3);
            0
        } else {
            zeros
        };
        out.push(byte);
        if byte == 0 { zeros + 1 } else { 0 }
    })
}

/// Removes RBSP escaping: the `03` of every `00 00 03`.
pub(crate) fn parse_rbsp(data: &[u8]) -> Vec<u8> {
    rbsp_walk(data, data.len(), |byte, zeros, out| {
        if zeros >= 2 && byte == 3 {
            return 0;
        }
        out.push(byte);
        if byte == 0 { zeros + 1 } else { 0 }
    })
}

/// Walks `data` counting zero bytes, `step` deciding what each byte inside a run of zeros
/// becomes (it returns the new count). Outside a run nothing can need (un)escaping, so bytes
/// up to and including the next zero are copied whole: nearly all of a ciphertext.
fn rbsp_walk(
    data: &[u8],
    capacity: usize,
    mut step: impl FnMut(u8, usize, &mut Vec<u8>) -> usize,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(capacity);
    let mut zeros = 0;
    let mut i = 0;
    while i < data.len() {
        if zeros == 0 {
            let Some(next) = data[i..].iter().position(|&b| b == 0) else {
                out.extend_from_slice(&data[i..]);
                break;
            };
            out.extend_from_slice(&data[i..=i + next]);
            i += next + 1;
            zeros = 1;
            continue;
        }
        zeros = step(data[i], zeros, &mut out);
        i += 1;
    }
    out
}

/// The IV of a frame: SSRC, RTP timestamp, and the timestamp minus the send count, big-endian,
/// as livekit-client builds it (receivers read it from the trailer, so uniqueness is what
/// matters).
pub(crate) fn make_iv(ssrc: u32, rtp_timestamp: u32, send_count: u32) -> [u8; IV_LEN] {
    let mut iv = [0; IV_LEN];
    iv[..4].copy_from_slice(&ssrc.to_be_bytes());
    iv[4..8].copy_from_slice(&rtp_timestamp.to_be_bytes());
    iv[8..].copy_from_slice(&rtp_timestamp.wrapping_sub(send_count % 0xffff).to_be_bytes());
    iv
}

/// The parts of a received encrypted frame (after RBSP unescaping for H.264).
#[derive(Debug)]
pub(crate) struct Sealed<'a> {
    pub(crate) header: &'a [u8],
    /// Ciphertext and tag.
    pub(crate) ciphertext: &'a [u8],
    pub(crate) iv: [u8; IV_LEN],
    pub(crate) key_index: u8,
}

/// Splits an encrypted frame whose clear header is `clear` bytes long; `None` when it is too
/// short or its trailer does not announce a 12-byte IV.
pub(crate) fn split(frame: &[u8], clear: usize) -> Option<Sealed<'_>> {
    let [.., iv_len, key_index] = *frame else { return None };
    if usize::from(iv_len) != IV_LEN || frame.len() < clear + TAG_LEN + IV_LEN + TRAILER_LEN {
        return None;
    }
    let trailer = frame.len() - TRAILER_LEN;
    let iv_start = trailer - IV_LEN;
    let iv = frame[iv_start..trailer].try_into().ok()?;
    Some(Sealed { header: &frame[..clear], ciphertext: &frame[clear..iv_start], iv, key_index })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8_keeps_ten_bytes_of_keyframes_and_three_of_the_others() {
        let key = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01, 0xff, 0xff];
        assert_eq!(clear_len(FrameCodec::Vp8, &key), 10);
        let delta = [0x31, 0x02, 0x00, 0x40, 0x41];
        assert_eq!(clear_len(FrameCodec::Vp8, &delta), 3);
        assert_eq!(clear_len(FrameCodec::Vp8, &[0x10, 0x02]), 2, "never past the end");
        assert_eq!(clear_len(FrameCodec::Vp8, &[]), 0);
    }

    #[test]
    fn opus_keeps_its_toc_byte() {
        assert_eq!(clear_len(FrameCodec::Opus, &[0x78, 1, 2, 3]), 1);
        assert_eq!(clear_len(FrameCodec::Opus, &[]), 0);
    }

    #[test]
    fn h264_keeps_everything_before_the_first_slice_and_two_bytes_of_it() {
        let sps = [0, 0, 0, 1, 0x67, 0x42, 0xc0, 0x1f];
        let pps = [0, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80];
        let idr = [0, 0, 0, 1, 0x65, 0x88, 0x84, 0x00, 0x33];
        let frame = [&sps[..], &pps, &idr].concat();
        assert_eq!(clear_len(FrameCodec::H264, &frame), sps.len() + pps.len() + 4 + 2);
        let non_idr = [0, 0, 1, 0x41, 0x9a, 0x02, 0x03];
        assert_eq!(clear_len(FrameCodec::H264, &non_idr), 3 + 2);
        // No slice at all: the VP8 rule.
        assert_eq!(clear_len(FrameCodec::H264, &sps), 8);
    }

    #[test]
    fn rbsp_escaping_matches_the_reference_and_round_trips() {
        assert_eq!(write_rbsp(&[0, 0, 1, 0, 0, 0]), [0, 0, 3, 1, 0, 0, 3, 0]);
        for data in [
            vec![],
            vec![0, 0, 0, 0, 0, 0],
            vec![0, 0, 3, 0, 0, 2, 0, 0],
            (0..=255).collect::<Vec<u8>>(),
            vec![0, 0, 4, 0, 0, 3],
        ] {
            let escaped = write_rbsp(&data);
            assert!(
                !escaped.windows(3).any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 2),
                "{escaped:?}"
            );
            assert_eq!(parse_rbsp(&escaped), data);
        }
    }

    /// The definitions, one byte at a time.
    fn write_rbsp_bytewise(data: &[u8]) -> Vec<u8> {
        let (mut out, mut zeros) = (Vec::new(), 0);
        for &byte in data {
            if zeros >= 2 && byte <= 3 {
                out.push(3);
                zeros = 0;
            }
            out.push(byte);
            zeros = if byte == 0 { zeros + 1 } else { 0 };
        }
        out
    }

    fn parse_rbsp_bytewise(data: &[u8]) -> Vec<u8> {
        let (mut out, mut zeros) = (Vec::new(), 0);
        for &byte in data {
            if zeros >= 2 && byte == 3 {
                zeros = 0;
                continue;
            }
            out.push(byte);
            zeros = if byte == 0 { zeros + 1 } else { 0 };
        }
        out
    }

    proptest::proptest! {
        /// The run-copying versions do exactly what the byte-by-byte definitions do, on inputs
        /// rich in zeros and small bytes.
        #[test]
        fn rbsp_matches_its_definition(
            data in proptest::collection::vec(proptest::sample::select(vec![0u8, 0, 0, 1, 2, 3, 4, 0xff]), 0..200),
        ) {
            proptest::prop_assert_eq!(write_rbsp(&data), write_rbsp_bytewise(&data));
            proptest::prop_assert_eq!(parse_rbsp(&data), parse_rbsp_bytewise(&data));
        }
    }

    #[test]
    fn the_iv_is_ssrc_timestamp_and_timestamp_minus_count() {
        assert_eq!(
            make_iv(0x11223344, 90000, 7),
            [0x11, 0x22, 0x33, 0x44, 0x00, 0x01, 0x5f, 0x90, 0x00, 0x01, 0x5f, 0x89]
        );
        assert_eq!(make_iv(1, 0, 0x10000)[8..], 0u32.wrapping_sub(1).to_be_bytes());
    }

    #[test]
    fn a_trailer_must_announce_a_twelve_byte_iv() {
        let mut frame = vec![7; 3 + TAG_LEN + IV_LEN];
        frame.extend([12, 4]);
        let sealed = split(&frame, 3).unwrap();
        assert_eq!((sealed.header.len(), sealed.ciphertext.len(), sealed.key_index), (3, 16, 4));
        *frame.iter_mut().rev().nth(1).unwrap() = 11;
        assert!(split(&frame, 3).is_none());
        assert!(split(&[12, 0], 0).is_none(), "too short");
        assert!(split(&[], 0).is_none());
    }
}
