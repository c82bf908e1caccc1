//! Bindings of the resampling kernel: the streaming `Resampler` class and the
//! one-call `resample` function.
//!
//! Only argument checks and conversions live here; the algorithm is
//! [`crate::kernels::resample`]. The settings arrive as one Python object
//! (`ResampleSettings`, read by attribute). Arguments are checked in the order
//! of the numpy reference (quality, rates, channels, then the audio), with the
//! same words, and every refusal is a `ConfigError` (the target rate, the
//! quality) or an `AudioFormatError` (the audio) via [`KernelError`], except
//! settings without a `str` quality or an attribute (`TypeError`, from pyo3).

use numpy::{PyArray2, PyArrayDescrMethods, PyUntypedArray, PyUntypedArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict};

use super::{AudioIn, kernel_error_to_py, run_kernel, samples as audio_slice, to_pyarray};
use crate::kernels::KernelError;
use crate::kernels::resample::{
    MAX_CHANNELS, MAX_RATE, Quality, Resampler as Kernel, resample as resample_audio,
};
use crate::with_audio;

/// A refused argument: `target_rate` is the node's parameter (`ConfigError`);
/// the source rate, channel count and chunks describe the audio
/// (`AudioFormatError`).
fn invalid(name: &'static str, reason: String) -> PyErr {
    let err = KernelError::InvalidParameter { name, reason };
    kernel_error_to_py(if name == "target_rate" {
        err
    } else {
        err.into_input()
    })
}

/// An int argument (Python int or numpy integer, not bool), as i64.
///
/// Ints beyond i64 are reported with `out_of_range` (they can never be valid).
fn int_arg(
    value: &Bound<'_, PyAny>,
    name: &'static str,
    what: &str,
    out_of_range: &str,
) -> PyResult<i64> {
    let repr = || {
        value
            .repr()
            .map(|r| r.to_string())
            .unwrap_or_else(|_| "<unprintable>".to_owned())
    };
    if value.is_instance_of::<PyBool>() || !value.hasattr("__index__").unwrap_or(false) {
        return Err(invalid(name, format!("must be {what}, got {}", repr())));
    }
    value
        .extract::<i64>()
        .map_err(|_| invalid(name, format!("{out_of_range}, got {}", repr())))
}

fn rate_arg(value: &Bound<'_, PyAny>, name: &'static str) -> PyResult<i64> {
    int_arg(
        value,
        name,
        "an int number of Hz",
        &format!("must be between 1 and {MAX_RATE} Hz"),
    )
}

/// The resampler's settings as Python holds them
/// (`remotemedia_ray.nodes.resampling.ResampleSettings`, read by attribute).
#[derive(FromPyObject)]
struct ResampleSettings<'py> {
    #[pyo3(attribute)]
    target_rate: Bound<'py, PyAny>,
    #[pyo3(attribute)]
    quality: String,
}

impl ResampleSettings<'_> {
    /// The checked quality, target rate and source rate, in the reference's order.
    fn checked(&self, source_rate: &Bound<'_, PyAny>) -> PyResult<(Quality, i64, i64)> {
        let quality = Quality::from_name(&self.quality)?;
        let source = rate_arg(source_rate, "source_rate")?;
        let target = rate_arg(&self.target_rate, "target_rate")?;
        Ok((quality, source, target))
    }
}

/// The audio argument as an [`AudioIn`]: a 2-D numpy array of float32,
/// float64, int16 or int32. Other layouts (Fortran order, strided views,
/// unaligned or byte-swapped data) are copied to a C-contiguous native array
/// first; anything else is an `AudioFormatError` naming the problem.
fn audio_arg<'py>(
    py: Python<'py>,
    value: &Bound<'py, PyAny>,
    name: &'static str,
    channels: Option<usize>,
) -> PyResult<AudioIn<'py>> {
    let shape_error =
        |reason: String| kernel_error_to_py(KernelError::Shape(format!("{name} {reason}")));
    let array = value.cast::<PyUntypedArray>().map_err(|_| {
        let type_name = value
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "object".to_owned());
        shape_error(format!("must be a numpy array, got {type_name}"))
    })?;
    let shape = array.shape();
    if shape.len() != 2 {
        return Err(shape_error(format!(
            "must be 2-D (frames, channels), got shape {shape:?}"
        )));
    }
    if shape[1] == 0 {
        return Err(shape_error(format!(
            "must have at least one channel, got shape {shape:?}"
        )));
    }
    if let Some(expected) = channels
        && shape[1] != expected
    {
        return Err(shape_error(format!(
            "has {} channels, expected {expected}",
            shape[1]
        )));
    }
    let dtype = array.dtype();
    let supported = matches!(
        (dtype.kind(), dtype.itemsize()),
        (b'f', 4) | (b'f', 8) | (b'i', 2) | (b'i', 4)
    );
    if !supported {
        return Err(shape_error(format!(
            "has unsupported dtype {}; expected float32, float64, int16 or int32",
            dtype.str().map(|s| s.to_string()).unwrap_or_default()
        )));
    }
    let native = dtype.is_native_byteorder().unwrap_or(true);
    if array.is_c_contiguous() && array.is_aligned() && native {
        return value.extract();
    }
    // A fresh C-ordered array is always aligned (`ascontiguousarray` would
    // return an unaligned contiguous array as it is).
    let kwargs = PyDict::new(py);
    kwargs.set_item("dtype", dtype.call_method1("newbyteorder", ("=",))?)?;
    kwargs.set_item("order", "C")?;
    kwargs.set_item("copy", true)?;
    let copy = py
        .import("numpy")?
        .call_method("array", (value,), Some(&kwargs))?;
    copy.extract()
}

