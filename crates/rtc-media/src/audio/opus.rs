//! Opus encode and decode on libopus (Debian's `libopus-dev`), 48 kHz, 20 ms frames, with the
//! settings and the DTX rule of libwebrtc.

use audiopus::coder::{Decoder, Encoder, GenericCtl as _};
use audiopus::packet::Packet;
use audiopus::{Application, Bitrate, Channels, MutSignals, SampleRate};

use super::toc::packet_samples;
use super::{AudioError, FRAME_SAMPLES};

/// Room for one encoded packet (RFC 6716 caps a 20 ms frame at 1275 bytes).
const MAX_PACKET: usize = 4000;
/// libopus sends a comfort-noise update after this many DTX frames (400 ms); libwebrtc does
/// not count that packet as speech.
const DTX_REFRESH_FRAMES: u32 = 20;

fn opus_error(error: audiopus::Error) -> AudioError {
    AudioError::Opus(error.to_string())
}

fn channels(count: u16) -> Result<Channels, AudioError> {
    match count {
        1 => Ok(Channels::Mono),
        2 => Ok(Channels::Stereo),
        other => Err(AudioError::Channels(other)),
    }
}

fn to_bitrate(bits_per_second: u32) -> Bitrate {
    let clamped =
        bits_per_second.clamp(OpusEncoderConfig::MIN_BITRATE, OpusEncoderConfig::MAX_BITRATE);
    Bitrate::BitsPerSecond(i32::try_from(clamped).unwrap_or(i32::MAX))
}

/// Settings of the Opus encoder, with libwebrtc's defaults for calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusEncoderConfig {
    /// 1 or 2.
    pub channels: u16,
    /// Target bits per second, clamped to 6 kbit/s..=510 kbit/s. Default 32 kbit/s mono,
    /// 64 kbit/s stereo (libwebrtc's defaults for 20 ms frames).
    pub bitrate: u32,
    /// In-band forward error correction (`useinbandfec=1`): each packet also carries a coarse
    /// copy of the previous frame, which a receiver decodes when that frame was lost
    /// ([`OpusDecoder::decode_fec`]). Only the SILK and hybrid modes (speech bitrates) carry it.
    /// Default on, as browsers negotiate it.
    pub fec: bool,
    /// The packet loss the encoder expects, 0..=100 (clamped): the higher, the more bits go to
    /// FEC. Default 10 %. Update it from the receiver reports with
    /// [`OpusEncoder::set_packet_loss_percent`].
    pub packet_loss_percent: u8,
    /// Discontinuous transmission (`usedtx=1`): during silence, one packet in 400 ms instead of
    /// one every 20 ms (see [`Encoded`]). Default on, as LiveKit's clients publish microphones.
    pub dtx: bool,
    /// libopus complexity 0..=10 (clamped). Default 9, libwebrtc's on desktop.
    pub complexity: u8,
}

impl OpusEncoderConfig {
    /// The lowest bitrate taken.
    pub const MIN_BITRATE: u32 = 6_000;
    /// The highest bitrate taken.
    pub const MAX_BITRATE: u32 = 510_000;

    /// Defaults for `channels` channels (checked by [`OpusEncoder::with_config`]).
    pub fn new(channels: u16) -> Self {
        Self {
            channels,
            bitrate: if channels == 2 { 64_000 } else { 32_000 },
            fec: true,
            packet_loss_percent: 10,
            dtx: true,
            complexity: 9,
        }
    }
}

impl Default for OpusEncoderConfig {
    /// Mono, [`OpusEncoderConfig::new`]'s defaults.
    fn default() -> Self {
        Self::new(1)
    }
}

/// What encoding one frame gives, with libwebrtc's DTX rule: when DTX is on, a packet of at most
/// two bytes means the encoder is in DTX; the first one is sent (so that the decoder learns that
/// DTX started), the following ones are not, until a real packet comes. The RTP timestamp
/// advances by 20 ms for every frame, sent or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Encoded {
    /// A packet of speech (or music): send it, voice activity on.
    Speech(Vec<u8>),
    /// A packet to send that holds no speech: the first DTX packet, or the comfort-noise update
    /// libopus makes after 400 ms of DTX. Voice activity off.
    ComfortNoise(Vec<u8>),
    /// DTX goes on: nothing to send for this frame.
    Nothing,
}

impl Encoded {
    /// The packet to send, if any.
    pub fn packet(&self) -> Option<&[u8]> {
        match self {
            Self::Speech(packet) | Self::ComfortNoise(packet) => Some(packet),
            Self::Nothing => None,
        }
    }

    /// The packet to send, if any.
    pub fn into_packet(self) -> Option<Vec<u8>> {
        match self {
            Self::Speech(packet) | Self::ComfortNoise(packet) => Some(packet),
            Self::Nothing => None,
        }
    }

