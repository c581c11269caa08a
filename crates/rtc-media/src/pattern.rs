//! Generated pictures: solid colours, and a moving pattern for checking motion and frame loss.

use crate::frame::{I420Frame, chroma_width};

/// A colour, as 8-bit RGB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rgb(pub u8, pub u8, pub u8);

impl Rgb {
    /// The BT.601 limited-range `(Y, U, V)` of this colour (what VP8 and H.264 carry).
    pub fn to_yuv(self) -> (u8, u8, u8) {
        let (r, g, b) = (f64::from(self.0), f64::from(self.1), f64::from(self.2));
        let y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0;
        let u = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0;
        let v = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0;
        let clamp = |x: f64| x.round().clamp(0.0, 255.0) as u8;
        (clamp(y), clamp(u), clamp(v))
    }

    /// A colour by name: `red`, `green`, `blue`, `white`, `black`, `yellow`, `cyan`, `magenta`,
    /// `gray`/`grey`, `orange`, `purple` (case-insensitive).
    pub fn named(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "red" => Self(255, 0, 0),
            "green" => Self(0, 255, 0),
            "blue" => Self(0, 0, 255),
            "white" => Self(255, 255, 255),
            "black" => Self(0, 0, 0),
            "yellow" => Self(255, 255, 0),
            "cyan" => Self(0, 255, 255),
            "magenta" => Self(255, 0, 255),
            "gray" | "grey" => Self(128, 128, 128),
            "orange" => Self(255, 165, 0),
            "purple" => Self(128, 0, 128),
            _ => return None,
        })
    }
}

/// The colour bars of [`TestPattern::Moving`], left to right.
pub const BARS: [Rgb; 8] = [
    Rgb(255, 255, 255),
    Rgb(255, 255, 0),
    Rgb(0, 255, 255),
    Rgb(0, 255, 0),
    Rgb(255, 0, 255),
    Rgb(255, 0, 0),
    Rgb(0, 0, 255),
    Rgb(0, 0, 0),
];

/// Bits of the frame counter drawn by [`TestPattern::Moving`].
pub const COUNTER_BITS: u32 = 16;

/// What a generated source draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TestPattern {
    /// One colour everywhere.
    Solid(Rgb),
    /// Colour bars in the top two thirds, a white box that moves one step per frame across the
    /// bars, and the frame number as a row of black and white squares at the bottom
    /// ([`read_counter`] reads it back, even after lossy coding).
    Moving,
}

impl TestPattern {
    /// The seed's red test frames.
    pub const RED: Self = Self::Solid(Rgb(255, 0, 0));

    /// Draws frame number `index` at `width × height`.
    ///
    /// # Panics
    /// When a side is zero.
    pub fn render(&self, width: u32, height: u32, index: u64) -> I420Frame {
        match *self {
            Self::Solid(colour) => {
                let (y, u, v) = colour.to_yuv();
                I420Frame::filled(width, height, y, u, v)
            }
            Self::Moving => render_moving(width, height, index),
        }
    }
}

fn fill_rect(frame: &mut I420Frame, x0: u32, y0: u32, x1: u32, y1: u32, colour: Rgb) {
    let (w, h) = (frame.width(), frame.height());
    let (x1, y1) = (x1.min(w), y1.min(h));
    if x0 >= x1 || y0 >= y1 {
        return;
    }
    let (cy, cu, cv) = colour.to_yuv();
    let cw = chroma_width(w);
    let (yp, up, vp) = frame.planes_mut();
    for row in y0..y1 {
        yp[(row * w + x0) as usize..(row * w + x1) as usize].fill(cy);
    }
    for row in y0 / 2..y1.div_ceil(2) {
        let (a, b) = ((row * cw + x0 / 2) as usize, (row * cw + x1.div_ceil(2)) as usize);
        up[a..b].fill(cu);
        vp[a..b].fill(cv);
    }
}

