"""Every example manifest loads, validates and runs; the demo script runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import remotemedia_ray as rm

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MANIFESTS = sorted(EXAMPLES.glob("*.json"))
AUDIO = sorted((EXAMPLES / "audio").glob("*.*"))


def test_example_audio_is_small_and_decodable() -> None:
    assert len(AUDIO) >= 3
    assert sum(p.stat().st_size for p in AUDIO) < 2 * 1024 * 1024
    for path in AUDIO:
        info = sf.info(path)
        assert 1.0 < info.duration < 10.0


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.stem for p in MANIFESTS])
def test_example_manifest_validates(path: Path) -> None:
    manifest = rm.Manifest.from_file(path).validate()
    assert manifest.nodes


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.stem for p in MANIFESTS])
def test_example_manifest_runs_locally_on_audio(path: Path) -> None:
    samples, rate = sf.read(AUDIO[0], dtype="float32", always_2d=True)
    buffer = rm.AudioBuffer.from_numpy(samples, rate)
    with rm.Pipeline(path, runtime="local") as pipeline:
        result = pipeline.run(buffer)
    graph = rm.PipelineGraph.from_manifest(rm.Manifest.from_file(path))
    assert set(result) == set(graph.sinks)


def test_gain_example_on_numbers() -> None:
    with rm.Pipeline(EXAMPLES / "gain.json", runtime="local") as pipeline:
        assert pipeline.run(2.0) == {"offset": 7.0}


def test_speech_prep_finds_speech_in_every_example_file() -> None:
    with rm.Pipeline(EXAMPLES / "speech_prep.json", runtime="local") as pipeline:
        for path in AUDIO:
            samples, rate = sf.read(path, dtype="float32", always_2d=True)
            result = pipeline.run(rm.AudioBuffer.from_numpy(samples, rate), item_id=path.name)
            pcm = result["pcm16"]
            assert pcm.sample_rate == 16000 and pcm.channels == 1
            assert pcm.format is rm.AudioFormat.I16
            assert pcm.num_frames == round(len(samples) * 16000 / rate)
            segments = result["vad"]
            assert segments, path.name
            # The files begin with at least 200 ms of padding silence.
            assert segments[0]["start_ms"] >= 150.0
            assert np.abs(pcm.to_numpy()).max() > 1000


def test_demo_script_runs() -> None:
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "local_demo.py")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Pipeline completed in" in proc.stdout
    for path in AUDIO:
        assert path.name in proc.stdout
