//! Polyphase sample-rate conversion (ResampleNode, `rust_native` runtime).
//!
//! The filter is the one `remotemedia_ray/nodes/resampling.py` documents and
//! designs, computed the same way in f64 (quality presets, Kaiser-windowed
//! sinc at the up-sampled rate, odd length, `L/M` reduction and limits, phase
//! table `P[r, t]` with `s_min`/`s_max`/`T`, exact delay compensation, output
//! length `(2*frames*L + M) // (2*M)`, zeros outside the input, the same
//! streaming emission). Only the arithmetic of the convolution differs: it is
//! f32, and both runtimes meet the same quality specification rather than
//! agreeing bit for bit (they agree to well under 1e-6 on full-scale audio).
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
//! the batching or the tile that computes it, so streamed output is
//! bit-identical to one call. The products of zero coefficients with the
//! (finite) samples past the window are exact no-ops (an accumulator that
//! starts at `+0` never becomes `-0`).
//!
//! # Modules
//!
//! `design` holds the filter design and the plan the kernels read, `stream`
//! the streaming [`Resampler`] and the portable kernel, `avx2` the AVX2 + FMA
//! kernels (their schedule is documented there) and `avx512` the AVX-512 ones,
//! which sum the even and the odd vectors of a window apart and then add the
//! two: another fixed sequence, within a few float32 ulps of the output's
//! peak of this one (up to about 7e-7 at full scale), as the portable kernel
//! is. The fastest kernel the CPU has is chosen at run time, once per
//! resampler.

use super::KernelError;

mod design;
mod stream;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;

#[cfg(test)]
mod tests;

pub use design::{FilterDesign, bessel_i0, design_filter, output_frames, reduced_ratio};
pub use stream::{Resampler, resample, resample_into};

/// The highest sample rate accepted, in Hz.
pub const MAX_RATE: i64 = 1_536_000;

/// The largest `L` or `M` of the reduced ratio `target/source = L/M`.
pub const MAX_RATIO_TERM: u64 = 8192;

/// The most channels a [`Resampler`] takes (each keeps its own history).
pub const MAX_CHANNELS: usize = 1 << 16;

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
