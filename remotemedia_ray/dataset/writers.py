"""Writing a job's outputs: Parquet shards per sink, audio files, every file atomically.

Every file is written under a temporary name and renamed into place, and
every output path is checked to stay inside the output directory. Each
output format has its own folder, so that one never mistakes the other's
files for its own:

* ``OUTDIR/<sink>/part-<run>-<n>.parquet``: a sink's rows
  (:func:`sink_table`), written by :class:`ShardWriter`, so that
  ``pyarrow.parquet.read_table(OUTDIR/<sink>)`` reads them all;
* ``OUTDIR/<sink>.audio/<relative path>``: with ``--write-audio``, a sink's
  audio outputs as files (:func:`write_audio_file`); a node id cannot contain
  a ``.``, so no sink's folder is ever another's audio folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa

from remotemedia_ray.audio import AudioBuffer, AudioFormat, audio_list_column
from remotemedia_ray.errors import AudioFormatError, ConfigError

__all__ = [
    "ShardBuffer",
    "ShardWriter",
    "atomic_replace",
    "audio_folder",
    "check_inside",
    "plan_audio_paths",
    "safe_relative_path",
    "sink_table",
    "write_audio_file",
]


def audio_folder(sink: str) -> str:
    """The folder (relative to OUTDIR) of ``sink``'s ``--write-audio`` files."""
    return f"{sink}.audio"


_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]")


def safe_relative_path(item_id: str) -> PurePosixPath:
    """A relative output path for an item id that cannot leave the output directory.

    Absolute paths lose their root, ``..`` and ``.`` components are dropped,
    and characters outside ``[A-Za-z0-9._-]`` become ``_``.
    """
    parts = []
    for part in PurePosixPath(item_id.replace("\\", "/")).parts:
        if part in ("/", "", ".", ".."):
            continue
        cleaned = _UNSAFE.sub("_", part).lstrip(".") or "_"
        parts.append(cleaned)
    if not parts:
        parts = ["_"]
    return PurePosixPath(*parts)


def check_inside(root: Path, target: Path) -> Path:
    """``target`` resolved (links followed); a ConfigError when that is outside ``root``."""
    resolved = target.resolve()
    if resolved != root.resolve() and root.resolve() not in resolved.parents:
        raise ConfigError(
            f"refusing to use {target}: it leads to {resolved}, outside the output directory {root}"
        )
    return resolved


