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

import io
import math
import os
import re
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
from pydantic import BaseModel, ConfigDict, Field

from remotemedia_ray.audio import AudioBuffer, AudioChunks, AudioFormat
from remotemedia_ray.dataset.keys import content_key, remember_key, row_key
from remotemedia_ray.errors import AudioFormatError
from remotemedia_ray.nodes.base import Capability, NodeExecutor, parse_params
from remotemedia_ray.nodes.registry import register_internal

__all__ = [
    "INTERNAL_NODES",
    "AudioDuration",
    "AudioFileReader",
    "ContentKey",
    "FileChunks",
    "ReaderParams",
    "decode_audio",
]


class _ParquetCache:
    """The table of the last Parquet file read (inputs arrive sorted by file)."""

    def __init__(self) -> None:
        self._path: str | None = None
        self._table: pa.Table | None = None

    def row(self, path: str, row: int, fs: pafs.FileSystem | None = None) -> AudioBuffer:
        import pyarrow.parquet as pq

        if self._path != path or self._table is None:
            table = pq.read_table(path, filesystem=fs)
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
            dtype = _decode_dtype((info or sf.info(io.BytesIO(data))).subtype)
        samples, rate = sf.read(io.BytesIO(data), dtype=dtype, always_2d=True)
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
    cannot stream then reads the whole file where it runs). A file in a store
    is read with ranged requests, one window at a time.

    Args:
        path: The file (a path in ``fs`` when given).
        window_frames: Frames per chunk (the last may be shorter).
        sample_rate, channels, num_frames: From the file's header.
        dtype: ``int16``/``int32`` for 16/32-bit PCM, else ``float32``.
        fs: The filesystem of a file in a store; None for a local file.
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
        fs: pafs.FileSystem | None = None,
    ) -> None:
        if window_frames < 1:
            raise AudioFormatError(f"window_frames must be >= 1, got {window_frames}")
        self.path = path
        self.window_frames = int(window_frames)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.num_frames = int(num_frames)
        self.dtype = dtype
        self.fs = fs
        self.format = AudioFormat.from_dtype(np.dtype(dtype))

    def chunks(self) -> Iterator[AudioBuffer]:
        import soundfile as sf

        try:
            source = self.fs.open_input_file(self.path) if self.fs is not None else self.path
            handle = sf.SoundFile(source)
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
        info = _sound_info(data)
        if info is not None:
            chunks = self._long_file(path, info, fs)
            if chunks is not None:  # a long file, compressed into few bytes
                return chunks
        return decode_audio(data, _shown(path, fs), info=info)

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
        self, path: str, info: Any, fs: pafs.FileSystem | None = None
    ) -> FileChunks | None:
        """The file as chunks when it is longer than the window, else None.

        ``info`` is its header (soundfile's ``info``), or None to read it.
        """
        import soundfile as sf

        window_s = self.params.window_s
        if window_s is None:
            return None
        if info is None:
            try:
                if fs is not None:
                    with fs.open_input_file(path) as handle:
                        info = sf.info(handle)
                else:
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
            fs=fs,
        )


def _shown(path: str, fs: pafs.FileSystem | None) -> str:
    """How errors name a file: its path, or its URI in a store."""
    return path if fs is None else f"{fs.type_name}://{path}"


_READ_WHOLE_BYTES = 4 << 20
"""Files up to this size are read into memory at once; larger ones may be long."""


def _sound_info(data: bytes) -> Any:
    """soundfile's header info of an encoded file, or None when it has none."""
    import soundfile as sf

    try:
        return sf.info(io.BytesIO(data)) if data else None
    except Exception:
        return None


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
                return row_key(self._parquet.row(path, int(input["row"]), fs))
            return content_key(path, fs)
        except OSError as exc:
            raise AudioFormatError(
                f"cannot read {_shown(path, fs)}: {exc.strerror or exc}"
            ) from None


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


INTERNAL_NODES: dict[str, type[NodeExecutor]] = {
    "AudioFileReader": AudioFileReader,
    "ContentKey": ContentKey,
    "AudioDuration": AudioDuration,
}
"""The dataset job's internal node types, by node type."""

for _node_type, _cls in INTERNAL_NODES.items():
    register_internal(_node_type, _cls)
