//! Sample-rate conversion: [`Resampler`].

use std::sync::{Arc, Mutex, PoisonError};

use super::{AudioError, SAMPLE_RATE};

/// Zero crossings of the sinc on each side, at the lower rate.
const HALF_TAPS: usize = 32;
/// The cut-off, as a fraction of the lower rate.
const CUTOFF: f64 = 0.45;
/// The Kaiser window's β.
const BETA: f64 = 8.6;
/// The most phases a table holds.
const MAX_PHASES: u64 = 1024;
/// Rates taken.
const RATES: std::ops::RangeInclusive<u32> = 1_000..=384_000;
/// The largest decimation ratio taken (input over output).
const MAX_DECIMATION: u32 = 16;
/// The most channels taken.
const MAX_CHANNELS: u16 = 8;
/// Bytes of filter tables kept for the next resamplers of the same rates.
const TABLE_CACHE_BYTES: usize = 4 << 20;

/// Filter tables of recent resamplers, the least recently used first.
static TABLES: Mutex<TableCache> = Mutex::new(TableCache::new(TABLE_CACHE_BYTES));

/// Converts interleaved audio from one rate to another, in streaming chunks.
///
/// The output lags the input by the filter's half length (32 samples at the lower rate) until
/// [`Resampler::flush`]; equal rates pass through untouched, with no lag.
///
/// Sample-rate conversion: a windowed-sinc low-pass (Kaiser window, β = 8.6, about -87 dB stop
/// band) evaluated at the exact fractional input position of each output sample, from a table
/// of polyphase filters.
///
/// The position of output sample *k* is *k* · in / out input samples, kept as an integer and
/// a remainder, so nothing drifts and feeding the input in any chunks gives bit-identical
/// output. When out / gcd(in, out) ≤ 1024 (every common rate: 44.1 → 48 kHz has 160 phases) the
/// table holds every phase exactly; otherwise 1024 phases are interpolated linearly. The cut-off
/// is 0.45 × the lower of the two rates (19.8 kHz from 44.1 kHz), so nothing aliases.
#[derive(Clone)]
pub struct Resampler {
    in_rate: u32,
    out_rate: u32,
    channels: usize,
    /// Input frames per output frame: whole part and remainder (over `out_rate`).
    step_whole: usize,
    step_rem: u64,
    /// Taps on each side of the position.
    half: usize,
    /// `phases + 1` rows of `2 · half` coefficients; row `p` is for the fractional position
    /// `p / phases`. Shared by the resamplers of the same rates.
    table: Arc<[f32]>,
    phases: u64,
    /// Whether `phases` divides `out_rate`'s positions exactly (no interpolation).
    exact: bool,
    gcd: u64,
    /// Input samples still needed, one vector per channel (contiguous for the dot products).
    history: Vec<Vec<f32>>,
    /// The samples of a frame not yet complete (input cut inside a frame).
    partial: Vec<f32>,
    /// Interpolated coefficients, when the table is not exact.
    coefficients: Vec<f32>,
    /// The next output's position: a frame index into `history` and a remainder over `out_rate`.
    pos: usize,
    frac: u64,
    /// Input frames taken and output frames given since the start (or the last flush).
    inputs: u64,
    outputs: u64,
    /// Scratch for the 16-bit interface.
    scratch_in: Vec<f32>,
    scratch_out: Vec<f32>,
}

impl std::fmt::Debug for Resampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resampler")
            .field("in_rate", &self.in_rate)
            .field("out_rate", &self.out_rate)
            .field("channels", &self.channels)
            .field("taps", &(2 * self.half))
            .field("phases", &self.phases)
            .finish_non_exhaustive()
    }
}

/// What a filter table is computed from (the cut-off as the bits of an `f64`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TableKey {
    half: usize,
    phases: u64,
    cutoff: u64,
}

