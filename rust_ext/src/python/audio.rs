//! Bindings of the bit-exact audio kernels: format conversion, arithmetic,
//! channel mixing, voice activity detection.

use numpy::PyReadonlyArray2;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::{AudioIn, kernel_error_to_py, run_kernel, samples, to_pyarray};
use crate::kernels::arith::{Op, combine_vec};
use crate::kernels::convert::convert_vec;
use crate::kernels::mix::{downmix_mean, select_channel};
use crate::kernels::vad::{VadParams, vad_segments as vad_kernel};
use crate::kernels::{KernelError, Sample};
use crate::with_audio;

fn invalid(name: &'static str, reason: String) -> PyErr {
    kernel_error_to_py(KernelError::InvalidParameter { name, reason })
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
        .ok_or_else(|| invalid("inputs", "no inputs".to_owned()))?;
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

/// Speech segments as a list of `{start_ms, end_ms, energy_db, confidence}` dicts.
#[pyfunction]
#[pyo3(signature = (
    samples_in, sample_rate, threshold_db = -30.0, frame_length_ms = 30.0,
    hangover_ms = 0.0, min_speech_ms = 0.0, min_silence_ms = 0.0,
    context_ms = 0.0, noise_floor_percentile = None, noise_floor_margin_db = 3.0
))]
#[allow(clippy::too_many_arguments)]
fn vad_segments<'py>(
    py: Python<'py>,
    samples_in: AudioIn<'py>,
    sample_rate: i64,
    threshold_db: f64,
    frame_length_ms: f64,
    hangover_ms: f64,
    min_speech_ms: f64,
    min_silence_ms: f64,
    context_ms: f64,
    noise_floor_percentile: Option<f64>,
    noise_floor_margin_db: f64,
) -> PyResult<Bound<'py, PyList>> {
    let rate = u32::try_from(sample_rate)
        .ok()
        .filter(|r| *r > 0)
        .ok_or_else(|| {
            invalid(
                "sample_rate",
                format!("must be a positive integer, got {sample_rate}"),
            )
        })?;
    let params = VadParams {
        sample_rate: rate,
        threshold_db,
        frame_length_ms,
        hangover_ms,
        min_speech_ms,
        min_silence_ms,
        context_ms,
        noise_floor_percentile,
        noise_floor_margin_db,
    };
    let segments = with_audio!(samples_in, |view: S| {
        let (x, _frames, channels) = samples(&view)?;
        run_kernel(py, || vad_kernel(x, channels, &params))?
    });
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

/// The address of the memory the kernels would read for this array (test hook:
/// proves that arrays reach the kernels without a copy).
#[pyfunction]
fn input_address(samples_in: AudioIn<'_>) -> PyResult<usize> {
    with_audio!(samples_in, |view: S| {
        let (x, _, _) = samples(&view)?;
        Ok(x.as_ptr() as usize)
    })
}

/// Panics inside a kernel call (test hook: the panic must arrive as
/// `NodeExecutionError` and leave the process alive).
#[pyfunction]
fn panic_in_kernel(py: Python<'_>) -> PyResult<()> {
    run_kernel(py, || -> Result<(), KernelError> {
        panic!("deliberate test panic")
    })
}

/// Adds the audio kernels to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(convert_format, m)?)?;
    m.add_function(wrap_pyfunction!(combine, m)?)?;
    m.add_function(wrap_pyfunction!(channel_mix, m)?)?;
    m.add_function(wrap_pyfunction!(vad_segments, m)?)?;
    m.add_function(wrap_pyfunction!(input_address, m)?)?;
    m.add_function(wrap_pyfunction!(panic_in_kernel, m)?)?;
    Ok(())
}
