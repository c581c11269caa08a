//! Conversion of what cameras and renderers produce to I420, honouring the real stride of every
//! plane (a camera's `bytesperline` is often larger than the visible width).
//!
//! YUYV and RGB(A) go through the SIMD kernels of the `yuv` crate (which has no NV12 to I420;
//! its YUYV kernel takes whole pairs of rows, and an odd last row is split here); NV12 is a
//! copy of the Y rows and a vectorised split of the interleaved chroma (SSE2 through `wide` on
//! x86, the compiler's own `ld2` on aarch64).

use yuv::{
    BufferStoreMut, YuvConversionMode, YuvPackedImage, YuvPlanarImageMut, YuvRange,
    YuvStandardMatrix,
};

use crate::frame::{I420Frame, chroma_height, chroma_width};

/// Pixel formats accepted as input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PixelFormat {
    /// Planar 4:2:0: Y, then U, then V.
    I420,
    /// Y plane, then one plane of interleaved U/V pairs (4:2:0). Most cameras' first choice.
    Nv12,
    /// Packed 4:2:2, `Y0 U Y1 V`.
    Yuyv,
    /// Packed 8-bit RGB.
    Rgb24,
    /// Packed 8-bit RGBA (alpha ignored).
    Rgba,
    /// Packed 8-bit BGRA (alpha ignored).
    Bgra,
}

/// One plane of an input picture: its bytes and the distance between rows, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    /// The bytes, starting at the first row.
    pub data: &'a [u8],
    /// Bytes from the start of one row to the next.
    pub stride: usize,
}

/// An input picture in one of the [`PixelFormat`]s.
#[derive(Debug, Clone, Copy)]
pub struct RawPicture<'a> {
    /// The format.
    pub format: PixelFormat,
    /// Visible width in pixels.
    pub width: u32,
    /// Visible height in pixels.
    pub height: u32,
    /// The planes: one for packed formats, two for NV12, three for I420.
    pub planes: &'a [Plane<'a>],
}

/// Why a picture could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConvertError {
    /// Zero width or height.
    #[error("the picture is empty ({width}x{height})")]
    Empty {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
    },
    /// The format needs another number of planes.
    #[error("{format:?} needs {expected} planes, got {got}")]
    PlaneCount {
        /// The format.
        format: PixelFormat,
        /// Planes it needs.
        expected: usize,
        /// Planes given.
        got: usize,
    },
    /// A plane is smaller than its stride and the picture's size need.
    #[error(
        "plane {plane} is too small: {len} bytes for {rows} rows of stride {stride} ({row_bytes} visible bytes per row)"
    )]
    PlaneTooSmall {
        /// Which plane.
        plane: usize,
        /// Its length.
        len: usize,
        /// Rows needed.
        rows: usize,
        /// Its stride.
        stride: usize,
        /// Visible bytes per row.
        row_bytes: usize,
    },
    /// The SIMD converter refused the input.
    #[error("conversion failed: {0}")]
    Converter(String),
}

