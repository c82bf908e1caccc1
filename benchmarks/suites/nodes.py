"""Every built-in node's ``execute()``, per runtime, and the Rust nodes' speedups.

Per node type, ``time_execute`` and ``peakmem_execute`` run one node on
``seconds`` of ``channels``-channel float32 audio for each ``node_runtime``:
``cpython`` (the numpy reference) and ``rust_native`` (the Rust kernels). The
60 s inputs (11.5 MB mono, 23 MB stereo at 48 kHz) are many times the per-core
caches. ``peakmem`` is the benchmark process's peak RSS, inputs included.

:class:`NativeSpeedup` returns ratios measured inside one process, the two
sides timed alternately with a min-of-repeats timer (``unit = "x"``; above 1
means the Rust node is faster).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np

import remotemedia_ray as rm

from ._common import (
    example_node_params,
    require_release_build,
    speech_like,
    speedup,
    tone_noise,
)

NodeRuntime = Literal["cpython", "rust_native"]
PeerCall = Callable[[np.ndarray, int], Callable[[], object]]
"""Given the samples and their rate, the call of the peer to time."""

RUNTIMES: list[NodeRuntime] = ["cpython", "rust_native"]
DURATIONS_S = [1.0, 60.0]
CHANNELS = [1, 2]

NODE_PARAMS: dict[str, dict[str, Any]] = {
    "ResampleNode": {"target_rate": 16_000, "quality": "high"},
    "VADNode": example_node_params("speech_prep", "vad"),
    "FormatConverterNode": {"target_format": "i16"},
    "ChannelMixNode": {"mode": "mean"},
    "MultiplyNode": {"factor": 0.5},
    "AddNode": {"addend": 0.25},
    "SegmentNode": example_node_params("speech_utterances", "utterances"),
}
"""The parameters every benchmark of a node type initializes it with."""


def make_node(node_type: str, node_runtime: NodeRuntime) -> rm.NodeExecutor:
    """An initialized ``node_type`` node of ``node_runtime``, from the public registry."""
    if node_runtime == "rust_native":
        require_release_build()
    node = rm.create_node(node_type, runtime=node_runtime)
    node.initialize(NODE_PARAMS[node_type])
    return node


class _NodeExecute:
    """``execute()`` of one node type; subclasses name the node type and its input."""

    node_type: ClassVar[str]
    rate: ClassVar[int] = 48_000

    params = (RUNTIMES, DURATIONS_S, CHANNELS)
    param_names = ("node_runtime", "seconds", "channels")
    timeout = 180

    def signal(self, seconds: float, channels: int) -> np.ndarray:
        """The input samples (a tone in noise; VAD overrides this with speech-like bursts)."""
        return tone_noise(self.rate, seconds, channels)

    def setup(self, node_runtime: NodeRuntime, seconds: float, channels: int) -> None:
        self.node = make_node(self.node_type, node_runtime)
        self.audio: Any = rm.AudioBuffer.from_numpy(self.signal(seconds, channels), self.rate)

    def time_execute(self, node_runtime: NodeRuntime, seconds: float, channels: int) -> None:
        self.node.execute(self.audio)

    def peakmem_execute(self, node_runtime: NodeRuntime, seconds: float, channels: int) -> None:
        self.node.execute(self.audio)


class ResampleNode(_NodeExecute):
    """ResampleNode, ``high`` quality, 48 kHz -> 16 kHz."""

    node_type = "ResampleNode"


class VADNode(_NodeExecute):
    """VADNode with ``examples/speech_prep.json``'s settings, on 16 kHz speech-like bursts."""

    node_type = "VADNode"
    rate = 16_000

    def signal(self, seconds: float, channels: int) -> np.ndarray:
        return speech_like(self.rate, seconds, channels)


def _speech_with_segments(rate: int, seconds: float, channels: int) -> dict[str, Any]:
    """SegmentNode's fan-in: speech-like bursts and the VAD's segments of them."""
    x = speech_like(rate, seconds, channels)
    audio = rm.AudioBuffer.from_numpy(x, rate)
    vad = make_node("VADNode", "cpython")
    return {"audio": audio, "vad": vad.execute(audio)}


class SegmentNode(_NodeExecute):
    """SegmentNode with ``examples/speech_utterances.json``'s settings on 16 kHz speech-like
    bursts and their VAD segments (the VAD runs in ``setup``, untimed)."""

    node_type = "SegmentNode"
    rate = 16_000

    def setup(self, node_runtime: NodeRuntime, seconds: float, channels: int) -> None:
        self.node = make_node(self.node_type, node_runtime)
        self.audio = _speech_with_segments(self.rate, seconds, channels)


class FormatConverterNode(_NodeExecute):
    """FormatConverterNode, float32 -> int16, 48 kHz."""

    node_type = "FormatConverterNode"


class ChannelMixNode(_NodeExecute):
    """ChannelMixNode, downmix to mono (``mean``), 48 kHz."""

    node_type = "ChannelMixNode"


class MultiplyNode(_NodeExecute):
    """MultiplyNode (x * 0.5), 48 kHz."""

    node_type = "MultiplyNode"


