//! A jitter buffer for received Opus audio. Sans-IO: packets come in with their arrival time,
//! 20 ms frames of PCM go out at playout pace, and the caller passes the time.
//!
//! * **Order**: packets are kept by RTP timestamp (extended to 64 bits, see
//!   [`TimestampExtender`]); duplicates and packets whose time has already been played are
//!   dropped and counted.
//! * **Delay**: a packet is played `target` after it arrived, where `target` is the 95th
//!   percentile of the recent arrival jitter (relative to the fastest packet) plus one frame, so
//!   that the packet after a lost one is usually there for FEC, kept between
//!   [`JitterBufferConfig::min_delay`] (40 ms) and [`JitterBufferConfig::max_delay`] (200 ms).
//!   Playout starts once the first packet waited `target` (or a frame more than `target` is
//!   buffered). The buffer grows by waiting: when it runs empty it conceals and resumes when
//!   the next packet's time has come, so a loss or a DTX gap keeps the sender's timeline and a
//!   late packet adds its lateness to the delay; and when a packet is missing while the delay is
//!   below target, it waits one frame before declaring it lost. It shrinks by time compression: when the delay has stayed over `target + 30 ms` for a
//!   second, two consecutive frames are cross-faded into one (a 20 ms cut, no click); more than
//!   `max_delay` of buffered audio (a burst after a network stall) is cut from the front at once.
//! * **Losses**: a missing frame whose successor is here is recovered from the successor's
//!   in-band FEC; otherwise libopus conceals it (PLC), for at most
//!   [`JitterBufferConfig::max_concealment`] (100 ms) in a row, then silence follows.
//! * **DTX**: after a DTX packet (at most two bytes) the gap until the next packet is silence,
//!   not concealment.
//! * **Pace**: [`JitterBuffer::pop`] hands out one frame per call, for a caller that paces itself
//!   (an [`AudioClock`], a sound card); [`JitterBuffer::pop_due`] one frame per 20 ms slot of the
//!   buffer's own drift-free clock (started by the first playout; after a consumer stall of over
//!   200 ms the audio of the skipped slots is dropped too).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use super::toc::packet_samples;
use super::{
    AudioClock, AudioError, AudioFrame, FRAME_DURATION, FRAME_SAMPLES, OpusDecoder, SAMPLE_RATE,
};

/// Packets kept at most (far more than 200 ms of 2.5 ms packets).
const MAX_PACKETS: usize = 512;
/// Arrivals the jitter estimate looks at (2 s of 20 ms packets).
const JITTER_WINDOW: usize = 100;
/// Played packets whose waiting time decides compression (1 s).
const WAIT_WINDOW: usize = 50;
/// A packet this far past the newest one while others are buffered is a new timeline.
const DISCONTINUITY: u64 = 10 * SAMPLE_RATE as u64;
/// Audio shorter than this (2.5 ms) cannot be concealed by libopus.
const MIN_STEP: u64 = 120;

/// Settings of a [`JitterBuffer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JitterBufferConfig {
    /// Channels of the output (Opus decodes mono and stereo packets to either). Default 1.
    pub channels: u16,
    /// The least playout delay. Default 40 ms.
    pub min_delay: Duration,
    /// The most playout delay. Default 200 ms.
    pub max_delay: Duration,
    /// How long a loss is concealed before silence. Default 100 ms.
    pub max_concealment: Duration,
}

impl JitterBufferConfig {
    /// Defaults for `channels` output channels.
    pub fn new(channels: u16) -> Self {
        Self {
            channels,
            min_delay: Duration::from_millis(40),
            max_delay: Duration::from_millis(200),
            max_concealment: Duration::from_millis(100),
        }
    }
}

impl Default for JitterBufferConfig {
    fn default() -> Self {
        Self::new(1)
    }
}

/// What a [`JitterBuffer`] did, in packets or in steps of (normally) 20 ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JitterStats {
    /// Packets taken into the buffer.
    pub received: u64,
    /// Packets decoded and played.
    pub played: u64,
    /// Steps concealed by PLC.
    pub concealed: u64,
    /// Steps recovered from the next packet's FEC.
    pub fec_recovered: u64,
    /// Steps of silence: DTX, a loss longer than the concealment, waiting for packets.
    pub silence: u64,
    /// Packets that came after their time was played.
    pub late_dropped: u64,
    /// Packets received twice.
    pub duplicates: u64,
    /// Packets without a valid TOC, or that libopus could not decode.
    pub invalid: u64,
    /// Frames removed by cross-fading two into one.
    pub compressed: u64,
    /// Packets cut to bring an over-full buffer back to its target, or dropped with the slots a
    /// stalled consumer skipped.
    pub overflow_dropped: u64,
    /// Waits of one frame for a missing packet while the delay was below target.
    pub stretched: u64,
    /// Timeline jumps that restarted the buffer.
    pub resets: u64,
}

