"""The dataset job keeps data safe: odd names, links, resumes and concurrent runs.

Each test pins a behaviour that a hostile pass over the job once found broken:
a file name that is not UTF-8, inputs named like shards, an OUTDIR folder that
links elsewhere, two names for one file, audio files beside Parquet shards,
and two runs on one OUTDIR at once.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

import remotemedia_ray as rm
from remotemedia_ray.dataset import JobConfig, JobResult, audio_path, list_inputs, run_job

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "speech_prep.json"
SINKS = ("pcm16", "vad")

pytestmark = pytest.mark.slow


def wav(path: Path, seed: int = 0, seconds: float = 0.3) -> Path:
    """A short 16 kHz tone at ``path`` (str or bytes paths alike)."""
    rate = 16000
    t = np.arange(round(rate * seconds)) / rate
    samples = 0.3 * np.sin(2 * np.pi * (200 + 40 * seed) * t) * (t < seconds / 2)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sf.write(path, samples.astype(np.float32), rate, subtype="PCM_16", format="WAV")
    return Path(os.fsdecode(path))


def job(input_spec: Path | str, outdir: Path, **options: Any) -> tuple[JobResult, str]:
    """The job in this process (local runtime unless asked); its result and messages."""
    options.setdefault("runtime", "local")
    stream = io.StringIO()
    config = JobConfig(manifest=MANIFEST, input=str(input_spec), outdir=outdir, **options)
    return run_job(config, stream=stream), stream.getvalue()


def ids_once(outdir: Path, sink: str) -> list[str]:
    """The ids of ``OUTDIR/<sink>`` read as one Parquet dataset, sorted; none twice."""
    ids: list[str] = pq.read_table(outdir / sink).column("id").to_pylist()
    assert not [i for i, n in Counter(ids).items() if n > 1], ids
    return sorted(ids)


def errors(outdir: Path) -> list[dict[str, Any]]:
    path = outdir / "errors.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# -- 1. file names that are not UTF-8 ------------------------------------------------------


def test_a_file_name_that_is_not_utf8_gets_an_escaped_id_and_every_good_row_is_written(
    tmp_path: Path, job_runtime: str
) -> None:
    runtime = job_runtime
    root = tmp_path / "in"
    good = [wav(root / f"good{n}.wav", seed=n).name for n in range(3)]
    wav(os.path.join(os.fsencode(root), b"bad\xff.wav"), seed=7)
    (Path(os.fsdecode(os.path.join(os.fsencode(root), b"broken\xfe.wav")))).write_bytes(b"RIFF")

    result, _ = job(root, tmp_path / "out", runtime=runtime, shard_rows=100)

    assert result.exit_code == 0
    assert (result.items_done, result.items_failed) == (4, 1)
    expected = sorted([*good, "bad\\xff.wav"])  # a literal backslash: valid text, stable
    for sink in SINKS:
        assert ids_once(tmp_path / "out", sink) == expected
    (error,) = errors(tmp_path / "out")
    assert error["item_id"] == "broken\\xfe.wav"
    assert json.dumps(error, ensure_ascii=False).encode("utf-8")  # no lone surrogates
    listed = [i.item_id for i in list_inputs(root)]
    assert listed == sorted([*expected, "broken\\xfe.wav"])  # the same ids every time


# -- 2 and 5. audio files and Parquet shards in folders of their own -----------------------


def test_parquet_shards_and_audio_files_have_folders_of_their_own(tmp_path: Path) -> None:
    root = tmp_path / "in"
    ids = sorted(wav(root / name, seed=n).name for n, name in enumerate(["a.wav", "b.wav"]))
    out = tmp_path / "out"

    result, _ = job(root, out, write_audio="flac")

    assert result.exit_code == 0
    assert ids_once(out, "pcm16") == ids  # pq.read_table(OUTDIR/<sink>) reads the shards
    assert sorted(p.name for p in (out / "pcm16").iterdir()) == sorted(
        p.name for p in (out / "pcm16").glob("part-*.parquet")
    )
    assert sorted(p.name for p in (out / "pcm16.audio").rglob("*")) == ["a.wav.flac", "b.wav.flac"]


def test_resume_keeps_the_audio_files_of_inputs_named_like_shards(tmp_path: Path) -> None:
    root = tmp_path / "in"
    for n, name in enumerate(["part-1.wav", ".part-2.wav", "plain.wav"]):
        wav(root / name, seed=n)
    out = tmp_path / "out"
    assert job(root, out, write_audio="flac")[0].exit_code == 0
    audio = files_under(out / "pcm16.audio")
    tag = audio_path(".part-2.wav", "flac").name  # a name starting with "." gets a digest
    assert tag.startswith("part-2.wav-") and tag.endswith(".flac")
    assert sorted(audio) == ["part-1.wav.flac", tag, "plain.wav.flac"]

    result, _ = job(root, out, write_audio="flac", resume=True)

    assert (result.exit_code, result.items_skipped, result.items_done) == (0, 3, 0)
    assert files_under(out / "pcm16.audio") == audio
    assert ids_once(out, "pcm16") == [".part-2.wav", "part-1.wav", "plain.wav"]


# -- 3. links out of OUTDIR ----------------------------------------------------------------


@pytest.mark.parametrize("option", ["resume", "overwrite"])
@pytest.mark.parametrize("linked", ["pcm16", "pcm16.audio", "errors.jsonl"])
def test_resume_and_overwrite_never_touch_files_outside_outdir_through_a_link(
    tmp_path: Path, option: str, linked: str
) -> None:
    root = tmp_path / "in"
    wav(root / "a.wav")
    out = tmp_path / "out"
    assert job(root, out, write_audio="wav")[0].exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("part-precious.parquet", ".part-precious.tmp", ".x.wav.tmp-1", "keep.txt"):
        (elsewhere / name).write_text("not the job's")
    target = elsewhere / "errors.jsonl" if linked == "errors.jsonl" else elsewhere
    if linked == "errors.jsonl":
        target.write_text("not the job's")
    link = out / linked
    if link.is_dir():
        for file in link.rglob("*"):
            if file.is_file():
                file.unlink()
        for folder in sorted(link.rglob("*"), reverse=True):
            folder.rmdir()
        link.rmdir()
    link.unlink(missing_ok=True)
    link.symlink_to(target)
    before = files_under(elsewhere)

    with pytest.raises(rm.ConfigError, match="outside the output directory"):
        job(root, out, write_audio="wav", **{option: True})

    assert files_under(elsewhere) == before
    assert link.is_symlink()
    assert not (out / "_job.lock").exists()


# -- 4. two names for one file, missing entries --------------------------------------------


def test_a_file_reached_by_several_names_runs_once_under_the_first(tmp_path: Path) -> None:
    root = tmp_path / "in"
    wav(root / "a.wav")
    (root / "link.wav").symlink_to(root / "a.wav")
    (root / "sub").mkdir()
    (root / "sub" / "again.wav").symlink_to(root / "a.wav")
    os.link(root / "a.wav", root / "sub" / "hard.wav")
    wav(tmp_path / "elsewhere.wav")
    (root / "outside.wav").symlink_to(tmp_path / "elsewhere.wav")  # a link keeps its name
    (root / "sub" / "up").symlink_to(root)  # a loop
    (root / "twin").symlink_to(root / "sub")  # a folder by a second name

    for spec in (root, root / "**" / "*.wav"):
        out = tmp_path / f"out-{len(str(spec))}"
        result, _ = job(spec, out)
        assert (result.exit_code, result.items_done, result.items_failed) == (0, 2, 5), spec
        assert ids_once(out, "vad") == ["a.wav", "outside.wav"]
        errors = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
        assert sorted(e["item_id"] for e in errors) == [
            "link.wav", "sub/again.wav", "sub/hard.wav", "twin/again.wav", "twin/hard.wav"
        ]  # fmt: skip
        assert all("the same file as an item listed before it" in e["error"] for e in errors)


def test_list_entries_with_one_base_name_get_distinct_ids(tmp_path: Path) -> None:
    """A list file is read as a stream, so an entry's id is the entry as written."""
    x, y = wav(tmp_path / "x" / "a.wav", seed=1), wav(tmp_path / "y" / "a.wav", seed=2)
    wav(tmp_path / "z" / "b.wav", seed=3)
    listing = tmp_path / "inputs.txt"
    listing.write_text(f"{x}\n{y}\n{tmp_path / 'z' / 'b.wav'}\n")

    result, _ = job(listing, tmp_path / "out")

    assert (result.exit_code, result.items_done) == (0, 3)
    expected = sorted([x.as_posix(), y.as_posix(), (tmp_path / "z" / "b.wav").as_posix()])
    assert ids_once(tmp_path / "out", "pcm16") == expected


