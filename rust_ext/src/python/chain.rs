//! Bindings of the fused native chain ([`crate::kernels::chain`]): the `Chain`
//! class, which runs several nodes' kernels over a batch of inputs with the
//! GIL released once.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, PoisonError};

use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::audio::{VadSettings, segment_list};
use super::{AudioIn, kernel_error_to_py, samples, to_pyarray};
use crate::kernels::KernelError;
use crate::kernels::arith::Op;
use crate::kernels::chain::{Buf, Chain, Format, Held, Kept, Link, Step, View};
use crate::kernels::resample::Quality;

/// A bad link description (`ConfigError`).
fn invalid(reason: String) -> PyErr {
    kernel_error_to_py(KernelError::InvalidParameter {
        name: "links",
        reason,
    })
}

/// One link from its Python description `(kind, input, params)`.
fn link(index: usize, kind: &str, input: i64, params: &Bound<'_, PyAny>) -> PyResult<Link> {
    let input = match input {
        -1 => None,
        i => Some(usize::try_from(i).map_err(|_| invalid(format!("link {index}: input {i}")))?),
    };
    let step = match kind {
        "mix" => Step::Mix {
            select: params.extract::<Option<usize>>()?,
        },
        "resample" => Step::Resample {
            target_rate: params.getattr("target_rate")?.extract()?,
            quality: Quality::from_name(&params.getattr("quality")?.extract::<String>()?)?,
        },
        "vad" => {
            let (settings, expected): (VadSettings, Option<u32>) = params.extract()?;
            Step::Vad {
                params: settings.params(16000)?, // the rate is each input's
                expected_rate: expected,
            }
        }
        "convert" => Step::Convert {
            target: match params.extract::<String>()?.as_str() {
                "f32" => Format::F32,
                "f64" => Format::F64,
                "i16" => Format::I16,
                "i32" => Format::I32,
                other => return Err(invalid(format!("link {index}: format {other:?}"))),
            },
        },
        "combine" => {
            let (op, param): (String, f64) = params.extract()?;
            let op = match op.as_str() {
                "add" => Op::Add,
                "multiply" => Op::Multiply,
                other => return Err(invalid(format!("link {index}: op {other:?}"))),
            };
            Step::Combine { op, param }
        }
        other => return Err(invalid(format!("link {index}: unknown kind {other:?}"))),
    };
    Ok(Link { step, input })
}

/// Native nodes run as one chain (private; see `remotemedia_ray.nodes.native`).
///
/// Calls from several threads take turns (the chain's buffers are one set).
#[pyclass(name = "Chain", module = "remotemedia_ray._native", frozen)]
pub struct PyChain {
    chain: Mutex<Chain>,
    keep: Vec<bool>,
}

#[pymethods]
impl PyChain {
    /// `links`: `(kind, input, params)` in execution order, `input` -1 for the
    /// chain's input; `keep`: whose values `run` returns.
    #[new]
    fn new(links: Vec<(String, i64, Bound<'_, PyAny>)>, keep: Vec<bool>) -> PyResult<Self> {
        if keep.len() != links.len() {
            return Err(invalid(format!(
                "{} links but {} keep flags",
                links.len(),
                keep.len()
            )));
        }
        let links = links
            .iter()
            .enumerate()
            .map(|(i, (kind, input, params))| link(i, kind, *input, params))
            .collect::<PyResult<Vec<_>>>()?;
        Ok(PyChain {
            chain: Mutex::new(Chain::new(links)?),
            keep,
        })
    }

    /// Runs the chain over each `(samples, sample_rate)`: per input, `None`
    /// when it cannot run it (a link's kernel refused it or panicked, or the
    /// rate is not a positive 32-bit int; the caller runs it node by node,
    /// for the error), else `(values, elapsed_ns)` with, for each link,
    /// `None` (not kept), `-1` (the input itself), `(array, rate)` (one
    /// object for links sharing their audio) or a segment list.
    fn run<'py>(
        &self,
        py: Python<'py>,
        inputs: Vec<(AudioIn<'py>, Bound<'py, PyAny>)>,
    ) -> PyResult<Bound<'py, PyList>> {
        let mut views: Vec<Option<(View<'_>, usize, u32)>> = Vec::with_capacity(inputs.len());
        for (audio, rate) in &inputs {
            let rate = rate.extract::<u32>().ok().filter(|r| *r > 0);
            views.push(
                match audio {
                    AudioIn::F32(a) => samples(a).ok().map(|(x, _, c)| (View::F32(x), c)),
                    AudioIn::F64(a) => samples(a).ok().map(|(x, _, c)| (View::F64(x), c)),
                    AudioIn::I16(a) => samples(a).ok().map(|(x, _, c)| (View::I16(x), c)),
                    AudioIn::I32(a) => samples(a).ok().map(|(x, _, c)| (View::I32(x), c)),
                }
                .zip(rate)
                .map(|((x, c), r)| (x, c, r)),
            );
        }
        let keep = &self.keep;
        let runs: Vec<Option<Kept>> = py.detach(|| {
            let mut chain = self.chain.lock().unwrap_or_else(PoisonError::into_inner);
            views
                .iter()
                .map(|view| {
                    let (x, channels, rate) = (*view)?;
                    catch_unwind(AssertUnwindSafe(|| {
                        chain.run_keeping(x, channels, rate, keep)
                    }))
                    .ok()?
                    .ok()
                })
                .collect()
        });
        let out = PyList::empty(py);
        for run in runs {
            match run {
                None => out.append(py.None())?,
                Some(kept) => out.append(kept_to_py(py, kept)?)?,
            }
        }
        Ok(out)
    }
}

/// One input's kept values as Python objects (see [`PyChain::run`]).
fn kept_to_py<'py>(py: Python<'py>, kept: Kept) -> PyResult<Bound<'py, PyTuple>> {
    let Kept {
        values,
        mut audio,
        elapsed_ns,
    } = kept;
    let mut arrays: Vec<Option<Bound<'py, PyAny>>> = vec![None; audio.len()];
    let list = PyList::empty(py);
    for value in values {
        match value {
            None => list.append(py.None())?,
            Some(Held::Input) => list.append(-1)?,
            Some(Held::Segments(segments)) => list.append(segment_list(py, segments)?)?,
            Some(Held::Audio(r)) => {
                if arrays[r].is_none() {
                    let (buf, channels, rate) = audio[r]
                        .take()
                        .ok_or_else(|| invalid(format!("link {r} holds no audio")))?;
                    let frames = buf.len() / channels.max(1);
                    let array = match buf {
                        Buf::F32(v) => to_pyarray(py, v, frames, channels)?.into_any(),
                        Buf::F64(v) => to_pyarray(py, v, frames, channels)?.into_any(),
                        Buf::I16(v) => to_pyarray(py, v, frames, channels)?.into_any(),
                        Buf::I32(v) => to_pyarray(py, v, frames, channels)?.into_any(),
                    };
                    arrays[r] = Some(
                        PyTuple::new(py, [array, rate.into_pyobject(py)?.into_any()])?.into_any(),
                    );
                }
                list.append(arrays[r].as_ref())?;
            }
        }
    }
    PyTuple::new(
        py,
        [list.into_any(), PyList::new(py, elapsed_ns)?.into_any()],
    )
}

/// Adds `Chain` to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyChain>()
}
