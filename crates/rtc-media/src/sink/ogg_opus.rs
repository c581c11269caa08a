//! Ogg Opus files (RFC 7845) of received packets, without re-encoding, and a reader to check
//! them.
//!
//! [`OggOpusWriter`] writes the identification header (`OpusHead`: channels, pre-skip 312,
//! input rate 48 kHz) alone on the first page, the comment header (`OpusTags`: this crate as
//! vendor, the caller's comments) on the next, then the audio: whole packets, each page closed
//! once it spans a second or its 255 segments are used, each with the granule position (48 kHz
//! samples decoded up to its last packet) and the Ogg CRC-32.
//!
//! The packets' RTP timestamps drive the timeline: when they jump (lost packets, DTX), the gap
//! is filled with 1-byte packets (the TOC alone, code 0: a frame without data, which decoders
//! conceal, RFC 6716 §3.2.1) of the last packet's frame size, then of 10, 5 and 2.5 ms, so that the
//! file lasts as long as the sender's timeline. A jump over 10 minutes is a discontinuity: logged
//! and not filled. Packets that go back in time (late, duplicated) are dropped and counted.
//!
//! Call [`OggOpusWriter::finish`] at the end: it writes the last page with the end-of-stream
//! flag. A file whose writer was dropped without it lacks that flag and the page being filled
//! (at most the last second), and plays all the same; [`OggOpusWriter::flush`] writes that page
//! early.

use std::io::Write;
use std::time::Duration;

use crate::audio::toc::{Toc, TocError, packet_samples};

/// Samples the decoder drops at the start (libopus' encoder delay at 48 kHz).
pub const PRE_SKIP: u16 = 312;
/// The vendor string of the comment header.
pub const VENDOR: &str = concat!("rtc-media ", env!("CARGO_PKG_VERSION"));
/// A page is closed once its packets span this many samples (1 s).
const PAGE_SAMPLES: u64 = 48_000;
/// A timestamp jump over this (10 min at 48 kHz) is not filled.
const MAX_FILL: u64 = 10 * 60 * 48_000;
/// The largest packet taken: it must fit in one page (255 segments).
const MAX_PACKET: usize = 255 * 255 - 1;
/// Page header flags.
const CONTINUED: u8 = 0x01;
const FIRST_PAGE: u8 = 0x02;
const LAST_PAGE: u8 = 0x04;

