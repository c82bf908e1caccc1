"""Arrow arrays from Python values, built without pyarrow's pandas detection.

``pa.array`` first asks whether its input is a pandas object, and the first
time a process asks, pyarrow imports pandas when it is installed (Ray Data and
``datasets`` install it): about 0.2 s with a warm disk and 0.5 s cold, paid by
every Ray worker before its first batch is written. ``Array.to_numpy`` and any
``pyarrow.compute`` call import it too. The columns our tables hold (ids,
sample rates, channel counts, pickled values, the VAD's segments, HuggingFace's
audio structs) are built here from buffers instead, which never asks. Values
that are not plainly of the column's type (a numpy scalar, a bool for a number,
an int too large, a str subclass) make the whole column go to ``pa.array``
unchanged, so its conversions and errors stay pyarrow's.

Ray's own serialization of an Arrow table with a string, binary or list column
calls ``pyarrow.compute``: the driver, which sends batches as tables, and the
workers of a pool that hands its batches to another pool still import pandas
once. The workers of a fused pipeline, the dataset job's default, do not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

__all__ = ["array", "float_struct", "from_numpy", "to_numpy", "valid_mask"]

_EXACT = 2**53
"""Integers up to this size are exactly a float64 (pyarrow refuses larger ones)."""
_INT32_MAX_OFFSET = 2**31 - 2
"""The largest last offset pyarrow's builders put in one 32-bit-offset array."""


def array(values: Sequence[Any], type: pa.DataType) -> pa.Array:
    """``pa.array(values, type)``, built from buffers where the values allow it.

    Strings, binaries, integers, float64, structs and lists of those
    are built directly (``None`` is null; a struct takes dicts, a missing key
    is null); anything else is ``pa.array``'s. The result equals pyarrow's
    (``Array.equals``), except that under a null struct row the children hold
    nulls where pyarrow puts empty values.
    """
    if not isinstance(values, (list, tuple)):  # an iterator: pyarrow's
        return pa.array(values, type)
    built = _build(values, type)
    return pa.array(values, type) if built is None else built


def from_numpy(values: np.ndarray) -> pa.Array:
    """A 1-D numpy array of integers or floats as an Arrow array without nulls
    (contiguous memory is shared, not copied)."""
    if values.ndim != 1 or values.dtype.kind not in "iuf":
        raise TypeError(
            f"from_numpy takes 1-D integers or floats, got {values.dtype} {values.shape}"
        )
    values = np.ascontiguousarray(values)
    return pa.Array.from_buffers(
        pa.from_numpy_dtype(values.dtype), len(values), [None, pa.py_buffer(values)]
    )


def to_numpy(values: pa.Array) -> np.ndarray:
    """A numeric Arrow array without nulls as a read-only numpy view of its memory.

    (``Array.to_numpy`` goes through pyarrow's pandas conversion, which imports pandas.)
    """
    if values.null_count or (
        not pa.types.is_integer(values.type) and not pa.types.is_floating(values.type)
    ):
        raise TypeError(f"to_numpy takes numbers without nulls, got {values.type}")
    dtype = np.dtype(values.type.to_pandas_dtype())
    data = values.buffers()[1]
    if data is None:
        return np.empty(0, dtype)
    return np.frombuffer(data, dtype, len(values), values.offset * dtype.itemsize)


