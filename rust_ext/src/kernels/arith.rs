//! Element-wise arithmetic (MultiplyNode, AddNode), fan-in included.
//!
//! Per element: `acc = f64(a0)`, then `acc = acc (+|*) f64(a)` for every
//! further input in order, then `acc = acc (+|*) param`, then back to the
//! sample type with [`Sample::from_f64`] (one cast for floats; round half to
//! even and saturate for integers). Exactly `reference.combine`.

use super::{KernelError, Sample, same_type_slice, same_type_vec};
use crate::avx2_dispatch;

/// The operation of a combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Sum the inputs, then add the parameter.
    Add,
    /// Multiply the inputs, then multiply by the parameter.
    Multiply,
}

impl Op {
    #[inline(always)]
    fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            Op::Add => a + b,
            Op::Multiply => a * b,
        }
    }
}

/// A vector of `n` elements filled by `fill`, which must write every one of them.
#[inline(always)]
fn filled<T>(n: usize, fill: impl FnOnce(&mut [std::mem::MaybeUninit<T>])) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    fill(&mut out.spare_capacity_mut()[..n]);
    // SAFETY: `fill` wrote all `n` elements (each caller zips over exactly `n`).
    unsafe { out.set_len(n) };
    out
}

#[inline(always)]
fn single_impl<T: Sample>(x: &[T], op: Op, param: f64) -> Vec<T> {
    filled(x.len(), |out| match op {
        Op::Add => {
            for (o, &v) in out.iter_mut().zip(x) {
                o.write(T::from_f64(v.to_f64() + param));
            }
        }
        Op::Multiply => {
            for (o, &v) in out.iter_mut().zip(x) {
                o.write(T::from_f64(v.to_f64() * param));
            }
        }
    })
}

avx2_dispatch!(fn single<T: Sample>(x: &[T], op: Op, param: f64) -> Vec<T> => single_impl);

