//! Camera capture: format negotiation (NV12 first, then YUYV, then MJPEG, decoded), the device's
//! current size when none is asked for, and conversion of every buffer with its real stride.
//!
//! The logic works on a [`CaptureDevice`], so it is tested with buffers in the formats real
//! cameras produce; the V4L2 implementation (`v4l2` feature) is a thin adapter over the `v4l`
//! crate.

#[cfg(feature = "v4l2")]
mod v4l2;

use std::time::{Duration, Instant};

#[cfg(feature = "v4l2")]
pub use v4l2::V4l2Device;

use crate::convert::{PixelFormat, Plane, RawPicture, to_i420};
use crate::frame::I420Frame;
use crate::source::{SourceError, VideoSource};

/// A pixel format a camera can deliver, by its V4L2 FourCC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FourCc(pub [u8; 4]);

impl FourCc {
    /// `NV12`.
    pub const NV12: Self = Self(*b"NV12");
    /// `YUYV`.
    pub const YUYV: Self = Self(*b"YUYV");
    /// `MJPG`.
    pub const MJPG: Self = Self(*b"MJPG");
}

impl std::fmt::Display for FourCc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// The formats we accept, in order of preference.
pub const PREFERRED: [FourCc; 3] = [FourCc::NV12, FourCc::YUYV, FourCc::MJPG];

/// What the device says it applied (drivers may adjust the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppliedFormat {
    /// The pixel format.
    pub fourcc: FourCc,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes per row of the first plane (`bytesperline`), often more than the width needs.
    pub bytes_per_line: u32,
}

/// A capture device: what the negotiation and the source need from V4L2.
pub trait CaptureDevice: Send {
    /// A name for messages (the device path).
    fn name(&self) -> &str;
    /// The pixel formats the device offers.
    fn formats(&self) -> Result<Vec<FourCc>, CaptureError>;
    /// The current format and size.
    fn current(&self) -> Result<AppliedFormat, CaptureError>;
    /// Asks for a format and size; returns what the driver applied.
    fn set_format(
        &mut self,
        fourcc: FourCc,
        width: u32,
        height: u32,
    ) -> Result<AppliedFormat, CaptureError>;
    /// Waits for the next filled buffer (blocking).
    fn next_buffer(&mut self) -> Result<Vec<u8>, CaptureError>;
    /// The device's frame rate as `(frames, seconds)`, if it reports one.
    fn frame_rate(&self) -> Option<(u32, u32)> {
        None
    }
}

/// Capture failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The device offers none of NV12, YUYV, MJPEG.
    #[error(
        "{device} offers none of NV12, YUYV or MJPEG (it offers: {offered}); switch it with `v4l2-ctl -d {device} --set-fmt-video=width=1280,height=720,pixelformat=NV12` or use another device"
    )]
    NoUsableFormat {
        /// The device.
        device: String,
        /// What it offers.
        offered: String,
    },
    /// The driver applied another format than asked for.
    #[error("{device} did not accept {asked}: it applied {applied}")]
    Refused {
        /// The device.
        device: String,
        /// What was asked.
        asked: FourCc,
        /// What was applied.
        applied: FourCc,
    },
    /// A buffer could not be turned into a frame.
    #[error("{device}: bad {format} buffer: {reason}")]
    BadBuffer {
        /// The device.
        device: String,
        /// Its format.
        format: FourCc,
        /// What is wrong.
        reason: String,
    },
    /// An I/O or driver error.
    #[error("{device}: {reason}")]
    Device {
        /// The device.
        device: String,
        /// What happened.
        reason: String,
    },
}

/// Chooses the first of [`PREFERRED`] that the device offers, at `size` or the device's current
/// size, and applies it.
pub fn negotiate(
    device: &mut dyn CaptureDevice,
    size: Option<(u32, u32)>,
) -> Result<AppliedFormat, CaptureError> {
    let offered = device.formats()?;
    let Some(fourcc) = PREFERRED.into_iter().find(|f| offered.contains(f)) else {
        let offered = offered.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
        return Err(CaptureError::NoUsableFormat { device: device.name().to_owned(), offered });
    };
    let (width, height) = match size {
        Some(size) => size,
        None => {
            let current = device.current()?;
            (current.width, current.height)
        }
    };
    let applied = device.set_format(fourcc, width, height)?;
    if applied.fourcc != fourcc {
        return Err(CaptureError::Refused {
            device: device.name().to_owned(),
            asked: fourcc,
            applied: applied.fourcc,
        });
    }
    tracing::info!(device = device.name(), format = %fourcc, width = applied.width, height = applied.height, "camera format");
    Ok(applied)
}

