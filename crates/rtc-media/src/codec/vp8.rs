//! VP8 with libvpx (Debian's `libvpx-dev`), configured for live calls: real-time deadline, no
//! look-ahead, constant bitrate, error resilience, keyframes on request.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::ptr;
use std::time::Duration;

use vpx_sys as vpx;

use super::{CodecError, EncodedFrame, VideoCodec, VideoDecoder, VideoEncoder};
use crate::convert::{PixelFormat, Plane, RawPicture, to_i420};
use crate::frame::{I420Frame, chroma_height, chroma_width};

/// The RTP clock of video: timestamps are counted in 1/90 000 s.
const TIMEBASE: i32 = 90_000;

/// Settings of the VP8 encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Vp8EncoderConfig {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Target bitrate, bits per second. Default 1.7 Mbit/s (Element Call's 720p default).
    pub bitrate: u32,
    /// Frames per second the source delivers. Default 30.
    pub fps: u32,
    /// Longest distance between keyframes, in frames; others come on request. Default 10 s.
    pub keyframe_interval: u32,
    /// Encoder threads; 0 (the default) lets [`Vp8Encoder`] choose as libwebrtc does from the
    /// frame size and the machine's cores: 1 up to 640x480 (and whenever fewer than 3 cores),
    /// 2 above (3 with 6 cores or more), 3 above 1280x960 with 6 cores, 8 from 1920x1080 with
    /// more than 8 cores. Every extra libvpx thread is an OS thread with its own macroblock
    /// state, which only pays off on large pictures.
    pub threads: u32,
    /// libvpx speed (`-16`..`16`; higher is faster, lower quality; negative values let libvpx
    /// raise the speed when a frame would miss its real-time deadline). Default -6, libwebrtc's
    /// choice: on noisy 720p camera-like frames it encodes in 7.4 ms where speed 8 takes 10.7 ms,
    /// at the same bitrate.
    pub cpu_used: i32,
    /// libvpx's temporal denoiser (`VP8E_SET_NOISE_SENSITIVITY`, 0 = off … 4 = adaptive), as
    /// libwebrtc uses for cameras (4 on x86, 1 on ARM). It spends CPU to save bits on noisy
    /// pictures, and memory: it keeps its own running-average copy of every reference frame
    /// (with libvpx 1.12, 370 KiB more per encoder at 160x120, 2.6 MiB at 640x360, 9 MiB at
    /// 1280x720; see `examples/encoder-memory.rs`). Default 0 (off): generated and screen
    /// pictures have no sensor noise to remove; a camera source may turn it on.
    pub noise_sensitivity: i32,
}

impl Vp8EncoderConfig {
    /// Defaults for `width × height`.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            bitrate: 1_700_000,
            fps: 30,
            keyframe_interval: 300,
            threads: 0,
            cpu_used: -6,
            noise_sensitivity: 0,
        }
    }
}

fn error_text(ctx: &vpx::vpx_codec_ctx_t, code: vpx::vpx_codec_err_t) -> String {
    // SAFETY: vpx_codec_err_to_string returns a static string for every code; the detail is
    // either null or a string owned by the context, which is alive.
    unsafe {
        let message =
            CStr::from_ptr(vpx::vpx_codec_err_to_string(code)).to_string_lossy().into_owned();
        if ctx.err_detail.is_null() {
            message
        } else {
            format!("{message}: {}", CStr::from_ptr(ctx.err_detail).to_string_lossy())
        }
    }
}

/// The number of encoder threads libwebrtc picks for `width × height` on `cores` cores
/// (`LibvpxVp8Encoder::NumberOfThreads`, desktop): one thread up to VGA.
fn threads_for(width: u32, height: u32, cores: usize) -> u32 {
    let pixels = u64::from(width) * u64::from(height);
    if pixels >= 1920 * 1080 && cores > 8 {
        8
    } else if pixels > 1280 * 960 && cores >= 6 {
        3
    } else if pixels > 640 * 480 && cores >= 3 {
        if cores >= 6 { 3 } else { 2 }
    } else {
        1
    }
}

