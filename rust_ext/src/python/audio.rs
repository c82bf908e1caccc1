//! Bindings of the bit-exact audio kernels: format conversion, arithmetic,
//! channel mixing, voice activity detection, utterance segmentation.

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::{AudioIn, kernel_error_to_py, run_kernel, samples, to_pyarray};
use crate::kernels::arith::{Op, combine_vec};
use crate::kernels::convert::convert_vec;
use crate::kernels::mix::{downmix_mean, select_channel};
use crate::kernels::segment::{SegmentParams, Short, segment_bounds as segment_bounds_kernel};
use crate::kernels::vad::{
    Segment, VadParams, checked_frame_energies, segments_from_energies, vad_segments as vad_kernel,
};
use crate::kernels::{KernelError, Sample};
use crate::with_audio;

/// A bad node parameter (`ConfigError`).
fn invalid(name: &'static str, reason: String) -> PyErr {
    kernel_error_to_py(KernelError::InvalidParameter { name, reason })
}

/// A bad input or call argument (`AudioFormatError`).
fn invalid_input(name: &'static str, reason: String) -> PyErr {
    kernel_error_to_py(KernelError::InvalidInput { name, reason })
}

/// Converts `(frames, channels)` audio to `target` ("f32", "f64", "i16" or "i32").
#[pyfunction]
#[pyo3(signature = (samples_in, target))]
fn convert_format<'py>(
    py: Python<'py>,
    samples_in: AudioIn<'py>,
    target: &str,
) -> PyResult<Bound<'py, PyAny>> {
    fn run<'py, S: Sample + numpy::Element, D: Sample + numpy::Element>(
        py: Python<'py>,
        x: &[S],
        frames: usize,
        channels: usize,
    ) -> PyResult<Bound<'py, PyAny>> {
        let out = run_kernel(py, || convert_vec::<S, D>(x, channels))?;
        Ok(to_pyarray(py, out, frames, channels)?.into_any())
    }
    with_audio!(samples_in, |view: S| {
        let (x, frames, channels) = samples(&view)?;
        match target {
            "f32" => run::<S, f32>(py, x, frames, channels),
            "f64" => run::<S, f64>(py, x, frames, channels),
            "i16" => run::<S, i16>(py, x, frames, channels),
            "i32" => run::<S, i32>(py, x, frames, channels),
            other => Err(invalid(
                "target_format",
                format!("unknown format {other:?}; expected f32, f64, i16 or i32"),
            )),
        }
    })
}

fn parse_op(op: &str) -> PyResult<Op> {
    match op {
        "add" => Ok(Op::Add),
        "multiply" => Ok(Op::Multiply),
        other => Err(invalid(
            "op",
            format!("expected 'add' or 'multiply', got {other:?}"),
        )),
    }
}

/// Combines equally shaped arrays of one dtype element-wise (fan-in sum or
/// product, then `param`), returning a new array of the same shape and dtype.
#[pyfunction]
fn combine<'py>(
    py: Python<'py>,
    inputs: Vec<Bound<'py, PyAny>>,
    op: &str,
    param: f64,
) -> PyResult<Bound<'py, PyAny>> {
    let op = parse_op(op)?;
    let (first, rest) = inputs
        .split_first()
        .ok_or_else(|| invalid_input("inputs", "no inputs".to_owned()))?;
    let first: AudioIn<'py> = first.extract()?;
    with_audio!(first, |view: S| {
        let (x0, frames, channels) = samples(&view)?;
        let mut views: Vec<PyReadonlyArray2<'py, S>> = Vec::with_capacity(rest.len());
        for (i, other) in rest.iter().enumerate() {
            views.push(other.extract().map_err(|_| {
                kernel_error_to_py(KernelError::Shape(format!(
                    "input {} is not a 2-D array of the dtype of input 0",
                    i + 1
                )))
            })?);
        }
        let mut slices: Vec<&[S]> = vec![x0];
        for v in &views {
            let (xs, f, c) = samples(v)?;
            if (f, c) != (frames, channels) {
                return Err(kernel_error_to_py(KernelError::Shape(format!(
                    "inputs have different shapes: ({frames}, {channels}) and ({f}, {c})"
                ))));
            }
            slices.push(xs);
        }
        let out = run_kernel(py, || combine_vec(&slices, op, param))?;
        Ok(to_pyarray(py, out, frames, channels)?.into_any())
    })
}

