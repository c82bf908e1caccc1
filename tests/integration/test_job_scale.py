"""A driver that stays small, whatever the corpus: workers write, listing streams.

* A list of a million entries: 300 tiny files, then 999,700 files that do not
  exist. The job must start on the first files before it has read the rest
  of the list, record every missing entry in ``errors.jsonl``, and keep the
  driver's peak memory about where a run over a thousand entries keeps it.
* One long input: its outputs are written by the worker, so the driver's
  memory does not grow with the hours of audio (it used to build the whole
  file's Parquet cell itself, about 1.35 GB an hour).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "speech_prep.json"
GOOD = 300

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("tiny")
    tone = 0.2 * np.sin(2 * np.pi * 300 * np.arange(1600) / 16000)
    paths = [folder / f"t{n:03d}.wav" for n in range(GOOD)]
    for path in paths:
        sf.write(path, tone, 16000, subtype="PCM_16")
    return paths


def write_list(path: Path, files: list[Path], entries: int) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{f}\n" for f in files)
        handle.writelines(f"/nonexistent/corpus/m{n:07d}.wav\n" for n in range(entries - GOOD))


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc")


def count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def run_job(source: Path, out: Path) -> tuple[int, float, str, int | None]:
    """Run the CLI; returns exit code, the driver's peak memory, its stdout, and how
    many errors.jsonl lines existed when the first batch was recorded."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    cli = [sys.executable, "-m", "remotemedia_ray.cli", "run", str(MANIFEST)]
    with subprocess.Popen(
        [*cli, "-i", str(source), "-o", str(out), "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        peak, errors_at_first_commit = 0.0, None
        try:
            while proc.poll() is None:
                with contextlib.suppress(OSError, AssertionError):  # it may have just ended
                    peak = max(peak, peak_rss_mb(proc.pid))
                if errors_at_first_commit is None and any((out / "_done").glob("*.jsonl")):
                    errors_at_first_commit = count_lines(out / "errors.jsonl")
                time.sleep(0.05)
            stdout = proc.stdout.read() if proc.stdout else ""
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return proc.returncode, peak, stdout, errors_at_first_commit


def test_a_million_entry_list_streams_and_the_driver_stays_small(
    files: list[Path], tmp_path: Path
) -> None:
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    write_list(small, files, 1_000)
    write_list(big, files, 1_000_000)

    code, small_peak, _, _ = run_job(small, tmp_path / "out-small")
    assert code == 0
    code, big_peak, stdout, errors_then = run_job(big, tmp_path / "out-big")

    assert code == 0
    assert f"{GOOD} file(s) done, 0 skipped, {1_000_000 - GOOD} failed" in stdout
    assert errors_then is not None and errors_then < 1_000_000 - GOOD, (
        "the first batch was recorded only after the whole list was read"
    )
    assert count_lines(tmp_path / "out-big" / "errors.jsonl") == 1_000_000 - GOOD
    last = json.loads((tmp_path / "out-big" / "errors.jsonl").read_text().splitlines()[-1])
    assert last["item_id"] == f"/nonexistent/corpus/m{1_000_000 - GOOD - 1:07d}.wav"
    # A thousand times the entries: the driver may keep a few bytes per entry, not an item.
    assert big_peak - small_peak < 64, (small_peak, big_peak)


def test_the_driver_does_not_hold_the_outputs_of_a_long_input(
    files: list[Path], tmp_path: Path
) -> None:
    long_file = tmp_path / "long" / "meeting.wav"
    long_file.parent.mkdir()
    minutes = 40
    t = np.arange(minutes * 60 * 16000) / 16000
    speech = 0.3 * np.sin(2 * np.pi * 220 * t) * ((t % 2.0) < 1.2)
    sf.write(long_file, speech.astype(np.float32), 16000, subtype="PCM_16")
    del t, speech

    code, short_peak, _, _ = run_job(files[0], tmp_path / "out-short")
    assert code == 0
    code, long_peak, stdout, _ = run_job(long_file, tmp_path / "out-long")

    assert code == 0
    assert "1 file(s) done, 0 skipped, 0 failed" in stdout
    assert long_peak - short_peak < 64, (short_peak, long_peak)  # 40 min: 0.9 GB before