class AddNode(_NodeExecute):
    """AddNode (x + 0.25), 48 kHz."""

    node_type = "AddNode"


# -- speedups ---------------------------------------------------------------------------

SPEEDUP_SECONDS = 10.0


def _soxr_hq(x: np.ndarray, rate: int) -> Callable[[], object]:
    import soxr

    return lambda: soxr.resample(x, rate, 16_000, quality="HQ")


def _webrtcvad(x: np.ndarray, rate: int) -> Callable[[], object]:
    import webrtcvad

    vad = webrtcvad.Vad(2)
    pcm = (x[:, 0] * 32767).astype(np.int16)
    step = rate * 30 // 1000  # 30 ms frames
    frames = [pcm[i : i + step].tobytes() for i in range(0, pcm.size - step + 1, step)]
    return lambda: [vad.is_speech(frame, rate) for frame in frames]


def _numpy_to_i16(x: np.ndarray, rate: int) -> Callable[[], object]:
    return lambda: np.rint(np.clip(x * 32768, -32768, 32767)).astype(np.int16)


def _numpy_mean(x: np.ndarray, rate: int) -> Callable[[], object]:
    return lambda: x.mean(axis=1, dtype=np.float32)


def _numpy_multiply(x: np.ndarray, rate: int) -> Callable[[], object]:
    factor = np.float32(NODE_PARAMS["MultiplyNode"]["factor"])
    return lambda: x * factor


def _numpy_add(x: np.ndarray, rate: int) -> Callable[[], object]:
    addend = np.float32(NODE_PARAMS["AddNode"]["addend"])
    return lambda: x + addend


def _python_utterances(x: np.ndarray, rate: int) -> Callable[[], object]:
    """Plain Python over the VAD's segments: merge gaps, pad, cut at max_s, drop short."""
    p = NODE_PARAMS["SegmentNode"]
    segments = _speech_with_segments(rate, len(x) / rate, 1)["vad"]
    gap, pad = p["merge_gap_ms"] * rate / 1000, p["pad_ms"] * rate / 1000
    min_len, max_len = p["min_s"] * rate, p["max_s"] * rate

    def cut() -> list[np.ndarray]:
        spans: list[list[float]] = []
        for seg in segments:
            start, end = seg["start_ms"] * rate / 1000, seg["end_ms"] * rate / 1000
            if spans and start - spans[-1][1] < gap:
                spans[-1][1] = end
            else:
                spans.append([start, end])
        clips = []
        for start, end in spans:
            a, b = max(0, int(start - pad)), min(len(x), int(end + pad))
            for s in range(a, b, int(max_len)):
                e = min(b, s + int(max_len))
                if e - s >= min_len:
                    clips.append(x[s:e])
        return clips

    return cut


PEERS: dict[str, PeerCall] = {
    "ResampleNode": _soxr_hq,
    "VADNode": _webrtcvad,
    "FormatConverterNode": _numpy_to_i16,
    "ChannelMixNode": _numpy_mean,
    "MultiplyNode": _numpy_multiply,
    "AddNode": _numpy_add,
    "SegmentNode": _python_utterances,
}
"""For each node type, what a user would call without this library."""


class NativeSpeedup:
    """How many times faster each Rust node is (ratio of times, same process, same input).

    * ``track_speedup_vs_numpy``: the node's ``cpython`` (numpy) implementation;
    * ``track_speedup_vs_peer``: what a user would otherwise call -- python-soxr
      ``HQ`` (ResampleNode), webrtcvad mode 2 on 30 ms frames (VADNode), and
      numpy expressions: ``rint(clip(x*32768))`` (FormatConverterNode),
      ``x.mean(axis=1)`` (ChannelMixNode), ``x * f`` (MultiplyNode), ``x + a``
      (AddNode), a Python loop over the VAD's segments (SegmentNode).

    Inputs: 10 s of 48 kHz stereo; VAD and SegmentNode get 16 kHz mono
    speech-like bursts (SegmentNode with their VAD segments).
    """

    params = (list(PEERS),)
    param_names = ("node_type",)
    unit = "x"
    timeout = 180

    def setup(self, node_type: str) -> None:
        if node_type in ("VADNode", "SegmentNode"):
            self.rate = 16_000
            self.samples = speech_like(self.rate, SPEEDUP_SECONDS, 1)
        else:
            self.rate = 48_000
            self.samples = tone_noise(self.rate, SPEEDUP_SECONDS, 2)
        self.audio: Any = rm.AudioBuffer.from_numpy(self.samples, self.rate)
        if node_type == "SegmentNode":
            self.audio = _speech_with_segments(self.rate, SPEEDUP_SECONDS, 1)
        self.native = make_node(node_type, "rust_native")

    def _native_call(self) -> object:
        return self.native.execute(self.audio)

    def track_speedup_vs_numpy(self, node_type: str) -> float:
        reference = make_node(node_type, "cpython")
        return speedup(self._native_call, lambda: reference.execute(self.audio))

    def track_speedup_vs_peer(self, node_type: str) -> float:
        return speedup(self._native_call, PEERS[node_type](self.samples, self.rate))
