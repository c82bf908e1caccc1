"""Decoding inputs inside the workers: the dataset job's internal nodes.

:class:`AudioFileReader` decodes one input item (an audio file, or a Parquet
row) where the pipeline runs, so files are never decoded on the driver.
A file longer than the reader's window (``window_s``, default 10 minutes)
is not decoded at once: the reader returns a :class:`FileChunks` that decodes
one window at a time as the pipeline streams it, so memory stays bounded for
hour-long recordings. :class:`ContentKey` gives an item's resume key and
:class:`AudioDuration` its length.

These node types are internal: importing this module registers them with
:func:`~remotemedia_ray.nodes.registry.register_internal`, so they resolve
only for the job's own node ids, and a Ray worker that unpickles one of
these classes (by reference, through this module) has them registered too.
"""

from __future__ import annotations

import bisect
import itertools
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field

from remotemedia_ray._arrow import from_numpy
from remotemedia_ray.audio import AudioBuffer, AudioChunks, AudioFormat
from remotemedia_ray.dataset.codecs import Probe, decode_audio, decode_windows, probe
from remotemedia_ray.dataset.keys import bytes_key, content_key, remember_key, row_key
from remotemedia_ray.errors import AudioFormatError
from remotemedia_ray.nodes.base import Capability, ChunkStream, NodeExecutor, parse_params
from remotemedia_ray.nodes.registry import register_internal

__all__ = [
    "INTERNAL_NODES",
    "AudioDuration",
    "AudioFileReader",
    "ContentKey",
    "FileChunks",
    "ReaderParams",
]


class _ParquetCache:
    """The row group of the last Parquet row read (inputs arrive sorted by file and row).

    Two layouts are read: the job's own (``audio`` a list of samples beside
    ``sample_rate`` and optionally ``channels``), and HuggingFace's ``Audio``
    layout (``audio`` a struct whose ``bytes`` hold an encoded file), decoded
    here. Memory is one row group at a time.
    """

    def __init__(self) -> None:
        self._path: str | None = None
        self._file: Any = None
        self._starts: list[int] = []
        self._group = -1
        self._table: pa.Table | None = None

    def _locate(self, path: str, row: int, fs: pafs.FileSystem | None) -> tuple[pa.Table, int]:
        import pyarrow.parquet as pq

        if self._path != path:
            source = fs.open_input_file(path) if fs is not None else path
            self._file = pq.ParquetFile(source)
            meta = self._file.metadata
            counts = (meta.row_group(g).num_rows for g in range(meta.num_row_groups))
            self._starts = list(itertools.accumulate(counts, initial=0))
            self._path, self._group, self._table = path, -1, None
        if not 0 <= row < self._starts[-1]:
            raise AudioFormatError(f"{path} has no row {row}")
        group = bisect.bisect_right(self._starts, row) - 1
        if group != self._group or self._table is None:
            table = self._file.read_row_group(group)
            audio = table.schema.field("audio").type
            if not pa.types.is_struct(audio) and "channels" not in table.column_names:
                table = table.append_column("channels", from_numpy(np.ones(len(table), np.int16)))
            self._table, self._group = table, group
        return self._table, row - self._starts[group]

    def row(self, path: str, row: int, fs: pafs.FileSystem | None = None) -> AudioBuffer:
        """The audio of one row (decoded, for the encoded layout)."""
        table, local = self._locate(path, row, fs)
        encoded = self._encoded(table, local, path, row)
        if encoded is not None:
            return decode_audio(encoded, f"{_shown(path, fs)}#{row}")
        return AudioBuffer.from_table_row(table, local)

    def key(self, path: str, row: int, fs: pafs.FileSystem | None = None) -> str:
        """The resume key of one row: a digest of its encoded bytes, or of its samples."""
        table, local = self._locate(path, row, fs)
        encoded = self._encoded(table, local, path, row)
        if encoded is not None:
            return bytes_key(encoded)
        return row_key(self.row(path, row, fs))

    @staticmethod
    def _encoded(table: pa.Table, local: int, path: str, row: int) -> bytes | None:
        """The row's encoded file (HuggingFace's Audio layout), or None for samples."""
        if not pa.types.is_struct(table.schema.field("audio").type):
            return None
        cell = table.column("audio")[local].as_py() or {}
        data = cell.get("bytes")
        if not data:
            where = f" (only a path, {cell['path']!r})" if cell.get("path") else ""
            raise AudioFormatError(f"{path}#{row}: the audio cell holds no bytes{where}")
        return bytes(data)


