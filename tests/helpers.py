"""Builders every test suite shares (``tests/`` is on ``sys.path``: pytest puts the
folder of the root ``conftest.py`` there)."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

NodeRow = tuple[str, str, dict[str, Any]]
"""``(id, node_type, params)`` of one manifest node."""


def manifest(
    nodes: list[NodeRow], edges: list[tuple[str, str]], *, name: str = "test"
) -> dict[str, Any]:
    """A manifest dict (the data model's JSON form) of ``nodes`` joined by ``edges``."""
    return {
        "version": "v1",
        "metadata": {"name": name},
        "nodes": [{"id": i, "node_type": t, "params": p} for i, t, p in nodes],
        "connections": [{"from": a, "to": b} for a, b in edges],
    }


def run_cli(*args: str) -> tuple[int, str, str]:
    """``remotemedia-ray`` in this process; returns exit code, stdout and stderr."""
    from remotemedia_ray.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def processes_mentioning(text: str) -> list[int]:
    """The pids of the processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


@contextlib.contextmanager
def ray_temp_dir() -> Iterator[str]:
    """A short RAY_TMPDIR of our own (socket paths are limited to 107 bytes), so that an
    embedded Ray's processes can be found, and ended, by their command line."""
    folder = tempfile.mkdtemp(prefix="rmray")
    try:
        yield folder
    finally:
        for pid in processes_mentioning(folder):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)


# -- the dataset job's Parquet outputs ----------------------------------------------------


def shard_files(outdir: Path, sink: str) -> list[Path]:
    """The shards of ``sink`` in a local OUTDIR."""
    return sorted((outdir / sink).glob("part-*.parquet"))


def sink_table(outdir: Path, sink: str) -> pa.Table:
    """Every shard of ``sink`` concatenated, sorted by id (duplicates kept)."""
    files = shard_files(outdir, sink)
    assert files, f"no shards in {outdir / sink}"
    return pa.concat_tables([pq.read_table(f) for f in files]).sort_by("id")


def row_samples(row: dict[str, Any]) -> np.ndarray:
    """The interleaved samples of a shard row (``audio`` bytes of ``sample_format``),
    read as a user without the library would."""
    return np.frombuffer(row["audio"], row["sample_format"])


def ids_exactly_once(table: pa.Table) -> list[str]:
    """The table's ids, asserting that none occurs twice."""
    ids: list[str] = table.column("id").to_pylist()
    twice = sorted(i for i, n in Counter(ids).items() if n > 1)
    assert not twice, f"ids with more than one row: {twice}"
    return ids


@contextlib.contextmanager
def own_ray(
    start: Callable[[], Any], stop: Callable[[Any], None] = lambda _: None
) -> Iterator[Any]:
    """Run ``start()`` (which starts a Ray) instead of any Ray this process already has.

    On exit the driver disconnects, then ``stop(what start returned)`` runs.
    """
    import ray

    shared = ray.is_initialized()
    if shared:
        ray.shutdown()
    started = None
    try:
        started = start()
        yield started
    finally:
        ray.shutdown()
        if started is not None:
            stop(started)
        if shared:  # the session's Ray, as conftest.ray_session starts it
            ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