#[derive(Debug)]
struct Packet {
    payload: Vec<u8>,
    samples: u64,
    arrival: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No packet yet.
    Idle,
    /// Waiting for enough audio (at the start, after running empty).
    Buffering,
    Playing,
}

/// Received Opus packets in, 20 ms frames out; see the [module documentation](self).
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterBufferConfig,
    decoder: OpusDecoder,
    packets: BTreeMap<u64, Packet>,
    state: State,
    /// The timestamp of the next audio to play, once anything was played.
    cursor: Option<u64>,
    /// Samples output since the buffer ran empty (the cursor's time has moved on by that much).
    waited: u64,
    /// The end of the newest packet received.
    newest_end: u64,
    /// Decoded samples not handed out yet (interleaved).
    pcm: Vec<i16>,
    /// The output slots of [`JitterBuffer::pop`], from the first playout.
    clock: Option<AudioClock>,
    last_was_dtx: bool,
    concealed_in_a_row: u32,
    /// Whether the missing packet at the cursor was already waited for.
    stretched_at: Option<u64>,
    /// Arrival delay relative to the first packet (µs), for the jitter estimate.
    reference: Option<(Instant, u64)>,
    /// The last [`JITTER_WINDOW`] of them in arrival order, and the same sorted.
    relative_delays: VecDeque<i64>,
    sorted_delays: Vec<i64>,
    target: Duration,
    /// How long recently played packets waited (µs).
    waits: VecDeque<u64>,
    stats: JitterStats,
}

impl JitterBuffer {
    /// A buffer with `config`.
    pub fn new(config: JitterBufferConfig) -> Result<Self, AudioError> {
        let decoder = OpusDecoder::new(config.channels)?;
        Ok(Self::with_decoder(config, decoder))
    }

    /// This buffer as a new one with `config`: no packets, timeline, estimates or statistics,
    /// and its decoder reset rather than made again when the channels stay the same (for a
    /// stream that starts over, or a receiver that reuses its buffers).
    pub fn restarted(self, config: JitterBufferConfig) -> Result<Self, AudioError> {
        let mut decoder = self.decoder;
        if decoder.channels() == config.channels {
            decoder.reset()?;
        } else {
            decoder = OpusDecoder::new(config.channels)?;
        }
        Ok(Self::with_decoder(config, decoder))
    }

    /// A new buffer around `decoder` (new or reset, of `config.channels`).
    fn with_decoder(config: JitterBufferConfig, decoder: OpusDecoder) -> Self {
        let mut config = config;
        config.max_delay = config.max_delay.max(config.min_delay);
        Self {
            target: config.min_delay,
            config,
            decoder,
            packets: BTreeMap::new(),
            state: State::Idle,
            cursor: None,
            waited: 0,
            newest_end: 0,
            pcm: Vec::new(),
            clock: None,
            last_was_dtx: false,
            concealed_in_a_row: 0,
            stretched_at: None,
            reference: None,
            relative_delays: VecDeque::with_capacity(JITTER_WINDOW),
            sorted_delays: Vec::with_capacity(JITTER_WINDOW),
            waits: VecDeque::with_capacity(WAIT_WINDOW),
            stats: JitterStats::default(),
        }
    }

    /// What the buffer did so far.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The playout delay aimed at, from the observed jitter.
    pub fn target_delay(&self) -> Duration {
        self.target
    }

    /// Audio between the next sample to play and the end of the newest packet (including gaps
    /// that will be concealed).
    pub fn buffered(&self) -> Duration {
        let start = self.cursor.or_else(|| self.packets.keys().next().copied());
        let samples = start.map_or(0, |s| self.newest_end.saturating_sub(s))
            + (self.pcm.len() / usize::from(self.config.channels)) as u64;
        samples_to_duration(samples)
    }

    /// Takes a packet: `timestamp` is its RTP timestamp extended to 64 bits (48 kHz), `payload`
    /// the Opus packet, `arrival` when it was received.
    pub fn push(&mut self, timestamp: u64, payload: &[u8], arrival: Instant) {
        let samples = match packet_samples(payload) {
            Ok(samples) => u64::from(samples),
            Err(error) => {
                tracing::debug!(%error, "invalid Opus packet dropped");
                self.stats.invalid += 1;
                return;
            }
        };
        if self.cursor.is_some_and(|cursor| timestamp < cursor) {
            // Too late to play, but it tells how late packets come.
            self.observe_arrival(timestamp, arrival);
            self.stats.late_dropped += 1;
            return;
        }
        if self.packets.contains_key(&timestamp) {
            self.stats.duplicates += 1;
            return;
        }
        if !self.packets.is_empty() && timestamp > self.newest_end.saturating_add(DISCONTINUITY) {
            tracing::info!(jump = timestamp - self.newest_end, "audio timeline jumped; restarting");
            self.restart();
        }
        if self.packets.len() >= MAX_PACKETS {
            self.packets.pop_first();
            self.stats.overflow_dropped += 1;
        }
        self.packets.insert(timestamp, Packet { payload: payload.to_vec(), samples, arrival });
        self.stats.received += 1;
        self.newest_end = self.newest_end.max(timestamp + samples);
        if self.state == State::Idle {
            self.state = State::Buffering;
        }
        self.observe_arrival(timestamp, arrival);
    }

