"""Sample format conversion, FormatConverterNode (Rust: ``kernels/convert.rs``).

Float sources are checked finite first; then, per pair of formats:

- same format: the input itself is returned (no copy).
- f32/f64 -> i16/i32: ``round_saturate(f64(x) * scale)``.
- f32 -> f64: exact widening. f64 -> f32: one rounding to nearest-even
  (Rust ``as f32``); a finite value that becomes +-inf raises.
- i16/i32 -> f32/f64: ``f64(v) / scale`` (exact), then one cast to f32
  when the target is f32.
- i16 -> i32: ``i32(v) << 16``.  i32 -> i16: ``round_saturate(f64(v) / 65536)``.
Every int16 value survives i16 -> f32 -> i16 unchanged.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from remotemedia_ray.audio import AudioFormat
from remotemedia_ray.errors import AudioFormatError
from remotemedia_ray.nodes.reference._samples import (
    audio_format,
    check_finite,
    first_nonfinite,
    round_saturate,
)

__all__ = ["convert_format"]


def convert_format(samples: npt.NDArray[Any], target: AudioFormat) -> npt.NDArray[Any]:
    """Convert audio to another sample format (see the module docstring for the math).

    Float sources are checked for NaN/inf first, whatever the target. When the
    source already has the target format the input itself is returned, not a
    copy. Otherwise the result is a new C-contiguous array of the same shape.

    Args:
        samples: 2-D audio ``(frames, channels)`` of float32/float64/int16/int32.
        target: The format to convert to (an ``AudioFormat`` or its value, e.g. ``"i16"``).

    Returns:
        The converted audio.

    Raises:
        AudioFormatError: Bad shape or dtype, unknown target, a non-finite sample,
            or an f64 sample too large for f32 (all naming the sample's index).
        MarshalingError: ``samples`` is not a numpy array.
    """
    source = audio_format(samples)
    try:
        fmt = AudioFormat(target)
    except ValueError:
        raise AudioFormatError(
            f"unknown target format {target!r}; expected one of "
            f"{', '.join(f.value for f in AudioFormat)}"
        ) from None
    if source.is_float:
        check_finite(samples)
    if fmt is source:
        return samples
    if source.is_float and fmt.is_float:
        if fmt is AudioFormat.F64:
            return samples.astype(np.float64, order="C")
        with np.errstate(over="ignore"):
            out = samples.astype(np.float32, order="C")
        where = first_nonfinite(out)
        if where is not None:
            frame, channel = where
            raise AudioFormatError(
                f"sample {float(samples[frame, channel])!r} at index "
                f"{frame * samples.shape[1] + channel} (frame {frame}, channel {channel}) "
                "is too large for f32"
            )
        return out
    if source.is_float:  # float -> int
        acc = samples.astype(np.float64, order="C")
        with np.errstate(over="ignore"):
            acc *= float(2 ** (fmt.bits - 1))
        return round_saturate(acc, fmt.dtype)
    if fmt.is_float:  # int -> float
        acc = samples.astype(np.float64, order="C")
        acc /= float(2 ** (source.bits - 1))
        return acc.astype(fmt.dtype, copy=False)
    if fmt is AudioFormat.I32:  # i16 -> i32
        widened = samples.astype(np.int32, order="C")
        widened <<= 16
        return widened
    acc = samples.astype(np.float64, order="C")  # i32 -> i16
    acc /= 65536.0
    return round_saturate(acc, fmt.dtype)
