"""Rules every reference kernel shares (Rust: ``kernels/mod.rs``).

Rounding and saturating f64 to an integer dtype (``round_saturate``)
    ``r = round_half_even(x)`` (numpy ``rint``; Rust ``f64::round_ties_even``);
    NaN -> 0; ``r < min`` -> ``min``; ``r > max`` -> ``max``; else ``r`` exactly.
    Here ``min``/``max`` are the integer dtype's bounds. This is exactly Rust's
    saturating ``r as iN`` / ``r as uN``. (For int64/uint64, ``max`` is not an
    f64; in-range values are ``r <= H`` with ``H`` the largest f64 not
    exceeding ``max``, i.e. 2^63 - 1024 or 2^64 - 2048, and every ``r > H``
    (that is ``r >= 2^63`` or ``r >= 2^64``) becomes exactly ``max``.)

Non-finite samples (``first_nonfinite``, ``check_finite``)
    The first NaN/+inf/-inf in row-major order (frame, then channel) is named by
    its flat index ``frame * channels + channel``, its frame and its channel.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from remotemedia_ray.audio import AudioFormat
from remotemedia_ray.errors import AudioFormatError, MarshalingError

__all__ = [
    "audio_format",
    "cast_back",
    "check_finite",
    "finite_float",
    "first_nonfinite",
    "require_2d",
    "round_saturate",
]


def require_2d(samples: object) -> None:
    """Raise unless ``samples`` is a 2-D numpy array."""
    if not isinstance(samples, np.ndarray):
        raise MarshalingError(f"samples must be a numpy array, got {type(samples).__name__}")
    if samples.ndim != 2:
        raise AudioFormatError(f"samples must be 2-D (frames, channels), got shape {samples.shape}")


def audio_format(samples: npt.NDArray[Any]) -> AudioFormat:
    """The format of 2-D audio, or AudioFormatError/MarshalingError saying why not."""
    require_2d(samples)
    return AudioFormat.from_dtype(samples.dtype)


def finite_float(value: object, name: str, error: type[Exception]) -> float:
    """``value`` as a finite Python float, else ``error`` naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise error(f"{name} must be a finite number, got {type(value).__name__} {value!r}")
    try:
        result = float(value)
    except OverflowError:
        result = math.inf
    if not math.isfinite(result):
        raise error(f"{name} must be a finite number, got {value!r}")
    return result


def _upper_f64(info: np.iinfo[Any]) -> float:
    """The largest f64 not exceeding ``info.max``."""
    hi = float(info.max)
    if int(hi) > info.max:
        hi = math.nextafter(hi, 0.0)
    return hi


def round_saturate(acc: npt.NDArray[np.float64], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """Round f64 half-to-even, NaN -> 0, saturate to ``dtype``'s range (see module doc).

    ``acc`` is consumed (overwritten) to save a copy.
    """
    info = np.iinfo(dtype)
    hi = _upper_f64(info)
    np.rint(acc, out=acc)
    acc[np.isnan(acc)] = 0.0
    above = acc > hi
    np.clip(acc, float(info.min), hi, out=acc)
    out = acc.astype(dtype)
    out[above] = info.max
    return out


def cast_back(acc: npt.NDArray[np.float64], dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """Cast an f64 accumulator to ``dtype``: f64 as is, f32 one rounding, ints round_saturate."""
    if dtype.kind == "f":
        if dtype.itemsize == 8:
            return acc.astype(dtype, copy=False)
        with np.errstate(over="ignore"):
            return acc.astype(dtype)
    return round_saturate(acc, dtype)


def first_nonfinite(samples: npt.NDArray[Any]) -> tuple[int, int] | None:
    """Find the first NaN or infinite sample in row-major (frame, then channel) order.

    Args:
        samples: 2-D audio ``(frames, channels)``; integer audio is always finite.

    Returns:
        ``(frame, channel)`` of the first non-finite sample, or None if all are finite.

    Raises:
        AudioFormatError: ``samples`` is not 2-D.
        MarshalingError: ``samples`` is not a numpy array.
    """
    require_2d(samples)
    if samples.dtype.kind != "f" or samples.size == 0:
        return None
    bad = ~np.isfinite(samples)
    if not bad.any():
        return None
    flat = int(np.argmax(bad))  # argmax flattens in C (row-major) order
    frame, channel = divmod(flat, samples.shape[1])
    return frame, channel


def check_finite(samples: npt.NDArray[Any], what: str = "sample", *, first_frame: int = 0) -> None:
    """Raise if any sample is NaN or infinite, naming the first one.

    Args:
        samples: 2-D audio ``(frames, channels)``.
        what: The word used for one element in the message.
        first_frame: The frame number of ``samples``' first frame (a piece of
            a stream is named by its position in the stream).

    Raises:
        AudioFormatError: e.g. ``non-finite sample (nan) at index 123 (frame 61,
            channel 1)``; the index is the flat row-major index.
    """
    where = first_nonfinite(samples)
    if where is None:
        return
    frame, channel = where
    value = float(samples[frame, channel])
    kind = "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    frame += first_frame
    index = frame * samples.shape[1] + channel
    raise AudioFormatError(
        f"non-finite {what} ({kind}) at index {index} (frame {frame}, channel {channel})"
    )
