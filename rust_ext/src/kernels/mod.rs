//! Pure-Rust audio kernels: no pyo3, no Python objects, no panics on bad input
//! (every refusal is a [`KernelError`]).
//!
//! Audio is interleaved, row-major `(frames, channels)`, in one of four sample
//! types ([`Sample`]: `f32`, `f64`, `i16`, `i32`). The arithmetic of each
//! kernel is the contract written in `remotemedia_ray/nodes/reference/`; the
//! numpy reference and these kernels give bit-identical results (resampling
//! excepted: both meet the same quality specification).

use thiserror::Error;

pub mod arith;
pub mod chain;
pub mod convert;
pub mod digest;
pub mod mix;
pub mod resample;
pub mod segment;
pub mod simd;
pub mod vad;

/// What kind of non-finite value a sample holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonFinite {
    /// Not a number.
    Nan,
    /// Positive infinity.
    PosInf,
    /// Negative infinity.
    NegInf,
}

impl NonFinite {
    /// Classifies a non-finite `f64` (finite values classify as NaN; callers
    /// only pass non-finite ones).
    pub fn of(value: f64) -> Self {
        if value == f64::INFINITY {
            NonFinite::PosInf
        } else if value == f64::NEG_INFINITY {
            NonFinite::NegInf
        } else {
            NonFinite::Nan
        }
    }

    /// `"nan"`, `"inf"` or `"-inf"`, as in the Python messages.
    pub fn name(self) -> &'static str {
        match self {
            NonFinite::Nan => "nan",
            NonFinite::PosInf => "inf",
            NonFinite::NegInf => "-inf",
        }
    }
}

/// Why a kernel refused its input.
///
/// The pyo3 layer maps every variant to a `remotemedia_ray.errors` class in one
/// place (`python::kernel_error_to_py`).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum KernelError {
    /// A node parameter is outside the range the kernel accepts.
    #[error("invalid {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name as the user spelled it.
        name: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// A property of the input (its sample rate, channel count, a chunk of a
    /// stream) is unusable: the audio is at fault, not a parameter.
    #[error("invalid {name}: {reason}")]
    InvalidInput {
        /// What of the input is wrong, e.g. `source_rate`.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A sample is NaN or infinite.
    #[error(
        "non-finite sample ({}) at index {index} (frame {frame}, channel {channel})",
        kind.name()
    )]
    NonFiniteSample {
        /// Flat row-major index of the first offending sample.
        index: usize,
        /// Its frame.
        frame: usize,
        /// Its channel.
        channel: usize,
        /// NaN, +inf or -inf.
        kind: NonFinite,
    },
    /// A finite sample does not fit the target format (f64 -> f32 overflow).
    #[error("sample {value} at index {index} (frame {frame}, channel {channel}) overflows float32")]
    Overflow {
        /// Flat row-major index of the sample.
        index: usize,
        /// Its frame.
        frame: usize,
        /// Its channel.
        channel: usize,
        /// The value.
        value: f64,
    },
    /// Buffers that must agree in shape or layout do not.
    #[error("{0}")]
    Shape(String),
}

impl KernelError {
    /// The same refusal blamed on the input: `InvalidParameter` becomes
    /// `InvalidInput`; other variants are returned unchanged.
    pub fn into_input(self) -> Self {
        match self {
            KernelError::InvalidParameter { name, reason } => {
                KernelError::InvalidInput { name, reason }
            }
            other => other,
        }
    }

    /// A [`KernelError::NonFiniteSample`] for flat index `index` of `channels`-channel audio.
    pub fn non_finite(index: usize, channels: usize, value: f64) -> Self {
        let channels = channels.max(1);
        KernelError::NonFiniteSample {
            index,
            frame: index / channels,
            channel: index % channels,
            kind: NonFinite::of(value),
        }
    }
}

/// A sample type of audio: `f32`, `f64`, `i16` or `i32`.
pub trait Sample: Copy + Send + Sync + Default + PartialEq + std::fmt::Debug + 'static {
    /// Whether this is a float type.
    const IS_FLOAT: bool;
    /// `2^(bits-1)` for integers (full scale), `1.0` for floats.
    const SCALE: f64;
    /// The value as `f64` (exact for every type but none is rounded; no scaling).
    fn to_f64(self) -> f64;
    /// `x` converted back: floats by one IEEE cast (`as`), integers by
    /// `round_ties_even` then saturation (NaN -> 0), i.e. `round_saturate`.
    fn from_f64(x: f64) -> Self;
    /// Whether the value is finite (always true for integers).
    fn is_finite(self) -> bool;
    /// The mean of two samples, exactly `from_f64((a.to_f64() + b.to_f64()) / 2.0)`
    /// (types may compute it faster, never differently).
    #[inline(always)]
    fn mean2(a: Self, b: Self) -> Self {
        Self::from_f64((a.to_f64() + b.to_f64()) / 2.0)
    }
}