/// Ogg Opus failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OggError {
    /// Writing failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A packet whose TOC gives no duration.
    #[error("invalid Opus packet: {0}")]
    InvalidPacket(#[from] TocError),
    /// A packet larger than a page.
    #[error("Opus packet of {0} bytes is too large")]
    PacketTooLarge(usize),
    /// Not an Ogg stream where `offset` is.
    #[error("malformed Ogg at byte {offset}: {what}")]
    Malformed {
        /// Where, in the input.
        offset: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// A page whose checksum does not match.
    #[error("Ogg page {sequence} fails its CRC")]
    Crc {
        /// The page's sequence number.
        sequence: u32,
    },
    /// An Ogg stream that is not Opus as RFC 7845 has it.
    #[error("not Ogg Opus: {0}")]
    NotOpus(&'static str),
}

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut r = (i as u32) << 24;
        let mut bit = 0;
        while bit < 8 {
            r = if r & 0x8000_0000 != 0 { (r << 1) ^ 0x04c1_1db7 } else { r << 1 };
            bit += 1;
        }
        table[i] = r;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

/// Ogg's CRC-32: polynomial 0x04c11db7, initial value 0, not reflected, no final XOR.
pub fn ogg_crc(data: &[u8]) -> u32 {
    data.iter()
        .fold(0u32, |crc, &byte| (crc << 8) ^ CRC_TABLE[usize::from((crc >> 24) as u8 ^ byte)])
}

/// Lacing values of a packet of `len` bytes: 255s, then the remainder (0 after an exact
/// multiple).
fn lacing(len: usize) -> impl Iterator<Item = u8> {
    std::iter::repeat_n(255u8, len / 255).chain(std::iter::once((len % 255) as u8))
}

fn write_page<W: Write>(
    out: &mut W,
    flags: u8,
    granule: u64,
    serial: u32,
    sequence: u32,
    segments: &[u8],
    body: &[u8],
) -> std::io::Result<()> {
    let mut page = Vec::with_capacity(27 + segments.len() + body.len());
    page.extend_from_slice(b"OggS");
    page.push(0);
    page.push(flags);
    page.extend_from_slice(&granule.to_le_bytes());
    page.extend_from_slice(&serial.to_le_bytes());
    page.extend_from_slice(&sequence.to_le_bytes());
    page.extend_from_slice(&[0; 4]);
    page.push(segments.len() as u8);
    page.extend_from_slice(segments);
    page.extend_from_slice(body);
    let crc = ogg_crc(&page);
    page[22..26].copy_from_slice(&crc.to_le_bytes());
    out.write_all(&page)
}

/// Whether `key` may name a comment (printable ASCII without `=`, RFC 7845 §5.2).
fn valid_key(key: &str) -> bool {
    !key.is_empty() && key.bytes().all(|b| (0x20..=0x7d).contains(&b) && b != b'=')
}

fn invalid_input(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, message)
}

/// Writes received Opus packets into an Ogg Opus stream; see the [module documentation](self).
#[derive(Debug)]
pub struct OggOpusWriter<W: Write> {
    out: W,
    serial: u32,
    sequence: u32,
    /// The page being filled.
    segments: Vec<u8>,
    body: Vec<u8>,
    page_start: u64,
    /// Samples of every packet written so far (the granule position).
    granule: u64,
    /// The timestamp the next packet should have.
    next_timestamp: Option<u64>,
    last_toc: Toc,
    packets: u64,
    filled: u64,
    dropped: u64,
    discontinuities: u64,
}

impl<W: Write> OggOpusWriter<W> {
    /// Starts a stream of `channels` (1 or 2) channels with `comments` (`("TITLE", "…")`…;
    /// names are printable ASCII without `=`), and writes its headers; a serial number from the
    /// clock.
    pub fn new(out: W, channels: u8, comments: &[(&str, &str)]) -> std::io::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32);
        Self::with_serial(out, channels, comments, nanos ^ std::process::id().rotate_left(16))
    }

    /// As [`OggOpusWriter::new`], with the stream's serial number.
    pub fn with_serial(
        mut out: W,
        channels: u8,
        comments: &[(&str, &str)],
        serial: u32,
    ) -> std::io::Result<Self> {
        if !(1..=2).contains(&channels) {
            return Err(invalid_input(format!(
                "{channels} channels (Ogg Opus mapping 0 has 1 or 2)"
            )));
        }
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(channels);
        head.extend_from_slice(&PRE_SKIP.to_le_bytes());
        head.extend_from_slice(&48_000u32.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // mapping family: mono or stereo
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        let vendor_len = u32::try_from(VENDOR.len()).map_err(|_| invalid_input("vendor".into()))?;
        tags.extend_from_slice(&vendor_len.to_le_bytes());
        tags.extend_from_slice(VENDOR.as_bytes());
        let count =
            u32::try_from(comments.len()).map_err(|_| invalid_input("too many comments".into()))?;
        tags.extend_from_slice(&count.to_le_bytes());
        for (key, value) in comments {
            if !valid_key(key) {
                return Err(invalid_input(format!("comment name {key:?}")));
            }
            let comment = format!("{key}={value}");
            let len = u32::try_from(comment.len())
                .map_err(|_| invalid_input("comment too long".into()))?;
            tags.extend_from_slice(&len.to_le_bytes());
            tags.extend_from_slice(comment.as_bytes());
        }
        let mut sequence = 0;
        write_header_packet(&mut out, serial, &mut sequence, &head, FIRST_PAGE)?;
        write_header_packet(&mut out, serial, &mut sequence, &tags, 0)?;
        tracing::debug!(serial, channels, comments = comments.len(), "Ogg Opus stream");
        Ok(Self {
            out,
            serial,
            sequence,
            segments: Vec::new(),
            body: Vec::new(),
            page_start: 0,
            granule: 0,
            next_timestamp: None,
            last_toc: Toc::from_parts(1, false, 0),
            packets: 0,
            filled: 0,
            dropped: 0,
            discontinuities: 0,
        })
    }

    /// Appends `packet` (one Opus packet) with its RTP timestamp at 48 kHz, extended to 64 bits;
    /// fills a gap since the previous packet, drops a packet that goes back in time.
    pub fn write_packet(&mut self, rtp_timestamp: u64, packet: &[u8]) -> Result<(), OggError> {
        let samples = u64::from(packet_samples(packet)?);
        if packet.len() > MAX_PACKET {
            return Err(OggError::PacketTooLarge(packet.len()));
        }
        if let Some(expected) = self.next_timestamp {
            if rtp_timestamp < expected {
                tracing::debug!(rtp_timestamp, expected, "Ogg Opus: packet back in time dropped");
                self.dropped += 1;
                return Ok(());
            }
            let gap = rtp_timestamp - expected;
            if gap > MAX_FILL {
                tracing::warn!(
                    gap_secs = gap / 48_000,
                    "Ogg Opus: timestamp jump over 10 minutes; not filled (the file is shorter than the call)"
                );
                self.discontinuities += 1;
            } else if gap > 0 {
                self.fill(gap)?;
            }
        }
        self.last_toc = Toc::of(packet)?;
        self.append(packet, samples)?;
        self.packets += 1;
        self.next_timestamp = Some(rtp_timestamp + samples);
        Ok(())
    }

    /// Writes the page being filled now (without the end-of-stream flag).
    pub fn flush(&mut self) -> Result<(), OggError> {
        if !self.segments.is_empty() {
            self.write_pending(0)?;
        }
        self.out.flush()?;
        Ok(())
    }

    /// Writes the last page with the end-of-stream flag and returns the output, flushed.
    pub fn finish(mut self) -> Result<W, OggError> {
        self.write_pending(LAST_PAGE)?;
        self.out.flush()?;
        tracing::debug!(
            packets = self.packets,
            filled = self.filled,
            dropped = self.dropped,
            seconds = self.duration().as_secs_f64(),
            "Ogg Opus stream finished"
        );
        Ok(self.out)
    }

    /// The playable duration so far (samples written minus the pre-skip).
    pub fn duration(&self) -> Duration {
        samples_to_duration(self.granule.saturating_sub(u64::from(PRE_SKIP)))
    }

    /// Packets written (not counting fillers).
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// 1-byte packets written to fill gaps.
    pub fn filled(&self) -> u64 {
        self.filled
    }

    /// Packets dropped because they went back in time.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Timestamp jumps too long to fill.
    pub fn discontinuities(&self) -> u64 {
        self.discontinuities
    }

    /// Fills `gap` samples with frames without data.
    fn fill(&mut self, mut gap: u64) -> Result<(), OggError> {
        let stereo = self.last_toc.stereo();
        // The last packet's frame size first, then CELT fullband 20, 10, 5, 2.5 ms.
        let sizes = [
            (self.last_toc.config(), u64::from(self.last_toc.frame_samples())),
            (31, 960),
            (30, 480),
            (29, 240),
            (28, 120),
        ];
        for (config, size) in sizes {
            let filler = [Toc::from_parts(config, stereo, 0).0];
            while gap >= size {
                self.append(&filler, size)?;
                self.filled += 1;
                gap -= size;
            }
        }
        if gap > 0 {
            tracing::debug!(gap, "Ogg Opus: a gap under 2.5 ms cannot be filled");
        }
        Ok(())
    }

    /// Puts a packet on the page being filled, closing it first when full or a second long.
    fn append(&mut self, packet: &[u8], samples: u64) -> Result<(), OggError> {
        let needed = packet.len() / 255 + 1;
        if !self.segments.is_empty()
            && (self.segments.len() + needed > 255
                || self.granule - self.page_start >= PAGE_SAMPLES)
        {
            self.write_pending(0)?;
        }
        if self.segments.is_empty() {
            self.page_start = self.granule;
        }
        self.segments.extend(lacing(packet.len()));
        self.body.extend_from_slice(packet);
        self.granule += samples;
        Ok(())
    }

    fn write_pending(&mut self, flags: u8) -> Result<(), OggError> {
        write_page(
            &mut self.out,
            flags,
            self.granule,
            self.serial,
            self.sequence,
            &self.segments,
            &self.body,
        )?;
        self.sequence = self.sequence.wrapping_add(1);
        self.segments.clear();
        self.body.clear();
        Ok(())
    }
}

