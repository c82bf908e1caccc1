"""The dataset job's ``metrics.json`` and summary keep the seed's metrics types."""

from __future__ import annotations

import io
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import soundfile as sf

from remotemedia_ray.dataset.job import READ, JobConfig, run_job
from remotemedia_ray.metrics import millis

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "speech_prep.json"
# Written by hand from the seed's Rust types (data model section 5).
SEED_SCHEMA = json.loads((ROOT / "tests" / "seed_metrics.schema.json").read_text(encoding="utf-8"))
SUMMARY = re.compile(r"Pipeline completed in (\d+)ms \((\d+) nodes, (\d+\.\d\d)MB peak memory\)")


def seed_check(text: str) -> dict[str, Any]:
    """Validate JSON text against the seed schema; floats parse as Decimal, so that
    ``5.0`` is not an integer (serde's u64 refuses it)."""
    data = json.loads(text, parse_float=Decimal)
    jsonschema.validate(data, SEED_SCHEMA)
    return data


def write_inputs(folder: Path) -> None:
    folder.mkdir()
    rng = np.random.default_rng(7)
    for name, rate, channels in (("a.wav", 16000, 1), ("b.flac", 44100, 2), ("c.wav", 48000, 2)):
        t = np.arange(rate // 2) / rate
        tone = 0.3 * np.sin(2 * np.pi * 220 * t) * (t < 0.3)
        noise = 1e-3 * rng.standard_normal((t.size, channels))
        sf.write(folder / name, tone[:, None] + noise, rate)
    (folder / "broken.wav").write_bytes(b"RIFF not really a wav file")


def test_metrics_json_and_summary_follow_the_seed_types(tmp_path: Path, job_runtime: str) -> None:
    runtime = job_runtime
    write_inputs(tmp_path / "in")
    config = JobConfig(
        manifest=MANIFEST,
        input=str(tmp_path / "in"),
        outdir=tmp_path / "out",
        runtime=runtime,  # type: ignore[arg-type]
        progress="off",
    )
    result = run_job(config, stream=io.StringIO())
    assert (result.items_done, result.items_failed) == (3, 1)

    data = seed_check((tmp_path / "out" / "metrics.json").read_text(encoding="utf-8"))
    assert data["node_count"] == len(data["nodes"]) == 5  # job:read + the manifest's 4
    assert type(data["total_time_ms"]) is int
    assert data["total_time_ms"] == millis(data["total_time_us"]) and data["total_time_us"] > 0
    by_id = {n["node_id"]: n for n in data["nodes"]}
    assert by_id[READ]["status"] == "failed" and "broken.wav" in by_id[READ]["error"]
    for node in data["nodes"]:
        assert type(node["execution_time_ms"]) is int and type(node["retry_count"]) is int
        assert node["execution_time_ms"] == millis(node["execution_time_us"])
        assert isinstance(node["memory_mb"], Decimal)  # a float in the JSON text
        if node["node_id"] != READ:
            assert node["status"] == "success" and node["items"] == 3

    assert result.metrics is not None
    found = SUMMARY.match(result.summary)
    assert found is not None, result.summary
    assert int(found[1]) == data["total_time_ms"] and int(found[2]) == data["node_count"]
    assert result.summary.startswith(result.metrics.summary() + ": 3 file(s) done")
