//! Polyphase sample-rate conversion (ResampleNode, `rust_native` runtime).
//!
//! The filter is the one `remotemedia_ray/nodes/resampling.py` documents and
//! designs, computed the same way in f64 (quality presets, Kaiser-windowed
//! sinc at the up-sampled rate, odd length, `L/M` reduction and limits, phase
//! table `P[r, t]` with `s_min`/`s_max`/`T`, exact delay compensation, output
//! length `(2*frames*L + M) // (2*M)`, zeros outside the input, the same
//! streaming emission). Only the arithmetic of the convolution differs: it is
//! f32, and both runtimes meet the same quality specification rather than
//! agreeing bit for bit (they agree to about 1e-7 on full-scale audio).
//!
//! # The dot product of one output
//!
//! Output `k` has `k*M = q*L + r` and reads the `T` inputs from
//! `a = q + s_min`. With `o = a mod 8` and `base = a - o` (a multiple of 8),
//! it is computed as 8 lanes over `nv = ceil((T + 7) / 8)` vectors:
//!
//! ```text
//! acc[l] = 0;  for v in 0..nv: acc[l] = fma(c[8v + l], x[base + 8v + l], acc[l])
//! y      = ((acc0 + acc1) + (acc2 + acc3)) + ((acc4 + acc5) + (acc6 + acc7))
//! ```
//!
//! where `c[p] = P[r, p - o]` (zero outside `0..T`): tap `t` sits in lane
//! `(t + o) mod 8`. Since `o` depends only on the absolute input index, every
//! output has one fixed sequence of f32 operations, whatever the chunking,
//! the batching or the kernel that computes it, so streamed output is
//! bit-identical to one call. The products of zero coefficients with the
//! (finite) samples past the window are exact no-ops (an accumulator that
//! starts at `+0` never becomes `-0`).
//!
//! # Kernels (AVX2 + FMA, chosen at run time)
//!
//! Samples are kept per channel in 32-byte-aligned f32 buffers whose first
//! element has an absolute index that is a multiple of 8, so every `x` vector
//! load is aligned. Coefficients are f32 rows: 8 pre-shifted, aligned rows
//! per phase (row `o` holds `c` above) when that table is small (up to
//! 256 KiB: 12 KiB for 48k -> 16k), else one zero-padded row per phase read
//! unaligned from `8 - o` (230 KiB for 44.1k -> 16k, which stays in L2).
//!
//! The FMA units can do two 8-lane FMAs per cycle (latency 4), the load
//! units two 32-byte loads: a plain dot product (two loads per FMA) runs at
//! half speed. The kernels share loads between outputs instead:
//!
//! * Outputs `P = L * 8/gcd(M, 8)` apart ("stripes") have the same phase and
//!   offset `o`, hence the same coefficient vectors, and inputs `V*M` frames
//!   apart. Consecutive outputs whose windows start in the same aligned
//!   block of 8 read the same input vectors.
//! * `tile3x4` computes 3 such consecutive outputs in 4 stripes: per vector
//!   3 coefficient and 4 input loads feed 12 FMAs into 12 independent
//!   accumulators, so the loop runs at the FMA limit; `tile2x6` (2 outputs x
//!   6 stripes) and `stripe12` (1 x 12, 13 loads per 12 FMAs) cover the other
//!   run lengths. A span of `12 P` outputs is done this way (`4 P` with
//!   `tile3x4`/`tile2x4`/`stripe::<4>` for the rest of a batch).
//! * `gather4` (four outputs with their own coefficients) and `stripe::<1>`
//!   take what is left: chunks shorter than `4 P` outputs (e.g. under 0.3 s
//!   at 44.1k -> 16k) run at roughly half the speed of the tiles.
//! * The hot loops are inline assembly: LLVM's loop strength reduction turns
//!   the 12 stripe addresses into chains of integer adds (and spills), while
//!   base-plus-scaled-step addressing needs only 4-5 pointer increments.
//!
//! The lanes of up to twelve outputs are reduced with `vhaddps` (same tree
//! as above). CPUs without AVX2/FMA use a portable 8-lane loop with separate
//! multiply and add (results within ~1e-7 of the FMA path; each CPU always
//! uses one of the two, so streaming stays exact).

use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::sync::{Arc, Mutex, OnceLock};

use super::{KernelError, Sample, check_finite, simd};
use crate::avx2_dispatch;

/// The highest sample rate accepted, in Hz.
pub const MAX_RATE: i64 = 1_536_000;

/// The largest `L` or `M` of the reduced ratio `target/source = L/M`.
pub const MAX_RATIO_TERM: u64 = 8192;

/// The most channels a [`Resampler`] takes (each keeps its own history).
pub const MAX_CHANNELS: usize = 1 << 16;

/// How many designs (per `(L, M, quality)`) are kept for reuse.
const DESIGN_CACHE_SIZE: usize = 16;

/// Outputs that share one coefficient vector in the main kernel.
const STRIPES: usize = 12;

/// Phase tables up to this size are stored as 8 pre-shifted rows per phase,
/// so the coefficient loads are aligned too (48k -> 16k: 12 KB).
const SHIFTED_ROWS_BYTES: usize = 1 << 18;

/// Input frames appended per step of a large chunk: bounds the working set
/// (the samples stay in L2) without changing any output.
const BLOCK_FRAMES: usize = 1 << 14;

/// A quality preset of [`Resampler`] (see `QUALITY_PRESETS` in resampling.py).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Quality {
    /// Passband 0.80, stopband 1.05 of the lower Nyquist, 60 dB.
    Low,
    /// Passband 0.85, stopband 1.05, 100 dB.
    Medium,
    /// Passband 0.90, stopband 1.05, 140 dB (the default).
    High,
    /// Passband 0.95, stopband 1.00, 160 dB.
    VeryHigh,
}

impl Quality {
    /// Every quality, cheapest first.
    pub const ALL: [Quality; 4] = [
        Quality::Low,
        Quality::Medium,
        Quality::High,
        Quality::VeryHigh,
    ];

    /// The name used in manifests: `"low"`, `"medium"`, `"high"` or `"very_high"`.
    pub fn name(self) -> &'static str {
        match self {
            Quality::Low => "low",
            Quality::Medium => "medium",
            Quality::High => "high",
            Quality::VeryHigh => "very_high",
        }
    }

    /// The quality called `name`, or `InvalidParameter` naming the allowed values.
    pub fn from_name(name: &str) -> Result<Self, KernelError> {
        Quality::ALL
            .into_iter()
            .find(|q| q.name() == name)
            .ok_or_else(|| KernelError::InvalidParameter {
                name: "quality",
                reason: format!(
                    "must be one of 'low', 'medium', 'high', 'very_high', got '{}'",
                    name.escape_debug()
                ),
            })
    }

    /// `(passband, stopband, attenuation_db)`: edges as fractions of the lower Nyquist.
    pub fn preset(self) -> (f64, f64, f64) {
        match self {
            Quality::Low => (0.80, 1.05, 60.0),
            Quality::Medium => (0.85, 1.05, 100.0),
            Quality::High => (0.90, 1.05, 140.0),
            Quality::VeryHigh => (0.95, 1.00, 160.0),
        }
    }
}

impl std::str::FromStr for Quality {
    type Err = KernelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quality::from_name(s)
    }
}

/// The designed polyphase filter for one reduced ratio and quality (the
/// `FilterDesign` of resampling.py).
#[derive(Debug, Clone, PartialEq)]
pub struct FilterDesign {
    /// `L`, the up-sampling factor of the reduced ratio.
    pub up: u64,
    /// `M`, the down-sampling factor.
    pub down: u64,
    /// The quality it was designed for.
    pub quality: Quality,
    /// Cutoff `fc` in cycles per up-sampled sample.
    pub cutoff: f64,
    /// Kaiser window parameter.
    pub beta: f64,
    /// `N`, the odd prototype length.
    pub num_taps: usize,
    /// `D = (N - 1) / 2`, the group delay in up-sampled samples.
    pub delay: usize,
    /// `s_min <= 0`, the offset of an output's first input from `floor(k*M/L)`.
    pub first_offset: i64,
    /// `T`, the taps per output.
    pub taps_per_phase: usize,
    /// The `N` prototype taps `h` (gain `L`).
    pub prototype: Vec<f64>,
    /// The `L x T` phase table `P`, row-major.
    pub phases: Vec<f64>,
}

impl FilterDesign {
    /// `s_max`: input frames past `floor(k*M/L)` that output `k` needs.
    pub fn lookahead(&self) -> i64 {
        self.first_offset + self.taps_per_phase as i64 - 1
    }

    /// Row `r` of the phase table.
    pub fn phase(&self, r: usize) -> &[f64] {
        let t = self.taps_per_phase;
        self.phases.get(r * t..(r + 1) * t).unwrap_or(&[])
    }
}

/// `I0(x)`, the modified Bessel function of the first kind of order 0, by its
/// power series `sum_k ((x/2)^k / k!)^2` (all terms positive: no cancellation).
pub fn bessel_i0(x: f64) -> f64 {
    let q = 0.25 * x * x;
    let mut term = 1.0;
    let mut sum = 1.0;
    let mut k = 1.0;
    while k < 500.0 {
        term *= q / (k * k);
        sum += term;
        if term <= sum * 1e-17 {
            break;
        }
        k += 1.0;
    }
    sum
}

fn kaiser_beta(attenuation_db: f64) -> f64 {
    if attenuation_db > 50.0 {
        0.1102 * (attenuation_db - 8.7)
    } else if attenuation_db >= 21.0 {
        0.5842 * (attenuation_db - 21.0).powf(0.4) + 0.07886 * (attenuation_db - 21.0)
    } else {
        0.0
    }
}

/// `sin(pi x) / (pi x)`, as `numpy.sinc`.
fn sinc(x: f64) -> f64 {
    let y = std::f64::consts::PI * if x == 0.0 { 1.0e-20 } else { x };
    y.sin() / y
}

