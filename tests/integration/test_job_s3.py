"""``remotemedia-ray run`` against a real S3 server (SeaweedFS, see ``tests/s3server.py``).

The corpus is ``examples/audio`` plus one file that is not audio. Each run is the
CLI in a subprocess with the server's AWS environment; outputs are checked
through pyarrow: one row per good file, the bad one in ``errors.jsonl``, every
shard named by the done log, and the same rows as a local run. One route runs
on Ray (embedded in the CLI); the others use ``--runtime local`` to stay fast.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import soundfile as sf

# tests/ is on sys.path: pytest puts the folder of tests/conftest.py there.
from helpers import row_samples
from s3server import S3Server

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "speech_prep.json"
AUDIO = ROOT / "examples" / "audio"
GOOD = sorted(p.name for p in AUDIO.iterdir() if p.suffix in (".wav", ".flac"))
"""Item ids of the files that decode (paths relative to the input root)."""
BAD = "bad.wav"
SINKS = ("pcm16", "vad")
IN_BUCKET, OUT_BUCKET = "inputs", "jobs"
FAST_S = 30.0
"""A run that cannot reach its store must fail sooner than this."""
SUMMARY = re.compile(r"(\d+) file\(s\) done, (\d+) skipped")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

Rows = dict[str, list[dict[str, Any]]]


# -- running the CLI -------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One finished CLI run."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def job_env(s3: S3Server | None = None, **overrides: str | None) -> dict[str, str]:
    """This environment without AWS_* settings, plus ``s3.env()`` and ``overrides`` (None drops)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["RAY_AUTH_MODE"] = "disabled"
    if s3 is not None:
        env.update(s3.env())
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def run_cli(
    source: str | Path,
    dest: str | Path,
    env: Mapping[str, str],
    *args: str,
    runtime: str | None = "local",
) -> Run:
    """``remotemedia-ray run MANIFEST -i source -o dest`` (``runtime=None``: the default, Ray)."""
    command = [sys.executable, "-m", "remotemedia_ray.cli", "run", str(MANIFEST)]
    command += ["-i", str(source), "-o", str(dest), *args]
    if runtime is not None:
        command += ["--runtime", runtime]
    start = time.monotonic()
    done = subprocess.run(
        command, env=dict(env), cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - start)


# -- reading outputs -------------------------------------------------------------------


def list_files(fs: pafs.FileSystem, path: str) -> list[str]:
    """Every file under ``path`` (recursively), as paths in ``fs``; none when missing."""
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    return sorted(i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.File)


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as handle:
        data: bytes = handle.read()
    return data