/// f32 input with a parameter that is exactly an f32: one f32 operation per
/// sample gives the same result as the f64 formula (f64 has more than twice
/// f32's precision, so rounding the exact f64 result to f32 equals rounding
/// the exact result once).
#[inline(always)]
fn single_f32_impl(x: &[f32], op: Op, param: f32) -> Vec<f32> {
    filled(x.len(), |out| match op {
        Op::Add => {
            for (o, &v) in out.iter_mut().zip(x) {
                o.write(v + param);
            }
        }
        Op::Multiply => {
            for (o, &v) in out.iter_mut().zip(x) {
                o.write(v * param);
            }
        }
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn single_f32_avx2(x: &[f32], op: Op, param: f32) -> Vec<f32> {
    single_f32_impl(x, op, param)
}

/// Two f32 inputs with a neutral parameter (add 0 / multiply by 1): `x op y`
/// in f32 equals the f64 formula, because rounding the f64 result of one
/// operation on two f32 values to f32 equals rounding the exact result once
/// (`+ 0.0` is kept: it turns -0.0 into +0.0 exactly as the formula does).
#[inline(always)]
fn pair_f32_impl(x: &[f32], y: &[f32], op: Op) -> Vec<f32> {
    filled(x.len().min(y.len()), |out| match op {
        Op::Add => {
            for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
                o.write((a + b) + 0.0);
            }
        }
        Op::Multiply => {
            for ((o, &a), &b) in out.iter_mut().zip(x).zip(y) {
                o.write(a * b);
            }
        }
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn pair_f32_avx2(x: &[f32], y: &[f32], op: Op) -> Vec<f32> {
    pair_f32_impl(x, y, op)
}

fn pair_f32(x: &[f32], y: &[f32], op: Op) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { pair_f32_avx2(x, y, op) };
    }
    pair_f32_impl(x, y, op)
}

fn single_f32(x: &[f32], op: Op, param: f32) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if super::simd::has_avx2() {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { single_f32_avx2(x, op, param) };
    }
    single_f32_impl(x, op, param)
}

const BLOCK: usize = 512;

#[inline(always)]
fn fan_in_impl<T: Sample>(inputs: &[&[T]], op: Op, param: f64, out: &mut [T]) {
    let mut acc = [0.0f64; BLOCK];
    for (b, out_block) in out.chunks_mut(BLOCK).enumerate() {
        let start = b * BLOCK;
        let acc = &mut acc[..out_block.len()];
        let mut inputs_iter = inputs.iter();
        if let Some(first) = inputs_iter.next() {
            for (a, &v) in acc.iter_mut().zip(&first[start..]) {
                *a = v.to_f64();
            }
        }
        for input in inputs_iter {
            for (a, &v) in acc.iter_mut().zip(&input[start..]) {
                *a = op.apply(*a, v.to_f64());
            }
        }
        for (o, &a) in out_block.iter_mut().zip(acc.iter()) {
            *o = T::from_f64(op.apply(a, param));
        }
    }
}

avx2_dispatch!(fn fan_in<T: Sample>(inputs: &[&[T]], op: Op, param: f64, out: &mut [T]) => fan_in_impl);

fn check_param(param: f64) -> Result<(), KernelError> {
    if param.is_finite() {
        Ok(())
    } else {
        Err(KernelError::InvalidParameter {
            name: "param",
            reason: format!("must be finite, got {param}"),
        })
    }
}

/// Combines equally long inputs element-wise into `out` (see the module docs).
pub fn combine<T: Sample>(
    inputs: &[&[T]],
    op: Op,
    param: f64,
    out: &mut [T],
) -> Result<(), KernelError> {
    if inputs.is_empty() {
        return Err(KernelError::Shape("no inputs to combine".to_owned()));
    }
    if let Some(bad) = inputs.iter().find(|x| x.len() != out.len()) {
        return Err(KernelError::Shape(format!(
            "inputs must have the same length: {} vs {}",
            bad.len(),
            out.len()
        )));
    }
    check_param(param)?;
    fan_in(inputs, op, param, out);
    Ok(())
}

/// [`combine`] into a new vector.
pub fn combine_vec<T: Sample>(inputs: &[&[T]], op: Op, param: f64) -> Result<Vec<T>, KernelError> {
    check_param(param)?;
    if let [x] = inputs {
        let p32 = param as f32;
        if let Some(xs) = same_type_slice::<T, f32>(x).filter(|_| p32 as f64 == param)
            && let Some(out) = same_type_vec(single_f32(xs, op, p32))
        {
            return Ok(out);
        }
        return Ok(single(x, op, param));
    }
    let neutral = match op {
        Op::Add => param == 0.0,
        Op::Multiply => param == 1.0,
    };
    if let ([x, y], true) = (inputs, neutral)
        && let (Some(xs), Some(ys)) = (same_type_slice::<T, f32>(x), same_type_slice::<T, f32>(y))
        && xs.len() == ys.len()
        && let Some(out) = same_type_vec(pair_f32(xs, ys, op))
    {
        return Ok(out);
    }
    let len = inputs.first().map_or(0, |x| x.len());
    let mut out = vec![T::default(); len];
    combine(inputs, op, param, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_input_float_and_int() {
        let x = [0.5f32, -1.0, 3.0];
        assert_eq!(
            combine_vec(&[&x], Op::Multiply, 2.0).unwrap(),
            vec![1.0, -2.0, 6.0]
        );
        let i = [1000i16, -20000, 30000];
        assert_eq!(
            combine_vec(&[&i], Op::Multiply, 2.0).unwrap(),
            vec![2000, -32768, 32767]
        );
        assert_eq!(
            combine_vec(&[&[1i16, 2]], Op::Add, 0.5).unwrap(),
            vec![2, 2]
        );
    }

    #[test]
    fn fan_in_sums_in_order_then_applies_param() {
        let a = vec![1e16f64; 1500];
        let b = vec![1.0f64; 1500];
        let c = vec![-1e16f64; 1500];
        // (1e16 + 1) - 1e16 = 0 in f64: order matters and is input order.
        assert_eq!(
            combine_vec(&[&a, &b, &c], Op::Add, 0.0).unwrap(),
            vec![0.0; 1500]
        );
        assert_eq!(
            combine_vec(&[&a, &c, &b], Op::Add, 0.0).unwrap(),
            vec![1.0; 1500]
        );
        let p = combine_vec(&[&[2.0f32][..], &[3.0f32][..]], Op::Multiply, 10.0).unwrap();
        assert_eq!(p, vec![60.0]);
    }

    #[test]
    fn f32_fast_paths_equal_the_f64_formula() {
        let x: Vec<f32> = (0..1000)
            .map(|i| (i as f32 * 0.731).sin() * 1e3f32.powi(i % 5 - 2))
            .collect();
        let y: Vec<f32> = (0..1000)
            .map(|i| (i as f32 * 1.37).cos() * 1e2f32.powi(i % 3 - 1))
            .collect();
        let via_f64 = |a: f32, b: f32, op: Op, p: f64| -> f32 {
            op.apply(op.apply(a as f64, b as f64), p) as f32
        };
        let sum = combine_vec(&[&x, &y], Op::Add, 0.0).unwrap();
        let prod = combine_vec(&[&x, &y], Op::Multiply, 1.0).unwrap();
        for i in 0..x.len() {
            assert_eq!(
                sum[i].to_bits(),
                via_f64(x[i], y[i], Op::Add, 0.0).to_bits()
            );
            assert_eq!(
                prod[i].to_bits(),
                via_f64(x[i], y[i], Op::Multiply, 1.0).to_bits()
            );
        }
        let scaled = combine_vec(&[&x], Op::Multiply, 0.75).unwrap();
        for i in 0..x.len() {
            assert_eq!(
                scaled[i].to_bits(),
                (((x[i] as f64) * 0.75) as f32).to_bits()
            );
        }
        assert_eq!(
            combine_vec(&[&[-0.0f32][..], &[-0.0f32][..]], Op::Add, 0.0).unwrap()[0].to_bits(),
            0
        );
    }

    #[test]
    fn mismatched_lengths_and_bad_param_are_errors() {
        assert!(combine_vec(&[&[1.0f32, 2.0][..], &[1.0f32][..]], Op::Add, 0.0).is_err());
        assert!(combine_vec(&[&[1.0f32][..]], Op::Add, f64::NAN).is_err());
        assert!(combine_vec::<f32>(&[], Op::Add, 0.0).is_err());
    }
}
