"""What the suites share: deterministic audio, a min-of-repeats timer, an embedded Ray.

Inputs are built in ``setup`` from fixed seeds, so every commit is measured on
the same samples. Nothing here is a benchmark (asv only collects names that
start with ``time_``, ``peakmem_``, ``track_`` ...).
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
"""The repository's example manifests (the working tree's, whatever commit is measured)."""

RAY_NUM_CPUS = 2


def example_manifest(name: str) -> Path:
    """The path of ``examples/<name>.json``."""
    return EXAMPLES / f"{name}.json"


def example_node_params(manifest: str, node_id: str) -> dict[str, Any]:
    """The ``params`` of node ``node_id`` in ``examples/<manifest>.json``."""
    spec = json.loads(example_manifest(manifest).read_text())
    for node in spec["nodes"]:
        if node["id"] == node_id:
            return dict(node.get("params", {}))
    raise KeyError(f"examples/{manifest}.json has no node {node_id!r}")


def tone_noise(rate: int, seconds: float, channels: int, seed: int = 0) -> np.ndarray:
    """A 997 Hz tone plus white noise, ``(frames, channels)`` float32, each channel scaled apart."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(rate * seconds)) / rate
    base = 0.3 * np.sin(2 * np.pi * 997 * t) + 0.05 * rng.standard_normal(t.size)
    x = np.stack([base * (0.9 + 0.1 * c) for c in range(channels)], axis=1)
    return np.ascontiguousarray(x, dtype=np.float32)


def speech_like(rate: int, seconds: float, channels: int = 1, seed: int = 1) -> np.ndarray:
    """Bursts of noise ("syllables") between quiet gaps, ``(frames, channels)`` float32."""
    rng = np.random.default_rng(seed)
    frames = round(rate * seconds)
    level = np.full(frames, 1e-3)
    at = 0
    while at < frames:
        burst = int(rng.uniform(0.1, 0.6) * rate)
        level[at : at + burst] = rng.uniform(0.05, 0.5)
        at += burst + int(rng.uniform(0.1, 0.5) * rate)
    noise = rng.standard_normal((frames, channels))
    return np.ascontiguousarray(np.clip(noise * level[:, None], -1, 1), dtype=np.float32)


# -- encoded audio, as corpora come (PyAV: the FFmpeg users have) -------------------

CODECS: dict[str, tuple[str, str]] = {
    "mp3": ("mp3", "libmp3lame"),
    "opus": ("ogg", "libopus"),
    "webm": ("webm", "libopus"),
    "m4a": ("ipod", "aac"),
    "aac": ("adts", "aac"),
    "flac": ("flac", "flac"),
}
"""Extension -> (FFmpeg muxer, encoder)."""

RATES: dict[str, int] = {"opus": 48000, "webm": 48000}
"""Extensions whose encoder takes only some rates: the rate to use."""


def encode(samples: np.ndarray, rate: int, ext: str, *, block: int = 4096) -> bytes:
    """The encoded file of ``(frames, channels)`` float samples in [-1, 1].

    Opus encodes at 48 kHz only: pass audio at :data:`RATES` for it.
    """
    import av

    muxer, codec = CODECS[ext]
    x = np.ascontiguousarray(np.clip(samples, -1.0, 1.0), dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    layout = {1: "mono", 2: "stereo"}[x.shape[1]]
    out = io.BytesIO()
    with av.open(out, "w", format=muxer) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        for start in range(0, x.shape[0], block):
            piece = x[start : start + block]
            if codec == "flac":
                ints = np.round(piece * 32767).astype(np.int16)
                frame = av.AudioFrame.from_ndarray(ints.reshape(1, -1), format="s16", layout=layout)
            else:
                planar = np.ascontiguousarray(piece.T)
                frame = av.AudioFrame.from_ndarray(planar, format="fltp", layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return out.getvalue()


def _calls_lasting(fn: Callable[[], object], min_time: float) -> int:
    """How many back-to-back calls of ``fn`` last at least ``min_time`` seconds (a power of 2)."""
    fn()  # warm up
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - start >= min_time or number >= 1 << 20:
            return number
        number *= 2


def _seconds_per_call(fn: Callable[[], object], number: int) -> float:
    start = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - start) / number


def best_seconds(fn: Callable[[], object], *, repeat: int = 5, min_time: float = 0.02) -> float:
    """Seconds per call of ``fn``: the best of ``repeat`` runs of enough calls for ``min_time``."""
    number = _calls_lasting(fn, min_time)
    return min(_seconds_per_call(fn, number) for _ in range(repeat))


def speedup(
    fast: Callable[[], object],
    slow: Callable[[], object],
    *,
    repeat: int = 5,
    min_time: float = 0.02,
) -> float:
    """How many times faster ``fast`` is than ``slow``, both timed in this process.

    Each side gets the best of ``repeat`` runs (each of enough calls to last
    ``min_time``); the runs alternate between the two, so a noisy neighbour
    slows both alike.
    """
    n_fast = _calls_lasting(fast, min_time)
    n_slow = _calls_lasting(slow, min_time)
    t_fast = t_slow = float("inf")
    for _ in range(repeat):
        t_fast = min(t_fast, _seconds_per_call(fast, n_fast))
        t_slow = min(t_slow, _seconds_per_call(slow, n_slow))
    return t_slow / t_fast


def require_release_build() -> None:
    """Refuse to time the Rust nodes of a debug build of the extension."""
    from remotemedia_ray.nodes import native

    profile = getattr(native, "native_build_profile", lambda: "release")()
    if profile != "release":
        raise RuntimeError(
            f"the native extension is a {profile} build; rebuild it in release mode (`make build`)"
        )


def start_ray() -> Any:
    """Start a throw-away embedded Ray (2 CPUs, no dashboard) and return the ``ray`` module.

    ``address="local"`` starts a new Ray even when another one runs on this
    machine (a bare ``ray.init()`` would join it). Token authentication is
    turned off before Ray is imported: nothing but this process joins the
    cluster, and :func:`stop_ray` shuts it down. Ray's workers get this
    package's parent folder on ``PYTHONPATH`` (asv puts it on this process's
    ``sys.path``): they import the actor and node classes defined here by name.
    """
    os.environ["RAY_AUTH_MODE"] = "disabled"
    suites_parent = str(Path(__file__).resolve().parents[1])
    os.environ["PYTHONPATH"] = os.pathsep.join(
        path for path in (suites_parent, os.environ.get("PYTHONPATH")) if path
    )
    import ray

    ray.init(
        address="local",
        num_cpus=RAY_NUM_CPUS,
        include_dashboard=False,
        configure_logging=False,
        log_to_driver=False,
    )
    return ray


def stop_ray() -> None:
    """Shut down the Ray that :func:`start_ray` started (a no-op if none runs)."""
    import ray

    ray.shutdown()