def atomic_replace(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` over ``final`` durably (file, rename and folder all synced)."""
    with open(tmp, "rb+") as handle:
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, final)
    _fsync_dir(final.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def plan_audio_paths(item_ids: Iterable[str], fmt: str) -> dict[str, PurePosixPath]:
    """Unique relative output paths for ``--write-audio``, decided from every id at once.

    An item keeps its safe relative path with the suffix replaced (``a/x.wav``
    -> ``a/x.flac``) unless that clashes with another item's, as ``x.wav`` and
    ``x.flac`` or ``a b.wav`` and ``a_b.wav`` would; clashing items keep their
    old suffix too (``x.wav.flac``), and a short digest of the id is added if
    that still clashes. The result does not depend on the order items finish in.
    """
    ids = sorted(set(item_ids))
    plain = {i: safe_relative_path(i).with_suffix(f".{fmt}") for i in ids}
    counts: dict[PurePosixPath, int] = {}
    for path in plain.values():
        counts[path] = counts.get(path, 0) + 1
    planned: dict[str, PurePosixPath] = {}
    for item_id in ids:
        path = plain[item_id]
        if counts[path] > 1:
            rel = safe_relative_path(item_id)
            path = rel.with_name(f"{rel.name}.{fmt}")
        planned[item_id] = path
    seen: dict[PurePosixPath, int] = {}
    for path in planned.values():
        seen[path] = seen.get(path, 0) + 1
    for item_id, path in planned.items():
        if seen[path] > 1:
            tag = hashlib.blake2b(item_id.encode(), digest_size=4).hexdigest()
            planned[item_id] = path.with_name(f"{path.stem}-{tag}.{fmt}")
    return planned


def write_audio_file(
    root: Path, sink: str, rel: PurePosixPath, audio: AudioBuffer, fmt: str
) -> Path:
    """Write ``audio`` to ``root/<sink>.audio/rel`` atomically (inside ``root``); returns it."""
    import soundfile as sf

    final = check_inside(root, root / audio_folder(sink) / rel)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    samples = audio.to_numpy()
    subtype = {
        AudioFormat.I16: "PCM_16",
        AudioFormat.I32: "PCM_32",
        AudioFormat.F32: "FLOAT" if fmt == "wav" else "PCM_24",
        AudioFormat.F64: "DOUBLE" if fmt == "wav" else "PCM_24",
    }[audio.format]
    if fmt == "flac" and audio.format is AudioFormat.I32:
        subtype = "PCM_24"
    try:
        sf.write(tmp, samples, audio.sample_rate, subtype=subtype, format=fmt.upper())
        atomic_replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


_SEGMENT = pa.struct(
    [
        ("start_ms", pa.float64()),
        ("end_ms", pa.float64()),
        ("energy_db", pa.float64()),
        ("confidence", pa.float64()),
    ]
)


def _is_segments(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, dict) and set(v) == {"start_ms", "end_ms", "energy_db", "confidence"}
        for v in value
    )


def sink_table(rows: list[tuple[str, Any]]) -> pa.Table:
    """The Parquet table of one sink's outputs: ``id`` plus columns by output kind.

    AudioBuffer outputs: ``audio`` (list of samples), ``sample_rate``, ``channels``;
    VAD segments: ``segments`` (list of struct); numbers: ``value`` (float64);
    anything else: ``value`` as JSON text.
    """
    ids = [item_id for item_id, _ in rows]
    values = [value for _, value in rows]
    columns: dict[str, pa.Array | pa.ChunkedArray] = {"id": pa.array(ids, pa.string())}
    if values and all(isinstance(v, AudioBuffer) for v in values):
        fmt = values[0].format
        for v in values:
            if v.format is not fmt:
                raise AudioFormatError(f"sink outputs mix formats {fmt.value} and {v.format.value}")
        columns["audio"] = audio_list_column(values, fmt)
        columns["sample_rate"] = pa.array([v.sample_rate for v in values], pa.int32())
        columns["channels"] = pa.array([v.channels for v in values], pa.int16())
    elif values and all(_is_segments(v) for v in values):
        columns["segments"] = pa.array(values, pa.list_(_SEGMENT))
    elif values and all(
        isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values
    ):
        columns["value"] = pa.array([float(v) for v in values], pa.float64())
    else:
        columns["value"] = pa.array([json.dumps(v, default=_json_default) for v in values])
    return pa.table(columns)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, AudioBuffer):
        return {"audio": value.to_numpy().tolist(), "sample_rate": value.sample_rate}
    if isinstance(value, np.generic):
        return value.item()
    return repr(value)


class ShardWriter:
    """Writes every sink's rows of one shard, then records the shard as done.

    ``root/<sink>/part-<run>-<n>.parquet`` holds the same items for every sink;
    each file is written as ``.part-....tmp`` and renamed. Only after all of a
    shard's files are in place is the shard appended to ``root/_done.jsonl``,
    with its items' resume keys, so an interrupted run leaves no half-written
    file and no item counted done before its outputs exist.
    """

    DONE = "_done.jsonl"

    def __init__(self, root: Path, sinks: Iterable[str], run_id: str) -> None:
        self.root = root
        self.sinks = list(sinks)
        self.run_id = run_id
        self.shards = 0

    def write(self, rows: Mapping[str, list[tuple[str, Any]]], keys: Mapping[str, str]) -> str:
        """Write one shard (``rows[sink]`` = ``[(item_id, output), ...]``); returns its name."""
        import pyarrow.parquet as pq

        name = f"part-{self.run_id}-{self.shards:05d}.parquet"
        self.shards += 1
        for sink in self.sinks:
            final = check_inside(self.root, self.root / sink / name)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{name}.tmp")
            try:
                pq.write_table(sink_table(rows.get(sink, [])), tmp)
                atomic_replace(tmp, final)
            finally:
                tmp.unlink(missing_ok=True)
        record = {"shard": name, "items": dict(keys)}
        with open(self.root / self.DONE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        return name

    @classmethod
    def load_done(cls, root: Path) -> tuple[set[str], dict[str, str]]:
        """Shard names recorded as done and ``{item_id: key}`` of their items."""
        shards: set[str] = set()
        items: dict[str, str] = {}
        done = root / cls.DONE
        if not done.exists():
            return shards, items
        for line in done.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line from a crash: that shard is not done
            shards.add(record["shard"])
            items.update(record["items"])
        return shards, items

    @classmethod
    def load_records(cls, root: Path) -> list[dict[str, Any]]:
        """The shard records of ``_done.jsonl`` (a torn last line is ignored)."""
        done = root / cls.DONE
        if not done.exists():
            return []
        records = []
        for line in done.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    @classmethod
    def drop_items(cls, root: Path, sinks: Iterable[str], item_ids: set[str]) -> None:
        """Remove ``item_ids``' rows from every done shard (they are about to run again)."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        records = cls.load_records(root)
        changed = False
        for record in records:
            stale = item_ids & set(record["items"])
            if not stale:
                continue
            changed = True
            for sink in sinks:
                final = check_inside(root, root / sink) / record["shard"]
                if not final.exists():
                    continue
                table = pq.read_table(final)
                keep = pc.invert(pc.is_in(table.column("id"), pa.array(sorted(stale))))
                tmp = final.with_name(f".{final.name}.tmp")
                pq.write_table(table.filter(keep), tmp)
                atomic_replace(tmp, final)
            record["items"] = {k: v for k, v in record["items"].items() if k not in stale}
        if changed:
            tmp = root / f".{cls.DONE}.tmp"
            tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
            atomic_replace(tmp, root / cls.DONE)

    @classmethod
    def remove_orphans(cls, root: Path, sinks: Iterable[str], done_shards: set[str]) -> int:
        """Delete what an interrupted run left unfinished; returns how many files.

        That is every shard file not recorded as done and every temporary in
        a sink's folder, and the temporaries of audio files (an output file's
        name never starts with a dot: see :func:`safe_relative_path`). Only
        folders inside ``root`` are touched (a ConfigError otherwise), and
        links are never followed into other folders.
        """
        removed = 0
        for sink in sinks:
            folder = check_inside(root, root / sink)
            if folder.is_dir():
                for file in folder.iterdir():
                    if file.name.startswith(".part-") or (
                        file.name.startswith("part-") and file.name not in done_shards
                    ):
                        file.unlink()
                        removed += 1
            audio = check_inside(root, root / audio_folder(sink))
            for parent, _, names in os.walk(audio):  # never descends into links
                for name in names:
                    if name.startswith(".") and ".tmp-" in name:
                        os.unlink(os.path.join(parent, name))
                        removed += 1
        return removed


class ShardBuffer:
    """The shard being filled; a full one is written by one background thread.

    Parquet encoding and fsync release the GIL, so results keep arriving
    while a shard is written; shards are written one at a time, in order.
    Use as a context manager: leaving it waits for the shard being written.
    """

    def __init__(self, writer: ShardWriter, shard_rows: int) -> None:
        self.writer = writer
        self.shard_rows = shard_rows
        self._rows: dict[str, list[tuple[str, Any]]] = {sink: [] for sink in writer.sinks}
        self._keys: dict[str, str] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="remotemedia-shards")
        self._writing: list[Future[str]] = []

    def add(self, item_id: str, outputs: Mapping[str, Any], key: str) -> None:
        """Add one item's sink outputs and resume key; a full shard goes to be written."""
        for sink, rows in self._rows.items():
            rows.append((item_id, outputs[sink]))
        self._keys[item_id] = key
        if len(self._keys) >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        """Hand the rows so far to the writer as one shard (after the one being written)."""
        if not self._keys:
            return
        self.wait()
        shard = {sink: list(rows) for sink, rows in self._rows.items()}
        self._writing.append(self._pool.submit(self.writer.write, shard, dict(self._keys)))
        for rows in self._rows.values():
            rows.clear()
        self._keys.clear()

    def wait(self) -> None:
        """Wait until every shard handed over is written (raising what writing raised)."""
        while self._writing:
            self._writing.pop(0).result()

    def __enter__(self) -> ShardBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True)
