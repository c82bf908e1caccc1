"""The energy-then-neural cascade of ``VADNode(refine="silero")``.

The energy VAD measures every model window (512 samples at 16 kHz) of the
model's input with its own rules (decision energy with context, fixed and
adaptive threshold: :mod:`remotemedia_ray.nodes.reference.vad`) and is
trusted where it is sure:

* a window whose decision energy is more than ``silence_db`` below the energy
  VAD's decision level is silence (probability 0);
* one more than ``speech_db`` above it is speech (probability 1);
* every other window is uncertain. Uncertain windows, widened by ``grow_ms``
  on each side, form stretches that the Silero model scores, all stretches
  of a file in one batch, each run from ``context_ms`` earlier so that the
  model's state has settled when the stretch begins. Stretches closer than
  that are scored as one (the model runs through the sure windows between).

The probabilities then go through Silero's segmenting rule
(:mod:`remotemedia_ray.nodes.speech_timestamps`), as SileroVADNode's do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from remotemedia_ray.nodes import reference
from remotemedia_ray.nodes._silero_model import Lane, SileroModel, window_samples
from remotemedia_ray.nodes.reference import VadSettings

if TYPE_CHECKING:
    from remotemedia_ray.nodes.builtin import KernelBackend

__all__ = ["CascadeSettings", "cascade_probabilities", "sure_windows"]


@dataclass(frozen=True, slots=True)
class CascadeSettings:
    """How far from the energy VAD's decision level a window is sure, and the model's context.

    Attributes:
        energy: The energy VAD's settings (threshold, context, noise floor).
        silence_db: Below the decision level by more than this: silence, dB.
        speech_db: Above the decision level by more than this: speech, dB.
        context_ms: Audio the model runs before each uncertain stretch, ms.
        grow_ms: Uncertain stretches are widened by this on each side, ms.
    """

    energy: VadSettings
    silence_db: float = 6.0
    speech_db: float = 12.0
    context_ms: float = 500.0
    grow_ms: float = 64.0


def sure_windows(
    signal: npt.NDArray[np.float32], rate: int, kernels: KernelBackend, settings: CascadeSettings
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """``(speech, silence)``: the model windows the energy VAD is sure of, each way."""
    window = window_samples(rate)
    if signal.size == 0:
        empty = np.zeros(0, np.bool_)
        return empty, empty
    sums, counts = kernels.vad_frame_energies(signal.reshape(-1, 1), window)
    energy = settings.energy
    window_ms = window * 1000.0 / rate
    d = reference.decision_energies(
        sums, counts, reference.smoothing_frames(energy.context_ms, window_ms)
    )
    level = 10.0 ** (energy.threshold_db / 10.0)
    if energy.noise_floor_percentile is not None:
        floor = reference.noise_floor(d, energy.noise_floor_percentile)
        level = max(level, floor * 10.0 ** (energy.noise_floor_margin_db / 10.0))
    with np.errstate(all="ignore"):
        speech = d > level * 10.0 ** (settings.speech_db / 10.0)
        silence = d < level * 10.0 ** (-settings.silence_db / 10.0)
    return speech, silence


def _grow(flags: npt.NDArray[np.bool_], reach: int) -> npt.NDArray[np.bool_]:
    """``flags`` with every True spread ``reach`` places each way."""
    if reach <= 0 or not flags.any():
        return flags
    hits = np.concatenate(([0], np.cumsum(flags, dtype=np.int64)))
    n = flags.size
    idx = np.arange(n)
    lo = np.clip(idx - reach, 0, n)
    hi = np.clip(idx + reach + 1, 0, n)
    return np.asarray(hits[hi] - hits[lo] > 0)


def _runs(flags: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    padded = np.concatenate(([False], flags, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b)) for a, b in zip(edges[0::2], edges[1::2], strict=True)]


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
    window = window_samples(rate)
    speech, silence = sure_windows(signal, rate, kernels, settings)
    probs = speech.astype(np.float32)
    window_ms = window * 1000.0 / rate
    unsure = _grow(~(speech | silence), math.ceil(settings.grow_ms / window_ms))
    warmup = math.ceil(settings.context_ms / window_ms)
    lanes: list[Lane] = []
    for a, b in _runs(unsure):
        if lanes and a - lanes[-1].stop <= warmup:  # its context would overlap: one stretch
            lanes[-1] = Lane(0, lanes[-1].start, b, lanes[-1].warmup)
        else:
            lanes.append(Lane(0, a, b, min(a, warmup)))
    if not lanes:
        return probs, 0
    for lane, p in zip(lanes, model.score([signal], rate, lanes), strict=True):
        probs[lane.start : lane.stop] = p
    return probs, sum(lane.stop - lane.start + lane.warmup for lane in lanes)
