//! Other members' video, decoded: one task per subscribed track turns encoded frames into I420
//! pictures, waiting for a keyframe after a gap and asking for one when it has to.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use livekit_str0m::{RemoteTrackInfo, RemoteVideoFrame, RemoteVideoTrack};
use matrix_sdk_rtc::CallMember;
use rtc_media::codec::{VideoDecoder, new_decoder};
use rtc_media::frame::I420Frame;
use tokio::sync::mpsc;

use super::TrackOrigin;

/// Decoded pictures waiting for the application; older ones are not kept (real-time video).
const DECODED_BUFFER: usize = 2;
/// Encoded frames waiting for a reader of [`RemoteVideo::encoded_frames`] (a recorder).
const ENCODED_BUFFER: usize = 120;
/// Keyframe requests from a decoder that waits for one, at most one per this interval (the
/// server ignores more anyway).
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(1000);

/// Counters of a remote video track.
#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    decoded: AtomicU64,
    decode_errors: AtomicU64,
    dropped: AtomicU64,
}

/// What happened to a remote video track's frames so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RemoteVideoStats {
    /// Encoded frames received.
    pub received: u64,
    /// Pictures decoded.
    pub decoded: u64,
    /// Frames the decoder refused.
    pub decode_errors: u64,
    /// Decoded pictures dropped because the application did not take them in time.
    pub dropped: u64,
}

/// A remote participant's video, decoded. Read pictures with [`RemoteVideo::recv`]; drop it to
/// stop decoding.
#[derive(Debug)]
pub struct RemoteVideo {
    origin: TrackOrigin,
    pictures: mpsc::Receiver<I420Frame>,
    counters: Arc<Counters>,
    encoded: EncodedTap,
}

/// Where the decoding task copies encoded frames, when somebody asked for them.
type EncodedTap = Arc<Mutex<Option<mpsc::Sender<RemoteVideoFrame>>>>;

impl RemoteVideo {
    /// Who publishes the track and what LiveKit says about it.
    pub fn info(&self) -> &RemoteTrackInfo {
        &self.origin.info
    }

    /// The LiveKit server the track comes from (without credentials).
    pub fn livekit_url(&self) -> &str {
        &self.origin.livekit_url
    }

    /// The call member behind the track, as the call is now (`None` for a LiveKit participant
    /// without a membership, or before its membership arrived).
    pub fn member(&self) -> Option<CallMember> {
        self.origin.member()
    }

    /// The next picture; `None` once the track ended.
    pub async fn recv(&mut self) -> Option<I420Frame> {
        self.pictures.recv().await
    }

    /// The encoded frames too, as they arrive (before decoding), from now on: for recording
    /// without re-encoding. Frames a slow reader leaves behind are dropped (and the next one
    /// says it is not contiguous); asking again replaces the earlier receiver.
    pub fn encoded_frames(&self) -> mpsc::Receiver<RemoteVideoFrame> {
        let (tx, rx) = mpsc::channel(ENCODED_BUFFER);
        *self.encoded.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        rx
    }

    /// Counters so far.
    pub fn stats(&self) -> RemoteVideoStats {
        let c = &self.counters;
        RemoteVideoStats {
            received: c.received.load(Ordering::Relaxed),
            decoded: c.decoded.load(Ordering::Relaxed),
            decode_errors: c.decode_errors.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
        }
    }
}

/// Starts decoding `track`; the pictures come out of the returned [`RemoteVideo`].
pub(crate) fn spawn_decoder(track: RemoteVideoTrack, origin: TrackOrigin) -> RemoteVideo {
    let (tx, pictures) = mpsc::channel(DECODED_BUFFER);
    let counters = Arc::new(Counters::default());
    let encoded = EncodedTap::default();
    tokio::spawn(decode(track, tx, counters.clone(), encoded.clone()));
    RemoteVideo { origin, pictures, counters, encoded }
}

async fn decode(
    mut track: RemoteVideoTrack,
    out: mpsc::Sender<I420Frame>,
    counters: Arc<Counters>,
    encoded: EncodedTap,
) {
    let track_sid = track.info().track_sid.clone();
    let mut decoder: Option<Box<dyn VideoDecoder>> = None;
    let mut need_keyframe = true;
    let mut asked: Option<Instant> = None;
    let mut tap_dropped = false;
    while let Some(frame) = track.recv().await {
        if out.is_closed() {
            break;
        }
        counters.received.fetch_add(1, Ordering::Relaxed);
        copy_to_tap(&encoded, &frame, &mut tap_dropped);
        if !frame.contiguous {
            need_keyframe = true;
        }
        if need_keyframe && !frame.keyframe {
            if asked.is_none_or(|at| at.elapsed() >= KEYFRAME_REQUEST_INTERVAL) {
                track.request_keyframe();
                asked = Some(Instant::now());
            }
            continue;
        }
        let codec = frame.codec.into();
        let mut current = match decoder.take() {
            Some(d) if d.codec() == codec => d,
            _ => match new_decoder(codec) {
                Ok(d) => d,
                Err(error) => {
                    tracing::warn!(%track_sid, %error, "no decoder for this track; not decoding it");
                    return;
                }
            },
        };
        let decoded = tokio::task::spawn_blocking(move || {
            let picture = current.decode(&frame.data);
            (current, picture)
        })
        .await;
        let Ok((current, picture)) = decoded else { return };
        decoder = Some(current);
        match picture {
            Ok(Some(picture)) => {
                need_keyframe = false;
                counters.decoded.fetch_add(1, Ordering::Relaxed);
                match out.try_send(picture) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
            Ok(None) => {}
            Err(error) => {
                counters.decode_errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%track_sid, %error, "frame not decoded; waiting for a keyframe");
                need_keyframe = true;
            }
        }
    }
    tracing::debug!(%track_sid, "remote video ended");
}

/// Hands a copy of `frame` to the reader of encoded frames, if there is one.
fn copy_to_tap(tap: &EncodedTap, frame: &RemoteVideoFrame, dropped: &mut bool) {
    let mut tap = tap.lock().unwrap_or_else(|e| e.into_inner());
    let Some(tx) = tap.as_ref() else { return };
    let mut copy = frame.clone();
    copy.contiguous &= !*dropped;
    match tx.try_send(copy) {
        Ok(()) => *dropped = false,
        Err(mpsc::error::TrySendError::Full(_)) => *dropped = true,
        Err(mpsc::error::TrySendError::Closed(_)) => *tap = None,
    }
}
