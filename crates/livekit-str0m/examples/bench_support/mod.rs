//! What the benchmark examples share: `--flag value` arguments, and the test frames both the
//! Rust and the Python client read (the moving pattern with sensor-like noise, raw I420).

use std::collections::HashMap;
use std::io::{Read as _, Write as _};

use rtc_media::frame::I420Frame;
use rtc_media::pattern::TestPattern;

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// The command (first argument) and its `--name value` flags.
pub(crate) fn command_and_flags(usage: &str) -> Result<(String, Flags), Error> {
    let mut args = std::env::args().skip(1);
    let command = args.next().ok_or_else(|| usage.to_owned())?;
    let mut flags = HashMap::new();
    while let Some(flag) = args.next() {
        let name = flag
            .strip_prefix("--")
            .ok_or_else(|| format!("unexpected argument {flag}"))?
            .to_owned();
        flags.insert(name, args.next().ok_or_else(|| format!("--{flag} needs a value"))?);
    }
    Ok((command, Flags(flags)))
}

/// Flags by name.
pub(crate) struct Flags(HashMap<String, String>);

impl Flags {
    pub(crate) fn get(&self, name: &str) -> Option<&String> {
        self.0.get(name)
    }

    /// A number, `default` when absent; required when `default` is `None`.
    pub(crate) fn number(&self, name: &str, default: Option<u32>) -> Result<u32, Error> {
        match (self.0.get(name), default) {
            (Some(value), _) => Ok(value.parse()?),
            (None, Some(default)) => Ok(default),
            (None, None) => Err(format!("--{name} is required").into()),
        }
    }
}

/// Writes `count` frames of the moving pattern with sensor-like noise on luma: a clean
/// synthetic pattern compresses to almost nothing and leaves the encoder idle, which no camera
/// does.
pub(crate) fn generate(out: &str, width: u32, height: u32, count: u32) -> Result<(), Error> {
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    for index in 0..u64::from(count) {
        let mut frame = TestPattern::Moving.render(width, height, index);
        let (y, _, _) = frame.planes_mut();
        y.iter_mut().for_each(|p| *p = p.saturating_add_signed(noise.next()));
        file.write_all(frame.as_bytes())?;
    }
    file.flush()?;
    Ok(())
}

/// A small deterministic noise source (xorshift), values in -6..=6.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> i8 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % 13) as i8 - 6
    }
}

/// Reads the frames one at a time, so memory holds each frame once.
pub(crate) fn read_frames(path: &str, width: u32, height: u32) -> Result<Vec<I420Frame>, Error> {
    let size = (width * height) as usize + 2 * (width.div_ceil(2) * height.div_ceil(2)) as usize;
    let length = std::fs::metadata(path)?.len() as usize;
    if length == 0 || !length.is_multiple_of(size) {
        return Err(format!("{path} is not a whole number of {width}x{height} I420 frames").into());
    }
    let mut file = std::fs::File::open(path)?;
    let mut frames = Vec::with_capacity(length / size);
    for _ in 0..length / size {
        let mut bytes = vec![0; size];
        file.read_exact(&mut bytes)?;
        frames.push(I420Frame::from_packed(width, height, bytes).ok_or("bad frame size")?);
    }
    Ok(frames)
}
