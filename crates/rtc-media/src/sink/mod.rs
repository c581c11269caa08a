//! Sinks: a PNG snapshot of a frame, an IVF file of VP8 frames, a WAV file of PCM audio, an Ogg
//! Opus file of received Opus packets (and a reader to check one).

mod ivf;
pub mod ogg_opus;
mod png_snapshot;
mod wav;

pub use ivf::IvfWriter;
pub use ogg_opus::{OggError, OggOpusReader, OggOpusWriter};
pub use png_snapshot::{encode_png, write_png};
pub use wav::WavWriter;
