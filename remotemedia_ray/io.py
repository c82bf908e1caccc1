"""Dataset inputs and outputs: listing audio files, decoding them, writing results.

Inputs (:func:`list_inputs`): a directory (searched recursively for every
format libsndfile reads), a glob pattern, a text file with one path per line,
or a Parquet dataset with an audio column. Listing only looks at names and
sizes; decoding happens in :class:`AudioFileReader`, a node that the dataset
job runs inside Ray workers.

A file longer than the reader's window (``window_s``, default 10 minutes)
is not decoded at once: the reader returns a :class:`FileChunks` that
decodes one window at a time as the pipeline streams it, so memory stays
bounded for hour-long recordings.

Outputs (:class:`ShardWriter`, :func:`write_audio_file`): Parquet shards per
sink and optional audio files, every file written under a temporary name and
renamed into place, and every output path checked to stay inside the output
directory.
"""

from __future__ import annotations

import glob as globlib
import hashlib
import io as _io
import json
import math
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from remotemedia_ray.audio import AudioBuffer, AudioChunks, AudioFormat, audio_list_column
from remotemedia_ray.errors import AudioFormatError, ConfigError, InputError
from remotemedia_ray.nodes.base import Capability, NodeExecutor, parse_params

__all__ = [
    "IO_NODES",
    "AudioDuration",
    "AudioFileReader",
    "ContentKey",
    "FileChunks",
    "InputItem",
    "ShardWriter",
    "audio_extensions",
    "content_key",
    "decode_audio",
    "list_inputs",
    "plan_audio_paths",
    "row_key",
    "safe_relative_path",
    "write_audio_file",
]


@lru_cache(maxsize=1)
def audio_extensions() -> frozenset[str]:
    """File extensions (lower case, with the dot) of the formats libsndfile reads."""
    import soundfile as sf

    exts = {f".{name.lower()}" for name in sf.available_formats()} - {".raw"}
    return frozenset(exts | {".aif", ".oga", ".opus"})


@dataclass(frozen=True)
class InputItem:
    """One input: a file, or one row of a Parquet dataset.

    Attributes:
        item_id: Stable id: the path relative to the input root (POSIX form),
            or the Parquet row's id.
        path: The file to read.
        row: The row in a Parquet file, or None for an audio file.
    """

    item_id: str
    path: str
    row: int | None = None

    def to_value(self) -> dict[str, Any]:
        """The pipeline input that :class:`AudioFileReader` decodes."""
        return {"item_id": self.item_id, "path": self.path, "row": self.row}


def list_inputs(
    spec: str | os.PathLike[str], *, exclude: str | os.PathLike[str] | None = None
) -> list[InputItem]:
    """The items of an input specification, sorted by id.

    Args:
        spec: A directory, a glob pattern (``data/**/*.flac``), a ``.txt``/
            ``.lst`` file of paths (relative paths are relative to the file), or
            a ``.parquet`` file or a directory of them with an ``audio`` column
            (a directory is a Parquet dataset only when it holds no audio files).
        exclude: A directory whose files are never inputs (the job's OUTDIR).

    Raises:
        InputError: nothing matches, the spec names nothing readable, a list
            file names a missing file, a Parquet input lacks its columns, or
            two inputs have the same id.
    """
    text = os.fspath(spec)
    try:
        return _list_inputs(text, exclude)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename and exc.filename != text else ""
        raise InputError(f"cannot list input {text!r}: {exc.strerror or exc}{where}") from None


