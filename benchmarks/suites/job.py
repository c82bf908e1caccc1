"""The dataset job end to end: audio hours per core-hour, commit by commit.

``setup`` writes :data:`FILES` WAV files of 10 s 48 kHz 16-bit speech-like
audio (half mono, half stereo) to a temporary folder and, for ``ray``, starts
an embedded Ray with 2 CPUs; the timed call is ``run_job`` with
``examples/speech_prep.json`` (mono, 16 kHz, VAD, int16, Parquet) over the
folder, as ``remotemedia-ray run`` does it, outputs and all. The figure is
audio hours per core-hour: x realtime divided by the cores the job was given
(1 for the local runtime, the Ray's 2 CPUs for ``ray``). The job on Ray pays
its start (actors) in every call; ``benchmarks/compare_peers.py`` measures a
longer corpus against its peers.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from ._common import example_manifest, speech_like, start_ray, stop_ray

JobRuntime = Literal["local", "ray"]
FILES = 40
SECONDS = 10.0
RATE = 48_000
RAY_CPUS = 2


class DatasetJob:
    """``run_job`` over 40 WAV files of 10 s: audio hours per core-hour."""

    params = ("local", "ray")
    param_names = ("runtime",)
    unit = "audio h per core-hour"
    number = 1
    repeat = 2
    rounds = 1
    timeout = 300

    def setup(self, runtime: JobRuntime) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rm-bench-job-"))
        corpus = self.root / "in"
        corpus.mkdir()
        for i in range(FILES):
            audio = speech_like(RATE, SECONDS, 1 + i % 2, seed=i)
            sf.write(corpus / f"{i:03d}.wav", (audio * 32767).astype(np.int16), RATE)
        self.ray_started = False
        if runtime == "ray":
            start_ray()
            self.ray_started = True

    def teardown(self, runtime: JobRuntime) -> None:
        if self.ray_started:
            stop_ray()
        shutil.rmtree(self.root, ignore_errors=True)

    def track_audio_hours_per_core_hour(self, runtime: JobRuntime) -> float:
        from remotemedia_ray.dataset import JobConfig, run_job

        config = JobConfig(
            manifest=example_manifest("speech_prep"),
            input=str(self.root / "in"),
            outdir=self.root / "out",
            runtime=runtime,
            progress="off",
            overwrite=True,
        )
        start = time.perf_counter()
        result = run_job(config)
        seconds = time.perf_counter() - start
        if result.exit_code != 0 or result.items_done != FILES:
            raise RuntimeError(f"the job failed: {result.summary or result.exit_code}")
        cores = 1 if runtime == "local" else RAY_CPUS
        return result.audio_seconds / seconds / cores
