"""Channel mixing, ChannelMixNode (Rust: ``kernels/mix.rs``).

``mean``: ``acc = f64(ch0)``; ``acc = acc + f64(ch1)``; ... in channel
order; then ``acc = acc / channels`` (one division); then cast back like
``combine``. ``select``: the chosen column, unchanged. Result ``(frames, 1)``.
"""

from __future__ import annotations

import operator
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from remotemedia_ray.errors import AudioFormatError, ConfigError
from remotemedia_ray.nodes.reference._samples import audio_format, cast_back

__all__ = ["MixMode", "channel_mix"]

MixMode = Literal["mean", "select"]


def channel_mix(
    samples: npt.NDArray[Any], mode: MixMode = "mean", channel: int = 0
) -> npt.NDArray[Any]:
    """Downmix to mono, or pick one channel; the result has shape ``(frames, 1)``.

    ``mean``: sum the channels in f64 in channel order, divide once by the
    channel count, cast back like ``combine`` (f32 one rounding, ints rounded
    half-to-even and saturated). ``select``: a copy of column ``channel``.

    Args:
        samples: 2-D audio ``(frames, channels)`` of float32/float64/int16/int32.
        mode: ``"mean"`` or ``"select"``.
        channel: The column kept by ``select`` (0-based; negative is out of range).

    Returns:
        A new C-contiguous ``(frames, 1)`` array of the input's dtype.

    Raises:
        AudioFormatError: Bad shape or dtype, or no channels.
        MarshalingError: ``samples`` is not a numpy array.
        ConfigError: Unknown ``mode``, or ``channel`` out of range.
    """
    audio_format(samples)
    channels = samples.shape[1]
    if mode == "select":
        try:
            index = operator.index(channel)
        except TypeError:
            raise ConfigError(f"channel must be an integer, got {channel!r}") from None
        if isinstance(channel, (bool, np.bool_)) or not 0 <= index < channels:
            raise ConfigError(
                f"channel {channel!r} out of range for audio with {channels} channel(s)"
            )
        return samples[:, index : index + 1].copy(order="C")
    if mode != "mean":
        raise ConfigError(f"unknown mode {mode!r}; expected 'mean' or 'select'")
    if channels == 0:
        raise AudioFormatError("cannot mix audio with 0 channels")
    acc = samples[:, 0:1].astype(np.float64, order="C")
    with np.errstate(all="ignore"):
        for c in range(1, channels):
            np.add(acc, samples[:, c : c + 1], out=acc)
        acc /= float(channels)
    return cast_back(acc, samples.dtype)
