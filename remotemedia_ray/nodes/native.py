"""Access to the native extension ``remotemedia_ray._native``.

This is the only module that imports the extension; the rest of the package
asks it whether native code is available and gets the module from
:func:`native_module`. Importing this module never fails: when the extension
is missing (a source checkout that was not built, an unsupported platform),
:func:`native_available` is false and the numpy implementations are used.

A debug build of the extension is correct but slow, so importing this module
warns once (``RuntimeWarning``) when the extension was built without
``--release``; never benchmark such a build.

The resampler runs the fastest kernel the CPU has (AVX-512F, AVX2+FMA or
portable); :data:`RESAMPLE_KERNEL_ENV` set to one of :data:`RESAMPLE_KERNELS`
caps it there. Kernels round differently, by a few float32 ulps of the
output's peak, so a cluster of mixed CPUs is bit-identical only at a level
all its nodes have. Importing this module warns (``RuntimeWarning``) when
the variable holds anything else, which the extension would ignore.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import Any, Literal, TypeGuard, TypeVar

import numpy as np

from remotemedia_ray.audio import AudioBuffer, AudioFormat
from remotemedia_ray.errors import (
    AudioFormatError,
    ConfigError,
    MarshalingError,
    NodeExecutionError,
)
from remotemedia_ray.nodes import reference
from remotemedia_ray.nodes.reference.segment import DEFAULT_SEGMENTING, SegmentSettings
from remotemedia_ray.nodes.reference.vad import DEFAULT_SETTINGS, VadSettings
from remotemedia_ray.nodes.resampling import ResampleSettings

__all__ = [
    "NATIVE_NODES",
    "RESAMPLE_KERNELS",
    "RESAMPLE_KERNEL_ENV",
    "ChainValue",
    "NativeChain",
    "NativeKernels",
    "chain_link",
    "content_digest",
    "native_available",
    "native_build_profile",
    "native_module",
    "native_version",
]

RESAMPLE_KERNEL_ENV = "REMOTEMEDIA_RAY_RESAMPLE_KERNEL"
"""The environment variable that caps the native resampler's kernel."""

RESAMPLE_KERNELS = ("portable", "avx2", "avx512")
"""Its values, slowest first."""

_kernel_cap = os.environ.get(RESAMPLE_KERNEL_ENV, "")
if _kernel_cap and _kernel_cap not in RESAMPLE_KERNELS:  # empty: not set
    warnings.warn(
        f"{RESAMPLE_KERNEL_ENV}={_kernel_cap!r} is ignored: it takes one of "
        f"{', '.join(RESAMPLE_KERNELS)}",
        RuntimeWarning,
        stacklevel=2,
    )

try:
    from remotemedia_ray import _native
except ImportError as exc:  # not built, or built for another interpreter
    _IMPORT_ERROR: ImportError | None = exc
else:
    _IMPORT_ERROR = None
    if _native.build_profile != "release":
        warnings.warn(
            f"remotemedia_ray._native is a {_native.build_profile} build: native nodes "
            "will be slow. Do not benchmark a debug build; rebuild it with `make build` "
            "(maturin develop --release).",
            RuntimeWarning,
            stacklevel=2,
        )


def native_available() -> bool:
    """Whether the native extension was imported and its nodes can be used."""
    return _IMPORT_ERROR is None


def native_version() -> str | None:
    """The extension's version (the Cargo crate version), or None when it is unavailable."""
    return _native.__version__ if _IMPORT_ERROR is None else None


def native_build_profile() -> str | None:
    """``"release"`` or ``"debug"`` for the loaded extension, or None when it is unavailable."""
    return _native.build_profile if _IMPORT_ERROR is None else None


def native_module() -> Any:
    """Return the imported extension module.

    Raises:
        NodeExecutionError: The extension could not be imported; the message
            gives the import error, which is also the ``__cause__``.
    """
    if _IMPORT_ERROR is not None:
        raise NodeExecutionError(
            f"the native extension remotemedia_ray._native is not available: {_IMPORT_ERROR}"
        ) from _IMPORT_ERROR
    return _native