fn check(
    planes: &[Plane<'_>],
    index: usize,
    row_bytes: usize,
    rows: usize,
) -> Result<(), ConvertError> {
    let p = planes[index];
    let needed = if rows == 0 { 0 } else { p.stride * (rows - 1) + row_bytes };
    if p.stride < row_bytes || p.data.len() < needed {
        return Err(ConvertError::PlaneTooSmall {
            plane: index,
            len: p.data.len(),
            rows,
            stride: p.stride,
            row_bytes,
        });
    }
    Ok(())
}

/// Converts `picture` to a new I420 frame.
///
/// ```
/// use rtc_media::convert::{Plane, PixelFormat, RawPicture, to_i420};
/// // A 2x2 YUYV picture whose rows are padded to 8 bytes.
/// let yuyv = [50, 100, 60, 200, 0, 0, 0, 0, 70, 110, 80, 210, 0, 0, 0, 0];
/// let planes = [Plane { data: &yuyv, stride: 8 }];
/// let frame = to_i420(&RawPicture { format: PixelFormat::Yuyv, width: 2, height: 2, planes: &planes }).unwrap();
/// assert_eq!(frame.y(), [50, 60, 70, 80]);
/// ```
pub fn to_i420(picture: &RawPicture<'_>) -> Result<I420Frame, ConvertError> {
    let (w, h) = (picture.width, picture.height);
    if w == 0 || h == 0 {
        return Err(ConvertError::Empty { width: w, height: h });
    }
    let mut frame = I420Frame::black(w, h);
    convert_into(picture, &mut frame)?;
    Ok(frame)
}

/// Converts `picture` into `frame`, which must have the picture's size.
pub fn convert_into(picture: &RawPicture<'_>, frame: &mut I420Frame) -> Result<(), ConvertError> {
    let (w, h) = (picture.width, picture.height);
    if w == 0 || h == 0 {
        return Err(ConvertError::Empty { width: w, height: h });
    }
    if (frame.width(), frame.height()) != (w, h) {
        return Err(ConvertError::Converter(format!(
            "the target frame is {}x{}, the picture {w}x{h}",
            frame.width(),
            frame.height()
        )));
    }
    let expected = match picture.format {
        PixelFormat::I420 => 3,
        PixelFormat::Nv12 => 2,
        _ => 1,
    };
    if picture.planes.len() != expected {
        return Err(ConvertError::PlaneCount {
            format: picture.format,
            expected,
            got: picture.planes.len(),
        });
    }
    let (wu, hu) = (w as usize, h as usize);
    let (cw, ch) = (chroma_width(w) as usize, chroma_height(h) as usize);
    let planes = picture.planes;
    match picture.format {
        PixelFormat::I420 => {
            check(planes, 0, wu, hu)?;
            check(planes, 1, cw, ch)?;
            check(planes, 2, cw, ch)?;
            let (y, u, v) = frame.planes_mut();
            copy_rows(planes[0], y, wu, hu);
            copy_rows(planes[1], u, cw, ch);
            copy_rows(planes[2], v, cw, ch);
        }
        PixelFormat::Nv12 => {
            check(planes, 0, wu, hu)?;
            check(planes, 1, 2 * cw, ch)?;
            let (y, u, v) = frame.planes_mut();
            copy_rows(planes[0], y, wu, hu);
            for row in 0..ch {
                let src = &planes[1].data[row * planes[1].stride..][..2 * cw];
                let (u_row, v_row) = (&mut u[row * cw..][..cw], &mut v[row * cw..][..cw]);
                deinterleave(src, u_row, v_row);
            }
        }
        PixelFormat::Yuyv => {
            // YUYV rows hold ⌈width/2⌉ macro-pixels of 4 bytes.
            check(planes, 0, 4 * cw, hu)?;
            let (y, u, v) = frame.planes_mut();
            // The `yuv` crate's SIMD kernel (SSE/AVX, NEON) takes whole pairs of rows, padding
            // included, and leaves an odd last row alone: `split_yuyv_rows` does the rest.
            let mut kernel_rows = hu & !1;
            if planes[0].data.len() < planes[0].stride * kernel_rows {
                kernel_rows -= 2;
            }
            if kernel_rows > 0 {
                let packed = YuvPackedImage {
                    yuy: &planes[0].data[..planes[0].stride * kernel_rows],
                    yuy_stride: planes[0].stride as u32,
                    width: w,
                    height: kernel_rows as u32,
                };
                let chroma = cw * kernel_rows / 2;
                let (y, u, v) = (&mut y[..wu * kernel_rows], &mut u[..chroma], &mut v[..chroma]);
                let mut target = planar_target(y, u, v, w, kernel_rows as u32);
                yuv::yuyv422_to_yuv420(&mut target, &packed)
                    .map_err(|e| ConvertError::Converter(e.to_string()))?;
            }
            let (y, u, v) = (
                &mut y[wu * kernel_rows..],
                &mut u[cw * kernel_rows / 2..],
                &mut v[cw * kernel_rows / 2..],
            );
            let rest = Plane {
                data: &planes[0].data[(planes[0].stride * kernel_rows).min(planes[0].data.len())..],
                stride: planes[0].stride,
            };
            split_yuyv_rows(rest, hu - kernel_rows, wu, cw, y, u, v);
        }
        PixelFormat::Rgb24 | PixelFormat::Rgba | PixelFormat::Bgra => {
            let bpp = if picture.format == PixelFormat::Rgb24 { 3 } else { 4 };
            check(planes, 0, bpp * wu, hu)?;
            let (y, u, v) = frame.planes_mut();
            let mut target = planar_target(y, u, v, w, h);
            let src = planes[0].data;
            let stride = planes[0].stride as u32;
            let (range, matrix, mode) =
                (YuvRange::Limited, YuvStandardMatrix::Bt601, YuvConversionMode::Balanced);
            let result = match picture.format {
                PixelFormat::Rgb24 => {
                    yuv::rgb_to_yuv420(&mut target, src, stride, range, matrix, mode)
                }
                PixelFormat::Rgba => {
                    yuv::rgba_to_yuv420(&mut target, src, stride, range, matrix, mode)
                }
                _ => yuv::bgra_to_yuv420(&mut target, src, stride, range, matrix, mode),
            };
            result.map_err(|e| ConvertError::Converter(e.to_string()))?;
        }
    }
    Ok(())
}

fn planar_target<'a>(
    y: &'a mut [u8],
    u: &'a mut [u8],
    v: &'a mut [u8],
    w: u32,
    h: u32,
) -> YuvPlanarImageMut<'a, u8> {
    YuvPlanarImageMut {
        y_plane: BufferStoreMut::Borrowed(y),
        y_stride: w,
        u_plane: BufferStoreMut::Borrowed(u),
        u_stride: chroma_width(w),
        v_plane: BufferStoreMut::Borrowed(v),
        v_stride: chroma_width(w),
        width: w,
        height: h,
    }
}

