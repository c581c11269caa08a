//! WAV files as an [`AudioSource`]: [`WavSource`], [`parse_wav`].

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use super::resample::{Resampler, to_i16};
use super::{AudioError, AudioFrame, AudioSource, FRAME_SAMPLES};

/// The longest `fmt ` chunk read (`WAVE_FORMAT_EXTENSIBLE` needs 40 bytes).
const MAX_FMT: u32 = 1024;
/// The most chunks looked at before the data.
const MAX_CHUNKS: usize = 4096;
/// The most channels taken.
const MAX_CHANNELS: u16 = 32;

/// Why a WAV file cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WavError {
    /// The file does not start with `RIFF`.
    #[error("not a RIFF file")]
    NotRiff,
    /// A RIFF file of another kind than `WAVE`.
    #[error("a RIFF file, but not WAVE")]
    NotWave,
    /// The file ends inside a header or chunk.
    #[error("the file ends inside the {0}")]
    Truncated(&'static str),
    /// The `data` chunk comes before any `fmt ` chunk.
    #[error("no fmt chunk before the data")]
    MissingFmt,
    /// No `data` chunk.
    #[error("no data chunk")]
    MissingData,
    /// More chunks than a WAV file has.
    #[error("more than {MAX_CHUNKS} chunks before the data")]
    TooManyChunks,
    /// A `fmt ` chunk too short or too long.
    #[error("fmt chunk of {0} bytes")]
    FmtSize(u32),
    /// A compressed or unknown format (ADPCM, µ-law, MP3…).
    #[error("unsupported format tag {0:#06x} (PCM and IEEE float are supported)")]
    UnsupportedFormat(u16),
    /// A sample size this reader does not take.
    #[error("unsupported sample size: {bytes} bytes of {kind}")]
    UnsupportedSampleSize {
        /// Bytes per sample.
        bytes: u16,
        /// "PCM" or "float".
        kind: &'static str,
    },
    /// No channels, or more than 32.
    #[error("{0} channels (1..=32 are supported)")]
    Channels(u16),
    /// A rate outside 1 kHz..=384 kHz.
    #[error("sample rate {0} Hz (1 kHz..=384 kHz are supported)")]
    SampleRate(u32),
    /// A block size that does not match the channels and sample size.
    #[error("block align {block_align} for {channels} channels of {bits} bits")]
    BlockAlign {
        /// Bytes per frame, as declared.
        block_align: u16,
        /// Channels.
        channels: u16,
        /// Bits per sample, as declared.
        bits: u16,
    },
    /// The data chunk holds not one whole frame.
    #[error("no samples")]
    NoSamples,
    /// Reading failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// How samples are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SampleFormat {
    /// Unsigned 8-bit, 128 = 0.
    U8,
    /// Signed 16-bit little-endian.
    I16,
    /// Signed 24-bit little-endian (3 bytes).
    I24,
    /// Signed 32-bit little-endian.
    I32,
    /// IEEE float, 32-bit.
    F32,
    /// IEEE float, 64-bit.
    F64,
}

impl SampleFormat {
    /// Bytes per sample.
    pub fn bytes(self) -> usize {
        match self {
            Self::U8 => 1,
            Self::I16 => 2,
            Self::I24 => 3,
            Self::I32 | Self::F32 => 4,
            Self::F64 => 8,
        }
    }

    /// The sample at the start of `bytes` (at least [`SampleFormat::bytes`] long) in -1.0..=1.0;
    /// non-finite floats are 0.
    fn decode(self, bytes: &[u8]) -> f32 {
        match self {
            Self::U8 => (f32::from(bytes[0]) - 128.0) / 128.0,
            Self::I16 => f32::from(i16::from_le_bytes([bytes[0], bytes[1]])) / 32768.0,
            Self::I24 => {
                (i32::from_le_bytes([0, bytes[0], bytes[1], bytes[2]]) >> 8) as f32 / 8_388_608.0
            }
            Self::I32 => {
                i32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as f32
                    / 2_147_483_648.0
            }
            Self::F32 => finite(f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]])),
            Self::F64 => {
                let mut eight = [0u8; 8];
                eight.copy_from_slice(&bytes[..8]);
                finite(f64::from_le_bytes(eight) as f32)
            }
        }
    }
}

fn finite(x: f32) -> f32 {
    if x.is_finite() { x.clamp(-1.0, 1.0) } else { 0.0 }
}

