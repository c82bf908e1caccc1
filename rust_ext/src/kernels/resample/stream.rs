//! The streaming [`Resampler`]: input kept per channel as aligned f32
//! history, outputs emitted as soon as their inputs have arrived, and the
//! portable kernel (the AVX2 ones are in `avx2.rs`).

use std::mem::MaybeUninit;
use std::sync::Arc;

use super::design::{AlignedBuf, Cursor, FilterDesign, Plan, output_frames, plan, reduced_ratio};
use super::{MAX_CHANNELS, Quality};
use crate::avx2_dispatch;
use crate::kernels::{KernelError, Sample, check_finite, simd};

/// Input frames appended per step of a large chunk: bounds the working set
/// (the samples stay in L2) without changing any output.
pub(super) const BLOCK_FRAMES: usize = 1 << 14;

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
    pub(super) plan: Option<Arc<Plan>>,
    received: u64,
    emitted: u64,
    flushed: bool,
    /// Absolute input index of `history[c][0]`, a multiple of 8 (negative
    /// while the zeros before the stream are still needed).
    origin: i64,
    /// Entries of each history buffer holding input (or the leading zeros):
    /// `origin + filled == received`. Entries past `filled` are stale until
    /// `emit` zeroes the few that the last windows reach.
    pub(super) filled: usize,
    pub(super) history: Vec<AlignedBuf>,
    pub(super) kernel: Kernel,
}

/// Caps the resampling kernel (see [`Kernel::best`]).
pub const KERNEL_ENV: &str = "REMOTEMEDIA_RAY_RESAMPLE_KERNEL";

/// The convolution kernels, one per instruction set; a [`Resampler`] keeps the
/// one it was created with (the fastest the CPU has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    /// 8 lanes, multiply then add: any CPU.
    Portable,
    /// AVX2 + FMA (`avx2.rs`).
    Avx2,
    /// AVX-512F (`avx512.rs`).
    Avx512,
}

impl Kernel {
    /// The fastest kernel this CPU runs, at most the one named by the
    /// environment variable `REMOTEMEDIA_RAY_RESAMPLE_KERNEL` (`portable`,
    /// `avx2` or `avx512`; read once): kernels round differently (a few ulps),
    /// so a cluster of mixed CPUs gives bit-identical results only at a
    /// level all of them have.
    pub(super) fn best() -> Kernel {
        static BEST: std::sync::OnceLock<Kernel> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            let cap = match std::env::var(KERNEL_ENV).as_deref() {
                Ok("portable") => Kernel::Portable,
                Ok("avx2") => Kernel::Avx2,
                _ => Kernel::Avx512,
            };
            let cpu = if simd::has_avx512f() && simd::has_avx2_fma() {
                Kernel::Avx512
            } else if simd::has_avx2_fma() {
                Kernel::Avx2
            } else {
                Kernel::Portable
            };
            if (cap as u8) < (cpu as u8) { cap } else { cpu }
        })
    }

    /// Every kernel this CPU runs, portable first.
    #[cfg(test)]
    pub(super) fn available() -> Vec<Kernel> {
        [Kernel::Portable, Kernel::Avx2, Kernel::Avx512]
            .into_iter()
            .filter(|&k| k as u8 <= Kernel::best() as u8)
            .collect()
    }
}

impl Resampler {
    /// A resampler from `source_rate` to `target_rate` Hz for `channels`-channel audio.
    ///
    /// Errors (`InvalidParameter`): a rate outside `[1, MAX_RATE]`, a reduced
    /// ratio with a term above [`MAX_RATIO_TERM`](super::MAX_RATIO_TERM), or a
    /// channel count outside `[1, MAX_CHANNELS]`.
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
            kernel: Kernel::best(),
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
        if !input.len().is_multiple_of(self.channels) {
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
        let kernel = self.kernel;
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
                kernel,
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
    let mut out = Vec::new();
    resample_into(input, channels, source_rate, target_rate, quality, &mut out)?;
    Ok(out)
}

/// [`resample`] into `out` (cleared first), reusing its memory where it is large enough.
pub fn resample_into<S: Sample>(
    input: &[S],
    channels: usize,
    source_rate: i64,
    target_rate: i64,
    quality: Quality,
    out: &mut Vec<f32>,
) -> Result<(), KernelError> {
    out.clear();
    let mut resampler = Resampler::new(source_rate, target_rate, channels, quality)?;
    let frames = (input.len() / channels) as u64;
    let expected = output_frames(frames, resampler.source_rate, resampler.target_rate);
    resampler.check_chunk(input)?;
    // One allocation for the whole result (handed to numpy as it is); `emit`
    // reports an output that cannot be allocated.
    let _ = out.try_reserve_exact(
        usize::try_from(expected)
            .unwrap_or(usize::MAX)
            .saturating_mul(channels),
    );
    resampler.feed(input, out, true)?;
    resampler.flush(out)
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
    kernel: Kernel,
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

    // SAFETY (both calls): the CPU has the kernel's instructions (`kernel`
    // comes from `Kernel::best`), and every window read lies within the
    // bounds checked above (coefficient windows lie within their padded row).
    #[cfg(target_arch = "x86_64")]
    match kernel {
        Kernel::Avx512 => {
            unsafe {
                super::avx512::render_avx512(plan, x, &mut cur, whole, frac, count, out, stride)
            };
            return Ok(());
        }
        Kernel::Avx2 => {
            unsafe { super::avx2::render_avx2(plan, x, &mut cur, whole, frac, count, out, stride) };
            return Ok(());
        }
        Kernel::Portable => {}
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = kernel;
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