/// Splits `u0 v0 u1 v1 …` into `u` and `v`.
///
/// The plain loop at the end is what the compiler vectorises best on ARM: on aarch64 it becomes
/// `ld2` (sixteen pairs split as they load) and two 16-byte stores. On x86-64 it stays a byte
/// loop, so there the body goes through [`deinterleave_sse2`] first.
fn deinterleave(src: &[u8], u: &mut [u8], v: &mut [u8]) {
    let n = u.len().min(v.len()).min(src.len() / 2);
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    let done = deinterleave_sse2(&src[..2 * n], &mut u[..n], &mut v[..n]);
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    let done = 0;
    for ((pair, u), v) in
        src[2 * done..2 * n].chunks_exact(2).zip(&mut u[done..n]).zip(&mut v[done..n])
    {
        *u = pair[0];
        *v = pair[1];
    }
}

/// The x86 body of [`deinterleave`], sixteen pairs at a time in 128-bit vectors through `wide`
/// (SSE2, the x86-64 baseline): each pair is read as one little-endian 16-bit lane, so `u` is
/// its low byte and `v` its high byte, and two saturating narrowings pack sixteen lanes into
/// sixteen bytes. Returns how many pairs it split (a multiple of sixteen).
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
fn deinterleave_sse2(src: &[u8], u: &mut [u8], v: &mut [u8]) -> usize {
    use wide::{i16x8, u8x16};
    const PAIRS: usize = 16;
    let body = u.len() / PAIRS * PAIRS;
    let (halves, _) = src[..2 * body].as_chunks::<16>();
    let (u_chunks, _) = u[..body].as_chunks_mut::<PAIRS>();
    let (v_chunks, _) = v[..body].as_chunks_mut::<PAIRS>();
    let low_byte = i16x8::splat(0xff);
    let lanes = |bytes: [u8; 16]| {
        let mut lanes = [0i16; 8];
        for (lane, pair) in lanes.iter_mut().zip(bytes.as_chunks::<2>().0) {
            *lane = i16::from_le_bytes(*pair);
        }
        i16x8::new(lanes)
    };
    for ((pairs, u16), v16) in halves.chunks_exact(2).zip(u_chunks).zip(v_chunks) {
        let (first, second) = (lanes(pairs[0]), lanes(pairs[1]));
        *u16 = u8x16::narrow_i16x8(first & low_byte, second & low_byte).to_array();
        *v16 = u8x16::narrow_i16x8((first >> 8) & low_byte, (second >> 8) & low_byte).to_array();
    }
    body
}