/// Filter tables kept after use, up to a number of bytes, so that a program playing clip after
/// clip (a source each) builds the table of their rates once.
struct TableCache {
    /// The least recently used first.
    tables: Vec<(TableKey, Arc<[f32]>)>,
    max_bytes: usize,
}

impl TableCache {
    const fn new(max_bytes: usize) -> Self {
        Self { tables: Vec::new(), max_bytes }
    }

    /// The table of `key`, now the most recently used.
    fn get(&mut self, key: TableKey) -> Option<Arc<[f32]>> {
        let index = self.tables.iter().position(|(k, _)| *k == key)?;
        let entry = self.tables.remove(index);
        let table = entry.1.clone();
        self.tables.push(entry);
        Some(table)
    }

    /// Keeps `table` as the most recently used, dropping the least recently used tables beyond
    /// the budget (a table larger than the whole budget is not kept).
    fn insert(&mut self, key: TableKey, table: Arc<[f32]>) {
        if std::mem::size_of_val::<[f32]>(&table) > self.max_bytes {
            return;
        }
        self.tables.retain(|(k, _)| *k != key);
        self.tables.push((key, table));
        while self.bytes() > self.max_bytes {
            self.tables.remove(0);
        }
    }

    fn bytes(&self) -> usize {
        self.tables.iter().map(|(_, t)| std::mem::size_of_val::<[f32]>(t)).sum()
    }
}