/// `VP8E_SET_TOKEN_PARTITIONS` (log2 of the number of partitions) for `threads` threads: one
/// partition for one thread, as libwebrtc; otherwise one per thread, up to VP8's 8. A libvpx
/// built with `--enable-onthefly-bitpacking` refuses fewer partitions than threads; any VP8
/// decoder reads several (RFC 6386, section 9.5), and they still come out as one frame.
fn token_partitions(threads: u32) -> i32 {
    (u32::BITS - threads.saturating_sub(1).leading_zeros()).min(3) as i32
}

/// A VP8 encoder.
///
/// Memory: libvpx allocates everything when the encoder is created (and again on a size
/// change), nearly all of it proportional to the frame size. With Debian's libvpx 1.12 one
/// encoder costs about 1.1 MiB of resident memory at 160x120, 8.5 MiB at 640x360 and 31 MiB at
/// 1280x720 (`cargo run --release -p rtc-media --example encoder-memory`). Most of it is libvpx's
/// whole-frame token buffer (384 tokens of 16 bytes per macroblock: 480 KiB at 160x120, 21 MiB
/// at 1280x720, zeroed at creation), then its frame buffers (four references, a post-processing
/// frame, a two-frame look-ahead even without look-ahead, each with 32-pixel borders) and its
/// 182 KiB encoder state. No setting of the encoder shrinks the token buffer; a libvpx
/// configured with `--enable-realtime-only --enable-onthefly-bitpacking` (which writes the
/// same bitstream) keeps the tokens of one macroblock per thread instead: about 700 KiB at
/// 160x120, 3.1 MiB at 640x360 and 10 MiB at 1280x720 (see the crate's README).
pub struct Vp8Encoder {
    ctx: Box<vpx::vpx_codec_ctx_t>,
    cfg: vpx::vpx_codec_enc_cfg_t,
    config: Vp8EncoderConfig,
    force_keyframe: bool,
    initialised: bool,
}

// SAFETY: the libvpx context is owned by this value and only used through `&mut self`; libvpx
// contexts may move between threads.
unsafe impl Send for Vp8Encoder {}

impl std::fmt::Debug for Vp8Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vp8Encoder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Vp8Encoder {
    /// A new encoder.
    pub fn new(config: Vp8EncoderConfig) -> Result<Self, CodecError> {
        if config.width == 0
            || config.height == 0
            || config.width > 16_383
            || config.height > 16_383
        {
            return Err(CodecError::Config(format!(
                "VP8 frames are 1..16383 pixels a side, not {}x{}",
                config.width, config.height
            )));
        }
        if config.fps == 0 || config.bitrate < 1000 {
            return Err(CodecError::Config(
                "the frame rate must be positive and the bitrate at least 1 kbit/s".into(),
            ));
        }
        let mut cfg = std::mem::MaybeUninit::<vpx::vpx_codec_enc_cfg_t>::uninit();
        // SAFETY: the interface pointer is static; cfg is a valid out pointer that libvpx fills
        // completely when it answers OK.
        let code = unsafe {
            vpx::vpx_codec_enc_config_default(vpx::vpx_codec_vp8_cx(), cfg.as_mut_ptr(), 0)
        };
        if code != vpx::VPX_CODEC_OK {
            return Err(CodecError::Init { codec: VideoCodec::Vp8, detail: format!("{code:?}") });
        }
        // SAFETY: initialised by vpx_codec_enc_config_default above.
        let mut cfg = unsafe { cfg.assume_init() };
        cfg.g_w = config.width;
        cfg.g_h = config.height;
        cfg.g_timebase = vpx::vpx_rational { num: 1, den: TIMEBASE };
        cfg.g_lag_in_frames = 0;
        cfg.g_error_resilient = vpx::VPX_ERROR_RESILIENT_DEFAULT;
        cfg.g_pass = vpx::vpx_enc_pass::VPX_RC_ONE_PASS;
        cfg.rc_end_usage = vpx::vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = (config.bitrate / 1000).max(1);
        cfg.rc_min_quantizer = 2;
        cfg.rc_max_quantizer = 56;
        cfg.rc_undershoot_pct = 100;
        cfg.rc_overshoot_pct = 15;
        cfg.rc_buf_initial_sz = 500;
        cfg.rc_buf_optimal_sz = 600;
        cfg.rc_buf_sz = 1000;
        cfg.rc_dropframe_thresh = 0;
        cfg.kf_mode = vpx::vpx_kf_mode::VPX_KF_AUTO;
        cfg.kf_min_dist = 0;
        cfg.kf_max_dist = config.keyframe_interval.max(1);
        // SAFETY: a zeroed context is what vpx_codec_enc_init expects.
        let ctx = Box::new(unsafe { std::mem::zeroed::<vpx::vpx_codec_ctx_t>() });
        let mut encoder = Self { ctx, cfg, config, force_keyframe: true, initialised: false };
        encoder.init()?;
        Ok(encoder)
    }

