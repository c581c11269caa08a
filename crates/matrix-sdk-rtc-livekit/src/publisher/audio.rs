//! Publishing audio: an [`AudioSource`] (tone, WAV file, microphone, PCM the application pushes)
//! through Opus into a LiveKit track, one packet per 20 ms on a drift-free clock, each with its
//! level so that LiveKit names us when we speak.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use livekit_str0m::media::encode_audio;
use livekit_str0m::{AudioTrackOptions, LocalAudioTrack, Room, TrackError};
use rtc_media::audio::{
    AudioClock, AudioError, AudioFrame, AudioSource, FRAME_DURATION, FRAME_SAMPLES, OpusEncoder,
    OpusEncoderConfig, ToneSource, WavSource,
};
use tokio::sync::{Notify, mpsc, watch};

use super::Running;
use crate::error::Error;
use crate::events::CallEvent;

type OpenSource = dyn Fn() -> Result<Box<dyn AudioSource>, AudioError> + Send + Sync;

/// What to publish as audio: a source opened anew for every connection, and how to encode it.
///
/// ```
/// use matrix_sdk_rtc_livekit::AudioFeed;
///
/// let tone = AudioFeed::tone(440.0).with_bitrate(24_000);
/// let file = AudioFeed::wav_file("announcement.wav", true);
/// let (pushed, pcm) = AudioFeed::pushed(1);
/// # let _ = (tone, file, pushed, pcm);
/// ```
#[derive(Clone)]
pub struct AudioFeed {
    open: Arc<OpenSource>,
    bitrate: u32,
    dtx: bool,
    fec: bool,
    name: String,
}

impl std::fmt::Debug for AudioFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioFeed")
            .field("bitrate", &self.bitrate)
            .field("dtx", &self.dtx)
            .field("fec", &self.fec)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl AudioFeed {
    /// A feed of the sources `open` makes (it runs on a blocking thread: it may open a device);
    /// Opus at 32 kbit/s with in-band FEC and DTX, as a microphone named `microphone`.
    pub fn new<S, F>(open: F) -> Self
    where
        S: AudioSource + 'static,
        F: Fn() -> Result<S, AudioError> + Send + Sync + 'static,
    {
        Self {
            open: Arc::new(move || open().map(|s| Box::new(s) as Box<dyn AudioSource>)),
            bitrate: 32_000,
            dtx: true,
            fec: true,
            name: "microphone".into(),
        }
    }

    /// A sine tone of `frequency` Hz (mono), at half of full scale, swelling softer by half and
    /// back every 3 s like a voice, so that LiveKit keeps announcing it as a speaker (it
    /// announces levels only when they change).
    pub fn tone(frequency: f64) -> Self {
        Self::new(move || {
            Ok(ToneSource::new(frequency, 0.5, 1).swelling(0.5, Duration::from_secs(3)))
        })
    }

    /// A WAV file (any PCM or float layout and rate, resampled to 48 kHz), from the start on
    /// every connection; `looping` starts it over at its end, else the track goes silent.
    pub fn wav_file(path: impl Into<std::path::PathBuf>, looping: bool) -> Self {
        let path = path.into();
        Self::new(move || WavSource::open(&path, looping))
    }

    /// A feed of PCM the application produces (48 kHz, interleaved, `channels` 1 or 2), and the
    /// [`PcmSender`] to hand it over with. Silence goes out (as few packets as DTX allows)
    /// whenever nothing is queued.
    pub fn pushed(channels: u16) -> (Self, PcmSender) {
        let channels = channels.clamp(1, 2);
        let queue = Arc::new(PcmQueue::new(channels));
        let sender = PcmSender { queue: queue.clone() };
        let feed = Self::new(move || Ok(PushedSource { queue: queue.clone() }));
        (feed, sender)
    }

    /// The Opus bitrate, bits per second (6 to 510 kbit/s).
    pub fn with_bitrate(mut self, bits_per_second: u32) -> Self {
        self.bitrate = bits_per_second.clamp(6_000, 510_000);
        self
    }

    /// Discontinuous transmission: almost nothing is sent during silence (default on, as
    /// Element Call publishes).
    pub fn with_dtx(mut self, dtx: bool) -> Self {
        self.dtx = dtx;
        self
    }

    /// Opus in-band forward error correction (default on): each packet carries a rougher copy
    /// of the one before, which receivers use when that one is lost.
    pub fn with_fec(mut self, fec: bool) -> Self {
        self.fec = fec;
        self
    }

    /// The track name other participants see.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }
}

