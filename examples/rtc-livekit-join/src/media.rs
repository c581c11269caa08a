//! What the program publishes: a test pattern or a V4L2 camera, as a [`VideoFeed`].

use matrix_sdk_rtc_livekit::VideoFeed;
#[cfg(feature = "v4l2")]
use rtc_media::source::SourceError;
use rtc_media::source::TestPatternSource;

use crate::config::{Config, Video};
use crate::failure::Failure;

/// The feed of the configured video, `None` for no video.
pub(crate) fn feed(config: &Config) -> Result<Option<VideoFeed>, Failure> {
    let feed = match config.video.clone() {
        Video::None => return Ok(None),
        Video::Pattern { pattern, width, height, fps } => {
            VideoFeed::new(move || Ok(TestPatternSource::new(pattern, width, height, fps, 1)))
        }
        #[cfg(feature = "v4l2")]
        Video::Camera { device, size } => VideoFeed::new(move || {
            let camera = rtc_media::capture::V4l2Device::open(&device)
                .map_err(|e| SourceError::Device(e.to_string()))?;
            rtc_media::capture::CameraSource::new(camera, size)
                .map_err(|e| SourceError::Device(e.to_string()))
        }),
        #[cfg(not(feature = "v4l2"))]
        Video::Camera { .. } => {
            return Err(Failure::config(
                "a camera needs the v4l2 feature: build with `--features v4l2`",
            ));
        }
    };
    Ok(Some(feed.with_codec(config.codec).with_max_bitrate(config.max_bitrate)))
}