    /// The voice-activity flag of the RFC 6464 audio level, as libwebrtc sets it.
    pub fn is_speech(&self) -> bool {
        matches!(self, Self::Speech(_))
    }
}

/// An Opus encoder at 48 kHz for voice and music in calls (application VoIP).
pub struct OpusEncoder {
    inner: Encoder,
    channels: u16,
    dtx: bool,
    /// Frames in a row that came out as DTX packets.
    dtx_frames: u32,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("channels", &self.channels)
            .field("dtx", &self.dtx)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// An encoder of `channel_count` channels at `bitrate` bits per second, without FEC or DTX.
    pub fn new(channel_count: u16, bitrate: u32) -> Result<Self, AudioError> {
        let mut config = OpusEncoderConfig::new(channel_count);
        config.bitrate = bitrate;
        config.fec = false;
        config.dtx = false;
        Self::with_config(&config)
    }

    /// An encoder with `config`.
    pub fn with_config(config: &OpusEncoderConfig) -> Result<Self, AudioError> {
        let mut inner =
            Encoder::new(SampleRate::Hz48000, channels(config.channels)?, Application::Voip)
                .map_err(opus_error)?;
        inner.set_bitrate(to_bitrate(config.bitrate)).map_err(opus_error)?;
        inner.set_complexity(config.complexity.min(10)).map_err(opus_error)?;
        inner.set_inband_fec(config.fec).map_err(opus_error)?;
        inner.set_packet_loss_perc(config.packet_loss_percent.min(100)).map_err(opus_error)?;
        inner.set_dtx(config.dtx).map_err(opus_error)?;
        tracing::debug!(?config, "Opus encoder");
        Ok(Self {
            inner,
            channels: config.channels,
            dtx: config.dtx,
            dtx_frames: 0,
            buffer: vec![0; MAX_PACKET],
        })
    }

    /// Channels of the input.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Changes the target bitrate (clamped to 6 kbit/s..=510 kbit/s) from the next frame on.
    pub fn set_bitrate(&mut self, bits_per_second: u32) -> Result<(), AudioError> {
        self.inner.set_bitrate(to_bitrate(bits_per_second)).map_err(opus_error)
    }

    /// Changes the packet loss the encoder expects (0..=100, clamped), as libwebrtc does from
    /// the receiver reports; it decides how many bits FEC gets.
    pub fn set_packet_loss_percent(&mut self, percent: u8) -> Result<(), AudioError> {
        self.inner.set_packet_loss_perc(percent.min(100)).map_err(opus_error)
    }

    /// Encodes one 20 ms frame of interleaved samples.
    pub fn encode(&mut self, samples: &[i16]) -> Result<Encoded, AudioError> {
        let expected = FRAME_SAMPLES * usize::from(self.channels);
        if samples.len() != expected {
            return Err(AudioError::FrameSize { expected, got: samples.len() });
        }
        let len = self.inner.encode(samples, &mut self.buffer).map_err(opus_error)?;
        let packet = self.buffer[..len].to_vec();
        if self.dtx && len <= 2 {
            self.dtx_frames = self.dtx_frames.saturating_add(1);
            return Ok(if self.dtx_frames == 1 {
                tracing::trace!("Opus DTX starts");
                Encoded::ComfortNoise(packet)
            } else {
                Encoded::Nothing
            });
        }
        let refresh = self.dtx_frames == DTX_REFRESH_FRAMES;
        self.dtx_frames = 0;
        Ok(if refresh { Encoded::ComfortNoise(packet) } else { Encoded::Speech(packet) })
    }
}

/// An Opus decoder at 48 kHz.
pub struct OpusDecoder {
    inner: Decoder,
    channels: u16,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").field("channels", &self.channels).finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// A decoder of `channel_count` channels (the output's; Opus decodes mono packets to stereo
    /// and back).
    pub fn new(channel_count: u16) -> Result<Self, AudioError> {
        Ok(Self {
            inner: Decoder::new(SampleRate::Hz48000, channels(channel_count)?)
                .map_err(opus_error)?,
            channels: channel_count,
        })
    }

    /// Channels of the output.
    pub fn channels(&self) -> u16 {
        self.channels
    }

    /// Forgets the stream decoded so far: the decoder is then as a new one, without the cost of
    /// making one (libopus probes the CPU for each new decoder, which is slow in a virtual
    /// machine).
    pub fn reset(&mut self) -> Result<(), AudioError> {
        self.inner.reset_state().map_err(opus_error)
    }