    /// The next frame if its playout slot has come at `now` on the buffer's own clock (call
    /// again until `None`); `None` also before the first playout.
    pub fn pop_due(&mut self, now: Instant) -> Option<AudioFrame> {
        if self.clock.is_none() {
            if self.state != State::Buffering || !self.ready(now) {
                return None;
            }
            self.clock = Some(AudioClock::new(now));
        }
        let clock = self.clock.as_mut()?;
        let skipped_before = clock.skipped();
        let slot = clock.take(now)?;
        let skipped = clock.skipped() - skipped_before;
        let play_time = clock.deadline(slot);
        if skipped > 0 {
            self.skip(skipped);
        }
        Some(self.produce(play_time))
    }

    /// The next frame now, for a caller that paces itself (an [`AudioClock`], a sound card):
    /// one call per 20 ms. Silence until the first playout.
    pub fn pop(&mut self, now: Instant) -> AudioFrame {
        self.produce(now)
    }

    /// Forgets every packet and the timeline (a new stream follows).
    fn restart(&mut self) {
        self.stats.resets += 1;
        self.stats.overflow_dropped += self.packets.len() as u64;
        self.packets.clear();
        self.state = State::Buffering;
        self.cursor = None;
        self.waited = 0;
        self.newest_end = 0;
        self.reference = None;
        self.relative_delays.clear();
        self.sorted_delays.clear();
        self.waits.clear();
        self.stretched_at = None;
    }

    fn observe_arrival(&mut self, timestamp: u64, arrival: Instant) {
        let (first_arrival, first_timestamp) = *self.reference.get_or_insert((arrival, timestamp));
        let since = if arrival >= first_arrival {
            (arrival - first_arrival).as_micros() as i64
        } else {
            -((first_arrival - arrival).as_micros() as i64)
        };
        let media = (i128::from(timestamp) - i128::from(first_timestamp)) * 1_000_000
            / i128::from(SAMPLE_RATE);
        let relative = i128::from(since) - media;
        let relative = relative.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        if self.relative_delays.len() == JITTER_WINDOW
            && let Some(oldest) = self.relative_delays.pop_front()
            && let Ok(index) = self.sorted_delays.binary_search(&oldest)
        {
            self.sorted_delays.remove(index);
        }
        self.relative_delays.push_back(relative);
        let index = self.sorted_delays.partition_point(|&d| d < relative);
        self.sorted_delays.insert(index, relative);
        let fastest = self.sorted_delays[0];
        let late = self.sorted_delays[(self.sorted_delays.len() - 1) * 95 / 100];
        let jitter = Duration::from_micros(late.saturating_sub(fastest).max(0) as u64);
        self.target = (jitter + FRAME_DURATION).clamp(self.config.min_delay, self.config.max_delay);
    }

    /// Whether buffering can end at `now`. After running empty: once the time of the first
    /// packet has come (a loss or DTX gap keeps the sender's timeline; a late packet plays at
    /// once, one frame later than planned). At the start: once the first packet waited
    /// `target`, or a frame more than `target` is buffered.
    fn ready(&self, now: Instant) -> bool {
        let Some(first) = self.packets.keys().next().copied() else {
            return false;
        };
        if let Some(cursor) = self.cursor {
            return first <= cursor + self.waited;
        }
        let earliest_arrival = self.packets.values().map(|p| p.arrival).min().unwrap_or(now);
        let span = samples_to_duration(self.newest_end.saturating_sub(first));
        now.saturating_duration_since(earliest_arrival) >= self.target
            || span >= self.target + FRAME_DURATION
    }

    /// Drops `frames` frames of audio after a consumer stall.
    fn skip(&mut self, frames: u64) {
        let channels = usize::from(self.config.channels);
        let mut samples = frames * FRAME_SAMPLES as u64;
        let from_pcm = (self.pcm.len() / channels).min(samples as usize);
        self.pcm.drain(..from_pcm * channels);
        samples -= from_pcm as u64;
        if let Some(cursor) = self.cursor.as_mut() {
            *cursor += samples;
            let cursor = *cursor;
            while let Some(entry) = self.packets.first_entry() {
                if *entry.key() >= cursor {
                    break;
                }
                entry.remove();
                self.stats.overflow_dropped += 1;
            }
        }
    }