/// Downmixes to mono (`"mean"`) or keeps one channel (`"select"`): `(frames, 1)`.
#[pyfunction]
#[pyo3(signature = (samples_in, mode, channel = 0))]
fn channel_mix<'py>(
    py: Python<'py>,
    samples_in: AudioIn<'py>,
    mode: &str,
    channel: usize,
) -> PyResult<Bound<'py, PyAny>> {
    with_audio!(samples_in, |view: S| {
        let (x, frames, channels) = samples(&view)?;
        let out = match mode {
            "mean" => run_kernel(py, || downmix_mean(x, channels))?,
            "select" => run_kernel(py, || select_channel(x, channels, channel))?,
            other => {
                return Err(invalid(
                    "mode",
                    format!("expected 'mean' or 'select', got {other:?}"),
                ));
            }
        };
        Ok(to_pyarray(py, out, frames, 1)?.into_any())
    })
}

/// A sample rate argument: a positive integer that fits `u32` (`AudioFormatError` else).
fn sample_rate_arg(sample_rate: i64) -> PyResult<u32> {
    u32::try_from(sample_rate)
        .ok()
        .filter(|r| *r > 0)
        .ok_or_else(|| {
            invalid_input(
                "sample_rate",
                format!("must be a positive integer, got {sample_rate}"),
            )
        })
}

/// The VAD's settings as Python holds them (`remotemedia_ray.nodes.reference.VadSettings`,
/// read by attribute): converted once into the kernel's [`VadParams`].
#[derive(FromPyObject)]
pub(super) struct VadSettings {
    #[pyo3(attribute)]
    threshold_db: f64,
    #[pyo3(attribute)]
    frame_length_ms: f64,
    #[pyo3(attribute)]
    hangover_ms: f64,
    #[pyo3(attribute)]
    min_speech_ms: f64,
    #[pyo3(attribute)]
    min_silence_ms: f64,
    #[pyo3(attribute)]
    context_ms: f64,
    #[pyo3(attribute)]
    noise_floor_percentile: Option<f64>,
    #[pyo3(attribute)]
    noise_floor_margin_db: f64,
}

impl VadSettings {
    /// The kernel's parameters for input at `sample_rate` (checked here).
    pub(super) fn params(self, sample_rate: i64) -> PyResult<VadParams> {
        let rate = sample_rate_arg(sample_rate)?;
        Ok(VadParams {
            sample_rate: rate,
            threshold_db: self.threshold_db,
            frame_length_ms: self.frame_length_ms,
            hangover_ms: self.hangover_ms,
            min_speech_ms: self.min_speech_ms,
            min_silence_ms: self.min_silence_ms,
            context_ms: self.context_ms,
            noise_floor_percentile: self.noise_floor_percentile,
            noise_floor_margin_db: self.noise_floor_margin_db,
        })
    }
}

pub(super) fn segment_list<'py>(
    py: Python<'py>,
    segments: Vec<Segment>,
) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for seg in segments {
        let d = PyDict::new(py);
        d.set_item("start_ms", seg.start_ms)?;
        d.set_item("end_ms", seg.end_ms)?;
        d.set_item("energy_db", seg.energy_db)?;
        d.set_item("confidence", seg.confidence)?;
        list.append(d)?;
    }
    Ok(list)
}

