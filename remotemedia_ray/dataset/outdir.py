"""The job's output directory: an exclusive lock, and getting it ready for a run.

``OUTDIR/_job.lock`` (created with ``O_CREAT | O_EXCL``, holding the pid and
host of the run) keeps a second run off an OUTDIR in use; it is removed when
the run ends. A lock left by a process of this host that no longer runs is
taken over with a message. The lock is local: two hosts sharing OUTDIR over a
network file system are only as safe as its ``O_EXCL``, and two runs that
take over the same stale lock in the same instant may both proceed.

Before anything is deleted or written, every folder and file the job
touches is checked to lie inside OUTDIR after links are followed, so a link
(``OUTDIR/<sink> -> /elsewhere``) never makes ``--resume`` or ``--overwrite``
delete or write files outside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from remotemedia_ray.dataset.writers import ShardWriter, audio_folder, check_inside
from remotemedia_ray.errors import ConfigError

__all__ = ["ERRORS", "JOB_FILE", "LOCK", "METRICS", "OutdirLock", "prepare_outdir"]

LOCK = "_job.lock"
JOB_FILE = "_job.json"
ERRORS = "errors.jsonl"
METRICS = "metrics.json"
CONTROL_FILES = (ShardWriter.DONE, ERRORS, METRICS, JOB_FILE)
"""The job's own files in OUTDIR, besides the lock and the sinks' folders."""


class OutdirLock:
    """An exclusive lock on an output directory (see the module docs)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def acquire(cls, outdir: Path, *, stream: TextIO) -> OutdirLock:
        """Lock ``outdir`` (which exists) for this process.

        Raises:
            ConfigError: another run holds the lock, naming the lock file.
        """
        path = outdir / LOCK
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        for attempt in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = _read_lock(path)
                if attempt == 0 and holder is not None and _is_stale(holder):
                    stream.write(
                        f"taking over the lock {path} of process {holder['pid']}, "
                        "which is no longer running\n"
                    )
                    stream.flush()
                    path.unlink(missing_ok=True)
                    continue
                who = (
                    f"process {holder.get('pid')} on {holder.get('host')}"
                    if holder is not None
                    else "another run"
                )
                raise ConfigError(
                    f"output directory {outdir} is in use by {who} (lock file {path}); "
                    "wait for that run to end, or delete the lock file if none is running"
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
            return cls(path)
        raise ConfigError(f"cannot lock output directory {outdir} (lock file {path})")

    def release(self) -> None:
        """Remove the lock file."""
        self.path.unlink(missing_ok=True)


def _read_lock(path: Path) -> dict[str, Any] | None:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # being written, or unreadable: never taken over
    return holder if isinstance(holder, dict) else None


def _is_stale(holder: Mapping[str, Any]) -> bool:
    """Whether a lock's process was of this host and is gone."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname() or not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # it exists, owned by someone else
        return False
    return False


def prepare_outdir(
    out: Path,
    *,
    sinks: Iterable[str],
    fingerprint: Mapping[str, Any],
    resume: bool,
    overwrite: bool,
    stream: TextIO,
) -> OutdirLock:
    """Create and lock ``out``, check it may be used, and clear it for ``overwrite``.

    Returns the lock, which the caller releases when the run ends.

    Raises:
        ConfigError: ``out`` is not a usable directory, is in use, is not empty
            (without ``resume``/``overwrite``), holds another job's results
            (with ``resume``), or has a link leading outside it.
    """
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output {out} exists and is not a directory")
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = OutdirLock.acquire(out, stream=stream)
    except OSError as exc:
        raise _unusable(out, exc) from None
    try:
        _prepare_locked(out, list(sinks), fingerprint, resume=resume, overwrite=overwrite)
    except BaseException as exc:
        lock.release()
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()
        if isinstance(exc, OSError):
            raise _unusable(out, exc) from None
        raise
    return lock


def _unusable(out: Path, exc: OSError) -> ConfigError:
    return ConfigError(
        f"cannot use output directory {out}: {exc.strerror or exc}"
        + (f" ({exc.filename})" if exc.filename else "")
    )


def _prepare_locked(
    out: Path, sinks: list[str], fingerprint: Mapping[str, Any], *, resume: bool, overwrite: bool
) -> None:
    existing = any(entry.name != LOCK for entry in out.iterdir())
    if existing and not (resume or overwrite):
        raise ConfigError(
            f"output directory {out} is not empty: use --resume to finish an earlier run or "
            "--overwrite to replace its results"
        )
    job_file = out / JOB_FILE
    if resume and existing:
        try:
            earlier = json.loads(job_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            earlier = None
        if earlier != fingerprint:
            raise ConfigError(
                f"{out} holds results of another manifest or other output options "
                f"({job_file.name} differs): --resume would mix them; use --overwrite"
            )
    root = out.resolve()
    for name in [*sinks, *(audio_folder(sink) for sink in sinks), *CONTROL_FILES]:
        check_inside(root, out / name)
    if overwrite:
        for sink in sinks:
            for folder in (sink, audio_folder(sink)):
                shutil.rmtree(out / folder, ignore_errors=True)
        for name in CONTROL_FILES:
            (out / name).unlink(missing_ok=True)
    job_file.write_text(json.dumps(fingerprint) + "\n", encoding="utf-8")
