//! The table-of-contents byte that starts every Opus packet (RFC 6716 §3.1) and the packet
//! duration it gives (§3.2), without decoding. Pure functions of untrusted bytes.

/// Why a packet's duration cannot be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TocError {
    /// A packet has at least its TOC byte.
    #[error("empty Opus packet")]
    Empty,
    /// A code 3 packet needs its frame-count byte.
    #[error("code 3 Opus packet without its frame count byte")]
    MissingFrameCount,
    /// A code 3 packet with no frames.
    #[error("code 3 Opus packet with zero frames")]
    ZeroFrames,
    /// A packet lasts at most 120 ms (§3.2.5).
    #[error("Opus packet of {0} samples (over 120 ms)")]
    TooLong(u32),
}

/// The coding mode of a configuration (§3.1, Table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpusMode {
    /// Linear prediction (configurations 0–11).
    Silk,
    /// Linear prediction below 8 kHz, MDCT above (12–15).
    Hybrid,
    /// MDCT only (16–31).
    Celt,
}

/// Samples per channel at 48 kHz in the longest packet Opus allows (120 ms).
pub const MAX_PACKET_SAMPLES: u32 = 5760;

/// A TOC byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Toc(pub u8);

impl Toc {
    /// The TOC of `packet`.
    pub fn of(packet: &[u8]) -> Result<Self, TocError> {
        packet.first().map(|&b| Self(b)).ok_or(TocError::Empty)
    }

    /// A TOC from its parts: `config` (0..=31, masked), stereo flag, frame-count `code`
    /// (0..=3, masked).
    pub fn from_parts(config: u8, stereo: bool, code: u8) -> Self {
        Self(((config & 0x1f) << 3) | (u8::from(stereo) << 2) | (code & 0x03))
    }

    /// The configuration number, 0..=31 (mode, bandwidth, frame size).
    pub fn config(self) -> u8 {
        self.0 >> 3
    }

    /// Whether the frames are coded in stereo.
    pub fn stereo(self) -> bool {
        self.0 & 0x04 != 0
    }

    /// The frame-count code: 0 one frame, 1 two equal frames, 2 two frames of different sizes,
    /// 3 a count in the next byte.
    pub fn code(self) -> u8 {
        self.0 & 0x03
    }

    /// The coding mode.
    pub fn mode(self) -> OpusMode {
        match self.config() {
            0..=11 => OpusMode::Silk,
            12..=15 => OpusMode::Hybrid,
            _ => OpusMode::Celt,
        }
    }

    /// Samples per channel at 48 kHz in one frame of this configuration.
    pub fn frame_samples(self) -> u32 {
        let config = self.config();
        match self.mode() {
            // 10, 20, 40, 60 ms.
            OpusMode::Silk => [480, 960, 1920, 2880][usize::from(config % 4)],
            // 10, 20 ms.
            OpusMode::Hybrid => [480, 960][usize::from(config % 2)],
            // 2.5, 5, 10, 20 ms.
            OpusMode::Celt => [120, 240, 480, 960][usize::from(config % 4)],
        }
    }
}

/// The number of frames in `packet` (§3.2).
pub fn frame_count(packet: &[u8]) -> Result<u8, TocError> {
    match Toc::of(packet)?.code() {
        0 => Ok(1),
        1 | 2 => Ok(2),
        _ => {
            let count = packet.get(1).ok_or(TocError::MissingFrameCount)? & 0x3f;
            if count == 0 { Err(TocError::ZeroFrames) } else { Ok(count) }
        }
    }
}

/// Samples per channel at 48 kHz that `packet` decodes to (at most 120 ms).
pub fn packet_samples(packet: &[u8]) -> Result<u32, TocError> {
    let samples = Toc::of(packet)?.frame_samples() * u32::from(frame_count(packet)?);
    if samples > MAX_PACKET_SAMPLES { Err(TocError::TooLong(samples)) } else { Ok(samples) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_of_every_configuration() {
        // Table 2 of RFC 6716, in milliseconds × 10.
        let expected_tenths: [u32; 32] = [
            100, 200, 400, 600, 100, 200, 400, 600, 100, 200, 400, 600, // SILK NB, MB, WB
            100, 200, 100, 200, // Hybrid SWB, FB
            25, 50, 100, 200, 25, 50, 100, 200, 25, 50, 100, 200, 25, 50, 100, 200, // CELT
        ];
        for config in 0..32u8 {
            let toc = Toc::from_parts(config, false, 0);
            assert_eq!(toc.config(), config);
            assert_eq!(toc.frame_samples() * 10, expected_tenths[usize::from(config)] * 48);
            assert_eq!(packet_samples(&[toc.0]).unwrap(), toc.frame_samples());
        }
        assert_eq!(Toc::from_parts(12, false, 0).mode(), OpusMode::Hybrid);
        assert_eq!(Toc::from_parts(11, false, 0).mode(), OpusMode::Silk);
        assert_eq!(Toc::from_parts(16, false, 0).mode(), OpusMode::Celt);
    }

    #[test]
    fn frame_count_codes() {
        let silk20 = Toc::from_parts(1, true, 0);
        assert!(silk20.stereo());
        assert_eq!(packet_samples(&[silk20.0, 0xaa]).unwrap(), 960);
        assert_eq!(packet_samples(&[Toc::from_parts(1, false, 1).0, 1, 2]).unwrap(), 1920);
        assert_eq!(packet_samples(&[Toc::from_parts(1, false, 2).0, 1, 2]).unwrap(), 1920);
        // Code 3: the count in the low six bits of the second byte (VBR and padding flags above).
        assert_eq!(packet_samples(&[Toc::from_parts(1, false, 3).0, 0xc3]).unwrap(), 2880);
        assert_eq!(packet_samples(&[Toc::from_parts(16, false, 3).0, 48]).unwrap(), 5760);
    }

    #[test]
    fn malformed_packets_are_errors() {
        assert_eq!(packet_samples(&[]), Err(TocError::Empty));
        assert_eq!(
            packet_samples(&[Toc::from_parts(1, false, 3).0]),
            Err(TocError::MissingFrameCount)
        );
        assert_eq!(
            packet_samples(&[Toc::from_parts(1, false, 3).0, 0x80]),
            Err(TocError::ZeroFrames)
        );
        // Three 60 ms frames: 180 ms.
        assert_eq!(
            packet_samples(&[Toc::from_parts(3, false, 3).0, 3]),
            Err(TocError::TooLong(8640))
        );
        // Every byte pair is either a duration within 120 ms or an error.
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                if let Ok(samples) = packet_samples(&[a, b]) {
                    assert!(samples > 0 && samples <= MAX_PACKET_SAMPLES && samples % 120 == 0);
                }
            }
        }
    }
}