def _list_inputs(text: str, exclude: str | os.PathLike[str] | None) -> list[InputItem]:
    path = Path(text)
    skip = Path(exclude).resolve() if exclude is not None else None

    def wanted(file: Path) -> bool:
        resolved = file.resolve()
        return skip is None or (resolved != skip and skip not in resolved.parents)

    exts = audio_extensions()
    if any(ch in text for ch in "*?[") and not path.exists():
        root = Path(_glob_root(text))
        files = [
            Path(p)
            for p in globlib.glob(text, recursive=True)
            if Path(p).is_file() and Path(p).suffix.lower() in exts and wanted(Path(p))
        ]
        items = [InputItem(_rel_id(f, root), str(f.resolve())) for f in files]
    elif path.is_dir():
        files = [f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in exts]
        files = [f for f in files if wanted(f)]
        if files:
            items = [InputItem(_rel_id(f, path), str(f.resolve())) for f in files]
        else:
            parquet = sorted(f for f in path.rglob("*.parquet") if wanted(f))
            items = _parquet_items(parquet) if parquet else []
    elif path.is_file() and path.suffix.lower() == ".parquet":
        items = _parquet_items([path])
    elif path.is_file() and path.suffix.lower() in (".txt", ".lst", ".list"):
        items = _list_file_items(path)
    elif path.is_file() and path.suffix.lower() in audio_extensions():
        items = [InputItem(path.name, str(path.resolve()))]
    else:
        raise InputError(
            f"input {text!r} is not a directory, glob, list file, Parquet dataset or audio file"
        )
    if not items:
        raise InputError(f"input {text!r} matches no audio files")
    # Parquet rows stay in file order (readers cache one file's table); files sort by id.
    if not any(item.row is not None for item in items):
        items.sort(key=lambda item: item.item_id)
    _check_unique(items, text)
    return items


def _glob_root(pattern: str) -> str:
    parts = []
    for part in Path(pattern).parts:
        if any(ch in part for ch in "*?["):
            break
        parts.append(part)
    return str(Path(*parts)) if parts else "."


def _rel_id(path: Path, root: Path) -> str:
    try:
        rel = path.resolve().relative_to(root.resolve())
    except ValueError:
        rel = Path(path.name)
    return rel.as_posix()