/// `rows` YUYV rows (`y0 u y1 v` per macro-pixel) of `width` pixels into I420 planes: each
/// row's luma, and for each pair of rows the rounded mean of their chroma (as libyuv takes it;
/// an odd last row's own). What the `yuv` crate's kernel leaves: an odd last row, or a last
/// pair that lacks its padding. Both splits are [`deinterleave`]: a YUYV row is pairs of `(y, u)`
/// and `(y, v)`, so its luma and its interleaved chroma come out of one pass (`ld2` on
/// aarch64), and the mean of two chroma rows (`urhadd`) splits into `u` and `v` the same way.
fn split_yuyv_rows(
    src: Plane<'_>,
    rows: usize,
    width: usize,
    chroma_width: usize,
    y: &mut [u8],
    u: &mut [u8],
    v: &mut [u8],
) {
    if rows == 0 {
        // The common case on every frame: the `yuv` kernel took every row.
        return;
    }
    let row = |r: usize| &src.data[r * src.stride..][..4 * chroma_width];
    // An odd width's rows end in half a macro-pixel: its luma goes through `luma` first.
    let mut luma = vec![0; 2 * chroma_width];
    let mut chroma = [vec![0; 2 * chroma_width], vec![0; 2 * chroma_width]];
    for c in 0..rows.div_ceil(2) {
        let pair = if 2 * c + 1 < rows { 2 } else { 1 };
        for (k, chroma) in chroma.iter_mut().enumerate().take(pair) {
            let r = 2 * c + k;
            let y_row = &mut y[r * width..][..width];
            if width == 2 * chroma_width {
                deinterleave(row(r), y_row, chroma);
            } else {
                deinterleave(row(r), &mut luma, chroma);
                y_row.copy_from_slice(&luma[..width]);
            }
        }
        let [top, bottom] = &mut chroma;
        if pair == 2 {
            for (a, b) in top.iter_mut().zip(bottom.iter()) {
                *a = ((u16::from(*a) + u16::from(*b) + 1) >> 1) as u8;
            }
        }
        let (u_row, v_row) = (
            &mut u[c * chroma_width..][..chroma_width],
            &mut v[c * chroma_width..][..chroma_width],
        );
        deinterleave(top, u_row, v_row);
    }
}

fn copy_rows(src: Plane<'_>, dst: &mut [u8], row_bytes: usize, rows: usize) {
    for (row, out) in dst.chunks_exact_mut(row_bytes).take(rows).enumerate() {
        out.copy_from_slice(&src.data[row * src.stride..][..row_bytes]);
    }
}