    fn produce(&mut self, play_time: Instant) -> AudioFrame {
        let channels = usize::from(self.config.channels);
        let need = FRAME_SAMPLES * channels;
        if self.state == State::Buffering && self.ready(play_time) {
            self.state = State::Playing;
            self.waited = 0;
            let first = self.packets.keys().next().copied();
            // Resume at the first packet: the time in between was already filled.
            self.cursor = self.cursor.max(first);
            self.waits.clear();
        }
        if self.state == State::Playing {
            self.trim_overflow();
            if self.pcm.is_empty() && self.should_compress() && self.compress(play_time) {
                return self.take_frame();
            }
            while self.pcm.len() < need {
                if !self.step(play_time) {
                    // Ran empty: conceal what is missing and wait for packets again.
                    self.state = State::Buffering;
                    self.waited = 0;
                    break;
                }
            }
        }
        if self.pcm.len() < need {
            let missing = (need - self.pcm.len()) / channels;
            self.fill_missing(missing as u64);
            if self.state == State::Buffering {
                self.waited += missing as u64;
            }
        }
        self.take_frame()
    }

    fn take_frame(&mut self) -> AudioFrame {
        let need = FRAME_SAMPLES * usize::from(self.config.channels);
        let samples: Vec<i16> = self.pcm.drain(..need.min(self.pcm.len())).collect();
        let mut frame = AudioFrame { samples, channels: self.config.channels };
        frame.samples.resize(need, 0);
        frame
    }

    /// Concealment or silence for `samples` per channel when no packet can give them.
    fn fill_missing(&mut self, samples: u64) {
        let channels = usize::from(self.config.channels);
        let played_before = self.cursor.is_some();
        let max_in_a_row =
            (self.config.max_concealment.as_millis() / FRAME_DURATION.as_millis()).max(1) as u32;
        if played_before
            && !self.last_was_dtx
            && self.concealed_in_a_row < max_in_a_row
            && samples >= MIN_STEP
        {
            let samples = samples / MIN_STEP * MIN_STEP;
            match self.decoder.conceal(samples as usize) {
                Ok(pcm) => {
                    self.pcm.extend_from_slice(&pcm);
                    self.stats.concealed += 1;
                    self.concealed_in_a_row += 1;
                    return;
                }
                Err(error) => tracing::debug!(%error, "concealment failed"),
            }
        }
        self.pcm.resize(self.pcm.len() + samples as usize * channels, 0);
        self.stats.silence += 1;
    }

    /// Adds the audio at the cursor to `pcm`: a packet, FEC, concealment or silence. `false`
    /// when nothing is buffered.
    fn step(&mut self, play_time: Instant) -> bool {
        let Some(cursor) = self.cursor else { return false };
        let Some((&timestamp, _)) = self.packets.first_key_value() else {
            return false;
        };
        if timestamp < cursor {
            // Overlaps audio already played (a stream with inconsistent timestamps).
            self.packets.pop_first();
            self.stats.late_dropped += 1;
            return true;
        }
        if timestamp == cursor {
            if let Some((timestamp, packet)) = self.packets.pop_first() {
                self.play(timestamp, packet, play_time);
            }
            return true;
        }
        let gap = timestamp - cursor;
        if gap < MIN_STEP {
            // Timestamps off the 2.5 ms grid: move on to the packet.
            self.cursor = Some(timestamp);
            return true;
        }
        let next_samples = self.packets[&timestamp].samples;
        // Below target: wait one frame for the missing packet before calling it lost.
        if !self.last_was_dtx && self.stretched_at != Some(cursor) && self.delay_below_target() {
            self.stretched_at = Some(cursor);
            self.stats.stretched += 1;
            self.waits.clear();
            self.fill_missing(FRAME_SAMPLES as u64);
            return true;
        }
        let step = gap.min(FRAME_SAMPLES as u64) / MIN_STEP * MIN_STEP;
        if self.last_was_dtx {
            self.pcm.resize(self.pcm.len() + step as usize * usize::from(self.config.channels), 0);
            self.stats.silence += 1;
        } else if gap == next_samples && gap <= FRAME_SAMPLES as u64 {
            let next = self.packets[&timestamp].payload.clone();
            match self.decoder.decode_fec(&next) {
                Ok(pcm) => {
                    self.pcm.extend_from_slice(&pcm);
                    self.stats.fec_recovered += 1;
                }
                Err(_) => self.fill_missing(gap),
            }
        } else {
            self.fill_missing(step);
        }
        self.cursor = Some(cursor + step);
        true
    }

    fn play(&mut self, timestamp: u64, packet: Packet, play_time: Instant) {
        match self.decoder.decode(Some(&packet.payload)) {
            Ok(pcm) => {
                self.pcm.extend_from_slice(&pcm);
                self.stats.played += 1;
            }
            Err(error) => {
                tracing::debug!(%error, "undecodable Opus packet concealed");
                self.stats.invalid += 1;
                if let Ok(pcm) = self.decoder.conceal(packet.samples as usize) {
                    self.pcm.extend_from_slice(&pcm);
                }
            }
        }
        self.last_was_dtx = packet.payload.len() <= 2;
        self.concealed_in_a_row = 0;
        self.cursor = Some(timestamp + packet.samples);
        if self.waits.len() == WAIT_WINDOW {
            self.waits.pop_front();
        }
        self.waits
            .push_back(play_time.saturating_duration_since(packet.arrival).as_micros() as u64);
    }

