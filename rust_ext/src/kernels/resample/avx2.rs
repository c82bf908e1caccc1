//! The AVX2 + FMA kernels, chosen at run time by `render` (`stream.rs`) when
//! the CPU has both.
//!
//! Samples are kept per channel in 32-byte-aligned f32 buffers whose first
//! element has an absolute index that is a multiple of 8, so every `x` vector
//! load is aligned. Coefficients are f32 rows: 8 pre-shifted, aligned rows
//! per phase (row `o` holds the `c` of the dot product in `mod.rs`) when that table is small (up to
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
//! The lanes of up to twelve outputs are reduced with `vhaddps` (the tree
//! of `mod.rs`). CPUs without AVX2/FMA use a portable 8-lane loop with separate
//! multiply and add (results within ~1e-7 of the FMA path; each CPU always
//! uses one of the two, so streaming stays exact).

use std::arch::x86_64::*;
use std::mem::MaybeUninit;

use super::design::{Cursor, Plan, STRIPES};

/// Lane sums of four accumulators: `[sum(a), sum(b), sum(c), sum(d)]`,
/// each `((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7))`.
#[inline(always)]
unsafe fn reduce4(a: __m256, b: __m256, c: __m256, d: __m256) -> __m128 {
    unsafe {
        let h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
        _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1))
    }
}

/// Lane sums of one accumulator, by the same tree as [`reduce4`].
#[inline(always)]
unsafe fn reduce1(a: __m256) -> f32 {
    unsafe {
        let h = _mm256_hadd_ps(a, a);
        let h = _mm256_hadd_ps(h, h);
        _mm_cvtss_f32(_mm_add_ss(
            _mm256_castps256_ps128(h),
            _mm256_extractf128_ps(h, 1),
        ))
    }
}

/// Writes the lane sums of `acc` to `out[j * step]` (the AVX-512 kernels'
/// too, once they have folded their halves).
#[inline(always)]
pub(super) unsafe fn store_sums<const G: usize>(acc: &[__m256; G], out: *mut f32, step: usize) {
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
unsafe fn stripe<const G: usize>(
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
unsafe fn stripe12(
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
unsafe fn store12(acc: &[__m256; 12], out: *mut f32, offsets: &[usize; 12]) {
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
unsafe fn tile3x4(
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
unsafe fn tile2x6(
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
unsafe fn tile2x4(
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
unsafe fn gather4(
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

/// The AVX2 schedule: whole spans of `12 P` outputs as tiles over 12
/// stripes, then quarter spans (4 stripes), then groups of 4 outputs with
/// their own coefficients, then single outputs.
///
/// # Safety
/// The CPU must have AVX2 and FMA, and the windows of outputs `[cur, cur +
/// count)` must lie within `x` (checked by `render`).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn render_avx2(
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
                let (coef, xo, run) = c.tile(plan, whole, frac, period - p);
                let jump = period * stride;
                unsafe {
                    let o = op.add((i + p) * stride);
                    let cp = coef.map(|co| coefs.add(co));
                    match run {
                        3 => {
                            for g in 0..3 {
                                tile3x4(
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
                                tile2x6(
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
                        _ => stripe12(cp[0], nv, xp.add(xo), step, o, jump),
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
                let (coef, xo, run) = c.tile(plan, whole, frac, period - p);
                let jump = period * stride;
                unsafe {
                    let o = op.add((i + p) * stride);
                    let cp = coef.map(|co| coefs.add(co));
                    let x0 = xp.add(xo);
                    match run {
                        3 => tile3x4(cp, nv, x0, step, o, stride, jump),
                        2 => tile2x4([cp[0], cp[1]], nv, x0, step, o, stride, jump),
                        _ => stripe::<4>(cp[0], nv, x0, step, o, jump),
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
        let (c_off, x_off) = cur.take::<4>(plan, whole, frac);
        unsafe { gather4(coefs, &c_off, xp, &x_off, nv, op.add(i * stride), stride) };
        i += 4;
    }
    while i < count {
        let (co, xo) = cur.offsets(plan);
        unsafe { stripe::<1>(coefs.add(co), nv, xp.add(xo), 0, op.add(i * stride), 0) };
        cur.advance(plan, whole, frac);
        i += 1;
    }
}