/// Converts an I420 frame to packed RGB (BT.601 limited range), for snapshots.
pub fn i420_to_rgb(frame: &I420Frame) -> Result<Vec<u8>, ConvertError> {
    let (w, h) = (frame.width(), frame.height());
    let mut rgb = vec![0u8; (w * h * 3) as usize];
    let image = yuv::YuvPlanarImage {
        y_plane: frame.y(),
        y_stride: w,
        u_plane: frame.u(),
        u_stride: chroma_width(w),
        v_plane: frame.v(),
        v_stride: chroma_width(w),
        width: w,
        height: h,
    };
    yuv::yuv420_to_rgb(&image, &mut rgb, w * 3, YuvRange::Limited, YuvStandardMatrix::Bt601)
        .map_err(|e| ConvertError::Converter(e.to_string()))?;
    Ok(rgb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::Rgb;

    fn raw<'a>(
        format: PixelFormat,
        width: u32,
        height: u32,
        planes: &'a [Plane<'a>],
    ) -> RawPicture<'a> {
        RawPicture { format, width, height, planes }
    }

    #[test]
    fn nv12_with_padded_strides_and_odd_sizes() {
        // 3x3: Y rows padded to 5 bytes, UV rows (2 pairs) padded to 6 bytes.
        let y = [1, 2, 3, 0, 0, 4, 5, 6, 0, 0, 7, 8, 9, 0, 0];
        let uv = [10, 20, 11, 21, 0, 0, 12, 22, 13, 23, 0, 0];
        let planes = [Plane { data: &y, stride: 5 }, Plane { data: &uv, stride: 6 }];
        let frame = to_i420(&raw(PixelFormat::Nv12, 3, 3, &planes)).unwrap();
        assert_eq!(frame.y(), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(frame.u(), [10, 11, 12, 13]);
        assert_eq!(frame.v(), [20, 21, 22, 23]);
    }

    #[test]
    fn deinterleave_handles_every_length() {
        // Lengths around the 16-pair vectors, with every byte value (the narrowing saturates
        // 16-bit lanes: a high byte of 0xff must not turn into a clamp).
        for n in (0..70usize).chain([639, 640, 641]) {
            let src: Vec<u8> = (0..2 * n).map(|i| (i * 37 + 255) as u8).collect();
            let (mut u, mut v) = (vec![0; n], vec![0; n]);
            deinterleave(&src, &mut u, &mut v);
            assert_eq!(u, src.iter().step_by(2).copied().collect::<Vec<_>>(), "u, {n} pairs");
            assert_eq!(
                v,
                src.iter().skip(1).step_by(2).copied().collect::<Vec<_>>(),
                "v, {n} pairs"
            );
        }
    }

    #[test]
    fn i420_with_padded_strides() {
        let y = [1, 2, 9, 3, 4, 9];
        let u = [5, 9];
        let v = [6, 9];
        let planes = [
            Plane { data: &y, stride: 3 },
            Plane { data: &u, stride: 2 },
            Plane { data: &v, stride: 2 },
        ];
        let frame = to_i420(&raw(PixelFormat::I420, 2, 2, &planes)).unwrap();
        assert_eq!(frame.as_bytes(), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn yuyv_uses_the_real_stride_not_the_width() {
        // 4x2 YUYV (8 bytes a row) in rows of 12 bytes: reading with stride = width would mix
        // rows and padding (the prototype's garbled image).
        let mut bytes = Vec::new();
        for row in 0..2u8 {
            bytes.extend_from_slice(&[10 + row, 100, 20 + row, 200, 30 + row, 110, 40 + row, 210]);
            bytes.extend_from_slice(&[255; 4]);
        }
        let planes = [Plane { data: &bytes, stride: 12 }];
        let frame = to_i420(&raw(PixelFormat::Yuyv, 4, 2, &planes)).unwrap();
        assert_eq!(frame.y(), [10, 20, 30, 40, 11, 21, 31, 41]);
        assert_eq!(frame.u(), [100, 110]);
        assert_eq!(frame.v(), [200, 210]);
    }

    #[test]
    fn yuyv_is_split_right_for_every_size() {
        for (w, h) in [(1, 1), (2, 2), (3, 3), (5, 4), (16, 1), (33, 5), (64, 3), (67, 7), (640, 9)]
        {
            let cw = chroma_width(w) as usize;
            let (wu, hu) = (w as usize, h as usize);
            let stride = 4 * cw + 4;
            let bytes: Vec<u8> = (0..stride * hu).map(|i| (i * 7 % 251) as u8).collect();
            // The last row without its padding, as some cameras hand it over.
            let planes = [Plane { data: &bytes[..stride * hu - 4], stride }];
            // By the definition: luma from every row, chroma from the even ones.
            let at = |row: usize, x: usize, byte: usize| bytes[row * stride + 4 * (x / 2) + byte];
            let mut expected = Vec::new();
            expected.extend(
                (0..hu)
                    .flat_map(|r| (0..wu).map(move |x| (r, x)))
                    .map(|(r, x)| at(r, x, if x % 2 == 0 { 0 } else { 2 })),
            );
            // Chroma: the rounded mean of each pair of rows (a last odd row alone).
            for byte in [1, 3] {
                for c in 0..hu.div_ceil(2) {
                    let (top, bottom) = (2 * c, (2 * c + 1).min(hu - 1));
                    for x in 0..cw {
                        let (a, b) = (at(top, 2 * x, byte), at(bottom, 2 * x, byte));
                        expected.push((u16::from(a) + u16::from(b)).div_ceil(2) as u8);
                    }
                }
            }
            // The portable split (all of YUYV on ARM) is exactly that.
            let mut frame = I420Frame::black(w, h);
            let (y, u, v) = frame.planes_mut();
            split_yuyv_rows(planes[0], hu, wu, cw, y, u, v);
            assert_eq!(frame.as_bytes(), expected, "{w}x{h}");
            // The conversion: the same luma; chroma of either row of its pair, or their mean
            // (the `yuv` crate's kernel on x86 takes one row's).
            let frame = to_i420(&raw(PixelFormat::Yuyv, w, h, &planes)).unwrap();
            assert_eq!(frame.y(), &expected[..wu * hu], "{w}x{h}");
            let chroma = &frame.as_bytes()[wu * hu..];
            for (i, (&got, &mean)) in chroma.iter().zip(&expected[wu * hu..]).enumerate() {
                let (plane, at_c) = (i / (cw * hu.div_ceil(2)), i % (cw * hu.div_ceil(2)));
                let (c, x) = (at_c / cw, at_c % cw);
                let byte = if plane == 0 { 1 } else { 3 };
                let rows = [2 * c, (2 * c + 1).min(hu - 1)];
                assert!(
                    got == mean || rows.iter().any(|&r| at(r, 2 * x, byte) == got),
                    "{w}x{h}: chroma {i} is {got}"
                );
            }
        }
    }

    #[test]
    fn rgb_and_rgba_give_bt601_limited_range() {
        let red_rgb: Vec<u8> = [255u8, 0, 0].repeat(6);
        let planes = [Plane { data: &red_rgb, stride: 9 }];
        let frame = to_i420(&raw(PixelFormat::Rgb24, 3, 2, &planes)).unwrap();
        let (want, got) = (Rgb(255, 0, 0).to_yuv(), frame.pixel(2, 1));
        assert!(
            got.0.abs_diff(want.0) <= 1
                && got.1.abs_diff(want.1) <= 1
                && got.2.abs_diff(want.2) <= 1,
            "{got:?} {want:?}"
        );
        let blue_rgba: Vec<u8> = [0u8, 0, 255, 255].repeat(4);
        let planes = [Plane { data: &blue_rgba, stride: 8 }];
        let frame = to_i420(&raw(PixelFormat::Rgba, 2, 2, &planes)).unwrap();
        let (y, u, v) = frame.pixel(0, 0);
        let want = Rgb(0, 0, 255).to_yuv();
        assert!(
            y.abs_diff(want.0) <= 1 && u.abs_diff(want.1) <= 1 && v.abs_diff(want.2) <= 1,
            "{:?}",
            (y, u, v)
        );
        let bgra: Vec<u8> = [255u8, 0, 0, 255].repeat(4); // blue, in BGRA order
        let planes = [Plane { data: &bgra, stride: 8 }];
        assert_eq!(
            to_i420(&raw(PixelFormat::Bgra, 2, 2, &planes)).unwrap().pixel(1, 1),
            frame.pixel(1, 1)
        );
    }

    #[test]
    fn short_planes_and_wrong_plane_counts_are_errors() {
        let y = [0u8; 8];
        let planes = [Plane { data: &y, stride: 4 }];
        assert!(matches!(
            to_i420(&raw(PixelFormat::Nv12, 4, 2, &planes)),
            Err(ConvertError::PlaneCount { .. })
        ));
        let uv = [0u8; 3];
        let planes = [Plane { data: &y, stride: 4 }, Plane { data: &uv, stride: 4 }];
        assert!(matches!(
            to_i420(&raw(PixelFormat::Nv12, 4, 2, &planes)),
            Err(ConvertError::PlaneTooSmall { plane: 1, .. })
        ));
        let planes = [Plane { data: &y, stride: 2 }];
        assert!(matches!(
            to_i420(&raw(PixelFormat::Yuyv, 4, 2, &planes)),
            Err(ConvertError::PlaneTooSmall { .. })
        ));
        assert!(matches!(
            to_i420(&raw(PixelFormat::Yuyv, 0, 2, &planes)),
            Err(ConvertError::Empty { .. })
        ));
    }

    #[test]
    fn round_trip_through_rgb() {
        let frame = crate::pattern::TestPattern::Solid(Rgb(0, 255, 0)).render(7, 5, 0);
        let rgb = i420_to_rgb(&frame).unwrap();
        assert_eq!(rgb.len(), 7 * 5 * 3);
        assert!(rgb[1] > 240 && rgb[0] < 15 && rgb[2] < 15, "{:?}", &rgb[..3]);
    }
}
