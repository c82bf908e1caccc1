"""The built-in nodes, numpy (cpython) implementations.

These are the reference semantics (the README lists the nodes); the native twins in
:mod:`remotemedia_ray.nodes.native` must give the same answers. The numeric
work lives in :mod:`~remotemedia_ray.nodes.reference` and
:mod:`~remotemedia_ray.nodes.resampling`; the classes here validate
parameters and marshal inputs and outputs.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from remotemedia_ray.audio import AudioBuffer, AudioFormat, Clip, Clips
from remotemedia_ray.errors import (
    AudioFormatError,
    MarshalingError,
    NodeExecutionError,
    RemoteMediaError,
)
from remotemedia_ray.nodes import reference, resampling
from remotemedia_ray.nodes._cascade import CascadeSettings, cascade_many
from remotemedia_ray.nodes._silero_model import (
    SileroModel,
    load_model,
    missing_extra,
    model_input,
    window_samples,
)
from remotemedia_ray.nodes.base import (
    Capability,
    ChunkStream,
    MapChunks,
    NodeExecutor,
    parse_params,
)
from remotemedia_ray.nodes.reference import SegmentSettings, VadSettings
from remotemedia_ray.nodes.resampling import ResampleSettings
from remotemedia_ray.nodes.speech_timestamps import SpeechParams, speech_segments

__all__ = [
    "BUILTIN_NODES",
    "AddNode",
    "ChannelMixNode",
    "FormatConverterNode",
    "KernelBackend",
    "MultiplyNode",
    "ReferenceKernels",
    "ResampleNode",
    "SegmentNode",
    "VADNode",
]

_AUDIO = frozenset({Capability.AUDIO, Capability.CPU})


class KernelBackend(Protocol):
    """The numeric work of the built-in nodes; one backend per runtime.

    Every backend computes exactly what :mod:`~remotemedia_ray.nodes.reference`
    and :mod:`~remotemedia_ray.nodes.resampling` specify.
    """

    def convert_format(self, samples: np.ndarray, target: AudioFormat) -> np.ndarray:
        """FormatConverterNode's conversion."""

    def combine(
        self, arrays: Sequence[np.ndarray], op: Literal["add", "multiply"], param: float
    ) -> np.ndarray:
        """MultiplyNode/AddNode on arrays."""

    def combine_scalars(
        self, values: Sequence[float], op: Literal["add", "multiply"], param: float
    ) -> float:
        """MultiplyNode/AddNode on numbers."""

    def channel_mix(
        self, samples: np.ndarray, mode: Literal["mean", "select"] = ..., channel: int = ...
    ) -> np.ndarray:
        """ChannelMixNode."""

    def vad_segments(
        self, samples: np.ndarray, sample_rate: int, settings: VadSettings = ...
    ) -> list[dict[str, float]]:
        """VADNode."""

    def vad_frame_energies(
        self, samples: np.ndarray, frame_len: int, first_frame: int = ...
    ) -> tuple[np.ndarray, np.ndarray]:
        """VADNode on a long input: one frame-aligned piece's energies."""

    def vad_segments_from_energies(
        self,
        sums: np.ndarray,
        counts: np.ndarray,
        frames: int,
        sample_rate: int,
        settings: VadSettings = ...,
    ) -> list[dict[str, float]]:
        """VADNode on a long input: the segments from all its energies."""

    def resample(
        self, samples: np.ndarray, source_rate: int, settings: ResampleSettings
    ) -> np.ndarray:
        """ResampleNode."""

    def segment_bounds(
        self,
        samples: np.ndarray,
        sample_rate: int,
        starts_ms: np.ndarray,
        ends_ms: np.ndarray,
        settings: SegmentSettings,
    ) -> tuple[np.ndarray, np.ndarray]:
        """SegmentNode: the clips' start and end frames."""

    def stream_resampler(
        self, source_rate: int, channels: int, settings: ResampleSettings
    ) -> resampling.ChunkResampler:
        """ResampleNode on a long input: a resampler fed chunk by chunk."""