fn counter_geometry(width: u32, height: u32) -> (u32, u32, u32) {
    // Squares side by side across the bottom third, as large as fit (at least 1 px).
    let side = (width / COUNTER_BITS).min(height / 3).max(1);
    let top = height - height / 3 + (height / 3).saturating_sub(side) / 2;
    (side, top, (width.saturating_sub(side * COUNTER_BITS)) / 2)
}

fn render_moving(width: u32, height: u32, index: u64) -> I420Frame {
    let mut frame = I420Frame::black(width, height);
    let bars_height = height - height / 3;
    let bar_width = width.div_ceil(BARS.len() as u32);
    for (i, colour) in BARS.iter().enumerate() {
        let x = i as u32 * bar_width;
        fill_rect(&mut frame, x, 0, x + bar_width, bars_height, *colour);
    }
    // The moving box: 1/8 of the width, crossing the bars in 64 steps.
    let side = (width / 8).max(2).min(bars_height.max(2));
    let travel = width.saturating_sub(side);
    let x = ((index % 64) as u32 * travel) / 63;
    let y = bars_height.saturating_sub(side) / 2;
    fill_rect(&mut frame, x, y, x + side, y + side, Rgb(128, 128, 128));
    fill_rect(
        &mut frame,
        x + side / 4,
        y + side / 4,
        x + side - side / 4,
        y + side - side / 4,
        Rgb(255, 255, 255),
    );
    let (square, top, left) = counter_geometry(width, height);
    for bit in 0..COUNTER_BITS {
        let on = (index >> (COUNTER_BITS - 1 - bit)) & 1 == 1;
        let x = left + bit * square;
        fill_rect(
            &mut frame,
            x,
            top,
            x + square,
            top + square,
            if on { Rgb(255, 255, 255) } else { Rgb(0, 0, 0) },
        );
    }
    frame
}

/// Reads the frame counter of a [`TestPattern::Moving`] frame (modulo 2^16), also from a frame
/// that went through a lossy codec; `None` if the squares are not clearly black or white.
pub fn read_counter(frame: &I420Frame) -> Option<u64> {
    let (square, top, left) = counter_geometry(frame.width(), frame.height());
    let mut value = 0u64;
    for bit in 0..COUNTER_BITS {
        let (cx, cy) = (left + bit * square + square / 2, top + square / 2);
        let (y, _, _) = frame.pixel(cx.min(frame.width() - 1), cy.min(frame.height() - 1));
        let on = match y {
            0..=70 => false,
            180..=255 => true,
            _ => return None,
        };
        value = (value << 1) | u64::from(on);
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_have_bt601_limited_range_values() {
        assert_eq!(Rgb(255, 0, 0).to_yuv(), (81, 90, 240));
        assert_eq!(Rgb(0, 0, 0).to_yuv(), (16, 128, 128));
        assert_eq!(Rgb(255, 255, 255).to_yuv(), (235, 128, 128));
        assert_eq!(Rgb::named("RED"), Some(Rgb(255, 0, 0)));
        assert_eq!(Rgb::named("mauve"), None);
    }

    #[test]
    fn solid_red_everywhere_at_the_default_size() {
        let frame = TestPattern::RED.render(640, 480, 0);
        assert_eq!(frame.mean(), (81.0, 90.0, 240.0));
    }

    #[test]
    fn moving_pattern_moves_and_counts() {
        for (w, h) in [(640, 480), (1280, 720), (33, 17)] {
            let a = TestPattern::Moving.render(w, h, 5);
            let b = TestPattern::Moving.render(w, h, 6);
            assert_ne!(a.y(), b.y(), "{w}x{h}");
            if w >= 64 {
                assert_eq!(read_counter(&a), Some(5));
                assert_eq!(read_counter(&TestPattern::Moving.render(w, h, 65_535)), Some(65_535));
            }
        }
        // The box comes back after 64 frames; only the counter differs.
        let a = TestPattern::Moving.render(640, 480, 1);
        let b = TestPattern::Moving.render(640, 480, 65);
        let bars = (640 * 320) as usize;
        assert_eq!(a.y()[..bars], b.y()[..bars]);
    }
}
