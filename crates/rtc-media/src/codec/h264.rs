//! H.264 with Cisco's openh264 (built from its bundled source, faster with `nasm`): constrained
//! baseline, real-time camera usage, bitrate rate control, Annex B output (start codes) that an
//! RTP packetiser splits into NAL units for packetisation mode 1.
// The safe API of the openh264 crate cannot change the bitrate of a running encoder; the raw
// `SetOption` call below does, as libwebrtc does it.
#![allow(unsafe_code)]

use std::time::Duration;

use openh264::OpenH264API;
use openh264::decoder::Decoder;
use openh264::encoder::{
    BitRate, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, UsageType,
};
use openh264::formats::YUVSource;

use super::{CodecError, EncodedFrame, VideoCodec, VideoDecoder, VideoEncoder};
use crate::convert::{PixelFormat, Plane, RawPicture, to_i420};
use crate::frame::{I420Frame, chroma_width};

/// Settings of the H.264 encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct H264EncoderConfig {
    /// Width in pixels (even).
    pub width: u32,
    /// Height in pixels (even).
    pub height: u32,
    /// Target bitrate, bits per second. Default 1.7 Mbit/s.
    pub bitrate: u32,
    /// Frames per second. Default 30.
    pub fps: u32,
    /// Longest distance between IDR frames, in frames; others come on request. Default 10 s.
    pub keyframe_interval: u32,
    /// Encoder threads. Default 1.
    pub threads: u16,
}

impl H264EncoderConfig {
    /// Defaults for `width × height`.
    pub fn new(width: u32, height: u32) -> Self {
        Self { width, height, bitrate: 1_700_000, fps: 30, keyframe_interval: 300, threads: 1 }
    }
}

struct FrameRef<'a>(&'a I420Frame);

impl YUVSource for FrameRef<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width() as usize, self.0.height() as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        let c = chroma_width(self.0.width()) as usize;
        (self.0.width() as usize, c, c)
    }

    fn y(&self) -> &[u8] {
        self.0.y()
    }

    fn u(&self) -> &[u8] {
        self.0.u()
    }

    fn v(&self) -> &[u8] {
        self.0.v()
    }
}

/// An H.264 encoder.
pub struct H264Encoder {
    inner: Encoder,
    config: H264EncoderConfig,
    /// openh264 initialises the encoder on the first frame; options can only be set after it.
    started: bool,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder").field("config", &self.config).finish_non_exhaustive()
    }
}

fn init_error(error: openh264::Error) -> CodecError {
    CodecError::Init { codec: VideoCodec::H264, detail: error.to_string() }
}

impl H264Encoder {
    /// A new encoder.
    pub fn new(config: H264EncoderConfig) -> Result<Self, CodecError> {
        if config.width == 0
            || config.height == 0
            || config.width % 2 == 1
            || config.height % 2 == 1
        {
            return Err(CodecError::Config(format!(
                "H.264 frames need even sides, not {}x{}",
                config.width, config.height
            )));
        }
        if config.fps == 0 || config.bitrate < 1000 {
            return Err(CodecError::Config(
                "the frame rate must be positive and the bitrate at least 1 kbit/s".into(),
            ));
        }
        let inner = Self::build(&config)?;
        Ok(Self { inner, config, started: false })
    }

    fn build(config: &H264EncoderConfig) -> Result<Encoder, CodecError> {
        let settings = EncoderConfig::new()
            .bitrate(BitRate::from_bps(config.bitrate))
            .max_frame_rate(FrameRate::from_hz(config.fps as f32))
            .usage_type(UsageType::CameraVideoRealTime)
            .rate_control_mode(RateControlMode::Bitrate)
            .profile(Profile::Baseline)
            // As libwebrtc does: the encoder may drop a frame to hold the bitrate.
            .skip_frames(true)
            .intra_frame_period(IntraFramePeriod::from_num_frames(config.keyframe_interval.max(1)))
            .num_threads(config.threads.max(1));
        Encoder::with_api_config(OpenH264API::from_source(), settings).map_err(init_error)
    }

    /// The configuration in use.
    pub fn config(&self) -> &H264EncoderConfig {
        &self.config
    }
}

impl VideoEncoder for H264Encoder {
    fn codec(&self) -> VideoCodec {
        VideoCodec::H264
    }

    fn encode(&mut self, frame: &I420Frame) -> Result<Vec<EncodedFrame>, CodecError> {
        if frame.width() % 2 == 1 || frame.height() % 2 == 1 {
            return Err(CodecError::Encode(format!(
                "H.264 frames need even sides, not {}x{}",
                frame.width(),
                frame.height()
            )));
        }
        if (frame.width(), frame.height()) != (self.config.width, self.config.height) {
            self.config.width = frame.width();
            self.config.height = frame.height();
            self.inner = Self::build(&self.config)?;
            self.started = false;
        }
        let millis = u64::try_from(frame.timestamp.as_millis()).unwrap_or(u64::MAX);
        let stream = self
            .inner
            .encode_at(&FrameRef(frame), openh264::Timestamp::from_millis(millis))
            .map_err(|e| CodecError::Encode(e.to_string()))?;
        self.started = true;
        let keyframe = match stream.frame_type() {
            FrameType::Skip | FrameType::Invalid => return Ok(Vec::new()),
            FrameType::IDR => true,
            _ => false,
        };
        Ok(vec![EncodedFrame {
            codec: VideoCodec::H264,
            data: stream.to_vec(),
            keyframe,
            timestamp: Duration::from_millis(millis),
        }])
    }

    fn request_keyframe(&mut self) {
        self.inner.force_intra_frame();
    }

