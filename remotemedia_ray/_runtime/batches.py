"""Batches of items as Arrow tables: what travels between node actors.

A batch is one ``pa.Table`` with a row per item:

* ``id`` (string): the item id;
* ``audio`` (large list of samples) with ``sample_rate`` and ``channels``:
  the item's value when it is an :class:`~remotemedia_ray.audio.AudioBuffer`
  (the common case), otherwise null;
* ``value`` (binary): any other value, pickled; null for audio and errors;
* ``error`` (binary): the pickled :class:`~remotemedia_ray.errors.RemoteMediaError`
  of an item that failed upstream (it is carried to the end, never dropped).

The audio column is chunked one item per chunk, wrapping each buffer's own
Arrow memory, so building a batch from kernel outputs copies no samples, and
reading one back (:func:`decode_batch`) gives read-only views of the table's
memory (in Ray's object store, when the table came through it).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from remotemedia_ray._arrow import array, valid_mask
from remotemedia_ray._runtime.execution import ItemFailure, PipelineOutput
from remotemedia_ray.audio import AUDIO_COLUMN, AudioBuffer, AudioFormat, audio_list_column
from remotemedia_ray.errors import MarshalingError, RemoteMediaError

__all__ = ["BatchItem", "decode_batch", "encode_batch", "first_error", "item_outcomes"]

_ID = "id"
_VALUE = "value"
_ERROR = "error"


@dataclass
class BatchItem:
    """One row of a batch: an item id and either its value or its error."""

    item_id: str
    value: Any = None
    error: RemoteMediaError | None = None


def first_error(items: Iterable[BatchItem], order: Sequence[str] = ()) -> RemoteMediaError | None:
    """The error an item carries among its rows ``items`` (one per batch), or None:
    an item failed upstream passes its error on.

    When several rows failed (in independent branches), the error of the node
    that comes first in ``order`` (the execution order) wins, as in the local
    runtime; an error of a node outside it (before the pipeline) comes first."""
    errors = [item.error for item in items if item.error is not None]
    if len(errors) <= 1 or not order:
        return errors[0] if errors else None
    rank = {node: k for k, node in enumerate(order)}
    return min(errors, key=lambda e: rank.get(e.node_id or "", -1))


def encode_batch(items: Sequence[BatchItem]) -> pa.Table:
    """A batch table of ``items`` (audio values are wrapped, not copied)."""
    audio_format = next(
        (it.value.format for it in items if it.error is None and isinstance(it.value, AudioBuffer)),
        AudioFormat.F32,
    )
    audio_values: list[AudioBuffer | None] = []
    rates: list[int | None] = []
    channels: list[int | None] = []
    values: list[bytes | None] = []
    errors: list[bytes | None] = []
    for item in items:
        value = item.value
        if item.error is not None:
            audio_values.append(None)
            rates.append(None)
            channels.append(None)
            values.append(None)
            errors.append(pickle.dumps(item.error, protocol=5))
        elif isinstance(value, AudioBuffer) and value.format is audio_format:
            audio_values.append(value)
            rates.append(value.sample_rate)
            channels.append(value.channels)
            values.append(None)
            errors.append(None)
        else:
            audio_values.append(None)
            rates.append(None)
            channels.append(None)
            try:
                values.append(pickle.dumps(value, protocol=5))
            except Exception as exc:
                raise MarshalingError(
                    f"item {item.item_id!r}: output of type {type(value).__name__} cannot be "
                    f"serialized: {exc}",
                    item_id=item.item_id,
                ) from exc
            errors.append(None)
    return pa.table(
        {
            _ID: array([it.item_id for it in items], pa.string()),
            AUDIO_COLUMN: audio_list_column(audio_values, audio_format),
            "sample_rate": array(rates, pa.int32()),
            "channels": array(channels, pa.int16()),
            _VALUE: array(values, pa.large_binary()),
            _ERROR: array(errors, pa.large_binary()),
        }
    )


def decode_batch(table: pa.Table) -> list[BatchItem]:
    """The items of a batch table; audio values are read-only views of its memory."""
    ids = table.column(_ID).to_pylist()
    values = table.column(_VALUE).to_pylist()
    errors = table.column(_ERROR).to_pylist()
    audio = table.column(AUDIO_COLUMN)
    has_audio = valid_mask(audio)
    items = []
    for row, item_id in enumerate(ids):
        if errors[row] is not None:
            items.append(BatchItem(item_id, error=pickle.loads(errors[row])))
        elif has_audio[row]:
            items.append(BatchItem(item_id, AudioBuffer.from_table_row(table, row)))
        else:
            items.append(BatchItem(item_id, pickle.loads(values[row])))
    return items


def item_outcomes(
    item_ids: Sequence[str], per_sink: dict[str, list[BatchItem]], order: Sequence[str] = ()
) -> list[PipelineOutput | ItemFailure]:
    """Each item's result from its rows in the sinks' batches (sink order kept).

    An item failed anywhere upstream of a sink is an :class:`ItemFailure` with
    the first error its sinks carry; otherwise its outputs by sink.
    """
    results: list[PipelineOutput | ItemFailure] = []
    for row, item_id in enumerate(item_ids):
        failure = first_error((items[row] for items in per_sink.values()), order)
        if failure is not None:
            results.append(ItemFailure(item_id, failure.node_id, failure))
        else:
            outputs = {sink: items[row].value for sink, items in per_sink.items()}
            results.append(PipelineOutput(item_id, outputs))
    return results