    fn init(&mut self) -> Result<(), CodecError> {
        self.cfg.g_threads = match self.config.threads {
            0 => threads_for(
                self.cfg.g_w,
                self.cfg.g_h,
                std::thread::available_parallelism().map_or(1, usize::from),
            ),
            threads => threads,
        };
        // SAFETY: ctx and cfg are valid and owned; the ABI version matches the bindings.
        let code = unsafe {
            vpx::vpx_codec_enc_init_ver(
                &mut *self.ctx,
                vpx::vpx_codec_vp8_cx(),
                &self.cfg,
                0,
                vpx::VPX_ENCODER_ABI_VERSION as i32,
            )
        };
        if code != vpx::VPX_CODEC_OK {
            return Err(CodecError::Init {
                codec: VideoCodec::Vp8,
                detail: error_text(&self.ctx, code),
            });
        }
        self.initialised = true;
        for (control, value) in [
            (vpx::vp8e_enc_control_id::VP8E_SET_CPUUSED as i32, self.config.cpu_used),
            (
                vpx::vp8e_enc_control_id::VP8E_SET_NOISE_SENSITIVITY as i32,
                self.config.noise_sensitivity.clamp(0, 6),
            ),
            (vpx::vp8e_enc_control_id::VP8E_SET_STATIC_THRESHOLD as i32, 1),
            (
                vpx::vp8e_enc_control_id::VP8E_SET_TOKEN_PARTITIONS as i32,
                token_partitions(self.cfg.g_threads),
            ),
        ] {
            // SAFETY: the context is initialised; these controls take an int.
            let code = unsafe { vpx::vpx_codec_control_(&mut *self.ctx, control, value) };
            if code != vpx::VPX_CODEC_OK {
                return Err(CodecError::Init {
                    codec: VideoCodec::Vp8,
                    detail: error_text(&self.ctx, code),
                });
            }
        }
        Ok(())
    }

