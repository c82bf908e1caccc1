"""Sink outputs as Arrow columns: one schema for the dataset job and the Ray Data glue.

Each kind of output has one column layout, whichever writer stores it:

* an :class:`~remotemedia_ray.audio.AudioBuffer`: ``audio`` (``large_list``
  of its sample type, interleaved), ``sample_rate`` (int32), ``channels`` (int16);
  stored in Parquet (:func:`stored_table`), ``audio`` holds each row's samples
  as bytes instead, beside ``sample_format`` (see :func:`~remotemedia_ray.audio.pcm_column`);
* a list of records, such as the VAD's segments: ``segments``, a list of
  structs whose number fields are float64 (``start_ms``, ``end_ms``,
  ``energy_db``, ``confidence`` for the VAD);
* a number: ``value`` (float64);
* anything else: ``value``, as JSON text.

The dataset job writes one sink per Parquet folder with these names
(:func:`sink_table`); :func:`remotemedia_ray.data.map_pipeline` puts every
sink in one table, so there the names are prefixed with the sink's id
(``<sink>_audio``, ...) and the single column of other kinds is ``<sink>``
itself. The types are the same.
"""

from __future__ import annotations

import json
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from remotemedia_ray._arrow import array, float_struct, valid_mask
from remotemedia_ray.audio import (
    AUDIO_COLUMN,
    SAMPLE_FORMAT_COLUMN,
    AudioBuffer,
    AudioFormat,
    Clips,
    audio_list_column,
    pcm_column,
)
from remotemedia_ray.errors import AudioFormatError

__all__ = [
    "CLIP_COLUMNS",
    "SEGMENT",
    "Layout",
    "cell",
    "column_names",
    "columns",
    "layout_of",
    "sink_table",
    "stored_table",
    "to_json",
    "value_columns",
]

Kind = Literal["audio", "segments", "number", "json"]

SEGMENT = pa.struct(
    [
        ("start_ms", pa.float64()),
        ("end_ms", pa.float64()),
        ("energy_db", pa.float64()),
        ("confidence", pa.float64()),
    ]
)
"""The struct of one VAD segment (the data model's ``SpeechSegment``)."""


@dataclass(frozen=True)
class Layout:
    """How one sink's outputs become columns: the kind of value and its Arrow type
    (for audio, the sample type; for segments, the list type; else the column type)."""

    kind: Kind
    arrow_type: pa.DataType


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def layout_of(value: Any) -> Layout | None:
    """The layout an output implies; None for an empty list (not known yet)."""
    if isinstance(value, AudioBuffer):
        return Layout("audio", value.format.arrow_type)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
        records = [dict(v) for v in value]
        try:
            inferred = float_struct(records)
            if inferred is None:  # not plain numbers: pyarrow infers it
                inferred = pa.array(records).type
        except (pa.ArrowException, TypeError, ValueError, OverflowError):  # not records
            return Layout("json", pa.string())
        fields = [
            pa.field(f.name, pa.float64())
            if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
            else f
            for f in inferred
        ]
        return Layout("segments", pa.list_(pa.struct(fields)))
    if isinstance(value, (list, tuple)) and not value:
        return None
    if _is_number(value):
        return Layout("number", pa.float64())
    return Layout("json", pa.string())


def cell(value: Any, layout: Layout) -> Any:
    """``value`` checked against ``layout`` and made ready for its column.

    Raises:
        TypeError, ValueError or pyarrow.ArrowException: ``value`` does not fit.
    """
    if layout.kind == "audio":
        if not isinstance(value, AudioBuffer) or value.format.arrow_type != layout.arrow_type:
            raise TypeError(f"expected {layout.arrow_type} audio, got {value!r}")
        return value
    if layout.kind == "segments":
        if not isinstance(value, (list, tuple)):
            raise TypeError("expected a list of dicts")
        records = [dict(v) for v in value]
        array([records], layout.arrow_type)  # raises if it does not fit
        return records
    if layout.kind == "number":
        if not _is_number(value):
            raise TypeError("expected a number")
        return float(value)
    return to_json(value)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    if isinstance(value, AudioBuffer):
        return value.to_numpy().tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def column_names(layout: Layout, sink: str | None = None) -> tuple[str, ...]:
    """The column names of a layout: bare (one sink per table), or for ``sink`` in a
    table of several sinks."""
    if layout.kind == "audio":
        names = ("audio", "sample_rate", "channels")
        return names if sink is None else tuple(f"{sink}_{n}" for n in names)
    if sink is not None:
        return (sink,)
    return ("segments",) if layout.kind == "segments" else ("value",)


