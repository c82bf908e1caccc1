"""The resampler's quality spec as tests measure it: rate pairs, test signals and
the measurements (fitted sine, residual, dB), shared by the numpy reference's
tests (tests/unit/test_resample_quality.py) and the native kernel's
(tests/native/test_resample_native.py)."""

from __future__ import annotations

import math

import numpy as np

SPEC_PAIRS = [(48000, 16000), (44100, 16000), (16000, 48000), (22050, 16000)]
"""The conversions the spec names."""
OTHER_PAIRS = [(16000, 16000), (8000, 16000), (16000, 44100), (96000, 48000)]
AMPLITUDE = 0.5
DURATION_S = 0.5
EDGE_S = 0.03
"""Dropped at each end of an output: longer than the filter's reach (< 10 ms)."""


def pair_id(pair: tuple[int, int]) -> str:
    return f"{pair[0]}to{pair[1]}"


def tone(freq: float, rate: int, seconds: float = DURATION_S, phase: float = 0.3) -> np.ndarray:
    """A float64 (frames, 1) sine of amplitude AMPLITUDE."""
    n = np.arange(round(seconds * rate))
    return (AMPLITUDE * np.sin(2 * np.pi * freq * n / rate + phase))[:, None]


def interior(y: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    """The mono output and its sample indices, without the edge transients."""
    edge = round(EDGE_S * rate)
    k = np.arange(edge, len(y) - edge)
    return y[edge : len(y) - edge, 0].astype(np.float64), k


def fit_sine(y: np.ndarray, freq: float, rate: int) -> tuple[float, np.ndarray]:
    """Least-squares amplitude of the sine at ``freq`` and the residual."""
    seg, k = interior(y, rate)
    w = 2 * np.pi * freq * k / rate
    basis = np.stack([np.sin(w), np.cos(w)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, seg, rcond=None)
    return float(np.hypot(*coef)), seg - basis @ coef


def db(ratio: float) -> float:
    return 20 * math.log10(max(ratio, 1e-300))


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))
