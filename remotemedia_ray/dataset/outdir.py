"""The job's output directory: an exclusive lock, and getting it ready for a run.

``OUTDIR/_job.lock`` (holding the pid and host of the run and a random token)
keeps a second run off an OUTDIR in use; it is removed when the run ends. A
lock left by a process of this host that no longer runs is taken over with a
message. Locally the lock is created with ``O_CREAT | O_EXCL``; two hosts
sharing OUTDIR over a network file system are only as safe as its ``O_EXCL``.
An object store has no exclusive create: there the lock is written when none
exists and read back after a moment, and a run whose token was overwritten by
another's gives way; two runs starting within the same second on two hosts
may still both proceed.

Before anything is deleted or written, every folder and file the job
touches is checked to lie inside OUTDIR after links are followed, so a link
(``OUTDIR/<sink> -> /elsewhere``) never makes ``--resume`` or ``--overwrite``
delete or write files outside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any, TextIO

import pyarrow.fs as pafs

from remotemedia_ray.dataset.donelog import DONE_DIR
from remotemedia_ray.dataset.storage import Location
from remotemedia_ray.dataset.writers import output_folders
from remotemedia_ray.errors import ConfigError

__all__ = ["ERRORS", "JOB_FILE", "LOCK", "METRICS", "OutdirLock", "prepare_outdir"]

LOCK = "_job.lock"
JOB_FILE = "_job.json"
ERRORS = "errors.jsonl"
METRICS = "metrics.json"
CONTROL_FILES = (ERRORS, METRICS, JOB_FILE, "_done.jsonl")
"""The job's own files in OUTDIR, besides the lock, the done log and the sinks' folders
(``_done.jsonl`` is the done log of earlier versions, removed by ``--overwrite``)."""

_SETTLE_S = 1.0
"""How long a lock on an object store is left before it is read back."""


class OutdirLock:
    """An exclusive lock on an output directory (see the module docs)."""

    def __init__(self, out: Location, path: str, token: str) -> None:
        self.out = out
        self.path = path
        self.token = token

    @classmethod
    def acquire(cls, out: Location, *, stream: TextIO) -> OutdirLock:
        """Lock ``out`` (which exists) for this process.

        Raises:
            ConfigError: another run holds the lock, naming the lock file.
        """
        path = out.join(LOCK)
        token = secrets.token_hex(8)
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "token": token,
        }
        data = (json.dumps(record) + "\n").encode()
        for attempt in range(2):
            holder = _read_lock(out, path)
            if holder is not None or (out.local and os.path.lexists(path)):
                if attempt == 0 and holder is not None and _is_stale(holder):
                    stream.write(
                        f"taking over the lock {out.display(path)} of process {holder['pid']}, "
                        "which is no longer running\n"
                    )
                    stream.flush()
                    out.delete(path)
                    continue
                raise _in_use(out, path, holder)
            if out.local:
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    continue
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                return cls(out, path, token)
            out.write_bytes(path, data)
            time.sleep(_SETTLE_S)
            holder = _read_lock(out, path)
            if holder is None or holder.get("token") != token:
                raise _in_use(out, path, holder)
            return cls(out, path, token)
        raise ConfigError(f"cannot lock output directory {out.uri} (lock file {out.display(path)})")

    def release(self) -> None:
        """Remove the lock file (when it is still this run's)."""
        holder = _read_lock(self.out, self.path)
        if holder is None or holder.get("token") in (None, self.token):
            self.out.delete(self.path)


def _in_use(out: Location, path: str, holder: Mapping[str, Any] | None) -> ConfigError:
    who = (
        f"process {holder.get('pid')} on {holder.get('host')}"
        if holder is not None
        else "another run"
    )
    return ConfigError(
        f"output directory {out.uri} is in use by {who} (lock file {out.display(path)}); "
        "wait for that run to end, or delete the lock file if none is running"
    )


def _read_lock(out: Location, path: str) -> dict[str, Any] | None:
    try:
        holder = json.loads(out.read_bytes(path).decode("utf-8"))
    except (OSError, ValueError):
        return None  # missing, being written, or unreadable: never taken over
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
        return not _running(pid)
    return not _running(pid)


def _running(pid: int) -> bool:
    """Whether an existing process still runs: a killed one whose parent has not
    reaped it yet (a zombie, state ``Z`` in Linux's ``/proc``) does not."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (not Linux): it exists, so it runs
    return state not in (b"Z", b"X")


def prepare_outdir(
    out: Location,
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
    info = out.info()
    if info.type == pafs.FileType.File:
        raise ConfigError(f"output {out.uri} exists and is not a directory")
    created = info.type == pafs.FileType.NotFound
    try:
        out.fs.create_dir(out.path, recursive=True)
        lock = OutdirLock.acquire(out, stream=stream)
    except OSError as exc:
        raise _unusable(out, exc) from None
    try:
        _prepare_locked(out, list(sinks), fingerprint, resume=resume, overwrite=overwrite)
    except BaseException as exc:
        lock.release()
        if created and out.local:
            with contextlib.suppress(OSError):
                os.rmdir(out.path)
        if isinstance(exc, OSError):
            raise _unusable(out, exc) from None
        raise
    return lock


def _unusable(out: Location, exc: OSError) -> ConfigError:
    return ConfigError(
        f"cannot use output directory {out.uri}: {exc.strerror or exc}"
        + (f" ({exc.filename})" if exc.filename else "")
    )


def _prepare_locked(
    out: Location,
    sinks: list[str],
    fingerprint: Mapping[str, Any],
    *,
    resume: bool,
    overwrite: bool,
) -> None:
    lock_path = out.join(LOCK)
    selector = pafs.FileSelector(out.path, recursive=False, allow_not_found=True)
    existing = any(i.path.rstrip("/") != lock_path for i in out.fs.get_file_info(selector))
    if existing and not (resume or overwrite):
        raise ConfigError(
            f"output directory {out.uri} is not empty: use --resume to finish an earlier run "
            "or --overwrite to replace its results"
        )
    job_file = out.join(JOB_FILE)
    if resume and existing:
        try:
            earlier = json.loads(out.read_bytes(job_file).decode("utf-8"))
        except (OSError, ValueError):
            earlier = None
        if earlier != fingerprint:
            raise ConfigError(
                f"{out.uri} holds results of another manifest, other output options or an "
                f"earlier version's layout ({JOB_FILE} differs): --resume would mix them; "
                "use --overwrite"
            )
    folders = [*output_folders(sinks), DONE_DIR]
    for name in [*folders, *CONTROL_FILES]:
        out.inside(out.join(name))
    if overwrite:
        for name in folders:
            if out.local:  # rmtree removes links, never what they lead to
                shutil.rmtree(out.join(name), ignore_errors=True)
                continue
            with contextlib.suppress(FileNotFoundError):
                out.fs.delete_dir(out.join(name))
        for name in CONTROL_FILES:
            out.delete(out.join(name))
    out.write_bytes(job_file, (json.dumps(fingerprint) + "\n").encode())