    /// Decodes one packet into interleaved samples (as long as the packet lasts); `None`
    /// conceals one lost 20 ms frame (packet-loss concealment).
    pub fn decode(&mut self, packet: Option<&[u8]>) -> Result<Vec<i16>, AudioError> {
        let Some(bytes) = packet else {
            return self.conceal(FRAME_SAMPLES);
        };
        // Room for the longest packet duration Opus has (120 ms).
        let mut out = vec![0i16; 6 * FRAME_SAMPLES * usize::from(self.channels)];
        let packet = Packet::try_from(bytes).map_err(opus_error)?;
        let signals = MutSignals::try_from(&mut out[..]).map_err(opus_error)?;
        let per_channel = self.inner.decode(Some(packet), signals, false).map_err(opus_error)?;
        out.truncate(per_channel * usize::from(self.channels));
        Ok(out)
    }

    /// Conceals `samples` per channel of lost audio (a multiple of 2.5 ms = 120 samples).
    pub(crate) fn conceal(&mut self, samples: usize) -> Result<Vec<i16>, AudioError> {
        let mut out = vec![0i16; samples * usize::from(self.channels)];
        let signals = MutSignals::try_from(&mut out[..]).map_err(opus_error)?;
        let per_channel = self.inner.decode(None, signals, false).map_err(opus_error)?;
        out.truncate(per_channel * usize::from(self.channels));
        Ok(out)
    }

    /// Recovers the frame lost just before `next_packet` from the FEC data `next_packet` carries
    /// (as long as `next_packet` lasts, normally 20 ms). Decode `next_packet` itself afterwards
    /// with [`OpusDecoder::decode`]. Without FEC data in it (CELT mode, or FEC off at the sender)
    /// libopus conceals the frame as [`OpusDecoder::decode`]`(None)` would.
    pub fn decode_fec(&mut self, next_packet: &[u8]) -> Result<Vec<i16>, AudioError> {
        let samples = packet_samples(next_packet).map_err(|e| AudioError::Opus(e.to_string()))?;
        let mut out = vec![0i16; samples as usize * usize::from(self.channels)];
        let packet = Packet::try_from(next_packet).map_err(opus_error)?;
        let signals = MutSignals::try_from(&mut out[..]).map_err(opus_error)?;
        let per_channel = self.inner.decode(Some(packet), signals, true).map_err(opus_error)?;
        out.truncate(per_channel * usize::from(self.channels));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::ToneSource;
    use crate::audio::test_util::{Rng, dominant};
    use crate::audio::toc::{OpusMode, Toc};

    fn speech_config() -> OpusEncoderConfig {
        let mut config = OpusEncoderConfig::new(1);
        config.bitrate = 24_000;
        config.packet_loss_percent = 20;
        config
    }

    #[test]
    fn a_tone_survives_opus() {
        let mut tone = ToneSource::new(440.0, 0.5, 1);
        let mut encoder = OpusEncoder::new(1, 32_000).unwrap();
        let mut decoder = OpusDecoder::new(1).unwrap();
        let mut decoded = Vec::new();
        for _ in 0..25 {
            let packet = encoder.encode(&tone.next_samples()).unwrap();
            assert!(packet.is_speech());
            let packet = packet.into_packet().unwrap();
            assert!(packet.len() < 200, "{} bytes at 32 kbit/s", packet.len());
            decoded.extend(decoder.decode(Some(&packet)).unwrap());
        }
        assert_eq!(decoded.len(), 25 * FRAME_SAMPLES);
        assert!(dominant(&decoded[10 * FRAME_SAMPLES..], 440.0));
        // A lost packet is concealed with a frame of audio.
        assert_eq!(decoder.decode(None).unwrap().len(), FRAME_SAMPLES);
    }

    #[test]
    fn wrong_sizes_and_garbage_are_errors() {
        let mut encoder = OpusEncoder::new(2, 64_000).unwrap();
        assert!(matches!(
            encoder.encode(&[0; 960]),
            Err(AudioError::FrameSize { expected: 1920, got: 960 })
        ));
        assert!(OpusEncoder::new(3, 64_000).is_err());
        let mut config = OpusEncoderConfig::new(0);
        assert!(matches!(OpusEncoder::with_config(&config), Err(AudioError::Channels(0))));
        // Out-of-range settings are clamped, not refused.
        config.channels = 1;
        config.bitrate = u32::MAX;
        config.packet_loss_percent = 255;
        config.complexity = 99;
        let mut encoder = OpusEncoder::with_config(&config).unwrap();
        encoder.set_bitrate(0).unwrap();
        encoder.set_packet_loss_percent(200).unwrap();
        let mut decoder = OpusDecoder::new(1).unwrap();
        assert!(decoder.decode(Some(&[])).is_err());
        assert!(decoder.decode_fec(&[]).is_err());
        assert!(decoder.decode_fec(&[Toc::from_parts(1, false, 3).0]).is_err());
    }

    #[test]
    fn dtx_sends_the_first_silent_packet_then_nothing_until_speech() {
        let mut encoder = OpusEncoder::with_config(&OpusEncoderConfig::default()).unwrap();
        let mut tone = ToneSource::new(440.0, 0.5, 1);
        for _ in 0..10 {
            assert!(encoder.encode(&tone.next_samples()).unwrap().is_speech());
        }
        let silence = [0i16; FRAME_SAMPLES];
        let outcomes: Vec<Encoded> = (0..100).map(|_| encoder.encode(&silence).unwrap()).collect();
        let first_dtx = outcomes
            .iter()
            .position(|o| matches!(o, Encoded::ComfortNoise(p) if p.len() <= 2))
            .expect("DTX within 2 s of silence");
        // After the first DTX packet, nothing but (at most) periodic comfort-noise updates.
        let after = &outcomes[first_dtx + 1..];
        let nothing = after.iter().filter(|o| **o == Encoded::Nothing).count();
        assert!(
            nothing * 10 >= after.len() * 8,
            "{nothing} of {} silent frames sent nothing",
            after.len()
        );
        assert!(after.iter().all(|o| !o.is_speech()), "{after:?}");
        // libopus refreshes the comfort noise every 400 ms: that packet follows 19 unsent frames
        // and is sent as comfort noise, and DTX restarts with a sent 1-byte packet.
        for (i, outcome) in after.iter().enumerate() {
            if let Encoded::ComfortNoise(packet) = outcome {
                if packet.len() > 2 {
                    assert!(
                        i >= 19 && after[i - 19..i].iter().all(|o| *o == Encoded::Nothing),
                        "{after:?}"
                    );
                } else {
                    assert!(
                        matches!(&after[i - 1], Encoded::ComfortNoise(p) if p.len() > 2),
                        "{after:?}"
                    );
                }
            }
        }
        // Speech ends DTX at once.
        assert!(encoder.encode(&tone.next_samples()).unwrap().is_speech());
        // Without DTX every frame is a packet.
        let mut plain = OpusEncoder::new(1, 32_000).unwrap();
        assert!((0..50).all(|_| plain.encode(&silence).unwrap().packet().is_some()));
    }

    /// A voiced-speech-like signal that prediction cannot extrapolate: the pitch jumps every
    /// 20 ms, with breath noise and a syllable envelope (SILK's voice detector codes FEC only
    /// for active speech: a steady pure tone gets none).
    fn hopping_buzz(frames: usize) -> Vec<Vec<i16>> {
        let mut rng = Rng(7);
        let mut phase = 0.0f64;
        (0..frames)
            .map(|k| {
                let frequency = 150.0 + 350.0 * rng.unit();
                (0..FRAME_SAMPLES)
                    .map(|i| {
                        phase += frequency / 48_000.0;
                        let t = (k * FRAME_SAMPLES + i) as f64 / 48_000.0;
                        let envelope = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 5.0 * t).sin();
                        let x =
                            (2.0 * std::f64::consts::PI * phase).sin() + 0.3 * (rng.unit() - 0.5);
                        (12_000.0 * x * envelope) as i16
                    })
                    .collect()
            })
            .collect()
    }

