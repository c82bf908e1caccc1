//! Sample format conversion (FormatConverterNode).
//!
//! One formula covers every pair of formats: `y = f64(x) * (SCALE_dst /
//! SCALE_src)` (an exact power-of-two scaling), then `D::from_f64(y)`: one
//! IEEE cast for float targets, `round_ties_even` + saturation for integer
//! targets. This equals the per-pair rules of `reference.convert_format`
//! (e.g. i16 -> i32 is `v << 16`, float -> i16 is `round_saturate(x * 32768)`).
//! Float sources are checked finite first, and an f64 -> f32 conversion that
//! overflows to infinity is refused.

use std::any::TypeId;

use super::{KernelError, Sample, check_finite, same_type_slice, same_type_vec};
use crate::avx2_dispatch;

#[inline(always)]
fn convert_collect<S: Sample, D: Sample>(src: &[S]) -> Vec<D> {
    let factor = D::SCALE / S::SCALE;
    src.iter()
        .map(|&s| D::from_f64(s.to_f64() * factor))
        .collect()
}

avx2_dispatch!(fn convert_dispatch<S: Sample, D: Sample>(src: &[S]) -> Vec<D> => convert_collect);

/// f32 -> i16 in one pass: `round_saturate(x * 32768)`, computed in f32, which
/// is exact here (scaling by a power of two, then rounding an exactly
/// representable value), so it equals the f64 formula. Returns whether every
/// sample was finite (the output is meaningless otherwise).
fn f32_to_i16(src: &[f32], dst: &mut [std::mem::MaybeUninit<i16>]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { f32_to_i16_avx2(src, dst) };
    }
    f32_to_i16_scalar(src, dst)
}

#[inline(always)]
fn f32_to_i16_scalar(src: &[f32], dst: &mut [std::mem::MaybeUninit<i16>]) -> bool {
    let mut finite = true;
    for (d, &s) in dst.iter_mut().zip(src) {
        finite &= s.is_finite();
        d.write((s * 32768.0).round_ties_even().clamp(-32768.0, 32767.0) as i16);
    }
    finite
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn f32_to_i16_avx2(src: &[f32], dst: &mut [std::mem::MaybeUninit<i16>]) -> bool {
    use std::arch::x86_64::*;
    let n = src.len().min(dst.len());
    let main = n - n % 16;
    let scale = _mm256_set1_ps(32768.0);
    let lo = _mm256_set1_ps(-32768.0);
    let hi = _mm256_set1_ps(32767.0);
    let exponent = _mm256_set1_epi32(0x7f80_0000);
    let mut bad = _mm256_setzero_si256();
    let sp = src.as_ptr();
    let dp = dst.as_mut_ptr().cast::<i16>();
    let mut i = 0;
    while i < main {
        // SAFETY: i + 16 <= main <= both lengths, so every load and store is in bounds.
        unsafe {
            let a = _mm256_loadu_ps(sp.add(i));
            let b = _mm256_loadu_ps(sp.add(i + 8));
            let ea = _mm256_and_si256(_mm256_castps_si256(a), exponent);
            let eb = _mm256_and_si256(_mm256_castps_si256(b), exponent);
            bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(ea, exponent));
            bad = _mm256_or_si256(bad, _mm256_cmpeq_epi32(eb, exponent));
            const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
            let ra = _mm256_round_ps::<NEAREST>(_mm256_mul_ps(a, scale));
            let rb = _mm256_round_ps::<NEAREST>(_mm256_mul_ps(b, scale));
            let ia = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(ra, lo), hi));
            let ib = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(rb, lo), hi));
            // packs works per 128-bit lane: [a0..3 b0..3 | a4..7 b4..7]; restore order.
            let packed = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packs_epi32(ia, ib));
            _mm256_storeu_si256(dp.add(i).cast::<__m256i>(), packed);
        }
        i += 16;
    }
    let tail_ok = f32_to_i16_scalar(&src[main..n], &mut dst[main..n]);
    tail_ok && _mm256_testz_si256(bad, bad) == 1
}

/// Converts interleaved `channels`-channel audio from `S` to `D` into a new vector.
///
/// Float sources must be finite; an f64 source whose finite value overflows
/// f32 is refused.
pub fn convert_vec<S: Sample, D: Sample>(
    src: &[S],
    channels: usize,
) -> Result<Vec<D>, KernelError> {
    if let Some(s32) = same_type_slice::<S, f32>(src)
        && TypeId::of::<D>() == TypeId::of::<i16>()
    {
        let mut out: Vec<i16> = Vec::with_capacity(s32.len());
        if !f32_to_i16(s32, out.spare_capacity_mut()) {
            check_finite(src, channels)?;
        }
        // SAFETY: f32_to_i16 initialized all s32.len() elements of the spare capacity.
        unsafe { out.set_len(s32.len()) };
        return same_type_vec(out)
            .ok_or_else(|| KernelError::Shape("internal type mismatch".into()));
    }
    check_finite(src, channels)?;
    let dst: Vec<D> = convert_dispatch(src);
    if S::IS_FLOAT
        && D::IS_FLOAT
        && std::mem::size_of::<D>() < std::mem::size_of::<S>()
        && let Some(index) = dst.iter().position(|d| !d.is_finite())
    {
        return Err(KernelError::Overflow {
            index,
            frame: index / channels.max(1),
            channel: index % channels.max(1),
            value: src[index].to_f64(),
        });
    }
    Ok(dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_to_i16_edges_and_ties() {
        let x: [f32; 8] = [
            1.0,
            -1.0,
            1.5,
            0.5 / 32768.0,
            1.5 / 32768.0,
            2.5 / 32768.0,
            -0.5 / 32768.0,
            0.99999,
        ];
        let y: Vec<i16> = convert_vec(&x, 1).unwrap();
        assert_eq!(y, vec![32767, -32768, 32767, 0, 2, 2, 0, 32767]);
        let y64: Vec<i16> = convert_vec(&x.map(f64::from), 1).unwrap();
        assert_eq!(y64, y);
    }

    #[test]
    fn every_int16_roundtrips_through_f32() {
        let all: Vec<i16> = (i16::MIN..=i16::MAX).collect();
        let f: Vec<f32> = convert_vec(&all, 1).unwrap();
        let back: Vec<i16> = convert_vec(&f, 1).unwrap();
        assert_eq!(back, all);
    }

    #[test]
    fn integer_widening_and_narrowing() {
        let x: [i16; 3] = [-32768, 1, 32767];
        let y: Vec<i32> = convert_vec(&x, 1).unwrap();
        assert_eq!(y, vec![-32768 << 16, 1 << 16, 32767 << 16]);
        let z: [i32; 5] = [32768, 98304, -32768, i32::MAX, i32::MIN];
        let w: Vec<i16> = convert_vec(&z, 1).unwrap();
        assert_eq!(w, vec![0, 2, 0, 32767, -32768]);
    }

    #[test]
    fn non_finite_and_overflow_are_refused() {
        let err = convert_vec::<f32, i16>(&[0.0, 0.1, f32::NAN, 0.2], 2).unwrap_err();
        assert!(matches!(
            err,
            KernelError::NonFiniteSample {
                index: 2,
                frame: 1,
                channel: 0,
                ..
            }
        ));
        let err = convert_vec::<f64, f32>(&[0.0, 1e300], 1).unwrap_err();
        assert!(matches!(err, KernelError::Overflow { index: 1, .. }));
        assert!(convert_vec::<f32, f32>(&[f32::INFINITY], 1).is_err());
    }
}
