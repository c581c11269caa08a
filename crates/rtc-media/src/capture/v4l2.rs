//! The V4L2 implementation of [`CaptureDevice`] (memory-mapped streaming with the `v4l` crate).

use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;

use super::{AppliedFormat, CaptureDevice, CaptureError, FourCc};

/// Buffers queued in the driver.
const BUFFERS: u32 = 4;

/// A V4L2 capture device such as `/dev/video0`.
pub struct V4l2Device {
    path: String,
    device: v4l::Device,
    stream: Option<Stream<'static>>,
}

impl std::fmt::Debug for V4l2Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("V4l2Device").field("path", &self.path).finish_non_exhaustive()
    }
}

impl V4l2Device {
    /// Opens the device at `path`.
    pub fn open(path: &str) -> Result<Self, CaptureError> {
        let device = v4l::Device::with_path(path).map_err(|e| CaptureError::Device {
            device: path.to_owned(),
            reason: format!("cannot open: {e}"),
        })?;
        Ok(Self { path: path.to_owned(), device, stream: None })
    }

    fn error(&self, what: &str, error: std::io::Error) -> CaptureError {
        CaptureError::Device { device: self.path.clone(), reason: format!("{what}: {error}") }
    }
}

fn applied(format: &v4l::Format) -> AppliedFormat {
    AppliedFormat {
        fourcc: FourCc(format.fourcc.repr),
        width: format.width,
        height: format.height,
        bytes_per_line: format.stride,
    }
}

impl CaptureDevice for V4l2Device {
    fn name(&self) -> &str {
        &self.path
    }

    fn formats(&self) -> Result<Vec<FourCc>, CaptureError> {
        let formats = self.device.enum_formats().map_err(|e| self.error("listing formats", e))?;
        Ok(formats.into_iter().map(|d| FourCc(d.fourcc.repr)).collect())
    }

    fn current(&self) -> Result<AppliedFormat, CaptureError> {
        Ok(applied(&self.device.format().map_err(|e| self.error("reading the format", e))?))
    }

    fn set_format(
        &mut self,
        fourcc: FourCc,
        width: u32,
        height: u32,
    ) -> Result<AppliedFormat, CaptureError> {
        self.stream = None;
        let asked = v4l::Format::new(width, height, v4l::FourCC::new(&fourcc.0));
        let format =
            self.device.set_format(&asked).map_err(|e| self.error("setting the format", e))?;
        Ok(applied(&format))
    }

    fn frame_rate(&self) -> Option<(u32, u32)> {
        // V4L2 reports the frame interval (seconds per frame).
        let interval = self.device.params().ok()?.interval;
        (interval.numerator > 0 && interval.denominator > 0)
            .then_some((interval.denominator, interval.numerator))
    }

    fn next_buffer(&mut self) -> Result<Vec<u8>, CaptureError> {
        if self.stream.is_none() {
            let stream = Stream::with_buffers(&self.device, Type::VideoCapture, BUFFERS)
                .map_err(|e| self.error("starting the stream", e))?;
            self.stream = Some(stream);
        }
        let path = self.path.clone();
        let stream = self.stream.as_mut().ok_or_else(|| CaptureError::Device {
            device: path.clone(),
            reason: "no stream".into(),
        })?;
        let (buffer, meta) = stream.next().map_err(|e| CaptureError::Device {
            device: path,
            reason: format!("capturing: {e}"),
        })?;
        let used = (meta.bytesused as usize).min(buffer.len());
        Ok(buffer[..if used == 0 { buffer.len() } else { used }].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::CameraSource;

    /// Runs only where a camera exists; CI has none, and then there is nothing to run.
    #[test]
    fn a_real_camera_when_one_is_plugged_in() {
        let Some(path) =
            (0..4).map(|i| format!("/dev/video{i}")).find(|p| std::path::Path::new(p).exists())
        else {
            return;
        };
        let device = V4l2Device::open(&path).unwrap();
        let mut source = CameraSource::new(device, None).unwrap();
        let frame = source.capture().unwrap();
        assert_eq!(
            (frame.width(), frame.height()),
            (source.format().width, source.format().height)
        );
    }
}
