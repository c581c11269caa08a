//! Publishing video: a [`VideoSource`] (camera, test pattern, anything) through an encoder into a
//! LiveKit track, paced by the source, with keyframes when a subscriber asks and the encoder's
//! bitrate following what the connection can carry.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use livekit_str0m::{
    LocalVideoTrack, Room, TrackError, TrackSource, VideoCodec, VideoTrackOptions,
};
use rtc_media::codec::{VideoEncoder, Vp8Encoder, Vp8EncoderConfig};
use rtc_media::frame::I420Frame;
use rtc_media::pacing::FramePacer;
use rtc_media::source::{SourceError, VideoSource};
use tokio::sync::{mpsc, watch};

use super::Running;
use crate::error::Error;
use crate::events::{CallEvent, PublishInfo, PublishStats};
/// Bitrate changes smaller than this fraction of the current rate are not applied.
const BITRATE_HYSTERESIS: f64 = 0.1;
/// At most one bitrate change per this interval.
const BITRATE_CHANGE_INTERVAL: Duration = Duration::from_millis(500);

/// A video source with its future boxed, so that feeds of any source type can be stored.
trait DynSource: Send {
    fn resolution(&self) -> (u32, u32);
    fn frame_rate(&self) -> (u32, u32);
    fn next_frame(
        &mut self,
    ) -> Pin<Box<dyn Future<Output = Result<I420Frame, SourceError>> + Send + '_>>;
}

impl<S: VideoSource> DynSource for S {
    fn resolution(&self) -> (u32, u32) {
        VideoSource::resolution(self)
    }

    fn frame_rate(&self) -> (u32, u32) {
        VideoSource::frame_rate(self)
    }

    fn next_frame(
        &mut self,
    ) -> Pin<Box<dyn Future<Output = Result<I420Frame, SourceError>> + Send + '_>> {
        Box::pin(VideoSource::next_frame(self))
    }
}

type OpenSource = dyn Fn() -> Result<Box<dyn DynSource>, SourceError> + Send + Sync;

/// What to publish: a video source opened anew for every connection (a camera is released
/// between calls), and how to encode it.
///
/// ```
/// use matrix_sdk_rtc_livekit::VideoFeed;
/// use matrix_sdk_rtc_livekit::livekit_str0m::VideoCodec;
/// use rtc_media::pattern::TestPattern;
/// use rtc_media::source::TestPatternSource;
///
/// let feed = VideoFeed::new(|| Ok(TestPatternSource::new(TestPattern::Moving, 1280, 720, 30, 1)))
///     .with_codec(VideoCodec::Vp8)
///     .with_max_bitrate(1_700_000);
/// assert_eq!(feed.codec(), VideoCodec::Vp8);
/// ```
#[derive(Clone)]
pub struct VideoFeed {
    open: Arc<OpenSource>,
    codec: VideoCodec,
    max_bitrate: u32,
    min_bitrate: u32,
    name: String,
    source: TrackSource,
}

impl std::fmt::Debug for VideoFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoFeed")
            .field("codec", &self.codec)
            .field("max_bitrate", &self.max_bitrate)
            .field("min_bitrate", &self.min_bitrate)
            .field("name", &self.name)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl VideoFeed {
    /// A feed of the sources `open` makes; VP8 at up to 1.7 Mbit/s (Element Call's 720p
    /// setting), published as a camera named `camera`. `open` runs on a blocking thread (it may
    /// open a device).
    pub fn new<S, F>(open: F) -> Self
    where
        S: VideoSource + 'static,
        F: Fn() -> Result<S, SourceError> + Send + Sync + 'static,
    {
        Self {
            open: Arc::new(move || open().map(|s| Box::new(s) as Box<dyn DynSource>)),
            codec: VideoCodec::Vp8,
            max_bitrate: 1_700_000,
            min_bitrate: 150_000,
            name: "camera".into(),
            source: TrackSource::Camera,
        }
    }

    /// Encodes with `codec` (H.264 needs this crate's `h264` feature).
    pub fn with_codec(mut self, codec: VideoCodec) -> Self {
        self.codec = codec;
        self
    }

    /// The highest bitrate, bits per second; the encoder follows the connection's estimate
    /// below it.
    pub fn with_max_bitrate(mut self, bits_per_second: u32) -> Self {
        self.max_bitrate = bits_per_second.max(self.min_bitrate);
        self
    }

    /// The lowest bitrate, bits per second, whatever the estimate says.
    pub fn with_min_bitrate(mut self, bits_per_second: u32) -> Self {
        self.min_bitrate = bits_per_second.clamp(10_000, self.max_bitrate);
        self
    }

    /// The track name other participants see.
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Publishes as a screen share instead of a camera.
    pub fn with_source(mut self, source: TrackSource) -> Self {
        self.source = source;
        self
    }

    /// A feed of pictures the application makes, `width × height` at `fps` frames per second,
    /// and the [`FrameSender`] to hand them over with. The newest picture goes out at every
    /// tick (repeated when none came since; black before the first), scaled when its size
    /// differs.
    ///
    /// ```
    /// use matrix_sdk_rtc_livekit::VideoFeed;
    /// use rtc_media::frame::I420Frame;
    ///
    /// let (feed, pictures) = VideoFeed::pushed(640, 480, 30);
    /// pictures.send(I420Frame::filled(640, 480, 81, 90, 240));
    /// # let _ = feed;
    /// ```
    ///
    /// # Panics
    /// When a side or the rate is zero.
    pub fn pushed(width: u32, height: u32, fps: u32) -> (Self, FrameSender) {
        assert!(width > 0 && height > 0 && fps > 0, "a size and a frame rate");
        let (tx, _) = watch::channel(None);
        let sender = FrameSender(Arc::new(tx));
        let latest = sender.clone();
        let feed = Self::new(move || {
            Ok(PushedSource {
                latest: latest.0.subscribe(),
                width,
                height,
                fps,
                pacer: FramePacer::new(Instant::now(), fps, 1),
            })
        });
        (feed, sender)
    }

    /// The codec.
    pub fn codec(&self) -> VideoCodec {
        self.codec
    }

    /// The highest bitrate.
    pub fn max_bitrate(&self) -> u32 {
        self.max_bitrate
    }
}