/// A streaming polyphase resampler (the Rust twin of
/// `remotemedia_ray.nodes.resampling.StreamingResampler`): feed chunks with
/// `process`, end with `flush`; the concatenated outputs equal `resample` of
/// the whole stream bit for bit, whatever the chunk sizes.
///
/// Create one per stream inside the worker that uses it: it holds native
/// state and cannot be pickled. Calls release the GIL.
#[pyclass(module = "remotemedia_ray._native", name = "Resampler")]
pub struct PyResampler {
    inner: Kernel,
}

#[pymethods]
impl PyResampler {
    #[new]
    fn new(
        source_rate: &Bound<'_, PyAny>,
        channels: &Bound<'_, PyAny>,
        settings: ResampleSettings<'_>,
    ) -> PyResult<Self> {
        let (quality, source, target) = settings.checked(source_rate)?;
        let limits = format!("must be between 1 and {MAX_CHANNELS}");
        let channels = int_arg(channels, "channels", "an int", &limits)?;
        let channels = usize::try_from(channels)
            .map_err(|_| invalid("channels", format!("{limits}, got {channels}")))?;
        Ok(PyResampler {
            inner: Kernel::new(source, target, channels, quality)?,
        })
    }

    /// Feeds the next `(frames, channels)` chunk (float32, float64, int16 or
    /// int32; may have 0 frames) and returns the outputs now complete as
    /// float32 `(n, channels)`.
    fn process<'py>(
        &mut self,
        py: Python<'py>,
        chunk: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        if self.inner.is_flushed() {
            return Err(invalid(
                "chunk",
                "Resampler.process() called after flush()".to_owned(),
            ));
        }
        let channels = self.inner.channels();
        let audio = audio_arg(py, chunk, "chunk", Some(channels))?;
        let inner = &mut self.inner;
        let out = with_audio!(audio, |view: S| {
            let (x, _, _) = audio_slice(&view)?;
            run_kernel(py, || {
                let mut out = Vec::new();
                inner.process::<S>(x, &mut out)?;
                Ok(out)
            })?
        });
        let frames = out.len() / channels;
        to_pyarray(py, out, frames, channels)
    }

    /// Ends the stream (the signal is zero after it) and returns the last
    /// outputs as float32 `(n, channels)`. Later calls return no frames;
    /// `process` raises.
    fn flush<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let inner = &mut self.inner;
        let out = run_kernel(py, || {
            let mut out = Vec::new();
            inner.flush(&mut out)?;
            Ok(out)
        })?;
        let channels = self.inner.channels();
        let frames = out.len() / channels;
        to_pyarray(py, out, frames, channels)
    }

    /// The input sample rate in Hz.
    #[getter]
    fn source_rate(&self) -> u64 {
        self.inner.source_rate()
    }

    /// The output sample rate in Hz.
    #[getter]
    fn target_rate(&self) -> u64 {
        self.inner.target_rate()
    }

    /// The number of channels of every chunk.
    #[getter]
    fn channels(&self) -> usize {
        self.inner.channels()
    }

    /// The quality name.
    #[getter]
    fn quality(&self) -> &'static str {
        self.inner.quality().name()
    }

    /// Input frames received so far.
    #[getter]
    fn frames_in(&self) -> u64 {
        self.inner.frames_in()
    }

    /// Output frames emitted so far.
    #[getter]
    fn frames_out(&self) -> u64 {
        self.inner.frames_out()
    }

    fn __repr__(&self) -> String {
        format!(
            "Resampler(source_rate={}, target_rate={}, channels={}, quality='{}')",
            self.inner.source_rate(),
            self.inner.target_rate(),
            self.inner.channels(),
            self.inner.quality().name()
        )
    }

    /// Refuses pickling (and copying) with a clear message.
    fn __reduce__(&self) -> PyResult<()> {
        Err(PyTypeError::new_err(
            "remotemedia_ray._native.Resampler holds native stream state and cannot be \
             pickled or copied; create one inside each Ray worker instead",
        ))
    }
}

/// Resamples `(frames, channels)` audio (float32, float64, int16 or int32;
/// integers scaled by `1 / 2**(bits-1)`) from `source_rate` to `target_rate`
/// Hz. Returns float32 `(round_half_up(frames * target / source), channels)`,
/// time-aligned with the input.
#[pyfunction]
fn resample<'py>(
    py: Python<'py>,
    samples: &Bound<'py, PyAny>,
    source_rate: &Bound<'py, PyAny>,
    settings: ResampleSettings<'py>,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let (quality, source, target) = settings.checked(source_rate)?;
    let audio = audio_arg(py, samples, "samples", None)?;
    with_audio!(audio, |view: S| {
        let (x, _, channels) = audio_slice(&view)?;
        let out = run_kernel(py, || {
            resample_audio::<S>(x, channels, source, target, quality)
        })?;
        let frames = out.len() / channels;
        to_pyarray(py, out, frames, channels)
    })
}

/// Adds `Resampler` and `resample` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyResampler>()?;
    m.add_function(wrap_pyfunction!(resample, m)?)?;
    Ok(())
}
