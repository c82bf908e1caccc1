"""The numpy reference kernels: the arithmetic contract the Rust kernels must match bit for bit."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from remotemedia_ray.audio import AudioFormat
from remotemedia_ray.errors import AudioFormatError, ConfigError, MarshalingError
from remotemedia_ray.nodes.reference import (
    VadSettings,
    add,
    channel_mix,
    check_finite,
    combine,
    combine_scalars,
    convert_format,
    decision_energies,
    first_nonfinite,
    frame_decisions,
    frame_energies,
    multiply,
    noise_floor,
    smooth_decisions,
    smoothing_frames,
    vad_frame_len,
    vad_segments,
)

AUDIO_DTYPES = [np.float32, np.float64, np.int16, np.int32]
INT_DTYPES = [
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
]
SR = 16000


def col(values: Any, dtype: Any = np.float64) -> np.ndarray:
    """A mono (frames, 1) array."""
    return np.asarray(values, dtype=dtype).reshape(-1, 1)


def readonly(a: np.ndarray) -> np.ndarray:
    a = a.copy(order="K")
    a.flags.writeable = False
    return a


def tone(seconds: float, amplitude: float = 0.5, freq: float = 1000.0) -> np.ndarray:
    n = round(seconds * SR)
    return amplitude * np.sin(2 * np.pi * freq * np.arange(n) / SR)


# -- non-finite samples -------------------------------------------------------


def test_first_nonfinite_finds_first_in_row_major_order() -> None:
    x = np.zeros((100, 2))
    x[70, 0] = np.inf
    x[61, 1] = np.nan
    assert first_nonfinite(x) == (61, 1)
    assert first_nonfinite(np.zeros((3, 2))) is None
    assert first_nonfinite(np.zeros((0, 2))) is None
    assert first_nonfinite(np.full((3, 2), 7, dtype=np.int16)) is None


def test_first_nonfinite_uses_logical_order_of_non_contiguous_input() -> None:
    base = np.zeros((2, 5))  # transposed: logical (5, 2), memory column-major
    base[0, 3] = np.inf  # logical (3, 0), flat 6
    base[1, 2] = np.nan  # logical (2, 1), flat 5
    assert first_nonfinite(base.T) == (2, 1)


def test_check_finite_names_index_frame_channel_and_kind() -> None:
    x = np.zeros((100, 2), dtype=np.float32)
    x[61, 1] = np.nan
    with pytest.raises(
        AudioFormatError, match=r"^non-finite sample \(nan\) at index 123 \(frame 61, channel 1\)$"
    ):
        check_finite(x)
    y = np.zeros((4, 3))
    y[2, 0] = -np.inf
    with pytest.raises(
        AudioFormatError, match=r"non-finite value \(-inf\) at index 6 \(frame 2, channel 0\)"
    ):
        check_finite(y, what="value")
    y[1, 2] = np.inf
    with pytest.raises(AudioFormatError, match=r"\(inf\) at index 5 \(frame 1, channel 2\)"):
        check_finite(y)
    check_finite(np.ones((3, 3)))


def test_non_finite_helpers_reject_non_2d() -> None:
    with pytest.raises(AudioFormatError, match="2-D"):
        first_nonfinite(np.zeros(3))
    with pytest.raises(MarshalingError, match="numpy array"):
        check_finite([[1.0]])  # type: ignore[arg-type]


# -- format conversion --------------------------------------------------------


def test_every_int16_value_round_trips_through_f32_and_f64() -> None:
    every = col(np.arange(-32768, 32768), np.int16)
    as_f32 = convert_format(every, AudioFormat.F32)
    assert as_f32.dtype == np.float32
    np.testing.assert_array_equal(as_f32, every.astype(np.float64) / 32768.0)
    np.testing.assert_array_equal(convert_format(as_f32, AudioFormat.I16), every)
    np.testing.assert_array_equal(
        convert_format(convert_format(every, AudioFormat.F64), AudioFormat.I16), every
    )
    np.testing.assert_array_equal(
        convert_format(convert_format(every, AudioFormat.I32), AudioFormat.I16), every
    )


@pytest.mark.parametrize("source", [np.float32, np.float64])
def test_full_scale_and_beyond_saturate(source: type) -> None:
    above = np.nextafter(source(1.0), source(2.0))
    x = col([1.0, -1.0, above, -above, 1e30, -1e30, 0.0, -0.0], source)
    np.testing.assert_array_equal(
        convert_format(x, AudioFormat.I16).ravel(),
        [32767, -32768, 32767, -32768, 32767, -32768, 0, 0],
    )
    i32 = convert_format(x, AudioFormat.I32).ravel()
    imax, imin = 2**31 - 1, -(2**31)
    np.testing.assert_array_equal(i32, [imax, imin, imax, imin, imax, imin, 0, 0])


def test_largest_f64_saturates_instead_of_overflowing() -> None:
    big = np.finfo(np.float64).max
    out = convert_format(col([big, -big]), AudioFormat.I32).ravel()
    np.testing.assert_array_equal(out, [2**31 - 1, -(2**31)])


@pytest.mark.parametrize("source", [np.float32, np.float64])
def test_float_to_int_ties_round_half_to_even(source: type) -> None:
    ticks = [0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 32766.5, -32767.5]
    x = col([t / 32768 for t in ticks], source)
    np.testing.assert_array_equal(
        convert_format(x, AudioFormat.I16).ravel(), [0, 2, 2, 4, 0, -2, -2, 32766, -32768]
    )
    y = col([t / 2**31 for t in [0.5, 1.5, 2.5, -2.5]], np.float64)
    np.testing.assert_array_equal(convert_format(y, AudioFormat.I32).ravel(), [0, 2, 2, -2])


def test_int16_to_int32_shifts_and_int32_to_int16_rounds_and_saturates() -> None:
    v16 = col([-32768, -1, 0, 1, 32767], np.int16)
    np.testing.assert_array_equal(
        convert_format(v16, AudioFormat.I32).ravel(),
        [-(2**31), -65536, 0, 65536, 32767 * 65536],
    )
    v32 = col(
        [32768, 98304, 163840, -32768, -98304, 32767, 2**31 - 1, -(2**31), 32769],
        np.int32,
    )
    np.testing.assert_array_equal(
        convert_format(v32, AudioFormat.I16).ravel(), [0, 2, 2, 0, -2, 0, 32767, -32768, 1]
    )


def test_int32_to_float_divides_then_rounds_once() -> None:
    v = col([2**31 - 1, -(2**31), 1, 2**24 + 1, -12345679], np.int32)
    exact = v.astype(np.float64) / 2**31
    np.testing.assert_array_equal(convert_format(v, AudioFormat.F64), exact)
    as_f32 = convert_format(v, AudioFormat.F32)
    np.testing.assert_array_equal(as_f32, exact.astype(np.float32))
    assert as_f32[0, 0] == np.float32(1.0)  # (2^31 - 1) / 2^31 rounds up to 1.0 in f32


def test_float_widening_is_exact_and_narrowing_rounds_to_nearest() -> None:
    x32 = col([0.1, -3.4e38, 1e-45], np.float32)
    np.testing.assert_array_equal(convert_format(x32, AudioFormat.F64), x32.astype(np.float64))
    x64 = col([0.1, 1 + 2**-24, 1 + 3 * 2**-24, 3.4028235e38])
    out = convert_format(x64, AudioFormat.F32).ravel()
    assert out[0] == np.float32(0.1)
    assert out[1] == np.float32(1.0)  # tie to even
    assert out[2] == np.float32(1 + 2**-22)  # tie to even (up)
    assert np.isfinite(out[3])


def test_f64_too_large_for_f32_names_index() -> None:
    x = np.zeros((3, 2))
    x[2, 1] = -1e39
    with pytest.raises(
        AudioFormatError, match=r"index 5 \(frame 2, channel 1\).*too large for f32"
    ):
        convert_format(x, AudioFormat.F32)


@pytest.mark.parametrize("source", [np.float32, np.float64])
@pytest.mark.parametrize("target", list(AudioFormat))
def test_non_finite_float_source_raises_for_every_target(source: type, target: AudioFormat) -> None:
    x: np.ndarray = np.zeros((4, 2), dtype=source)
    x[3, 0] = np.inf
    with pytest.raises(AudioFormatError, match=r"non-finite sample \(inf\) at index 6 \(frame 3"):
        convert_format(x, target)


@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_same_format_returns_input_itself(fmt: AudioFormat) -> None:
    x = np.zeros((5, 2), dtype=fmt.dtype)
    assert convert_format(x, fmt) is x
    assert convert_format(x, fmt.value) is x  # type: ignore[arg-type]


@pytest.mark.parametrize("source", list(AudioFormat))
@pytest.mark.parametrize("target", list(AudioFormat))
def test_conversion_preserves_shape_and_ignores_memory_layout(
    source: AudioFormat, target: AudioFormat
) -> None:
    rng = np.random.default_rng(1)
    base = rng.uniform(-1.0, 1.0, size=(7, 3))
    x = convert_format(base, AudioFormat.F64 if source.is_float else source)
    x = x.astype(source.dtype)
    out = convert_format(_layout(x, "strided"), target)
    assert out.flags.c_contiguous or source is target
    np.testing.assert_array_equal(convert_format(_layout(x, "fortran"), target), out)
    assert out.shape == (7, 3)
    assert out.dtype == target.dtype
    np.testing.assert_array_equal(out, convert_format(np.ascontiguousarray(x), target))


def test_convert_format_rejects_bad_input() -> None:
    with pytest.raises(AudioFormatError, match="unsupported sample dtype"):
        convert_format(np.zeros((2, 1), dtype=np.int64), AudioFormat.F32)
    with pytest.raises(AudioFormatError, match="2-D"):
        convert_format(np.zeros(4), AudioFormat.F32)
    with pytest.raises(AudioFormatError, match="unknown target format 'f16'"):
        convert_format(np.zeros((2, 1)), "f16")  # type: ignore[arg-type]
    with pytest.raises(MarshalingError):
        convert_format([[0.0]], AudioFormat.F32)  # type: ignore[arg-type]


# -- combine ------------------------------------------------------------------


def test_combine_accumulates_in_sequence_order() -> None:
    parts = [1e16, 1.0, -1e16]
    arrays = [np.full((2, 1), v) for v in parts]
    np.testing.assert_array_equal(combine(arrays, "add", 0.0), np.full((2, 1), 0.0))
    reordered = [arrays[0], arrays[2], arrays[1]]
    np.testing.assert_array_equal(combine(reordered, "add", 0.0), np.full((2, 1), 1.0))
    assert combine_scalars(parts, "add", 0.0) == 0.0
    # the parameter comes last
    assert combine([np.full((1, 1), 1e16)], "add", 1.0)[0, 0] == 1e16
    assert combine_scalars([1e16, -1e16], "add", 1.0) == 1.0


def test_combine_float32_accumulates_in_f64_and_rounds_once() -> None:
    one, tiny = np.float32(1.0), np.float32(2**-24)
    arrays = [np.full((1, 1), v, dtype=np.float32) for v in (one, tiny, tiny)]
    out = combine(arrays, "add", 0.0)
    assert out.dtype == np.float32
    assert out[0, 0] == np.float32(1 + 2**-23)  # f32 arithmetic would give 1.0
    assert (one + tiny) + tiny == one


def test_combine_floats_are_not_clipped_and_propagate_ieee() -> None:
    x = col([0.5, 3e38, -3e38], np.float32)
    np.testing.assert_array_equal(multiply(x, 10.0).ravel(), [5.0, np.inf, -np.inf])
    y = col([np.inf, np.nan, 1.0])
    out = combine([y, col([-np.inf, 0.0, 2.0])], "add", 0.0).ravel()
    assert np.isnan(out[0]) and np.isnan(out[1]) and out[2] == 3.0


def test_combine_rounds_integers_half_to_even() -> None:
    x = col([1, 3, 5, -1, -3, 7], np.int16)
    np.testing.assert_array_equal(multiply(x, 0.5).ravel(), [0, 2, 2, 0, -2, 4])
    np.testing.assert_array_equal(add(col([0, 0], np.int32), 2.5).ravel(), [2, 2])


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_combine_saturates_every_integer_dtype(dtype: type) -> None:
    info = np.iinfo(dtype)
    x = col([info.max, info.min, 1], dtype)
    up = add(x, 1e30)
    down = add(x, -1e30)
    assert up.dtype == dtype and down.dtype == dtype
    assert up.ravel().tolist() == [info.max] * 3
    assert down.ravel().tolist() == [info.min] * 3
    assert multiply(x, 1.0).ravel().tolist() == [info.max, info.min, 1]


def test_combine_int64_saturates_to_exact_dtype_bounds() -> None:
    i64 = np.iinfo(np.int64)
    x = col([i64.max, i64.min, 2**63 - 1024, 2**53 + 1], np.int64)
    out = multiply(x, 1.0).ravel().tolist()
    # i64.max converts to 2^63 in f64 -> saturates to exactly i64.max;
    # 2^53 + 1 is not an f64 and rounds to 2^53 on the way in.
    assert out == [i64.max, i64.min, 2**63 - 1024, 2**53]
    u = col([2**64 - 1, 2**64 - 2048, 0], np.uint64)
    assert multiply(u, 2.0).ravel().tolist() == [2**64 - 1, 2**64 - 1, 0]
    # 2^64 - 2049 is not an f64: it rounds to 2^64 - 2048; -1 saturates to 0
    assert add(u, -1.0).ravel().tolist() == [2**64 - 1, 2**64 - 2048, 0]


def test_combine_nan_accumulator_becomes_zero_for_integers() -> None:
    big = col([2**64 - 1], np.uint64)
    out = combine([big] * 20, "multiply", 0.0)  # product overflows to inf; inf * 0 = nan
    assert out.ravel().tolist() == [0]


def test_combine_mixes_several_int_inputs_like_scalars() -> None:
    a = col([30000, -30000, 100], np.int16)
    b = col([30000, -30000, -99], np.int16)
    np.testing.assert_array_equal(combine([a, b], "add", 0.0).ravel(), [32767, -32768, 1])
    np.testing.assert_array_equal(combine([a, b], "multiply", 1e-4).ravel(), [32767, 32767, -1])


def test_combine_rejects_mismatched_shapes_and_dtypes() -> None:
    with pytest.raises(AudioFormatError, match=r"same shape.*\(3, 1\).*\(2, 1\)"):
        combine([np.zeros((3, 1)), np.zeros((2, 1))], "add", 0.0)
    with pytest.raises(AudioFormatError, match=r"same dtype.*float64.*float32"):
        combine([np.zeros((3, 1)), np.zeros((3, 1), np.float32)], "add", 0.0)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((2, 1), dtype=bool),
        np.zeros((2, 1), dtype=np.complex128),
        np.zeros((2, 1), dtype=object),
        np.array([["a"], ["b"]]),
        np.zeros((2, 1), dtype=np.float16),
    ],
    ids=["bool", "complex", "object", "str", "float16"],
)
def test_combine_rejects_non_numeric_dtypes_naming_them(array: np.ndarray) -> None:
    with pytest.raises(MarshalingError, match=str(array.dtype)):
        combine([array], "multiply", 2.0)


@pytest.mark.parametrize("param", [math.nan, math.inf, -math.inf, "2", True, None, 10**400])
def test_combine_rejects_non_finite_param(param: Any) -> None:
    with pytest.raises(ConfigError, match="param"):
        combine([np.zeros((2, 1))], "add", param)
    with pytest.raises(ConfigError, match="param"):
        combine_scalars([1.0], "add", param)


def test_combine_rejects_empty_and_non_arrays_and_bad_op() -> None:
    with pytest.raises(MarshalingError, match="at least one"):
        combine([], "add", 0.0)
    with pytest.raises(MarshalingError, match="list"):
        combine([[1.0]], "add", 0.0)  # type: ignore[list-item]
    with pytest.raises(MarshalingError, match="at least one"):
        combine_scalars([], "add", 0.0)
    with pytest.raises(MarshalingError, match="str"):
        combine_scalars(["1"], "add", 0.0)  # type: ignore[list-item]
    with pytest.raises(ValueError, match="unknown op"):
        combine([np.zeros(1)], "subtract", 0.0)  # type: ignore[arg-type]


def test_combine_works_on_any_shape_and_layout() -> None:
    x = np.arange(12, dtype=np.float64).reshape(3, 4).T  # not C-contiguous
    out = multiply(readonly(x), 2.0)
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, x * 2.0)
    assert multiply(np.full((), 3.0), 2.0).shape == ()
    assert add(np.zeros(0, dtype=np.int16), 1.0).shape == (0,)


_any_float = st.floats(allow_nan=True, allow_infinity=True)
_finite_param = st.floats(allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_any_float, min_size=1, max_size=6),
    st.sampled_from(["add", "multiply"]),
    _finite_param,
)
def test_combine_on_one_element_f64_arrays_equals_combine_scalars(
    values: list[float], op: Any, param: float
) -> None:
    arrays = [np.full((1, 1), v) for v in values]
    got = float(combine(arrays, op, param)[0, 0])
    want = combine_scalars(values, op, param)
    assert got == want or (math.isnan(got) and math.isnan(want))


# -- channel mix --------------------------------------------------------------


def test_mean_sums_channels_in_order_then_divides_once() -> None:
    x = np.array([[1e16, 1.0, -1e16], [1.0, 2.0, 4.0]])
    np.testing.assert_array_equal(channel_mix(x, "mean"), [[0.0], [7.0 / 3.0]])
    f = np.array([[0.1, 0.2]], dtype=np.float32)
    expected = np.float32((np.float64(f[0, 0]) + np.float64(f[0, 1])) / 2.0)
    assert channel_mix(f)[0, 0] == expected
    assert channel_mix(f).dtype == np.float32


def test_mean_of_ints_rounds_half_to_even() -> None:
    x = np.array([[1, 2], [1, 0], [-1, 0], [-3, 0], [32767, 32767], [-32768, -32768]], np.int16)
    out = channel_mix(x, "mean")
    assert out.dtype == np.int16 and out.shape == (6, 1)
    assert out.ravel().tolist() == [2, 0, 0, -2, 32767, -32768]
    i32 = np.array([[2**31 - 1, 2**31 - 1, 2**31 - 1], [-(2**31), 1, 0]], np.int32)
    assert channel_mix(i32).ravel().tolist() == [2**31 - 1, round((-(2**31) + 1) / 3)]


def test_mean_of_mono_is_an_equal_copy() -> None:
    x = readonly(col([0.25, -1.0], np.float32))
    out = channel_mix(x)
    assert out is not x and out.flags.writeable
    np.testing.assert_array_equal(out, x)


def test_select_copies_one_channel() -> None:
    x = readonly(np.arange(12, dtype=np.int32).reshape(4, 3))
    out = channel_mix(x, "select", channel=2)
    assert out.shape == (4, 1) and out.flags.c_contiguous and out.flags.writeable
    np.testing.assert_array_equal(out.ravel(), [2, 5, 8, 11])


@pytest.mark.parametrize("channel", [2, -1, 7])
def test_select_out_of_range_names_channel_and_count(channel: int) -> None:
    with pytest.raises(ConfigError, match=rf"channel {channel} out of range.*2 channel"):
        channel_mix(np.zeros((3, 2)), "select", channel=channel)


def test_channel_mix_rejects_bad_input() -> None:
    with pytest.raises(AudioFormatError, match="0 channels"):
        channel_mix(np.zeros((3, 0)))
    with pytest.raises(ValueError, match="unknown mode"):
        channel_mix(np.zeros((3, 2)), "max")  # type: ignore[arg-type]
    with pytest.raises(AudioFormatError, match="unsupported sample dtype"):
        channel_mix(np.zeros((3, 2), dtype=np.uint8))


# -- VAD: framing and energy --------------------------------------------------


def test_frame_length_rounds_half_up_and_is_at_least_one() -> None:
    assert vad_frame_len(16000, 30.0) == 480
    assert vad_frame_len(44100, 30.0) == 1323
    assert vad_frame_len(22050, 10.0) == 221  # 220.5 rounds up
    assert vad_frame_len(8000, 0.01) == 1
    assert smoothing_frames(0.0, 30.0) == 0
    assert smoothing_frames(10.0, 30.0) == 1
    assert smoothing_frames(30.0, 30.0) == 1
    assert smoothing_frames(31.0, 30.0) == 2
    assert smoothing_frames(1e308, 1e-300) == 2**64 - 1  # saturates like Rust's `as usize`


def lane_energy(values: list[float]) -> float:
    """The 8-lane contract written as a plain Python loop."""
    lanes = [0.0] * 8
    for i, v in enumerate(values):
        lanes[i % 8] = lanes[i % 8] + v * v
    return ((lanes[0] + lanes[1]) + (lanes[2] + lanes[3])) + (
        (lanes[4] + lanes[5]) + (lanes[6] + lanes[7])
    )


@pytest.mark.parametrize(("frame_len", "channels"), [(37, 3), (480, 1), (1, 1), (5, 8), (3, 2)])
def test_frame_energy_follows_the_eight_lane_order_exactly(frame_len: int, channels: int) -> None:
    rng = np.random.default_rng(frame_len * 10 + channels)
    n = frame_len * 6 + frame_len // 2 + 1  # a partial last frame
    x = rng.standard_normal((n, channels)) * 10.0 ** rng.uniform(-8, 8, size=(n, channels))
    sums, counts = frame_energies(readonly(x), frame_len)
    assert sums.dtype == np.float64 and counts.dtype == np.int64
    assert len(sums) == len(counts) == -(-n // frame_len)
    sequential_differs = False
    for f in range(len(sums)):
        frame = x[f * frame_len : (f + 1) * frame_len].ravel().tolist()
        assert counts[f] == len(frame)
        assert sums[f] == lane_energy(frame)  # bit-exact
        exact = math.fsum(v * v for v in frame)
        assert abs(sums[f] - exact) <= 1e-12 * exact
        naive = 0.0
        for v in frame:
            naive += v * v
        sequential_differs |= naive != sums[f]
    if len(x.ravel()) > 64:
        assert sequential_differs, "test data should be sensitive to summation order"


def test_frame_energy_scales_integers_exactly() -> None:
    rng = np.random.default_rng(3)
    q16 = rng.integers(-32768, 32768, size=(1000, 2)).astype(np.int16)
    q32 = rng.integers(-(2**31), 2**31, size=(1000, 2)).astype(np.int32)
    for q, scale in ((q16, 32768.0), (q32, 2.0**31)):
        s_int, c_int = frame_energies(q, 160)
        s_float, c_float = frame_energies(q.astype(np.float64) / scale, 160)
        np.testing.assert_array_equal(s_int, s_float)
        np.testing.assert_array_equal(c_int, c_float)


def test_frame_energies_of_empty_audio() -> None:
    sums, counts = frame_energies(np.zeros((0, 2), np.float32), 480)
    assert sums.shape == counts.shape == (0,)
    with pytest.raises(AudioFormatError, match="frame_len"):
        frame_energies(np.zeros((4, 1)), 0)


# -- VAD: decisions and smoothing ---------------------------------------------


def _threshold_db_for(linear: float) -> float:
    """A threshold in dB whose 10 ** (t / 10) is exactly ``linear``."""
    t = 10.0 * math.log10(linear)
    for _ in range(64):
        got = 10.0 ** (t / 10.0)
        if got == linear:
            return t
        t = math.nextafter(t, math.inf if got < linear else -math.inf)
    raise AssertionError("no exact threshold found")


def test_frame_exactly_at_threshold_is_not_speech() -> None:
    half = col(np.full(960, 16384), np.int16)  # mean square exactly 0.25
    t = _threshold_db_for(0.25)
    assert vad_segments(half, SR, VadSettings(threshold_db=t)) == []
    assert len(vad_segments(half, SR, VadSettings(threshold_db=math.nextafter(t, -math.inf)))) == 1
    full = col(np.tile([1.0, -1.0], 480))  # mean square exactly 1.0 = 0 dB
    assert vad_segments(full, SR, VadSettings(threshold_db=0.0)) == []
    sums = np.array([4.0, 4.0000000000000001, 4.000000000000001])
    counts = np.array([4, 4, 4])
    assert frame_decisions(sums, counts, 0.0).tolist() == [False, False, True]


def test_hangover_extends_each_run_without_chaining() -> None:
    speech = np.array([1, 0, 0, 0, 1, 1, 0, 0], dtype=bool)
    before = speech.copy()
    assert smooth_decisions(speech, hangover_frames=2).astype(int).tolist() == [
        1,
        1,
        1,
        0,
        1,
        1,
        1,
        1,
    ]
    np.testing.assert_array_equal(speech, before)
    assert smooth_decisions([1, 0, 0, 0, 0], hangover_frames=2).astype(int).tolist() == [
        1,
        1,
        1,
        0,
        0,
    ]


def test_short_silence_between_speech_is_filled_but_edges_stay() -> None:
    speech = [0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0]
    out = smooth_decisions(speech, min_silence_frames=3)
    assert out.astype(int).tolist() == [0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0]


def test_short_speech_runs_are_dropped() -> None:
    speech = [1, 0, 1, 1, 0, 1, 0, 0, 1, 1, 1]
    out = smooth_decisions(speech, min_speech_frames=2)
    assert out.astype(int).tolist() == [0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1]


def test_smoothing_applies_hangover_then_fill_then_drop() -> None:
    speech = [1, 0, 0, 0, 0, 1, 0, 0, 0]
    # hangover 1 -> 1 1 0 0 0 1 1 0 0; gap of 3 is not < 3; both runs of 2 < 3 dropped
    assert not smooth_decisions(speech, 1, 3, 3).any()
    # gap of 3 < 4 is filled first, so the merged run of 7 survives
    assert smooth_decisions(speech, 1, 3, 4).astype(int).tolist() == [1, 1, 1, 1, 1, 1, 1, 0, 0]
    assert smooth_decisions(speech).astype(int).tolist() == speech


def test_context_averages_each_frame_with_its_existing_neighbours() -> None:
    sums = np.array([3.0, 6.0, 9.0, 0.0])
    counts = np.array([3, 3, 3, 3])
    assert decision_energies(sums, counts).tolist() == [1.0, 2.0, 3.0, 0.0]
    assert decision_energies(sums, counts, 1).tolist() == [1.5, 2.0, 5.0 / 3.0, 1.5]
    # sums from 0.0 in increasing frame order, one division by the member count
    rng = np.random.default_rng(5)
    sums = rng.uniform(0, 1, 50) * 10.0 ** rng.uniform(-12, 12, 50)
    counts = rng.integers(1, 500, 50)
    got = decision_energies(sums, counts, 3)
    ms = (sums / counts).tolist()
    for f in range(50):
        acc = 0.0
        for j in range(max(0, f - 3), min(49, f + 3) + 1):
            acc = acc + ms[j]
        assert got[f] == acc / (min(49, f + 3) + 1 - max(0, f - 3))
    # a context wider than the input averages everything, like one of n - 1 frames
    assert (
        decision_energies(sums, counts, 10**30).tolist()
        == decision_energies(sums, counts, 49).tolist()
    )
    assert decision_energies(np.zeros(0), np.zeros(0, np.int64), 2).size == 0
    with pytest.raises(AudioFormatError, match="context_frames"):
        decision_energies(sums, counts, -1)


def test_noise_floor_is_the_nearest_rank_below() -> None:
    e = np.array([5.0, 1.0, 4.0, 2.0, 3.0])
    assert [noise_floor(e, p) for p in (0, 24.9, 25, 50, 99.9, 100)] == [1, 1, 2, 3, 4, 5]
    assert noise_floor(np.array([7.0]), 30.0) == 7.0
    with pytest.raises(ConfigError, match="noise_floor_percentile"):
        noise_floor(e, 100.5)
    with pytest.raises(AudioFormatError, match="at least one frame"):
        noise_floor(np.zeros(0), 10.0)


def test_adaptive_threshold_needs_both_fixed_and_floor_margin() -> None:
    sums = np.array([1.0, 1.0, 1.0, 1.0, 2.5, 1.9, 8.0, 1.0])  # counts of 1: sums are energies
    counts = np.ones(8, np.int64)
    assert frame_decisions(sums, counts, -60.0).all()
    # floor: sorted[floor(7 * 0.2)] = sorted[1] = 1.0; 3 dB margin: > 1.9952...
    adaptive = frame_decisions(sums, counts, -60.0, noise_floor_percentile=20.0)
    assert adaptive.astype(int).tolist() == [0, 0, 0, 0, 1, 0, 1, 0]
    # the fixed threshold still applies: 5 dB (3.16) is above 2.5, 9.1 dB above 8.0
    fixed = frame_decisions(sums, counts, 5.0, noise_floor_percentile=20.0)
    assert fixed.astype(int).tolist() == [0, 0, 0, 0, 0, 0, 1, 0]
    assert not frame_decisions(sums, counts, 9.1, noise_floor_percentile=20.0).any()
    wide = frame_decisions(sums, counts, -60.0, noise_floor_percentile=0.0, noise_floor_margin_db=0)
    assert wide.astype(int).tolist() == [0, 0, 0, 0, 1, 1, 1, 0]


def test_noise_floor_finds_a_burst_in_steady_noise() -> None:
    rng = np.random.default_rng(11)
    x = rng.standard_normal(SR) * 0.03  # about -30 dBFS of noise
    x[8000:9600] += tone(0.1, amplitude=0.3)
    plain = vad_segments(col(x), SR, VadSettings(threshold_db=-60.0))
    assert [(s["start_ms"], s["end_ms"]) for s in plain] == [(0.0, 1000.0)]
    [seg] = vad_segments(col(x), SR, VadSettings(threshold_db=-60.0, noise_floor_percentile=20.0))
    assert (seg["start_ms"], seg["end_ms"]) == (480.0, 600.0)
    assert seg["confidence"] == min(1.0, max(0.0, 1.0 - 10.0 ** (-(seg["energy_db"] + 60) / 10)))
    [seg] = vad_segments(
        col(x), SR, VadSettings(threshold_db=-60.0, noise_floor_percentile=20.0, context_ms=30.0)
    )
    assert (seg["start_ms"], seg["end_ms"]) == (450.0, 630.0)
    # without any non-speech the floor is speech, and a margin drops the quieter frames
    assert vad_segments(col(tone(1.0)), SR, VadSettings(noise_floor_percentile=20.0)) == []


def test_smooth_decisions_rejects_bad_input() -> None:
    with pytest.raises(AudioFormatError, match="1-D"):
        smooth_decisions(np.zeros((2, 2), dtype=bool))
    with pytest.raises(AudioFormatError, match="hangover_frames"):
        smooth_decisions([True], hangover_frames=-1)


# -- VAD: segments ------------------------------------------------------------


def test_silence_gives_no_segments() -> None:
    assert vad_segments(np.zeros((16000, 1)), SR) == []
    assert vad_segments(col(np.full(16000, 0.001)), SR) == []  # -60 dB
    assert vad_segments(np.zeros((0, 1)), SR) == []
    assert vad_segments(np.zeros((0, 2), np.int16), SR) == []


def test_full_scale_tone_is_one_segment() -> None:
    x = col(tone(1.0, amplitude=1.0))
    [seg] = vad_segments(x, SR)
    assert seg["start_ms"] == 0.0 and seg["end_ms"] == 1000.0
    assert seg["energy_db"] == pytest.approx(10 * math.log10(0.5), abs=1e-9)
    expected = min(1.0, max(0.0, 1.0 - 10.0 ** (-(seg["energy_db"] + 30.0) / 10.0)))
    assert seg["confidence"] == expected
    assert 0.99 < seg["confidence"] < 1.0
    assert all(isinstance(v, float) for v in seg.values())


def test_tone_silence_tone_gives_exact_boundaries() -> None:
    x = col(np.concatenate([tone(0.5), np.zeros(round(0.3 * SR)), tone(0.2)]))
    segs = vad_segments(x, SR, VadSettings(frame_length_ms=30.0))
    # frames of 480 samples: frame 16 (7680..8160) still holds 320 tone samples;
    # frame 26 (12480..12960) holds the first 160 samples of the second tone;
    # the 34th frame is partial (160 samples) and the end is capped at 16000.
    assert [(s["start_ms"], s["end_ms"]) for s in segs] == [(0.0, 510.0), (780.0, 1000.0)]
    sums, counts = frame_energies(x, 480)
    first = 0.0
    for s in sums[:17].tolist():
        first += s
    assert segs[0]["energy_db"] == 10 * math.log10(first / int(counts[:17].sum()))


def test_partial_last_speech_frame_ends_at_duration() -> None:
    x = col(tone(1000 / SR))  # 1000 samples: frames of 480, 480, 40
    [seg] = vad_segments(x, SR)
    assert seg["end_ms"] == 1000 * 1000.0 / SR == 62.5


def test_energy_spans_all_channels() -> None:
    mono = col(tone(0.3))
    stereo = np.hstack([mono, np.zeros_like(mono)])
    [a] = vad_segments(mono, SR)
    [b] = vad_segments(stereo, SR)
    assert (a["start_ms"], a["end_ms"]) == (b["start_ms"], b["end_ms"])
    assert b["energy_db"] - a["energy_db"] == pytest.approx(10 * math.log10(0.5), abs=1e-9)
    assert b["energy_db"] - a["energy_db"] == pytest.approx(-3.0103, abs=1e-4)


@pytest.mark.parametrize(("dtype", "scale"), [(np.int16, 32768.0), (np.int32, 2.0**31)])
def test_integer_input_equals_scaled_float_input(dtype: type, scale: float) -> None:
    q = np.round(np.concatenate([tone(0.4), np.zeros(3000), tone(0.1, 0.01)]) * (scale / 2))
    q = np.hstack([col(q), col(q[::-1])]).astype(dtype)
    segs = vad_segments(q, SR, VadSettings(threshold_db=-40.0))
    assert len(segs) >= 1
    assert segs == vad_segments(q.astype(np.float64) / scale, SR, VadSettings(threshold_db=-40.0))
    if dtype is np.int16:  # exact in f32 too
        as_f32 = (q.astype(np.float64) / scale).astype(np.float32)
        assert segs == vad_segments(as_f32, SR, VadSettings(threshold_db=-40.0))


def test_smoothing_options_end_to_end() -> None:
    x = col(np.concatenate([tone(0.09), np.zeros(960), tone(0.09)]))  # frames: SSS__SSS
    plain = vad_segments(x, SR)
    assert [(s["start_ms"], s["end_ms"]) for s in plain] == [(0.0, 90.0), (150.0, 240.0)]
    [merged] = vad_segments(x, SR, VadSettings(min_silence_ms=61.0))  # 3 frames > gap of 2
    assert (merged["start_ms"], merged["end_ms"]) == (0.0, 240.0)
    sums, counts = frame_energies(x, 480)
    total = 0.0
    for s in sums.tolist():
        total += s
    assert merged["energy_db"] == 10 * math.log10(total / int(counts.sum()))
    held = vad_segments(x, SR, VadSettings(hangover_ms=30.0))
    assert [(s["start_ms"], s["end_ms"]) for s in held] == [(0.0, 120.0), (150.0, 240.0)]
    assert vad_segments(x, SR, VadSettings(min_speech_ms=100.0)) == []  # 4 frames > runs of 3


def test_threshold_so_high_its_power_overflows_gives_no_segments() -> None:
    assert vad_segments(col(tone(0.1)), SR, VadSettings(threshold_db=4000.0)) == []
    [seg] = vad_segments(col(tone(0.1)), SR, VadSettings(threshold_db=-4000.0))
    assert seg["confidence"] == 1.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": -8000}, "sample_rate"),
        ({"sample_rate": 16000.0}, "sample_rate"),
        ({"sample_rate": True}, "sample_rate"),
        ({"frame_length_ms": 0.0}, "frame_length_ms"),
        ({"frame_length_ms": -30.0}, "frame_length_ms"),
        ({"frame_length_ms": math.nan}, "frame_length_ms"),
        ({"frame_length_ms": math.inf}, "frame_length_ms"),
        ({"threshold_db": math.nan}, "threshold_db"),
        ({"threshold_db": -math.inf}, "threshold_db"),
        ({"hangover_ms": -1.0}, "hangover_ms"),
        ({"min_speech_ms": math.inf}, "min_speech_ms"),
        ({"min_silence_ms": -0.5}, "min_silence_ms"),
        ({"context_ms": -30.0}, "context_ms"),
        ({"noise_floor_percentile": -1.0}, "noise_floor_percentile"),
        ({"noise_floor_percentile": 100.01}, "noise_floor_percentile"),
        ({"noise_floor_percentile": math.nan}, "noise_floor_percentile"),
        ({"noise_floor_margin_db": -3.0}, "noise_floor_margin_db"),
        ({"noise_floor_margin_db": math.inf}, "noise_floor_margin_db"),
    ],
)
def test_vad_rejects_invalid_parameters_by_name(kwargs: dict[str, Any], name: str) -> None:
    rate = kwargs.pop("sample_rate", SR)
    # the input's rate is the audio's fault; the rest are settings
    error = AudioFormatError if name == "sample_rate" else ConfigError
    with pytest.raises(error, match=name):
        vad_segments(np.zeros((100, 1)), rate, VadSettings(**kwargs))
    with pytest.raises(error, match=name):  # even for empty audio
        vad_segments(np.zeros((0, 1)), rate, VadSettings(**kwargs))


def test_vad_settings_must_be_a_settings_object() -> None:
    with pytest.raises(ConfigError, match="VadSettings"):
        vad_segments(np.zeros((10, 1)), SR, {"threshold_db": -30.0})  # type: ignore[arg-type]


def test_vad_rejects_non_finite_samples() -> None:
    x = np.zeros((100, 2), np.float32)
    x[61, 1] = np.nan
    with pytest.raises(AudioFormatError, match=r"non-finite sample \(nan\) at index 123"):
        vad_segments(x, SR)


# -- properties ---------------------------------------------------------------

_EXTREME_FLOATS = [1e30, -1e30, 1.0, -1.0, 0.0, -0.0, 1e-30, 0.5 / 32768, 1.5 / 32768]


def _elements(dtype: np.dtype) -> st.SearchStrategy[Any]:
    if dtype.kind == "f":
        as_dtype = [float(dtype.type(v)) for v in _EXTREME_FLOATS]  # +-1e30 is not an f32
        lo, hi = min(as_dtype), max(as_dtype)
        finite = st.floats(lo, hi, width=32) if dtype.itemsize == 4 else st.floats(lo, hi)
        return st.one_of(finite, st.sampled_from(as_dtype))
    info = np.iinfo(dtype)
    return st.one_of(
        st.integers(int(info.min), int(info.max)),
        st.sampled_from([int(info.min), int(info.max), 0, -1 if info.min else 1]),
    )


def _layout(a: np.ndarray, how: str) -> np.ndarray:
    if how == "fortran":
        a = np.asfortranarray(a)
    elif how == "reversed":
        a = a[::-1].copy()[::-1]
    elif how == "strided":
        doubled = np.repeat(a, 2, axis=0)
        a = doubled[::2]
    a.flags.writeable = False
    return a


@st.composite
def audio(draw: st.DrawFn, dtypes: list[Any] = AUDIO_DTYPES, max_frames: int = 40) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    shape = (draw(st.integers(0, max_frames)), draw(st.integers(1, 8)))
    a = draw(hnp.arrays(dtype, shape, elements=_elements(dtype)))
    return _layout(a, draw(st.sampled_from(["c", "fortran", "reversed", "strided"])))


def _unchanged(kernel: Callable[[np.ndarray], Any], x: np.ndarray) -> Any:
    snapshot = x.copy()
    result = kernel(x)
    np.testing.assert_array_equal(x, snapshot)
    return result


@settings(max_examples=80, deadline=None)
@given(audio(), st.sampled_from(list(AudioFormat)))
def test_property_convert_format(x: np.ndarray, target: AudioFormat) -> None:
    out = _unchanged(lambda a: convert_format(a, target), x)
    assert out.shape == x.shape and out.dtype == target.dtype
    source = AudioFormat.from_dtype(x.dtype)
    if target.is_float:
        assert np.isfinite(out).all()
    if source.is_float and not target.is_float:
        scale = float(2 ** (target.bits - 1))
        for idx in np.ndindex(*x.shape):
            assert int(out[idx]) == _round_saturate_py(float(x[idx]) * scale, target.dtype)
    if not source.is_float and target.is_float:
        scale = float(2 ** (source.bits - 1))
        np.testing.assert_array_equal(out, (x.astype(np.float64) / scale).astype(target.dtype))


def _round_saturate_py(value: float, dtype: np.dtype) -> int:
    info = np.iinfo(dtype)
    if math.isnan(value):
        return 0
    if math.isinf(value):
        return int(info.max) if value > 0 else int(info.min)
    return min(int(info.max), max(int(info.min), round(value)))


@settings(max_examples=80, deadline=None)
@given(
    st.data(),
    st.sampled_from([np.float32, np.float64, *INT_DTYPES]),
    st.integers(1, 3),
    st.sampled_from(["add", "multiply"]),
    st.one_of(st.floats(-1e6, 1e6), st.sampled_from([0.0, 1.0, -1.0, 0.5, 1e30, -1e30])),
)
def test_property_combine_matches_scalar_oracle(
    data: st.DataObject, dtype: Any, n_inputs: int, op: Any, param: float
) -> None:
    dt = np.dtype(dtype)
    shape = (data.draw(st.integers(0, 12)), data.draw(st.integers(1, 4)))
    arrays = [
        _layout(
            data.draw(hnp.arrays(dt, shape, elements=_elements(dt))),
            data.draw(st.sampled_from(["c", "fortran", "strided"])),
        )
        for _ in range(n_inputs)
    ]
    snapshots = [a.copy() for a in arrays]
    out = combine(arrays, op, param)
    for a, s in zip(arrays, snapshots, strict=True):
        np.testing.assert_array_equal(a, s)
    assert out.shape == shape and out.dtype == dt
    for idx in np.ndindex(*shape):
        want = combine_scalars([float(a[idx]) for a in arrays], op, param)
        got = out[idx]
        if dt.kind == "f":
            with np.errstate(over="ignore"):
                expected = np.asarray(want).astype(dt)
            assert got == expected or (np.isnan(got) and np.isnan(expected))
        else:
            assert int(got) == _round_saturate_py(want, dt)


@settings(max_examples=60, deadline=None)
@given(audio(), st.integers(0, 8))
def test_property_channel_mix(x: np.ndarray, channel: int) -> None:
    mean = _unchanged(channel_mix, x)
    assert mean.shape == (x.shape[0], 1) and mean.dtype == x.dtype
    if x.dtype.kind == "i" and x.size:
        assert (mean.ravel() >= x.min(axis=1)).all() and (mean.ravel() <= x.max(axis=1)).all()
    if channel < x.shape[1]:
        picked = _unchanged(lambda a: channel_mix(a, "select", channel), x)
        np.testing.assert_array_equal(picked.ravel(), x[:, channel])
    else:
        with pytest.raises(ConfigError):
            channel_mix(x, "select", channel)


@settings(max_examples=60, deadline=None)
@given(
    audio(max_frames=300),
    st.sampled_from([8000, 16000, 44100]),
    st.floats(-80.0, 10.0),
    st.sampled_from([1.0, 2.5, 10.0, 30.0]),
    st.sampled_from([0.0, 5.0, 20.0]),
    st.sampled_from([0.0, 5.0, 20.0]),
    st.sampled_from([0.0, 5.0, 20.0]),
)
def test_property_vad_segments(
    x: np.ndarray,
    rate: int,
    threshold: float,
    frame_ms: float,
    hangover: float,
    min_speech: float,
    min_silence: float,
) -> None:
    segs = _unchanged(
        lambda a: vad_segments(
            a, rate, VadSettings(threshold, frame_ms, hangover, min_speech, min_silence)
        ),
        x,
    )
    duration = x.shape[0] * 1000.0 / rate
    previous_end = -1.0
    for seg in segs:
        assert set(seg) == {"start_ms", "end_ms", "energy_db", "confidence"}
        assert previous_end < seg["start_ms"] < seg["end_ms"] <= duration
        assert 0.0 <= seg["confidence"] <= 1.0
        previous_end = seg["end_ms"]
    sums, counts = frame_energies(x, vad_frame_len(rate, frame_ms))
    assert (sums >= 0).all() and counts.sum() == x.size
