//! PNG snapshots of decoded frames.

use std::io::Write;

use crate::convert::i420_to_rgb;
use crate::frame::I420Frame;

/// Encodes `frame` as an RGB PNG into `out`.
pub fn encode_png(frame: &I420Frame, out: impl Write) -> std::io::Result<()> {
    let rgb = i420_to_rgb(frame).map_err(std::io::Error::other)?;
    let mut encoder = png::Encoder::new(out, frame.width(), frame.height());
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
    writer.write_image_data(&rgb).map_err(std::io::Error::other)?;
    writer.finish().map_err(std::io::Error::other)
}

/// Writes `frame` as a PNG file.
pub fn write_png(frame: &I420Frame, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    encode_png(frame, file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pattern::TestPattern;

    #[test]
    fn a_red_frame_is_a_red_png() {
        let mut bytes = Vec::new();
        encode_png(&TestPattern::RED.render(64, 48, 0), &mut bytes).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (64, 48));
        let (r, g, b) = (buf[0], buf[1], buf[2]);
        assert!(r > 240 && g < 15 && b < 15, "({r}, {g}, {b})");
    }
}
