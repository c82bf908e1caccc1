"""The dataset job end to end: ``remotemedia-ray run`` and :func:`run_job` over real files.

Audio is generated here (numpy + soundfile) into ``tmp_path``; outputs are read
back with pyarrow. Tests about file handling run the job with
``runtime="local"``; the main path, resume, many small files and Ctrl-C run on
Ray (the shared ``ray_session``, or an embedded Ray in a subprocess).
"""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from helpers import (
    ids_exactly_once,
    processes_mentioning,
    ray_temp_dir,
    row_samples,
    run_cli,
    shard_files,
    sink_table,
)

import remotemedia_ray as rm
from remotemedia_ray.dataset import JobConfig, JobResult, run_job

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "speech_prep.json"
CLI = Path(sys.executable).parent / "remotemedia-ray"
SINKS = ("pcm16", "vad")
SEGMENT = pa.struct(
    [
        ("start_ms", pa.float64()),
        ("end_ms", pa.float64()),
        ("energy_db", pa.float64()),
        ("confidence", pa.float64()),
    ]
)

pytestmark = pytest.mark.slow


# -- test data --------------------------------------------------------------------------


@dataclass(frozen=True)
class AudioSpec:
    """One generated input file."""

    rel: str
    rate: int
    channels: int
    subtype: str
    seconds: float


TREE = (
    AudioSpec("one.wav", 16000, 1, "PCM_16", 1.30),
    AudioSpec("a/two.flac", 44100, 2, "PCM_16", 0.70),
    AudioSpec("a/b/three.ogg", 48000, 1, "VORBIS", 0.90),
    AudioSpec("a/four.wav", 22050, 2, "FLOAT", 1.10),
    AudioSpec("b/five.flac", 32000, 1, "PCM_24", 0.55),
    AudioSpec("b/six.wav", 24000, 2, "PCM_32", 0.80),
    AudioSpec("b/seven 7.WAV", 48000, 2, "PCM_16", 0.40),
)
"""wav/flac/ogg, mono and stereo, 16-48 kHz, integer and float samples, nested folders."""

_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


