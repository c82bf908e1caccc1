//! Pure-Rust audio kernels: no pyo3, no allocation of Python objects, no panics
//! on bad input (every failure is a [`KernelError`]).

use thiserror::Error;

/// Why a kernel refused its input.
///
/// The pyo3 layer maps each variant to a `remotemedia_ray.errors` class in one
/// place (`python::kernel_error_to_py`).
#[derive(Debug, Clone, PartialEq, Error)]
pub enum KernelError {
    /// A parameter is outside the range the kernel accepts.
    #[error("invalid parameter {name}: {reason}")]
    InvalidParameter {
        /// The parameter's name as the user spelled it.
        name: &'static str,
        /// What is wrong with its value.
        reason: String,
    },
    /// A sample is NaN or infinite.
    #[error("non-finite sample at index {index}")]
    NonFiniteSample {
        /// Position of the first offending sample in the flat buffer.
        index: usize,
    },
}

/// Checks that every sample is finite.
///
/// Returns the index of the first NaN or infinite sample as
/// [`KernelError::NonFiniteSample`].
pub fn check_finite(samples: &[f32]) -> Result<(), KernelError> {
    match samples.iter().position(|s| !s.is_finite()) {
        Some(index) => Err(KernelError::NonFiniteSample { index }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_finite_accepts_finite_and_empty_input() {
        assert_eq!(check_finite(&[]), Ok(()));
        assert_eq!(
            check_finite(&[0.0, -1.0, 1.0, f32::MAX, f32::MIN_POSITIVE]),
            Ok(())
        );
    }

    #[test]
    fn check_finite_names_first_bad_sample() {
        let samples = [0.5, f32::INFINITY, f32::NAN];
        assert_eq!(
            check_finite(&samples),
            Err(KernelError::NonFiniteSample { index: 1 })
        );
        assert_eq!(
            KernelError::NonFiniteSample { index: 1 }.to_string(),
            "non-finite sample at index 1"
        );
    }
}