class ReferenceKernels:
    """The numpy implementations: the cpython runtime of the built-in nodes."""

    convert_format = staticmethod(reference.convert_format)
    combine = staticmethod(reference.combine)
    combine_scalars = staticmethod(reference.combine_scalars)
    channel_mix = staticmethod(reference.channel_mix)
    vad_segments = staticmethod(reference.vad_segments)
    vad_frame_energies = staticmethod(reference.vad_frame_energies)
    vad_segments_from_energies = staticmethod(reference.vad_segments_from_energies)
    resample = staticmethod(resampling.resample)
    stream_resampler = resampling.StreamingResampler
    segment_bounds = staticmethod(reference.segment_bounds)


class _Params(BaseModel):
    # strict: params follow their JSON types ("16000" is not a number, true not an int)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class VADParams(_Params):
    """Parameters of :class:`VADNode`."""

    threshold: float = Field(default=-30.0, le=0, ge=-200, description="Speech threshold, dBFS.")
    frame_length_ms: float = Field(default=30.0, gt=0, le=1000, description="Frame length, ms.")
    sample_rate: int | None = Field(
        default=None, gt=0, le=1_536_000, description="Expected input rate (checked if given)."
    )
    hangover_ms: float = Field(
        default=0.0, ge=0, le=60_000, description="Keep speech on this long after it stops."
    )
    min_speech_ms: float = Field(
        default=0.0, ge=0, le=60_000, description="Drop speech segments shorter than this."
    )
    min_silence_ms: float = Field(
        default=0.0, ge=0, le=60_000, description="Bridge silences shorter than this."
    )
    context_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="Average each frame's energy with its neighbours this far on each side "
        "before deciding, ms (0 = off).",
    )
    noise_floor_percentile: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="Adaptive threshold: this percentile of the input's frame energies is "
        "its noise floor, and speech must also exceed floor + noise_floor_margin_db "
        "(null = off; the input needs some non-speech).",
    )
    noise_floor_margin_db: float = Field(
        default=3.0, ge=0, le=60, description="Margin above the noise floor, dB."
    )
    refine: Literal["silero"] | None = Field(
        default=None,
        description="silero: the energy VAD decides the windows it is sure of and the Silero "
        "model scores the rest (needs the silero extra); null: energy only.",
    )
    refine_silence_db: float = Field(
        default=1.5,
        ge=0,
        le=120,
        description="With refine: a window outside the energy VAD's speech more than this "
        "below its decision level is silence without the model, dB.",
    )
    refine_speech_db: float = Field(
        default=6.0,
        ge=0,
        le=120,
        description="With refine: a speech run of the energy VAD whose loudest window is more "
        "than this above its decision level is sure speech: the model reads it from its "
        "start only until it finds speech there (what it read for more than 320 ms first "
        "it reads again), dB.",
    )
    refine_edge_ms: float = Field(
        default=32.0,
        ge=0,
        le=10_000,
        description="With refine: the model decides this much audio on each side of where "
        "the energy VAD's speech starts and after where it ends, ms.",
    )
    refine_bridge_ms: float = Field(
        default=320.0,
        ge=0,
        le=10_000,
        description="With refine: energy speech runs closer than this count as one, ms.",
    )
    refine_context_ms: float = Field(
        default=320.0,
        ge=0,
        le=60_000,
        description="With refine: audio the model runs before each stretch it decides "
        "(pauses, weak runs, quiet stretches near the level), ms; run edges get 96 ms, "
        "second readings 1024 ms, and in a file with audible noise, where the model first "
        "reads the file's loudest speech and the stretches after its first speech start "
        "from its state then, those get 160 ms.",
    )
    silero: SpeechParams = Field(
        default_factory=SpeechParams,
        description="With refine: Silero's segmenting parameters (threshold, neg_threshold, "
        "min_speech_duration_ms, min_silence_duration_ms, speech_pad_ms).",
    )

    @model_validator(mode="after")
    def _refine_needs(self) -> VADParams:
        if self.refine is None:
            if "silero" in self.model_fields_set:
                raise ValueError("silero params apply only with refine: 'silero'")
            return self
        smoothing = [
            name
            for name in ("hangover_ms", "min_speech_ms", "min_silence_ms")
            if getattr(self, name)
        ]
        if smoothing:
            raise ValueError(
                "with refine 'silero' the segments follow Silero's rule: set "
                "min_speech_duration_ms, min_silence_duration_ms and speech_pad_ms under "
                f"'silero' instead of {', '.join(smoothing)}"
            )
        if "frame_length_ms" in self.model_fields_set:
            raise ValueError(
                "with refine 'silero' the energy VAD's frames are the model's windows "
                "(32 ms: 512 samples at 16 kHz, 256 at 8 kHz): remove frame_length_ms"
            )
        return self

    @field_validator("refine")
    @classmethod
    def _refine_installed(cls, refine: str | None) -> str | None:
        missing = missing_extra() if refine is not None else None
        if missing is not None:
            raise ValueError(f"'silero' needs the silero extra, which is missing: {missing}")
        return refine

    def settings(self) -> VadSettings:
        """The kernels' settings (``threshold`` is their ``threshold_db``)."""
        fields = self.model_dump(
            include={
                "frame_length_ms",
                "hangover_ms",
                "min_speech_ms",
                "min_silence_ms",
                "context_ms",
                "noise_floor_percentile",
                "noise_floor_margin_db",
            }
        )
        return VadSettings(threshold_db=self.threshold, **fields)

    def cascade(self) -> CascadeSettings:
        """The settings of the refine cascade."""
        return CascadeSettings(
            energy=self.settings(),
            speech=self.silero.speech_settings(),
            silence_db=self.refine_silence_db,
            speech_db=self.refine_speech_db,
            edge_ms=self.refine_edge_ms,
            bridge_ms=self.refine_bridge_ms,
            context_ms=self.refine_context_ms,
        )