/// The layout of the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavFormat {
    /// How each sample is stored.
    pub sample_format: SampleFormat,
    /// Channels in the file.
    pub channels: u16,
    /// Frames per second.
    pub sample_rate: u32,
}

impl WavFormat {
    /// Bytes per frame (all channels).
    pub fn block_align(&self) -> usize {
        self.sample_format.bytes() * usize::from(self.channels)
    }
}

/// What the header says, checked against the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavHeader {
    /// The sample layout.
    pub format: WavFormat,
    /// Where the samples start.
    pub data_offset: u64,
    /// Bytes of whole frames, no more than the file holds.
    pub data_len: u64,
}

impl WavHeader {
    /// Frames in the file.
    pub fn frames(&self) -> u64 {
        self.data_len / self.format.block_align() as u64
    }

    /// The duration in seconds.
    pub fn duration_secs(&self) -> f64 {
        self.frames() as f64 / f64::from(self.format.sample_rate)
    }
}

/// Parses the header of a WAV file held in `bytes` (the samples stay where they are:
/// `bytes[data_offset..data_offset + data_len]`).
pub fn parse_wav(bytes: &[u8]) -> Result<WavHeader, WavError> {
    read_header(&mut Cursor::new(bytes))
}

fn read_exact_or<R: Read>(r: &mut R, buf: &mut [u8], what: &'static str) -> Result<(), WavError> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => WavError::Truncated(what),
        _ => WavError::Io(e),
    })
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Walks the chunks up to the data, leaving `r` anywhere.
fn read_header<R: Read + Seek>(r: &mut R) -> Result<WavHeader, WavError> {
    let total = r.seek(SeekFrom::End(0))?;
    r.seek(SeekFrom::Start(0))?;
    let mut riff = [0u8; 12];
    read_exact_or(r, &mut riff[..4], "RIFF header").map_err(|e| match e {
        WavError::Truncated(_) => WavError::NotRiff,
        other => other,
    })?;
    if &riff[..4] != b"RIFF" {
        return Err(WavError::NotRiff);
    }
    read_exact_or(r, &mut riff[4..], "RIFF header")?;
    if &riff[8..12] != b"WAVE" {
        return Err(WavError::NotWave);
    }
    // The RIFF size is often wrong (streamed files): the real length decides.
    let mut position = 12u64;
    let mut format = None;
    for _ in 0..MAX_CHUNKS {
        let mut header = [0u8; 8];
        match r.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(if format.is_none() {
                    WavError::MissingFmt
                } else {
                    WavError::MissingData
                });
            }
            Err(e) => return Err(e.into()),
        }
        position += 8;
        let size = u32_at(&header, 4);
        match &header[..4] {
            b"fmt " => {
                if !(16..=MAX_FMT).contains(&size) {
                    return Err(WavError::FmtSize(size));
                }
                let mut body = vec![0u8; size as usize];
                read_exact_or(r, &mut body, "fmt chunk")?;
                format = Some(parse_fmt(&body)?);
            }
            b"data" => {
                let format = format.ok_or(WavError::MissingFmt)?;
                let available = total.saturating_sub(position);
                // 0xFFFFFFFF (and any size past the end) means "up to the end of the file".
                let len = u64::from(size).min(available);
                let block = format.block_align() as u64;
                let data_len = len / block * block;
                if data_len == 0 {
                    return Err(WavError::NoSamples);
                }
                return Ok(WavHeader { format, data_offset: position, data_len });
            }
            _ => {}
        }
        if &header[..4] != b"fmt " {
            // Chunks are word-aligned: an odd size has a pad byte.
            let skip = u64::from(size) + u64::from(size & 1);
            if position + skip > total {
                return Err(if format.is_none() {
                    WavError::MissingFmt
                } else {
                    WavError::MissingData
                });
            }
            r.seek(SeekFrom::Current(i64::try_from(skip).unwrap_or(i64::MAX)))?;
            position += skip;
        } else {
            position += u64::from(size);
            if size & 1 == 1 {
                r.seek(SeekFrom::Current(1))?;
                position += 1;
            }
        }
    }
    Err(WavError::TooManyChunks)
}