/// Speech segments as a list of `{start_ms, end_ms, energy_db, confidence}` dicts.
#[pyfunction]
fn vad_segments<'py>(
    py: Python<'py>,
    samples_in: AudioIn<'py>,
    sample_rate: i64,
    settings: VadSettings,
) -> PyResult<Bound<'py, PyList>> {
    let params = settings.params(sample_rate)?;
    let segments = with_audio!(samples_in, |view: S| {
        let (x, _frames, channels) = samples(&view)?;
        run_kernel(py, || vad_kernel(x, channels, &params))?
    });
    segment_list(py, segments)
}

/// Per-frame sums of squares (float64) and sample counts (int64) of a
/// frame-aligned piece of a stream, after checking the samples are finite
/// (a bad one is named by its frame in the stream: `first_frame` + its frame).
#[pyfunction]
#[pyo3(signature = (samples_in, frame_len, first_frame = 0))]
#[allow(clippy::type_complexity)]
fn vad_frame_energies<'py>(
    py: Python<'py>,
    samples_in: AudioIn<'py>,
    frame_len: i64,
    first_frame: i64,
) -> PyResult<(Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<i64>>)> {
    let flen = usize::try_from(frame_len)
        .ok()
        .filter(|f| *f > 0)
        .ok_or_else(|| invalid_input("frame_len", format!("must be >= 1, got {frame_len}")))?;
    let first = usize::try_from(first_frame)
        .map_err(|_| invalid_input("first_frame", format!("must be >= 0, got {first_frame}")))?;
    let (sums, counts) = with_audio!(samples_in, |view: S| {
        let (x, _frames, channels) = samples(&view)?;
        run_kernel(py, || checked_frame_energies(x, channels, flen, first))?
    });
    let counts: Vec<i64> = counts.into_iter().map(|c| c as i64).collect();
    Ok((sums.into_pyarray(py), counts.into_pyarray(py)))
}

/// Speech segments of a whole input of `frames` time steps from its per-frame
/// energies (as `vad_frame_energies` gives them, piece by piece).
#[pyfunction]
fn vad_segments_from_energies<'py>(
    py: Python<'py>,
    sums: PyReadonlyArray1<'py, f64>,
    counts: PyReadonlyArray1<'py, i64>,
    frames: i64,
    sample_rate: i64,
    settings: VadSettings,
) -> PyResult<Bound<'py, PyList>> {
    let params = settings.params(sample_rate)?;
    let n_time = usize::try_from(frames)
        .map_err(|_| invalid_input("frames", format!("must be >= 0, got {frames}")))?;
    let sums = sums.as_array().to_vec();
    let mut unsigned = Vec::with_capacity(counts.len()?);
    for (f, &c) in counts.as_array().iter().enumerate() {
        let c = u64::try_from(c)
            .map_err(|_| invalid_input("counts", format!("frame {f} has a negative count {c}")))?;
        unsigned.push(c);
    }
    let segments = run_kernel(py, || {
        segments_from_energies(&sums, &unsigned, n_time, &params)
    })?;
    segment_list(py, segments)
}

/// SegmentNode's settings as Python holds them
/// (`remotemedia_ray.nodes.reference.SegmentSettings`, read by attribute).
#[derive(FromPyObject)]
struct SegmentSettings {
    #[pyo3(attribute)]
    merge_gap_ms: f64,
    #[pyo3(attribute)]
    pad_ms: f64,
    #[pyo3(attribute)]
    min_s: f64,
    #[pyo3(attribute)]
    max_s: f64,
    #[pyo3(attribute)]
    short: String,
    #[pyo3(attribute)]
    split_frame_ms: f64,
}

