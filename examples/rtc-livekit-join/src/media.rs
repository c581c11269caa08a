//! What the program publishes: a test pattern or a V4L2 camera as a [`VideoFeed`]; a tone, a
//! WAV file or a microphone as an [`AudioFeed`].

use matrix_sdk_rtc_livekit::{AudioFeed, VideoFeed};
#[cfg(feature = "v4l2")]
use rtc_media::source::SourceError;
use rtc_media::source::TestPatternSource;

use crate::config::{Audio, Config, Video};
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

/// The feed of the configured audio, `None` for no audio. A sound file is read once here, so
/// that a missing or unreadable one is a configuration error at once (a microphone that cannot
/// be opened, a media error); files and devices are opened anew for every connection.
pub(crate) fn audio_feed(config: &Config) -> Result<Option<AudioFeed>, Failure> {
    Ok(match config.audio.clone() {
        Audio::None => None,
        Audio::Tone { frequency } => Some(AudioFeed::tone(frequency)),
        Audio::File { path } => {
            if let Err(error) = rtc_media::audio::WavSource::open(&path, false) {
                return Err(Failure::config(format!(
                    "AUDIO_SOURCE file:{}: {error}",
                    path.display()
                )));
            }
            Some(AudioFeed::wav_file(path, true))
        }
        #[cfg(feature = "alsa")]
        Audio::Microphone { device } => {
            use rtc_media::audio::{MicConfig, MicSource};
            // Opened once now, so that a missing or busy device ends the program at once.
            if let Err(error) = MicSource::open(&MicConfig::device(&device)) {
                return Err(Failure::media(format!("AUDIO_SOURCE mic:{device}: {error}")));
            }
            Some(AudioFeed::new(move || MicSource::open(&MicConfig::device(&device))))
        }
        // The configuration refuses a microphone without the feature.
        #[cfg(not(feature = "alsa"))]
        Audio::Microphone { .. } => None,
    })
}