class ResampleParams(_Params):
    """Parameters of :class:`ResampleNode`."""

    target_rate: int = Field(default=16000, gt=0, le=1_536_000, description="Output rate, Hz.")
    quality: Literal["low", "medium", "high", "very_high"] = Field(
        default="high", description="Filter quality preset."
    )

    def settings(self) -> ResampleSettings:
        """The resamplers' settings."""
        return ResampleSettings(**self.model_dump())


class SegmentParams(_Params):
    """Parameters of :class:`SegmentNode`."""

    merge_gap_ms: float = Field(
        default=300.0, ge=0, le=60_000, description="Speech closer than this is one utterance."
    )
    pad_ms: float = Field(
        default=100.0, ge=0, le=10_000, description="Context added before and after each."
    )
    min_s: float = Field(
        default=1.0, ge=0, le=3600, description="Utterances shorter than this are dropped/merged."
    )
    max_s: float = Field(
        default=20.0, gt=0, le=3600, description="Longer ones are split at their quietest frame."
    )
    short: Literal["drop", "merge"] = Field(
        default="drop", description="drop short utterances, or merge them into a neighbour."
    )
    split_frame_ms: float = Field(
        default=20.0, gt=0, le=1000, description="Frame in which the quietest point is sought."
    )

    @model_validator(mode="after")
    def _min_below_max(self) -> SegmentParams:
        if self.min_s > self.max_s:
            raise ValueError(f"min_s ({self.min_s}) must not exceed max_s ({self.max_s})")
        return self

    def settings(self) -> SegmentSettings:
        """The kernels' settings."""
        return SegmentSettings(**self.model_dump())


class FormatConverterParams(_Params):
    """Parameters of :class:`FormatConverterNode`."""

    target_format: AudioFormat = Field(
        default=AudioFormat.F32, strict=False, description="Output format: f32, i16, i32 or f64."
    )


class MultiplyParams(_Params):
    """Parameters of :class:`MultiplyNode`."""

    factor: float = Field(default=2.0, description="Multiplier applied after any fan-in product.")


class AddParams(_Params):
    """Parameters of :class:`AddNode`."""

    addend: float = Field(default=0.0, description="Added after any fan-in sum.")


class ChannelMixParams(_Params):
    """Parameters of :class:`ChannelMixNode`."""

    mode: Literal["mean", "select"] = Field(
        default="mean", description="mean: downmix to mono; select: keep one channel."
    )
    channel: int = Field(default=0, ge=0, le=1023, description="Channel kept by mode=select.")


