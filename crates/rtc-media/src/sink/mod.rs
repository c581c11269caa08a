//! Sinks: a PNG snapshot of a frame, an IVF file of VP8 frames, a WAV file of PCM audio.

mod ivf;
mod png_snapshot;
mod wav;

pub use ivf::IvfWriter;
pub use png_snapshot::{encode_png, write_png};
pub use wav::WavWriter;