def content_digest() -> Any:
    """A new incremental XXH3-128 digest (``update(bytes)``, ``hexdigest()``).

    Raises:
        NodeExecutionError: The extension is not available.
    """
    return native_module().ContentDigest()


# -- the native kernel backend ------------------------------------------------------

S = TypeVar("S")

_AUDIO_DTYPES = frozenset(fmt.dtype for fmt in AudioFormat)


def _reads_in_place(samples: Any) -> TypeGuard[np.ndarray]:
    """Whether the extension can read this array as it is (2-D, audio dtype, C order, aligned)."""
    return (
        type(samples) is np.ndarray
        and samples.ndim == 2
        and samples.dtype in _AUDIO_DTYPES
        and samples.flags.c_contiguous
        and samples.flags.aligned
    )


def _kernel_input(samples: Any) -> np.ndarray:
    """2-D audio the extension can read in place.

    C-contiguous, aligned arrays (including read-only ones from Ray's object
    store) pass through untouched; other layouts are copied once.
    """
    if _reads_in_place(samples):
        return samples  # the common case
    if not isinstance(samples, np.ndarray):
        raise MarshalingError(f"samples must be a numpy array, got {type(samples).__name__}")
    if samples.ndim != 2:
        raise AudioFormatError(f"samples must be 2-D (frames, channels), got shape {samples.shape}")
    AudioFormat.from_dtype(samples.dtype)
    return np.require(samples, requirements=("C_CONTIGUOUS", "ALIGNED"))


