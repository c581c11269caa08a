//! Audio tracks: Opus packets in and out, with the audio level LiveKit's active-speaker detection
//! reads, and the handles.

use std::time::Duration;

use super::{Incoming, LocalTrackHandle, OutgoingFrame, RemoteTrackInfo, TrackSource};
use crate::error::TrackError;

/// The RTP clock rate of Opus (RFC 7587), whatever the encoder's internal rate.
pub(crate) const OPUS_CLOCK_RATE: u64 = 48_000;

/// How loud a packet is, as the RTP audio-level header extension carries it (RFC 6464). LiveKit
/// picks the active speakers from these values, so a track that does not set them is never
/// named as speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioLevel {
    /// The level in -dBov: 0 is the loudest, 127 silence (values above 127 are sent as 127).
    pub dbov: u8,
    /// Whether the packet carries voice (the encoder's or a detector's verdict).
    pub voice: bool,
}

impl AudioLevel {
    /// Silence.
    pub const SILENT: Self = Self { dbov: 127, voice: false };
}

/// How a local audio track is published.
#[derive(Debug, Clone)]
pub struct AudioTrackOptions {
    /// The track name other participants see.
    pub name: String,
    /// Microphone (the default) or screen-share audio.
    pub source: TrackSource,
    /// Two channels (music); voice is mono.
    pub stereo: bool,
    /// Whether the encoder stops sending during silence (discontinuous transmission), announced
    /// to the server so that subscribers expect gaps.
    pub dtx: bool,
    /// The bitrate the encoder aims at, bits per second.
    pub max_bitrate: u32,
    /// Whether frames are end-to-end encrypted (`TrackInfo.encryption = GCM`); needs a frame
    /// cryptor in the room options.
    pub encrypted: bool,
}

impl Default for AudioTrackOptions {
    fn default() -> Self {
        Self {
            name: "microphone".into(),
            source: TrackSource::Microphone,
            stereo: false,
            dtx: true,
            max_bitrate: 32_000,
            encrypted: false,
        }
    }
}

/// One Opus packet going out.
#[derive(Clone, PartialEq, Eq)]
pub struct EncodedAudioFrame {
    /// The Opus packet (one 10 to 60 ms frame; calls use 20 ms).
    pub data: Vec<u8>,
    /// Capture time of its first sample on the source's clock; the RTP timestamp is derived
    /// from it (48 kHz). Use the same clock as the video track's frames to keep them in sync.
    pub timestamp: Duration,
    /// Its level, sent in the RTP header for the server's active-speaker detection.
    pub level: Option<AudioLevel>,
}

impl std::fmt::Debug for EncodedAudioFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodedAudioFrame")
            .field("bytes", &self.data.len())
            .field("timestamp", &self.timestamp)
            .field("level", &self.level)
            .finish()
    }
}

/// One Opus packet received on a remote audio track (decrypted when a frame cryptor is
/// installed).
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteAudioFrame {
    /// The Opus packet.
    pub data: Vec<u8>,
    /// The RTP timestamp (48 kHz), extended to 64 bits: gaps in it are lost packets or silence
    /// the sender did not transmit (DTX).
    pub rtp_timestamp: u64,
    /// The sender's level for it, when the packet carried one (LiveKit reads it for its
    /// active-speaker detection and does not always pass it on).
    pub level: Option<AudioLevel>,
    /// `false` when packets were lost just before this one.
    pub contiguous: bool,
}

impl std::fmt::Debug for RemoteAudioFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteAudioFrame")
            .field("bytes", &self.data.len())
            .field("rtp_timestamp", &self.rtp_timestamp)
            .field("level", &self.level)
            .field("contiguous", &self.contiguous)
            .finish()
    }
}

/// A published audio track: write Opus packets into it, one per 20 ms, paced by the caller.
///
/// Packets are sent as they come; a busy connection drops them and says so. Send silence as
/// the encoder makes it (with DTX on, the encoder's own silence packets, as few as it makes).
#[derive(Debug, Clone)]
pub struct LocalAudioTrack {
    pub(crate) handle: LocalTrackHandle,
    pub(crate) options: AudioTrackOptions,
}

impl LocalAudioTrack {
    /// The client id of the track (`AddTrackRequest.cid`).
    pub fn cid(&self) -> &str {
        &self.handle.cid
    }

    /// The server's track sid (`TR_…`) of the current session.
    pub fn sid(&self) -> Option<String> {
        self.handle.sid()
    }

    /// How it was published.
    pub fn options(&self) -> &AudioTrackOptions {
        &self.options
    }

    /// Sends one Opus packet. Never blocks: when the connection task is behind the packet is
    /// dropped and [`TrackError::Busy`] returned.
    pub fn write(&self, frame: EncodedAudioFrame) -> Result<(), TrackError> {
        self.handle.write(OutgoingFrame::Audio(frame))
    }

    /// Packets that went out on the connection so far.
    pub fn frames_sent(&self) -> u64 {
        self.handle.frames_sent()
    }

    /// Packets dropped because the connection was busy.
    pub fn frames_dropped(&self) -> u64 {
        self.handle.frames_dropped()
    }

    /// Mutes or unmutes the track (other participants see the state; write nothing while muted:
    /// written packets are dropped).
    pub async fn set_muted(&self, muted: bool) -> Result<(), TrackError> {
        self.handle.set_muted(muted).await
    }

    /// Stops publishing the track; writes to it fail with [`TrackError::Closed`] from now on.
    pub async fn unpublish(self) -> Result<(), TrackError> {
        self.handle.unpublish().await
    }
}

/// A subscribed remote audio track: receive its Opus packets, in order.
#[derive(Debug)]
pub struct RemoteAudioTrack {
    pub(crate) incoming: Incoming<RemoteAudioFrame>,
}

impl RemoteAudioTrack {
    /// Publisher and track metadata.
    pub fn info(&self) -> &RemoteTrackInfo {
        &self.incoming.info
    }

    /// The next packet; `None` once the track is unsubscribed or the room is gone.
    pub async fn recv(&mut self) -> Option<RemoteAudioFrame> {
        self.incoming.recv().await
    }

    /// Packets of this (encrypted) track that did not decrypt and were dropped.
    pub fn frames_undecryptable(&self) -> u64 {
        self.incoming.frames_undecryptable()
    }
}

/// The 48 kHz RTP time of a capture timestamp.
pub(crate) fn rtp_time(timestamp: Duration) -> u64 {
    u64::try_from(timestamp.as_micros() * u128::from(OPUS_CLOCK_RATE) / 1_000_000)
        .unwrap_or(u64::MAX)
}

/// The level from the RTP extension as str0m hands it (-dBov as a negative number).
pub(crate) fn level_from_rtp(level: Option<i8>, voice: Option<bool>) -> Option<AudioLevel> {
    level.map(|l| AudioLevel { dbov: l.unsigned_abs().min(127), voice: voice.unwrap_or(false) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtp_time_is_48_khz() {
        assert_eq!(rtp_time(Duration::from_millis(20)), 960);
        assert_eq!(rtp_time(Duration::from_secs(3600)), 3600 * 48_000);
    }

    #[test]
    fn levels_from_the_wire_are_clamped_and_positive() {
        assert_eq!(
            level_from_rtp(Some(-30), Some(true)),
            Some(AudioLevel { dbov: 30, voice: true })
        );
        assert_eq!(
            level_from_rtp(Some(i8::MIN), None),
            Some(AudioLevel { dbov: 127, voice: false })
        );
        assert_eq!(level_from_rtp(None, Some(true)), None);
    }
}
