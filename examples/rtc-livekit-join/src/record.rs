//! `--record DIR`: every remote participant's media into files, as received (no re-encoding):
//! video as IVF (VP8 or H.264 frames with their RTP times), audio as Ogg Opus (with the gaps of
//! lost packets and silence kept, so the file lasts as long as the call did), and PNG snapshots
//! of the decoded video every so often.
//!
//! Names say who and when: `<UTC start>_<user>-<server>-<device>_<track sid>.ivf|.ogg` and
//! `…_<UTC>.png`, with `_` only between the parts (anything but letters, digits, `-` and `.`
//! within them becomes `-`; a LiveKit participant without a call membership is named by its
//! LiveKit identity). A file is
//! finished (headers fixed up, last page flagged) when its track ends (the participant left or
//! unpublished) and when the program stops.

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use matrix_sdk_rtc_livekit::livekit_str0m::{RemoteVideoFrame, VideoCodec};
use matrix_sdk_rtc_livekit::rtc_media::sink::{IvfWriter, OggOpusWriter, write_png};
use matrix_sdk_rtc_livekit::{RemoteAudio, RemoteVideo};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Recording;
use crate::status::VideoStatus;

/// How long finishing the files may take when the program stops.
const FINISH_TIMEOUT: Duration = Duration::from_secs(3);

/// Records every track it is given until [`Recorder::finish`]. Clones share the recordings.
#[derive(Debug, Clone)]
pub(crate) struct Recorder {
    config: Recording,
    stop: Arc<watch::Sender<bool>>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl Recorder {
    /// A recorder writing into `config.dir` (created if needed).
    pub(crate) fn new(config: Recording) -> std::io::Result<Self> {
        std::fs::create_dir_all(&config.dir)?;
        let (stop, _) = watch::channel(false);
        Ok(Self { config, stop: Arc::new(stop), tasks: Default::default() })
    }

    fn spawn(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        if *self.stop.borrow() {
            return;
        }
        self.tasks.lock().unwrap_or_else(|e| e.into_inner()).spawn(task);
    }

    /// Records a remote video (and logs its status lines every `interval`).
    pub(crate) fn video(&self, video: RemoteVideo, interval: Duration) {
        let dir = self.config.dir.clone();
        let snapshots = self.config.snapshot_interval;
        let stop = self.stop.subscribe();
        self.spawn(record_video(video, dir, snapshots, interval, stop));
    }

    /// Records a remote audio track.
    pub(crate) fn audio(&self, audio: RemoteAudio) {
        let dir = self.config.dir.clone();
        let stop = self.stop.subscribe();
        self.spawn(record_audio(audio, dir, stop));
    }

    /// Finishes every file, within a few seconds; nothing more is recorded.
    pub(crate) async fn finish(&self) {
        let _ = self.stop.send(true);
        let mut tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        let all = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(FINISH_TIMEOUT, all).await.is_err() {
            tracing::warn!("recordings did not finish in time");
        }
    }
}

/// Waits until the recorder is told to finish.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// `<UTC>_<who>_<track sid>` for a track.
fn base_name(who: &str, track_sid: &str, started: SystemTime) -> String {
    format!("{}_{}_{}", utc_stamp(started), file_safe(who), file_safe(track_sid))
}

/// Who a track belongs to: the member's user and device, else the LiveKit identity.
fn who(member: Option<matrix_sdk_rtc::CallMember>, identity: &str) -> String {
    match member {
        Some(member) => format!("{}_{}", member.user_id(), member.device_id()),
        None => identity.to_owned(),
    }
}

/// Letters, digits, `-`, `.` kept; anything else becomes `-` (no separators, no `..`).
fn file_safe(text: &str) -> String {
    let safe: String = text
        .trim_start_matches('@')
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '.' { c } else { '-' })
        .collect();
    let safe = safe.replace("..", "-");
    if safe.is_empty() { "unknown".into() } else { safe.chars().take(80).collect() }
}

