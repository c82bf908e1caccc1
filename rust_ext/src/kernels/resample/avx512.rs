//! The AVX-512 kernels, chosen at run time by `render` (`stream.rs`) when the
//! CPU has AVX-512F (with AVX2 and FMA).
//!
//! They read the same plan and history buffers as the AVX2 kernels (8-lane
//! coefficient rows, windows starting at a multiple of 8) and share their
//! stripes and tiles (`avx2.rs`), 16 lanes wide: each output's accumulator
//! holds its even vectors `v = 0, 2, 4, ...` in lanes 0-7 and its odd vectors
//! in lanes 8-15 (an odd last vector is loaded masked, so nothing past the
//! window is read), and the output is the tree of `mod.rs` over the sum of
//! the two halves. That is one fixed sequence of f32 operations per output,
//! whichever tile computes it, so a stream stays bit-identical to one call;
//! it differs from the AVX2 sequence in rounding only (a few float32 ulps of
//! the output's peak: up to about 7e-7 at full scale).
//!
//! On CPUs with full-width 512-bit FMA units (AMD Zen 5, Intel server parts)
//! this does twice the multiply-adds per instruction: about 1.6x the AVX2
//! kernels' speed at 48 kHz -> 16 kHz. The loads are 64 bytes from 32-byte
//! aligned addresses (half of them cross a cache line), which the FMAs, not
//! the loads, still bound.

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::avx2::store_sums;
use super::design::{Cursor, Plan};

/// The two halves of an accumulator added: lanes `l + 8` onto lanes `l`
/// (odd vectors onto even ones), 8 lanes for the tree of `mod.rs`.
#[inline(always)]
unsafe fn fold(a: __m512) -> __m256 {
    unsafe {
        _mm256_add_ps(
            _mm512_castps512_ps256(a),
            _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1)),
        )
    }
}

/// `R x J` outputs: output `(r, j)` reads coefficients `coef[r]` and inputs
/// `x + j * x_step` (windows of `8 * nv` floats) and is written to
/// `out + r * out_r + j * out_j`. `R * J <= 12` keeps every accumulator in
/// a register; per pair of vectors, `R + J` loads feed `R * J` FMAs.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn block<const R: usize, const J: usize>(
    coef: [*const f32; R],
    nv: usize,
    x: *const f32,
    x_step: usize,
    out: *mut f32,
    out_r: usize,
    out_j: usize,
) {
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); J]; R];
        let xp: [*const f32; J] = std::array::from_fn(|j| x.add(j * x_step));
        let pairs = nv / 2;
        for p in 0..pairs {
            let c: [__m512; R] = std::array::from_fn(|r| _mm512_loadu_ps(coef[r].add(16 * p)));
            for j in 0..J {
                let xv = _mm512_loadu_ps(xp[j].add(16 * p));
                for r in 0..R {
                    acc[r][j] = _mm512_fmadd_ps(c[r], xv, acc[r][j]);
                }
            }
        }
        if nv % 2 == 1 {
            let low = 0x00ff;
            let c: [__m512; R] =
                std::array::from_fn(|r| _mm512_maskz_loadu_ps(low, coef[r].add(16 * pairs)));
            for j in 0..J {
                let xv = _mm512_maskz_loadu_ps(low, xp[j].add(16 * pairs));
                for r in 0..R {
                    acc[r][j] = _mm512_fmadd_ps(c[r], xv, acc[r][j]);
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            let mut folded = [_mm256_setzero_ps(); J];
            for (f, &a) in folded.iter_mut().zip(row) {
                *f = fold(a);
            }
            store_sums(&folded, out.add(r * out_r), out_j);
        }
    }
}

/// `G` outputs with their own coefficients `coefs + c_off[j]` and inputs
/// `x + x_off[j]`, written to `out + j * out_step`: the `G` independent
/// accumulators hide the FMA latency that one output alone waits on.
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn gather<const G: usize>(
    coefs: *const f32,
    c_off: &[usize; G],
    x: *const f32,
    x_off: &[usize; G],
    nv: usize,
    out: *mut f32,
    out_step: usize,
) {
    unsafe {
        let cp: [*const f32; G] = std::array::from_fn(|j| coefs.add(c_off[j]));
        let xp: [*const f32; G] = std::array::from_fn(|j| x.add(x_off[j]));
        let mut acc = [_mm512_setzero_ps(); G];
        let pairs = nv / 2;
        for p in 0..pairs {
            for j in 0..G {
                acc[j] = _mm512_fmadd_ps(
                    _mm512_loadu_ps(cp[j].add(16 * p)),
                    _mm512_loadu_ps(xp[j].add(16 * p)),
                    acc[j],
                );
            }
        }
        if nv % 2 == 1 {
            let low = 0x00ff;
            for j in 0..G {
                acc[j] = _mm512_fmadd_ps(
                    _mm512_maskz_loadu_ps(low, cp[j].add(16 * pairs)),
                    _mm512_maskz_loadu_ps(low, xp[j].add(16 * pairs)),
                    acc[j],
                );
            }
        }
        let mut folded = [_mm256_setzero_ps(); G];
        for (f, &a) in folded.iter_mut().zip(&acc) {
            *f = fold(a);
        }
        store_sums(&folded, out, out_step);
    }
}

/// The AVX-512 schedule: spans of `4 P` outputs as tiles of up to 3
/// consecutive outputs that read the same inputs, over 4 stripes `P` outputs
/// apart (as `render_avx2`'s quarter spans), then groups of 8 and 4 outputs
/// with their own coefficients, then single outputs.
///
/// # Safety
/// The CPU must have AVX-512F, AVX2 and FMA, and the windows of outputs
/// `[cur, cur + count)` must lie within `x` (checked by `render`).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn render_avx512(
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
    let step = plan.stripe_step;
    let mut i = 0;
    // SAFETY (all blocks): see the function's contract; outputs `i + j*period`
    // of a stripe are all below `count`.
    if let Some(quarter) = period.checked_mul(4) {
        while count - i >= quarter {
            let mut c = *cur;
            let mut p = 0;
            while p < period {
                let (coef, xo, run) = c.tile(plan, whole, frac, period - p);
                let jump = period * stride;
                unsafe {
                    let o = op.add((i + p) * stride);
                    let cp = coef.map(|co| coefs.add(co));
                    let x0 = xp.add(xo);
                    match run {
                        3 => block::<3, 4>(cp, nv, x0, step, o, stride, jump),
                        2 => block::<2, 4>([cp[0], cp[1]], nv, x0, step, o, stride, jump),
                        _ => block::<1, 4>([cp[0]], nv, x0, step, o, stride, jump),
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
    while count - i >= 8 {
        let (c_off, x_off) = cur.take::<8>(plan, whole, frac);
        unsafe { gather::<8>(coefs, &c_off, xp, &x_off, nv, op.add(i * stride), stride) };
        i += 8;
    }
    while count - i >= 4 {
        let (c_off, x_off) = cur.take::<4>(plan, whole, frac);
        unsafe { gather::<4>(coefs, &c_off, xp, &x_off, nv, op.add(i * stride), stride) };
        i += 4;
    }
    while i < count {
        let (co, xo) = cur.offsets(plan);
        unsafe { block::<1, 1>([coefs.add(co)], nv, xp.add(xo), 0, op.add(i * stride), 0, 0) };
        cur.advance(plan, whole, frac);
        i += 1;
    }
}