def _list_file_items(list_file: Path) -> list[InputItem]:
    items: list[InputItem] = []
    base = list_file.parent
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(
            f"list file {list_file} is not UTF-8 text (byte {exc.start}: {exc.reason})"
        ) from None
    for number, line in enumerate(lines, 1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        file = Path(entry) if Path(entry).is_absolute() else base / entry
        if not file.is_file():
            raise InputError(f"{list_file}:{number}: no such file {entry!r}")
        rel = entry if not Path(entry).is_absolute() else file.name
        items.append(InputItem(PurePosixPath(Path(rel).as_posix()).as_posix(), str(file.resolve())))
    return items


def _parquet_items(files: list[Path]) -> list[InputItem]:
    import pyarrow.parquet as pq

    items: list[InputItem] = []
    for file in files:
        try:
            meta = pq.ParquetFile(file)
            names = meta.schema_arrow.names
            if "audio" not in names or "sample_rate" not in names:
                raise InputError(f"{file}: a Parquet input needs audio and sample_rate columns")
            ids = (
                meta.read(columns=["id"]).column("id").to_pylist()
                if "id" in names
                else [f"{file.resolve()}#{i}" for i in range(meta.metadata.num_rows)]
            )
        except pa.ArrowException as exc:
            raise InputError(f"cannot read Parquet input {file}: {exc}") from None
        items.extend(InputItem(str(i), str(file.resolve()), row) for row, i in enumerate(ids))
    return items


def _check_unique(items: list[InputItem], spec: str) -> None:
    seen: set[str] = set()
    for item in items:
        if item.item_id in seen:
            raise InputError(f"input {spec!r} lists {item.item_id!r} twice")
        seen.add(item.item_id)


def content_key(path: str) -> str:
    """A digest of a file's bytes (SHA-256, hex): the resume key of an audio file.

    A file this process has just read whole (:class:`AudioFileReader` does)
    is not read again: its digest is remembered with its size and
    modification time, and used while both are unchanged.
    """
    try:
        stat = os.stat(path)
    except OSError:
        stat = None
    if stat is not None:
        known = _RECENT_KEYS.get(path)
        if known is not None and known[0] == (stat.st_size, stat.st_mtime_ns):
            return known[1]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


_RECENT_KEYS: dict[str, tuple[tuple[int, int], str]] = {}
_RECENT_LIMIT = 1024


def _remember_key(path: str, stat: os.stat_result, data: bytes) -> None:
    """Remember the digest of a file just read whole (see :func:`content_key`)."""
    if len(_RECENT_KEYS) >= _RECENT_LIMIT:
        _RECENT_KEYS.pop(next(iter(_RECENT_KEYS)))
    _RECENT_KEYS[path] = ((stat.st_size, stat.st_mtime_ns), hashlib.sha256(data).hexdigest())


def row_key(audio: AudioBuffer) -> str:
    """A digest of one Parquet row's audio (samples, rate, channels): its resume key."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"{audio.format.value}:{audio.sample_rate}:{audio.channels}:".encode())
    digest.update(np.ascontiguousarray(audio.to_numpy()).data)
    return digest.hexdigest()


class _ParquetCache:
    """The table of the last Parquet file read (inputs arrive sorted by file)."""

    def __init__(self) -> None:
        self._path: str | None = None
        self._table: pa.Table | None = None

    def row(self, path: str, row: int) -> AudioBuffer:
        import pyarrow.parquet as pq

        if self._path != path or self._table is None:
            table = pq.read_table(path)
            if "channels" not in table.column_names:
                table = table.append_column("channels", pa.array([1] * table.num_rows, pa.int16()))
            self._path, self._table = path, table
        return AudioBuffer.from_table_row(self._table, row)


def decode_audio(data: bytes, name: str, *, keep_pcm: bool = True, info: Any = None) -> AudioBuffer:
    """Decode the bytes of an audio file with libsndfile.

    Args:
        data: The encoded file.
        name: How errors name the file (its path).
        keep_pcm: Keep 16- and 32-bit integer PCM as int16/int32; otherwise
            (and for every other encoding) decode to float32.
        info: The file's header (soundfile's ``info``) when already read.

    Raises:
        AudioFormatError: an empty or undecodable file, naming it.
    """
    import soundfile as sf

    if not data:
        raise AudioFormatError(f"cannot decode audio file {name!r}: empty file")
    try:
        dtype = "float32"
        if keep_pcm:
            dtype = _decode_dtype((info or sf.info(_io.BytesIO(data))).subtype)
        samples, rate = sf.read(_io.BytesIO(data), dtype=dtype, always_2d=True)
    except Exception as exc:  # libsndfile's errors
        raise AudioFormatError(
            f"cannot decode audio file {name!r}: {_decode_problem(exc)}"
        ) from None
    return AudioBuffer.from_numpy(samples, int(rate))


_BUFFER_REPR = re.compile(r"(?:Error opening )?<_io\.BytesIO object at 0x[0-9a-fA-F]+>:?\s*")


def _decode_problem(exc: BaseException) -> str:
    """What libsndfile said, without the in-memory buffer it was given.

    soundfile's messages name what it opened (``Error opening <_io.BytesIO
    object at 0x...>: ...``); for bytes in memory that names nothing useful,
    so only libsndfile's own words are kept (the caller names the file).
    """
    text = getattr(exc, "error_string", None)
    if not isinstance(text, str) or not text:
        text = _BUFFER_REPR.sub("", str(exc)).strip() or type(exc).__name__
    return text


def _decode_dtype(subtype: str, keep_pcm: bool = True) -> str:
    if not keep_pcm:
        return "float32"
    return {"PCM_16": "int16", "PCM_32": "int32"}.get(subtype, "float32")


class FileChunks(AudioChunks):
    """A long audio file decoded one window at a time, as a pipeline streams it.

    Decoding in windows gives the same samples as decoding the whole file.
    It pickles as its path and shape, so it can cross processes (a node that
    cannot stream then reads the whole file where it runs).

    Args:
        path: The file.
        window_frames: Frames per chunk (the last may be shorter).
        sample_rate, channels, num_frames: From the file's header.
        dtype: ``int16``/``int32`` for 16/32-bit PCM, else ``float32``.
    """

    def __init__(
        self,
        path: str,
        *,
        window_frames: int,
        sample_rate: int,
        channels: int,
        num_frames: int,
        dtype: str,
    ) -> None:
        if window_frames < 1:
            raise AudioFormatError(f"window_frames must be >= 1, got {window_frames}")
        self.path = path
        self.window_frames = int(window_frames)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.num_frames = int(num_frames)
        self.dtype = dtype
        self.format = AudioFormat.from_dtype(np.dtype(dtype))

    def chunks(self) -> Iterator[AudioBuffer]:
        import soundfile as sf

        try:
            handle = sf.SoundFile(self.path)
        except Exception as exc:
            raise AudioFormatError(
                f"cannot decode audio file {self.path!r}: {_decode_problem(exc)}"
            ) from None
        with handle:
            yielded = False
            while True:
                try:
                    block = handle.read(self.window_frames, dtype=self.dtype, always_2d=True)
                except Exception as exc:
                    raise AudioFormatError(
                        f"cannot decode audio file {self.path!r} after frame {handle.tell()}: "
                        f"{_decode_problem(exc)}"
                    ) from None
                if block.shape[0] == 0 and yielded:
                    return
                yielded = True
                yield AudioBuffer.from_numpy(block, self.sample_rate)
                if block.shape[0] < self.window_frames:
                    return


class ReaderParams(BaseModel):
    """Parameters of :class:`AudioFileReader`."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    window_s: float | None = Field(
        default=600.0,
        gt=0,
        description="Files longer than this many seconds are decoded and processed in "
        "windows of this length (null: always whole).",
    )


