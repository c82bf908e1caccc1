"""Audio buffers backed by Arrow memory.

An :class:`AudioBuffer` holds interleaved samples (row-major ``(frames,
channels)``) in one Arrow array, plus its sample rate, channel count and
:class:`AudioFormat`. Converting to and from numpy never copies when the
numpy array is C-contiguous: both sides see the same memory.

A batch of items is a ``pa.Table`` with one row per item: an ``id`` column
(string), the audio as a list column of samples, ``sample_rate`` and
``channels``. :func:`audio_table` builds one; :meth:`AudioBuffer.from_table_row`
views one row of it without copying.

Stored (the dataset job's Parquet shards), the samples of a row are one binary
value instead: ``audio`` (large binary: the interleaved samples, little-endian)
beside ``sample_format`` (the numpy dtype name, such as ``"int16"``).
:func:`pcm_column` makes that column from a list column without copying, and
:meth:`AudioBuffer.from_table_row` reads either layout; without the library,
``np.frombuffer(row["audio"], row["sample_format"]).reshape(-1, row["channels"])``
gives a row's samples. Parquet writes a binary value several times faster
than a list of the same samples, and reads it back faster (it keeps no
per-sample list levels).

Audio too long to hold at once (an hour-long recording) is an
:class:`AudioChunks`: consecutive pieces read one at a time. Pipelines push
it through their nodes chunk by chunk with the same result as the whole
audio, so memory stays bounded by the chunk size (see
:meth:`remotemedia_ray.nodes.base.NodeExecutor.open_stream`).
"""

from __future__ import annotations

import abc
import enum
import numbers
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from remotemedia_ray._arrow import array, from_numpy, to_numpy
from remotemedia_ray.errors import AudioFormatError

__all__ = [
    "AUDIO_COLUMN",
    "SAMPLE_FORMAT_COLUMN",
    "AudioBuffer",
    "AudioChunks",
    "AudioFormat",
    "BufferChunks",
    "Clip",
    "Clips",
    "audio_list_column",
    "audio_table",
    "buffers_from_table",
    "concat_audio",
    "pcm_column",
]

AUDIO_COLUMN = "audio"
"""Name of the list column holding each item's interleaved samples in a batch table."""

SAMPLE_FORMAT_COLUMN = "sample_format"
"""Name of the column naming the samples' numpy dtype where ``audio`` is stored as bytes."""


class AudioFormat(str, enum.Enum):
    """Sample formats: 32/64-bit float in [-1, 1], 16/32-bit signed integers."""

    F32 = "f32"
    I16 = "i16"
    I32 = "i32"
    F64 = "f64"

    @property
    def dtype(self) -> np.dtype[Any]:
        """The numpy dtype of this format."""
        return np.dtype(_DTYPES[self])

    @property
    def arrow_type(self) -> pa.DataType:
        """The Arrow type of one sample in this format."""
        return _ARROW_TYPES[self]

    @property
    def is_float(self) -> bool:
        """True for F32 and F64."""
        return self in (AudioFormat.F32, AudioFormat.F64)

    @property
    def bits(self) -> int:
        """Bits per sample."""
        return self.dtype.itemsize * 8

    @classmethod
    def from_dtype(cls, dtype: Any) -> AudioFormat:
        """The format of a numpy (or Arrow) dtype; raises AudioFormatError for others."""
        try:
            return _BY_TYPE[dtype]
        except (KeyError, TypeError):
            pass
        try:
            if isinstance(dtype, pa.DataType):
                dtype = dtype.to_pandas_dtype()
            dt = np.dtype(dtype)
        except TypeError as exc:
            raise AudioFormatError(f"unsupported sample type {dtype!r}") from exc
        for fmt, name in _DTYPES.items():
            if dt == np.dtype(name):
                return fmt
        raise AudioFormatError(
            f"unsupported sample dtype {dt}; audio must be float32, float64, int16 or int32"
        )


