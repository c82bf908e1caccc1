//! Binding of the content digest (the resume keys of input files).

use numpy::PyReadonlyArray1;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::kernels::digest::ContentDigest;

/// Bytes hashed with the GIL held: below this a release costs more than it frees.
const DETACH_BYTES: usize = 1 << 16;

/// What `update` reads in place: a bytes object, or a contiguous uint8 array.
#[derive(FromPyObject)]
enum Bytes<'py> {
    Bytes(Bound<'py, PyBytes>),
    Array(PyReadonlyArray1<'py, u8>),
}

/// An incremental XXH3-128 digest of bytes (`update` in any pieces, then `hexdigest`).
#[pyclass(module = "remotemedia_ray._native", name = "ContentDigest")]
pub struct PyContentDigest {
    inner: ContentDigest,
}

#[pymethods]
impl PyContentDigest {
    #[new]
    fn new() -> Self {
        Self {
            inner: ContentDigest::new(),
        }
    }

    /// Adds the bytes of `data` (read in place; the GIL is released for large ones).
    fn update(&mut self, py: Python<'_>, data: Bytes<'_>) -> PyResult<()> {
        let array;
        let data: &[u8] = match &data {
            Bytes::Bytes(b) => b.as_bytes(),
            Bytes::Array(a) => {
                array = a.as_slice().map_err(|_| {
                    pyo3::exceptions::PyValueError::new_err("a uint8 array must be contiguous")
                })?;
                array
            }
        };
        if data.len() < DETACH_BYTES {
            self.inner.update(data);
        } else {
            let inner = &mut self.inner;
            py.detach(|| inner.update(data));
        }
        Ok(())
    }

    /// The digest so far: 32 lowercase hex digits.
    fn hexdigest(&self) -> String {
        self.inner.hex()
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyContentDigest>()
}
