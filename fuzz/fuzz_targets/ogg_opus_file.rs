//! Any bytes as an Ogg Opus file for the strict reader: a stream or an error, never a panic, and
//! every accessor of a stream it accepted works. The bytes are read twice: as they are, and with
//! every page's CRC made right (so that mutations get past the checksum to the pages, packets
//! and headers behind it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rtc_media::sink::OggOpusReader;
use rtc_media::sink::ogg_opus::ogg_crc;

/// `bytes` with the CRC of every page that can be walked to recomputed.
fn with_crcs_fixed(bytes: &[u8]) -> Vec<u8> {
    let mut fixed = bytes.to_vec();
    let mut offset = 0;
    while let Some(header) = fixed.get(offset..offset + 27) {
        if &header[..4] != b"OggS" {
            break;
        }
        let count = usize::from(header[26]);
        let Some(lacing) = fixed.get(offset + 27..offset + 27 + count) else { break };
        let end = offset + 27 + count + lacing.iter().map(|&s| usize::from(s)).sum::<usize>();
        if end > fixed.len() {
            break;
        }
        fixed[offset + 22..offset + 26].fill(0);
        let crc = ogg_crc(&fixed[offset..end]);
        fixed[offset + 22..offset + 26].copy_from_slice(&crc.to_le_bytes());
        offset = end;
    }
    fixed
}

fn check(bytes: &[u8]) {
    let Ok(reader) = OggOpusReader::parse(bytes) else { return };
    let head = reader.head();
    assert!(head.channels > 0);
    assert!(head.version >> 4 == 0);
    let tags = reader.tags();
    let comment_bytes: usize = tags.comments.iter().map(|(k, v)| k.len() + v.len()).sum();
    assert!(tags.vendor.len() + comment_bytes <= bytes.len() * 3, "lossy UTF-8 at most triples");
    let pages = reader.pages();
    assert!(!pages.is_empty());
    assert!(pages.iter().enumerate().all(|(i, page)| page.sequence as usize == i));
    let ended: usize = pages.iter().map(|page| page.packets).sum();
    assert_eq!(ended, reader.packets().len() + 2, "two header packets, then the audio");
    let audio: usize = reader.packets().iter().map(Vec::len).sum();
    assert!(audio <= bytes.len());
    let samples = reader.samples();
    let duration = reader.duration();
    assert!(duration.as_micros() <= u128::from(samples) * 1_000 / 48 + 1);
    let _ = reader.is_finished();
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let fixed = with_crcs_fixed(data);
    if fixed != data {
        check(&fixed);
    }
});