impl Sample for f32 {
    const IS_FLOAT: bool = true;
    const SCALE: f64 = 1.0;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x as f32
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f32::is_finite(self)
    }
}

impl Sample for f64 {
    const IS_FLOAT: bool = true;
    const SCALE: f64 = 1.0;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        f64::is_finite(self)
    }
}

impl Sample for i16 {
    const IS_FLOAT: bool = false;
    const SCALE: f64 = 32768.0;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x.round_ties_even() as i16
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        true
    }
    /// In integers: the sum halved, a half rounded to the even neighbour (the f64
    /// path's `round_ties_even`; the mean of two i16 is always in range). Vectorizes.
    #[inline(always)]
    fn mean2(a: Self, b: Self) -> Self {
        let sum = a as i32 + b as i32;
        let floor = sum >> 1;
        (floor + (sum & floor & 1)) as i16
    }
}

impl Sample for i32 {
    const IS_FLOAT: bool = false;
    const SCALE: f64 = 2147483648.0;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(x: f64) -> Self {
        x.round_ties_even() as i32
    }
    #[inline(always)]
    fn is_finite(self) -> bool {
        true
    }
}

/// `s` as a slice of `T` when `S` and `T` are the same type (a kernel's fast
/// path for one concrete sample type inside generic code).
pub(crate) fn same_type_slice<S: 'static, T: 'static>(s: &[S]) -> Option<&[T]> {
    if std::any::TypeId::of::<S>() != std::any::TypeId::of::<T>() {
        return None;
    }
    // SAFETY: S and T are the same type, so the layout is identical.
    Some(unsafe { std::slice::from_raw_parts(s.as_ptr().cast::<T>(), s.len()) })
}

/// A vector of `S` as a vector of `T` when they are the same type.
pub(crate) fn same_type_vec<S: 'static, T: 'static>(v: Vec<S>) -> Option<Vec<T>> {
    if std::any::TypeId::of::<S>() != std::any::TypeId::of::<T>() {
        return None;
    }
    let mut v = std::mem::ManuallyDrop::new(v);
    // SAFETY: S and T are the same type, so pointer, length and capacity carry over.
    Some(unsafe { Vec::from_raw_parts(v.as_mut_ptr().cast::<T>(), v.len(), v.capacity()) })
}

/// The flat index of the first non-finite sample, or `None`.
///
/// Scans in blocks with a branch-free test (so the common all-finite case
/// vectorizes) and only looks for the exact position inside a bad block.
pub fn first_nonfinite<T: Sample>(samples: &[T]) -> Option<usize> {
    if !T::IS_FLOAT {
        return None;
    }
    const BLOCK: usize = 1024;
    for (b, block) in samples.chunks(BLOCK).enumerate() {
        let mut bad = false;
        for &s in block {
            bad |= !s.is_finite();
        }
        if bad {
            let at = block.iter().position(|s| !s.is_finite()).unwrap_or(0);
            return Some(b * BLOCK + at);
        }
    }
    None
}

/// `Err(NonFiniteSample)` naming the first NaN/inf sample of `channels`-channel audio.
pub fn check_finite<T: Sample>(samples: &[T], channels: usize) -> Result<(), KernelError> {
    match first_nonfinite(samples) {
        Some(index) => Err(KernelError::non_finite(
            index,
            channels,
            samples[index].to_f64(),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_finite_accepts_finite_and_empty_input() {
        assert_eq!(check_finite::<f32>(&[], 1), Ok(()));
        assert_eq!(
            check_finite(&[0.0f32, -1.0, 1.0, f32::MAX, f32::MIN_POSITIVE], 1),
            Ok(())
        );
        assert_eq!(check_finite(&[i16::MIN, i16::MAX], 2), Ok(()));
    }

    #[test]
    fn check_finite_names_first_bad_sample_with_frame_and_channel() {
        let mut samples = vec![0.5f64; 3000];
        samples[2049] = f64::NEG_INFINITY;
        samples[2500] = f64::NAN;
        let err = check_finite(&samples, 2).unwrap_err();
        assert_eq!(
            err,
            KernelError::NonFiniteSample {
                index: 2049,
                frame: 1024,
                channel: 1,
                kind: NonFinite::NegInf
            }
        );
        assert_eq!(
            err.to_string(),
            "non-finite sample (-inf) at index 2049 (frame 1024, channel 1)"
        );
    }

    #[test]
    fn integer_from_f64_rounds_half_even_and_saturates() {
        assert_eq!(i16::from_f64(0.5), 0);
        assert_eq!(i16::from_f64(1.5), 2);
        assert_eq!(i16::from_f64(-2.5), -2);
        assert_eq!(i16::from_f64(40000.0), i16::MAX);
        assert_eq!(i16::from_f64(-40000.0), i16::MIN);
        assert_eq!(i16::from_f64(f64::NAN), 0);
        assert_eq!(i32::from_f64(3e9), i32::MAX);
    }
}
