//! Microphone capture through ALSA (feature `alsa`; Debian's `libasound2-dev` to build).

use std::collections::VecDeque;
use std::ffi::CString;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};

use super::resample::Resampler;
use super::{AudioError, AudioFrame, AudioSource, FRAME_SAMPLES, SAMPLE_RATE};

/// How long [`AudioSource::next_frame`] waits for the device before calling it stuck.
const STUCK_AFTER: Duration = Duration::from_secs(2);
/// How often the capture thread looks at the stop flag while the device is silent.
const POLL_MS: u32 = 100;

/// Which device to open and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MicConfig {
    /// The ALSA PCM name: `default`, `hw:1,0`, `plughw:CARD=Headset`, `pulse`…
    pub device: String,
    /// Channels of the frames, 1 or 2. Default 1.
    pub channels: u16,
    /// Frames the queue holds before the oldest is dropped. Default 10 (200 ms).
    pub queue_frames: usize,
}

impl MicConfig {
    /// Mono from the device named `name`.
    pub fn device(name: &str) -> Self {
        Self { device: name.to_owned(), ..Self::default() }
    }
}

impl Default for MicConfig {
    /// Mono from `default`.
    fn default() -> Self {
        Self { device: "default".into(), channels: 1, queue_frames: 10 }
    }
}

/// Counters of a [`MicSource`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MicStats {
    /// Frames captured.
    pub frames: u64,
    /// Frames dropped because the consumer was slow.
    pub dropped: u64,
    /// Device overruns (the capture thread was late; ALSA lost samples) recovered from.
    pub overruns: u64,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<AudioFrame>,
    stats: MicStats,
    /// Why the capture thread stopped, if it failed.
    error: Option<String>,
    ended: bool,
}