/// The table of `key`: a kept one, or one built now (outside the lock) and kept.
fn shared_table(key: TableKey) -> Arc<[f32]> {
    let cached = TABLES.lock().unwrap_or_else(PoisonError::into_inner).get(key);
    if let Some(table) = cached {
        return table;
    }
    let table: Arc<[f32]> =
        Resampler::build_table(key.half, key.phases, f64::from_bits(key.cutoff)).into();
    TABLES.lock().unwrap_or_else(PoisonError::into_inner).insert(key, table.clone());
    table
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// The modified Bessel function of the first kind, order 0 (power series).
fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let half = x / 2.0;
    for k in 1..64 {
        term *= (half / f64::from(k)).powi(2);
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

impl Resampler {
    /// A converter of `channels` interleaved channels (1..=8) from `in_rate` to `out_rate`
    /// (each 1 kHz..=384 kHz, at most 16:1 down).
    pub fn new(in_rate: u32, out_rate: u32, channels: u16) -> Result<Self, AudioError> {
        for rate in [in_rate, out_rate] {
            if !RATES.contains(&rate) {
                return Err(AudioError::SampleRate(rate));
            }
        }
        if in_rate > out_rate.saturating_mul(MAX_DECIMATION) {
            return Err(AudioError::SampleRate(in_rate));
        }
        if !(1..=MAX_CHANNELS).contains(&channels) {
            return Err(AudioError::Channels(channels));
        }
        let g = gcd(u64::from(in_rate), u64::from(out_rate));
        let exact_phases = u64::from(out_rate) / g;
        let (phases, exact) =
            if exact_phases <= MAX_PHASES { (exact_phases, true) } else { (MAX_PHASES, false) };
        // Down-sampling widens the filter in input samples by the ratio.
        let scale = (f64::from(out_rate) / f64::from(in_rate)).min(1.0);
        let half = if in_rate == out_rate { 0 } else { (HALF_TAPS as f64 / scale).ceil() as usize };
        let mut resampler = Self {
            in_rate,
            out_rate,
            channels: usize::from(channels),
            step_whole: (in_rate / out_rate) as usize,
            step_rem: u64::from(in_rate % out_rate),
            half,
            table: Arc::new([]),
            phases,
            exact,
            gcd: g,
            history: vec![Vec::new(); usize::from(channels)],
            partial: Vec::new(),
            coefficients: vec![0.0; 2 * half],
            pos: 0,
            frac: 0,
            inputs: 0,
            outputs: 0,
            scratch_in: Vec::new(),
            scratch_out: Vec::new(),
        };
        if half > 0 {
            let key = TableKey { half, phases, cutoff: (CUTOFF * scale).to_bits() };
            resampler.table = shared_table(key);
        }
        resampler.reset();
        tracing::debug!(?resampler, "resampler");
        Ok(resampler)
    }

    /// A converter from `in_rate` to 48 kHz.
    pub fn to_48k(in_rate: u32, channels: u16) -> Result<Self, AudioError> {
        Self::new(in_rate, SAMPLE_RATE, channels)
    }

    /// Row `p` (0..=phases) holds h(m − p/phases) for m = 1 − half ..= half, normalised to a
    /// gain of exactly 1 at 0 Hz.
    ///
    /// h is even, so row `phases − p` is row `p` reversed: only the first half of the rows is
    /// computed (the Bessel function and the sine of each tap are most of a resampler's setup).
    fn build_table(half: usize, phases: u64, cutoff: f64) -> Vec<f32> {
        let taps = 2 * half;
        let norm = bessel_i0(BETA);
        let mut table = Vec::with_capacity(taps * (phases as usize + 1));
        let mut row = vec![0f64; taps];
        for p in 0..=phases {
            if 2 * p > phases {
                let mirror = (phases - p) as usize * taps;
                table.extend_from_within(mirror..mirror + taps);
                let start = table.len() - taps;
                table[start..].reverse();
                continue;
            }
            let offset = p as f64 / phases as f64;
            for (index, value) in row.iter_mut().enumerate() {
                let x = index as f64 + 1.0 - half as f64 - offset;
                let sinc = if x == 0.0 {
                    1.0
                } else {
                    let a = std::f64::consts::PI * 2.0 * cutoff * x;
                    a.sin() / a
                };
                let r = x / half as f64;
                let window = if r.abs() >= 1.0 {
                    0.0
                } else {
                    bessel_i0(BETA * (1.0 - r * r).sqrt()) / norm
                };
                *value = 2.0 * cutoff * sinc * window;
            }
            let sum: f64 = row.iter().sum();
            table.extend(row.iter().map(|v| (v / sum) as f32));
        }
        table
    }

    /// Input rate in Hz.
    pub fn input_rate(&self) -> u32 {
        self.in_rate
    }

    /// Output rate in Hz.
    pub fn output_rate(&self) -> u32 {
        self.out_rate
    }

    /// Interleaved channels.
    pub fn channels(&self) -> u16 {
        self.channels as u16
    }

    /// Whether the rates are equal and samples pass through untouched.
    pub fn is_passthrough(&self) -> bool {
        self.half == 0
    }

    /// Forgets the input so far: the next input starts a new stream.
    pub fn reset(&mut self) {
        // Silence before the first sample, so that output 0 sits on input 0.
        for channel in &mut self.history {
            channel.clear();
            channel.resize(self.half.saturating_sub(1), 0.0);
        }
        self.partial.clear();
        self.pos = self.half.saturating_sub(1);
        self.frac = 0;
        self.inputs = 0;
        self.outputs = 0;
    }

    /// Converts `input` (interleaved, values around ±1.0; any length, even a partial frame)
    /// and appends what can be computed so far to `output`.
    pub fn process(&mut self, input: &[f32], output: &mut Vec<f32>) {
        if self.is_passthrough() {
            output.extend_from_slice(input);
            return;
        }
        let mut input = input;
        if !self.partial.is_empty() {
            let missing = (self.channels - self.partial.len()).min(input.len());
            self.partial.extend_from_slice(&input[..missing]);
            input = &input[missing..];
            if self.partial.len() == self.channels {
                let frame = std::mem::take(&mut self.partial);
                self.push_frames(&frame);
            }
        }
        let whole = input.len() / self.channels * self.channels;
        self.push_frames(&input[..whole]);
        self.partial.extend_from_slice(&input[whole..]);
        self.run(u64::MAX, output);
    }

    /// Ends the stream: appends the outputs still owed for the input given so far (the filter's
    /// tail, computed against silence), then starts afresh as [`Resampler::reset`] does.
    pub fn flush(&mut self, output: &mut Vec<f32>) {
        if !self.is_passthrough() {
            // Outputs whose position lies before the end of the input: ceil(inputs · out / in).
            let owed = (self.inputs * u64::from(self.out_rate)).div_ceil(u64::from(self.in_rate));
            self.partial.clear();
            while self.outputs < owed {
                for channel in &mut self.history {
                    channel.resize(channel.len() + self.half + 1, 0.0);
                }
                self.run(owed, output);
            }
        }
        self.reset();
    }

    /// 16-bit samples in and out (rounded, saturated), as [`Resampler::process`].
    pub fn process_i16(&mut self, input: &[i16], output: &mut Vec<i16>) {
        let mut scratch_in = std::mem::take(&mut self.scratch_in);
        let mut scratch_out = std::mem::take(&mut self.scratch_out);
        scratch_in.clear();
        scratch_in.extend(input.iter().map(|&s| f32::from(s) / 32768.0));
        scratch_out.clear();
        self.process(&scratch_in, &mut scratch_out);
        output.extend(scratch_out.iter().map(|&s| to_i16(s)));
        self.scratch_in = scratch_in;
        self.scratch_out = scratch_out;
    }

    /// 16-bit samples, as [`Resampler::flush`].
    pub fn flush_i16(&mut self, output: &mut Vec<i16>) {
        let mut tail = Vec::new();
        self.flush(&mut tail);
        output.extend(tail.iter().map(|&s| to_i16(s)));
    }

    /// Appends whole interleaved frames to the per-channel history.
    fn push_frames(&mut self, interleaved: &[f32]) {
        if self.channels == 1 {
            self.history[0].extend_from_slice(interleaved);
        } else {
            for frame in interleaved.chunks_exact(self.channels) {
                for (channel, &sample) in self.history.iter_mut().zip(frame) {
                    channel.push(sample);
                }
            }
        }
        self.inputs += (interleaved.len() / self.channels) as u64;
    }

    /// Computes outputs while the input reaches far enough and fewer than `limit` were given.
    fn run(&mut self, limit: u64, output: &mut Vec<f32>) {
        let taps = 2 * self.half;
        let frames = self.history[0].len();
        while self.pos + self.half < frames && self.outputs < limit {
            let row = if self.exact {
                let p = (self.frac / self.gcd) as usize;
                &self.table[p * taps..(p + 1) * taps]
            } else {
                let position = self.frac as f64 * self.phases as f64 / f64::from(self.out_rate);
                let p = position as usize;
                let w = (position - p as f64) as f32;
                let a = &self.table[p * taps..(p + 1) * taps];
                let b = &self.table[(p + 1) * taps..(p + 2) * taps];
                lerp(&mut self.coefficients, a, b, w);
                &self.coefficients[..]
            };
            let first = self.pos + 1 - self.half;
            for channel in &self.history {
                output.push(dot(&channel[first..first + taps], row));
            }
            self.outputs += 1;
            self.pos += self.step_whole;
            self.frac += self.step_rem;
            if self.frac >= u64::from(self.out_rate) {
                self.frac -= u64::from(self.out_rate);
                self.pos += 1;
            }
        }
        // Frames before the next output's window are no longer needed.
        let done = (self.pos + 1).saturating_sub(self.half).min(frames);
        if done > 0 {
            for channel in &mut self.history {
                channel.drain(..done);
            }
            self.pos -= done;
        }
    }
}

/// `out[i] = a[i] + (b[i] - a[i]) · w`, for equally long slices, eight at a time (as [`dot`]).
fn lerp(out: &mut [f32], a: &[f32], b: &[f32], w: f32) {
    let (out_chunks, out_rest) = out.as_chunks_mut::<8>();
    let (a_chunks, a_rest) = a.as_chunks::<8>();
    let (b_chunks, b_rest) = b.as_chunks::<8>();
    for ((o, x), y) in out_chunks.iter_mut().zip(a_chunks).zip(b_chunks) {
        *o = [
            x[0] + (y[0] - x[0]) * w,
            x[1] + (y[1] - x[1]) * w,
            x[2] + (y[2] - x[2]) * w,
            x[3] + (y[3] - x[3]) * w,
            x[4] + (y[4] - x[4]) * w,
            x[5] + (y[5] - x[5]) * w,
            x[6] + (y[6] - x[6]) * w,
            x[7] + (y[7] - x[7]) * w,
        ];
    }
    for ((o, &x), &y) in out_rest.iter_mut().zip(a_rest).zip(b_rest) {
        *o = x + (y - x) * w;
    }
}

/// The dot product of two equally long slices, in eight lanes (so that it vectorises; the
/// order of the additions is fixed, so results do not depend on how the input was chunked).
///
/// The eight sums are written out rather than looped over: the same code once optimised, and an
/// instrumented build (coverage-guided fuzzing) pays one loop test per eight taps, not nine.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut l = [0f32; 8];
    let (a_chunks, a_rest) = a.as_chunks::<8>();
    let (b_chunks, b_rest) = b.as_chunks::<8>();
    for (x, y) in a_chunks.iter().zip(b_chunks) {
        l = [
            l[0] + x[0] * y[0],
            l[1] + x[1] * y[1],
            l[2] + x[2] * y[2],
            l[3] + x[3] * y[3],
            l[4] + x[4] * y[4],
            l[5] + x[5] * y[5],
            l[6] + x[6] * y[6],
            l[7] + x[7] * y[7],
        ];
    }
    let tail: f32 = a_rest.iter().zip(b_rest).map(|(x, y)| x * y).sum();
    l.iter().sum::<f32>() + tail
}

/// A sample around ±1.0 as 16 bits, rounded and saturated.
pub(crate) fn to_i16(sample: f32) -> i16 {
    (sample * 32768.0).round().clamp(-32768.0, 32767.0) as i16
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, frequency: f64, seconds: f64) -> Vec<f32> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| {
                (0.5 * (2.0 * std::f64::consts::PI * frequency * i as f64 / f64::from(rate)).sin())
                    as f32
            })
            .collect()
    }

    /// Fits a·sin + b·cos at `frequency` (and DC) by least squares: the fitted amplitude and the
    /// residual's power relative to the fitted tone's, in dB.
    fn fit(samples: &[f32], rate: u32, frequency: f64) -> (f64, f64) {
        let w = 2.0 * std::f64::consts::PI * frequency / f64::from(rate);
        // The basis is nearly orthogonal over many periods: project, then measure the rest.
        let n = samples.len() as f64;
        let (mut s, mut c, mut dc) = (0.0, 0.0, 0.0);
        for (i, &x) in samples.iter().enumerate() {
            let x = f64::from(x);
            s += x * (w * i as f64).sin();
            c += x * (w * i as f64).cos();
            dc += x;
        }
        let (a, b, dc) = (2.0 * s / n, 2.0 * c / n, dc / n);
        let residual: f64 = samples
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let model = a * (w * i as f64).sin() + b * (w * i as f64).cos() + dc;
                (f64::from(x) - model).powi(2)
            })
            .sum::<f64>()
            / n;
        let amplitude = (a * a + b * b).sqrt();
        (amplitude, 10.0 * (residual / (amplitude * amplitude / 2.0)).log10())
    }

    fn convert(resampler: &mut Resampler, input: &[f32]) -> Vec<f32> {
        let mut out = Vec::new();
        resampler.process(input, &mut out);
        resampler.flush(&mut out);
        out
    }

    #[test]
    fn resamplers_of_the_same_rates_share_one_table() {
        let first = Resampler::to_48k(44_100, 1).unwrap();
        let second = Resampler::to_48k(44_100, 2).unwrap();
        assert!(Arc::ptr_eq(&first.table, &second.table));
        let other = Resampler::to_48k(22_050, 1).unwrap();
        assert!(!Arc::ptr_eq(&first.table, &other.table));
        // The same table as one built anew.
        let key = TableKey { half: first.half, phases: first.phases, cutoff: CUTOFF.to_bits() };
        let built = Resampler::build_table(key.half, key.phases, CUTOFF);
        assert_eq!(&first.table[..], &built[..]);
    }

    #[test]
    fn the_table_cache_keeps_recent_tables_within_its_budget() {
        let key = |half| TableKey { half, phases: 1, cutoff: 0 };
        let table = |len: usize| -> Arc<[f32]> { vec![0.0; len].into() };
        // Room for 100 floats.
        let mut cache = TableCache::new(400);
        cache.insert(key(1), table(40));
        cache.insert(key(2), table(40));
        assert!(cache.get(key(1)).is_some(), "now the most recently used");
        cache.insert(key(3), table(40));
        assert!(cache.get(key(2)).is_none(), "the least recently used went");
        assert!(cache.get(key(1)).is_some() && cache.get(key(3)).is_some());
        assert!(cache.bytes() <= 400);
        // Inserting a key again replaces its table.
        cache.insert(key(3), table(10));
        assert_eq!(cache.get(key(3)).unwrap().len(), 10);
        assert_eq!(cache.tables.len(), 2);
        // A table over the whole budget is not kept, and takes nothing with it.
        cache.insert(key(4), table(101));
        assert!(cache.get(key(4)).is_none());
        assert_eq!(cache.tables.len(), 2);
        // One that needs room drops the least recently used until it fits.
        cache.insert(key(5), table(95));
        assert_eq!(cache.tables.len(), 1);
        assert!(cache.get(key(5)).is_some());
    }

    #[test]
    fn mirrored_rows_equal_the_kernel_evaluated_directly() {
        // 7 phases: rows 4..=7 are rows 3..=0 reversed; each must match h at its own offsets.
        let (half, phases, cutoff) = (5, 7u64, 0.45);
        let table = Resampler::build_table(half, phases, cutoff);
        let taps = 2 * half;
        assert_eq!(table.len(), taps * (phases as usize + 1));
        let norm = bessel_i0(BETA);
        for p in 0..=phases {
            let direct: Vec<f64> = (0..taps)
                .map(|index| {
                    let x = index as f64 + 1.0 - half as f64 - p as f64 / phases as f64;
                    let a = std::f64::consts::PI * 2.0 * cutoff * x;
                    let sinc = if x == 0.0 { 1.0 } else { a.sin() / a };
                    let r = x / half as f64;
                    let window = if r.abs() >= 1.0 {
                        0.0
                    } else {
                        bessel_i0(BETA * (1.0 - r * r).sqrt()) / norm
                    };
                    sinc * window
                })
                .collect();
            let sum: f64 = direct.iter().sum();
            let row = &table[p as usize * taps..(p as usize + 1) * taps];
            for (got, want) in row.iter().zip(&direct) {
                assert!((f64::from(*got) - want / sum).abs() < 1e-6, "row {p}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn a_1khz_tone_from_44_1_khz_stays_1khz_and_clean() {
        let mut resampler = Resampler::to_48k(44_100, 1).unwrap();
        let out = convert(&mut resampler, &sine(44_100, 1000.0, 1.0));
        assert_eq!(out.len(), 48_000);
        // Whole periods of 1 kHz, away from the edges where the filter meets the silence.
        let (amplitude, residual_db) = fit(&out[2_400..45_600], 48_000, 1000.0);
        assert!((amplitude - 0.5).abs() < 0.001, "amplitude {amplitude}");
        assert!(residual_db < -80.0, "harmonics, images and noise at {residual_db:.1} dB");
        // The same tone read as 1.01 kHz fits badly: the frequency is right.
        assert!(fit(&out[2_400..45_600], 48_000, 1010.0).1 > -10.0);
    }

    #[test]
    fn down_sampling_removes_what_the_output_cannot_hold() {
        let mut resampler = Resampler::to_48k(96_000, 1).unwrap();
        // 30 kHz would alias to 18 kHz at 48 kHz.
        let out = convert(&mut resampler, &sine(96_000, 30_000.0, 0.5));
        assert_eq!(out.len(), 24_000);
        let rms = (out[1000..23_000].iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / 22_000.0)
            .sqrt();
        assert!(20.0 * (rms / 0.354).log10() < -70.0, "alias at rms {rms}");
        // 5 kHz passes.
        let out = convert(&mut resampler, &sine(96_000, 5_000.0, 0.5));
        let (amplitude, residual_db) = fit(&out[1200..22_800], 48_000, 5_000.0);
        assert!(
            (amplitude - 0.5).abs() < 0.001 && residual_db < -80.0,
            "{amplitude} {residual_db}"
        );
    }

    #[test]
    fn odd_chunks_give_the_same_output_as_one() {
        for (rate, channels) in [(44_100, 2), (8_000, 1), (22_050, 1), (44_101, 1), (96_000, 2)] {
            let mono = sine(rate, 440.0, 0.3);
            let input: Vec<f32> =
                mono.iter().flat_map(|&x| std::iter::repeat_n(x, usize::from(channels))).collect();
            let mut whole = Resampler::to_48k(rate, channels).unwrap();
            let expected = convert(&mut whole, &input);
            let mut chunked = Resampler::to_48k(rate, channels).unwrap();
            let mut out = Vec::new();
            let mut rest = &input[..];
            for size in [1usize, 7, 13, 441, 3, 1000, 2].iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at((*size).min(rest.len()));
                chunked.process(chunk, &mut out);
                rest = tail;
            }
            chunked.flush(&mut out);
            assert_eq!(out, expected, "{rate} Hz, {channels} channels");
            let frames = (mono.len() as u64 * 48_000).div_ceil(u64::from(rate));
            assert_eq!(out.len() as u64, frames * u64::from(channels));
        }
    }

    #[test]
    fn equal_rates_pass_through_and_bad_ones_are_refused() {
        let mut same = Resampler::to_48k(48_000, 2).unwrap();
        assert!(same.is_passthrough());
        let mut out = Vec::new();
        same.process_i16(&[1, 2, 3, -4], &mut out);
        same.flush_i16(&mut out);
        assert_eq!(out, [1, 2, 3, -4]);
        assert!(matches!(Resampler::to_48k(0, 1), Err(AudioError::SampleRate(0))));
        assert!(matches!(Resampler::to_48k(999, 1), Err(AudioError::SampleRate(999))));
        assert!(matches!(Resampler::to_48k(u32::MAX, 1), Err(AudioError::SampleRate(_))));
        assert!(matches!(Resampler::new(384_000, 8_000, 1), Err(AudioError::SampleRate(384_000))));
        assert!(matches!(Resampler::to_48k(44_100, 0), Err(AudioError::Channels(0))));
        assert!(matches!(Resampler::to_48k(44_100, 9), Err(AudioError::Channels(9))));
    }

    #[test]
    fn sixteen_bit_samples_round_and_saturate() {
        let mut resampler = Resampler::to_48k(16_000, 1).unwrap();
        let mut out = Vec::new();
        // A full-scale square wave overshoots (Gibbs): the output saturates instead of wrapping.
        let square: Vec<i16> =
            (0..1600).map(|i| if i % 16 < 8 { i16::MAX } else { i16::MIN }).collect();
        resampler.process_i16(&square, &mut out);
        resampler.flush_i16(&mut out);
        assert_eq!(out.len(), 4800);
        assert!(out.contains(&i16::MAX) && out.contains(&i16::MIN));
        // Positive half-periods stay positive: nothing wrapped around.
        assert!(
            out[576..4224].chunks(48).all(|period| period[12] > 20_000 && period[36] < -20_000)
        );
    }
}
