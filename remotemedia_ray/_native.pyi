"""Typed stub of the private extension module ``remotemedia_ray._native``.

Built from ``rust_ext/`` by maturin. Import it only through
``remotemedia_ray.nodes.native``. ``mypy.stubtest`` keeps this stub true.

Audio arguments are 2-D ``(frames, channels)`` C-contiguous, aligned numpy
arrays of float32, float64, int16 or int32 (read-only arrays are fine); they
are read in place. Results are new arrays whose memory numpy takes over from
Rust without a copy. Errors are ``remotemedia_ray.errors`` classes.
"""

from typing import Any, NoReturn, final

import numpy as np
import numpy.typing as npt

from remotemedia_ray.nodes.reference.segment import SegmentSettings
from remotemedia_ray.nodes.reference.vad import VadSettings
from remotemedia_ray.nodes.resampling import ResampleSettings

__all__ = [
    "Chain",
    "ContentDigest",
    "Resampler",
    "__version__",
    "build_profile",
    "channel_mix",
    "combine",
    "convert_format",
    "resample",
    "segment_bounds",
    "vad_frame_energies",
    "vad_segments",
    "vad_segments_from_energies",
]

__version__: str
"""The crate version (Cargo.toml), equal to the package version."""

build_profile: str
"""``"release"`` or ``"debug"``: the Cargo profile the extension was built with."""

@final
class Chain:
    """Native nodes' kernels run over a batch in one call (see
    ``remotemedia_ray.nodes.native.NativeChain``)."""

    def __new__(cls, links: list[tuple[str, int, Any]], keep: list[bool]) -> Chain: ...
    def run(
        self, inputs: list[tuple[npt.NDArray[Any], int]]
    ) -> list[tuple[list[Any], list[int]] | None]:
        """Per input: None (a link refused it) or (each link's value, its nanoseconds)."""

@final
class ContentDigest:
    """An incremental XXH3-128 digest of bytes: the resume key of an input file."""

    def __init__(self) -> None: ...
    def update(self, data: bytes | npt.NDArray[np.uint8]) -> None:
        """Adds ``data``, bytes or a contiguous uint8 array (any pieces give the digest
        of their concatenation)."""

    def hexdigest(self) -> str:
        """The digest of the bytes so far: 32 lowercase hex digits."""

def convert_format(samples_in: npt.NDArray[Any], target: str) -> npt.NDArray[Any]:
    """Converts audio to ``target`` ("f32", "f64", "i16" or "i32")."""

def combine(inputs: list[npt.NDArray[Any]], op: str, param: float) -> npt.NDArray[Any]:
    """Element-wise fan-in sum/product (``op`` "add"/"multiply"), then ``param``."""

def channel_mix(samples_in: npt.NDArray[Any], mode: str, channel: int = 0) -> npt.NDArray[Any]:
    """Downmix to mono ("mean") or keep one channel ("select"): ``(frames, 1)``."""

def vad_segments(
    samples_in: npt.NDArray[Any], sample_rate: int, settings: VadSettings
) -> list[dict[str, float]]:
    """Speech segments ``{start_ms, end_ms, energy_db, confidence}`` in time order.

    ``settings`` is read by attribute (its eight fields) and checked by the kernel.
    """