def read_jsonl(fs: pafs.FileSystem, path: str) -> list[dict[str, Any]]:
    text = read_bytes(fs, path).decode("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def done_log(fs: pafs.FileSystem, root: str) -> list[dict[str, Any]]:
    """The records of every segment ``root/_done/*.jsonl``."""
    segments = [p for p in list_files(fs, f"{root}/_done") if p.endswith(".jsonl")]
    assert segments, f"no done log segment in {root}/_done"
    return [record for segment in segments for record in read_jsonl(fs, segment)]


def sink_rows(fs: pafs.FileSystem, root: str) -> Rows:
    """Each sink's rows, sorted by id."""
    rows = {}
    for sink in SINKS:
        table = pq.read_table(f"{root}/{sink}", filesystem=fs)
        rows[sink] = sorted(table.to_pylist(), key=lambda row: row["id"])
    return rows


def check_outputs(fs: pafs.FileSystem, root: str, *, audio: str | None = None) -> Rows:
    """Assert a finished run over the corpus left a sound OUTDIR; returns its rows.

    One row per good file in each sink, the bad file (only) in ``errors.jsonl``,
    and every output file visible and named by the done log. ``audio`` is the
    ``--write-audio`` format, if any.
    """
    records = done_log(fs, root)
    named = {path for record in records for path in record["files"]}
    finished = {item for record in records for item in record["items"]}
    assert finished == set(GOOD)
    for rel in named:
        assert fs.get_file_info(f"{root}/{rel}").type == pafs.FileType.File, rel

    failed = [error["item_id"] for error in read_jsonl(fs, f"{root}/errors.jsonl")]
    assert failed == [BAD]

    folders = [*SINKS, *(["pcm16.audio"] if audio else [])]
    for folder in folders:
        files = [p[len(root) + 1 :] for p in list_files(fs, f"{root}/{folder}")]
        assert files, f"nothing in {root}/{folder}"
        hidden = [rel for rel in files if rel.rsplit("/", 1)[-1].startswith(".")]
        assert not hidden, f"temporary files left: {hidden}"
        unnamed = sorted(set(files) - named)
        assert not unnamed, f"files the done log does not name: {unnamed}"
    if audio:
        audio_files = {p[len(root) + 1 :] for p in list_files(fs, f"{root}/pcm16.audio")}
        assert audio_files == {f"pcm16.audio/{name}.{audio}" for name in GOOD}
    else:
        assert not list_files(fs, f"{root}/pcm16.audio")

    rows = sink_rows(fs, root)
    for sink in SINKS:
        assert [row["id"] for row in rows[sink]] == GOOD, sink
    return rows


def assert_same_rows(rows: Rows, reference: Rows) -> None:
    """Row for row equal (compared per id: a failure names ids, not a huge diff)."""
    for sink in SINKS:
        assert [r["id"] for r in rows[sink]] == [r["id"] for r in reference[sink]], sink
        differ = [a["id"] for a, b in zip(rows[sink], reference[sink], strict=True) if a != b]
        assert not differ, f"sink {sink}: rows differ from the local run for {differ}"


def assert_no_secret(
    secret: str, run: Run, fs: pafs.FileSystem | None = None, root: str = ""
) -> None:
    """``secret`` is neither in the run's stdout/stderr nor in any file under ``root`` of ``fs``."""
    assert secret not in run.stdout, "secret key in stdout"
    assert secret not in run.stderr, "secret key in stderr"
    if fs is not None:
        leaks = [p for p in list_files(fs, root) if secret.encode() in read_bytes(fs, p)]
        assert not leaks, f"secret key written to {leaks}"


# -- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """A SeaweedFS S3 server with empty buckets ``inputs`` and ``jobs``."""
    with S3Server() as server:
        server.make_bucket(IN_BUCKET)
        server.make_bucket(OUT_BUCKET)
        yield server


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local folder: the example audio files and ``bad.wav``, which is not audio."""
    root = tmp_path_factory.mktemp("corpus")
    for name in GOOD:
        shutil.copy(AUDIO / name, root / name)
    (root / BAD).write_bytes(b"this is not a RIFF file\n" * 64)
    return root


@pytest.fixture(scope="module")
def s3_corpus(s3: S3Server, corpus: Path) -> str:
    """The corpus uploaded: its path in the store (``inputs/corpus``)."""
    s3.upload(corpus, f"{IN_BUCKET}/corpus")
    return f"{IN_BUCKET}/corpus"


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Rows:
    """The rows of a local-to-local run of the corpus."""
    out = tmp_path_factory.mktemp("reference") / "out"
    run = run_cli(corpus, out, job_env())
    assert run.returncode == 0, run
    return check_outputs(pafs.LocalFileSystem(), str(out))


# -- tests -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "dest", "runtime"),
    [
        pytest.param("s3", "s3", None, id="s3-to-s3-ray"),
        pytest.param("local", "s3", "local", id="local-to-s3"),
        pytest.param("s3", "local", "local", id="s3-to-local"),
    ],
)
def test_route(
    source: str,
    dest: str,
    runtime: str | None,
    s3: S3Server,
    corpus: Path,
    s3_corpus: str,
    reference: Rows,
    tmp_path: Path,
) -> None:
    """Each route writes one row per good file, logs the bad one, and matches a local run."""
    src = s3.uri(s3_corpus) if source == "s3" else str(corpus)
    if dest == "s3":
        fs, root = s3.filesystem(), f"{OUT_BUCKET}/{source}-to-s3"
        out = s3.uri(root)
    else:
        fs, root = pafs.LocalFileSystem(), str(tmp_path / "out")
        out = root
    run = run_cli(src, out, job_env(s3), runtime=runtime)
    assert run.returncode == 0, run
    assert SUMMARY.search(run.stdout), run
    rows = check_outputs(fs, root)
    assert_same_rows(rows, reference)


def test_write_audio_flac_to_s3(s3: S3Server, corpus: Path, reference: Rows) -> None:
    """``--write-audio flac`` puts ``pcm16.audio/<input name>.flac`` in the bucket, decodable."""
    fs, root = s3.filesystem(), f"{OUT_BUCKET}/write-audio"
    run = run_cli(corpus, s3.uri(root), job_env(s3), "--write-audio", "flac")
    assert run.returncode == 0, run
    rows = check_outputs(fs, root, audio="flac")
    assert_same_rows(rows, reference)
    for row in rows["pcm16"]:
        data = read_bytes(fs, f"{root}/pcm16.audio/{row['id']}.flac")
        samples, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
        assert rate == row["sample_rate"] == 16000
        assert samples.shape[1] == row["channels"] == 1
        np.testing.assert_array_equal(samples[:, 0], row_samples(row))


def test_resume_on_s3_skips_finished_items(s3: S3Server, s3_corpus: str) -> None:
    """``--resume`` after a complete run re-runs nothing and leaves the rows as they were."""
    fs, root = s3.filesystem(), f"{OUT_BUCKET}/resume"
    env = job_env(s3)
    first = run_cli(s3.uri(s3_corpus), s3.uri(root), env)
    assert first.returncode == 0, first
    before = check_outputs(fs, root)
    files_before = list_files(fs, f"{root}/pcm16") + list_files(fs, f"{root}/vad")

    again = run_cli(s3.uri(s3_corpus), s3.uri(root), env, "--resume")
    assert again.returncode == 0, again
    summary = SUMMARY.search(again.stdout)
    assert summary, again
    assert (int(summary[1]), int(summary[2])) == (0, len(GOOD)), again.stdout
    assert_same_rows(check_outputs(fs, root), before)
    assert list_files(fs, f"{root}/pcm16") + list_files(fs, f"{root}/vad") == files_before


@pytest.mark.parametrize("keys", ["env", "uri"], ids=["keys-in-env", "keys-in-uri"])
def test_credentials_never_appear(keys: str, s3: S3Server, s3_corpus: str) -> None:
    """With the endpoint (and maybe the keys) in the URI options, no output shows the secret."""
    options = {"endpoint_override": s3.endpoint, "scheme": "http"}
    env = job_env()  # no AWS_ENDPOINT_URL: the URI says where the store is
    if keys == "env":
        env.update(
            AWS_ACCESS_KEY_ID=s3.access_key,
            AWS_SECRET_ACCESS_KEY=s3.secret_key,
            AWS_REGION="us-east-1",
        )
    else:
        options.update(access_key=s3.access_key, secret_key=s3.secret_key)
    fs, root = s3.filesystem(), f"{OUT_BUCKET}/credentials-{keys}"
    run = run_cli(s3.uri(s3_corpus, **options), s3.uri(root, **options), env)
    assert run.returncode == 0, str(run).replace(s3.secret_key, "<SECRET>")
    check_outputs(fs, root)
    for name in ("errors.jsonl", "metrics.json"):
        assert fs.get_file_info(f"{root}/{name}").type == pafs.FileType.File, name
    assert_no_secret(s3.secret_key, run, fs, root)


def test_keys_in_uri_stay_hidden_when_the_store_is_unreachable(
    s3: S3Server, tmp_path: Path
) -> None:
    """The error message of a failed connection names the input without its secret."""
    options = {
        "endpoint_override": "127.0.0.1:1",
        "scheme": "http",
        "access_key": s3.access_key,
        "secret_key": s3.secret_key,
    }
    run = run_cli(s3.uri(f"{IN_BUCKET}/corpus", **options), tmp_path / "out", job_env())
    assert run.returncode == 1, str(run).replace(s3.secret_key, "<SECRET>")
    assert f"s3://{IN_BUCKET}/corpus" in run.stderr, "the message does not name the input"
    assert_no_secret(s3.secret_key, run)


@pytest.mark.parametrize("role", ["input", "output"])
def test_unreachable_store_fails_fast(
    role: str, s3: S3Server, corpus: Path, s3_corpus: str, tmp_path: Path
) -> None:
    """A store that refuses connections: exit 1 at once, naming the location."""
    env = job_env(s3, AWS_ENDPOINT_URL="http://127.0.0.1:1")
    if role == "input":
        named = s3.uri(s3_corpus)
        run = run_cli(named, tmp_path / "out", env)
    else:
        named = s3.uri(f"{OUT_BUCKET}/unreachable")
        run = run_cli(corpus, named, env)
    assert run.returncode == 1, run
    assert run.seconds < FAST_S, f"took {run.seconds:.1f} s"
    assert named in run.stderr, run
    assert "Traceback" not in run.stderr, run
    assert_no_secret(s3.secret_key, run)


@pytest.mark.parametrize("role", ["input", "output"])
def test_unknown_scheme_fails_fast(role: str, corpus: Path, tmp_path: Path) -> None:
    """``nosuch://x`` as input or output: exit 1 with a message naming it."""
    if role == "input":
        run = run_cli("nosuch://x", tmp_path / "out", job_env())
    else:
        run = run_cli(corpus, "nosuch://x", job_env())
    assert run.returncode == 1, run
    assert run.seconds < FAST_S, f"took {run.seconds:.1f} s"
    assert "nosuch://x" in run.stderr, run
    assert "Traceback" not in run.stderr, run


@pytest.mark.parametrize("role", ["input", "output"])
def test_wrong_credentials_fail(
    role: str, s3: S3Server, corpus: Path, s3_corpus: str, tmp_path: Path
) -> None:
    """A secret key the server refuses: exit 1 with a message naming the location."""
    wrong = "wrongsecret0123456789abcdef"
    env = job_env(s3, AWS_SECRET_ACCESS_KEY=wrong)
    if role == "input":
        named = s3.uri(s3_corpus)
        run = run_cli(named, tmp_path / "out", env)
    else:
        named = s3.uri(f"{OUT_BUCKET}/wrong-credentials")
        run = run_cli(corpus, named, env)
    assert run.returncode == 1, run
    assert run.seconds < FAST_S, f"took {run.seconds:.1f} s"
    assert named in run.stderr, run
    assert "Traceback" not in run.stderr, run
    assert_no_secret(wrong, run)
    assert not list_files(s3.filesystem(), f"{OUT_BUCKET}/wrong-credentials")


def test_long_files_are_read_in_windows_from_s3(
    s3: S3Server, tmp_path: Path, reference: Rows
) -> None:
    """A file longer than the window is read with ranged requests, window by window, and
    gives the rows of reading it whole."""
    source = tmp_path / "long"
    source.mkdir()
    shutil.copy(AUDIO / GOOD[0], source / GOOD[0])
    s3.upload(source, f"{IN_BUCKET}/long")
    fs, root = s3.filesystem(), f"{OUT_BUCKET}/long"
    run = run_cli(s3.uri(f"{IN_BUCKET}/long"), s3.uri(root), job_env(s3), "--window-seconds", "0.5")
    assert run.returncode == 0, run
    rows = sink_rows(fs, root)
    for sink in SINKS:
        (row,) = rows[sink]
        (expected,) = [r for r in reference[sink] if r["id"] == GOOD[0]]
        assert row == expected, sink


@pytest.mark.parametrize("kind", ["glob", "list file"])
def test_globs_and_list_files_in_a_store(
    kind: str, s3: S3Server, s3_corpus: str, reference: Rows
) -> None:
    """``s3://bucket/prefix/*.wav`` and a list file in the bucket list like local ones."""
    fs = s3.filesystem()
    if kind == "glob":
        source = s3.uri(f"{s3_corpus}/*.wav")
        expected = [name for name in GOOD if name.endswith(".wav")]
    else:
        listing = "\n".join(["# the good files", *GOOD, "gone.wav"]) + "\n"
        with fs.open_output_stream(f"{s3_corpus}/inputs.txt") as handle:
            handle.write(listing.encode())
        source, expected = s3.uri(f"{s3_corpus}/inputs.txt"), GOOD
    root = f"{OUT_BUCKET}/{kind.replace(' ', '-')}"
    run = run_cli(source, s3.uri(root), job_env(s3))
    assert run.returncode == 0, run
    rows = sink_rows(fs, root)
    for sink in SINKS:
        assert rows[sink] == [r for r in reference[sink] if r["id"] in expected], sink
    if kind == "list file":
        (error,) = read_jsonl(fs, f"{root}/errors.jsonl")
        assert (error["item_id"], error["path"]) == ("gone.wav", f"s3://{s3_corpus}/gone.wav")


def test_a_second_run_on_one_s3_outdir_is_refused(s3: S3Server, s3_corpus: str) -> None:
    """The lock object keeps a second run off an OUTDIR in use, on S3 too."""
    fs, root = s3.filesystem(), f"{OUT_BUCKET}/locked"
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "remotemedia_ray.cli",
            "run",
            str(MANIFEST),
            "-i",
            s3.uri(s3_corpus),
            "-o",
            s3.uri(root),
        ],
        env=job_env(s3),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while fs.get_file_info(f"{root}/_job.lock").type != pafs.FileType.File:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "no lock after 120 s"
            time.sleep(0.05)
        second = run_cli(s3.uri(s3_corpus), s3.uri(root), job_env(s3))
        _first_out, first_err = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode == 1, second
    assert "in use" in second.stderr and "_job.lock" in second.stderr, second
    assert first.returncode == 0, first_err
    check_outputs(fs, root)
    assert fs.get_file_info(f"{root}/_job.lock").type == pafs.FileType.NotFound