def valid_mask(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Which rows of ``column`` are not null, as a numpy bool array."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    masks = [np.ones(0, bool)]
    for chunk in chunks:
        bitmap = chunk.buffers()[0]
        if not chunk.null_count:
            masks.append(np.ones(len(chunk), bool))
        elif bitmap is None:  # a null-type array
            masks.append(np.zeros(len(chunk), bool))
        else:
            bits = np.unpackbits(np.frombuffer(bitmap, np.uint8), bitorder="little")
            masks.append(bits[chunk.offset : chunk.offset + len(chunk)].astype(bool))
    return np.concatenate(masks)


def float_struct(records: Sequence[Any]) -> pa.StructType | None:
    """The struct type ``pa.array`` would infer for dicts that share their keys
    and hold only numbers, with every field float64; None for anything else.

    Int and float fields both become float64, as a segment list's layout wants.
    """
    if not records or type(records[0]) is not dict or not records[0]:
        return None
    keys = tuple(records[0])
    for record in records:
        if type(record) is not dict or tuple(record) != keys:
            return None
        if not all(_is_exact_number(v) for v in record.values()):
            return None
    if not all(type(k) is str for k in keys):
        return None
    return pa.struct([(k, pa.float64()) for k in keys])


def _is_exact_number(value: Any) -> bool:
    return type(value) is float or (type(value) is int and -_EXACT <= value <= _EXACT)


def _build(values: Sequence[Any], type_: pa.DataType) -> pa.Array | None:
    try:
        if pa.types.is_string(type_) or pa.types.is_large_string(type_):
            return _bytes_like(values, type_, str)
        if pa.types.is_binary(type_) or pa.types.is_large_binary(type_):
            return _bytes_like(values, type_, bytes)
        if pa.types.is_integer(type_):
            return _integers(values, type_)
        if pa.types.is_float64(type_):
            return _floats(values, type_)
        if pa.types.is_struct(type_):
            return _struct(values, type_)
        if pa.types.is_list(type_) or pa.types.is_large_list(type_):
            return _lists(values, type_)
    except (OverflowError, UnicodeEncodeError):
        return None
    return None


def _validity(values: Sequence[Any]) -> tuple[pa.Buffer | None, int]:
    """The validity bitmap of ``values`` (None where nothing is null) and the null count."""
    valid = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
    nulls = len(values) - int(valid.sum())
    if not nulls:
        return None, 0
    return pa.py_buffer(np.packbits(valid, bitorder="little")), nulls


def _offsets(lengths: np.ndarray, large: bool) -> pa.Buffer | None:
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if large:
        return pa.py_buffer(offsets)
    if offsets[-1] > _INT32_MAX_OFFSET:
        return None
    return pa.py_buffer(offsets.astype(np.int32))


def _bytes_like(values: Sequence[Any], type_: pa.DataType, kind: type) -> pa.Array | None:
    parts: list[bytes] = []
    for value in values:
        if value is None:
            parts.append(b"")
        elif type(value) is not kind:
            return None
        elif isinstance(value, str):
            parts.append(value.encode())
        elif isinstance(value, bytes):
            parts.append(value)
    large = pa.types.is_large_string(type_) or pa.types.is_large_binary(type_)
    offsets = _offsets(np.fromiter(map(len, parts), np.int64, len(parts)), large)
    if offsets is None:
        return None
    validity, nulls = _validity(values)
    data = pa.py_buffer(b"".join(parts))
    return pa.Array.from_buffers(type_, len(values), [validity, offsets, data], nulls)


def _integers(values: Sequence[Any], type_: pa.DataType) -> pa.Array | None:
    if not all(v is None or type(v) is int for v in values):
        return None
    dtype = np.dtype(str(type_))
    wide = np.fromiter((0 if v is None else v for v in values), np.int64, len(values))
    info = np.iinfo(dtype)
    if len(wide) and (int(wide.min()) < info.min or int(wide.max()) > info.max):
        return None
    validity, nulls = _validity(values)
    data = pa.py_buffer(wide.astype(dtype))
    return pa.Array.from_buffers(type_, len(values), [validity, data], nulls)


def _floats(values: Sequence[Any], type_: pa.DataType) -> pa.Array | None:
    if not all(v is None or _is_exact_number(v) for v in values):
        return None
    data = np.fromiter((0.0 if v is None else v for v in values), np.float64, len(values))
    validity, nulls = _validity(values)
    return pa.Array.from_buffers(type_, len(values), [validity, pa.py_buffer(data)], nulls)


def _struct(values: Sequence[Any], type_: pa.StructType) -> pa.Array | None:
    if not all(v is None or type(v) is dict for v in values):
        return None
    children = []
    for field in type_:
        child = _build([None if v is None else v.get(field.name) for v in values], field.type)
        if child is None:
            return None
        children.append(child)
    validity, nulls = _validity(values)
    return pa.Array.from_buffers(type_, len(values), [validity], nulls, children=children)


def _lists(values: Sequence[Any], type_: pa.ListType | pa.LargeListType) -> pa.Array | None:
    if not all(v is None or type(v) in (list, tuple) for v in values):
        return None
    lengths = np.fromiter((0 if v is None else len(v) for v in values), np.int64, len(values))
    offsets = _offsets(lengths, pa.types.is_large_list(type_))
    if offsets is None:
        return None
    child = _build([x for v in values if v is not None for x in v], type_.value_type)
    if child is None:
        return None
    validity, nulls = _validity(values)
    return pa.Array.from_buffers(type_, len(values), [validity, offsets], nulls, children=[child])
