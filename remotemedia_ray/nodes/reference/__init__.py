"""Reference numpy kernels of the built-in audio nodes: the arithmetic contract.

These kernels define, step by step, what FormatConverter, Multiply/Add,
ChannelMix and VAD compute. The Rust kernels must give BIT-IDENTICAL results,
so every step below is a fixed sequence of IEEE-754 binary64 (f64) or binary32
(f32) operations in round-to-nearest-even, with no reassociation, no fused
multiply-add and no pairwise/BLAS summation. Nothing here writes into its input.

Audio is a 2-D array ``(frames, channels)`` of float32, float64, int16 or int32,
C-contiguous or not, possibly read-only. Unless a function says otherwise the
result is a new C-contiguous array. ``bits`` is 16 for int16 and 32 for int32;
``scale = 2^(bits-1)`` (32768 or 2147483648), a power of two, so multiplying or
dividing by it is exact in f64. Python ``float`` arithmetic is f64 arithmetic.

One module per kernel, as in ``rust_ext/src/kernels/``, each documenting its
steps: :mod:`.convert` (``convert_format``), :mod:`.arith` (``combine``,
``multiply``, ``add``), :mod:`.mix` (``channel_mix``), :mod:`.vad`
(``vad_segments`` and its steps) and :mod:`.segment` (``segment_bounds``).
The rules they share (``round_saturate``, non-finite samples) are in ``_samples``.
"""

from remotemedia_ray.nodes.reference._samples import check_finite, first_nonfinite
from remotemedia_ray.nodes.reference.arith import CombineOp as CombineOp
from remotemedia_ray.nodes.reference.arith import add, combine, combine_scalars, multiply
from remotemedia_ray.nodes.reference.convert import convert_format
from remotemedia_ray.nodes.reference.mix import MixMode as MixMode
from remotemedia_ray.nodes.reference.mix import channel_mix
from remotemedia_ray.nodes.reference.segment import SegmentSettings, segment_bounds
from remotemedia_ray.nodes.reference.vad import (
    VadSettings,
    decision_energies,
    decision_level,
    energy_confidence,
    frame_decisions,
    frame_energies,
    noise_floor,
    smooth_decisions,
    smoothing_frames,
    true_runs,
    vad_frame_energies,
    vad_frame_len,
    vad_segments,
    vad_segments_from_energies,
)

__all__ = [
    "SegmentSettings",
    "VadSettings",
    "add",
    "channel_mix",
    "check_finite",
    "combine",
    "combine_scalars",
    "convert_format",
    "decision_energies",
    "decision_level",
    "energy_confidence",
    "first_nonfinite",
    "frame_decisions",
    "frame_energies",
    "multiply",
    "noise_floor",
    "segment_bounds",
    "smooth_decisions",
    "smoothing_frames",
    "true_runs",
    "vad_frame_energies",
    "vad_frame_len",
    "vad_segments",
    "vad_segments_from_energies",
]
