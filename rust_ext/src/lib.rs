//! Native core of `remotemedia_ray`.
//!
//! [`kernels`] holds the audio algorithms as plain Rust over slices; it knows
//! nothing about Python and is tested with `cargo test`. The `python` module
//! (cargo feature `python`, enabled by maturin) is the thin pyo3 layer that
//! converts and validates Python arguments, releases the GIL around a kernel
//! call and maps [`kernels::KernelError`] to Python exceptions.

pub mod kernels;

#[cfg(feature = "python")]
pub mod python;
