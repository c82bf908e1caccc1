"""The dataset job's usage errors: refused before anything starts (no Ray, no output)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from helpers import run_cli

import remotemedia_ray as rm
from remotemedia_ray.dataset import JobConfig, run_job

MANIFEST = Path(__file__).resolve().parents[2] / "examples" / "speech_prep.json"


def _one_wav(folder: Path) -> None:
    folder.mkdir(parents=True)
    sf.write(folder / "one.wav", np.zeros((1600, 1), np.int16), 16000, subtype="PCM_16")


def test_usage_errors_exit_1_with_a_message(tmp_path: Path) -> None:
    _one_wav(tmp_path / "in")
    (tmp_path / "a-file").write_text("not a folder")
    base = ["run", str(MANIFEST), "-i", str(tmp_path / "in"), "--runtime", "local"]
    cases = {
        "missing manifest": ["run", str(tmp_path / "nope.json"), "-i", str(tmp_path / "in"),
                             "-o", str(tmp_path / "o1")],
        "resume and overwrite": [*base, "-o", str(tmp_path / "o2"), "--resume", "--overwrite"],
        "shard rows 0": [*base, "-o", str(tmp_path / "o3"), "--shard-rows", "0"],
        "negative max errors": [*base, "-o", str(tmp_path / "o4"), "--max-errors", "-1"],
        "outdir is a file": [*base, "-o", str(tmp_path / "a-file")],
    }  # fmt: skip
    for name, argv in cases.items():
        try:
            code, _, stderr = run_cli(*argv)
        except Exception as exc:  # the point: nothing may escape
            pytest.fail(f"{name}: {type(exc).__name__} escaped the CLI: {exc}")
        assert code == 1, name
        assert stderr.startswith("error: "), (name, stderr)


def test_usage_errors_are_config_or_input_errors(tmp_path: Path) -> None:
    _one_wav(tmp_path / "in")
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("not a folder")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.txt").write_text("an earlier run")
    cases: list[tuple[type[Exception], dict[str, Any], str]] = [
        (rm.ConfigError, {"shard_rows": 0}, "--shard-rows"),
        (rm.ConfigError, {"window_s": -1.0}, "--window-seconds"),
        (rm.ConfigError, {"max_errors": -1}, "--max-errors"),
        (rm.ConfigError, {"resume": True, "overwrite": True}, "--resume and --overwrite"),
        (rm.ConfigError, {"batch_size": 0}, "--batch-size"),
        (rm.ConfigError, {"outdir": tmp_path / "a-file"}, "not a directory"),
        (rm.ConfigError, {"outdir": tmp_path / "a-file" / "sub"}, "output directory"),
        (rm.ConfigError, {"outdir": tmp_path / "full"}, "is not empty"),
        (rm.InputError, {"input": str(tmp_path / "missing")}, "missing"),
        (rm.InputError, {"input": str(tmp_path / "empty")}, "matches no audio files"),
    ]
    for error, options, needle in cases:
        settings: dict[str, Any] = {
            "manifest": MANIFEST,
            "input": str(tmp_path / "in"),
            "outdir": tmp_path / "out",
            "runtime": "local",
            **options,
        }
        with pytest.raises(error, match=needle) as raised:
            run_job(JobConfig(**settings), stream=io.StringIO())
        assert isinstance(raised.value, ValueError), options
        assert not isinstance(raised.value, rm.ManifestError), options
    assert not (tmp_path / "out").exists()