class NativeKernels:
    """The Rust implementations: the rust_native runtime of the built-in nodes.

    Each method has the signature and the exact result of its counterpart in
    :mod:`~remotemedia_ray.nodes.reference` (bit-identical) or
    :mod:`~remotemedia_ray.nodes.resampling` (same quality specification).
    """

    @staticmethod
    def convert_format(samples: np.ndarray, target: AudioFormat | str) -> np.ndarray:
        """Converts ``(frames, channels)`` audio to ``target``."""
        fmt = target if type(target) is AudioFormat else AudioFormat(target)
        x = _kernel_input(samples)
        if x.dtype == fmt.dtype:
            reference.check_finite(x)
            return samples
        return native_module().convert_format(x, fmt.value)  # type: ignore[no-any-return]

    @staticmethod
    def combine(
        arrays: Sequence[np.ndarray], op: Literal["add", "multiply"], param: float
    ) -> np.ndarray:
        """Element-wise fan-in sum/product, then ``param`` (see reference.combine)."""
        if (
            len(arrays) == 1
            and type(param) is float
            and op in ("add", "multiply")
            and _reads_in_place(arrays[0])
        ):
            return native_module().combine([arrays[0]], op, param)  # type: ignore[no-any-return]
        if (
            not arrays
            or not all(isinstance(a, np.ndarray) for a in arrays)
            or arrays[0].dtype not in _AUDIO_DTYPES
            or arrays[0].dtype.byteorder == ">"
            or op not in ("add", "multiply")
            or isinstance(param, bool)
        ):
            return reference.combine(arrays, op, param)  # other dtypes: numpy does it
        shape = arrays[0].shape
        for a in arrays[1:]:
            if a.shape != shape or a.dtype != arrays[0].dtype:
                return reference.combine(arrays, op, param)  # raises the reference's error
        flat = [
            np.require(a, requirements=("C_CONTIGUOUS", "ALIGNED")).reshape(-1, 1) for a in arrays
        ]
        try:
            value = float(param)
        except (TypeError, ValueError, OverflowError):
            return reference.combine(arrays, op, param)
        out = native_module().combine(flat, op, value)
        return out.reshape(shape)  # type: ignore[no-any-return]

    combine_scalars = staticmethod(reference.combine_scalars)

    @staticmethod
    def channel_mix(
        samples: np.ndarray, mode: Literal["mean", "select"] = "mean", channel: int = 0
    ) -> np.ndarray:
        """Downmix to mono or keep one channel: ``(frames, 1)``."""
        x = _kernel_input(samples)
        if mode == "select" and not 0 <= channel < x.shape[1]:
            return reference.channel_mix(samples, mode, channel)  # raises, naming both
        if mode == "mean" and x.shape[1] == 0:
            return reference.channel_mix(samples, mode, channel)
        return native_module().channel_mix(x, mode, channel)  # type: ignore[no-any-return]

    @staticmethod
    def vad_segments(
        samples: np.ndarray, sample_rate: int, settings: VadSettings = DEFAULT_SETTINGS
    ) -> list[dict[str, float]]:
        """Speech segments (see reference.vad_segments)."""
        x = _kernel_input(samples)
        return native_module().vad_segments(  # type: ignore[no-any-return]
            x, _rate(sample_rate), _settings(settings, VadSettings)
        )

    @staticmethod
    def vad_frame_energies(
        samples: np.ndarray, frame_len: int, first_frame: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """One frame-aligned piece's energies (see reference.vad_frame_energies)."""
        return native_module().vad_frame_energies(  # type: ignore[no-any-return]
            _kernel_input(samples), int(frame_len), int(first_frame)
        )

    @staticmethod
    def vad_segments_from_energies(
        sums: np.ndarray,
        counts: np.ndarray,
        frames: int,
        sample_rate: int,
        settings: VadSettings = DEFAULT_SETTINGS,
    ) -> list[dict[str, float]]:
        """Segments from a whole input's energies (see reference.vad_segments_from_energies)."""
        return native_module().vad_segments_from_energies(  # type: ignore[no-any-return]
            np.ascontiguousarray(sums, dtype=np.float64),
            np.ascontiguousarray(counts, dtype=np.int64),
            int(frames),
            _rate(sample_rate),
            _settings(settings, VadSettings),
        )

    @staticmethod
    def segment_bounds(
        samples: np.ndarray,
        sample_rate: int,
        starts_ms: np.ndarray,
        ends_ms: np.ndarray,
        settings: SegmentSettings = DEFAULT_SEGMENTING,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Utterance clip bounds (see reference.segment_bounds)."""
        return native_module().segment_bounds(  # type: ignore[no-any-return]
            _kernel_input(samples),
            _rate(sample_rate),
            np.ascontiguousarray(starts_ms, dtype=np.float64).reshape(-1),
            np.ascontiguousarray(ends_ms, dtype=np.float64).reshape(-1),
            _settings(settings, SegmentSettings),
        )

    @staticmethod
    def resample(samples: np.ndarray, source_rate: int, settings: ResampleSettings) -> np.ndarray:
        """Band-limited resampling to ``settings.target_rate``; float32 output."""
        return native_module().resample(  # type: ignore[no-any-return]
            _kernel_input(samples), source_rate, _settings(settings, ResampleSettings)
        )

    @staticmethod
    def stream_resampler(source_rate: int, channels: int, settings: ResampleSettings) -> Any:
        """The Rust streaming resampler (``_native.Resampler``)."""
        return native_module().Resampler(
            source_rate, channels, _settings(settings, ResampleSettings)
        )


ChainValue = AudioBuffer | list[dict[str, float]]
"""What a chain link gives for one input: audio, or a VAD's segments."""


class NativeChain:
    """Native nodes' kernels run over a batch of inputs in one call (the fused chain).

    Args:
        links: Per node, in execution order: ``(kind, input, params)``, where
            ``(kind, params)`` is the node's :func:`chain_link` and ``input``
            the index of the link whose audio it reads, or -1 for the chain's
            input.
        keep: Per link, whether :meth:`run` returns its value.

    Each link calls the kernel its node calls alone, with the node's rules
    around it, so the values equal the node-by-node path bit for bit; the GIL
    is released once per batch and the buffers of the values not kept are
    reused from one input to the next.

    Raises:
        ConfigError: a link the extension does not know, or one reading a
            link that runs later or gives no audio (a VAD).
        TypeError, OverflowError: link params of the wrong type or range.
        NodeExecutionError: the extension is not available.
    """

    def __init__(self, links: Sequence[tuple[str, int, Any]], keep: Sequence[bool]) -> None:
        self._chain = native_module().Chain(list(links), [bool(k) for k in keep])

    @staticmethod
    def accepts(value: Any) -> bool:
        """Whether ``value`` can enter the chain: an AudioBuffer whose samples the
        extension reads in place (others go node by node)."""
        return type(value) is AudioBuffer and _reads_in_place(value.to_numpy_2d())

    def run(
        self, inputs: Sequence[AudioBuffer]
    ) -> list[tuple[list[ChainValue | None], list[float]] | None]:
        """Per input (each :meth:`accepts`): None when the chain cannot run it (a
        kernel refused it; run it node by node, for the error), else each link's
        value (None where not kept) and the milliseconds each link took."""
        raw = self._chain.run([(b.to_numpy_2d(), b.sample_rate) for b in inputs])
        results: list[tuple[list[ChainValue | None], list[float]] | None] = []
        for source, outcome in zip(inputs, raw, strict=True):
            if outcome is None:
                results.append(None)
                continue
            values, elapsed_ns = outcome
            made: dict[int, AudioBuffer] = {}  # links sharing their audio share the buffer
            out: list[ChainValue | None] = []
            for value in values:
                if value is None or type(value) is list:
                    out.append(value)
                elif type(value) is int:
                    out.append(source)  # -1: the input, passed on unchanged
                else:
                    key = id(value)
                    if key not in made:
                        made[key] = AudioBuffer.from_numpy(value[0], value[1])
                    out.append(made[key])
            results.append((out, [ns / 1e6 for ns in elapsed_ns]))
        return results


def chain_link(executor: object) -> tuple[str, Any] | None:
    """The :class:`NativeChain` link of a node: its ``chain_link()`` when it is a
    built-in node's native twin itself (not a subclass), else None."""
    cls = NATIVE_NODES.get(getattr(executor, "node_type", ""))
    if cls is None or type(executor) is not cls:
        return None
    link: tuple[str, Any] | None = executor.chain_link()  # type: ignore[attr-defined]
    return link


def _rate(sample_rate: object) -> int:
    """A sample rate as an int, refusing what is not an integer (as the reference does)."""
    if isinstance(sample_rate, (bool, np.bool_)) or not isinstance(sample_rate, (int, np.integer)):
        raise AudioFormatError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    return int(sample_rate)


def _settings(settings: object, kind: type[S]) -> S:
    """``settings``, refused (as the numpy kernels refuse it) unless it is a ``kind``."""
    if not isinstance(settings, kind):
        raise ConfigError(f"settings must be a {kind.__name__}, got {type(settings).__name__}")
    return settings


def _native_nodes() -> dict[str, type]:
    """The native twins of the built-in nodes (empty without the extension)."""
    if not native_available():
        return {}
    from remotemedia_ray.nodes.builtin import BUILTIN_NODES

    kernels = NativeKernels()
    classes: dict[str, type] = {}
    for name, cls in BUILTIN_NODES.items():
        twin_name = f"Native{cls.__name__}"
        twin = type(
            twin_name,
            (cls,),
            {
                "runtime": "rust_native",
                "kernels": kernels,
                "__module__": __name__,
                "__qualname__": twin_name,
                "__doc__": f"{cls.__doc__}\n\nRust implementation (rust_native runtime).",
            },
        )
        globals()[twin_name] = twin  # importable by name, so Ray can pickle it by reference
        classes[name] = twin
    return classes


NATIVE_NODES: dict[str, type] = _native_nodes()
"""The rust_native node classes by node type (empty when the extension is missing)."""