    fn destroy(&mut self) {
        if self.initialised {
            // SAFETY: the context was initialised and is destroyed once.
            unsafe { vpx::vpx_codec_destroy(&mut *self.ctx) };
            self.initialised = false;
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &Vp8EncoderConfig {
        &self.config
    }

    /// The number of threads libvpx was given for the current frame size (see
    /// [`Vp8EncoderConfig::threads`]).
    pub fn threads(&self) -> u32 {
        self.cfg.g_threads
    }
}

impl Drop for Vp8Encoder {
    fn drop(&mut self) {
        self.destroy();
    }
}

impl VideoEncoder for Vp8Encoder {
    fn codec(&self) -> VideoCodec {
        VideoCodec::Vp8
    }

    fn encode(&mut self, frame: &I420Frame) -> Result<Vec<EncodedFrame>, CodecError> {
        if (frame.width(), frame.height()) != (self.config.width, self.config.height) {
            // A new size: start a new stream, beginning with a keyframe.
            self.destroy();
            self.config.width = frame.width();
            self.config.height = frame.height();
            self.cfg.g_w = frame.width();
            self.cfg.g_h = frame.height();
            self.init()?;
            self.force_keyframe = true;
        }
        let (w, h) = (frame.width(), frame.height());
        // SAFETY: the image only describes the frame's planes, which outlive the encode call;
        // libvpx reads them and never writes.
        let mut image: vpx::vpx_image_t = unsafe { std::mem::zeroed() };
        let wrapped = unsafe {
            vpx::vpx_img_wrap(
                &mut image,
                vpx::vpx_img_fmt::VPX_IMG_FMT_I420,
                w,
                h,
                1,
                frame.y().as_ptr().cast_mut(),
            )
        };
        if wrapped.is_null() {
            return Err(CodecError::Encode("cannot describe the frame to libvpx".into()));
        }
        image.planes[0] = frame.y().as_ptr().cast_mut();
        image.planes[1] = frame.u().as_ptr().cast_mut();
        image.planes[2] = frame.v().as_ptr().cast_mut();
        image.stride[0] = w as i32;
        image.stride[1] = chroma_width(w) as i32;
        image.stride[2] = chroma_width(w) as i32;

        let pts = i64::try_from(frame.timestamp.as_nanos() * TIMEBASE as u128 / 1_000_000_000)
            .unwrap_or(i64::MAX);
        let duration = (TIMEBASE as u32 / self.config.fps).max(1);
        let flags = if std::mem::take(&mut self.force_keyframe) {
            vpx::VPX_EFLAG_FORCE_KF as vpx::vpx_enc_frame_flags_t
        } else {
            0
        };
        // SAFETY: initialised context, valid image for the duration of the call.
        let code = unsafe {
            vpx::vpx_codec_encode(
                &mut *self.ctx,
                &image,
                pts,
                duration.into(),
                flags,
                vpx::VPX_DL_REALTIME.into(),
            )
        };
        if code != vpx::VPX_CODEC_OK {
            return Err(CodecError::Encode(error_text(&self.ctx, code)));
        }
        let mut out = Vec::new();
        let mut iter: vpx::vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: iterating the packets of the last encode call on a live context.
            let packet = unsafe { vpx::vpx_codec_get_cx_data(&mut *self.ctx, &mut iter) };
            if packet.is_null() {
                break;
            }
            // SAFETY: libvpx returned a valid packet; frame packets carry a buffer of `sz` bytes
            // that stays valid until the next call on the context.
            unsafe {
                if (*packet).kind == vpx::vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                    let f = (*packet).data.frame;
                    let data =
                        std::slice::from_raw_parts(f.buf.cast::<u8>(), f.sz as usize).to_vec();
                    out.push(EncodedFrame {
                        codec: VideoCodec::Vp8,
                        data,
                        keyframe: f.flags & vpx::VPX_FRAME_IS_KEY != 0,
                        timestamp: Duration::from_nanos(
                            u64::try_from(f.pts).unwrap_or(0) * 1_000_000_000 / TIMEBASE as u64,
                        ),
                    });
                }
            }
        }
        Ok(out)
    }

    fn request_keyframe(&mut self) {
        self.force_keyframe = true;
    }

    fn set_bitrate(&mut self, bits_per_second: u32) -> Result<(), CodecError> {
        self.cfg.rc_target_bitrate = (bits_per_second / 1000).max(1);
        // SAFETY: initialised context and a valid config.
        let code = unsafe { vpx::vpx_codec_enc_config_set(&mut *self.ctx, &self.cfg) };
        if code != vpx::VPX_CODEC_OK {
            return Err(CodecError::Config(error_text(&self.ctx, code)));
        }
        self.config.bitrate = bits_per_second;
        Ok(())
    }
}

/// A VP8 decoder.
pub struct Vp8Decoder {
    ctx: Box<vpx::vpx_codec_ctx_t>,
}

// SAFETY: as for the encoder.
unsafe impl Send for Vp8Decoder {}

impl std::fmt::Debug for Vp8Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vp8Decoder").finish_non_exhaustive()
    }
}

impl Vp8Decoder {
    /// A new decoder.
    pub fn new() -> Result<Self, CodecError> {
        // SAFETY: zeroed context and config are what vpx_codec_dec_init expects.
        let mut ctx = Box::new(unsafe { std::mem::zeroed::<vpx::vpx_codec_ctx_t>() });
        let cfg = vpx::vpx_codec_dec_cfg_t { threads: 1, w: 0, h: 0 };
        // SAFETY: valid pointers; the ABI version matches the bindings.
        let code = unsafe {
            vpx::vpx_codec_dec_init_ver(
                &mut *ctx,
                vpx::vpx_codec_vp8_dx(),
                &cfg,
                0,
                vpx::VPX_DECODER_ABI_VERSION as i32,
            )
        };
        if code != vpx::VPX_CODEC_OK {
            return Err(CodecError::Init {
                codec: VideoCodec::Vp8,
                detail: error_text(&ctx, code),
            });
        }
        Ok(Self { ctx })
    }
}