class AudioFileReader(NodeExecutor):
    """Decodes one input (an audio file, or a Parquet row) into an AudioBuffer.

    Runs where the pipeline runs (a Ray worker for the dataset job), so files
    are never decoded on the driver. Float formats decode to float32; 16- and
    32-bit integer PCM keep their integer format. A file longer than
    ``window_s`` seconds becomes a :class:`FileChunks`, decoded window by
    window while the pipeline streams it.
    """

    capabilities = frozenset({Capability.AUDIO, Capability.CPU})
    Params = ReaderParams

    def initialize(self, params: Mapping[str, Any]) -> None:
        self.params = parse_params(ReaderParams, params, node=self.node_id)
        self._parquet = _ParquetCache()

    def execute(self, input: Any) -> AudioBuffer | FileChunks:
        if not isinstance(input, dict) or "path" not in input:
            raise AudioFormatError(
                f"reader input must be an input item, got {type(input).__name__}"
            )
        path = input["path"]
        if input.get("row") is not None:
            return self._parquet.row(path, int(input["row"]))
        try:
            with open(path, "rb") as handle:
                stat = os.fstat(handle.fileno())
                if stat.st_size > _READ_WHOLE_BYTES:  # maybe long: look at the header first
                    chunks = self._long_file(path, None)
                    if chunks is not None:
                        return chunks
                data = handle.read()
        except OSError as exc:
            raise AudioFormatError(f"cannot read {path}: {exc.strerror or exc}") from None
        if len(data) == stat.st_size:  # unchanged while read: the resume key needs no re-read
            _remember_key(path, stat, data)
        info = _sound_info(data)
        if info is not None:
            chunks = self._long_file(path, info)
            if chunks is not None:  # a long file, compressed into few bytes
                return chunks
        return decode_audio(data, path, info=info)

    def _long_file(self, path: str, info: Any) -> FileChunks | None:
        """The file as chunks when it is longer than the window, else None.

        ``info`` is its header (soundfile's ``info``), or None to read it.
        """
        import soundfile as sf

        window_s = self.params.window_s
        if window_s is None:
            return None
        if info is None:
            try:
                info = sf.info(path)
            except Exception:
                return None  # reading it whole gives the error
        window = max(1, math.floor(window_s * info.samplerate))
        if info.frames <= window:
            return None
        return FileChunks(
            path,
            window_frames=window,
            sample_rate=info.samplerate,
            channels=info.channels,
            num_frames=info.frames,
            dtype=_decode_dtype(info.subtype),
        )


