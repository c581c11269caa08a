//! Status lines at info level: who is in the call, our LiveKit connections, the video we send
//! and the video we receive (with its size, rate, colour and motion, so that a person or a test
//! can tell that real pictures arrive).
//!
//! Lines that mark the way into the call carry `milestone` and `elapsed_ms` (since the program
//! started), which `cargo xtask bench join` reads.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use matrix_sdk_rtc::{CallMember, CallState};
use matrix_sdk_rtc_livekit::livekit_str0m::RemoteTrackInfo;
use matrix_sdk_rtc_livekit::rtc_media::frame::I420Frame;
use matrix_sdk_rtc_livekit::{CallEvent, CallEvents, RemoteAudio, RemoteVideo};
use tokio::sync::{mpsc, watch};

use crate::failure::Failure;
use crate::record::Recorder;

/// When the program started.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock(pub(crate) Instant);

impl Clock {
    /// Logs a step of the way into the call.
    pub(crate) fn milestone(&self, milestone: &str, message: &str) {
        let elapsed_ms = self.0.elapsed().as_millis() as u64;
        tracing::info!(milestone, elapsed_ms, "{message}");
    }
}

/// Logs members as they come and go (our own device included).
pub(crate) async fn log_members(
    mut calls: watch::Receiver<CallState>,
    me: (String, String),
    clock: Clock,
) {
    let mut known: BTreeSet<(String, String)> = BTreeSet::new();
    loop {
        let state = calls.borrow_and_update().clone();
        let now: BTreeSet<(String, String)> = state
            .members
            .iter()
            .map(|m| (m.user_id().to_owned(), m.device_id().to_owned()))
            .collect();
        for (user, device) in now.difference(&known) {
            let member = state.member(user, device);
            let transport = member
                .and_then(|m| m.transport.as_ref())
                .and_then(|t| t.livekit_service_url())
                .unwrap_or("no usable transport");
            if (user, device) == (&me.0, &me.1) {
                clock.milestone("membership", "our membership is in the call");
            } else {
                tracing::info!(%user, %device, %transport, members = now.len(), "call member joined");
            }
        }
        for (user, device) in known.difference(&now) {
            if (user, device) == (&me.0, &me.1) {
                tracing::info!("our membership left the call");
            } else {
                tracing::info!(%user, %device, members = now.len(), "call member left");
            }
        }
        known = now;
        if calls.changed().await.is_err() {
            return;
        }
    }
}

/// Logs the media events (and hands remote media to the recorder, if there is one); a failure
/// that should end the program goes to `fatal`.
pub(crate) async fn log_events(
    mut events: CallEvents,
    interval: Duration,
    clock: Clock,
    fatal: mpsc::Sender<Failure>,
    recorder: Option<Recorder>,
) {
    while let Some(event) = events.recv().await {
        match event {
            CallEvent::Connecting(sfu) if sfu.publishing => {
                clock.milestone(
                    "credentials",
                    &format!(
                        "LiveKit credentials for {} as {} in room {}",
                        sfu.livekit_url, sfu.identity, sfu.room
                    ),
                );
            }
            CallEvent::Connected(sfu) if sfu.publishing => {
                clock.milestone(
                    "livekit",
                    &format!("LiveKit connected: {} as {}", sfu.livekit_url, sfu.identity),
                );
            }
            CallEvent::Connected(sfu) => {
                tracing::info!(livekit = %sfu.livekit_url, room = %sfu.room, "subscribing on another member's LiveKit server");
            }
            CallEvent::Disconnected { livekit_url, reason } => {
                tracing::info!(livekit = %livekit_url, %reason, "LiveKit disconnected");
            }
            CallEvent::Publishing(info) => {
                let fps = f64::from(info.frame_rate.0) / f64::from(info.frame_rate.1.max(1));
                clock.milestone(
                    "first_frame",
                    &format!(
                        "publishing {}x{}@{fps:.0} {:?} at up to {:.2} Mbit/s (track {})",
                        info.width,
                        info.height,
                        info.codec,
                        f64::from(info.max_bitrate) / 1e6,
                        info.track_sid
                    ),
                );
            }
            CallEvent::PublishStats(stats) => {
                tracing::info!(
                    fps = format!("{:.1}", stats.frames_per_second()),
                    kbit_s = (stats.bits_per_second() / 1000.0).round() as u64,
                    target_kbit_s = stats.target_bitrate / 1000,
                    keyframes = stats.keyframes,
                    dropped = stats.dropped,
                    "video sent"
                );
            }
            CallEvent::PublisherStopped { error } => {
                let message = error.unwrap_or_else(|| "a media source ended".to_owned());
                let _ = fatal.send(Failure::media(message)).await;
            }
            CallEvent::ParticipantConnected { identity, member } => {
                tracing::info!(%identity, member = member.is_some(), "LiveKit participant connected");
            }
            CallEvent::ParticipantDisconnected { identity } => {
                tracing::info!(%identity, "LiveKit participant disconnected");
            }
            CallEvent::VideoSubscribed(video) => {
                let info = video.info();
                tracing::info!(
                    identity = %info.participant_identity,
                    track = %info.track_sid,
                    mime = %info.mime_type,
                    "subscribed to video"
                );
                match &recorder {
                    Some(recorder) => recorder.video(video, interval),
                    None => drop(tokio::spawn(watch_video(video, interval))),
                }
            }
            CallEvent::AudioSubscribed(audio) => {
                let info = audio.info();
                tracing::info!(
                    identity = %info.participant_identity,
                    track = %info.track_sid,
                    mime = %info.mime_type,
                    "subscribed to audio"
                );
                match &recorder {
                    Some(recorder) => recorder.audio(audio),
                    None => drop(tokio::spawn(watch_audio(audio, interval))),
                }
            }
            CallEvent::AudioPublishing { track_sid } => {
                tracing::info!(track = %track_sid, "publishing audio");
            }
            CallEvent::TrackUnsubscribed { track_sid } => {
                tracing::info!(track = %track_sid, "remote track ended");
            }
            _ => {}
        }
    }
}