class _BuiltinNode(NodeExecutor):
    """A built-in node: its numeric work goes through ``kernels``."""

    kernels: ClassVar[KernelBackend] = ReferenceKernels()
    capabilities: ClassVar[frozenset[Capability]] = _AUDIO

    def chain_link(self) -> tuple[str, Any] | None:
        """What :meth:`execute` computes on one AudioBuffer, as a link of the fused
        native chain (:class:`remotemedia_ray.nodes.native.NativeChain`): ``(kind,
        params)``, or None when it is not one kernel call on its one audio input."""
        return None


class _AudioNode(_BuiltinNode):
    """A node taking exactly one AudioBuffer input."""

    inputs: ClassVar[tuple[int, int | None]] = (1, 1)
    params: Any

    def _audio(self, value: Any) -> AudioBuffer:
        if type(value) is AudioBuffer or isinstance(value, AudioBuffer):
            return value
        if isinstance(value, dict):
            raise MarshalingError(
                f"{self._label()} takes one audio input but received {len(value)} "
                f"(from {', '.join(map(repr, value))}); only AddNode/MultiplyNode merge inputs"
            )
        raise MarshalingError(f"{self._label()} takes an AudioBuffer, got {type(value).__name__}")

    def _check_rate(self, audio: AudioBuffer) -> None:
        """Refuse audio whose rate is not ``params.sample_rate`` (when the node has one)."""
        expected = getattr(self.params, "sample_rate", None)
        if expected is not None and expected != audio.sample_rate:
            raise AudioFormatError(
                f"{self._label()}: input is {audio.sample_rate} Hz but params.sample_rate "
                f"is {expected}"
            )