/// Writes a header packet on pages of its own (as many as it needs), granule 0.
fn write_header_packet<W: Write>(
    out: &mut W,
    serial: u32,
    sequence: &mut u32,
    packet: &[u8],
    first_flags: u8,
) -> std::io::Result<()> {
    let segments: Vec<u8> = lacing(packet.len()).collect();
    let mut offset = 0;
    for (index, chunk) in segments.chunks(255).enumerate() {
        let len: usize = chunk.iter().map(|&s| usize::from(s)).sum();
        let flags = if index == 0 { first_flags } else { CONTINUED };
        // A page on which no packet ends has granule position -1.
        let last = index == segments.len().div_ceil(255) - 1;
        let granule = if last { 0 } else { u64::MAX };
        write_page(out, flags, granule, serial, *sequence, chunk, &packet[offset..offset + len])?;
        *sequence += 1;
        offset += len;
    }
    Ok(())
}

/// The identification header of an Ogg Opus stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusHead {
    /// Format version (1).
    pub version: u8,
    /// Output channels.
    pub channels: u8,
    /// Samples to drop at the start.
    pub pre_skip: u16,
    /// The sender's original rate (informative).
    pub input_sample_rate: u32,
    /// Gain to apply, Q7.8 dB.
    pub output_gain: i16,
    /// Channel mapping family (0: mono or stereo).
    pub mapping_family: u8,
}