def test_a_missing_or_repeated_list_entry_is_recorded_and_the_rest_run(tmp_path: Path) -> None:
    wav(tmp_path / "in" / "a.wav", seed=1)
    wav(tmp_path / "in" / "b.wav", seed=2)
    listing = tmp_path / "inputs.txt"
    listing.write_text("in/a.wav\nin/gone.wav\nin/b.wav\nin/a.wav\n")
    out = tmp_path / "out"

    result, _ = job(listing, out)

    assert (result.exit_code, result.items_done, result.items_failed) == (0, 2, 2)
    assert ids_once(out, "pcm16") == ["in/a.wav", "in/b.wav"]
    recorded = {(e["item_id"], e["error_type"]): e["error"] for e in errors(out)}
    assert recorded == {
        ("in/gone.wav", "InputError"): f"{listing}:2: no such file 'in/gone.wav'",
        ("in/a.wav", "InputError"): f"{listing}:4: lists 'in/a.wav' again (first on line 1)",
    }
    assert json.loads((out / "metrics.json").read_text())["items_failed"] == 2

    wav(tmp_path / "in" / "gone.wav", seed=3)  # the missing file appears: resume runs it
    again, _ = job(listing, out, resume=True)
    assert (again.items_done, again.items_skipped, again.items_failed) == (1, 2, 1)
    assert ids_once(out, "pcm16") == ["in/a.wav", "in/b.wav", "in/gone.wav"]