fn check_rate(rate: i64, name: &'static str) -> Result<u64, KernelError> {
    if (1..=MAX_RATE).contains(&rate) {
        Ok(rate as u64)
    } else {
        Err(KernelError::InvalidParameter {
            name,
            reason: format!("must be between 1 and {MAX_RATE} Hz, got {rate}"),
        })
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `(L, M)` with `target/source = L/M` in lowest terms, both bounded.
pub fn reduced_ratio(source_rate: i64, target_rate: i64) -> Result<(u64, u64), KernelError> {
    let source = check_rate(source_rate, "source_rate").map_err(KernelError::into_input)?;
    let target = check_rate(target_rate, "target_rate")?;
    let common = gcd(source, target);
    let (up, down) = (target / common, source / common);
    if up.max(down) > MAX_RATIO_TERM {
        return Err(KernelError::InvalidParameter {
            name: "ratio",
            reason: format!(
                "source_rate {source} -> target_rate {target} reduces to the ratio {up}/{down}; \
                 its terms must be at most {MAX_RATIO_TERM} (pick rates with a larger common divisor)"
            ),
        });
    }
    Ok((up, down))
}

/// The output length for `frames` input frames:
/// `(2*frames*target + source) // (2*source)`, i.e. `round_half_up(frames * target / source)`.
/// Saturates at `u64::MAX` (no input is that long).
pub fn output_frames(frames: u64, source_rate: u64, target_rate: u64) -> u64 {
    if source_rate == 0 {
        return 0;
    }
    let n = 2 * frames as u128 * target_rate as u128 + source_rate as u128;
    u64::try_from(n / (2 * source_rate as u128)).unwrap_or(u64::MAX)
}

/// The filter [`Resampler`] uses for these rates and quality (`None` when the
/// rates are equal: no filtering).
pub fn design_filter(
    source_rate: i64,
    target_rate: i64,
    quality: Quality,
) -> Result<Option<Arc<FilterDesign>>, KernelError> {
    let (up, down) = reduced_ratio(source_rate, target_rate)?;
    if up == down {
        return Ok(None);
    }
    Ok(Some(Arc::clone(&plan(up, down, quality).design)))
}

fn design(up: u64, down: u64, quality: Quality) -> FilterDesign {
    let (passband, stopband, attenuation) = quality.preset();
    let span = (2 * up.max(down)) as f64;
    let cutoff = (passband + stopband) / 2.0 / span;
    let width = (stopband - passband) / span;
    let raw = ((attenuation - 7.95) / (2.285 * 2.0 * std::f64::consts::PI * width) + 1.0).ceil();
    // At most ~3.5 million taps (L or M = 8192 at very_high): fits usize.
    let mut num_taps = raw as usize;
    num_taps += 1 - num_taps % 2;
    let delay = (num_taps - 1) / 2;
    let beta = kaiser_beta(attenuation);
    let alpha = delay as f64;
    let i0_beta = bessel_i0(beta);
    let gain = (up * 2) as f64 * cutoff;
    let two_fc = 2.0 * cutoff;
    let tap = |n: usize| {
        let ratio = (n as f64 - alpha) / alpha;
        let window = if num_taps == 1 {
            1.0
        } else {
            bessel_i0(beta * (1.0 - ratio * ratio).sqrt()) / i0_beta
        };
        let m = n as f64 - alpha;
        gain * sinc(two_fc * m) * window
    };
    // Symmetric (exactly, in both runtimes: n - D and D - n are exact
    // negatives), so half of the taps are mirrored rather than computed.
    let mut prototype: Vec<f64> = (0..=delay).map(tap).collect();
    for n in (0..delay).rev() {
        prototype.push(prototype[n]);
    }

    let delay_i = delay as i64;
    let up_i = up as i64;
    let first_offset = -(delay_i / up_i);
    let last_offset = (up_i - 1 + delay_i) / up_i;
    let taps = (last_offset - first_offset + 1) as usize;
    let mut phases = vec![0.0; up as usize * taps];
    for r in 0..up_i {
        for t in 0..taps as i64 {
            let index = r - (first_offset + t) * up_i + delay_i;
            if (0..num_taps as i64).contains(&index) {
                phases[r as usize * taps + t as usize] = prototype[index as usize];
            }
        }
    }
    FilterDesign {
        up,
        down,
        quality,
        cutoff,
        beta,
        num_taps,
        delay,
        first_offset,
        taps_per_phase: taps,
        prototype,
        phases,
    }
}

/// A 32-byte-aligned block of eight f32.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(32))]
struct Lane8([f32; 8]);

/// A growable f32 buffer whose start is 32-byte aligned.
#[derive(Debug, Clone, Default)]
struct AlignedBuf {
    blocks: Vec<Lane8>,
}

impl AlignedBuf {
    fn zeros(len: usize) -> Self {
        AlignedBuf {
            blocks: vec![Lane8::default(); len.div_ceil(8)],
        }
    }

    fn len(&self) -> usize {
        self.blocks.len() * 8
    }

    /// Grows to at least `len` floats (new ones are zero).
    fn grow_to(&mut self, len: usize) {
        let blocks = len.div_ceil(8);
        if blocks > self.blocks.len() {
            self.blocks.resize(blocks, Lane8::default());
        }
    }

    fn as_slice(&self) -> &[f32] {
        // SAFETY: Lane8 is repr(C) [f32; 8] (32 bytes, no padding), so the
        // blocks are `8 * len` contiguous, initialized f32.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<f32>(), self.len()) }
    }

    fn as_mut_slice(&mut self) -> &mut [f32] {
        let len = self.len();
        // SAFETY: as in `as_slice`, and `&mut self` makes the view unique.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<f32>(), len) }
    }
}

/// A design with everything the kernels need, shared by all resamplers of
/// one `(L, M, quality)`.
#[derive(Debug)]
struct Plan {
    design: Arc<FilterDesign>,
    up: u64,
    down: u64,
    first_offset: i64,
    lookahead: i64,
    /// Vectors of 8 per output: `ceil((T + 7) / 8)`.
    nv: usize,
    /// The f32 coefficients. Output `(r, o)` reads `8 * nv` of them from
    /// `r * phase_stride + o_offset[o]`: lane `p` holds tap `p - o` (zero
    /// outside `0..T`). Either one zero-padded row per phase (tap `t` at
    /// `8 + t`, read unaligned from `8 - o`), or, when small, 8 pre-shifted
    /// aligned rows per phase (tap `t` at `o + t` of row `o`).
    rows: AlignedBuf,
    phase_stride: usize,
    o_offset: [usize; 8],
    /// `P = L * 8 / gcd(M, 8)`: outputs `P` apart share phase and alignment.
    period: u64,
    /// `V * M`: the input frames between outputs `P` apart.
    stripe_step: usize,
}

impl Plan {
    fn new(up: u64, down: u64, quality: Quality) -> Self {
        let design = design(up, down, quality);
        let taps = design.taps_per_phase;
        let nv = (taps + 7).div_ceil(8);
        let shifted_len = 8 * nv;
        let shifted = up as usize * 8 * shifted_len * 4 <= SHIFTED_ROWS_BYTES;
        let (phase_stride, o_offset) = if shifted {
            (8 * shifted_len, std::array::from_fn(|o| o * shifted_len))
        } else {
            (8 * (nv + 1), std::array::from_fn(|o| 8 - o))
        };
        let mut rows = AlignedBuf::zeros(up as usize * phase_stride);
        {
            let dst = rows.as_mut_slice();
            for r in 0..up as usize {
                let taps_f32: Vec<f32> = design.phase(r).iter().map(|&p| p as f32).collect();
                let starts: &[usize] = if shifted { &o_offset } else { &o_offset[..1] };
                for (o, &start) in starts.iter().enumerate() {
                    // Tap 0 goes to lane o (pre-shifted) or to index 8 (one padded row).
                    let at = r * phase_stride + if shifted { start + o } else { 8 };
                    dst[at..at + taps].copy_from_slice(&taps_f32);
                }
            }
        }
        let v = 8 / gcd(down, 8);
        Plan {
            up,
            down,
            first_offset: design.first_offset,
            lookahead: design.lookahead(),
            nv,
            rows,
            phase_stride,
            o_offset,
            period: up * v,
            stripe_step: (v * down) as usize,
            design: Arc::new(design),
        }
    }

    /// `(floor(k*M/L), k*M mod L)`.
    fn position(&self, k: u64) -> (u128, u64) {
        let km = k as u128 * self.down as u128;
        (km / self.up as u128, (km % self.up as u128) as u64)
    }

    /// Outputs in one span of the main kernel: `STRIPES * P`.
    fn span_outputs(&self) -> u64 {
        self.period * STRIPES as u64
    }

    /// About the input frames one span of outputs reads.
    fn span_inputs(&self) -> usize {
        let frames = (self.span_outputs() as u128 * self.down as u128).div_ceil(self.up as u128);
        usize::try_from(frames)
            .unwrap_or(usize::MAX)
            .saturating_add(8 * self.nv)
    }

    /// How many outputs `k` have `floor(k*M/L) + s_max <= frames - 1`.
    fn ready(&self, frames: u64) -> u64 {
        let have = frames as i128 - self.lookahead as i128;
        if have <= 0 {
            return 0;
        }
        let n = (have as u128 * self.up as u128).div_ceil(self.down as u128);
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

fn plan(up: u64, down: u64, quality: Quality) -> Arc<Plan> {
    type Cache = Mutex<VecDeque<((u64, u64, Quality), Arc<Plan>)>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(VecDeque::new()));
    let key = (up, down, quality);
    {
        let mut entries = cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = entries.iter().position(|(k, _)| *k == key) {
            let entry = entries.remove(i);
            if let Some(entry) = entry {
                let found = Arc::clone(&entry.1);
                entries.push_front(entry);
                return found;
            }
        }
    }
    // Designed outside the lock: other threads keep using the cache meanwhile.
    let made = Arc::new(Plan::new(up, down, quality));
    let mut entries = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, existing)) = entries.iter().find(|(k, _)| *k == key) {
        return Arc::clone(existing);
    }
    entries.push_front((key, Arc::clone(&made)));
    entries.truncate(DESIGN_CACHE_SIZE);
    made
}

/// A sample as f32 in `[-1, 1]` scale (integers divided by full scale).
#[inline(always)]
fn to_f32<S: Sample>(s: S) -> f32 {
    if S::IS_FLOAT {
        s.to_f64() as f32
    } else {
        (s.to_f64() * (1.0 / S::SCALE)) as f32
    }
}

#[inline(always)]
fn all_finite_impl<S: Sample>(x: &[S]) -> bool {
    if !S::IS_FLOAT {
        return true;
    }
    // Branch-free per block, so the scan vectorizes.
    // As f32: a finite f64 beyond f32::MAX does not fit the kernels either.
    x.chunks(1024)
        .all(|block| block.iter().fold(true, |ok, &s| ok & to_f32(s).is_finite()))
}

#[inline(always)]
fn convert_impl<S: Sample>(src: &[S], dst: &mut [f32]) -> bool {
    let mut finite = true;
    for (d, &s) in dst.iter_mut().zip(src) {
        let v = to_f32(s);
        *d = v;
        finite &= v.is_finite();
    }
    finite
}

#[inline(always)]
fn deinterleave2_impl<S: Sample>(src: &[S], left: &mut [f32], right: &mut [f32]) -> bool {
    let mut finite = true;
    for ((l, r), frame) in left
        .iter_mut()
        .zip(right.iter_mut())
        .zip(src.chunks_exact(2))
    {
        let (a, b) = (to_f32(frame[0]), to_f32(frame[1]));
        *l = a;
        *r = b;
        finite &= a.is_finite() & b.is_finite();
    }
    finite
}

avx2_dispatch!(
    /// Whether every sample is finite (a fast scan; `check_finite` names the bad one).
    fn all_finite<S: Sample>(x: &[S]) -> bool => all_finite_impl
);
avx2_dispatch!(
    /// `dst[i] = to_f32(src[i])`; whether all are finite.
    fn convert_into<S: Sample>(src: &[S], dst: &mut [f32]) -> bool => convert_impl
);
avx2_dispatch!(
    /// Splits interleaved stereo into two channels, converted to f32; whether all are finite.
    fn deinterleave2<S: Sample>(src: &[S], left: &mut [f32], right: &mut [f32]) -> bool => deinterleave2_impl
);

/// The `Overflow` error for the first finite sample that is infinite as f32
/// (f64 beyond `f32::MAX`), which the f32 kernels cannot take.
#[cold]
fn overflow_error<S: Sample>(input: &[S], channels: usize) -> KernelError {
    let index = input
        .iter()
        .position(|&s| !to_f32(s).is_finite())
        .unwrap_or(0);
    let channels = channels.max(1);
    KernelError::Overflow {
        index,
        frame: index / channels,
        channel: index % channels,
        value: input.get(index).map_or(0.0, |s| s.to_f64()),
    }
}

/// Streaming polyphase resampler of interleaved audio (the Rust twin of
/// `StreamingResampler`).
///
/// Feeding a stream in chunks of any sizes through [`Resampler::process`]
/// and then calling [`Resampler::flush`] gives bit-identical output to
/// [`resample`] on the whole stream. Memory stays bounded: only the inputs
/// the next outputs need are kept (fewer than `T + 8` frames per channel
/// between calls).
#[derive(Debug, Clone)]
pub struct Resampler {
    source_rate: u64,
    target_rate: u64,
    channels: usize,
    quality: Quality,
    plan: Option<Arc<Plan>>,
    received: u64,
    emitted: u64,
    flushed: bool,
    /// Absolute input index of `history[c][0]`, a multiple of 8 (negative
    /// while the zeros before the stream are still needed).
    origin: i64,
    /// Entries of each history buffer holding input (or the leading zeros):
    /// `origin + filled == received`. Entries past `filled` are stale until
    /// `emit` zeroes the few that the last windows reach.
    filled: usize,
    history: Vec<AlignedBuf>,
    simd: bool,
}

impl Resampler {
    /// A resampler from `source_rate` to `target_rate` Hz for `channels`-channel audio.
    ///
    /// Errors (`InvalidParameter`): a rate outside `[1, MAX_RATE]`, a reduced
    /// ratio with a term above [`MAX_RATIO_TERM`], or a channel count outside
    /// `[1, MAX_CHANNELS]`.
    pub fn new(
        source_rate: i64,
        target_rate: i64,
        channels: usize,
        quality: Quality,
    ) -> Result<Self, KernelError> {
        let (up, down) = reduced_ratio(source_rate, target_rate)?;
        if !(1..=MAX_CHANNELS).contains(&channels) {
            return Err(KernelError::InvalidInput {
                name: "channels",
                reason: format!("must be between 1 and {MAX_CHANNELS}, got {channels}"),
            });
        }
        let plan = (up != down).then(|| plan(up, down, quality));
        let origin = plan
            .as_ref()
            .map_or(0, |p| p.first_offset.div_euclid(8) * 8);
        let filled = (-origin) as usize;
        let history = match &plan {
            Some(_) => (0..channels).map(|_| AlignedBuf::zeros(filled)).collect(),
            None => Vec::new(),
        };
        Ok(Resampler {
            source_rate: source_rate as u64,
            target_rate: target_rate as u64,
            channels,
            quality,
            plan,
            received: 0,
            emitted: 0,
            flushed: false,
            origin,
            filled,
            history,
            simd: simd::has_avx2_fma(),
        })
    }

    /// The input sample rate in Hz.
    pub fn source_rate(&self) -> u64 {
        self.source_rate
    }

    /// The output sample rate in Hz.
    pub fn target_rate(&self) -> u64 {
        self.target_rate
    }

    /// The number of interleaved channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// The quality preset.
    pub fn quality(&self) -> Quality {
        self.quality
    }

    /// The filter in use, or `None` when the rates are equal (no filtering).
    pub fn design(&self) -> Option<&FilterDesign> {
        self.plan.as_deref().map(|p| &*p.design)
    }

    /// Input frames received so far.
    pub fn frames_in(&self) -> u64 {
        self.received
    }

    /// Output frames emitted so far.
    pub fn frames_out(&self) -> u64 {
        self.emitted
    }

    /// Whether [`Resampler::flush`] was called.
    pub fn is_flushed(&self) -> bool {
        self.flushed
    }

    /// Feeds interleaved `input` (`frames * channels` samples; integers are
    /// scaled by `1 / SCALE`) and appends the outputs now complete to `out`
    /// (interleaved f32). An output is emitted as soon as the inputs it needs
    /// have arrived; the rest follow from later calls or [`Resampler::flush`].
    ///
    /// Errors: after `flush` (`InvalidParameter`), a length that is not a
    /// multiple of `channels` (`Shape`), a NaN or infinite sample
    /// (`NonFiniteSample`) or an f64 beyond the f32 range (`Overflow`), with
    /// its index, frame and channel counted from the start of the stream. A
    /// rejected chunk leaves the stream unchanged.
    pub fn process<S: Sample>(
        &mut self,
        input: &[S],
        out: &mut Vec<f32>,
    ) -> Result<(), KernelError> {
        self.check_chunk(input)?;
        if !all_finite(input) {
            return Err(self.sample_error(input));
        }
        self.feed(input, out, false)
    }

    /// Refuses a chunk after `flush` or with a partial frame.
    fn check_chunk<S: Sample>(&self, input: &[S]) -> Result<(), KernelError> {
        if self.flushed {
            return Err(KernelError::InvalidInput {
                name: "chunk",
                reason: "Resampler.process() called after flush()".to_owned(),
            });
        }
        if input.len() % self.channels != 0 {
            return Err(KernelError::Shape(format!(
                "chunk has {} samples, not a whole number of {}-channel frames",
                input.len(),
                self.channels
            )));
        }
        Ok(())
    }

    /// The error for a chunk that fails `all_finite`: the first NaN or
    /// infinity (named by `check_finite`), else the first f64 beyond the f32
    /// range; index and frame count from the start of the stream.
    #[cold]
    fn sample_error<S: Sample>(&self, input: &[S]) -> KernelError {
        let channels = self.channels;
        let before = usize::try_from(self.received)
            .unwrap_or(usize::MAX)
            .saturating_mul(channels);
        match check_finite(input, channels) {
            Err(KernelError::NonFiniteSample { index, kind, .. }) => {
                let index = before.saturating_add(index);
                KernelError::NonFiniteSample {
                    index,
                    frame: index / channels,
                    channel: index % channels,
                    kind,
                }
            }
            Err(other) => other,
            Ok(()) => match overflow_error(input, channels) {
                KernelError::Overflow { index, value, .. } => {
                    let index = before.saturating_add(index);
                    KernelError::Overflow {
                        index,
                        frame: index / channels,
                        channel: index % channels,
                        value,
                    }
                }
                other => other,
            },
        }
    }

    /// `process` without its up-front scan when `fused`: the conversion
    /// itself tests every sample, and a bad one fails the call after the
    /// stream has changed (only for [`resample`], which then drops it).
    fn feed<S: Sample>(
        &mut self,
        input: &[S],
        out: &mut Vec<f32>,
        fused: bool,
    ) -> Result<(), KernelError> {
        let channels = self.channels;
        let frames = input.len() / channels;
        let before = self.received;
        let Some(plan) = self.plan.clone() else {
            let start = out.len();
            out.resize(start + input.len(), 0.0);
            if !convert_into(input, &mut out[start..]) && fused {
                return Err(self.sample_error(input));
            }
            self.received += frames as u64;
            self.emitted += frames as u64;
            return Ok(());
        };
        // Large chunks go in blocks, which bounds the copy of the input kept
        // here; all but the last block emit whole stripe spans (the fast
        // kernel), the last one everything ready. Grouping never changes values.
        let span = plan.span_outputs();
        let block = BLOCK_FRAMES.max(plan.span_inputs().saturating_mul(2));
        let mut blocks = input.chunks(block.saturating_mul(channels)).peekable();
        while let Some(part) = blocks.next() {
            if !self.append(part) && fused {
                self.received = before; // for the error's stream position
                return Err(self.sample_error(input));
            }
            let mut end =
                plan.ready(self.received)
                    .min(output_frames(self.received, plan.down, plan.up));
            if blocks.peek().is_some() && end > self.emitted {
                end -= (end - self.emitted) % span;
            }
            self.emit(&plan, end, out)?;
        }
        Ok(())
    }

    /// Ends the stream (the signal is zero after it) and appends the last
    /// outputs to `out`. Later `flush` calls append nothing; `process` fails.
    pub fn flush(&mut self, out: &mut Vec<f32>) -> Result<(), KernelError> {
        if self.flushed {
            return Ok(());
        }
        self.flushed = true;
        let Some(plan) = self.plan.clone() else {
            return Ok(());
        };
        let end = output_frames(self.received, plan.down, plan.up);
        let result = self.emit(&plan, end, out);
        self.history = Vec::new();
        result
    }

    /// Deinterleaves and converts `input` onto the end of the history;
    /// whether every converted sample is finite.
    fn append<S: Sample>(&mut self, input: &[S]) -> bool {
        let channels = self.channels;
        let frames = input.len() / channels;
        let (start, end) = (self.filled, self.filled + frames);
        for buf in &mut self.history {
            buf.grow_to(end);
        }
        let finite = match &mut self.history[..] {
            [mono] => convert_into(input, &mut mono.as_mut_slice()[start..end]),
            [left, right] => deinterleave2(
                input,
                &mut left.as_mut_slice()[start..end],
                &mut right.as_mut_slice()[start..end],
            ),
            many => {
                let mut finite = true;
                for (c, buf) in many.iter_mut().enumerate() {
                    let dst = &mut buf.as_mut_slice()[start..end];
                    for (d, frame) in dst.iter_mut().zip(input.chunks_exact(channels)) {
                        *d = to_f32(frame[c]);
                        finite &= d.is_finite();
                    }
                }
                finite
            }
        };
        self.filled = end;
        self.received += frames as u64;
        finite
    }

    /// Computes outputs `[emitted, end)` and drops the history they no longer need.
    fn emit(&mut self, plan: &Plan, end: u64, out: &mut Vec<f32>) -> Result<(), KernelError> {
        if end <= self.emitted {
            return Ok(());
        }
        let too_long = || KernelError::InvalidInput {
            name: "chunk",
            reason: "the stream is too long to index".to_owned(),
        };
        let count = usize::try_from(end - self.emitted).map_err(|_| too_long())?;
        let channels = self.channels;
        // The last output reads up to its aligned window end (zeros past the input).
        let (q_last, _) = plan.position(end - 1);
        let rel_last = rel_index(q_last, plan.first_offset, self.origin).ok_or_else(too_long)?;
        let need = (rel_last & !7) + 8 * plan.nv;
        let start = out.len();
        let total = count.checked_mul(channels).ok_or_else(too_long)?;
        out.try_reserve(total)
            .map_err(|_| KernelError::InvalidInput {
                name: "chunk",
                reason: format!("the output ({total} samples) does not fit in memory"),
            })?;
        let spare = out
            .spare_capacity_mut()
            .get_mut(..total)
            .ok_or_else(too_long)?;
        let simd = self.simd;
        for (c, buf) in self.history.iter_mut().enumerate() {
            // The signal is zero after the input: the last windows may reach past it.
            buf.grow_to(need);
            if let Some(tail) = buf.as_mut_slice().get_mut(self.filled..need) {
                tail.fill(0.0);
            }
            render(
                plan,
                buf.as_slice(),
                self.origin,
                self.emitted,
                count,
                &mut spare[c..],
                channels,
                simd,
            )?;
        }
        // SAFETY: channel c wrote frames i*channels + c for every i < count,
        // so all `total` reserved elements are initialized.
        unsafe { out.set_len(start + total) };
        self.emitted = end;

        // Keep inputs from the first one output `end` reads (aligned down).
        let (q_next, _) = plan.position(end);
        let keep = i128::try_from(q_next).map_err(|_| too_long())? + plan.first_offset as i128;
        let keep = keep.min(self.origin as i128 + self.filled as i128);
        let keep = keep.div_euclid(8) * 8;
        let drop = keep - self.origin as i128;
        if drop > 0 {
            let drop = drop as usize;
            for buf in &mut self.history {
                buf.as_mut_slice().copy_within(drop..self.filled, 0);
            }
            self.filled -= drop;
            self.origin = i64::try_from(keep).map_err(|_| too_long())?;
        }
        Ok(())
    }
}

/// The buffer index of the first input of an output at `floor(k*M/L) = q`.
fn rel_index(q: u128, first_offset: i64, origin: i64) -> Option<usize> {
    let abs = i128::try_from(q).ok()? + first_offset as i128;
    usize::try_from(abs - origin as i128).ok()
}

/// Resamples interleaved `input` in one call: [`Resampler::process`] then
/// [`Resampler::flush`]. Returns `output_frames(frames) * channels` samples.
pub fn resample<S: Sample>(
    input: &[S],
    channels: usize,
    source_rate: i64,
    target_rate: i64,
    quality: Quality,
) -> Result<Vec<f32>, KernelError> {
    let mut resampler = Resampler::new(source_rate, target_rate, channels, quality)?;
    let frames = (input.len() / channels) as u64;
    let expected = output_frames(frames, resampler.source_rate, resampler.target_rate);
    resampler.check_chunk(input)?;
    let mut out = Vec::new();
    // One allocation for the whole result (handed to numpy as it is); `emit`
    // reports an output that cannot be allocated.
    let _ = out.try_reserve_exact(
        usize::try_from(expected)
            .unwrap_or(usize::MAX)
            .saturating_mul(channels),
    );
    resampler.feed(input, &mut out, true)?;
    resampler.flush(&mut out)?;
    Ok(out)
}

/// Where output `k` reads: its coefficients (in `plan.rows`) and inputs (in
/// the history buffer), advanced one output at a time.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    /// Buffer index of the output's first input, `q + s_min - origin`.
    rel: usize,
    /// Its phase `r`.
    phase: u64,
}