def vad_frame_energies(
    samples_in: npt.NDArray[Any], frame_len: int, first_frame: int = 0
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """Per-frame sums of squares and sample counts of a frame-aligned piece of a
    stream, after checking its samples are finite (a bad one is named by its
    frame in the stream, ``first_frame`` plus its frame in the piece)."""

def vad_segments_from_energies(
    sums: npt.NDArray[np.float64],
    counts: npt.NDArray[np.int64],
    frames: int,
    sample_rate: int,
    settings: VadSettings,
) -> list[dict[str, float]]:
    """Speech segments of a whole input of ``frames`` time steps from its energies."""

def segment_bounds(
    samples_in: npt.NDArray[Any],
    sample_rate: int,
    starts_ms: npt.NDArray[np.float64],
    ends_ms: npt.NDArray[np.float64],
    settings: SegmentSettings,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Utterance clips (start and end frames) of one input from its speech segments.

    ``settings`` is read by attribute and checked by the kernel.
    """

@final
class Resampler:
    """Streaming polyphase resampler (the Rust twin of
    ``remotemedia_ray.nodes.resampling.StreamingResampler``).

    ``np.concatenate([r.process(c) for c in chunks] + [r.flush()])`` equals
    ``resample(np.concatenate(chunks), ...)`` bit for bit, for any chunking.
    Only the inputs the next outputs need are kept. Calls release the GIL.
    It holds native stream state: it cannot be pickled or copied (create one
    inside each Ray worker).

    Raises:
        ConfigError: ``target_rate`` not an int in ``[1, 1536000]``, a
            reduced ratio with a term above 8192, or an unknown quality.
        AudioFormatError: ``source_rate`` not an int in ``[1, 1536000]``, or
            a channel count outside ``[1, 65536]`` (each named in the message).
        TypeError: ``settings`` lacks ``target_rate`` or a str ``quality``.
    """

    def __new__(cls, source_rate: int, channels: int, settings: ResampleSettings) -> Resampler: ...
    def process(self, chunk: npt.NDArray[Any]) -> npt.NDArray[np.float32]:
        """Feed the next ``(frames, channels)`` chunk; return the outputs now complete.

        ``chunk`` is float32, float64, int16 or int32 (integers scaled by
        ``1 / 2**(bits-1)``) and may have 0 frames; other layouts are copied.
        Returns float32 ``(n, channels)``, C-contiguous. Outputs are emitted
        as soon as the inputs they need have arrived (as the numpy stream).

        Raises:
            AudioFormatError: After ``flush()``; a chunk that is not a 2-D
                array of a supported dtype with ``channels`` columns; a NaN or
                infinite sample (named by its frame within the stream and its
                channel), or a float64 beyond the float32 range. A rejected
                chunk leaves the stream unchanged.
        """

    def flush(self) -> npt.NDArray[np.float32]:
        """End the stream (zeros after it); return the last outputs ``(n, channels)``.

        Later calls return no frames; ``process`` raises.
        """

    @property
    def source_rate(self) -> int:
        """The input sample rate in Hz."""

    @property
    def target_rate(self) -> int:
        """The output sample rate in Hz."""

    @property
    def channels(self) -> int:
        """The number of channels of every chunk."""

    @property
    def quality(self) -> str:
        """The quality name: "low", "medium", "high" or "very_high"."""

    @property
    def frames_in(self) -> int:
        """Input frames received so far."""

    @property
    def frames_out(self) -> int:
        """Output frames emitted so far."""

    def __reduce__(self) -> NoReturn:
        """Raises TypeError: a Resampler cannot be pickled or copied."""

def resample(
    samples: npt.NDArray[Any], source_rate: int, settings: ResampleSettings
) -> npt.NDArray[np.float32]:
    """Resample ``(frames, channels)`` audio from ``source_rate`` to ``settings.target_rate`` Hz.

    ``samples`` is float32, float64, int16 or int32 (integers scaled by
    ``1 / 2**(bits-1)``); other layouts are copied. ``settings.quality`` is
    "low", "medium", "high" or "very_high". Returns float32
    ``((2*frames*target_rate + source_rate) // (2*source_rate), channels)``,
    C-contiguous, time-aligned with the input (no delay); equal rates return
    the input as float32. Meets the same specification as
    ``remotemedia_ray.nodes.resampling.resample`` (and agrees with it to ~5e-7).

    Raises:
        ConfigError: A bad ``target_rate``, ratio or quality (named).
        AudioFormatError: A bad ``source_rate``, a malformed array, a NaN or
            infinite sample (its frame and channel named), or a float64
            beyond the float32 range.
        TypeError: ``settings`` lacks ``target_rate`` or a str ``quality``.
    """