fn parse_fmt(body: &[u8]) -> Result<WavFormat, WavError> {
    let mut tag = u16_at(body, 0);
    let channels = u16_at(body, 2);
    let sample_rate = u32_at(body, 4);
    let block_align = u16_at(body, 12);
    let bits = u16_at(body, 14);
    if tag == 0xfffe {
        // WAVE_FORMAT_EXTENSIBLE: the real tag starts the sub-format GUID.
        if body.len() < 40 {
            return Err(WavError::FmtSize(body.len() as u32));
        }
        tag = u16_at(body, 24);
    }
    if channels == 0 || channels > MAX_CHANNELS {
        return Err(WavError::Channels(channels));
    }
    if !(1_000..=384_000).contains(&sample_rate) {
        return Err(WavError::SampleRate(sample_rate));
    }
    // The container size decides (20 valid bits in 3 bytes are read as 24).
    if block_align == 0 || !block_align.is_multiple_of(channels) {
        return Err(WavError::BlockAlign { block_align, channels, bits });
    }
    let bytes = block_align / channels;
    if u32::from(bits) > u32::from(bytes) * 8 || bits == 0 {
        return Err(WavError::BlockAlign { block_align, channels, bits });
    }
    let sample_format = match (tag, bytes) {
        (1, 1) => SampleFormat::U8,
        (1, 2) => SampleFormat::I16,
        (1, 3) => SampleFormat::I24,
        (1, 4) => SampleFormat::I32,
        (3, 4) => SampleFormat::F32,
        (3, 8) => SampleFormat::F64,
        (1, _) => return Err(WavError::UnsupportedSampleSize { bytes, kind: "PCM" }),
        (3, _) => return Err(WavError::UnsupportedSampleSize { bytes, kind: "float" }),
        (other, _) => return Err(WavError::UnsupportedFormat(other)),
    };
    Ok(WavFormat { sample_format, channels, sample_rate })
}

/// A WAV file as 20 ms frames at 48 kHz, mono or stereo, optionally looping without a gap.
///
/// WAV files as an [`AudioSource`]: RIFF/WAVE with integer PCM of 8, 16, 24 or 32 bits or IEEE
/// float of 32 or 64 bits (also in `WAVE_FORMAT_EXTENSIBLE`), any rate from 1 kHz to 384 kHz,
/// any channel count up to 32; mono and stereo stay as they are, more channels are averaged to
/// mono; the result is resampled to 48 kHz.
///
/// Files are untrusted: every size is checked against the file's real length, chunks other than
/// `fmt ` and `data` (`LIST`, `fact`, `cue `…) are skipped without being read, the data is read
/// about 20 ms at a time, and a malformed file is a [`WavError`], never a panic. [`parse_wav`] is
/// the header parser on its own, a pure function for fuzzing.
#[derive(Debug)]
pub struct WavSource<R = BufReader<File>> {
    reader: R,
    header: WavHeader,
    looping: bool,
    /// Data bytes left in this pass, and read in it.
    remaining: u64,
    pass_read: u64,
    channels: u16,
    resampler: Resampler,
    raw: Vec<u8>,
    mixed: Vec<f32>,
    /// Resampled samples not yet handed out.
    pending: Vec<f32>,
    ended: bool,
}

impl WavSource<BufReader<File>> {
    /// Opens the file at `path`; `looping` starts it over at its end.
    pub fn open(path: impl AsRef<Path>, looping: bool) -> Result<Self, AudioError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(WavError::Io)?;
        let source = Self::new(BufReader::new(file), looping)?;
        tracing::info!(
            path = %path.display(),
            rate = source.header.format.sample_rate,
            channels = source.header.format.channels,
            format = ?source.header.format.sample_format,
            seconds = source.header.duration_secs(),
            looping,
            "WAV source"
        );
        Ok(source)
    }
}

impl<R: Read + Seek + Send> WavSource<R> {
    /// Reads a WAV stream from `reader` (a file, or a `Cursor` over bytes).
    pub fn new(mut reader: R, looping: bool) -> Result<Self, AudioError> {
        let header = read_header(&mut reader)?;
        reader.seek(SeekFrom::Start(header.data_offset)).map_err(WavError::Io)?;
        let channels = if header.format.channels == 2 { 2 } else { 1 };
        let resampler = Resampler::to_48k(header.format.sample_rate, channels)?;
        Ok(Self {
            reader,
            header,
            looping,
            remaining: header.data_len,
            pass_read: 0,
            channels,
            resampler,
            raw: Vec::new(),
            mixed: Vec::new(),
            pending: Vec::new(),
            ended: false,
        })
    }

    /// The file's header.
    pub fn header(&self) -> &WavHeader {
        &self.header
    }

