"""The dataset job survives what clusters do to it: a killed driver, Ctrl-C, a lost node.

Every run here is the CLI in a process of its own, on Ray, with the outputs
compared to one uninterrupted run of the same corpus row for row and column
for column: a resumed run must leave exactly what a run that was never
stopped leaves, locally and on S3 (a real SeaweedFS server, ``tests/s3server.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
import soundfile as sf

# tests/ is on sys.path: pytest puts the folder of tests/conftest.py there.
from helpers import processes_mentioning, ray_temp_dir
from s3server import S3Server

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "examples" / "speech_prep.json"
SINKS = ("pcm16", "vad")
FILES = 40

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


# -- the corpus, the server, the reference ------------------------------------------------


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 stereo 48 kHz files of 4 s (slow enough to stop a run in the middle)."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(7)
    t = np.arange(4 * 48000) / 48000
    for n in range(FILES):
        tone = 0.3 * np.sin(2 * np.pi * (200 + 10 * n) * t) * (t % 1.0 < 0.6)
        noise = 0.01 * rng.standard_normal((t.size, 2))
        folder = root / f"s{n % 3}"
        folder.mkdir(exist_ok=True)
        sf.write(folder / f"f{n:02d}.wav", tone[:, None] + noise, 48000, subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def s3(corpus: Path) -> Iterator[S3Server]:
    """A SeaweedFS server holding the corpus under ``s3://corpus/in``."""
    with S3Server() as server:
        server.make_bucket("corpus")
        server.make_bucket("jobs")
        server.upload(corpus, "corpus/in")
        yield server


@pytest.fixture(scope="module")
def reference(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Any]]:
    """The rows of one uninterrupted local run, per sink, sorted by id."""
    out = tmp_path_factory.mktemp("reference") / "out"
    finished = run([str(MANIFEST), "-i", str(corpus), "-o", str(out), "--runtime", "local"])
    assert finished.returncode == 0, finished.stderr
    return rows(pafs.LocalFileSystem(), str(out))


# -- helpers ----------------------------------------------------------------------------


def env(s3: S3Server | None = None, ray_tmp: str | None = None) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "RAY_ADDRESS"))}
    values["RAY_AUTH_MODE"] = "disabled"
    if ray_tmp is not None:
        values["RAY_TMPDIR"] = ray_tmp
    if s3 is not None:
        values.update(s3.env())
    return values


def run(args: list[str], environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "remotemedia_ray.cli", "run", *args],
        env=environ or env(),
        capture_output=True,
        text=True,
        timeout=400,
    )


def rows(fs: pafs.FileSystem, root: str) -> dict[str, list[Any]]:
    """Each sink's rows (every column), sorted by id, asserting no id is there twice."""
    out = {}
    for sink in SINKS:
        table = pq.read_table(f"{root}/{sink}", filesystem=fs).sort_by("id")
        ids = table.column("id").to_pylist()
        assert len(ids) == len(set(ids)), f"{sink}: an id has two rows"
        out[sink] = table.to_pylist()
    return out


def files_under(fs: pafs.FileSystem, path: str) -> list[str]:
    selector = pafs.FileSelector(path, recursive=True, allow_not_found=True)
    return sorted(i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.File)


def done_records(fs: pafs.FileSystem, root: str) -> list[dict[str, Any]]:
    """The done log's records, as the job reads them: a segment being written (a
    dot-name, renamed when whole) is not one yet."""
    records = []
    for segment in files_under(fs, f"{root}/_done"):
        if segment.rsplit("/", 1)[-1].startswith("."):
            continue
        with fs.open_input_stream(segment) as handle:
            text = handle.read().decode("utf-8")
        records += [json.loads(line) for line in text.splitlines() if line.strip()]
    return records


def assert_only_named_files(fs: pafs.FileSystem, root: str) -> None:
    """Every file in the sinks' folders is named by the done log (no orphans, no temporaries)."""
    named = {f for record in done_records(fs, root) for f in record["files"]}
    for sink in SINKS:
        found = {p[len(root) + 1 :] for p in files_under(fs, f"{root}/{sink}")}
        assert found <= named, f"files the done log does not name: {sorted(found - named)}"


# -- a killed or interrupted driver -----------------------------------------------------


@pytest.mark.parametrize("store", ["local", "s3"])
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_a_stopped_run_resumes_to_the_outputs_of_an_uninterrupted_one(
    sig: signal.Signals,
    store: str,
    corpus: Path,
    s3: S3Server,
    reference: dict[str, list[Any]],
    tmp_path: Path,
) -> None:
    if store == "s3":
        source, dest = "s3://corpus/in", f"s3://jobs/{sig.name}"
        fs, root = s3.filesystem(), f"jobs/{sig.name}"
    else:
        source, dest = str(corpus), str(tmp_path / "out")
        fs, root = pafs.LocalFileSystem(), str(tmp_path / "out")
    args = [str(MANIFEST), "-i", source, "-o", dest, "--batch-size", "2", "--max-in-flight", "1"]

    with ray_temp_dir() as ray_tmp:
        with subprocess.Popen(
            [sys.executable, "-m", "remotemedia_ray.cli", "run", *args, "--quiet"],
            env=env(s3, ray_tmp),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,  # its own process group, as a shell gives a command
        ) as proc:
            try:
                deadline = time.monotonic() + 300
                while not done_records(fs, root):
                    assert proc.poll() is None, f"ended before the signal: {proc.stderr.read()!r}"  # type: ignore[union-attr]
                    assert time.monotonic() < deadline, "no batch finished in 300 s"
                    time.sleep(0.05)
                os.killpg(proc.pid, sig)  # the whole process group: the CLI and its Ray
                code = proc.wait(timeout=90)
            finally:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
        deadline = time.monotonic() + 60
        while processes_mentioning(ray_tmp) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not processes_mentioning(ray_tmp), "the embedded Ray outlived the job"

    finished = {i for record in done_records(fs, root) for i in record["items"]}
    assert 0 < len(finished) < FILES, "the signal came too late to test anything"

    resumed = run([*args, "--resume"], env(s3))

    assert resumed.returncode == 0, resumed.stderr
    summary = resumed.stdout.strip().splitlines()[-1]
    assert f"{FILES - len(finished)} file(s) done, {len(finished)} skipped, 0 failed" in summary
    assert rows(fs, root) == reference
    assert_only_named_files(fs, root)


# -- a lost node ------------------------------------------------------------------------


def test_a_node_lost_mid_run_loses_and_duplicates_no_item(
    s3: S3Server, reference: dict[str, list[Any]]
) -> None:
    """Three Ray nodes on this machine, S3 as the shared storage; one node dies hard."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    try:
        workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
        cluster.wait_for_nodes()
        fs, root = s3.filesystem(), "jobs/cluster"
        args = [str(MANIFEST), "-i", "s3://corpus/in", "-o", "s3://jobs/cluster"]
        args += ["--address", cluster.address, "--batch-size", "2", "--quiet"]
        proc = subprocess.Popen(
            [sys.executable, "-m", "remotemedia_ray.cli", "run", *args],
            env=env(s3),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 300
            while not done_records(fs, root):
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "no batch finished in 300 s"
                time.sleep(0.05)
            cluster.remove_node(workers[0], allow_graceful=False)  # the node dies, hard
            stdout, stderr = proc.communicate(timeout=400)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        cluster.shutdown()

    assert proc.returncode == 0, stderr
    assert f"{FILES} file(s) done, 0 skipped, 0 failed" in stdout
    assert rows(fs, root) == reference
    assert_only_named_files(fs, root)
    assert sum(len(record["items"]) for record in done_records(fs, root)) == FILES
