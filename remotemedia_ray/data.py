"""Ray Data glue: audio files into a ``ray.data.Dataset``, and a dataset through a manifest.

For users who already live in Ray Data::

    import remotemedia_ray.data as rmd

    ds = rmd.read_audio("s3://bucket/speech/")               # decoded in Ray workers
    ds = rmd.map_pipeline(ds, "examples/speech_prep.json", concurrency=4)
    ds.write_parquet("/data/speech_prepped")

Both functions are lazy, like every Ray Data transform: nothing runs until the
dataset is consumed (``take``, ``iter_batches``, ``write_*``, ``materialize``).

The audio schema (what :func:`read_audio` produces and :func:`map_pipeline`
consumes) is the batch-table schema of :func:`remotemedia_ray.audio_table`
plus two columns: ``id`` (string), ``path`` (string), ``audio``
(large_list<float32>, interleaved samples), ``sample_rate`` (int32),
``channels`` (int16), ``frames`` (int64).

Importing this module does not import Ray.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa

from remotemedia_ray.audio import AUDIO_COLUMN, AudioBuffer, AudioFormat, Clips, audio_table
from remotemedia_ray.columns import Layout, cell, layout_of
from remotemedia_ray.columns import columns as sink_columns
from remotemedia_ray.dataset import audio_extensions, decode_audio
from remotemedia_ray.errors import (
    AudioFormatError,
    ConfigError,
    InputError,
    ManifestError,
    MarshalingError,
    RemoteMediaError,
)
from remotemedia_ray.manifest import Manifest, RuntimeHint, check_runtime_hint
from remotemedia_ray.pipeline import OnError, Pipeline

if TYPE_CHECKING:
    import ray.data

__all__ = ["AUDIO_EXTENSIONS", "map_pipeline", "read_audio"]

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS: tuple[str, ...] = tuple(sorted(ext[1:] for ext in audio_extensions()))
"""File extensions :func:`read_audio` reads by default (formats libsndfile decodes)."""

PathLike = str | os.PathLike[str]


# -- reading --------------------------------------------------------------------------


def read_audio(
    paths: PathLike | Sequence[PathLike],
    *,
    include_paths: bool = True,
    on_error: Literal["raise", "skip"] = "raise",
    **read_args: Any,
) -> ray.data.Dataset:
    """A dataset of decoded audio files, one row per file, in the audio schema.

    Files are read and decoded with soundfile inside Ray workers, never on the
    driver. Samples are float32 in [-1, 1], interleaved ``(frames, channels)``.

    Args:
        paths: A file, a directory (read recursively), or a list of them; local
            paths or any filesystem URI Ray Data reads.
        include_paths: Keep the ``path`` column (``id`` is the path either way).
        on_error: ``"raise"`` (default): an undecodable file fails the
            dataset when it is consumed, with an
            :class:`~remotemedia_ray.errors.AudioFormatError` naming the file
            (Ray Data re-raises it as a ``ray.exceptions.RayTaskError`` whose
            message carries it). ``"skip"``: the file is dropped and the worker
            logs a warning naming it.
        **read_args: Passed to ``ray.data.read_binary_files`` (``filesystem``,
            ``partition_filter``, ``override_num_blocks``, ``shuffle``, ...).
            ``file_extensions`` defaults to :data:`AUDIO_EXTENSIONS`; pass
            ``file_extensions=None`` to read every file.

    Returns:
        A lazy ``ray.data.Dataset`` with columns ``id``, ``path`` (when
        ``include_paths``), ``audio``, ``sample_rate``, ``channels``, ``frames``.

    Example::

        ds = read_audio("examples/audio")
        row = ds.take(1)[0]
        print(row["path"], row["sample_rate"], row["channels"], row["frames"])
    """
    if on_error not in ("raise", "skip"):
        raise ConfigError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
    if "include_paths" in read_args:
        raise TypeError("pass include_paths as read_audio's own argument")
    path_list = _path_list(paths)

    import ray.data

    read_args.setdefault("file_extensions", list(AUDIO_EXTENSIONS))
    files = ray.data.read_binary_files(path_list, include_paths=True, **read_args)
    return files.map_batches(
        _AudioDecoder(include_paths=include_paths, skip_errors=on_error == "skip"),
        batch_format="pyarrow",
        batch_size=None,
    )


def _path_list(paths: PathLike | Sequence[PathLike]) -> list[str]:
    """Every path as a string; local ones absolute (workers may run elsewhere)."""
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise InputError("read_audio needs at least one path")
    out = []
    for item in items:
        text = os.fspath(item)
        out.append(text if "://" in text else os.path.abspath(text))
    return out


@dataclass(frozen=True)
class _AudioDecoder:
    """Decodes a batch of ``read_binary_files`` rows (``bytes``, ``path``) into audio rows."""

    include_paths: bool
    skip_errors: bool

    def __call__(self, batch: pa.Table) -> pa.Table:
        paths: list[str] = []
        buffers: list[AudioBuffer] = []
        blobs = batch.column("bytes")
        for row, path in enumerate(batch.column("path").to_pylist()):
            try:
                buffer = decode_audio(blobs[row].as_py(), path, keep_pcm=False)
            except AudioFormatError as exc:
                if self.skip_errors:
                    logger.warning("skipping %s: %s", path, exc)
                    continue
                raise
            paths.append(path)
            buffers.append(buffer)
        table = audio_table(paths, buffers)
        if self.include_paths:
            table = table.add_column(1, "path", pa.array(paths, pa.string()))
        frames = pa.array([b.num_frames for b in buffers], pa.int64())
        return table.append_column("frames", frames)


# -- mapping through a manifest --------------------------------------------------------

_RESERVED_COLUMNS = ("id", "path", "error")


def map_pipeline(
    ds: ray.data.Dataset,
    manifest: Manifest | str | Path | Mapping[str, Any],
    *,
    runtime: RuntimeHint | None = None,
    on_error: OnError = "raise",
    batch_size: int | None = 8,
    concurrency: int | tuple[int, int] | None = None,
    num_cpus: float = 1.0,
    keep_columns: Sequence[str] = (),
    **map_batches_args: Any,
) -> ray.data.Dataset:
    """Map a dataset in the audio schema through a pipeline manifest, on an actor pool.

    Each actor builds the pipeline once (``Pipeline(manifest, runtime="local")``,
    every node initialized) and runs every item of its batches through it,
    viewing each row's samples in place (no copy for list / large_list audio
    columns). The manifest is validated and every node's runtime resolved
    here, on the driver, before anything runs: errors name the node.

    Input columns: ``audio`` (list of samples, interleaved), ``sample_rate``,
    optionally ``channels`` (default 1), and ``id`` or ``path`` naming the item.

    Output columns: ``id``; ``path`` when the input has it; ``keep_columns``;
    then, per sink, in manifest order:

    * an :class:`~remotemedia_ray.AudioBuffer` output: ``{sink}_audio``
      (large_list of samples in the buffer's format), ``{sink}_sample_rate``
      (int32), ``{sink}_channels`` (int16);
    * a list of dicts (such as VAD segments): ``{sink}``, a list<struct> column;
    * a number: ``{sink}``, float64;
    * anything else: ``{sink}``, its JSON text.

    With ``on_error="record"`` an ``error`` column (string) is added: null for
    items that succeeded, ``"node_id: message"`` for one that failed, whose
    sink columns are null. With ``"raise"`` the first failing item's error
    fails the dataset; Ray Data re-raises it as a ``ray.exceptions.RayTaskError``
    whose message carries it (``[node 'x', item 'y'] ...``).

    Args:
        ds: The dataset (see :func:`read_audio`).
        manifest: A :class:`~remotemedia_ray.Manifest`, a path to one, JSON
            text, or a dict.
        runtime: Node runtime for every node (``"auto"``, ``"cpython"`` or
            ``"rust_native"``); default: each node's ``runtime_hint``.
        on_error: ``"raise"`` or ``"record"`` (see above).
        batch_size: Items per actor call.
        concurrency: Actors in the pool: ``n`` for a fixed pool, ``(min, max)``
            to autoscale; default: Ray Data's autoscaling pool.
        num_cpus: CPUs reserved per actor.
        keep_columns: Input columns to copy through to the output unchanged
            (e.g. transcripts or labels).
        **map_batches_args: More ``Dataset.map_batches`` options (``memory``,
            ``resources``, ``runtime_env``, ...).

    Returns:
        A lazy ``ray.data.Dataset`` with one output row per input row.

    Example::

        ds = map_pipeline(read_audio("examples/audio"), "examples/speech_prep.json",
                          on_error="record", concurrency=2)
        for row in ds.take_all():
            print(row["id"], row["error"] or len(row["vad"]), row["pcm16_sample_rate"])
    """
    check_runtime_hint(runtime, "runtime")
    if on_error not in ("raise", "record"):
        raise ConfigError(f"on_error must be 'raise' or 'record', got {on_error!r}")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1 or None, got {batch_size}")
    checked = Pipeline(manifest, runtime="local", on_error=on_error, node_runtime=runtime)
    _check_column_names(checked.graph.sinks, tuple(keep_columns))
    known_columns = ds.columns(fetch_if_missing=False)
    if known_columns is not None:
        _check_input_columns(known_columns, keep_columns)
    return ds.map_batches(
        _PipelineMapper,
        fn_constructor_kwargs={
            "manifest": checked.manifest,
            "runtime": runtime,
            "on_error": on_error,
            "keep_columns": tuple(keep_columns),
        },
        batch_format="pyarrow",
        batch_size=batch_size,
        compute=_actor_pool(concurrency),
        num_cpus=num_cpus,
        **map_batches_args,
    )


def _actor_pool(concurrency: int | tuple[int, int] | None) -> Any:
    import ray.data

    if concurrency is None:
        return None  # Ray Data's default pool for a callable class
    if isinstance(concurrency, int) and not isinstance(concurrency, bool):
        return ray.data.ActorPoolStrategy(size=concurrency)
    if isinstance(concurrency, tuple) and len(concurrency) == 2:
        low, high = concurrency
        return ray.data.ActorPoolStrategy(min_size=low, max_size=high)
    raise ConfigError(f"concurrency must be an int or a (min, max) tuple, got {concurrency!r}")


def _output_names(sink: str) -> tuple[str, ...]:
    return (sink, f"{sink}_audio", f"{sink}_sample_rate", f"{sink}_channels")


def _check_column_names(sinks: Sequence[str], keep_columns: Sequence[str]) -> None:
    """Refuse sink ids whose output columns would collide (errors name the node)."""
    for name in keep_columns:
        if name in _RESERVED_COLUMNS:
            raise ConfigError(f"keep_columns cannot name {name!r}: map_pipeline makes that column")
    taken = {name: f"the {name!r} column" for name in (*_RESERVED_COLUMNS, *keep_columns)}
    for sink in sinks:
        for name in _output_names(sink):
            if name in taken:
                raise ManifestError(
                    f"its output column {name!r} collides with {taken[name]}", node_id=sink
                )
        for name in _output_names(sink):
            taken[name] = f"the outputs of node {sink!r}"


# -- the actor --------------------------------------------------------------------------


class _PipelineMapper:
    """The callable class Ray Data runs in each actor of the pool (one pipeline per actor).

    Every batch must come out with the same columns and types, or Ray Data's
    writers drop or refuse columns. Each sink's layout is learned from the
    first output that shows it and kept; a batch that shows nothing (every
    item failed, or every list came out empty) learns it from a synthetic
    probe item shaped like the batch's first row.
    """

    def __init__(
        self,
        manifest: Manifest,
        runtime: RuntimeHint | None,
        on_error: OnError,
        keep_columns: tuple[str, ...],
    ) -> None:
        self._on_error = on_error
        self._keep_columns = keep_columns
        self._pipeline = Pipeline(manifest, runtime="local", node_runtime=runtime).open()
        self._sinks = self._pipeline.graph.sinks
        self._layouts: dict[str, Layout] = {}
        self._warned: set[str] = set()

    def __call__(self, batch: pa.Table) -> pa.Table:
        _check_input_columns(batch.column_names, self._keep_columns)
        ids = _item_ids(batch)
        inputs = _input_buffers(batch)
        outputs: list[Mapping[str, Any] | RemoteMediaError] = []
        for item_id, item in zip(ids, inputs, strict=True):
            if isinstance(item, RemoteMediaError):
                outputs.append(self._failed(item.with_context(item_id=item_id)))
                continue
            try:
                outputs.append(self._pipeline.run(item, item_id=item_id))
            except RemoteMediaError as error:
                outputs.append(self._failed(error))
        self._learn([o for o in outputs if not isinstance(o, RemoteMediaError)])
        if any(sink not in self._layouts for sink in self._sinks):
            self._learn(self._probe(next((b for b in inputs if isinstance(b, AudioBuffer)), None)))
        rows = [
            o if isinstance(o, RemoteMediaError) else self._cells(o, item_id)
            for item_id, o in zip(ids, outputs, strict=True)
        ]
        return self._table(batch, ids, rows)

    def __del__(self) -> None:
        pipeline = getattr(self, "_pipeline", None)
        if pipeline is not None:
            pipeline.close()

    def _failed(self, error: RemoteMediaError) -> RemoteMediaError:
        if self._on_error == "raise":
            raise error
        return error

    def _learn(self, outputs: Sequence[Mapping[str, Any]]) -> None:
        for sink in self._sinks:
            for output in outputs:
                if sink in self._layouts:
                    break
                if isinstance(output[sink], Clips):
                    raise ConfigError(
                        f"sink {sink!r} yields several outputs per item (clips); "
                        "map_pipeline gives one row per item: write clips with "
                        "`remotemedia-ray run` instead"
                    )
                layout = layout_of(output[sink])
                if layout is not None:
                    self._layouts[sink] = layout

    def _probe(self, like: AudioBuffer | None) -> list[Mapping[str, Any]]:
        """Outputs for a synthetic item (silence, then a -12 dBFS tone) shaped like ``like``."""
        try:
            return [self._pipeline.run(_probe_item(like), item_id="<schema probe>")]
        except RemoteMediaError as error:
            logger.debug("schema probe failed: %s", error)
            return []

    def _cells(self, output: Mapping[str, Any], item_id: str) -> dict[str, Any] | RemoteMediaError:
        """Each sink's output as its column holds it, or the error of the one that misfits."""
        cells: dict[str, Any] = {}
        for sink in self._sinks:
            value, layout = output[sink], self._layouts.get(sink)
            if layout is None:
                cells[sink] = None
                continue
            try:
                cells[sink] = cell(value, layout)
            except (TypeError, ValueError, pa.ArrowException) as exc:
                error = MarshalingError(
                    f"output {type(value).__name__} does not fit the {layout.kind} column "
                    f"that earlier items made: {exc}",
                    node_id=sink,
                    item_id=item_id,
                )
                error.__cause__ = exc
                return self._failed(error)
        return cells

    def _table(
        self,
        batch: pa.Table,
        ids: list[str],
        rows: list[dict[str, Any] | RemoteMediaError],
    ) -> pa.Table:
        columns: dict[str, pa.Array | pa.ChunkedArray] = {"id": pa.array(ids, pa.string())}
        for name in ("path", *self._keep_columns):
            if name in batch.column_names:
                columns[name] = batch.column(name)
        for sink in self._sinks:
            values = [None if isinstance(r, RemoteMediaError) else r[sink] for r in rows]
            layout = self._layouts.get(sink)
            if layout is None:
                if sink not in self._warned:
                    self._warned.add(sink)
                    logger.warning(
                        "sink %r: no output to learn its column type from; writing nulls", sink
                    )
                columns[sink] = pa.nulls(len(values))
                continue
            columns.update(sink_columns(layout, values, sink))
        if self._on_error == "record":
            columns["error"] = pa.array(
                [_error_text(r) if isinstance(r, RemoteMediaError) else None for r in rows],
                pa.string(),
            )
        return pa.table(columns)


def _check_input_columns(names: Sequence[str], keep_columns: Sequence[str]) -> None:
    """Refuse a dataset that is not in the audio schema (driver- and worker-side)."""
    missing = [n for n in (AUDIO_COLUMN, "sample_rate", *keep_columns) if n not in names]
    if "id" not in names and "path" not in names:
        missing.append("id")
    if missing:
        raise MarshalingError(
            f"map_pipeline needs column(s) {missing} (the audio schema, see read_audio); "
            f"the dataset has {list(names)}"
        )


def _item_ids(batch: pa.Table) -> list[str]:
    column = batch.column("id" if "id" in batch.column_names else "path")
    return [str(v) for v in column.to_pylist()]


def _input_buffers(batch: pa.Table) -> list[AudioBuffer | RemoteMediaError]:
    """Each row's audio: a view of the batch's memory where the column type allows."""
    table = batch
    if "channels" not in table.column_names:
        table = table.append_column("channels", pa.array(np.ones(len(table), np.int16)))
    audio_type = table.schema.field(AUDIO_COLUMN).type
    in_place = (pa.types.is_list(audio_type) or pa.types.is_large_list(audio_type)) and (
        _sample_dtype(audio_type.value_type) is not None
    )
    out: list[AudioBuffer | RemoteMediaError] = []
    for row in range(table.num_rows):
        try:
            if in_place:
                out.append(AudioBuffer.from_table_row(table, row))
            else:
                out.append(_buffer_from_values(table, row, audio_type))
        except RemoteMediaError as error:
            out.append(error)
    return out


def _sample_dtype(arrow_type: pa.DataType) -> np.dtype[Any] | None:
    try:
        return AudioFormat.from_dtype(arrow_type).dtype
    except (AudioFormatError, NotImplementedError):
        return None


def _buffer_from_values(table: pa.Table, row: int, audio_type: pa.DataType) -> AudioBuffer:
    """A row whose audio column cannot be viewed in place (fixed-size lists, tensors)."""
    value = table.column(AUDIO_COLUMN)[row].as_py()
    if value is None:
        raise AudioFormatError(f"row {row} of the batch has no audio")
    value_type = getattr(audio_type, "value_type", None)
    dtype = _sample_dtype(value_type) if value_type is not None else None
    samples = np.asarray(value, dtype=dtype)
    if samples.dtype == np.float64 and dtype is None:
        samples = samples.astype(np.float32)
    channels = int(table.column("channels")[row].as_py() or 1)
    if samples.ndim == 1 and channels > 1:
        samples = samples.reshape(-1, channels)
    return AudioBuffer.from_numpy(samples, table.column("sample_rate")[row].as_py())


def _probe_item(like: AudioBuffer | None) -> AudioBuffer:
    rate = like.sample_rate if like is not None else 16000
    channels = like.channels if like is not None else 1
    fmt = like.format if like is not None else AudioFormat.F32
    half = max(rate // 2, 1)
    t = np.arange(half) / rate
    tone = np.concatenate([np.zeros(half), 0.25 * np.sin(2 * math.pi * 440.0 * t)])
    samples = np.repeat(tone[:, None], channels, axis=1)
    if not fmt.is_float:
        samples = np.round(samples * (2 ** (fmt.bits - 1) - 1))
    return AudioBuffer.from_numpy(samples.astype(fmt.dtype), rate)


def _error_text(error: RemoteMediaError) -> str:
    return error.message if error.node_id is None else f"{error.node_id}: {error.message}"