    /// Reads about 20 ms of the file into `pending`; at the end, starts over or flushes.
    fn fill(&mut self) -> Result<(), AudioError> {
        let format = self.header.format;
        let block = format.block_align();
        if self.remaining == 0 {
            if self.looping {
                self.reader.seek(SeekFrom::Start(self.header.data_offset)).map_err(WavError::Io)?;
                self.remaining = self.header.data_len;
                self.pass_read = 0;
            } else {
                self.resampler.flush(&mut self.pending);
                self.ended = true;
                return Ok(());
            }
        }
        let frames = (format.sample_rate / 50 + 1) as usize;
        let want = ((frames * block) as u64).min(self.remaining) as usize;
        self.raw.resize(want, 0);
        let mut got = 0;
        while got < want {
            match self.reader.read(&mut self.raw[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(WavError::Io(e).into()),
            }
        }
        let whole = got / block * block;
        self.pass_read += whole as u64;
        if got < want {
            // The file shrank under us: this is its end, and its length from now on.
            tracing::warn!(missing = want - got, "WAV file shorter than its header said");
            self.remaining = 0;
            self.header.data_len = self.pass_read;
            if self.looping && self.pass_read == 0 {
                return Err(WavError::NoSamples.into());
            }
        } else {
            self.remaining -= want as u64;
        }
        self.mixed.clear();
        let bytes = format.sample_format.bytes();
        let source_channels = usize::from(format.channels);
        for frame in self.raw[..whole].chunks_exact(block) {
            if source_channels <= 2 {
                self.mixed
                    .extend(frame.chunks_exact(bytes).map(|s| format.sample_format.decode(s)));
            } else {
                let sum: f32 =
                    frame.chunks_exact(bytes).map(|s| format.sample_format.decode(s)).sum();
                self.mixed.push(sum / source_channels as f32);
            }
        }
        self.resampler.process(&self.mixed, &mut self.pending);
        Ok(())
    }
}

impl<R: Read + Seek + Send> AudioSource for WavSource<R> {
    fn channels(&self) -> u16 {
        self.channels
    }

