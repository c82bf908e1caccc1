"""The done log: which items are finished, and which files hold their outputs.

``OUTDIR/_done/`` holds segments, ``<time>-<run>-<n>.jsonl``, each a few lines of
batch records ``{"shard": ..., "files": [...], "items": {item_id: key}}``
(:class:`~remotemedia_ray.dataset.writers.BatchCommit`). The driver adds a
record only after the worker's commit arrived, so every file a record names
exists; it writes a new segment every :data:`FLUSH_S` seconds (and at the
end, and when interrupted) instead of appending, because object stores cannot
append. A segment appears whole or not at all, so a crash loses at most the
last few seconds of records: their files are then unnamed, and unnamed files
are deleted (:func:`sweep`) before a resumed run counts anything.

The log is the truth: a file in a sink's folder that no record names was
never finished (a crash, a batch Ray gave up on, a temporary file), and an
item is done when a record names it, with the key its input had then.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from remotemedia_ray.dataset.audiofiles import audio_path
from remotemedia_ray.dataset.formats import FORMATS, folder, joined_files
from remotemedia_ray.dataset.storage import Location
from remotemedia_ray.dataset.writers import BatchCommit, output_folders, parquet_options
from remotemedia_ray.errors import ConfigError

__all__ = [
    "COMPACT_AT",
    "DONE_DIR",
    "FLUSH_S",
    "DoneLog",
    "DoneState",
    "compact",
    "drop_items",
    "load_done",
    "sweep",
]

DONE_DIR = "_done"
FLUSH_S = 2.0
"""Seconds between two segments of the done log while commits arrive."""
_FLUSH_RECORDS = 512


@dataclass
class DoneState:
    """What the done log says: finished items, the files that hold them, its segments."""

    items: dict[str, str] = field(default_factory=dict)
    """``{item_id: key}`` of every finished item (the latest record wins)."""
    files: set[str] = field(default_factory=set)
    """Every file named, relative to OUTDIR."""
    records: list[dict[str, Any]] = field(default_factory=list)
    """The records, oldest first."""
    segments: list[str] = field(default_factory=list)
    """The segment files read (paths in the filesystem)."""


def load_done(out: Location) -> DoneState:
    """Read every segment of the done log (oldest first); a torn line is ignored."""
    state = DoneState()
    infos = sorted(out.list_files(out.join(DONE_DIR)), key=lambda info: info.base_name)
    for info in infos:
        if not info.base_name.endswith(".jsonl") or info.base_name.startswith("."):
            continue
        state.segments.append(info.path)
        for line in out.read_bytes(info.path).decode("utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            state.records.append(record)
            state.items.update(record["items"])
            state.files.update(record.get("files", ()))
    return state


class DoneLog:
    """The records of this run, written as new segments (see the module docs)."""

    def __init__(self, out: Location, run_id: str) -> None:
        self.out = out
        self.run_id = run_id
        self._pending: list[dict[str, Any]] = []
        self._segments = 0
        self._last = time.monotonic()

    def add(self, commit: BatchCommit) -> None:
        """Record a batch whose files exist; written with the next segment."""
        self._pending.append(commit.to_record())
        if len(self._pending) >= _FLUSH_RECORDS or time.monotonic() - self._last >= FLUSH_S:
            self.flush()

    def flush(self) -> None:
        """Write the records so far as one segment (nothing when there are none)."""
        self._last = time.monotonic()
        if not self._pending:
            return
        write_segment(self.out, self.run_id, self._segments, self._pending)
        self._segments += 1
        self._pending = []


def write_segment(out: Location, run_id: str, number: int, records: list[dict[str, Any]]) -> str:
    """Write ``records`` as a new segment; returns its path."""
    name = f"{time.time_ns():020d}-{run_id}-{number:06d}.jsonl"
    path = out.join(DONE_DIR, name)
    out.write_bytes(path, "".join(json.dumps(r) + "\n" for r in records).encode("utf-8"))
    return path


def drop_items(
    out: Location,
    state: DoneState,
    item_ids: set[str],
    run_id: str,
    listed: set[str] | None = None,
) -> set[str]:
    """Forget ``item_ids`` (about to run again): their rows leave every shard, their
    audio files and records go. Returns every item forgotten.

    A batch of per-sink Parquet shards and audio files loses just those rows
    and files. A batch whose files are not all of that kind (the training-ready
    formats, clips' audio) is forgotten whole: its files go and its other items
    run again too (returned with ``item_ids``): all of them must be in
    ``listed`` (the items this run will run), else nothing is dropped.

    Raises:
        ConfigError: A whole batch would be forgotten with an item this run
            does not list (its outputs would be lost), naming both.

    Shards are rewritten first, then the log is replaced by one compacted
    segment, then the old segments are deleted; a crash in between leaves the
    items recorded with their old keys, so the next ``--resume`` drops them again.
    """
    if not item_ids:
        return set()
    for record in state.records:
        stale = item_ids & set(record["items"])
        if not stale or _rows_droppable(list(record.get("files", ())), record["items"]):
            continue
        unlisted = sorted(
            set(record["items"]) - (listed if listed is not None else set(record["items"]))
        )
        if unlisted:
            raise ConfigError(
                f"--resume would rewrite the batch of the changed input {min(stale)!r}, which "
                f"also holds {unlisted[0]!r}, an input this run does not list: its outputs "
                "would be lost; list it again, or use --overwrite"
            )
    dropped = set(item_ids)
    stale_files: set[str] = set()
    for record in state.records:
        stale = item_ids & set(record["items"])
        if not stale:
            continue
        files = list(record.get("files", ()))
        if _rows_droppable(files, record["items"]):
            stale_files |= _drop_rows(out, files, stale)
        else:
            stale_files |= set(files)
            stale = set(record["items"])
            dropped |= stale
        record["items"] = {k: v for k, v in record["items"].items() if k not in stale}
        record["files"] = [f for f in files if f not in stale_files]
    compact(out, state, run_id)
    for rel in stale_files:
        out.delete(out.inside(out.join(rel)))
    state.items = {k: v for k, v in state.items.items() if k not in dropped}
    state.files -= stale_files
    return dropped


def _rows_droppable(files: list[str], items: dict[str, str]) -> bool:
    """Whether a batch's files are per-sink Parquet shards and its items' audio files."""
    format_folders = {folder(f) for f in FORMATS if f != "parquet"}
    for rel in files:
        if rel.split("/", 1)[0] in format_folders:
            return False
        if rel.endswith(".parquet"):
            continue
        if not _audio_of(rel, items):
            return False  # a clip's audio
    return True


def _drop_rows(out: Location, files: list[str], stale: set[str]) -> set[str]:
    """Rewrite a batch's shards without ``stale``'s rows; returns their audio files."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    gone: set[str] = set()
    for rel in files:
        if rel.endswith(".parquet"):
            path = out.inside(out.join(rel))
            try:
                table = pq.read_table(path, filesystem=out.fs)
            except FileNotFoundError:
                continue
            key = "parent_id" if "parent_id" in table.column_names else "id"
            keep = pc.invert(pc.is_in(table.column(key), pa.array(sorted(stale))))
            kept = table.filter(keep)
            buffer = pa.BufferOutputStream()
            pq.write_table(kept, buffer, **parquet_options(kept))
            out.write_bytes(path, buffer.getvalue())
        elif _audio_of(rel, stale):
            gone.add(rel)
    return gone


def _audio_of(rel: str, items: Iterable[str]) -> bool:
    """Whether ``rel`` (``<sink>.audio/...``) is the ``--write-audio`` file of one of ``items``."""
    inner, fmt = rel.split("/", 1)[-1], rel.rsplit(".", 1)[-1]
    return any(inner == audio_path(i, fmt).as_posix() for i in items)


def compact(out: Location, state: DoneState, run_id: str) -> None:
    """Replace the log's segments by one holding ``state.records`` (new segment first,
    then the old ones go: a crash in between leaves every record twice, harmlessly)."""
    written = write_segment(out, run_id, 0, state.records)
    for segment in state.segments:
        out.delete(segment)
    state.segments = [written]


COMPACT_AT = 64
"""A resumed run folds a log of more segments than this into one."""


def sweep(out: Location, sinks: Iterable[str], named: set[str]) -> int:
    """Delete every file in the job's output folders that the done log does not name.

    That is what an interrupted or failed batch left (shards, audio files,
    temporaries). The folders are the sinks', their audio folders and the
    formats' (:func:`~remotemedia_ray.dataset.writers.output_folders`); a
    format's joined manifests are kept (they are written anew at the end of
    each run). Returns how many files were deleted. Locally, links are never
    followed into other folders.
    """
    removed = 0
    keep = joined_files()
    for name in output_folders(sinks):
        for rel in _files_under(out, name):
            if rel not in named and rel not in keep:
                out.delete(out.inside(out.join(rel)))
                removed += 1
    return removed


def _files_under(out: Location, folder: str) -> list[str]:
    """Every file under ``OUTDIR/folder``, relative to OUTDIR (POSIX form)."""
    root = out.inside(out.join(folder))
    if out.local:
        found = []
        for parent, _, names in os.walk(root):  # never descends into links
            for name in names:
                rel = os.path.relpath(os.path.join(parent, name), out.path)
                found.append(rel.replace(os.sep, "/"))
        return found
    prefix = out.path.rstrip("/") + "/"
    return [info.path[len(prefix) :] for info in out.list_files(root)]