class VADNode(_AudioNode):
    """Energy voice activity detection: a list of speech segments.

    Each segment is ``{start_ms, end_ms, energy_db, confidence}``; see
    :func:`remotemedia_ray.nodes.reference.vad_segments` for the exact rules.
    The defaults are the plain detector (each frame against ``threshold``).
    For speech in unknown noise, turn on the adaptive noise floor and the
    energy context; ``examples/speech_prep.json`` has the settings that
    ``benchmarks/vad_accuracy.py`` measures.

    With ``refine: "silero"`` (the silero extra) the energy VAD decides only
    the audio it is sure of and the Silero model the rest (see
    :mod:`remotemedia_ray.nodes._cascade`); the segments then follow Silero's
    rule (params under ``silero``), ``confidence`` is the mean speech
    probability of the segment's windows that the model scored (the energy
    confidence above when it scored none of them), and :attr:`refined_share`
    tells how much audio the model ran. ``frame_length_ms`` and the energy
    smoothing params are refused with refine: the frames are the model's
    32 ms windows and the segments follow Silero's rule. With refine,
    :attr:`execute_many` takes several inputs and runs the model over all of
    them at once (the dataset job hands it each batch).
    """

    Params = VADParams
    settings: VadSettings
    model: SileroModel | None = None
    windows = 0
    """With refine: model windows of the audio seen so far."""
    refined_windows = 0
    """With refine: the windows the model ran for them (uncertain ones, their context,
    what it read of sure speech and read again; more than ``windows`` where it scored a
    file whole after a first run)."""
    execute_many: Callable[[Sequence[Any]], list[list[dict[str, float]]]] | None = None
    """With refine: the segments of several inputs, the model batched over all of them
    (equal to ``[execute(x) for x in inputs]``); None otherwise (one input at a time)."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        self.params = parse_params(VADParams, params, node=self.node_id)
        self.settings = self.params.settings()
        if self.params.refine == "silero":
            self.cascade = self.params.cascade()
            self.speech = self.params.silero.speech_settings()
            self.model = load_model()
            self.execute_many = self._refined_many

    def chain_link(self) -> tuple[str, Any] | None:
        """The energy VAD: ``("vad", (settings, params.sample_rate))``; with a model, None."""
        if self.model is not None:
            return None
        return "vad", (self.settings, self.params.sample_rate)

    def execute(self, input: Any) -> list[dict[str, float]]:
        audio = self._audio(input)
        self._check_rate(audio)
        if self.model is not None:
            return self._refined(audio)
        return self.kernels.vad_segments(audio.to_numpy_2d(), audio.sample_rate, self.settings)

    @property
    def refined_share(self) -> float:
        """With refine: the model's windows run over the audio's windows (0 before any;
        above 1 where it scored files whole after a first run)."""
        return self.refined_windows / self.windows if self.windows else 0.0

    def _refined(self, audio: AudioBuffer) -> list[dict[str, float]]:
        """The cascade: the energy VAD where it is sure, the Silero model elsewhere."""
        x = audio.to_numpy_2d()
        return self._cascade([audio], [x], [model_input(x, audio.sample_rate, self.kernels)])[0]

    def _refined_many(self, inputs: Sequence[Any]) -> list[list[dict[str, float]]]:
        """The cascade over several inputs, the model batched; an error names the node
        and the input's index in ``inputs``."""
        audio, samples, prepared = [], [], []
        try:
            for i, value in enumerate(inputs):
                try:
                    buffer = self._audio(value)
                    self._check_rate(buffer)
                    x = buffer.to_numpy_2d()
                    prepared.append(model_input(x, buffer.sample_rate, self.kernels))
                except RemoteMediaError as exc:
                    exc.message = f"input {i} of {len(inputs)}: {exc.message}"
                    exc.args = (exc.message,)
                    raise
                audio.append(buffer)
                samples.append(x)
            return self._cascade(audio, samples, prepared)
        except RemoteMediaError as exc:
            raise exc.with_context(node_id=self.node_id) from exc.__cause__

    def _cascade(
        self,
        audio: Sequence[AudioBuffer],
        samples: Sequence[np.ndarray],
        prepared: Sequence[tuple[np.ndarray, int]],
    ) -> list[list[dict[str, float]]]:
        """The segments of each input from its model input ``(signal, rate)``."""
        model = self.model
        if model is None:
            raise NodeExecutionError(
                "the cascade runs only between initialize() and cleanup()", node_id=self.node_id
            )
        results: list[list[dict[str, float]]] = [[] for _ in audio]
        for rate in sorted({rate for _, rate in prepared}):
            members = [i for i, (_, r) in enumerate(prepared) if r == rate]
            found = cascade_many(
                [prepared[i][0] for i in members], rate, self.kernels, model, self.cascade
            )
            for i, one in zip(members, found, strict=True):
                self.windows += one.probs.size
                self.refined_windows += one.model_windows
                results[i] = speech_segments(
                    one.probs,
                    window_samples(rate),
                    rate,
                    samples[i],
                    audio[i].sample_rate,
                    self.speech,
                    scored=one.scored,
                    threshold_db=self.params.threshold,
                )
        return results

    def open_stream(self) -> ChunkStream | None:
        """Two passes in one: every chunk's frame energies now, the decisions at the end.

        Frames are counted from the start of the stream (a partial frame is
        carried into the next chunk), so the energies, and therefore the
        segments, equal those of the whole audio. Memory: 16 bytes per frame.
        With ``refine`` there is no stream (None): the node reads the whole audio.
        """
        if self.params.refine is not None:
            return None
        return _VADChunks(self)

    def cleanup(self) -> None:
        self.model = None
        self.execute_many = None


class _StreamShape:
    """The rate, channels and format a stream's chunks must keep."""

    def __init__(self, node: NodeExecutor) -> None:
        self.node = node
        self.first: AudioBuffer | None = None
        self.frames = 0

    def check(self, chunk: AudioBuffer) -> None:
        if self.first is None:
            self.first = chunk
        elif (chunk.sample_rate, chunk.channels, chunk.format) != (
            self.first.sample_rate,
            self.first.channels,
            self.first.format,
        ):
            raise AudioFormatError(
                f"{self.node._label()}: the chunk at frame {self.frames} is {chunk!r}, "
                f"unlike the stream's first chunk {self.first!r}"
            )
        self.frames += chunk.num_frames