#[derive(Debug, Default)]
struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    stop: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Microphone capture through ALSA (feature `alsa`; Debian's `libasound2-dev` to build).
///
/// The device is opened for interleaved signed 16-bit capture at its own rate (48 kHz when it
/// has it; ALSA's own resampling is turned off where the device allows, ours is better), 10 ms
/// periods. Blocking reads run on a thread of their own, which downmixes (more than the
/// channels asked for are averaged), resamples to 48 kHz and hands 20 ms frames over a bounded
/// queue: when the consumer is slow the oldest frame is dropped and counted, so the audio stays
/// current. The source is live: [`AudioSource::next_frame`] waits for the device.
#[derive(Debug)]
pub struct MicSource {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    channels: u16,
    device_rate: u32,
    device_channels: u16,
}

/// What the device agreed to.
#[derive(Debug, Clone, Copy)]
struct Negotiated {
    rate: u32,
    channels: u16,
    period: usize,
}

fn device_error(device: &str, what: &str, error: impl std::fmt::Display) -> String {
    format!("{device}: {what}: {error}")
}

fn open_device(name: &str, channels: u16) -> Result<(PCM, Negotiated), String> {
    let c_name =
        CString::new(name).map_err(|_| format!("{name:?}: a device name has no NUL byte"))?;
    let pcm = PCM::open(&c_name, Direction::Capture, false)
        .map_err(|e| device_error(name, "cannot open for capture", e))?;
    let negotiated = {
        let hw = HwParams::any(&pcm).map_err(|e| device_error(name, "no parameters", e))?;
        // The device's own rate: ALSA's resampler is worse than ours (not every device lets it go).
        let _ = hw.set_rate_resample(false);
        hw.set_access(Access::RWInterleaved)
            .map_err(|e| device_error(name, "no interleaved access", e))?;
        hw.set_format(Format::s16()).map_err(|e| device_error(name, "no 16-bit samples", e))?;
        let device_channels = hw
            .set_channels_near(u32::from(channels))
            .map_err(|e| device_error(name, "no channel count", e))?;
        let rate = hw
            .set_rate_near(SAMPLE_RATE, ValueOr::Nearest)
            .map_err(|e| device_error(name, "no sample rate", e))?;
        let _ = hw.set_period_time_near(10_000, ValueOr::Nearest);
        let _ = hw.set_buffer_time_near(200_000, ValueOr::Nearest);
        pcm.hw_params(&hw).map_err(|e| device_error(name, "parameters refused", e))?;
        let current =
            pcm.hw_params_current().map_err(|e| device_error(name, "no parameters", e))?;
        let period =
            current.get_period_size().unwrap_or(i64::from(rate / 100)).clamp(16, 65_536) as usize;
        Negotiated {
            rate,
            channels: u16::try_from(device_channels).unwrap_or(u16::MAX).max(1),
            period,
        }
    };
    Ok((pcm, negotiated))
}

impl MicSource {
    /// Opens the device of `config` and starts capturing.
    pub fn open(config: &MicConfig) -> Result<Self, AudioError> {
        let channels = config.channels.clamp(1, 2);
        let capacity = config.queue_frames.max(1);
        let shared = Arc::new(Shared::default());
        let (result_tx, result_rx) = std::sync::mpsc::sync_channel(1);
        let thread_shared = shared.clone();
        let device = config.device.clone();
        let thread = std::thread::Builder::new()
            .name("rtc-mic".into())
            .spawn(move || {
                let (pcm, negotiated) = match open_device(&device, channels) {
                    Ok(opened) => opened,
                    Err(error) => {
                        let _ = result_tx.send(Err(error));
                        return;
                    }
                };
                let resampler = match Resampler::to_48k(negotiated.rate, channels) {
                    Ok(resampler) => resampler,
                    Err(error) => {
                        let _ = result_tx.send(Err(device_error(&device, "unusable rate", error)));
                        return;
                    }
                };
                let _ = result_tx.send(Ok(negotiated));
                let capture = Capture {
                    pcm,
                    negotiated,
                    channels,
                    capacity,
                    resampler,
                    shared: thread_shared,
                };
                capture.run(&device);
            })
            .map_err(|e| AudioError::Device(format!("cannot start the capture thread: {e}")))?;
        let negotiated = match result_rx.recv() {
            Ok(Ok(negotiated)) => negotiated,
            Ok(Err(error)) => {
                let _ = thread.join();
                return Err(AudioError::Device(error));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(AudioError::Device(format!(
                    "{}: the capture thread ended",
                    config.device
                )));
            }
        };
        tracing::info!(
            device = %config.device,
            rate = negotiated.rate,
            device_channels = negotiated.channels,
            channels,
            period = negotiated.period,
            "microphone open"
        );
        Ok(Self {
            shared,
            thread: Some(thread),
            channels,
            device_rate: negotiated.rate,
            device_channels: negotiated.channels,
        })
    }

    /// The rate the device captures at (resampled to 48 kHz).
    pub fn device_rate(&self) -> u32 {
        self.device_rate
    }

    /// The channels the device captures.
    pub fn device_channels(&self) -> u16 {
        self.device_channels
    }

    /// The counters so far.
    pub fn stats(&self) -> MicStats {
        self.shared.lock().stats
    }

    /// The next frame if one is queued, without waiting.
    pub fn try_next_frame(&mut self) -> Result<Option<AudioFrame>, AudioError> {
        let mut queue = self.shared.lock();
        Self::take(&mut queue)
    }

    fn take(queue: &mut Queue) -> Result<Option<AudioFrame>, AudioError> {
        if let Some(frame) = queue.frames.pop_front() {
            return Ok(Some(frame));
        }
        if let Some(error) = &queue.error {
            return Err(AudioError::Device(error.clone()));
        }
        Ok(None)
    }
}

impl AudioSource for MicSource {
    fn channels(&self) -> u16 {
        self.channels
    }

    /// Waits for the next frame; an error when the device failed or gave nothing for 2 s.
    fn next_frame(&mut self) -> Result<Option<AudioFrame>, AudioError> {
        let mut queue = self.shared.lock();
        let deadline = std::time::Instant::now() + STUCK_AFTER;
        loop {
            if let Some(frame) = Self::take(&mut queue)? {
                return Ok(Some(frame));
            }
            if queue.ended {
                return Ok(None);
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(AudioError::Device(format!(
                    "no audio from the device for {STUCK_AFTER:?}"
                )));
            }
            queue =
                self.shared.ready.wait_timeout(queue, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn is_live(&self) -> bool {
        true
    }
}

impl Drop for MicSource {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The capture thread's state.
struct Capture {
    pcm: PCM,
    negotiated: Negotiated,
    channels: u16,
    capacity: usize,
    resampler: Resampler,
    shared: Arc<Shared>,
}

impl Capture {
    fn run(mut self, device: &str) {
        let error = self.read_loop().err().map(|e| device_error(device, "capture failed", e));
        if let Some(error) = &error {
            tracing::error!(%error, "microphone stopped");
        }
        let mut queue = self.shared.lock();
        queue.error = error;
        queue.ended = true;
        drop(queue);
        self.shared.ready.notify_all();
    }

    fn read_loop(&mut self) -> Result<(), alsa::Error> {
        let device_channels = usize::from(self.negotiated.channels);
        let channels = usize::from(self.channels);
        let mut raw = vec![0i16; self.negotiated.period * device_channels];
        let mut mixed = Vec::with_capacity(self.negotiated.period * channels);
        let mut resampled = Vec::new();
        let io = self.pcm.io_i16()?;
        self.pcm.start()?;
        while !self.shared.stop.load(Ordering::Relaxed) {
            match self.pcm.wait(Some(POLL_MS)) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) => {
                    self.recover(error)?;
                    continue;
                }
            }
            let frames = match io.readi(&mut raw) {
                Ok(frames) => frames,
                Err(error) => {
                    self.recover(error)?;
                    continue;
                }
            };
            mixed.clear();
            downmix(&raw[..frames * device_channels], device_channels, channels, &mut mixed);
            self.resampler.process_i16(&mixed, &mut resampled);
            let frame_len = FRAME_SAMPLES * channels;
            while resampled.len() >= frame_len {
                let samples: Vec<i16> = resampled.drain(..frame_len).collect();
                self.deliver(AudioFrame { samples, channels: self.channels });
            }
        }
        Ok(())
    }

    /// Recovers from an overrun or a suspend; other errors end the capture.
    fn recover(&self, error: alsa::Error) -> Result<(), alsa::Error> {
        if error.errno() == EPIPE {
            self.shared.lock().stats.overruns += 1;
            tracing::debug!("microphone overrun");
        }
        self.pcm.try_recover(error, true)?;
        // A recovered capture stream needs starting again.
        let _ = self.pcm.start();
        Ok(())
    }

    fn deliver(&self, frame: AudioFrame) {
        let mut queue = self.shared.lock();
        if queue.frames.len() >= self.capacity {
            queue.frames.pop_front();
            queue.stats.dropped += 1;
        }
        queue.frames.push_back(frame);
        queue.stats.frames += 1;
        drop(queue);
        self.shared.ready.notify_one();
    }
}

/// EPIPE on Linux (the only ALSA platform), which ALSA returns on an overrun.
const EPIPE: i32 = 32;

/// `input` of `from` interleaved channels as `to` (1 or 2): the same when equal, else averaged
/// to mono (and duplicated when two are wanted from one or more than two).
fn downmix(input: &[i16], from: usize, to: usize, out: &mut Vec<i16>) {
    if from == to {
        out.extend_from_slice(input);
        return;
    }
    for frame in input.chunks_exact(from.max(1)) {
        let sum: i32 = frame.iter().map(|&s| i32::from(s)).sum();
        let mono = (sum / from as i32) as i16;
        out.extend(std::iter::repeat_n(mono, to));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmixing() {
        let mut out = Vec::new();
        downmix(&[100, 300, -100, -300], 2, 1, &mut out);
        assert_eq!(out, [200, -200]);
        out.clear();
        downmix(&[10, 20, 30, 40, 50, 60], 3, 2, &mut out);
        assert_eq!(out, [20, 20, 50, 50]);
        out.clear();
        downmix(&[7, 8], 1, 2, &mut out);
        assert_eq!(out, [7, 7, 8, 8]);
    }

    /// ALSA's `null` device captures silence as fast as it is read: the whole path (thread,
    /// resampler, queue) without a sound card.
    #[test]
    fn the_null_device_gives_silent_frames_and_a_slow_consumer_drops_the_oldest() {
        let config = MicConfig { channels: 2, queue_frames: 4, ..MicConfig::device("null") };
        let mut mic = MicSource::open(&config).unwrap();
        assert!(mic.is_live());
        assert_eq!(mic.channels(), 2);
        for _ in 0..5 {
            let frame = mic.next_frame().unwrap().unwrap();
            assert_eq!((frame.channels, frame.samples.len(), frame.level_dbov()), (2, 1920, 127));
        }
        std::thread::sleep(Duration::from_millis(50));
        let stats = mic.stats();
        assert!(stats.frames > 10 && stats.dropped > 0, "{stats:?}");
        assert!(mic.try_next_frame().unwrap().is_some());
        // Dropping stops and joins the capture thread.
        drop(mic);
    }

    #[test]
    fn a_missing_device_is_a_clear_error() {
        let error = MicSource::open(&MicConfig::device("rtc_media_no_such_device")).unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("rtc_media_no_such_device") && text.contains("cannot open"),
            "{text}"
        );
        let error = MicSource::open(&MicConfig::device("bad\0name")).unwrap_err();
        assert!(error.to_string().contains("NUL"), "{error}");
    }
}