/// Opens the feed's source, publishes a track on `room` and starts sending frames.
pub(super) async fn start(
    room: &Room,
    feed: &VideoFeed,
    events: mpsc::Sender<CallEvent>,
    stats_interval: Duration,
    encrypted: bool,
) -> Result<Running, Error> {
    let open = feed.open.clone();
    let source = tokio::task::spawn_blocking(move || open())
        .await
        .map_err(|e| Error::Media(format!("opening the video source: {e}")))?
        .map_err(|e| Error::Media(format!("opening the video source: {e}")))?;
    let (width, height) = source.resolution();
    let (fps_num, fps_den) = source.frame_rate();
    let fps = fps_num.div_ceil(fps_den.max(1)).max(1);
    let encoder = new_encoder(feed.codec, width, height, fps, feed.max_bitrate)?;
    let options = VideoTrackOptions {
        name: feed.name.clone(),
        codec: feed.codec,
        width,
        height,
        max_bitrate: feed.max_bitrate,
        source: feed.source,
        encrypted,
    };
    let track = room.publish_video(options).await?;
    let info = PublishInfo {
        track_sid: track.sid().unwrap_or_default(),
        codec: feed.codec,
        width,
        height,
        frame_rate: (fps_num, fps_den),
        max_bitrate: feed.max_bitrate,
    };
    let pump = Pump {
        source,
        encoder: Some(encoder),
        track,
        bitrate: feed.max_bitrate,
        bounds: (feed.min_bitrate, feed.max_bitrate),
        last_change: Instant::now(),
        events,
        info,
        stats_interval,
    };
    Ok(Running::spawn(|stopped| pump.run(stopped)))
}

/// Hands pictures to a [`VideoFeed::pushed`] feed, on every connection it is published on.
/// Cheap to clone; sending never waits.
#[derive(Debug, Clone)]
pub struct FrameSender(Arc<watch::Sender<Option<Arc<I420Frame>>>>);

impl FrameSender {
    /// Makes `picture` the one to send from now on.
    pub fn send(&self, picture: I420Frame) {
        self.0.send_replace(Some(Arc::new(picture)));
    }
}

/// The source of a pushed feed: the newest picture, paced.
struct PushedSource {
    latest: watch::Receiver<Option<Arc<I420Frame>>>,
    width: u32,
    height: u32,
    fps: u32,
    pacer: FramePacer,
}