def columns(
    layout: Layout, cells: Sequence[Any], sink: str | None = None
) -> dict[str, pa.Array | pa.ChunkedArray]:
    """The column(s) of cells made by :func:`cell`; ``None`` (a failed item) is null.

    Audio samples are wrapped, not copied (one chunk per item).
    """
    names = column_names(layout, sink)
    if layout.kind != "audio":
        return {names[0]: array(list(cells), layout.arrow_type)}
    buffers: list[AudioBuffer | None] = list(cells)
    audio = audio_list_column(buffers, AudioFormat.from_dtype(layout.arrow_type))
    rates = array([None if b is None else b.sample_rate for b in buffers], pa.int32())
    channels = array([None if b is None else b.channels for b in buffers], pa.int16())
    return dict(zip(names, (audio, rates, channels), strict=True))


CLIP_COLUMNS = ("parent_id", "start_s", "end_s")
"""The columns a clip's row has besides ``id`` and its value's: the item it was
cut from and where it lies in that item's audio (seconds)."""


def sink_table(rows: Sequence[tuple[str, Any]]) -> pa.Table:
    """One sink's outputs as a table: ``id`` plus the columns of their layout.

    The layout is that of the first output that shows one (a batch of empty
    segment lists gets the VAD's segment type). Outputs that do not all fit
    one layout are stored as JSON text, except audio.

    :class:`~remotemedia_ray.audio.Clips` give one row per clip (none for an
    item without clips): id ``{item}/{index}``, then :data:`CLIP_COLUMNS`,
    then the columns of the clips' values.

    Raises:
        AudioFormatError: audio outputs of different sample formats, audio
            mixed with other values, or clips mixed with other values.
    """
    if any(isinstance(value, Clips) for _, value in rows):
        return _clip_table(rows)
    return _value_table([item_id for item_id, _ in rows], [value for _, value in rows])


def _clip_table(rows: Sequence[tuple[str, Any]]) -> pa.Table:
    ids: list[str] = []
    parents: list[str] = []
    starts: list[float] = []
    ends: list[float] = []
    values: list[Any] = []
    for item_id, value in rows:
        if not isinstance(value, Clips):
            raise AudioFormatError(
                f"the sink's outputs mix clips with other values (item {item_id!r} gave "
                f"{type(value).__name__})"
            )
        for index, clip in enumerate(value):
            ids.append(Clips.id_of(item_id, index))
            parents.append(item_id)
            starts.append(clip.start_s)
            ends.append(clip.end_s)
            values.append(clip.value)
    table = _value_table(ids, values)
    extra = (
        array(parents, pa.string()),
        array(starts, pa.float64()),
        array(ends, pa.float64()),
    )
    for position, (name, column) in enumerate(zip(CLIP_COLUMNS, extra, strict=True)):
        table = table.add_column(position + 1, name, column)
    return table


def value_columns(values: Sequence[Any], sink: str | None = None) -> dict[str, pa.Array]:
    """The column(s) of one sink's values, in the layout they imply (None is null).

    Values that do not all fit the first one's layout are stored as JSON text,
    except audio. With ``sink``, the columns are named for a table of several sinks.

    Raises:
        AudioFormatError: audio of different sample formats, or audio mixed with
            other values.
    """
    present = [v for v in values if v is not None]
    layout = next((lay for v in present if (lay := layout_of(v)) is not None), None)
    if layout is None:
        layout = Layout("segments", pa.list_(SEGMENT))
    try:
        cells = [None if v is None else cell(v, layout) for v in values]
    except (TypeError, ValueError, pa.ArrowException) as exc:
        if layout.kind == "audio":
            raise AudioFormatError(
                f"the sink's outputs do not share one audio format: {exc}"
            ) from None
        layout = Layout("json", pa.string())
        cells = [None if v is None else cell(v, layout) for v in values]
    return dict(columns(layout, cells, sink))


def stored_table(table: pa.Table) -> pa.Table:
    """``table`` as the dataset job stores it in Parquet: an audio list column becomes
    the samples' bytes, with ``sample_format`` after ``channels`` (no samples copied).

    ``python -m benchmarks.output_cost`` measures why: Parquet writes a list of
    samples several times slower than the same samples as one binary value (it
    keeps a repetition level per sample), and reads it back slower too. Other
    tables are returned as they are.
    """
    if AUDIO_COLUMN not in table.column_names:
        return table
    audio, dtype_name = pcm_column(table.column(AUDIO_COLUMN))
    if dtype_name is None:
        return table
    table = table.set_column(table.column_names.index(AUDIO_COLUMN), AUDIO_COLUMN, audio)
    valid = valid_mask(audio)
    names = array([dtype_name if ok else None for ok in valid.tolist()], pa.string())
    after = table.column_names.index("channels") + 1 if "channels" in table.column_names else 0
    return table.add_column(after, SAMPLE_FORMAT_COLUMN, names)


def to_json(value: Any) -> str:
    """A sink value as JSON text (numpy values and audio become lists)."""
    return json.dumps(value, default=_json_default)


def _value_table(ids: list[str], values: list[Any]) -> pa.Table:
    return pa.table({"id": array(ids, pa.string()), **value_columns(values)})