class _VADChunks(ChunkStream):
    emits_audio = False

    def __init__(self, node: VADNode) -> None:
        self.node = node
        self.shape = _StreamShape(node)
        self.frame_len = 0
        self.carry: np.ndarray | None = None
        self.sums: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []

    def push(self, chunk: AudioBuffer) -> None:
        audio = self.node._audio(chunk)
        start = self.shape.frames
        self.shape.check(audio)
        if not self.frame_len:
            self.node._check_rate(audio)
            self.frame_len = reference.vad_frame_len(
                audio.sample_rate, self.node.params.frame_length_ms
            )
        x = audio.to_numpy_2d()
        if self.carry is not None and self.carry.shape[0]:
            start -= self.carry.shape[0]
            x = np.concatenate([self.carry, x])
        whole = x.shape[0] - x.shape[0] % self.frame_len
        self._energies(x[:whole], start)
        self.carry = x[whole:].copy()  # under one frame; the chunk itself is not kept

    def _energies(self, x: np.ndarray, first_frame: int) -> None:
        if x.shape[0]:
            sums, counts = self.node.kernels.vad_frame_energies(x, self.frame_len, first_frame)
            self.sums.append(sums)
            self.counts.append(counts)

    def finish(self) -> list[dict[str, float]]:
        first = self.shape.first
        if first is None:
            raise AudioFormatError(f"{self.node._label()}: a stream ended without any chunk")
        if self.carry is not None:
            self._energies(self.carry, self.shape.frames - self.carry.shape[0])
        empty = (np.zeros(0, np.float64), np.zeros(0, np.int64))
        return self.node.kernels.vad_segments_from_energies(
            np.concatenate(self.sums) if self.sums else empty[0],
            np.concatenate(self.counts) if self.counts else empty[1],
            self.shape.frames,
            first.sample_rate,
            self.node.settings,
        )


class ResampleNode(_AudioNode):
    """Band-limited resampling to ``target_rate``; output is f32, time-aligned."""

    Params = ResampleParams
    settings: ResampleSettings

    def initialize(self, params: Mapping[str, Any]) -> None:
        self.params = parse_params(ResampleParams, params, node=self.node_id)
        self.settings = self.params.settings()

    def chain_link(self) -> tuple[str, Any] | None:
        """``("resample", settings)``."""
        return "resample", self.settings

    def execute(self, input: Any) -> AudioBuffer:
        audio = self._audio(input)
        out = self.kernels.resample(audio.to_numpy_2d(), audio.sample_rate, self.settings)
        return AudioBuffer.from_numpy(out, self.settings.target_rate)

    def open_stream(self) -> ChunkStream:
        """A streaming resampler: bit-identical to one call for any chunking."""
        return _ResampleChunks(self)


class _ResampleChunks(ChunkStream):
    def __init__(self, node: ResampleNode) -> None:
        self.node = node
        self.shape = _StreamShape(node)
        self.resampler: resampling.ChunkResampler | None = None

    def push(self, chunk: AudioBuffer) -> AudioBuffer:
        audio = self.node._audio(chunk)
        self.shape.check(audio)
        settings = self.node.settings
        if self.resampler is None:
            self.resampler = self.node.kernels.stream_resampler(
                audio.sample_rate, audio.channels, settings
            )
        return AudioBuffer.from_numpy(
            self.resampler.process(audio.to_numpy_2d()), settings.target_rate
        )

    def finish(self) -> AudioBuffer:
        if self.resampler is None:
            raise AudioFormatError(f"{self.node._label()}: a stream ended without any chunk")
        return AudioBuffer.from_numpy(self.resampler.flush(), self.node.settings.target_rate)


