"""Typed stub of the private extension module ``remotemedia_ray._native``.

Built from ``rust_ext/`` by maturin. Import it only through
``remotemedia_ray.nodes.native``. ``mypy.stubtest`` keeps this stub true.

Audio arguments are 2-D ``(frames, channels)`` C-contiguous, aligned numpy
arrays of float32, float64, int16 or int32 (read-only arrays are fine); they
are read in place. Results are new arrays whose memory numpy takes over from
Rust without a copy. Errors are ``remotemedia_ray.errors`` classes.
"""

from typing import Any

import numpy.typing as npt

__all__ = [
    "__version__",
    "build_profile",
    "channel_mix",
    "combine",
    "convert_format",
    "input_address",
    "panic_in_kernel",
    "vad_segments",
]

__version__: str
"""The crate version (Cargo.toml), equal to the package version."""

build_profile: str
"""``"release"`` or ``"debug"``: the Cargo profile the extension was built with."""

def convert_format(samples_in: npt.NDArray[Any], target: str) -> npt.NDArray[Any]:
    """Converts audio to ``target`` ("f32", "f64", "i16" or "i32")."""

def combine(inputs: list[npt.NDArray[Any]], op: str, param: float) -> npt.NDArray[Any]:
    """Element-wise fan-in sum/product (``op`` "add"/"multiply"), then ``param``."""

def channel_mix(samples_in: npt.NDArray[Any], mode: str, channel: int = 0) -> npt.NDArray[Any]:
    """Downmix to mono ("mean") or keep one channel ("select"): ``(frames, 1)``."""

def vad_segments(
    samples_in: npt.NDArray[Any],
    sample_rate: int,
    threshold_db: float = ...,  # -30.0 (pyo3 cannot show a negative default)
    frame_length_ms: float = 30.0,
    hangover_ms: float = 0.0,
    min_speech_ms: float = 0.0,
    min_silence_ms: float = 0.0,
) -> list[dict[str, float]]:
    """Speech segments ``{start_ms, end_ms, energy_db, confidence}`` in time order."""

def input_address(samples_in: npt.NDArray[Any]) -> int:
    """Test hook: the address of the memory a kernel reads for this array."""

def panic_in_kernel() -> None:
    """Test hook: panics inside a kernel; raises NodeExecutionError."""