/// The comment header of an Ogg Opus stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpusTags {
    /// Who wrote the stream.
    pub vendor: String,
    /// `NAME=value` comments, split at the first `=`.
    pub comments: Vec<(String, String)>,
}

/// One page, as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageInfo {
    /// Header flags: 1 continued packet, 2 first page, 4 last page.
    pub flags: u8,
    /// Granule position (`u64::MAX` when no packet ends on the page).
    pub granule: u64,
    /// Page sequence number.
    pub sequence: u32,
    /// Packets that end on this page.
    pub packets: usize,
}

/// An Ogg Opus stream read whole from bytes, strictly (one logical stream, consecutive pages,
/// every CRC checked), for tests and tools: the headers, the pages and the audio packets.
#[derive(Debug, Clone)]
pub struct OggOpusReader {
    head: OpusHead,
    tags: OpusTags,
    pages: Vec<PageInfo>,
    packets: Vec<Vec<u8>>,
}

fn malformed(offset: usize, what: &'static str) -> OggError {
    OggError::Malformed { offset, what }
}

impl OggOpusReader {
    /// Reads `bytes`, a whole Ogg Opus stream.
    pub fn parse(bytes: &[u8]) -> Result<Self, OggError> {
        let mut pages = Vec::new();
        let mut packets: Vec<Vec<u8>> = Vec::new();
        let mut partial: Option<Vec<u8>> = None;
        let mut serial = None;
        let mut offset = 0;
        while offset < bytes.len() {
            let header =
                bytes.get(offset..offset + 27).ok_or(malformed(offset, "truncated page header"))?;
            if &header[..4] != b"OggS" {
                return Err(malformed(offset, "no capture pattern"));
            }
            if header[4] != 0 {
                return Err(malformed(offset, "unknown Ogg version"));
            }
            let flags = header[5];
            let granule = u64::from_le_bytes(header[6..14].try_into().expect("8 bytes"));
            let page_serial = u32::from_le_bytes(header[14..18].try_into().expect("4 bytes"));
            let sequence = u32::from_le_bytes(header[18..22].try_into().expect("4 bytes"));
            let crc = u32::from_le_bytes(header[22..26].try_into().expect("4 bytes"));
            let count = usize::from(header[26]);
            let segments = bytes
                .get(offset + 27..offset + 27 + count)
                .ok_or(malformed(offset, "truncated lacing"))?;
            let body_len: usize = segments.iter().map(|&s| usize::from(s)).sum();
            let end = offset + 27 + count + body_len;
            let page = bytes.get(offset..end).ok_or(malformed(offset, "truncated page body"))?;
            let mut zeroed = page.to_vec();
            zeroed[22..26].fill(0);
            if ogg_crc(&zeroed) != crc {
                return Err(OggError::Crc { sequence });
            }
            if *serial.get_or_insert(page_serial) != page_serial {
                return Err(malformed(offset, "a second logical stream"));
            }
            if sequence as usize != pages.len() {
                return Err(malformed(offset, "page out of sequence"));
            }
            if (flags & FIRST_PAGE != 0) != pages.is_empty() {
                return Err(malformed(offset, "first-page flag misplaced"));
            }
            if (flags & CONTINUED != 0) != partial.is_some() {
                return Err(malformed(offset, "continuation flag does not match"));
            }
            let mut body = &page[27 + count..];
            let mut ended = 0;
            for &segment in segments {
                let (data, rest) = body.split_at(usize::from(segment));
                body = rest;
                partial.get_or_insert_with(Vec::new).extend_from_slice(data);
                if segment < 255 {
                    packets.push(partial.take().unwrap_or_default());
                    ended += 1;
                }
            }
            pages.push(PageInfo { flags, granule, sequence, packets: ended });
            offset = end;
        }
        if partial.is_some() {
            return Err(malformed(offset, "the stream ends inside a packet"));
        }
        let mut packets = packets.into_iter();
        let head = parse_head(&packets.next().ok_or(OggError::NotOpus("no packets"))?)?;
        let tags = parse_tags(&packets.next().ok_or(OggError::NotOpus("no comment header"))?)?;
        Ok(Self { head, tags, pages, packets: packets.collect() })
    }

