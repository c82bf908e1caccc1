"""Cutting speech into utterances, SegmentNode (Rust: ``kernels/segment.rs``).

``segment_bounds`` turns the VAD's speech segments of one input into clip
boundaries, in frames (time steps) of that input, step by step:

1. ``to_frames(ms) = floor(ms * sample_rate / 1000.0 + 0.5)`` (f64, in that
   order) clamped to ``[0, frames]``. Each segment ``[start_ms, end_ms)``
   becomes ``[to_frames(start_ms), to_frames(end_ms))``; empty ones are
   dropped; the rest are ordered by ``(start, end)``.
2. Merge: walking in order, a segment whose start is less than
   ``gap = to_count(merge_gap_ms)`` frames after the current clip's end
   (overlaps included) extends it to ``max(end, its end)``.
3. Pad: each clip becomes ``[max(0, s - pad), min(frames, e + pad)]`` with
   ``pad = to_count(pad_ms)``; clips that then overlap or touch (``s_next <= e``)
   merge.
4. Split: a clip longer than ``max_len = to_count(max_s * 1000.0)`` frames is
   cut at the quietest frame. Candidate frames are ``[s + k*F, s + (k+1)*F)``
   for ``k = 0, 1, ...`` with ``F = max(1, to_count(split_frame_ms))``, lying
   inside the clip, whose midpoint ``p_k = s + k*F + F // 2`` is at most
   ``max_len`` frames from ``s`` and, where some candidate allows it, at least
   ``min_len = to_count(min_s * 1000.0)`` (else at least 1). Their energies are
   the VAD's ``frame_energies`` (8-lane sums of squares). The clip is cut at
   ``p_k`` of the lowest energy, the last such ``k`` on ties; with no
   candidate it is cut at ``s + max_len``. The first part is final; the rest
   is split again.
5. Short clips: a clip shorter than ``min_len`` frames is dropped (``short``
   = ``"drop"``), or (``"merge"``) joined to its nearer neighbour (the gap to
   the previous kept clip against the gap to the next clip; the previous on
   ties) when the joined clip is at most ``max_len`` long, trying the other
   neighbour next, and dropped when neither fits.

``to_count(ms) = floor(ms * sample_rate / 1000.0 + 0.5)`` without clamping.
Clip audio is the input's samples ``[s, e)``, unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from remotemedia_ray.errors import AudioFormatError, ConfigError
from remotemedia_ray.nodes.reference._samples import audio_format, check_finite, finite_float
from remotemedia_ray.nodes.reference.vad import frame_energies

__all__ = ["DEFAULT_SEGMENTING", "SegmentSettings", "segment_bounds"]


@dataclass(frozen=True, slots=True)
class SegmentSettings:
    """The settings of SegmentNode, one object from the node to either kernel.

    Attributes:
        merge_gap_ms: Segments closer than this are one utterance (>= 0).
        pad_ms: Each utterance is widened by this much on both sides (>= 0).
        min_s: Utterances shorter than this are dropped or merged (>= 0).
        max_s: Utterances longer than this are split at a quiet frame (> 0, >= min_s).
        short: ``"drop"`` or ``"merge"`` short utterances.
        split_frame_ms: The frame in which the quietest point is looked for (> 0).
    """

    merge_gap_ms: float = 300.0
    pad_ms: float = 100.0
    min_s: float = 1.0
    max_s: float = 20.0
    short: Literal["drop", "merge"] = "drop"
    split_frame_ms: float = 20.0


DEFAULT_SEGMENTING = SegmentSettings()
"""Utterances of 1 to 20 s, segments 300 ms apart joined, 100 ms of context."""


def _to_count(ms: float, rate: int) -> int:
    return math.floor(ms * rate / 1000.0 + 0.5)


def _checked(sample_rate: int, settings: SegmentSettings) -> tuple[int, int, int, int, int, int]:
    """Rate and the settings in frames: gap, pad, min_len, max_len, split frame."""
    if not isinstance(settings, SegmentSettings):
        raise ConfigError(f"settings must be a SegmentSettings, got {type(settings).__name__}")
    if (
        isinstance(sample_rate, (bool, np.bool_))
        or not isinstance(sample_rate, (int, np.integer))
        or sample_rate <= 0
    ):
        raise AudioFormatError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    rate = int(sample_rate)
    s = settings
    values = {}
    for name in ("merge_gap_ms", "pad_ms", "min_s", "max_s", "split_frame_ms"):
        value = finite_float(getattr(s, name), name, ConfigError)
        if value < 0 or (value == 0 and name in ("max_s", "split_frame_ms")):
            bound = "> 0" if name in ("max_s", "split_frame_ms") else ">= 0"
            raise ConfigError(f"{name} must be {bound}, got {getattr(s, name)!r}")
        values[name] = value
    if values["min_s"] > values["max_s"]:
        raise ConfigError(f"min_s ({s.min_s!r}) must not exceed max_s ({s.max_s!r})")
    if s.short not in ("drop", "merge"):
        raise ConfigError(f"short must be 'drop' or 'merge', got {s.short!r}")
    return (
        rate,
        _to_count(values["merge_gap_ms"], rate),
        _to_count(values["pad_ms"], rate),
        _to_count(values["min_s"] * 1000.0, rate),
        max(1, _to_count(values["max_s"] * 1000.0, rate)),
        max(1, _to_count(values["split_frame_ms"], rate)),
    )


def segment_bounds(
    samples: npt.NDArray[Any],
    sample_rate: int,
    starts_ms: npt.ArrayLike,
    ends_ms: npt.ArrayLike,
    settings: SegmentSettings = DEFAULT_SEGMENTING,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The utterance clips of one input: start and end frames (see the module docstring).

    Args:
        samples: 2-D audio ``(frames, channels)`` of float32/float64/int16/int32.
        sample_rate: Its rate, > 0.
        starts_ms, ends_ms: The speech segments (the VAD's ``start_ms``/``end_ms``).
        settings: See :class:`SegmentSettings`.

    Returns:
        ``(starts, ends)``: int64 frame indices, clip ``i`` being ``samples[starts[i]:ends[i]]``.

    Raises:
        AudioFormatError: Bad audio or rate, segments that are not finite numbers
            (naming the segment), or a NaN/inf sample (named).
        ConfigError: An invalid setting (named).
    """
    audio_format(samples)
    rate, gap, pad, min_len, max_len, flen = _checked(sample_rate, settings)
    check_finite(samples)
    starts = np.asarray(starts_ms, dtype=np.float64).reshape(-1)
    ends = np.asarray(ends_ms, dtype=np.float64).reshape(-1)
    if starts.shape != ends.shape:
        raise AudioFormatError(f"{starts.size} segment starts but {ends.size} ends")
    frames = samples.shape[0]
    spans: list[tuple[int, int]] = []
    for index, (a, b) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        if not (math.isfinite(a) and math.isfinite(b)):
            raise AudioFormatError(f"segment {index} has a non-finite bound ({a!r}, {b!r})")
        s = min(max(_to_count(a, rate), 0), frames)
        e = min(max(_to_count(b, rate), 0), frames)
        if e > s:
            spans.append((s, e))
    spans.sort()
    merged = _merge(spans, gap)
    padded = _merge([(max(0, s - pad), min(frames, e + pad)) for s, e in merged], 1)
    split: list[tuple[int, int]] = []
    for s, e in padded:
        split.extend(_split(samples, s, e, min_len, max_len, flen))
    kept = _short(split, min_len, max_len, settings.short)
    return (
        np.array([s for s, _ in kept], dtype=np.int64),
        np.array([e for _, e in kept], dtype=np.int64),
    )


