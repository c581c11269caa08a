//! Scaling of I420 frames (each plane resampled by the SIMD kernels of `pic-scale`), for when a
//! source cannot deliver the size asked for.

use pic_scale::{
    ImageSize, ImageStore, ImageStoreMut, ResamplingFunction, Scaler, ThreadingPolicy,
};

use crate::frame::{I420Frame, chroma_height, chroma_width};

/// A frame could not be scaled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot scale to {width}x{height}: {reason}")]
#[non_exhaustive]
pub struct ScaleError {
    /// Target width.
    pub width: u32,
    /// Target height.
    pub height: u32,
    /// What went wrong.
    pub reason: String,
}

/// Scales `frame` to `width × height` (bilinear); the timestamp is kept.
pub fn scale(frame: &I420Frame, width: u32, height: u32) -> Result<I420Frame, ScaleError> {
    let error = |reason: String| ScaleError { width, height, reason };
    if width == 0 || height == 0 {
        return Err(error("empty target".into()));
    }
    if (frame.width(), frame.height()) == (width, height) {
        return Ok(frame.clone());
    }
    let mut scaler = Scaler::new(ResamplingFunction::Bilinear);
    scaler.set_threading_policy(ThreadingPolicy::Single);
    let mut out = I420Frame::black(width, height).with_timestamp(frame.timestamp);
    let (sw, sh) = (frame.width(), frame.height());
    let (y, u, v) = out.planes_mut();
    for (src, (src_w, src_h), dst, (dst_w, dst_h)) in [
        (frame.y(), (sw, sh), y, (width, height)),
        (
            frame.u(),
            (chroma_width(sw), chroma_height(sh)),
            u,
            (chroma_width(width), chroma_height(height)),
        ),
        (
            frame.v(),
            (chroma_width(sw), chroma_height(sh)),
            v,
            (chroma_width(width), chroma_height(height)),
        ),
    ] {
        let source = ImageStore::<u8, 1>::borrow(src, src_w as usize, src_h as usize)
            .map_err(|e| error(e.to_string()))?;
        let mut target = ImageStoreMut::<u8, 1>::borrow(dst, dst_w as usize, dst_h as usize)
            .map_err(|e| error(e.to_string()))?;
        let plan = scaler
            .plan_planar_resampling(
                ImageSize::new(src_w as usize, src_h as usize),
                ImageSize::new(dst_w as usize, dst_h as usize),
            )
            .map_err(|e| error(e.to_string()))?;
        plan.resample(&source, &mut target).map_err(|e| error(e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::{TestPattern, read_counter};

    #[test]
    fn solid_colours_stay_solid_at_any_size() {
        let red = TestPattern::RED.render(640, 480, 0);
        for (w, h) in [(1280, 720), (320, 240), (33, 17), (1, 1)] {
            let scaled = scale(&red, w, h).unwrap();
            assert_eq!((scaled.width(), scaled.height()), (w, h));
            let (y, u, v) = scaled.mean();
            assert!(
                (y - 81.0).abs() < 1.0 && (u - 90.0).abs() < 1.0 && (v - 240.0).abs() < 1.0,
                "{w}x{h}: {y} {u} {v}"
            );
        }
    }

    #[test]
    fn the_picture_is_scaled_not_cropped() {
        let frame = TestPattern::Moving
            .render(1280, 720, 1234)
            .with_timestamp(std::time::Duration::from_millis(5));
        let scaled = scale(&frame, 640, 360).unwrap();
        assert_eq!(
            read_counter(&scaled),
            Some(1234),
            "the counter squares are still where they belong"
        );
        assert_eq!(scaled.timestamp, frame.timestamp);
        assert!(scale(&frame, 0, 10).is_err());
    }
}