impl Cursor {
    #[inline(always)]
    fn advance(&mut self, plan: &Plan, whole: usize, frac: u64) {
        self.rel += whole;
        self.phase += frac;
        if self.phase >= plan.up {
            self.phase -= plan.up;
            self.rel += 1;
        }
    }

    /// `(coefficient offset, input offset)`: both windows of `8 * nv` floats.
    #[inline(always)]
    fn offsets(&self, plan: &Plan) -> (usize, usize) {
        let o = self.rel & 7;
        (
            self.phase as usize * plan.phase_stride + plan.o_offset[o],
            self.rel - o,
        )
    }
}

/// Outputs `[k0, k0 + count)` of one channel from its history `x`, written
/// to `out[i * stride]`.
#[allow(clippy::too_many_arguments)]
fn render(
    plan: &Plan,
    x: &[f32],
    origin: i64,
    k0: u64,
    count: usize,
    out: &mut [MaybeUninit<f32>],
    stride: usize,
    simd: bool,
) -> Result<(), KernelError> {
    if count == 0 {
        return Ok(());
    }
    let bad = |what: &str| KernelError::Shape(format!("resampler state is inconsistent ({what})"));
    let (q0, r0) = plan.position(k0);
    let rel0 = rel_index(q0, plan.first_offset, origin).ok_or_else(|| bad("first window"))?;
    let (q_last, _) = plan.position(k0 + count as u64 - 1);
    let rel_last =
        rel_index(q_last, plan.first_offset, origin).ok_or_else(|| bad("last window"))?;
    // Every read below stays inside these bounds: the windows grow with k.
    if (rel_last & !7) + 8 * plan.nv > x.len() || (count - 1) * stride >= out.len() {
        return Err(bad("buffer too short"));
    }
    let whole = (plan.down / plan.up) as usize;
    let frac = plan.down % plan.up;
    let mut cur = Cursor {
        rel: rel0,
        phase: r0,
    };

    #[cfg(target_arch = "x86_64")]
    if simd {
        // SAFETY: the CPU has AVX2 and FMA (`simd` comes from
        // `has_avx2_fma`), and every window read lies within the bounds
        // checked above (coefficient windows lie within their padded row).
        unsafe { render_avx2(plan, x, &mut cur, whole, frac, count, out, stride) };
        return Ok(());
    }
    let _ = simd;
    let coefs = plan.rows.as_slice();
    let n = 8 * plan.nv;
    for i in 0..count {
        let (c, xo) = cur.offsets(plan);
        out[i * stride].write(dot_portable(&coefs[c..c + n], &x[xo..xo + n]));
        cur.advance(plan, whole, frac);
    }
    Ok(())
}