    /// The delay the recent packets waited, when enough were played to say.
    fn current_delay(&self) -> Option<Duration> {
        (self.waits.len() >= 10)
            .then(|| Duration::from_micros(self.waits.iter().copied().max().unwrap_or(0)))
    }

    fn delay_below_target(&self) -> bool {
        self.current_delay().is_some_and(|delay| delay + Duration::from_millis(10) < self.target)
    }

    fn should_compress(&self) -> bool {
        self.waits.len() == WAIT_WINDOW
            && self
                .current_delay()
                .is_some_and(|delay| delay > self.target + Duration::from_millis(30))
    }

    /// Plays the next two frames as one, cross-faded; `false` if they are not both here.
    fn compress(&mut self, play_time: Instant) -> bool {
        let Some(cursor) = self.cursor else { return false };
        let frame = FRAME_SAMPLES as u64;
        let both_here = self.packets.get(&cursor).is_some_and(|p| p.samples == frame)
            && self.packets.get(&(cursor + frame)).is_some_and(|p| p.samples == frame);
        if !both_here {
            return false;
        }
        for _ in 0..2 {
            let Some((timestamp, packet)) = self.packets.pop_first() else { return false };
            self.play(timestamp, packet, play_time);
        }
        let channels = usize::from(self.config.channels);
        let need = FRAME_SAMPLES * channels;
        if self.pcm.len() < 2 * need {
            return false;
        }
        let (first, second) = self.pcm.split_at(need);
        let mixed: Vec<i16> = first
            .iter()
            .zip(&second[..need])
            .enumerate()
            .map(|(i, (&a, &b))| {
                let w = ((i / channels) as f32 + 0.5) / FRAME_SAMPLES as f32;
                (f32::from(a) * (1.0 - w) + f32::from(b) * w).round() as i16
            })
            .collect();
        self.pcm.splice(..2 * need, mixed);
        self.stats.compressed += 1;
        self.waits.clear();
        true
    }

    /// Cuts packets from the front when more than `max_delay` is buffered.
    fn trim_overflow(&mut self) {
        let Some(cursor) = self.cursor else { return };
        let limit = duration_to_samples(self.config.max_delay + FRAME_DURATION);
        if self.newest_end.saturating_sub(cursor) <= limit {
            return;
        }
        let keep = duration_to_samples(self.target + FRAME_DURATION);
        let new_start = self.newest_end - keep;
        let mut cut = 0;
        while let Some(entry) = self.packets.first_entry() {
            if *entry.key() >= new_start {
                break;
            }
            entry.remove();
            cut += 1;
        }
        let start = self.packets.keys().next().copied().unwrap_or(new_start);
        tracing::debug!(cut, "audio buffer over its maximum delay; cut from the front");
        self.stats.overflow_dropped += cut;
        self.cursor = Some(start);
        self.waits.clear();
    }
}

fn samples_to_duration(samples: u64) -> Duration {
    Duration::from_micros(samples.saturating_mul(1_000_000) / u64::from(SAMPLE_RATE))
}

fn duration_to_samples(duration: Duration) -> u64 {
    (duration.as_micros() * u128::from(SAMPLE_RATE) / 1_000_000) as u64
}

/// Extends 32-bit RTP timestamps to 64 bits across wrap-arounds: each timestamp is placed
/// nearest to the previous one (within ±2³¹). The first one maps to 2³² + its value, so that
/// reordered earlier packets stay positive.
#[derive(Debug, Clone, Default)]
pub struct TimestampExtender {
    last: Option<u64>,
}

