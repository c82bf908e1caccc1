//! Bindings of the resampling kernel (being written).

use pyo3::prelude::*;

/// Adds the resampling functions and classes to the module.
pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