/// `20261129T045301Z`.
fn utc_stamp(time: SystemTime) -> String {
    let secs = time.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_date(days as i64);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// The Gregorian date of a day count since 1970-01-01.
fn civil_date(days: i64) -> (i64, u32, u32) {
    // Shift to an era starting on 0000-03-01, so leap days end each 4/100/400-year cycle.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// The size a VP8 keyframe announces (RFC 6386 §9.1), when it is one.
fn vp8_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let height = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((width, height))
}

/// An IVF file that starts at the first keyframe.
struct VideoFile {
    path: PathBuf,
    writer: IvfWriter<BufWriter<File>>,
    first_rtp: u64,
    frames: u64,
}

impl VideoFile {
    fn create(
        path: PathBuf,
        frame: &RemoteVideoFrame,
        announced: (u32, u32),
    ) -> std::io::Result<Self> {
        let (fourcc, size) = match frame.codec {
            VideoCodec::H264 => (*b"H264", None),
            _ => (*b"VP80", vp8_keyframe_size(&frame.data)),
        };
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        let (width, height) = size.unwrap_or((clamp(announced.0), clamp(announced.1)));
        let file = BufWriter::new(File::create(&path)?);
        let writer = IvfWriter::new(file, fourcc, width, height, 90_000, 1)?;
        Ok(Self { path, writer, first_rtp: frame.rtp_timestamp, frames: 0 })
    }

    fn write(&mut self, frame: &RemoteVideoFrame) -> std::io::Result<()> {
        let timestamp = frame.rtp_timestamp.saturating_sub(self.first_rtp);
        self.writer.write_frame(timestamp, &frame.data)?;
        self.frames += 1;
        Ok(())
    }

    fn finish(self) {
        match self.writer.finish() {
            Ok(_) => {
                tracing::info!(path = %self.path.display(), frames = self.frames, "video recording finished")
            }
            Err(error) => {
                tracing::warn!(path = %self.path.display(), %error, "video recording not finished")
            }
        }
    }
}

async fn record_video(
    mut video: RemoteVideo,
    dir: PathBuf,
    snapshots: Option<Duration>,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let info = video.info().clone();
    let started = SystemTime::now();
    let member = video.member();
    let base = base_name(&who(member, &info.participant_identity), &info.track_sid, started);
    let mut encoded = video.encoded_frames();
    let mut file: Option<VideoFile> = None;
    let mut status = VideoStatus::new(&info, interval);
    let mut next_snapshot = Instant::now();
    let mut failed = false;
    tracing::info!(identity = %info.participant_identity, track = %info.track_sid, "recording video");
    loop {
        tokio::select! {
            frame = encoded.recv() => {
                let Some(frame) = frame else { break };
                if failed {
                    continue;
                }
                if file.is_none() && frame.keyframe {
                    let path = dir.join(format!("{base}.ivf"));
                    match VideoFile::create(path.clone(), &frame, (info.width, info.height)) {
                        Ok(created) => file = Some(created),
                        Err(error) => {
                            tracing::error!(path = %path.display(), %error, "cannot record video");
                            failed = true;
                        }
                    }
                }
                if let Some(current) = file.as_mut()
                    && let Err(error) = current.write(&frame)
                {
                    tracing::error!(path = %current.path.display(), %error, "video recording stopped");
                    failed = true;
                }
            }
            picture = video.recv() => {
                let Some(picture) = picture else { break };
                status.observe(&picture, video.member());
                if let Some(every) = snapshots
                    && Instant::now() >= next_snapshot
                {
                    next_snapshot = Instant::now() + every;
                    let path = dir.join(format!("{base}_{}.png", utc_stamp(SystemTime::now())));
                    let written = tokio::task::spawn_blocking(move || write_png(&picture, &path).map(|()| path)).await;
                    match written {
                        Ok(Ok(path)) => tracing::debug!(path = %path.display(), "snapshot"),
                        Ok(Err(error)) => tracing::warn!(%error, "snapshot not written"),
                        Err(error) => tracing::warn!(%error, "snapshot task failed"),
                    }
                }
            }
            () = stopped(&mut stop) => break,
        }
    }
    if let Some(file) = file {
        file.finish();
    }
}

async fn record_audio(mut audio: RemoteAudio, dir: PathBuf, mut stop: watch::Receiver<bool>) {
    let info = audio.info().clone();
    let started = SystemTime::now();
    let owner = who(audio.member(), &info.participant_identity);
    let base = base_name(&owner, &info.track_sid, started);
    let path = dir.join(format!("{base}.ogg"));
    let title = format!("{owner} {}", info.track_sid);
    let mut writer = match File::create(&path)
        .and_then(|file| OggOpusWriter::new(BufWriter::new(file), 2, &[("TITLE", title.as_str())]))
    {
        Ok(writer) => writer,
        Err(error) => {
            tracing::error!(path = %path.display(), %error, "cannot record audio");
            return;
        }
    };
    tracing::info!(identity = %info.participant_identity, track = %info.track_sid, path = %path.display(), "recording audio");
    let mut packets = 0u64;
    loop {
        tokio::select! {
            packet = audio.recv_packet() => {
                let Some(packet) = packet else { break };
                if let Err(error) = writer.write_packet(packet.rtp_timestamp, &packet.data) {
                    tracing::error!(path = %path.display(), %error, "audio recording stopped");
                    break;
                }
                packets += 1;
            }
            () = stopped(&mut stop) => break,
        }
    }
    match writer.finish() {
        Ok(_) => tracing::info!(path = %path.display(), packets, "audio recording finished"),
        Err(error) => {
            tracing::warn!(path = %path.display(), %error, "audio recording not finished")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_and_correct_around_leap_days() {
        let at = |secs: u64| utc_stamp(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "19700101T000000Z");
        assert_eq!(at(951_782_400), "20000229T000000Z");
        assert_eq!(at(1_709_251_199), "20240229T235959Z");
        assert_eq!(at(1_795_841_581), "20261128T045301Z");
        assert_eq!(civil_date(-1), (1969, 12, 31));
    }

    #[test]
    fn names_are_safe_and_say_who() {
        let name = base_name("@bot:example.org_ABCDEF", "TR_x/../y", SystemTime::UNIX_EPOCH);
        // `_` only between the parts: within them it becomes `-`.
        assert_eq!(name, "19700101T000000Z_bot-example.org-ABCDEF_TR-x---y");
        let dir = std::path::Path::new("/rec");
        assert_eq!(
            dir.join(format!("{name}.ogg")).parent(),
            Some(dir),
            "never outside the directory"
        );
        assert_eq!(file_safe(""), "unknown");
        assert_eq!(file_safe("a..b"), "a-b");
    }

    #[test]
    fn the_size_of_a_vp8_keyframe() {
        let key = [0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01];
        assert_eq!(vp8_keyframe_size(&key), Some((640, 480)));
        assert_eq!(vp8_keyframe_size(&[0x11, 0, 0, 0x9d, 0x01, 0x2a, 0, 0, 0, 0]), None);
        assert_eq!(vp8_keyframe_size(&[0x10]), None);
    }
}
