"""AudioBuffer and batch tables: zero-copy views, formats, validation, pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from remotemedia_ray.audio import (
    AUDIO_COLUMN,
    AudioBuffer,
    AudioFormat,
    audio_table,
    buffers_from_table,
)
from remotemedia_ray.errors import AudioFormatError, RemoteMediaError

RATE = 16_000


def _data_address(array: pa.Array) -> int:
    """Address of the first sample of a flat primitive Arrow array."""
    itemsize = np.dtype(array.type.to_pandas_dtype()).itemsize
    return int(array.buffers()[1].address + array.offset * itemsize)


def _ramp(frames: int, channels: int | None = None, dtype: str = "float32") -> np.ndarray:
    n = frames * (channels or 1)
    values = np.arange(n, dtype=np.float64)
    if np.dtype(dtype).kind == "f":
        values = values / max(n, 1) - 0.5
    a = values.astype(dtype)
    return a if channels is None else a.reshape(frames, channels)


# -- zero-copy ---------------------------------------------------------------------------


def test_from_numpy_shares_memory() -> None:
    a = _ramp(480, 2)
    buf = AudioBuffer.from_numpy(a, RATE)
    view = buf.to_numpy()
    assert np.shares_memory(view, a)
    assert view.__array_interface__["data"][0] == a.__array_interface__["data"][0]
    assert view.ctypes.data == a.ctypes.data


def test_to_arrow_buffer_address_is_the_numpy_data_address() -> None:
    a = _ramp(1000)
    buf = AudioBuffer.from_numpy(a, RATE)
    arr = buf.to_arrow()
    assert isinstance(arr, pa.Array)
    assert _data_address(arr) == a.ctypes.data
    assert len(arr) == a.size


def test_to_numpy_is_read_only() -> None:
    buf = AudioBuffer.from_numpy(_ramp(100), RATE)
    view = buf.to_numpy()
    assert not view.flags.writeable
    with pytest.raises(ValueError):
        view[0, 0] = 1.0


def test_to_numpy_twice_views_the_same_memory() -> None:
    buf = AudioBuffer.from_numpy(_ramp(64, 2), RATE)
    assert buf.to_numpy().ctypes.data == buf.to_numpy().ctypes.data


def test_from_arrow_does_not_copy() -> None:
    arr = pa.array(_ramp(100, 2).ravel())
    buf = AudioBuffer.from_arrow(arr, RATE, channels=2)
    assert buf.to_arrow() is arr
    assert buf.to_numpy().ctypes.data == _data_address(arr)
    assert buf.num_frames == 100
    np.testing.assert_array_equal(buf.to_numpy().ravel(), arr.to_numpy())


def test_from_arrow_of_a_slice_views_the_right_samples() -> None:
    arr = pa.array(np.arange(20, dtype=np.int16))
    part = arr.slice(4, 6)
    buf = AudioBuffer.from_arrow(part, RATE)
    np.testing.assert_array_equal(buf.to_numpy().ravel(), np.arange(4, 10, dtype=np.int16))
    assert buf.to_numpy().ctypes.data == _data_address(arr) + 4 * 2


def test_from_arrow_accepts_single_chunk_chunked_array_without_copy() -> None:
    arr = pa.array(_ramp(50))
    buf = AudioBuffer.from_arrow(pa.chunked_array([arr]), RATE)
    assert buf.to_numpy().ctypes.data == _data_address(arr)


def test_from_arrow_of_a_chunked_array_without_chunks_is_empty_audio() -> None:
    buf = AudioBuffer.from_arrow(pa.chunked_array([], type=pa.int16()), RATE, channels=2)
    assert buf.num_frames == 0 and buf.channels == 2
    assert buf.to_numpy().dtype == np.int16


def test_from_arrow_rejects_samples_not_divisible_by_channels() -> None:
    with pytest.raises(AudioFormatError, match="channels"):
        AudioBuffer.from_arrow(pa.array(_ramp(5)), RATE, channels=2)


def test_from_arrow_rejects_null_samples() -> None:
    with pytest.raises(AudioFormatError, match="null"):
        AudioBuffer.from_arrow(pa.array([0.0, None, 1.0], pa.float32()), RATE)


# -- shapes ------------------------------------------------------------------------------


def test_mono_1d_array_is_one_channel() -> None:
    a = _ramp(441)
    buf = AudioBuffer.from_numpy(a, 44_100)
    assert buf.channels == 1
    assert buf.num_frames == 441
    view = buf.to_numpy()
    assert view.shape == (441,)  # the data model's to_numpy: mono is 1-D
    np.testing.assert_array_equal(view, a)
    assert view.__array_interface__["data"][0] == a.__array_interface__["data"][0]
    assert not view.flags.writeable
    frames = buf.to_numpy_2d()
    assert frames.shape == (441, 1)
    assert np.shares_memory(frames, a)


def test_frames_by_one_array_is_mono_and_comes_back_1d() -> None:
    a = _ramp(300, 1)
    buf = AudioBuffer.from_numpy(a, 8000)
    assert buf.channels == 1
    assert buf.to_numpy().shape == (300,)
    assert np.shares_memory(buf.to_numpy(), a)
    assert buf.to_numpy_2d().shape == (300, 1)


def test_mono_from_arrow_is_1d() -> None:
    buf = AudioBuffer.from_arrow(pa.array([0.0, 0.5, -0.5], pa.float32()), RATE)
    assert buf.to_numpy().shape == (3,)
    empty = AudioBuffer.from_arrow(pa.array([], pa.int16()), RATE)
    assert empty.to_numpy().shape == (0,)
    assert empty.to_numpy_2d().shape == (0, 1)


def test_frames_by_channels_array_keeps_its_layout() -> None:
    a = _ramp(300, 3, "int16")
    buf = AudioBuffer.from_numpy(a, 8000)
    assert buf.channels == 3
    assert buf.num_frames == 300
    assert buf.to_numpy().shape == (300, 3)
    np.testing.assert_array_equal(buf.to_numpy(), a)
    # interleaved: the flat Arrow array is the row-major ravel
    np.testing.assert_array_equal(buf.to_arrow().to_numpy(), a.ravel())


def test_num_frames_and_duration_seconds() -> None:
    buf = AudioBuffer.from_numpy(_ramp(24_000, 2), RATE)
    assert buf.num_frames == 24_000
    assert buf.duration_seconds == pytest.approx(1.5)
    assert buf.nbytes == 24_000 * 2 * 4


@pytest.mark.parametrize("shape", [(0,), (0, 2)])
def test_empty_buffer_has_zero_frames(shape: tuple[int, ...]) -> None:
    a = np.zeros(shape, dtype=np.float32)
    buf = AudioBuffer.from_numpy(a, RATE)
    channels = 1 if len(shape) == 1 else shape[1]
    assert buf.num_frames == 0
    assert buf.channels == channels
    assert buf.duration_seconds == 0.0
    view = buf.to_numpy_2d()
    assert view.shape == (0, channels)
    assert view.dtype == np.float32
    assert not view.flags.writeable
    assert len(buf.to_arrow()) == 0


def test_empty_buffers_are_equal() -> None:
    a = AudioBuffer.from_numpy(np.zeros(0, np.int16), RATE)
    b = AudioBuffer.from_arrow(pa.array([], pa.int16()), RATE)
    assert a == b


# -- non-contiguous input ----------------------------------------------------------------


def test_strided_input_is_copied_into_c_order_with_correct_values() -> None:
    base = _ramp(200)
    strided = base[::2]
    assert not strided.flags.c_contiguous
    buf = AudioBuffer.from_numpy(strided, RATE)
    view = buf.to_numpy()
    assert view.flags.c_contiguous
    assert buf.num_frames == 100
    np.testing.assert_array_equal(view, strided)
    assert not np.shares_memory(view, base)


def test_fortran_order_input_is_copied_into_c_order_with_correct_values() -> None:
    a = np.asfortranarray(_ramp(50, 2, "int32"))
    assert not a.flags.c_contiguous
    buf = AudioBuffer.from_numpy(a, RATE)
    view = buf.to_numpy()
    assert view.flags.c_contiguous
    np.testing.assert_array_equal(view, a)
    # interleaved order: frame 0 ch0, frame 0 ch1, frame 1 ch0, ...
    np.testing.assert_array_equal(buf.to_arrow().to_numpy(), np.ascontiguousarray(a).ravel())
    assert not np.shares_memory(view, a)


def test_column_slice_of_stereo_is_copied_with_correct_values() -> None:
    stereo = _ramp(64, 2)
    left = stereo[:, 0]
    buf = AudioBuffer.from_numpy(left, RATE)
    np.testing.assert_array_equal(buf.to_numpy(), left)
    assert buf.channels == 1


def test_source_array_is_kept_alive_by_the_buffer() -> None:
    buf = AudioBuffer.from_numpy(_ramp(1000), RATE)  # no other reference to the array
    expected = _ramp(1000)
    np.testing.assert_array_equal(buf.to_numpy(), expected)


# -- formats -----------------------------------------------------------------------------


def test_format_values_are_the_short_names() -> None:
    assert {f.value for f in AudioFormat} == {"f32", "i16", "i32", "f64"}
    assert AudioFormat("f32") is AudioFormat.F32
    assert isinstance(AudioFormat.I16, str)
    assert str.__eq__(AudioFormat.I16, "i16")


@pytest.mark.parametrize(
    ("dtype", "fmt", "bits", "is_float"),
    [
        (np.float32, AudioFormat.F32, 32, True),
        (np.int16, AudioFormat.I16, 16, False),
        (np.int32, AudioFormat.I32, 32, False),
        (np.float64, AudioFormat.F64, 64, True),
    ],
)
def test_dtype_maps_to_format(dtype: type, fmt: AudioFormat, bits: int, is_float: bool) -> None:
    assert AudioFormat.from_dtype(dtype) is fmt
    assert AudioFormat.from_dtype(np.dtype(dtype)) is fmt
    assert AudioFormat.from_dtype(pa.from_numpy_dtype(dtype)) is fmt
    assert fmt.dtype == np.dtype(dtype)
    assert fmt.arrow_type == pa.from_numpy_dtype(dtype)
    assert fmt.bits == bits
    assert fmt.is_float is is_float


@pytest.mark.parametrize(
    ("dtype", "fmt"),
    [
        (np.float32, AudioFormat.F32),
        (np.int16, AudioFormat.I16),
        (np.int32, AudioFormat.I32),
        (np.float64, AudioFormat.F64),
    ],
)
def test_from_numpy_format_follows_dtype_without_copy(dtype: type, fmt: AudioFormat) -> None:
    a = _ramp(128, 2, np.dtype(dtype).name)
    buf = AudioBuffer.from_numpy(a, RATE)
    assert buf.format is fmt
    view = buf.to_numpy()
    assert view.dtype == np.dtype(dtype)
    assert view.ctypes.data == a.ctypes.data
    assert buf.to_arrow().type == fmt.arrow_type
    np.testing.assert_array_equal(view, a)


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [0, -16_000, 44_100.5, float("nan"), True, False, "16000", None])
def test_bad_sample_rate_is_rejected(rate: object) -> None:
    with pytest.raises(AudioFormatError, match="sample_rate must be a positive integer"):
        AudioBuffer.from_numpy(_ramp(10), rate)  # type: ignore[arg-type]


def test_a_rate_beyond_the_data_models_u32_is_rejected() -> None:
    assert AudioBuffer.from_numpy(_ramp(10), 2**32 - 1).sample_rate == 2**32 - 1
    for rate in (2**32, 2**32 + 16_000, 2**64):
        with pytest.raises(AudioFormatError, match=f"at most 4294967295 .*got {rate}"):
            AudioBuffer.from_numpy(_ramp(10), rate)


def test_integral_float_and_numpy_int_rates_are_accepted() -> None:
    assert AudioBuffer.from_numpy(_ramp(10), 16_000.0).sample_rate == 16_000  # type: ignore[arg-type]
    buf = AudioBuffer.from_numpy(_ramp(10), np.int64(22_050))  # type: ignore[arg-type]
    assert buf.sample_rate == 22_050
    assert type(buf.sample_rate) is int


def test_three_dimensional_array_is_rejected() -> None:
    with pytest.raises(AudioFormatError, match=r"\(frames,\) or \(frames, channels\)"):
        AudioBuffer.from_numpy(np.zeros((4, 2, 2), np.float32), RATE)


def test_zero_dimensional_array_is_rejected() -> None:
    with pytest.raises(AudioFormatError):
        AudioBuffer.from_numpy(np.float32(1.0), RATE)  # type: ignore[arg-type]


def test_zero_channels_is_rejected() -> None:
    with pytest.raises(AudioFormatError, match="0 channels"):
        AudioBuffer.from_numpy(np.zeros((10, 0), np.float32), RATE)


def test_ragged_nested_list_is_rejected() -> None:
    with pytest.raises(AudioFormatError, match="ragged"):
        AudioBuffer.from_numpy([[0.0, 1.0], [2.0]], RATE)  # type: ignore[arg-type]


def test_object_dtype_is_rejected() -> None:
    with pytest.raises(AudioFormatError, match="object"):
        AudioBuffer.from_numpy(np.array([0.5, "x", None], dtype=object), RATE)


@pytest.mark.parametrize("dtype", ["uint8", "complex64", "int64", "float16", "bool", "uint16"])
def test_unsupported_dtype_is_rejected_naming_the_dtype(dtype: str) -> None:
    expected = rf"unsupported sample dtype {np.dtype(dtype)}"
    with pytest.raises(AudioFormatError, match=expected) as info:
        AudioBuffer.from_numpy(np.zeros(8, dtype=dtype), RATE)
    assert "float32, float64, int16 or int32" in str(info.value)


def test_unsupported_arrow_type_is_rejected() -> None:
    with pytest.raises(AudioFormatError, match="unsupported"):
        AudioBuffer.from_arrow(pa.array([1, 2, 3], pa.int64()), RATE)


def test_from_arrow_rejects_a_non_arrow_object() -> None:
    with pytest.raises(AudioFormatError, match="pyarrow Array"):
        AudioBuffer(np.zeros(4, np.float32), RATE)


def test_audio_format_error_is_a_remote_media_runtime_error() -> None:
    with pytest.raises(RuntimeError) as info:
        AudioBuffer.from_numpy(_ramp(4), 0)
    assert isinstance(info.value, RemoteMediaError)


# -- batch tables ------------------------------------------------------------------------


def _mixed_batch() -> tuple[list[str], list[np.ndarray], list[int]]:
    ids = ["a", "b", "c", "d"]
    arrays = [_ramp(100, 2), _ramp(37, 2), _ramp(0, 2), _ramp(250, 2)]
    rates = [16_000, 8_000, 22_050, 48_000]
    return ids, arrays, rates


def _values_region(table: pa.Table) -> tuple[int, int]:
    values = table.column(AUDIO_COLUMN).chunk(0).values
    start = _data_address(values)
    return start, start + len(values) * np.dtype(values.type.to_pandas_dtype()).itemsize


def test_audio_table_has_id_audio_rate_and_channel_columns() -> None:
    ids, arrays, rates = _mixed_batch()
    buffers = [AudioBuffer.from_numpy(a, r) for a, r in zip(arrays, rates, strict=True)]
    table = audio_table(ids, buffers)
    assert table.column_names == ["id", AUDIO_COLUMN, "sample_rate", "channels"]
    assert table.num_rows == 4
    assert table.column("id").to_pylist() == ids
    assert table.column("sample_rate").to_pylist() == rates
    assert table.column("channels").to_pylist() == [2, 2, 2, 2]
    lengths = pc.list_value_length(table.column(AUDIO_COLUMN)).to_pylist()
    assert lengths == [a.size for a in arrays]
    assert pa.types.is_float32(table.schema.field(AUDIO_COLUMN).type.value_type)


def test_from_table_row_views_each_row_without_copying() -> None:
    ids, arrays, rates = _mixed_batch()
    table = audio_table(
        ids, [AudioBuffer.from_numpy(a, r) for a, r in zip(arrays, rates, strict=True)]
    )
    lists = table.column(AUDIO_COLUMN).chunk(0)
    base = lists.values.buffers()[1].address + lists.values.offset * 4
    region_start, region_end = _values_region(table)
    offsets = lists.offsets.to_pylist()
    for row, (original, rate) in enumerate(zip(arrays, rates, strict=True)):
        buf = AudioBuffer.from_table_row(table, row)
        view = buf.to_numpy()
        assert buf.sample_rate == rate
        assert buf.channels == 2
        assert buf.format is AudioFormat.F32
        assert buf.num_frames == original.shape[0]
        np.testing.assert_array_equal(view, original)
        if original.size:
            assert view.ctypes.data == base + offsets[row] * 4
            assert region_start <= view.ctypes.data
            assert view.ctypes.data + view.nbytes <= region_end
        assert not view.flags.writeable


def test_buffers_from_table_round_trips_every_row() -> None:
    ids, arrays, rates = _mixed_batch()
    originals = [AudioBuffer.from_numpy(a, r) for a, r in zip(arrays, rates, strict=True)]
    table = audio_table(ids, originals)
    back = buffers_from_table(table)
    assert len(back) == len(originals)
    region_start, region_end = _values_region(table)
    for got, want in zip(back, originals, strict=True):
        assert got == want
        if got.num_frames:
            assert region_start <= got.to_numpy().ctypes.data < region_end


def test_from_table_row_of_a_sliced_table_views_the_right_row() -> None:
    ids, arrays, rates = _mixed_batch()
    table = audio_table(
        ids, [AudioBuffer.from_numpy(a, r) for a, r in zip(arrays, rates, strict=True)]
    )
    tail = table.slice(1)
    buf = AudioBuffer.from_table_row(tail, 2)
    np.testing.assert_array_equal(buf.to_numpy(), arrays[3])
    assert buf.sample_rate == rates[3]


def test_from_table_row_finds_rows_in_later_chunks() -> None:
    first = audio_table(["a"], [AudioBuffer.from_numpy(_ramp(10, dtype="int16"), RATE)])
    second = audio_table(["b"], [AudioBuffer.from_numpy(_ramp(20, dtype="int16"), 8000)])
    table = pa.concat_tables([first, second])
    assert table.column(AUDIO_COLUMN).num_chunks == 2
    buf = AudioBuffer.from_table_row(table, 1)
    np.testing.assert_array_equal(buf.to_numpy(), _ramp(20, dtype="int16"))
    assert buf.sample_rate == 8000


def test_audio_table_keeps_each_format() -> None:
    buffers = [AudioBuffer.from_numpy(_ramp(n, dtype="int16"), RATE) for n in (3, 5)]
    table = audio_table(["x", "y"], buffers)
    assert pa.types.is_int16(table.schema.field(AUDIO_COLUMN).type.value_type)
    assert AudioBuffer.from_table_row(table, 1).format is AudioFormat.I16


def test_table_of_mixed_formats_is_rejected() -> None:
    buffers = [
        AudioBuffer.from_numpy(_ramp(10), RATE),
        AudioBuffer.from_numpy(_ramp(10, dtype="int16"), RATE),
    ]
    with pytest.raises(AudioFormatError, match="one sample format") as info:
        audio_table(["a", "b"], buffers)
    assert "f32" in str(info.value) and "i16" in str(info.value)


def test_audio_table_rejects_mismatched_ids() -> None:
    with pytest.raises(AudioFormatError, match="1 ids for 2"):
        audio_table(["a"], [AudioBuffer.from_numpy(_ramp(4), RATE)] * 2)


@pytest.mark.parametrize("row", [-1, 2, 100])
def test_from_table_row_out_of_range_is_rejected(row: int) -> None:
    table = audio_table(["a", "b"], [AudioBuffer.from_numpy(_ramp(4), RATE)] * 2)
    with pytest.raises(AudioFormatError, match="out of range"):
        AudioBuffer.from_table_row(table, row)


def test_from_table_row_requires_the_audio_columns() -> None:
    table = audio_table(["a"], [AudioBuffer.from_numpy(_ramp(4), RATE)]).drop_columns(
        ["sample_rate"]
    )
    with pytest.raises(AudioFormatError, match="sample_rate"):
        AudioBuffer.from_table_row(table, 0)


# -- pickling and equality ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "int16", "int32", "float64"])
def test_pickle_round_trips_and_equals_the_original(dtype: str) -> None:
    buf = AudioBuffer.from_numpy(_ramp(333, 2, dtype), 44_100)
    back = pickle.loads(pickle.dumps(buf))
    assert isinstance(back, AudioBuffer)
    assert back == buf
    assert back.sample_rate == 44_100
    assert back.channels == 2
    assert back.format is buf.format
    np.testing.assert_array_equal(back.to_numpy(), buf.to_numpy())


def test_pickle_of_a_table_row_round_trips() -> None:
    ids, arrays, rates = _mixed_batch()
    table = audio_table(
        ids, [AudioBuffer.from_numpy(a, r) for a, r in zip(arrays, rates, strict=True)]
    )
    row = AudioBuffer.from_table_row(table, 1)
    back = pickle.loads(pickle.dumps(row))
    assert back == row
    np.testing.assert_array_equal(back.to_numpy(), arrays[1])


def test_equal_buffers_compare_equal() -> None:
    a = AudioBuffer.from_numpy(_ramp(50, 2), RATE)
    b = AudioBuffer.from_numpy(_ramp(50, 2).copy(), RATE)
    assert a.equals(b)
    assert a == b
    assert (a != b) is False


def test_buffers_differing_in_samples_rate_channels_or_format_are_not_equal() -> None:
    base = AudioBuffer.from_numpy(_ramp(50, 2), RATE)
    changed = _ramp(50, 2)
    changed[10, 1] += 0.25
    assert base != AudioBuffer.from_numpy(changed, RATE)
    assert base != AudioBuffer.from_numpy(_ramp(50, 2), 8000)
    assert base != AudioBuffer.from_numpy(_ramp(50, 2).reshape(25, 4), RATE)
    assert base != AudioBuffer.from_numpy(_ramp(50, 2).astype(np.float64), RATE)
    assert base != AudioBuffer.from_numpy(_ramp(49, 2), RATE)


def test_nan_in_the_same_place_is_equal() -> None:
    a = _ramp(20)
    a[3] = np.nan
    assert AudioBuffer.from_numpy(a, RATE) == AudioBuffer.from_numpy(a.copy(), RATE)


def test_nan_in_different_places_is_not_equal() -> None:
    a = _ramp(20)
    b = a.copy()
    a[3] = np.nan
    b[4] = np.nan
    assert AudioBuffer.from_numpy(a, RATE) != AudioBuffer.from_numpy(b, RATE)


def test_equals_other_types_is_false_and_eq_defers() -> None:
    buf = AudioBuffer.from_numpy(_ramp(4), RATE)
    assert buf.equals(buf.to_numpy()) is False
    assert (buf == "audio") is False
    assert buf.__eq__(object()) is NotImplemented


def test_audio_buffer_is_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(AudioBuffer.from_numpy(_ramp(4), RATE))