_DTYPES = {
    AudioFormat.F32: "float32",
    AudioFormat.I16: "int16",
    AudioFormat.I32: "int32",
    AudioFormat.F64: "float64",
}
# numpy dtypes and Arrow types -> format, for O(1) lookups on hot paths.
_BY_TYPE: dict[Any, AudioFormat] = {}
for _fmt, _name in _DTYPES.items():
    _BY_TYPE[np.dtype(_name)] = _fmt
    _BY_TYPE[pa.from_numpy_dtype(np.dtype(_name))] = _fmt
_ARROW_TYPES = {fmt: pa.from_numpy_dtype(np.dtype(name)) for fmt, name in _DTYPES.items()}


_MAX_RATE = 2**32 - 1
"""The largest sample rate: the data model's ``sample_rate`` is a ``u32``."""


def _check_rate(sample_rate: Any) -> int:
    if type(sample_rate) is int and 0 < sample_rate <= _MAX_RATE:
        return sample_rate
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, numbers.Integral):
        if isinstance(sample_rate, float) and sample_rate.is_integer():
            sample_rate = int(sample_rate)
        else:
            raise AudioFormatError(f"sample_rate must be a positive integer, got {sample_rate!r}")
    if sample_rate <= 0:
        raise AudioFormatError(f"sample_rate must be a positive integer, got {sample_rate}")
    if sample_rate > _MAX_RATE:
        raise AudioFormatError(
            f"sample_rate must be at most {_MAX_RATE} (a u32, as in the RemoteMedia data "
            f"model), got {sample_rate}"
        )
    return int(sample_rate)


def _check_channels(channels: Any) -> int:
    if isinstance(channels, bool) or not isinstance(channels, numbers.Integral) or channels < 1:
        raise AudioFormatError(f"channels must be an integer >= 1, got {channels!r}")
    return int(channels)


def _as_samples_array(samples: Any) -> np.ndarray:
    """``samples`` as an ndarray of a supported dtype, refusing ragged or object input."""
    if isinstance(samples, np.ndarray):
        arr = samples
    else:
        try:
            arr = np.asarray(samples)
        except ValueError as exc:  # numpy refuses ragged nested sequences
            raise AudioFormatError(f"audio samples are ragged or malformed: {exc}") from exc
    if arr.dtype == object:
        raise AudioFormatError("audio samples have dtype object (ragged or non-numeric input)")
    AudioFormat.from_dtype(arr.dtype)
    return arr