impl SegmentSettings {
    /// The kernel's parameters for input at `sample_rate` (checked here).
    fn params(self, sample_rate: i64) -> PyResult<SegmentParams> {
        let rate = sample_rate_arg(sample_rate)?;
        let short = match self.short.as_str() {
            "drop" => Short::Drop,
            "merge" => Short::Merge,
            other => {
                return Err(invalid(
                    "short",
                    format!("must be 'drop' or 'merge', got {other:?}"),
                ));
            }
        };
        Ok(SegmentParams {
            sample_rate: rate,
            merge_gap_ms: self.merge_gap_ms,
            pad_ms: self.pad_ms,
            min_s: self.min_s,
            max_s: self.max_s,
            short,
            split_frame_ms: self.split_frame_ms,
        })
    }
}

/// Utterance clips of one input from its speech segments: start and end
/// frames as two int64 arrays.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn segment_bounds<'py>(
    py: Python<'py>,
    samples_in: AudioIn<'py>,
    sample_rate: i64,
    starts_ms: PyReadonlyArray1<'py, f64>,
    ends_ms: PyReadonlyArray1<'py, f64>,
    settings: SegmentSettings,
) -> PyResult<(Bound<'py, PyArray1<i64>>, Bound<'py, PyArray1<i64>>)> {
    let params = settings.params(sample_rate)?;
    let (starts, ends) = (starts_ms.as_array(), ends_ms.as_array());
    if starts.len() != ends.len() {
        return Err(invalid_input(
            "segments",
            format!("{} segment starts but {} ends", starts.len(), ends.len()),
        ));
    }
    let segments: Vec<(f64, f64)> = starts.iter().copied().zip(ends.iter().copied()).collect();
    let clips = with_audio!(samples_in, |view: S| {
        let (x, _frames, channels) = samples(&view)?;
        run_kernel(py, || {
            segment_bounds_kernel(x, channels, &segments, &params)
        })?
    });
    let starts: Vec<i64> = clips.iter().map(|c| c.0 as i64).collect();
    let ends: Vec<i64> = clips.iter().map(|c| c.1 as i64).collect();
    Ok((starts.into_pyarray(py), ends.into_pyarray(py)))
}

/// Test hooks, built only with the `test-hooks` feature (the development build),
/// in the private submodule `_native._testing`.
#[cfg(feature = "test-hooks")]
mod testing {
    use super::*;

    /// The address of the memory the kernels would read for this array
    /// (proves that arrays reach the kernels without a copy).
    #[pyfunction]
    fn input_address(samples_in: AudioIn<'_>) -> PyResult<usize> {
        with_audio!(samples_in, |view: S| {
            let (x, _, _) = samples(&view)?;
            Ok(x.as_ptr() as usize)
        })
    }

    /// Panics inside a kernel call (the panic must arrive as
    /// `NodeExecutionError` and leave the process alive).
    #[pyfunction]
    fn panic_in_kernel(py: Python<'_>) -> PyResult<()> {
        run_kernel(py, || -> Result<(), KernelError> {
            panic!("deliberate test panic")
        })
    }

    /// Sets the `_testing` submodule as a plain attribute (kept out of
    /// `__all__`: a private name the stub does not describe).
    pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
        let hooks = PyModule::new(m.py(), "_testing")?;
        hooks.add_function(wrap_pyfunction!(input_address, &hooks)?)?;
        hooks.add_function(wrap_pyfunction!(panic_in_kernel, &hooks)?)?;
        m.setattr("_testing", hooks)
    }
}

/// Adds the audio kernels to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(convert_format, m)?)?;
    m.add_function(wrap_pyfunction!(combine, m)?)?;
    m.add_function(wrap_pyfunction!(channel_mix, m)?)?;
    m.add_function(wrap_pyfunction!(vad_segments, m)?)?;
    m.add_function(wrap_pyfunction!(vad_frame_energies, m)?)?;
    m.add_function(wrap_pyfunction!(vad_segments_from_energies, m)?)?;
    m.add_function(wrap_pyfunction!(segment_bounds, m)?)?;
    #[cfg(feature = "test-hooks")]
    testing::register(m)?;
    Ok(())
}
