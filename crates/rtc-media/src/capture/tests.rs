//! Negotiation, strides and conversion against a fake device fed with buffers in the formats real
//! cameras produce.

use super::*;
use crate::pattern::Rgb;

struct FakeCamera {
    /// A size the "driver" applies whatever is asked for.
    forced_size: Option<(u32, u32)>,
    offered: Vec<FourCc>,
    current: AppliedFormat,
    /// Extra bytes per row the "driver" pads with.
    padding: u32,
    buffers: Vec<Vec<u8>>,
    applied: Option<AppliedFormat>,
}

impl FakeCamera {
    fn new(offered: &[FourCc]) -> Self {
        Self {
            forced_size: None,
            offered: offered.to_vec(),
            current: AppliedFormat {
                fourcc: offered.first().copied().unwrap_or(FourCc::MJPG),
                width: 640,
                height: 480,
                bytes_per_line: 0,
            },
            padding: 0,
            buffers: Vec::new(),
            applied: None,
        }
    }
}

impl CaptureDevice for FakeCamera {
    fn name(&self) -> &str {
        "/dev/video-fake"
    }

    fn formats(&self) -> Result<Vec<FourCc>, CaptureError> {
        Ok(self.offered.clone())
    }

    fn current(&self) -> Result<AppliedFormat, CaptureError> {
        Ok(self.current)
    }

    fn set_format(
        &mut self,
        fourcc: FourCc,
        width: u32,
        height: u32,
    ) -> Result<AppliedFormat, CaptureError> {
        let (width, height) = self.forced_size.unwrap_or((width, height));
        let bytes_per_pixel = if fourcc == FourCc::YUYV { 2 } else { 1 };
        let applied = AppliedFormat {
            fourcc,
            width,
            height,
            bytes_per_line: width * bytes_per_pixel + self.padding,
        };
        self.applied = Some(applied);
        Ok(applied)
    }

    fn frame_rate(&self) -> Option<(u32, u32)> {
        Some((15, 1))
    }

    fn next_buffer(&mut self) -> Result<Vec<u8>, CaptureError> {
        if self.buffers.is_empty() {
            return Err(CaptureError::Device {
                device: self.name().into(),
                reason: "no more buffers".into(),
            });
        }
        Ok(self.buffers.remove(0))
    }
}

#[test]
fn prefers_nv12_then_yuyv_then_mjpeg() {
    for (offered, chosen) in [
        (vec![FourCc::MJPG, FourCc::YUYV, FourCc::NV12], FourCc::NV12),
        (vec![FourCc::MJPG, FourCc::YUYV], FourCc::YUYV),
        (vec![FourCc(*b"H264"), FourCc::MJPG], FourCc::MJPG),
    ] {
        let mut camera = FakeCamera::new(&offered);
        assert_eq!(negotiate(&mut camera, Some((1280, 720))).unwrap().fourcc, chosen);
    }
}

#[test]
fn the_current_size_is_kept_when_none_is_asked_for() {
    let mut camera = FakeCamera::new(&[FourCc::YUYV]);
    camera.current.width = 800;
    camera.current.height = 600;
    let applied = negotiate(&mut camera, None).unwrap();
    assert_eq!((applied.width, applied.height), (800, 600));
}

#[test]
fn no_usable_format_names_the_device_and_what_it_offers() {
    let mut camera = FakeCamera::new(&[FourCc(*b"H264"), FourCc(*b"GREY")]);
    let error = negotiate(&mut camera, None).unwrap_err().to_string();
    assert!(error.contains("/dev/video-fake") && error.contains("H264, GREY"), "{error}");
}

#[test]
fn yuyv_rows_with_padding_convert_with_their_real_stride() {
    let mut camera = FakeCamera::new(&[FourCc::YUYV]);
    camera.padding = 32;
    let (w, h) = (64u32, 4u32);
    let stride = (w * 2 + 32) as usize;
    let mut buffer = vec![0xEEu8; stride * h as usize];
    for row in 0..h as usize {
        for pair in 0..(w / 2) as usize {
            buffer[row * stride + pair * 4..][..4].copy_from_slice(&[
                100 + row as u8,
                90,
                101 + row as u8,
                240,
            ]);
        }
    }
    camera.buffers.push(buffer);
    let mut source = CameraSource::new(camera, Some((w, h))).unwrap();
    let frame = source.capture().unwrap();
    for row in 0..h {
        assert_eq!(frame.pixel(0, row).0, 100 + row as u8);
        assert_eq!(
            frame.pixel(w - 1, row).0,
            101 + row as u8,
            "the padding never reaches the picture"
        );
    }
    assert_eq!(frame.pixel(10, 2), (102, 90, 240));
}

