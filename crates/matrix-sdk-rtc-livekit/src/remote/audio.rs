//! Other members' audio: Opus packets as they arrive (to record without re-encoding), or decoded
//! into PCM paced at 20 ms, through a jitter buffer that reorders, recovers lost packets from
//! in-band FEC and conceals the rest.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use livekit_str0m::{RemoteAudioFrame, RemoteAudioTrack, RemoteTrackInfo};
use matrix_sdk_rtc::CallMember;
use rtc_media::audio::{AudioClock, AudioFrame, JitterBuffer, JitterBufferConfig, JitterStats};
use tokio::sync::mpsc;

use super::TrackOrigin;

/// Decoded frames waiting for the application: 200 ms; a reader further behind loses the
/// oldest (real-time audio does not wait).
const DECODED_BUFFER: usize = 10;

/// A remote participant's audio track. Read its Opus packets with
/// [`RemoteAudio::recv_packet`], or turn it into paced PCM with [`RemoteAudio::decode`].
#[derive(Debug)]
pub struct RemoteAudio {
    origin: TrackOrigin,
    track: RemoteAudioTrack,
}

impl RemoteAudio {
    pub(crate) fn new(track: RemoteAudioTrack, origin: TrackOrigin) -> Self {
        Self { origin, track }
    }

    /// Who publishes the track and what LiveKit says about it.
    pub fn info(&self) -> &RemoteTrackInfo {
        &self.origin.info
    }

    /// The LiveKit server the track comes from (without credentials).
    pub fn livekit_url(&self) -> &str {
        &self.origin.livekit_url
    }

    /// The call member behind the track, as the call is now.
    pub fn member(&self) -> Option<CallMember> {
        self.origin.member()
    }

    /// The next Opus packet, in order, with its RTP time (48 kHz; gaps are lost packets or
    /// silence the sender did not send); `None` once the track ended.
    pub async fn recv_packet(&mut self) -> Option<RemoteAudioFrame> {
        self.track.recv().await
    }

    /// Packets of this (encrypted) track that did not decrypt.
    pub fn packets_undecryptable(&self) -> u64 {
        self.track.frames_undecryptable()
    }

    /// Decodes the track into 20 ms PCM frames (48 kHz, `channels` 1 or 2), paced in real time
    /// from the first packet on: one frame every 20 ms, concealed when its packet is missing,
    /// silent while the sender sends nothing.
    pub fn decode(self, channels: u16) -> DecodedAudio {
        let (tx, frames) = mpsc::channel(DECODED_BUFFER);
        let stats = Arc::new(Mutex::new(RemoteAudioStats::default()));
        tokio::spawn(play_out(self.track, channels.clamp(1, 2), tx, stats.clone()));
        DecodedAudio { origin: self.origin, frames, stats }
    }
}

/// What happened to a decoded remote audio track so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RemoteAudioStats {
    /// Packets received.
    pub packets: u64,
    /// The jitter buffer's counters: frames played, concealed, recovered from FEC, late.
    pub jitter: JitterStats,
    /// Frames dropped because the application did not take them in time.
    pub dropped: u64,
}

/// A remote participant's audio as 20 ms PCM frames at 48 kHz.
#[derive(Debug)]
pub struct DecodedAudio {
    origin: TrackOrigin,
    frames: mpsc::Receiver<AudioFrame>,
    stats: Arc<Mutex<RemoteAudioStats>>,
}

impl DecodedAudio {
    /// Who publishes the track.
    pub fn info(&self) -> &RemoteTrackInfo {
        &self.origin.info
    }

    /// The call member behind the track, as the call is now.
    pub fn member(&self) -> Option<CallMember> {
        self.origin.member()
    }

    /// The next 20 ms; `None` once the track ended.
    pub async fn recv(&mut self) -> Option<AudioFrame> {
        self.frames.recv().await
    }

    /// Counters so far.
    pub fn stats(&self) -> RemoteAudioStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Feeds packets into a jitter buffer and takes one frame out of it every 20 ms.
async fn play_out(
    mut track: RemoteAudioTrack,
    channels: u16,
    out: mpsc::Sender<AudioFrame>,
    stats: Arc<Mutex<RemoteAudioStats>>,
) {
    let track_sid = track.info().track_sid.clone();
    let mut buffer = match JitterBuffer::new(JitterBufferConfig { channels, ..Default::default() })
    {
        Ok(buffer) => buffer,
        Err(error) => {
            tracing::warn!(%track_sid, %error, "no audio decoder; not decoding this track");
            return;
        }
    };
    let mut clock: Option<AudioClock> = None;
    let mut packets = 0u64;
    let mut dropped = 0u64;
    loop {
        let deadline = clock.as_ref().map(|c| c.next_deadline());
        tokio::select! {
            packet = track.recv() => {
                let Some(packet) = packet else { break };
                packets += 1;
                let now = Instant::now();
                buffer.push(packet.rtp_timestamp, &packet.data, now);
                clock.get_or_insert_with(|| AudioClock::new(now));
            }
            () = sleep_until(deadline) => {
                let Some(clock) = clock.as_mut() else { continue };
                let now = Instant::now();
                while clock.take(now).is_some() {
                    let frame = buffer.pop(now);
                    match out.try_send(frame) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                }
                let mut stats = stats.lock().unwrap_or_else(|e| e.into_inner());
                *stats = RemoteAudioStats { packets, jitter: buffer.stats(), dropped };
            }
        }
    }
    tracing::debug!(%track_sid, packets, "remote audio ended");
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