    fn next_frame(&mut self) -> Result<Option<AudioFrame>, AudioError> {
        let need = FRAME_SAMPLES * usize::from(self.channels);
        while self.pending.len() < need && !self.ended {
            self.fill()?;
        }
        if self.pending.is_empty() {
            return Ok(None);
        }
        let take = need.min(self.pending.len());
        let mut samples: Vec<i16> = self.pending.drain(..take).map(to_i16).collect();
        // The last frame of a file, padded with silence.
        samples.resize(need, 0);
        Ok(Some(AudioFrame { samples, channels: self.channels }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::test_util::{Rng, dominant};

    /// A WAV file: `tag`, `channels`, `rate`, `bits`, then `extra` chunks before the data.
    fn wav(
        tag: u16,
        channels: u16,
        rate: u32,
        bits: u16,
        data: &[u8],
        extra: &[(&[u8; 4], &[u8])],
    ) -> Vec<u8> {
        let block = channels * bits.div_ceil(8);
        let mut fmt = Vec::new();
        fmt.extend_from_slice(&tag.to_le_bytes());
        fmt.extend_from_slice(&channels.to_le_bytes());
        fmt.extend_from_slice(&rate.to_le_bytes());
        fmt.extend_from_slice(&(rate * u32::from(block)).to_le_bytes());
        fmt.extend_from_slice(&block.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        let mut chunks: Vec<(&[u8; 4], &[u8])> = vec![(b"fmt ", &fmt)];
        chunks.extend_from_slice(extra);
        chunks.push((b"data", data));
        let mut out = b"RIFF\0\0\0\0WAVE".to_vec();
        for (id, body) in chunks {
            out.extend_from_slice(id);
            out.extend_from_slice(&(body.len() as u32).to_le_bytes());
            out.extend_from_slice(body);
            if body.len() % 2 == 1 && id != b"data" {
                out.push(0);
            }
        }
        let riff = (out.len() - 8) as u32;
        out[4..8].copy_from_slice(&riff.to_le_bytes());
        out
    }

    fn pcm16(samples: impl IntoIterator<Item = i16>) -> Vec<u8> {
        samples.into_iter().flat_map(i16::to_le_bytes).collect()
    }

    fn all_frames(bytes: Vec<u8>) -> Result<Vec<AudioFrame>, AudioError> {
        let mut source = WavSource::new(Cursor::new(bytes), false)?;
        let mut frames = Vec::new();
        while let Some(frame) = source.next_frame()? {
            frames.push(frame);
            assert!(frames.len() < 100_000, "a source that never ends");
        }
        Ok(frames)
    }

    #[test]
    fn sixteen_bit_48khz_passes_through_with_the_last_frame_padded() {
        let samples: Vec<i16> = (0..2000).map(|i| (i * 7 - 5000) as i16).collect();
        let frames = all_frames(wav(1, 1, 48_000, 16, &pcm16(samples.clone()), &[])).unwrap();
        assert_eq!(frames.len(), 3);
        let out: Vec<i16> = frames.iter().flat_map(|f| f.samples.iter().copied()).collect();
        assert_eq!(&out[..2000], &samples[..]);
        assert!(out[2000..].iter().all(|&s| s == 0));
    }

    #[test]
    fn a_44_1khz_24_bit_stereo_file_with_other_chunks_plays_at_48khz() {
        let tone: Vec<u8> = (0..44_100)
            .flat_map(|i| {
                let x = (0.5
                    * 8_388_607.0
                    * (2.0 * std::f64::consts::PI * 1000.0 * f64::from(i) / 44_100.0).sin())
                    as i32;
                let bytes = x.to_le_bytes();
                [bytes[0], bytes[1], bytes[2], bytes[0], bytes[1], bytes[2]]
            })
            .collect();
        let list = b"INFOISFT\x05\0\0\0test\0";
        let bytes = wav(1, 2, 44_100, 24, &tone, &[(b"LIST", list), (b"odd ", b"abc")]);
        let header = parse_wav(&bytes).unwrap();
        assert_eq!(
            header.format,
            WavFormat { sample_format: SampleFormat::I24, channels: 2, sample_rate: 44_100 }
        );
        assert_eq!(header.frames(), 44_100);
        let frames = all_frames(bytes).unwrap();
        assert_eq!(frames.len(), 50);
        assert!(frames.iter().all(|f| f.channels == 2 && f.samples.len() == 1920));
        let left: Vec<i16> =
            frames[5..45].iter().flat_map(|f| f.samples.chunks(2).map(|p| p[0])).collect();
        assert!(dominant(&left, 1000.0));
        assert_eq!(frames[20].level_dbov(), 9);
    }

    #[test]
    fn every_sample_format_decodes() {
        let cases: Vec<(u16, u16, Vec<u8>, [i16; 3])> = vec![
            (1, 8, vec![128, 255, 0], [0, 32512, -32768]),
            (
                1,
                32,
                [0i32, i32::MAX, i32::MIN].iter().flat_map(|v| v.to_le_bytes()).collect(),
                [0, 32767, -32768],
            ),
            (
                3,
                32,
                [0.25f32, f32::NAN, -2.0].iter().flat_map(|v| v.to_le_bytes()).collect(),
                [8192, 0, -32768],
            ),
            (
                3,
                64,
                [0.5f64, f64::INFINITY, -0.5].iter().flat_map(|v| v.to_le_bytes()).collect(),
                [16384, 0, -16384],
            ),
        ];
        for (tag, bits, data, expected) in cases {
            let frames = all_frames(wav(tag, 1, 48_000, bits, &data, &[])).unwrap();
            assert_eq!(&frames[0].samples[..3], &expected, "tag {tag}, {bits} bits");
        }
    }

    #[test]
    fn many_channels_are_averaged_to_mono_and_extensible_is_read() {
        // Six channels: 0.5 on the first three, -0.25 on the others → 0.125.
        let frame = pcm16([16384, 16384, 16384, -8192, -8192, -8192]);
        let data: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * 960).collect();
        let frames = all_frames(wav(1, 6, 48_000, 16, &data, &[])).unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].channels, 1);
        assert!(frames[0].samples.iter().all(|&s| s == 4096));
        // WAVE_FORMAT_EXTENSIBLE with a float sub-format.
        let mut bytes = wav(0xfffe, 1, 48_000, 32, &0.5f32.to_le_bytes(), &[]);
        let mut fmt = bytes[20..36].to_vec();
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&32u16.to_le_bytes());
        fmt.extend_from_slice(&4u32.to_le_bytes());
        fmt.extend_from_slice(&[3, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71]);
        bytes.splice(16..36, [40u32.to_le_bytes().to_vec(), fmt].concat());
        assert_eq!(parse_wav(&bytes).unwrap().format.sample_format, SampleFormat::F32);
        assert_eq!(all_frames(bytes).unwrap()[0].samples[0], 16384);
    }