# -- 6. one run at a time per OUTDIR -------------------------------------------------------


def _lock(out: Path, pid: int) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    lock = out / "_job.lock"
    lock.write_text(json.dumps({"pid": pid, "host": socket.gethostname(), "started": 0.0}))
    return lock


def test_a_run_on_a_locked_outdir_is_refused_naming_the_lock_file(tmp_path: Path) -> None:
    wav(tmp_path / "in" / "a.wav")
    out = tmp_path / "out"
    lock = _lock(out, os.getpid())  # a live process holds it

    with pytest.raises(rm.ConfigError, match="_job.lock") as raised:
        job(tmp_path / "in", out)

    assert str(lock) in str(raised.value)
    assert sorted(p.name for p in out.iterdir()) == ["_job.lock"]  # untouched, lock kept


def test_two_runs_at_once_on_one_outdir_write_each_id_once(tmp_path: Path) -> None:
    for n in range(6):
        wav(tmp_path / "in" / f"f{n}.wav", seed=n)
    out = tmp_path / "out"
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def one_run() -> None:
        start.wait()
        try:
            outcomes.append(job(tmp_path / "in", out, shard_rows=1)[0].exit_code)
        except rm.ConfigError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=one_run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert sorted(map(type, outcomes), key=str) == sorted([int, rm.ConfigError], key=str)
    for sink in SINKS:
        assert ids_once(out, sink) == [f"f{n}.wav" for n in range(6)]
    assert not (out / "_job.lock").exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_message(tmp_path: Path) -> None:
    wav(tmp_path / "in" / "a.wav")
    out = tmp_path / "out"
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid names no process now
    lock = _lock(out, dead.pid)

    result, messages = job(tmp_path / "in", out)

    assert result.exit_code == 0
    assert f"taking over the lock {lock}" in messages
    assert not lock.exists()
    assert ids_once(out, "pcm16") == ["a.wav"]


def test_a_lock_of_a_killed_process_not_yet_reaped_is_taken_over(tmp_path: Path) -> None:
    wav(tmp_path / "in" / "a.wav")
    out = tmp_path / "out"
    killed = subprocess.Popen(["sleep", "60"])
    try:
        killed.kill()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{killed.pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z":
            assert time.monotonic() < deadline
            time.sleep(0.01)  # a zombie: it exists until this process reaps it
        lock = _lock(out, killed.pid)

        result, messages = job(tmp_path / "in", out)

        assert result.exit_code == 0
        assert f"taking over the lock {lock}" in messages
    finally:
        killed.wait()


def test_the_lock_is_released_when_a_run_ends_or_is_refused(tmp_path: Path) -> None:
    wav(tmp_path / "in" / "a.wav")
    out = tmp_path / "out"
    assert job(tmp_path / "in", out)[0].exit_code == 0
    assert not (out / "_job.lock").exists()
    with pytest.raises(rm.ConfigError, match="is not empty"):
        job(tmp_path / "in", out)
    assert not (out / "_job.lock").exists()
    assert job(tmp_path / "in", out, resume=True)[0].items_skipped == 1