_READ_WHOLE_BYTES = 4 << 20
"""Files up to this size are read into memory at once; larger ones may be long."""


def _sound_info(data: bytes) -> Any:
    """soundfile's header info of an encoded file, or None when it has none."""
    import soundfile as sf

    try:
        return sf.info(_io.BytesIO(data)) if data else None
    except Exception:
        return None


class ContentKey(NodeExecutor):
    """The resume key of an input item: a digest of its file's bytes, or of its Parquet row."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        self._parquet = _ParquetCache()

    def execute(self, input: Any) -> str:
        if not isinstance(input, dict) or "path" not in input:
            raise AudioFormatError(f"key input must be an input item, got {type(input).__name__}")
        try:
            if input.get("row") is not None:
                return row_key(self._parquet.row(input["path"], int(input["row"])))
            return content_key(input["path"])
        except OSError as exc:
            raise AudioFormatError(f"cannot read {input['path']}: {exc.strerror or exc}") from None


class AudioDuration(NodeExecutor):
    """The duration of an AudioBuffer (or of a long file's chunks) in seconds."""

    accepts_chunks = True

    def initialize(self, params: Mapping[str, Any]) -> None:
        pass

    def execute(self, input: Any) -> float:
        if isinstance(input, AudioChunks):
            return input.duration_seconds
        if not isinstance(input, AudioBuffer):
            raise AudioFormatError(f"expected an AudioBuffer, got {type(input).__name__}")
        return input.duration_seconds


IO_NODES: dict[str, type[NodeExecutor]] = {
    "AudioFileReader": AudioFileReader,
    "ContentKey": ContentKey,
    "AudioDuration": AudioDuration,
}
"""The dataset job's internal node types (registered as built-ins)."""


# -- outputs ------------------------------------------------------------------------------

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


def _inside(root: Path, target: Path) -> Path:
    resolved = target.resolve()
    if resolved != root.resolve() and root.resolve() not in resolved.parents:
        raise ConfigError(f"refusing to write {target} outside the output directory {root}")
    return resolved


def _atomic_replace(tmp: Path, final: Path) -> None:
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
    """Write ``audio`` to ``root/sink/rel`` atomically (inside ``root``); returns the path."""
    import soundfile as sf

    final = _inside(root, root / sink / rel)
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
        _atomic_replace(tmp, final)
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
            final = _inside(self.root, self.root / sink / name)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{name}.tmp")
            try:
                pq.write_table(sink_table(rows.get(sink, [])), tmp)
                _atomic_replace(tmp, final)
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
                final = root / sink / record["shard"]
                if not final.exists():
                    continue
                table = pq.read_table(final)
                keep = pc.invert(pc.is_in(table.column("id"), pa.array(sorted(stale))))
                tmp = final.with_name(f".{final.name}.tmp")
                pq.write_table(table.filter(keep), tmp)
                _atomic_replace(tmp, final)
            record["items"] = {k: v for k, v in record["items"].items() if k not in stale}
        if changed:
            tmp = root / f".{cls.DONE}.tmp"
            tmp.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
            _atomic_replace(tmp, root / cls.DONE)

    @classmethod
    def remove_orphans(cls, root: Path, sinks: Iterable[str], done_shards: set[str]) -> int:
        """Delete shard files (and temporaries) not recorded as done; returns how many."""
        removed = 0
        for sink in sinks:
            folder = root / sink
            if not folder.is_dir():
                continue
            for file in folder.iterdir():
                if file.name.startswith(".part-") or (
                    file.name.startswith("part-") and file.name not in done_shards
                ):
                    file.unlink()
                    removed += 1
        return removed