impl TimestampExtender {
    /// An extender that has seen nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The 64-bit form of `timestamp`.
    pub fn extend(&mut self, timestamp: u32) -> u64 {
        let extended = match self.last {
            None => (1u64 << 32) + u64::from(timestamp),
            Some(last) => {
                let delta = timestamp.wrapping_sub(last as u32) as i32;
                last.saturating_add_signed(i64::from(delta))
            }
        };
        // Only moving forward advances the reference.
        if self.last.is_none_or(|last| extended > last) {
            self.last = Some(extended);
        }
        extended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::test_util::{Rng, dominant};
    use crate::audio::{OpusEncoder, OpusEncoderConfig};

    /// 440 Hz with a syllable-like 3 Hz envelope (SILK's voice detector codes FEC for it).
    fn voice_like(frame: usize) -> Vec<i16> {
        (0..FRAME_SAMPLES)
            .map(|i| {
                let t = (frame * FRAME_SAMPLES + i) as f64 / 48_000.0;
                let envelope = 0.6 + 0.4 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
                (12_000.0 * envelope * (2.0 * std::f64::consts::PI * 440.0 * t).sin()) as i16
            })
            .collect()
    }

    fn encoder(fec: bool, dtx: bool) -> OpusEncoder {
        let mut config = OpusEncoderConfig::new(1);
        config.fec = fec;
        config.dtx = dtx;
        OpusEncoder::with_config(&config).unwrap()
    }

    /// Packets of `frames` frames of [`voice_like`], every one sent.
    fn packets(frames: usize) -> Vec<Vec<u8>> {
        let mut encoder = encoder(true, false);
        (0..frames)
            .map(|k| encoder.encode(&voice_like(k)).unwrap().into_packet().unwrap())
            .collect()
    }

    /// The packets decoded in order without loss.
    fn reference(packets: &[Vec<u8>]) -> Vec<i16> {
        let mut decoder = OpusDecoder::new(1).unwrap();
        packets.iter().flat_map(|p| decoder.decode(Some(p)).unwrap()).collect()
    }

    const BASE: u64 = 1 << 33;

    /// Feeds `arrivals` (ms after the start, frame index, packet) at their times and takes the
    /// frames due on the buffer's clock, every millisecond, until `frames` frames came out.
    fn run(
        buffer: &mut JitterBuffer,
        arrivals: &[(f64, u64, Vec<u8>)],
        frames: usize,
    ) -> Vec<AudioFrame> {
        let start = Instant::now();
        let at = |ms: f64| start + Duration::from_secs_f64(ms / 1000.0);
        let mut arrivals: Vec<&(f64, u64, Vec<u8>)> = arrivals.iter().collect();
        arrivals.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut next = 0;
        let mut out = Vec::new();
        for ms in 0.. {
            while next < arrivals.len() && arrivals[next].0 <= f64::from(ms) {
                let (time, index, packet) = arrivals[next];
                buffer.push(BASE + index * 960, packet, at(*time));
                next += 1;
            }
            while let Some(frame) = buffer.pop_due(at(f64::from(ms))) {
                out.push(frame);
                if out.len() == frames {
                    return out;
                }
            }
            assert!(ms < 600_000, "never got {frames} frames");
        }
        unreachable!()
    }

    fn pcm(frames: &[AudioFrame]) -> Vec<i16> {
        frames.iter().flat_map(|f| f.samples.iter().copied()).collect()
    }

    fn correlation(a: &[i16], b: &[i16]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
        let norm = |s: &[i16]| s.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        dot / (norm(a) * norm(b))
    }

    fn new_buffer() -> JitterBuffer {
        JitterBuffer::new(JitterBufferConfig::default()).unwrap()
    }

    #[test]
    fn a_restarted_buffer_plays_as_a_new_one() {
        let packets = packets(60);
        let arrivals: Vec<(f64, u64, Vec<u8>)> = packets
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 7 != 3)
            .map(|(i, p)| (i as f64 * 20.0 + (i % 3) as f64 * 6.0, i as u64, p.clone()))
            .collect();
        let mut fresh = new_buffer();
        let expected = pcm(&run(&mut fresh, &arrivals, 50));
        // Used with other settings and channels, then restarted with the defaults.
        let mut used = JitterBuffer::new(JitterBufferConfig::new(2)).unwrap();
        run(&mut used, &arrivals[..20], 10);
        let mut used = used.restarted(JitterBufferConfig::default()).unwrap();
        run(&mut used, &arrivals, 30);
        let mut restarted = used.restarted(JitterBufferConfig::default()).unwrap();
        assert_eq!(restarted.stats(), JitterStats::default());
        assert_eq!(pcm(&run(&mut restarted, &arrivals, 50)), expected);
        assert_eq!(restarted.stats(), fresh.stats());
    }