class AudioBuffer:
    """Arrow-backed audio: interleaved samples plus rate, channel count and format.

    Build one with :meth:`from_numpy`, :meth:`from_arrow` or
    :meth:`from_table_row`. The samples are immutable: :meth:`to_numpy`
    returns a read-only view of the same memory.
    """

    __slots__ = ("_arrow", "_channels", "_format", "_sample_rate", "_view")

    def __init__(self, samples: pa.Array, sample_rate: int, channels: int = 1) -> None:
        """Wrap a flat Arrow array of interleaved samples (prefer the ``from_*`` builders)."""
        if not isinstance(samples, pa.Array):
            raise AudioFormatError(
                f"AudioBuffer needs a pyarrow Array of samples, got {type(samples).__name__}"
            )
        fmt = AudioFormat.from_dtype(samples.type)
        if samples.null_count:
            raise AudioFormatError(f"audio samples contain {samples.null_count} null value(s)")
        channels = _check_channels(channels)
        if len(samples) % channels:
            raise AudioFormatError(f"{len(samples)} samples do not divide into {channels} channels")
        self._arrow: pa.Array | None = samples
        self._view: np.ndarray | None = None
        self._sample_rate = _check_rate(sample_rate)
        self._channels = channels
        self._format = fmt

    # -- construction -----------------------------------------------------------------

    @classmethod
    def from_numpy(cls, samples: np.ndarray, sample_rate: int) -> AudioBuffer:
        """Wrap a ``(frames,)`` or ``(frames, channels)`` array; the format follows its dtype.

        A C-contiguous array is not copied: the buffer and the array share memory
        (keep the array unchanged afterwards). Other layouts are copied once into
        C order. The Arrow view of the samples is made when first asked for.

        Raises:
            AudioFormatError: unsupported dtype, ragged/object input, more than
                2 dimensions, zero channels, or a non-positive sample rate.
        """
        arr = samples if type(samples) is np.ndarray else _as_samples_array(samples)
        fmt = _BY_TYPE.get(arr.dtype) or AudioFormat.from_dtype(arr.dtype)
        if arr.ndim == 2:
            if arr.shape[1] < 1:
                raise AudioFormatError("audio array has 0 channels; expected (frames, channels)")
        elif arr.ndim == 1:
            arr = arr.reshape(-1, 1)
        else:
            raise AudioFormatError(
                f"audio array must be (frames,) or (frames, channels), got shape {arr.shape}"
            )
        rate = _check_rate(sample_rate)
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        view = arr.view()
        view.flags.writeable = False
        buffer = cls.__new__(cls)
        buffer._arrow = None
        buffer._view = view
        buffer._sample_rate = rate
        buffer._channels = arr.shape[1]
        buffer._format = fmt
        return buffer

    @classmethod
    def from_arrow(cls, samples: pa.Array, sample_rate: int, channels: int = 1) -> AudioBuffer:
        """Wrap a flat Arrow array of interleaved samples without copying."""
        if isinstance(samples, pa.ChunkedArray):
            if samples.num_chunks == 1:
                samples = samples.chunk(0)
            elif samples.num_chunks == 0:  # concat_arrays needs one array at least
                samples = from_numpy(np.empty(0, AudioFormat.from_dtype(samples.type).dtype))
            else:
                samples = pa.concat_arrays(samples.chunks)
        return cls(samples, sample_rate, channels)

    @classmethod
    def from_table_row(cls, table: pa.Table, row: int) -> AudioBuffer:
        """View row ``row`` of a batch table (see :func:`audio_table`) without copying.

        The table may also hold its audio as bytes (a Parquet shard of the
        dataset job: ``audio`` binary beside ``sample_format``).
        """
        for column in (AUDIO_COLUMN, "sample_rate", "channels"):
            if column not in table.column_names:
                raise AudioFormatError(f"batch table has no {column!r} column")
        if not 0 <= row < table.num_rows:
            raise AudioFormatError(f"row {row} is out of range for a batch of {table.num_rows}")
        audio = table.column(AUDIO_COLUMN)
        chunk_index, local = _locate(audio, row)
        cells = audio.chunk(chunk_index)
        if not cells[local].is_valid:
            raise AudioFormatError(f"row {row} of the batch has no audio")
        rate = table.column("sample_rate")[row].as_py()
        channels = table.column("channels")[row].as_py()
        if pa.types.is_binary(cells.type) or pa.types.is_large_binary(cells.type):
            return cls(_pcm_values(table, cells, local, row), rate, channels)
        start = cells.offsets[local].as_py()
        stop = cells.offsets[local + 1].as_py()
        values = cells.values.slice(start, stop - start)
        return cls(values, rate, channels)

    # -- properties -------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        """Samples per second per channel."""
        return self._sample_rate

    @property
    def channels(self) -> int:
        """Number of interleaved channels."""
        return self._channels

    @property
    def format(self) -> AudioFormat:
        """Sample format (follows the dtype of the samples)."""
        return self._format

    @property
    def num_frames(self) -> int:
        """Samples per channel."""
        if self._view is not None:
            return int(self._view.shape[0])
        assert self._arrow is not None
        return len(self._arrow) // self._channels

    @property
    def duration_seconds(self) -> float:
        """``num_frames / sample_rate``."""
        return self.num_frames / self._sample_rate

    @property
    def nbytes(self) -> int:
        """Bytes of sample data."""
        return self.num_frames * self._channels * self._format.dtype.itemsize

    # -- conversion -------------------------------------------------------------------

    def to_numpy(self) -> np.ndarray:
        """A read-only view of the samples (no copy), shaped as the data model's
        ``to_numpy``: ``(frames,)`` for mono, ``(frames, channels)`` otherwise.

        A mono buffer made from a ``(frames,)`` array gives back that shape and
        that memory; ``(frames, 1)`` input is mono too, and comes back 1-D.
        """
        view = self.to_numpy_2d()
        return view.reshape(-1) if self._channels == 1 else view

    def to_numpy_2d(self) -> np.ndarray:
        """A read-only ``(frames, channels)`` view of the samples, mono included (no copy).

        The layout kernels and frame-wise code want: one row per frame.
        """
        view = self._view
        if view is None:
            assert self._arrow is not None
            view = to_numpy(self._arrow).reshape(-1, self._channels)
            view.flags.writeable = False
            self._view = view
        return view

    def to_arrow(self) -> pa.Array:
        """The flat Arrow array of interleaved samples (no copy)."""
        values = self._arrow
        if values is None:
            assert self._view is not None
            flat = self._view.reshape(-1)  # the (frames, channels) view is C-contiguous
            values = pa.Array.from_buffers(
                self._format.arrow_type, flat.size, [None, pa.py_buffer(flat)]
            )
            self._arrow = values
        return values

    def with_samples(self, samples: np.ndarray, sample_rate: int | None = None) -> AudioBuffer:
        """A new buffer of ``samples`` with this buffer's rate unless another is given."""
        return AudioBuffer.from_numpy(
            samples, self._sample_rate if sample_rate is None else sample_rate
        )

    # -- comparison -------------------------------------------------------------------

    def equals(self, other: object) -> bool:
        """Same rate, channels, format and samples (NaNs in the same places count as equal)."""
        if not isinstance(other, AudioBuffer):
            return False
        if (self._sample_rate, self._channels, self._format) != (
            other._sample_rate,
            other._channels,
            other._format,
        ):
            return False
        a, b = self.to_numpy_2d(), other.to_numpy_2d()
        return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=self._format.is_float))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AudioBuffer):
            return NotImplemented
        return self.equals(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"AudioBuffer(frames={self.num_frames}, channels={self._channels}, "
            f"sample_rate={self._sample_rate}, format={self._format.value})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (AudioBuffer, (self.to_arrow(), self._sample_rate, self._channels))


def _locate(column: pa.ChunkedArray, row: int) -> tuple[int, int]:
    for index, chunk in enumerate(column.chunks):
        if row < len(chunk):
            return index, row
        row -= len(chunk)
    raise AudioFormatError("row out of range")  # guarded by the caller


def audio_table(ids: Sequence[str], buffers: Sequence[AudioBuffer]) -> pa.Table:
    """A batch table: one row per item with ``id``, audio list column, rate, channels.

    All buffers must share one format (the list column has one value type).
    The sample memory is concatenated once into the table's values buffer.
    """
    if len(ids) != len(buffers):
        raise AudioFormatError(f"{len(ids)} ids for {len(buffers)} audio buffers")
    formats = {b.format for b in buffers}
    if len(formats) > 1:
        names = sorted(f.value for f in formats)
        raise AudioFormatError(f"a batch must have one sample format, got {names}")
    fmt = formats.pop() if formats else AudioFormat.F32
    offsets = np.zeros(len(buffers) + 1, dtype=np.int64)
    np.cumsum([b.num_frames * b.channels for b in buffers], out=offsets[1:])
    chunks = [b.to_arrow() for b in buffers]
    values = pa.concat_arrays(chunks) if chunks else from_numpy(np.empty(0, fmt.dtype))
    audio = pa.LargeListArray.from_arrays(from_numpy(offsets), values)
    return pa.table(
        {
            "id": array([str(i) for i in ids], pa.string()),
            AUDIO_COLUMN: audio,
            "sample_rate": array([b.sample_rate for b in buffers], pa.int32()),
            "channels": array([b.channels for b in buffers], pa.int16()),
        }
    )


def audio_list_column(buffers: Sequence[AudioBuffer | None], fmt: AudioFormat) -> pa.ChunkedArray:
    """A large-list audio column with one chunk per buffer, wrapping each buffer's
    own Arrow memory (no samples are copied); ``None`` entries become nulls (one
    chunk for each run of them).

    Every buffer must be in ``fmt`` (the column has one value type).
    """
    list_type = pa.large_list(fmt.arrow_type)
    chunks = []
    nulls = 0  # a run of missing values becomes one chunk
    for buffer in buffers:
        if buffer is None:
            nulls += 1
            continue
        if nulls:
            chunks.append(pa.nulls(nulls, type=list_type))
            nulls = 0
        samples = buffer.to_arrow()
        offsets = from_numpy(np.array([0, len(samples)], np.int64))
        chunks.append(pa.LargeListArray.from_arrays(offsets, samples))
    if nulls:
        chunks.append(pa.nulls(nulls, type=list_type))
    return pa.chunked_array(chunks, type=list_type)


def pcm_column(audio: pa.ChunkedArray) -> tuple[pa.ChunkedArray, str | None]:
    """A large-list audio column as the stored layout: one binary value per row
    holding its samples' bytes (little-endian), and the samples' numpy dtype name.

    The bytes are the list's own memory, not copied; nulls stay null. The name is
    None for a column of another type (returned as it is).
    """
    if not pa.types.is_large_list(audio.type) and not pa.types.is_list(audio.type):
        return audio, None
    fmt = AudioFormat.from_dtype(audio.type.value_type)
    size = fmt.dtype.itemsize
    chunks = []
    for lists in audio.chunks:
        if lists.null_count == len(lists):
            chunks.append(pa.nulls(len(lists), pa.large_binary()))
        elif lists.null_count:  # nulls among values (not a batch's layout): copied
            cells = [
                None if v is None else to_numpy(v.values).tobytes()
                for v in (lists[i] if lists[i].is_valid else None for i in range(len(lists)))
            ]
            chunks.append(array(cells, pa.large_binary()))
        else:
            values = lists.values  # .offsets and .values already account for a slice
            offsets = to_numpy(lists.offsets).astype(np.int64)
            first = int(offsets[0])
            data = values.buffers()[1]
            data = pa.py_buffer(b"") if data is None else data.slice((values.offset + first) * size)
            byte_offsets = pa.py_buffer((offsets - first) * size)
            chunks.append(
                pa.LargeBinaryArray.from_buffers(
                    pa.large_binary(), len(lists), [None, byte_offsets, data]
                )
            )
    return pa.chunked_array(chunks, type=pa.large_binary()), fmt.dtype.name


def _pcm_values(table: pa.Table, cells: pa.Array, local: int, row: int) -> pa.Array:
    """The samples of one stored (binary) audio cell, as a flat Arrow array (no copy)."""
    if SAMPLE_FORMAT_COLUMN not in table.column_names:
        raise AudioFormatError(
            f"the table stores audio as bytes but has no {SAMPLE_FORMAT_COLUMN!r} column"
        )
    name = table.column(SAMPLE_FORMAT_COLUMN)[row].as_py()
    try:
        fmt = AudioFormat.from_dtype(np.dtype(name))
    except (TypeError, ValueError, AudioFormatError) as exc:
        raise AudioFormatError(
            f"row {row}: unknown sample_format {name!r} (expected float32, float64, int16 or int32)"
        ) from exc
    cell = cells[local].as_buffer()
    size = fmt.dtype.itemsize
    if cell.size % size:
        raise AudioFormatError(
            f"row {row}: {cell.size} bytes of audio are not whole {name} samples"
        )
    samples = np.frombuffer(cell, dtype=fmt.dtype.newbyteorder("<")).astype(fmt.dtype, copy=False)
    return pa.Array.from_buffers(fmt.arrow_type, samples.size, [None, pa.py_buffer(samples)])


def buffers_from_table(table: pa.Table) -> list[AudioBuffer]:
    """Every row of a batch table as an :class:`AudioBuffer` view (no copies)."""
    return [AudioBuffer.from_table_row(table, i) for i in range(table.num_rows)]


def concat_audio(pieces: Sequence[AudioBuffer]) -> AudioBuffer:
    """The pieces of one stream joined in order (one copy; a single piece is returned as is).

    Raises:
        AudioFormatError: no pieces, or pieces of different rates, channel
            counts or formats.
    """
    if not pieces:
        raise AudioFormatError("cannot join zero audio pieces")
    first = pieces[0]
    for index, piece in enumerate(pieces[1:], 1):
        if (piece.sample_rate, piece.channels, piece.format) != (
            first.sample_rate,
            first.channels,
            first.format,
        ):
            raise AudioFormatError(f"audio piece {index} is {piece!r}, unlike piece 0: {first!r}")
    if len(pieces) == 1:
        return first
    return AudioBuffer.from_numpy(
        np.concatenate([piece.to_numpy_2d() for piece in pieces]), first.sample_rate
    )


class AudioChunks(abc.ABC):
    """One item's audio as consecutive chunks, read only when iterated.

    A pipeline given an ``AudioChunks`` (by a reader node, or as its input)
    runs every node that can stream on one chunk at a time, in order, and the
    rest on the whole audio; either way each output equals what the whole
    audio gives. Iterating twice reads the audio twice.

    Subclasses set ``sample_rate``, ``channels``, ``format`` and
    ``num_frames`` and implement :meth:`chunks`.
    """

    sample_rate: int
    channels: int
    format: AudioFormat
    num_frames: int

    @abc.abstractmethod
    def chunks(self) -> Iterator[AudioBuffer]:
        """The chunks in order: at least one (an empty buffer for empty audio),
        all with this object's rate, channel count and format."""

    @property
    def duration_seconds(self) -> float:
        """Length of the whole audio in seconds."""
        return self.num_frames / self.sample_rate

    def read_all(self) -> AudioBuffer:
        """The whole audio in one buffer (memory grows with its length)."""
        return concat_audio(list(self.chunks()))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(frames={self.num_frames}, channels={self.channels}, "
            f"sample_rate={self.sample_rate}, format={self.format.value})"
        )


class BufferChunks(AudioChunks):
    """An in-memory :class:`AudioBuffer` served as chunks (views, no copies).

    Args:
        audio: The whole audio.
        chunk_frames: Frames per chunk (the last may be shorter), or a
            sequence of chunk sizes that must add up to the audio's frames.
    """

    def __init__(self, audio: AudioBuffer, chunk_frames: int | Sequence[int]) -> None:
        self.audio = audio
        self.sample_rate = audio.sample_rate
        self.channels = audio.channels
        self.format = audio.format
        self.num_frames = audio.num_frames
        if not isinstance(chunk_frames, Sequence):
            step = int(chunk_frames)
            if step < 1:
                raise AudioFormatError(f"chunk_frames must be >= 1, got {chunk_frames}")
            sizes = [step] * (self.num_frames // step)
            if self.num_frames % step or not sizes:
                sizes.append(self.num_frames % step)
        else:
            sizes = [int(size) for size in chunk_frames]
            if any(size < 0 for size in sizes) or sum(sizes) != self.num_frames or not sizes:
                raise AudioFormatError(
                    f"chunk sizes {sizes} must be >= 0 and add up to {self.num_frames} frames"
                )
        self.sizes = sizes

    def chunks(self) -> Iterator[AudioBuffer]:
        samples = self.audio.to_numpy_2d()
        start = 0
        for size in self.sizes:
            yield AudioBuffer.from_numpy(samples[start : start + size], self.sample_rate)
            start += size


@dataclass(frozen=True)
class Clip:
    """One piece of an item: an utterance cut from its audio, and what nodes made of it.

    Attributes:
        value: The clip's value: its audio as SegmentNode cut it, then the
            output of each node after it.
        start_s: Where it starts in the item's audio, seconds.
        end_s: Where it ends, seconds.
    """

    value: Any
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Clips:
    """The outputs of a node that yields many per input (SegmentNode's utterances).

    Every node downstream runs once per clip (it gets ``clip.value``), and the
    dataset job writes one row per clip, with the id :meth:`id_of` gives. An
    item with no clips has no rows.
    """

    clips: tuple[Clip, ...] = ()

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self) -> Iterator[Clip]:
        return iter(self.clips)

    def __getitem__(self, index: int) -> Clip:
        return self.clips[index]

    @staticmethod
    def id_of(item_id: str, index: int) -> str:
        """The id of clip ``index`` of item ``item_id``: ``{item}/{index}``, stable across runs."""
        return f"{item_id}/{index}"

    def map(self, fn: Callable[[int, Any], Any]) -> Clips:
        """The same clips with each value replaced by ``fn(index, value)``."""
        return Clips(
            tuple(Clip(fn(i, c.value), c.start_s, c.end_s) for i, c in enumerate(self.clips))
        )