    #[test]
    fn looping_is_seamless() {
        // 30 ms at 48 kHz, a ramp; looping gives the ramp again and again.
        let ramp: Vec<i16> = (0..1440).map(|i| i as i16).collect();
        let mut source =
            WavSource::new(Cursor::new(wav(1, 1, 48_000, 16, &pcm16(ramp.clone()), &[])), true)
                .unwrap();
        let out: Vec<i16> =
            (0..10).flat_map(|_| source.next_frame().unwrap().unwrap().samples).collect();
        assert!(out.iter().enumerate().all(|(i, &s)| s == ramp[i % 1440]));
    }

    #[test]
    fn malformed_files_are_clear_errors() {
        let good = wav(1, 1, 48_000, 16, &pcm16([1, 2, 3]), &[]);
        let check = |bytes: &[u8], expected: &str| {
            let error = parse_wav(bytes).expect_err(expected);
            assert!(format!("{error:?}").starts_with(expected), "{error:?} is not {expected}");
        };
        check(b"", "NotRiff");
        check(b"RIFX\0\0\0\0WAVE", "NotRiff");
        check(b"RIFF\0\0\0\0AVI ", "NotWave");
        check(b"RIFF\0\0\0\0WA", "Truncated");
        check(b"RIFF\0\0\0\0WAVE", "MissingFmt");
        check(&good[..36], "MissingData");
        check(&good[..30], "Truncated");
        check(&wav(2, 1, 48_000, 4, &[0; 8], &[]), "UnsupportedFormat");
        check(&wav(1, 1, 48_000, 48, &[0; 12], &[]), "UnsupportedSampleSize");
        check(&wav(3, 1, 48_000, 16, &[0; 4], &[]), "UnsupportedSampleSize");
        check(&wav(1, 0, 48_000, 16, &[0; 4], &[]), "Channels");
        check(&wav(1, 33, 48_000, 16, &[0; 66], &[]), "Channels");
        check(&wav(1, 1, 0, 16, &[0; 4], &[]), "SampleRate");
        check(&wav(1, 1, 1_000_000, 16, &[0; 4], &[]), "SampleRate");
        check(&wav(1, 1, 48_000, 16, &[], &[]), "NoSamples");
        check(&wav(1, 1, 48_000, 16, &[7], &[]), "NoSamples");
        // Data before fmt.
        let mut data_first = b"RIFF\0\0\0\0WAVEdata\x02\0\0\0\0\0".to_vec();
        data_first.extend_from_slice(&good[12..]);
        check(&data_first, "MissingFmt");
        // A block align that does not match.
        let mut bad_align = good.clone();
        bad_align[34] = 32;
        check(&bad_align, "BlockAlign");
        // A fmt chunk claiming 1 GiB.
        let mut huge_fmt = good.clone();
        huge_fmt[16..20].copy_from_slice(&(1u32 << 30).to_le_bytes());
        check(&huge_fmt, "FmtSize");
        // A chunk claiming more than the file holds before any data.
        let mut huge = good[..36].to_vec();
        huge.extend_from_slice(b"LIST\xff\xff\xff\x7f");
        check(&huge, "MissingData");
        // A data size past the end (a streamed file) means "to the end".
        let mut streamed = good.clone();
        streamed[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse_wav(&streamed).unwrap().data_len, 6);
        // Errors read well.
        assert_eq!(
            AudioError::from(parse_wav(&wav(1, 1, 0, 16, &[0; 4], &[])).unwrap_err()).to_string(),
            "WAV: sample rate 0 Hz (1 kHz..=384 kHz are supported)"
        );
    }

    #[test]
    fn hostile_bytes_never_panic() {
        let tone: Vec<i16> = (0..4410).map(|i| (i * 13) as i16).collect();
        let good = wav(1, 2, 44_100, 16, &pcm16(tone), &[(b"LIST", b"INFOxyz")]);
        let mut rng = Rng(42);
        // Every prefix, then random corruptions of the header bytes.
        let mut inputs: Vec<Vec<u8>> = (0..80).map(|n| good[..n].to_vec()).collect();
        for _ in 0..2000 {
            let mut bytes = good.clone();
            for _ in 0..1 + rng.next_u64() % 4 {
                let at = (rng.next_u64() % 64) as usize;
                bytes[at] = rng.next_u64() as u8;
            }
            inputs.push(bytes);
        }
        for bytes in inputs {
            let len = bytes.len();
            match all_frames(bytes) {
                // Never more audio than the bytes could hold (one frame per byte at 1 kHz is 48×).
                Ok(frames) => assert!(frames.len() <= len * 48 / 960 + 2),
                Err(AudioError::Wav(_)) | Err(AudioError::SampleRate(_)) => {}
                Err(other) => panic!("unexpected {other:?}"),
            }
        }
    }
}