    fn error_energy(a: &[i16], b: &[i16]) -> f64 {
        a.iter().zip(b).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum()
    }

    #[test]
    fn fec_recovers_a_lost_frame_better_than_concealment() {
        let frames = hopping_buzz(40);
        let mut encoder = OpusEncoder::with_config(&speech_config()).unwrap();
        let packets: Vec<Vec<u8>> =
            frames.iter().map(|f| encoder.encode(f).unwrap().into_packet().unwrap()).collect();
        assert!(packets.iter().skip(5).all(|p| Toc::of(p).unwrap().mode() != OpusMode::Celt));
        let (mut fec_error, mut plc_error) = (0.0, 0.0);
        for lost in 10..38 {
            let mut reference = OpusDecoder::new(1).unwrap();
            let mut with_fec = OpusDecoder::new(1).unwrap();
            let mut with_plc = OpusDecoder::new(1).unwrap();
            for packet in &packets[..lost] {
                reference.decode(Some(packet)).unwrap();
                with_fec.decode(Some(packet)).unwrap();
                with_plc.decode(Some(packet)).unwrap();
            }
            let truth = reference.decode(Some(&packets[lost])).unwrap();
            let recovered = with_fec.decode_fec(&packets[lost + 1]).unwrap();
            assert_eq!(recovered.len(), FRAME_SAMPLES);
            let concealed = with_plc.decode(None).unwrap();
            fec_error += error_energy(&truth, &recovered);
            plc_error += error_energy(&truth, &concealed);
        }
        assert!(fec_error * 4.0 < plc_error, "FEC error {fec_error:e}, PLC error {plc_error:e}");
    }
}