/// Opens the feed's source, publishes a track on `room` and starts sending packets.
pub(super) async fn start(
    room: &Room,
    feed: &AudioFeed,
    events: mpsc::Sender<CallEvent>,
    stats_interval: Duration,
    encrypted: bool,
) -> Result<Running, Error> {
    let open = feed.open.clone();
    let source = tokio::task::spawn_blocking(move || open())
        .await
        .map_err(|e| Error::Media(format!("opening the audio source: {e}")))?
        .map_err(|e| Error::Media(format!("opening the audio source: {e}")))?;
    let channels = source.channels();
    let config = OpusEncoderConfig {
        channels,
        bitrate: feed.bitrate,
        fec: feed.fec,
        dtx: feed.dtx,
        ..OpusEncoderConfig::default()
    };
    let encoder =
        OpusEncoder::with_config(&config).map_err(|e| Error::Media(format!("Opus: {e}")))?;
    let options = AudioTrackOptions {
        name: feed.name.clone(),
        stereo: channels == 2,
        dtx: feed.dtx,
        max_bitrate: feed.bitrate,
        encrypted,
        ..AudioTrackOptions::default()
    };
    let track = room.publish_audio(options).await?;
    let pump = Pump { source, encoder, track, events, stats_interval };
    Ok(Running::spawn_blocking(move |stopped| pump.run(stopped)))
}

/// The publishing loop's state. It runs on a thread of its own: sources and the encoder are
/// synchronous, and a live source blocks until its device has the next frame.
struct Pump {
    source: Box<dyn AudioSource>,
    encoder: OpusEncoder,
    track: LocalAudioTrack,
    events: mpsc::Sender<CallEvent>,
    stats_interval: Duration,
}

impl Pump {
    fn run(mut self, stopped: watch::Receiver<bool>) {
        let live = self.source.is_live();
        let mut clock = AudioClock::new(Instant::now());
        let channels = self.source.channels();
        let (mut sent, mut silent, mut dropped) = (0u64, 0u64, 0u64);
        let mut window = Instant::now();
        let mut announced = false;
        let mut ended = false;
        let end = loop {
            if *stopped.borrow() {
                break None;
            }
            let index = if live {
                clock.take(Instant::now()).unwrap_or_else(|| clock.next_index())
            } else {
                match clock.take(Instant::now()) {
                    Some(index) => index,
                    None => {
                        let wait = clock.next_deadline().saturating_duration_since(Instant::now());
                        std::thread::sleep(wait.min(FRAME_DURATION));
                        continue;
                    }
                }
            };
            let frame = if ended {
                AudioFrame::silence(channels)
            } else {
                match self.source.next_frame() {
                    Ok(Some(frame)) => frame.to_channels(channels),
                    Ok(None) => {
                        tracing::info!("the audio source ended; sending silence");
                        ended = true;
                        AudioFrame::silence(channels)
                    }
                    Err(error) => break Some(format!("the audio source failed: {error}")),
                }
            };
            let packet = match encode_audio(&mut self.encoder, &frame.samples, clock.offset(index))
            {
                Ok(Some(packet)) => packet,
                Ok(None) => {
                    silent += 1;
                    continue;
                }
                Err(error) => break Some(format!("Opus encoding failed: {error}")),
            };
            match self.track.write(packet) {
                Ok(()) => sent += 1,
                Err(TrackError::Busy) => dropped += 1,
                Err(_) => break None,
            }
            if !announced && self.track.frames_sent() > 0 {
                announced = true;
                let track_sid = self.track.sid().unwrap_or_default();
                let _ = self.events.try_send(CallEvent::AudioPublishing { track_sid });
            }
            if window.elapsed() >= self.stats_interval {
                tracing::debug!(sent, silent, dropped, "audio sent");
                (sent, silent, dropped) = (0, 0, 0);
                window = Instant::now();
            }
        };
        if let Some(error) = end {
            tracing::error!(%error, "publishing audio stopped");
            let _ = self.events.try_send(CallEvent::PublisherStopped { error: Some(error) });
        }
    }
}

/// How much PCM a [`PcmSender`] queues before [`PcmSender::send`] waits: 2 s.
const PUSHED_CAPACITY_FRAMES: usize = 100;
/// A last partial frame goes out (padded with silence) once nothing was pushed for this long.
const PUSHED_FLUSH_AFTER: Duration = Duration::from_millis(60);

/// PCM pushed by the application, waiting to be sent.
#[derive(Debug)]
struct PcmQueue {
    channels: u16,
    state: Mutex<PcmState>,
    space: Notify,
}

#[derive(Debug, Default)]
struct PcmState {
    samples: VecDeque<i16>,
    last_push: Option<Instant>,
}

impl PcmQueue {
    fn new(channels: u16) -> Self {
        Self { channels, state: Mutex::new(PcmState::default()), space: Notify::new() }
    }

