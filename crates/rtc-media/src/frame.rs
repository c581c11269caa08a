//! Frames: planar I420 pictures with their capture time.

use std::time::Duration;

/// An I420 (YUV 4:2:0, 8 bit, BT.601 limited range) picture in owned, tightly packed planes:
/// `Y` is `width × height`, `U` and `V` are `⌈width/2⌉ × ⌈height/2⌉`.
#[derive(Clone, PartialEq, Eq)]
pub struct I420Frame {
    width: u32,
    height: u32,
    data: Vec<u8>,
    /// Capture time, counted from the start of the source.
    pub timestamp: Duration,
}

impl std::fmt::Debug for I420Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("I420Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

/// The width of the chroma planes of a picture `width` wide.
pub fn chroma_width(width: u32) -> u32 {
    width.div_ceil(2)
}

/// The height of the chroma planes of a picture `height` high.
pub fn chroma_height(height: u32) -> u32 {
    height.div_ceil(2)
}

impl I420Frame {
    /// A black frame (Y 16, U and V 128).
    ///
    /// # Panics
    /// When a side is zero.
    pub fn black(width: u32, height: u32) -> Self {
        Self::filled(width, height, 16, 128, 128)
    }

    /// A frame of one colour.
    ///
    /// # Panics
    /// When a side is zero.
    pub fn filled(width: u32, height: u32, y: u8, u: u8, v: u8) -> Self {
        assert!(width > 0 && height > 0, "a frame has at least one pixel");
        let luma = (width * height) as usize;
        let chroma = (chroma_width(width) * chroma_height(height)) as usize;
        let mut data = vec![y; luma + 2 * chroma];
        data[luma..luma + chroma].fill(u);
        data[luma + chroma..].fill(v);
        Self { width, height, data, timestamp: Duration::ZERO }
    }

    /// Builds a frame from packed planes; `None` if `data` does not have exactly the size of an
    /// I420 picture of `width × height` or a side is zero.
    pub fn from_packed(width: u32, height: u32, data: Vec<u8>) -> Option<Self> {
        let expected = (width * height + 2 * chroma_width(width) * chroma_height(height)) as usize;
        (width > 0 && height > 0 && data.len() == expected).then_some(Self {
            width,
            height,
            data,
            timestamp: Duration::ZERO,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    fn split(&self) -> (usize, usize) {
        let luma = (self.width * self.height) as usize;
        (luma, luma + (chroma_width(self.width) * chroma_height(self.height)) as usize)
    }

    /// The Y plane (stride = width).
    pub fn y(&self) -> &[u8] {
        &self.data[..self.split().0]
    }

    /// The U plane (stride = ⌈width/2⌉).
    pub fn u(&self) -> &[u8] {
        let (a, b) = self.split();
        &self.data[a..b]
    }

    /// The V plane (stride = ⌈width/2⌉).
    pub fn v(&self) -> &[u8] {
        &self.data[self.split().1..]
    }

    /// The three planes, mutable.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let (a, b) = self.split();
        let (y, rest) = self.data.split_at_mut(a);
        let (u, v) = rest.split_at_mut(b - a);
        (y, u, v)
    }

    /// All planes, packed one after the other (Y, U, V).
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// The `(y, u, v)` values at pixel `(x, y)`.
    pub fn pixel(&self, x: u32, y: u32) -> (u8, u8, u8) {
        let cw = chroma_width(self.width);
        let c = ((y / 2) * cw + x / 2) as usize;
        (self.y()[(y * self.width + x) as usize], self.u()[c], self.v()[c])
    }

    /// The mean `(y, u, v)` over the whole picture.
    pub fn mean(&self) -> (f64, f64, f64) {
        let avg = |p: &[u8]| p.iter().map(|&b| f64::from(b)).sum::<f64>() / p.len() as f64;
        (avg(self.y()), avg(self.u()), avg(self.v()))
    }

    /// Sets the capture time.
    pub fn with_timestamp(mut self, timestamp: Duration) -> Self {
        self.timestamp = timestamp;
        self
    }

    /// The picture flipped left to right (a mirror image), same capture time.
    pub fn mirrored(&self) -> Self {
        let mut out = self.clone();
        let (cw, ch) = (chroma_width(self.width) as usize, chroma_height(self.height) as usize);
        let (w, h) = (self.width as usize, self.height as usize);
        let (y, u, v) = out.planes_mut();
        for (plane, width, rows) in [(y, w, h), (u, cw, ch), (v, cw, ch)] {
            for row in plane.chunks_exact_mut(width).take(rows) {
                row.reverse();
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_image_flips_every_plane_and_twice_is_the_original() {
        let mut frame = I420Frame::black(5, 3);
        {
            let (y, u, v) = frame.planes_mut();
            y[0] = 200; // top left
            u[0] = 10;
            v[2] = 20; // top right chroma (3 wide)
        }
        let mirrored = frame.mirrored();
        assert_eq!(mirrored.pixel(4, 0).0, 200, "top left went top right");
        assert_eq!(mirrored.u()[2], 10);
        assert_eq!(mirrored.v()[0], 20);
        assert_eq!(mirrored.mirrored(), frame);
    }
}