    /// The identification header.
    pub fn head(&self) -> &OpusHead {
        &self.head
    }

    /// The comment header.
    pub fn tags(&self) -> &OpusTags {
        &self.tags
    }

    /// Every page.
    pub fn pages(&self) -> &[PageInfo] {
        &self.pages
    }

    /// The audio packets, in order.
    pub fn packets(&self) -> &[Vec<u8>] {
        &self.packets
    }

    /// Whether the last page has the end-of-stream flag.
    pub fn is_finished(&self) -> bool {
        self.pages.last().is_some_and(|p| p.flags & LAST_PAGE != 0)
    }

    /// Samples (per channel, 48 kHz) the stream plays: the last granule position minus the
    /// pre-skip.
    pub fn samples(&self) -> u64 {
        self.pages
            .iter()
            .rev()
            .find(|p| p.granule != u64::MAX)
            .map_or(0, |p| p.granule.saturating_sub(u64::from(self.head.pre_skip)))
    }

    /// The duration the stream plays.
    pub fn duration(&self) -> Duration {
        samples_to_duration(self.samples())
    }
}

/// The duration of `samples` at 48 kHz; any granule position a file may claim fits.
fn samples_to_duration(samples: u64) -> Duration {
    let nanos = u128::from(samples) * 1_000_000_000 / 48_000;
    Duration::new(
        u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX),
        (nanos % 1_000_000_000) as u32,
    )
}

fn parse_head(packet: &[u8]) -> Result<OpusHead, OggError> {
    if packet.len() < 19 || &packet[..8] != b"OpusHead" {
        return Err(OggError::NotOpus("no OpusHead"));
    }
    let head = OpusHead {
        version: packet[8],
        channels: packet[9],
        pre_skip: u16::from_le_bytes([packet[10], packet[11]]),
        input_sample_rate: u32::from_le_bytes([packet[12], packet[13], packet[14], packet[15]]),
        output_gain: i16::from_le_bytes([packet[16], packet[17]]),
        mapping_family: packet[18],
    };
    if head.version >> 4 != 0 {
        return Err(OggError::NotOpus("an incompatible OpusHead version"));
    }
    if head.channels == 0 || (head.mapping_family == 0 && head.channels > 2) {
        return Err(OggError::NotOpus("a channel count the mapping does not allow"));
    }
    Ok(head)
}

