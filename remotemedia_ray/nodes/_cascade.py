"""The energy-then-neural cascade of ``VADNode(refine="silero")``.

The energy VAD measures every model window (512 samples at 16 kHz) of the
model's input with its own rules (decision energy with context, fixed and
adaptive threshold: :mod:`remotemedia_ray.nodes.reference.vad`); ``rel`` is
a window's decision energy over the energy VAD's decision level, in dB.
Windows with ``rel > 0`` are its speech; speech runs closer than
``bridge_ms`` are joined into one run. The energy VAD is trusted where it is
sure:

* inside a run whose loudest window is more than ``speech_db`` above the
  level: speech (probability 1);
* in a gap between runs, a window more than ``silence_db`` below the level:
  silence (probability 0);
* every other window is uncertain: ``edge_ms`` on each side of every run
  boundary (where the two detectors place a boundary differently), whole runs
  that never get loud (music, noise bursts, faint speech), and gap windows
  close to the level (speech the energy VAD may miss).

The Silero model scores the uncertain stretches (or the whole file, as
SileroVADNode does, when they would be most of it), all stretches of a file in
one batch, each run from ``context_ms`` earlier so that the model's state
has settled when the stretch begins; stretches closer than that are scored
as one. The probabilities then go through Silero's segmenting rule
(:mod:`remotemedia_ray.nodes.speech_timestamps`), as SileroVADNode's do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from remotemedia_ray.nodes import reference
from remotemedia_ray.nodes._silero_model import Lane, SileroModel, chunk_lanes, window_samples
from remotemedia_ray.nodes.reference import VadSettings

if TYPE_CHECKING:
    from remotemedia_ray.nodes.builtin import KernelBackend

__all__ = ["CascadeSettings", "cascade_probabilities", "relative_levels", "sure_windows"]


@dataclass(frozen=True, slots=True)
class CascadeSettings:
    """How far from the energy VAD's decision level a window is sure, and the model's context.

    Attributes:
        energy: The energy VAD's settings (threshold, context, noise floor).
        silence_db: A gap window this far below the decision level is silence, dB.
        speech_db: A run whose loudest window is this far above the level is speech, dB.
        edge_ms: Uncertain on each side of a run boundary, ms.
        bridge_ms: Speech runs closer than this are one run, ms.
        context_ms: Audio the model runs before each uncertain stretch, ms.
    """

    energy: VadSettings
    silence_db: float = 1.5
    speech_db: float = 6.0
    edge_ms: float = 64.0
    bridge_ms: float = 320.0
    context_ms: float = 96.0
    whole_share: float = 0.5
    """When the model would run on more than this share of a file anyway, it runs on
    all of it, in chunks as SileroVADNode does (its result, for a little more work)."""
    chunk_windows: int = 312
    """Those chunks: 10 s at 16 kHz ..."""
    chunk_context: int = 32
    """... each started 1 s early."""


def relative_levels(
    signal: npt.NDArray[np.float32], rate: int, kernels: KernelBackend, energy: VadSettings
) -> npt.NDArray[np.float64]:
    """Each model window's decision energy over the energy VAD's decision level, dB."""
    window = window_samples(rate)
    if signal.size == 0:
        return np.zeros(0, np.float64)
    sums, counts = kernels.vad_frame_energies(signal.reshape(-1, 1), window)
    window_ms = window * 1000.0 / rate
    d = reference.decision_energies(
        sums, counts, reference.smoothing_frames(energy.context_ms, window_ms)
    )
    level = 10.0 ** (energy.threshold_db / 10.0)
    if energy.noise_floor_percentile is not None:
        floor = reference.noise_floor(d, energy.noise_floor_percentile)
        level = max(level, floor * 10.0 ** (energy.noise_floor_margin_db / 10.0))
    with np.errstate(all="ignore"):
        return np.asarray(10.0 * np.log10(d / level), dtype=np.float64)


def sure_windows(
    rel: npt.NDArray[np.float64], window_ms: float, settings: CascadeSettings
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``(speech, uncertain)`` per window, from the relative levels (see the module docs)."""
    n = rel.size
    runs = reference.smooth_decisions(
        rel > 0.0, min_silence_frames=math.ceil(settings.bridge_ms / window_ms)
    )
    speech = np.zeros(n, np.bool_)
    unsure = np.zeros(n, np.bool_)
    edge = math.ceil(settings.edge_ms / window_ms)
    for a, b in reference.true_runs(runs):
        if float(np.max(rel[a:b])) > settings.speech_db:
            speech[a:b] = True
        else:
            unsure[a:b] = True
        unsure[max(0, a - edge) : a + edge] = True
        unsure[max(0, b - edge) : b + edge] = True
    unsure |= ~runs & (rel >= -settings.silence_db)
    return speech & ~unsure, unsure


def cascade_probabilities(
    signal: npt.NDArray[np.float32],
    rate: int,
    kernels: KernelBackend,
    model: SileroModel,
    settings: CascadeSettings,
) -> tuple[npt.NDArray[np.float32], int]:
    """Per-window speech probabilities of the cascade, and the windows the model ran.

    Args:
        signal: Mono float32 at ``rate`` (8000 or 16000 Hz).
        rate: The model's rate.
        kernels: The calling node's backend (frame energies).
        model: The loaded Silero model.
        settings: The cascade's settings.

    Returns:
        ``(probs, scored)``: one probability per window, and the number of
        windows the model ran (uncertain ones and their context).
    """
    window_ms = window_samples(rate) * 1000.0 / rate
    rel = relative_levels(signal, rate, kernels, settings.energy)
    speech, unsure = sure_windows(rel, window_ms, settings)
    probs = speech.astype(np.float32)
    warmup = math.ceil(settings.context_ms / window_ms)
    lanes: list[Lane] = []
    for a, b in reference.true_runs(unsure):
        if lanes and a - lanes[-1].stop <= warmup:  # its context would overlap: one stretch
            lanes[-1] = Lane(0, lanes[-1].start, b, lanes[-1].warmup)
        else:
            lanes.append(Lane(0, a, b, min(a, warmup)))
    if not lanes:
        return probs, 0
    scored = sum(lane.stop - lane.start + lane.warmup for lane in lanes)
    if scored > settings.whole_share * probs.size:
        lanes = chunk_lanes(0, probs.size, settings.chunk_windows, settings.chunk_context)
        scored = sum(lane.stop - lane.start + lane.warmup for lane in lanes)
    for lane, p in zip(lanes, model.score([signal], rate, lanes), strict=True):
        probs[lane.start : lane.stop] = p
    return probs, scored