/// The tree every kernel sums its 8 lanes with.
#[inline(always)]
fn reduce_lanes(a: [f32; 8]) -> f32 {
    ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]))
}

/// The portable kernel: 8 lanes, multiply then add (no FMA).
fn dot_portable(c: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    for (cv, xv) in c.chunks_exact(8).zip(x.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += cv[l] * xv[l];
        }
    }
    reduce_lanes(acc)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Lane sums of four accumulators: `[sum(a), sum(b), sum(c), sum(d)]`,
    /// each `((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7))`.
    #[inline(always)]
    pub unsafe fn reduce4(a: __m256, b: __m256, c: __m256, d: __m256) -> __m128 {
        unsafe {
            let h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
            _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1))
        }
    }

    /// Lane sums of one accumulator, by the same tree as [`reduce4`].
    #[inline(always)]
    pub unsafe fn reduce1(a: __m256) -> f32 {
        unsafe {
            let h = _mm256_hadd_ps(a, a);
            let h = _mm256_hadd_ps(h, h);
            _mm_cvtss_f32(_mm_add_ss(
                _mm256_castps256_ps128(h),
                _mm256_extractf128_ps(h, 1),
            ))
        }
    }

    /// Writes the lane sums of `acc` to `out[j * step]`.
    #[inline(always)]
    pub unsafe fn store_sums<const G: usize>(acc: &[__m256; G], out: *mut f32, step: usize) {
        unsafe {
            let mut j = 0;
            while j + 4 <= G {
                let s = reduce4(acc[j], acc[j + 1], acc[j + 2], acc[j + 3]);
                let mut v = [0.0f32; 4];
                _mm_storeu_ps(v.as_mut_ptr(), s);
                for (i, &value) in v.iter().enumerate() {
                    *out.add((j + i) * step) = value;
                }
                j += 4;
            }
            while j < G {
                *out.add(j * step) = reduce1(acc[j]);
                j += 1;
            }
        }
    }

    /// `G` outputs sharing their coefficients: output `j` reads
    /// `x + j * x_step` (32-byte aligned), writes `out + j * out_step`.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn stripe<const G: usize>(
        coef: *const f32,
        nv: usize,
        x: *const f32,
        x_step: usize,
        out: *mut f32,
        out_step: usize,
    ) {
        unsafe {
            let mut acc = [_mm256_setzero_ps(); G];
            let xp: [*const f32; G] = std::array::from_fn(|j| x.add(j * x_step));
            let mut v = 0;
            while v + 2 <= nv {
                let c0 = _mm256_loadu_ps(coef.add(8 * v));
                let c1 = _mm256_loadu_ps(coef.add(8 * v + 8));
                for j in 0..G {
                    acc[j] = _mm256_fmadd_ps(c0, _mm256_load_ps(xp[j].add(8 * v)), acc[j]);
                }
                for j in 0..G {
                    acc[j] = _mm256_fmadd_ps(c1, _mm256_load_ps(xp[j].add(8 * v + 8)), acc[j]);
                }
                v += 2;
            }
            if v < nv {
                let c = _mm256_loadu_ps(coef.add(8 * v));
                for j in 0..G {
                    acc[j] = _mm256_fmadd_ps(c, _mm256_load_ps(xp[j].add(8 * v)), acc[j]);
                }
            }
            store_sums(&acc, out, out_step);
        }
    }

    /// [`stripe`] for 12 outputs. Written in assembly because LLVM's loop
    /// strength reduction turns the 12 addresses into a chain of integer
    /// adds (28 instead of 19 instructions per 12 FMAs): here they are 4
    /// base pointers plus 0, 1 or 2 steps (scaled-index addressing).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn stripe12(
        coef: *const f32,
        nv: usize,
        x: *const f32,
        x_step: usize,
        out: *mut f32,
        out_step: usize,
    ) {
        let mut a = [_mm256_setzero_ps(); 12];
        unsafe {
            let b1 = x.add(3 * x_step);
            let b2 = x.add(6 * x_step);
            let b3 = x.add(9 * x_step);
            // Per vector v (nv >= 1 times): c = coef[8v..]; a[j] += c * x[j*step + 8v..].
            std::arch::asm!(
                "vxorps {a0:y}, {a0:y}, {a0:y}",
                "vxorps {a1:y}, {a1:y}, {a1:y}",
                "vxorps {a2:y}, {a2:y}, {a2:y}",
                "vxorps {a3:y}, {a3:y}, {a3:y}",
                "vxorps {a4:y}, {a4:y}, {a4:y}",
                "vxorps {a5:y}, {a5:y}, {a5:y}",
                "vxorps {a6:y}, {a6:y}, {a6:y}",
                "vxorps {a7:y}, {a7:y}, {a7:y}",
                "vxorps {a8:y}, {a8:y}, {a8:y}",
                "vxorps {a9:y}, {a9:y}, {a9:y}",
                "vxorps {a10:y}, {a10:y}, {a10:y}",
                "vxorps {a11:y}, {a11:y}, {a11:y}",
                "2:",
                "vmovups {c:y}, ymmword ptr [{cp}]",
                "vfmadd231ps {a0:y}, {c:y}, ymmword ptr [{b0}]",
                "vfmadd231ps {a1:y}, {c:y}, ymmword ptr [{b0} + {s}*4]",
                "vfmadd231ps {a2:y}, {c:y}, ymmword ptr [{b0} + {s}*8]",
                "vfmadd231ps {a3:y}, {c:y}, ymmword ptr [{b1}]",
                "vfmadd231ps {a4:y}, {c:y}, ymmword ptr [{b1} + {s}*4]",
                "vfmadd231ps {a5:y}, {c:y}, ymmword ptr [{b1} + {s}*8]",
                "vfmadd231ps {a6:y}, {c:y}, ymmword ptr [{b2}]",
                "vfmadd231ps {a7:y}, {c:y}, ymmword ptr [{b2} + {s}*4]",
                "vfmadd231ps {a8:y}, {c:y}, ymmword ptr [{b2} + {s}*8]",
                "vfmadd231ps {a9:y}, {c:y}, ymmword ptr [{b3}]",
                "vfmadd231ps {a10:y}, {c:y}, ymmword ptr [{b3} + {s}*4]",
                "vfmadd231ps {a11:y}, {c:y}, ymmword ptr [{b3} + {s}*8]",
                "add {cp}, 32",
                "add {b0}, 32",
                "add {b1}, 32",
                "add {b2}, 32",
                "add {b3}, 32",
                "dec {n}",
                "jnz 2b",
                a0 = out(ymm_reg) a[0],
                a1 = out(ymm_reg) a[1],
                a2 = out(ymm_reg) a[2],
                a3 = out(ymm_reg) a[3],
                a4 = out(ymm_reg) a[4],
                a5 = out(ymm_reg) a[5],
                a6 = out(ymm_reg) a[6],
                a7 = out(ymm_reg) a[7],
                a8 = out(ymm_reg) a[8],
                a9 = out(ymm_reg) a[9],
                a10 = out(ymm_reg) a[10],
                a11 = out(ymm_reg) a[11],
                c = out(ymm_reg) _,
                cp = inout(reg) coef => _,
                b0 = inout(reg) x => _,
                b1 = inout(reg) b1 => _,
                b2 = inout(reg) b2 => _,
                b3 = inout(reg) b3 => _,
                s = in(reg) x_step,
                n = inout(reg) nv.max(1) => _,
                options(nostack, readonly),
            );
            store_sums(&a, out, out_step);
        }
    }

    /// Writes the lane sums of 12 accumulators, `acc[i]` to `out + offsets[i]`.
    #[inline(always)]
    pub unsafe fn store12(acc: &[__m256; 12], out: *mut f32, offsets: &[usize; 12]) {
        unsafe {
            for q in 0..3 {
                let s = reduce4(acc[4 * q], acc[4 * q + 1], acc[4 * q + 2], acc[4 * q + 3]);
                let mut v = [0.0f32; 4];
                _mm_storeu_ps(v.as_mut_ptr(), s);
                for (i, &value) in v.iter().enumerate() {
                    *out.add(offsets[4 * q + i]) = value;
                }
            }
        }
    }

    /// Three outputs that read the same inputs (`x`, 32-byte aligned) with
    /// their own coefficients `coef[r]`, each in 4 stripes `x + j * x_step`:
    /// per vector, 3 coefficient and 4 input loads feed 12 FMAs (vs 13 loads
    /// for [`stripe12`]), which lets the FMA units run at full rate.
    /// Output `(r, j)` goes to `out + r * out_r + j * out_j`.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile3x4(
        coef: [*const f32; 3],
        nv: usize,
        x: *const f32,
        x_step: usize,
        out: *mut f32,
        out_r: usize,
        out_j: usize,
    ) {
        let mut a = [_mm256_setzero_ps(); 12];
        unsafe {
            let b2 = x.add(2 * x_step);
            // a[4r + j] += coef[r][8v..] * x[j*step + 8v..], v = 0..nv (nv >= 1).
            std::arch::asm!(
                "vxorps {a0:y}, {a0:y}, {a0:y}",
                "vxorps {a1:y}, {a1:y}, {a1:y}",
                "vxorps {a2:y}, {a2:y}, {a2:y}",
                "vxorps {a3:y}, {a3:y}, {a3:y}",
                "vxorps {a4:y}, {a4:y}, {a4:y}",
                "vxorps {a5:y}, {a5:y}, {a5:y}",
                "vxorps {a6:y}, {a6:y}, {a6:y}",
                "vxorps {a7:y}, {a7:y}, {a7:y}",
                "vxorps {a8:y}, {a8:y}, {a8:y}",
                "vxorps {a9:y}, {a9:y}, {a9:y}",
                "vxorps {a10:y}, {a10:y}, {a10:y}",
                "vxorps {a11:y}, {a11:y}, {a11:y}",
                "2:",
                "vmovups {c0:y}, ymmword ptr [{p0}]",
                "vmovups {c1:y}, ymmword ptr [{p1}]",
                "vmovups {c2:y}, ymmword ptr [{p2}]",
                "vmovups {x:y}, ymmword ptr [{b0}]",
                "vfmadd231ps {a0:y}, {c0:y}, {x:y}",
                "vfmadd231ps {a4:y}, {c1:y}, {x:y}",
                "vfmadd231ps {a8:y}, {c2:y}, {x:y}",
                "vmovups {x:y}, ymmword ptr [{b0} + {s}*4]",
                "vfmadd231ps {a1:y}, {c0:y}, {x:y}",
                "vfmadd231ps {a5:y}, {c1:y}, {x:y}",
                "vfmadd231ps {a9:y}, {c2:y}, {x:y}",
                "vmovups {x:y}, ymmword ptr [{b2}]",
                "vfmadd231ps {a2:y}, {c0:y}, {x:y}",
                "vfmadd231ps {a6:y}, {c1:y}, {x:y}",
                "vfmadd231ps {a10:y}, {c2:y}, {x:y}",
                "vmovups {x:y}, ymmword ptr [{b2} + {s}*4]",
                "vfmadd231ps {a3:y}, {c0:y}, {x:y}",
                "vfmadd231ps {a7:y}, {c1:y}, {x:y}",
                "vfmadd231ps {a11:y}, {c2:y}, {x:y}",
                "add {p0}, 32",
                "add {p1}, 32",
                "add {p2}, 32",
                "add {b0}, 32",
                "add {b2}, 32",
                "dec {n}",
                "jnz 2b",
                a0 = out(ymm_reg) a[0],
                a1 = out(ymm_reg) a[1],
                a2 = out(ymm_reg) a[2],
                a3 = out(ymm_reg) a[3],
                a4 = out(ymm_reg) a[4],
                a5 = out(ymm_reg) a[5],
                a6 = out(ymm_reg) a[6],
                a7 = out(ymm_reg) a[7],
                a8 = out(ymm_reg) a[8],
                a9 = out(ymm_reg) a[9],
                a10 = out(ymm_reg) a[10],
                a11 = out(ymm_reg) a[11],
                c0 = out(ymm_reg) _,
                c1 = out(ymm_reg) _,
                c2 = out(ymm_reg) _,
                x = out(ymm_reg) _,
                p0 = inout(reg) coef[0] => _,
                p1 = inout(reg) coef[1] => _,
                p2 = inout(reg) coef[2] => _,
                b0 = inout(reg) x => _,
                b2 = inout(reg) b2 => _,
                s = in(reg) x_step,
                n = inout(reg) nv.max(1) => _,
                options(nostack, readonly),
            );
            let offsets = std::array::from_fn(|i| (i / 4) * out_r + (i % 4) * out_j);
            store12(&a, out, &offsets);
        }
    }

    /// [`tile3x4`] for two outputs in 6 stripes (2 + 6 loads per 12 FMAs).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile2x6(
        coef: [*const f32; 2],
        nv: usize,
        x: *const f32,
        x_step: usize,
        out: *mut f32,
        out_r: usize,
        out_j: usize,
    ) {
        let mut a = [_mm256_setzero_ps(); 12];
        unsafe {
            let b3 = x.add(3 * x_step);
            // a[6r + j] += coef[r][8v..] * x[j*step + 8v..], v = 0..nv (nv >= 1).
            std::arch::asm!(
                "vxorps {a0:y}, {a0:y}, {a0:y}",
                "vxorps {a1:y}, {a1:y}, {a1:y}",
                "vxorps {a2:y}, {a2:y}, {a2:y}",
                "vxorps {a3:y}, {a3:y}, {a3:y}",
                "vxorps {a4:y}, {a4:y}, {a4:y}",
                "vxorps {a5:y}, {a5:y}, {a5:y}",
                "vxorps {a6:y}, {a6:y}, {a6:y}",
                "vxorps {a7:y}, {a7:y}, {a7:y}",
                "vxorps {a8:y}, {a8:y}, {a8:y}",
                "vxorps {a9:y}, {a9:y}, {a9:y}",
                "vxorps {a10:y}, {a10:y}, {a10:y}",
                "vxorps {a11:y}, {a11:y}, {a11:y}",
                "2:",
                "vmovups {c0:y}, ymmword ptr [{p0}]",
                "vmovups {c1:y}, ymmword ptr [{p1}]",
                "vmovups {x:y}, ymmword ptr [{b0}]",
                "vfmadd231ps {a0:y}, {c0:y}, {x:y}",
                "vfmadd231ps {a6:y}, {c1:y}, {x:y}",
                "vmovups {x:y}, ymmword ptr [{b0} + {s}*4]",
                "vfmadd231ps {a1:y}, {c0:y}, {x:y}",
                "vfmadd231ps {a7:y}, {c1:y}, {x:y}",
                "vmovups {x:y}, ymmword ptr [{b0} + {s}*8]",
                "vfmadd231ps {a2:y}, {c0:y}, {x:y}",
                "vfmadd231ps {a8:y}, {c1:y}, {x:y}",
                "vmovups {x:y}, ymmword ptr [{b3}]",
                "vfmadd231ps {a3:y}, {c0:y}, {x:y}",
                "vfmadd231ps {a9:y}, {c1:y}, {x:y}",
                "vmovups {x:y}, ymmword ptr [{b3} + {s}*4]",
                "vfmadd231ps {a4:y}, {c0:y}, {x:y}",
                "vfmadd231ps {a10:y}, {c1:y}, {x:y}",
                "vmovups {x:y}, ymmword ptr [{b3} + {s}*8]",
                "vfmadd231ps {a5:y}, {c0:y}, {x:y}",
                "vfmadd231ps {a11:y}, {c1:y}, {x:y}",
                "add {p0}, 32",
                "add {p1}, 32",
                "add {b0}, 32",
                "add {b3}, 32",
                "dec {n}",
                "jnz 2b",
                a0 = out(ymm_reg) a[0],
                a1 = out(ymm_reg) a[1],
                a2 = out(ymm_reg) a[2],
                a3 = out(ymm_reg) a[3],
                a4 = out(ymm_reg) a[4],
                a5 = out(ymm_reg) a[5],
                a6 = out(ymm_reg) a[6],
                a7 = out(ymm_reg) a[7],
                a8 = out(ymm_reg) a[8],
                a9 = out(ymm_reg) a[9],
                a10 = out(ymm_reg) a[10],
                a11 = out(ymm_reg) a[11],
                c0 = out(ymm_reg) _,
                c1 = out(ymm_reg) _,
                x = out(ymm_reg) _,
                p0 = inout(reg) coef[0] => _,
                p1 = inout(reg) coef[1] => _,
                b0 = inout(reg) x => _,
                b3 = inout(reg) b3 => _,
                s = in(reg) x_step,
                n = inout(reg) nv.max(1) => _,
                options(nostack, readonly),
            );
            let offsets = std::array::from_fn(|i| (i / 6) * out_r + (i % 6) * out_j);
            store12(&a, out, &offsets);
        }
    }

    /// [`tile3x4`] for two outputs in 4 stripes (2 + 4 loads per 8 FMAs).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile2x4(
        coef: [*const f32; 2],
        nv: usize,
        x: *const f32,
        x_step: usize,
        out: *mut f32,
        out_r: usize,
        out_j: usize,
    ) {
        let mut a = [_mm256_setzero_ps(); 8];
        unsafe {
            let b2 = x.add(2 * x_step);
            // a[4r + j] += coef[r][8v..] * x[j*step + 8v..], v = 0..nv (nv >= 1).
            std::arch::asm!(
                "vxorps {a0:y}, {a0:y}, {a0:y}",
                "vxorps {a1:y}, {a1:y}, {a1:y}",
                "vxorps {a2:y}, {a2:y}, {a2:y}",
                "vxorps {a3:y}, {a3:y}, {a3:y}",
                "vxorps {a4:y}, {a4:y}, {a4:y}",
                "vxorps {a5:y}, {a5:y}, {a5:y}",
                "vxorps {a6:y}, {a6:y}, {a6:y}",
                "vxorps {a7:y}, {a7:y}, {a7:y}",
                "2:",
                "vmovups {c0:y}, ymmword ptr [{p0}]",
                "vmovups {c1:y}, ymmword ptr [{p1}]",
                "vmovups {x:y}, ymmword ptr [{b0}]",
                "vfmadd231ps {a0:y}, {c0:y}, {x:y}",
                "vfmadd231ps {a4:y}, {c1:y}, {x:y}",
                "vmovups {x:y}, ymmword ptr [{b0} + {s}*4]",
                "vfmadd231ps {a1:y}, {c0:y}, {x:y}",
                "vfmadd231ps {a5:y}, {c1:y}, {x:y}",
                "vmovups {x:y}, ymmword ptr [{b2}]",
                "vfmadd231ps {a2:y}, {c0:y}, {x:y}",
                "vfmadd231ps {a6:y}, {c1:y}, {x:y}",
                "vmovups {x:y}, ymmword ptr [{b2} + {s}*4]",
                "vfmadd231ps {a3:y}, {c0:y}, {x:y}",
                "vfmadd231ps {a7:y}, {c1:y}, {x:y}",
                "add {p0}, 32",
                "add {p1}, 32",
                "add {b0}, 32",
                "add {b2}, 32",
                "dec {n}",
                "jnz 2b",
                a0 = out(ymm_reg) a[0],
                a1 = out(ymm_reg) a[1],
                a2 = out(ymm_reg) a[2],
                a3 = out(ymm_reg) a[3],
                a4 = out(ymm_reg) a[4],
                a5 = out(ymm_reg) a[5],
                a6 = out(ymm_reg) a[6],
                a7 = out(ymm_reg) a[7],
                c0 = out(ymm_reg) _,
                c1 = out(ymm_reg) _,
                x = out(ymm_reg) _,
                p0 = inout(reg) coef[0] => _,
                p1 = inout(reg) coef[1] => _,
                b0 = inout(reg) x => _,
                b2 = inout(reg) b2 => _,
                s = in(reg) x_step,
                n = inout(reg) nv.max(1) => _,
                options(nostack, readonly),
            );
            for r in 0..2 {
                let sums = reduce4(a[4 * r], a[4 * r + 1], a[4 * r + 2], a[4 * r + 3]);
                let mut v = [0.0f32; 4];
                _mm_storeu_ps(v.as_mut_ptr(), sums);
                for (j, &value) in v.iter().enumerate() {
                    *out.add(r * out_r + j * out_j) = value;
                }
            }
        }
    }

    /// Four outputs with their own coefficients `coefs + c_off[j]` and
    /// inputs `x + x_off[j]` (32-byte aligned), written to `out + j * out_step`.
    /// Two loads per FMA cap any kernel without shared coefficients at one
    /// FMA per cycle, which four accumulators already reach.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn gather4(
        coefs: *const f32,
        c_off: &[usize; 4],
        x: *const f32,
        x_off: &[usize; 4],
        nv: usize,
        out: *mut f32,
        out_step: usize,
    ) {
        unsafe {
            let cp: [*const f32; 4] = std::array::from_fn(|j| coefs.add(c_off[j]));
            let xp: [*const f32; 4] = std::array::from_fn(|j| x.add(x_off[j]));
            let mut acc = [_mm256_setzero_ps(); 4];
            for v in 0..nv {
                for j in 0..4 {
                    acc[j] = _mm256_fmadd_ps(
                        _mm256_loadu_ps(cp[j].add(8 * v)),
                        _mm256_load_ps(xp[j].add(8 * v)),
                        acc[j],
                    );
                }
            }
            store_sums(&acc, out, out_step);
        }
    }
}