fn parse_tags(packet: &[u8]) -> Result<OpusTags, OggError> {
    fn take<'a>(rest: &mut &'a [u8], len: usize) -> Result<&'a [u8], OggError> {
        if rest.len() < len {
            return Err(OggError::NotOpus("a truncated OpusTags"));
        }
        let (taken, tail) = rest.split_at(len);
        *rest = tail;
        Ok(taken)
    }
    fn length(rest: &mut &[u8]) -> Result<usize, OggError> {
        let bytes = take(rest, 4)?;
        Ok(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
    }
    let mut rest = packet;
    if take(&mut rest, 8)? != b"OpusTags" {
        return Err(OggError::NotOpus("no OpusTags"));
    }
    let vendor_len = length(&mut rest)?;
    let vendor = String::from_utf8_lossy(take(&mut rest, vendor_len)?).into_owned();
    let count = length(&mut rest)?;
    // Each comment takes at least its 4-byte length: a count past that is a lie.
    if count > rest.len() / 4 {
        return Err(OggError::NotOpus("more comments than bytes"));
    }
    let mut comments = Vec::with_capacity(count);
    for _ in 0..count {
        let len = length(&mut rest)?;
        let comment = String::from_utf8_lossy(take(&mut rest, len)?).into_owned();
        let (key, value) = comment.split_once('=').unwrap_or((comment.as_str(), ""));
        comments.push((key.to_owned(), value.to_owned()));
    }
    Ok(OpusTags { vendor, comments })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::test_util::dominant;
    use crate::audio::{OpusDecoder, OpusEncoder, ToneSource};

    fn tone_packets(count: usize) -> Vec<Vec<u8>> {
        let mut tone = ToneSource::new(1000.0, 0.5, 2);
        let mut encoder = OpusEncoder::new(2, 64_000).unwrap();
        (0..count)
            .map(|_| encoder.encode(&tone.next_samples()).unwrap().into_packet().unwrap())
            .collect()
    }

    fn write(packets: &[(u64, Vec<u8>)], comments: &[(&str, &str)]) -> (Vec<u8>, u64, u64) {
        let mut writer = OggOpusWriter::with_serial(Vec::new(), 2, comments, 0x1234_5678).unwrap();
        for (timestamp, packet) in packets {
            writer.write_packet(*timestamp, packet).unwrap();
        }
        let filled = writer.filled();
        let dropped = writer.dropped();
        (writer.finish().unwrap(), filled, dropped)
    }

    /// Decodes every packet of a file, as a player would (dropping the pre-skip).
    fn decode_all(reader: &OggOpusReader) -> Vec<i16> {
        let mut decoder = OpusDecoder::new(u16::from(reader.head().channels)).unwrap();
        let mut pcm = Vec::new();
        for packet in reader.packets() {
            pcm.extend(decoder.decode(Some(packet)).unwrap());
        }
        pcm.split_off(usize::from(reader.head().pre_skip) * usize::from(reader.head().channels))
    }

    #[test]
    fn the_ogg_crc() {
        // CRC-32 with polynomial 0x04c11db7, initial 0, no reflection, no final XOR: the check
        // value of "123456789" is CRC-32/CKSUM's without its final inversion.
        assert_eq!(ogg_crc(b"123456789"), !0x765e_7680);
        assert_eq!(ogg_crc(b""), 0);
        // MSB first: a single 1 bit in the last byte leaves the polynomial itself.
        assert_eq!(ogg_crc(&[0x01]), 0x04c1_1db7);
        // The table agrees with the bit-by-bit definition.
        let bitwise = |data: &[u8]| {
            let mut crc = 0u32;
            for &byte in data {
                crc ^= u32::from(byte) << 24;
                for _ in 0..8 {
                    crc = if crc & 0x8000_0000 != 0 { (crc << 1) ^ 0x04c1_1db7 } else { crc << 1 };
                }
            }
            crc
        };
        let data: Vec<u8> =
            (0..3000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in [1, 2, 27, 255, 3000] {
            assert_eq!(ogg_crc(&data[..len]), bitwise(&data[..len]));
        }
    }

    #[test]
    fn a_stream_with_headers_granules_and_end_of_stream() {
        let packets = tone_packets(120);
        let timestamped: Vec<(u64, Vec<u8>)> =
            packets.iter().enumerate().map(|(i, p)| (5_000 + i as u64 * 960, p.clone())).collect();
        let (bytes, filled, _) =
            write(&timestamped, &[("TITLE", "alice's mic"), ("PARTICIPANT", "@alice:example.org")]);
        assert_eq!(filled, 0);
        let reader = OggOpusReader::parse(&bytes).unwrap();
        assert_eq!(
            *reader.head(),
            OpusHead {
                version: 1,
                channels: 2,
                pre_skip: 312,
                input_sample_rate: 48_000,
                output_gain: 0,
                mapping_family: 0
            }
        );
        assert_eq!(reader.tags().vendor, VENDOR);
        assert!(VENDOR.starts_with("rtc-media "));
        assert_eq!(
            reader.tags().comments,
            [
                ("TITLE".to_owned(), "alice's mic".to_owned()),
                ("PARTICIPANT".to_owned(), "@alice:example.org".to_owned())
            ]
        );
        assert_eq!(reader.packets(), &packets[..]);
        let pages = reader.pages();
        // OpusHead alone on the first page, OpusTags on the second, both granule 0.
        assert_eq!((pages[0].flags, pages[0].granule, pages[0].packets), (FIRST_PAGE, 0, 1));
        assert_eq!((pages[1].flags, pages[1].granule, pages[1].packets), (0, 0, 1));
        // Audio pages of at most a second; each granule counts the samples up to its last packet.
        let mut samples = 0;
        for page in &pages[2..] {
            samples += page.packets as u64 * 960;
            assert_eq!(page.granule, samples);
            assert!(page.packets <= 51);
        }
        assert_eq!(pages.len(), 2 + 3);
        assert!(reader.is_finished());
        assert!(pages[..pages.len() - 1].iter().all(|p| p.flags & LAST_PAGE == 0));
        assert_eq!(reader.samples(), 120 * 960 - 312);
        assert_eq!(reader.duration(), Duration::from_micros(2_400_000 - 6_500));
        // It plays back the tone.
        let pcm = decode_all(&reader);
        assert_eq!(pcm.len() as u64, reader.samples() * 2);
        let left: Vec<i16> = pcm.chunks(2).map(|p| p[0]).skip(4800).collect();
        assert!(dominant(&left, 1000.0));
    }

    #[test]
    fn gaps_are_filled_so_the_file_lasts_as_long_as_the_timeline() {
        let packets = tone_packets(100);
        // Packets 20..25 lost, then 2.5 s of DTX after packet 60, and a gap of 3 frames and
        // 12.5 ms after packet 80.
        let mut timestamped = Vec::new();
        let mut timestamp = 0u64;
        for (i, packet) in packets.iter().enumerate() {
            if (20..25).contains(&i) {
                timestamp += 960;
                continue;
            }
            if i == 61 {
                timestamp += 120_000;
            }
            if i == 81 {
                timestamp += 3 * 960 + 600;
            }
            timestamped.push((timestamp, packet.clone()));
            timestamp += 960;
        }
        let timeline = timestamp;
        let (bytes, filled, _) = write(&timestamped, &[]);
        // 5 lost frames; 125 frames of DTX; 3 frames + 10 ms + 2.5 ms.
        assert_eq!(filled, 5 + 125 + 3 + 2);
        let reader = OggOpusReader::parse(&bytes).unwrap();
        assert_eq!(reader.samples(), timeline - 312);
        let fillers: Vec<&Vec<u8>> = reader.packets().iter().filter(|p| p.len() == 1).collect();
        assert_eq!(fillers.len() as u64, filled);
        let toc = Toc::of(&packets[19]).unwrap();
        // Fillers carry the last packet's configuration, code 0; the odd rest CELT 10 and 2.5 ms.
        assert_eq!(fillers[0][0], Toc::from_parts(toc.config(), toc.stereo(), 0).0);
        assert_eq!(fillers[fillers.len() - 2][0], Toc::from_parts(30, toc.stereo(), 0).0);
        assert_eq!(fillers[fillers.len() - 1][0], Toc::from_parts(28, toc.stereo(), 0).0);
        // A decoder plays the whole timeline (fillers conceal).
        assert_eq!(decode_all(&reader).len() as u64, (timeline - 312) * 2);
    }

    #[test]
    fn late_packets_are_dropped_and_huge_jumps_are_not_filled() {
        let packets = tone_packets(4);
        let ten_minutes_and_a_bit = MAX_FILL + 960;
        let timestamped = vec![
            (960, packets[0].clone()),
            (1920, packets[1].clone()),
            (960, packets[2].clone()),
            (1920, packets[2].clone()),
            (2880 + ten_minutes_and_a_bit, packets[3].clone()),
        ];
        let mut writer = OggOpusWriter::with_serial(Vec::new(), 2, &[], 1).unwrap();
        for (timestamp, packet) in &timestamped {
            writer.write_packet(*timestamp, packet).unwrap();
        }
        assert_eq!(
            (writer.packets(), writer.dropped(), writer.filled(), writer.discontinuities()),
            (3, 2, 0, 1)
        );
        let reader = OggOpusReader::parse(&writer.finish().unwrap()).unwrap();
        assert_eq!(reader.samples(), 3 * 960 - 312);
    }

    #[test]
    fn pages_hold_at_most_255_segments_and_big_headers_span_pages() {
        // 2000-byte packets take 8 segments: 31 fit in a page.
        let big: Vec<u8> = std::iter::once(Toc::from_parts(31, false, 0).0)
            .chain((0..1999).map(|i| i as u8))
            .collect();
        let long_comment = "x".repeat(70_000);
        let mut writer =
            OggOpusWriter::with_serial(Vec::new(), 1, &[("COMMENT", &long_comment)], 9).unwrap();
        for i in 0..100u64 {
            writer.write_packet(i * 960, &big).unwrap();
        }
        let bytes = writer.finish().unwrap();
        let reader = OggOpusReader::parse(&bytes).unwrap();
        assert_eq!(reader.tags().comments[0].1, long_comment);
        let pages = reader.pages();
        // OpusTags spans two pages: the first ends no packet (granule -1), the second continues.
        assert_eq!((pages[1].packets, pages[1].granule), (0, u64::MAX));
        assert_eq!(
            (pages[2].flags & CONTINUED, pages[2].packets, pages[2].granule),
            (CONTINUED, 1, 0)
        );
        assert_eq!(pages.iter().skip(3).map(|p| p.packets).collect::<Vec<_>>(), [31, 31, 31, 7]);
        assert_eq!(reader.packets().len(), 100);
        assert!(reader.packets().iter().all(|p| *p == big));
        // The segment counts in the raw bytes.
        assert!(bytes.windows(4).filter(|w| w == b"OggS").count() == pages.len());
        // Packets larger than a page and invalid ones are refused.
        let mut writer = OggOpusWriter::with_serial(Vec::new(), 1, &[], 9).unwrap();
        assert!(matches!(
            writer.write_packet(0, &vec![big[0]; 70_000]),
            Err(OggError::PacketTooLarge(70_000))
        ));
        assert!(matches!(
            writer.write_packet(0, &[]),
            Err(OggError::InvalidPacket(TocError::Empty))
        ));
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(OggOpusWriter::new(Vec::new(), 3, &[]).is_err());
        assert!(OggOpusWriter::new(Vec::new(), 0, &[]).is_err());
        assert!(OggOpusWriter::new(Vec::new(), 1, &[("A=B", "c")]).is_err());
        assert!(OggOpusWriter::new(Vec::new(), 1, &[("", "c")]).is_err());
        assert!(OggOpusWriter::new(Vec::new(), 1, &[("TITLE\n", "c")]).is_err());
        assert!(OggOpusWriter::new(Vec::new(), 1, &[("TITLE", "any = thing\n✓")]).is_ok());
    }

    /// Found by the `ogg_opus_file` fuzz target: a tags page claiming a granule position near
    /// 2^64 overflowed the duration's arithmetic.
    #[test]
    fn a_huge_granule_position_is_a_huge_duration_not_an_overflow() {
        let hex = "4f6767530002000000000000000000000000000000000228b57201134f707573486561640101\
                   380180bb00000000004f6767530004feffffffffffffff0000000001000000c33dd30b0110\
                   4f707573546167730000000000000000";
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let reader = OggOpusReader::parse(&bytes).unwrap();
        assert_eq!(reader.samples(), 0xffff_ffff_ffff_fffe - 312);
        assert_eq!(reader.duration().as_secs(), reader.samples() / 48_000);
        assert_eq!(samples_to_duration(u64::MAX).as_secs(), u64::MAX / 48_000);
        assert_eq!(samples_to_duration(1_440), Duration::from_millis(30));
    }

    #[test]
    fn an_unfinished_file_plays_and_corruption_is_caught() {
        let packets = tone_packets(10);
        let mut writer = OggOpusWriter::with_serial(Vec::new(), 2, &[], 3).unwrap();
        for (i, packet) in packets.iter().enumerate() {
            writer.write_packet(i as u64 * 960, packet).unwrap();
        }
        writer.flush().unwrap();
        // Dropped without finish: everything flushed is there, without the end-of-stream flag.
        let bytes = writer.out.clone();
        let reader = OggOpusReader::parse(&bytes).unwrap();
        assert!(!reader.is_finished());
        assert_eq!(reader.packets().len(), 10);
        assert_eq!(reader.samples(), 10 * 960 - 312);

        let mut corrupt = bytes.clone();
        let last = corrupt.len() - 1;
        corrupt[last] ^= 1;
        assert!(matches!(OggOpusReader::parse(&corrupt), Err(OggError::Crc { sequence: 2 })));
        assert!(matches!(
            OggOpusReader::parse(&bytes[..bytes.len() - 1]),
            Err(OggError::Malformed { .. })
        ));
        assert!(matches!(
            OggOpusReader::parse(b"OggT"),
            Err(OggError::Malformed { offset: 0, .. })
        ));
        assert!(matches!(OggOpusReader::parse(b""), Err(OggError::NotOpus(_))));
        // Every prefix and every single-bit flip of the headers: an error or a stream, no panic.
        for n in 0..bytes.len() {
            let _ = OggOpusReader::parse(&bytes[..n]);
        }
        for at in 0..200.min(bytes.len()) {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[at] ^= 1 << bit;
                let _ = OggOpusReader::parse(&flipped);
            }
        }
    }
}
