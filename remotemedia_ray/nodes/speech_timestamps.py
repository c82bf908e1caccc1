"""Speech segments from per-window speech probabilities (Silero's rule).

Both :class:`~remotemedia_ray.nodes.silero.SileroVADNode` and the cascade of
``VADNode(refine="silero")`` end here: one probability per model window in,
VADNode's segment list out. The rule is that of Silero's
``get_speech_timestamps`` with RemoteMedia's parameters, in samples of the
model's rate:

1. Walk the windows in order. Speech starts at the first window whose
   probability is ``>= threshold``. Once in speech, a window below
   ``neg_threshold`` starts a possible end; a window ``>= threshold`` cancels
   it; when the possible end is ``min_silence_duration_ms`` old, the segment
   ends there, and is kept when longer than ``min_speech_duration_ms``.
   Speech still running at the end of the audio ends there (same length rule).
2. Each segment is widened by ``speech_pad_ms`` on both sides; where two
   segments are closer than twice the pad, the gap is split between them.
3. ``confidence`` is the mean probability of the windows of the segment
   before padding (for the cascade of ``VADNode(refine="silero")``, of its
   windows that the model scored; where the model scored none of them, the
   energy confidence VADNode gives, from ``energy_db`` and VADNode's
   ``threshold``); ``energy_db`` is ``10*log10`` of the mean square of the
   input (all channels) over the segment (``-inf`` for exact silence), and
   ``end_ms`` is capped at the audio's duration, as VADNode does.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field, model_validator

from remotemedia_ray.nodes.reference import energy_confidence

__all__ = ["SpeechParams", "SpeechSettings", "speech_runs", "speech_segments"]


@dataclass(frozen=True, slots=True)
class SpeechSettings:
    """The rule's settings, checked (see :class:`SpeechParams` for their meaning)."""

    threshold: float = 0.5
    neg_threshold: float = 0.35
    min_speech_duration_ms: float = 250.0
    min_silence_duration_ms: float = 100.0
    speech_pad_ms: float = 30.0


class SpeechParams(BaseModel):
    """The parameters of Silero's segmenting rule, as RemoteMedia's Silero node names them."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    threshold: float = Field(
        default=0.5, gt=0, lt=1, description="Speech starts at a window this probable."
    )
    neg_threshold: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Speech may end below this probability (null: threshold - 0.15, "
        "at least 0.01).",
    )
    min_speech_duration_ms: float = Field(
        default=250.0, ge=0, le=60_000, description="Shorter speech segments are dropped, ms."
    )
    min_silence_duration_ms: float = Field(
        default=100.0, ge=0, le=60_000, description="Silence that ends a segment, ms."
    )
    speech_pad_ms: float = Field(
        default=30.0, ge=0, le=10_000, description="Padding on each side of a segment, ms."
    )

    @model_validator(mode="after")
    def _neg_below_threshold(self) -> SpeechParams:
        if self.neg_threshold is not None and self.neg_threshold > self.threshold:
            raise ValueError(
                f"neg_threshold ({self.neg_threshold}) must not exceed threshold ({self.threshold})"
            )
        return self

    def speech_settings(self) -> SpeechSettings:
        """The rule's settings, ``neg_threshold`` filled in."""
        neg = self.neg_threshold
        if neg is None:
            neg = max(self.threshold - 0.15, 0.01)
        return SpeechSettings(
            threshold=self.threshold,
            neg_threshold=neg,
            min_speech_duration_ms=self.min_speech_duration_ms,
            min_silence_duration_ms=self.min_silence_duration_ms,
            speech_pad_ms=self.speech_pad_ms,
        )


