"""The example manifests, streamed through the local runtime and through Ray.

Each benchmark process opens one :class:`remotemedia_ray.Pipeline` of
``examples/<manifest>.json`` in ``setup`` and runs one clip through it, so
Ray's actors are created and initialized before anything is timed. For
``runtime="ray"``, ``setup`` starts an embedded Ray (2 CPUs, no dashboard)
and ``teardown`` shuts it down. The timed call streams :data:`CLIPS` clips of
10 s 48 kHz stereo speech-like audio and waits for every result. Nodes run
as their manifests say (``auto``: Rust when the extension is built).
"""

from __future__ import annotations

from typing import Literal

import remotemedia_ray as rm

from ._common import best_seconds, example_manifest, speech_like, start_ray, stop_ray

MANIFESTS = ["speech_prep", "gain", "mixer"]
PipelineRuntime = Literal["local", "ray"]
PIPELINE_RUNTIMES: list[PipelineRuntime] = ["local", "ray"]
CLIPS = 4
CLIP_SECONDS = 10.0
RATE = 48_000


class ExamplePipeline:
    """Stream 4 clips of 10 s 48 kHz stereo through an example manifest, local or on Ray."""

    params = (MANIFESTS, PIPELINE_RUNTIMES)
    param_names = ("manifest", "runtime")
    unit = "x realtime"
    rounds = 1  # each round starts its own Ray; the repeats within a round suffice
    timeout = 300

    def setup(self, manifest: str, runtime: PipelineRuntime) -> None:
        self.clips = [
            rm.AudioBuffer.from_numpy(speech_like(RATE, CLIP_SECONDS, 2, seed=i), RATE)
            for i in range(CLIPS)
        ]
        self.ray_started = False
        if runtime == "ray":
            start_ray()
            self.ray_started = True
        self.pipeline = rm.Pipeline(example_manifest(manifest), runtime=runtime).open()
        self.pipeline.run(self.clips[0])  # warm up: every node built and initialized

    def teardown(self, manifest: str, runtime: PipelineRuntime) -> None:
        pipeline = getattr(self, "pipeline", None)
        if pipeline is not None:
            pipeline.close()
        if self.ray_started:
            stop_ray()

    def _stream(self) -> None:
        done = sum(1 for _ in self.pipeline.map(self.clips))
        if done != len(self.clips):
            raise RuntimeError(f"{done} results for {len(self.clips)} clips")

    def time_stream(self, manifest: str, runtime: PipelineRuntime) -> None:
        self._stream()

    def track_realtime_factor(self, manifest: str, runtime: PipelineRuntime) -> float:
        """Seconds of audio processed per second of wall time (best of 3 streams)."""
        seconds = best_seconds(self._stream, repeat=3, min_time=0.0)
        return CLIPS * CLIP_SECONDS / seconds