    fn frame_len(&self) -> usize {
        FRAME_SAMPLES * usize::from(self.channels)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PcmState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next 20 ms: a whole frame when one is queued; what is left (padded) once the
    /// application stopped pushing; else silence.
    fn take_frame(&self, now: Instant) -> AudioFrame {
        let frame_len = self.frame_len();
        let samples = {
            let mut state = self.lock();
            let queued = state.samples.len();
            let idle =
                state.last_push.is_none_or(|at| now.duration_since(at) >= PUSHED_FLUSH_AFTER);
            if queued >= frame_len || (queued > 0 && idle) {
                let take = queued.min(frame_len);
                let mut samples: Vec<i16> = state.samples.drain(..take).collect();
                samples.resize(frame_len, 0);
                Some(samples)
            } else {
                None
            }
        };
        match samples {
            Some(samples) => {
                self.space.notify_waiters();
                AudioFrame { samples, channels: self.channels }
            }
            None => AudioFrame::silence(self.channels),
        }
    }
}

/// Hands PCM to an [`AudioFeed::pushed`] feed: 48 kHz, interleaved on the feed's channels, in
/// chunks of any length. Queued audio goes out in real time on whichever connection is up.
/// Cheap to clone.
#[derive(Debug, Clone)]
pub struct PcmSender {
    queue: Arc<PcmQueue>,
}

impl PcmSender {
    /// Queues `samples`, waiting while more than 2 s are queued (so a text-to-speech engine
    /// can hand over a whole sentence, and a live producer is held to real time).
    pub async fn send(&self, samples: &[i16]) {
        let capacity = PUSHED_CAPACITY_FRAMES * self.queue.frame_len();
        loop {
            let notified = self.queue.space.notified();
            {
                let mut state = self.queue.lock();
                if state.samples.len() < capacity {
                    state.samples.extend(samples.iter().copied());
                    state.last_push = Some(Instant::now());
                    return;
                }
            }
            // Woken when a frame is taken; the timeout covers a feed that is not publishing.
            let _ = tokio::time::timeout(FRAME_DURATION * 5, notified).await;
        }
    }

    /// Queues `samples` without waiting; `false` (and nothing queued) when 2 s are queued
    /// already.
    pub fn try_send(&self, samples: &[i16]) -> bool {
        let capacity = PUSHED_CAPACITY_FRAMES * self.queue.frame_len();
        let mut state = self.queue.lock();
        if state.samples.len() >= capacity {
            return false;
        }
        state.samples.extend(samples.iter().copied());
        state.last_push = Some(Instant::now());
        true
    }

    /// Drops everything queued (to interrupt speech).
    pub fn clear(&self) {
        self.queue.lock().samples.clear();
        self.queue.space.notify_waiters();
    }

    /// How much is queued.
    pub fn queued(&self) -> Duration {
        let samples = self.queue.lock().samples.len() / usize::from(self.queue.channels);
        Duration::from_micros(samples as u64 * 1_000_000 / 48_000)
    }

    /// The channels the feed expects.
    pub fn channels(&self) -> u16 {
        self.queue.channels
    }
}

/// The source of a pushed feed, paced by the publisher's clock.
struct PushedSource {
    queue: Arc<PcmQueue>,
}

impl AudioSource for PushedSource {
    fn channels(&self) -> u16 {
        self.queue.channels
    }

    fn next_frame(&mut self) -> Result<Option<AudioFrame>, AudioError> {
        Ok(Some(self.queue.take_frame(Instant::now())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pushed_pcm_comes_out_in_whole_frames_then_padded_then_silence() {
        let (_, sender) = AudioFeed::pushed(1);
        let queue = sender.queue.clone();
        let now = Instant::now();
        assert_eq!(queue.take_frame(now), AudioFrame::silence(1), "nothing pushed: silence");
        sender.send(&vec![7; FRAME_SAMPLES + 100]).await;
        let first = queue.take_frame(Instant::now());
        assert!(first.samples.iter().all(|&s| s == 7));
        // 100 samples are left: held back while the producer may still push more...
        assert_eq!(queue.take_frame(Instant::now()), AudioFrame::silence(1));
        // ...and sent, padded, once it stopped.
        let tail = queue.take_frame(Instant::now() + PUSHED_FLUSH_AFTER);
        assert_eq!(tail.samples.iter().filter(|&&s| s == 7).count(), 100);
        assert_eq!(tail.samples.len(), FRAME_SAMPLES);
        assert_eq!(sender.queued(), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_or_waits() {
        let (_, sender) = AudioFeed::pushed(2);
        let two_seconds = vec![1; PUSHED_CAPACITY_FRAMES * FRAME_SAMPLES * 2];
        assert!(sender.try_send(&two_seconds));
        assert_eq!(sender.queued(), Duration::from_secs(2));
        assert!(!sender.try_send(&[1, 1]), "full");
        let waiting = tokio::spawn({
            let sender = sender.clone();
            async move { sender.send(&[2, 2]).await }
        });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert!(!waiting.is_finished(), "send waits while the queue is full");
        sender.queue.take_frame(Instant::now());
        tokio::time::timeout(Duration::from_secs(1), waiting).await.unwrap().unwrap();
        sender.clear();
        assert_eq!(sender.queued(), Duration::ZERO);
    }
}