impl VideoSource for PushedSource {
    fn resolution(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn frame_rate(&self) -> (u32, u32) {
        (self.fps, 1)
    }

    async fn next_frame(&mut self) -> Result<I420Frame, SourceError> {
        let index = loop {
            if let Some(index) = self.pacer.take(Instant::now()) {
                break index;
            }
            tokio::time::sleep_until(self.pacer.next_deadline().into()).await;
        };
        let latest = self.latest.borrow().clone();
        let picture = match latest {
            None => I420Frame::black(self.width, self.height),
            Some(p) if (p.width(), p.height()) == (self.width, self.height) => (*p).clone(),
            Some(p) => rtc_media::scale::scale(&p, self.width, self.height)
                .map_err(|e| SourceError::Device(format!("scaling a pushed picture: {e}")))?,
        };
        Ok(picture.with_timestamp(self.pacer.offset(index)))
    }
}

/// A new encoder for `codec`.
fn new_encoder(
    codec: VideoCodec,
    width: u32,
    height: u32,
    fps: u32,
    bitrate: u32,
) -> Result<Box<dyn VideoEncoder>, Error> {
    let media = |e: rtc_media::codec::CodecError| Error::Media(e.to_string());
    match codec {
        VideoCodec::Vp8 => {
            let mut config = Vp8EncoderConfig::new(width, height);
            config.bitrate = bitrate;
            config.fps = fps;
            config.keyframe_interval = fps * 10;
            Ok(Box::new(Vp8Encoder::new(config).map_err(media)?))
        }
        #[cfg(feature = "h264")]
        VideoCodec::H264 => {
            let mut config = rtc_media::codec::H264EncoderConfig::new(width, height);
            config.bitrate = bitrate;
            config.fps = fps;
            config.keyframe_interval = fps * 10;
            Ok(Box::new(rtc_media::codec::H264Encoder::new(config).map_err(media)?))
        }
        #[cfg(not(feature = "h264"))]
        VideoCodec::H264 => {
            Err(Error::Media("H.264 needs the `h264` feature of matrix-sdk-rtc-livekit".into()))
        }
        other => Err(Error::Media(format!("no encoder for {other:?}"))),
    }
}

/// The publishing loop's state.
struct Pump {
    source: Box<dyn DynSource>,
    /// Moved to a blocking thread for each frame and back.
    encoder: Option<Box<dyn VideoEncoder>>,
    track: LocalVideoTrack,
    bitrate: u32,
    bounds: (u32, u32),
    last_change: Instant,
    events: mpsc::Sender<CallEvent>,
    info: PublishInfo,
    stats_interval: Duration,
}

impl Pump {
    async fn run(mut self, mut stopped: watch::Receiver<bool>) {
        let mut stats = PublishStats::default();
        let mut window = Instant::now();
        let mut announced = false;
        let end = loop {
            let frame = tokio::select! {
                frame = self.source.next_frame() => frame,
                () = super::stopped(&mut stopped) => break None,
            };
            let frame = match frame {
                Ok(frame) => frame,
                Err(error) => break Some(format!("the video source failed: {error}")),
            };
            if self.track.take_keyframe_request()
                && let Some(encoder) = self.encoder.as_mut()
            {
                encoder.request_keyframe();
            }
            self.follow_estimate();
            let Some(mut encoder) = self.encoder.take() else { break None };
            let encoded = tokio::task::spawn_blocking(move || {
                let encoded = encoder.encode(&frame);
                (encoder, encoded)
            })
            .await;
            let encoded = match encoded {
                Ok((encoder, encoded)) => {
                    self.encoder = Some(encoder);
                    encoded
                }
                Err(error) => break Some(format!("the encoder thread failed: {error}")),
            };
            let encoded = match encoded {
                Ok(encoded) => encoded,
                Err(error) => break Some(format!("encoding failed: {error}")),
            };
            stats.frames += 1;
            let mut closed = false;
            for frame in encoded {
                let (bytes, keyframe) = (frame.data.len() as u64, frame.keyframe);
                match self.track.write(frame.into()) {
                    Ok(()) => {
                        stats.bytes += bytes;
                        stats.keyframes += u64::from(keyframe);
                    }
                    Err(TrackError::Busy) => stats.dropped += 1,
                    Err(_) => closed = true,
                }
            }
            if closed {
                // The track or the room is gone: whoever closed it says why.
                break None;
            }
            // Frames go out once the media connection is up (the first one known within a frame).
            if !announced && self.track.frames_sent() > 0 {
                announced = true;
                self.info.track_sid = self.track.sid().unwrap_or_default();
                let _ = self.events.try_send(CallEvent::Publishing(self.info.clone()));
            }
            if window.elapsed() >= self.stats_interval {
                stats.interval = window.elapsed();
                stats.target_bitrate = self.bitrate;
                let _ = self.events.try_send(CallEvent::PublishStats(stats.clone()));
                stats = PublishStats::default();
                window = Instant::now();
            }
        };
        if let Some(error) = end {
            tracing::error!(%error, "publishing stopped");
            let _ = self.events.try_send(CallEvent::PublisherStopped { error: Some(error) });
        }
    }

    /// Sets the encoder to the track's share of the bandwidth estimate, within the feed's
    /// bounds, with hysteresis (some encoders pay for every change).
    fn follow_estimate(&mut self) {
        let (min, max) = self.bounds;
        let target = self.track.target_bitrate().unwrap_or(max).clamp(min, max);
        let change = f64::from(target.abs_diff(self.bitrate)) / f64::from(self.bitrate.max(1));
        if change < BITRATE_HYSTERESIS || self.last_change.elapsed() < BITRATE_CHANGE_INTERVAL {
            return;
        }
        let Some(encoder) = self.encoder.as_mut() else { return };
        match encoder.set_bitrate(target) {
            Ok(()) => {
                tracing::debug!(
                    from = self.bitrate,
                    to = target,
                    "encoder bitrate follows the estimate"
                );
                self.bitrate = target;
                self.last_change = Instant::now();
            }
            Err(error) => tracing::warn!(%error, "the encoder refused a bitrate change"),
        }
    }
}
