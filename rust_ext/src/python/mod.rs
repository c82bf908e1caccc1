//! The pyo3 layer: the `remotemedia_ray._native` module.
//!
//! Functions here only convert and validate Python arguments, release the GIL
//! around a kernel call and map [`KernelError`] to Python exceptions; the
//! algorithms live in [`crate::kernels`]. The typed stub of this module is
//! `remotemedia_ray/_native.pyi`, checked by `mypy.stubtest`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::kernels::KernelError;

/// `"debug"` or `"release"`: whether this build has debug assertions.
/// `remotemedia_ray.nodes.native` warns at import when it is `"debug"`.
const BUILD_PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

/// Maps a kernel error to the Python exception a caller sees.
///
/// The one place where Rust errors become Python errors.
// TODO(errors): raise remotemedia_ray.errors classes (AudioFormatError for
// NonFiniteSample, ManifestError for InvalidParameter) once kernels are bound.
pub fn kernel_error_to_py(err: KernelError) -> PyErr {
    match err {
        KernelError::InvalidParameter { .. } | KernelError::NonFiniteSample { .. } => {
            PyValueError::new_err(err.to_string())
        }
    }
}

impl From<KernelError> for PyErr {
    fn from(err: KernelError) -> Self {
        kernel_error_to_py(err)
    }
}

/// Native audio kernels of remotemedia_ray (private; use remotemedia_ray.nodes.native).
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("build_profile", BUILD_PROFILE)?;
    Ok(())
}
