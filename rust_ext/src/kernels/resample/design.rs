//! The filter design (Kaiser-windowed sinc, phase table) and the plan the
//! kernels read: f32 coefficient rows laid out for aligned loads, cached per
//! `(L, M, quality)`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use super::{MAX_RATE, MAX_RATIO_TERM, Quality};
use crate::kernels::KernelError;

/// How many designs (per `(L, M, quality)`) are kept for reuse.
const DESIGN_CACHE_SIZE: usize = 16;

/// Outputs that share one coefficient vector in the main kernel.
pub(super) const STRIPES: usize = 12;

/// Phase tables up to this size are stored as 8 pre-shifted rows per phase,
/// so the coefficient loads are aligned too (48k -> 16k: 12 KB).
const SHIFTED_ROWS_BYTES: usize = 1 << 18;

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

/// The filter [`Resampler`](super::Resampler) uses for these rates and quality
/// (`None` when the rates are equal: no filtering).
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
pub(super) struct AlignedBuf {
    blocks: Vec<Lane8>,
}

impl AlignedBuf {
    pub(super) fn zeros(len: usize) -> Self {
        AlignedBuf {
            blocks: vec![Lane8::default(); len.div_ceil(8)],
        }
    }

    pub(super) fn len(&self) -> usize {
        self.blocks.len() * 8
    }

    /// Grows to at least `len` floats (new ones are zero).
    pub(super) fn grow_to(&mut self, len: usize) {
        let blocks = len.div_ceil(8);
        if blocks > self.blocks.len() {
            self.blocks.resize(blocks, Lane8::default());
        }
    }

    pub(super) fn as_slice(&self) -> &[f32] {
        // SAFETY: Lane8 is repr(C) [f32; 8] (32 bytes, no padding), so the
        // blocks are `8 * len` contiguous, initialized f32.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr().cast::<f32>(), self.len()) }
    }

    pub(super) fn as_mut_slice(&mut self) -> &mut [f32] {
        let len = self.len();
        // SAFETY: as in `as_slice`, and `&mut self` makes the view unique.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_mut_ptr().cast::<f32>(), len) }
    }
}

/// A design with everything the kernels need, shared by all resamplers of
/// one `(L, M, quality)`.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) design: Arc<FilterDesign>,
    pub(super) up: u64,
    pub(super) down: u64,
    pub(super) first_offset: i64,
    lookahead: i64,
    /// Vectors of 8 per output: `ceil((T + 7) / 8)`.
    pub(super) nv: usize,
    /// The f32 coefficients. Output `(r, o)` reads `8 * nv` of them from
    /// `r * phase_stride + o_offset[o]`: lane `p` holds tap `p - o` (zero
    /// outside `0..T`). Either one zero-padded row per phase (tap `t` at
    /// `8 + t`, read unaligned from `8 - o`), or, when small, 8 pre-shifted
    /// aligned rows per phase (tap `t` at `o + t` of row `o`).
    pub(super) rows: AlignedBuf,
    phase_stride: usize,
    o_offset: [usize; 8],
    /// `P = L * 8 / gcd(M, 8)`: outputs `P` apart share phase and alignment.
    pub(super) period: u64,
    /// `V * M`: the input frames between outputs `P` apart.
    pub(super) stripe_step: usize,
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
    pub(super) fn position(&self, k: u64) -> (u128, u64) {
        let km = k as u128 * self.down as u128;
        (km / self.up as u128, (km % self.up as u128) as u64)
    }

    /// Outputs in one span of the main kernel: `STRIPES * P`.
    pub(super) fn span_outputs(&self) -> u64 {
        self.period * STRIPES as u64
    }

    /// About the input frames one span of outputs reads.
    pub(super) fn span_inputs(&self) -> usize {
        let frames = (self.span_outputs() as u128 * self.down as u128).div_ceil(self.up as u128);
        usize::try_from(frames)
            .unwrap_or(usize::MAX)
            .saturating_add(8 * self.nv)
    }

    /// How many outputs `k` have `floor(k*M/L) + s_max <= frames - 1`.
    pub(super) fn ready(&self, frames: u64) -> u64 {
        let have = frames as i128 - self.lookahead as i128;
        if have <= 0 {
            return 0;
        }
        let n = (have as u128 * self.up as u128).div_ceil(self.down as u128);
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

pub(super) fn plan(up: u64, down: u64, quality: Quality) -> Arc<Plan> {
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

/// Where output `k` reads: its coefficients (in `plan.rows`) and inputs (in
/// the history buffer), advanced one output at a time.
#[derive(Debug, Clone, Copy)]
pub(super) struct Cursor {
    /// Buffer index of the output's first input, `q + s_min - origin`.
    pub(super) rel: usize,
    /// Its phase `r`.
    pub(super) phase: u64,
}

impl Cursor {
    #[inline(always)]
    pub(super) fn advance(&mut self, plan: &Plan, whole: usize, frac: u64) {
        self.rel += whole;
        self.phase += frac;
        if self.phase >= plan.up {
            self.phase -= plan.up;
            self.rel += 1;
        }
    }

    /// The tile starting at this output: up to 3 (and at most `limit`)
    /// consecutive outputs whose windows start in the same aligned block of
    /// 8, so they read the same input vectors. Returns their coefficient
    /// offsets (unused entries repeat the first), the common input offset and
    /// how many there are.
    #[inline(always)]
    pub(super) fn tile(
        &self,
        plan: &Plan,
        whole: usize,
        frac: u64,
        limit: usize,
    ) -> ([usize; 3], usize, usize) {
        let (co, xo) = self.offsets(plan);
        let mut coef = [co; 3];
        let mut run = 1;
        let mut next = *self;
        next.advance(plan, whole, frac);
        while run < 3 && run < limit {
            let (co_next, xo_next) = next.offsets(plan);
            if xo_next != xo {
                break;
            }
            coef[run] = co_next;
            run += 1;
            next.advance(plan, whole, frac);
        }
        (coef, xo, run)
    }

    /// The offsets of the next `G` outputs (see [`Cursor::offsets`]),
    /// advancing past them.
    #[inline(always)]
    pub(super) fn take<const G: usize>(
        &mut self,
        plan: &Plan,
        whole: usize,
        frac: u64,
    ) -> ([usize; G], [usize; G]) {
        let mut c_off = [0usize; G];
        let mut x_off = [0usize; G];
        for j in 0..G {
            (c_off[j], x_off[j]) = self.offsets(plan);
            self.advance(plan, whole, frac);
        }
        (c_off, x_off)
    }

    /// `(coefficient offset, input offset)`: both windows of `8 * nv` floats.
    #[inline(always)]
    pub(super) fn offsets(&self, plan: &Plan) -> (usize, usize) {
        let o = self.rel & 7;
        (
            self.phase as usize * plan.phase_stride + plan.o_offset[o],
            self.rel - o,
        )
    }
}