#[test]
fn nv12_with_padded_bytes_per_line() {
    let mut camera = FakeCamera::new(&[FourCc::NV12]);
    camera.padding = 64;
    let (w, h) = (32u32, 8u32);
    let stride = (w + 64) as usize;
    let mut buffer = vec![0u8; stride * h as usize * 3 / 2];
    for row in 0..h as usize {
        buffer[row * stride..row * stride + w as usize].fill(50);
    }
    for row in 0..(h / 2) as usize {
        let start = stride * h as usize + row * stride;
        for pair in 0..(w / 2) as usize {
            buffer[start + 2 * pair] = 60;
            buffer[start + 2 * pair + 1] = 200;
        }
    }
    camera.buffers.push(buffer);
    let frame = CameraSource::new(camera, Some((w, h))).unwrap().capture().unwrap();
    assert_eq!(frame.mean(), (50.0, 60.0, 200.0));
}

#[test]
fn mjpeg_is_decoded() {
    let mut camera = FakeCamera::new(&[FourCc::MJPG]);
    let (w, h) = (64u16, 48u16);
    let red: Vec<u8> = [255u8, 0, 0].repeat(usize::from(w) * usize::from(h));
    let mut jpeg = Vec::new();
    jpeg_encoder::Encoder::new(&mut jpeg, 95)
        .encode(&red, w, h, jpeg_encoder::ColorType::Rgb)
        .unwrap();
    camera.buffers.push(jpeg);
    let frame =
        CameraSource::new(camera, Some((u32::from(w), u32::from(h)))).unwrap().capture().unwrap();
    let (y, u, v) = frame.mean();
    let want = Rgb(255, 0, 0).to_yuv();
    assert!(
        (y - f64::from(want.0)).abs() < 4.0
            && (u - f64::from(want.1)).abs() < 4.0
            && (v - f64::from(want.2)).abs() < 4.0,
        "{y} {u} {v}"
    );
}

#[test]
fn truncated_and_corrupt_buffers_are_errors() {
    let format = AppliedFormat { fourcc: FourCc::NV12, width: 64, height: 48, bytes_per_line: 64 };
    assert!(buffer_to_i420("cam", &format, &[0; 100]).is_err());
    let format = AppliedFormat { fourcc: FourCc::YUYV, ..format };
    assert!(buffer_to_i420("cam", &format, &[0; 100]).is_err());
    let format = AppliedFormat { fourcc: FourCc::MJPG, ..format };
    assert!(buffer_to_i420("cam", &format, &[0xFF, 0xD8, 0xFF, 0x00]).is_err());
}

#[tokio::test]
async fn as_a_video_source() {
    let mut camera = FakeCamera::new(&[FourCc::YUYV]);
    camera.buffers.push(vec![128; 16 * 2 * 2]);
    let mut source = CameraSource::new(camera, Some((16, 2))).unwrap();
    assert_eq!(source.resolution(), (16, 2));
    assert_eq!(source.frame_rate(), (15, 1), "the device's own rate");
    assert!(source.next_frame().await.is_ok());
    assert!(source.next_frame().await.is_err(), "the fake camera has one buffer");
}

#[test]
fn frames_are_scaled_when_the_driver_applies_another_size() {
    let mut camera = FakeCamera::new(&[FourCc::YUYV]);
    camera.forced_size = Some((64, 48));
    camera.buffers.push([81u8, 90, 81, 240].repeat(32 * 48));
    let mut source = CameraSource::new(camera, Some((128, 96))).unwrap();
    assert_eq!(source.format().width, 64, "the driver's size");
    assert_eq!(source.resolution(), (128, 96), "the size asked for");
    let frame = source.capture().unwrap();
    assert_eq!((frame.width(), frame.height()), (128, 96));
    assert_eq!(frame.mean(), (81.0, 90.0, 240.0));
}