def speech_runs(
    probs: npt.NDArray[np.floating], window: int, samples: int, rate: int, s: SpeechSettings
) -> list[tuple[int, int, int, int]]:
    """Steps 1 and 2: ``(start, end, first_window, end_window)`` per segment.

    ``start``/``end`` are padded sample bounds at ``rate`` (``end`` at most
    ``samples``); the windows are those of the segment before padding.
    """
    min_speech = rate * s.min_speech_duration_ms / 1000.0
    min_silence = rate * s.min_silence_duration_ms / 1000.0
    pad = int(rate * s.speech_pad_ms / 1000.0)
    above = np.asarray(probs) >= s.threshold
    below = np.asarray(probs) < s.neg_threshold
    found: list[list[int]] = []
    triggered = False
    start = temp_end = 0
    for i in range(len(above)):
        here = window * i
        if above[i]:
            temp_end = 0
            if not triggered:
                triggered, start = True, here
            continue
        if triggered and below[i]:
            if not temp_end:
                temp_end = here
            if here - temp_end < min_silence:
                continue
            if temp_end - start > min_speech:
                found.append([start, temp_end])
            triggered, temp_end = False, 0
    if triggered and samples - start > min_speech:
        found.append([start, samples])
    windows = [(a // window, -(-b // window)) for a, b in found]
    for i, seg in enumerate(found):
        if i == 0:
            seg[0] = max(0, seg[0] - pad)
        if i + 1 < len(found):
            gap = found[i + 1][0] - seg[1]
            if gap < 2 * pad:
                seg[1] += gap // 2
                found[i + 1][0] = max(0, found[i + 1][0] - gap // 2)
            else:
                seg[1] = min(samples, seg[1] + pad)
                found[i + 1][0] = max(0, found[i + 1][0] - pad)
        else:
            seg[1] = min(samples, seg[1] + pad)
    return [(a, b, w0, w1) for (a, b), (w0, w1) in zip(found, windows, strict=True)]


def speech_segments(
    probs: npt.NDArray[np.floating],
    window: int,
    rate: int,
    samples: npt.NDArray[np.floating],
    source_rate: int,
    settings: SpeechSettings,
    *,
    scored: npt.NDArray[np.bool_] | None = None,
    threshold_db: float = -30.0,
) -> list[dict[str, float]]:
    """VADNode's segment list from the probabilities of the windows of the model's input.

    Args:
        probs: One speech probability per window of ``window`` samples at ``rate``.
        window: Samples per window.
        rate: The model's rate, Hz.
        samples: The node's input, 2-D ``(frames, channels)`` at ``source_rate``
            (for ``energy_db`` and the duration; integers count as ``v / 2^(bits-1)``).
        source_rate: The input's rate, Hz.
        settings: The rule's settings.
        scored: Which probabilities are the model's (None: all of them); the
            confidence averages only those.
        threshold_db: The energy threshold of the confidence of a segment of
            which the model scored no window (with ``scored``).
    """
    frames = samples.shape[0]
    model_samples = math.ceil(frames * rate / source_rate)
    scale = (
        2.0 ** (samples.dtype.itemsize * 8 - 1) if np.issubdtype(samples.dtype, np.integer) else 1.0
    )
    out: list[dict[str, float]] = []
    for start, end, w0, w1 in speech_runs(probs, window, model_samples, rate, settings):
        start_ms = start * 1000.0 / rate
        end_ms = min(end * 1000.0 / rate, frames * 1000.0 / source_rate)
        a = min(frames, math.floor(start_ms * source_rate / 1000.0))
        b = min(frames, math.ceil(end_ms * source_rate / 1000.0))
        piece = np.asarray(samples[a:b], dtype=np.float64) / scale
        power = float(np.mean(piece * piece)) if piece.size else 0.0
        energy_db = 10.0 * math.log10(power) if power > 0.0 else -math.inf
        model = slice(w0, w1) if scored is None else np.flatnonzero(scored[w0:w1]) + w0
        confidence = (
            float(np.mean(probs[model], dtype=np.float64))
            if np.size(probs[model])
            else energy_confidence(energy_db, threshold_db)
        )
        out.append(
            {
                "start_ms": start_ms,
                "end_ms": end_ms,
                "energy_db": energy_db,
                "confidence": confidence,
            }
        )
    return out