    #[test]
    fn reordered_packets_play_in_order() {
        let packets = packets(100);
        // Pairs swapped: packet 2k+1 arrives 3 ms before packet 2k.
        let arrivals: Vec<(f64, u64, Vec<u8>)> = packets
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (i as f64 * 20.0 + if i % 2 == 0 { 15.0 } else { -8.0 } + 10.0, i as u64, p.clone())
            })
            .collect();
        let mut buffer = new_buffer();
        let out = run(&mut buffer, &arrivals, 100);
        assert_eq!(pcm(&out), reference(&packets), "the same audio as in order");
        let stats = buffer.stats();
        assert_eq!(
            (stats.played, stats.concealed, stats.late_dropped, stats.stretched),
            (100, 0, 0, 0)
        );
    }

    #[test]
    fn ten_percent_loss_is_recovered_with_fec_and_the_timeline_is_exact() {
        let packets = packets(500);
        let mut rng = Rng(11);
        let mut lost = 0;
        let mut arrivals: Vec<(f64, u64, Vec<u8>)> = Vec::new();
        for (i, packet) in packets.iter().enumerate() {
            let jitter = 8.0 * rng.unit();
            if (3..497).contains(&i) && rng.unit() < 0.1 {
                lost += 1;
            } else {
                arrivals.push((i as f64 * 20.0 + jitter, i as u64, packet.clone()));
            }
        }
        assert!((35..65).contains(&lost), "{lost} lost");
        let mut buffer = new_buffer();
        let out = run(&mut buffer, &arrivals, 500);
        let stats = buffer.stats();
        // Each of the 500 frames is its packet, its FEC copy or concealment: nothing inserted,
        // nothing skipped.
        assert_eq!(stats.played, 500 - lost, "{stats:?}");
        assert_eq!(stats.fec_recovered + stats.concealed, lost, "{stats:?}");
        assert!(stats.fec_recovered * 10 >= lost * 7, "{stats:?}");
        assert_eq!(
            (stats.silence, stats.stretched, stats.compressed, stats.late_dropped),
            (0, 0, 0, 0),
            "{stats:?}"
        );
        // Aligned with the lossless decode all along, and the tone dominates.
        let out = pcm(&out);
        assert!(correlation(&out, &reference(&packets)) > 0.95);
        assert!(dominant(&out, 440.0));
    }

    #[test]
    fn a_dtx_gap_is_silence() {
        // 1 s of voice, 2 s of silence (DTX), 1 s of voice.
        let mut encoder = encoder(true, true);
        let mut arrivals = Vec::new();
        for k in 0..200usize {
            let pcm = if (50..150).contains(&k) { vec![0; FRAME_SAMPLES] } else { voice_like(k) };
            if let Some(packet) = encoder.encode(&pcm).unwrap().into_packet() {
                arrivals.push((k as f64 * 20.0 + 2.0, k as u64, packet));
            }
        }
        assert!(arrivals.len() < 130, "DTX sent {} packets", arrivals.len());
        let mut buffer = new_buffer();
        let out = run(&mut buffer, &arrivals, 200);
        let silent = out.iter().filter(|f| f.samples.iter().all(|&s| s == 0)).count();
        let stats = buffer.stats();
        assert!(silent >= 70, "{silent} silent frames; {stats:?}");
        assert!(stats.concealed <= 3, "{stats:?}");
        // The voice comes back at its time (±2 frames).
        let resumed = out.iter().rposition(|f| f.samples.iter().all(|&s| s == 0)).unwrap() + 1;
        assert!((148..=153).contains(&resumed), "voice back at frame {resumed}");
        assert!(dominant(&pcm(&out[resumed + 2..]), 440.0));
    }

    #[test]
    fn a_burst_loss_is_concealed_then_silent() {
        let packets = packets(100);
        let arrivals: Vec<(f64, u64, Vec<u8>)> = packets
            .iter()
            .enumerate()
            .filter(|(i, _)| !(40..50).contains(i))
            .map(|(i, p)| (i as f64 * 20.0, i as u64, p.clone()))
            .collect();
        let mut buffer = new_buffer();
        let out = run(&mut buffer, &arrivals, 100);
        let stats = buffer.stats();
        // 100 ms concealed, then silence until the packets come back, on time.
        assert_eq!(stats.concealed, 5, "{stats:?}");
        assert!(out[40..45].iter().all(|f| f.level_dbov() < 127));
        assert!(out[45..50].iter().all(|f| f.samples.iter().all(|&s| s == 0)));
        assert_eq!(stats.played, 90);
        let reference = reference(&packets);
        assert!(correlation(&pcm(&out[52..]), &reference[52 * 960..]) > 0.95);
    }

    /// The sender's clock runs `skew` faster than ours.
    fn skewed(skew: f64) -> (JitterBuffer, Vec<AudioFrame>, usize) {
        let packets = packets(1500);
        let arrivals: Vec<(f64, u64, Vec<u8>)> = packets
            .iter()
            .enumerate()
            .map(|(i, p)| (i as f64 * 20.0 / (1.0 + skew), i as u64, p.clone()))
            .collect();
        let mut buffer = new_buffer();
        let frames = (1500.0 / (1.0 + skew)) as usize - 5;
        let out = run(&mut buffer, &arrivals, frames);
        (buffer, out, frames)
    }

    #[test]
    fn a_fast_sender_is_compressed() {
        let (buffer, out, _) = skewed(0.01);
        let stats = buffer.stats();
        // About 15 frames too many over 30 s: compressed away, the delay stays bounded.
        assert!((8..=20).contains(&stats.compressed), "{stats:?}");
        assert_eq!(
            (stats.concealed, stats.late_dropped, stats.overflow_dropped),
            (0, 0, 0),
            "{stats:?}"
        );
        assert!(buffer.buffered() <= Duration::from_millis(120), "{:?}", buffer.buffered());
        assert!(dominant(&pcm(&out), 440.0));
    }

    #[test]
    fn a_slow_sender_is_stretched() {
        let (buffer, out, frames) = skewed(-0.01);
        let stats = buffer.stats();
        // About 15 frames missing over 30 s: each wait inserts concealment, rarely.
        assert!(stats.concealed + stats.silence <= 40, "{stats:?}");
        assert_eq!(stats.played, frames as u64 - stats.concealed - stats.silence, "{stats:?}");
        assert!(stats.late_dropped <= 3, "{stats:?}");
        assert!(dominant(&pcm(&out), 440.0));
    }

    #[test]
    fn jitter_raises_the_target_within_bounds() {
        let packets = packets(500);
        let mut rng = Rng(5);
        // Up to 80 ms of jitter.
        let arrivals: Vec<(f64, u64, Vec<u8>)> = packets
            .iter()
            .enumerate()
            .map(|(i, p)| (i as f64 * 20.0 + 80.0 * rng.unit().powi(2), i as u64, p.clone()))
            .collect();
        let mut buffer = new_buffer();
        let out = run(&mut buffer, &arrivals, 480);
        let target = buffer.target_delay();
        assert!(
            target >= Duration::from_millis(70) && target <= Duration::from_millis(200),
            "{target:?}"
        );
        let stats = buffer.stats();
        // A few losses while the target grows, then none.
        assert!(stats.late_dropped + stats.concealed <= 25, "{stats:?}");
        assert!(dominant(&pcm(&out[100..]), 440.0));
        // Huge jitter is capped.
        let arrivals: Vec<(f64, u64, Vec<u8>)> = packets
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (i as f64 * 20.0 + if i % 7 == 0 { 900.0 } else { 0.0 }, i as u64, p.clone())
            })
            .collect();
        let mut capped = new_buffer();
        run(&mut capped, &arrivals, 300);
        assert_eq!(capped.target_delay(), Duration::from_millis(200));
    }

    #[test]
    fn duplicates_late_and_garbage_packets_are_counted() {
        let packets = packets(20);
        let mut buffer = new_buffer();
        let start = Instant::now();
        buffer.push(BASE, &packets[0], start);
        buffer.push(BASE, &packets[0], start);
        buffer.push(BASE + 960, &[], start);
        buffer.push(BASE + 960, &[0x1b], start); // code 3 without its count
        assert!(buffer.pop_due(start).is_none(), "waiting for the target delay");
        let first = buffer.pop_due(start + Duration::from_millis(40)).expect("playing");
        assert!(first.level_dbov() < 127);
        // Frame 0 is played: a copy arriving now is late.
        buffer.push(BASE, &packets[0], start + Duration::from_millis(41));
        // Undecodable data at a valid TOC is concealed.
        buffer.push(
            BASE + 960,
            &[packets[1][0], 0xff, 0xff, 0xff],
            start + Duration::from_millis(41),
        );
        let _ = buffer.pop_due(start + Duration::from_millis(60));
        let stats = buffer.stats();
        assert_eq!((stats.received, stats.duplicates, stats.late_dropped), (2, 1, 1), "{stats:?}");
        assert!(stats.invalid >= 2, "{stats:?}");
    }

    #[test]
    fn a_stalled_consumer_and_a_timeline_jump_keep_the_delay_bounded() {
        let packets = packets(200);
        let mut buffer = new_buffer();
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut out = 0;
        for (i, packet) in packets.iter().enumerate() {
            let ms = i as u64 * 20;
            buffer.push(BASE + i as u64 * 960, packet, at(ms));
            // The consumer stalls for a second at 1 s.
            if !(1000..2000).contains(&ms) {
                while buffer.pop_due(at(ms)).is_some() {
                    out += 1;
                }
            }
        }
        assert!(buffer.buffered() <= Duration::from_millis(100), "{:?}", buffer.buffered());
        assert!(buffer.stats().overflow_dropped >= 45, "{:?}", buffer.stats());
        assert!(out < 160, "{out}");
        // The sender restarts its timeline an hour later.
        let later = BASE + 3600 * 48_000;
        for (i, packet) in packets[..10].iter().enumerate() {
            buffer.push(later + i as u64 * 960, packet, at(4000 + i as u64 * 20));
        }
        assert_eq!(buffer.stats().resets, 1);
        assert!(buffer.buffered() <= Duration::from_millis(200));
    }

    #[test]
    fn paced_by_the_caller() {
        let packets = packets(10);
        let mut buffer = new_buffer();
        let start = Instant::now();
        assert!(buffer.pop(start).samples.iter().all(|&s| s == 0), "silence before any packet");
        for (i, packet) in packets.iter().enumerate() {
            buffer.push(BASE + i as u64 * 960, packet, start);
        }
        let out: Vec<AudioFrame> =
            (0..10).map(|i| buffer.pop(start + Duration::from_millis(40 + i * 20))).collect();
        assert_eq!(pcm(&out), reference(&packets));
    }

    #[test]
    fn extending_timestamps() {
        let mut extender = TimestampExtender::new();
        let first = extender.extend(u32::MAX - 959);
        assert_eq!(extender.extend(0), first + 960, "wrapped around");
        assert_eq!(extender.extend(1920), first + 2880);
        assert_eq!(extender.extend(960), first + 1920, "a late packet");
        assert_eq!(extender.extend(u32::MAX - 959), first);
        assert_eq!(extender.extend(2880), first + 3840);
    }
}