impl Drop for Vp8Decoder {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, destroyed once.
        unsafe { vpx::vpx_codec_destroy(&mut *self.ctx) };
    }
}

impl VideoDecoder for Vp8Decoder {
    fn codec(&self) -> VideoCodec {
        VideoCodec::Vp8
    }

    fn decode(&mut self, data: &[u8]) -> Result<Option<I420Frame>, CodecError> {
        if data.is_empty() {
            return Err(CodecError::Decode("empty frame".into()));
        }
        let len = u32::try_from(data.len())
            .map_err(|_| CodecError::Decode("frame larger than 4 GiB".into()))?;
        // SAFETY: live context; libvpx reads `len` bytes of `data` during the call.
        let code = unsafe {
            vpx::vpx_codec_decode(&mut *self.ctx, data.as_ptr(), len, ptr::null_mut(), 0)
        };
        if code != vpx::VPX_CODEC_OK {
            return Err(CodecError::Decode(error_text(&self.ctx, code)));
        }
        let mut iter: vpx::vpx_codec_iter_t = ptr::null();
        let mut last = None;
        loop {
            // SAFETY: iterating the pictures of the last decode call.
            let image = unsafe { vpx::vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
            if image.is_null() {
                break;
            }
            // SAFETY: libvpx returned a valid I420 image whose planes hold `d_h` rows of
            // `stride` bytes (chroma: half, rounded up), valid until the next decode call.
            let frame = unsafe {
                let img = &*image;
                if img.fmt != vpx::vpx_img_fmt::VPX_IMG_FMT_I420 {
                    return Err(CodecError::Decode(format!(
                        "unexpected picture format {:?}",
                        img.fmt
                    )));
                }
                let (w, h) = (img.d_w, img.d_h);
                let plane = |i: usize, row_bytes: u32, rows: u32| {
                    let stride = img.stride[i] as usize;
                    let len = stride * (rows as usize - 1) + row_bytes as usize;
                    Plane { data: std::slice::from_raw_parts(img.planes[i], len), stride }
                };
                let planes = [
                    plane(0, w, h),
                    plane(1, chroma_width(w), chroma_height(h)),
                    plane(2, chroma_width(w), chroma_height(h)),
                ];
                to_i420(&RawPicture {
                    format: PixelFormat::I420,
                    width: w,
                    height: h,
                    planes: &planes,
                })
                .map_err(|e| CodecError::Decode(e.to_string()))?
            };
            last = Some(frame);
        }
        Ok(last)
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
        let mut encoder = Vp8Encoder::new(Vp8EncoderConfig::new(w, h)).unwrap();
        let mut decoder = Vp8Decoder::new().unwrap();
        super::super::round_trip(&mut encoder, &mut decoder, pattern, (w, h), frames)
    }

    #[test]
    fn the_bitrate_changes_without_a_keyframe() {
        let mut encoder = Vp8Encoder::new(Vp8EncoderConfig::new(640, 480)).unwrap();
        super::super::check_rate_change(&mut encoder);
    }

    #[test]
    fn solid_colour_survives_at_640x480_and_1280x720() {
        for (w, h) in [(640, 480), (1280, 720)] {
            // Real-time rate control starts coarse and settles within a few frames.
            let frames = round_trip(TestPattern::RED, w, h, 15);
            let (_, last) = frames.last().unwrap();
            let (y, u, v) = last.mean();
            assert!(
                (y - 81.0).abs() <= 2.0 && (u - 90.0).abs() <= 2.0 && (v - 240.0).abs() <= 2.0,
                "{w}x{h}: {y} {u} {v}"
            );
            assert_eq!((last.width(), last.height()), (w, h));
        }
    }

    #[test]
    fn first_frame_and_requested_frames_are_keyframes() {
        let mut encoder = Vp8Encoder::new(Vp8EncoderConfig::new(320, 240)).unwrap();
        let mut keyframes = Vec::new();
        for i in 0..10u64 {
            if i == 6 {
                encoder.request_keyframe();
            }
            let frame = TestPattern::Moving
                .render(320, 240, i)
                .with_timestamp(Duration::from_millis(i * 33));
            keyframes.push(encoder.encode(&frame).unwrap()[0].keyframe);
        }
        assert_eq!(keyframes, [true, false, false, false, false, false, true, false, false, false]);
    }

    #[test]
    fn the_moving_pattern_decodes_to_the_frames_that_were_sent() {
        let frames = round_trip(TestPattern::Moving, 640, 480, 12);
        for (i, (encoded, decoded)) in frames.iter().enumerate() {
            assert_eq!(read_counter(decoded), Some(i as u64), "frame {i}");
            assert_eq!(encoded.timestamp, Duration::from_millis(i as u64 * 33));
        }
        assert_ne!(frames[3].1.y(), frames[4].1.y());
    }

    #[test]
    fn odd_sizes_and_size_changes() {
        let mut encoder = Vp8Encoder::new(Vp8EncoderConfig::new(33, 17)).unwrap();
        let mut decoder = Vp8Decoder::new().unwrap();
        for (w, h) in [(33, 17), (64, 48)] {
            let encoded = encoder.encode(&TestPattern::RED.render(w, h, 0)).unwrap().remove(0);
            assert!(encoded.keyframe, "a new size starts with a keyframe");
            let decoded = decoder.decode(&encoded.data).unwrap().unwrap();
            assert_eq!((decoded.width(), decoded.height()), (w, h));
        }
    }

    #[test]
    fn threads_follow_libwebrtc_by_size_and_cores() {
        // One thread up to VGA, whatever the machine.
        for (w, h) in [(160, 120), (320, 240), (640, 360), (640, 480)] {
            assert_eq!(threads_for(w, h, 64), 1, "{w}x{h}");
        }
        assert_eq!(threads_for(1280, 720, 2), 1);
        assert_eq!(threads_for(1280, 720, 4), 2);
        assert_eq!(threads_for(1280, 720, 8), 3);
        assert_eq!(threads_for(1920, 1080, 8), 3);
        assert_eq!(threads_for(1920, 1080, 16), 8);

        let mut encoder = Vp8Encoder::new(Vp8EncoderConfig::new(160, 120)).unwrap();
        assert_eq!(encoder.threads(), 1);
        // A size change chooses again; an explicit number is kept.
        encoder.encode(&TestPattern::RED.render(1280, 720, 0)).unwrap();
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(encoder.threads(), threads_for(1280, 720, cores));
        assert_eq!([1, 2, 3, 4, 5, 8, 9, 64].map(token_partitions), [0, 1, 2, 2, 3, 3, 3, 3]);

        let mut config = Vp8EncoderConfig::new(1280, 720);
        config.threads = 2;
        let mut encoder = Vp8Encoder::new(config).unwrap();
        assert_eq!(encoder.threads(), 2);
        let mut decoder = Vp8Decoder::new().unwrap();
        let frames = super::super::round_trip(
            &mut encoder,
            &mut decoder,
            TestPattern::Moving,
            (1280, 720),
            4,
        );
        for (i, (_, decoded)) in frames.iter().enumerate() {
            assert_eq!(read_counter(decoded), Some(i as u64), "frame {i}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_crash() {
        let mut decoder = Vp8Decoder::new().unwrap();
        assert!(decoder.decode(&[]).is_err());
        assert!(decoder.decode(&[0xff; 40]).is_err());
        assert!(Vp8Encoder::new(Vp8EncoderConfig::new(0, 10)).is_err());
    }

    #[test]
    fn bitrate_can_change_mid_stream() {
        let mut encoder = Vp8Encoder::new(Vp8EncoderConfig::new(320, 240)).unwrap();
        encoder.encode(&TestPattern::Moving.render(320, 240, 0)).unwrap();
        encoder.set_bitrate(300_000).unwrap();
        assert_eq!(encoder.config().bitrate, 300_000);
        encoder.encode(&TestPattern::Moving.render(320, 240, 1)).unwrap();
    }
}
