//! The pyo3 layer: the `remotemedia_ray._native` module.
//!
//! Functions here only convert and validate Python arguments, release the GIL
//! around a kernel call ([`run_kernel`]) and map [`KernelError`] to the
//! package's exceptions ([`kernel_error_to_py`]); the algorithms live in
//! [`crate::kernels`]. The typed stub of this module is
//! `remotemedia_ray/_native.pyi`, checked by `mypy.stubtest`.

use std::panic::{AssertUnwindSafe, catch_unwind};

use numpy::ndarray::Array2;
use numpy::{Element, IntoPyArray, PyArray2, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use crate::kernels::{KernelError, Sample};

mod audio;
mod chain;
mod digest;
mod resample;

/// `"debug"` or `"release"`: whether this build has debug assertions.
/// `remotemedia_ray.nodes.native` warns at import when it is `"debug"`.
const BUILD_PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// A class of `remotemedia_ray.errors`, imported once.
fn error_class<'py>(py: Python<'py>, name: &'static str) -> PyResult<Bound<'py, PyType>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || {
        py.import("remotemedia_ray.errors").map(Bound::unbind)
    })?;
    Ok(module.bind(py).getattr(name)?.cast_into::<PyType>()?)
}

fn new_error(py: Python<'_>, class: &'static str, message: String) -> PyErr {
    match error_class(py, class) {
        Ok(cls) => PyErr::from_type(cls, message),
        Err(err) => err,
    }
}

/// Maps a kernel error to the exception a Python caller sees: a bad node
/// parameter is a `ConfigError` (a `ValueError`; the node wrapper adds the
/// node id), everything the audio is to blame for an `AudioFormatError`.
///
/// The one place where kernel errors become Python errors.
pub fn kernel_error_to_py(err: KernelError) -> PyErr {
    let class = match err {
        KernelError::InvalidParameter { .. } => "ConfigError",
        _ => "AudioFormatError",
    };
    Python::attach(|py| new_error(py, class, err.to_string()))
}

impl From<KernelError> for PyErr {
    fn from(err: KernelError) -> Self {
        kernel_error_to_py(err)
    }
}

/// Runs a kernel with the GIL released; a Rust panic inside it becomes
/// `remotemedia_ray.errors.NodeExecutionError` and the process lives on.
pub fn run_kernel<T, F>(py: Python<'_>, kernel: F) -> PyResult<T>
where
    F: FnOnce() -> Result<T, KernelError> + Send,
    T: Send,
{
    let outcome = py.detach(|| catch_unwind(AssertUnwindSafe(kernel)));
    match outcome {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(kernel_error_to_py(err)),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(new_error(
                py,
                "NodeExecutionError",
                format!("native kernel panicked: {what}"),
            ))
        }
    }
}

/// Audio input of any supported sample type, read in place (no copy).
///
/// The array must be 2-D `(frames, channels)`, C-contiguous and aligned; the
/// Python wrappers (`remotemedia_ray.nodes.native`) guarantee that and only
/// copy arrays that are not. Read-only arrays (Ray's object store) are fine.
#[derive(FromPyObject)]
pub enum AudioIn<'py> {
    /// float32 samples.
    F32(PyReadonlyArray2<'py, f32>),
    /// float64 samples.
    F64(PyReadonlyArray2<'py, f64>),
    /// int16 samples.
    I16(PyReadonlyArray2<'py, i16>),
    /// int32 samples.
    I32(PyReadonlyArray2<'py, i32>),
}

/// Calls `$body` with `$slice` bound to the samples of an [`AudioIn`] and
/// `$T` to their sample type.
#[macro_export]
macro_rules! with_audio {
    ($audio:expr, |$view:ident : $T:ident| $body:expr) => {
        match $audio {
            $crate::python::AudioIn::F32($view) => {
                #[allow(dead_code)]
                type $T = f32;
                $body
            }
            $crate::python::AudioIn::F64($view) => {
                #[allow(dead_code)]
                type $T = f64;
                $body
            }
            $crate::python::AudioIn::I16($view) => {
                #[allow(dead_code)]
                type $T = i16;
                $body
            }
            $crate::python::AudioIn::I32($view) => {
                #[allow(dead_code)]
                type $T = i32;
                $body
            }
        }
    };
}

/// The contiguous samples and `(frames, channels)` of a 2-D array.
pub fn samples<'a, T: Element + Sample>(
    array: &'a PyReadonlyArray2<'_, T>,
) -> PyResult<(&'a [T], usize, usize)> {
    let shape = array.shape();
    let (frames, channels) = (shape[0], shape[1]);
    let slice = array.as_slice().map_err(|_| {
        kernel_error_to_py(KernelError::Shape(
            "audio must be C-contiguous and aligned (the Python wrapper copies other arrays)"
                .to_owned(),
        ))
    })?;
    // A slice over misaligned memory would be undefined behaviour: refuse it.
    if !(slice.as_ptr() as usize).is_multiple_of(std::mem::align_of::<T>()) {
        return Err(kernel_error_to_py(KernelError::Shape(
            "audio memory is not aligned (the Python wrapper copies such arrays)".to_owned(),
        )));
    }
    Ok((slice, frames, channels))
}

/// Hands a vector to numpy as a `(frames, channels)` array without copying it.
pub fn to_pyarray<T: Element>(
    py: Python<'_>,
    data: Vec<T>,
    frames: usize,
    channels: usize,
) -> PyResult<Bound<'_, PyArray2<T>>> {
    let array = Array2::from_shape_vec((frames, channels), data)
        .map_err(|e| kernel_error_to_py(KernelError::Shape(format!("output shape: {e}"))))?;
    Ok(array.into_pyarray(py))
}

/// Native audio kernels of remotemedia_ray (private; use remotemedia_ray.nodes.native).
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("build_profile", BUILD_PROFILE)?;
    audio::register(m)?;
    chain::register(m)?;
    digest::register(m)?;
    resample::register(m)?;
    Ok(())
}