/// Turns one buffer of `format` into an I420 frame, using the real `bytes_per_line`.
pub fn buffer_to_i420(
    device: &str,
    format: &AppliedFormat,
    buffer: &[u8],
) -> Result<I420Frame, CaptureError> {
    let bad = |reason: String| CaptureError::BadBuffer {
        device: device.to_owned(),
        format: format.fourcc,
        reason,
    };
    let (w, h, stride) = (format.width, format.height, format.bytes_per_line as usize);
    let frame = match format.fourcc {
        FourCc::NV12 => {
            // The chroma plane follows the luma plane, with the same stride.
            let luma = stride * h as usize;
            if buffer.len() < luma {
                return Err(bad(format!("{} bytes, the Y plane alone needs {luma}", buffer.len())));
            }
            let planes =
                [Plane { data: &buffer[..luma], stride }, Plane { data: &buffer[luma..], stride }];
            to_i420(&RawPicture { format: PixelFormat::Nv12, width: w, height: h, planes: &planes })
        }
        FourCc::YUYV => {
            let planes = [Plane { data: buffer, stride }];
            to_i420(&RawPicture { format: PixelFormat::Yuyv, width: w, height: h, planes: &planes })
        }
        FourCc::MJPG => {
            let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
                zune_core::bytestream::ZCursor::new(buffer),
                zune_core::options::DecoderOptions::default()
                    .jpeg_set_out_colorspace(zune_core::colorspace::ColorSpace::RGB),
            );
            let rgb = decoder.decode().map_err(|e| bad(e.to_string()))?;
            let (jw, jh) = decoder.dimensions().ok_or_else(|| bad("no dimensions".into()))?;
            let (jw, jh) = (jw as u32, jh as u32);
            let planes = [Plane { data: &rgb, stride: jw as usize * 3 }];
            to_i420(&RawPicture {
                format: PixelFormat::Rgb24,
                width: jw,
                height: jh,
                planes: &planes,
            })
        }
        other => return Err(bad(format!("unsupported format {other}"))),
    };
    frame.map_err(|e| bad(e.to_string()))
}

fn capture_from(
    device: &mut dyn CaptureDevice,
    format: &AppliedFormat,
    scale_to: Option<(u32, u32)>,
    started: Instant,
) -> Result<I420Frame, CaptureError> {
    let buffer = device.next_buffer()?;
    let elapsed: Duration = started.elapsed();
    let frame = buffer_to_i420(device.name(), format, &buffer)?.with_timestamp(elapsed);
    match scale_to {
        Some((w, h)) => crate::scale::scale(&frame, w, h).map_err(|e| CaptureError::BadBuffer {
            device: device.name().to_owned(),
            format: format.fourcc,
            reason: e.to_string(),
        }),
        None => Ok(frame),
    }
}

/// A [`VideoSource`] over a capture device.
pub struct CameraSource<D: CaptureDevice> {
    device: Option<D>,
    format: AppliedFormat,
    /// The size asked for, when the driver applied another one: frames are scaled to it.
    scale_to: Option<(u32, u32)>,
    started: Instant,
}

impl<D: CaptureDevice> std::fmt::Debug for CameraSource<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraSource")
            .field("device", &self.device.as_ref().map(|d| d.name().to_owned()))
            .field("format", &self.format)
            .finish()
    }
}

impl<D: CaptureDevice> CameraSource<D> {
    /// Negotiates a format (at `size`, or the device's current size) and starts.
    pub fn new(mut device: D, size: Option<(u32, u32)>) -> Result<Self, CaptureError> {
        let format = negotiate(&mut device, size)?;
        let scale_to = size.filter(|&(w, h)| (w, h) != (format.width, format.height));
        if let Some((w, h)) = scale_to {
            tracing::info!(
                device = device.name(),
                width = format.width,
                height = format.height,
                "the camera delivers another size than asked for: scaling to {w}x{h}"
            );
        }
        Ok(Self { device: Some(device), format, scale_to, started: Instant::now() })
    }

    /// The negotiated format.
    pub fn format(&self) -> AppliedFormat {
        self.format
    }

    /// The next frame, blocking.
    pub fn capture(&mut self) -> Result<I420Frame, CaptureError> {
        let device = self.device.as_mut().ok_or_else(|| CaptureError::Device {
            device: String::new(),
            reason: "an earlier capture was cancelled while it waited".into(),
        })?;
        capture_from(device, &self.format, self.scale_to, self.started)
    }
}

impl<D: CaptureDevice + 'static> VideoSource for CameraSource<D> {
    fn resolution(&self) -> (u32, u32) {
        self.scale_to.unwrap_or((self.format.width, self.format.height))
    }

    fn frame_rate(&self) -> (u32, u32) {
        self.device.as_ref().and_then(|d| d.frame_rate()).unwrap_or((30, 1))
    }

    async fn next_frame(&mut self) -> Result<I420Frame, SourceError> {
        // The device blocks until a buffer is filled: wait for it off the async threads.
        let mut device = self.device.take().ok_or(SourceError::Ended)?;
        let (format, scale_to, started) = (self.format, self.scale_to, self.started);
        let (device, frame) = tokio::task::spawn_blocking(move || {
            let frame = capture_from(&mut device, &format, scale_to, started);
            (device, frame)
        })
        .await
        .map_err(|e| SourceError::Device(e.to_string()))?;
        self.device = Some(device);
        frame.map_err(|e| SourceError::Device(e.to_string()))
    }
}

#[cfg(test)]
mod tests;
