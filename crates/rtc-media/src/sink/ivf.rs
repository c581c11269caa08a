//! IVF: the simple container libvpx tools read (`vpxdec`, ffmpeg): a 32-byte header, then each
//! frame as a 12-byte header (size, timestamp) and its bytes.

use std::io::{Seek, SeekFrom, Write};

/// Writes VP8 (or other FourCC) frames into an IVF stream; the frame count in the header is
/// fixed up by [`IvfWriter::finish`].
#[derive(Debug)]
pub struct IvfWriter<W: Write + Seek> {
    out: W,
    frames: u32,
}

impl<W: Write + Seek> IvfWriter<W> {
    /// Starts a stream of `fourcc` (`b"VP80"`) frames of `width × height`, timestamps in units of
    /// `timebase_num / timebase_den` seconds.
    pub fn new(
        mut out: W,
        fourcc: [u8; 4],
        width: u16,
        height: u16,
        timebase_den: u32,
        timebase_num: u32,
    ) -> std::io::Result<Self> {
        let mut header = Vec::with_capacity(32);
        header.extend_from_slice(b"DKIF");
        header.extend_from_slice(&0u16.to_le_bytes());
        header.extend_from_slice(&32u16.to_le_bytes());
        header.extend_from_slice(&fourcc);
        header.extend_from_slice(&width.to_le_bytes());
        header.extend_from_slice(&height.to_le_bytes());
        header.extend_from_slice(&timebase_den.to_le_bytes());
        header.extend_from_slice(&timebase_num.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        header.extend_from_slice(&0u32.to_le_bytes());
        out.write_all(&header)?;
        Ok(Self { out, frames: 0 })
    }

    /// Appends one frame.
    pub fn write_frame(&mut self, timestamp: u64, data: &[u8]) -> std::io::Result<()> {
        let size = u32::try_from(data.len())
            .map_err(|_| std::io::Error::other("frame larger than 4 GiB"))?;
        self.out.write_all(&size.to_le_bytes())?;
        self.out.write_all(&timestamp.to_le_bytes())?;
        self.out.write_all(data)?;
        self.frames += 1;
        Ok(())
    }

    /// Writes the frame count into the header and returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        let end = self.out.stream_position()?;
        self.out.seek(SeekFrom::Start(24))?;
        self.out.write_all(&self.frames.to_le_bytes())?;
        self.out.seek(SeekFrom::Start(end))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_frames_are_laid_out_as_ivf() {
        let mut w = IvfWriter::new(std::io::Cursor::new(Vec::new()), *b"VP80", 640, 480, 90_000, 1)
            .unwrap();
        w.write_frame(0, &[1, 2, 3]).unwrap();
        w.write_frame(3000, &[4]).unwrap();
        let bytes = w.finish().unwrap().into_inner();
        assert_eq!(&bytes[0..4], b"DKIF");
        assert_eq!(&bytes[8..12], b"VP80");
        assert_eq!(u16::from_le_bytes([bytes[12], bytes[13]]), 640);
        assert_eq!(u32::from_le_bytes(bytes[24..28].try_into().unwrap()), 2);
        assert_eq!(u32::from_le_bytes(bytes[32..36].try_into().unwrap()), 3);
        assert_eq!(&bytes[44..47], &[1, 2, 3]);
        assert_eq!(u64::from_le_bytes(bytes[51..59].try_into().unwrap()), 3000);
        assert_eq!(bytes.len(), 32 + 12 + 3 + 12 + 1);
    }
}