def _merge(spans: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    """Spans whose start is less than ``gap`` frames after the current end join it."""
    out: list[tuple[int, int]] = []
    for s, e in spans:
        if out and s - out[-1][1] < gap:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _split(
    samples: npt.NDArray[Any], s: int, e: int, min_len: int, max_len: int, flen: int
) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    while e - s > max_len:
        cut = _quietest(samples, s, e, min_len, max_len, flen)
        out.append((s, cut))
        s = cut
    out.append((s, e))
    return out


def _quietest(
    samples: npt.NDArray[Any], s: int, e: int, min_len: int, max_len: int, flen: int
) -> int:
    """Where to cut ``[s, e)``: the midpoint of its quietest candidate frame."""
    half = flen // 2
    # frames k = 0..count-1 lie inside the clip and have their midpoint within max_len
    count = min((e - s) // flen, (max_len - half) // flen + 1 if max_len >= half else 0)
    lowest = max(min_len, 1)
    first = max(0, -(-(lowest - half) // flen))  # the first k with midpoint >= lowest
    if first >= count:
        first = max(0, -(-(1 - half) // flen))  # relax to a midpoint >= 1
    if first >= count:
        return s + max_len
    block = samples[s + first * flen : s + count * flen]
    sums, _ = frame_energies(block, flen)
    best = first
    best_energy = math.inf
    for k, energy in enumerate(sums.tolist(), start=first):
        if energy <= best_energy:
            best, best_energy = k, energy
    return s + best * flen + half


def _short(
    spans: list[tuple[int, int]], min_len: int, max_len: int, mode: str
) -> list[tuple[int, int]]:
    pending = list(spans)
    out: list[tuple[int, int]] = []
    i = 0
    while i < len(pending):
        s, e = pending[i]
        if e - s >= min_len:
            out.append((s, e))
            i += 1
            continue
        if mode == "merge":
            has_prev, has_next = bool(out), i + 1 < len(pending)
            gap_prev = s - out[-1][1] if has_prev else None
            gap_next = pending[i + 1][0] - e if has_next else None
            order = ["prev", "next"]
            if gap_prev is None or (gap_next is not None and gap_next < gap_prev):
                order = ["next", "prev"]
            for side in order:
                if side == "prev" and has_prev and e - out[-1][0] <= max_len:
                    out[-1] = (out[-1][0], e)
                    break
                if side == "next" and has_next and pending[i + 1][1] - s <= max_len:
                    pending[i + 1] = (s, pending[i + 1][1])
                    break
        i += 1
    return out