class SegmentNode(_BuiltinNode):
    """Cuts speech into utterances: one clip per utterance.

    Takes two inputs (fan-in): audio and the VAD's segments of that audio.
    Segments closer than ``merge_gap_ms`` are merged, clips are padded by
    ``pad_ms``, split at their quietest frame when longer than ``max_s`` and
    dropped (or merged) when shorter than ``min_s``; see
    :func:`remotemedia_ray.nodes.reference.segment_bounds` for the exact
    rules. The output is :class:`~remotemedia_ray.audio.Clips`: nodes after
    this one run once per clip, and the dataset job writes a row per clip
    (id ``{item}/{index}``, with ``parent_id``, ``start_s`` and ``end_s``).
    """

    Params = SegmentParams
    inputs: ClassVar[tuple[int, int | None]] = (2, 2)
    settings: SegmentSettings

    def initialize(self, params: Mapping[str, Any]) -> None:
        self.params = parse_params(SegmentParams, params, node=self.node_id)
        self.settings = self.params.settings()

    def execute(self, input: Any) -> Clips:
        audio, starts, ends = self._inputs(input)
        x = audio.to_numpy_2d()
        rate = audio.sample_rate
        first, last = self.kernels.segment_bounds(x, rate, starts, ends, self.settings)
        return Clips(
            tuple(
                Clip(AudioBuffer.from_numpy(x[s:e], rate), s / rate, e / rate)
                for s, e in zip(first.tolist(), last.tolist(), strict=True)
            )
        )

    def _inputs(self, input: Any) -> tuple[AudioBuffer, np.ndarray, np.ndarray]:
        """The audio and its segments' starts and ends (ms) from the fan-in dict."""
        if not isinstance(input, dict) or len(input) != 2:
            got = f"{len(input)} inputs" if isinstance(input, dict) else type(input).__name__
            raise MarshalingError(
                f"{self._label()} takes two inputs, audio and the VAD's segments of it "
                f"(connect both to it), got {got}"
            )
        audio = [k for k, v in input.items() if isinstance(v, AudioBuffer)]
        lists = [k for k, v in input.items() if isinstance(v, (list, tuple))]
        if len(audio) != 1 or len(lists) != 1:
            kinds = ", ".join(f"{k!r}: {type(v).__name__}" for k, v in input.items())
            raise MarshalingError(
                f"{self._label()} needs one audio input and one list of segments, got {kinds}"
            )
        segments = input[lists[0]]
        starts = np.empty(len(segments), np.float64)
        ends = np.empty(len(segments), np.float64)
        for i, seg in enumerate(segments):
            try:
                starts[i], ends[i] = _number(seg["start_ms"]), _number(seg["end_ms"])
            except (TypeError, KeyError, IndexError) as exc:
                raise MarshalingError(
                    f"{self._label()}: segment {i} from {lists[0]!r} is not "
                    f"{{start_ms, end_ms}} numbers: {seg!r}"
                ) from exc
        return input[audio[0]], starts, ends


def _number(value: Any) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


class FormatConverterNode(_AudioNode):
    """Converts samples between f32, f64, i16 and i32 (exact rules:
    :func:`remotemedia_ray.nodes.reference.convert_format`)."""

    Params = FormatConverterParams

    def initialize(self, params: Mapping[str, Any]) -> None:
        self.params = parse_params(FormatConverterParams, params, node=self.node_id)

    def chain_link(self) -> tuple[str, Any] | None:
        """``("convert", "f32" | "f64" | "i16" | "i32")``."""
        return "convert", AudioFormat(self.params.target_format).value

    def execute(self, input: Any) -> AudioBuffer:
        audio = self._audio(input)
        out = self.kernels.convert_format(audio.to_numpy_2d(), self.params.target_format)
        return AudioBuffer.from_numpy(out, audio.sample_rate)

    def open_stream(self) -> ChunkStream:
        """Sample by sample: each chunk converted on its own."""
        return MapChunks(self)


class ChannelMixNode(_AudioNode):
    """Downmix to mono (mean of channels) or keep one channel."""

    Params = ChannelMixParams

    def initialize(self, params: Mapping[str, Any]) -> None:
        self.params = parse_params(ChannelMixParams, params, node=self.node_id)

    def chain_link(self) -> tuple[str, Any] | None:
        """``("mix", None)`` for the mean, ``("mix", channel)`` to select one."""
        return "mix", None if self.params.mode == "mean" else self.params.channel

    def execute(self, input: Any) -> AudioBuffer:
        audio = self._audio(input)
        if audio.channels == 1 and (self.params.mode == "mean" or self.params.channel == 0):
            return audio  # already mono: the mean of one channel is that channel, exactly
        out = self.kernels.channel_mix(audio.to_numpy_2d(), self.params.mode, self.params.channel)
        return AudioBuffer.from_numpy(out, audio.sample_rate)

    def open_stream(self) -> ChunkStream:
        """Frame by frame: each chunk mixed on its own."""
        return MapChunks(self)