class FileChunks(AudioChunks):
    """A long audio file decoded one window at a time, as a pipeline streams it.

    Decoding in windows gives the same samples as decoding the whole file
    (:func:`~remotemedia_ray.dataset.codecs.decode_windows`). It pickles as
    its path and probe, so it can cross processes (a node that cannot stream
    then reads the whole file where it runs). A file in a store is read with
    ranged requests, one window at a time.

    ``num_frames`` is the header's count: exact for the formats libsndfile
    decodes, the container's estimate for FFmpeg's (the job counts the frames
    actually decoded).

    Args:
        path: The file (a path in ``fs`` when given).
        window_frames: Frames per chunk (the last may be shorter).
        probed: The file's header and decoder.
        fs: The filesystem of a file in a store; None for a local file.
    """

    def __init__(
        self,
        path: str,
        *,
        window_frames: int,
        probed: Probe,
        fs: pafs.FileSystem | None = None,
    ) -> None:
        if window_frames < 1:
            raise AudioFormatError(f"window_frames must be >= 1, got {window_frames}")
        self.path = path
        self.window_frames = int(window_frames)
        self.probed = probed
        self.sample_rate = probed.sample_rate
        self.channels = probed.channels
        self.num_frames = max(0, probed.frames)
        self.fs = fs
        self.format = AudioFormat.from_dtype(np.dtype(probed.dtype))

    def chunks(self) -> Iterator[AudioBuffer]:
        name = _shown(self.path, self.fs)
        if self.fs is None:
            yield from decode_windows(self.path, name, self.probed, self.window_frames)
            return
        try:
            handle = self.fs.open_input_file(self.path)
        except OSError as exc:
            raise AudioFormatError(f"cannot read {name}: {exc.strerror or exc}") from None
        with handle:
            yield from decode_windows(handle, name, self.probed, self.window_frames)


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
        path, fs = input["path"], input.get("fs")
        if input.get("row") is not None:
            return self._parquet.row(path, int(input["row"]), fs)
        try:
            if fs is not None:
                data, stamp = self._read_store(path, fs)
                if isinstance(data, FileChunks):
                    return data
            else:
                with open(path, "rb") as handle:
                    stat = os.fstat(handle.fileno())
                    if stat.st_size > _READ_WHOLE_BYTES:  # maybe long: look at the header first
                        chunks = self._long_file(path, None)
                        if chunks is not None:
                            return chunks
                    data = handle.read()
                stamp = (stat.st_size, stat.st_mtime_ns)
        except OSError as exc:
            raise AudioFormatError(
                f"cannot read {_shown(path, fs)}: {exc.strerror or exc}"
            ) from None
        if len(data) == stamp[0]:  # unchanged while read: the resume key needs no re-read
            remember_key(path, stamp, data)
        name = _shown(path, fs)
        if not data:
            raise AudioFormatError(f"cannot decode audio file {name!r}: empty file")
        probed = probe(data, name)
        chunks = self._long_file(path, probed, fs)
        if chunks is not None:  # a long file, compressed into few bytes
            return chunks
        return decode_audio(data, name, probed=probed)

    def _read_store(
        self, path: str, fs: pafs.FileSystem
    ) -> tuple[bytes | FileChunks, tuple[int, int]]:
        """A file of a store: its bytes (or its chunks when long) and its size and time."""
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(2, "no such file")
        stamp = (int(info.size or 0), int(info.mtime_ns or 0))
        if stamp[0] > _READ_WHOLE_BYTES:
            chunks = self._long_file(path, None, fs)
            if chunks is not None:
                return chunks, stamp
        with fs.open_input_stream(path) as handle:
            return handle.read(), stamp

    def _long_file(
        self, path: str, probed: Probe | None, fs: pafs.FileSystem | None = None
    ) -> FileChunks | None:
        """The file as chunks when it is longer than the window, else None.

        ``probed`` is its header, or None to read it (a large file: one whose
        length the header does not state is taken as long).
        """
        window_s = self.params.window_s
        if window_s is None:
            return None
        large = probed is None
        if probed is None:
            try:
                if fs is not None:
                    with fs.open_input_file(path) as handle:
                        probed = probe(handle, _shown(path, fs))
                else:
                    probed = probe(path, path)
            except (AudioFormatError, OSError):
                return None  # reading it whole gives the error
        window = max(1, math.floor(window_s * probed.sample_rate))
        if probed.frames <= window and not (large and probed.frames < 0):
            return None
        return FileChunks(path, window_frames=window, probed=probed, fs=fs)


def _shown(path: str, fs: pafs.FileSystem | None) -> str:
    """How errors name a file: its path, or its URI in a store."""
    return path if fs is None else f"{fs.type_name}://{path}"


_READ_WHOLE_BYTES = 4 << 20
"""Files up to this size are read into memory at once; larger ones may be long."""


class ContentKey(NodeExecutor):
    """The resume key of an input item: a digest of its file's bytes, or of its Parquet row."""

    def initialize(self, params: Mapping[str, Any]) -> None:
        self._parquet = _ParquetCache()

    def execute(self, input: Any) -> str:
        if not isinstance(input, dict) or "path" not in input:
            raise AudioFormatError(f"key input must be an input item, got {type(input).__name__}")
        path, fs = input["path"], input.get("fs")
        try:
            if input.get("row") is not None:
                return self._parquet.key(path, int(input["row"]), fs)
            return content_key(path, fs)
        except OSError as exc:
            raise AudioFormatError(
                f"cannot read {_shown(path, fs)}: {exc.strerror or exc}"
            ) from None


class AudioDuration(NodeExecutor):
    """The duration of an AudioBuffer in seconds; a long file's is counted as it streams.

    Counting the decoded frames (rather than trusting the header) makes the
    duration of a compressed file exact whether it is read whole or in windows.
    """

    accepts_chunks = True

    def initialize(self, params: Mapping[str, Any]) -> None:
        pass

    def execute(self, input: Any) -> float:
        if isinstance(input, AudioChunks):  # not streamed (an unfused actor): count them
            counter = _FrameCount()
            for chunk in input.chunks():
                counter.push(chunk)
            return counter.finish()
        if not isinstance(input, AudioBuffer):
            raise AudioFormatError(f"expected an AudioBuffer, got {type(input).__name__}")
        return input.duration_seconds

    def open_stream(self) -> ChunkStream:
        return _FrameCount()


class _FrameCount(ChunkStream):
    emits_audio = False

    def __init__(self) -> None:
        self.frames = 0
        self.sample_rate = 0

    def push(self, chunk: AudioBuffer) -> None:
        self.frames += chunk.num_frames
        self.sample_rate = chunk.sample_rate

    def finish(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


INTERNAL_NODES: dict[str, type[NodeExecutor]] = {
    "AudioFileReader": AudioFileReader,
    "ContentKey": ContentKey,
    "AudioDuration": AudioDuration,
}
"""The dataset job's internal node types, by node type."""

for _node_type, _cls in INTERNAL_NODES.items():
    register_internal(_node_type, _cls)
