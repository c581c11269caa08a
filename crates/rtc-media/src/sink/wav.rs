//! WAV files of 16-bit PCM; the sizes in the header are fixed up by [`WavWriter::finish`].

use std::io::{Seek, SeekFrom, Write};

/// Writes interleaved 16-bit PCM samples into a WAV stream.
#[derive(Debug)]
pub struct WavWriter<W: Write + Seek> {
    out: W,
    data_bytes: u32,
}

impl<W: Write + Seek> WavWriter<W> {
    /// Starts a stream of `channels` channels at `sample_rate` Hz.
    pub fn new(mut out: W, sample_rate: u32, channels: u16) -> std::io::Result<Self> {
        let block_align = channels * 2;
        let mut header = Vec::with_capacity(44);
        header.extend_from_slice(b"RIFF");
        header.extend_from_slice(&36u32.to_le_bytes());
        header.extend_from_slice(b"WAVEfmt ");
        header.extend_from_slice(&16u32.to_le_bytes());
        header.extend_from_slice(&1u16.to_le_bytes()); // PCM
        header.extend_from_slice(&channels.to_le_bytes());
        header.extend_from_slice(&sample_rate.to_le_bytes());
        header.extend_from_slice(&(sample_rate * u32::from(block_align)).to_le_bytes());
        header.extend_from_slice(&block_align.to_le_bytes());
        header.extend_from_slice(&16u16.to_le_bytes());
        header.extend_from_slice(b"data");
        header.extend_from_slice(&0u32.to_le_bytes());
        out.write_all(&header)?;
        Ok(Self { out, data_bytes: 0 })
    }

    /// Appends interleaved samples.
    pub fn write_samples(&mut self, samples: &[i16]) -> std::io::Result<()> {
        let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
        self.out.write_all(&bytes)?;
        self.data_bytes = self
            .data_bytes
            .checked_add(u32::try_from(bytes.len()).map_err(std::io::Error::other)?)
            .ok_or_else(|| std::io::Error::other("WAV data larger than 4 GiB"))?;
        Ok(())
    }

    /// Writes the sizes into the header and returns the output.
    pub fn finish(mut self) -> std::io::Result<W> {
        let end = self.out.stream_position()?;
        self.out.seek(SeekFrom::Start(4))?;
        self.out.write_all(&(36 + self.data_bytes).to_le_bytes())?;
        self.out.seek(SeekFrom::Start(40))?;
        self.out.write_all(&self.data_bytes.to_le_bytes())?;
        self.out.seek(SeekFrom::Start(end))?;
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_canonical_44_byte_header() {
        let mut w = WavWriter::new(std::io::Cursor::new(Vec::new()), 48_000, 2).unwrap();
        w.write_samples(&[1, -1, 2, -2]).unwrap();
        let bytes = w.finish().unwrap().into_inner();
        assert_eq!(&bytes[0..4], b"RIFF");
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 36 + 8);
        assert_eq!(&bytes[8..16], b"WAVEfmt ");
        assert_eq!(u32::from_le_bytes(bytes[24..28].try_into().unwrap()), 48_000);
        assert_eq!(u32::from_le_bytes(bytes[28..32].try_into().unwrap()), 48_000 * 4);
        assert_eq!(u32::from_le_bytes(bytes[40..44].try_into().unwrap()), 8);
        assert_eq!(&bytes[44..46], &1i16.to_le_bytes());
        assert_eq!(bytes.len(), 52);
    }
}