class _ArithmeticNode(_BuiltinNode):
    """Element-wise arithmetic on numbers, lists, arrays and audio; merges fan-in."""

    op: ClassVar[Literal["add", "multiply"]]
    param: float

    def chain_link(self) -> tuple[str, Any] | None:
        """``("combine", (op, param))`` (the one-input case of :meth:`execute`)."""
        return ("combine", (self.op, self.param)) if type(self.param) is float else None

    def execute(self, input: Any) -> Any:
        if type(input) is AudioBuffer:  # the hot path: one audio input
            out = self.kernels.combine([input.to_numpy_2d()], self.op, self.param)
            return AudioBuffer.from_numpy(out, input.sample_rate)
        values = list(input.values()) if isinstance(input, dict) else [input]
        if not values:
            raise MarshalingError(f"{self._label()} received no inputs")
        kinds = {_kind(v, self._label()) for v in values}
        if len(kinds) > 1:
            raise MarshalingError(
                f"{self._label()}: inputs must all be of one kind, got {sorted(kinds)}"
            )
        kind = kinds.pop()
        if kind == "number":
            return self.kernels.combine_scalars([float(v) for v in values], self.op, self.param)
        if kind == "list":
            arrays = [_list_array(v, self._label()) for v in values]
            return self.kernels.combine(arrays, self.op, self.param).tolist()
        if kind == "array":
            return self.kernels.combine(values, self.op, self.param)
        buffers: list[AudioBuffer] = values
        first = buffers[0]
        for other in buffers[1:]:
            if (other.sample_rate, other.channels) != (first.sample_rate, first.channels):
                raise AudioFormatError(
                    f"{self._label()}: cannot combine {first} with {other} "
                    "(sample rates and channel counts must match)"
                )
        out = self.kernels.combine([b.to_numpy_2d() for b in buffers], self.op, self.param)
        return AudioBuffer.from_numpy(out, first.sample_rate)

    def open_stream(self) -> ChunkStream:
        """Sample by sample, for a node with one audio input."""
        return MapChunks(self)


class MultiplyNode(_ArithmeticNode):
    """Multiplies by ``factor``; with several parents, multiplies them first."""

    Params = MultiplyParams
    op = "multiply"

    def initialize(self, params: Mapping[str, Any]) -> None:
        self.param = parse_params(MultiplyParams, params, node=self.node_id).factor


class AddNode(_ArithmeticNode):
    """Adds ``addend``; with several parents, sums them first (a mixer)."""

    Params = AddParams
    op = "add"

    def initialize(self, params: Mapping[str, Any]) -> None:
        self.param = parse_params(AddParams, params, node=self.node_id).addend


def _kind(value: Any, label: str) -> str:
    if isinstance(value, AudioBuffer):
        return "audio"
    if isinstance(value, np.ndarray):
        return "array"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return "number"
    raise MarshalingError(
        f"{label} takes numbers, lists of numbers, numpy arrays or AudioBuffers, "
        f"got {type(value).__name__}"
    )


def _list_array(value: list[Any] | tuple[Any, ...], label: str) -> np.ndarray:
    for index, element in enumerate(value):
        if not isinstance(element, numbers.Real) or isinstance(element, (bool, np.bool_)):
            raise MarshalingError(
                f"{label}: list element {index} is {type(element).__name__}, not a number"
            )
    return np.asarray(value, dtype=np.float64)


BUILTIN_NODES: dict[str, type[NodeExecutor]] = {
    "VADNode": VADNode,
    "ResampleNode": ResampleNode,
    "FormatConverterNode": FormatConverterNode,
    "MultiplyNode": MultiplyNode,
    "AddNode": AddNode,
    "ChannelMixNode": ChannelMixNode,
    "SegmentNode": SegmentNode,
}
"""The built-in cpython node classes by node type."""