/// The AVX2 schedule: whole spans of `12 P` outputs as tiles over 12
/// stripes, then quarter spans (4 stripes), then groups of 4 outputs with
/// their own coefficients, then single outputs.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and the windows of outputs `[cur, cur +
/// count)` must lie within `x` (checked by `render`).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
unsafe fn render_avx2(
    plan: &Plan,
    x: &[f32],
    cur: &mut Cursor,
    whole: usize,
    frac: u64,
    count: usize,
    out: &mut [MaybeUninit<f32>],
    stride: usize,
) {
    let coefs = plan.rows.as_slice().as_ptr();
    let xp = x.as_ptr();
    let op = out.as_mut_ptr().cast::<f32>();
    let nv = plan.nv;
    let period = usize::try_from(plan.period).unwrap_or(usize::MAX);
    let mut i = 0;
    // SAFETY (all blocks): see the function's contract; outputs `i + j*period`
    // of a stripe are all below `count`.
    let step = plan.stripe_step;
    if let Some(span) = period.checked_mul(STRIPES) {
        while count - i >= span {
            let mut c = *cur;
            let mut p = 0;
            while p < period {
                // Up to 3 consecutive outputs whose windows start in the same
                // aligned block read the same input vectors: one tile.
                let (co, xo) = c.offsets(plan);
                let mut coef = [co; 3];
                let mut run = 1;
                let mut next = c;
                next.advance(plan, whole, frac);
                while run < 3 && p + run < period {
                    let (co_next, xo_next) = next.offsets(plan);
                    if xo_next != xo {
                        break;
                    }
                    coef[run] = co_next;
                    run += 1;
                    next.advance(plan, whole, frac);
                }
                let jump = period * stride;
                unsafe {
                    let o = op.add((i + p) * stride);
                    let cp = coef.map(|co| coefs.add(co));
                    match run {
                        3 => {
                            for g in 0..3 {
                                avx2::tile3x4(
                                    cp,
                                    nv,
                                    xp.add(xo + 4 * g * step),
                                    step,
                                    o.add(4 * g * jump),
                                    stride,
                                    jump,
                                );
                            }
                        }
                        2 => {
                            for g in 0..2 {
                                avx2::tile2x6(
                                    [cp[0], cp[1]],
                                    nv,
                                    xp.add(xo + 6 * g * step),
                                    step,
                                    o.add(6 * g * jump),
                                    stride,
                                    jump,
                                );
                            }
                        }
                        _ => avx2::stripe12(cp[0], nv, xp.add(xo), step, o, jump),
                    }
                }
                for _ in 0..run {
                    c.advance(plan, whole, frac);
                }
                p += run;
            }
            // From output i + P to i + 12P: the input moves 11 stripe steps.
            cur.rel = c.rel + (STRIPES - 1) * plan.stripe_step;
            cur.phase = c.phase;
            i += span;
        }
    }
    // A quarter span: tiles of 4 stripes.
    if let Some(quarter) = period.checked_mul(4) {
        while count - i >= quarter {
            let mut c = *cur;
            let mut p = 0;
            while p < period {
                let (co, xo) = c.offsets(plan);
                let mut coef = [co; 3];
                let mut run = 1;
                let mut next = c;
                next.advance(plan, whole, frac);
                while run < 3 && p + run < period {
                    let (co_next, xo_next) = next.offsets(plan);
                    if xo_next != xo {
                        break;
                    }
                    coef[run] = co_next;
                    run += 1;
                    next.advance(plan, whole, frac);
                }
                let jump = period * stride;
                unsafe {
                    let o = op.add((i + p) * stride);
                    let cp = coef.map(|co| coefs.add(co));
                    let x0 = xp.add(xo);
                    match run {
                        3 => avx2::tile3x4(cp, nv, x0, step, o, stride, jump),
                        2 => avx2::tile2x4([cp[0], cp[1]], nv, x0, step, o, stride, jump),
                        _ => avx2::stripe::<4>(cp[0], nv, x0, step, o, jump),
                    }
                }
                for _ in 0..run {
                    c.advance(plan, whole, frac);
                }
                p += run;
            }
            cur.rel = c.rel + 3 * step;
            cur.phase = c.phase;
            i += quarter;
        }
    }
    while count - i >= 4 {
        let mut c_off = [0usize; 4];
        let mut x_off = [0usize; 4];
        for j in 0..4 {
            (c_off[j], x_off[j]) = cur.offsets(plan);
            cur.advance(plan, whole, frac);
        }
        unsafe { avx2::gather4(coefs, &c_off, xp, &x_off, nv, op.add(i * stride), stride) };
        i += 4;
    }
    while i < count {
        let (co, xo) = cur.offsets(plan);
        unsafe { avx2::stripe::<1>(coefs.add(co), nv, xp.add(xo), 0, op.add(i * stride), 0) };
        cur.advance(plan, whole, frac);
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::NonFinite;

    const AMPLITUDE: f64 = 0.5;
    const SECONDS: f64 = 0.25;
    const EDGE_S: f64 = 0.03;
    const SPEC_PAIRS: [(i64, i64); 4] = [
        (48000, 16000),
        (44100, 16000),
        (16000, 48000),
        (22050, 16000),
    ];
    const OTHER_PAIRS: [(i64, i64); 4] = [
        (16000, 16000),
        (8000, 16000),
        (16000, 44100),
        (96000, 48000),
    ];

    fn tone(freq: f64, rate: i64, seconds: f64) -> Vec<f64> {
        let n = (seconds * rate as f64).round() as usize;
        (0..n)
            .map(|i| {
                AMPLITUDE * (2.0 * std::f64::consts::PI * freq * i as f64 / rate as f64 + 0.3).sin()
            })
            .collect()
    }

    fn noise(frames: usize, channels: usize, seed: u64) -> Vec<f64> {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..frames * channels)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * 0.9
            })
            .collect()
    }

    fn mono(x: &[f64], source: i64, target: i64, quality: Quality) -> Vec<f32> {
        resample(x, 1, source, target, quality).unwrap()
    }

    /// Interior samples (edges dropped) as f64 with their indices.
    fn interior(y: &[f32], rate: i64) -> (Vec<f64>, Vec<f64>) {
        let edge = (EDGE_S * rate as f64).round() as usize;
        let range = edge..y.len() - edge;
        (
            y[range.clone()].iter().map(|&v| v as f64).collect(),
            range.map(|k| k as f64).collect(),
        )
    }

    /// Least-squares amplitude of the sine at `freq` and the residual.
    fn fit_sine(y: &[f32], freq: f64, rate: i64) -> (f64, Vec<f64>) {
        let (seg, k) = interior(y, rate);
        let w: Vec<f64> = k
            .iter()
            .map(|&k| 2.0 * std::f64::consts::PI * freq * k / rate as f64)
            .collect();
        let (mut ss, mut sc, mut cc, mut sy, mut cy) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (&w, &v) in w.iter().zip(&seg) {
            let (s, c) = w.sin_cos();
            ss += s * s;
            sc += s * c;
            cc += c * c;
            sy += s * v;
            cy += c * v;
        }
        let det = ss * cc - sc * sc;
        let a = (sy * cc - cy * sc) / det;
        let b = (cy * ss - sy * sc) / det;
        let residual = w
            .iter()
            .zip(&seg)
            .map(|(&w, &v)| v - (a * w.sin() + b * w.cos()))
            .collect();
        (a.hypot(b), residual)
    }

    fn rms(x: &[f64]) -> f64 {
        (x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64).sqrt()
    }

    fn db(ratio: f64) -> f64 {
        20.0 * ratio.max(1e-300).log10()
    }

    fn plan_for(s: i64, t: i64) -> Option<Arc<Plan>> {
        Resampler::new(s, t, 1, Quality::High).unwrap().plan
    }

    fn stream<S: Sample>(
        x: &[S],
        channels: usize,
        source: i64,
        target: i64,
        quality: Quality,
        sizes: &[usize],
    ) -> Vec<f32> {
        let mut r = Resampler::new(source, target, channels, quality).unwrap();
        let mut out = Vec::new();
        let mut start = 0;
        for &size in sizes {
            let end = (start + size * channels).min(x.len());
            r.process(&x[start..end], &mut out).unwrap();
            start = end;
        }
        r.process(&x[start..], &mut out).unwrap();
        r.flush(&mut out).unwrap();
        out
    }

    #[test]
    fn bessel_i0_matches_reference_values() {
        for (x, expected) in [
            (0.0, 1.0),
            (1.0, 1.2660658777520082),
            (5.0, 27.239871823604442),
            (12.4, 27798.565849335446),
            (15.0, 339649.3732979138),
            (16.673, 1714965.7695188618),
        ] {
            let got = bessel_i0(x);
            assert!(
                (got - expected).abs() <= 2e-15 * expected,
                "I0({x}) = {got}, expected {expected}"
            );
        }
    }

    #[test]
    fn designs_match_the_numpy_reference() {
        // (source, target, quality, N, D, s_min, T, h[D], h[D+7], h[3]) from resampling.design_filter.
        let cases = [
            (
                48000,
                16000,
                Quality::High,
                369,
                184,
                -184,
                369,
                0.325,
                0.0342301467375768,
                1.6073730927301454e-08,
            ),
            (
                44100,
                16000,
                Quality::High,
                54083,
                27041,
                -169,
                340,
                0.3537414965986395,
                0.35360197981489283,
                -6.017397668775989e-09,
            ),
            (
                16000,
                48000,
                Quality::High,
                369,
                184,
                -61,
                124,
                0.9750000000000001,
                0.10269044021273041,
                4.8221192781904366e-08,
            ),
            (
                22050,
                16000,
                Quality::High,
                54083,
                27041,
                -84,
                170,
                0.707482993197279,
                0.7072039596297857,
                -1.2034795337551977e-08,
            ),
            (
                44100,
                16000,
                Quality::Low,
                12793,
                6396,
                -39,
                80,
                0.3356009070294785,
                0.33548088251979363,
                -0.00015704902125833437,
            ),
            (
                16000,
                44100,
                Quality::VeryHigh,
                186821,
                93410,
                -211,
                424,
                0.9749999999999999,
                0.9746158684934015,
                8.793633800016328e-10,
            ),
        ];
        for (s, t, q, n, d, s_min, taps, center, near, far) in cases {
            let design = design_filter(s, t, q).unwrap().unwrap();
            assert_eq!(
                (
                    design.num_taps,
                    design.delay,
                    design.first_offset,
                    design.taps_per_phase
                ),
                (n, d, s_min, taps),
                "{s} -> {t} {q:?}"
            );
            assert_eq!(design.phases.len(), design.up as usize * taps);
            let h = &design.prototype;
            for (got, expected) in [(h[d], center), (h[d + 7], near), (h[3], far)] {
                assert!(
                    (got - expected).abs() <= 1e-13 * expected.abs().max(1e-3),
                    "{got} vs {expected}"
                );
            }
            // The prototype is symmetric and the phase table indexes it as documented.
            assert!((0..n).all(|i| (h[i] - h[n - 1 - i]).abs() <= 1e-15));
            let up = design.up as i64;
            for r in [0, up / 2, up - 1] {
                for tt in [0usize, taps / 2, taps - 1] {
                    let index = r - (s_min + tt as i64) * up + d as i64;
                    let expected = if (0..n as i64).contains(&index) {
                        h[index as usize]
                    } else {
                        0.0
                    };
                    assert_eq!(design.phase(r as usize)[tt], expected);
                }
            }
        }
        assert!(
            design_filter(16000, 16000, Quality::High)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn output_length_rounds_half_up() {
        for (s, t) in SPEC_PAIRS.iter().chain(&OTHER_PAIRS) {
            for frames in [0usize, 1, 2, 3, 147, 441, 1000, *s as usize / 8 + 1] {
                let y = resample(&vec![0.0f32; frames], 1, *s, *t, Quality::High).unwrap();
                let expected = ((frames as f64) * *t as f64 / *s as f64 + 0.5).floor() as usize;
                assert_eq!(y.len(), expected, "{frames} frames {s} -> {t}");
                assert_eq!(
                    y.len() as u64,
                    output_frames(frames as u64, *s as u64, *t as u64)
                );
            }
        }
        assert_eq!(output_frames(3, 48000, 16000), 1);
        assert_eq!(output_frames(1, 16000, 8000), 1);
        assert_eq!(output_frames(u64::MAX, 1, 8192), u64::MAX);
        assert_eq!(output_frames(u64::MAX, 8192, 1), u64::MAX / 8192 + 1);
    }

    #[test]
    fn passband_is_flat_within_a_hundredth_of_a_db() {
        for (s, t) in SPEC_PAIRS {
            let nyq = s.min(t) as f64 / 2.0;
            for freq in [50.0, 997.0, 0.3 * nyq, 0.6 * nyq, 0.8 * nyq, 0.9 * nyq] {
                let (amp, _) =
                    fit_sine(&mono(&tone(freq, s, SECONDS), s, t, Quality::High), freq, t);
                let gain = db(amp / AMPLITUDE);
                assert!(
                    gain.abs() <= 0.01,
                    "{s} -> {t}, {freq:.1} Hz: gain {gain:+.6} dB"
                );
            }
        }
    }

    #[test]
    fn downsampling_rejects_tones_above_the_output_nyquist_by_120_db() {
        for (s, t) in SPEC_PAIRS.into_iter().filter(|(s, t)| t < s) {
            let (nyq_out, nyq_in) = (t as f64 / 2.0, s as f64 / 2.0);
            let mut freqs = vec![1.05 * nyq_out, 1.07 * nyq_out, 1.1 * nyq_out];
            freqs.extend(
                (0..7).map(|i| 1.15 * nyq_out + (0.995 * nyq_in - 1.15 * nyq_out) * i as f64 / 6.0),
            );
            for freq in freqs {
                let (seg, _) = interior(&mono(&tone(freq, s, SECONDS), s, t, Quality::High), t);
                let level = db(rms(&seg) / (AMPLITUDE / 2f64.sqrt()));
                assert!(
                    level <= -120.0,
                    "{s} -> {t}: {freq:.1} Hz leaks at {level:.1} dB"
                );
            }
        }
    }

    #[test]
    fn upsampling_images_are_120_db_down() {
        let (s, t) = (16000, 48000);
        for freq in [997.0, 2000.0, 4000.0, 6000.0, 7200.0] {
            let (amp, residual) =
                fit_sine(&mono(&tone(freq, s, SECONDS), s, t, Quality::High), freq, t);
            let level = db(rms(&residual) / (amp / 2f64.sqrt()));
            assert!(level <= -120.0, "images of {freq} Hz at {level:.1} dB");
        }
    }

    #[test]
    fn sinad_of_997_hz_is_at_least_130_db_on_both_kernels() {
        for (s, t) in SPEC_PAIRS {
            let x = tone(997.0, s, SECONDS);
            for simd in [true, false] {
                let mut r = Resampler::new(s, t, 1, Quality::High).unwrap();
                r.simd &= simd;
                let mut y = Vec::new();
                r.process(&x, &mut y).unwrap();
                r.flush(&mut y).unwrap();
                let (amp, residual) = fit_sine(&y, 997.0, t);
                let sinad = db((amp / 2f64.sqrt()) / rms(&residual));
                assert!(
                    sinad >= 130.0,
                    "{s} -> {t} (simd {simd}): SINAD {sinad:.1} dB"
                );
            }
        }
    }

    #[test]
    fn output_is_time_aligned_with_no_delay() {
        for (s, t) in SPEC_PAIRS
            .into_iter()
            .chain(OTHER_PAIRS[1..].iter().copied())
        {
            let nyq = s.min(t) as f64 / 2.0;
            let parts = [
                (100.0, 0.3, 0.2),
                (1234.5, 1.1, 0.15),
                (0.7 * nyq, 2.0, 0.1),
            ];
            let n = (SECONDS * s as f64) as usize;
            let wave = |rate: i64, k: f64| -> f64 {
                parts
                    .iter()
                    .map(|&(f, ph, a)| {
                        a * (2.0 * std::f64::consts::PI * f * k / rate as f64 + ph).sin()
                    })
                    .sum()
            };
            let x: Vec<f64> = (0..n).map(|i| wave(s, i as f64)).collect();
            let (seg, k) = interior(&mono(&x, s, t, Quality::High), t);
            let worst = seg
                .iter()
                .zip(&k)
                .map(|(&v, &k)| (v - wave(t, k)).abs())
                .fold(0.0, f64::max);
            assert!(worst < 2e-6, "{s} -> {t}: {worst:e}");
        }
    }

    #[test]
    fn matches_the_documented_formula_including_edges() {
        // y[k] = sum_i g[k*M - i*L] x[i] with g the zero-phase prototype, x = 0 outside.
        for (s, t) in [
            (44100, 16000),
            (16000, 44100),
            (48000, 16000),
            (8000, 16000),
        ] {
            for quality in Quality::ALL {
                let design = design_filter(s, t, quality).unwrap().unwrap();
                let (up, down, d) = (design.up as i64, design.down as i64, design.delay as i64);
                let x = noise(300, 1, 7);
                let y = mono(&x, s, t, quality);
                for (k, &got) in y.iter().enumerate() {
                    let mut expected = 0.0;
                    for (i, &xi) in x.iter().enumerate() {
                        let j = k as i64 * down - i as i64 * up + d;
                        if (0..design.num_taps as i64).contains(&j) {
                            expected += design.prototype[j as usize] * (xi as f32) as f64;
                        }
                    }
                    assert!(
                        (got as f64 - expected).abs() < 4e-7,
                        "{s} -> {t} {quality:?} k={k}: {got} vs {expected}"
                    );
                }
            }
        }
    }

    #[test]
    fn portable_kernel_agrees_with_the_simd_kernels() {
        // Long enough for every SIMD kernel (tiles over whole spans of
        // stripes, quarter spans, groups of 4, single outputs) to run; the
        // kernels do not depend on the quality, so the cheap one will do.
        let more = [
            (44100, 48000),
            (48000, 44100),
            (11025, 16000),
            (32000, 16000),
        ];
        for (s, t) in SPEC_PAIRS.into_iter().chain(OTHER_PAIRS).chain(more) {
            // 1.3 spans of the main kernel and more (at least 2.5 s).
            let span = plan_for(s, t).map_or(0, |p| p.span_outputs()) as f64;
            let frames = ((1.3 * span + 1000.0) * s as f64 / t as f64).max(2.5 * s as f64) as usize;
            let x = noise(frames, 1, 3);
            let fast = resample(&x, 1, s, t, Quality::Low).unwrap();
            let mut r = Resampler::new(s, t, 1, Quality::Low).unwrap();
            r.simd = false;
            let mut slow = Vec::new();
            r.process(&x, &mut slow).unwrap();
            r.flush(&mut slow).unwrap();
            assert_eq!(fast.len(), slow.len());
            let worst = fast
                .iter()
                .zip(&slow)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(worst < 3e-7, "{s} -> {t}: {worst:e}");
        }
    }

    #[test]
    fn chunked_streams_are_bit_identical_to_one_call() {
        for (s, t) in SPEC_PAIRS.into_iter().chain(OTHER_PAIRS) {
            for quality in [Quality::Low, Quality::High] {
                let x = noise(s as usize / 16, 2, 3);
                let frames = x.len() / 2;
                let whole = resample(&x, 2, s, t, quality).unwrap();
                let chunkings: [Vec<usize>; 5] = [
                    vec![1; 400],
                    [vec![7; 50], vec![13, 0, 0, 101, 1009]].concat(),
                    vec![0, frames + 5],
                    vec![frames - 1],
                    vec![2, 3, 5, 7919],
                ];
                for sizes in &chunkings {
                    assert_eq!(
                        stream(&x, 2, s, t, quality, sizes),
                        whole,
                        "{s} -> {t} {quality:?} {sizes:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn size_one_chunks_are_bit_identical_on_the_portable_kernel_too() {
        let (s, t) = (44100, 16000);
        let x = noise(2000, 1, 9);
        let run = |sizes: &[usize]| {
            let mut r = Resampler::new(s, t, 1, Quality::High).unwrap();
            r.simd = false;
            let mut out = Vec::new();
            let mut start = 0;
            for &n in sizes {
                r.process(&x[start..start + n], &mut out).unwrap();
                start += n;
            }
            r.flush(&mut out).unwrap();
            out
        };
        assert_eq!(run(&vec![1; 2000]), run(&[2000]));
    }

    #[test]
    fn long_input_in_blocks_equals_small_chunks() {
        // Longer than a block (and than several stripe spans) of the one-call path.
        let (s, t) = (44100, 16000);
        let x = noise(BLOCK_FRAMES * 2 + 12345, 1, 4);
        let whole = resample(&x, 1, s, t, Quality::Low).unwrap();
        assert_eq!(stream(&x, 1, s, t, Quality::Low, &vec![4410; 40]), whole);
    }

    #[test]
    fn outputs_are_emitted_once_their_lookahead_has_arrived() {
        let mut r = Resampler::new(48000, 16000, 1, Quality::High).unwrap();
        let lookahead = r.design().unwrap().lookahead() as usize;
        let mut out = Vec::new();
        r.process(&noise(3000, 1, 1), &mut out).unwrap();
        assert_eq!(out.len(), (3000 - 1 - lookahead) / 3 + 1);
        assert_eq!((r.frames_in(), r.frames_out()), (3000, out.len() as u64));
    }

    #[test]
    fn stream_memory_stays_bounded() {
        let mut r = Resampler::new(44100, 16000, 2, Quality::High).unwrap();
        let taps = r.design().unwrap().taps_per_phase;
        let x = noise(441 * 100, 2, 2);
        let mut out = Vec::new();
        for chunk in x.chunks(441 * 2) {
            r.process(chunk, &mut out).unwrap();
            assert!(r.filled < taps + 8, "{} frames kept", r.filled);
            assert!(r.history.iter().all(|b| b.len() < taps + 441 + 64));
        }
        r.flush(&mut out).unwrap();
        assert_eq!(out.len() as u64, 2 * output_frames(441 * 100, 44100, 16000));
        assert!(r.history.is_empty());
    }

    #[test]
    fn channels_are_independent_and_equal_to_mono() {
        for (s, t) in [(44100, 16000), (16000, 48000)] {
            let x = noise(s as usize / 10, 3, 5);
            let y = resample(&x, 3, s, t, Quality::High).unwrap();
            for c in 0..3 {
                let channel: Vec<f64> = x.iter().skip(c).step_by(3).copied().collect();
                let alone = mono(&channel, s, t, Quality::High);
                let got: Vec<f32> = y.iter().skip(c).step_by(3).copied().collect();
                assert_eq!(got, alone, "{s} -> {t} channel {c}");
            }
        }
    }

    #[test]
    fn integer_input_is_scaled_to_unit_range() {
        let ints: Vec<i16> = noise(4410, 2, 2)
            .iter()
            .map(|v| (v * 32767.0) as i16)
            .collect();
        let floats: Vec<f32> = ints.iter().map(|&v| v as f32 / 32768.0).collect();
        let expected = resample(&floats, 2, 44100, 16000, Quality::High).unwrap();
        assert_eq!(
            resample(&ints, 2, 44100, 16000, Quality::High).unwrap(),
            expected
        );
        assert_eq!(
            stream(&ints, 2, 44100, 16000, Quality::High, &[333; 10]),
            expected
        );
        let wide: Vec<i32> = ints.iter().map(|&v| (v as i32) << 16).collect();
        assert_eq!(
            resample(&wide, 2, 44100, 16000, Quality::High).unwrap(),
            expected
        );
    }

    #[test]
    fn equal_rates_return_the_input_as_f32() {
        let x = noise(1000, 2, 1);
        let y = resample(&x, 2, 16000, 16000, Quality::High).unwrap();
        assert_eq!(y, x.iter().map(|&v| v as f32).collect::<Vec<_>>());
        let ints = [-32768i16, 0, 16384];
        assert_eq!(
            resample(&ints, 1, 8000, 8000, Quality::Low).unwrap(),
            vec![-1.0, 0.0, 0.5]
        );
        assert_eq!(stream(&x, 2, 16000, 16000, Quality::High, &[1, 2, 3]), y);
    }

    #[test]
    fn empty_input_gives_empty_output() {
        for (s, t) in SPEC_PAIRS.iter().chain(&OTHER_PAIRS) {
            assert!(
                resample::<i16>(&[], 2, *s, *t, Quality::High)
                    .unwrap()
                    .is_empty()
            );
            let mut r = Resampler::new(*s, *t, 2, Quality::High).unwrap();
            let mut out = Vec::new();
            r.process::<f32>(&[], &mut out).unwrap();
            r.flush(&mut out).unwrap();
            assert!(out.is_empty());
        }
    }

    #[test]
    fn one_sample_input() {
        assert!(
            resample(&[0.5f64], 1, 48000, 16000, Quality::High)
                .unwrap()
                .is_empty()
        );
        let up = resample(&[0.5f64], 1, 16000, 48000, Quality::High).unwrap();
        let design = design_filter(16000, 48000, Quality::High).unwrap().unwrap();
        let (g, d) = (&design.prototype, design.delay);
        let expected: Vec<f64> = (0..3).map(|i| 0.5 * g[d + i]).collect();
        assert_eq!(up.len(), 3);
        for (got, want) in up.iter().zip(&expected) {
            assert!((*got as f64 - want).abs() < 1e-7, "{got} vs {want}");
        }
    }

    #[test]
    fn bad_parameters_are_named() {
        // The audio's own rate and channel count are input errors; the
        // target rate and the ratio it makes are parameter errors.
        let name = |r: Result<Resampler, KernelError>| match r {
            Err(KernelError::InvalidParameter { name, .. }) => name,
            Err(KernelError::InvalidInput { name, .. }) => name,
            other => panic!("expected InvalidParameter or InvalidInput, got {other:?}"),
        };
        assert!(matches!(
            Resampler::new(0, 16000, 1, Quality::High),
            Err(KernelError::InvalidInput { .. })
        ));
        assert!(matches!(
            Resampler::new(48000, 16000, 0, Quality::High),
            Err(KernelError::InvalidInput { .. })
        ));
        assert!(matches!(
            Resampler::new(16000, 0, 1, Quality::High),
            Err(KernelError::InvalidParameter { .. })
        ));
        assert!(matches!(
            Resampler::new(44100, 48001, 1, Quality::High),
            Err(KernelError::InvalidParameter { .. })
        ));
        assert_eq!(
            name(Resampler::new(0, 16000, 1, Quality::High)),
            "source_rate"
        );
        assert_eq!(
            name(Resampler::new(-8000, 16000, 1, Quality::High)),
            "source_rate"
        );
        assert_eq!(
            name(Resampler::new(i64::MAX, 16000, 1, Quality::High)),
            "source_rate"
        );
        assert_eq!(
            name(Resampler::new(16000, 0, 1, Quality::High)),
            "target_rate"
        );
        assert_eq!(
            name(Resampler::new(16000, 2_000_000, 1, Quality::High)),
            "target_rate"
        );
        assert_eq!(
            name(Resampler::new(44100, 48001, 1, Quality::High)),
            "ratio"
        );
        assert_eq!(
            name(Resampler::new(48000, 16000, 0, Quality::High)),
            "channels"
        );
        let err = Resampler::new(44100, 48001, 1, Quality::High)
            .unwrap_err()
            .to_string();
        assert!(err.contains("48001/44100") && err.contains("8192"), "{err}");
        let err = "ultra".parse::<Quality>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid quality: must be one of 'low', 'medium', 'high', 'very_high', got 'ultra'"
        );
        assert_eq!("very_high".parse::<Quality>(), Ok(Quality::VeryHigh));
        // The largest accepted ratio designs and runs.
        assert!(resample(&[0.25f32; 100], 1, 8192, 8191, Quality::Low).is_ok());
    }

    #[test]
    fn non_finite_samples_are_named_by_stream_frame_and_leave_the_stream_unchanged() {
        let x = noise(1000, 2, 3);
        let mut bad = x.clone();
        bad[2 * 123 + 1] = f64::NAN;
        assert_eq!(
            resample(&bad, 2, 48000, 16000, Quality::High).unwrap_err(),
            KernelError::NonFiniteSample {
                index: 247,
                frame: 123,
                channel: 1,
                kind: NonFinite::Nan
            }
        );
        let mut r = Resampler::new(48000, 16000, 2, Quality::High).unwrap();
        let mut out = Vec::new();
        r.process(&x[..1200], &mut out).unwrap();
        let emitted = out.len();
        let mut chunk = x[1200..].to_vec();
        chunk[21] = f64::INFINITY;
        let err = r.process(&chunk, &mut out).unwrap_err();
        assert_eq!(
            err.to_string(),
            "non-finite sample (inf) at index 1221 (frame 610, channel 1)"
        );
        assert_eq!(out.len(), emitted);
        r.process(&x[1200..], &mut out).unwrap();
        r.flush(&mut out).unwrap();
        assert_eq!(out, resample(&x, 2, 48000, 16000, Quality::High).unwrap());
        // The bypass checks too.
        assert!(resample(&[0.0f32, f32::NEG_INFINITY], 1, 8000, 8000, Quality::High).is_err());
    }

    #[test]
    fn misuse_of_the_stream_is_an_error_not_a_panic() {
        let mut r = Resampler::new(48000, 16000, 2, Quality::High).unwrap();
        let mut out = Vec::new();
        assert!(matches!(
            r.process(&[0.0f32; 3], &mut out),
            Err(KernelError::Shape(_))
        ));
        r.process(&[0.0f32; 100], &mut out).unwrap();
        r.flush(&mut out).unwrap();
        let n = out.len();
        r.flush(&mut out).unwrap();
        assert_eq!(out.len(), n);
        let err = r.process(&[0.0f32; 2], &mut out).unwrap_err();
        assert!(err.to_string().contains("after flush"), "{err}");
    }

    #[test]
    fn full_scale_extremes_stay_finite() {
        let x: Vec<i32> = (0..5000)
            .map(|i| if i % 2 == 0 { i32::MAX } else { i32::MIN })
            .collect();
        let y = resample(&x, 1, 44100, 16000, Quality::VeryHigh).unwrap();
        assert!(y.iter().all(|v| v.is_finite() && v.abs() < 2.0));
        let mut big = vec![1e30f64; 64];
        assert!(
            resample(&big, 1, 48000, 16000, Quality::Low)
                .unwrap()
                .iter()
                .all(|v| v.is_finite())
        );
        big[33] = -f64::MAX;
        assert_eq!(
            resample(&big, 2, 48000, 16000, Quality::Low)
                .unwrap_err()
                .to_string(),
            format!(
                "sample {} at index 33 (frame 16, channel 1) overflows float32",
                -f64::MAX
            )
        );
    }
}
