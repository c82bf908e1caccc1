"""Energy voice activity detection, VADNode (Rust: ``kernels/vad.rs``).

``vad_segments``, step by step:

1. ``frame_len = max(1, floor(sample_rate * frame_length_ms / 1000 + 0.5))``
   in f64 (``vad_frame_len``). Frames are consecutive, non-overlapping;
   ``n = ceil(frames / frame_len)``; the last frame may be shorter.
2. Values: floats as f64; integers ``f64(v) / scale`` (exact).
3. Energy of a frame (``frame_energies``): its samples interleaved row-major
   (time, then channel) form ``e_0 .. e_{m-1}``; lane ``k`` (0..7) starts
   at 0.0 and adds ``e_i * e_i`` for ``i % 8 == k`` in increasing ``i``;
   ``sum = ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7))``.
   ``count = m`` (samples in the frame times channels).
4. Decision energy (``decision_energies``): ``m_f = sum_f / count_f``.
   With context ``C = smoothing_frames(context_ms, frame_length_ms)``
   (below; 0 = off, the default) clipped to ``n - 1``, each frame's
   decision energy is ``d_f = acc / k`` where ``acc = 0.0``, then
   ``acc = acc + m_j`` for ``j = max(0, f - C) .. min(n - 1, f + C)`` in
   increasing order, and ``k`` is the number of those frames (as f64).
   With ``C = 0``, ``d_f = m_f``.
5. Speech decision (``frame_decisions``): ``thr = 10.0 ** (threshold_db /
   10.0)`` (C ``pow``; Rust ``f64::powf``; an overflow gives inf). Without a
   noise floor (``noise_floor_percentile`` None, the default) a frame is
   speech iff ``d_f > thr``. With percentile ``p`` (0..100) the noise
   floor (``noise_floor``) is the ``i``-th smallest ``d`` (0-based, ties
   kept, as in ``sorted(d)[i]``) with ``i = floor((n - 1) * p / 100.0)``
   (f64 ops in that order), ``adaptive = floor * 10.0 ** (margin_db /
   10.0)``, and a frame is speech iff ``d_f > thr`` and ``d_f > adaptive``.
   The comparisons are linear, there is no per-frame log.
6. Smoothing (``smooth_decisions``), with frame counts
   ``ceil(ms / frame_length_ms)`` (``smoothing_frames``; 0 ms -> 0 = off),
   in this order: hangover H: after each run of speech frames, up to H
   following frames become speech; then every silence gap shorter than S
   frames lying between two speech runs becomes speech; then every speech
   run shorter than M frames becomes silence.
7. Each maximal run of speech frames ``[f0, f1)`` is one segment:
   ``start_ms = (f0 * frame_len) * 1000.0 / sample_rate``;
   ``end_ms = min(f1 * frame_len, frames) * 1000.0 / sample_rate``;
   ``seg_sum = 0.0 + sum_f0 + ... + sum_{f1-1}`` (sequentially),
   ``seg_count`` the integer sum of counts;
   ``energy_db = 10.0 * log10(seg_sum / seg_count)`` (C ``log10``; Rust
   ``f64::log10``), or ``-inf`` when ``seg_sum == 0``;
   ``confidence = min(1.0, max(0.0, 1.0 - 10.0 ** (-(energy_db -
   threshold_db) / 10.0)))`` (so 0.0 for ``energy_db == -inf``). Segment
   energy and confidence use the raw sums and ``threshold_db`` whatever
   the context and the noise floor.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from remotemedia_ray.errors import AudioFormatError, ConfigError
from remotemedia_ray.nodes.reference._samples import audio_format, check_finite, finite_float

__all__ = [
    "DEFAULT_SETTINGS",
    "VadSettings",
    "decision_energies",
    "decision_level",
    "energy_confidence",
    "frame_decisions",
    "frame_energies",
    "noise_floor",
    "smooth_decisions",
    "smoothing_frames",
    "true_runs",
    "vad_frame_energies",
    "vad_frame_len",
    "vad_segments",
    "vad_segments_from_energies",
]

_LANES = 8


@dataclass(frozen=True, slots=True)
class VadSettings:
    """The settings of the energy VAD, one object from the node to either kernel.

    ``VADNode`` builds one from its params when it is initialized; the numpy
    kernels read it here, the Rust kernels convert it once into their
    ``VadParams``. The kernels check every value (and name the bad one); this
    class does not, so the two runtimes refuse the same settings the same way.
    The defaults are the plain detector.

    Attributes:
        threshold_db: Speech threshold on a frame's mean square, in dBFS (finite).
        frame_length_ms: Frame length in milliseconds (finite, > 0).
        hangover_ms: Speech kept after each speech run (>= 0; 0 = off).
        min_speech_ms: Speech runs shorter than this are dropped (>= 0; 0 = off).
        min_silence_ms: Silence gaps shorter than this are filled (>= 0; 0 = off).
        context_ms: Average each frame's mean square with those of its
            neighbours within this many ms on each side before deciding
            (>= 0; 0 = off).
        noise_floor_percentile: Adaptive threshold: the percentile (0..100) of
            the decision energies of the input taken as its noise floor, or
            None (off). Needs some non-speech in the input to mean "noise".
        noise_floor_margin_db: With a noise floor, speech must exceed it by
            this many dB (finite, >= 0), as well as ``threshold_db``.
    """

    threshold_db: float = -30.0
    frame_length_ms: float = 30.0
    hangover_ms: float = 0.0
    min_speech_ms: float = 0.0
    min_silence_ms: float = 0.0
    context_ms: float = 0.0
    noise_floor_percentile: float | None = None
    noise_floor_margin_db: float = 3.0


DEFAULT_SETTINGS = VadSettings()
"""The plain detector: each frame against -30 dBFS, no smoothing."""


def _pow10(exponent: float) -> float:
    """``10.0 ** exponent`` like C ``pow``: inf on overflow instead of OverflowError."""
    try:
        return float(10.0**exponent)
    except OverflowError:
        return math.inf


def vad_frame_len(sample_rate: int, frame_length_ms: float) -> int:
    """Samples per VAD frame: ``max(1, floor(sample_rate * frame_length_ms / 1000 + 0.5))``.

    The product, division and addition are f64 operations in that order.
    """
    return max(1, math.floor(sample_rate * frame_length_ms / 1000 + 0.5))


def smoothing_frames(ms: float, frame_length_ms: float) -> int:
    """A smoothing duration in frames: ``ceil(ms / frame_length_ms)`` (0 ms -> 0, off).

    A quotient that overflows to inf gives ``2**64 - 1`` (Rust's saturating
    ``as usize``); any count beyond the number of frames acts the same.
    """
    quotient = ms / frame_length_ms
    return math.ceil(quotient) if math.isfinite(quotient) else 2**64 - 1


def frame_energies(
    samples: npt.NDArray[Any], frame_len: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Per-frame sum of squares (8-lane order) and sample counts.

    Frames are ``frame_len`` consecutive time steps; the last may be shorter.
    Integer samples are scaled by ``1 / 2^(bits-1)`` first. Each frame's
    interleaved samples ``e_i`` are squared into lane ``i % 8`` sequentially;
    the lanes are added as ``((l0+l1)+(l2+l3))+((l4+l5)+(l6+l7))``. NaN/inf
    propagate (``vad_segments`` rejects them first).

    Args:
        samples: 2-D audio ``(frames, channels)`` of float32/float64/int16/int32.
        frame_len: Time steps per frame, >= 1.

    Returns:
        ``(sums, counts)``: float64 and int64 arrays of length
        ``ceil(frames / frame_len)``; ``counts`` is samples-in-frame x channels.

    Raises:
        AudioFormatError: Bad shape or dtype, or ``frame_len`` < 1.
        MarshalingError: ``samples`` is not a numpy array.
    """
    fmt = audio_format(samples)
    if isinstance(frame_len, (bool, np.bool_)) or not isinstance(frame_len, (int, np.integer)):
        raise AudioFormatError(f"frame_len must be an integer, got {frame_len!r}")
    if frame_len < 1:
        raise AudioFormatError(f"frame_len must be >= 1, got {frame_len}")
    frame_len = int(frame_len)
    n_time, channels = samples.shape
    n_frames = -(-n_time // frame_len)
    counts = np.full(n_frames, frame_len * channels, dtype=np.int64)
    if n_frames and n_time % frame_len:
        counts[-1] = (n_time % frame_len) * channels
    width = frame_len * channels
    padded_width = -(-width // _LANES) * _LANES
    # The interleaved frame matrix, zero-padded to a multiple of 8 per frame and
    # in the last frame; adding +0.0 to a lane never changes it.
    matrix = np.zeros((n_frames, padded_width), dtype=np.float64)
    flat = samples.astype(np.float64, order="C").reshape(-1)
    if not fmt.is_float:
        flat /= float(2 ** (fmt.bits - 1))
    n_full = n_time // frame_len
    matrix[:n_full, :width] = flat[: n_full * width].reshape(n_full, width)
    if n_full < n_frames:
        tail = flat[n_full * width :]
        matrix[n_full, : tail.size] = tail
    lanes = np.zeros((n_frames, _LANES), dtype=np.float64)
    with np.errstate(all="ignore"):
        np.multiply(matrix, matrix, out=matrix)
        for k in range(0, padded_width, _LANES):
            lanes += matrix[:, k : k + _LANES]
        sums = ((lanes[:, 0] + lanes[:, 1]) + (lanes[:, 2] + lanes[:, 3])) + (
            (lanes[:, 4] + lanes[:, 5]) + (lanes[:, 6] + lanes[:, 7])
        )
    return sums, counts


def decision_energies(
    sums: npt.NDArray[np.float64], counts: npt.NDArray[np.int64], context_frames: int = 0
) -> npt.NDArray[np.float64]:
    """Per-frame energy the speech decision compares (step 4 of the module docstring).

    Each frame's mean square ``sums / counts``; with ``context_frames`` C > 0,
    the mean of the mean squares of the frames within C frames of it (fewer at
    the edges), summed from 0.0 in increasing frame order, divided by their
    number.

    Args:
        sums: Per-frame sums of squares from ``frame_energies``.
        counts: Per-frame sample counts from ``frame_energies`` (all >= 1).
        context_frames: Neighbours on each side averaged in, >= 0 (0 = off).

    Returns:
        A new float64 array, one energy per frame.

    Raises:
        AudioFormatError: ``context_frames`` is negative.
    """
    if context_frames < 0:
        raise AudioFormatError(f"context_frames must be >= 0, got {context_frames}")
    with np.errstate(all="ignore"):
        mean_square = np.asarray(sums, dtype=np.float64) / np.asarray(counts, dtype=np.float64)
    n = mean_square.size
    reach = min(int(context_frames), n - 1)
    if reach <= 0:
        return mean_square
    acc = np.zeros(n, dtype=np.float64)
    members = np.zeros(n, dtype=np.float64)
    with np.errstate(all="ignore"):
        for j in range(-reach, reach + 1):  # neighbour f + j of frame f, in increasing order
            lo, hi = max(0, -j), min(n, n - j)
            acc[lo:hi] += mean_square[lo + j : hi + j]
            members[lo:hi] += 1.0
        return acc / members


def noise_floor(energies: npt.NDArray[np.float64], percentile: float) -> float:
    """The ``percentile``-th percentile of ``energies`` by a nearest-rank-below rule.

    ``sorted(energies)[floor((n - 1) * percentile / 100.0)]`` (0-based; f64
    operations in that order): 0 gives the smallest, 100 the largest.

    Args:
        energies: Non-empty decision energies (no NaN).
        percentile: In ``[0, 100]``.

    Returns:
        The chosen energy.

    Raises:
        AudioFormatError: ``energies`` is empty or ``percentile`` is out of range.
    """
    p = finite_float(percentile, "noise_floor_percentile", ConfigError)
    if not 0.0 <= p <= 100.0:
        raise ConfigError(f"noise_floor_percentile must be in [0, 100], got {percentile!r}")
    n = len(energies)
    if n == 0:
        raise AudioFormatError("noise_floor needs at least one frame")
    index = min(n - 1, math.floor((n - 1) * p / 100.0))
    return float(np.partition(np.asarray(energies, dtype=np.float64), index)[index])


def frame_decisions(
    sums: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    threshold_db: float,
    *,
    context_frames: int = 0,
    noise_floor_percentile: float | None = None,
    noise_floor_margin_db: float = 3.0,
) -> npt.NDArray[np.bool_]:
    """Speech decision per frame (step 5 of the module docstring).

    A frame is speech iff its decision energy ``d`` (``decision_energies``)
    exceeds ``10.0 ** (threshold_db / 10.0)`` and, with a noise floor, also
    ``noise_floor(d, noise_floor_percentile) * 10.0 ** (noise_floor_margin_db / 10.0)``.

    Args:
        sums: Per-frame sums of squares from ``frame_energies``.
        counts: Per-frame sample counts from ``frame_energies`` (all >= 1).
        threshold_db: Fixed threshold in dBFS (finite).
        context_frames: Neighbours on each side averaged into ``d``, >= 0.
        noise_floor_percentile: Percentile of ``d`` taken as the noise floor
            (0..100), or None for no adaptive threshold.
        noise_floor_margin_db: How far above the noise floor speech must be, dB
            (finite, >= 0).

    Returns:
        A boolean array, True for speech frames.

    Raises:
        AudioFormatError: A parameter is not finite or out of range.
    """
    energies = decision_energies(sums, counts, context_frames)
    level = decision_level(
        energies,
        threshold_db,
        noise_floor_percentile=noise_floor_percentile,
        noise_floor_margin_db=noise_floor_margin_db,
    )
    with np.errstate(all="ignore"):
        speech = energies > level
    return np.asarray(speech, dtype=np.bool_)


def decision_level(
    energies: npt.NDArray[np.float64],
    threshold_db: float,
    *,
    noise_floor_percentile: float | None = None,
    noise_floor_margin_db: float = 3.0,
) -> float:
    """The decision energy a frame must exceed to be speech (step 5), linear.

    ``10.0 ** (threshold_db / 10.0)``, or with a noise floor (and at least one
    frame) the larger of that and ``noise_floor(energies,
    noise_floor_percentile) * 10.0 ** (noise_floor_margin_db / 10.0)`` (0 for
    a floor of 0, even where the power overflows to inf): a frame is speech
    iff its decision energy is above both, that is above this level.
    The one owner of the level: :func:`frame_decisions` and the refine cascade
    (:mod:`remotemedia_ray.nodes._cascade`) both use it.

    Args:
        energies: Decision energies from :func:`decision_energies`.
        threshold_db: Fixed threshold in dBFS (finite).
        noise_floor_percentile: Percentile of ``energies`` taken as the noise
            floor (0..100), or None for no adaptive threshold.
        noise_floor_margin_db: How far above the noise floor speech must be, dB
            (finite, >= 0).

    Raises:
        ConfigError: A parameter is not finite or out of range (named).
    """
    level = _pow10(finite_float(threshold_db, "threshold_db", ConfigError) / 10.0)
    if noise_floor_percentile is not None and len(energies):
        margin = finite_float(noise_floor_margin_db, "noise_floor_margin_db", ConfigError)
        if margin < 0:
            raise ConfigError(f"noise_floor_margin_db must be >= 0, got {noise_floor_margin_db!r}")
        floor = noise_floor(energies, noise_floor_percentile)
        # A floor of 0 (digital silence) is 0 whatever the margin, also where
        # 10^(margin/10) overflows to inf (0 * inf would be NaN).
        adaptive = 0.0 if floor == 0.0 else floor * _pow10(margin / 10.0)
        level = max(level, adaptive)
    return level


def energy_confidence(energy_db: float, threshold_db: float) -> float:
    """A segment's confidence from its energy (step 7): ``clamp(1 - 10^(-(e - t)/10), 0, 1)``."""
    return min(1.0, max(0.0, 1.0 - _pow10(-(energy_db - threshold_db) / 10.0)))


def true_runs(flags: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    """The maximal runs of True as half-open ``(start, end)`` index pairs."""
    padded = np.concatenate(([False], flags, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return [(int(s), int(e)) for s, e in zip(edges[0::2], edges[1::2], strict=True)]


def smooth_decisions(
    speech: npt.ArrayLike,
    hangover_frames: int = 0,
    min_speech_frames: int = 0,
    min_silence_frames: int = 0,
) -> npt.NDArray[np.bool_]:
    """Smooth per-frame speech decisions (counts in frames; 0 turns a step off).

    In this order: (1) hangover: after each run of speech frames, up to
    ``hangover_frames`` following frames become speech (runs are those of the
    input, so hangover frames do not extend themselves); (2) every silence gap
    shorter than ``min_silence_frames`` between two speech runs becomes speech
    (leading and trailing silence stays); (3) every speech run shorter than
    ``min_speech_frames`` becomes silence.

    Args:
        speech: 1-D booleans, one per frame; not modified.
        hangover_frames: Frames of hangover, >= 0.
        min_speech_frames: Shortest speech run kept, >= 0.
        min_silence_frames: Shortest silence gap kept, >= 0.

    Returns:
        A new boolean array of the same length.

    Raises:
        AudioFormatError: ``speech`` is not 1-D or a count is negative.
    """
    out = np.array(speech, dtype=np.bool_, copy=True)
    if out.ndim != 1:
        raise AudioFormatError(f"speech decisions must be 1-D, got shape {out.shape}")
    for name, count in (
        ("hangover_frames", hangover_frames),
        ("min_speech_frames", min_speech_frames),
        ("min_silence_frames", min_silence_frames),
    ):
        if count < 0:
            raise AudioFormatError(f"{name} must be >= 0, got {count}")
    if hangover_frames > 0:
        for _, end in true_runs(out.copy()):
            out[end : end + hangover_frames] = True
    if min_silence_frames > 0:
        runs = true_runs(out)
        for (_, gap_start), (gap_end, _) in itertools.pairwise(runs):
            if gap_end - gap_start < min_silence_frames:
                out[gap_start:gap_end] = True
    if min_speech_frames > 0:
        for start, end in true_runs(out):
            if end - start < min_speech_frames:
                out[start:end] = False
    return out


def vad_frame_energies(
    samples: npt.NDArray[Any], frame_len: int, first_frame: int = 0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """``frame_energies`` of one frame-aligned piece of a stream, samples checked finite.

    A stream's energies are the concatenation of its pieces' energies when
    every piece but the last holds a whole number of frames, so
    :func:`vad_segments_from_energies` over them equals :func:`vad_segments`
    over the whole stream.

    Args:
        samples: 2-D audio ``(frames, channels)`` of float32/float64/int16/int32.
        frame_len: Time steps per frame, >= 1.
        first_frame: The stream frame (time step) of the piece's first frame;
            a non-finite sample is named by its frame in the stream.

    Raises:
        AudioFormatError: A NaN/inf sample (named), bad shape, dtype or ``frame_len``.
        MarshalingError: ``samples`` is not a numpy array.
    """
    audio_format(samples)
    if first_frame < 0:
        raise AudioFormatError(f"first_frame must be >= 0, got {first_frame}")
    check_finite(samples, first_frame=int(first_frame))
    return frame_energies(samples, frame_len)


def _checked(
    sample_rate: int, settings: VadSettings
) -> tuple[int, float, float, dict[str, int], float]:
    """Checked VAD settings: rate, threshold, frame ms, smoothing frame counts, margin."""
    if not isinstance(settings, VadSettings):
        raise ConfigError(f"settings must be a VadSettings, got {type(settings).__name__}")
    if (
        isinstance(sample_rate, (bool, np.bool_))
        or not isinstance(sample_rate, (int, np.integer))
        or sample_rate <= 0
    ):
        raise AudioFormatError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    s = settings
    threshold = finite_float(s.threshold_db, "threshold_db", ConfigError)
    frame_ms = finite_float(s.frame_length_ms, "frame_length_ms", ConfigError)
    if frame_ms <= 0:
        raise ConfigError(f"frame_length_ms must be > 0, got {s.frame_length_ms!r}")
    smoothing: dict[str, int] = {}
    for name in ("hangover_ms", "min_speech_ms", "min_silence_ms", "context_ms"):
        ms = getattr(s, name)
        value = finite_float(ms, name, ConfigError)
        if value < 0:
            raise ConfigError(f"{name} must be >= 0, got {ms!r}")
        smoothing[name] = smoothing_frames(value, frame_ms)
    if s.noise_floor_percentile is not None:
        percentile = finite_float(s.noise_floor_percentile, "noise_floor_percentile", ConfigError)
        if not 0.0 <= percentile <= 100.0:
            raise ConfigError(
                f"noise_floor_percentile must be in [0, 100], got {s.noise_floor_percentile!r}"
            )
    margin = finite_float(s.noise_floor_margin_db, "noise_floor_margin_db", ConfigError)
    if margin < 0:
        raise ConfigError(f"noise_floor_margin_db must be >= 0, got {s.noise_floor_margin_db!r}")
    return int(sample_rate), threshold, frame_ms, smoothing, margin


def vad_segments(
    samples: npt.NDArray[Any], sample_rate: int, settings: VadSettings = DEFAULT_SETTINGS
) -> list[dict[str, float]]:
    """Energy-based voice activity detection: speech segments in time order.

    See the module docstring for the exact steps (frame length, 8-lane energy,
    decision energy, fixed and adaptive threshold, smoothing, segment energy
    and confidence). The default settings are the plain detector: each
    frame's own energy against the fixed threshold, no smoothing.

    Args:
        samples: 2-D audio ``(frames, channels)`` of float32/float64/int16/int32.
        sample_rate: Samples per second, > 0.
        settings: The detector's settings (see :class:`VadSettings`).

    Returns:
        One ``{"start_ms", "end_ms", "energy_db", "confidence"}`` dict of floats
        per segment; ``[]`` for audio without samples.

    Raises:
        AudioFormatError: Bad shape or dtype, a NaN/inf sample, or a bad rate.
        ConfigError: An invalid setting (named).
        MarshalingError: ``samples`` is not a numpy array.
    """
    audio_format(samples)
    rate, _, frame_ms, _, _ = _checked(sample_rate, settings)
    if samples.size == 0:
        return []
    sums, counts = vad_frame_energies(samples, vad_frame_len(rate, frame_ms))
    return vad_segments_from_energies(sums, counts, samples.shape[0], sample_rate, settings)


def vad_segments_from_energies(
    sums: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    frames: int,
    sample_rate: int,
    settings: VadSettings = DEFAULT_SETTINGS,
) -> list[dict[str, float]]:
    """Speech segments of a whole input from its per-frame energies (steps 4 to 7).

    ``vad_segments(x, rate, settings)`` is ``vad_segments_from_energies(
    *vad_frame_energies(x, frame_len), len(x), rate, settings)``; a long
    input's energies can be gathered piece by piece with
    :func:`vad_frame_energies` (pieces of whole frames).

    Args:
        sums: Per-frame sums of squares, ``ceil(frames / frame_len)`` of them.
        counts: Per-frame sample counts (each >= 1), as many as ``sums``.
        frames: Time steps of the whole input.
        sample_rate: Samples per second, > 0.
        settings: As :func:`vad_segments`.

    Raises:
        AudioFormatError: Energies that do not describe ``frames`` time steps,
            or a bad rate.
        ConfigError: An invalid setting (named).
    """
    rate, threshold, frame_ms, smoothing, margin = _checked(sample_rate, settings)
    sums = np.asarray(sums, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64)
    frame_len = vad_frame_len(rate, frame_ms)
    n_time = int(frames)
    if n_time < 0 or sums.shape != counts.shape or sums.size != -(-n_time // frame_len):
        raise AudioFormatError(
            f"{sums.size} sums and {counts.size} counts do not describe {n_time} frames "
            f"in frames of {frame_len}"
        )
    if counts.size and int(counts.min()) < 1:
        raise AudioFormatError(f"frame {int(np.argmin(counts))} has a sample count below 1")
    if n_time == 0:
        return []
    speech = smooth_decisions(
        frame_decisions(
            sums,
            counts,
            threshold,
            context_frames=smoothing["context_ms"],
            noise_floor_percentile=settings.noise_floor_percentile,
            noise_floor_margin_db=margin,
        ),
        hangover_frames=smoothing["hangover_ms"],
        min_speech_frames=smoothing["min_speech_ms"],
        min_silence_frames=smoothing["min_silence_ms"],
    )
    segments: list[dict[str, float]] = []
    for first, last in true_runs(speech):
        seg_sum = 0.0
        for s in sums[first:last].tolist():
            seg_sum = seg_sum + s
        seg_count = int(counts[first:last].sum())
        energy_db = 10.0 * math.log10(seg_sum / seg_count) if seg_sum > 0.0 else -math.inf
        confidence = energy_confidence(energy_db, threshold)
        segments.append(
            {
                "start_ms": first * frame_len * 1000.0 / rate,
                "end_ms": min(last * frame_len, n_time) * 1000.0 / rate,
                "energy_db": energy_db,
                "confidence": confidence,
            }
        )
    return segments