/// Reads a remote video and logs its status lines.
async fn watch_video(mut video: RemoteVideo, interval: Duration) {
    let mut status = VideoStatus::new(video.info(), interval);
    while let Some(picture) = video.recv().await {
        status.observe(&picture, video.member());
    }
}

/// Every `interval`, a line about a remote video: its size, frame rate, mean colour and how
/// much of the picture changed since the last line.
pub(crate) struct VideoStatus {
    identity: String,
    track: String,
    interval: Duration,
    window: Instant,
    frames: u64,
    previous: Option<Vec<u8>>,
}

impl VideoStatus {
    pub(crate) fn new(info: &RemoteTrackInfo, interval: Duration) -> Self {
        Self {
            identity: info.participant_identity.clone(),
            track: info.track_sid.clone(),
            interval,
            window: Instant::now(),
            frames: 0,
            previous: None,
        }
    }

    /// Counts a picture; logs when the interval is over.
    pub(crate) fn observe(&mut self, picture: &I420Frame, member: Option<CallMember>) {
        self.frames += 1;
        if self.window.elapsed() < self.interval {
            return;
        }
        let samples = luma_samples(picture);
        let motion = self.previous.as_ref().map(|p| changed_fraction(p, &samples));
        let (r, g, b) = mean_rgb(picture);
        let member = member.map(|m| format!("{} ({})", m.user_id(), m.device_id()));
        tracing::info!(
            identity = %self.identity,
            member = member.as_deref().unwrap_or("not a call member"),
            track = %self.track,
            size = format!("{}x{}", picture.width(), picture.height()),
            fps = format!("{:.1}", self.frames as f64 / self.window.elapsed().as_secs_f64()),
            mean_rgb = format!("{r},{g},{b}"),
            motion = motion.map_or_else(|| "-".to_owned(), |m| format!("{m:.2}")),
            "video received"
        );
        self.previous = Some(samples);
        self.frames = 0;
        self.window = Instant::now();
    }
}

/// Reads a remote audio track's packets and logs, every `interval`, how many came and how loud
/// they were (the sender's levels, when the server passes them on; `-` otherwise).
async fn watch_audio(mut audio: RemoteAudio, interval: Duration) {
    let info = audio.info().clone();
    let mut window = Instant::now();
    let (mut packets, mut loudest) = (0u64, None::<u8>);
    while let Some(packet) = audio.recv_packet().await {
        packets += 1;
        if let Some(level) = packet.level {
            loudest = Some(loudest.map_or(level.dbov, |l| l.min(level.dbov)));
        }
        if window.elapsed() >= interval {
            let member = audio.member().map(|m| format!("{} ({})", m.user_id(), m.device_id()));
            tracing::info!(
                identity = %info.participant_identity,
                member = member.as_deref().unwrap_or("not a call member"),
                track = %info.track_sid,
                packets_per_s = format!("{:.1}", packets as f64 / window.elapsed().as_secs_f64()),
                loudest_dbov = loudest.map_or_else(|| "-".to_owned(), |l| format!("-{l}")),
                "audio received"
            );
            (packets, loudest) = (0, None);
            window = Instant::now();
        }
    }
}

/// Luma on a 32×24 grid.
fn luma_samples(picture: &I420Frame) -> Vec<u8> {
    let (w, h) = (picture.width(), picture.height());
    (0..24u32)
        .flat_map(|j| (0..32u32).map(move |i| (i * w / 32 + w / 64, j * h / 24 + h / 48)))
        .map(|(x, y)| picture.pixel(x.min(w - 1), y.min(h - 1)).0)
        .collect()
}

/// The fraction of samples that changed by more than 8 levels.
fn changed_fraction(a: &[u8], b: &[u8]) -> f64 {
    let changed = a.iter().zip(b).filter(|(x, y)| x.abs_diff(**y) > 8).count();
    changed as f64 / a.len().max(1) as f64
}

/// The mean colour (BT.601 limited range to RGB).
fn mean_rgb(picture: &I420Frame) -> (u8, u8, u8) {
    let (y, u, v) = picture.mean();
    let (y, u, v) = (y - 16.0, u - 128.0, v - 128.0);
    let clamp = |x: f64| x.round().clamp(0.0, 255.0) as u8;
    (
        clamp(1.164 * y + 1.596 * v),
        clamp(1.164 * y - 0.392 * u - 0.813 * v),
        clamp(1.164 * y + 2.017 * u),
    )
}

#[cfg(test)]
mod tests {
    use rtc_media::pattern::TestPattern;

    use super::*;

    #[test]
    fn colour_and_motion_of_pictures() {
        let red = TestPattern::RED.render(640, 480, 0);
        let (r, g, b) = mean_rgb(&red);
        assert!(r > 240 && g < 15 && b < 15, "{r} {g} {b}");
        let a = luma_samples(&TestPattern::Moving.render(640, 480, 0));
        let b = luma_samples(&TestPattern::Moving.render(640, 480, 40));
        assert_eq!(a.len(), 32 * 24);
        assert_eq!(changed_fraction(&a, &a), 0.0);
        assert!(changed_fraction(&a, &b) > 0.01);
    }
}
