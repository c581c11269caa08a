//! Media in and out for real-time calls, knowing nothing of Matrix or LiveKit:
//!
//! * [`capture`]: camera format negotiation and buffer conversion over a [`capture::CaptureDevice`]
//!   (V4L2 with the `v4l2` feature);
//! * [`frame::I420Frame`]: the picture type everything converts to;
//! * [`convert`]: NV12, YUYV, RGB and RGBA (with real strides) to I420, and I420 to RGB;
//! * [`scale`]: I420 scaling when a source cannot deliver the size asked for;
//! * [`pattern`] and [`source::TestPatternSource`]: solid colours and a moving, counting pattern,
//!   paced without drift ([`pacing`]);
//! * [`codec`]: [`codec::VideoEncoder`] / [`codec::VideoDecoder`], with VP8 on libvpx;
//! * [`audio`]: 20 ms frames at 48 kHz from a tone, a WAV file or (feature `alsa`) a
//!   microphone, resampling, Opus encode/decode with libwebrtc's FEC and DTX, RFC 6464 audio
//!   levels, the drift-free send clock and a jitter buffer for received audio;
//! * [`sink`]: PNG snapshots, IVF files of VP8, WAV files, Ogg Opus files of received packets.
//!
//! ```
//! use rtc_media::codec::{VideoDecoder, VideoEncoder, Vp8Decoder, Vp8Encoder, Vp8EncoderConfig};
//! use rtc_media::pattern::TestPattern;
//!
//! let mut encoder = Vp8Encoder::new(Vp8EncoderConfig::new(640, 480))?;
//! let mut decoder = Vp8Decoder::new()?;
//! let frame = TestPattern::RED.render(640, 480, 0);
//! for encoded in encoder.encode(&frame)? {
//!     let picture = decoder.decode(&encoded.data)?.expect("a picture");
//!     assert!((picture.mean().2 - 240.0).abs() < 3.0); // still red
//! }
//! # Ok::<(), rtc_media::codec::CodecError>(())
//! ```

pub mod audio;
pub mod capture;
pub mod codec;
pub mod convert;
pub mod frame;
pub mod pacing;
pub mod pattern;
pub mod scale;
pub mod sink;
pub mod source;