def tone(rate: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    """Speech-like bursts: a tone switched on for part of the file over faint noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(rate * seconds)) / rate
    on = (t > 0.05 * (seed % 3)) & (t < 0.1 + 0.5 * seconds)
    columns = []
    for channel in range(channels):
        freq = 180.0 + 37.0 * seed + 110.0 * channel
        x = 0.4 / (channel + 1) * np.sin(2 * np.pi * freq * t) * on
        columns.append(x + 1e-3 * rng.standard_normal(t.size))
    return np.stack(columns, axis=1)


def write_audio(path: Path, spec: AudioSpec, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = tone(spec.rate, spec.seconds, spec.channels, seed)
    fmt = _FORMATS[path.suffix.lower()]
    sf.write(path, samples, spec.rate, subtype=spec.subtype, format=fmt)


def write_tree(root: Path, specs: tuple[AudioSpec, ...] = TREE) -> list[str]:
    """Write ``specs`` under ``root``; returns the item ids (relative paths)."""
    for seed, spec in enumerate(specs):
        write_audio(root / spec.rel, spec, seed)
    return sorted(spec.rel for spec in specs)


def wav_bytes(samples: np.ndarray, rate: int) -> bytes:
    """A 16-bit PCM WAV file (header by hand: thousands of files in a second)."""
    data = samples.astype("<i2").tobytes()
    channels = 1 if samples.ndim == 1 else samples.shape[1]
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(data),
        b"WAVE",
        b"fmt ",
        16,
        1,
        channels,
        rate,
        rate * channels * 2,
        channels * 2,
        16,
        b"data",
        len(data),
    )
    return header + data


def decode(path: Path) -> rm.AudioBuffer:
    """A file decoded as the job's reader documents: 16/32-bit PCM stay integer, else float32."""
    dtype = {"PCM_16": "int16", "PCM_32": "int32"}.get(sf.info(path).subtype, "float32")
    samples, rate = sf.read(path, dtype=dtype, always_2d=True)
    return rm.AudioBuffer.from_numpy(samples, rate)


def reference_outputs(buffers: dict[str, rm.AudioBuffer]) -> dict[str, dict[str, Any]]:
    """``rm.Pipeline(speech_prep, runtime="local")`` on already decoded audio."""
    with rm.Pipeline(MANIFEST, runtime="local") as pipeline:
        return {
            out.item_id: dict(out)
            for out in pipeline.map(list(buffers.values()), ids=list(buffers))
        }


# -- reading outputs back ---------------------------------------------------------------


def done_records(outdir: Path) -> list[dict[str, Any]]:
    """The batch records of the done log (``_done/*.jsonl``, oldest first)."""
    return [
        json.loads(line)
        for segment in sorted((outdir / "_done").glob("*.jsonl"))
        for line in segment.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def finished_shards(outdir: Path) -> list[dict[str, Any]]:
    """The records of the done log so far (none while it is missing)."""
    try:
        return done_records(outdir)
    except (FileNotFoundError, json.JSONDecodeError):
        return []


def leftover_temporaries(outdir: Path) -> list[Path]:
    return [p for p in outdir.rglob("*") if p.name.startswith(".part-") or ".tmp" in p.name]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def job(input_spec: Path | str, outdir: Path, **options: Any) -> tuple[JobResult, str]:
    """Run the job in this process; returns its result and what it printed."""
    options.setdefault("runtime", "local")
    stream = io.StringIO()
    config = JobConfig(manifest=MANIFEST, input=str(input_spec), outdir=outdir, **options)
    return run_job(config, stream=stream), stream.getvalue()


@rm.register_node("TestJobPandasProbe")
class PandasProbe(rm.NodeExecutor):
    """Says whether its worker had imported pandas when it started, and has now."""

    def initialize(self, params: Any) -> None:
        self.at_start = "pandas" in sys.modules

    def execute(self, input: Any) -> Any:
        return {"at_start": self.at_start, "now": "pandas" in sys.modules}


# -- the main path ----------------------------------------------------------------------


def test_speech_prep_over_a_folder_on_ray_equals_the_local_pipeline(
    ray_session: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = write_tree(tmp_path / "in")
    buffers = {i: decode(tmp_path / "in" / i) for i in ids}
    outdir = tmp_path / "out"

    def decoded_on_the_driver(*args: object, **kwargs: object) -> None:
        raise AssertionError("an input was decoded on the driver")

    monkeypatch.setattr(sf, "read", decoded_on_the_driver)  # Ray workers are not patched
    monkeypatch.setattr(sf, "info", decoded_on_the_driver)
    code, stdout, _ = run_cli(
        "run", str(MANIFEST), "-i", str(tmp_path / "in"), "-o", str(outdir),
        "--runtime", "ray", "--batch-size", "3", "--shard-rows", "4",
    )  # fmt: skip

    assert code == 0
    summary = stdout.strip().splitlines()[-1]
    assert f"{len(ids)} file(s) done, 0 skipped, 0 failed" in summary
    pcm16, vad = sink_table(outdir, "pcm16"), sink_table(outdir, "vad")
    assert ids_exactly_once(pcm16) == ids
    assert ids_exactly_once(vad) == ids
    assert len(shard_files(outdir, "pcm16")) == 3  # 7 items in batches of 3: a shard a batch

    assert pcm16.schema.field("audio").type == pa.large_binary()
    assert set(pcm16.column("sample_format").to_pylist()) == {"int16"}
    assert set(pcm16.column("sample_rate").to_pylist()) == {16000}
    assert set(pcm16.column("channels").to_pylist()) == {1}
    assert vad.schema.field("segments").type == pa.list_(SEGMENT)

    expected = reference_outputs(buffers)
    for row in pcm16.to_pylist():
        source = buffers[row["id"]]
        got = row_samples(row)
        assert len(got) == round(source.num_frames * 16000 / source.sample_rate)
        want = expected[row["id"]]["pcm16"]
        np.testing.assert_array_equal(got, want.to_numpy().reshape(-1))  # mono
    for row in vad.to_pylist():
        assert row["segments"] == expected[row["id"]]["vad"], row["id"]
    assert any(row["segments"] for row in vad.to_pylist())  # the bursts are found

    metrics = json.loads((outdir / "metrics.json").read_text())
    assert metrics["items"] == len(ids)
    assert metrics["items_failed"] == 0
    durations = sum(b.duration_seconds for b in buffers.values())
    assert metrics["audio_seconds"] == pytest.approx(durations, rel=1e-9)
    assert metrics["realtime_factor"] > 0
    assert {n["node_id"] for n in metrics["nodes"]} >= {"job:read", "mono", "resample", "vad"}
    done = {k for r in done_records(outdir) for k in r["items"]}
    assert done == set(ids)
    assert not (outdir / "errors.jsonl").exists()


def _list_file(folder: Path, ids: list[str]) -> Path:
    lines = ["# inputs, relative to this file", ""]
    lines += [f"./{i}" if n % 2 else i for n, i in enumerate(ids)]
    path = folder / "inputs.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _parquet_dataset(folder: Path, buffers: dict[str, rm.AudioBuffer]) -> Path:
    """One Parquet file per sample format (a column has one type); one with a plain list."""
    folder.mkdir()
    by_format: dict[rm.AudioFormat, list[str]] = {}
    for item_id, buffer in buffers.items():
        by_format.setdefault(buffer.format, []).append(item_id)
    for fmt, ids in by_format.items():
        table = rm.audio_table(ids, [buffers[i] for i in ids])
        if fmt is rm.AudioFormat.F32:  # a plain list<float> column, not large_list
            audio = pa.array([buffers[i].to_numpy().ravel() for i in ids], pa.list_(pa.float32()))
            table = table.set_column(1, "audio", audio)
        pq.write_table(table, folder / f"{fmt.value}.parquet")
    return folder


def test_glob_list_file_and_parquet_inputs_give_the_folder_outputs(tmp_path: Path) -> None:
    root = tmp_path / "in"
    ids = write_tree(root)
    buffers = {i: decode(root / i) for i in ids}
    assert len({b.format for b in buffers.values()}) == 3  # int16, int32 and float32 files
    inputs: dict[str, Callable[[], Path | str]] = {
        "glob": lambda: f"{root}/**/*.*",
        "list file": lambda: _list_file(root, ids),  # after the glob: it would match it
        "parquet": lambda: _parquet_dataset(tmp_path / "pq", buffers),
    }

    result, _ = job(root, tmp_path / "dir")
    assert result.exit_code == 0
    expected = {sink: sink_table(tmp_path / "dir", sink) for sink in SINKS}
    assert ids_exactly_once(expected["pcm16"]) == ids
    for name, make_input in inputs.items():
        outdir = tmp_path / name.replace(" ", "_")
        result, _ = job(make_input(), outdir)
        assert result.exit_code == 0, name
        assert result.items_done == len(ids), name
        for sink in SINKS:
            table = sink_table(outdir, sink)
            assert ids_exactly_once(table) == ids, (name, sink)
            assert table.equals(expected[sink]), (name, sink)


# -- bad inputs -------------------------------------------------------------------------


def _tree_with_bad_files(root: Path) -> list[str]:
    ids = write_tree(root, TREE[:3])
    (root / "x.wav").write_bytes(np.random.default_rng(7).bytes(4000))
    (root / "y.flac").write_bytes(b"")
    return ids


def test_corrupt_and_empty_files_are_recorded_and_the_rest_complete(tmp_path: Path) -> None:
    good = _tree_with_bad_files(tmp_path / "in")

    result, _ = job(tmp_path / "in", tmp_path / "out")

    assert result.exit_code == 0
    assert (result.items_done, result.items_failed) == (len(good), 2)
    errors = [
        json.loads(line) for line in (tmp_path / "out" / "errors.jsonl").read_text().splitlines()
    ]
    assert sorted(e["item_id"] for e in errors) == ["x.wav", "y.flac"]
    for entry in errors:
        assert Path(entry["path"]) == (tmp_path / "in" / entry["item_id"]).resolve()
        assert entry["node"] == "job:read"
        assert "BytesIO" not in entry["error"]
        assert entry["item_id"] in entry["error"]  # the message names the file
    for sink in SINKS:
        assert ids_exactly_once(sink_table(tmp_path / "out", sink)) == good
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert (metrics["items"], metrics["items_failed"]) == (len(good), 2)


@pytest.mark.parametrize(("max_errors", "exit_code"), [(0, 3), (1, 3), (2, 0)])
def test_max_errors_sets_exit_code_3_when_exceeded(
    tmp_path: Path, max_errors: int, exit_code: int
) -> None:
    _tree_with_bad_files(tmp_path / "in")
    code, stdout, _ = run_cli(
        "run", str(MANIFEST), "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
        "--runtime", "local", "--max-errors", str(max_errors),
    )  # fmt: skip
    assert code == exit_code
    assert ("stopped: more than" in stdout) == (exit_code == 3)


def test_the_job_s_fused_workers_never_import_pandas(ray_session: None, tmp_path: Path) -> None:
    # pyarrow imports pandas (0.15-0.5 s) the first time a process calls pa.array or
    # Array.to_numpy; the workers would pay it before their first batch is written
    write_tree(tmp_path / "in")
    spec = json.loads(MANIFEST.read_text())
    spec["nodes"].append({"id": "probe", "node_type": "TestJobPandasProbe"})
    spec["connections"].append({"from": "resample", "to": "probe"})
    manifest = tmp_path / "probe.json"
    manifest.write_text(json.dumps(spec))
    config = JobConfig(
        manifest=manifest, input=str(tmp_path / "in"), outdir=tmp_path / "out",
        runtime="ray", batch_size=1, progress="off",
    )  # fmt: skip
    result = run_job(config, stream=io.StringIO())
    assert (result.exit_code, result.items_done) == (0, len(TREE))
    seen = [
        json.loads(v) for v in sink_table(tmp_path / "out", "probe").column("value").to_pylist()
    ]
    fresh = [s for s in seen if not s["at_start"]]  # a worker Ray had not used before
    assert len(fresh) >= len(TREE) // 2, seen
    assert not any(s["now"] for s in fresh), seen  # items after the first batch's write


def test_a_run_whose_every_item_failed_exits_4(tmp_path: Path) -> None:
    root = tmp_path / "in"
    root.mkdir()
    for i in range(3):
        (root / f"bad{i}.wav").write_bytes(b"junk")
    out = tmp_path / "out"
    args = ("run", str(MANIFEST), "-i", str(root), "-o", str(out), "--runtime", "local")
    code, stdout, _ = run_cli(*args)
    assert code == 4
    assert "3 failed" in stdout and "every item failed" in stdout and "errors.jsonl" in stdout
    assert len((out / "errors.jsonl").read_text().splitlines()) == 3
    write_audio(root / "ok.wav", AudioSpec("ok.wav", 16000, 1, "PCM_16", 0.2), seed=1)
    code, stdout, _ = run_cli(*args, "--resume")  # one finishes: the others are bad files
    assert code == 0 and "1 file(s) done" in stdout and "3 failed" in stdout
    (root / "bad3.wav").write_bytes(b"junk")
    code, stdout, _ = run_cli(*args, "--resume")  # ok.wav finished in the earlier run
    assert code == 0 and "1 skipped" in stdout and "4 failed" in stdout
    (root / "ok.wav").unlink()
    code, stdout, _ = run_cli(*args, "--resume")  # every input listed now failed
    assert code == 4 and "0 skipped" in stdout and "4 failed" in stdout


def test_max_errors_stops_handing_out_items_even_while_no_batch_writes(tmp_path: Path) -> None:
    # Batches whose items all fail write nothing; the limit must still stop the run.
    root = tmp_path / "in"
    root.mkdir()
    for i in range(40):
        (root / f"bad{i:02}.wav").write_bytes(b"junk")
    write_audio(root / "zz.wav", AudioSpec("zz.wav", 16000, 1, "PCM_16", 0.2), seed=1)
    result, _ = job(root, tmp_path / "out", max_errors=2, shard_rows=4)
    assert result.exit_code == 3
    assert 2 < result.items_failed <= 8  # the batch that crossed it, and at most one in flight
    assert result.items_done == 0  # zz.wav, listed last, never ran
    errors = (tmp_path / "out" / "errors.jsonl").read_text().splitlines()
    assert len(errors) == result.items_failed


def test_an_output_the_writer_cannot_take_fails_alone_and_the_batch_is_written(
    tmp_path: Path,
) -> None:
    root = tmp_path / "in"
    root.mkdir()
    x = tone(16000, 0.2, 1, seed=3)
    for i in range(5):
        sf.write(root / f"good{i}.wav", x, 16000, subtype="PCM_16")
    sf.write(root / "ch12.wav", np.repeat(x, 12, axis=1), 16000, subtype="PCM_16")
    manifest_path = tmp_path / "convert.json"
    manifest_path.write_text(
        json.dumps(
            {
                "version": "v1",
                "nodes": [
                    {"id": "pcm", "node_type": "FormatConverterNode",
                     "params": {"target_format": "i16"}}
                ],
                "connections": [],
            }
        )
    )  # fmt: skip
    for options in ({"write_audio": "flac"}, {"formats": ["hf"]}):
        out = tmp_path / f"out-{len(options)}-{next(iter(options))}"
        config = JobConfig(
            manifest=manifest_path, input=str(root), outdir=out, runtime="local", **options
        )
        result = run_job(config, stream=io.StringIO())
        assert (result.items_done, result.items_failed) == (5, 1), options
        (entry,) = [json.loads(line) for line in (out / "errors.jsonl").read_text().splitlines()]
        assert entry["item_id"] == "ch12.wav" and entry["node"] == "job:write"
        assert "12-channel 16000 Hz audio as FLAC, which holds at most 8 channels" in entry["error"]
        assert not leftover_temporaries(out)


def test_thousands_of_tiny_files_are_each_processed_once_on_ray(
    ray_session: None, tmp_path: Path
) -> None:
    root = tmp_path / "in"
    rng = np.random.default_rng(3)
    ids = []
    for n in range(2000):
        folder = root / f"d{n // 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        frames = 160 + 16 * (n % 11)  # 10-20 ms at 16 kHz
        (folder / f"t{n:04d}.wav").write_bytes(
            wav_bytes((3000 * rng.standard_normal(frames)).astype(np.int16), 16000)
        )
        ids.append(f"{folder.name}/t{n:04d}.wav")
    (root / "d00" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")

    result, _ = job(root, tmp_path / "out", runtime="ray", batch_size=250, shard_rows=300)

    assert result.exit_code == 0
    assert (result.items_done, result.items_failed) == (2000, 1)
    for sink in SINKS:
        assert ids_exactly_once(sink_table(tmp_path / "out", sink)) == sorted(ids)
    records = done_records(tmp_path / "out")
    assert sum(len(r["items"]) for r in records) == 2000
    assert len(records) == 9  # ceil(2001 / 250): a shard a batch, one item failed
    (error,) = (tmp_path / "out" / "errors.jsonl").read_text().splitlines()
    assert json.loads(error)["item_id"] == "d00/broken.wav"


# -- resume and overwrite ---------------------------------------------------------------


def test_resume_after_a_finished_run_skips_everything_on_ray(
    ray_session: None, tmp_path: Path
) -> None:
    ids = write_tree(tmp_path / "in", TREE[:4])
    outdir = tmp_path / "out"
    first, _ = job(tmp_path / "in", outdir, runtime="ray", batch_size=2, shard_rows=3)
    assert first.exit_code == 0
    before = snapshot(outdir / "pcm16") | snapshot(outdir / "vad")

    again, _ = job(tmp_path / "in", outdir, runtime="ray", batch_size=2, resume=True)

    assert again.exit_code == 0
    assert (again.items_done, again.items_skipped, again.items_failed) == (0, len(ids), 0)
    assert "0 file(s) done, 4 skipped" in again.summary
    assert snapshot(outdir / "pcm16") | snapshot(outdir / "vad") == before
    assert json.loads((outdir / "metrics.json").read_text())["items"] == 0


def test_resume_reruns_exactly_the_changed_file_and_keeps_one_row_per_id(tmp_path: Path) -> None:
    root = tmp_path / "in"
    ids = write_tree(root, TREE[:4])
    outdir = tmp_path / "out"
    assert job(root, outdir)[0].exit_code == 0
    changed = TREE[0]
    write_audio(root / changed.rel, AudioSpec(changed.rel, 16000, 1, "PCM_16", 0.6), seed=42)

    result, _ = job(root, outdir, resume=True)

    assert result.exit_code == 0
    assert (result.items_done, result.items_skipped) == (1, len(ids) - 1)
    new = reference_outputs({changed.rel: decode(root / changed.rel)})[changed.rel]
    # Each id must have one row, the one of its current content: a resumed run's
    # outputs equal an uninterrupted run's (job.py's docstring).
    pcm16 = sink_table(outdir, "pcm16")
    rows = [r for r in pcm16.to_pylist() if r["id"] == changed.rel]
    assert [len(row_samples(r)) for r in rows] == [new["pcm16"].num_frames]
    assert ids_exactly_once(pcm16) == ids
    assert ids_exactly_once(sink_table(outdir, "vad")) == ids


def test_resume_reruns_the_items_that_failed(tmp_path: Path) -> None:
    root = tmp_path / "in"
    good = _tree_with_bad_files(root)
    outdir = tmp_path / "out"
    assert job(root, outdir)[0].items_failed == 2
    write_audio(root / "x.wav", AudioSpec("x.wav", 16000, 1, "PCM_16", 0.5), seed=9)  # fixed

    result, _ = job(root, outdir, resume=True)

    assert (result.items_done, result.items_skipped, result.items_failed) == (1, len(good), 1)
    errors = (outdir / "errors.jsonl").read_text().splitlines()
    assert [json.loads(e)["item_id"] for e in errors] == ["y.flac"]
    assert ids_exactly_once(sink_table(outdir, "pcm16")) == sorted([*good, "x.wav"])


def test_resume_with_a_changed_manifest_keeps_no_stale_outputs(tmp_path: Path) -> None:
    root = tmp_path / "in"
    ids = write_tree(root, TREE[:3])
    outdir = tmp_path / "out"
    assert job(root, outdir)[0].exit_code == 0
    data = json.loads(MANIFEST.read_text())
    (resample,) = (n for n in data["nodes"] if n["id"] == "resample")
    resample["params"]["target_rate"] = 8000
    changed = tmp_path / "speech_prep_8k.json"
    changed.write_text(json.dumps(data))
    config = JobConfig(
        manifest=changed, input=str(root), outdir=outdir, runtime="local", resume=True
    )

    try:
        result = run_job(config, stream=io.StringIO())
    except rm.ConfigError:
        return  # refusing to resume another manifest's run is a right answer too
    assert result.exit_code == 0
    pcm16 = sink_table(outdir, "pcm16")
    assert ids_exactly_once(pcm16) == ids
    assert set(pcm16.column("sample_rate").to_pylist()) == {8000}, "outputs of the old manifest"


def test_a_nonempty_outdir_needs_resume_or_overwrite(tmp_path: Path) -> None:
    root = tmp_path / "in"
    ids = write_tree(root, TREE[:3])
    outdir = tmp_path / "out"
    assert job(root, outdir)[0].exit_code == 0
    before = snapshot(outdir)

    code, _, stderr = run_cli(
        "run", str(MANIFEST), "-i", str(root), "-o", str(outdir), "--runtime", "local"
    )

    assert code == 1
    assert str(outdir) in stderr and "--resume" in stderr and "--overwrite" in stderr
    assert snapshot(outdir) == before

    (root / TREE[0].rel).unlink()
    remaining = [i for i in ids if i != TREE[0].rel]
    result, _ = job(root, outdir, overwrite=True)
    assert result.exit_code == 0
    assert (result.items_done, result.items_skipped) == (len(remaining), 0)
    for sink in SINKS:
        assert ids_exactly_once(sink_table(outdir, sink)) == remaining
    assert {k for r in done_records(outdir) for k in r["items"]} == set(remaining)
    old_shards = {Path(name).name for name in before if name.startswith("pcm16/")}
    assert not old_shards & {p.name for p in shard_files(outdir, "pcm16")}


def test_an_outdir_inside_the_input_folder_is_not_read_back_as_input(tmp_path: Path) -> None:
    root = tmp_path / "data"
    ids = write_tree(root, TREE[:3])
    outdir = root / "prepared"
    assert job(root, outdir)[0].exit_code == 0

    result, _ = job(root, outdir, resume=True)  # now data/ holds Parquet shards too

    assert result.exit_code == 0
    assert (result.items_done, result.items_skipped) == (0, len(ids))


def test_resume_keeps_and_names_the_items_whose_input_is_gone(tmp_path: Path) -> None:
    root = tmp_path / "in"
    ids = write_tree(root, TREE[:4])
    outdir = tmp_path / "out"
    assert job(root, outdir)[0].exit_code == 0
    gone = TREE[1].rel
    (root / gone).unlink()

    result, printed = job(root, outdir, resume=True)

    assert result.exit_code == 0
    assert (result.items_done, result.items_skipped, result.items_unlisted) == (0, 3, 1)
    assert f"1 item(s) an earlier run finished are not in this input ('{gone}')" in printed
    assert "--overwrite" in printed
    assert "1 earlier item(s) no longer in the input kept" in result.summary
    for sink in SINKS:
        assert ids_exactly_once(sink_table(outdir, sink)) == ids

    again, printed = job(root, outdir, resume=True)  # still said: the outputs are still there

    assert (again.items_skipped, again.items_unlisted) == (3, 1)
    assert repr(gone) in printed


# -- Ctrl-C and resume ------------------------------------------------------------------


def test_ctrl_c_keeps_finished_shards_and_resume_completes_them(
    ray_session: None, tmp_path: Path
) -> None:
    root = tmp_path / "in"
    specs = tuple(AudioSpec(f"s{n % 3}/f{n:02d}.wav", 48000, 2, "PCM_16", 4.0) for n in range(40))
    ids = write_tree(root, specs)
    reference = tmp_path / "reference"
    assert job(root, reference)[0].exit_code == 0
    outdir = tmp_path / "out"
    args = [
        str(CLI), "run", str(MANIFEST), "-i", str(root), "-o", str(outdir),
        "--shard-rows", "4", "--batch-size", "2", "--max-in-flight", "1", "--quiet",
    ]  # fmt: skip

    with ray_temp_dir() as ray_tmp, open(tmp_path / "stderr.txt", "w+b") as stderr:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env.update(RAY_AUTH_MODE="disabled", RAY_TMPDIR=ray_tmp)
        proc = subprocess.Popen(
            args, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True
        )
        try:
            deadline = time.monotonic() + 300
            while not finished_shards(outdir):
                assert proc.poll() is None, f"the job ended before Ctrl-C: {_text(stderr)}"
                assert time.monotonic() < deadline, "no shard finished in 300 s"
                time.sleep(0.02)
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the whole foreground group
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail("the job did not exit within 60 s of SIGINT")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        assert code == 130, _text(stderr)
        assert "--resume" in _text(stderr)
        deadline = time.monotonic() + 30
        while processes_mentioning(ray_tmp) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not processes_mentioning(ray_tmp), "the embedded Ray outlived the job"

    assert not leftover_temporaries(outdir)
    records = done_records(outdir)
    done_ids = {k for r in records for k in r["items"]}
    assert 0 < len(done_ids) < len(ids), "the interrupt came too late to test anything"
    for record in records:
        for sink in SINKS:
            assert (outdir / sink / record["shard"]).is_file()

    result, _ = job(root, outdir, runtime="ray", resume=True, batch_size=4, shard_rows=16)

    assert result.exit_code == 0
    assert result.items_skipped == len(done_ids)
    assert result.items_done == len(ids) - len(done_ids)
    listed = {r["shard"] for r in done_records(outdir)}
    for sink in SINKS:
        assert {p.name for p in shard_files(outdir, sink)} == listed  # no orphans left
        table = sink_table(outdir, sink)
        assert ids_exactly_once(table) == ids
        assert table.equals(sink_table(reference, sink)), sink


def _text(handle: BinaryIO) -> str:
    handle.flush()
    handle.seek(0)
    return handle.read().decode(errors="replace")[-3000:]


# -- audio files and output paths -------------------------------------------------------


def _audio_files(folder: Path) -> dict[str, Path]:
    """``{relative path without the audio suffix: file}`` under ``folder``."""
    return {
        p.relative_to(folder).with_suffix("").as_posix(): p
        for p in folder.rglob("*")
        if p.suffix in (".flac", ".wav")
    }


def _audio_file_for(files: dict[str, Path], item_id: str) -> Path:
    """The file written for an item: its id with the suffix replaced or appended."""
    stem = Path(item_id).with_suffix("").as_posix()
    found = files.get(item_id) or files.get(stem)
    assert found is not None, f"no audio file for {item_id!r} among {sorted(files)}"
    return found


def test_compression_none_writes_the_same_rows_uncompressed(tmp_path: Path) -> None:
    root = tmp_path / "in"
    write_tree(root)
    plain, _ = job(root, tmp_path / "none", compression="none")
    packed, _ = job(root, tmp_path / "zstd")
    assert plain.exit_code == packed.exit_code == 0
    for sink in ("pcm16", "vad"):
        for shard in (tmp_path / "none" / sink).glob("*.parquet"):
            meta = pq.ParquetFile(shard).metadata.row_group(0)
            assert {meta.column(i).compression for i in range(meta.num_columns)} == {"UNCOMPRESSED"}
        rows = sink_table(tmp_path / "none", sink).sort_by("id")
        assert rows.equals(sink_table(tmp_path / "zstd", sink).sort_by("id"))


def test_write_audio_flac_mirrors_the_input_tree(tmp_path: Path) -> None:
    root = tmp_path / "in"
    specs = tuple(s for s in TREE if " " not in s.rel)
    ids = write_tree(root, specs)

    result, _ = job(root, tmp_path / "out", write_audio="flac")

    assert result.exit_code == 0
    files = _audio_files(tmp_path / "out" / "pcm16.audio")
    assert len(files) == len(ids)
    assert not (tmp_path / "out" / "vad.audio").exists()
    assert not _audio_files(tmp_path / "out" / "pcm16")  # the Parquet folder holds Parquet
    for row in sink_table(tmp_path / "out", "pcm16").to_pylist():
        path = _audio_file_for(files, row["id"])
        assert path.suffix == ".flac"
        rel = path.relative_to(tmp_path / "out" / "pcm16.audio")
        assert rel.parent.as_posix() == Path(row["id"]).parent.as_posix()
        samples, rate = sf.read(path, dtype="int16")
        assert rate == 16000
        np.testing.assert_array_equal(samples, row_samples(row))
    assert not leftover_temporaries(tmp_path / "out")


def test_write_audio_keeps_inputs_that_differ_only_in_extension_apart(tmp_path: Path) -> None:
    root = tmp_path / "in"
    write_audio(root / "take.wav", AudioSpec("take.wav", 16000, 1, "PCM_16", 0.5), seed=1)
    write_audio(root / "take.flac", AudioSpec("take.flac", 16000, 1, "PCM_16", 0.3), seed=2)

    result, _ = job(root, tmp_path / "out", write_audio="wav")

    assert result.exit_code == 0
    written = sorted(p.name for p in (tmp_path / "out" / "pcm16.audio").rglob("*.wav"))
    assert len(written) == 2, f"two inputs, audio files {written}"


def test_unsafe_item_ids_never_write_outside_outdir(tmp_path: Path) -> None:
    work = tmp_path / "work"
    spec = AudioSpec("outside.wav", 16000, 1, "PCM_16", 0.3)
    write_audio(work / "outside.wav", spec, seed=5)
    write_audio(work / "lists" / "inside.wav", spec, seed=6)
    list_file = work / "lists" / "inputs.txt"
    list_file.write_text(f"../outside.wav\ninside.wav\n{work / 'outside.wav'}\n")
    buffer = decode(work / "outside.wav")
    deep = "../" * 30 + "rmjob-escape"
    evil = ["/etc/evil", "../../x", "..", "a/../../../y", "..\\..\\win", "./.hidden", deep]
    (work / "pq").mkdir()
    pq.write_table(rm.audio_table(evil, [buffer] * len(evil)), work / "pq" / "rows.parquet")
    before = {p for p in tmp_path.rglob("*")}
    etc_before = set(os.listdir("/etc"))

    for n, (spec_in, fmt) in enumerate([(list_file, "flac"), (work / "pq", "wav")]):
        outdir = work / "lists" / f"out{n}"
        try:
            result: JobResult | None = job(spec_in, outdir, write_audio=fmt)[0]
        except rm.RemoteMediaError:
            result = None  # refusing an unsafe id is a right answer too
        if result is not None:
            assert result.exit_code == 0
            assert list((outdir / "pcm16.audio").rglob(f"*.{fmt}")), "no audio files written"
        new = {p for p in tmp_path.rglob("*")} - before
        escaped = sorted(str(p) for p in new if outdir not in p.parents and p != outdir)
        assert not escaped, f"files written outside {outdir}: {escaped}"
        before |= new
    assert set(os.listdir("/etc")) == etc_before
    for name in ("/etc/evil", "/rmjob-escape"):
        assert not Path(f"{name}.wav").exists() and not Path(f"{name}.flac").exists()


# -- the command line -------------------------------------------------------------------


def test_a_manifest_may_use_any_valid_id_and_never_clashes_with_the_jobs_nodes(
    tmp_path: Path,
) -> None:
    ids = write_tree(tmp_path / "in", TREE[:2])
    manifest = {
        "version": "v1",
        "nodes": [
            {"id": "_read", "node_type": "ChannelMixNode"},
            {"id": "_key", "node_type": "ResampleNode", "params": {"target_rate": 16000}},
            {"id": "_duration", "node_type": "VADNode"},
        ],
        "connections": [{"from": "_read", "to": "_key"}, {"from": "_key", "to": "_duration"}],
    }
    path = tmp_path / "reserved_once.json"
    path.write_text(json.dumps(manifest))
    config = JobConfig(manifest=path, input=str(tmp_path / "in"), outdir=tmp_path / "out",
                       runtime="local")  # fmt: skip

    result = run_job(config, stream=io.StringIO())

    assert (result.exit_code, result.items_done) == (0, len(ids))
    assert ids_exactly_once(sink_table(tmp_path / "out", "_duration")) == ids


def test_a_manifest_cannot_name_the_jobs_internal_node_types(tmp_path: Path) -> None:
    write_tree(tmp_path / "in", TREE[:1])
    internal = ("AudioFileReader", "ContentKey", "AudioDuration")
    for node_type in internal:
        path = tmp_path / f"{node_type}.json"
        path.write_text(
            json.dumps(
                {"version": "v1", "nodes": [{"id": "x", "node_type": node_type}], "connections": []}
            )
        )
        code, stdout, stderr = run_cli(
            "run", str(path), "-i", str(tmp_path / "in"), "-o", str(tmp_path / f"out-{node_type}"),
            "--runtime", "local",
        )  # fmt: skip
        assert code == 1, node_type
        assert stdout == ""
        assert f"unknown node type {node_type!r}" in stderr
        assert "registered types: " in stderr and "ResampleNode" in stderr
        assert not any(name in stderr.split("registered types: ")[1] for name in internal)


def test_parquet_input_with_a_repeated_id_is_refused(tmp_path: Path) -> None:
    buffer = rm.AudioBuffer.from_numpy(tone(16000, 0.2, 1, 0).astype(np.float32), 16000)
    pq.write_table(rm.audio_table(["a", "b", "a"], [buffer] * 3), tmp_path / "rows.parquet")

    code, _, stderr = run_cli(
        "run", str(MANIFEST), "-i", str(tmp_path / "rows.parquet"), "-o", str(tmp_path / "out"),
        "--runtime", "local",
    )  # fmt: skip

    assert code == 1  # a Parquet dataset names its own ids: a repeated one is its mistake
    assert "'a'" in stderr


def test_quiet_prints_no_progress(tmp_path: Path) -> None:
    write_tree(tmp_path / "in", TREE[:2])
    code, stdout, stderr = run_cli(
        "run", str(MANIFEST), "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
        "--runtime", "local", "--quiet",
    )  # fmt: skip
    assert code == 0
    assert "2 file(s) done" in stdout
    assert "files 2/2" not in stderr, stderr


@pytest.mark.usefixtures("ray_session")
def test_fused_and_unfused_jobs_write_the_same_rows(tmp_path: Path) -> None:
    root = tmp_path / "in"
    write_tree(root)
    results = {}
    for fuse in (True, False):
        outdir = tmp_path / f"out-{fuse}"
        result, _ = job(root, outdir, runtime="ray", fuse=fuse)
        assert result.exit_code == 0
        results[fuse] = {
            sink: sink_table(outdir, sink).sort_by("id").to_pylist() for sink in ("pcm16", "vad")
        }
    assert results[True] == results[False]


# -- long files -------------------------------------------------------------------------


def _bursts(rate: int, seconds: float, channels: int, seed: int) -> np.ndarray:
    """Tone bursts of uneven length every ~1.7 s over faint noise: many VAD segments."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(rate * seconds)) / rate
    on = np.sin(2 * np.pi * t / 1.7 + seed) > 0.2 * np.sin(t)
    x = 0.3 * np.sin(2 * np.pi * 230.0 * t) * on
    return np.stack([x / (c + 1) + 1e-3 * rng.standard_normal(t.size) for c in range(channels)], 1)


LONG = (
    AudioSpec("long.wav", 48000, 2, "PCM_16", 26.3),
    AudioSpec("deep/long.flac", 44100, 1, "PCM_24", 19.1),
    AudioSpec("short.wav", 16000, 1, "FLOAT", 2.5),
)


def _write_long(root: Path) -> list[str]:
    for seed, spec in enumerate(LONG):
        path = root / spec.rel
        path.parent.mkdir(parents=True, exist_ok=True)
        samples = _bursts(spec.rate, spec.seconds, spec.channels, seed)
        sf.write(path, samples, spec.rate, subtype=spec.subtype)
    return sorted(spec.rel for spec in LONG)


def _rows(outdir: Path) -> dict[str, list[dict[str, Any]]]:
    return {sink: sink_table(outdir, sink).to_pylist() for sink in SINKS}


@pytest.mark.usefixtures("ray_session")
def test_long_files_in_windows_give_the_whole_file_rows(tmp_path: Path) -> None:
    root = tmp_path / "in"
    ids = _write_long(root)
    whole, _ = job(root, tmp_path / "whole", window_s=None)
    assert whole.exit_code == 0
    expected = _rows(tmp_path / "whole")
    assert [r["id"] for r in expected["vad"]] == ids
    assert all(len(r["segments"]) >= 5 for r in expected["vad"] if r["id"] != "short.wav")

    runs = {
        "local": {"runtime": "local", "window_s": 4.0},
        "ray-fused": {"runtime": "ray", "window_s": 3.3},
        "ray-unfused": {"runtime": "ray", "window_s": 3.3, "fuse": False},
        "local-numpy": {"runtime": "local", "window_s": 5.0, "node_runtime": "cpython"},
    }
    for name, options in runs.items():
        result, _ = job(root, tmp_path / name, **options)
        assert result.exit_code == 0, name
        assert result.audio_seconds == pytest.approx(whole.audio_seconds, rel=1e-12), name
        rows = _rows(tmp_path / name)
        if name == "local-numpy":  # the numpy resampler is another (equally valid) filter
            job(root, tmp_path / "numpy-whole", window_s=None, node_runtime="cpython")
            assert rows == _rows(tmp_path / "numpy-whole")
            continue
        assert rows == expected, name
    metrics = json.loads((tmp_path / "ray-fused" / "metrics.json").read_text())
    assert metrics["audio_seconds"] == pytest.approx(sum(s.seconds for s in LONG), abs=1e-3)


def test_window_seconds_flag(tmp_path: Path) -> None:
    root = tmp_path / "in"
    _write_long(root)
    code, stdout, _ = run_cli(
        "run", str(MANIFEST), "-i", str(root), "-o", str(tmp_path / "out"),
        "--runtime", "local", "--window-seconds", "5", "--quiet",
    )  # fmt: skip
    assert code == 0, stdout
    job(root, tmp_path / "whole", window_s=None)
    assert _rows(tmp_path / "out") == _rows(tmp_path / "whole")
    code, _, stderr = run_cli(
        "run", str(MANIFEST), "-i", str(root), "-o", str(tmp_path / "bad"),
        "--runtime", "local", "--window-seconds", "-1",
    )  # fmt: skip
    assert code == 1 and "--window-seconds must be > 0" in stderr


def test_a_shard_holds_at_most_shard_rows_items_on_either_runtime(
    ray_session: None, tmp_path: Path
) -> None:
    ids = write_tree(tmp_path / "in", TREE[:5])
    for runtime in ("local", "ray"):
        outdir = tmp_path / runtime
        result, _ = job(tmp_path / "in", outdir, runtime=runtime, shard_rows=2)
        assert (result.exit_code, result.items_done) == (0, len(ids))
        sizes = sorted(pq.read_table(f).num_rows for f in shard_files(outdir, "pcm16"))
        assert sizes == [1, 2, 2], runtime


def test_batches_end_at_a_size_in_bytes_on_either_runtime(
    ray_session: None, tmp_path: Path
) -> None:
    """A batch (one shard) holds inputs up to batch_bytes: more short files, fewer long."""
    root = tmp_path / "in"
    root.mkdir()
    rng = np.random.default_rng(3)
    seconds = [0.2, 0.2, 0.2, 0.2, 2.0, 0.2, 0.2]
    for n, length in enumerate(seconds):
        x = (rng.standard_normal(round(16000 * length)) * 3000).astype(np.int16)
        sf.write(root / f"{n}.wav", x, 16000, subtype="PCM_16")
    short = (root / "0.wav").stat().st_size
    for runtime in ("local", "ray"):
        outdir = tmp_path / runtime
        # (--batch-size 10: a corpus this small otherwise gets one-item batches on Ray)
        result, _ = job(root, outdir, runtime=runtime, batch_bytes=2 * short, batch_size=10)
        assert (result.exit_code, result.items_done) == (0, len(seconds))
        shards = [pq.read_table(f).column("id").to_pylist() for f in shard_files(outdir, "pcm16")]
        # two short files fill a batch; the long one ends its batch alone
        assert sorted(sorted(s) for s in shards) == [
            ["0.wav", "1.wav"],
            ["2.wav", "3.wav"],
            ["4.wav"],
            ["5.wav", "6.wav"],
        ], runtime


def test_an_output_without_samples_fails_as_flac_saying_why_and_is_kept_as_wav(
    tmp_path: Path,
) -> None:
    root = tmp_path / "in"
    root.mkdir()
    sf.write(root / "empty.wav", np.zeros((0, 1), np.int16), 16000, subtype="PCM_16")
    write_audio(root / "x.wav", AudioSpec("x.wav", 16000, 1, "PCM_16", 0.2), seed=2)
    manifest_path = tmp_path / "convert.json"
    manifest_path.write_text(
        json.dumps(
            {
                "version": "v1",
                "nodes": [{"id": "pcm", "node_type": "FormatConverterNode",
                           "params": {"target_format": "i16"}}],
                "connections": [],
            }
        )
    )  # fmt: skip
    for fmt, failed in (("flac", 1), ("wav", 0)):
        out = tmp_path / f"out-{fmt}"
        config = JobConfig(
            manifest=manifest_path, input=str(root), outdir=out, runtime="local", write_audio=fmt
        )
        result = run_job(config, stream=io.StringIO())
        assert (result.items_done, result.items_failed) == (2 - failed, failed), fmt
        files = sorted(p.name for p in (out / "pcm.audio").iterdir())
        assert files == ([f"empty.wav.{fmt}"] if not failed else []) + [f"x.wav.{fmt}"]
        for path in (out / "pcm.audio").iterdir():
            assert path.stat().st_size > 0
            sf.info(path)  # every file written is readable
        if failed:
            (entry,) = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
            assert entry["item_id"] == "empty.wav"
            assert "cannot write audio without samples as FLAC" in entry["error"]
