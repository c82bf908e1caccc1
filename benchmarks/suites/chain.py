"""The fused native chain: speech_prep's native nodes in one native call per clip.

``setup`` builds the nodes of ``examples/speech_prep.json`` (ChannelMix, Resample,
VAD, FormatConverter; Rust) in an in-process executor and :data:`ITEMS` clips of
10 s 48 kHz 16-bit speech-like audio (half mono, half stereo). The timed call
runs the batch through them, either as one fused chain (one native call per
clip for all four nodes) or node by node (a Python call per node per clip), as
the dataset job's workers run each batch. Outputs are the same either way (the tests check
it); the figures say what fusing buys.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

import remotemedia_ray as rm

from ._common import best_seconds, example_manifest, speech_like, speedup

ChainMode = Literal["fused", "per node"]
ITEMS = 16
SECONDS = 10.0
RATE = 48_000


def _executor(fused: bool) -> Any:
    from remotemedia_ray._runtime.local import LocalExecutor
    from remotemedia_ray._runtime.plan import PipelinePlan

    manifest = rm.Manifest.from_file(example_manifest("speech_prep"))
    executor = LocalExecutor(PipelinePlan.build(manifest), native_chains=fused)
    executor.start()
    return executor


def _batch() -> list[tuple[str, rm.AudioBuffer]]:
    return [
        (
            f"clip{i}",
            rm.AudioBuffer.from_numpy(
                (speech_like(RATE, SECONDS, 1 + i % 2, seed=i) * 32767).astype(np.int16), RATE
            ),
        )
        for i in range(ITEMS)
    ]


class FusedChain:
    """speech_prep's native nodes over 16 clips of 10 s: x realtime, fused or node by node."""

    params = (["fused", "per node"],)
    param_names = ("chain",)
    unit = "x realtime"
    timeout = 300

    def setup(self, chain: ChainMode) -> None:
        if not rm.native_available():
            raise NotImplementedError("the native extension is not built")
        self.items = _batch()
        self.executor = _executor(chain == "fused")
        self.executor.run_batch(self.items)  # warm: filters designed, buffers allocated

    def teardown(self, chain: ChainMode) -> None:
        self.executor.close()

    def track_realtime_factor(self, chain: ChainMode) -> float:
        """Seconds of audio per second of wall time, one core (best of 5 batches)."""
        seconds = best_seconds(lambda: self.executor.run_batch(self.items), min_time=0.0)
        return ITEMS * SECONDS / seconds


class FusedChainSpeedup:
    """How many times faster the fused chain runs a batch than the same nodes one by one."""

    unit = "x"
    timeout = 300

    def setup(self) -> None:
        if not rm.native_available():
            raise NotImplementedError("the native extension is not built")
        self.items = _batch()
        self.fused, self.plain = _executor(True), _executor(False)

    def teardown(self) -> None:
        self.fused.close()
        self.plain.close()

    def track_speedup(self) -> float:
        """Fused over node by node, timed alternately in this process."""
        return speedup(
            lambda: self.fused.run_batch(self.items),
            lambda: self.plain.run_batch(self.items),
            min_time=0.0,
        )
