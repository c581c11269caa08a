//! Other members' video, decoded: one task per subscribed track turns encoded frames into I420
//! pictures, waiting for a keyframe after a gap and asking for one when it has to.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use livekit_str0m::{RemoteTrackInfo, RemoteVideoTrack};
use matrix_sdk_rtc::{CallMember, CallState};
use rtc_media::codec::{VideoDecoder, new_decoder};
use rtc_media::frame::I420Frame;
use tokio::sync::{mpsc, watch};

/// Decoded pictures waiting for the application; older ones are not kept (real-time video).
const DECODED_BUFFER: usize = 2;
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
    info: RemoteTrackInfo,
    livekit_url: String,
    pictures: mpsc::Receiver<I420Frame>,
    call: watch::Receiver<CallState>,
    counters: Arc<Counters>,
}

impl RemoteVideo {
    /// Who publishes the track and what LiveKit says about it.
    pub fn info(&self) -> &RemoteTrackInfo {
        &self.info
    }

    /// The LiveKit server the track comes from (without credentials).
    pub fn livekit_url(&self) -> &str {
        &self.livekit_url
    }

    /// The call member behind the track, as the call is now (`None` for a LiveKit participant
    /// without a membership, or before its membership arrived).
    pub fn member(&self) -> Option<CallMember> {
        member_of(&self.call.borrow(), &self.info.participant_identity)
    }

    /// The next picture; `None` once the track ended.
    pub async fn recv(&mut self) -> Option<I420Frame> {
        self.pictures.recv().await
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

/// The member whose LiveKit identity is `identity`.
pub(crate) fn member_of(state: &CallState, identity: &str) -> Option<CallMember> {
    state.members.iter().find(|m| m.livekit_identity() == identity).cloned()
}

/// Starts decoding `track`; the pictures come out of the returned [`RemoteVideo`].
pub(crate) fn spawn_decoder(
    track: RemoteVideoTrack,
    livekit_url: String,
    call: watch::Receiver<CallState>,
) -> RemoteVideo {
    let (tx, pictures) = mpsc::channel(DECODED_BUFFER);
    let counters = Arc::new(Counters::default());
    let info = track.info().clone();
    tokio::spawn(decode(track, tx, counters.clone()));
    RemoteVideo { info, livekit_url, pictures, call, counters }
}

async fn decode(
    mut track: RemoteVideoTrack,
    out: mpsc::Sender<I420Frame>,
    counters: Arc<Counters>,
) {
    let track_sid = track.info().track_sid.clone();
    let mut decoder: Option<Box<dyn VideoDecoder>> = None;
    let mut need_keyframe = true;
    let mut asked: Option<Instant> = None;
    while let Some(frame) = track.recv().await {
        if out.is_closed() {
            break;
        }
        counters.received.fetch_add(1, Ordering::Relaxed);
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