    fn set_bitrate(&mut self, bits_per_second: u32) -> Result<(), CodecError> {
        if bits_per_second < 1000 {
            return Err(CodecError::Config("the bitrate must be at least 1 kbit/s".into()));
        }
        self.config.bitrate = bits_per_second;
        if !self.started {
            // Not initialised yet: the first frame starts with the new rate (and an IDR anyway).
            self.inner = Self::build(&self.config)?;
            return Ok(());
        }
        let mut info = openh264_sys2::SBitrateInfo {
            iLayer: openh264_sys2::SPATIAL_LAYER_ALL,
            iBitrate: i32::try_from(bits_per_second).unwrap_or(i32::MAX),
        };
        // SAFETY: the encoder is initialised (it has encoded a frame); ENCODER_OPTION_BITRATE
        // takes a pointer to an SBitrateInfo that lives across the call. It changes the rate
        // control's target only, without a new IDR frame, as libwebrtc's SetRates does.
        let code = unsafe {
            self.inner.raw_api().set_option(
                openh264_sys2::ENCODER_OPTION_BITRATE,
                std::ptr::from_mut(&mut info).cast(),
            )
        };
        if code != 0 {
            return Err(CodecError::Config(format!("openh264 refused the bitrate (code {code})")));
        }
        Ok(())
    }
}

/// An H.264 decoder.
pub struct H264Decoder {
    inner: Decoder,
}

impl std::fmt::Debug for H264Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Decoder").finish_non_exhaustive()
    }
}

impl H264Decoder {
    /// A new decoder.
    pub fn new() -> Result<Self, CodecError> {
        Ok(Self { inner: Decoder::new().map_err(init_error)? })
    }
}

impl VideoDecoder for H264Decoder {
    fn codec(&self) -> VideoCodec {
        VideoCodec::H264
    }

    fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>, CodecError> {
        if data.is_empty() {
            return Err(CodecError::Decode("empty frame".into()));
        }
        let Some(picture) =
            self.inner.decode(data).map_err(|e| CodecError::Decode(e.to_string()))?
        else {
            return Ok(None);
        };
        let (w, h) = picture.dimensions();
        let (ys, us, vs) = picture.strides();
        let (w, h) = (u32::try_from(w).unwrap_or(0), u32::try_from(h).unwrap_or(0));
        if w == 0 || h == 0 {
            return Err(CodecError::Decode("empty picture".into()));
        }
        let planes = [
            Plane { data: picture.y(), stride: ys },
            Plane { data: picture.u(), stride: us },
            Plane { data: picture.v(), stride: vs },
        ];
        let frame = to_i420(&RawPicture {
            format: PixelFormat::I420,
            width: w,
            height: h,
            planes: &planes,
        })
        .map_err(|e| CodecError::Decode(e.to_string()))?;
        Ok(Some(frame))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::{TestPattern, read_counter};

    fn round_trip(
        pattern: TestPattern,
        w: u32,
        h: u32,
        frames: u64,
    ) -> Vec<(EncodedFrame, I420Frame)> {
        let mut encoder = H264Encoder::new(H264EncoderConfig::new(w, h)).unwrap();
        let mut decoder = H264Decoder::new().unwrap();
        super::super::round_trip(&mut encoder, &mut decoder, pattern, (w, h), frames)
    }

    #[test]
    fn the_bitrate_changes_without_a_keyframe() {
        let mut encoder = H264Encoder::new(H264EncoderConfig::new(640, 480)).unwrap();
        super::super::check_rate_change(&mut encoder);
    }

    #[test]
    fn solid_colour_survives_at_640x480_and_1280x720() {
        for (w, h) in [(640, 480), (1280, 720)] {
            let frames = round_trip(TestPattern::RED, w, h, 15);
            let (_, last) = frames.last().unwrap();
            let (y, u, v) = last.mean();
            assert!(
                (y - 81.0).abs() <= 2.0 && (u - 90.0).abs() <= 2.0 && (v - 240.0).abs() <= 2.0,
                "{w}x{h}: {y} {u} {v}"
            );
        }
    }

    #[test]
    fn annex_b_output_with_an_idr_first_and_on_request() {
        let mut encoder = H264Encoder::new(H264EncoderConfig::new(320, 240)).unwrap();
        let mut keyframes = Vec::new();
        for i in 0..8u64 {
            if i == 5 {
                encoder.request_keyframe();
            }
            let encoded = encoder
                .encode(
                    &TestPattern::Moving
                        .render(320, 240, i)
                        .with_timestamp(Duration::from_millis(i * 33)),
                )
                .unwrap()
                .remove(0);
            assert!(
                encoded.data.starts_with(&[0, 0, 0, 1]) || encoded.data.starts_with(&[0, 0, 1]),
                "Annex B start code"
            );
            keyframes.push(encoded.keyframe);
        }
        assert_eq!(keyframes, [true, false, false, false, false, true, false, false]);
    }

    #[test]
    fn the_moving_pattern_decodes_to_the_frames_that_were_sent() {
        for (i, (_, decoded)) in round_trip(TestPattern::Moving, 640, 480, 10).iter().enumerate() {
            assert_eq!(read_counter(decoded), Some(i as u64), "frame {i}");
        }
    }

    #[test]
    fn odd_sizes_and_garbage_are_errors() {
        assert!(H264Encoder::new(H264EncoderConfig::new(33, 17)).is_err());
        let mut decoder = H264Decoder::new().unwrap();
        assert!(decoder.decode(&[]).is_err());
        let _ = decoder.decode(&[0, 0, 0, 1, 0x65, 0xff, 0xff, 0xff]);
    }
}
